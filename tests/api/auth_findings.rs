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

on_both_databases!(
    parallel_guesses_are_judged_at_most_up_to_the_limit,
    another_accounts_success_does_not_reset_the_address_count,
    an_unknown_user_name_locks_out_like_an_account,
);

fn count(records: &[steward::audit::AccessRecord], action: &str, reason: Option<&str>) -> usize {
    records
        .iter()
        .filter(|r| r.action == action && (reason.is_none() || r.reason.as_deref() == reason))
        .count()
}

/// Finding 3: 60 parallel guesses were all judged (no lock held between reading the count and
/// recording a failure), and 200 from one address raised the address's lockouts by 71.
async fn parallel_guesses_are_judged_at_most_up_to_the_limit(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("target", "Agency", &[Role::PrivacyOfficer])
        .await;
    let guesses = (0..60).map(|i| {
        let body = json!({ "username": user.username, "password": format!("guess number {i}!"), "totp": "123456" });
        let app = &app;
        async move { app.post_json("/api/v1/auth/login", None, &body).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let records = app.events_after(0).await;
    let account_limit = app.state.settings.auth.max_failed_logins_per_account as usize;
    let address_limit = app.state.settings.auth.max_failed_logins_per_address as usize;
    let judged = count(&records, "login_failed", Some("wrong password"));
    assert!(
        judged <= account_limit,
        "{judged} guesses judged, limit {account_limit}"
    );
    assert_eq!(count(&records, "account_locked_out", None), 1);

    // 200 parallel guesses at unknown names from one address: one address lockout.
    let guesses = (0..200).map(|i| {
        let body = json!({ "username": format!("nobody{i}"), "password": "whatever password", "totp": "123456" });
        let app = &app;
        async move { app.post_json("/api/v1/auth/login", None, &body).await.status().as_u16() }
    });
    futures_util::future::join_all(guesses).await;
    let records = app.events_after(0).await;
    let judged = count(&records, "login_failed", Some("unknown user name"));
    assert!(
        judged <= address_limit,
        "{judged} judged from one address, limit {address_limit}"
    );
    assert_eq!(count(&records, "address_locked_out", None), 1);
}

/// Finding 3: any account's successful login reset the address's count.
async fn another_accounts_success_does_not_reset_the_address_count(db: Db) {
    let app = spawn_app(db).await;
    let mine = app
        .create_user("mine", "Agency", &[Role::PrivacyOfficer])
        .await;
    let address_limit = app.state.settings.auth.max_failed_logins_per_address;
    for i in 0..address_limit - 1 {
        // Different names, so no account lockout interferes.
        let body = json!({ "username": format!("victim{i}"), "password": "wrong password!", "totp": "123456" });
        let response = app.post_json("/api/v1/auth/login", None, &body).await;
        assert_eq!(response.status(), 401);
    }
    app.login(&mine).await;
    let body =
        json!({ "username": "victim-last", "password": "wrong password!", "totp": "123456" });
    assert_eq!(
        app.post_json("/api/v1/auth/login", None, &body)
            .await
            .status(),
        401
    );
    let records = app.events_after(0).await;
    assert_eq!(
        count(&records, "address_locked_out", None),
        1,
        "the address is locked"
    );
    let body =
        json!({ "username": "victim-after", "password": "wrong password!", "totp": "123456" });
    assert_eq!(
        app.post_json("/api/v1/auth/login", None, &body)
            .await
            .status(),
        429
    );
}

/// Finding 3: lockout answered only for existing users, which told which accounts exist.
async fn an_unknown_user_name_locks_out_like_an_account(db: Db) {
    let app = spawn_app(db).await;
    let real = app
        .create_user("realuser", "Agency", &[Role::PrivacyOfficer])
        .await;
    let limit = app.state.settings.auth.max_failed_logins_per_account;
    let mut answers = Vec::new();
    for name in [real.username.as_str(), "ghostuser"] {
        let mut statuses = Vec::new();
        for _ in 0..limit + 1 {
            let body = json!({ "username": name, "password": "wrong password!", "totp": "123456" });
            let response = app.post_json("/api/v1/auth/login", None, &body).await;
            statuses.push((
                response.status().as_u16(),
                response.headers().get("retry-after").is_some(),
            ));
        }
        answers.push(statuses);
    }
    assert_eq!(
        answers[0], answers[1],
        "an existing and an unknown name answer alike"
    );
    assert_eq!(answers[1].last(), Some(&(429, true)));
}

on_both_databases!(
    a_password_change_ends_every_other_session_and_token,
    wrong_current_passwords_count_and_lock,
);

/// Finding 11: a password change left other sessions and tokens working.
async fn a_password_change_ends_every_other_session_and_token(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("changer", "Agency", &[Role::PrivacyOfficer])
        .await;
    let here = app.login(&user).await;
    let elsewhere = app.login(&user).await;
    let response = app
        .post_json(
            "/api/v1/me/tokens",
            Some(&here.access_token),
            &json!({ "name": "script", "expires_in_days": 5 }),
        )
        .await;
    let token: Value = response.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    for credential in [&here.access_token, &elsewhere.access_token, &token] {
        let status = app
            .call("GET", "/api/v1/me", Some(credential), None)
            .await
            .status();
        assert_eq!(status, 200);
    }
    let body = json!({ "current_password": user.password, "new_password": "a new and long passphrase 42" });
    let response = app
        .call(
            "PUT",
            "/api/v1/me/password",
            Some(&here.access_token),
            Some(&body),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&here.access_token), None)
            .await
            .status(),
        200
    );
    for credential in [&elsewhere.access_token, &token] {
        let status = app
            .call("GET", "/api/v1/me", Some(credential), None)
            .await
            .status();
        assert_eq!(status, 401, "another session or token still works");
    }
}

/// Finding 11: wrong current passwords at the password change were not counted.
async fn wrong_current_passwords_count_and_lock(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("guessed", "Agency", &[Role::PrivacyOfficer])
        .await;
    let session = app.login(&user).await;
    let limit = app.state.settings.auth.max_failed_logins_per_account;
    for i in 0..limit {
        let body = json!({ "current_password": format!("guess {i} of many"), "new_password": "a new and long passphrase 42" });
        let response = app
            .call(
                "PUT",
                "/api/v1/me/password",
                Some(&session.access_token),
                Some(&body),
            )
            .await;
        assert_eq!(response.status(), 400, "guess {i}");
    }
    let body = json!({ "current_password": user.password, "new_password": "a new and long passphrase 42" });
    let response = app
        .call(
            "PUT",
            "/api/v1/me/password",
            Some(&session.access_token),
            Some(&body),
        )
        .await;
    assert_eq!(
        response.status(),
        429,
        "the account is locked, even for the right password"
    );
    let records = app.events_after(0).await;
    assert_eq!(count(&records, "account_locked_out", None), 1);
}

on_both_databases!(a_one_time_password_must_be_changed_first);

/// Finding 11: the administrator-issued one-time password never had to be changed.
async fn a_one_time_password_must_be_changed_first(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("fresh", "Agency", &[Role::PrivacyOfficer])
        .await;
    sqlx::query("UPDATE users SET must_change_password = 1 WHERE id = $1")
        .bind(user.id.to_string())
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let session = app.login(&user).await;
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&session.access_token), None)
            .await
            .status(),
        200
    );
    let response = app
        .call("GET", "/api/v1/releases", Some(&session.access_token), None)
        .await;
    assert_eq!(
        response.status(),
        403,
        "only the password change is allowed"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("one-time password"), "{body}");
    let body = json!({ "current_password": user.password, "new_password": "a new and long passphrase 42" });
    let response = app
        .call(
            "PUT",
            "/api/v1/me/password",
            Some(&session.access_token),
            Some(&body),
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let response = app
        .call("GET", "/api/v1/releases", Some(&session.access_token), None)
        .await;
    assert_eq!(response.status(), 200, "then everything the roles grant");
}

