//! Shared set-up for the download tests: a Level I release made available over HTTPS with DUA
//! terms a test chooses, and the calls a recipient makes.

use std::time::Duration;

use serde_json::{json, Value};
use steward::db::extracts;

use crate::extract_job::run_extract;
use crate::helpers::{spawn_app_configured, Db, Session, Store, TestApp};
use crate::release_support::{expect, in_review, level_one_request, people, People};

/// An app with a synthetic eligibility source wired in.
pub async fn app_with_source(db: Db, store: Store, extra: &[(&str, &str)]) -> TestApp {
    app_with_source_rows(db, store, 300, extra).await
}

/// An app with a synthetic source of `rows` (claims; eligibility scales from it).
pub async fn app_with_source_rows(
    db: Db,
    store: Store,
    rows: u64,
    extra: &[(&str, &str)],
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let source_dir = dir.path().to_path_buf();
    steward::synth::generate(&source_dir, rows, 5).unwrap();
    let source = source_dir.join("med_elig.csv").display().to_string();
    let claims = source_dir.join("med_claim.csv").display().to_string();
    let mut vars = vec![
        ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
        ("STEWARD_EXTRACT__SOURCES__MED_ELIG", source.as_str()),
        ("STEWARD_EXTRACT__SOURCES__MED_CLAIM", claims.as_str()),
    ];
    vars.extend_from_slice(extra);
    let mut app = spawn_app_configured(db, store, &vars).await;
    // The source lives, and is removed, with the app.
    app.dirs.push(dir);
    app
}

/// DUA terms for a download test: the requester named, `limit` downloads, `networks`.
pub fn dua(number: &str, p: &People, limit: u32, networks: &[&str]) -> Value {
    dua_naming(number, p, &[&p.requester.0], limit, networks)
}

/// DUA terms naming the requester, in force from `effective` for a year.
pub fn dua_terms_from(
    p: &People,
    number: &str,
    effective: time::Date,
    limit: u32,
    networks: &[&str],
) -> Value {
    let mut terms = dua(number, p, limit, networks);
    terms["effective"] = json!(effective.to_string());
    terms["expiry"] = json!((effective + time::Duration::days(365)).to_string());
    terms
}

/// DUA terms naming `users`, with the requester responsible.
pub fn dua_naming(
    number: &str,
    p: &People,
    users: &[&crate::helpers::TestUser],
    limit: u32,
    networks: &[&str],
) -> Value {
    json!({
        "number": number,
        "effective": "2026-03-01",
        "expiry": "2026-12-31",
        "authorized_users": users.iter().map(|u| u.id.to_string()).collect::<Vec<_>>(),
        "responsible": p.requester.0.id.to_string(),
        "download_limit": limit,
        "networks": networks,
        "destruction_days": 30,
        "reason": "Signed by both parties"
    })
}

/// A release taken to `available` under `dua_terms`; returns its id and its data file's id.
pub async fn available(app: &TestApp, p: &People, dua_terms: &Value) -> (String, String) {
    available_as(app, p, &level_one_request(), dua_terms).await
}

/// A Level I request for medical claims with many columns: an extract of some size.
pub fn wide_claims_request() -> Value {
    let elements: Vec<Value> = [
        "payer_id",
        "member_gender",
        "member_state",
        "principal_diagnosis",
        "other_diagnosis_1",
        "other_diagnosis_2",
        "revenue_code",
        "procedure_code",
        "paid_amount",
        "copay_amount",
        "year_incurred",
        "quarter_incurred",
    ]
    .iter()
    .map(|e| json!({ "element": format!("med_claim.{e}") }))
    .collect();
    json!({
        "level": "I",
        "datasets": ["med_claim"],
        "elements": elements,
        "purpose": "Cost of care by diagnosis",
        "ultimate_recipient": "State University health policy group",
        "security_measures": "Encrypted laptops, access limited to the named analysts",
        "publication_plan": "Aggregate tables only, no cell under 11",
        "filters": { "years": { "first": 2020, "last": 2023 } }
    })
}

