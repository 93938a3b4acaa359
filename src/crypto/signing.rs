//! The server's Ed25519 signing key: it signs manifests, approval letters, log checkpoints and
//! destruction certificates. Kept as a 0600 file (a hex seed), never in the database.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::private_file::{self, PrivateFileError};

/// Signing-key failures.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file could not be read, written, or is exposed.
    #[error(transparent)]
    File(#[from] PrivateFileError),
    /// The key file does not hold a 32-byte hex seed.
    #[error("signing key {0} is malformed: expected 64 hex digits")]
    Malformed(PathBuf),
    /// A signature is not 64 bytes of hex, or does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

/// The server's signing key.
#[derive(Clone)]
pub struct ServerSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ServerSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerSigner(public {})", self.public_hex())
    }
}

impl ServerSigner {
    /// Loads the key at `path`, generating it (0600) on first use.
    pub fn load_or_generate(path: &Path) -> Result<Self, SigningError> {
        private_file::create_if_missing(path, || hex::encode(super::random::bytes::<32>()))?;
        let text = private_file::read(path)?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed)
            .map_err(|_| SigningError::Malformed(path.to_owned()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A signer over a given seed; for tests.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Signs `message`; the signature as 128 hex digits.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }

    /// The public key, to publish for recipients and auditors.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key itself, for signers of other formats (checkpoint notes).
    pub fn signing_key(&self) -> SigningKey {
        self.key.clone()
    }

    /// The public key as 64 hex digits.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }
}

/// Checks a hex signature over `message` with a hex public key.
pub fn verify_hex(
    public_hex: &str,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), SigningError> {
    let mut public = [0u8; 32];
    hex::decode_to_slice(public_hex, &mut public).map_err(|_| SigningError::BadSignature)?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut signature).map_err(|_| SigningError::BadSignature)?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| SigningError::BadSignature)?;
    key.verify(message, &Signature::from_bytes(&signature))
        .map_err(|_| SigningError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let signer = ServerSigner::load_or_generate(&path).unwrap();
        let again = ServerSigner::load_or_generate(&path).unwrap();
        assert_eq!(signer.public_hex(), again.public_hex(), "the key is kept");
        let signature = signer.sign_hex(b"manifest");
        verify_hex(&signer.public_hex(), b"manifest", &signature).unwrap();
        assert!(verify_hex(&signer.public_hex(), b"manifesT", &signature).is_err());
        let other = ServerSigner::from_seed([1; 32]);
        assert!(verify_hex(&other.public_hex(), b"manifest", &signature).is_err());
    }
}
