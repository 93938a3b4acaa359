//! The access log: every change's event, written in the change's own transaction, then given
//! its place in a hash chain and an RFC 6962 Merkle tree by one sequencer, and signed into
//! checkpoints.
//!
//! - [`AuditLog::record`] inserts an event into `access_events` inside the caller's
//!   transaction: the change and its event commit together or not at all.
//! - [`AuditLog::append`] is for events that accompany no change (a refusal, a read): they are
//!   queued in memory and inserted in batches, many callers to one transaction, each call
//!   returning once its event is durable.
//! - [`sequencer::Sequencer`] takes committed events in the order they committed, gives them
//!   consecutive positions, extends the chain and the tree, and signs checkpoints.
//! - [`verify`] recomputes all of it; [`proof`] proves one record or one checkpoint against
//!   another; [`review`] is what the privacy officer reads.
//!
//! Architecture invariant: nothing issues UPDATE or DELETE against the log's tables, and the
//! triggers of migration 0010 refuse them from anyone else.

pub mod checkpoint;
mod event;
pub mod legacy;
pub mod proof;
pub mod record;
pub mod review;
pub mod sequencer;
pub mod tree;
pub mod verify;

use std::sync::{Arc, OnceLock};

use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot, Mutex};

pub use event::{
    AccessEvent, Action, Actor, Client, Outcome, Reason, Target, TargetColumns, UserAgent,
};
pub use record::AccessRecord;

use crate::clock::SharedClock;
use crate::db::{Backend, Database, DbError};

/// Key of the PostgreSQL advisory lock between event writers (shared, until their transaction
/// ends) and the sequencer (exclusive, for a moment): once the sequencer holds it, every event
/// id it can see is final, because every transaction that took an id before has ended.
pub(crate) const WRITERS_LOCK_KEY: i64 = 0x0053_5445_5741_5544; // "STEWAUD"

/// Events inserted by one batch transaction, at most.
const MAX_BATCH: usize = 256;

/// Batch writers working at once on PostgreSQL (SQLite has one writer anyway).
const POSTGRES_BATCH_WRITERS: usize = 4;

/// Access-log failures. A caller that cannot write its event must not proceed (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database refused or failed the write.
    #[error("cannot write the access log: {0}")]
    Database(#[from] DbError),
    /// The batch writer is gone (the process is stopping).
    #[error("cannot write the access log: its writer has stopped")]
    WriterStopped,
    /// The clock gave a time that cannot be written as RFC 3339.
    #[error("cannot format the event time: {0}")]
    Time(#[from] time::error::Format),
    /// The stored Merkle tree cannot serve a hash it should hold.
    #[error("access log tree: {0}")]
    Tree(String),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Database(DbError::Sqlx(e))
    }
}

/// An event stamped with its time, ready to insert.
struct Stamped<'a> {
    at: String,
    event: &'a AccessEvent,
}

/// One queued standalone event and where to say it is durable.
struct Queued {
    at: String,
    event: AccessEvent,
    done: oneshot::Sender<Result<i64, String>>,
}

/// The write side of the access log.
#[derive(Debug, Clone)]
pub struct AuditLog {
    db: Database,
    clock: SharedClock,
    batcher: Arc<OnceLock<mpsc::Sender<Queued>>>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queued")
    }
}

impl AuditLog {
    /// The log in `db`, stamping events with `clock`.
    pub fn new(db: Database, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            batcher: Arc::new(OnceLock::new()),
        }
    }

    /// The database the log lives in.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Inserts `event` in the caller's transaction and returns its event id. The event is
    /// durable exactly when the caller commits, and gets its position within a second after.
    #[tracing::instrument(skip_all, fields(action = event.action.as_str(), outcome = event.outcome.as_str()))]
    pub async fn record(
        &self,
        conn: &mut AnyConnection,
        event: &AccessEvent,
    ) -> Result<i64, AuditError> {
        let stamped = Stamped {
            at: format_time(self.clock.now())?,
            event,
        };
        let ids = insert_events(conn, self.db.backend(), &[stamped]).await?;
        Ok(ids[0])
    }

    /// Writes an event that accompanies no change of state, and returns its id once it is
    /// committed. Concurrent calls share transactions.
    #[tracing::instrument(skip_all, fields(action = event.action.as_str(), outcome = event.outcome.as_str()))]
    pub async fn append(&self, event: &AccessEvent) -> Result<i64, AuditError> {
        let (done, result) = oneshot::channel();
        let queued = Queued {
            at: format_time(self.clock.now())?,
            event: event.clone(),
            done,
        };
        self.batcher()
            .send(queued)
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        match result.await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(message)) => Err(AuditError::Database(DbError::Sqlx(sqlx::Error::Protocol(
                message,
            )))),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }

    fn batcher(&self) -> &mpsc::Sender<Queued> {
        self.batcher.get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<Queued>(MAX_BATCH * 16);
            let receiver = Arc::new(Mutex::new(receiver));
            let writers = match self.db.backend() {
                Backend::Sqlite => 1,
                Backend::Postgres => POSTGRES_BATCH_WRITERS,
            };
            for _ in 0..writers {
                tokio::spawn(write_batches(self.db.clone(), receiver.clone()));
            }
            sender
        })
    }

    /// Events with id greater than `after`, in commit order, at most `limit`, each with its
    /// position when it has one.
    pub async fn records_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AccessRecord>, AuditError> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM access_events e \
             LEFT JOIN access_log l ON l.event_id = e.id \
             WHERE e.id > $1 ORDER BY e.id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(record_from_row).collect()
    }
}

