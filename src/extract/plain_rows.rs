//! A plain local CSV file read with the SIMD reader (`simd-csv`), which splits records faster
//! than the exact reader (`csv`) and hands out fields as slices of the file's own text, for as
//! long as it can vouch that the exact reader would read the same record: the same fields,
//! starting on the same line. At the first record it cannot vouch for it says how many records
//! came before, and the caller reads the rest of the file with the exact reader; so a record is
//! always read as the exact reader reads it, and an error names the file's line either way.
//!
//! The two readers split well-formed quoting alike (see [`vouched`]), and a CR inside quotes is
//! data to both. They differ on blank lines, which the SIMD reader skips without counting. So
//! the file is watched as it is read, and the offset of the first LF or CR right after a LF
//! (the start of a blank line, or a quoted value's) ends what is vouched for: a file without
//! blank lines is read fast to its end, whether its rows end in LF or CRLF. The differential
//! property test `extract_readers` holds the two to the same extract on arbitrary bytes.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use simd_csv::ZeroCopyByteRecord;

use super::pipeline::JobControl;
use super::ExtractError;
use crate::policy::{RowBytes, SourceRecord};

/// What [`PlainRows::next`] read.
pub(crate) enum PlainRow<'r> {
    /// A record whose fields are slices of the file's text.
    Plain(PlainRecord<'r>),
    /// A record with a doubled quote, unquoted into an exact record (its position set).
    Quoted(&'r csv::ByteRecord),
    /// The record after the first `read` cannot be vouched for: it and the rest are the
    /// exact reader's.
    Unvouched { read: u64 },
    /// The file ended.
    End,
}

/// One record whose fields are slices of the file's text: each unquoted, or quoted whole with
/// no quote inside (see [`vouched`]), so that its value is the text between the quotes.
pub(crate) struct PlainRecord<'r> {
    record: ZeroCopyByteRecord<'r>,
    line: u64,
    /// Whether any field is quoted. If none is, no field holds a comma, quote, CR or LF.
    quoted: bool,
}

impl SourceRecord for PlainRecord<'_> {
    fn len(&self) -> usize {
        self.record.len()
    }

    fn field(&self, index: usize) -> &[u8] {
        let field = if self.quoted {
            self.record.unquote(index)
        } else {
            self.record.get(index)
        };
        field.unwrap_or_default()
    }

    fn line(&self) -> u64 {
        self.line
    }

    fn bytes(&self) -> RowBytes<'_> {
        if self.quoted {
            RowBytes::Fields(self.record.as_slice())
        } else {
            RowBytes::Plain(self.record.as_slice())
        }
    }

    fn raw_fields(&self, first: usize, count: usize) -> Option<&[u8]> {
        let text = self.record.as_slice();
        let base = text.as_ptr() as usize;
        let head = self.record.get(first)?;
        let last = self.record.get(first + count.checked_sub(1)?)?;
        let start = head.as_ptr() as usize - base;
        let end = last.as_ptr() as usize - base + last.len();
        let raw = text.get(start..end)?;
        // Without quotes, no field of the run holds a comma, CR or LF (see `vouched`).
        (!self.quoted || memchr::memchr(b'"', raw).is_none()).then_some(raw)
    }
}

/// The rows of a plain local file after its header, while the SIMD reader vouches for them.
pub(crate) struct PlainRows<'a> {
    reader: simd_csv::ZeroCopyReader<Watched<'a>>,
    /// The file offset where the reader starts (the header's end).
    start: u64,
    /// The file offset of the first blank line at or after `start` (`u64::MAX` while none
    /// was read).
    irregular: Rc<Cell<u64>>,
    /// The line the next record starts on.
    line: u64,
    /// Records handed out so far.
    read: u64,
    width: usize,
    quoted: csv::ByteRecord,
}

