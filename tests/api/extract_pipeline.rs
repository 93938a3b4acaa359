//! The streaming pipeline on its own: synthetic source -> policy -> CSV -> zstd -> age -> store,
//! on both object stores, decrypted back with the age crate.

use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use steward::domain::level::Level;
use steward::extract::{
    extract_dataset, DatasetRequest, ExtractError, InvalidRowTolerance, JobControl, SourceLocation,
};
use steward::policy::catalog::FileType;
use steward::policy::plan;
use steward::policy::WithheldMembers;
use steward::storage::{
    ByteRange, GetObject, KeyPrefix, ObjectKey, ObjectMeta, ObjectStore, PendingUpload,
    SharedStore, StoreError,
};
use tokio::io::AsyncReadExt;

use crate::helpers::{test_settings, Store, TestStore};
use crate::on_both_stores;
use crate::policy_support::{catalog, everything_allowed, opt_outs, schema};

on_both_stores!(
    level_one_and_three_round_trip,
    malformed_row_publishes_nothing,
    cancelled_job_publishes_nothing
);

struct Harness {
    store: SharedStore,
    dir: tempfile::TempDir,
    _backing: TestStore,
}

async fn harness(kind: Store) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let backing = TestStore::create(kind, dir.path()).await;
    let settings = test_settings(dir.path(), "sqlite://unused.db", &backing.env);
    let store = steward::storage::from_settings(&settings).await.unwrap();
    Harness {
        store,
        dir,
        _backing: backing,
    }
}

fn synth(dir: &std::path::Path, rows: u64) -> std::path::PathBuf {
    let out = dir.join("synth");
    steward::synth::generate(&out, rows, 11).unwrap();
    out.join("med_claim.csv")
}

fn request(
    level: Level,
    source: SourceLocation,
    key: &str,
    recipients: Vec<Box<dyn age::Recipient + Send>>,
) -> DatasetRequest {
    let catalog = catalog();
    let release = everything_allowed(&catalog, FileType::MedClaim, level, "org-a");
    let plan = plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).unwrap();
    DatasetRequest {
        plan: Arc::new(plan),
        source,
        members: Arc::new(WithheldMembers::from(opt_outs(&[]))),
        tolerance: InvalidRowTolerance::default(),
        named: None,
        recipients,
        key: ObjectKey::parse(key).unwrap(),
    }
}

pub(crate) async fn stored_bytes(store: &SharedStore, key: &ObjectKey) -> Vec<u8> {
    let mut object = store.get(key, None).await.unwrap();
    let mut bytes = Vec::new();
    object.body.read_to_end(&mut bytes).await.unwrap();
    bytes
}

pub(crate) fn decrypt(ciphertext: &[u8], identity: &dyn age::Identity) -> Vec<u8> {
    let decryptor = age::Decryptor::new(ciphertext).unwrap();
    let mut reader = decryptor.decrypt(std::iter::once(identity)).unwrap();
    let mut compressed = Vec::new();
    reader.read_to_end(&mut compressed).unwrap();
    zstd::decode_all(compressed.as_slice()).unwrap()
}

