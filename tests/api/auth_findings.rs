//! Identity findings of the attacker's probe (issue 12), each reproduced first.

use serde_json::{json, Value};
use steward::domain::role::Role;

use crate::helpers::{spawn_app, Db};
use crate::on_both_databases;

on_both_databases!(
    a_nul_in_a_user_name_is_an_unknown_user_not_a_server_error,
    control_and_bidi_characters_are_refused_in_names,
    the_bearer_scheme_is_case_insensitive,
    an_api_token_cannot_mint_api_tokens,
);

/// Finding 12: NUL in a user name answered 500 on PostgreSQL.
async fn a_nul_in_a_user_name_is_an_unknown_user_not_a_server_error(db: Db) {
    let app = spawn_app(db).await;
    for username in ["ad\u{0}min", "\u{0}", "a\u{7}b"] {
        let body =
            json!({ "username": username, "password": "whatever-long-password", "totp": "000000" });
        let response = app.post_json("/api/v1/auth/login", None, &body).await;
        assert_eq!(response.status(), 401, "{username:?}");
    }
}

/// Finding 12: control and bidirectional formatting characters were accepted in organization,
/// user and token names (a name that reads as another in a list or a review).
async fn control_and_bidi_characters_are_refused_in_names(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("root2", "Agency", &[Role::Admin]).await;
    let session = app.login(&admin).await;
    for name in [
        "Evil\u{202E}ycnegA",
        "Two\nLines",
        "Bell\u{7}",
        "Iso\u{2066}late",
    ] {
        let response = app
            .post_json(
                "/api/v1/admin/orgs",
                Some(&session.access_token),
                &json!({ "name": name }),
            )
            .await;
        assert_eq!(response.status(), 400, "org {name:?}");
        let response = app
            .post_json(
                "/api/v1/admin/users",
                Some(&session.access_token),
                &json!({ "username": "newuser", "display_name": name, "organization": "Agency", "roles": ["recipient"] }),
            )
            .await;
        assert_eq!(response.status(), 400, "display name {name:?}");
        let response = app
            .post_json(
                "/api/v1/me/tokens",
                Some(&session.access_token),
                &json!({ "name": name, "expires_in_days": 1 }),
            )
            .await;
        assert_eq!(response.status(), 400, "token name {name:?}");
    }
    let response = app
        .post_json(
            "/api/v1/admin/orgs",
            Some(&session.access_token),
            &json!({ "name": "Université de Montréal" }),
        )
        .await;
    assert_eq!(response.status(), 201, "letters of any script are fine");
}

/// Finding 12: `Authorization: bearer` in lower case was treated as no credentials.
async fn the_bearer_scheme_is_case_insensitive(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("erin", "Agency", &[Role::PrivacyOfficer])
        .await;
    let session = app.login(&user).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .client
            .get(format!("{}/api/v1/me", app.url))
            .header(
                "authorization",
                format!("{scheme} {}", session.access_token),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
}

/// Finding 11: an API token could mint longer-lived tokens.
async fn an_api_token_cannot_mint_api_tokens(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("erin", "Agency", &[Role::PrivacyOfficer])
        .await;
    let session = app.login(&user).await;
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&session.access_token),
            &json!({ "name": "short", "expires_in_days": 1 }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let token: Value = response.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&token),
            &json!({ "name": "long", "expires_in_days": 365 }),
        )
        .await;
    assert_eq!(response.status(), 403);
}
