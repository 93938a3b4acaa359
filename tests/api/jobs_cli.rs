//! `steward jobs ...` and `steward worker` as real processes against a running Steward's
//! database: the same job service as the API, acting as `system`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::helpers::{Db, TestApp};
use crate::jobs_api::spawn_without_runner;
use crate::on_both_databases;
use crate::release_support::{executed_level_one, expect, level_one_request, people, status_of};

on_both_databases!(
    jobs_commands_start_list_show_cancel_retry,
    worker_prints_its_owner_and_stops_on_sigterm,
);

fn steward(app: &TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_steward"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STEWARD_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "warn").envs(app.shared_env());
    command
}

fn run(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = steward(app).args(args).output().expect("steward runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn jobs_commands_start_list_show_cancel_retry(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0401").await;

    let (ok, out, err) = run(&app, &["jobs", "start", "--release", &id]);
    assert!(ok, "{err}");
    let job_id = out
        .split_whitespace()
        .find(|w| uuid::Uuid::parse_str(w).is_ok() && *w != id)
        .expect("the job id is printed")
        .to_owned();
    assert_eq!(status_of(&app, &id, &p.it.1).await, "extracting");

    // A second start is refused and changes nothing.
    let (ok, _, err) = run(&app, &["jobs", "start", "--release", &id]);
    assert!(!ok);
    assert!(err.contains("already being extracted"), "{err}");

    let (ok, out, err) = run(&app, &["jobs", "list", "--release", &id]);
    assert!(ok, "{err}");
    assert!(out.contains(&job_id) && out.contains("queued"), "{out}");
    assert_eq!(out.lines().count(), 2, "header and one job: {out}");

    let (ok, out, err) = run(&app, &["jobs", "show", &job_id]);
    assert!(ok, "{err}");
    assert!(
        out.contains("queued by system") && out.contains("0 of 3"),
        "{out}"
    );

    let (ok, out, err) = run(&app, &["jobs", "cancel", &job_id]);
    assert!(ok, "{err}");
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(status_of(&app, &id, &p.it.1).await, "dua_executed");

    let (ok, out, err) = run(&app, &["jobs", "retry", &job_id]);
    assert!(ok, "{err}");
    assert!(out.contains("queued again"), "{out}");
    assert_eq!(status_of(&app, &id, &p.it.1).await, "extracting");

    // The API sees what the CLI did, and the access log names the system as actor.
    let shown = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs/{job_id}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(shown["state"], "queued");
    let events = app.events_after(0).await;
    for action in ["job_started", "job_cancelled", "job_retried"] {
        assert!(
            events.iter().any(|e| e.action == action
                && e.actor() == "system"
                && e.target() == format!("job:{job_id}")),
            "{action}"
        );
    }

    // A release not in dua_executed is refused, naming its state.
    let draft = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_one_request()),
        201,
    )
    .await;
    let draft = draft["id"].as_str().unwrap();
    let (ok, _, err) = run(&app, &["jobs", "start", "--release", draft]);
    assert!(!ok);
    assert!(err.contains("draft"), "{err}");
    let (ok, _, err) = run(&app, &["jobs", "show", &uuid::Uuid::new_v4().to_string()]);
    assert!(!ok);
    assert!(err.contains("no such job"), "{err}");
    let (ok, _, err) = run(&app, &["jobs", "cancel", "not-a-uuid"]);
    assert!(!ok);
    assert!(
        err.contains("not-a-uuid") || err.contains("invalid"),
        "{err}"
    );
}

async fn worker_prints_its_owner_and_stops_on_sigterm(db: Db) {
    let app = spawn_without_runner(db).await;
    let mut child = steward(&app)
        .arg("worker")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("worker starts");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::task::spawn_blocking(move || {
        let first = lines.next().and_then(Result::ok);
        (first, lines)
    });
    let (first, mut lines) = first.await.unwrap();
    let first = first.expect("the worker prints its owner");
    assert!(
        first.contains("worker-") && first.contains(&child.id().to_string()),
        "{first}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .expect("worker exits");
    assert!(exit.success(), "{exit:?}");
    let last = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(last.contains("stopped"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_watch_follows_a_job_to_its_end_and_says_how_it_ended() {
    let source_dir = tempfile::tempdir().unwrap();
    steward::synth::generate(source_dir.path(), 1500, 5).unwrap();
    let source = source_dir.path().join("med_elig.csv").display().to_string();
    let app = crate::helpers::spawn_app_configured(
        Db::Sqlite,
        crate::helpers::Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &source),
        ],
    )
    .await;
    let p = people(&app).await;
    let release = executed_level_one(&app, &p, "DUA-2026-0411").await;
    crate::extract_job::run_extract(&app, &p, &release).await;
    let jobs = expect(&app, "GET", "/api/v1/jobs", &p.it.1, None, 200).await;
    let job = jobs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(jobs[0]["state"], "succeeded");
    let (ok, _, err) = run(&app, &["jobs", "watch", &job]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&app, &["jobs", "show", &job]);
    assert!(ok, "{err}");
    assert!(out.contains("(100%)"), "the progress in words: {out}");
    // --json prints names and RFC 3339 times.
    let (ok, out, err) = run(&app, &["jobs", "show", &job, "--json"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["state"], "succeeded");
    assert_eq!(shown["kind"], "extract");
    // Shorter than one heartbeat, the job still ends with its progress on record: every
    // row, and the last source read to its end.
    let progress = &shown["progress"];
    assert!(progress["rows"].as_u64().unwrap() > 0, "{shown}");
    assert!(progress["source_size"].as_u64().unwrap() > 0, "{shown}");
    assert_eq!(progress["source_read"], progress["source_size"], "{shown}");
    assert!(time::OffsetDateTime::parse(
        shown["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    let (ok, out, err) = run(&app, &["release", "show", &release, "--json"]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["status"], "available");
    assert_eq!(shown["datasets"], serde_json::json!(["med_elig"]));
    assert!(shown["history"].as_array().unwrap().len() >= 5);
    let (ok, out, err) = run(&app, &["release", "list", "--json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["id"], release.as_str());

    // A job that fails (its release names a dataset with no source) ends the watch with 1.
    let other = spawn_without_runner(Db::Sqlite).await;
    let q = people(&other).await;
    let release = executed_level_one(&other, &q, "DUA-2026-0412").await;
    let started = expect(
        &other,
        "POST",
        &format!("/api/v1/releases/{release}/extract"),
        &q.it.1,
        None,
        202,
    )
    .await;
    let job = started["id"].as_str().unwrap().to_owned();
    let runner = steward::jobs::Runner::new(
        other.state.jobs.clone(),
        std::sync::Arc::new(steward::extract::job::ExtractExecutor::new(&other.state)),
        "test-runner".into(),
        steward::jobs::RunnerConfig::default(),
    );
    runner.run_once().await.unwrap();
    let (ok, _, err) = run(&other, &["jobs", "watch", &job]);
    assert!(!ok);
    assert!(err.contains(&format!("job {job} ended failed")), "{err}");
}
