//! Verification of the whole log: recompute the chain and the tree from the records, check
//! every stored tree hash, every checkpoint's signature and root (stored, exported and
//! trusted), and find events that never got a position. The first problem is reported with its
//! position; memory stays flat (records are read a page at a time, the tree through its
//! frontier).
//!
//! The checks run over a [`LogSource`]: the database ([`DatabaseLog`]) or, in tests, a copy in
//! memory that a tamper suite mutates.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use tlog_tiles::Hash;

use super::checkpoint::{self, CheckpointError, VerifiedCheckpoint};
use super::legacy;
use super::record::{decode_hash, AccessRecord};
use super::sequencer::{genesis_hash, StoredCheckpoint};
use super::tree::{encode_tree_hashes, Frontier};
use super::AuditError;
use crate::db::Database;

/// Records read per page.
const PAGE: i64 = 10_000;

/// One row of the log: the record and the hashes stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// Position, as stored in `access_log`.
    pub seq: i64,
    /// The event it points to, as stored in `access_log`.
    pub event_id: i64,
    /// The event's columns (`None` when the event it points to is gone).
    pub record: Option<AccessRecord>,
    /// Stored chain hash of the previous record.
    pub prev_hash: String,
    /// Stored chain hash of this record.
    pub hash: String,
    /// Stored Merkle tree hashes this record completed.
    pub tree_hashes: String,
}

/// An event without a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unintegrated {
    /// Its id.
    pub id: i64,
    /// When it was committed.
    pub at: String,
}

/// What is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The frozen v1 records do not verify.
    #[error("frozen v1 log: {0}")]
    Legacy(legacy::ChainBreak),
    /// A position is missing, repeated or out of place: a record was deleted, inserted or moved.
    #[error(
        "position {expected}: found position {found} (a record was deleted, inserted or moved)"
    )]
    Gap {
        /// The position that should come next.
        expected: i64,
        /// The position found there.
        found: i64,
    },
    /// Records are not in the order their events committed: they were reordered.
    #[error(
        "position {position}: event {event_id} comes after event {previous} (records reordered)"
    )]
    Reorder {
        /// The position at fault.
        position: i64,
        /// Its event.
        event_id: i64,
        /// The event before it.
        previous: i64,
    },
    /// A record's event is gone from `access_events`.
    #[error("position {position}: its event {event_id} is missing (deleted)")]
    MissingEvent {
        /// The position at fault.
        position: i64,
        /// The missing event.
        event_id: i64,
    },
    /// A record's stored previous hash is not the previous record's hash.
    #[error("position {position}: does not link to the record before it (chain broken)")]
    Link {
        /// The position at fault.
        position: i64,
    },
    /// A record does not hash to its stored hash: a column was changed.
    #[error("position {position}: hash mismatch (its content was changed)")]
    Content {
        /// The position at fault.
        position: i64,
    },
    /// The Merkle tree hashes a record stores differ from those recomputed from the records.
    #[error("position {position}: its stored tree hashes differ from the records'")]
    Tree {
        /// The record whose hashes are at fault.
        position: i64,
    },
    /// A checkpoint is not signed by the log's key, or its signature does not verify.
    #[error("checkpoint of size {size} ({place}): {error}")]
    CheckpointSignature {
        /// The size the checkpoint row or file claims.
        size: u64,
        /// Where it was found.
        place: String,
        /// Why it was refused.
        error: CheckpointError,
    },
    /// A checkpoint's root is not the root recomputed from the records at its size.
    #[error(
        "checkpoint of size {size} ({place}): root does not match the records (history rewritten)"
    )]
    CheckpointRoot {
        /// Its size.
        size: u64,
        /// Where it was found.
        place: String,
    },
    /// A checkpoint covers more records than the log holds: the tail was removed.
    #[error("checkpoint of size {size} ({place}) covers more than the log's {log_size} records (tail truncated)")]
    CheckpointBeyondLog {
        /// Its size.
        size: u64,
        /// Where it was found.
        place: String,
        /// Records in the log.
        log_size: u64,
    },
    /// The stored and exported copies of the checkpoints disagree.
    #[error("checkpoint of size {size}: {what}")]
    CheckpointDisagreement {
        /// Its size.
        size: u64,
        /// How they disagree.
        what: &'static str,
    },
    /// An event older than the log's head never got a position: it was inserted afterwards.
    #[error("event {id} ({at}) sits behind the log's head without a position (inserted)")]
    Inserted {
        /// The event.
        id: i64,
        /// Its time.
        at: String,
    },
    /// An event committed longer ago than the deadline still has no position.
    #[error(
        "event {id} committed at {at} and still has no position (integration deadline passed)"
    )]
    NotIntegrated {
        /// The event.
        id: i64,
        /// Its time.
        at: String,
    },
}

