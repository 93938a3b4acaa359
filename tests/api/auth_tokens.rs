//! The bad-token list: each is refused with 401, no data, and exactly one access-log event
//! naming the reason. Also malformed bodies, key rotation and API tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use hmac::Mac as _;
use serde_json::{json, Value};
use steward::clock::Clock;
use steward::domain::role::Role;

use crate::helpers::{spawn_app, Db, TestApp, TestUser};
use crate::on_both_databases;

on_both_databases!(
    bad_tokens_are_refused_and_logged,
    malformed_bodies_are_named,
    rotation_keeps_old_tokens_valid,
    api_tokens_work_until_revoked
);

/// The keyring's current signing key, read from its 0600 file the way an attacker who had it
/// would use it (the point is to test the checks after the signature).
fn signing_key(app: &TestApp) -> (String, ed25519_dalek::SigningKey) {
    let dir = app.state.settings.jwt_keys_dir();
    let kid = app.state.auth.keyring().kids().last().unwrap().clone();
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(&kid))
        .unwrap();
    let mut seed = [0u8; 32];
    hex::decode_to_slice(std::fs::read_to_string(path).unwrap().trim(), &mut seed).unwrap();
    (kid, ed25519_dalek::SigningKey::from_bytes(&seed))
}

fn forge(key: &ed25519_dalek::SigningKey, header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = key.sign(message.as_bytes());
    format!("{message}.{}", B64.encode(signature.to_bytes()))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// Calls `/api/v1/me` with `token`; asserts 401, no data, and one `authentication` event with
/// `reason`.
async fn assert_refused(app: &TestApp, token: &str, reason: &str) {
    let before = app.last_seq().await;
    let response = app.call("GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(response.status(), 401, "{reason}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated", "{reason}");
    assert!(body.get("username").is_none() && body.get("id").is_none());
    let events: Vec<_> = app
        .events_after(before)
        .await
        .into_iter()
        .filter(|r| r.action != "server_started")
        .collect();
    assert_eq!(events.len(), 1, "{reason}: one event, got {events:?}");
    assert_eq!(events[0].action, "authentication");
    assert_eq!(events[0].outcome, "denied");
    assert_eq!(events[0].target(), "route:/api/v1/me");
    assert_eq!(events[0].reason.as_deref(), Some(reason));
}

async fn signed_in(app: &TestApp, name: &str) -> (TestUser, crate::helpers::Session) {
    let user = app.create_user(name, "Agency", &[Role::ItStaff]).await;
    let session = app.login(&user).await;
    (user, session)
}

async fn bad_tokens_are_refused_and_logged(db: Db) {
    let app = spawn_app(db).await;
    let (user, session) = signed_in(&app, "alice").await;
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&session.access_token), None)
            .await
            .status(),
        200
    );
    let (kid, key) = signing_key(&app);
    let good = claims_of(&session.access_token);
    let now = app.clock.now().unix_timestamp();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});

    // alg none, any casing, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = B64.encode(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string());
        let p = B64.encode(good.to_string());
        assert_refused(&app, &format!("{h}.{p}."), "unsigned token (alg none)").await;
    }
    // HS256 keyed with the server's public key.
    let public = app.state.auth.keyring().public_key(&kid).unwrap();
    let h = B64.encode(json!({"alg": "HS256", "typ": "JWT", "kid": kid}).to_string());
    let p = B64.encode(good.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&public).unwrap();
    mac.update(format!("{h}.{p}").as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    assert_refused(&app, &format!("{h}.{p}.{sig}"), "algorithm not allowed").await;
    // Unknown kid, and key-location headers.
    let mut unknown = header.clone();
    unknown["kid"] = json!("0123456789abcdef");
    assert_refused(&app, &forge(&key, &unknown, &good), "unknown key id").await;
    for extra in ["jku", "jwk", "x5u"] {
        let mut h = header.clone();
        h[extra] = if extra == "jwk" {
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(public)})
        } else {
            json!("https://attacker.example/keys")
        };
        assert_refused(&app, &forge(&key, &h, &good), "key-location header refused").await;
    }
    // Bad signature: a valid token with its payload changed.
    let mut parts: Vec<String> = session.access_token.split('.').map(str::to_owned).collect();
    let mut tampered = good.clone();
    tampered["sub"] = json!(uuid::Uuid::new_v4().to_string());
    parts[1] = B64.encode(tampered.to_string());
    assert_refused(&app, &parts.join("."), "bad signature").await;
    // Time and audience claims (validly signed).
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        forge(&key, &header, &c)
    };
    assert_refused(&app, &with("exp", json!(now - 3600)), "token expired").await;
    assert_refused(&app, &with("nbf", json!(now + 3600)), "token not yet valid").await;
    assert_refused(&app, &with("aud", json!("someone-else")), "wrong audience").await;
    assert_refused(
        &app,
        &with("iss", json!("https://evil.example")),
        "wrong issuer",
    )
    .await;
    // Within the leeway is fine; an access token really expires after 15 minutes.
    let almost = with("exp", json!(now - 5));
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&almost), None)
            .await
            .status(),
        200
    );
    // A refresh token used as an access token, and the reverse.
    assert_refused(
        &app,
        &session.refresh_token,
        "refresh token used as an access token",
    )
    .await;
    let before = app.last_seq().await;
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": session.access_token}),
        )
        .await;
    assert_eq!(response.status(), 401);
    let events: Vec<_> = app
        .events_after(before)
        .await
        .into_iter()
        .filter(|r| r.action != "server_started")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].reason.as_deref(),
        Some("access token used as a refresh token")
    );
    // After logout.
    let response = app
        .call(
            "POST",
            "/api/v1/auth/logout",
            Some(&session.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_refused(&app, &session.access_token, "session revoked").await;
    // A disabled user's token.
    let (bob, bob_session) = signed_in(&app, "bob").await;
    app.state
        .auth
        .disable_user(&steward::auth::By::system(), bob.id)
        .await
        .unwrap();
    assert_refused(&app, &bob_session.access_token, "user disabled").await;
    // An access token that simply ran out.
    let (_carol, carol_session) = signed_in(&app, "carol").await;
    app.clock.advance(time::Duration::minutes(16));
    assert_refused(&app, &carol_session.access_token, "token expired").await;
    let _ = user;
}

async fn malformed_bodies_are_named(db: Db) {
    let app = spawn_app(db).await;
    let send = |body: &'static str| {
        app.client
            .post(format!("{}/api/v1/auth/login", app.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = send("{\"username\": ").await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
    let response = send(r#"{"username":"a","password":"b","admin":true}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `admin`"),
        "{body}"
    );
    let response = send(r#"{"username":"a"}"#).await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing field `password`"),
        "{body}"
    );
    // Oversized bodies are refused before anything reads them.
    let limit = app.state.settings.server.request_body_limit_bytes;
    let response = app
        .client
        .post(format!("{}/api/v1/auth/login", app.url))
        .body(vec![b'{'; limit + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Nothing was logged as a login: none of these got that far.
    let logins = app
        .events_after(0)
        .await
        .into_iter()
        .filter(|r| r.action.starts_with("login"))
        .count();
    assert_eq!(logins, 0);
}

async fn rotation_keeps_old_tokens_valid(db: Db) {
    let app = spawn_app(db).await;
    let (_user, session) = signed_in(&app, "dave").await;
    let old_kid = app.state.auth.keyring().kids().last().unwrap().clone();
    let created = u64::try_from(app.clock.now().unix_timestamp()).unwrap() + 1;
    let new_kid = app.state.auth.keyring().rotate(created).unwrap();
    assert_ne!(old_kid, new_kid);
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&session.access_token), None)
            .await
            .status(),
        200
    );
    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": session.refresh_token}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&B64.decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["kid"], json!(new_kid));
    assert_eq!(header["alg"], json!("EdDSA"));
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(access), None)
            .await
            .status(),
        200
    );
}

