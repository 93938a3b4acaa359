//! The RFC 6962 Merkle tree over the log's records, in the tlog layout of `tlog_tiles` (every
//! complete subtree's hash stored once, at its stored hash index). The hashes a record completes
//! (its leaf, then one per subtree it closes) are kept in its own `access_log.tree_hashes`, so
//! the tree costs no row of its own: stored hash (level L, index k) is the L-th hash of record
//! `(k + 1) * 2^L`.
//!
//! `tlog_tiles` reads hashes through a synchronous [`HashReader`]; the tree lives in the
//! database. [`with_hashes`] bridges the two: it runs a tlog function over a cache, notes the
//! indexes the cache lacks, fetches them and runs it again.

use std::cell::RefCell;
use std::collections::HashMap;

use sqlx::{AnyConnection, Row};
use tlog_tiles::{Hash, HashReader};

use super::AuditError;

/// A cache of stored hashes that records what it was asked for and lacks.
pub struct CachedHashes<'a> {
    cache: &'a HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl HashReader for CachedHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::tlog::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for index in indexes {
            match self.cache.get(index) {
                Some(hash) => out.push(*hash),
                None => missing.push(*index),
            }
        }
        if missing.is_empty() {
            Ok(out)
        } else {
            Err(tlog_tiles::tlog::Error::IndexesNotInTree)
        }
    }
}

/// Runs `f` over the stored hashes, reading from the database those `cache` lacks.
pub async fn with_hashes<T>(
    conn: &mut AnyConnection,
    cache: &mut HashMap<u64, Hash>,
    f: impl Fn(&CachedHashes<'_>) -> Result<T, tlog_tiles::tlog::Error>,
) -> Result<T, AuditError> {
    // Each round fetches everything one pass asked for; proofs need at most a few rounds.
    for _ in 0..64 {
        let reader = CachedHashes {
            cache,
            missing: RefCell::new(Vec::new()),
        };
        let result = f(&reader);
        let missing = reader.missing.into_inner();
        match result {
            Ok(value) => return Ok(value),
            Err(e) if missing.is_empty() => return Err(AuditError::Tree(e.to_string())),
            Err(_) => fetch(conn, cache, &missing).await?,
        }
    }
    Err(AuditError::Tree("stored hashes keep missing".into()))
}

/// The position of the record that stores hash `index`, and where among its hashes.
pub fn stored_by(index: u64) -> (i64, usize) {
    let (level, k) = tlog_tiles::split_stored_hash_index(index);
    ((((k + 1) << level) as i64), usize::from(level))
}

/// A record's `tree_hashes` column: its stored hashes, hex, one after another.
pub fn encode_tree_hashes(hashes: &[Hash]) -> String {
    hashes.iter().map(|h| hex::encode(h.0)).collect()
}

/// Parses a `tree_hashes` column (lowercase hex, whole hashes only).
pub fn decode_tree_hashes(text: &str) -> Option<Vec<Hash>> {
    if text.is_empty() || !text.len().is_multiple_of(64) {
        return None;
    }
    (0..text.len() / 64)
        .map(|i| super::record::decode_hash(&text[i * 64..(i + 1) * 64]).map(Hash))
        .collect()
}

/// Reads the stored hashes at `indexes` into `cache`; a hash no record holds is an error (a
/// record lost its row or its hashes).
async fn fetch(
    conn: &mut AnyConnection,
    cache: &mut HashMap<u64, Hash>,
    indexes: &[u64],
) -> Result<(), AuditError> {
    for chunk in indexes.chunks(500) {
        let mut by_record: HashMap<i64, Vec<(u64, usize)>> = HashMap::new();
        for index in chunk {
            let (seq, offset) = stored_by(*index);
            by_record.entry(seq).or_default().push((*index, offset));
        }
        let seqs: Vec<i64> = by_record.keys().copied().collect();
        let placeholders: Vec<String> = (1..=seqs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT seq, tree_hashes FROM access_log WHERE seq IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for seq in &seqs {
            query = query.bind(*seq);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let seq: i64 = row.try_get("seq")?;
            let text: String = row.try_get("tree_hashes")?;
            let hashes = decode_tree_hashes(&text).ok_or_else(|| {
                AuditError::Tree(format!("record {seq}'s tree hashes are malformed"))
            })?;
            for (index, offset) in by_record.get(&seq).into_iter().flatten() {
                let hash = hashes.get(*offset).ok_or_else(|| {
                    AuditError::Tree(format!("record {seq} lacks tree hash {offset}"))
                })?;
                cache.insert(*index, *hash);
            }
        }
        if let Some(absent) = chunk.iter().find(|i| !cache.contains_key(i)) {
            return Err(AuditError::Tree(format!("stored hash {absent} is missing")));
        }
    }
    Ok(())
}

/// The right edge of a tree: the hashes of its maximal complete subtrees, largest first, enough
/// to add the next record and to compute the root. At most `log2(size) + 1` hashes, kept in a
/// short vector (a verifier pushes a million records through it).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (stored hash index, hash), in index order.
    edge: Vec<(u64, Hash)>,
}

/// Reads stored hashes from a frontier's few entries.
struct EdgeReader<'a>(&'a [(u64, Hash)]);

