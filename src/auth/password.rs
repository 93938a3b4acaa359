//! Passwords: argon2id with configured (OWASP default) cost, run off the async workers; a dummy
//! hash so an unknown user costs the same as a known one; length and common-password checks.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use super::AuthError;
use crate::config::AuthSettings;
use crate::crypto::random;

/// Passwords too common to accept at any length (compared case-insensitively).
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Hashes and verifies passwords with one set of argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    dummy_hash: String,
    min_length: usize,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the configured cost; computes the dummy hash once (off the async workers).
    pub async fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
        let dummy_password = SecretString::from(random::hex_secret::<16>());
        let dummy_hash = hash_blocking(params.clone(), dummy_password).await?;
        Ok(Self {
            params,
            dummy_hash,
            min_length: settings.password_min_length,
        })
    }

    /// Refuses a password that is too short, common, or contains the user name.
    pub fn check_policy(&self, password: &SecretString, username: &str) -> Result<(), AuthError> {
        let text = password.expose_secret();
        let chars = text.chars().count();
        if chars < self.min_length {
            return Err(AuthError::Invalid(format!(
                "the password has {chars} characters; at least {} are required",
                self.min_length
            )));
        }
        let lower = text.to_lowercase();
        if COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .any(|common| !common.is_empty() && common == lower)
        {
            return Err(AuthError::Invalid(
                "the password is on the list of common passwords; choose another".into(),
            ));
        }
        if !username.is_empty() && lower.contains(&username.to_lowercase()) {
            return Err(AuthError::Invalid(
                "the password must not contain the user name".into(),
            ));
        }
        Ok(())
    }

    /// Hashes a password (PHC string) off the async workers.
    pub async fn hash(&self, password: SecretString) -> Result<String, AuthError> {
        hash_blocking(self.params.clone(), password).await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no user, so
    /// both cost the same; the answer for the dummy is always false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<&str>,
    ) -> Result<bool, AuthError> {
        let is_real = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let span = tracing::Span::current();
        let ok = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .await
        .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Ok(ok && is_real)
    }
}

async fn hash_blocking(params: Params, password: SecretString) -> Result<String, AuthError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let salt = SaltString::encode_b64(&random::bytes::<16>())
            .map_err(|e| AuthError::Hashing(e.to_string()))?;
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hashing(e.to_string()))
    })
    .await
    .map_err(|e| AuthError::Hashing(e.to_string()))?
}

/// A one-time password for a new account: 20 characters without look-alikes.
pub fn generate_password() -> SecretString {
    SecretString::from(random::string_from(
        b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        20,
    ))
}
