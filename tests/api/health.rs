use steward::clock::Clock;

use crate::helpers::{spawn_app, spawn_app_with, Db, Store};
use crate::{on_both_databases, on_both_stores};

on_both_databases!(
    ready_on_both_databases,
    unknown_route_is_json_404,
    oversized_body_is_refused
);
on_both_stores!(ready_on_both_stores);

async fn ready_on_both_databases(db: Db) {
    let app = spawn_app(db).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

async fn ready_on_both_stores(store: Store) {
    let app = spawn_app_with(Db::Sqlite, store).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    if let Some(url) = crate::helpers::postgres_url("ready_on_both_stores (postgres)") {
        let _ = url;
        let app = spawn_app_with(Db::Postgres, store).await;
        assert_eq!(app.get("/readyz").await.status(), 200);
    }
}

async fn unknown_route_is_json_404(db: Db) {
    let app = spawn_app(db).await;
    let response = app.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

async fn oversized_body_is_refused(db: Db) {
    let app = spawn_app(db).await;
    let limit = app.state.settings.server.request_body_limit_bytes;
    let response = app
        .client
        .post(format!("{}/healthz", app.url))
        .body(vec![b'x'; limit + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn security_headers_and_request_id_on_every_response() {
    let app = spawn_app(Db::Sqlite).await;
    for path in ["/healthz", "/readyz", "/missing"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers["strict-transport-security"], "max-age=63072000; includeSubDomains",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let id = headers["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "request id is a UUID: {id}");
    }
}

#[tokio::test]
async fn serves_http2_and_http1_by_alpn() {
    let app = spawn_app(Db::Sqlite).await;
    let h2 = app.get("/healthz").await;
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    let pem = std::fs::read(&app.ca_path).unwrap();
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .http1_only()
        .build()
        .unwrap();
    let response = http1
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
}

#[tokio::test]
async fn start_and_stop_are_logged() {
    let mut app = spawn_app(Db::Sqlite).await;
    // The start event is written before the listener serves, so one request proves it is there.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
    let records = app.state.audit.records_after(0, 10).await.unwrap();
    let actions: Vec<_> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["server_started", "server_stopped"]);
    // Records carry the injected clock's time, not the machine's.
    assert!(
        records
            .iter()
            .all(|r| r.at == "2026-03-01T12:00:00.000000Z"),
        "{records:?}"
    );
    app.clock.advance(time::Duration::hours(1));
    assert_eq!(app.clock.now().hour(), 13);
}
