//! One dataset through the three stages; see the module documentation.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;

use super::csv_out::{self, CsvChunks, RowChunk};
use super::plain_rows::{PlainRow, PlainRows};
use super::seal::{self, CipherChunk, PlainChunk, StreamDigest};
use super::{Compression, ExtractError, SourceLocation};
use crate::policy::{
    ExtractPlan, MemberKey, NamedIdentities, RowError, RowOutcome, RowSink, SourceRecord,
    WithheldMembers,
};
use crate::storage::{ObjectKey, SharedStore};

/// Plaintext is handed from the transform (through the id stage) to the seal stage in pieces of
/// about this size, and
/// each piece becomes one zstd frame (see `seal`): large enough to compress well, small enough
/// that a few in flight cost little memory.
const PLAIN_CHUNK: usize = 4 * 1024 * 1024;
/// Plaintext pieces in flight between the id stage and the hash and seal stages.
const PLAIN_DEPTH: usize = 2;
/// Pieces in flight between the transform and the id stage, which keeps pace with it easily.
const ROWS_DEPTH: usize = 1;
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

    /// Notes `n` more bytes read of the current source.
    pub(super) fn count_read(&self, n: u64) {
        self.source_bytes.fetch_add(n, Ordering::Relaxed);
        self.current_read.fetch_add(n, Ordering::Relaxed);
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
    let (rows_tx, rows_rx) = sync_channel::<RowChunk>(ROWS_DEPTH);
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
        spawn_stage(move || {
            let rows = TransformRows::open(&source, &store, &runtime, &control)?;
            let rules = RowRules {
                members: &members,
                named: named.as_deref(),
                tolerance,
            };
            transform_stage(&plan, rows, rules, &control, rows_tx)
        })
    };
    let writing_ids = spawn_stage(move || csv_out::write_ids(rows_rx, vec![hash_tx, plain_tx]));
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
    let ids_written = join_stage(writing_ids, "ids").await;
    let hashed = join_stage(hashing, "hash").await;
    let sealed = join_stage(sealing, "seal").await;
    let (counts, plaintext, ciphertext, stored) =
        match (transformed, ids_written, hashed, sealed, uploaded) {
            (Ok(counts), Ok(()), Ok(plaintext), Ok(ciphertext), Ok(stored)) => {
                (counts, plaintext, ciphertext, stored)
            }
            (transformed, ids_written, hashed, sealed, uploaded) => {
                return Err(first_cause([
                    transformed.err(),
                    ids_written.err(),
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
fn first_cause(errors: [Option<ExtractError>; 5]) -> ExtractError {
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

/// Counts the bytes read from the source, for progress, after the first `uncounted` (read and
/// counted before, when the source is read again).
struct CountingReader<'a, R> {
    inner: R,
    control: &'a JobControl,
    uncounted: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)? as u64;
        let skipped = n.min(self.uncounted);
        self.uncounted -= skipped;
        self.control.count_read(n - skipped);
        Ok(n as usize)
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
    line_ends: Arc<std::sync::Mutex<LineEnds>>,
}

/// The line ends in the exact reader's input not yet passed, so that a record is numbered with
/// the file's line. The CSV reader dates a record from where it began looking for it: after a
/// CRLF row (whose LF it reads with the next record) or blank lines, that is one line early
/// per LF it then skipped.
#[derive(Debug, Default)]
struct LineEnds {
    /// Offsets of LFs.
    lfs: std::collections::VecDeque<u64>,
    /// Runs of CR and LF bytes, as offset ranges; the last may still grow.
    runs: std::collections::VecDeque<std::ops::Range<u64>>,
}

impl LineEnds {
    /// Notes the CRs and LFs of `bytes`, read at `offset`.
    fn read(&mut self, offset: u64, bytes: &[u8]) {
        for index in memchr::memchr2_iter(b'\r', b'\n', bytes) {
            let at = offset + index as u64;
            if bytes[index] == b'\n' {
                self.lfs.push_back(at);
            }
            match self.runs.back_mut() {
                Some(run) if run.end == at => run.end += 1,
                _ => self.runs.push_back(at..at + 1),
            }
        }
    }

    /// How many LFs lie between `start`, where the CSV reader began looking for a record, and
    /// the record itself; forgets what lies before `start`.
    fn skipped_before(&mut self, start: u64) -> u64 {
        while self.runs.front().is_some_and(|run| run.end <= start) {
            self.runs.pop_front();
        }
        while self.lfs.front().is_some_and(|&lf| lf < start) {
            self.lfs.pop_front();
        }
        match self.runs.front() {
            Some(run) if run.start <= start => {
                self.lfs.iter().take_while(|&&lf| lf < run.end).count() as u64
            }
            _ => 0,
        }
    }
}

/// The exact reader's input, its line ends noted in a shared [`LineEnds`].
struct NotingLineEnds<R> {
    inner: R,
    offset: u64,
    line_ends: Arc<std::sync::Mutex<LineEnds>>,
}

impl<R: Read> Read for NotingLineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut line_ends) = self.line_ends.lock() {
            line_ends.read(self.offset, &buf[..n]);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<'a> SourceRows<'a> {
    /// Opens the source and reads its header.
    pub fn open(
        source: &SourceLocation,
        store: &SharedStore,
        runtime: &tokio::runtime::Handle,
        control: &'a JobControl,
    ) -> Result<SourceRows<'a>, ExtractError> {
        // Bytes are counted as stored (before decompression), against the stored size.
        let (raw, size) = source.open_raw_blocking(store, runtime)?;
        control.start_source(size);
        Self::from_raw(source, raw, control, 0)
    }

    /// Reads `raw`, the source's bytes as stored from its start, and its header; the first
    /// `counted` bytes were read and counted in the progress before.
    fn from_raw(
        source: &SourceLocation,
        raw: Box<dyn Read + Send + 'a>,
        control: &'a JobControl,
        counted: u64,
    ) -> Result<SourceRows<'a>, ExtractError> {
        let name = source.name();
        let counted = source.decompress(Box::new(CountingReader {
            inner: raw,
            control,
            uncounted: counted,
        }))?;
        let line_ends = Arc::new(std::sync::Mutex::new(LineEnds::default()));
        let noted: Box<dyn Read + Send + 'a> = Box::new(NotingLineEnds {
            inner: counted,
            offset: 0,
            line_ends: line_ends.clone(),
        });
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .buffer_capacity(256 * 1024)
            .from_reader(noted);
        let header = reader.headers().map_err(|e| csv_error(&name, e))?.clone();
        Ok(SourceRows {
            name,
            header,
            reader,
            line_ends,
        })
    }

    /// Reads past the first `records` records (which a reader read before, and vouched for:
    /// the exact reader reads them without error). The bytes read again are not counted in
    /// the progress a second time.
    fn skip(&mut self, records: u64, record: &mut csv::ByteRecord) -> Result<(), ExtractError> {
        for _ in 0..records {
            match self.next(record)? {
                Some(Ok(())) => {}
                Some(Err(error)) => return Err(error),
                None => break,
            }
        }
        Ok(())
    }

    /// Reads the next record into `record`: `Ok(None)` at the end, `Ok(Some(Err))` for a row
    /// the CSV reader refused (which a tolerance may drop; the reader goes on after it).
    pub fn next(
        &mut self,
        record: &mut csv::ByteRecord,
    ) -> Result<Option<Result<(), ExtractError>>, ExtractError> {
        match self.reader.read_byte_record(record) {
            Ok(true) => {
                if let Some(position) = record.position() {
                    let skipped = self.skipped_before(position.byte());
                    if skipped > 0 {
                        let mut position = position.clone();
                        position.set_line(position.line() + skipped);
                        record.set_position(Some(position));
                    }
                }
                Ok(Some(Ok(())))
            }
            Ok(false) => Ok(None),
            Err(e) if matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) => {
                let skipped = e.position().map_or(0, |p| self.skipped_before(p.byte()));
                let mut error = csv_error(&self.name, e);
                if let ExtractError::MalformedRow { line, .. } = &mut error {
                    *line += skipped;
                }
                Ok(Some(Err(error)))
            }
            Err(e) => Err(csv_error(&self.name, e)),
        }
    }

    fn skipped_before(&self, start: u64) -> u64 {
        self.line_ends
            .lock()
            .map_or(0, |mut line_ends| line_ends.skipped_before(start))
    }
}

