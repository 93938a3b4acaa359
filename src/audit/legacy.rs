//! The frozen records of schema 1 to 9 (`access_log_v1`), kept and verified as they were
//! written: `hash = SHA-256(prev_hash || canonical encoding of the record)`. The current log
//! (`super::record`) starts its chain from their last hash.
//!
//! The canonical encoding is a sequence of fields, each a 4-byte big-endian length followed by
//! its UTF-8 bytes, with the length `u32::MAX` standing for an absent field. Lengths make the
//! encoding unambiguous (no field can run into the next), so two different records never encode
//! the same way.

use sha2::{Digest, Sha256};

/// One record of `access_log_v1`.
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

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Marks an absent optional field in the encoding.
const ABSENT: u32 = u32::MAX;

/// The encoding that the record's hash covers (every field but the two hashes).
pub fn canonical_encoding(record: &AccessRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let seq = record.seq.to_string();
    let bytes = record.bytes.map(|b| b.to_string());
    let fields: [Option<&str>; 10] = [
        Some(&seq),
        Some(&record.at),
        Some(&record.actor),
        Some(&record.action),
        Some(&record.target),
        Some(&record.outcome),
        record.reason.as_deref(),
        record.client_addr.as_deref(),
        record.user_agent.as_deref(),
        bytes.as_deref(),
    ];
    for field in fields {
        match field {
            Some(text) => {
                // Every field is bounded far below 4 GiB by the event types.
                let len = u32::try_from(text.len()).unwrap_or(ABSENT - 1);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            None => out.extend_from_slice(&ABSENT.to_be_bytes()),
        }
    }
    out
}

/// Computes a record's hash from its predecessor's.
pub fn record_hash(prev_hash: &[u8; 32], record: &AccessRecord) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical_encoding(record));
    hasher.finalize().into()
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A sequence number is missing or out of order: a record was deleted, inserted or moved.
    #[error("record {found} follows {previous}: sequence numbers must be consecutive")]
    Gap {
        /// The sequence number before.
        previous: i64,
        /// The sequence number found.
        found: i64,
    },
    /// A record's `prev_hash` is not the previous record's hash.
    #[error("record {seq} does not link to the record before it")]
    Link {
        /// The record at fault.
        seq: i64,
    },
    /// A record's content does not hash to its stored hash: it was changed.
    #[error("record {seq} was altered: its hash does not match its content")]
    Content {
        /// The record at fault.
        seq: i64,
    },
    /// A stored hash is not 64 hex digits.
    #[error("record {seq} has a malformed hash")]
    Malformed {
        /// The record at fault.
        seq: i64,
    },
}

/// Checks records in sequence order, starting from the genesis record.
pub fn verify<'a>(records: impl IntoIterator<Item = &'a AccessRecord>) -> Result<u64, ChainBreak> {
    let mut state = LegacyChain::default();
    for record in records {
        state.push(record)?;
    }
    Ok(state.count)
}

/// The running state of a legacy chain check, fed one record at a time.
#[derive(Debug, Clone)]
pub struct LegacyChain {
    /// Hash of the last record checked (the genesis hash before any).
    pub prev_hash: [u8; 32],
    prev_seq: i64,
    /// Records checked.
    pub count: u64,
}

impl Default for LegacyChain {
    fn default() -> Self {
        Self {
            prev_hash: GENESIS_HASH,
            prev_seq: 0,
            count: 0,
        }
    }
}

impl LegacyChain {
    /// Checks the next record.
    pub fn push(&mut self, record: &AccessRecord) -> Result<(), ChainBreak> {
        let LegacyChain {
            prev_hash,
            prev_seq,
            count,
        } = self;
        if record.seq != *prev_seq + 1 {
            return Err(ChainBreak::Gap {
                previous: *prev_seq,
                found: record.seq,
            });
        }
        let stored_prev =
            decode_hash(&record.prev_hash).ok_or(ChainBreak::Malformed { seq: record.seq })?;
        if stored_prev != *prev_hash {
            return Err(ChainBreak::Link { seq: record.seq });
        }
        let stored = decode_hash(&record.hash).ok_or(ChainBreak::Malformed { seq: record.seq })?;
        if record_hash(prev_hash, record) != stored {
            return Err(ChainBreak::Content { seq: record.seq });
        }
        *prev_hash = stored;
        *prev_seq = record.seq;
        *count += 1;
        Ok(())
    }
}

pub use super::record::decode_hash;

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64) -> AccessRecord {
        AccessRecord {
            seq,
            at: "2026-01-01T00:00:00.000000Z".into(),
            actor: "system".into(),
            action: "server_started".into(),
            target: "service".into(),
            outcome: "succeeded".into(),
            reason: None,
            client_addr: None,
            user_agent: None,
            bytes: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn chain(n: i64) -> Vec<AccessRecord> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let mut r = record(seq);
                r.prev_hash = hex::encode(prev);
                prev = record_hash(&prev, &r);
                r.hash = hex::encode(prev);
                r
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn changed_field_is_located() {
        let mut c = chain(5);
        c[2].outcome = "denied".into();
        assert_eq!(verify(&c), Err(ChainBreak::Content { seq: 3 }));
    }

    #[test]
    fn deleted_and_reordered_records_are_located() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(
            verify(&c),
            Err(ChainBreak::Gap {
                previous: 1,
                found: 3
            })
        );
        let mut c = chain(5);
        c.swap(1, 2);
        assert_eq!(
            verify(&c),
            Err(ChainBreak::Gap {
                previous: 1,
                found: 3
            })
        );
    }

    #[test]
    fn absent_and_empty_fields_encode_differently() {
        let mut a = record(1);
        let mut b = record(1);
        a.reason = None;
        b.reason = Some(String::new());
        assert_ne!(canonical_encoding(&a), canonical_encoding(&b));
    }
}