impl Problem {
    /// The first position the problem concerns, when it concerns one.
    pub fn position(&self) -> Option<i64> {
        match self {
            Problem::Gap { expected, .. } => Some(*expected),
            Problem::Reorder { position, .. }
            | Problem::MissingEvent { position, .. }
            | Problem::Link { position }
            | Problem::Content { position }
            | Problem::Tree { position } => Some(*position),
            Problem::CheckpointRoot { size, .. }
            | Problem::CheckpointBeyondLog { size, .. }
            | Problem::CheckpointSignature { size, .. }
            | Problem::CheckpointDisagreement { size, .. } => Some(*size as i64),
            _ => None,
        }
    }
}

/// A verification that could not run, as opposed to one that found a problem.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The database could not be read.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A checkpoint file given on the command line could not be read or trusted.
    #[error("{path}: {error}")]
    TrustedCheckpoint {
        /// The file.
        path: String,
        /// Why it cannot be trusted.
        error: CheckpointError,
    },
    /// An export directory could not be read.
    #[error("cannot read checkpoints from {path}: {error}")]
    ExportDir {
        /// The directory.
        path: String,
        /// The I/O error.
        error: String,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Frozen v1 records checked.
    pub legacy_records: u64,
    /// Records checked.
    pub records: u64,
    /// The recomputed root.
    pub root: Hash,
    /// Checkpoints whose signature and root were checked (stored, exported and trusted).
    pub checkpoints: usize,
    /// Committed events still waiting for a position (within the deadline).
    pub pending: usize,
}

