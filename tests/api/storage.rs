use std::pin::Pin;
use std::task::{Context, Poll};

use steward::storage::{ByteRange, KeyPrefix, ObjectKey, SharedStore, StoreError};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::helpers::{test_settings, Store, TestStore};
use crate::on_both_stores;

on_both_stores!(
    small_put_get_head_list_delete,
    multipart_put_and_ranged_get,
    interrupted_multipart_put_leaves_nothing,
    missing_objects_and_bad_ranges_are_precise,
    pending_uploads_can_be_swept,
);

const PART: usize = 5 * 1024 * 1024;

struct Harness {
    store: SharedStore,
    _backing: TestStore,
    _dir: tempfile::TempDir,
}

async fn harness(kind: Store) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let backing = TestStore::create(kind, dir.path()).await;
    let settings = test_settings(dir.path(), "sqlite://unused.db", &backing.env);
    let store = steward::storage::from_settings(&settings).await.unwrap();
    store.check().await.unwrap();
    Harness {
        store,
        _backing: backing,
        _dir: dir,
    }
}

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).unwrap()
}

/// Deterministic bytes that differ at every offset, so a wrong range shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn read_all(store: &SharedStore, k: &ObjectKey, range: Option<ByteRange>) -> Vec<u8> {
    let mut object = store.get(k, range).await.unwrap();
    let mut out = Vec::new();
    object.body.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.len() as u64, object.len);
    out
}

