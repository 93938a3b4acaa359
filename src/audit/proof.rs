//! Receipts and proofs: an inclusion proof of one record against a signed checkpoint, and a
//! consistency proof between two tree sizes, made from the stored tree with `tlog_tiles` and
//! checked by it. A receipt is checked offline with only the log's public key.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tlog_tiles::Hash;

use super::checkpoint::{self, CheckpointError};
use super::record::{decode_hash, AccessRecord};
use super::sequencer::{read_head, records_from, StoredCheckpoint};
use super::tree::with_hashes;
use super::AuditError;
use crate::db::Database;

/// The format tag of a receipt.
pub const RECEIPT_FORMAT: &str = "steward-access-log-receipt/1";

/// Proof that a record is in the log: the record, the checkpoint it is proved against, and the
/// RFC 6962 inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    /// The record, every column, with its position.
    pub record: AccessRecord,
    /// The signed checkpoint (a C2SP signed note) the proof leads to.
    pub checkpoint: String,
    /// Records in that checkpoint's tree.
    pub tree_size: u64,
    /// The inclusion proof, hex hashes from the leaf's sibling up.
    pub inclusion_proof: Vec<String>,
}

impl Receipt {
    /// The receipt's one byte form: pretty JSON and a final newline. A receipt file in any
    /// other form has been edited.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a receipt serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Why a receipt does not prove its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// Not a receipt, or not in its canonical form.
    #[error("not a receipt in canonical form (edited, truncated, or another file): {0}")]
    Malformed(String),
    /// The checkpoint is refused.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint given is for another tree size than the proof.
    #[error("the checkpoint covers {checkpoint} records, the proof is for a tree of {proof}")]
    SizeMismatch {
        /// Size of the checkpoint.
        checkpoint: u64,
        /// Size the proof was made for.
        proof: u64,
    },
    /// The record has no position inside the checkpoint's tree.
    #[error("the record has no position within the checkpoint's tree")]
    NoPosition,
    /// The proof does not lead from the record to the checkpoint's root.
    #[error("the inclusion proof does not lead from this record to the checkpoint's root")]
    NotIncluded,
}

/// A receipt that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedReceipt {
    /// The record's position.
    pub seq: i64,
    /// Records in the checkpoint's tree.
    pub tree_size: u64,
    /// The log's origin.
    pub origin: String,
}

/// Parses a proof's hashes: 64 lowercase hex digits each, the one form a receipt holds.
fn proof_hashes(proof: &[String]) -> Result<Vec<Hash>, ReceiptError> {
    proof
        .iter()
        .map(|h| match decode_hash(h) {
            Some(bytes) if hex::encode(bytes) == *h => Ok(Hash(bytes)),
            _ => Err(ReceiptError::Malformed(
                "a proof hash is not 64 lowercase hex digits".into(),
            )),
        })
        .collect()
}

/// Checks a receipt file with the log's note verifier key, against the receipt's own
/// checkpoint or, when given, another copy of it.
pub fn check_receipt(
    receipt_bytes: &[u8],
    checkpoint_bytes: Option<&[u8]>,
    verifier_key: &str,
) -> Result<CheckedReceipt, ReceiptError> {
    let receipt: Receipt = serde_json::from_slice(receipt_bytes)
        .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if receipt.format != RECEIPT_FORMAT {
        return Err(ReceiptError::Malformed(format!(
            "format {:?} is not {RECEIPT_FORMAT}",
            receipt.format
        )));
    }
    if receipt.to_canonical_bytes() != receipt_bytes {
        return Err(ReceiptError::Malformed(
            "its bytes differ from the receipt's canonical form".into(),
        ));
    }
    let note = checkpoint_bytes.unwrap_or(receipt.checkpoint.as_bytes());
    let opened = checkpoint::open(note, verifier_key)?;
    if opened.size != receipt.tree_size {
        return Err(ReceiptError::SizeMismatch {
            checkpoint: opened.size,
            proof: receipt.tree_size,
        });
    }
    let seq = receipt.record.seq.ok_or(ReceiptError::NoPosition)?;
    if seq < 1 || seq as u64 > opened.size {
        return Err(ReceiptError::NoPosition);
    }
    let proof = proof_hashes(&receipt.inclusion_proof)?;
    tlog_tiles::check_record(
        &proof,
        opened.size,
        opened.root,
        seq as u64 - 1,
        receipt.record.leaf_hash(),
    )
    .map_err(|_| ReceiptError::NotIncluded)?;
    Ok(CheckedReceipt {
        seq,
        tree_size: opened.size,
        origin: opened.origin,
    })
}

/// Why a proof cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// No record has that position (yet).
    #[error("no record has position {0}")]
    NoSuchPosition(i64),
    /// The tree sizes asked for are not `0 < old <= new <= size`.
    #[error("no consistency proof from size {old} to {new} in a log of {size}")]
    BadSizes {
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
        /// Records in the log.
        size: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The receipt of the record at `seq`, proved against `checkpoint` (which must cover it).
pub async fn receipt(
    db: &Database,
    seq: i64,
    checkpoint: &StoredCheckpoint,
) -> Result<Receipt, ProofError> {
    let mut conn = db.pool().acquire().await.map_err(AuditError::from)?;
    if seq < 1 || seq as u64 > checkpoint.size {
        return Err(ProofError::NoSuchPosition(seq));
    }
    let record = records_from(&mut conn, seq, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.seq == Some(seq))
        .ok_or(ProofError::NoSuchPosition(seq))?;
    let size = checkpoint.size;
    let mut cache = HashMap::new();
    let proof = with_hashes(&mut conn, &mut cache, |r| {
        tlog_tiles::prove_record(size, seq as u64 - 1, r)
    })
    .await?;
    Ok(Receipt {
        format: RECEIPT_FORMAT.to_owned(),
        record,
        checkpoint: checkpoint.note.clone(),
        tree_size: size,
        inclusion_proof: proof.iter().map(|h| hex::encode(h.0)).collect(),
    })
}

/// A consistency proof from the tree of `old` records to the tree of `new`.
pub async fn consistency(db: &Database, old: u64, new: u64) -> Result<Vec<String>, ProofError> {
    let mut conn = db.pool().acquire().await.map_err(AuditError::from)?;
    let size = read_head(&mut conn).await?.size;
    if old == 0 || old > new || new > size {
        return Err(ProofError::BadSizes { old, new, size });
    }
    let mut cache = HashMap::new();
    let proof = with_hashes(&mut conn, &mut cache, |r| {
        tlog_tiles::prove_tree(new, old, r)
    })
    .await?;
    Ok(proof.iter().map(|h| hex::encode(h.0)).collect())
}

/// Checks a consistency proof between two signed checkpoints.
pub fn check_consistency(
    old_note: &[u8],
    new_note: &[u8],
    proof: &[String],
    verifier_key: &str,
) -> Result<(), ReceiptError> {
    let old = checkpoint::open(old_note, verifier_key)?;
    let new = checkpoint::open(new_note, verifier_key)?;
    let proof = proof_hashes(proof)?;
    tlog_tiles::check_tree(&proof, new.size, new.root, old.size, old.root)
        .map_err(|_| ReceiptError::NotIncluded)
}
