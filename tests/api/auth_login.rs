//! Logins: lockout, TOTP replay, recovery codes, refresh-token rotation and reuse, cookies with
//! CSRF, recipient keys, and a log capture proving no secret is written to the log.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use steward::domain::role::Role;
use tower::ServiceExt as _;
use tracing::instrument::WithSubscriber as _;

use crate::helpers::{spawn_app, Db, TestApp, TestUser};
use crate::on_both_databases;

on_both_databases!(
    lockout_after_failures_then_unlock,
    totp_code_is_accepted_once,
    recovery_code_works_once,
    refresh_rotates_and_reuse_revokes_the_family,
    cookie_session_needs_csrf_for_changes,
    recipient_keys_are_validated_listed_and_removed,
    login_logs_carry_no_secrets,
    password_change_enforces_the_policy
);

async fn login_with(
    app: &TestApp,
    user: &TestUser,
    password: &str,
    totp: Option<String>,
) -> reqwest::Response {
    let mut body = json!({"username": user.username, "password": password});
    if let Some(code) = totp {
        body["totp"] = json!(code);
    }
    app.post_json("/api/v1/auth/login", None, &body).await
}

fn count(records: &[steward::audit::AccessRecord], action: &str, reason: Option<&str>) -> usize {
    records
        .iter()
        .filter(|r| r.action == action && (reason.is_none() || r.reason.as_deref() == reason))
        .count()
}

async fn lockout_after_failures_then_unlock(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("mallory_target", "Agency", &[Role::PrivacyOfficer])
        .await;
    let limit = app.state.settings.auth.max_failed_logins_per_account;
    for _ in 0..limit {
        let response = login_with(&app, &user, "wrong password!!", Some(app.totp(&user))).await;
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "login_failed");
    }
    // Locked: even the right password and code are refused, with Retry-After.
    app.clock.advance(time::Duration::seconds(30));
    let response = login_with(&app, &user, &user.password, Some(app.totp(&user))).await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= app.state.settings.auth.lockout_secs);
    let records = app.events_after(0).await;
    assert_eq!(
        count(&records, "login_failed", Some("wrong password")),
        limit as usize
    );
    assert_eq!(count(&records, "account_locked_out", None), 1);
    assert_eq!(
        count(&records, "login_failed", Some("account locked out")),
        1
    );
    // The lock ends by itself after the configured time: the next attempts are judged again...
    let lockout = app.state.settings.auth.lockout_secs as i64;
    app.clock.advance(time::Duration::seconds(lockout));
    for _ in 0..limit {
        let response = login_with(&app, &user, "wrong password!!", None).await;
        assert_eq!(response.status(), 401);
    }
    let records = app.events_after(0).await;
    assert_eq!(
        count(&records, "login_failed", Some("wrong password")),
        2 * limit as usize
    );
    // ...and the second lockout lasts twice as long (back-off).
    app.clock.advance(time::Duration::seconds(lockout + 1));
    let response = login_with(&app, &user, &user.password, Some(app.totp(&user))).await;
    assert_eq!(
        response.status(),
        429,
        "the second lockout lasts twice as long"
    );
    app.clock.advance(time::Duration::seconds(lockout));
    app.login(&user).await;
    // An admin can lift a lockout at once.
    for _ in 0..limit {
        login_with(&app, &user, "wrong password!!", None).await;
    }
    let admin = app.create_user("admin1", "Agency", &[Role::Admin]).await;
    let admin_session = app.login(&admin).await;
    let response = app
        .call(
            "POST",
            &format!("/api/v1/admin/users/{}/unlock", user.id),
            Some(&admin_session.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    app.login(&user).await;
    assert_eq!(
        count(&app.events_after(0).await, "account_unlocked", None),
        1
    );
}

async fn totp_code_is_accepted_once(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("tim", "Agency", &[Role::ExecutiveDirector])
        .await;
    let code = app.totp(&user);
    let first = login_with(&app, &user, &user.password, Some(code.clone())).await;
    assert_eq!(first.status(), 200);
    // Same code again, still within its 30 seconds: refused.
    let again = login_with(&app, &user, &user.password, Some(code.clone())).await;
    assert_eq!(again.status(), 401);
    let records = app.events_after(0).await;
    assert_eq!(
        count(&records, "login_failed", Some("TOTP code already used")),
        1
    );
    // Without a code: the password alone is not enough.
    let response = login_with(&app, &user, &user.password, None).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "second_factor_required");
    // A wrong code.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let response = login_with(&app, &user, &user.password, Some(wrong.to_owned())).await;
    assert_eq!(response.status(), 401);
    // The next step's code works.
    app.login(&user).await;
}

