//! Separation of duties as an attacker probed it (issue 12): over HTTPS, with real tokens.

use serde_json::{json, Value};
use steward::domain::role::Role;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;
use crate::release_support::{call, expect, in_review, level_one_request, people};

on_both_databases!(
    a_token_limited_to_the_director_role_cannot_approve_for_it_staff,
    an_admin_cannot_change_their_own_roles,
);

/// Finding 1: a user holding both `it_staff` and `executive_director` was refused approval
/// with a session, then approved with an API token limited to `executive_director`.
async fn a_token_limited_to_the_director_role_cannot_approve_for_it_staff(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let both = app
        .create_user("dual", "Agency", &[Role::ItStaff, Role::ExecutiveDirector])
        .await;
    let session = app.login(&both).await;
    let id = in_review(&app, &p.requester.1, &p.privacy.1, &level_one_request()).await;
    let base = format!("/api/v1/releases/{id}");
    let (status, _) = call(&app, "POST", &format!("{base}/approve"), &session, None).await;
    assert_eq!(status, 403, "with the session");
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&session.access_token),
            &json!({"name": "approvals", "expires_in_days": 1, "roles": ["executive_director"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let token: Value = response.json().await.unwrap();
    let token = token["token"].as_str().unwrap();
    let response = app
        .call("POST", &format!("{base}/approve"), Some(token), None)
        .await;
    assert_eq!(
        response.status(),
        403,
        "with a token carrying only the director role"
    );
    let json = expect(&app, "GET", &base, &p.director.1, None, 200).await;
    assert_eq!(json["status"], "in_review");
    assert!(json["approved_by"].is_null(), "{json}");
}

/// Finding 4: an administrator gave itself `executive_director` and approved.
async fn an_admin_cannot_change_their_own_roles(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("root2", "Agency", &[Role::Admin]).await;
    let session = app.login(&admin).await;
    let path = format!("/api/v1/admin/users/{}/roles", admin.id);
    let body = json!({ "roles": ["admin", "executive_director"] });
    let (status, json) = call(&app, "PUT", &path, &session, Some(&body)).await;
    assert_eq!(status, 403, "{json}");
    let other = app
        .create_user("someone", "Agency", &[Role::Recipient])
        .await;
    let path = format!("/api/v1/admin/users/{}/roles", other.id);
    let (status, json) = call(&app, "PUT", &path, &session, Some(&body)).await;
    assert_eq!(status, 200, "{json}");
}

on_both_databases!(granted_reads_of_a_release_are_logged);

/// Finding 12: granted reads of a release, its letter and its history were not logged.
async fn granted_reads_of_a_release_are_logged(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0701").await;
    let after = app.events_after(0).await.last().map_or(0, |r| r.id);
    for path in ["", "/history", "/letter", "/letter/signature"] {
        let response = app
            .call(
                "GET",
                &format!("/api/v1/releases/{id}{path}"),
                Some(&p.requester.1.access_token),
                None,
            )
            .await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let reads: Vec<_> = app
        .events_after(after)
        .await
        .into_iter()
        .filter(|r| r.action == "release_read")
        .collect();
    let reasons: Vec<_> = reads.iter().filter_map(|r| r.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            "release read",
            "history read",
            "approval letter read",
            "approval letter signature read"
        ]
    );
    assert!(reads
        .iter()
        .all(|r| r.outcome == "granted" && r.actor().contains(&p.requester.0.id.to_string())));
    assert!(reads.iter().all(|r| r.target().contains(&id)));
}

on_both_databases!(a_denial_about_a_release_is_logged_against_it);

/// Finding 12: a denial was logged against the route template, not the release it was about.
async fn a_denial_about_a_release_is_logged_against_it(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    let id = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0801").await;
    let response = app
        .call(
            "POST",
            &format!("/api/v1/releases/{id}/revoke"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 403);
    let denial = app
        .events_after(0)
        .await
        .into_iter()
        .rev()
        .find(|r| r.action == "authorization" && r.outcome == "denied")
        .expect("the denial is logged");
    assert_eq!(denial.target(), format!("release:{id}#0"));
    // For an id that exists nowhere, the route: the log says nothing of what exists.
    let nowhere = uuid::Uuid::new_v4();
    let response = app
        .call(
            "POST",
            &format!("/api/v1/releases/{nowhere}/revoke"),
            Some(&p.it.1.access_token),
            None,
        )
        .await;
    assert!(response.status() == 403 || response.status() == 404);
    let denial = app
        .events_after(0)
        .await
        .into_iter()
        .rev()
        .find(|r| r.action == "authorization" && r.outcome == "denied")
        .unwrap();
    assert!(denial.target().starts_with("route:"), "{}", denial.target());
}

on_both_databases!(staff_roles_outside_the_agency_are_not_in_force);

/// Finding 4: staff roles applied to every organization: a requesting organization's
/// executive director approved, denied and revoked another organization's releases.
async fn staff_roles_outside_the_agency_are_not_in_force(db: Db) {
    let app = spawn_app(db).await;
    let p = people(&app).await;
    // Another organization's request, in review.
    let id = in_review(&app, &p.outsider.1, &p.privacy.1, &level_one_request()).await;
    let base = format!("/api/v1/releases/{id}");
    // The university's "director" decides nothing about it.
    for action in ["approve", "deny"] {
        let (status, body) = call(
            &app,
            "POST",
            &format!("{base}/{action}"),
            &p.director_of_university.1,
            None,
        )
        .await;
        assert_eq!(status, 403, "{action}: {body}");
    }
    // No role of theirs is in force at all: not even their own account is theirs to see.
    let (status, _) = call(&app, "GET", "/api/v1/me", &p.director_of_university.1, None).await;
    assert_eq!(status, 403);
    // The agency's director still does.
    expect(
        &app,
        "POST",
        &format!("{base}/deny"),
        &p.director.1,
        Some(&json!({ "reason": "outside the agency's scope" })),
        200,
    )
    .await;
}
