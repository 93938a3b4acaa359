//! The protected-member pass (seed 001 section 3.1 F-H), run before any file of a Level III
//! release is written: it reads the release's sources for rows whose codes put them in a
//! protected category and records the members they are about, so that those members get no
//! direct identifier on any row of any file of the release.
//!
//! A member may appear under several identities (an SSN, a member id per payer). A row that
//! names a recorded identity makes every identity on it recorded too. One pass
//! ([`first_pass`]) reads the datasets that can hold protected rows; a row read before the
//! protected row that links its member to yet another identity is caught while the files are
//! written (`BoundPlan::unrecorded_links`), and then [`close_links`] reads the datasets that
//! link identities until a pass adds nothing, and the job writes the files again. So no chain of
//! rows can join a protected row to a named one, and data whose identities agree row by row (the
//! usual case) is read once more than a release without direct identifiers, not three times.
//! The passes read only the code and identity columns and keep only keyed hashes, in memory.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pipeline::SourceRows;
use super::plain_rows::vouched;
use super::Compression;
use super::{ExtractError, JobControl, SourceLocation};
use crate::policy::catalog::{CodeKind, SubjectKey};
use crate::policy::{
    BindError, Effect, ExtractPlan, MemberKey, ProtectedCategories, WithheldMembers,
};
use crate::storage::SharedStore;

/// One dataset of the release, as the pass sees it.
#[derive(Clone)]
pub struct MemberSource {
    /// The dataset's plan (its code and identity columns).
    pub plan: Arc<ExtractPlan>,
    /// Where its source is.
    pub source: SourceLocation,
}

/// What the pass found, for the job's record (counts only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberPassReport {
    /// Source rows in a protected category.
    pub protected_rows: u64,
    /// Member identities withheld because of them (directly or through a linking row).
    pub identities: u64,
    /// Passes over the sources.
    pub passes: u32,
}

/// Which passes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passes {
    /// One pass over the datasets that can hold a protected row.
    First,
    /// Passes over the datasets that link identities, until one adds nothing.
    CloseLinks,
    /// Both: every member and every identity linked to one.
    All,
}

/// Adds to `members` every member with a protected row in any of `sources`, with the other
/// identities on those rows (one pass). Runs on a blocking thread.
pub async fn first_pass(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::First, sources, members, store, control).await
}

/// Adds to `members` every identity linked, through any chain of rows, to one already in it.
pub async fn close_links(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::CloseLinks, sources, members, store, control).await
}

/// Both: every member with a protected row in `sources` and every identity linked to one.
pub async fn collect_protected_members(
    sources: Vec<MemberSource>,
    members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    spawn_passes(Passes::All, sources, members, store, control).await
}

async fn spawn_passes(
    which: Passes,
    sources: Vec<MemberSource>,
    mut members: WithheldMembers,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<(WithheldMembers, MemberPassReport), ExtractError> {
    let runtime = tokio::runtime::Handle::current();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let report = run_passes(which, &sources, &mut members, &store, &runtime, &control)?;
        Ok((members, report))
    })
    .await
    .unwrap_or(Err(ExtractError::StageLost("protected-member pass")))
}

fn run_passes(
    which: Passes,
    sources: &[MemberSource],
    members: &mut WithheldMembers,
    store: &SharedStore,
    runtime: &tokio::runtime::Handle,
    control: &JobControl,
) -> Result<MemberPassReport, ExtractError> {
    let mut report = MemberPassReport::default();
    // The first pass reads every dataset that can hold a protected row; the closing passes
    // only those that link identities, until nothing new is learned.
    let mut first = which != Passes::CloseLinks;
    loop {
        let mut added = 0u64;
        for source in sources {
            let columns = source.plan.protected_member_columns();
            let (codes, subjects) = (&columns.codes, &columns.subjects);
            let links = columns.links_identities();
            let reads_codes = first && !codes.is_empty();
            let wanted = if first { reads_codes } else { links };
            if subjects.is_empty() || !wanted {
                continue;
            }
            let mut rows = SourceRows::open(&source.source, store, runtime, control)?;
            let find = |column: &str| {
                rows.header
                    .iter()
                    .position(|n| n.trim() == column)
                    .ok_or_else(|| {
                        ExtractError::Bind(BindError::MissingColumn {
                            file: rows.name.clone(),
                            column: column.to_owned(),
                        })
                    })
            };
            let code_columns = if reads_codes {
                codes
                    .iter()
                    .map(|(name, kind)| Ok((find(name)?, *kind)))
                    .collect::<Result<Vec<_>, ExtractError>>()?
            } else {
                Vec::new()
            };
            let subject_columns = subjects
                .iter()
                .map(|(name, kind)| Ok((find(name)?, *kind)))
                .collect::<Result<Vec<_>, ExtractError>>()?;
            let scanner = RowScanner {
                codes: code_columns,
                subjects: subject_columns,
                protected: source.plan.protected(),
                width: rows.header.len(),
            };
            let scanned = match parallel_parts(&source.source, reads_codes) {
                Some((path, parts)) => {
                    drop(rows);
                    scan_in_parts(&path, parts, &scanner, members, control)?
                }
                None => scan_rows(&mut rows, &scanner, members, control)?,
            };
            report.protected_rows += scanned.protected_rows;
            added += scanned.added;
        }
        report.passes += 1;
        report.identities += added;
        let any_links = sources
            .iter()
            .any(|s| s.plan.protected_member_columns().links_identities());
        let closing = which != Passes::First && any_links;
        // A closing pass that added nothing proves the set closed; after the first pass (with
        // `All`) one closing pass must still confirm it.
        if !closing || (added == 0 && !first) || members.protected_len() == 0 {
            break;
        }
        first = false;
    }
    Ok(report)
}