async fn recovery_code_works_once(db: Db) {
    let app = spawn_app(db).await;
    let user = app.create_user("rita", "Agency", &[Role::Recipient]).await;
    let body = json!({"username": user.username, "password": user.password, "recovery_code": user.recovery_codes[0]});
    assert_eq!(
        app.post_json("/api/v1/auth/login", None, &body)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_json("/api/v1/auth/login", None, &body)
            .await
            .status(),
        401
    );
}

async fn refresh_rotates_and_reuse_revokes_the_family(db: Db) {
    let app = spawn_app(db).await;
    let user = app.create_user("rob", "Agency", &[Role::ItStaff]).await;
    let session = app.login(&user).await;
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.post_json(
                "/api/v1/auth/refresh",
                None,
                &json!({"refresh_token": token}),
            )
            .await
        }
    };
    let response = refresh(session.refresh_token.clone()).await;
    assert_eq!(response.status(), 200);
    let second: Value = response.json().await.unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    let second_access = second["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, session.refresh_token);
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&second_access), None)
            .await
            .status(),
        200
    );
    // The first refresh token comes back (stolen copy): the whole family is revoked.
    let response = refresh(session.refresh_token.clone()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        count(&app.events_after(0).await, "refresh_token_reused", None),
        1
    );
    assert_eq!(refresh(second_refresh).await.status(), 401);
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&second_access), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&session.access_token), None)
            .await
            .status(),
        401
    );
    // A new login is a new, unaffected family.
    let fresh = app.login(&user).await;
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&fresh.access_token), None)
            .await
            .status(),
        200
    );
}

