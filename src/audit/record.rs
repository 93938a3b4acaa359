//! A record of the access log and the bytes its hashes cover.
//!
//! The canonical encoding is a version tag, then every column of the event and of its place in
//! the log, each a 4-byte big-endian length followed by its UTF-8 bytes, with the length
//! `u32::MAX` standing for an absent column. Lengths make it unambiguous: two different records
//! never encode the same way, and no column can run into the next.
//!
//! The chain hash is `SHA-256(prev_hash || encoding)`; the Merkle leaf is RFC 6962's
//! `SHA-256(0x00 || encoding)`, so a receipt proves every column of the record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Tags the encoding, so a record of this format never hashes like one of another.
const ENCODING_TAG: &[u8] = b"steward-access-log/2";

/// Marks an absent column in the encoding.
const ABSENT: u32 = u32::MAX;

/// An event as stored in `access_events`, with its place in the log once the sequencer has
/// given it one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// The event's id in the queue: the order in which events committed.
    pub id: i64,
    /// Its position in the log, from 1 (`None` until integrated, within a second of commit).
    pub seq: Option<i64>,
    /// When the event happened: RFC 3339 UTC with microseconds.
    pub at: String,
    /// `system`, `user` or `anonymous`.
    pub actor_kind: String,
    /// The acting user.
    pub actor_user: Option<String>,
    /// The acting user's organization.
    pub actor_org: Option<String>,
    /// What was done.
    pub action: String,
    /// The kind of thing it was done to.
    pub target_kind: String,
    /// Its id (or, for a route, the route template).
    pub target_id: Option<String>,
    /// The release the event concerns.
    pub release_id: Option<String>,
    /// The entry of the release's history that holds the change and its reason.
    pub history_entry: Option<i64>,
    /// The DUA in force for that release when the event happened.
    pub dua_number: Option<String>,
    /// The extract file the event concerns.
    pub file_id: Option<String>,
    /// How it ended.
    pub outcome: String,
    /// Why.
    pub reason: Option<String>,
    /// Client IP address.
    pub client_addr: Option<String>,
    /// Sanitized user agent.
    pub user_agent: Option<String>,
    /// Bytes transferred (downloads), or a count (aggregated refusals).
    pub bytes: Option<i64>,
    /// When the sequencer gave the record its position.
    pub integrated_at: Option<String>,
}

impl AccessRecord {
    /// Who acted, as one word: `system`, `anonymous` or `user:<id>`.
    pub fn actor(&self) -> String {
        match &self.actor_user {
            Some(user) => format!("user:{user}"),
            None => self.actor_kind.clone(),
        }
    }

    /// The target, as one word: `release:<id>#<entry>`, `job:<id>`, `route:<template>`, ...
    pub fn target(&self) -> String {
        match (&self.target_id, self.history_entry) {
            (Some(id), Some(entry)) => format!("{}:{id}#{entry}", self.target_kind),
            (Some(id), None) => format!("{}:{id}", self.target_kind),
            (None, _) => self.target_kind.clone(),
        }
    }

    /// The bytes the chain hash and the Merkle leaf cover: every column, with the position.
    /// `seq` and `integrated_at` must be set (the record is integrated).
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        out.extend_from_slice(ENCODING_TAG);
        let seq = self.seq.map(|s| s.to_string());
        let id = self.id.to_string();
        let entry = self.history_entry.map(|e| e.to_string());
        let bytes = self.bytes.map(|b| b.to_string());
        let columns: [Option<&str>; 19] = [
            seq.as_deref(),
            Some(&id),
            Some(&self.at),
            Some(&self.actor_kind),
            self.actor_user.as_deref(),
            self.actor_org.as_deref(),
            Some(&self.action),
            Some(&self.target_kind),
            self.target_id.as_deref(),
            self.release_id.as_deref(),
            entry.as_deref(),
            self.dua_number.as_deref(),
            self.file_id.as_deref(),
            Some(&self.outcome),
            self.reason.as_deref(),
            self.client_addr.as_deref(),
            self.user_agent.as_deref(),
            bytes.as_deref(),
            self.integrated_at.as_deref(),
        ];
        for column in columns {
            match column {
                Some(text) => {
                    // Every column is bounded far below 4 GiB by the event types.
                    let len = u32::try_from(text.len()).unwrap_or(ABSENT - 1);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                None => out.extend_from_slice(&ABSENT.to_be_bytes()),
            }
        }
        out
    }

    /// The chain hash of this record after `prev_hash`.
    pub fn chain_hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash);
        hasher.update(self.canonical_encoding());
        hasher.finalize().into()
    }

    /// Both hashes at once, from one encoding: the chain hash after `prev_hash` and the leaf.
    pub fn hashes(&self, prev_hash: &[u8; 32]) -> ([u8; 32], tlog_tiles::Hash) {
        let encoding = self.canonical_encoding();
        let mut hasher = Sha256::new();
        hasher.update(prev_hash);
        hasher.update(&encoding);
        (hasher.finalize().into(), tlog_tiles::record_hash(&encoding))
    }

    /// The record's RFC 6962 leaf hash in the Merkle tree.
    pub fn leaf_hash(&self) -> tlog_tiles::Hash {
        tlog_tiles::record_hash(&self.canonical_encoding())
    }
}

/// Parses a hash as stored: exactly 64 lowercase hex digits (any other spelling of the same
/// bytes is a changed column).
pub fn decode_hash(text: &str) -> Option<[u8; 32]> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(id: i64) -> AccessRecord {
        AccessRecord {
            id,
            seq: Some(id),
            at: "2026-01-01T00:00:00.000000Z".into(),
            actor_kind: "system".into(),
            actor_user: None,
            actor_org: None,
            action: "server_started".into(),
            target_kind: "service".into(),
            target_id: None,
            release_id: None,
            history_entry: None,
            dua_number: None,
            file_id: None,
            outcome: "succeeded".into(),
            reason: None,
            client_addr: None,
            user_agent: None,
            bytes: None,
            integrated_at: Some("2026-01-01T00:00:00.100000Z".into()),
        }
    }

    #[test]
    fn absent_and_empty_columns_encode_differently() {
        let a = sample(1);
        let mut b = sample(1);
        b.reason = Some(String::new());
        assert_ne!(a.canonical_encoding(), b.canonical_encoding());
    }

    #[test]
    fn a_value_cannot_move_into_the_next_column() {
        let mut a = sample(1);
        let mut b = sample(1);
        a.actor_user = Some("ab".into());
        a.actor_org = Some("c".into());
        b.actor_user = Some("a".into());
        b.actor_org = Some("bc".into());
        assert_ne!(a.canonical_encoding(), b.canonical_encoding());
    }
}
