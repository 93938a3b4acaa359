//! Keys and randomness: the JWT keyring, the master identity and the release identities it
//! wraps, the server's signing key, and the one place secrets' random bytes come from.
//!
//! Architecture invariant: private keys live in 0600 files under the data directory (or files
//! named in configuration), never in the database.

pub mod keyring;
pub mod master;
pub mod private_file;
pub mod random;
pub mod signing;

pub use keyring::{JwtKeyring, KeyringError};
