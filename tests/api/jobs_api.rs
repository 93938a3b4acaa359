//! The extract-job API over HTTPS: starting (only from `dua_executed`, once), listing, showing,
//! cancelling and retrying. The embedded runner is off, so jobs stay where the API left them.

use serde_json::{json, Value};

use crate::helpers::{spawn_app_configured, Db, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{
    call, executed_level_one, expect, level_one_request, people, status_of, People,
};
use steward::jobs::JobState;

on_both_databases!(
    start_refuses_a_release_not_in_dua_executed,
    starting_twice_queues_one_job,
    concurrent_starts_queue_one_job,
    cancel_a_queued_job,
    list_and_show_jobs,
    retry_a_cancelled_job,
    retry_needs_the_release_back_in_dua_executed,
    serve_runs_jobs_in_the_embedded_mode,
);

/// A Steward whose `serve` runs no jobs, so a queued job stays queued.
pub async fn spawn_without_runner(db: Db) -> TestApp {
    spawn_app_configured(db, Store::Fs, &[("STEWARD_JOBS__RUN_IN_SERVE", "false")]).await
}

async fn start(app: &TestApp, p: &People, release: &str, want: u16) -> Value {
    expect(
        app,
        "POST",
        &format!("/api/v1/releases/{release}/extract"),
        &p.it.1,
        None,
        want,
    )
    .await
}

async fn start_refuses_a_release_not_in_dua_executed(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let created = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_one_request()),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let refused = start(&app, &p, &id, 409).await;
    assert_eq!(refused["code"], "wrong_state", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("draft") && message.contains("dua_executed"),
        "{message}"
    );
    // Nothing changed: the release is still a draft and no job exists.
    assert_eq!(status_of(&app, &id, &p.it.1).await, "draft");
    let jobs = expect(&app, "GET", "/api/v1/jobs", &p.it.1, None, 200).await;
    assert_eq!(jobs, json!([]));
    // An unknown release is 404, a malformed id too.
    let unknown = uuid::Uuid::new_v4();
    start(&app, &p, &unknown.to_string(), 404).await;
    start(&app, &p, "not-a-uuid", 404).await;
}

async fn starting_twice_queues_one_job(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0301").await;
    let before = app.last_seq().await;
    let job = start(&app, &p, &id, 202).await;
    assert_eq!(job["state"], "queued");
    assert_eq!(job["release_id"], id.as_str());
    assert_eq!(job["kind"], "extract");
    assert_eq!(status_of(&app, &id, &p.it.1).await, "extracting");

    let again = start(&app, &p, &id, 409).await;
    assert_eq!(again["code"], "job_already_active", "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains(job["id"].as_str().unwrap()),
        "{again}"
    );
    let jobs = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs?release={id}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    // The release moved once: one start_extraction in its history.
    let history = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{id}/history"),
        &p.it.1,
        None,
        200,
    )
    .await;
    let starts = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "start_extraction")
        .count();
    assert_eq!(starts, 1);
    // The start is in the access log, naming the job and IT staff member, and nothing else
    // says a second job started.
    let events = app.events_after(before).await;
    let started: Vec<_> = events
        .iter()
        .filter(|e| e.action == "job_started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].target(),
        format!("job:{}", job["id"].as_str().unwrap())
    );
    assert_eq!(started[0].actor(), format!("user:{}", p.it.0.id));
}

async fn concurrent_starts_queue_one_job(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0302").await;
    let path = format!("/api/v1/releases/{id}/extract");
    let attempts = (0..6).map(|_| call(&app, "POST", &path, &p.it.1, None));
    let results = futures_util::future::join_all(attempts).await;
    let won = results.iter().filter(|(status, _)| *status == 202).count();
    assert_eq!(won, 1, "{results:?}");
    for (status, body) in &results {
        assert!(
            *status == 202 || (*status == 409 && body["code"] == "job_already_active"),
            "{status} {body}"
        );
    }
    let jobs = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs?release={id}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(status_of(&app, &id, &p.it.1).await, "extracting");
}

async fn cancel_a_queued_job(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0303").await;
    let job = start(&app, &p, &id, 202).await;
    let job_id = job["id"].as_str().unwrap();
    let before = app.last_seq().await;
    let cancelled = expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/cancel"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(cancelled["cancel"], "cancelled");
    assert_eq!(cancelled["job"]["state"], "cancelled");
    assert!(cancelled["job"]["finished_at"].is_string());
    // The release is handed back, so IT staff can start again.
    assert_eq!(status_of(&app, &id, &p.it.1).await, "dua_executed");
    let events = app.events_after(before).await;
    assert!(events
        .iter()
        .any(|e| e.action == "job_cancelled" && e.target() == format!("job:{job_id}")));
    // A cancelled job cannot be cancelled again; an unknown job is 404.
    let again = expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/cancel"),
        &p.it.1,
        None,
        409,
    )
    .await;
    assert_eq!(again["code"], "job_wrong_state", "{again}");
    assert!(again["message"].as_str().unwrap().contains("cancelled"));
    let unknown = uuid::Uuid::new_v4();
    expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{unknown}/cancel"),
        &p.it.1,
        None,
        404,
    )
    .await;
    // Only IT staff cancel.
    let (status, _) = call(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/cancel"),
        &p.privacy.1,
        None,
    )
    .await;
    assert_eq!(status, 403);
}

