//! The published API: every route in the routes table is documented, the document is served
//! without sign-in, and a standard validator (`openapi-spec-validator`) accepts it. Adding a
//! route without documenting it fails here.

use std::collections::BTreeSet;

use steward::http::api::openapi::OPERATIONS;
use steward::http::api::ROUTES;

use crate::helpers::{spawn_app_configured, Db, Store};

#[test]
fn every_route_is_documented_and_nothing_else() {
    let routes: BTreeSet<(&str, &str)> = ROUTES.iter().map(|r| (r.method, r.path)).collect();
    let documented: BTreeSet<(&str, &str)> =
        OPERATIONS.iter().map(|o| (o.method, o.path)).collect();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without documentation: {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&routes).collect();
    assert!(
        stale.is_empty(),
        "documentation of routes that do not exist: {stale:?}"
    );
    assert_eq!(
        documented.len(),
        OPERATIONS.len(),
        "a route documented twice"
    );
}

/// The validator CI installs, or one on `PATH`; `None` (skip) outside CI when neither exists.
fn validator() -> Option<String> {
    let candidates = [
        std::env::var("STEWARD_TEST_OPENAPI_VALIDATOR").ok(),
        Some("openapi-spec-validator".to_owned()),
    ];
    for candidate in candidates.into_iter().flatten() {
        if std::process::Command::new(&candidate)
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "openapi-spec-validator is not installed, and CI must run every test"
    );
    eprintln!("SKIPPED: openapi-spec-validator is not installed");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_covers_every_route_and_validates() {
    let app = spawn_app_configured(Db::Sqlite, Store::Fs, &[]).await;
    let response = app.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for route in ROUTES {
        let operation = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(
            operation["summary"].is_string(),
            "{} {} is not in the document",
            route.method,
            route.path
        );
    }
    // Bodies are typed by the structs the handlers parse: the request's schema names its
    // fields, which are required, and what each nested part is.
    let request = &document["paths"]["/api/v1/requests"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"]["$ref"];
    assert_eq!(request, "#/components/schemas/RequestBody");
    let schemas = &document["components"]["schemas"];
    let request = &schemas["RequestBody"];
    for field in [
        "level",
        "datasets",
        "elements",
        "filters",
        "aggregate",
        "purpose",
    ] {
        assert!(
            request["properties"][field].is_object(),
            "{field}: {request}"
        );
    }
    let required: Vec<&str> = request["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"purpose") && !required.contains(&"aggregate"));
    assert_eq!(
        schemas["Level"]["enum"],
        serde_json::json!(["I", "II", "III"])
    );
    let body = |method: &str, path: &str| document["paths"][path][method]["requestBody"].clone();
    assert_eq!(body("post", "/api/v1/auth/login")["required"], true);
    assert_eq!(
        body("post", "/api/v1/releases/{id}/approve")["required"],
        false
    );
    let login = &schemas["LoginBody"]["properties"]["password"];
    assert_eq!(login["format"], "password", "{login}");
    // Every reference resolves.
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            schemas[name].is_object(),
            "{name} is referred to but not defined"
        );
    }
    let Some(validator) = validator() else {
        return;
    };
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let checked = std::process::Command::new(validator)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