async fn small_put_get_head_list_delete(kind: Store) {
    let h = harness(kind).await;
    let data = b"age-encryption.org/v1 not really".to_vec();
    let k = key("releases/r1/small.bin");
    let stored = h.store.put(&k, &mut data.as_slice()).await.unwrap();
    assert_eq!(stored, data.len() as u64);
    assert_eq!(read_all(&h.store, &k, None).await, data);
    assert_eq!(h.store.head(&k).await.unwrap().size, data.len() as u64);
    h.store
        .put(&key("releases/r2/other.bin"), &mut &b"x"[..])
        .await
        .unwrap();

    let listed = h
        .store
        .list(&KeyPrefix::parse("releases/r1/").unwrap())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["releases/r1/small.bin"]
    );
    assert_eq!(listed[0].size, data.len() as u64);
    assert_eq!(
        h.store
            .list(&KeyPrefix::parse("").unwrap())
            .await
            .unwrap()
            .len(),
        2
    );

    h.store.delete(&k).await.unwrap();
    assert!(matches!(
        h.store.head(&k).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(h
        .store
        .list(&KeyPrefix::parse("releases/r1/").unwrap())
        .await
        .unwrap()
        .is_empty());
    // Deleting again is not an error: destruction may be retried.
    h.store.delete(&k).await.unwrap();
}

async fn multipart_put_and_ranged_get(kind: Store) {
    let h = harness(kind).await;
    let data = pattern(2 * PART + 12345);
    let k = key("releases/r1/big.csv.zst.age");
    assert_eq!(
        h.store.put(&k, &mut data.as_slice()).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(h.store.head(&k).await.unwrap().size, data.len() as u64);
    assert_eq!(read_all(&h.store, &k, None).await, data);

    let middle = ByteRange {
        start: PART as u64 - 10,
        end: Some(PART as u64 + 9),
    };
    assert_eq!(
        read_all(&h.store, &k, Some(middle)).await,
        &data[PART - 10..PART + 10]
    );
    let tail = ByteRange {
        start: data.len() as u64 - 100,
        end: None,
    };
    assert_eq!(
        read_all(&h.store, &k, Some(tail)).await,
        &data[data.len() - 100..]
    );
    let past_end = ByteRange {
        start: 0,
        end: Some(u64::MAX),
    };
    assert_eq!(
        read_all(&h.store, &k, Some(past_end)).await.len(),
        data.len()
    );
    assert!(h
        .store
        .pending_uploads(&KeyPrefix::parse("").unwrap())
        .await
        .unwrap()
        .is_empty());
}

/// Yields `good` bytes, then fails, like a pipeline stage that broke mid-stream.
struct FailingReader {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for FailingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Ready(Err(std::io::Error::other("source broke")));
        }
        let n = buf
            .remaining()
            .min(self.data.len() - self.pos)
            .min(64 * 1024);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

async fn interrupted_multipart_put_leaves_nothing(kind: Store) {
    let h = harness(kind).await;
    let k = key("releases/r1/interrupted.age");
    let mut reader = FailingReader {
        data: pattern(2 * PART + 1000),
        pos: 0,
    };
    let err = h.store.put(&k, &mut reader).await.unwrap_err();
    assert!(matches!(err, StoreError::Body { .. }), "{err}");
    assert!(err.to_string().contains("source broke"), "{err}");
    assert!(matches!(
        h.store.head(&k).await,
        Err(StoreError::NotFound(_))
    ));
    let everything = KeyPrefix::parse("").unwrap();
    assert!(h.store.list(&everything).await.unwrap().is_empty());
    assert!(
        h.store
            .pending_uploads(&everything)
            .await
            .unwrap()
            .is_empty(),
        "no upload left open"
    );
}

async fn missing_objects_and_bad_ranges_are_precise(kind: Store) {
    let h = harness(kind).await;
    let missing = key("releases/none/x");
    assert!(matches!(
        h.store.get(&missing, None).await,
        Err(StoreError::NotFound(_))
    ));
    let k = key("releases/r1/ten");
    h.store.put(&k, &mut &b"0123456789"[..]).await.unwrap();
    for range in [
        ByteRange {
            start: 10,
            end: None,
        },
        ByteRange {
            start: 5,
            end: Some(4),
        },
    ] {
        match h.store.get(&k, Some(range)).await {
            Err(StoreError::RangeNotSatisfiable { size: 10 }) => {}
            other => panic!("{range:?}: {other:?}"),
        }
    }
}

async fn pending_uploads_can_be_swept(kind: Store) {
    let h = harness(kind).await;
    let k = key("releases/r1/abandoned.age");
    // Simulate a writer that died mid-put: start an upload and never finish it.
    let pending = start_abandoned_upload(&h, &k, kind).await;
    let everything = KeyPrefix::parse("releases/").unwrap();
    let listed = h.store.pending_uploads(&everything).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, k);
    assert!(h
        .store
        .pending_uploads(&KeyPrefix::parse("other/").unwrap())
        .await
        .unwrap()
        .is_empty());
    h.store.abort_upload(&listed[0]).await.unwrap();
    assert!(h
        .store
        .pending_uploads(&everything)
        .await
        .unwrap()
        .is_empty());
    assert!(h.store.list(&everything).await.unwrap().is_empty());
    drop(pending);
}

/// Leaves a started, unfinished upload in the store, as a killed process would.
async fn start_abandoned_upload(h: &Harness, k: &ObjectKey, kind: Store) -> Option<String> {
    match kind {
        Store::Fs => {
            let dir = h._dir.path().join("objects/.uploads");
            std::fs::create_dir_all(&dir).unwrap();
            let name = format!(
                "{}~{}",
                uuid::Uuid::new_v4().simple(),
                k.as_str().replace('/', "!")
            );
            std::fs::write(dir.join(&name), b"partial ciphertext").unwrap();
            Some(name)
        }
        Store::S3 => {
            let server = h._backing.s3.as_ref().unwrap();
            let conf = aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(&server.endpoint)
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    crate::s3_server::ACCESS_KEY,
                    crate::s3_server::SECRET_KEY,
                    None,
                    None,
                    "test",
                ))
                .http_client(
                    aws_smithy_http_client::Builder::new()
                        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                        ))
                        .build_https(),
                )
                .build();
            let client = aws_sdk_s3::Client::from_conf(conf);
            let created = client
                .create_multipart_upload()
                .bucket(crate::s3_server::BUCKET)
                .key(k.as_str())
                .send()
                .await
                .unwrap();
            created.upload_id().map(str::to_owned)
        }
    }
}
