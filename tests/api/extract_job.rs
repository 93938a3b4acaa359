//! The extract job end to end: a Level I and a Level III release taken to `dua_executed` over
//! HTTPS, started by IT staff, run by the job runner, on both databases and both object stores;
//! then every stored file is checked: decrypted with the release identity and with a
//! recipient's own key, matched against the signed manifest, and scanned for plaintext.

use std::io::Read;
use std::sync::Arc;

use serde_json::json;
use sha2::{Digest, Sha256};
use steward::db::extracts;
use steward::extract::job::{release_prefix, ExtractExecutor};
use steward::extract::manifest;
use steward::jobs::{JobState, RunOutcome, Runner, RunnerConfig};
use steward::storage::{KeyPrefix, ObjectKey};
use tokio::io::AsyncReadExt;

use crate::helpers::{spawn_app_configured, Db, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{
    execute_request, executed_level_one, expect, level_three_request, people, People,
};

on_both_databases!(level_one_and_three_extracts_on_both_stores);

async fn level_one_and_three_extracts_on_both_stores(db: Db) {
    for store in [Store::Fs, Store::S3] {
        let source_dir = tempfile::tempdir().unwrap();
        steward::synth::generate(source_dir.path(), 1500, 5).unwrap();
        let source = source_dir.path().join("med_elig.csv");
        let source_text = source.display().to_string();
        let app = spawn_app_configured(
            db,
            store,
            &[
                ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
                ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &source_text),
            ],
        )
        .await;
        let p = people(&app).await;
        // The requester's own key, kept so the test can decrypt as the recipient would.
        let recipient = age::x25519::Identity::generate();
        let registered = app
            .post_json(
                "/api/v1/me/keys",
                Some(&p.requester.1.access_token),
                &json!({ "public_key": recipient.to_public().to_string(), "label": "analysis laptop" }),
            )
            .await;
        assert_eq!(registered.status(), 201);
        // Each request's filters (years; payers at Level III) select the rows delivered.
        let level_one_rows = rows_inside(&source, 2020..=2023, &[]);
        let level_three_rows = rows_inside(&source, 2021..=2022, &["P01"]);
        assert!(level_three_rows > 0 && level_three_rows < level_one_rows);

        let level_one = executed_level_one(&app, &p, "DUA-2026-0101").await;
        run_extract(&app, &p, &level_one).await;
        check_extract(
            &app,
            &level_one,
            &recipient,
            level_one_rows,
            &["member_gender", "member_state", "year"],
        )
        .await;

        let level_three = executed_level_three(&app, &p, "DUA-2026-0102").await;
        run_extract(&app, &p, &level_three).await;
        check_extract(
            &app,
            &level_three,
            &recipient,
            level_three_rows,
            &["member_gender", "member_zip", "member_last_name"],
        )
        .await;

        // Nothing but the recorded files is stored, and nothing is left half-uploaded.
        let everything = KeyPrefix::parse("releases/").unwrap();
        assert!(app
            .state
            .store
            .pending_uploads(&everything)
            .await
            .unwrap()
            .is_empty());
        let stored = app.state.store.list(&everything).await.unwrap().len();
        let recorded = extracts::files(&app.state.db, level_one.parse().unwrap())
            .await
            .unwrap()
            .len()
            + extracts::files(&app.state.db, level_three.parse().unwrap())
                .await
                .unwrap()
                .len();
        assert_eq!(stored, recorded, "{store:?}");
    }
}

/// Rows of a med_elig source whose year is in `years` and payer among `payers` (all if empty).
fn rows_inside(
    source: &std::path::Path,
    years: std::ops::RangeInclusive<i32>,
    payers: &[&str],
) -> u64 {
    let mut reader = csv::Reader::from_path(source).unwrap();
    let header = reader.headers().unwrap().clone();
    let year = header.iter().position(|c| c == "year").unwrap();
    let payer = header.iter().position(|c| c == "payer_id").unwrap();
    reader
        .records()
        .map(Result::unwrap)
        .filter(|r| {
            r[year].parse().is_ok_and(|y: i32| years.contains(&y))
                && (payers.is_empty() || payers.contains(&&r[payer]))
        })
        .count() as u64
}

