//! One `Database` handle over SQLite or PostgreSQL, chosen by the URL.
//!
//! Queries go through sqlx's `Any` driver so SQL is written once where the dialects agree
//! (`$1` placeholders, TEXT timestamps, BIGINT integers); [`Backend`] lets the few places
//! where they differ (locking, notifications) pick their own statement.

pub mod api_tokens;
pub mod destruction;
pub mod downloads;
pub mod extracts;
pub mod login_throttle;
mod migrate;
pub mod optout;
pub mod recipient_keys;
pub mod releases;
pub mod sessions;
pub mod signal;
pub mod timestamp;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub use migrate::{MigrationReport, LATEST_SCHEMA_VERSION};

use crate::config::redact_url_password;

/// The database engine behind a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (embedded mode).
    Sqlite,
    /// A PostgreSQL server (production; any number of replicas).
    Postgres,
}

/// Database failures, naming the database (password redacted) where it helps.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL has a scheme other than `sqlite` or `postgres`.
    #[error("unsupported database URL {url}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to database {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database was migrated by a newer Steward; running older code against it could corrupt it.
    #[error("database schema version {found} is newer than this binary supports ({supported}); upgrade Steward")]
    SchemaTooNew {
        /// Highest version recorded in the database.
        found: i64,
        /// Highest version this binary knows.
        supported: i64,
    },
    /// The database has not been migrated to the version this binary needs.
    #[error("database schema version {found} is older than this binary needs ({needed}); run `steward migrate`")]
    SchemaTooOld {
        /// Highest version recorded in the database.
        found: i64,
        /// Version this binary needs.
        needed: i64,
    },
    /// The command needs PostgreSQL.
    #[error("this needs PostgreSQL (SQLite has no roles)")]
    NotPostgres,
    /// A role name that is not a plain lower-case identifier.
    #[error(
        "`{0}` is not a role name (lower-case letters, digits and _, not starting with a digit)"
    )]
    BadRoleName(String),
    /// A migration script failed; the transaction was rolled back.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database could not do it now; trying again later may succeed.
    #[error("database busy: {0}")]
    Busy(&'static str),
    /// Any other driver error.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// Pool settings that are not part of the URL.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// SQLite lock wait.
    pub sqlite_busy_timeout: Duration,
    /// PostgreSQL password, added to the URL.
    pub password: Option<SecretString>,
}

/// The shared database handle.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// The PostgreSQL URL with its password, for [`Database::postgres_reader`].
    postgres_url: Option<SecretString>,
}

/// Creates an empty file readable by its owner only, unless it exists (or is SQLite's
/// in-memory database).
fn create_private_file(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_empty() || path.starts_with(':') || std::path::Path::new(path).exists() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(|_| ()),
    }
}

impl Database {
    /// Connects and checks the connection; does not migrate.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let redacted = redact_url_password(url);
        let (backend, full_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            // The file holds accounts and the access log: made 0600 before SQLite opens it
            // (SQLite gives its -wal and -shm files the same mode), wherever it is.
            create_private_file(path.split('?').next().unwrap_or(path)).map_err(|source| {
                DbError::Connect {
                    url: redacted.clone(),
                    source: sqlx::Error::Io(source),
                }
            })?;
            // mode=rwc: create the file on first start.
            let sep = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("{url}{sep}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let full = match &options.password {
                Some(password) => with_password(url, password),
                None => url.to_owned(),
            };
            (Backend::Postgres, full)
        } else {
            return Err(DbError::UnsupportedUrl { url: redacted });
        };
        let connect_options =
            AnyConnectOptions::from_str(&full_url).map_err(|source| DbError::Connect {
                url: redacted.clone(),
                source,
            })?;
        let busy_ms = options.sqlite_busy_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; the busy timeout makes a
                        // second writer wait instead of failing at once.
                        conn.execute(
                            format!(
                                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {busy_ms}; \
                                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; \
                                 PRAGMA secure_delete = ON;"
                            )
                            .as_str(),
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(|source| DbError::Connect {
                url: redacted.clone(),
                source,
            })?;
        let postgres_url = (backend == Backend::Postgres).then(|| SecretString::from(full_url));
        let db = Self {
            pool,
            backend,
            postgres_url,
        };
        db.ping().await.map_err(|e| match e {
            DbError::Sqlx(source) => DbError::Connect {
                url: redacted,
                source,
            },
            other => other,
        })?;
        Ok(db)
    }

