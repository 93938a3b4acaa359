//! Opening a source file: a local path or an object, plain, gzip or zstd.

use std::io::Read;
use std::path::PathBuf;

use crate::storage::{ObjectKey, SharedStore};

use super::ExtractError;

/// Where a dataset's source file is.
#[derive(Debug, Clone)]
pub enum SourceLocation {
    /// A file on a path the job runner can read.
    Path(PathBuf),
    /// An object in the store (uploaded by IT staff).
    Object(ObjectKey),
}

/// How the source is compressed, decided by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain CSV.
    None,
    /// `.gz`
    Gzip,
    /// `.zst`
    Zstd,
}

impl Compression {
    /// `.gz` -> gzip, `.zst` -> zstd, anything else plain.
    pub fn from_name(name: &str) -> Self {
        if name.ends_with(".gz") {
            Compression::Gzip
        } else if name.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

impl SourceLocation {
    /// The name used in messages (a path or key: never content).
    pub fn name(&self) -> String {
        match self {
            SourceLocation::Path(path) => path.display().to_string(),
            SourceLocation::Object(key) => key.to_string(),
        }
    }

    /// Opens the source for blocking reads, decompressing by its name. Must be called on a
    /// blocking thread: an object source is read through a bridge into the async store.
    pub(super) fn open_blocking(
        &self,
        store: &SharedStore,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Box<dyn Read + Send>, ExtractError> {
        let source_error = |error| ExtractError::Source {
            source_name: self.name(),
            error,
        };
        let raw: Box<dyn Read + Send> = match self {
            SourceLocation::Path(path) => {
                Box::new(std::fs::File::open(path).map_err(source_error)?)
            }
            SourceLocation::Object(key) => {
                let object = runtime
                    .block_on(store.get(key, None))
                    .map_err(|e| source_error(std::io::Error::other(e.to_string())))?;
                Box::new(tokio_util::io::SyncIoBridge::new_with_handle(
                    object.body,
                    runtime.clone(),
                ))
            }
        };
        Ok(match Compression::from_name(&self.name()) {
            Compression::None => raw,
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(raw).map_err(source_error)?)
            }
        })
    }
}