async fn level_one_and_three_round_trip(kind: Store) {
    let h = harness(kind).await;
    let source = synth(h.dir.path(), 3000);
    let source_rows = csv::Reader::from_path(&source)
        .unwrap()
        .byte_records()
        .count() as u64;
    let first_source_row = {
        let mut reader = csv::Reader::from_path(&source).unwrap();
        let record = reader.records().next().unwrap().unwrap();
        record.iter().find(|f| f.len() > 8).unwrap().to_owned()
    };
    for level in [Level::I, Level::III] {
        let release_identity = age::x25519::Identity::generate();
        let recipient_identity = age::x25519::Identity::generate();
        let key = format!("releases/r-{level}/med_claim.csv.zst.age");
        let req = request(
            level,
            SourceLocation::Path(source.clone()),
            &key,
            vec![
                Box::new(release_identity.to_public()),
                Box::new(recipient_identity.to_public()),
            ],
        );
        let expected_header: Vec<String> =
            req.plan.header().iter().map(|c| (*c).to_owned()).collect();
        let control = Arc::new(JobControl::default());
        let sealed = extract_dataset(req, h.store.clone(), control.clone())
            .await
            .unwrap();
        assert_eq!(sealed.rows, source_rows);
        assert_eq!(control.rows(), source_rows);
        assert_eq!(sealed.columns, expected_header);

        let ciphertext = stored_bytes(&h.store, &sealed.key).await;
        assert!(
            ciphertext.starts_with(b"age-encryption.org/v1\n"),
            "stored bytes are age ciphertext"
        );
        assert_eq!(ciphertext.len() as u64, sealed.ciphertext.bytes);
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&ciphertext)),
            sealed.ciphertext.sha256
        );
        let needle = first_source_row.as_bytes();
        assert!(
            !ciphertext.windows(needle.len()).any(|w| w == needle),
            "no plaintext in the store"
        );

        for identity in [&release_identity as &dyn age::Identity, &recipient_identity] {
            let plaintext = decrypt(&ciphertext, identity);
            assert_eq!(plaintext.len() as u64, sealed.plaintext.bytes);
            assert_eq!(
                <[u8; 32]>::from(Sha256::digest(&plaintext)),
                sealed.plaintext.sha256
            );
            let mut reader = csv::Reader::from_reader(plaintext.as_slice());
            let header: Vec<String> = reader
                .headers()
                .unwrap()
                .iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(header, expected_header);
            assert_eq!(reader.byte_records().count() as u64, source_rows);
        }
        // A key that is not a recipient cannot decrypt.
        let stranger = age::x25519::Identity::generate();
        let decryptor = age::Decryptor::new(ciphertext.as_slice()).unwrap();
        assert!(decryptor
            .decrypt(std::iter::once(&stranger as &dyn age::Identity))
            .is_err());
    }
    assert!(h
        .store
        .pending_uploads(&KeyPrefix::parse("").unwrap())
        .await
        .unwrap()
        .is_empty());
}

async fn malformed_row_publishes_nothing(kind: Store) {
    let h = harness(kind).await;
    let source = synth(h.dir.path(), 2000);
    let mut text = std::fs::read_to_string(&source).unwrap();
    // Well past the first part size worth of output would be ideal; the end of the file suffices
    // to prove the object never appears.
    text.push_str("only,three,fields\n");
    let bad = h.dir.path().join("bad_med_claim.csv");
    std::fs::write(&bad, text).unwrap();
    let req = request(
        Level::I,
        SourceLocation::Path(bad.clone()),
        "releases/bad/med_claim.csv.zst.age",
        vec![Box::new(age::x25519::Identity::generate().to_public())],
    );
    let err = extract_dataset(req, h.store.clone(), Arc::new(JobControl::default()))
        .await
        .unwrap_err();
    match &err {
        ExtractError::MalformedRow {
            file,
            line,
            problem,
        } => {
            assert_eq!(file, &bad.display().to_string());
            assert!(*line > 2000, "{err}");
            assert!(problem.contains("fields"), "{err}");
        }
        other => panic!("expected a malformed-row error, got {other}"),
    }
    let everything = KeyPrefix::parse("").unwrap();
    assert!(
        h.store.list(&everything).await.unwrap().is_empty(),
        "nothing published"
    );
    assert!(
        h.store
            .pending_uploads(&everything)
            .await
            .unwrap()
            .is_empty(),
        "no upload left open"
    );
}

