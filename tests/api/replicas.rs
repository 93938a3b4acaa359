//! Issue 12, finding 5: each process generated its own JWT and signing keys under its data
//! directory, so a session from one replica was refused by another and a worker's manifests
//! were signed by a key no server publishes. Here two `serve` replicas (this test's in-process
//! one and a `steward serve` process) and a `steward worker`, each with its own data
//! directory, share one PostgreSQL, one object store and the keys `steward keys init` made.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use steward::db::extracts;
use steward::extract::manifest;
use tokio::io::AsyncReadExt;

use crate::helpers::{client_trusting, spawn_app_configured, Db, Store};
use crate::release_support::{executed_level_one, people};

struct Running(
    Child,
    #[allow(dead_code)] Option<BufReader<std::process::ChildStdout>>,
);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn steward() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

/// Starts a `steward serve` process with `env` and its own data directory; returns it, its URL
/// and a client that trusts its CA.
fn serve_replica(env: &[(String, String)], data_dir: &Path) -> (Running, String, reqwest::Client) {
    let mut command = steward();
    command
        .arg("serve")
        .envs(env.iter().cloned())
        .env("STEWARD_DATA_DIR", data_dir)
        .env("STEWARD_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().expect("replica starts");
    let mut banner = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        banner.read_line(&mut line).unwrap();
        lines.push(line);
    }
    let port: u16 = lines[0]
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {lines:?}"));
    (
        Running(child, Some(banner)),
        format!("https://localhost:{port}"),
        client_trusting(&data_dir.join("tls/ca.pem")),
    )
}

