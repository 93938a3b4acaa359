//! Publication review over HTTP (seed 001 section 4.3 J): a recipient the DUA names submits a
//! table before publishing it and gets the problems back; the upload is kept encrypted; each
//! review is logged; the privacy officer sees them all.

use serde_json::Value;

use crate::download_support::{app_with_source, available, dua};
use crate::helpers::{Db, Session, Store, TestApp};
use crate::on_both_databases;
use crate::release_support::{call, people};

on_both_databases!(a_named_recipient_gets_each_problem_and_the_privacy_officer_sees_every_review);

const GOOD: &str = "county,gender,count\n\
    A,F,#\nA,M,#\nA,Total,40\n\
    B,F,#\nB,M,#\nB,Total,55\n\
    C,F,30\nC,M,44\nC,Total,74\n\
    Total,F,50\nTotal,M,119\nTotal,Total,169\n";

async fn submit(app: &TestApp, session: &Session, release: &str, csv: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!(
            "{}/api/v1/releases/{release}/publication-reviews",
            app.url
        ))
        .bearer_auth(&session.access_token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn a_named_recipient_gets_each_problem_and_the_privacy_officer_sees_every_review(db: Db) {
    let app = app_with_source(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let (release, _) = available(&app, &p, &dua("DUA-2026-0901", &p, 3, &[])).await;

    let (status, good) = submit(&app, &p.requester.1, &release, GOOD).await;
    assert_eq!(status, 201, "{good}");
    assert_eq!(good["passes"], true);
    let bad = GOOD.replace("C,F,30\nC,M,44", "C,F,7\nC,M,67");
    let (status, found) = submit(&app, &p.requester.1, &release, &bad).await;
    assert_eq!(status, 201, "{found}");
    assert_eq!(found["passes"], false);
    let findings = found["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["problem"] == "small_cell_shown" && f["count"] == 7),
        "{found}"
    );

    // Refused, storing nothing: a bad table, someone the DUA does not name, another
    // organization.
    let (status, body) = submit(&app, &p.requester.1, &release, "county,count\nA,-3\n").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_table")),
        "{body}"
    );
    for session in [&p.colleague.1, &p.outsider.1, &p.privacy.1] {
        let (status, _) = submit(&app, session, &release, GOOD).await;
        assert_eq!(status, 403);
    }

    // The privacy officer sees both reviews; nobody else does.
    let (status, listed) = call(
        &app,
        "GET",
        "/api/v1/publication-reviews",
        &p.privacy.1,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r["release"] == release.as_str()));
    let (status, _) = call(
        &app,
        "GET",
        "/api/v1/publication-reviews",
        &p.director.1,
        None,
    )
    .await;
    assert_eq!(status, 403);

    // The upload is kept encrypted.
    let sealed: Vec<String> = sqlx::query_scalar("SELECT upload_sealed FROM publication_reviews")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(sealed.len(), 2);
    assert!(sealed
        .iter()
        .all(|s| s.starts_with("age:") && !s.contains("county")));

    // Each review is in the access log with its outcome and the number of problems.
    let events: Vec<_> = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| r.action == "publication_reviewed")
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].outcome, "succeeded");
    assert_eq!(events[1].outcome, "failed");
    assert_eq!(events[1].bytes, Some(findings.len() as i64));
}
