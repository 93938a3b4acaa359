//! Shared set-up for the release tests: the people of a release, over HTTPS.

use serde_json::{json, Value};
use steward::domain::role::Role;

use crate::helpers::{Session, TestApp, TestUser};

/// Everyone a release involves, signed in.
pub struct People {
    pub requester: (TestUser, Session),
    pub colleague: (TestUser, Session),
    pub no_key: (TestUser, Session),
    pub outsider: (TestUser, Session),
    pub director: (TestUser, Session),
    pub director_of_university: (TestUser, Session),
    pub privacy: (TestUser, Session),
    pub it: (TestUser, Session),
}

pub const UNIVERSITY: &str = "State University";

async fn person(app: &TestApp, name: &str, org: &str, role: Role) -> (TestUser, Session) {
    let user = app.create_user(name, org, &[role]).await;
    let session = app.login(&user).await;
    (user, session)
}

async fn register_key(app: &TestApp, session: &Session) {
    let key = age::x25519::Identity::generate().to_public().to_string();
    let response = app
        .post_json(
            "/api/v1/me/keys",
            Some(&session.access_token),
            &json!({ "public_key": key, "label": "laptop" }),
        )
        .await;
    assert_eq!(response.status(), 201, "key registered");
}

/// Creates and signs in every person; the requester, colleague and outsider register a key.
pub async fn people(app: &TestApp) -> People {
    let p = People {
        requester: person(app, "requester", UNIVERSITY, Role::Recipient).await,
        colleague: person(app, "colleague", UNIVERSITY, Role::Recipient).await,
        no_key: person(app, "nokey", UNIVERSITY, Role::Recipient).await,
        outsider: person(app, "outsider", "Other Org", Role::Recipient).await,
        director: person(app, "director", "Agency", Role::ExecutiveDirector).await,
        director_of_university: person(app, "uni_director", UNIVERSITY, Role::ExecutiveDirector)
            .await,
        privacy: person(app, "privacy", "Agency", Role::PrivacyOfficer).await,
        it: person(app, "it", "Agency", Role::ItStaff).await,
    };
    register_key(app, &p.requester.1).await;
    register_key(app, &p.colleague.1).await;
    register_key(app, &p.outsider.1).await;
    p
}

/// A Level I request for de-identified eligibility data: the demo's own.
pub fn level_one_request() -> Value {
    steward::cli::demo::level_one_request()
}

/// A Level III request: the demo's own, limited to one payer (so filters travel with it).
pub fn level_three_request() -> Value {
    let mut request = steward::cli::demo::level_three_request();
    request["filters"]["payers"] = json!(["P01"]);
    request
}

/// `method path` as `session`, returning status and JSON body (null when not JSON).
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    session: &Session,
    body: Option<&Value>,
) -> (u16, Value) {
    let response = app
        .call(method, path, Some(&session.access_token), body)
        .await;
    let status = response.status().as_u16();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, json)
}

/// Asserts `status` and returns the body.
pub async fn expect(
    app: &TestApp,
    method: &str,
    path: &str,
    session: &Session,
    body: Option<&Value>,
    want: u16,
) -> Value {
    let (status, json) = call(app, method, path, session, body).await;
    assert_eq!(status, want, "{method} {path}: {json}");
    json
}

/// The release's current status.
pub async fn status_of(app: &TestApp, id: &str, session: &Session) -> String {
    let json = expect(
        app,
        "GET",
        &format!("/api/v1/releases/{id}"),
        session,
        None,
        200,
    )
    .await;
    json["status"].as_str().expect("status").to_owned()
}

/// DUA terms naming `users`, effective 2026-03-01 until 2026-12-31.
pub fn dua_body(number: &str, users: &[&TestUser], responsible: &TestUser) -> Value {
    json!({
        "number": number,
        "effective": "2026-03-01",
        "expiry": "2026-12-31",
        "authorized_users": users.iter().map(|u| u.id.to_string()).collect::<Vec<_>>(),
        "responsible": responsible.id.to_string(),
        "download_limit": 3,
        "networks": ["192.0.2.0/24"],
        "destruction_days": 30,
        "reason": "Signed by both parties on 2026-03-01"
    })
}

/// Takes a fresh Level I request to `dua_executed` and returns its id.
pub async fn executed_level_one(app: &TestApp, p: &People, number: &str) -> String {
    execute_request(app, p, &level_one_request(), None, number).await
}

/// Files `request` as `requester`, submits it and has `reviewer` start the review; returns the
/// release id.
pub async fn in_review(
    app: &TestApp,
    requester: &Session,
    reviewer: &Session,
    request: &Value,
) -> String {
    let created = expect(
        app,
        "POST",
        "/api/v1/requests",
        requester,
        Some(request),
        201,
    )
    .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let base = format!("/api/v1/releases/{id}");
    expect(app, "POST", &format!("{base}/submit"), requester, None, 200).await;
    expect(app, "POST", &format!("{base}/review"), reviewer, None, 200).await;
    id
}

/// Files `request`, then submits, reviews, records `committee` when given (Level III), approves
/// and executes a DUA naming the requester; returns the release id.
pub async fn execute_request(
    app: &TestApp,
    p: &People,
    request: &Value,
    committee: Option<&Value>,
    number: &str,
) -> String {
    let id = in_review(app, &p.requester.1, &p.privacy.1, request).await;
    let base = format!("/api/v1/releases/{id}");
    if let Some(decision) = committee {
        expect(
            app,
            "POST",
            &format!("{base}/committee"),
            &p.director.1,
            Some(decision),
            200,
        )
        .await;
    }
    expect(
        app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        200,
    )
    .await;
    let body = dua_body(number, &[&p.requester.0], &p.requester.0);
    let json = expect(
        app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(&body),
        200,
    )
    .await;
    assert_eq!(json["status"], "dua_executed");
    id
}
