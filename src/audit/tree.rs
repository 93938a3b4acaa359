//! The RFC 6962 Merkle tree over the log's records, in the tlog layout of `tlog_tiles` (every
//! complete subtree's hash stored once, at its stored hash index), kept in `access_log_tree`.
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

/// Reads the stored hashes at `indexes` into `cache`; an index with no row is an error (the
/// tree table lost a row).
async fn fetch(
    conn: &mut AnyConnection,
    cache: &mut HashMap<u64, Hash>,
    indexes: &[u64],
) -> Result<(), AuditError> {
    for chunk in indexes.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT idx, hash FROM access_log_tree WHERE idx IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for index in chunk {
            query = query.bind(i64::try_from(*index).unwrap_or(i64::MAX));
        }
        let rows = query.fetch_all(&mut *conn).await?;
        for row in &rows {
            let index: i64 = row.try_get("idx")?;
            let hash: String = row.try_get("hash")?;
            let hash = super::record::decode_hash(&hash)
                .ok_or_else(|| AuditError::Tree(format!("stored hash {index} is malformed")))?;
            cache.insert(index as u64, Hash(hash));
        }
        if let Some(absent) = chunk.iter().find(|i| !cache.contains_key(i)) {
            return Err(AuditError::Tree(format!("stored hash {absent} is missing")));
        }
    }
    Ok(())
}

/// The right edge of a tree: the hashes of its maximal complete subtrees, enough to add the
/// next record and to compute the root. At most `log2(size) + 1` hashes.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    hashes: HashMap<u64, Hash>,
}

impl Frontier {
    /// The frontier of a tree of `size` records, read from the database.
    pub async fn load(conn: &mut AnyConnection, size: u64) -> Result<Self, AuditError> {
        let mut hashes = HashMap::new();
        let needed = tlog_tiles::sub_tree_index(0, size, Vec::new());
        fetch(conn, &mut hashes, &needed).await?;
        Ok(Self { size, hashes })
    }

    /// Records in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next record by its leaf hash; returns the hashes to store, from
    /// `stored_hash_index(0, size)` on.
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let n = self.size;
        let reader = CachedHashes {
            cache: &self.hashes,
            missing: RefCell::new(Vec::new()),
        };
        let stored = tlog_tiles::stored_hashes_for_record_hash(n, leaf, &reader)
            .expect("the frontier holds every hash a new record needs");
        let first = tlog_tiles::stored_hash_index(0, n);
        for (offset, hash) in stored.iter().enumerate() {
            self.hashes.insert(first + offset as u64, *hash);
        }
        self.size += 1;
        let keep = tlog_tiles::sub_tree_index(0, self.size, Vec::new());
        self.hashes.retain(|index, _| keep.contains(index));
        stored
    }

    /// The tree's root hash (RFC 6962's hash of the empty string for no records).
    pub fn root(&self) -> Hash {
        let reader = CachedHashes {
            cache: &self.hashes,
            missing: RefCell::new(Vec::new()),
        };
        tlog_tiles::tree_hash(self.size, &reader).expect("the frontier holds the root's subtrees")
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
                all.insert(first + offset as u64, hash);
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
        assert!(frontier.hashes.len() <= 10);
    }
}
