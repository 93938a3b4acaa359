//! One dataset through the three stages; see the module documentation.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use super::csv_out::CsvChunks;
use super::seal::{self, CipherChunk, PlainChunk, StreamDigest};
use super::{ExtractError, SourceLocation};
use crate::policy::{
    ExtractPlan, MemberKey, NamedIdentities, RowError, RowOutcome, RowSink, WithheldMembers,
};
use crate::storage::{ObjectKey, SharedStore};

/// Plaintext is handed from the transform to the seal stage in pieces of about this size, and
/// each piece becomes one zstd frame (see `seal`): large enough to compress well, small enough
/// that a few in flight cost little memory.
const PLAIN_CHUNK: usize = 4 * 1024 * 1024;
/// Plaintext pieces in flight between transform and seal.
const PLAIN_DEPTH: usize = 2;
/// Ciphertext pieces (1 MiB) in flight between seal and upload. With the store's part buffer
/// these bound the pipeline's memory, whatever the source's size.
const CIPHER_DEPTH: usize = 4;
/// How many rows pass between checks of the cancel flag and progress updates.
const ROWS_PER_CHECK: u64 = 4096;

/// Shared with the job runner: cancel from outside, progress from inside.
#[derive(Debug, Default)]
pub struct JobControl {
    cancelled: AtomicBool,
    rows: AtomicU64,
    source_bytes: AtomicU64,
    current_read: AtomicU64,
    current_size: AtomicU64,
}

impl JobControl {
    /// Asks the pipeline to stop; it aborts its upload and returns `Cancelled`.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Rows transformed so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// Source bytes read so far (compressed size when the source is compressed).
    pub fn source_bytes(&self) -> u64 {
        self.source_bytes.load(Ordering::Relaxed)
    }

    /// The source being read: bytes read of it, and its size (0 when unknown).
    pub fn current_source(&self) -> (u64, u64) {
        (
            self.current_read.load(Ordering::Relaxed),
            self.current_size.load(Ordering::Relaxed),
        )
    }

    /// A new source is being read, of `size` bytes as stored.
    fn start_source(&self, size: u64) {
        self.current_read.store(0, Ordering::Relaxed);
        self.current_size.store(size, Ordering::Relaxed);
    }
}

/// One dataset to extract.
pub struct DatasetRequest {
    /// The release's plan for this dataset.
    pub plan: Arc<ExtractPlan>,
    /// Where the source is.
    pub source: SourceLocation,
    /// Members whose direct identifiers are withheld: opted out, or with a protected row
    /// anywhere in the release (consulted at Level III).
    pub members: Arc<WithheldMembers>,
    /// How many invalid source rows may be dropped instead of failing the extract.
    pub tolerance: InvalidRowTolerance,
    /// The identities of rows written with direct identifiers so far in this writing of the
    /// release, when rows may link protected members to unrecorded identities.
    pub named: Option<Arc<NamedIdentities>>,
    /// Who can decrypt: the release identity and every authorized user's key.
    pub recipients: Vec<Box<dyn age::Recipient + Send>>,
    /// The server-chosen key of the encrypted output.
    pub key: ObjectKey,
}

/// How many invalid source rows a dataset may drop. The default drops none: the first invalid
/// row fails the extract, naming its line, column and reason.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InvalidRowTolerance {
    /// Most invalid rows dropped; 0 for no limit by count (then `max_fraction` decides).
    pub max_rows: u64,
    /// Largest fraction of the source's rows that may be invalid; 0 for no limit by fraction.
    pub max_fraction: f64,
}

impl InvalidRowTolerance {
    /// Whether invalid rows may be dropped at all.
    pub fn allows_any(&self) -> bool {
        self.max_rows > 0 || self.max_fraction > 0.0
    }

    /// Whether `invalid` of `rows` source rows is within the tolerance.
    fn allows(&self, invalid: u64, rows: u64) -> bool {
        let by_count = self.max_rows == 0 || invalid <= self.max_rows;
        // Rows are far fewer than 2^53, so the conversion is exact.
        let by_fraction =
            self.max_fraction <= 0.0 || (invalid as f64) <= self.max_fraction * (rows as f64);
        self.allows_any() && by_count && by_fraction
    }
}

/// Invalid source rows dropped, per column and reason (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedRows {
    /// The source column (`(row)` for the row as a whole).
    pub column: String,
    /// What was wrong.
    pub reason: String,
    /// How many rows.
    pub rows: u64,
}

