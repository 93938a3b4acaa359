//! The destruction certificate: what the server destroyed, how, when and on whose demand,
//! signed with the server's Ed25519 key. Its content comes only from what the erase job
//! recorded (the plan, written before anything was erased, and the erase itself), so a job
//! that dies and runs again issues the same certificate, byte for byte.
//!
//! The signed file is JSON: `{"certificate": {...}, "signature": "<hex>"}`, the signature over
//! the certificate's canonical bytes (its fields in the order below, compact). Anyone with the
//! server's public key checks it offline (`steward verify certificate`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::signing::{verify_hex, ServerSigner};
use crate::pdf::{self, Block, TextDocument};

/// The format name, first field of every certificate.
pub const FORMAT: &str = "steward-destruction-certificate/1";

/// How the server destroys a release's data (NIST SP 800-88 Rev. 1: cryptographic erase is a
/// Purge method).
pub const METHOD: &str = "NIST SP 800-88 Rev. 1 Purge by cryptographic erase: the release's age \
     identity, held by the server only wrapped in its database, deleted, so no key the server \
     holds decrypts the release's ciphertext; then every object of the release deleted from the \
     store, every version and delete marker. Copies the recipients decrypted with their own keys \
     are theirs to destroy and attest";

/// One stored object, as it was before it was deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasedObject {
    /// The object key.
    pub key: String,
    /// SHA-256 of the stored bytes (ciphertext), hex.
    pub sha256: String,
    /// Stored size in bytes.
    pub bytes: u64,
}

/// What the erase job found to destroy, recorded before it erased anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The recipient organization's name at the time.
    pub organization: String,
    /// The DUA number in force.
    pub dua: Option<String>,
    /// Every object of the release, by key.
    pub objects: Vec<ErasedObject>,
    /// The release identity's public keys (`age1...`), which name the secret erased.
    pub keys: Vec<String>,
}

/// The certificate's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// [`FORMAT`].
    pub format: String,
    /// The release destroyed.
    pub release: Uuid,
    /// The recipient organization.
    pub organization: String,
    /// The DUA the data was released under.
    pub dua: Option<String>,
    /// Who demanded destruction: a user id, or `system` (the DUA's end).
    pub demanded_by: String,
    /// When (RFC 3339, UTC).
    pub demanded_at: String,
    /// The deadline for the recipient's attestation (ISO date).
    pub deadline: String,
    /// Every object deleted, with its digest and size.
    pub objects: Vec<ErasedObject>,
    /// The public keys of the release identities erased.
    pub keys_erased: Vec<String>,
    /// [`METHOD`].
    pub method: String,
    /// When the release identity was erased (RFC 3339, UTC).
    pub erased_at: String,
    /// Who performed it.
    pub performed_by: String,
    /// The access log's signed checkpoint at the moment of the erase (a C2SP signed note).
    pub log_checkpoint: String,
    /// The server's Ed25519 public key, hex.
    pub signer: String,
}

/// A certificate with its signature: the file a director, privacy officer or recipient gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCertificate {
    /// The statement.
    pub certificate: Certificate,
    /// Ed25519 over [`Certificate::canonical`], hex.
    pub signature: String,
}

/// Why a certificate does not verify.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file is not a signed certificate.
    #[error("not a destruction certificate: {0}")]
    Malformed(String),
    /// It names another format.
    #[error("unknown certificate format {0:?}; expected {FORMAT:?}")]
    Format(String),
    /// The signature does not verify with the key given (the content was altered, or another
    /// key signed it).
    #[error("the signature does not verify with this public key: the certificate was altered or signed by another key")]
    BadSignature,
    /// It was signed by a key other than the one it names.
    #[error("the certificate names signer {named}, not the key given")]
    OtherSigner {
        /// The key the certificate names.
        named: String,
    },
}

impl Certificate {
    /// The bytes the signature covers: compact JSON, fields in declaration order.
    pub fn canonical(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and vectors cannot fail.
        serde_json::to_vec(self).expect("a certificate serializes")
    }

    /// Signs the certificate with the server's key.
    pub fn sign(self, signer: &ServerSigner) -> SignedCertificate {
        let signature = signer.sign_hex(&self.canonical());
        SignedCertificate {
            certificate: self,
            signature,
        }
    }
}

