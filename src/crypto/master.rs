//! The master identity and the per-release identities it wraps.
//!
//! Each release has its own age X25519 identity; extracts are encrypted to it (and to every
//! authorized recipient's key) so the server can verify what it stored. Its secret is stored
//! only wrapped (age-encrypted) under the server's master identity, which lives in a 0600 file
//! outside the database. Destroying a release's wrapped identity is its cryptographic erase.

use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use secrecy::SecretString;

use super::private_file::{self, PrivateFileError};

/// Master- and release-key failures.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The master identity file could not be read or written, or is exposed.
    #[error(transparent)]
    File(#[from] PrivateFileError),
    /// A configured master identity file does not exist. Steward generates one only at its
    /// default place under the data directory: a missing configured key is a misconfiguration
    /// (a wrong path, an unmounted secret), and a new key would not unwrap any release.
    #[error("the configured master identity file {0} does not exist; Steward generates one only at the default location (keys.master_identity_file left empty)")]
    Missing(String),
    /// The master identity file holds no `AGE-SECRET-KEY-1...` line.
    #[error("master identity file {0} holds no age X25519 identity")]
    Malformed(String),
    /// Wrapping a release identity failed.
    #[error("cannot wrap a release identity: {0}")]
    Wrap(String),
    /// A wrapped identity does not decrypt under this master identity (wrong master key, or
    /// corrupted): the release's extracts cannot be verified by the server.
    #[error("cannot unwrap a release identity: {0}")]
    Unwrap(String),
}

/// How a wrapped text secret starts in the database.
const WRAPPED_PREFIX: &str = "age:";

/// The server's master identity.
pub struct MasterIdentity {
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for MasterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterIdentity({})", self.identity.to_public())
    }
}

impl MasterIdentity {
    /// Loads a configured master identity, which must exist (see [`MasterKeyError::Missing`]).
    pub fn load(path: &Path) -> Result<Self, MasterKeyError> {
        if !path.exists() {
            return Err(MasterKeyError::Missing(path.display().to_string()));
        }
        Self::load_or_generate(path)
    }

    /// Loads the identity at `path` (the format `age-keygen` writes: comment lines, then the
    /// key), generating it (0600) on first use. Only for the default path under the data
    /// directory.
    pub fn load_or_generate(path: &Path) -> Result<Self, MasterKeyError> {
        private_file::create_if_missing(path, || {
            let identity = age::x25519::Identity::generate();
            format!(
                "# Steward master identity: wraps every release identity. Back it up offline.\n\
                 # public key: {}\n{}\n",
                identity.to_public(),
                identity.to_string().expose_secret()
            )
        })?;
        let text = private_file::read(path)?;
        let identity = text
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("AGE-SECRET-KEY-1"))
            .and_then(|line| age::x25519::Identity::from_str(line).ok())
            .ok_or_else(|| MasterKeyError::Malformed(path.display().to_string()))?;
        Ok(Self { identity })
    }

    /// Wraps a small secret kept in the database (a TOTP seed): `age:` and the base64 of its
    /// age encryption to the master identity, so a copy of the database alone does not hold it.
    pub fn wrap_text(&self, secret: &str) -> Result<String, MasterKeyError> {
        use base64::Engine as _;
        let sealed = age::encrypt(&self.identity.to_public(), secret.as_bytes())
            .map_err(|e| MasterKeyError::Wrap(e.to_string()))?;
        Ok(format!(
            "{WRAPPED_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ))
    }

    /// The secret [`MasterIdentity::wrap_text`] wrapped; `None` when `stored` is not wrapped
    /// (written before secrets were).
    pub fn unwrap_text(&self, stored: &str) -> Result<Option<SecretString>, MasterKeyError> {
        use base64::Engine as _;
        let Some(encoded) = stored.strip_prefix(WRAPPED_PREFIX) else {
            return Ok(None);
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| MasterKeyError::Unwrap(e.to_string()))?;
        let plain = age::decrypt(&self.identity, &sealed)
            .map_err(|e| MasterKeyError::Unwrap(e.to_string()))?;
        let text =
            String::from_utf8(plain).map_err(|_| MasterKeyError::Unwrap("not UTF-8".into()))?;
        Ok(Some(SecretString::from(text)))
    }

    /// Wraps a release identity: its secret, age-encrypted to the master identity.
    pub fn wrap(&self, release: &ReleaseIdentity) -> Result<Vec<u8>, MasterKeyError> {
        let secret = release.identity.to_string();
        age::encrypt(
            &self.identity.to_public(),
            secret.expose_secret().as_bytes(),
        )
        .map_err(|e| MasterKeyError::Wrap(e.to_string()))
    }

    /// Unwraps a release identity stored by [`MasterIdentity::wrap`].
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<ReleaseIdentity, MasterKeyError> {
        let secret = age::decrypt(&self.identity, wrapped)
            .map_err(|e| MasterKeyError::Unwrap(e.to_string()))?;
        let text =
            String::from_utf8(secret).map_err(|_| MasterKeyError::Unwrap("not UTF-8".into()))?;
        let identity = age::x25519::Identity::from_str(text.trim())
            .map_err(|e| MasterKeyError::Unwrap(e.to_string()))?;
        Ok(ReleaseIdentity { identity })
    }
}

/// One release's own identity.
pub struct ReleaseIdentity {
    identity: age::x25519::Identity,
}

impl std::fmt::Debug for ReleaseIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReleaseIdentity({})", self.identity.to_public())
    }
}

impl ReleaseIdentity {
    /// A fresh identity for a release's first extract job.
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The recipient extracts are encrypted to.
    pub fn recipient(&self) -> age::x25519::Recipient {
        self.identity.to_public()
    }

    /// The identity, to decrypt and verify stored extracts.
    pub fn identity(&self) -> &age::x25519::Identity {
        &self.identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_identities_round_trip_only_under_their_master() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterIdentity::load_or_generate(&dir.path().join("keys/master.age")).unwrap();
        let release = ReleaseIdentity::generate();
        let wrapped = master.wrap(&release).unwrap();
        let secret = release.identity.to_string();
        let secret = secret.expose_secret();
        assert!(
            !wrapped
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "wrapped, not plain"
        );
        let unwrapped = master.unwrap(&wrapped).unwrap();
        assert_eq!(
            unwrapped.recipient().to_string(),
            release.recipient().to_string()
        );

        let other = MasterIdentity::load_or_generate(&dir.path().join("keys/other.age")).unwrap();
        assert!(matches!(
            other.unwrap(&wrapped),
            Err(MasterKeyError::Unwrap(_))
        ));
    }

    #[test]
    fn master_file_is_private_and_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.age");
        let first = MasterIdentity::load_or_generate(&path).unwrap();
        let second = MasterIdentity::load_or_generate(&path).unwrap();
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterIdentity::load_or_generate(&path),
            Err(MasterKeyError::File(_))
        ));
    }
}