impl<'a> PlainRows<'a> {
    /// Reads `file` (named `name`) from `start`, the end of its header, for records of
    /// `width` fields, the first starting on `line`. Bytes read are counted in `control`'s
    /// progress.
    pub fn open(
        mut file: std::fs::File,
        name: &str,
        start: u64,
        line: u64,
        width: usize,
        control: &'a JobControl,
    ) -> Result<PlainRows<'a>, ExtractError> {
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).map_err(|error| {
            ExtractError::Source {
                source_name: name.to_owned(),
                error,
            }
        })?;
        let irregular = Rc::new(Cell::new(u64::MAX));
        let watched = Watched {
            file,
            offset: start,
            // The header's LF: a LF right at `start` is a blank line.
            last: b'\n',
            at_start: true,
            irregular: irregular.clone(),
            control,
        };
        let reader = simd_csv::ZeroCopyReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(watched);
        Ok(PlainRows {
            reader,
            start,
            irregular,
            line,
            read: 0,
            width,
            quoted: csv::ByteRecord::new(),
        })
    }

    /// The next record, or where the exact reader must take over.
    pub fn next(&mut self) -> PlainRow<'_> {
        let offset = self.start + self.reader.position();
        let record = match self.reader.read_byte_record() {
            Ok(Some(record)) => record,
            // Only blank lines can follow the last record, and the exact reader skips them too.
            Ok(None) => return PlainRow::End,
            Err(_) => return PlainRow::Unvouched { read: self.read },
        };
        let text = record.as_slice();
        // A blank line before the record starts at `offset`, one inside it before its end.
        if self.irregular.get() <= offset + text.len() as u64 || record.len() != self.width {
            return PlainRow::Unvouched { read: self.read };
        }
        let line = self.line;
        // Most records hold neither quote nor CR: then nothing more needs a look.
        if memchr::memchr2(b'"', b'\r', text).is_none() {
            self.read += 1;
            self.line += 1;
            return PlainRow::Plain(PlainRecord {
                record,
                line,
                quoted: false,
            });
        }
        if !vouched(&record, self.width) {
            return PlainRow::Unvouched { read: self.read };
        }
        self.read += 1;
        self.line += 1 + memchr::memchr_iter(b'\n', text).count() as u64;
        if memchr::memmem::find(text, b"\"\"").is_none() {
            return PlainRow::Plain(PlainRecord {
                record,
                line,
                quoted: true,
            });
        }
        self.quoted.clear();
        for index in 0..record.len() {
            self.quoted
                .push_field(&record.unescape(index).unwrap_or_default());
        }
        let mut position = csv::Position::new();
        position.set_byte(offset).set_line(line);
        self.quoted.set_position(Some(position));
        PlainRow::Quoted(&self.quoted)
    }
}

/// The file under the SIMD reader: counts the bytes read for progress, and notes the offset
/// of the first blank line: a LF or CR right after a LF.
struct Watched<'a> {
    file: std::fs::File,
    /// File offset of the next byte read.
    offset: u64,
    /// The byte before it.
    last: u8,
    /// Whether nothing was read yet: the SIMD reader drops a byte-order mark at its start,
    /// which after a header is data to the exact reader.
    at_start: bool,
    irregular: Rc<Cell<u64>>,
    control: &'a JobControl,
}

impl Read for Watched<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let read = &buf[..n];
        if std::mem::take(&mut self.at_start) && b"\xEF\xBB\xBF".starts_with(&read[..n.min(3)]) {
            self.irregular.set(self.offset);
        }
        if n > 0 && self.irregular.get() == u64::MAX {
            let blank = if self.last == b'\n' && matches!(read[0], b'\n' | b'\r') {
                Some(0)
            } else {
                let after_lf = |pair: &[u8]| memchr::memmem::find(read, pair).map(|at| at + 1);
                match (after_lf(b"\n\n"), after_lf(b"\n\r")) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            if let Some(at) = blank {
                self.irregular.set(self.offset + at as u64);
            }
            self.last = read[n - 1];
        }
        self.offset += n as u64;
        self.control.count_read(n as u64);
        Ok(n)
    }
}

/// Whether the SIMD reader's split of `record` is the exact reader's: the header's number of
/// fields, and each field either free of quotes and CR or quoted whole (opening and closing
/// quote, inner quotes doubled). A quote inside an unquoted field, text after a closing quote
/// or a bare CR (a line end to the exact reader) are read differently by the two.
pub(super) fn vouched(record: &ZeroCopyByteRecord<'_>, width: usize) -> bool {
    if record.len() != width {
        return false;
    }
    // Only the fields holding a quote or CR need a look: found in one pass over the record.
    let raw = record.as_slice();
    let mut specials = memchr::memchr2_iter(b'"', b'\r', raw).peekable();
    if specials.peek().is_none() {
        return true;
    }
    let base = raw.as_ptr() as usize;
    for field in record.iter() {
        let end = field.as_ptr() as usize - base + field.len();
        if specials.peek().is_some_and(|&at| at < end) {
            if !plain_or_quoted_whole(field) {
                return false;
            }
            while specials.next_if(|&at| at < end).is_some() {}
            if specials.peek().is_none() {
                return true;
            }
        }
    }
    true
}

fn plain_or_quoted_whole(field: &[u8]) -> bool {
    let [b'"', inner @ .., b'"'] = field else {
        return memchr::memchr2(b'"', b'\r', field).is_none();
    };
    let mut rest = inner;
    while let Some(at) = memchr::memchr(b'"', rest) {
        if rest.get(at + 1) != Some(&b'"') {
            return false;
        }
        rest = &rest[at + 2..];
    }
    true
}
