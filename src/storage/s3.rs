//! An S3-compatible store through aws-sdk-s3 (AWS S3, MinIO, Garage, Ceph RGW).
//!
//! A body that fits in one part goes up in a single PutObject; a larger one as a multipart
//! upload that is completed only after its last part, and aborted on any failure, so S3 never
//! shows a partial object and no parts are left billed.

use async_trait::async_trait;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{
    ByteRange, GetObject, KeyPrefix, ObjectKey, ObjectMeta, ObjectStore, PendingUpload, StoreError,
};

/// Parts uploading at once: one going up while the next is filled, plus one of slack.
const PARTS_IN_FLIGHT: usize = 2;

/// What an [`S3Store`] needs.
#[derive(Debug, Clone)]
pub struct S3StoreConfig {
    /// The bucket.
    pub bucket: String,
    /// The signing region.
    pub region: String,
    /// Endpoint URL, for stores other than AWS.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub force_path_style: bool,
    /// Static credentials; `None` uses the standard AWS chain.
    pub credentials: Option<(String, SecretString)>,
    /// Multipart part size in bytes.
    pub part_size: usize,
}

/// Objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    part_size: usize,
}

impl S3Store {
    /// Builds the client; makes no request.
    pub async fn new(config: S3StoreConfig) -> Self {
        // rustls with ring, like the rest of Steward, rather than the SDK's default provider.
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(config.region.clone()));
        if let Some((id, secret)) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret.expose_secret(),
                None,
                None,
                "steward-config",
            ));
        }
        let shared = loader.load().await;
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            // Checksums only where S3 demands them: not every compatible store accepts the
            // streaming trailers the SDK would otherwise send; integrity is ours to check
            // (SHA-256 of every object in the manifest).
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket,
            part_size: config.part_size,
        }
    }

    fn error<E>(
        &self,
        op: &'static str,
        target: &str,
        err: aws_sdk_s3::error::SdkError<E>,
    ) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StoreError::S3 {
            op,
            target: format!("s3://{}/{}", self.bucket, target),
            message: DisplayErrorContext(&err).to_string(),
        }
    }

    async fn multipart(
        &self,
        key: &ObjectKey,
        first: Vec<u8>,
        body: &mut (dyn AsyncRead + Send + Unpin),
        upload_id: &str,
    ) -> Result<u64, StoreError> {
        // Parts go up while the next one is read, up to PARTS_IN_FLIGHT at once, so the
        // pipeline keeps producing while the network is busy; memory stays bounded by that many
        // part buffers.
        let mut in_flight = std::collections::VecDeque::new();
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut chunk = first;
        let result = async {
            for part_number in 1.. {
                total += chunk.len() as u64;
                in_flight.push_back(self.spawn_part(key, upload_id, part_number, chunk));
                if in_flight.len() >= PARTS_IN_FLIGHT {
                    if let Some(oldest) = in_flight.pop_front() {
                        parts.push(self.finish_part(key, oldest).await?);
                    }
                }
                chunk = read_part(key, body, self.part_size).await?;
                if chunk.is_empty() {
                    break;
                }
            }
            while let Some(next) = in_flight.pop_front() {
                parts.push(self.finish_part(key, next).await?);
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(error) = result {
            // Stop the parts still going up before the caller aborts the whole upload.
            for handle in in_flight {
                handle.abort();
            }
            return Err(error);
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.error("CompleteMultipartUpload", key.as_str(), e))?;
        Ok(total)
    }

    /// Starts uploading one part on its own task.
    fn spawn_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: i32,
        chunk: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<CompletedPart, StoreError>> {
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            self.bucket.clone(),
            key.clone(),
            upload_id.to_owned(),
        );
        tokio::spawn(async move {
            let output = client
                .upload_part()
                .bucket(&bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .part_number(part_number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| StoreError::S3 {
                    op: "UploadPart",
                    target: format!("s3://{bucket}/{key}"),
                    message: DisplayErrorContext(&e).to_string(),
                })?;
            Ok(CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(output.e_tag)
                .build())
        })
    }

    /// Waits for one part's upload.
    async fn finish_part(
        &self,
        key: &ObjectKey,
        handle: tokio::task::JoinHandle<Result<CompletedPart, StoreError>>,
    ) -> Result<CompletedPart, StoreError> {
        handle.await.map_err(|e| StoreError::S3 {
            op: "UploadPart",
            target: key.to_string(),
            message: format!("the upload task stopped: {e}"),
        })?
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.error("AbortMultipartUpload", key, e))?;
        Ok(())
    }

    /// Every version and delete marker under `prefix`, as (key, version id); `None` when the
    /// store has no versioning API.
    async fn versions_under(
        &self,
        prefix: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, StoreError> {
        let mut found = Vec::new();
        let mut key_marker = None;
        let mut version_marker = None;
        loop {
            let page = match self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if e.code() == Some("NotImplemented") => return Ok(None),
                Err(e) => return Err(self.error("ListObjectVersions", prefix, e)),
            };
            let listed = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (key, version) in listed {
                if let Some(key) = key {
                    found.push((key.to_owned(), version.map(str::to_owned)));
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(Some(found));
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
        }
    }

    /// Deletes every version and delete marker of `key`; false when the store has no versioning API.
    async fn delete_versions(&self, key: &ObjectKey) -> Result<bool, StoreError> {
        let Some(versions) = self.versions_under(key.as_str()).await? else {
            return Ok(false);
        };
        // The prefix also matches longer keys; only this exact key is ours to delete.
        for (_, version) in versions.into_iter().filter(|(k, _)| k == key.as_str()) {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .set_version_id(version)
                .send()
                .await
                .map_err(|e| self.error("DeleteObject", key.as_str(), e))?;
        }
        Ok(true)
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.error("HeadBucket", "", e))?;
        Ok(())
    }

    async fn put(
        &self,
        key: &ObjectKey,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let first = read_part(key, body, self.part_size).await?;
        if first.len() < self.part_size {
            let len = first.len() as u64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| self.error("PutObject", key.as_str(), e))?;
            return Ok(len);
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key.as_str(), e))?;
        let upload_id = created.upload_id().ok_or_else(|| StoreError::S3 {
            op: "CreateMultipartUpload",
            target: key.to_string(),
            message: "the response carried no upload id".into(),
        })?;
        match self.multipart(key, first, body, upload_id).await {
            Ok(total) => Ok(total),
            Err(err) => {
                if let Err(abort) = self.abort(key.as_str(), upload_id).await {
                    // The original failure is what the caller must see; the sweep retries this.
                    tracing::warn!(key = %key, error = %abort, "could not abort a failed multipart upload");
                }
                Err(err)
            }
        }
    }

    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StoreError> {
        let size = self.head(key).await?.size;
        let (offset, len) = match range {
            None => (0, size),
            Some(range) => range
                .resolve(size)
                .ok_or(StoreError::RangeNotSatisfiable { size })?,
        };
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str());
        if range.is_some() {
            request = request.range(format!("bytes={}-{}", offset, offset + len - 1));
        }
        let output = request.send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                StoreError::NotFound(key.clone())
            } else {
                self.error("GetObject", key.as_str(), e)
            }
        })?;
        Ok(GetObject {
            size,
            offset,
            len,
            body: Box::pin(output.body.into_async_read().take(len)),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    StoreError::NotFound(key.clone())
                } else {
                    self.error("HeadObject", key.as_str(), e)
                }
            })?;
        Ok(ObjectMeta {
            key: key.clone(),
            size: output.content_length().unwrap_or(0).max(0) as u64,
        })
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        if !self.delete_versions(key).await? {
            // A store without versioning keeps one copy; deleting the key removes it.
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key.as_str())
                .send()
                .await
                .map_err(|e| self.error("DeleteObject", key.as_str(), e))?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix.as_str())
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.error("ListObjectsV2", prefix.as_str(), e))?;
            for object in page.contents() {
                let Some(Ok(key)) = object.key().map(ObjectKey::parse) else {
                    continue;
                };
                found.push(ObjectMeta {
                    key,
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn stored_keys(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>, StoreError> {
        let mut keys: std::collections::BTreeSet<ObjectKey> = self
            .versions_under(prefix.as_str())
            .await?
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, _)| ObjectKey::parse(&key).ok())
            .collect();
        // Without a versioning API (or one that lists no plain objects), what `list` shows.
        keys.extend(self.list(prefix).await?.into_iter().map(|m| m.key));
        Ok(keys.into_iter().collect())
    }

    async fn pending_uploads(&self, prefix: &KeyPrefix) -> Result<Vec<PendingUpload>, StoreError> {
        let mut found = Vec::new();
        let mut key_marker = None;
        let mut upload_marker = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix.as_str())
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_marker.take())
                .send()
                .await
                .map_err(|e| self.error("ListMultipartUploads", prefix.as_str(), e))?;
            for upload in page.uploads() {
                let (Some(Ok(key)), Some(id)) =
                    (upload.key().map(ObjectKey::parse), upload.upload_id())
                else {
                    continue;
                };
                found.push(PendingUpload {
                    key,
                    upload_id: id.to_owned(),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            upload_marker = page.next_upload_id_marker().map(str::to_owned);
        }
        Ok(found)
    }

    async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        self.abort(upload.key.as_str(), &upload.upload_id).await
    }
}

/// Reads up to `size` bytes: a full part, or less only at the end of the body.
async fn read_part(
    key: &ObjectKey,
    body: &mut (dyn AsyncRead + Send + Unpin),
    size: usize,
) -> Result<Vec<u8>, StoreError> {
    let mut part = Vec::with_capacity(size);
    let mut limited = body.take(size as u64);
    limited
        .read_to_end(&mut part)
        .await
        .map_err(|source| StoreError::Body {
            key: key.clone(),
            source,
        })?;
    Ok(part)
}