/// What the transform did with the source's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Source data rows read (header excluded).
    pub source_rows: u64,
    /// Rows delivered.
    pub delivered: u64,
    /// Rows outside the release's filters, not delivered.
    pub outside_filters: u64,
    /// Invalid rows dropped under the dataset's tolerance.
    pub dropped: Vec<DroppedRows>,
    /// Identities found beside a protected member's on one row and recorded from there on.
    pub learned_links: Vec<MemberKey>,
    /// How many of them a row written earlier (in this or a previous file of the writing) may
    /// have named: when not zero, the files must be written again.
    pub suspect_links: u64,
}

/// What was stored for one dataset: everything the manifest lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFile {
    /// Object key of the ciphertext.
    pub key: ObjectKey,
    /// Delivered columns, in order.
    pub columns: Vec<String>,
    /// Data rows delivered (header excluded).
    pub rows: u64,
    /// What became of the source's rows.
    pub counts: RowCounts,
    /// Size and SHA-256 of the plaintext CSV.
    pub plaintext: StreamDigest,
    /// Size and SHA-256 of the stored ciphertext.
    pub ciphertext: StreamDigest,
}

/// Extracts one dataset into `store`. On any error the upload is aborted: no object, no open
/// multipart upload.
pub async fn extract_dataset(
    request: DatasetRequest,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<SealedFile, ExtractError> {
    let (plain_tx, plain_rx) = sync_channel::<PlainChunk>(PLAIN_DEPTH);
    let (hash_tx, hash_rx) = sync_channel::<PlainChunk>(PLAIN_DEPTH);
    let (cipher_tx, mut cipher_rx) = tokio::sync::mpsc::channel::<CipherChunk>(CIPHER_DEPTH);
    let runtime = tokio::runtime::Handle::current();
    let columns: Vec<String> = request
        .plan
        .header()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();

    let transform = {
        let (plan, source, members, tolerance, named) = (
            request.plan.clone(),
            request.source.clone(),
            request.members.clone(),
            request.tolerance,
            request.named.clone(),
        );
        let (store, control) = (store.clone(), control.clone());
        let outputs = vec![hash_tx, plain_tx];
        spawn_stage(move || {
            let source = SourceRows::open(&source, &store, &runtime, &control)?;
            let rules = RowRules {
                members: &members,
                named: named.as_deref(),
                tolerance,
            };
            transform_stage(&plan, source, rules, &control, outputs)
        })
    };
    let hashing = spawn_stage(move || seal::digest(hash_rx));
    let sealing = {
        let recipients = request.recipients;
        spawn_stage(move || seal::run(plain_rx, &recipients, cipher_tx))
    };
    let stream = futures_util::stream::poll_fn(move |cx| cipher_rx.poll_recv(cx));
    let mut body = StreamReader::new(stream);
    let uploaded = store.put(&request.key, &mut body).await;
    // Dropping the reader closes the channel, which stops the stages if the upload failed.
    drop(body);

    let transformed = join_stage(transform, "transform").await;
    let hashed = join_stage(hashing, "hash").await;
    let sealed = join_stage(sealing, "seal").await;
    let (counts, plaintext, ciphertext, stored) = match (transformed, hashed, sealed, uploaded) {
        (Ok(counts), Ok(plaintext), Ok(ciphertext), Ok(stored)) => {
            (counts, plaintext, ciphertext, stored)
        }
        (transformed, hashed, sealed, uploaded) => {
            return Err(first_cause([
                transformed.err(),
                hashed.err(),
                sealed.err(),
                uploaded.err().map(ExtractError::from),
            ]))
        }
    };
    if stored != ciphertext.bytes {
        // Cannot happen unless a stage lost bytes; never publish a file the manifest misdescribes.
        store.delete(&request.key).await?;
        return Err(ExtractError::StageLost("upload"));
    }
    Ok(SealedFile {
        key: request.key,
        columns,
        rows: counts.delivered,
        counts,
        plaintext,
        ciphertext,
    })
}

/// Runs a pipeline stage on a blocking thread, in the caller's tracing span.
fn spawn_stage<T: Send + 'static>(
    stage: impl FnOnce() -> Result<T, ExtractError> + Send + 'static,
) -> JoinHandle<Result<T, ExtractError>> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        stage()
    })
}

