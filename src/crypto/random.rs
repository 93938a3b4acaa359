//! The single source of random bytes for secrets (tokens, passwords, TOTP secrets, keys), so
//! a review or a test has one place to look.

use rand::rngs::OsRng;
use rand::RngCore;

/// `N` bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// A secret of `N` random bytes as lowercase hex.
pub fn hex_secret<const N: usize>() -> String {
    hex::encode(bytes::<N>())
}

/// `len` characters drawn uniformly from `alphabet` (at most 256 symbols).
pub fn string_from(alphabet: &[u8], len: usize) -> String {
    // Rejection sampling keeps every symbol equally likely whatever the alphabet size.
    let n = alphabet.len().clamp(1, 256);
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in bytes::<32>() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % n] as char);
            }
        }
    }
    out
}