impl SignedCertificate {
    /// The file's bytes (pretty JSON, newline-terminated).
    pub fn to_file(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a certificate serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The certificate as a PDF, signature included (the JSON file is what verifies).
    pub fn to_pdf(&self) -> Vec<u8> {
        pdf::render(&compose(self))
    }
}

/// Checks a certificate file against the server's public key (hex); returns the statement.
pub fn verify(file: &[u8], public_hex: &str) -> Result<Certificate, CertificateError> {
    let signed: SignedCertificate =
        serde_json::from_slice(file).map_err(|e| CertificateError::Malformed(e.to_string()))?;
    if signed.certificate.format != FORMAT {
        return Err(CertificateError::Format(signed.certificate.format));
    }
    verify_hex(
        public_hex,
        &signed.certificate.canonical(),
        &signed.signature,
    )
    .map_err(|_| CertificateError::BadSignature)?;
    if !signed.certificate.signer.eq_ignore_ascii_case(public_hex) {
        return Err(CertificateError::OtherSigner {
            named: signed.certificate.signer,
        });
    }
    Ok(signed.certificate)
}

fn compose(signed: &SignedCertificate) -> TextDocument {
    let c = &signed.certificate;
    let mut blocks = vec![
        Block::Title("Certificate of destruction".into()),
        Block::Gap,
        Block::Para(format!("Release: {}", c.release)),
        Block::Para(format!("Recipient organization: {}", c.organization)),
        Block::Para(format!(
            "Data Use Agreement: {}",
            c.dua.as_deref().unwrap_or("none recorded")
        )),
        Block::Para(format!(
            "Destruction demanded by {} at {}; the recipient's attestation is due by {}.",
            c.demanded_by, c.demanded_at, c.deadline
        )),
        Block::Gap,
        Block::Para(format!("Method: {}.", c.method)),
        Block::Para(format!(
            "Release identity erased at {} by {}.",
            c.erased_at, c.performed_by
        )),
        Block::Gap,
        Block::Para(format!("Keys erased ({}):", c.keys_erased.len())),
    ];
    blocks.extend(c.keys_erased.iter().map(|k| Block::Item(k.clone())));
    blocks.push(Block::Gap);
    blocks.push(Block::Para(format!(
        "Objects deleted ({}), with the SHA-256 and size of what was stored:",
        c.objects.len()
    )));
    blocks.extend(
        c.objects
            .iter()
            .map(|o| Block::Item(format!("{} ({} bytes) sha256 {}", o.key, o.bytes, o.sha256))),
    );
    blocks.push(Block::Gap);
    blocks.push(Block::Para(
        "The access log's signed checkpoint at the moment of the erase:".into(),
    ));
    blocks.extend(
        c.log_checkpoint
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| Block::Item(l.to_owned())),
    );
    blocks.push(Block::Gap);
    blocks.push(Block::Para(format!(
        "Signed by the server's key {}.",
        c.signer
    )));
    blocks.push(Block::Para(format!(
        "Ed25519 signature: {}",
        signed.signature
    )));
    blocks.push(Block::Para(
        "The JSON form of this certificate is what verifies: steward verify certificate FILE --key PUBLIC_KEY"
            .into(),
    ));
    TextDocument {
        blocks,
        footer: format!("Certificate of destruction – release {}", c.release),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(signer: &ServerSigner) -> Certificate {
        Certificate {
            format: FORMAT.into(),
            release: Uuid::from_u128(7),
            organization: "Đại học Y Hà Nội · Politechnika Łódzka · Πανεπιστήμιο Αθηνών".into(),
            dua: Some("DUA-2026-0007".into()),
            demanded_by: "system".into(),
            demanded_at: "2026-12-01T00:00:00Z".into(),
            deadline: "2026-12-31".into(),
            objects: vec![ErasedObject {
                key: "releases/x/med_claim.csv.zst.age".into(),
                sha256: "ab".repeat(32),
                bytes: 1234,
            }],
            keys_erased: vec!["age1example".into()],
            method: METHOD.into(),
            erased_at: "2026-12-01T00:01:00Z".into(),
            performed_by: "Steward's erase job".into(),
            log_checkpoint: "steward.example/log\n12\nroot=\n\n— steward sig\n".into(),
            signer: signer.public_hex(),
        }
    }

    #[test]
    fn a_certificate_verifies_and_any_change_fails() {
        let signer = ServerSigner::from_seed([3; 32]);
        let signed = sample(&signer).sign(&signer);
        let file = signed.to_file();
        assert_eq!(
            verify(&file, &signer.public_hex()).unwrap(),
            signed.certificate
        );
        let other = ServerSigner::from_seed([4; 32]);
        assert!(matches!(
            verify(&file, &other.public_hex()),
            Err(CertificateError::BadSignature)
        ));
        let text = String::from_utf8(file.clone()).unwrap();
        for (from, to) in [
            ("1234", "1235"),
            ("age1example", "age1exampld"),
            ("2026-12-31", "2027-12-31"),
        ] {
            let altered = text.replacen(from, to, 1);
            assert!(matches!(
                verify(altered.as_bytes(), &signer.public_hex()),
                Err(CertificateError::BadSignature)
            ));
        }
        let extra = text.replacen("\"signature\"", "\"extra\": 1, \"signature\"", 1);
        assert!(matches!(
            verify(extra.as_bytes(), &signer.public_hex()),
            Err(CertificateError::Malformed(_))
        ));
        assert!(verify(&file[..file.len() / 2], &signer.public_hex()).is_err());
    }

    #[test]
    fn the_pdf_prints_every_name_as_written() {
        let signer = ServerSigner::from_seed([3; 32]);
        let signed = sample(&signer).sign(&signer);
        assert_eq!(signed.to_pdf(), signed.to_pdf(), "deterministic");
        let Some(text) = crate::pdf::tests_support::pdftotext(&signed.to_pdf()) else {
            return;
        };
        assert!(
            text.contains("Đại học Y Hà Nội · Politechnika Łódzka · Πανεπιστήμιο Αθηνών"),
            "{text}"
        );
        assert!(text.contains("releases/x/med_claim.csv.zst.age"), "{text}");
    }
}
