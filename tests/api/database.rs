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

/// Issue 12, finding 8: on PostgreSQL the application's role owned the log's tables and could
/// disable their triggers. Migrated by the owner and served by a role granted with `steward
/// migrate --grant-to`, the server may read and add to the log and nothing else; its other
/// tables work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_role_may_only_read_and_add_to_the_log() {
    if crate::helpers::postgres_url("runtime_role").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDatabase::create(Db::Postgres, dir.path()).await;
    let owner = Database::connect(&test_db.url, &options()).await.unwrap();
    owner.migrate().await.unwrap();
    let role = format!("steward_rt_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE ROLE {role} LOGIN"))
        .execute(owner.pool())
        .await
        .unwrap();
    // What the command runs; bad names are refused before any SQL.
    let migrated = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["migrate", "--grant-to", &role])
        .env("STEWARD_DATABASE__URL", &test_db.url)
        .env("STEWARD_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    for bad in ["Robert'); DROP TABLE users;--", "9role", ""] {
        assert!(matches!(
            owner.grant_runtime_role(bad).await,
            Err(DbError::BadRoleName(_))
        ));
    }

    let (user_part, rest) = test_db.url.split_once('@').unwrap();
    let scheme = &user_part[..user_part.find("//").unwrap() + 2];
    let runtime_url = format!("{scheme}{role}@{rest}");
    let runtime = Database::connect(&runtime_url, &options()).await.unwrap();
    runtime.check_schema().await.unwrap();
    let report = runtime.migrate().await.unwrap();
    assert_eq!(
        report.from, report.to,
        "nothing to migrate, and no privilege needed"
    );
    let clock: steward::clock::SharedClock = std::sync::Arc::new(SystemClock);
    let audit = steward::audit::AuditLog::new(runtime.clone(), clock);
    audit
        .append(&steward::audit::AccessEvent::new(
            steward::audit::Actor::System,
            steward::audit::Action::ServerStarted,
            steward::audit::Target::Service,
            steward::audit::Outcome::Succeeded,
        ))
        .await
        .expect("the runtime role adds to the log");
    for statement in [
        "UPDATE access_events SET reason = 'rewritten'",
        "DELETE FROM access_events",
        "TRUNCATE access_events",
        "DELETE FROM access_log_checkpoints",
        "UPDATE access_log SET hash = prev_hash",
        "ALTER TABLE access_events DISABLE TRIGGER ALL",
        "DROP TABLE access_log",
    ] {
        let error = sqlx::raw_sql(statement)
            .execute(runtime.pool())
            .await
            .expect_err(statement)
            .to_string();
        assert!(
            error.contains("permission denied") || error.contains("must be owner"),
            "{statement}: {error}"
        );
    }
    // The other tables are the server's to change.
    sqlx::query("UPDATE users SET display_name = display_name WHERE id = 'nobody'")
        .execute(runtime.pool())
        .await
        .expect("ordinary tables are writable");
    runtime.close().await;
    sqlx::raw_sql(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .execute(owner.pool())
        .await
        .unwrap();
    owner.close().await;
}
