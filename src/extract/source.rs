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
        let (raw, _) = self.open_raw_blocking(store, runtime)?;
        self.decompress(raw)
    }

    /// Opens the source's bytes as stored (compressed or not), with their size.
    pub(super) fn open_raw_blocking(
        &self,
        store: &SharedStore,
        runtime: &tokio::runtime::Handle,
    ) -> Result<(Box<dyn Read + Send>, u64), ExtractError> {
        let source_error = |error| ExtractError::Source {
            source_name: self.name(),
            error,
        };
        Ok(match self {
            SourceLocation::Path(path) => {
                let file = std::fs::File::open(path).map_err(source_error)?;
                let size = file.metadata().map_or(0, |m| m.len());
                (Box::new(file), size)
            }
            SourceLocation::Object(key) => {
                let object = runtime
                    .block_on(store.get(key, None))
                    .map_err(|e| source_error(std::io::Error::other(e.to_string())))?;
                let size = object.size;
                let body =
                    tokio_util::io::SyncIoBridge::new_with_handle(object.body, runtime.clone());
                (Box::new(body), size)
            }
        })
    }

    /// Wraps `raw` in the decompressor the source's name calls for.
    pub(super) fn decompress<'r>(
        &self,
        raw: Box<dyn Read + Send + 'r>,
    ) -> Result<Box<dyn Read + Send + 'r>, ExtractError> {
        let source_error = |error| ExtractError::Source {
            source_name: self.name(),
            error,
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

/// Checks one configured source before anything is built on it: it can be opened and read,
/// and its header has every column the dataset's schema lists. An object source is checked
/// only when `store` is given (the store may not exist yet); returns whether it was checked.
pub fn check_source(
    location: &SourceLocation,
    schema: &crate::policy::DatasetSchema,
    store: Option<(&SharedStore, &tokio::runtime::Handle)>,
) -> Result<bool, ExtractError> {
    let raw: Box<dyn Read + Send> = match (location, store) {
        (SourceLocation::Path(path), _) => Box::new(std::fs::File::open(path).map_err(
            |error| ExtractError::Source {
                source_name: location.name(),
                error,
            },
        )?),
        (SourceLocation::Object(_), Some((store, runtime))) => {
            return check_header(location, location.open_blocking(store, runtime)?, schema)
                .map(|()| true)
        }
        (SourceLocation::Object(_), None) => return Ok(false),
    };
    check_header(location, location.decompress(raw)?, schema).map(|()| true)
}

fn check_header(
    location: &SourceLocation,
    reader: Box<dyn Read + Send>,
    schema: &crate::policy::DatasetSchema,
) -> Result<(), ExtractError> {
    let name = location.name();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let header = csv.headers().map_err(|e| ExtractError::MalformedRow {
        file: name.clone(),
        line: 1,
        problem: format!("the header cannot be read: {}", e.kind_text()),
    })?;
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    for column in schema.required_columns() {
        if !names.contains(&column) {
            return Err(ExtractError::Bind(
                crate::policy::BindError::MissingColumn {
                    file: name,
                    column: column.to_owned(),
                },
            ));
        }
    }
    Ok(())
}

/// A CSV error's kind in words, without any value from the file.
trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for csv::Error {
    fn kind_text(&self) -> String {
        match self.kind() {
            csv::ErrorKind::Io(e) => e.to_string(),
            csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".to_owned(),
            _ => "malformed CSV".to_owned(),
        }
    }
}
