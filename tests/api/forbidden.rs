//! A 403 names what would have been needed (the role, or the condition on the release), never
//! what exists; the access log keeps its fixed phrase.

use crate::helpers::{spawn_app_configured, Db, Store};
use crate::release_support::{executed_level_one, expect, people};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_role_or_condition_needed() {
    let app = spawn_app_configured(
        Db::Sqlite,
        Store::Fs,
        &[("STEWARD_JOBS__RUN_IN_SERVE", "false")],
    )
    .await;
    let p = people(&app).await;
    let jobs = expect(&app, "GET", "/api/v1/jobs", &p.requester.1, None, 403).await;
    assert_eq!(
        jobs["message"],
        "forbidden: no role of the user grants this action; it needs the role admin or it_staff or privacy_officer"
    );
    let request = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.it.1,
        Some(&crate::release_support::level_one_request()),
        403,
    )
    .await;
    assert!(
        request["message"]
            .as_str()
            .unwrap()
            .ends_with("it needs the role recipient"),
        "{request}"
    );
    // A recipient of the organization not named by the DUA: the condition, not the role.
    let release = executed_level_one(&app, &p, "DUA-2026-0404").await;
    let path = format!("/api/v1/releases/{release}/files");
    let files = expect(&app, "GET", &path, &p.colleague.1, None, 403).await;
    assert!(
        files["message"]
            .as_str()
            .unwrap()
            .contains("the user's role allows this only for releases whose DUA names the user"),
        "{files}"
    );
}
