//! The sequencer: gives committed events their positions, extends the hash chain and the Merkle
//! tree, and signs checkpoints ("queue, then integrate").
//!
//! Every replica runs one; a PostgreSQL advisory lock lets one integrate at a time, and the
//! others skip that round. Events are integrated in id order. On PostgreSQL ids are taken
//! before commit, so a lower id may still commit after a higher one is visible: before each
//! round the sequencer takes the writers' lock exclusively for a moment, which waits for every
//! transaction that inserted an event to end, and reads the highest id then; every id up to
//! that horizon is final (committed, or rolled back and never to appear). SQLite has one writer
//! at a time, so ids become visible in order. A round is one transaction: killed in the middle,
//! it leaves nothing, and the next round starts from the same head.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{Acquire, AnyConnection, Connection, Row};
use tlog_tiles::Hash;
use tokio::sync::Mutex;

use super::checkpoint::CheckpointSigner;
use super::record::decode_hash;
use super::tree::{encode_tree_hashes, with_hashes, Frontier};
use super::{format_time, record_from_row, AccessRecord, AuditError, RECORD_COLUMNS};
use crate::clock::SharedClock;
use crate::db::{Backend, Database};

/// Key of the advisory lock held by the replica whose sequencer is integrating.
const SEQUENCER_LOCK_KEY: i64 = 0x0053_5445_5753_4551; // "STEWSEQ"

/// How the sequencer paces itself.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Events integrated per round, at most.
    pub batch: usize,
    /// A checkpoint after this many new records...
    pub checkpoint_every: u64,
    /// ...or this long after the last one, when any record is new.
    pub checkpoint_interval: Duration,
    /// Pause between rounds when there was nothing to do.
    pub interval: Duration,
    /// Where every checkpoint is also written.
    pub export_dir: Option<PathBuf>,
}

/// The head of the log: its size and the hash and event of its last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Records in the log.
    pub size: u64,
    /// Chain hash of the last record (the frozen v1 log's last hash, or zeros, when empty).
    pub hash: [u8; 32],
    /// Event id of the last record (0 when empty).
    pub event_id: i64,
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Records covered.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    /// The signed note.
    pub note: String,
    /// When it was signed.
    pub created_at: String,
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    /// Records integrated.
    pub integrated: u64,
    /// Log size afterwards.
    pub size: u64,
    /// Size of the checkpoint signed in this round, if one was.
    pub checkpoint: Option<u64>,
    /// Whether another replica held the sequencer lock (nothing was done).
    pub skipped: bool,
}

/// The one writer of positions, chain and tree.
#[derive(Debug, Clone)]
pub struct Sequencer {
    db: Database,
    clock: SharedClock,
    signer: Arc<CheckpointSigner>,
    config: SequencerConfig,
    /// One round at a time in this process.
    local: Arc<Mutex<()>>,
}

impl Sequencer {
    /// A sequencer over the log in `db`, signing with `signer`.
    pub fn new(
        db: Database,
        clock: SharedClock,
        signer: Arc<CheckpointSigner>,
        config: SequencerConfig,
    ) -> Self {
        Self {
            db,
            clock,
            signer,
            config,
            local: Arc::new(Mutex::new(())),
        }
    }