/// One batch writer: takes what is queued, inserts it in one transaction, answers each caller.
async fn write_batches(db: Database, receiver: Arc<Mutex<mpsc::Receiver<Queued>>>) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let result = insert_batch(&db, &batch).await;
        match result {
            Ok(ids) => {
                for (queued, id) in batch.into_iter().zip(ids) {
                    let _ = queued.done.send(Ok(id));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for queued in batch {
                    let _ = queued.done.send(Err(message.clone()));
                }
            }
        }
    }
}

async fn insert_batch(db: &Database, batch: &[Queued]) -> Result<Vec<i64>, AuditError> {
    let stamped: Vec<Stamped<'_>> = batch
        .iter()
        .map(|q| Stamped {
            at: q.at.clone(),
            event: &q.event,
        })
        .collect();
    let mut tx = db.begin_write().await?;
    let ids = insert_events(&mut tx, db.backend(), &stamped).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Columns bound per event.
const BOUND_PER_EVENT: usize = 14;

/// Inserts events in one statement, in order, and returns their ids. On PostgreSQL the
/// transaction first takes the writers' lock (shared), so the sequencer can wait for it.
async fn insert_events(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[Stamped<'_>],
) -> Result<Vec<i64>, AuditError> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
            .bind(WRITERS_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
    }
    let mut values = Vec::with_capacity(events.len());
    for i in 0..events.len() {
        let p = |n: usize| format!("${}", i * BOUND_PER_EVENT + n);
        values.push(format!(
            "({at}, {kind}, {user}, (SELECT org_id FROM users WHERE id = {user}), {action}, \
             {tkind}, {tid}, {release}, {entry}, \
             (SELECT d.number FROM releases r JOIN duas d \
              ON d.release_id = r.id AND d.version = r.dua_version WHERE r.id = {release}), \
             {file}, {outcome}, {reason}, {addr}, {agent}, {bytes})",
            at = p(1),
            kind = p(2),
            user = p(3),
            action = p(4),
            tkind = p(5),
            tid = p(6),
            release = p(7),
            entry = p(8),
            file = p(9),
            outcome = p(10),
            reason = p(11),
            addr = p(12),
            agent = p(13),
            bytes = p(14),
        ));
    }
    let sql = format!(
        "INSERT INTO access_events (at, actor_kind, actor_user, actor_org, action, target_kind, \
         target_id, release_id, history_entry, dua_number, file_id, outcome, reason, \
         client_addr, user_agent, bytes) VALUES {} RETURNING id",
        values.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for Stamped { at, event } in events {
        let target = event.target.columns();
        query = query
            .bind(at.clone())
            .bind(event.actor.kind())
            .bind(event.actor.user().map(|u| u.to_string()))
            .bind(event.action.as_str())
            .bind(target.kind)
            .bind(target.id)
            .bind(target.release.map(|r| r.to_string()))
            .bind(target.history_entry)
            .bind(target.file.map(|f| f.to_string()))
            .bind(event.outcome.as_str())
            .bind(event.reason.map(|r| r.as_str()))
            .bind(event.client.addr.map(|a| a.to_string()))
            .bind(
                event
                    .client
                    .user_agent
                    .as_ref()
                    .map(|u| u.as_str().to_owned()),
            )
            .bind(event.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)));
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut ids = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING does not promise the order of the VALUES list; ids are given in that order.
    ids.sort_unstable();
    Ok(ids)
}

/// The columns of a record: the event's, with its place in the log when it has one.
pub(crate) const RECORD_COLUMNS: &str = "e.id, l.seq, e.at, e.actor_kind, e.actor_user, \
    e.actor_org, e.action, e.target_kind, e.target_id, e.release_id, e.history_entry, \
    e.dua_number, e.file_id, e.outcome, e.reason, e.client_addr, e.user_agent, e.bytes, \
    l.integrated_at";

pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<AccessRecord, AuditError> {
    Ok(AccessRecord {
        id: row.try_get("id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor_kind: row.try_get("actor_kind")?,
        actor_user: row.try_get("actor_user")?,
        actor_org: row.try_get("actor_org")?,
        action: row.try_get("action")?,
        target_kind: row.try_get("target_kind")?,
        target_id: row.try_get("target_id")?,
        release_id: row.try_get("release_id")?,
        history_entry: row.try_get("history_entry")?,
        dua_number: row.try_get("dua_number")?,
        file_id: row.try_get("file_id")?,
        outcome: row.try_get("outcome")?,
        reason: row.try_get("reason")?,
        client_addr: row.try_get("client_addr")?,
        user_agent: row.try_get("user_agent")?,
        bytes: row.try_get("bytes")?,
        integrated_at: row.try_get("integrated_at")?,
    })
}

/// Fixed-width RFC 3339 in UTC, so records sort by time as text.
pub(crate) fn format_time(t: time::OffsetDateTime) -> Result<String, time::error::Format> {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC).format(FORMAT)
}
