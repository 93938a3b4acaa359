//! The object store that holds encrypted extracts: a local directory or an S3-compatible service.
//!
//! Architecture invariant: keys are made by the server, never taken from a request, and
//! [`ObjectKey::parse`] refuses anything that could leave the store's root. Objects become
//! visible only once complete; a failed put leaves neither an object nor an open upload.

mod fs;
mod s3;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use fs::FsStore;
pub use s3::{S3Store, S3StoreConfig};

use crate::config::{ConfigError, Settings, StorageBackend};

/// Longest key accepted, in bytes (S3 allows 1024; ours are short and server-made).
const MAX_KEY_LEN: usize = 512;

/// Why a key or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is empty.
    #[error("object key is empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("object key is longer than {MAX_KEY_LEN} bytes")]
    TooLong,
    /// The key starts with `/`.
    #[error("object key {0:?} is absolute")]
    Absolute(String),
    /// A segment is empty, or starts with a dot (`.`, `..`, hidden names).
    #[error("object key {0:?} has an empty, `.` or `..` or dot-prefixed segment")]
    BadSegment(String),
    /// A character outside `A-Z a-z 0-9 . _ - /` (this includes NUL and `\`).
    #[error("object key {key:?} contains the character {ch:?}, outside A-Z a-z 0-9 . _ - /")]
    BadChar {
        /// The key.
        key: String,
        /// The first offending character.
        ch: char,
    },
}

/// A validated object key: relative, `/`-separated segments of `[A-Za-z0-9._-]`, none of them
/// empty or starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks a key; see the type's documentation for the rules.
    pub fn parse(key: &str) -> Result<Self, KeyError> {
        validate_path(key)?;
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated listing prefix: empty, or a key optionally followed by `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Checks a prefix with the key rules; a trailing `/` is allowed.
    pub fn parse(prefix: &str) -> Result<Self, KeyError> {
        if !prefix.is_empty() {
            validate_path(prefix.strip_suffix('/').unwrap_or(prefix))?;
        }
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_path(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong);
    }
    if key.starts_with('/') {
        return Err(KeyError::Absolute(key.to_owned()));
    }
    if let Some(ch) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(KeyError::BadChar {
            key: key.to_owned(),
            ch,
        });
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return Err(KeyError::BadSegment(key.to_owned()));
    }
    Ok(())
}

/// A single byte range, as in `Range: bytes=start-end` (end inclusive) or `bytes=start-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `None` means to the end.
    pub end: Option<u64>,
}

impl ByteRange {
    /// The `(offset, length)` this range selects in an object of `size` bytes, or `None` when
    /// it selects nothing (start past the end, or end before start).
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        if self.start >= size {
            return None;
        }
        let last = match self.end {
            Some(end) if end < self.start => return None,
            Some(end) => end.min(size - 1),
            None => size - 1,
        };
        Some((self.start, last - self.start + 1))
    }
}

/// A streaming object body.
pub type ObjectBody = Pin<Box<dyn AsyncRead + Send>>;

/// The result of a get: the requested bytes and where they sit in the object.
pub struct GetObject {
    /// Size of the whole object.
    pub size: u64,
    /// Offset of the first byte of `body`.
    pub offset: u64,
    /// Number of bytes `body` yields.
    pub len: u64,
    /// The bytes.
    pub body: ObjectBody,
}

impl fmt::Debug for GetObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GetObject")
            .field("size", &self.size)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key.
    pub key: ObjectKey,
    /// Its size in bytes.
    pub size: u64,
}

/// An upload that was started and neither completed nor aborted (a crashed writer's leftovers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key the upload was meant to create.
    pub key: ObjectKey,
    /// The store's identifier of the upload.
    pub upload_id: String,
}