/// A new directory with the keys `steward keys init` makes in `keys/`.
fn keys_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let made = steward()
        .args(["keys", "init", "--dir"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (dir, keys)
}

/// What another process shares with replica `a`: database, store and `env` (the keys); not
/// the data directory.
fn replica_env(a: &crate::helpers::TestApp, env: &[(String, String)]) -> Vec<(String, String)> {
    let mut common: Vec<(String, String)> = a
        .shared_env()
        .into_iter()
        .filter(|(k, _)| k != "STEWARD_DATA_DIR")
        .collect();
    common.push((
        "STEWARD_STORAGE__FS__ROOT".into(),
        a.state.settings.fs_store_root().display().to_string(),
    ));
    common.extend(env.iter().cloned());
    common
}

/// The settings every process shares: the keys from `steward keys init`.
fn shared_keys(keys: &Path) -> Vec<(String, String)> {
    [
        ("STEWARD_KEYS__MASTER_IDENTITY_FILE", "master.age"),
        ("STEWARD_KEYS__SIGNING_KEY_FILE", "signing.key"),
        ("STEWARD_KEYS__JWT_KEYS_DIR", "jwt"),
        ("STEWARD_POLICY__LINKAGE_SECRET_FILE", "linkage.secret"),
        ("STEWARD_POLICY__OPTOUT_SECRET_FILE", "optout.secret"),
    ]
    .into_iter()
    .map(|(k, f)| (k.to_owned(), keys.join(f).display().to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_a_worker_share_sessions_and_the_signing_key() {
    if crate::helpers::postgres_url("replicas").is_none() {
        return;
    }
    let (dir, keys) = keys_dir();
    steward::synth::generate(&dir.path().join("synth"), 200, 4).unwrap();
    let source = dir.path().join("synth/med_elig.csv").display().to_string();
    let mut env = shared_keys(&keys);
    env.push(("STEWARD_JOBS__RUN_IN_SERVE".into(), "false".into()));
    env.push(("STEWARD_EXTRACT__SOURCES__MED_ELIG".into(), source));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = spawn_app_configured(Db::Postgres, Store::Fs, &env_refs).await;

    // What the other processes share with replica A: database, store, keys; not the data
    // directory.
    let common = replica_env(&a, &env);

    let (_b, b_url, b_client) = serve_replica(&common, &dir.path().join("replica-b"));

    // A worker with its own data directory builds an extract started at A.
    let p = people(&a).await;
    let release = executed_level_one(&a, &p, "DUA-2026-0601").await;
    let start = a
        .call(
            "POST",
            &format!("/api/v1/releases/{release}/extract"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(start.status().is_success());
    let mut worker = steward();
    worker
        .arg("worker")
        .envs(common.iter().cloned())
        .env("STEWARD_DATA_DIR", dir.path().join("worker"))
        .env("STEWARD_JOBS__POLL_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let _worker = Running(worker.spawn().expect("worker starts"), None);
    let release_id: uuid::Uuid = release.parse().unwrap();
    let mut files = Vec::new();
    for _ in 0..120 {
        files = extracts::files(&a.state.db, release_id).await.unwrap();
        if !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let manifest_file = files
        .iter()
        .find(|f| f.name == "manifest.json")
        .expect("the worker published the extract");

    // A session opened at A is valid at B. (A runs on a test clock; B keeps real time, so
    // this session is opened at A at the real time.)
    let officer = a
        .create_user(
            "crossing",
            "Agency",
            &[steward::domain::role::Role::PrivacyOfficer],
        )
        .await;
    a.clock
        .set(time::OffsetDateTime::now_utc() - time::Duration::seconds(30));
    let session = a.login(&officer).await;
    let me = b_client
        .get(format!("{b_url}/api/v1/me"))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "A's session at B");
    let key_at = |client: reqwest::Client, url: String, token: String| async move {
        let json: serde_json::Value = client
            .get(format!("{url}/api/v1/server/signing-key"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        json["public_key"].as_str().unwrap().to_owned()
    };
    let b_key = key_at(
        b_client.clone(),
        b_url.clone(),
        session.access_token.clone(),
    )
    .await;
    let a_key = key_at(
        a.client.clone(),
        a.url.clone(),
        session.access_token.clone(),
    )
    .await;
    assert_eq!(a_key, b_key);

    // The worker's manifest verifies with the key B publishes.
    let mut object = a
        .state
        .store
        .get(
            &steward::storage::ObjectKey::parse(&manifest_file.object_key).unwrap(),
            None,
        )
        .await
        .unwrap();
    let mut bytes = Vec::new();
    object.body.read_to_end(&mut bytes).await.unwrap();
    manifest::verify(&bytes, &b_key).expect("the worker's manifest verifies with B's key");

    // Issue 11: both replicas append at once (A in process, B over HTTPS, the worker from its
    // job) and both run a sequencer; the log is one chain and one tree, every event once.
    let appends = (0..300).map(|i| {
        let audit = a.state.audit.clone();
        async move {
            audit
                .append(&steward::audit::AccessEvent::new(
                    steward::audit::Actor::System,
                    steward::audit::Action::SchemaMigrated,
                    steward::audit::Target::Schema(i),
                    steward::audit::Outcome::Succeeded,
                ))
                .await
                .unwrap();
        }
    });
    let reads = (0..60).map(|_| {
        let (client, url, token) = (
            b_client.clone(),
            b_url.clone(),
            session.access_token.clone(),
        );
        async move {
            let status = client
                .get(format!("{url}/api/v1/me/access-log?limit=1"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    });
    futures_util::future::join(
        futures_util::future::join_all(appends),
        futures_util::future::join_all(reads),
    )
    .await;
    let mut records = Vec::new();
    for _ in 0..100 {
        records = a.state.audit.records_after(0, 1_000_000).await.unwrap();
        if records.iter().all(|r| r.seq.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        records.iter().all(|r| r.seq.is_some()),
        "the sequencers integrated every event"
    );
    let seqs: std::collections::BTreeSet<i64> = records.iter().map(|r| r.seq.unwrap()).collect();
    assert_eq!(seqs.len(), records.len(), "one position per event");
    assert_eq!(*seqs.iter().last().unwrap(), records.len() as i64, "no gap");
    let b_reads = records
        .iter()
        .filter(|r| {
            r.action == "access_log_reviewed"
                && r.actor_user.as_deref() == Some(officer.id.to_string().as_str())
        })
        .count();
    assert!(b_reads >= 60, "B's events are in the one log ({b_reads})");
    let expect = steward::audit::verify::Expectations {
        verifier_key: a.state.sequencer.signer().verifier_key(),
        exported: Vec::new(),
        trusted: None,
        integrate_before: "0000".into(),
    };
    let verified = steward::audit::verify::verify_log(
        &mut steward::audit::verify::DatabaseLog::open(&a.state.db)
            .await
            .unwrap(),
        &expect,
    )
    .await
    .unwrap()
    .expect("one consistent chain and tree, checkpoints of both replicas included");
    assert_eq!(verified.records, records.len() as u64);
}

/// Issue 13: a revocation made at one replica cuts, within a second, a stream that the other
/// replica serves (PostgreSQL NOTIFY from the revocation's transaction). Both replicas re-check
/// only every ten minutes here, so nothing but the signal can cut the stream in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_at_one_replica_cuts_a_stream_at_the_other_within_a_second() {
    use crate::download_support::{app_with_source, available, dua_terms_from, link, make_large};
    use crate::release_support::{expect, people};
    if crate::helpers::postgres_url("replicas").is_none() {
        return;
    }
    let (dir, keys) = keys_dir();
    let mut env = shared_keys(&keys);
    env.push(("STEWARD_DOWNLOADS__RECHECK_SECS".into(), "600".into()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = app_with_source(Db::Postgres, Store::Fs, &env_refs).await;
    // B keeps real time: A works near it too, so tokens from one hold at the other. Each login
    // moves A's clock 30 seconds on (a TOTP code is accepted once), so A starts behind.
    a.clock
        .set(time::OffsetDateTime::now_utc() - time::Duration::minutes(5));
    let common = replica_env(&a, &env);
    let (_b, b_url, b_client) = serve_replica(&common, &dir.path().join("replica-b"));

    let p = people(&a).await;
    assert!(
        steward::clock::Clock::now(a.clock.as_ref()) <= time::OffsetDateTime::now_utc(),
        "A's tokens are already valid at B"
    );
    let today = steward::clock::Clock::now(a.clock.as_ref()).date();
    let terms = dua_terms_from(&p, "DUA-2026-0801", today, 10, &[]);
    let (_release, file) = available(&a, &p, &terms).await;
    let size = make_large(&a, &file, 64 << 20).await;
    let path = link(&a, &p.requester.1, &file).await;
    let mut response = b_client
        .get(format!("{b_url}{path}"))
        .bearer_auth(&p.requester.1.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "B serves A's link to A's session");
    let mut received = response.chunk().await.unwrap().unwrap().len();
    expect(
        &a,
        "POST",
        "/api/v1/revocations",
        &p.director.1,
        Some(&serde_json::json!({"scope": "user", "id": p.requester.0.id.to_string(), "reason": "Breach reported"})),
        201,
    )
    .await;
    let revoked_at = std::time::Instant::now();
    while let Ok(Some(bytes)) = response.chunk().await {
        received += bytes.len();
    }
    let latency = revoked_at.elapsed();
    assert!((received as u64) < size, "cut: {received} of {size} bytes");
    assert!(
        latency < Duration::from_secs(1),
        "cut {latency:?} after the revocation returned"
    );
    let cut = crate::download_support::events_for(&a, &file, "download_cut", 1).await;
    assert_eq!(cut[0].reason.as_deref(), Some("access is revoked"));
}