/// `request` taken to `available` under `dua_terms`; returns its id and its data file's id.
pub async fn available_as(
    app: &TestApp,
    p: &People,
    request: &Value,
    dua_terms: &Value,
) -> (String, String) {
    let id = in_review(app, &p.requester.1, &p.privacy.1, request).await;
    let base = format!("/api/v1/releases/{id}");
    expect(
        app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
        200,
    )
    .await;
    expect(
        app,
        "POST",
        &format!("{base}/dua"),
        &p.director.1,
        Some(dua_terms),
        200,
    )
    .await;
    run_extract(app, p, &id).await;
    let files = extracts::files(&app.state.db, id.parse().unwrap())
        .await
        .unwrap();
    let data = files
        .iter()
        .find(|f| f.kind == "data")
        .expect("a data file");
    (id, data.id.to_string())
}

/// Everyone, and a release available to the requester from any address with `limit`.
pub async fn setup(app: &TestApp, limit: u32) -> (People, String, String) {
    let p = people(app).await;
    let (release, file) = available(app, &p, &dua("DUA-2026-0701", &p, limit, &[])).await;
    (p, release, file)
}

/// Asks for a link to `file` as `session`; returns the response.
pub async fn link_response(
    app: &TestApp,
    session: &Session,
    file: &str,
    body: Value,
) -> reqwest::Response {
    app.call(
        "POST",
        &format!("/api/v1/files/{file}/links"),
        Some(&session.access_token),
        Some(&body),
    )
    .await
}

/// A link to `file` for `session`'s user; returns its `/dl/...` path.
pub async fn link(app: &TestApp, session: &Session, file: &str) -> String {
    let response = link_response(app, session, file, json!({})).await;
    assert_eq!(response.status(), 201, "link issued");
    let json: Value = response.json().await.unwrap();
    json["url"].as_str().unwrap().to_owned()
}

/// `GET path` with `session`'s bearer and an optional `Range`.
pub async fn fetch(
    app: &TestApp,
    session: &Session,
    path: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .get(format!("{}{path}", app.url))
        .bearer_auth(&session.access_token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("request completes")
}

/// The stored bytes of a file, by id.
pub async fn stored(app: &TestApp, file: &str) -> Vec<u8> {
    let (_, row) = extracts::file(&app.state.db, file.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    crate::extract_job::read_object(app, &row.object_key).await
}

/// Waits until an event with `action` about `file` is in the log (a stream's end is recorded
/// after its last byte leaves); returns every such event.
pub async fn events_for(
    app: &TestApp,
    file: &str,
    action: &str,
    at_least: usize,
) -> Vec<steward::audit::AccessRecord> {
    for _ in 0..200 {
        let found: Vec<_> = app
            .events_after(0)
            .await
            .into_iter()
            .filter(|r| r.action == action && r.file_id.as_deref() == Some(file))
            .collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {at_least} {action} events for {file}");
}

/// The one refusal event after `after` with `action = download_refused`, its reason.
pub async fn last_refusal(app: &TestApp, after: i64) -> String {
    let refusals: Vec<_> = app
        .events_after(after)
        .await
        .into_iter()
        .filter(|r| r.action == "download_refused" && r.outcome == "denied")
        .collect();
    assert_eq!(refusals.len(), 1, "one refusal event: {refusals:?}");
    refusals[0].reason.clone().unwrap_or_default()
}

/// Replaces a file's stored object with `bytes` random bytes (a stand-in for a large extract;
/// the stream does not look inside) and records the new size; returns it.
pub async fn make_large(app: &TestApp, file: &str, bytes: usize) -> u64 {
    use sha2::Digest;
    let (_, row) = extracts::file(&app.state.db, file.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut content = vec![0u8; bytes];
    for (i, chunk) in content.chunks_mut(8).enumerate() {
        let word = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    let sha = hex::encode(sha2::Sha256::digest(&content));
    let key = steward::storage::ObjectKey::parse(&row.object_key).unwrap();
    let mut reader = std::io::Cursor::new(content);
    app.state.store.put(&key, &mut reader).await.unwrap();
    sqlx::query(
        "UPDATE extract_files SET ciphertext_bytes = $1, ciphertext_sha256 = $2 WHERE file_id = $3",
    )
    .bind(bytes as i64)
    .bind(sha)
    .bind(file)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    bytes as u64
}