/// IT staff start the extract; the runner claims and runs it to success.
pub async fn run_extract(app: &TestApp, p: &People, release: &str) {
    let path = format!("/api/v1/releases/{release}/extract");
    let response = app
        .call("POST", &path, Some(&p.it.1.access_token), None)
        .await;
    assert!(
        response.status().is_success(),
        "start: {}",
        response.status()
    );
    let runner = Runner::new(
        app.state.jobs.clone(),
        Arc::new(ExtractExecutor::new(&app.state)),
        "test-runner".into(),
        RunnerConfig::default(),
    );
    match runner.run_once().await.unwrap() {
        RunOutcome::Ran {
            state: JobState::Succeeded,
            ..
        } => {}
        other => {
            let jobs = app.state.jobs.list(None).await.unwrap();
            panic!("extract did not succeed: {other:?}; jobs: {jobs:?}")
        }
    }
    let json = expect(
        app,
        "GET",
        &format!("/api/v1/releases/{release}"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(json["status"], "available");
}

/// The bytes of a stored object.
pub async fn read_object(app: &TestApp, key: &str) -> Vec<u8> {
    let mut object = app
        .state
        .store
        .get(&ObjectKey::parse(key).unwrap(), None)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    object.body.read_to_end(&mut bytes).await.unwrap();
    bytes
}

fn decrypt(ciphertext: &[u8], identity: &dyn age::Identity) -> Vec<u8> {
    let decryptor = age::Decryptor::new(ciphertext).unwrap();
    let mut plaintext = Vec::new();
    decryptor
        .decrypt(std::iter::once(identity))
        .unwrap()
        .read_to_end(&mut plaintext)
        .unwrap();
    plaintext
}

async fn check_extract(
    app: &TestApp,
    release: &str,
    recipient: &age::x25519::Identity,
    source_rows: u64,
    columns: &[&str],
) {
    let release_id: uuid::Uuid = release.parse().unwrap();
    let files = extracts::files(&app.state.db, release_id).await.unwrap();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "approval_letter.pdf.age",
            "data_dictionary.csv.age",
            "manifest.json",
            "med_elig.csv.zst.age"
        ]
    );
    let manifest_file = files.iter().find(|f| f.name == "manifest.json").unwrap();
    let manifest_json = read_object(app, &manifest_file.object_key).await;
    let manifest = manifest::verify(&manifest_json, &app.state.signer.public_hex())
        .expect("manifest signature verifies");
    assert_eq!(manifest.release_id, release);

    let wrapped = extracts::wrapped_key(&app.state.db, release_id)
        .await
        .unwrap()
        .expect("release key stored");
    let release_identity = app.state.master.unwrap(&wrapped.wrapped).unwrap();
    let mut first_plain_row = None;
    for entry in &manifest.files {
        let record = files.iter().find(|f| f.name == entry.name).unwrap();
        let ciphertext = read_object(app, &record.object_key).await;
        assert!(
            ciphertext.starts_with(b"age-encryption.org/v1\n"),
            "{} is age ciphertext",
            entry.name
        );
        assert_eq!(
            hex::encode(Sha256::digest(&ciphertext)),
            entry.ciphertext.sha256
        );
        assert_eq!(ciphertext.len() as u64, entry.ciphertext.bytes);
        for identity in [release_identity.identity() as &dyn age::Identity, recipient] {
            let mut plaintext = decrypt(&ciphertext, identity);
            if entry.name.ends_with(".zst.age") {
                plaintext = zstd::decode_all(plaintext.as_slice()).unwrap();
            }
            assert_eq!(
                hex::encode(Sha256::digest(&plaintext)),
                entry.plaintext.sha256,
                "{}",
                entry.name
            );
            if entry.name == "med_elig.csv.zst.age" {
                let mut reader = csv::Reader::from_reader(plaintext.as_slice());
                let mut header: Vec<String> = reader
                    .headers()
                    .unwrap()
                    .iter()
                    .map(str::to_owned)
                    .collect();
                header.sort();
                let mut expected: Vec<&str> = columns.to_vec();
                expected.sort();
                assert_eq!(header, expected, "exactly the approved elements");
                let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
                assert_eq!(rows.len() as u64, source_rows);
                assert_eq!(entry.rows, Some(source_rows));
                let report = entry
                    .source
                    .as_ref()
                    .expect("the manifest says how rows were chosen");
                assert_eq!(report.source_rows - report.outside_filters, source_rows);
                assert_eq!(report.filters[0].filter, "service_years");
                assert_eq!(report.filters[0].applied, "by column year");
                assert!(report.invalid_rows_dropped.is_empty());
                // The header and first rows: long enough that finding them by chance is impossible.
                first_plain_row = Some(
                    String::from_utf8_lossy(&plaintext[..plaintext.len().min(64)]).into_owned(),
                );
            }
            if entry.name == "approval_letter.pdf.age" {
                assert!(plaintext.starts_with(b"%PDF-"));
            }
        }
        if entry.name == "med_elig.csv.zst.age" {
            decrypts_with_the_age_cli(&ciphertext, recipient, &entry.plaintext.sha256);
        }
    }
    // The store holds no plaintext: no stored object contains a delivered row.
    let row = first_plain_row.expect("a delivered row");
    for object in app
        .state
        .store
        .list(&KeyPrefix::parse(&release_prefix(release_id)).unwrap())
        .await
        .unwrap()
    {
        let bytes = read_object(app, object.key.as_str()).await;
        assert!(
            !bytes.windows(row.len()).any(|w| w == row.as_bytes()),
            "plaintext in {}",
            object.key
        );
    }
}

