//! The extract pipeline, per dataset of a release, streaming end to end:
//!
//! ```text
//! source (CSV, .gz or .zst) -> BoundPlan::apply -> CSV rows    [transform thread]
//!        -> 4 MiB plaintext chunks, each to both:
//!             SHA-256 of the plaintext                          [hash thread]
//!             zstd frame -> age (release identity + every
//!             recipient key) -> SHA-256 of the ciphertext       [seal thread]
//!        -> ObjectStore::put (multipart)                        [async task]
//! ```
//!
//! Stages are joined by bounded channels, so memory is the same for a 1 MB and a 100 GB source
//! and a slow store slows the reader instead of filling memory. There are more stages than
//! the two cores of a small server so that the scheduler can fill either core: the transform
//! and the seal stage each take nearly half the work, and which is heavier depends on the
//! level.
//!
//! Architecture invariant: plaintext exists only in memory, inside this module's threads; only
//! [`seal`] produces bytes for the object store, and they are age ciphertext.

pub mod aggregate;
mod csv_out;
pub mod job;
pub mod manifest;
pub mod members;
mod pipeline;
mod plain_rows;
pub mod probe;
pub mod seal;
mod source;

pub use pipeline::{
    extract_dataset, DatasetRequest, DroppedRows, InvalidRowTolerance, JobControl, RowCounts,
    SealedFile,
};
pub use source::{check_source, Compression, SourceLocation};

/// Why a dataset could not be extracted. Nothing was published in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The source could not be opened or read.
    #[error("source {source_name}: {error}")]
    Source {
        /// The source's name (path or object key), never its content.
        source_name: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// A source row is malformed (wrong number of fields, broken quoting, bad UTF-8).
    #[error("{file}, line {line}: {problem}")]
    MalformedRow {
        /// The source's name.
        file: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it (never the row's values).
        problem: String,
    },
    /// The plan could not be matched to the source's header.
    #[error(transparent)]
    Bind(#[from] crate::policy::BindError),
    /// A row could not be transformed (for example an unparseable date).
    #[error(transparent)]
    Row(#[from] crate::policy::RowError),
    /// The output could not be compressed or encrypted.
    #[error("sealing failed: {0}")]
    Seal(std::io::Error),
    /// No recipient to encrypt to: the release identity is always one, so this is a bug.
    #[error("no age recipient to encrypt to")]
    NoRecipients,
    /// The object store refused or failed the upload.
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
    /// More source rows were invalid than the dataset's tolerance allows.
    #[error(
        "{file}: {invalid} of {rows} rows are invalid, more than the dataset's tolerance allows"
    )]
    TooManyInvalidRows {
        /// The source's name.
        file: String,
        /// Invalid rows found.
        invalid: u64,
        /// Source rows read.
        rows: u64,
    },
    /// The job was cancelled (or lost its lease) while running.
    #[error("extraction cancelled")]
    Cancelled,
    /// A pipeline thread ended without saying why (a panic); nothing was published.
    #[error("extraction stage {0} stopped unexpectedly")]
    StageLost(&'static str),
    /// A stage found its neighbour gone. The neighbour's own error is the cause, and is what
    /// the pipeline reports whenever it is known.
    #[error("extraction stage {0} stopped")]
    StageStopped(&'static str),
}

impl ExtractError {
    /// Whether the error lies in the source data or the schema, so that retrying cannot change
    /// it. Reading the source is not among them: start-up checked it, so a source that cannot
    /// be read now (a mount not back yet, a store down) may be readable on the next attempt.
    pub fn is_permanent(&self) -> bool {
        match self {
            ExtractError::MalformedRow { .. }
            | ExtractError::Bind(_)
            | ExtractError::Row(_)
            | ExtractError::TooManyInvalidRows { .. }
            | ExtractError::NoRecipients => true,
            ExtractError::Source { .. }
            | ExtractError::Seal(_)
            | ExtractError::Store(_)
            | ExtractError::Cancelled
            | ExtractError::StageLost(_)
            | ExtractError::StageStopped(_) => false,
        }
    }
}