/// What the transform applies besides the plan.
struct RowRules<'a> {
    members: &'a WithheldMembers,
    named: Option<&'a NamedIdentities>,
    tolerance: InvalidRowTolerance,
}

/// The transform's source rows: a plain local file by the SIMD reader while it vouches for
/// them (see `plain_rows`), anything else, and the rest of such a file, by the exact reader.
enum TransformRows<'a> {
    Plain {
        name: String,
        header: csv::StringRecord,
        rows: Box<PlainRows<'a>>,
        /// To read the rest with the exact reader.
        reopen: Box<dyn FnOnce() -> Result<SourceRows<'a>, ExtractError> + 'a>,
    },
    Exact(SourceRows<'a>),
}

impl<'a> TransformRows<'a> {
    fn open(
        source: &'a SourceLocation,
        store: &'a SharedStore,
        runtime: &'a tokio::runtime::Handle,
        control: &'a JobControl,
    ) -> Result<TransformRows<'a>, ExtractError> {
        let SourceLocation::Path(path) = source else {
            return SourceRows::open(source, store, runtime, control).map(Self::Exact);
        };
        if Compression::from_name(&source.name()) != Compression::None {
            return SourceRows::open(source, store, runtime, control).map(Self::Exact);
        }
        let name = source.name();
        let io = |error| ExtractError::Source {
            source_name: name.clone(),
            error,
        };
        // One open file for the header, the SIMD reader and the exact reader that may take
        // over: a file put in the path's place meanwhile is never read, let alone under the
        // first one's header.
        let file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_or(0, |m| m.len());
        // The header by the exact reader (its rules decide the columns), then the rows.
        let mut header_reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file.try_clone().map_err(io)?);
        let header = header_reader
            .headers()
            .map_err(|e| csv_error(&name, e))?
            .clone();
        let end = header_reader.position().clone();
        // The exact reader ends a CRLF header at its CR; the LF is still the header's.
        let mut last_two = [0u8; 2];
        let crlf = end.byte() > 0
            && std::os::unix::fs::FileExt::read_exact_at(&file, &mut last_two, end.byte() - 1)
                .is_ok()
            && last_two == *b"\r\n";
        let (start, line) = if crlf {
            (end.byte() + 1, end.line() + 1)
        } else {
            (end.byte(), end.line())
        };
        control.start_source(size);
        control.count_read(start);
        let rows = Box::new(PlainRows::open(
            file.try_clone().map_err(io)?,
            &name,
            start,
            line,
            header.len(),
            control,
        )?);
        let reopen = Box::new(move || {
            let counted = control.current_source().0;
            let mut file = file;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(|error| {
                ExtractError::Source {
                    source_name: source.name(),
                    error,
                }
            })?;
            SourceRows::from_raw(source, Box::new(file), control, counted)
        });
        Ok(TransformRows::Plain {
            name,
            header,
            rows,
            reopen,
        })
    }

    fn name(&self) -> &str {
        match self {
            TransformRows::Plain { name, .. } => name,
            TransformRows::Exact(rows) => &rows.name,
        }
    }

    fn header(&self) -> &csv::StringRecord {
        match self {
            TransformRows::Plain { header, .. } => header,
            TransformRows::Exact(rows) => &rows.header,
        }
    }
}