/// Where a log is read from.
#[allow(async_fn_in_trait)]
pub trait LogSource {
    /// The frozen v1 records, from `after` on (empty for a log without them).
    async fn legacy_page(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<legacy::AccessRecord>, AuditError>;
    /// Log rows with `seq >= from`, in position order, at most `limit`.
    async fn log_page(&mut self, from: i64, limit: i64) -> Result<Vec<LogRow>, AuditError>;
    /// The stored checkpoints.
    async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError>;
    /// Events without a position.
    async fn unintegrated(&mut self) -> Result<Vec<Unintegrated>, AuditError>;
}

/// What to check the log against.
#[derive(Debug, Clone)]
pub struct Expectations {
    /// The note verifier key of the log's checkpoints.
    pub verifier_key: String,
    /// Exported checkpoint copies, by where they came from (a file name).
    pub exported: Vec<(String, Vec<u8>)>,
    /// A checkpoint held outside the database, already opened with the key.
    pub trusted: Option<(String, VerifiedCheckpoint)>,
    /// Events committed before this time (RFC 3339 text, same format as `at`) must have a
    /// position.
    pub integrate_before: String,
}

/// A checkpoint to compare with the recomputed root at its size.
#[derive(Debug, Clone)]
struct RootClaim {
    place: String,
    root: Hash,
}

/// Verifies the log in `source`; `Ok(Err(problem))` is a log that fails, with the first
/// problem found.
pub async fn verify_log(
    source: &mut impl LogSource,
    expect: &Expectations,
) -> Result<Result<Verified, Problem>, AuditError> {
    // The frozen v1 records, whose last hash the first record follows.
    let mut legacy_chain = legacy::LegacyChain::default();
    let mut after = 0;
    loop {
        let page = source.legacy_page(after, PAGE).await?;
        for record in &page {
            if let Err(e) = legacy_chain.push(record) {
                return Ok(Err(Problem::Legacy(e)));
            }
            after = record.seq;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }

    // Every checkpoint to be compared with the recomputed roots, by size.
    let mut claims: BTreeMap<u64, Vec<RootClaim>> = BTreeMap::new();
    let stored = source.checkpoints().await?;
    let mut stored_by_size = BTreeMap::new();
    for row in &stored {
        let place = format!("stored {}", row.size);
        let opened = match checkpoint::open(row.note.as_bytes(), &expect.verifier_key) {
            Ok(opened) => opened,
            Err(error) => {
                return Ok(Err(Problem::CheckpointSignature {
                    size: row.size,
                    place,
                    error,
                }))
            }
        };
        if opened.size != row.size || hex::encode(opened.root.0) != row.root {
            return Ok(Err(Problem::CheckpointDisagreement {
                size: row.size,
                what: "its row's size or root differs from its signed note",
            }));
        }
        stored_by_size.insert(row.size, row.note.as_bytes().to_vec());
        claims.entry(opened.size).or_default().push(RootClaim {
            place,
            root: opened.root,
        });
    }
    let mut exported_sizes = BTreeSet::new();
    for (place, note) in &expect.exported {
        let opened = match checkpoint::open(note, &expect.verifier_key) {
            Ok(opened) => opened,
            Err(error) => {
                return Ok(Err(Problem::CheckpointSignature {
                    size: 0,
                    place: place.clone(),
                    error,
                }))
            }
        };
        match stored_by_size.get(&opened.size) {
            None => {
                return Ok(Err(Problem::CheckpointDisagreement {
                    size: opened.size,
                    what: "exported, but missing from the database",
                }))
            }
            Some(db_note) if db_note != note => {
                return Ok(Err(Problem::CheckpointDisagreement {
                    size: opened.size,
                    what: "the exported copy differs from the database's",
                }))
            }
            Some(_) => {}
        }
        exported_sizes.insert(opened.size);
        claims.entry(opened.size).or_default().push(RootClaim {
            place: place.clone(),
            root: opened.root,
        });
    }
    if let Some((place, trusted)) = &expect.trusted {
        claims.entry(trusted.size).or_default().push(RootClaim {
            place: place.clone(),
            root: trusted.root,
        });
    }
    let checkpoints_checked = claims.values().map(Vec::len).sum();

    // The records, page by page, with their stored tree hashes. Hashing a page runs on a
    // blocking thread while the next page is read, so the database and the CPU work at once.
    let claims = std::sync::Arc::new(claims);
    let mut walk = Walk {
        frontier: Frontier::default(),
        prev: legacy_chain.prev_hash,
        last_event: 0,
    };
    if let Err(problem) = walk.check_root(&claims) {
        return Ok(Err(problem));
    }
    let mut fetched = fetch_page(source, 0).await?;
    while let Some(page) = fetched {
        let start = walk.frontier.size() + page.len() as u64;
        let full = page.len() as i64 == PAGE;
        let work = {
            let claims = claims.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = walk.page(&page, &claims);
                (walk, outcome)
            })
        };
        let next = async {
            match full {
                true => fetch_page(source, start).await,
                false => Ok(None),
            }
        };
        let (worked, next) = tokio::join!(work, next);
        let (returned, outcome) =
            worked.map_err(|e| AuditError::Tree(format!("verification task: {e}")))?;
        walk = returned;
        if let Err(problem) = outcome {
            return Ok(Err(problem));
        }
        fetched = next?;
    }
    let Walk {
        frontier,
        last_event,
        ..
    } = walk;
    let size = frontier.size();
    if let Some((&beyond, list)) = claims.range(size + 1..).next() {
        return Ok(Err(Problem::CheckpointBeyondLog {
            size: beyond,
            place: list[0].place.clone(),
            log_size: size,
        }));
    }
    if !expect.exported.is_empty() {
        if let Some(size) = stored_by_size.keys().find(|s| !exported_sizes.contains(s)) {
            return Ok(Err(Problem::CheckpointDisagreement {
                size: *size,
                what: "stored in the database, but missing from the export",
            }));
        }
    }

    // Events without a position.
    let waiting = source.unintegrated().await?;
    for event in &waiting {
        if event.id < last_event {
            return Ok(Err(Problem::Inserted {
                id: event.id,
                at: event.at.clone(),
            }));
        }
        if event.at < expect.integrate_before {
            return Ok(Err(Problem::NotIntegrated {
                id: event.id,
                at: event.at.clone(),
            }));
        }
    }
    Ok(Ok(Verified {
        legacy_records: legacy_chain.count,
        records: size,
        root: frontier.root(),
        checkpoints: checkpoints_checked,
        pending: waiting.len(),
    }))
}

/// Reads the page of records after the first `size`; `None` past the end.
async fn fetch_page(
    source: &mut impl LogSource,
    size: u64,
) -> Result<Option<Vec<LogRow>>, AuditError> {
    let page = source.log_page(size as i64 + 1, PAGE).await?;
    Ok((!page.is_empty()).then_some(page))
}

/// The state of a walk through the records: the tree so far, the last chain hash and event.
struct Walk {
    frontier: Frontier,
    prev: [u8; 32],
    last_event: i64,
}

