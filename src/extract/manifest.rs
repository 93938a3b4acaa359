//! `manifest.json`: what an extract package holds (per file: plaintext and ciphertext size and
//! SHA-256, rows, columns), signed with the server's Ed25519 key. It holds no PHI, so it is the
//! one file of a package that is not encrypted.
//!
//! The signature covers the exact bytes of the `manifest` member as Steward serializes it. The
//! manifest is made only of structs, vectors, strings and integers, so parsing and
//! re-serializing reproduces those bytes: a verifier needs no JSON canonicalization scheme.

use serde::{Deserialize, Serialize};

use super::seal::StreamDigest;
use super::RowCounts;
use crate::crypto::signing::{self, ServerSigner, SigningError};
use crate::policy::{ExtractPlan, FilterUse, RowFilter};

/// The format tag, so later formats can be told apart.
pub const FORMAT: &str = "steward-manifest/v1";

/// What kind of file an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A dataset extract (`<dataset>.csv.zst.age`).
    Data,
    /// The signed approval letter (PDF, age-encrypted).
    ApprovalLetter,
    /// The data dictionary of the delivered columns (CSV, age-encrypted).
    DataDictionary,
    /// An aggregate release's table, small cells suppressed (CSV, age-encrypted).
    AggregateTable,
    /// The proof of an aggregate table's suppression: every suppressed cell's interval
    /// (JSON, age-encrypted).
    SuppressionAudit,
    /// The notice to print with an aggregate table (seed 003 section C; text, age-encrypted).
    Notice,
}

/// Size and SHA-256 (hex) of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Number of bytes.
    pub bytes: u64,
    /// SHA-256, 64 hex digits.
    pub sha256: String,
}

impl From<StreamDigest> for Digest {
    fn from(d: StreamDigest) -> Self {
        Self {
            bytes: d.bytes,
            sha256: hex::encode(d.sha256),
        }
    }
}

/// One file of the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// File name in the package (`med_claim.csv.zst.age`).
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// Data rows, for data files.
    pub rows: Option<u64>,
    /// Delivered columns, for data files.
    pub columns: Option<Vec<String>>,
    /// The plaintext (before compression and encryption).
    pub plaintext: Digest,
    /// The stored ciphertext.
    pub ciphertext: Digest,
    /// For data files: the row filters applied and what became of the source's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceReport>,
}

/// How a data file was selected from its source: counts and filters, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceReport {
    /// Source data rows read.
    pub source_rows: u64,
    /// Rows outside the release's filters, not delivered.
    pub outside_filters: u64,
    /// Each row filter of the release and how it applied to this dataset.
    pub filters: Vec<AppliedFilter>,
    /// Invalid rows dropped under the dataset's tolerance, per column and reason.
    pub invalid_rows_dropped: Vec<DroppedEntry>,
}

/// One row filter as applied to one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedFilter {
    /// `service_years` or `payers`.
    pub filter: String,
    /// What the release approved (`2021-2022`, `P01 P02`, `any`).
    pub approved: String,
    /// How it applied: `by column <name>`, `not applicable`, or `unrestricted`.
    pub applied: String,
}

/// Invalid rows dropped for one column and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DroppedEntry {
    /// The source column (`(row)` for the row as a whole).
    pub column: String,
    /// What was wrong.
    pub reason: String,
    /// How many rows.
    pub rows: u64,
}

/// The approved value of one filter, as text.
pub fn filter_text(filter: &RowFilter, which: &str) -> String {
    match which {
        "service_years" => filter.years.as_ref().map_or_else(
            || "any".to_owned(),
            |r| format!("{}-{}", r.start(), r.end()),
        ),
        _ if filter.payers.is_empty() => "any".to_owned(),
        _ => filter
            .payers
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// How a filter applied, as text.
pub fn filter_use_text(applies: &FilterUse) -> String {
    match applies {
        FilterUse::ByColumn(column) => format!("by column {column}"),
        FilterUse::NotApplicable => "not applicable: the dataset has no such column".to_owned(),
        FilterUse::Unrestricted => "unrestricted".to_owned(),
    }
}

impl SourceReport {
    /// The report of one dataset's extract.
    pub fn new(plan: &ExtractPlan, counts: &RowCounts) -> Self {
        let filters = [
            ("service_years", plan.year_filter()),
            ("payers", plan.payer_filter()),
        ]
        .into_iter()
        .map(|(name, applies)| AppliedFilter {
            filter: name.to_owned(),
            approved: filter_text(plan.filter(), name),
            applied: filter_use_text(&applies),
        })
        .collect();
        SourceReport {
            source_rows: counts.source_rows,
            outside_filters: counts.outside_filters,
            filters,
            invalid_rows_dropped: counts
                .dropped
                .iter()
                .map(|d| DroppedEntry {
                    column: d.column.clone(),
                    reason: d.reason.clone(),
                    rows: d.rows,
                })
                .collect(),
        }
    }
}

/// The package description that is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The release.
    pub release_id: String,
    /// Its level (`I`, `II`, `III`).
    pub level: String,
    /// The DUA number.
    pub dua_number: String,
    /// When the extract was built (RFC 3339 UTC).
    pub created_at: String,
    /// Every file of the package except the manifest.
    pub files: Vec<ManifestFile>,
}

/// The signature block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// The server's public key, 64 hex digits.
    pub public_key: String,
    /// The signature over the serialized `manifest`, 128 hex digits.
    pub value: String,
}

