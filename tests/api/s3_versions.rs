//! `S3Store::delete` against a real versioned bucket: every version and every delete marker of
//! the key goes, and nothing of a neighbouring key does. The in-process server (`s3_server`)
//! keeps no versions, so this test starts a real S3 server binary on a loopback port: MinIO
//! when it can find one, else moto's server (which `.ci/run` installs from PyPI). Without
//! either it is skipped, except under CI, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_s3::Client;
use secrecy::SecretString;
use steward::storage::{KeyPrefix, ObjectKey, ObjectStore, S3Store, S3StoreConfig, StoreError};

const ACCESS_KEY: &str = "steward-versions";
const SECRET_KEY: &str = "steward-versions-secret";
const BUCKET: &str = "steward-versions";
const REGION: &str = "us-east-1";

/// Which server binary runs the bucket.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Minio,
    Moto,
}

/// A running server; killed, and its data directory removed, on drop.
struct Server {
    kind: Kind,
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// `name` as an executable file on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The binary from `env` (a path), else `name` on PATH, else `fallback` under the crate root.
fn find(env: &str, name: &str, fallback: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} is not a file", path.display());
        return Some(path);
    }
    on_path(name).or_else(|| {
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(fallback)).filter(|p| p.is_file())
    })
}

fn find_server() -> Option<(Kind, PathBuf)> {
    find("STEWARD_TEST_MINIO", "minio", "target/tools/minio")
        .map(|path| (Kind::Minio, path))
        .or_else(|| {
            find(
                "STEWARD_TEST_MOTO",
                "moto_server",
                "target/tools/moto/bin/moto_server",
            )
            .map(|path| (Kind::Moto, path))
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

async fn start(kind: Kind, binary: &Path) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
    let port = free_port();
    let mut command = Command::new(binary);
    let health = match kind {
        Kind::Minio => {
            command
                .arg("server")
                .arg(dir.path().join("data"))
                .arg("--address")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--console-address")
                .arg(format!("127.0.0.1:{}", free_port()))
                .arg("--quiet")
                .env("MINIO_ROOT_USER", ACCESS_KEY)
                .env("MINIO_ROOT_PASSWORD", SECRET_KEY)
                .env("MINIO_BROWSER", "off");
            "/minio/health/live"
        }
        Kind::Moto => {
            // moto accepts any credentials; it keeps the bucket in memory.
            command
                .args(["-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .current_dir(dir.path());
            "/moto-api/"
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let mut server = Server {
        kind,
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let http = reqwest::Client::new();
    let url = format!("{}{health}", server.endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status().is_success() {
                return server;
            }
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{kind:?} exited with {status} before it was ready:\n{}",
                server.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?} not ready at {url} after 60 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain client with the store's endpoint, credentials and addressing, to set the bucket up
/// and to look behind the store.
async fn raw_client(endpoint: &str) -> Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .load()
        .await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// Every version and delete marker under `prefix`, as (key, version id), sorted.
async fn versions(client: &Client, prefix: &str) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let (mut versions, mut markers) = (Vec::new(), Vec::new());
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = client
            .list_object_versions()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .expect("ListObjectVersions");
        let pair = |key: Option<&str>, version: Option<&str>| {
            (
                key.unwrap_or_default().to_owned(),
                version.unwrap_or_default().to_owned(),
            )
        };
        versions.extend(
            page.versions()
                .iter()
                .map(|v| pair(v.key(), v.version_id())),
        );
        markers.extend(
            page.delete_markers()
                .iter()
                .map(|m| pair(m.key(), m.version_id())),
        );
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    versions.sort();
    markers.sort();
    (versions, markers)
}

fn keys_of(pairs: &[(String, String)], key: &str) -> usize {
    pairs.iter().filter(|(k, _)| k == key).count()
}

async fn listed(store: &S3Store, prefix: &KeyPrefix) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key.as_str().to_owned())
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_every_version_and_delete_marker() {
    let Some((kind, binary)) = find_server() else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty()) {
            panic!(
                "no S3 server binary: CI must install one (STEWARD_TEST_MINIO or STEWARD_TEST_MOTO)"
            );
        }
        println!("SKIPPED s3_versions: minio not installed (nor moto_server; .ci/run installs it)");
        return;
    };
    let server = start(kind, &binary).await;
    println!(
        "s3_versions: {:?} at {} ({})",
        server.kind,
        server.endpoint,
        binary.display()
    );

    let client = raw_client(&server.endpoint).await;
    client
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    client
        .put_bucket_versioning()
        .bucket(BUCKET)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    // No GetBucketVersioning check: moto answers it with a root element the SDK refuses
    // (GetBucketVersioningResponse); the versions listed below show versioning is on.

    let store = S3Store::new(S3StoreConfig {
        bucket: BUCKET.into(),
        region: REGION.into(),
        endpoint: Some(server.endpoint.clone()),
        force_path_style: true,
        credentials: Some((ACCESS_KEY.into(), SecretString::from(SECRET_KEY))),
        part_size: 5 * 1024 * 1024,
    })
    .await;
    store.check().await.expect("HeadBucket through the store");

    let prefix_str = "releases/r1/";
    let prefix = KeyPrefix::parse(prefix_str).unwrap();
    let rewritten = ObjectKey::parse("releases/r1/data.age").unwrap();
    let hidden = ObjectKey::parse("releases/r1/gone.age").unwrap();
    // Starts with `rewritten`'s key, so the store's ListObjectVersions prefix matches it too.
    let neighbour = ObjectKey::parse("releases/r1/data.age.sig").unwrap();

    for body in [&b"first"[..], b"second body", b"third, longest body"] {
        store.put(&rewritten, &mut &body[..]).await.expect("put");
    }
    store.put(&hidden, &mut &b"soon hidden"[..]).await.unwrap();
    let marker = client
        .delete_object()
        .bucket(BUCKET)
        .key(hidden.as_str())
        .send()
        .await
        .expect("DeleteObject without a version id");
    assert_eq!(marker.delete_marker(), Some(true), "{marker:?}");
    store.put(&neighbour, &mut &b"signature"[..]).await.unwrap();

    let (before, before_markers) = versions(&client, prefix_str).await;
    println!("s3_versions: before delete: versions {before:?}, delete markers {before_markers:?}");
    assert!(keys_of(&before, rewritten.as_str()) >= 3, "{before:?}");
    assert_eq!(keys_of(&before, hidden.as_str()), 1, "{before:?}");
    assert_eq!(
        keys_of(&before_markers, hidden.as_str()),
        1,
        "{before_markers:?}"
    );
    assert_eq!(keys_of(&before, neighbour.as_str()), 1, "{before:?}");
    // The delete marker hides `hidden` from a plain listing, but not its version.
    assert_eq!(
        listed(&store, &prefix).await,
        [rewritten.as_str(), neighbour.as_str()]
    );

    // What destruction walks: every key the store keeps anything of, the hidden one included.
    let kept: Vec<String> = store
        .stored_keys(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        kept,
        [rewritten.as_str(), neighbour.as_str(), hidden.as_str()]
    );

    store.delete(&rewritten).await.expect("delete rewritten");
    store.delete(&hidden).await.expect("delete hidden");

    let (after, after_markers) = versions(&client, prefix_str).await;
    println!("s3_versions: after delete: versions {after:?}, delete markers {after_markers:?}");
    // Only the neighbour is left, untouched, and no delete marker was added for either key.
    assert_eq!(
        after.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [neighbour.as_str()]
    );
    assert_eq!(after_markers, Vec::<(String, String)>::new());
    assert_eq!(listed(&store, &prefix).await, [neighbour.as_str()]);
    assert!(matches!(
        store.head(&rewritten).await,
        Err(StoreError::NotFound(_))
    ));

    store.delete(&neighbour).await.expect("delete neighbour");
    let (last, last_markers) = versions(&client, prefix_str).await;
    assert!(last.is_empty(), "versions left: {last:?}");
    assert!(
        last_markers.is_empty(),
        "delete markers left: {last_markers:?}"
    );
    assert!(listed(&store, &prefix).await.is_empty());
    assert!(store.stored_keys(&prefix).await.unwrap().is_empty());
    // Deleting a key that has nothing left is not an error.
    store.delete(&rewritten).await.expect("delete again");
    let (none, no_markers) = versions(&client, prefix_str).await;
    assert!(
        none.is_empty() && no_markers.is_empty(),
        "{none:?} {no_markers:?}"
    );
    println!("s3_versions: {kind:?}: every version and delete marker deleted");
}