/// Below this size a source is read by one thread: splitting would cost more than it saves.
const PARALLEL_MIN_BYTES: u64 = 64 * 1024 * 1024;

/// What one row tells the pass, read from its code and identity columns.
struct RowScanner<'a> {
    codes: Vec<(usize, CodeKind)>,
    subjects: Vec<(usize, SubjectKey)>,
    protected: &'a ProtectedCategories,
    width: usize,
}

/// What a scan found.
#[derive(Default)]
struct Scanned {
    protected_rows: u64,
    added: u64,
}

impl RowScanner<'_> {
    /// Records the identities of a protected row, or of a row naming an identity already
    /// recorded; returns whether the row is protected and how many identities it added.
    fn scan(
        &self,
        record: &csv::ByteRecord,
        members: &mut WithheldMembers,
        keys: &mut Vec<MemberKey>,
    ) -> (bool, u64) {
        // A malformed row is the transform's to report (or drop); here it says nothing.
        if record.len() != self.width {
            return (false, 0);
        }
        self.scan_fields(|index| Cow::Borrowed(&record[index]), members, keys)
    }

    /// [`RowScanner::scan`] over a record of the right width, its fields (unquoted) by index.
    fn scan_fields<'r>(
        &self,
        field: impl Fn(usize) -> Cow<'r, [u8]>,
        members: &mut WithheldMembers,
        keys: &mut Vec<MemberKey>,
    ) -> (bool, u64) {
        keys.clear();
        keys.extend(
            self.subjects
                .iter()
                .filter_map(|&(index, kind)| members.member_key(kind, &field(index))),
        );
        let is_protected = self.codes.iter().any(|&(index, kind)| {
            let value = field(index);
            !value.is_empty()
                && self
                    .protected
                    .matches(Effect::BlankDirectIdentifiers, kind, &value)
        });
        let mut added = 0;
        if is_protected || keys.iter().any(|k| members.is_protected(*k)) {
            for key in keys.iter() {
                added += u64::from(members.add_protected(*key));
            }
        }
        (is_protected, added)
    }
}

fn scan_rows(
    rows: &mut SourceRows<'_>,
    scanner: &RowScanner<'_>,
    members: &mut WithheldMembers,
    control: &JobControl,
) -> Result<Scanned, ExtractError> {
    let mut scanned = Scanned::default();
    let mut record = csv::ByteRecord::new();
    let mut keys = Vec::new();
    let mut seen = 0u64;
    while let Some(read) = rows.next(&mut record)? {
        if read.is_ok() {
            let (protected, added) = scanner.scan(&record, members, &mut keys);
            scanned.protected_rows += u64::from(protected);
            scanned.added += added;
        }
        seen += 1;
        if seen.is_multiple_of(65_536) && control.is_cancelled() {
            return Err(ExtractError::Cancelled);
        }
    }
    Ok(scanned)
}

/// A plain (uncompressed) file large enough to be worth reading in parts, and how many: the
/// first pass then runs on every core while nothing else does.
fn parallel_parts(source: &SourceLocation, first_pass: bool) -> Option<(PathBuf, usize)> {
    let SourceLocation::Path(path) = source else {
        return None;
    };
    let cores = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(4);
    let size = std::fs::metadata(path).ok()?.len();
    let plain = Compression::from_name(&source.name()) == Compression::None;
    (first_pass && plain && cores > 1 && size >= PARALLEL_MIN_BYTES).then(|| (path.clone(), cores))
}