async fn cancelled_job_publishes_nothing(kind: Store) {
    let h = harness(kind).await;
    let source = synth(h.dir.path(), 20_000);
    let req = request(
        Level::I,
        SourceLocation::Path(source),
        "releases/cancelled/med_claim.csv.zst.age",
        vec![Box::new(age::x25519::Identity::generate().to_public())],
    );
    let control = Arc::new(JobControl::default());
    control.cancel();
    let err = extract_dataset(req, h.store.clone(), control)
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Cancelled), "{err}");
    let everything = KeyPrefix::parse("").unwrap();
    assert!(h.store.list(&everything).await.unwrap().is_empty());
    assert!(h
        .store
        .pending_uploads(&everything)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_sources_are_read() {
    let h = harness(Store::Fs).await;
    let source = synth(h.dir.path(), 500);
    let plain = std::fs::read(&source).unwrap();
    let zst = h.dir.path().join("med_claim.csv.zst");
    std::fs::write(&zst, zstd::encode_all(plain.as_slice(), 3).unwrap()).unwrap();
    let gz = h.dir.path().join("med_claim.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    let mut digests = Vec::new();
    for (i, path) in [source, zst, gz].into_iter().enumerate() {
        let req = request(
            Level::I,
            SourceLocation::Path(path),
            &format!("releases/c{i}/med_claim.csv.zst.age"),
            vec![Box::new(age::x25519::Identity::generate().to_public())],
        );
        let sealed = extract_dataset(req, h.store.clone(), Arc::new(JobControl::default()))
            .await
            .unwrap();
        digests.push((sealed.rows, sealed.plaintext));
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "same plaintext from every encoding: {digests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_source_is_named() {
    let h = harness(Store::Fs).await;
    let req = request(
        Level::I,
        SourceLocation::Path(h.dir.path().join("nope.csv")),
        "releases/x/med_claim.csv.zst.age",
        vec![Box::new(age::x25519::Identity::generate().to_public())],
    );
    let err = extract_dataset(req, h.store.clone(), Arc::new(JobControl::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Source { .. }), "{err}");
    assert!(err.to_string().contains("nope.csv"), "{err}");
}

/// A store whose uploads fail after the first `fail_after` bytes, as a bucket that goes away
/// mid-upload; everything else goes to the wrapped store.
#[derive(Debug)]
struct FailingUploads {
    inner: SharedStore,
    fail_after: usize,
}

#[async_trait::async_trait]
impl ObjectStore for FailingUploads {
    fn describe(&self) -> String {
        "failing uploads".to_owned()
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }
    async fn put(
        &self,
        key: &ObjectKey,
        body: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError> {
        let mut taken = vec![0u8; self.fail_after];
        body.read_exact(&mut taken).await.unwrap();
        Err(StoreError::S3 {
            op: "UploadPart",
            target: key.to_string(),
            message: "injected: the bucket went away".to_owned(),
        })
    }
    async fn get(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<GetObject, StoreError> {
        self.inner.get(key, range).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn pending_uploads(&self, prefix: &KeyPrefix) -> Result<Vec<PendingUpload>, StoreError> {
        self.inner.pending_uploads(prefix).await
    }
    async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        self.inner.abort_upload(upload).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_reported_as_the_cause() {
    let h = harness(Store::Fs).await;
    let source = synth(h.dir.path(), 20_000);
    let store: SharedStore = Arc::new(FailingUploads {
        inner: h.store.clone(),
        fail_after: 64 * 1024,
    });
    let req = request(
        Level::I,
        SourceLocation::Path(source),
        "releases/failing/med_claim.csv.zst.age",
        vec![Box::new(age::x25519::Identity::generate().to_public())],
    );
    let err = extract_dataset(req, store, Arc::new(JobControl::default()))
        .await
        .unwrap_err();
    // Not "the upload stage stopped" from the stages upstream: the store's own error.
    assert!(
        matches!(err, ExtractError::Store(StoreError::S3 { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("the bucket went away"), "{err}");
    let everything = KeyPrefix::parse("").unwrap();
    assert!(h.store.list(&everything).await.unwrap().is_empty());
}
