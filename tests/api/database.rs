use steward::app::Application;
use steward::clock::SystemClock;
use steward::db::{ConnectOptions, Database, DbError, LATEST_SCHEMA_VERSION};

use crate::helpers::{test_settings, Db, TestDatabase};
use crate::on_both_databases;

on_both_databases!(migrations_are_idempotent, newer_schema_is_refused);

fn options() -> ConnectOptions {
    ConnectOptions {
        max_connections: 2,
        sqlite_busy_timeout: std::time::Duration::from_secs(5),
        password: None,
    }
}

async fn migrations_are_idempotent(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDatabase::create(db, dir.path()).await;
    let database = Database::connect(&test_db.url, &options()).await.unwrap();
    let first = database.migrate().await.unwrap();
    assert_eq!((first.from, first.to), (0, LATEST_SCHEMA_VERSION));
    let second = database.migrate().await.unwrap();
    assert_eq!(
        (second.from, second.to),
        (LATEST_SCHEMA_VERSION, LATEST_SCHEMA_VERSION)
    );
    database.check_schema().await.unwrap();
    database.close().await;
}

async fn newer_schema_is_refused(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDatabase::create(db, dir.path()).await;
    let database = Database::connect(&test_db.url, &options()).await.unwrap();
    database.migrate().await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', 'x')")
        .bind(LATEST_SCHEMA_VERSION + 1)
        .execute(database.pool())
        .await
        .unwrap();
    let err = database.migrate().await.unwrap_err();
    assert!(matches!(err, DbError::SchemaTooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    database.close().await;

    let settings = test_settings(dir.path(), &test_db.url, &[]);
    let err = Application::build(settings, std::sync::Arc::new(SystemClock))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("newer than this binary"), "{err}");
}

#[tokio::test]
async fn unsupported_url_is_named() {
    let err = Database::connect("mysql://localhost/x", &options())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported database URL mysql://localhost/x"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_database_is_named_with_password_redacted() {
    let err = Database::connect("postgres://steward:hunter2@127.0.0.1:1/steward", &options())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "cannot connect to database postgres://steward:[redacted]@127.0.0.1:1/steward"
        ),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