async fn api_tokens_work_until_revoked(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("erin", "Agency", &[Role::ItStaff, Role::PrivacyOfficer])
        .await;
    let session = app.login(&user).await;
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&session.access_token),
            &json!({"name": "nightly script", "expires_in_days": 30, "roles": ["it_staff"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("stw_") && secret.len() == 4 + 64);
    let me: Value = app
        .call("GET", "/api/v1/me", Some(&secret), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["authenticated_with"], "api_token");
    assert_eq!(me["roles"], json!(["it_staff"]));
    // Listed without the secret.
    let list: Value = app
        .call("GET", "/api/v1/me/tokens", Some(&secret), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["name"], "nightly script");
    assert!(list[0].get("token").is_none());
    // A role the owner does not hold is refused.
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&session.access_token),
            &json!({"name": "x", "roles": ["admin"]}),
        )
        .await;
    assert_eq!(response.status(), 400);
    // Revoked by an admin: refused afterwards, with the reason logged.
    let admin = app.create_user("root", "Agency", &[Role::Admin]).await;
    let admin_session = app.login(&admin).await;
    let id = created["id"].as_str().unwrap();
    let response = app
        .call(
            "DELETE",
            &format!("/api/v1/admin/tokens/{id}"),
            Some(&admin_session.access_token),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_refused(&app, &secret, "API token revoked").await;
    let actions: Vec<String> = app
        .events_after(0)
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert!(actions.contains(&"api_token_created".to_owned()));
    assert!(actions.contains(&"api_token_revoked".to_owned()));
    // An expired token.
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&admin_session.access_token),
            &json!({"name": "short", "expires_in_days": 1}),
        )
        .await;
    let short: Value = response.json().await.unwrap();
    app.clock.advance(time::Duration::days(2));
    assert_refused(&app, short["token"].as_str().unwrap(), "API token expired").await;
}
