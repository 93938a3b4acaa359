//! TOTP second factor (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits) and recovery codes.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::crypto::random;

/// Seconds per time step.
pub const STEP_SECS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Recovery codes issued per user.
pub const RECOVERY_CODES: usize = 10;

/// A new 160-bit TOTP secret (RFC 4226 recommends 160 bits), as stored (hex).
pub fn generate_secret() -> String {
    random::hex_secret::<20>()
}

/// The time step containing `now`.
pub fn step_at(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(STEP_SECS)
}

/// The code for `step` under `secret` (RFC 4226 dynamic truncation).
pub fn code_at(secret: &[u8], step: i64) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        value % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The step whose code matches, looking one step either side for clock drift; `None` when no
/// step matches. The caller must still refuse a step used before.
pub fn matching_step(secret_hex: &str, code: &str, now: OffsetDateTime) -> Option<i64> {
    let secret = hex::decode(secret_hex).ok()?;
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    (current - 1..=current + 1)
        .find(|&step| constant_time_eq(code_at(&secret, step).as_bytes(), code.as_bytes()))
}

/// The `otpauth://` URI authenticator apps enrol from (Key Uri Format).
pub fn otpauth_uri(issuer: &str, username: &str, secret_hex: &str) -> String {
    let secret = hex::decode(secret_hex).unwrap_or_default();
    let issuer_enc = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer_enc}:{}?secret={}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        percent_encode(username),
        base32(&secret)
    )
}

/// Fresh recovery codes (`xxxxx-xxxxx`, 50 bits each), to show once.
pub fn generate_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let s = random::string_from(b"abcdefghijkmnpqrstuvwxyz23456789", 10);
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect()
}

/// How a recovery code is stored: SHA-256 hex of its normalized form. The codes are random and
/// single-use, so a fast hash is enough (unlike passwords).
pub fn hash_recovery_code(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

/// RFC 4648 base32 without padding, as authenticator apps expect.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes RFC 4648 base32 (no padding, upper case), as [`base32`] writes it; `None` for any
/// other character.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Compares without an early exit, so timing does not reveal how much of a code matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 seed, last 6 of the 8 digits.
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, t / STEP_SECS), code, "t={t}");
        }
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn drift_of_one_step_is_accepted() {
        let secret = generate_secret();
        let now = time::macros::datetime!(2026-03-01 12:00 UTC);
        let raw = hex::decode(&secret).unwrap();
        let code = code_at(&raw, step_at(now) - 1);
        assert_eq!(matching_step(&secret, &code, now), Some(step_at(now) - 1));
        let old = code_at(&raw, step_at(now) - 3);
        assert_eq!(matching_step(&secret, &old, now), None);
    }
}

#[cfg(test)]
mod base32_tests {
    #[test]
    fn base32_round_trips() {
        for bytes in [&b""[..], b"f", b"fo", b"foobar", &[0xff; 20]] {
            assert_eq!(
                super::base32_decode(&super::base32(bytes)).as_deref(),
                Some(bytes)
            );
        }
        assert_eq!(super::base32_decode("ab1"), None);
    }
}