/// `manifest.json` as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    /// What is signed.
    pub manifest: Manifest,
    /// The signature.
    pub signature: ManifestSignature,
}

/// Manifest failures.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The JSON does not parse as a manifest.
    #[error("manifest does not parse: {0}")]
    Parse(#[from] serde_json::Error),
    /// The signature does not verify (or names another algorithm or key).
    #[error("manifest signature: {0}")]
    Signature(#[from] SigningError),
    /// The manifest is of a format this build does not know.
    #[error("unknown manifest format {0:?}")]
    Format(String),
}

impl Manifest {
    /// Signs the manifest and returns the bytes of `manifest.json`.
    pub fn sign(self, signer: &ServerSigner) -> Result<Vec<u8>, ManifestError> {
        let signed_bytes = serde_json::to_vec(&self)?;
        let signed = SignedManifest {
            signature: ManifestSignature {
                algorithm: "ed25519".into(),
                public_key: signer.public_hex(),
                value: signer.sign_hex(&signed_bytes),
            },
            manifest: self,
        };
        Ok(serde_json::to_vec_pretty(&signed)?)
    }
}

/// Parses `manifest.json` and checks its signature against `expected_public_key` (hex).
pub fn verify(json: &[u8], expected_public_key: &str) -> Result<Manifest, ManifestError> {
    let signed: SignedManifest = serde_json::from_slice(json)?;
    if signed.manifest.format != FORMAT {
        return Err(ManifestError::Format(signed.manifest.format));
    }
    if signed.signature.algorithm != "ed25519" || signed.signature.public_key != expected_public_key
    {
        return Err(SigningError::BadSignature.into());
    }
    let signed_bytes = serde_json::to_vec(&signed.manifest)?;
    signing::verify_hex(expected_public_key, &signed_bytes, &signed.signature.value)?;
    Ok(signed.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            release_id: "0b8c3a8e-4f57-4a59-9c1e-4f6f7a2b9d10".into(),
            level: "III".into(),
            dua_number: "DUA-2026-0007".into(),
            created_at: "2026-03-01T12:00:00.000000Z".into(),
            files: vec![ManifestFile {
                name: "med_claim.csv.zst.age".into(),
                kind: FileKind::Data,
                rows: Some(3),
                columns: Some(vec!["member_id".into(), "service_year".into()]),
                plaintext: Digest {
                    bytes: 10,
                    sha256: "ab".repeat(32),
                },
                ciphertext: Digest {
                    bytes: 300,
                    sha256: "cd".repeat(32),
                },
                source: Some(SourceReport {
                    source_rows: 5,
                    outside_filters: 1,
                    filters: vec![AppliedFilter {
                        filter: "service_years".into(),
                        approved: "2021-2022".into(),
                        applied: "by column service_date_from".into(),
                    }],
                    invalid_rows_dropped: vec![DroppedEntry {
                        column: "member_age".into(),
                        reason: "not an age in whole years".into(),
                        rows: 1,
                    }],
                }),
            }],
        }
    }

    #[test]
    fn signed_manifest_verifies_and_any_change_is_detected() {
        let signer = ServerSigner::from_seed([3; 32]);
        let json = manifest().sign(&signer).unwrap();
        assert_eq!(verify(&json, &signer.public_hex()).unwrap(), manifest());

        let text = String::from_utf8(json.clone()).unwrap();
        let tampered = text.replace("\"rows\": 3", "\"rows\": 4");
        assert_ne!(tampered, text);
        assert!(verify(tampered.as_bytes(), &signer.public_hex()).is_err());

        let other = ServerSigner::from_seed([4; 32]);
        assert!(
            verify(&json, &other.public_hex()).is_err(),
            "another key's public key is refused"
        );
    }
}