impl Walk {
    /// Checks the checkpoints that claim a root at the current size.
    fn check_root(&self, claims: &BTreeMap<u64, Vec<RootClaim>>) -> Result<(), Problem> {
        if let Some(list) = claims.get(&self.frontier.size()) {
            let root = self.frontier.root();
            if let Some(claim) = list.iter().find(|c| c.root != root) {
                return Err(Problem::CheckpointRoot {
                    size: self.frontier.size(),
                    place: claim.place.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks one page of records against the chain, the stored tree and the checkpoints.
    fn page(
        &mut self,
        page: &[LogRow],
        claims: &BTreeMap<u64, Vec<RootClaim>>,
    ) -> Result<(), Problem> {
        for row in page {
            let position = self.frontier.size() as i64 + 1;
            let leaf = check_row(row, position, &self.prev, self.last_event)?;
            if encode_tree_hashes(&self.frontier.push(leaf)) != row.tree_hashes {
                return Err(Problem::Tree { position });
            }
            self.check_root(claims)?;
            self.prev = decode_hash(&row.hash).expect("checked by check_row");
            self.last_event = row.event_id;
        }
        Ok(())
    }
}

/// Checks one row against its position and the chain; returns its leaf hash.
fn check_row(
    row: &LogRow,
    position: i64,
    prev: &[u8; 32],
    last_event: i64,
) -> Result<Hash, Problem> {
    if row.seq != position {
        return Err(Problem::Gap {
            expected: position,
            found: row.seq,
        });
    }
    let Some(record) = &row.record else {
        return Err(Problem::MissingEvent {
            position,
            event_id: row.event_id,
        });
    };
    if row.event_id <= last_event || record.id != row.event_id {
        return Err(Problem::Reorder {
            position,
            event_id: row.event_id,
            previous: last_event,
        });
    }
    if decode_hash(&row.prev_hash) != Some(*prev) {
        return Err(Problem::Link { position });
    }
    let stored = decode_hash(&row.hash).ok_or(Problem::Content { position })?;
    let (chain, leaf) = record.hashes(prev);
    if chain != stored {
        return Err(Problem::Content { position });
    }
    Ok(leaf)
}

/// The log as stored in a database.
#[derive(Debug)]
pub struct DatabaseLog<'a> {
    db: &'a Database,
    /// On PostgreSQL, a native pool for the pages: the `Any` driver's per-row conversion was
    /// most of the time of a million-record verification.
    pages: Option<sqlx::PgPool>,
}

impl<'a> DatabaseLog<'a> {
    /// The log in `db`, read through its own pool.
    pub fn new(db: &'a Database) -> Self {
        Self { db, pages: None }
    }

    /// The log in `db`, its pages read through a native PostgreSQL pool when it is one.
    pub async fn open(db: &'a Database) -> Result<Self, AuditError> {
        Ok(Self {
            db,
            pages: db.postgres_reader().await?,
        })
    }
}

/// A log row (and its integration time) from `SELECT seq, event_id, prev_hash, hash,
/// tree_hashes, integrated_at`, by column position, from either driver.
fn decode_log_row<R: Row>(row: &R) -> Result<(LogRow, String), sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        LogRow {
            seq: row.try_get(0)?,
            event_id: row.try_get(1)?,
            record: None,
            prev_hash: row.try_get(2)?,
            hash: row.try_get(3)?,
            tree_hashes: row.try_get(4)?,
        },
        row.try_get(5)?,
    ))
}

/// An event from `SELECT` of [`EVENT_SELECT`]'s columns, by position, from either driver.
fn decode_event<R: Row>(row: &R) -> Result<AccessRecord, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(AccessRecord {
        id: row.try_get(0)?,
        seq: None,
        at: row.try_get(1)?,
        actor_kind: row.try_get(2)?,
        actor_user: row.try_get(3)?,
        actor_org: row.try_get(4)?,
        action: row.try_get(5)?,
        target_kind: row.try_get(6)?,
        target_id: row.try_get(7)?,
        release_id: row.try_get(8)?,
        history_entry: row.try_get(9)?,
        dua_number: row.try_get(10)?,
        file_id: row.try_get(11)?,
        outcome: row.try_get(12)?,
        reason: row.try_get(13)?,
        client_addr: row.try_get(14)?,
        user_agent: row.try_get(15)?,
        bytes: row.try_get(16)?,
        integrated_at: None,
    })
}

/// The event columns [`decode_event`] reads.
const EVENT_SELECT: &str = "SELECT id, at, actor_kind, actor_user, actor_org, action, \
    target_kind, target_id, release_id, history_entry, dua_number, file_id, outcome, reason, \
    client_addr, user_agent, bytes FROM access_events";

/// The log rows [`decode_log_row`] reads, from a position on.
const LOG_PAGE: &str = "SELECT seq, event_id, prev_hash, hash, tree_hashes, integrated_at \
    FROM access_log WHERE seq >= $1 ORDER BY seq LIMIT $2";