/// A stage's result; a stage that panicked is `StageLost`, reported like any other error.
async fn join_stage<T>(
    stage: JoinHandle<Result<T, ExtractError>>,
    name: &'static str,
) -> Result<T, ExtractError> {
    stage.await.unwrap_or(Err(ExtractError::StageLost(name)))
}

/// The error that stopped the pipeline. One stage failing makes the others fail with "stage
/// stopped" (or, for the uploader, with the seal stage's abort), so the cause is the first
/// error, upstream to downstream, that is not a neighbour having stopped.
fn first_cause(errors: [Option<ExtractError>; 4]) -> ExtractError {
    let errors: Vec<ExtractError> = errors.into_iter().flatten().collect();
    let cause = errors
        .iter()
        .position(|e| !matches!(e, ExtractError::StageStopped(_)))
        .unwrap_or(0);
    // Called only when a stage failed, so `nth` finds one.
    errors
        .into_iter()
        .nth(cause)
        .unwrap_or(ExtractError::StageLost("pipeline"))
}

/// Counts the bytes read from the source, for progress.
struct CountingReader<'a, R> {
    inner: R,
    control: &'a JobControl,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.control
            .source_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        self.control
            .current_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A source opened as CSV, its header read: what the transform and the protected-member pass
/// iterate.
pub(crate) struct SourceRows<'a> {
    /// The source's name, for messages.
    pub name: String,
    /// The header.
    pub header: csv::StringRecord,
    reader: csv::Reader<Box<dyn Read + Send + 'a>>,
}

impl<'a> SourceRows<'a> {
    /// Opens the source and reads its header.
    pub fn open(
        source: &SourceLocation,
        store: &SharedStore,
        runtime: &tokio::runtime::Handle,
        control: &'a JobControl,
    ) -> Result<SourceRows<'a>, ExtractError> {
        let name = source.name();
        // Bytes are counted as stored (before decompression), against the stored size.
        let (raw, size) = source.open_raw_blocking(store, runtime)?;
        control.start_source(size);
        let counted = source.decompress(Box::new(CountingReader {
            inner: raw,
            control,
        }))?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .buffer_capacity(256 * 1024)
            .from_reader(counted);
        let header = reader.headers().map_err(|e| csv_error(&name, e))?.clone();
        Ok(SourceRows {
            name,
            header,
            reader,
        })
    }

    /// Reads the next record into `record`: `Ok(None)` at the end, `Ok(Some(Err))` for a row
    /// the CSV reader refused (which a tolerance may drop; the reader goes on after it).
    pub fn next(
        &mut self,
        record: &mut csv::ByteRecord,
    ) -> Result<Option<Result<(), ExtractError>>, ExtractError> {
        match self.reader.read_byte_record(record) {
            Ok(true) => Ok(Some(Ok(()))),
            Ok(false) => Ok(None),
            Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                Ok(Some(Err(csv_error(&self.name, e))))
            }
            Err(e) => Err(csv_error(&self.name, e)),
        }
    }
}

/// What the transform applies besides the plan.
struct RowRules<'a> {
    members: &'a WithheldMembers,
    named: Option<&'a NamedIdentities>,
    tolerance: InvalidRowTolerance,
}