/// Reads, transforms and writes CSV, sending plaintext chunks to the id stage; sends `End`
/// only when every row was transformed (or dropped within the tolerance).
fn transform_stage(
    plan: &ExtractPlan,
    rows: TransformRows<'_>,
    rules: RowRules<'_>,
    control: &JobControl,
    output: SyncSender<RowChunk>,
) -> Result<RowCounts, ExtractError> {
    let name = rows.name().to_owned();
    let bound = plan.bind(&name, rows.header())?;
    let mut out = CsvChunks::start(PLAIN_CHUNK, bound.replacement_ids(), output)?;
    out.write_row(plan.header().into_iter().map(str::as_bytes))?;
    let mut transform = Transform {
        bound,
        out,
        // A row that links a protected member to an identity not yet recorded records it at
        // once (a copy of the set, so rows further on are withheld), and is noted as suspect
        // when a row written earlier may have named that identity. So is a protected row
        // whose member the protected-member pass did not record: the pass and this stage may
        // read the source with different CSV readers, and should they ever split a record
        // differently, the job still withholds the member everywhere (it writes the files
        // again when a row already written may have named them).
        linked: rules.named.map(|named| (rules.members.clone(), named)),
        members: rules.members,
        tolerance: rules.tolerance,
        control,
        counts: RowCounts::default(),
        dropped: std::collections::BTreeMap::new(),
        invalid: 0,
        keys: Vec::new(),
    };
    let mut record = csv::ByteRecord::new();
    let exact = match rows {
        TransformRows::Plain {
            rows: mut plain,
            reopen,
            header,
            ..
        } => loop {
            match plain.next() {
                PlainRow::Plain(row) => transform.row(&row, Ok(()))?,
                PlainRow::Quoted(row) => transform.row(row, Ok(()))?,
                PlainRow::End => break None,
                PlainRow::Unvouched { read } => {
                    // The exact reader takes over at the first record the SIMD reader cannot
                    // vouch for; it reads the file again up to there, transforming nothing.
                    let mut exact = reopen()?;
                    if exact.header != header {
                        // The same open file, so written over in place while it was read.
                        return Err(ExtractError::Source {
                            source_name: name,
                            error: std::io::Error::other("the source changed while it was read"),
                        });
                    }
                    exact.skip(read, &mut record)?;
                    break Some(exact);
                }
            }
        },
        TransformRows::Exact(source) => Some(source),
    };
    if let Some(mut source) = exact {
        while let Some(read) = source.next(&mut record)? {
            transform.row(&record, read)?;
        }
    }
    transform.finish(name)
}