impl DatabaseLog<'_> {
    /// Events selected by `filter` (a WHERE clause over `id` with `$n` for `binds`).
    async fn events(&self, filter: &str, binds: &[i64]) -> Result<Vec<AccessRecord>, AuditError> {
        let sql = format!("{EVENT_SELECT} {filter}");
        let decoded: Result<Vec<_>, sqlx::Error> = match &self.pages {
            Some(pg) => {
                let mut query = sqlx::query(&sql);
                for bind in binds {
                    query = query.bind(*bind);
                }
                query
                    .fetch_all(pg)
                    .await?
                    .iter()
                    .map(decode_event)
                    .collect()
            }
            None => {
                let mut query = sqlx::query(&sql);
                for bind in binds {
                    query = query.bind(*bind);
                }
                query
                    .fetch_all(self.db.pool())
                    .await?
                    .iter()
                    .map(decode_event)
                    .collect()
            }
        };
        Ok(decoded?)
    }
}

impl LogSource for DatabaseLog<'_> {
    async fn legacy_page(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<legacy::AccessRecord>, AuditError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, outcome, reason, client_addr, user_agent, \
             bytes, prev_hash, hash FROM access_log_v1 WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(legacy::AccessRecord {
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
            })
            .collect()
    }

    async fn log_page(&mut self, from: i64, limit: i64) -> Result<Vec<LogRow>, AuditError> {
        // The log rows, then their events by id range: two index range scans, several times
        // cheaper than a join of ten thousand lookups. Positions follow event ids, so a page's
        // events are one range; an event outside it (only in a tampered log) is read alone.
        let page: Vec<(LogRow, String)> = match &self.pages {
            Some(pg) => sqlx::query(LOG_PAGE)
                .bind(from)
                .bind(limit)
                .fetch_all(pg)
                .await?
                .iter()
                .map(decode_log_row)
                .collect::<Result<_, _>>()?,
            None => sqlx::query(LOG_PAGE)
                .bind(from)
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
                .iter()
                .map(decode_log_row)
                .collect::<Result<_, _>>()?,
        };
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (first.0.event_id, last.0.event_id);
        let mut events = if lo <= hi && hi - lo < 4 * limit {
            self.events("WHERE id >= $1 AND id <= $2 ORDER BY id", &[lo, hi])
                .await?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(page.len());
        for (mut row, integrated_at) in page {
            let found = match events.binary_search_by_key(&row.event_id, |e| e.id) {
                Ok(i) => Some(events[i].clone()),
                Err(_) => {
                    let alone = self.events("WHERE id = $1", &[row.event_id]).await?;
                    events.extend(alone.iter().cloned());
                    events.sort_by_key(|e| e.id);
                    alone.into_iter().next()
                }
            };
            row.record = found.map(|mut record| {
                record.seq = Some(row.seq);
                record.integrated_at = Some(integrated_at);
                record
            });
            out.push(row);
        }
        Ok(out)
    }

    async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
        super::sequencer::all_checkpoints(self.db).await
    }

    async fn unintegrated(&mut self) -> Result<Vec<Unintegrated>, AuditError> {
        let rows = sqlx::query(
            "SELECT e.id, e.at FROM access_events e \
             WHERE NOT EXISTS (SELECT 1 FROM access_log l WHERE l.event_id = e.id) ORDER BY e.id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unintegrated {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }
}

/// The chain hash the first record follows, as stored.
pub async fn stored_genesis(db: &Database) -> Result<[u8; 32], AuditError> {
    let mut conn = db.pool().acquire().await?;
    genesis_hash(&mut conn).await
}

/// The checkpoints of an export directory (`checkpoint.<size>` files; the `checkpoint` copy of
/// the newest is checked with them), by file name.
pub fn read_export_dir(dir: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>, VerifyError> {
    let failed = |e: std::io::Error| VerifyError::ExportDir {
        path: dir.display().to_string(),
        error: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "checkpoint" || name.starts_with("checkpoint.") && !name.ends_with(".tmp") {
            files.push((name, std::fs::read(entry.path()).map_err(failed)?));
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tamper {
    //! The tamper suite: logs of 1 to 10,000 records, built as the sequencer builds them, then
    //! changed as an attacker with the database could; every change is found, and located.

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::audit::checkpoint::CheckpointSigner;

    const ORIGIN: &str = "test.example/access-log";

    fn signer() -> CheckpointSigner {
        CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[5; 32]))
    }

    /// A log in memory, stored as the tables store it.
    #[derive(Clone)]
    struct MemoryLog {
        rows: Vec<LogRow>,
        checkpoints: Vec<StoredCheckpoint>,
        pending: Vec<Unintegrated>,
    }

    impl LogSource for MemoryLog {
        async fn legacy_page(
            &mut self,
            _: i64,
            _: i64,
        ) -> Result<Vec<legacy::AccessRecord>, AuditError> {
            Ok(Vec::new())
        }
        async fn log_page(&mut self, from: i64, limit: i64) -> Result<Vec<LogRow>, AuditError> {
            let mut rows: Vec<LogRow> = self
                .rows
                .iter()
                .filter(|r| r.seq >= from)
                .cloned()
                .collect();
            rows.sort_by_key(|r| r.seq);
            rows.truncate(limit as usize);
            Ok(rows)
        }
        async fn checkpoints(&mut self) -> Result<Vec<StoredCheckpoint>, AuditError> {
            Ok(self.checkpoints.clone())
        }
        async fn unintegrated(&mut self) -> Result<Vec<Unintegrated>, AuditError> {
            Ok(self.pending.clone())
        }
    }

    fn event(rng: &mut ChaCha8Rng, id: i64) -> AccessRecord {
        let user = uuid::Uuid::from_u128(rng.gen());
        AccessRecord {
            id,
            seq: None,
            at: format!("2026-03-01T12:{:02}:{:02}.000000Z", id / 60 % 60, id % 60),
            actor_kind: "user".into(),
            actor_user: Some(user.to_string()),
            actor_org: Some(uuid::Uuid::from_u128(rng.gen()).to_string()),
            action: ["login_succeeded", "release_transitioned", "authorization"]
                [rng.gen_range(0..3)]
            .into(),
            target_kind: "release".into(),
            target_id: Some(uuid::Uuid::from_u128(rng.gen()).to_string()),
            release_id: Some(uuid::Uuid::from_u128(rng.gen()).to_string()),
            history_entry: Some(rng.gen_range(0..9)),
            dua_number: rng
                .gen_bool(0.5)
                .then(|| format!("DUA-{}", rng.gen_range(1000..9999))),
            file_id: None,
            outcome: ["granted", "denied", "succeeded"][rng.gen_range(0..3)].into(),
            reason: rng.gen_bool(0.5).then(|| "a reason".to_owned()),
            client_addr: Some(format!(
                "10.0.{}.{}",
                rng.gen_range(0..255),
                rng.gen_range(0..255)
            )),
            user_agent: Some("curl/8".into()),
            bytes: rng.gen_bool(0.2).then(|| rng.gen_range(0..1_000_000)),
            integrated_at: None,
        }
    }

    /// Integrates `events` as the sequencer does (event ids with gaps, as rolled-back
    /// transactions leave), with a checkpoint every `every` records and one at the end.
    fn build(events: Vec<AccessRecord>, every: u64) -> MemoryLog {
        let signer = signer();
        let mut log = MemoryLog {
            rows: Vec::new(),
            checkpoints: Vec::new(),
            pending: Vec::new(),
        };
        rehash_from(&mut log, events, 0, every, &signer);
        log
    }

    /// Recomputes chain, tree and (with `signer`) checkpoints from position `from` (0-based)
    /// over `events`: what the sequencer writes, or what an attacker rewriting history writes.
    fn rehash_from(
        log: &mut MemoryLog,
        events: Vec<AccessRecord>,
        from: usize,
        every: u64,
        signer: &CheckpointSigner,
    ) {
        let mut frontier = Frontier::default();
        let mut prev = super::legacy::GENESIS_HASH;
        log.rows.truncate(from);
        for (n, mut record) in events.into_iter().enumerate() {
            record.seq = Some(n as i64 + 1);
            record.integrated_at = Some("2026-03-01T13:00:00.000000Z".into());
            let stored = frontier.push(record.leaf_hash());
            let hash = record.chain_hash(&prev);
            if n >= from {
                log.rows.push(LogRow {
                    seq: n as i64 + 1,
                    event_id: record.id,
                    prev_hash: hex::encode(prev),
                    hash: hex::encode(hash),
                    tree_hashes: encode_tree_hashes(&stored),
                    record: Some(record),
                });
                let size = frontier.size();
                if size % every == 0 {
                    log.checkpoints
                        .push(checkpoint(signer, size, frontier.root()));
                }
            }
            prev = hash;
        }
        let size = frontier.size();
        if size > 0 && size % every != 0 {
            log.checkpoints
                .push(checkpoint(signer, size, frontier.root()));
        }
    }

    fn checkpoint(signer: &CheckpointSigner, size: u64, root: Hash) -> StoredCheckpoint {
        StoredCheckpoint {
            size,
            root: hex::encode(root.0),
            note: String::from_utf8(signer.sign(size, root)).unwrap(),
            created_at: "2026-03-01T13:00:00.000000Z".into(),
        }
    }

    fn expectations() -> Expectations {
        Expectations {
            verifier_key: signer().verifier_key(),
            exported: Vec::new(),
            trusted: None,
            integrate_before: "2026-03-01T00:00:00.000000Z".into(),
        }
    }

    async fn check(log: &MemoryLog) -> Result<Verified, Problem> {
        verify_log(&mut log.clone(), &expectations()).await.unwrap()
    }

    fn random_log(rng: &mut ChaCha8Rng, size: usize) -> MemoryLog {
        let mut id = 0;
        let events = (0..size)
            .map(|_| {
                id += rng.gen_range(1..3);
                event(rng, id)
            })
            .collect();
        build(events, 64)
    }

    /// Changes one byte of one column of one record, keeping it text.
    fn change_byte(rng: &mut ChaCha8Rng, text: &mut String) {
        if text.is_empty() {
            text.push('x');
            return;
        }
        let mut bytes = text.clone().into_bytes();
        let i = rng.gen_range(0..bytes.len());
        let old = bytes[i];
        let mut new = old;
        while new == old {
            new = rng.gen_range(0x21u8..0x7f);
        }
        bytes[i] = new;
        *text = String::from_utf8(bytes).unwrap();
    }

    /// One random change to one record's stored columns; returns the position it hit.
    fn mutate_record(rng: &mut ChaCha8Rng, log: &mut MemoryLog) -> i64 {
        let k = rng.gen_range(0..log.rows.len());
        let row = &mut log.rows[k];
        let position = row.seq;
        let record = row.record.as_mut().unwrap();
        match rng.gen_range(0..21) {
            0 => change_byte(rng, &mut record.at),
            1 => change_byte(rng, &mut record.actor_kind),
            2 => change_byte(rng, record.actor_user.get_or_insert_with(String::new)),
            3 => change_byte(rng, record.actor_org.get_or_insert_with(String::new)),
            4 => change_byte(rng, &mut record.action),
            5 => change_byte(rng, &mut record.target_kind),
            6 => change_byte(rng, record.target_id.get_or_insert_with(String::new)),
            7 => change_byte(rng, record.release_id.get_or_insert_with(String::new)),
            8 => record.history_entry = Some(record.history_entry.unwrap_or(0) + 1),
            9 => change_byte(rng, record.dua_number.get_or_insert_with(String::new)),
            10 => change_byte(rng, record.file_id.get_or_insert_with(String::new)),
            11 => change_byte(rng, &mut record.outcome),
            12 => change_byte(rng, record.reason.get_or_insert_with(String::new)),
            13 => change_byte(rng, record.client_addr.get_or_insert_with(String::new)),
            14 => change_byte(rng, record.user_agent.get_or_insert_with(String::new)),
            15 => record.bytes = Some(record.bytes.unwrap_or(0) ^ (1 << rng.gen_range(0..40))),
            16 => change_byte(rng, record.integrated_at.get_or_insert_with(String::new)),
            17 => change_byte(rng, &mut row.prev_hash),
            18 => change_byte(rng, &mut row.hash),
            19 => change_byte(rng, &mut row.tree_hashes),
            _ => {
                // The log row points at another event id (the event itself unchanged).
                row.event_id += 1;
            }
        }
        position
    }

    #[tokio::test(flavor = "current_thread")]
    async fn intact_logs_of_every_size_verify() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for size in [0, 1, 2, 3, 63, 64, 65, 1000] {
            let log = random_log(&mut rng, size);
            let verified = check(&log)
                .await
                .unwrap_or_else(|p| panic!("size {size}: {p}"));
            assert_eq!(verified.records, size as u64);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_thousand_random_mutations_are_all_found_and_located() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut mutations = 0;
        // Logs of 1 to 10,000 records; more mutations on the small ones, where an off-by-one
        // at an edge would hide.
        for (size, count) in [
            (1, 60),
            (2, 60),
            (3, 60),
            (17, 150),
            (64, 150),
            (65, 150),
            (300, 400),
            (2_000, 25),
            (10_000, 5),
        ] {
            let log = random_log(&mut rng, size);
            check(&log).await.expect("intact");
            for _ in 0..count {
                let mut bad = log.clone();
                let kind = rng.gen_range(0..10);
                let expected: Option<i64> = match kind {
                    0..=3 => Some(mutate_record(&mut rng, &mut bad)),
                    4 => {
                        // A record deleted.
                        let k = rng.gen_range(0..bad.rows.len());
                        bad.rows.remove(k);
                        Some(k as i64 + 1).filter(|_| k + 1 < size)
                    }
                    5 => {
                        // A record inserted: a copy of another, given a free position.
                        let k = rng.gen_range(0..bad.rows.len());
                        let mut copy = bad.rows[k].clone();
                        copy.seq = size as i64 + 1;
                        bad.rows.push(copy);
                        None
                    }
                    6 if size > 1 => {
                        // Two records swapped (their contents, each keeping its position).
                        let i = rng.gen_range(0..size - 1);
                        let j = rng.gen_range(i + 1..size);
                        let (a, b) = (bad.rows[i].clone(), bad.rows[j].clone());
                        bad.rows[i] = LogRow { seq: a.seq, ..b };
                        bad.rows[j] = LogRow {
                            seq: bad.rows[j].seq,
                            ..a
                        };
                        Some(i as i64 + 1)
                    }
                    7 => {
                        // The tail truncated (records and their tree hashes).
                        let keep = rng.gen_range(0..size);
                        bad.rows.truncate(keep);
                        None
                    }
                    8 => {
                        // A checkpoint replaced by one of another tree, or its signature forged.
                        let k = rng.gen_range(0..bad.checkpoints.len());
                        if rng.gen_bool(0.5) {
                            let size = bad.checkpoints[k].size;
                            bad.checkpoints[k] = checkpoint(&signer(), size, Hash([rng.gen(); 32]));
                        } else {
                            let note = &mut bad.checkpoints[k].note;
                            let sig_start = note.find("\u{2014} ").unwrap() + 4 + ORIGIN.len() + 1;
                            let mut bytes = note.clone().into_bytes();
                            let i = rng.gen_range(sig_start + 8..bytes.len() - 2);
                            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                            *note = String::from_utf8(bytes).unwrap();
                        }
                        None
                    }
                    _ => {
                        // History rewritten with a recomputed chain and tree, by someone without
                        // the signing key: the stored checkpoints no longer match.
                        let k = rng.gen_range(0..size);
                        let mut events: Vec<AccessRecord> =
                            bad.rows.iter().map(|r| r.record.clone().unwrap()).collect();
                        events[k].outcome = "granted".into();
                        events[k].action = "release_read".into();
                        let stranger = CheckpointSigner::new(
                            ORIGIN,
                            ed25519_dalek::SigningKey::from_bytes(&[6; 32]),
                        );
                        let keep = bad.checkpoints.clone();
                        rehash_from(&mut bad, events, k, 64, &stranger);
                        bad.checkpoints = keep;
                        None
                    }
                };
                mutations += 1;
                let problem = match check(&bad).await {
                    Ok(_) => panic!("mutation {kind} of a log of {size} accepted"),
                    Err(problem) => problem,
                };
                if let Some(position) = expected {
                    assert_eq!(
                        problem.position(),
                        Some(position),
                        "mutation {kind}, size {size}: {problem}"
                    );
                }
            }
        }
        assert!(mutations >= 1000, "{mutations} mutations");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_trusted_checkpoint_catches_a_rewrite_that_removed_the_stored_ones() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let log = random_log(&mut rng, 200);
        let trusted_note = log.checkpoints[1].note.clone();
        let trusted = checkpoint::open(trusted_note.as_bytes(), &signer().verifier_key()).unwrap();
        let mut bad = log.clone();
        let mut events: Vec<AccessRecord> =
            bad.rows.iter().map(|r| r.record.clone().unwrap()).collect();
        events[10].outcome = "granted".into();
        let stranger =
            CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[6; 32]));
        rehash_from(&mut bad, events, 10, 64, &stranger);
        bad.checkpoints.clear();
        // Without the trusted copy, a rewritten log with no checkpoint left looks whole...
        check(&bad).await.expect("nothing to compare with");
        // ...with it, the rewrite is found at the trusted checkpoint's size.
        let mut expect = expectations();
        expect.trusted = Some(("trusted".into(), trusted));
        let problem = verify_log(&mut bad.clone(), &expect)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(problem, Problem::CheckpointRoot { size: 128, .. }),
            "{problem}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn events_left_without_a_position_are_found() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut log = random_log(&mut rng, 10);
        let last = log.rows.last().unwrap().event_id;
        log.pending.push(Unintegrated {
            id: last - 1,
            at: "2026-03-01T12:00:00.000000Z".into(),
        });
        assert!(matches!(check(&log).await, Err(Problem::Inserted { .. })));
        log.pending[0] = Unintegrated {
            id: last + 1,
            at: "2026-02-01T00:00:00.000000Z".into(),
        };
        assert!(matches!(
            check(&log).await,
            Err(Problem::NotIntegrated { .. })
        ));
        log.pending[0].at = "2026-03-02T00:00:00.000000Z".into();
        assert_eq!(check(&log).await.unwrap().pending, 1, "within the deadline");
    }
}