/// Reads, transforms and writes CSV, sending plaintext chunks to the seal stage; sends `End`
/// only when every row was transformed (or dropped within the tolerance).
fn transform_stage(
    plan: &ExtractPlan,
    mut source: SourceRows<'_>,
    rules: RowRules<'_>,
    control: &JobControl,
    outputs: Vec<SyncSender<PlainChunk>>,
) -> Result<RowCounts, ExtractError> {
    let RowRules {
        members,
        named,
        tolerance,
    } = rules;
    let mut bound = plan.bind(&source.name, &source.header)?;
    let mut out = CsvChunks::new(PLAIN_CHUNK, outputs);
    out.write_row(plan.header().into_iter().map(str::as_bytes))?;

    let mut record = csv::ByteRecord::new();
    let mut counts = RowCounts::default();
    let mut dropped = std::collections::BTreeMap::<(String, String), u64>::new();
    let mut invalid = 0u64;
    // A row that links a protected member to an identity not yet recorded records it at once
    // (a copy of the set, so rows further on are withheld), and is noted as suspect when a
    // row written earlier may have named that identity. So is a protected row whose member the
    // protected-member pass did not record: the pass and this stage read the source with
    // different CSV readers, and should they ever split a record differently, the job still
    // withholds the member everywhere (it writes the files again when a row already written
    // may have named them).
    let mut linked = named.map(|named| (members.clone(), named));
    let mut keys = Vec::new();
    while let Some(read) = source.next(&mut record)? {
        counts.source_rows += 1;
        if let Some((local, named)) = &mut linked {
            keys.clear();
            bound.row_identities(&record, local, &mut keys);
            if keys.iter().any(|k| local.is_protected(*k)) {
                record_links(&keys, local, named, &mut counts);
            }
        }
        let rule_members = linked.as_ref().map_or(members, |(local, _)| local);
        let result = read.and_then(|()| bound.apply(&record, rule_members, &mut out));
        if let Some((local, named)) = &mut linked {
            // A row written with names notes its identities; a protected row (delivered,
            // outside the filters or refused) records its member if the pass did not.
            let protected = match &result {
                Ok(RowOutcome::Delivered(flags)) if bound.names_the_member(*flags) => {
                    keys.iter().for_each(|key| named.insert(*key));
                    false
                }
                Ok(RowOutcome::Delivered(flags)) => bound.delivered_protected(*flags, &record),
                _ => bound.is_protected_row(&record),
            };
            if protected {
                record_links(&keys, local, named, &mut counts);
            }
        }
        match result {
            Ok(RowOutcome::Delivered(_)) => counts.delivered += 1,
            Ok(RowOutcome::OutsideFilters) => counts.outside_filters += 1,
            Err(error) => {
                let Some((column, reason)) = droppable(&error) else {
                    return Err(error);
                };
                invalid += 1;
                if !tolerance.allows_any()
                    || (tolerance.max_rows > 0 && invalid > tolerance.max_rows)
                {
                    return Err(error);
                }
                out.discard_row();
                *dropped.entry((column, reason)).or_default() += 1;
            }
        }
        if counts.source_rows % ROWS_PER_CHECK == 0 {
            control.rows.store(counts.source_rows, Ordering::Relaxed);
            if control.is_cancelled() {
                return Err(ExtractError::Cancelled);
            }
        }
    }
    control.rows.store(counts.source_rows, Ordering::Relaxed);
    if control.is_cancelled() {
        return Err(ExtractError::Cancelled);
    }
    if invalid > 0 && !tolerance.allows(invalid, counts.source_rows) {
        return Err(ExtractError::TooManyInvalidRows {
            file: source.name,
            invalid,
            rows: counts.source_rows,
        });
    }
    counts.dropped = dropped
        .into_iter()
        .map(|((column, reason), rows)| DroppedRows {
            column,
            reason,
            rows,
        })
        .collect();
    out.finish()?;
    Ok(counts)
}

/// Records `keys` (one row's identities) as a protected member's, counting each that was not
/// recorded yet as learned, and as suspect when a row already written may have named it.
fn record_links(
    keys: &[MemberKey],
    members: &mut WithheldMembers,
    named: &NamedIdentities,
    counts: &mut RowCounts,
) {
    for key in keys {
        if members.add_protected(*key) {
            counts.learned_links.push(*key);
            counts.suspect_links += u64::from(named.may_contain(*key));
        }
    }
}

/// The column and reason of an error that concerns one source row only, so that a tolerance
/// may drop the row; `None` for anything else (the output, the source, the store).
fn droppable(error: &ExtractError) -> Option<(String, String)> {
    match error {
        ExtractError::Row(row) => Some((row.column().to_owned(), row.reason())),
        ExtractError::MalformedRow { problem, .. } => {
            Some((RowError::ROW.to_owned(), problem.clone()))
        }
        _ => None,
    }
}

/// A CSV reader error as a precise, value-free message naming file and line.
pub(crate) fn csv_error(file: &str, error: csv::Error) -> ExtractError {
    let line = error.position().map_or(0, csv::Position::line);
    let problem = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Utf8 { .. } => "invalid UTF-8".to_owned(),
        csv::ErrorKind::Io(e) => {
            return ExtractError::Source {
                source_name: file.to_owned(),
                error: std::io::Error::new(e.kind(), e.to_string()),
            }
        }
        _ => "malformed CSV".to_owned(),
    };
    ExtractError::MalformedRow {
        file: file.to_owned(),
        line,
        problem,
    }
}