/// Object store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key or prefix broke the key rules.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// No object has this key.
    #[error("object {0} not found")]
    NotFound(ObjectKey),
    /// The requested range lies outside the object.
    #[error("range not satisfiable for an object of {size} bytes")]
    RangeNotSatisfiable {
        /// Size of the object.
        size: u64,
    },
    /// A local filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Reading the body to store failed (the caller's stream broke); nothing was stored.
    #[error("reading the body for {key} failed: {source}")]
    Body {
        /// The key being written.
        key: ObjectKey,
        /// The error.
        source: std::io::Error,
    },
    /// An S3 request failed.
    #[error("S3 {op} on {target} failed: {message}")]
    S3 {
        /// The S3 operation.
        op: &'static str,
        /// The bucket or key involved.
        target: String,
        /// The service's error, with its context.
        message: String,
    },
    /// The store's settings are unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Where extracts are kept.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Names the store in messages: `fs:/path` or `s3://bucket`.
    fn describe(&self) -> String;

    /// Checks that the store is reachable and usable (the readiness check).
    async fn check(&self) -> Result<(), StoreError>;

    /// Streams `body` into `key`, returning the number of bytes stored. The object appears
    /// only when complete; on any failure nothing is visible and no upload is left open.
    async fn put(
        &self,
        key: &ObjectKey,
        body: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<u64, StoreError>;

    /// Opens `key`, or the part of it that `range` selects.
    async fn get(&self, key: &ObjectKey, range: Option<ByteRange>)
        -> Result<GetObject, StoreError>;

    /// Size of `key`.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectMeta, StoreError>;

    /// Deletes `key`; on a versioned S3 bucket every version and delete marker. Deleting a
    /// missing key succeeds.
    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError>;

    /// Every complete object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Every key under `prefix` that the store keeps anything of: a current object, an older
    /// version, or a delete marker hiding older versions (what destruction must reach, which
    /// `list` does not show on a versioned bucket). Sorted. A store without versions lists
    /// its objects.
    async fn stored_keys(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectKey>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .map(|m| m.key)
            .collect())
    }

    /// Uploads under `prefix` that were started and never completed or aborted.
    async fn pending_uploads(&self, prefix: &KeyPrefix) -> Result<Vec<PendingUpload>, StoreError>;

    /// Discards a pending upload and its parts.
    async fn abort_upload(&self, upload: &PendingUpload) -> Result<(), StoreError>;
}

/// The shared handle the application passes around.
pub type SharedStore = Arc<dyn ObjectStore>;

/// Builds the store the settings describe; does not check that it is reachable.
pub async fn from_settings(settings: &Settings) -> Result<SharedStore, StoreError> {
    match settings.storage.backend {
        StorageBackend::Fs => Ok(Arc::new(FsStore::new(settings.fs_store_root()))),
        StorageBackend::S3 => {
            let s3 = settings
                .storage
                .s3
                .as_ref()
                .ok_or(ConfigError::Inconsistent {
                    key: "storage.s3",
                    problem: "backend is \"s3\" but the [storage.s3] table is missing".into(),
                })?;
            let credentials = match (&s3.access_key_id, s3.secret_access_key()?) {
                (Some(id), Some(secret)) => Some((id.clone(), secret)),
                _ => None,
            };
            let config = S3StoreConfig {
                bucket: s3.bucket.clone(),
                region: s3.region.clone(),
                endpoint: s3.endpoint.clone(),
                force_path_style: s3.force_path_style,
                credentials,
                part_size: settings.storage.part_size_bytes,
            };
            Ok(Arc::new(S3Store::new(config).await))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_the_root_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a\0b",
            "a\\b",
            "a b",
            "é",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ObjectKey::parse(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        for good in ["a", "releases/1b2c/claims.csv.zst.age", "x-y_z.1"] {
            assert!(ObjectKey::parse(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn prefixes_follow_key_rules() {
        assert!(KeyPrefix::parse("").is_ok());
        assert!(KeyPrefix::parse("releases/").is_ok());
        assert!(KeyPrefix::parse("../").is_err());
        assert!(KeyPrefix::parse("/").is_err());
    }

    #[test]
    fn ranges_resolve_against_size() {
        let r = |start, end| ByteRange { start, end };
        assert_eq!(r(0, Some(9)).resolve(100), Some((0, 10)));
        assert_eq!(r(90, None).resolve(100), Some((90, 10)));
        assert_eq!(r(90, Some(1000)).resolve(100), Some((90, 10)));
        assert_eq!(r(100, None).resolve(100), None);
        assert_eq!(r(5, Some(4)).resolve(100), None);
        assert_eq!(r(0, None).resolve(0), None);
    }
}
