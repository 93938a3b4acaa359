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
use tokio::sync::{mpsc, oneshot};

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
    /// When the caller handed it over, for the append-lag metric.
    queued: std::time::Instant,
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
            queued: std::time::Instant::now(),
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
            tokio::spawn(write_batches(self.db.clone(), receiver));
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

/// The batch writer: takes what is queued, inserts it in one statement, answers each caller.
/// One writer makes the largest batches: while its statement commits, the next batch gathers
/// (measured: one writer appends half again as fast as two, and 2.5 times pgbench's single-row
/// inserts with 64 callers).
async fn write_batches(db: Database, mut receiver: mpsc::Receiver<Queued>) {
    loop {
        let batch = {
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            // Callers whose last event just committed are about to send their next: yield to
            // them while more keep arriving, so one commit carries the whole burst.
            let mut quiet = 0;
            while quiet < 2 && batch.len() < MAX_BATCH {
                tokio::task::yield_now().await;
                let before = batch.len();
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                quiet = if batch.len() == before { quiet + 1 } else { 0 };
            }
            batch
        };
        let result = insert_batch(&db, &batch).await;
        match result {
            Ok(ids) => {
                for (queued, id) in batch.into_iter().zip(ids) {
                    crate::metrics::access_log_append_lag(queued.queued.elapsed().as_secs_f64());
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
    // One statement, its own transaction: committed (and durable) when it returns.
    let mut conn = db.pool().acquire().await?;
    insert_events(&mut conn, db.backend(), &stamped).await
}

/// An event as the insert statement reads it (a JSON array of these is its one parameter, so
/// the statement has one shape whatever the batch size, prepared and planned once).
#[derive(serde::Serialize)]
struct EventRow<'a> {
    at: &'a str,
    actor_kind: &'static str,
    actor_user: Option<String>,
    action: &'static str,
    target_kind: &'static str,
    target_id: Option<String>,
    release_id: Option<String>,
    history_entry: Option<i64>,
    file_id: Option<String>,
    outcome: &'static str,
    reason: Option<&'static str>,
    client_addr: Option<String>,
    user_agent: Option<&'a str>,
    bytes: Option<i64>,
}

/// The columns of `access_events` an insert names, in order.
const EVENT_COLUMNS: &str = "at, actor_kind, actor_user, actor_org, action, target_kind, \
    target_id, release_id, history_entry, dua_number, file_id, outcome, reason, client_addr, \
    user_agent, bytes";

/// The values inserted for one element `{e}` of the JSON array, given how to read a field
/// (`{f}` stands for the field name). The acting user's organization and the DUA in force for
/// the release are looked up here, in the same statement.
fn event_values(field: impl Fn(&str) -> String, int: impl Fn(&str) -> String) -> String {
    format!(
        "{at}, {kind}, {user}, (SELECT u.org_id FROM users u WHERE u.id = {user}), {action}, \
         {tkind}, {tid}, {release}, {entry}, \
         (SELECT d.number FROM releases r JOIN duas d \
          ON d.release_id = r.id AND d.version = r.dua_version WHERE r.id = {release}), \
         {file}, {outcome}, {reason}, {addr}, {agent}, {bytes}",
        at = field("at"),
        kind = field("actor_kind"),
        user = field("actor_user"),
        action = field("action"),
        tkind = field("target_kind"),
        tid = field("target_id"),
        release = field("release_id"),
        entry = int("history_entry"),
        file = field("file_id"),
        outcome = field("outcome"),
        reason = field("reason"),
        addr = field("client_addr"),
        agent = field("user_agent"),
        bytes = int("bytes"),
    )
}

/// The insert statement of each backend, built once.
fn insert_sql(backend: Backend) -> &'static str {
    static POSTGRES: OnceLock<String> = OnceLock::new();
    static SQLITE: OnceLock<String> = OnceLock::new();
    match backend {
        // The writers' lock is a materialized CTE joined to every row, so it is taken before any
        // row (and its id) is produced.
        Backend::Postgres => POSTGRES.get_or_init(|| {
            // json_to_recordset reads the array in C, typed; WITH ORDINALITY keeps its order.
            format!(
                "WITH writers AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared($1) AS locked) \
                 INSERT INTO access_events ({EVENT_COLUMNS}) SELECT {} FROM writers, \
                 ROWS FROM (json_to_recordset($2::json) AS (at text, actor_kind text, \
                 actor_user text, action text, target_kind text, target_id text, release_id text, \
                 history_entry bigint, file_id text, outcome text, reason text, client_addr text, \
                 user_agent text, bytes bigint)) WITH ORDINALITY AS e(at, actor_kind, actor_user, \
                 action, target_kind, target_id, release_id, history_entry, file_id, outcome, \
                 reason, client_addr, user_agent, bytes, n) ORDER BY e.n RETURNING id",
                event_values(|f| format!("e.{f}"), |f| format!("e.{f}"))
            )
        }),
        Backend::Sqlite => SQLITE.get_or_init(|| {
            format!(
                "INSERT INTO access_events ({EVENT_COLUMNS}) SELECT {} \
                 FROM json_each($1) AS e ORDER BY e.key RETURNING id",
                event_values(
                    |f| format!("json_extract(e.value, '$.{f}')"),
                    |f| format!("json_extract(e.value, '$.{f}')")
                )
            )
        }),
    }
}

/// Inserts events in one statement, in order, and returns their ids. On PostgreSQL the same
/// statement first takes the writers' lock (shared, until its transaction ends), so the
/// sequencer can wait for every transaction that took an id; one statement is one round trip,
/// and outside a caller's transaction it is its own transaction.
async fn insert_events(
    conn: &mut AnyConnection,
    backend: Backend,
    events: &[Stamped<'_>],
) -> Result<Vec<i64>, AuditError> {
    let rows: Vec<EventRow<'_>> = events
        .iter()
        .map(|Stamped { at, event }| {
            let target = event.target.columns();
            EventRow {
                at,
                actor_kind: event.actor.kind(),
                actor_user: event.actor.user().map(|u| u.to_string()),
                action: event.action.as_str(),
                target_kind: target.kind,
                target_id: target.id,
                release_id: target.release.map(|r| r.to_string()),
                history_entry: target.history_entry,
                file_id: target.file.map(|f| f.to_string()),
                outcome: event.outcome.as_str(),
                reason: event.reason.map(|r| r.as_str()),
                client_addr: event.client.addr.map(|a| a.to_string()),
                user_agent: event.client.user_agent.as_ref().map(|u| u.as_str()),
                bytes: event.bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            }
        })
        .collect();
    let json = serde_json::to_string(&rows).expect("events serialize");
    let mut query = sqlx::query(insert_sql(backend));
    if backend == Backend::Postgres {
        query = query.bind(WRITERS_LOCK_KEY);
    }
    let returned = query.bind(json).fetch_all(&mut *conn).await?;
    let mut ids = returned
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    // Ids are taken in the array's order (ORDER BY its index); RETURNING may list them in
    // any order.
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