async fn list_and_show_jobs(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let first = executed_level_one(&app, &p, "DUA-2026-0304").await;
    let second = executed_level_one(&app, &p, "DUA-2026-0305").await;
    let job_one = start(&app, &p, &first, 202).await;
    app.clock.advance(time::Duration::seconds(5));
    let job_two = start(&app, &p, &second, 202).await;

    // Newest first; the privacy officer watches too.
    let all = expect(&app, "GET", "/api/v1/jobs", &p.privacy.1, None, 200).await;
    let ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            job_two["id"].as_str().unwrap(),
            job_one["id"].as_str().unwrap()
        ]
    );
    let only_first = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs?release={first}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(only_first.as_array().unwrap().len(), 1);
    assert_eq!(only_first[0]["id"], job_one["id"]);
    assert!(
        only_first[0].get("log").is_none(),
        "the list carries no log"
    );

    let shown = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs/{}", job_one["id"].as_str().unwrap()),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(shown["state"], "queued");
    assert_eq!(shown["attempts"], 0);
    assert_eq!(shown["max_attempts"], 3);
    assert_eq!(shown["progress"], json!({}));
    assert!(shown["error"].is_null());
    assert!(shown["created_at"].as_str().unwrap().starts_with("2026-"));
    let log = shown["log"].as_array().unwrap();
    assert_eq!(log, &[json!(format!("queued by user:{}", p.it.0.id))]);

    // Bad input is named; an unknown or malformed id is 404; recipients never see jobs.
    let bad = expect(&app, "GET", "/api/v1/jobs?release=nope", &p.it.1, None, 400).await;
    assert!(bad["message"].as_str().unwrap().contains("nope"));
    expect(&app, "GET", "/api/v1/jobs?state=queued", &p.it.1, None, 400).await;
    let unknown = uuid::Uuid::new_v4();
    expect(
        &app,
        "GET",
        &format!("/api/v1/jobs/{unknown}"),
        &p.it.1,
        None,
        404,
    )
    .await;
    expect(&app, "GET", "/api/v1/jobs/x", &p.it.1, None, 404).await;
    expect(&app, "GET", "/api/v1/jobs", &p.requester.1, None, 403).await;
}

async fn retry_a_cancelled_job(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0306").await;
    let job = start(&app, &p, &id, 202).await;
    let job_id = job["id"].as_str().unwrap();
    // A queued job cannot be retried.
    let refused = expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/retry"),
        &p.it.1,
        None,
        409,
    )
    .await;
    assert_eq!(refused["code"], "job_wrong_state", "{refused}");
    expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/cancel"),
        &p.it.1,
        None,
        200,
    )
    .await;
    let before = app.last_seq().await;
    let retried = expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/retry"),
        &p.it.1,
        None,
        202,
    )
    .await;
    assert_eq!(retried["id"], job["id"]);
    assert_eq!(retried["state"], "queued");
    assert_eq!(retried["attempts"], 0);
    assert!(retried["finished_at"].is_null());
    assert_eq!(status_of(&app, &id, &p.it.1).await, "extracting");
    let events = app.events_after(before).await;
    assert!(events
        .iter()
        .any(|e| e.action == "job_retried" && e.target() == format!("job:{job_id}")));
    // Still one job for the release, and starting another is refused while it is live.
    let again = start(&app, &p, &id, 409).await;
    assert_eq!(again["code"], "job_already_active");
    let shown = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs/{job_id}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    let log: Vec<&str> = shown["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let it = format!("user:{}", p.it.0.id);
    assert_eq!(
        log,
        [
            format!("queued by {it}"),
            format!("cancelled by {it}"),
            format!("retried by {it}")
        ]
    );
}

async fn retry_needs_the_release_back_in_dua_executed(db: Db) {
    let app = spawn_without_runner(db).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0307").await;
    let job = start(&app, &p, &id, 202).await;
    let job_id = job["id"].as_str().unwrap();
    expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/cancel"),
        &p.it.1,
        None,
        200,
    )
    .await;
    expect(
        &app,
        "POST",
        &format!("/api/v1/releases/{id}/revoke"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let refused = expect(
        &app,
        "POST",
        &format!("/api/v1/jobs/{job_id}/retry"),
        &p.it.1,
        None,
        409,
    )
    .await;
    assert_eq!(refused["code"], "wrong_state", "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("revoked"));
    // Nothing changed: the job is still cancelled, the release still revoked.
    let shown = expect(
        &app,
        "GET",
        &format!("/api/v1/jobs/{job_id}"),
        &p.it.1,
        None,
        200,
    )
    .await;
    assert_eq!(shown["state"], "cancelled");
    assert_eq!(status_of(&app, &id, &p.it.1).await, "revoked");
}

async fn serve_runs_jobs_in_the_embedded_mode(db: Db) {
    // The embedded runner is on (the default); no source is configured, so the attempt it
    // makes fails, naming the cause, and the job waits out its back-off on the manual clock.
    let app = spawn_app_configured(db, Store::Fs, &[("STEWARD_JOBS__POLL_SECS", "1")]).await;
    let p = people(&app).await;
    let id = executed_level_one(&app, &p, "DUA-2026-0308").await;
    let job = start(&app, &p, &id, 202).await;
    let job_id = uuid::Uuid::parse_str(job["id"].as_str().unwrap()).unwrap();
    // The runner works on its own schedule; watch the queue (bounded) until it has tried once.
    let mut tried = None;
    for _ in 0..300 {
        let current = app.state.jobs.get(job_id).await.unwrap();
        if current.attempts >= 1 && current.state != JobState::Running {
            tried = Some(current);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let tried = tried.expect("the embedded runner claimed the job within 30 s");
    assert!(tried.error.is_some(), "{tried:?}");
    let log = app.state.jobs.log_lines(job_id).await.unwrap();
    assert!(
        log.iter().any(|l| l.starts_with("attempt 1 started by ")
            && l.contains("serve-")
            && l.ends_with(&format!("-{}", std::process::id()))),
        "{log:?}"
    );
}
