//! A real S3 protocol server for tests: `s3s-fs` on a loopback port, behind a thin layer that
//! adds the two listing operations `s3s-fs` lacks (multipart uploads and object versions), so
//! the store's leftover-upload and delete-every-version paths run against real HTTP and XML.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;

pub const ACCESS_KEY: &str = "steward-test";
pub const SECRET_KEY: &str = "steward-test-secret";
pub const BUCKET: &str = "steward-test";

/// A running server; it stops when the test's runtime ends.
pub struct S3Server {
    pub endpoint: String,
    _root: tempfile::TempDir,
}

/// Open multipart uploads and complete objects, as the server saw them.
#[derive(Default)]
struct Tracker {
    uploads: Mutex<BTreeMap<String, (String, String)>>,
    objects: Mutex<BTreeMap<(String, String), i64>>,
}

struct Tracked {
    inner: FileSystem,
    tracker: Arc<Tracker>,
}

pub async fn spawn() -> S3Server {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
    let fs = FileSystem::new(root.path()).expect("s3s-fs");
    let service = {
        let mut builder = s3s::service::S3ServiceBuilder::new(Tracked {
            inner: fs,
            tracker: Arc::default(),
        });
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        builder.build()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                let _ = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    S3Server {
        endpoint,
        _root: root,
    }
}

fn key_of(bucket: &str, key: &str) -> (String, String) {
    (bucket.to_owned(), key.to_owned())
}

#[async_trait::async_trait]
impl S3 for Tracked {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let id = key_of(&req.input.bucket, &req.input.key);
        let size = req.input.content_length.unwrap_or(0);
        let out = self.inner.put_object(req).await?;
        self.tracker.objects.lock().unwrap().insert(id, size);
        Ok(out)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let id = key_of(&req.input.bucket, &req.input.key);
        let out = self.inner.delete_object(req).await?;
        self.tracker.objects.lock().unwrap().remove(&id);
        Ok(out)
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let out = self.inner.create_multipart_upload(req).await?;
        if let Some(id) = &out.output.upload_id {
            self.tracker
                .uploads
                .lock()
                .unwrap()
                .insert(id.clone(), (bucket, key));
        }
        Ok(out)
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.inner.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        let object = key_of(&req.input.bucket, &req.input.key);
        let out = self.inner.complete_multipart_upload(req).await?;
        self.tracker.uploads.lock().unwrap().remove(&id);
        self.tracker.objects.lock().unwrap().insert(object, 0);
        Ok(out)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let id = req.input.upload_id.clone();
        let out = self.inner.abort_multipart_upload(req).await?;
        self.tracker.uploads.lock().unwrap().remove(&id);
        Ok(out)
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let prefix = req.input.prefix.clone().unwrap_or_default();
        let uploads = self
            .tracker
            .uploads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (bucket, key))| *bucket == req.input.bucket && key.starts_with(&prefix))
            .map(|(id, (_, key))| MultipartUpload {
                key: Some(key.clone()),
                upload_id: Some(id.clone()),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(req.input.bucket),
            is_truncated: Some(false),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let prefix = req.input.prefix.clone().unwrap_or_default();
        // An unversioned bucket lists each object once, with the version id "null".
        let versions = self
            .tracker
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(bucket, key)| *bucket == req.input.bucket && key.starts_with(&prefix))
            .map(|(_, key)| ObjectVersion {
                key: Some(key.clone()),
                version_id: Some("null".to_owned()),
                is_latest: Some(true),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(req.input.bucket),
            is_truncated: Some(false),
            versions: Some(versions),
            ..Default::default()
        }))
    }
}
