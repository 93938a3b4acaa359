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
use super::tree::Frontier;
use super::{record_from_row, AuditError, RECORD_COLUMNS};
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
    /// A stored hash of the Merkle tree differs from the one recomputed from the records.
    #[error(
        "position {position}: stored tree hash {index} is missing or differs from the records"
    )]
    Tree {
        /// The record whose hashes are at fault.
        position: i64,
        /// The stored hash index.
        index: u64,
    },
    /// The tree table holds hashes beyond the log.
    #[error("the tree holds {found} stored hashes where the log of {size} records has {expected}")]
    TreeExtra {
        /// Records in the log.
        size: u64,
        /// Hashes it should hold.
        expected: u64,
        /// Hashes it holds.
        found: u64,
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
            | Problem::Tree { position, .. } => Some(*position),
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
    /// Stored tree hashes with index in `lo..hi`, by index.
    async fn tree_range(&mut self, lo: u64, hi: u64) -> Result<Vec<(u64, String)>, AuditError>;
    /// Number of stored tree hashes.
    async fn tree_count(&mut self) -> Result<u64, AuditError>;
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

    // The records, page by page, with their stored tree hashes.
    let mut frontier = Frontier::default();
    let mut prev = legacy_chain.prev_hash;
    let mut last_event = 0i64;
    let mut last_at = String::new();
    let check_root = |frontier: &Frontier, claims: &BTreeMap<u64, Vec<RootClaim>>| {
        if let Some(list) = claims.get(&frontier.size()) {
            let root = frontier.root();
            if let Some(claim) = list.iter().find(|c| c.root != root) {
                return Err(Problem::CheckpointRoot {
                    size: frontier.size(),
                    place: claim.place.clone(),
                });
            }
        }
        Ok(())
    };
    if let Err(problem) = check_root(&frontier, &claims) {
        return Ok(Err(problem));
    }
    loop {
        let from = frontier.size() as i64 + 1;
        let page = source.log_page(from, PAGE).await?;
        if page.is_empty() {
            break;
        }
        let lo = tlog_tiles::stored_hash_index(0, frontier.size());
        let hi = tlog_tiles::stored_hash_index(0, frontier.size() + page.len() as u64);
        let stored_tree: BTreeMap<u64, String> =
            source.tree_range(lo, hi).await?.into_iter().collect();
        for row in &page {
            let position = frontier.size() as i64 + 1;
            if let Err(problem) = check_row(row, position, &prev, last_event) {
                return Ok(Err(problem));
            }
            let record = row.record.as_ref().expect("checked by check_row");
            let first = tlog_tiles::stored_hash_index(0, frontier.size());
            for (offset, hash) in frontier.push(record.leaf_hash()).into_iter().enumerate() {
                let index = first + offset as u64;
                if stored_tree.get(&index) != Some(&hex::encode(hash.0)) {
                    return Ok(Err(Problem::Tree { position, index }));
                }
            }
            if let Err(problem) = check_root(&frontier, &claims) {
                return Ok(Err(problem));
            }
            prev = decode_hash(&row.hash).expect("checked by check_row");
            last_event = row.event_id;
            last_at.clone_from(&record.at);
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    let size = frontier.size();
    if let Some((&beyond, list)) = claims.range(size + 1..).next() {
        return Ok(Err(Problem::CheckpointBeyondLog {
            size: beyond,
            place: list[0].place.clone(),
            log_size: size,
        }));
    }
    let expected_tree = tlog_tiles::stored_hash_count(size);
    let found_tree = source.tree_count().await?;
    if found_tree != expected_tree {
        return Ok(Err(Problem::TreeExtra {
            size,
            expected: expected_tree,
            found: found_tree,
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

fn check_row(row: &LogRow, position: i64, prev: &[u8; 32], last_event: i64) -> Result<(), Problem> {
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
    if record.chain_hash(prev) != stored {
        return Err(Problem::Content { position });
    }
    Ok(())
}

/// The log as stored in a database.
#[derive(Debug)]
pub struct DatabaseLog<'a> {
    db: &'a Database,
}

impl<'a> DatabaseLog<'a> {
    /// The log in `db`.
    pub fn new(db: &'a Database) -> Self {
        Self { db }
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
        // A LEFT JOIN, so a record whose event was deleted is reported, not skipped.
        let sql = format!(
            "SELECT {RECORD_COLUMNS}, l.seq AS log_seq, l.event_id AS log_event, \
             l.prev_hash, l.hash, e.id IS NULL AS event_missing FROM access_log l \
             LEFT JOIN access_events e ON e.id = l.event_id \
             WHERE l.seq >= $1 ORDER BY l.seq LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let missing: bool = row
                    .try_get::<bool, _>("event_missing")
                    .or_else(|_| row.try_get::<i64, _>("event_missing").map(|v| v != 0))?;
                Ok(LogRow {
                    seq: row.try_get("log_seq")?,
                    event_id: row.try_get("log_event")?,
                    record: if missing {
                        None
                    } else {
                        Some(record_from_row(row)?)
                    },
                    prev_hash: row.try_get("prev_hash")?,
                    hash: row.try_get("hash")?,
                })
            })
            .collect()
    }

    async fn tree_range(&mut self, lo: u64, hi: u64) -> Result<Vec<(u64, String)>, AuditError> {
        let rows = sqlx::query(
            "SELECT idx, hash FROM access_log_tree WHERE idx >= $1 AND idx < $2 ORDER BY idx",
        )
        .bind(lo as i64)
        .bind(hi as i64)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>("idx")? as u64, row.try_get("hash")?)))
            .collect()
    }

    async fn tree_count(&mut self) -> Result<u64, AuditError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM access_log_tree")
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        Ok(n as u64)
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
