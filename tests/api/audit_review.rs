//! Issue 11: the privacy officer's review, reports and export; receipts that a recipient checks
//! offline; every other role refused; every review itself logged.

use std::process::Command;

use serde_json::Value;
use steward::domain::role::Role;

use crate::audit_log::steward_audit;
use crate::helpers::{spawn_app, Db, Session, TestApp};
use crate::on_both_databases;
use crate::release_support::{call, expect, level_one_request, people};

on_both_databases!(
    the_privacy_officer_filters_pages_and_is_logged,
    bad_filters_are_refused_by_name,
    other_roles_cannot_review,
    a_receipt_checks_offline_and_fails_for_any_changed_byte,
    reports_answer_the_privacy_officers_questions,
    export_streams_the_same_filters
);

async fn get(app: &TestApp, path: &str, session: &Session) -> (u16, Value) {
    call(app, "GET", path, session, None).await
}

async fn the_privacy_officer_filters_pages_and_is_logged(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    // Three requests by the requester, one by the colleague.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = expect(
            &app,
            "POST",
            "/api/v1/requests",
            &p.requester.1,
            Some(&level_one_request()),
            201,
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.colleague.1,
        Some(&level_one_request()),
        201,
    )
    .await;
    let requester = p.requester.0.id.to_string();
    let base = format!("/api/v1/access-log?action=release_requested&user={requester}&limit=2");
    let (status, first) = get(&app, &base, &p.privacy.1).await;
    assert_eq!(status, 200, "{first}");
    let records = first["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r["actor_user"] == requester.as_str()));
    let next = first["next"].as_str().expect("a next cursor");
    let (_, second) = get(&app, &format!("{base}&cursor={next}"), &p.privacy.1).await;
    let rest = second["records"].as_array().unwrap();
    assert_eq!(rest.len(), 1, "{second}");
    assert!(second.get("next").is_none(), "the last page has no cursor");
    // Stable order: commit order, without repeats.
    let all: Vec<i64> = records
        .iter()
        .chain(rest)
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    // By release, and by the user's organization.
    let (_, by_release) = get(
        &app,
        &format!("/api/v1/access-log?release={}", ids[0]),
        &p.privacy.1,
    )
    .await;
    assert!(by_release["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["release_id"] == ids[0].as_str()));
    assert!(!by_release["records"].as_array().unwrap().is_empty());
    let org = app.org(crate::release_support::UNIVERSITY).await;
    let (_, by_org) = get(
        &app,
        &format!("/api/v1/access-log?organization={org}&action=release_requested"),
        &p.privacy.1,
    )
    .await;
    assert_eq!(by_org["records"].as_array().unwrap().len(), 4);
    // A time range that ends before everything selects nothing.
    let (_, none) = get(
        &app,
        "/api/v1/access-log?to=2000-01-01T00:00:00Z",
        &p.privacy.1,
    )
    .await;
    assert!(none["records"].as_array().unwrap().is_empty());
    // The review itself is in the log.
    let reviews = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|e| {
            e.action == "access_log_reviewed"
                && e.actor_user.as_deref() == Some(p.privacy.0.id.to_string().as_str())
        })
        .count();
    assert!(reviews >= 5, "every review page is logged ({reviews})");
}

async fn bad_filters_are_refused_by_name(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    for (query, param) in [
        ("action=approve_everything", "action"),
        ("outcome=maybe", "outcome"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
        ("limit=0", "limit"),
        ("limit=1000000000", "limit"),
        ("cursor=garbage", "cursor"),
        ("release=not-an-id", "release"),
        ("colour=blue", "colour"),
        ("limit=5&limit=6", "limit"),
    ] {
        let (status, body) = get(&app, &format!("/api/v1/access-log?{query}"), &p.privacy.1).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(param),
            "{query}: {body}"
        );
    }
    let (status, _) = get(&app, "/api/v1/access-log/0/proof", &p.privacy.1).await;
    assert_eq!(status, 400);
    let (status, _) = get(&app, "/api/v1/access-log/99999999/proof", &p.privacy.1).await;
    assert_eq!(status, 404, "a position that does not exist");
    let (status, _) = get(
        &app,
        "/api/v1/access-log/consistency?from=5&to=2",
        &p.privacy.1,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(
        &app,
        "/api/v1/access-log/reports/refusals?from=x&to=y",
        &p.privacy.1,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(&app, "/api/v1/access-log/reports/nothing", &p.privacy.1).await;
    assert_eq!(status, 404);
}

async fn other_roles_cannot_review(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let admin = app.create_user("admin9", "Agency", &[Role::Admin]).await;
    let admin = app.login(&admin).await;
    for session in [&p.requester.1, &p.director.1, &p.it.1, &admin] {
        for path in [
            "/api/v1/access-log",
            "/api/v1/access-log/reports/expiring-duas",
            "/api/v1/access-log/reports/overdue-destructions",
        ] {
            let (status, _) = get(&app, path, session).await;
            assert_eq!(status, 403, "{path}");
        }
    }
    // Someone else's record is not one's receipt.
    app.state.sequencer.integrate_all().await.unwrap();
    let privacy_event = app
        .events_after(0)
        .await
        .into_iter()
        .find(|e| {
            e.actor_user.as_deref() == Some(p.privacy.0.id.to_string().as_str()) && e.seq.is_some()
        })
        .expect("the privacy officer has a record");
    let (status, _) = get(
        &app,
        &format!("/api/v1/access-log/{}/proof", privacy_event.seq.unwrap()),
        &p.requester.1,
    )
    .await;
    assert_eq!(status, 403);
}

async fn a_receipt_checks_offline_and_fails_for_any_changed_byte(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&level_one_request()),
        201,
    )
    .await;
    app.state.sequencer.integrate_all().await.unwrap();
    // The requester finds their request's record among their own events.
    let (status, own) = get(
        &app,
        "/api/v1/me/access-log?action=release_requested",
        &p.requester.1,
    )
    .await;
    assert_eq!(status, 200, "{own}");
    let seq = own["records"][0]["seq"].as_i64().expect("integrated");
    let response = app
        .call(
            "GET",
            &format!("/api/v1/access-log/{seq}/proof"),
            Some(&p.requester.1.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);
    let receipt = response.bytes().await.unwrap().to_vec();
    let (_, checkpoint) = get(&app, "/api/v1/access-log/checkpoint", &p.requester.1).await;
    let key = checkpoint["verifier_key"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let receipt_file = dir.path().join("receipt.json");
    let key_file = dir.path().join("log.key");
    std::fs::write(&key_file, &key).unwrap();
    let verify = |bytes: &[u8]| {
        std::fs::write(&receipt_file, bytes).unwrap();
        Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["audit", "verify-proof", "--key"])
            .arg(&key_file)
            .arg("--proof")
            .arg(&receipt_file)
            .env_remove("STEWARD_CONFIG")
            .output()
            .unwrap()
    };
    let good = verify(&receipt);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    // Every byte, changed: the check fails (a sample of positions keeps the test fast; the
    // library test below covers every byte).
    let step = (receipt.len() / 60).max(1);
    for i in (0..receipt.len()).step_by(step) {
        let mut bad = receipt.clone();
        bad[i] ^= 0x01;
        let out = verify(&bad);
        assert_ne!(out.status.code(), Some(0), "byte {i} changed and accepted");
    }
    for i in 0..receipt.len() {
        let mut bad = receipt.clone();
        bad[i] ^= 0x20;
        assert!(
            steward::audit::proof::check_receipt(&bad, None, &key).is_err(),
            "byte {i} changed and accepted"
        );
    }
    // The wrong key: exit 1 (refused), a malformed key: exit 2 (cannot check).
    let other = steward::audit::checkpoint::CheckpointSigner::new(
        "steward.local/access-log",
        ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
    );
    std::fs::write(&key_file, other.verifier_key()).unwrap();
    assert_eq!(verify(&receipt).status.code(), Some(1));
    std::fs::write(&key_file, "no key here").unwrap();
    assert_eq!(verify(&receipt).status.code(), Some(2));
}

async fn reports_answer_the_privacy_officers_questions(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    // Two refusals from this client.
    for _ in 0..2 {
        let (status, _) = get(&app, "/api/v1/admin/users", &p.requester.1).await;
        assert_eq!(status, 403);
    }
    let (status, refusals) = get(
        &app,
        "/api/v1/access-log/reports/refusals?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        &p.privacy.1,
    )
    .await;
    assert_eq!(status, 200, "{refusals}");
    let rows = refusals["refusals"].as_array().unwrap();
    let total: i64 = rows
        .iter()
        .filter(|r| r["reason"] == "no role of the user grants this action")
        .map(|r| r["count"].as_i64().unwrap())
        .sum();
    assert!(total >= 2, "{refusals}");
    assert!(rows.iter().all(|r| r.get("client_addr").is_some()));
    let id = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0777").await;
    // The DUA of the helper ends within the year; the report looks 30 days ahead of the clock.
    let (status, expiring) = get(
        &app,
        "/api/v1/access-log/reports/expiring-duas",
        &p.privacy.1,
    )
    .await;
    assert_eq!(status, 200);
    let listed = expiring["duas"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["release_id"] == id.as_str());
    let expiry = sqlx::Row::get::<String, _>(
        &sqlx::query("SELECT expiry FROM duas WHERE release_id = $1")
            .bind(&id)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap(),
        "expiry",
    );
    let until = (app.state.clock.now().date() + time::Duration::days(30)).to_string();
    assert_eq!(
        listed,
        expiry <= until,
        "expiry {expiry}, report until {until}: {expiring}"
    );
    let (status, overdue) = get(
        &app,
        "/api/v1/access-log/reports/overdue-destructions",
        &p.privacy.1,
    )
    .await;
    assert_eq!(status, 200);
    assert!(overdue["releases"].as_array().unwrap().is_empty());
}

async fn export_streams_the_same_filters(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    for _ in 0..3 {
        expect(
            &app,
            "POST",
            "/api/v1/requests",
            &p.requester.1,
            Some(&level_one_request()),
            201,
        )
        .await;
    }
    let out = steward_audit(
        &app,
        &["export", "--format", "csv", "--action", "release_requested"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id,seq,at,"), "{}", lines[0]);
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1..].iter().all(|l| l.contains(",release_requested,")));
    let requester = p.requester.0.id.to_string();
    let json = steward_audit(&app, &["export", "--format", "json", "--user", &requester]);
    assert!(json.status.success());
    for line in String::from_utf8(json.stdout).unwrap().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["actor_user"], requester.as_str());
    }
    let bad = steward_audit(&app, &["export", "--outcome", "sideways"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("outcome"));
    // The export was logged.
    assert!(app
        .events_after(0)
        .await
        .iter()
        .any(|e| e.action == "access_log_reviewed" && e.actor_kind == "system"));
}
