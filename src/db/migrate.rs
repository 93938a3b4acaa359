//! Forward-only numbered migrations, embedded in the binary, one script per backend.

use sqlx::{Acquire, Row};

use super::{Backend, Database, DbError};

/// One schema step, in both dialects.
struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Every migration, in order. Append only: a released migration is never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "access_log",
        sqlite: include_str!("../../migrations/sqlite/0001_access_log.sql"),
        postgres: include_str!("../../migrations/postgres/0001_access_log.sql"),
    },
    Migration {
        version: 2,
        name: "optout",
        sqlite: include_str!("../../migrations/sqlite/0002_optout.sql"),
        postgres: include_str!("../../migrations/postgres/0002_optout.sql"),
    },
    Migration {
        version: 3,
        name: "identity",
        sqlite: include_str!("../../migrations/sqlite/0003_identity.sql"),
        postgres: include_str!("../../migrations/postgres/0003_identity.sql"),
    },
    Migration {
        version: 4,
        name: "jobs",
        sqlite: include_str!("../../migrations/sqlite/0004_jobs.sql"),
        postgres: include_str!("../../migrations/postgres/0004_jobs.sql"),
    },
    Migration {
        version: 5,
        name: "releases",
        sqlite: include_str!("../../migrations/sqlite/0005_releases.sql"),
        postgres: include_str!("../../migrations/postgres/0005_releases.sql"),
    },
    Migration {
        version: 6,
        name: "extracts",
        sqlite: include_str!("../../migrations/sqlite/0006_extracts.sql"),
        postgres: include_str!("../../migrations/postgres/0006_extracts.sql"),
    },
    Migration {
        version: 7,
        name: "access_log_no_replace",
        sqlite: include_str!("../../migrations/sqlite/0007_access_log_no_replace.sql"),
        postgres: include_str!("../../migrations/postgres/0007_access_log_no_replace.sql"),
    },
    Migration {
        version: 8,
        name: "must_change_password",
        sqlite: include_str!("../../migrations/sqlite/0008_must_change_password.sql"),
        postgres: include_str!("../../migrations/postgres/0008_must_change_password.sql"),
    },
    Migration {
        version: 9,
        name: "agency",
        sqlite: include_str!("../../migrations/sqlite/0009_agency.sql"),
        postgres: include_str!("../../migrations/postgres/0009_agency.sql"),
    },
    Migration {
        version: 10,
        name: "access_log_v2",
        sqlite: include_str!("../../migrations/sqlite/0010_access_log_v2.sql"),
        postgres: include_str!("../../migrations/postgres/0010_access_log_v2.sql"),
    },
    Migration {
        version: 11,
        name: "downloads",
        sqlite: include_str!("../../migrations/sqlite/0011_downloads.sql"),
        postgres: include_str!("../../migrations/postgres/0011_downloads.sql"),
    },
    Migration {
        version: 12,
        name: "destruction",
        sqlite: include_str!("../../migrations/sqlite/0012_destruction.sql"),
        postgres: include_str!("../../migrations/postgres/0012_destruction.sql"),
    },
    Migration {
        version: 13,
        name: "publication_reviews",
        sqlite: include_str!("../../migrations/sqlite/0013_publication_reviews.sql"),
        postgres: include_str!("../../migrations/postgres/0013_publication_reviews.sql"),
    },
];

/// The schema version this binary expects.
pub const LATEST_SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Key of the PostgreSQL advisory lock that keeps two replicas from migrating at once.
const MIGRATION_LOCK_KEY: i64 = 0x0053_5445_574d_4947; // "STEWMIG"

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version before the run.
    pub from: i64,
    /// Schema version after the run.
    pub to: i64,
}

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (\
     version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";

/// Tables of the access log: a runtime role may only read them and add to them.
const LOG_TABLES: [&str; 4] = [
    "access_events",
    "access_log",
    "access_log_checkpoints",
    "access_log_v1",
];

/// Grants `role` what a server or worker needs at run time (PostgreSQL): every other table's
/// rows, but on the access log only SELECT and INSERT. The migration owner keeps ownership, so
/// the runtime role cannot disable the log's triggers, truncate it or alter it. Run after
/// every migration (new tables need their grant).
pub(super) async fn grant_runtime(db: &Database, role: &str) -> Result<(), DbError> {
    if db.backend() != Backend::Postgres {
        return Err(DbError::NotPostgres);
    }
    let valid = !role.is_empty()
        && role.len() <= 63
        && role
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(DbError::BadRoleName(role.to_owned()));
    }
    // The name is checked above, so quoting it is enough to make it an identifier.
    let role = format!("\"{role}\"");
    let log_tables = LOG_TABLES.join(", ");
    let script = format!(
        "GRANT USAGE ON SCHEMA public TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; \
         REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {log_tables} FROM {role}; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};"
    );
    let mut tx = db.pool().begin().await?;
    sqlx::raw_sql(&script).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates the version table on a new database. Only when it is missing: a runtime role
/// that does not own the schema may not even ask to create what exists (PostgreSQL checks
/// the privilege first).
async fn ensure_version_table(conn: &mut sqlx::AnyConnection) -> Result<(), DbError> {
    let exists = sqlx::query("SELECT 1 FROM schema_migrations LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .is_ok();
    if !exists {
        sqlx::query(CREATE_VERSION_TABLE)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(super) async fn run(db: &Database) -> Result<MigrationReport, DbError> {
    let mut conn = db.pool().acquire().await?;
    ensure_version_table(&mut conn).await?;
    let mut tx = conn.begin().await?;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
    }
    let from = current_version(&mut tx).await?;
    if from > LATEST_SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found: from,
            supported: LATEST_SCHEMA_VERSION,
        });
    }
    let applied_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| DbError::Sqlx(sqlx::Error::Protocol(e.to_string())))?;
    for migration in MIGRATIONS.iter().filter(|m| m.version > from) {
        let script = match db.backend() {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        let failed = |source| DbError::Migration {
            version: migration.version,
            name: migration.name,
            source,
        };
        sqlx::raw_sql(script)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(applied_at.as_str())
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    }
    tx.commit().await?;
    Ok(MigrationReport {
        from,
        to: LATEST_SCHEMA_VERSION,
    })
}

pub(super) async fn check(db: &Database) -> Result<(), DbError> {
    let mut conn = db.pool().acquire().await?;
    ensure_version_table(&mut conn).await?;
    let found = current_version(&mut conn).await?;
    match found.cmp(&LATEST_SCHEMA_VERSION) {
        std::cmp::Ordering::Greater => Err(DbError::SchemaTooNew {
            found,
            supported: LATEST_SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(DbError::SchemaTooOld {
            found,
            needed: LATEST_SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

async fn current_version(conn: &mut sqlx::AnyConnection) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>("v")?)
}
