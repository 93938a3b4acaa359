//! Signed checkpoints: the C2SP tlog-checkpoint body (origin, tree size, base64 root hash) in a
//! C2SP signed note, signed with the server's Ed25519 key under the log's origin as key name.
//! `tlog_tiles` formats and parses the body; `signed_note` signs and verifies the note.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a signed note, or its body is not a checkpoint.
    #[error("not a well-formed signed checkpoint")]
    Malformed,
    /// Signed by the key, but the signature does not verify: the text was changed.
    #[error("its signature does not verify")]
    BadSignature,
    /// Not signed by the key given (another key, or none).
    #[error("it carries no signature by key {0}")]
    NotSignedByKey(String),
    /// The body names another log.
    #[error("it is a checkpoint of log {found:?}, not of {expected:?}")]
    WrongOrigin {
        /// The origin the verifier key names.
        expected: String,
        /// The origin of the checkpoint.
        found: String,
    },
    /// The verifier key text is not `name+hash+base64` for an Ed25519 key.
    #[error("not a note verifier key (name+id+key, as `steward audit key` prints)")]
    BadKey,
}

/// The server's key, as a note signer for the log's origin.
pub struct CheckpointSigner {
    origin: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner({})", self.verifier_key())
    }
}

impl CheckpointSigner {
    /// A signer of checkpoints of the log named `origin` with `key`.
    pub fn new(origin: &str, key: SigningKey) -> Self {
        let public = [&[1u8][..], key.verifying_key().as_bytes()].concat();
        Self {
            origin: origin.to_owned(),
            id: signed_note::key_id(origin, &public),
            key,
        }
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The note verifier key (`origin+id+base64`) that checks this signer's checkpoints.
    pub fn verifier_key(&self) -> String {
        verifier_key(&self.origin, &self.key.verifying_key())
    }

    /// The signed checkpoint of a tree of `size` records with root `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Vec<u8> {
        let body = Checkpoint::new(&self.origin, size, root, "")
            .expect("a configured origin is a valid checkpoint origin")
            .to_bytes();
        let mut note = Note::new(&body, &[]).expect("a checkpoint body is a valid note text");
        note.add_sigs(&[self])
            .expect("the origin is a valid key name (checked at start-up)");
        note.to_bytes()
    }
}

impl signed_note::Signer for CheckpointSigner {
    fn name(&self) -> &str {
        &self.origin
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Whether `origin` can name a log: a valid note key name (no spaces or `+`) of printable
/// ASCII.
pub fn is_valid_origin(origin: &str) -> bool {
    signed_note::is_key_name_valid(origin) && origin.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// The note verifier key for checkpoints of `origin` signed by `key`.
pub fn verifier_key(origin: &str, key: &VerifyingKey) -> String {
    signed_note::new_ed25519_verifier_key(origin, key)
}

/// Checks that `verifier_key` is a note verifier key for Ed25519.
pub fn check_verifier_key(verifier_key: &str) -> Result<(), CheckpointError> {
    StandardVerifier::new(verifier_key.trim())
        .map(|_| ())
        .map_err(|_| CheckpointError::BadKey)
}

/// A checkpoint whose signature has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    /// The log's origin.
    pub origin: String,
    /// Records in the tree.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// Checks a signed checkpoint against a note verifier key; the checkpoint's origin must be the
/// key's name.
pub fn open(note: &[u8], verifier_key: &str) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verifier =
        StandardVerifier::new(verifier_key.trim()).map_err(|_| CheckpointError::BadKey)?;
    let key_name = signed_note::Verifier::name(&verifier).to_owned();
    let note = Note::from_bytes(note).map_err(|_| CheckpointError::Malformed)?;
    let verifiers = VerifierList::new(vec![Box::new(verifier)]);
    match note.verify(&verifiers) {
        Ok(_) => {}
        Err(signed_note::NoteError::InvalidSignature { .. }) => {
            return Err(CheckpointError::BadSignature)
        }
        Err(signed_note::NoteError::UnverifiedNote) => {
            return Err(CheckpointError::NotSignedByKey(key_name))
        }
        Err(_) => return Err(CheckpointError::Malformed),
    }
    let checkpoint = Checkpoint::from_bytes(note.text()).map_err(|_| CheckpointError::Malformed)?;
    if checkpoint.origin() != key_name {
        return Err(CheckpointError::WrongOrigin {
            expected: key_name,
            found: checkpoint.origin().to_owned(),
        });
    }
    Ok(VerifiedCheckpoint {
        origin: checkpoint.origin().to_owned(),
        size: checkpoint.size(),
        root: *checkpoint.hash(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(origin: &str, seed: u8) -> CheckpointSigner {
        CheckpointSigner::new(origin, SigningKey::from_bytes(&[seed; 32]))
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let s = signer("example.org/log", 1);
        let note = s.sign(42, Hash([7; 32]));
        let opened = open(&note, &s.verifier_key()).unwrap();
        assert_eq!((opened.size, opened.root), (42, Hash([7; 32])));

        let other = signer("example.org/log", 2);
        assert!(matches!(
            open(&note, &other.verifier_key()),
            Err(CheckpointError::NotSignedByKey(_))
        ));
        let elsewhere = signer("example.org/other", 1);
        assert!(matches!(
            open(&note, &elsewhere.verifier_key()),
            Err(CheckpointError::NotSignedByKey(_))
        ));
        assert_eq!(open(&note, "not a key"), Err(CheckpointError::BadKey));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let s = signer("example.org/log", 1);
        let note = s.sign(42, Hash([7; 32]));
        for i in 0..note.len() {
            let mut bad = note.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad, &s.verifier_key()).is_err(), "byte {i}");
        }
        assert!(open(&note[..note.len() - 10], &s.verifier_key()).is_err());
    }

    #[test]
    fn a_checkpoint_of_another_origin_is_refused() {
        // Same key, signed as another log: the name on the signature differs from the key's.
        let key = SigningKey::from_bytes(&[1; 32]);
        let note = CheckpointSigner::new("example.org/other", key.clone()).sign(1, Hash([0; 32]));
        let ours = CheckpointSigner::new("example.org/log", key);
        assert!(open(&note, &ours.verifier_key()).is_err());
    }
}