/// Reads a plain CSV file in `parts` byte ranges at once, each starting after a line end. A
/// line end may lie inside a quoted field, so each part but the last reports where its last
/// record really ended; a part whose guessed start is not there is read again from there,
/// so the result is exactly that of one reader.
fn scan_in_parts(
    path: &Path,
    parts: usize,
    scanner: &RowScanner<'_>,
    members: &mut WithheldMembers,
    control: &JobControl,
) -> Result<Scanned, ExtractError> {
    let io = |error| ExtractError::Source {
        source_name: path.display().to_string(),
        error,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    let mut starts = vec![0u64];
    for k in 1..parts {
        let start = line_start_after(path, size * k as u64 / parts as u64).map_err(io)?;
        if start <= *starts.last().unwrap_or(&0) || start >= size {
            // Too few lines to split: one reader.
            return scan_range(path, 0, None, scanner, members, control)
                .map(|(scanned, _, _)| scanned);
        }
        starts.push(start);
    }
    let ends: Vec<Option<u64>> = starts
        .iter()
        .skip(1)
        .map(|s| Some(*s))
        .chain([None])
        .collect();
    let results: Vec<Result<(Scanned, u64, WithheldMembers), ExtractError>> =
        std::thread::scope(|scope| {
            let base: &WithheldMembers = members;
            let handles: Vec<_> = starts
                .iter()
                .zip(&ends)
                .map(|(&start, &end)| {
                    scope.spawn(move || {
                        let mut local = base.clone();
                        let fast = scan_range_fast(path, start, end, scanner, &mut local, control)?;
                        let (scanned, stop) = match fast {
                            Some((scanned, stop, _)) => (scanned, stop),
                            None => {
                                // The fast reader could not vouch for a record: what it
                                // recorded is dropped and the exact reader reads the part.
                                local = base.clone();
                                let exact =
                                    scan_range(path, start, end, scanner, &mut local, control)?;
                                (exact.0, exact.1)
                            }
                        };
                        Ok((scanned, stop, local))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(ExtractError::StageLost("protected-member pass")))
                })
                .collect()
        });
    let mut total = Scanned::default();
    for (k, result) in results.into_iter().enumerate() {
        let (scanned, stop, local) = result?;
        total.protected_rows += scanned.protected_rows;
        for key in local.protected_keys() {
            total.added += u64::from(members.add_protected(key));
        }
        if let Some(expected) = ends[k] {
            if stop != expected {
                // The guessed start of the next part was inside a quoted field: read from the
                // true record boundary to the end with one reader instead.
                let (rest, _, _) = scan_range(path, stop, None, scanner, members, control)?;
                total.protected_rows += rest.protected_rows;
                total.added += rest.added;
                return Ok(total);
            }
        }
    }
    Ok(total)
}

/// The offset just after the first line end at or after `offset - 1`.
fn line_start_after(path: &Path, offset: u64) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let from = offset.saturating_sub(1);
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::new(file);
    let mut skipped = Vec::new();
    let n = reader.read_until(b'\n', &mut skipped)?;
    Ok(from + n as u64)
}

/// The file at `path`, positioned at `offset`.
fn open_at(path: &Path, offset: u64) -> Result<std::fs::File, ExtractError> {
    let io = |error| ExtractError::Source {
        source_name: path.display().to_string(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    Ok(file)
}

/// [`scan_range`] with a SIMD CSV reader (`simd-csv`) that splits records and unquotes only
/// the fields the pass reads: about twice as fast as the exact reader. The two agree on CSV
/// whose quoting is well formed; on a record the fast reader cannot vouch for (see
/// [`vouched`]) it returns `None`, and the caller reads the range again with the exact reader.
/// (Should the two still disagree, the transform records any protected row whose member the
/// pass missed, and the job writes the files again; see `transform_stage`.)
fn scan_range_fast(
    path: &Path,
    start: u64,
    end: Option<u64>,
    scanner: &RowScanner<'_>,
    members: &mut WithheldMembers,
    control: &JobControl,
) -> Result<Option<(Scanned, u64, bool)>, ExtractError> {
    let file = open_at(path, start)?;
    // Without headers: the header, read by this reader's rules, must be vouched for too (a
    // quote inside it would otherwise swallow the rows after it unseen).
    let mut reader = simd_csv::ZeroCopyReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    if start == 0 {
        match reader.read_byte_record() {
            Ok(Some(header)) if vouched(&header, scanner.width) => {}
            _ => return Ok(None),
        }
    }
    let mut scanned = Scanned::default();
    let mut keys = Vec::new();
    let mut seen = 0u64;
    loop {
        // Before the record (and any blank lines ahead of it), relative to `start`.
        let record_start = start + reader.position();
        let record = match reader.read_byte_record() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Some((scanned, start + reader.position(), true))),
            Err(_) => return Ok(None),
        };
        if end.is_some_and(|end| record_start >= end) {
            return Ok(Some((scanned, record_start, false)));
        }
        if !vouched(&record, scanner.width) {
            return Ok(None);
        }
        let (protected, added) = scanner.scan_fields(
            |index| record.unescape(index).unwrap_or_default(),
            members,
            &mut keys,
        );
        scanned.protected_rows += u64::from(protected);
        scanned.added += added;
        seen += 1;
        if seen.is_multiple_of(65_536) && control.is_cancelled() {
            return Err(ExtractError::Cancelled);
        }
    }
}

/// Scans the records that start in `[start, end)` (to the end of the file without `end`;
/// the header when `start` is 0). Returns what it found, the offset where the first record
/// at or after `end` starts (the file's size without one), and whether it reached the end.
fn scan_range(
    path: &Path,
    start: u64,
    end: Option<u64>,
    scanner: &RowScanner<'_>,
    members: &mut WithheldMembers,
    control: &JobControl,
) -> Result<(Scanned, u64, bool), ExtractError> {
    let name = path.display().to_string();
    let file = open_at(path, start)?;
    // Flexible: a reader started inside the file would otherwise take the first record's
    // width for the file's, and skip every well-formed row after a malformed first one.
    // Rows of another width than the header's are left to the transform by `scan`.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(start == 0)
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(BufReader::with_capacity(256 * 1024, file));
    if start == 0 {
        reader
            .headers()
            .map_err(|e| super::pipeline::csv_error(&name, e))?;
    }
    let mut scanned = Scanned::default();
    let mut record = csv::ByteRecord::new();
    let mut keys = Vec::new();
    let mut seen = 0u64;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| super::pipeline::csv_error(&name, e))?;
        if !more {
            return Ok((scanned, start + reader.position().byte(), true));
        }
        let record_start = start + record.position().map_or(0, csv::Position::byte);
        if end.is_some_and(|end| record_start >= end) {
            return Ok((scanned, record_start, false));
        }
        let (protected, added) = scanner.scan(&record, members, &mut keys);
        scanned.protected_rows += u64::from(protected);
        scanned.added += added;
        seen += 1;
        if seen.is_multiple_of(65_536) && control.is_cancelled() {
            return Err(ExtractError::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::{OptOutHasher, OptOutSet};

    const CODES: &str = "[[category]]\nid = \"hiv\"\neffect = \"blank_direct_identifiers\"\nsource = \"test\"\n[category.codes]\ndiagnosis = [\"B20\"]\n";

    fn members() -> WithheldMembers {
        WithheldMembers::from(OptOutSet::new(
            OptOutHasher::new(&[7u8; 32]).expect("hasher"),
            [],
        ))
    }

    /// Rows: (member, protected, note with line ends and quotes in it, or not).
    fn write(path: &Path, rows: &[(u8, bool, Option<String>)]) {
        let mut writer = csv::Writer::from_path(path).expect("create");
        writer
            .write_record(["member_id", "note", "diagnosis"])
            .expect("header");
        for (member, protected, note) in rows {
            let id = format!("M{member}");
            let note = note.clone().unwrap_or_default();
            let dx = if *protected { "B20" } else { "I10" };
            writer.write_record([id.as_str(), &note, dx]).expect("row");
        }
        writer.flush().expect("flush");
    }

    fn protected() -> ProtectedCategories {
        ProtectedCategories::parse("codes.toml", CODES).expect("codes")
    }

    /// The scanner of the test files: `member_id,note,diagnosis`.
    fn scanner(protected: &ProtectedCategories) -> RowScanner<'_> {
        RowScanner {
            codes: vec![(2, CodeKind::Diagnosis)],
            subjects: vec![(0, SubjectKey::MemberId)],
            protected,
            width: 3,
        }
    }

    fn keys(members: &WithheldMembers) -> BTreeSet<MemberKey> {
        members.protected_keys().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Reading in parts finds exactly what one reader finds, wherever the guessed part
        /// starts fall (inside quoted fields with line ends included).
        #[test]
        fn parts_find_what_one_reader_finds(
            rows in prop::collection::vec(
                (0u8..20, prop::bool::weighted(0.2), prop::option::of("[a-z\n\",]{0,40}")),
                1..80,
            ),
            parts in 2usize..5,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("claims.csv");
            write(&path, &rows);
            let protected = protected();
            let scanner = scanner(&protected);
            let control = JobControl::default();
            // Clones share the hashing key, so their recorded keys compare.
            let empty = members();
            let mut one = empty.clone();
            let (single, _, _) = scan_range(&path, 0, None, &scanner, &mut one, &control)
                .expect("one reader");
            let mut parted = empty.clone();
            let found = scan_in_parts(&path, parts, &scanner, &mut parted, &control)
                .expect("in parts");
            prop_assert_eq!(found.protected_rows, single.protected_rows);
            prop_assert_eq!(found.protected_rows, rows.iter().filter(|r| r.1).count() as u64);
            prop_assert_eq!(keys(&parted), keys(&one));
            let expected: BTreeSet<MemberKey> = rows
                .iter()
                .filter(|r| r.1)
                .filter_map(|r| empty.member_key(SubjectKey::MemberId, format!("M{}", r.0).as_bytes()))
                .collect();
            prop_assert_eq!(keys(&one), expected);
        }

        /// On any bytes at all (quotes inside unquoted fields, text after a closing quote,
        /// bare CR line ends, rows of the wrong width), the fast reader, handing back what it
        /// cannot vouch for, finds what the exact reader finds.
        #[test]
        fn the_fast_reader_finds_what_the_exact_one_finds_on_any_bytes(
            rows in prop::collection::vec(
                (0u8..20, prop::bool::weighted(0.3), "[a-z,\"\r\n]{0,12}"),
                1..120,
            ),
            parts in 1usize..5,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("claims.csv");
            let mut text = b"member_id,note,diagnosis\n".to_vec();
            for (member, protected, note) in &rows {
                let dx = if *protected { "B20" } else { "I10" };
                text.extend_from_slice(format!("M{member},{note},{dx}\n").as_bytes());
            }
            std::fs::write(&path, &text).expect("write");
            let protected = protected();
            let scanner = scanner(&protected);
            let control = JobControl::default();
            let empty = members();
            let mut exact = empty.clone();
            let (single, _, _) = scan_range(&path, 0, None, &scanner, &mut exact, &control)
                .expect("exact reader");
            let mut fast = empty.clone();
            let found = if parts == 1 {
                match scan_range_fast(&path, 0, None, &scanner, &mut fast, &control)
                    .expect("fast reader")
                {
                    Some((found, _, _)) => found,
                    None => {
                        fast = empty.clone();
                        scan_range(&path, 0, None, &scanner, &mut fast, &control)
                            .expect("exact reader")
                            .0
                    }
                }
            } else {
                scan_in_parts(&path, parts, &scanner, &mut fast, &control).expect("in parts")
            };
            prop_assert_eq!(found.protected_rows, single.protected_rows);
            prop_assert_eq!(keys(&fast), keys(&exact));
        }
    }

    #[test]
    fn the_fast_reader_vouches_only_for_well_formed_quoting() {
        let vouch = |line: &[u8], width| {
            let mut reader = simd_csv::ZeroCopyReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(line);
            let record = reader.read_byte_record().expect("read").expect("a record");
            vouched(&record, width)
        };
        assert!(vouch(b"M1,plain,B20\n", 3));
        assert!(vouch(b"M1,\"a, \"\"quoted\"\"\nnote\",B20\n", 3));
        assert!(vouch(b"M1,note,B20\r\n", 3));
        assert!(!vouch(b"M1,note,B20\n", 2), "another width");
        assert!(
            !vouch(b"M1,5'10\",B20\n", 3),
            "a quote inside an unquoted field"
        );
        assert!(
            !vouch(b"M1,\"a\"b,B20\n", 3),
            "text after the closing quote"
        );
        assert!(
            !vouch(b"M1,\"a\"b\",B20\n", 3),
            "a lone quote inside quotes"
        );
        assert!(!vouch(b"M1,a\rb,B20\n", 3), "a bare CR");
    }

    #[test]
    fn a_header_the_fast_reader_cannot_vouch_for_hands_the_file_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("claims.csv");
        std::fs::write(&path, "member_id,height\",diagnosis\nM1,x,B20\nM2,y,I10\n").expect("write");
        let protected = protected();
        let scanner = scanner(&protected);
        let control = JobControl::default();
        let mut fast = members();
        let scanned = scan_range_fast(&path, 0, None, &scanner, &mut fast, &control).expect("read");
        assert!(
            scanned.is_none(),
            "the quote in the header is not vouched for"
        );
        let mut exact = members();
        let (found, _, _) =
            scan_range(&path, 0, None, &scanner, &mut exact, &control).expect("exact reader");
        assert_eq!(found.protected_rows, 1);
    }
}