    /// The checkpoint signer.
    pub fn signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    /// Runs rounds until `stop` resolves; a failed round is logged and retried.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let pause = match self.integrate().await {
                Ok(round) if round.integrated as usize == self.config.batch => Duration::ZERO,
                Ok(_) => self.config.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "access log sequencer round failed; retrying");
                    self.config.interval * 10
                }
            };
            tokio::select! {
                () = &mut stop => {
                    // A last pass, so what was committed before the stop has its position, and
                    // a checkpoint that covers it: a stopped log has no unsigned tail.
                    let last = match self.integrate_all().await {
                        Ok(_) => self.checkpoint_now().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = last {
                        tracing::warn!(error = %e, "access log sequencer's last round failed");
                    }
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Integrates everything committed so far, round after round; returns the log's size.
    pub async fn integrate_all(&self) -> Result<u64, AuditError> {
        loop {
            let round = self.integrate().await?;
            if round.skipped {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            if (round.integrated as usize) < self.config.batch {
                return Ok(round.size);
            }
        }
    }

    /// One round: at most `batch` events, in one transaction, with a checkpoint when due.
    pub async fn integrate(&self) -> Result<Round, AuditError> {
        self.integrate_with(|_| Ok(())).await
    }

    /// A round with a hook called after the records are inserted and before the commit, so a
    /// test can fail the round there, as a crash would.
    #[doc(hidden)]
    pub async fn integrate_with(
        &self,
        before_commit: impl FnOnce(u64) -> Result<(), AuditError>,
    ) -> Result<Round, AuditError> {
        let _round = self.local.lock().await;
        let mut conn = self.db.pool().acquire().await?;
        let mut tx = match self.db.backend() {
            Backend::Postgres => conn.begin().await?,
            // Take SQLite's write lock first, so a writer committing meanwhile cannot make the
            // round's snapshot stale.
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        };
        if self.db.backend() == Backend::Postgres {
            let leader: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1) AS ok")
                .bind(SEQUENCER_LOCK_KEY)
                .fetch_one(&mut *tx)
                .await?
                .try_get("ok")?;
            if !leader {
                return Ok(Round {
                    skipped: true,
                    ..Round::default()
                });
            }
        }
        let head = read_head(&mut tx).await?;
        let horizon = self.horizon().await?;
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM access_events e \
             LEFT JOIN access_log l ON l.event_id = e.id \
             WHERE e.id > $1 AND e.id <= $2 ORDER BY e.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(head.event_id)
            .bind(horizon)
            .bind(self.config.batch as i64)
            .fetch_all(&mut *tx)
            .await?;
        let mut events = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let mut frontier = Frontier::load(&mut tx, head.size).await?;
        let integrated_at = format_time(self.clock.now())?;
        let mut prev = head.hash;
        let mut log_rows: Vec<LogRowInsert> = Vec::with_capacity(events.len());
        for event in &mut events {
            let seq = frontier.size() as i64 + 1;
            event.seq = Some(seq);
            event.integrated_at = Some(integrated_at.clone());
            let (hash, leaf) = event.hashes(&prev);
            let tree_hashes = encode_tree_hashes(&frontier.push(leaf));
            log_rows.push(LogRowInsert {
                seq,
                event_id: event.id,
                prev_hash: hex::encode(prev),
                hash: hex::encode(hash),
                tree_hashes,
            });
            prev = hash;
        }
        insert_log_rows(&mut tx, &integrated_at, &log_rows).await?;
        let size = frontier.size();
        let checkpoint = if self.checkpoint_due(&mut tx, size).await? {
            self.insert_checkpoint(&mut tx, size, frontier.root())
                .await?;
            Some(size)
        } else {
            None
        };
        before_commit(events.len() as u64)?;
        tx.commit().await?;
        let now = self.clock.now();
        for event in &events {
            let at = time::OffsetDateTime::parse(
                &event.at,
                &time::format_description::well_known::Rfc3339,
            );
            if let Ok(at) = at {
                crate::metrics::access_log_integration_lag((now - at).as_seconds_f64());
            }
        }
        if checkpoint.is_some() {
            self.export_pending().await;
        }
        Ok(Round {
            integrated: events.len() as u64,
            size,
            checkpoint,
            skipped: false,
        })
    }

    /// The highest event id that can no longer be joined by a lower one.
    async fn horizon(&self) -> Result<i64, AuditError> {
        match self.db.backend() {
            Backend::Sqlite => Ok(i64::MAX),
            Backend::Postgres => {
                let mut tx = self.db.pool().begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(super::WRITERS_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                let horizon: i64 =
                    sqlx::query("SELECT COALESCE(MAX(id), 0) AS h FROM access_events")
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("h")?;
                tx.commit().await?;
                Ok(horizon)
            }
        }
    }

    async fn checkpoint_due(
        &self,
        conn: &mut AnyConnection,
        size: u64,
    ) -> Result<bool, AuditError> {
        let last = latest_checkpoint(conn).await?;
        let (last_size, last_at) = match &last {
            Some(c) => (c.size, Some(c.created_at.as_str())),
            None => (0, None),
        };
        if size == last_size || size == 0 {
            return Ok(false);
        }
        if size - last_size >= self.config.checkpoint_every {
            return Ok(true);
        }
        let Some(last_at) = last_at else {
            return Ok(true);
        };
        let last_at =
            time::OffsetDateTime::parse(last_at, &time::format_description::well_known::Rfc3339)
                .map_err(|_| AuditError::Tree("a checkpoint's time is malformed".into()))?;
        Ok(self.clock.now() - last_at >= self.config.checkpoint_interval)
    }

    async fn insert_checkpoint(
        &self,
        conn: &mut AnyConnection,
        size: u64,
        root: Hash,
    ) -> Result<StoredCheckpoint, AuditError> {
        let note = String::from_utf8(self.signer.sign(size, root)).expect("a signed note is UTF-8");
        let checkpoint = StoredCheckpoint {
            size,
            root: hex::encode(root.0),
            note,
            created_at: format_time(self.clock.now())?,
        };
        sqlx::query(
            "INSERT INTO access_log_checkpoints (size, root, note, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(size as i64)
        .bind(&checkpoint.root)
        .bind(&checkpoint.note)
        .bind(&checkpoint.created_at)
        .execute(&mut *conn)
        .await?;
        Ok(checkpoint)
    }

    /// A signed checkpoint covering every record integrated so far: the newest stored one if it
    /// does, else one signed now (for a receipt of a record newer than the last checkpoint).
    pub async fn checkpoint_now(&self) -> Result<StoredCheckpoint, AuditError> {
        let _round = self.local.lock().await;
        let mut conn = self.db.pool().acquire().await?;
        let mut tx = match self.db.backend() {
            Backend::Postgres => conn.begin().await?,
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        };
        if self.db.backend() == Backend::Postgres {
            // Wait for the integrating replica's round, so the head read below is its result.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SEQUENCER_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }
        let head = read_head(&mut tx).await?;
        if let Some(last) = latest_checkpoint(&mut tx).await? {
            if last.size == head.size {
                return Ok(last);
            }
        }
        let mut cache = HashMap::new();
        let root =
            with_hashes(&mut tx, &mut cache, |r| tlog_tiles::tree_hash(head.size, r)).await?;
        let checkpoint = self.insert_checkpoint(&mut tx, head.size, root).await?;
        tx.commit().await?;
        self.export_pending().await;
        Ok(checkpoint)
    }

    /// The newest stored checkpoint when it covers `size` records, else one signed now.
    pub async fn checkpoint_covering(&self, size: u64) -> Result<StoredCheckpoint, AuditError> {
        let mut conn = self.db.pool().acquire().await?;
        if let Some(last) = latest_checkpoint(&mut conn).await? {
            if last.size >= size {
                return Ok(last);
            }
        }
        drop(conn);
        self.checkpoint_now().await
    }

    /// Writes every stored checkpoint the export directory lacks. A failure is logged and left
    /// for the next checkpoint: the database copy is already committed.
    async fn export_pending(&self) {
        let Some(dir) = &self.config.export_dir else {
            return;
        };
        if let Err(e) = export_checkpoints(&self.db, dir).await {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot export access log checkpoints");
        }
    }
}

/// The head of the log in `conn`'s view.
pub async fn read_head(conn: &mut AnyConnection) -> Result<Head, AuditError> {
    let row = sqlx::query("SELECT seq, event_id, hash FROM access_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => {
            let hash: String = row.try_get("hash")?;
            Ok(Head {
                size: row.try_get::<i64, _>("seq")? as u64,
                hash: decode_hash(&hash)
                    .ok_or_else(|| AuditError::Tree("the log's head hash is malformed".into()))?,
                event_id: row.try_get("event_id")?,
            })
        }
        None => Ok(Head {
            size: 0,
            hash: genesis_hash(conn).await?,
            event_id: 0,
        }),
    }
}

/// The chain hash the first record follows: the frozen v1 log's last hash, or zeros.
pub async fn genesis_hash(conn: &mut AnyConnection) -> Result<[u8; 32], AuditError> {
    let row = sqlx::query("SELECT hash FROM access_log_v1 ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => {
            let hash: String = row.try_get("hash")?;
            decode_hash(&hash)
                .ok_or_else(|| AuditError::Tree("the v1 log's head hash is malformed".into()))
        }
        None => Ok(super::legacy::GENESIS_HASH),
    }
}

/// The newest stored checkpoint.
pub async fn latest_checkpoint(
    conn: &mut AnyConnection,
) -> Result<Option<StoredCheckpoint>, AuditError> {
    let row = sqlx::query(
        "SELECT size, root, note, created_at FROM access_log_checkpoints ORDER BY size DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(checkpoint_from_row).transpose()
}

/// Every stored checkpoint, smallest first.
pub async fn all_checkpoints(db: &Database) -> Result<Vec<StoredCheckpoint>, AuditError> {
    let rows = sqlx::query(
        "SELECT size, root, note, created_at FROM access_log_checkpoints ORDER BY size",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(checkpoint_from_row).collect()
}

fn checkpoint_from_row(row: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, AuditError> {
    Ok(StoredCheckpoint {
        size: row.try_get::<i64, _>("size")? as u64,
        root: row.try_get("root")?,
        note: row.try_get("note")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The file name of the checkpoint of `size` records in an export directory.
pub fn checkpoint_file_name(size: u64) -> String {
    format!("checkpoint.{size:020}")
}

/// Writes every stored checkpoint that `dir` lacks, each to a temporary file renamed into
/// place, and `dir/checkpoint` as the newest.
pub async fn export_checkpoints(db: &Database, dir: &Path) -> Result<(), AuditError> {
    let checkpoints = all_checkpoints(db).await?;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        for checkpoint in &checkpoints {
            let path = dir.join(checkpoint_file_name(checkpoint.size));
            if !path.exists() {
                write_atomically(&path, checkpoint.note.as_bytes())?;
            }
        }
        if let Some(newest) = checkpoints.last() {
            write_atomically(&dir.join("checkpoint"), newest.note.as_bytes())?;
        }
        Ok(())
    })
    .await
    .map_err(|e| AuditError::Tree(format!("checkpoint export task: {e}")))?
    .map_err(|e| AuditError::Tree(format!("cannot write checkpoint: {e}")))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// One row of `access_log` to insert.
struct LogRowInsert {
    seq: i64,
    event_id: i64,
    prev_hash: String,
    hash: String,
    tree_hashes: String,
}

async fn insert_log_rows(
    conn: &mut AnyConnection,
    integrated_at: &str,
    rows: &[LogRowInsert],
) -> Result<(), AuditError> {
    for chunk in rows.chunks(1000) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 5;
                format!(
                    "(${}, ${}, $1, ${}, ${}, ${})",
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO access_log (seq, event_id, integrated_at, prev_hash, hash, tree_hashes) \
             VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(integrated_at);
        for row in chunk {
            query = query
                .bind(row.seq)
                .bind(row.event_id)
                .bind(row.prev_hash.as_str())
                .bind(row.hash.as_str())
                .bind(row.tree_hashes.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The records of the log from position `from` (inclusive), at most `limit`, in order.
pub async fn records_from(
    conn: &mut AnyConnection,
    from: i64,
    limit: i64,
) -> Result<Vec<AccessRecord>, AuditError> {
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM access_log l \
         JOIN access_events e ON e.id = l.event_id \
         WHERE l.seq >= $1 ORDER BY l.seq LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(from)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(record_from_row).collect()
}