async fn cookie_session_needs_csrf_for_changes(db: Db) {
    let app = spawn_app(db).await;
    let user = app.create_user("carla", "Agency", &[Role::Recipient]).await;
    app.clock.advance(time::Duration::seconds(30));
    let response = login_with(&app, &user, &user.password, Some(app.totp(&user))).await;
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let access_cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-steward_access="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(access_cookie.contains(attribute), "{access_cookie}");
    }
    let body: Value = response.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap();
    let cookie_header = cookies
        .iter()
        .map(|c| c.split(';').next().unwrap())
        .collect::<Vec<_>>()
        .join("; ");
    let with_cookie = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, format!("{}{path}", app.url))
            .header("cookie", cookie_header.clone())
    };
    // Reads need no CSRF token.
    let me = with_cookie(reqwest::Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    // A state change without it is refused, and changes nothing.
    let key = age::x25519::Identity::generate().to_public().to_string();
    let response = with_cookie(reqwest::Method::POST, "/api/v1/me/keys")
        .json(&json!({"public_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "csrf");
    let keys: Value = with_cookie(reqwest::Method::GET, "/api/v1/me/keys")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys, json!([]));
    // With it, the change goes through.
    let response = with_cookie(reqwest::Method::POST, "/api/v1/me/keys")
        .header("x-csrf-token", csrf)
        .json(&json!({"public_key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Logout clears the cookies and revokes the session.
    let response = with_cookie(reqwest::Method::POST, "/api/v1/auth/logout")
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().contains("Max-Age=0")));
    let me = with_cookie(reqwest::Method::GET, "/api/v1/me")
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

/// An OpenSSH `ssh-ed25519` public key line for random key material.
fn ssh_ed25519_key() -> String {
    use base64::Engine as _;
    let public = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
        .verifying_key()
        .to_bytes();
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), public.as_slice()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} user@example.org",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

async fn recipient_keys_are_validated_listed_and_removed(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("kim", "University", &[Role::Recipient])
        .await;
    let token = app.login(&user).await.access_token;
    let age_key = age::x25519::Identity::generate().to_public().to_string();
    let add = |key: String| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_json(
                "/api/v1/me/keys",
                Some(&token),
                &json!({"public_key": key, "label": "laptop"}),
            )
            .await
        }
    };
    let response = add(age_key.clone()).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["kind"], "age-x25519");
    let response = add(ssh_ed25519_key()).await;
    assert_eq!(response.status(), 201);
    let ssh: Value = response.json().await.unwrap();
    assert_eq!(ssh["kind"], "ssh-ed25519");
    assert!(!ssh["public_key"]
        .as_str()
        .unwrap()
        .contains("user@example.org"));
    // Duplicates and garbage are refused and change nothing.
    assert_eq!(add(age_key.clone()).await.status(), 409);
    for bad in [
        "age1notakey",
        "ssh-ed25519 AAAAnotbase64",
        "ssh-rsa AAAAB3NzaC1yc2E",
        "hello",
    ] {
        let response = add(bad.to_owned()).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    let list: Value = app
        .call("GET", "/api/v1/me/keys", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let id = created["id"].as_str().unwrap();
    let response = app
        .call(
            "DELETE",
            &format!("/api/v1/me/keys/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    let list: Value = app
        .call("GET", "/api/v1/me/keys", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let records = app.events_after(0).await;
    assert_eq!(count(&records, "recipient_key_added", None), 2);
    assert_eq!(count(&records, "recipient_key_removed", None), 1);
}

/// A `MakeWriter` that appends everything to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn login_logs_carry_no_secrets(db: Db) {
    let app = spawn_app(db).await;
    let user = app.create_user("logan", "Agency", &[Role::Admin]).await;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .without_time()
        .with_ansi(false)
        .finish();
    let router = steward::http::router(app.state.clone());
    app.clock.advance(time::Duration::seconds(30));
    let code = app.totp(&user);
    let request_body =
        json!({"username": user.username, "password": user.password, "totp": code}).to_string();
    let call = |uri: &str, body: String, bearer: Option<String>| {
        let mut request = axum::http::Request::post(uri).header("content-type", "application/json");
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        router
            .clone()
            .oneshot(request.body(axum::body::Body::from(body)).unwrap())
    };
    let (tokens, wrong_password) = async {
        // A failed attempt (wrong password), a good login, a refresh and a logout.
        let bad = json!({"username": user.username, "password": "not the password", "totp": code})
            .to_string();
        let response = call("/api/v1/auth/login", bad, None).await.unwrap();
        assert_eq!(response.status(), 401);
        let response = call("/api/v1/auth/login", request_body.clone(), None)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let tokens: Value = serde_json::from_slice(&bytes).unwrap();
        let refresh = json!({"refresh_token": tokens["refresh_token"]}).to_string();
        let response = call("/api/v1/auth/refresh", refresh, None).await.unwrap();
        assert_eq!(response.status(), 200);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let refreshed: Value = serde_json::from_slice(&bytes).unwrap();
        let access = refreshed["access_token"].as_str().unwrap().to_owned();
        let response = call("/api/v1/auth/logout", String::new(), Some(access.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        ((tokens, refreshed), "not the password")
    }
    .with_subscriber(subscriber)
    .await;
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("/api/v1/auth/login"),
        "the capture saw the requests:\n{logs}"
    );
    let (first, second) = tokens;
    let secrets = [
        user.password.as_str(),
        wrong_password,
        code.as_str(),
        first["access_token"].as_str().unwrap(),
        first["refresh_token"].as_str().unwrap(),
        first["csrf_token"].as_str().unwrap(),
        second["access_token"].as_str().unwrap(),
        second["refresh_token"].as_str().unwrap(),
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "a secret appears in the logs:\n{logs}"
        );
    }
    // Token pieces (a JWT's signature alone would be enough to replay it) are absent too.
    for token in &secrets[3..] {
        for piece in token.split('.').filter(|p| p.len() > 16) {
            assert!(!logs.contains(piece), "part of a token appears in the logs");
        }
    }
}

async fn password_change_enforces_the_policy(db: Db) {
    let app = spawn_app(db).await;
    let mut user = app.create_user("pat", "Agency", &[Role::Recipient]).await;
    let token = app.login(&user).await.access_token;
    let change = |current: &str, new: &str| {
        let body = json!({"current_password": current, "new_password": new});
        let app = &app;
        let token = token.clone();
        async move {
            app.call("PUT", "/api/v1/me/password", Some(&token), Some(&body))
                .await
        }
    };
    let cases = [
        (user.password.clone(), "short", "at least 12"),
        (user.password.clone(), "password1234", "common passwords"),
        (user.password.clone(), "Pat-is-my-name-2026", "user name"),
        (
            "not my password".to_owned(),
            "a good long passphrase",
            "current_password is wrong",
        ),
    ];
    for (current, new, expected) in cases {
        let response = change(&current, new).await;
        assert_eq!(response.status(), 400, "{new}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
    let response = change(&user.password, "correct horse battery staple 42").await;
    assert_eq!(response.status(), 204);
    user.password = "correct horse battery staple 42".to_owned();
    app.login(&user).await;
    assert_eq!(
        count(&app.events_after(0).await, "password_changed", None),
        1
    );
}