on_both_databases!(a_cookie_refresh_needs_the_sessions_own_csrf_token);

/// Finding 12: a refresh by cookie compared the CSRF header with the CSRF cookie only, so a
/// planted cookie and header pair passed.
async fn a_cookie_refresh_needs_the_sessions_own_csrf_token(db: Db) {
    let app = spawn_app(db).await;
    let user = app
        .create_user("cookie", "Agency", &[Role::Recipient])
        .await;
    app.clock.advance(time::Duration::seconds(30));
    let body =
        json!({ "username": user.username, "password": user.password, "totp": app.totp(&user) });
    let response = app.post_json("/api/v1/auth/login", None, &body).await;
    assert_eq!(response.status(), 200);
    let refresh = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-steward_refresh="))
        .unwrap();
    let refresh = refresh.split(';').next().unwrap().to_owned();
    let real: Value = response.json().await.unwrap();
    let real = real["csrf_token"].as_str().unwrap().to_owned();
    let refresh_with = |csrf: &str| {
        app.client
            .post(format!("{}/api/v1/auth/refresh", app.url))
            .header("cookie", format!("{refresh}; __Host-steward_csrf={csrf}"))
            .header("x-csrf-token", csrf)
            .send()
    };
    let planted = refresh_with("planted-by-someone-else").await.unwrap();
    assert_eq!(
        planted.status(),
        403,
        "a cookie and header pair not of this session"
    );
    let genuine = refresh_with(&real).await.unwrap();
    assert_eq!(genuine.status(), 200, "the session's own token");
}

on_both_databases!(admin_events_carry_the_client_address);