impl HashReader for EdgeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::tlog::Error> {
        indexes
            .iter()
            .map(|index| {
                self.0
                    .iter()
                    .find(|(i, _)| i == index)
                    .map(|(_, h)| *h)
                    .ok_or(tlog_tiles::tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    /// The frontier of a tree of `size` records, read from the database.
    pub async fn load(conn: &mut AnyConnection, size: u64) -> Result<Self, AuditError> {
        let mut hashes = HashMap::new();
        let needed = tlog_tiles::sub_tree_index(0, size, Vec::new());
        fetch(conn, &mut hashes, &needed).await?;
        let edge = needed.iter().map(|i| (*i, hashes[i])).collect();
        Ok(Self { size, edge })
    }

    /// Records in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next record by its leaf hash; returns the hashes to store, from
    /// `stored_hash_index(0, size)` on.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let n = self.size;
        let stored = tlog_tiles::stored_hashes_for_record_hash(n, leaf, &EdgeReader(&self.edge))
            .expect("the frontier holds every hash a new record needs");
        // The record completes one subtree per trailing one bit of n: those subtrees merge
        // into the last stored hash, which joins the edge in their place.
        let merged = (n + 1).trailing_zeros() as usize;
        self.edge.truncate(self.edge.len() - merged);
        let top = stored.len() - 1;
        self.edge.push((
            tlog_tiles::stored_hash_index(0, n) + top as u64,
            stored[top],
        ));
        self.size += 1;
        stored
    }

    /// The tree's root hash (RFC 6962's hash of the empty string for no records).
    pub fn root(&self) -> Hash {
        tlog_tiles::tree_hash(self.size, &EdgeReader(&self.edge))
            .expect("the frontier holds the root's subtrees")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The root of a frontier agrees with a root computed over every stored hash, and proofs
    /// made from the stored hashes check against it.
    #[test]
    fn frontier_roots_match_the_full_tree() {
        let mut frontier = Frontier::default();
        let mut all: HashMap<u64, Hash> = HashMap::new();
        for n in 0..300u64 {
            let leaf = tlog_tiles::record_hash(&n.to_be_bytes());
            let first = tlog_tiles::stored_hash_index(0, n);
            for (offset, hash) in frontier.push(leaf).into_iter().enumerate() {
                let index = first + offset as u64;
                assert_eq!(stored_by(index), (n as i64 + 1, offset), "index {index}");
                all.insert(index, hash);
            }
            let reader = CachedHashes {
                cache: &all,
                missing: RefCell::new(Vec::new()),
            };
            let root = tlog_tiles::tree_hash(n + 1, &reader).unwrap();
            assert_eq!(frontier.root(), root, "size {}", n + 1);
            let proof = tlog_tiles::prove_record(n + 1, n / 2, &reader).unwrap();
            let leaf = tlog_tiles::record_hash(&(n / 2).to_be_bytes());
            tlog_tiles::check_record(&proof, n + 1, root, n / 2, leaf).unwrap();
        }
        assert!(frontier.edge.len() <= 10);
    }
}