    /// The engine behind this handle.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for the query modules.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Round-trips a trivial query: the readiness check.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Brings the schema up to date; refuses a database newer than this binary.
    pub async fn migrate(&self) -> Result<MigrationReport, DbError> {
        migrate::run(self).await
    }

    /// Grants a separate runtime role what serving needs, and only SELECT and INSERT on the
    /// access log (PostgreSQL).
    pub async fn grant_runtime_role(&self, role: &str) -> Result<(), DbError> {
        migrate::grant_runtime(self, role).await
    }

    /// After deleting secrets (a release identity's cryptographic erase): makes the deleted
    /// rows' bytes leave the database's files as far as the engine allows. SQLite runs with
    /// `secure_delete` (freed content is zeroed), so the write-ahead log, which still holds the
    /// old pages, is checkpointed and truncated. PostgreSQL keeps a deleted row until VACUUM
    /// prunes its page, so the table is vacuumed; WAL segments and backups taken earlier keep
    /// their copy until they are recycled (the operator's backup retention bounds that).
    pub async fn scrub(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Sqlite => {
                // (busy, log frames, checkpointed frames): busy means a reader still holds the
                // old pages; they are released within moments, so try for a few seconds, then
                // leave it to the caller's retry.
                for attempt in 0..50 {
                    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                        .fetch_one(&self.pool)
                        .await?;
                    let busy: i64 = row.try_get(0)?;
                    if busy == 0 {
                        return Ok(());
                    }
                    if attempt < 49 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                return Err(DbError::Busy("the write-ahead log could not be truncated"));
            }
            Backend::Postgres => {
                sqlx::query("VACUUM release_keys")
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Refuses to serve a database whose schema is not exactly the one this binary knows.
    pub async fn check_schema(&self) -> Result<(), DbError> {
        migrate::check(self).await
    }

    /// A native PostgreSQL pool (two connections) on the same database, for bulk reads that
    /// the `Any` driver makes slow by converting every row; `None` on SQLite.
    pub async fn postgres_reader(&self) -> Result<Option<sqlx::PgPool>, DbError> {
        let Some(url) = &self.postgres_url else {
            return Ok(None);
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(url.expose_secret())
            .await
            .map_err(|source| DbError::Connect {
                url: redact_url_password(url.expose_secret()),
                source,
            })?;
        Ok(Some(pool))
    }

    /// A PostgreSQL listener on `channel`, on its own connection; `None` on SQLite.
    pub async fn postgres_listener(
        &self,
        channel: &str,
    ) -> Result<Option<sqlx::postgres::PgListener>, DbError> {
        let Some(url) = &self.postgres_url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url.expose_secret())
            .await
            .map_err(|source| DbError::Connect {
                url: redact_url_password(url.expose_secret()),
                source,
            })?;
        listener.listen(channel).await?;
        Ok(Some(listener))
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first could not upgrade to a
    /// writer once another commits, and would fail instead of waiting its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Inserts a percent-encoded password after the user name of a PostgreSQL URL.
fn with_password(url: &str, password: &SecretString) -> String {
    let encoded: String = password
        .expose_secret()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{scheme}://{user}:{encoded}@{host}")
        }
        None => url.to_owned(),
    }
}

/// True when a driver error means "another writer got there first; try again".
pub fn is_write_conflict(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    // SQLITE_BUSY (5), SQLITE_LOCKED (6) and SQLITE_BUSY_SNAPSHOT (517): the write lock or a
    // fresh snapshot was not available; PostgreSQL 40001/40P01: serialization failure or deadlock.
    matches!(
        db.code().as_deref(),
        Some("5" | "6" | "517" | "40001" | "40P01")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_encoded_into_url() {
        let pw = SecretString::from("p@ss/w:rd".to_owned());
        assert_eq!(
            with_password("postgres://steward@db:5432/x", &pw),
            "postgres://steward:p%40ss%2Fw%3Ard@db:5432/x"
        );
    }
}
