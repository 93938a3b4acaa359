//! A `steward worker` killed with SIGKILL in the middle of an upload: a second worker takes the
//! job over once the lease expires, sweeps what the first left behind, and finishes; the job
//! succeeds once, exactly one set of objects exists, no multipart upload is left open, and the
//! manifest's digests match the stored objects.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use steward::db::extracts;
use steward::extract::job::release_prefix;
use steward::extract::manifest;
use steward::jobs::JobState;
use steward::policy::FileType;
use steward::storage::KeyPrefix;

use crate::extract_job::read_object;
use crate::helpers::{spawn_app_configured, Db, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{execute_request, expect, people, People};

on_both_databases!(killed_worker_is_taken_over_and_the_job_succeeds_once);

/// Kills the worker when the test ends, however it ends.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(app: &TestApp, name: &str) -> Worker {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command
        .arg("worker")
        .envs(app.shared_env())
        .env("STEWARD_JOBS__LEASE_SECS", "2")
        .env("STEWARD_JOBS__HEARTBEAT_SECS", "1")
        .env("STEWARD_JOBS__POLL_SECS", "1")
        .env("STEWARD_EXTRACT__SOURCES__MED_CLAIM", source_of(app))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{name} starts: {e}"));
    Worker(child)
}

fn source_of(app: &TestApp) -> String {
    app.state.settings.extract.sources["med_claim"].clone()
}

/// A Level I request for every Level I element of medical claims: enough output for a
/// multipart upload.
fn wide_request(app: &TestApp) -> Value {
    let catalog = app.state.releases.catalog();
    let elements: Vec<Value> = catalog
        .elements_of(FileType::MedClaim)
        .filter(|e| e.lowest_level == Some(steward::domain::level::Level::I) && !e.supplemental)
        .map(|e| json!({ "element": e.id.as_str() }))
        .collect();
    json!({
        "level": "I",
        "datasets": ["med_claim"],
        "elements": elements,
        "purpose": "Utilization trends",
        "ultimate_recipient": "State University health policy group",
        "security_measures": "Encrypted laptops",
        "publication_plan": "Aggregate tables only",
        "filters": { "years": { "first": 2020, "last": 2023 } }
    })
}

async fn executed_wide_release(app: &TestApp, p: &People) -> String {
    execute_request(app, p, &wide_request(app), None, "DUA-2026-0301").await
}

async fn killed_worker_is_taken_over_and_the_job_succeeds_once(db: Db) {
    let source_dir = tempfile::tempdir().unwrap();
    steward::synth::generate(source_dir.path(), 150_000, 21).unwrap();
    let source = source_dir
        .path()
        .join("med_claim.csv")
        .display()
        .to_string();
    let app = spawn_app_configured(
        db,
        Store::S3,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_EXTRACT__SOURCES__MED_CLAIM", &source),
        ],
    )
    .await;
    let p = people(&app).await;
    let release = executed_wide_release(&app, &p).await;
    let release_id: uuid::Uuid = release.parse().unwrap();
    let started = app
        .call(
            "POST",
            &format!("/api/v1/releases/{release}/extract"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(started.status().is_success(), "{}", started.status());

    // The first worker starts uploading; kill it the moment a multipart upload is open.
    let prefix = KeyPrefix::parse(&release_prefix(release_id)).unwrap();
    let mut first = start_worker(&app, "worker 1");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if !app
            .state
            .store
            .pending_uploads(&prefix)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        assert!(
            first.0.try_wait().unwrap().is_none(),
            "worker 1 ended before uploading"
        );
        assert!(
            Instant::now() < deadline,
            "worker 1 never started an upload"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    assert!(
        !app.state
            .store
            .pending_uploads(&prefix)
            .await
            .unwrap()
            .is_empty(),
        "killed mid-upload"
    );

    // A second worker takes the job over after the lease runs out, and finishes it.
    let _second = start_worker(&app, "worker 2");
    let job = app
        .state
        .jobs
        .list(Some(release_id))
        .await
        .unwrap()
        .remove(0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let current = app.state.jobs.get(job.id).await.unwrap();
        if matches!(
            current.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            break current;
        }
        assert!(
            Instant::now() < deadline,
            "the job did not finish: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished.state, JobState::Succeeded, "{finished:?}");
    assert_eq!(finished.attempts, 2, "taken over once");
    assert_eq!(
        app.state.jobs.list(Some(release_id)).await.unwrap().len(),
        1,
        "one job"
    );
    let json = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{release}"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(json["status"], "available");

    // Exactly one set of objects, nothing left open, digests as the manifest says.
    assert!(
        app.state
            .store
            .pending_uploads(&prefix)
            .await
            .unwrap()
            .is_empty(),
        "no open upload"
    );
    let recorded = extracts::files(&app.state.db, release_id).await.unwrap();
    let mut stored: Vec<String> = app
        .state
        .store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    stored.sort();
    let mut expected: Vec<String> = recorded.iter().map(|f| f.object_key.clone()).collect();
    expected.sort();
    assert_eq!(stored, expected, "exactly the recorded objects");
    let manifest_key = &recorded
        .iter()
        .find(|f| f.name == "manifest.json")
        .unwrap()
        .object_key;
    let manifest = manifest::verify(
        &read_object(&app, manifest_key).await,
        &app.state.signer.public_hex(),
    )
    .unwrap();
    for entry in &manifest.files {
        let record = recorded.iter().find(|f| f.name == entry.name).unwrap();
        let bytes = read_object(&app, &record.object_key).await;
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            entry.ciphertext.sha256,
            "{}",
            entry.name
        );
        assert_eq!(bytes.len() as u64, entry.ciphertext.bytes);
    }
}