/// Finding 12: events of administrators' changes carried no client address.
async fn admin_events_carry_the_client_address(db: Db) {
    let app = spawn_app(db).await;
    let admin = app.create_user("root3", "Agency", &[Role::Admin]).await;
    let session = app.login(&admin).await;
    let after = app.events_after(0).await.last().map_or(0, |r| r.id);
    let response = app
        .post_json(
            "/api/v1/admin/orgs",
            Some(&session.access_token),
            &json!({ "name": "Clinic" }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post_json(
            "/api/v1/admin/users",
            Some(&session.access_token),
            &json!({ "username": "newbie", "organization": "Clinic", "roles": ["recipient"] }),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["user_id"]
        .as_str()
        .or(created["id"].as_str())
        .unwrap()
        .to_owned();
    for (method, path, body) in [
        (
            "PUT",
            format!("/api/v1/admin/users/{id}/roles"),
            Some(json!({ "roles": ["recipient", "it_staff"] })),
        ),
        ("POST", format!("/api/v1/admin/users/{id}/unlock"), None),
        ("POST", format!("/api/v1/admin/users/{id}/disable"), None),
    ] {
        let response = app
            .call(method, &path, Some(&session.access_token), body.as_ref())
            .await;
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
    }
    let events = app.events_after(after).await;
    for action in [
        "organization_created",
        "user_created",
        "roles_changed",
        "account_unlocked",
        "user_disabled",
    ] {
        let event = events
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("no {action} event"));
        assert!(
            event
                .client_addr
                .as_deref()
                .is_some_and(|a| a.starts_with("127.0.0.1")),
            "{action}: {:?}",
            event.client_addr
        );
    }
}

on_both_databases!(a_flood_of_refused_requests_adds_a_few_rows_not_one_each);

/// Finding 7: every refused unauthenticated request added a permanent log row with up to 200
/// attacker-chosen bytes; 5,000 of them added 2.9 MB and slowed the API.
async fn a_flood_of_refused_requests_adds_a_few_rows_not_one_each(db: Db) {
    let app = crate::helpers::spawn_app_configured(
        db,
        crate::helpers::Store::Fs,
        &[("STEWARD_AUTH__REFUSALS_LOGGED_PER_MINUTE", "10")],
    )
    .await;
    let user = app
        .create_user("steady", "Agency", &[Role::PrivacyOfficer])
        .await;
    let session = app.login(&user).await;
    let before = app.events_after(0).await.len();
    let mut statuses = Vec::new();
    for i in 0..300 {
        let response = app
            .client
            .get(format!("{}/api/v1/me", app.url))
            .header("authorization", format!("Bearer not-a-token-{i}"))
            .header("user-agent", "x".repeat(200))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Valid credentials are served all along.
    assert_eq!(
        app.call("GET", "/api/v1/me", Some(&session.access_token), None)
            .await
            .status(),
        200
    );
    let rows = app.events_after(0).await.len() - before;
    assert!(rows <= 12, "{rows} rows for 300 refusals");
    // The window closes: the next refusal logs the count of those not logged one by one.
    app.clock.advance(time::Duration::seconds(61));
    let response = app
        .client
        .get(format!("{}/api/v1/me", app.url))
        .header("authorization", "Bearer still-not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let events = app.events_after(0).await;
    let aggregate = events
        .iter()
        .find(|r| {
            r.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("further refusals"))
        })
        .expect("an aggregated event");
    assert_eq!(aggregate.bytes, Some(290));
}

on_both_databases!(totp_seeds_are_stored_wrapped);

/// Finding 10: TOTP secrets were stored in clear, so a copy of the database was enough to
/// produce second factors.
async fn totp_seeds_are_stored_wrapped(db: Db) {
    use sqlx::Row;
    let app = spawn_app(db).await;
    let user = app
        .create_user("seeded", "Agency", &[Role::PrivacyOfficer])
        .await;
    let stored = |app: &crate::helpers::TestApp, id: String| {
        let pool = app.state.db.pool().clone();
        async move {
            sqlx::query("SELECT totp_secret FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
                .try_get::<String, _>("totp_secret")
                .unwrap()
        }
    };
    let seed_hex = hex::encode(&user.totp_secret);
    let row = stored(&app, user.id.to_string()).await;
    assert!(row.starts_with("age:"), "{row}");
    assert!(!row.contains(&seed_hex));
    app.login(&user).await;
    // A seed written in clear before this change still works, and is wrapped at its first use.
    sqlx::query("UPDATE users SET totp_secret = $2 WHERE id = $1")
        .bind(user.id.to_string())
        .bind(&seed_hex)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    app.login(&user).await;
    let row = stored(&app, user.id.to_string()).await;
    assert!(row.starts_with("age:") && !row.contains(&seed_hex), "{row}");
}