/// What the transform keeps between rows.
struct Transform<'a> {
    bound: crate::policy::BoundPlan,
    out: CsvChunks,
    members: &'a WithheldMembers,
    linked: Option<(WithheldMembers, &'a NamedIdentities)>,
    tolerance: InvalidRowTolerance,
    control: &'a JobControl,
    counts: RowCounts,
    dropped: std::collections::BTreeMap<(String, String), u64>,
    invalid: u64,
    keys: Vec<MemberKey>,
}

impl Transform<'_> {
    /// Transforms one source row (`read` is the reader's verdict on it).
    fn row<R: SourceRecord + ?Sized>(
        &mut self,
        record: &R,
        read: Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        let Transform {
            bound,
            out,
            members,
            linked,
            tolerance,
            control,
            counts,
            dropped,
            invalid,
            keys,
        } = self;
        counts.source_rows += 1;
        if let Some((local, named)) = linked {
            keys.clear();
            bound.row_identities(record, local, keys);
            if keys.iter().any(|k| local.is_protected(*k)) {
                record_links(keys, local, named, counts);
            }
        }
        let rule_members = linked.as_ref().map_or(*members, |(local, _)| local);
        let result = read.and_then(|()| bound.apply(record, rule_members, out));
        if let Some((local, named)) = linked {
            // A row written with names notes its identities; a protected row (delivered,
            // outside the filters or refused) records its member if the pass did not.
            let protected = match &result {
                Ok(RowOutcome::Delivered(flags)) if bound.names_the_member(*flags) => {
                    keys.iter().for_each(|key| named.insert(*key));
                    false
                }
                Ok(RowOutcome::Delivered(flags)) => bound.delivered_protected(*flags, record),
                _ => bound.is_protected_row(record),
            };
            if protected {
                record_links(keys, local, named, counts);
            }
        }
        match result {
            Ok(RowOutcome::Delivered(_)) => counts.delivered += 1,
            Ok(RowOutcome::OutsideFilters) => counts.outside_filters += 1,
            Err(error) => {
                let Some((column, reason)) = droppable(&error) else {
                    return Err(error);
                };
                *invalid += 1;
                if !tolerance.allows_any()
                    || (tolerance.max_rows > 0 && *invalid > tolerance.max_rows)
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
        Ok(())
    }

    /// After the last row: the counts, once the tolerance and cancellation allow.
    fn finish(self, file: String) -> Result<RowCounts, ExtractError> {
        let Transform {
            out,
            control,
            mut counts,
            dropped,
            invalid,
            tolerance,
            ..
        } = self;
        control.rows.store(counts.source_rows, Ordering::Relaxed);
        if control.is_cancelled() {
            return Err(ExtractError::Cancelled);
        }
        if invalid > 0 && !tolerance.allows(invalid, counts.source_rows) {
            return Err(ExtractError::TooManyInvalidRows {
                file,
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