/// The `age` command-line tool decrypts what Steward stored, with the recipient's own key file,
/// and `zstd -d` decompresses it to the manifest's plaintext.
fn decrypts_with_the_age_cli(
    ciphertext: &[u8],
    recipient: &age::x25519::Identity,
    plaintext_sha256: &str,
) {
    use secrecy::ExposeSecret;
    use steward::pdf::tests_support::tool_available;
    if !(tool_available("age") && tool_available("zstd")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    std::fs::write(&key, format!("{}\n", recipient.to_string().expose_secret())).unwrap();
    let file = dir.path().join("med_elig.csv.zst.age");
    std::fs::write(&file, ciphertext).unwrap();
    let out = dir.path().join("med_elig.csv");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i '{}' '{}' | zstd -d -q -c > '{}'",
            key.display(),
            file.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success(), "age -d | zstd -d");
    let plaintext = std::fs::read(&out).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&plaintext)), plaintext_sha256);
}

/// Takes a fresh Level III request (with an approving subcommittee decision) to `dua_executed`.
async fn executed_level_three(app: &TestApp, p: &People, number: &str) -> String {
    let four_yes = json!({
        "present": ["A", "B", "C", "D", "E"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "yes" },
            { "member": "E", "vote": "no" }
        ],
        "reason": "Meeting of 2026-03-05"
    });
    execute_request(app, p, &level_three_request(), Some(&four_yes), number).await
}

on_both_databases!(failed_extract_publishes_nothing_and_returns_the_release);

