//! Recipient public keys, validated by parsing them with the age crate.

use std::str::FromStr;

use super::AuthError;

/// A public key extracts can be encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientPublicKey {
    /// `age-x25519` or `ssh-ed25519`.
    pub kind: &'static str,
    /// The key text, trimmed (an SSH key keeps its comment out).
    pub text: String,
}

/// Parses an `age1...` X25519 or an `ssh-ed25519 ...` public key; anything else is refused.
pub fn parse_recipient_key(text: &str) -> Result<RecipientPublicKey, AuthError> {
    let text = text.trim();
    if text.starts_with("age1") {
        let key = age::x25519::Recipient::from_str(text)
            .map_err(|e| AuthError::Invalid(format!("not a valid age X25519 public key: {e}")))?;
        return Ok(RecipientPublicKey {
            kind: "age-x25519",
            text: key.to_string(),
        });
    }
    if text.starts_with("ssh-ed25519 ") {
        // Keep type and key; the comment is often an e-mail address, which is not needed.
        let mut parts = text.split_whitespace();
        let normalized = format!(
            "{} {}",
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default()
        );
        age::ssh::Recipient::from_str(&normalized)
            .map_err(|_| AuthError::Invalid("not a valid ssh-ed25519 public key".into()))?;
        return Ok(RecipientPublicKey {
            kind: "ssh-ed25519",
            text: normalized,
        });
    }
    Err(AuthError::Invalid(
        "unsupported public key: give an age X25519 key (age1...) or an ssh-ed25519 key".into(),
    ))
}
