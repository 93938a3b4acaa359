//! JWT signing keys: Ed25519 keys with key ids, each in a 0600 file under
//! `data_dir/keys/jwt/`. The newest key signs; every key on disk verifies, so after a rotation
//! tokens signed by the previous key stay valid until they expire.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::random;

/// Keyring failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// A key file or the key directory could not be read or written.
    #[error("JWT keyring {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A key file is readable by group or others.
    #[error("JWT key {path} is readable by group or others; run `chmod 600 {path}`")]
    Exposed {
        /// The file.
        path: PathBuf,
    },
    /// A key file does not hold a 32-byte hex seed.
    #[error("JWT key {path} is malformed: expected 64 hex digits")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// Signing failed.
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The key could not be encoded for the JWT library.
    #[error("cannot encode a JWT key: {0}")]
    Encode(String),
}

/// One key pair.
struct JwtKey {
    kid: String,
    created: u64,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: [u8; 32],
}

/// The keys, newest last.
#[derive(Clone)]
pub struct JwtKeyring {
    dir: PathBuf,
    keys: Arc<RwLock<Vec<Arc<JwtKey>>>>,
}

impl std::fmt::Debug for JwtKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeyring")
            .field("dir", &self.dir)
            .field("kids", &self.kids())
            .finish()
    }
}

impl JwtKeyring {
    /// Loads every key under `dir`, generating the first one when there is none.
    /// `created` (seconds since the epoch) names a generated key's file.
    pub fn open(dir: &Path, created: u64) -> Result<Self, KeyringError> {
        let io = |source| KeyringError::Io {
            path: dir.to_owned(),
            source,
        };
        // A directory made here is the owner's only; one that exists (a shared mount of the
        // replicas' keys) is left as its owner set it.
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("key") {
                keys.push(Arc::new(load_key(&path)?));
            }
        }
        keys.sort_by(|a, b| (a.created, &a.kid).cmp(&(b.created, &b.kid)));
        let ring = Self {
            dir: dir.to_owned(),
            keys: Arc::new(RwLock::new(keys)),
        };
        if ring.kids().is_empty() {
            ring.rotate(created)?;
        }
        Ok(ring)
    }

    /// Generates a new key that signs from now on; older keys keep verifying.
    pub fn rotate(&self, created: u64) -> Result<String, KeyringError> {
        let seed = random::bytes::<32>();
        let signing = SigningKey::from_bytes(&seed);
        let kid = kid_of(&signing.verifying_key().to_bytes());
        let path = self.dir.join(format!("{created:012}-{kid}.key"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| KeyringError::Io {
                path: path.clone(),
                source,
            })?;
        std::io::Write::write_all(&mut file, hex::encode(seed).as_bytes()).map_err(|source| {
            KeyringError::Io {
                path: path.clone(),
                source,
            }
        })?;
        let key = Arc::new(key_from_seed(&seed, created)?);
        self.write_keys().push(key);
        Ok(kid)
    }

    /// Key ids, oldest first; the last one signs.
    pub fn kids(&self) -> Vec<String> {
        self.read_keys().iter().map(|k| k.kid.clone()).collect()
    }

    /// The public key of `kid` (32 raw bytes), for publishing or for tests.
    pub fn public_key(&self, kid: &str) -> Option<[u8; 32]> {
        self.read_keys()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.public)
    }

    /// Signs `claims` with the current key; the header carries `alg: EdDSA`, `typ: JWT`, `kid`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, KeyringError> {
        let key = self
            .read_keys()
            .last()
            .cloned()
            .ok_or_else(|| KeyringError::Encode("the keyring is empty".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// The verifying key of `kid`, if the keyring holds it.
    pub fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.read_keys()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.decoding.clone())
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<JwtKey>>> {
        // A panic while holding the lock cannot leave the Vec half-updated (push is atomic here).
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<JwtKey>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key id: the first 16 hex digits of SHA-256 of the public key.
fn kid_of(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

fn load_key(path: &Path) -> Result<JwtKey, KeyringError> {
    let io = |source| KeyringError::Io {
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KeyringError::Exposed {
            path: path.to_owned(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyringError::Malformed {
        path: path.to_owned(),
    })?;
    let created = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    key_from_seed(&seed, created)
}

fn key_from_seed(seed: &[u8; 32], created: u64) -> Result<JwtKey, KeyringError> {
    let signing = SigningKey::from_bytes(seed);
    let public = signing.verifying_key().to_bytes();
    let der = signing
        .to_pkcs8_der()
        .map_err(|e| KeyringError::Encode(e.to_string()))?;
    Ok(JwtKey {
        kid: kid_of(&public),
        created,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        decoding: DecodingKey::from_ed_der(&public),
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reloads_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let ring = JwtKeyring::open(dir.path(), 1).unwrap();
        assert_eq!(ring.kids().len(), 1);
        let again = JwtKeyring::open(dir.path(), 2).unwrap();
        assert_eq!(again.kids(), ring.kids());
        let new = again.rotate(3).unwrap();
        let reloaded = JwtKeyring::open(dir.path(), 4).unwrap();
        assert_eq!(reloaded.kids().last(), Some(&new));
        assert_eq!(reloaded.kids().len(), 2);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