/// A source that cannot be read (gone after start-up: a failure another attempt may not meet)
/// fails the attempt naming the file, publishes nothing, retries after the back-off, and once
/// attempts run out returns the release to `dua_executed`. (A data error is not retried:
/// `extract_rows`.)
async fn failed_extract_publishes_nothing_and_returns_the_release(db: Db) {
    let source_dir = tempfile::tempdir().unwrap();
    steward::synth::generate(source_dir.path(), 300, 9).unwrap();
    let source = source_dir.path().join("med_elig.csv");
    let source_text = source.display().to_string();
    let app = spawn_app_configured(
        db,
        Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_JOBS__MAX_ATTEMPTS", "2"),
            ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &source_text),
        ],
    )
    .await;
    let p = people(&app).await;
    let release = executed_level_one(&app, &p, "DUA-2026-0201").await;
    let start = app
        .call(
            "POST",
            &format!("/api/v1/releases/{release}/extract"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(start.status().is_success());
    // The approval read the source; now it goes away.
    std::fs::remove_file(&source).unwrap();
    let runner = Runner::new(
        app.state.jobs.clone(),
        Arc::new(ExtractExecutor::new(&app.state)),
        "test-runner".into(),
        RunnerConfig::default(),
    );
    let prefix = KeyPrefix::parse(&release_prefix(release.parse().unwrap())).unwrap();
    for attempt in 1..=2 {
        let outcome = runner.run_once().await.unwrap();
        let RunOutcome::Ran { job_id, state } = outcome else {
            panic!("{outcome:?}")
        };
        let job = app.state.jobs.get(job_id).await.unwrap();
        let error = job.error.clone().unwrap_or_default();
        assert!(
            error.contains(&source_text) && error.contains("No such file"),
            "{error}"
        );
        assert!(
            app.state.store.list(&prefix).await.unwrap().is_empty(),
            "nothing published"
        );
        assert!(app
            .state
            .store
            .pending_uploads(&prefix)
            .await
            .unwrap()
            .is_empty());
        if attempt == 1 {
            assert_eq!(state, JobState::Queued, "retried after a back-off");
            assert!(
                matches!(runner.run_once().await.unwrap(), RunOutcome::Idle),
                "not before the back-off"
            );
            app.clock.advance(time::Duration::minutes(5));
            let json = expect(
                &app,
                "GET",
                &format!("/api/v1/releases/{release}"),
                &p.director.1,
                None,
                200,
            )
            .await;
            assert_eq!(json["status"], "extracting");
        } else {
            assert_eq!(state, JobState::Failed);
            let lines = app.state.jobs.log_lines(job_id).await.unwrap();
            assert!(
                lines.iter().any(|l| l.contains("attempt 2 failed")),
                "{lines:?}"
            );
        }
    }
    let json = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{release}"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(
        json["status"], "dua_executed",
        "IT staff can fix the source and start again"
    );
    assert!(extracts::files(&app.state.db, release.parse().unwrap())
        .await
        .unwrap()
        .is_empty());

    // Leftovers of a job nobody runs any more are swept; nothing else is touched.
    let junk = ObjectKey::parse(&format!(
        "{}dead-a9/med_elig.csv.zst.age",
        release_prefix(release.parse().unwrap())
    ))
    .unwrap();
    app.state
        .store
        .put(&junk, &mut &b"age-encryption.org/v1 partial"[..])
        .await
        .unwrap();
    let executor = ExtractExecutor::new(&app.state);
    use steward::jobs::JobExecutor;
    assert_eq!(executor.sweep_orphans().await.unwrap(), 1);
    assert!(app.state.store.list(&prefix).await.unwrap().is_empty());
    assert_eq!(executor.sweep_orphans().await.unwrap(), 0);
}

on_both_databases!(cancel_stops_a_running_extract);

/// IT staff cancel a running extract: the runner relays it at its next heartbeat, the pipeline
/// stops within a few thousand rows, nothing is published and the release can be started again.
async fn cancel_stops_a_running_extract(db: Db) {
    let source_dir = tempfile::tempdir().unwrap();
    steward::synth::generate(source_dir.path(), 120_000, 4).unwrap();
    let source_text = source_dir.path().join("med_elig.csv").display().to_string();
    let app = spawn_app_configured(
        db,
        Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &source_text),
        ],
    )
    .await;
    let p = people(&app).await;
    let release = executed_level_one(&app, &p, "DUA-2026-0401").await;
    let start = app
        .call(
            "POST",
            &format!("/api/v1/releases/{release}/extract"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(start.status().is_success());
    let job = app
        .state
        .jobs
        .list(Some(release.parse().unwrap()))
        .await
        .unwrap()
        .remove(0);
    let runner = Runner::new(
        app.state.jobs.clone(),
        Arc::new(ExtractExecutor::new(&app.state)),
        "test-runner".into(),
        RunnerConfig {
            poll_interval: std::time::Duration::from_millis(50),
            heartbeat_interval: std::time::Duration::from_millis(100),
        },
    );
    let running = tokio::spawn(async move { runner.run_once().await.unwrap() });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.jobs.get(job.id).await.unwrap().state != JobState::Running {
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let cancelled = app
        .call(
            "POST",
            &format!("/api/v1/jobs/{}/cancel", job.id),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(cancelled.status().is_success(), "{}", cancelled.status());
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(20), running)
        .await
        .expect("cancel stops the job within seconds")
        .unwrap();
    assert!(
        matches!(
            outcome,
            RunOutcome::Ran {
                state: JobState::Cancelled,
                ..
            }
        ),
        "{outcome:?}"
    );
    let prefix = KeyPrefix::parse(&release_prefix(release.parse().unwrap())).unwrap();
    assert!(
        app.state.store.list(&prefix).await.unwrap().is_empty(),
        "nothing published"
    );
    assert!(app
        .state
        .store
        .pending_uploads(&prefix)
        .await
        .unwrap()
        .is_empty());
    let json = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{release}"),
        &p.director.1,
        None,
        200,
    )
    .await;
    assert_eq!(json["status"], "dua_executed");
}
