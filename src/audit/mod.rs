//! The access log: append-only and hash-chained.
//!
//! Architecture invariant: this module issues no UPDATE or DELETE against `access_log`, and the
//! database triggers of migration 0001 refuse them from anyone else.

pub mod chain;
mod event;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Mutex;

pub use event::{AccessEvent, Action, Actor, Client, Outcome, Reason, Target, UserAgent};

use crate::clock::SharedClock;
use crate::db::{is_write_conflict, Backend, Database, DbError};

/// Key of the PostgreSQL advisory lock that serializes appends across replicas.
const APPEND_LOCK_KEY: i64 = 0x0053_5445_5741_5544; // "STEWAUD"

/// How many times an append is retried after losing a race to another process.
const MAX_APPEND_ATTEMPTS: u32 = 50;

/// Access-log failures. A caller that cannot append must not proceed (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused or failed the write.
    #[error("cannot write the access log: {0}")]
    Database(#[from] DbError),
    /// Other writers kept winning the race for the next sequence number.
    #[error("cannot write the access log: still contended after {MAX_APPEND_ATTEMPTS} attempts")]
    Contended,
    /// The clock gave a time that cannot be written as RFC 3339.
    #[error("cannot format the event time: {0}")]
    Time(#[from] time::error::Format),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Database(DbError::Sqlx(e))
    }
}

/// One stored record, as read back from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// RFC 3339 UTC time with microseconds.
    pub at: String,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: String,
    /// How it ended.
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
    /// Client IP address.
    pub client_addr: Option<String>,
    /// Sanitized user agent.
    pub user_agent: Option<String>,
    /// Bytes transferred.
    pub bytes: Option<i64>,
    /// Hex hash of the previous record (zeros for the first).
    pub prev_hash: String,
    /// Hex `SHA-256(prev_hash || canonical encoding)`.
    pub hash: String,
}

/// The append side of the access log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    db: Database,
    clock: SharedClock,
    /// Serializes appends inside this process, so they queue here instead of racing in the
    /// database; the database lock below covers other processes and replicas.
    local: Arc<Mutex<()>>,
}

impl AuditLog {
    /// The log in `db`, stamping records with `clock`.
    pub fn new(db: Database, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            local: Arc::new(Mutex::new(())),
        }
    }

    /// Appends one event and returns the stored record once it is committed.
    #[tracing::instrument(skip_all, fields(action = event.action.as_str(), outcome = event.outcome.as_str()))]
    pub async fn append(&self, event: &AccessEvent) -> Result<AccessRecord, AuditError> {
        let _queued = self.local.lock().await;
        for attempt in 0..MAX_APPEND_ATTEMPTS {
            match self.try_append(event).await {
                Ok(record) => return Ok(record),
                Err(AuditError::Database(DbError::Sqlx(e))) if is_write_conflict(&e) => {
                    // Another process took the next sequence number; back off and re-read.
                    let wait = 2u64.saturating_pow(attempt.min(6));
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(AuditError::Contended)
    }

    async fn try_append(&self, event: &AccessEvent) -> Result<AccessRecord, AuditError> {
        let mut tx = self.db.pool().begin().await?;
        if self.db.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(APPEND_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }
        let head = sqlx::query("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (prev_seq, prev_hash) = match head {
            Some(row) => {
                let hash: String = row.try_get("hash")?;
                let decoded = chain::decode_hash(&hash).ok_or_else(|| {
                    sqlx::Error::Protocol("access_log head has a malformed hash".into())
                })?;
                (row.try_get::<i64, _>("seq")?, decoded)
            }
            None => (0, chain::GENESIS_HASH),
        };
        let mut record = AccessRecord {
            seq: prev_seq + 1,
            at: format_time(self.clock.now())?,
            actor: event.actor.to_string(),
            action: event.action.as_str().to_owned(),
            target: event.target.to_string(),
            outcome: event.outcome.as_str().to_owned(),
            reason: event.reason.map(|r| r.as_str().to_owned()),
            client_addr: event.client.addr.map(|a| a.to_string()),
            user_agent: event
                .client
                .user_agent
                .as_ref()
                .map(|u| u.as_str().to_owned()),
            bytes: event.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            prev_hash: hex::encode(prev_hash),
            hash: String::new(),
        };
        record.hash = hex::encode(chain::record_hash(&prev_hash, &record));
        sqlx::query(
            "INSERT INTO access_log (seq, at, actor, action, target, outcome, reason, \
             client_addr, user_agent, bytes, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(record.seq)
        .bind(&record.at)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.outcome)
        .bind(&record.reason)
        .bind(&record.client_addr)
        .bind(&record.user_agent)
        .bind(record.bytes)
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Records with `seq > after`, in order, at most `limit` of them.
    pub async fn records_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AccessRecord>, AuditError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, reason, client_addr, user_agent, \
             bytes, prev_hash, hash FROM access_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(record_from_row).collect()
    }
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<AccessRecord, AuditError> {
    Ok(AccessRecord {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        client_addr: row.try_get("client_addr")?,
        user_agent: row.try_get("user_agent")?,
        bytes: row.try_get("bytes")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Fixed-width RFC 3339 in UTC, so records sort by time as text.
fn format_time(t: time::OffsetDateTime) -> Result<String, time::error::Format> {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC).format(FORMAT)
}
