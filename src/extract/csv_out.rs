//! The transform's output: CSV rows written straight into the plaintext chunks the seal stage
//! compresses, each chunk ending on a row boundary.
//!
//! The bytes are exactly what `csv::Writer` writes with its defaults (comma, `\n` terminator,
//! quotes only where needed, `"` doubled inside quotes, a lone empty field written as `""`);
//! a property test holds the two to the same output. It is written here rather than through
//! `csv::Writer` because that writer's general per-field machinery (incremental output, quote
//! state, style dispatch) was a sixth of the transform thread, the pipeline's busiest; this
//! one finds the bytes that need quoting once per source record and appends to a plain buffer.
//!
//! Replacement ids are written in a second stage: the transform leaves each id's place in the
//! chunk and notes the value, and [`write_ids`], on a thread of its own, computes the ids (an
//! HMAC each, a quarter of the transform thread's work on the Level III benchmark) and writes
//! them in before the chunk goes to the hash and seal stages.

use std::sync::mpsc::{Receiver, SyncSender};

use bytes::Bytes;

use super::seal::PlainChunk;
use super::ExtractError;
use crate::policy::linkage::REPLACEMENT_ID_LEN;
use crate::policy::{ReplacementIds, RowBytes, RowSink};

/// Whether `bytes` hold a byte that makes a CSV field need quotes: comma, quote, CR or LF.
fn needs_quotes(bytes: &[u8]) -> bool {
    if bytes.len() > 64 {
        return memchr::memchr3(b',', b'"', b'\n', bytes).is_some()
            || memchr::memchr(b'\r', bytes).is_some();
    }
    // A branch-free pass over a short field vectorizes and beats a call.
    bytes.iter().fold(false, |any, &b| {
        any | matches!(b, b',' | b'"' | b'\r' | b'\n')
    })
}

/// Appends `value` as one CSV field, quoted when it holds a comma, a quote, CR or LF.
#[inline]
fn push_field(out: &mut Vec<u8>, value: &[u8]) {
    if !needs_quotes(value) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    let mut parts = value.split(|&b| b == b'"');
    if let Some(first) = parts.next() {
        out.extend_from_slice(first);
    }
    for part in parts {
        out.extend_from_slice(b"\"\"");
        out.extend_from_slice(part);
    }
    out.push(b'"');
}

/// Ends a row that began at `row_start`. A row of no bytes (one empty field) is written as
/// `""`, since an empty line would read back as no row at all.
fn end_row(out: &mut Vec<u8>, row_start: usize) {
    if out.len() == row_start {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// What the transform sends the id stage: the plan's replacement-id slots, chunks of rows,
/// then an explicit end. A channel that closes without `End` means the transform failed.
pub enum RowChunk {
    /// First: the slots (and key) of the plan as bound to the source's header.
    Start(ReplacementIds),
    /// CSV rows, ending on a row boundary, with the replacement ids still to be written.
    Data(Vec<u8>, DeferredIds),
    /// The transform finished successfully.
    End,
}

/// Longest value whose id is left to the id stage (identifiers are far shorter); a longer one
/// is computed by the transform, so that what a chunk notes stays within about three times its
/// own size.
const DEFERRED_VALUE_MAX: usize = 64;

/// The replacement ids of a chunk still to be written: for each, where its place starts in
/// the chunk, its slot in the plan's [`ReplacementIds`], and its source value.
#[derive(Default)]
pub struct DeferredIds {
    /// (offset of the place, slot, end of the value in `values`), in the chunk's order.
    places: Vec<(usize, usize, usize)>,
    values: Vec<u8>,
}

/// Counts only: the values are source identifiers.
impl std::fmt::Debug for DeferredIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeferredIds({} ids)", self.places.len())
    }
}

impl DeferredIds {
    fn push(&mut self, at: usize, slot: usize, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.places.push((at, slot, self.values.len()));
    }

    /// Forgets the ids whose places start at or after `at` (a discarded row's).
    fn truncate(&mut self, at: usize) {
        let keep = self.places.partition_point(|&(place, _, _)| place < at);
        self.places.truncate(keep);
        self.values
            .truncate(self.places.last().map_or(0, |&(_, _, end)| end));
    }
}

/// The id stage: writes each chunk's replacement ids into their places, in row order (its
/// memory of recent values, like the transform's, only ever spares an HMAC), and sends the
/// chunk to the hash and seal stages; after the transform's `End` sends `End`.
pub fn write_ids(
    rows: Receiver<RowChunk>,
    outputs: Vec<SyncSender<PlainChunk>>,
) -> Result<(), ExtractError> {
    let mut ids = match rows.recv() {
        Ok(RowChunk::Start(ids)) => ids,
        Ok(_) => return Err(ExtractError::StageLost("ids")),
        Err(_) => return Err(ExtractError::StageStopped("transform")),
    };
    loop {
        let item = match rows.recv() {
            Ok(RowChunk::Data(mut chunk, deferred)) => {
                let mut start = 0;
                for &(at, slot, end) in &deferred.places {
                    let value = &deferred.values[start..end];
                    start = end;
                    // The transform left a place only where the value has an id.
                    let (Some(place), Some(id)) = (
                        chunk.get_mut(at..at + REPLACEMENT_ID_LEN),
                        ids.id(slot, value),
                    ) else {
                        return Err(ExtractError::StageLost("ids"));
                    };
                    place.copy_from_slice(&id);
                }
                PlainChunk::Data(Bytes::from(chunk))
            }
            Ok(RowChunk::End) => PlainChunk::End,
            Ok(RowChunk::Start(_)) => return Err(ExtractError::StageLost("ids")),
            Err(_) => return Err(ExtractError::StageStopped("transform")),
        };
        let end = matches!(item, PlainChunk::End);
        for output in &outputs {
            output
                .send(item.clone())
                .map_err(|_| ExtractError::StageStopped("hash or seal"))?;
        }
        if end {
            return Ok(());
        }
    }
}

/// CSV rows into chunks of about `chunk_size` bytes, each ending on a row boundary, sent to
/// the id stage ([`write_ids`]).
pub struct CsvChunks {
    chunk: Vec<u8>,
    ids: DeferredIds,
    chunk_size: usize,
    row_start: usize,
    fields_in_row: usize,
    /// The current row's source bytes (address range) and the offsets in them of bytes that
    /// need quoting, found in one pass per row: a kept field is then copied without looking
    /// at its bytes unless one of those offsets falls inside it.
    source: std::ops::Range<usize>,
    specials: Vec<usize>,
    output: SyncSender<RowChunk>,
}

impl CsvChunks {
    /// Rows are sent to `output` (the id stage), first the slots of `ids`, then in chunks of at
    /// least `chunk_size` bytes (the last may be smaller).
    pub fn start(
        chunk_size: usize,
        ids: ReplacementIds,
        output: SyncSender<RowChunk>,
    ) -> Result<Self, ExtractError> {
        let chunks = Self {
            chunk: Self::empty_chunk(chunk_size),
            ids: DeferredIds::default(),
            chunk_size,
            row_start: 0,
            fields_in_row: 0,
            source: 0..0,
            specials: Vec::new(),
            output,
        };
        chunks.send(RowChunk::Start(ids))?;
        Ok(chunks)
    }

    fn empty_chunk(chunk_size: usize) -> Vec<u8> {
        // Room for the last row that crosses the size, so a chunk is rarely reallocated.
        Vec::with_capacity(chunk_size + 64 * 1024)
    }

    /// Writes one row of plain fields (the header).
    pub fn write_row<'a>(
        &mut self,
        fields: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), ExtractError> {
        self.start_row();
        for field in fields {
            RowSink::field(self, field)?;
        }
        RowSink::end_row(self)
    }

    fn start_row(&mut self) {
        self.row_start = self.chunk.len();
        self.fields_in_row = 0;
        self.source = 0..0;
        self.specials.clear();
    }

    /// Whether `value`, a slice of the current row's source, is known to need no quotes.
    fn known_plain(&self, value: &[u8]) -> bool {
        let start = value.as_ptr() as usize;
        let end = start + value.len();
        // Anything not inside the source (which the caller promised) takes the general path.
        if !(self.source.start <= start && end <= self.source.end) {
            return false;
        }
        let (start, end) = (start - self.source.start, end - self.source.start);
        let next = self.specials.partition_point(|&at| at < start);
        self.specials.get(next).is_none_or(|&at| at >= end)
    }

    fn separate(&mut self) {
        if self.fields_in_row > 0 {
            self.chunk.push(b',');
        }
        self.fields_in_row += 1;
    }

    fn send_chunk(&mut self) -> Result<(), ExtractError> {
        let chunk = std::mem::replace(&mut self.chunk, Self::empty_chunk(self.chunk_size));
        let ids = std::mem::take(&mut self.ids);
        self.send(RowChunk::Data(chunk, ids))
    }

    fn send(&self, item: RowChunk) -> Result<(), ExtractError> {
        self.output
            .send(item)
            .map_err(|_| ExtractError::StageStopped("ids"))
    }

    /// Sends the last rows and the explicit end; only a complete transform gets here.
    pub fn finish(mut self) -> Result<(), ExtractError> {
        if !self.chunk.is_empty() {
            self.send_chunk()?;
        }
        self.send(RowChunk::End)
    }
}

impl RowSink for CsvChunks {
    type Error = ExtractError;

    fn begin_row(&mut self, source: RowBytes<'_>) {
        self.start_row();
        let bytes = match source {
            RowBytes::Fields(bytes) | RowBytes::Plain(bytes) => bytes,
        };
        let start = bytes.as_ptr() as usize;
        self.source = start..start + bytes.len();
        if let RowBytes::Fields(bytes) = source {
            self.specials
                .extend(memchr::memchr3_iter(b',', b'"', b'\n', bytes));
            if memchr::memchr(b'\r', bytes).is_some() {
                self.specials.extend(memchr::memchr_iter(b'\r', bytes));
                self.specials.sort_unstable();
            }
        }
    }

    #[inline]
    fn field(&mut self, value: &[u8]) -> Result<(), ExtractError> {
        self.separate();
        push_field(&mut self.chunk, value);
        Ok(())
    }

    #[inline]
    fn source_field(&mut self, value: &[u8]) -> Result<(), ExtractError> {
        if !self.known_plain(value) {
            return self.field(value);
        }
        self.separate();
        self.chunk.extend_from_slice(value);
        Ok(())
    }

    fn source_fields(&mut self, raw: &[u8]) -> Result<(), ExtractError> {
        self.separate();
        self.chunk.extend_from_slice(raw);
        Ok(())
    }

    fn discard_row(&mut self) {
        // A row is sent only once ended, so what was written of it is all in this chunk.
        self.chunk.truncate(self.row_start);
        self.ids.truncate(self.row_start);
        self.fields_in_row = 0;
    }

    fn replacement_id(
        &mut self,
        ids: &mut ReplacementIds,
        slot: usize,
        value: &[u8],
    ) -> Result<(), ExtractError> {
        self.separate();
        // An id is hex digits, which never need quotes: it, or its place, is written as is.
        if value.len() > DEFERRED_VALUE_MAX {
            if let Some(id) = ids.id(slot, value) {
                self.chunk.extend_from_slice(&id);
            }
        } else if ids.has_id(slot, value) {
            self.ids.push(self.chunk.len(), slot, value);
            self.chunk.extend_from_slice(&[b'0'; REPLACEMENT_ID_LEN]);
        }
        Ok(())
    }

    fn end_row(&mut self) -> Result<(), ExtractError> {
        end_row(&mut self.chunk, self.row_start);
        if self.chunk.len() >= self.chunk_size {
            self.send_chunk()?;
        }
        // Until the next row begins, a row is discarded from here: one refused before it began
        // (wrong width, an unreadable filter value, a malformed record) takes nothing with it.
        self.row_start = self.chunk.len();
        self.fields_in_row = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::LinkageKey;

    fn key() -> LinkageKey {
        LinkageKey::derive(&[7u8; 32], "org-a").expect("key")
    }

    /// What `write` sent, through the id stage (run here once it finished): the chunks.
    fn through_id_stage(
        write: impl FnOnce(&mut CsvChunks),
        chunk_size: usize,
        ids: ReplacementIds,
    ) -> Vec<Bytes> {
        let (tx, rows) = sync_channel(1024);
        let mut out = CsvChunks::start(chunk_size, ids, tx).expect("start");
        write(&mut out);
        out.finish().expect("finish");
        let (plain_tx, rx) = sync_channel(1024);
        write_ids(rows, vec![plain_tx]).expect("ids written");
        let mut chunks = Vec::new();
        loop {
            match rx.recv().expect("End is sent") {
                PlainChunk::Data(chunk) => chunks.push(chunk),
                PlainChunk::End => return chunks,
            }
        }
    }

    /// Writes `rows` through `CsvChunks` with a small chunk size; returns the chunks.
    fn write_chunks(rows: &[Vec<Vec<u8>>], chunk_size: usize) -> Vec<Bytes> {
        let write = |out: &mut CsvChunks| {
            for row in rows {
                out.write_row(row.iter().map(Vec::as_slice)).expect("write");
            }
        };
        through_id_stage(write, chunk_size, ReplacementIds::new(key()))
    }

    /// Writes `rows` as the extract does: each row's fields as slices of its source record.
    fn write_source_rows(rows: &[Vec<Vec<u8>>], chunk_size: usize) -> Vec<u8> {
        let write = |out: &mut CsvChunks| {
            for row in rows {
                let record = csv::ByteRecord::from(row.clone());
                out.begin_row(crate::policy::SourceRecord::bytes(&record));
                for field in &record {
                    out.source_field(field).expect("write");
                }
                out.end_row().expect("write");
            }
        };
        through_id_stage(write, chunk_size, ReplacementIds::new(key())).concat()
    }

    /// A row of the deferred-id test: its fields, each a replacement id (in slot 0, 1 or 2) or
    /// a plain value, and whether the row is discarded after it was written.
    type IdRow = (Vec<(Option<usize>, Vec<u8>)>, bool);

    fn id_rows() -> impl Strategy<Value = Vec<IdRow>> {
        let value = prop_oneof![
            // Few distinct values, so that recent ones repeat within and across rows.
            prop::sample::select(vec![
                b"M1".to_vec(),
                b" 123-45-6789 ".to_vec(),
                b"123456789".to_vec(),
                b"no digits".to_vec(),
                b" ".to_vec(),
                Vec::new(),
                // Longer than any deferred value: computed by the transform.
                [b"9".repeat(40), b"-".to_vec(), b"9".repeat(40)].concat(),
            ]),
            field(),
        ];
        let cell = (prop::option::of(0usize..3), value);
        prop::collection::vec((prop::collection::vec(cell, 1..5), any::<bool>()), 0..24)
    }

    fn id_slots(key: LinkageKey) -> ReplacementIds {
        let mut ids = ReplacementIds::new(key);
        for domain in ["ssn", "ssn", "member_id"] {
            ids.add_slot(domain);
        }
        ids
    }

    proptest! {
        /// Ids written later by the id stage give the bytes of ids written in place, across
        /// chunk boundaries and discarded rows.
        #[test]
        fn deferred_ids_are_the_ids_written_in_place(rows in id_rows(), chunk in 1usize..200) {
            let write = |out: &mut CsvChunks| {
                let mut ids = id_slots(key());
                for (cells, discard) in &rows {
                    out.begin_row(RowBytes::Fields(b""));
                    for (slot, value) in cells {
                        match slot {
                            Some(slot) => out.replacement_id(&mut ids, *slot, value),
                            None => out.field(value),
                        }
                        .expect("write");
                    }
                    if *discard {
                        out.discard_row();
                    } else {
                        out.end_row().expect("write");
                    }
                }
            };
            let deferred = through_id_stage(write, chunk, id_slots(key())).concat();
            // In place: each id computed as the row is written, by the sinks' default.
            let mut ids = id_slots(key());
            let mut expected = Vec::new();
            for (cells, _) in rows.iter().filter(|(_, discard)| !discard) {
                let mut record = csv::ByteRecord::new();
                for (slot, value) in cells {
                    match slot {
                        Some(slot) => record.replacement_id(&mut ids, *slot, value),
                        None => record.field(value),
                    }
                    .expect("write");
                }
                expected.push(record.iter().map(<[u8]>::to_vec).collect());
            }
            prop_assert_eq!(deferred, csv_writer_bytes(&expected));
        }
    }

    fn csv_writer_bytes(rows: &[Vec<Vec<u8>>]) -> Vec<u8> {
        // Flexible: the writing under test takes rows of any width, one after the other.
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        for row in rows {
            writer.write_record(row).expect("write");
        }
        writer.into_inner().expect("flush")
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        // Bias towards the bytes that matter to quoting.
        prop::collection::vec(
            prop_oneof![
                Just(b','),
                Just(b'"'),
                Just(b'\r'),
                Just(b'\n'),
                Just(b' '),
                any::<u8>()
            ],
            0..6,
        )
    }

    fn rows() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
        (1usize..5).prop_flat_map(|width| {
            prop::collection::vec(prop::collection::vec(field(), width), 0..20)
        })
    }

    proptest! {
        #[test]
        fn output_is_byte_for_byte_what_csv_writer_writes(rows in rows(), chunk in 1usize..64) {
            let chunks = write_chunks(&rows, chunk);
            prop_assert_eq!(chunks.concat(), csv_writer_bytes(&rows));
        }

        #[test]
        fn source_fields_are_written_as_csv_writer_writes_them(
            rows in rows(),
            long in prop::collection::vec(any::<u8>(), 60..200),
        ) {
            // Long fields take the whole-record check's other path.
            let mut rows = rows;
            if let Some(row) = rows.first_mut() {
                row[0] = long;
            }
            prop_assert_eq!(write_source_rows(&rows, 1 << 20), csv_writer_bytes(&rows));
        }

        #[test]
        fn chunks_end_on_row_boundaries(rows in rows(), chunk in 1usize..64) {
            let chunks = write_chunks(&rows, chunk);
            for piece in &chunks {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(piece.as_ref());
                let read: Vec<csv::ByteRecord> = reader
                    .byte_records()
                    .collect::<Result<_, _>>()
                    .expect("each chunk is whole CSV rows");
                prop_assert!(!read.is_empty());
                prop_assert!(piece.ends_with(b"\n"));
            }
            let read: usize = chunks
                .iter()
                .map(|piece| {
                    csv::ReaderBuilder::new()
                        .has_headers(false)
                        .from_reader(piece.as_ref())
                        .byte_records()
                        .count()
                })
                .sum();
            prop_assert_eq!(read, rows.len());
        }
    }

    #[test]
    fn quoting_examples() {
        let rows = vec![
            vec![b"plain".to_vec(), b"a,b".to_vec(), b"say \"hi\"".to_vec()],
            vec![b"".to_vec(), b"line\nbreak".to_vec(), b"cr\r".to_vec()],
            vec![b"".to_vec(), b"".to_vec(), b"".to_vec()],
        ];
        let chunks = write_chunks(&rows, 1 << 20);
        assert_eq!(
            chunks.concat(),
            b"plain,\"a,b\",\"say \"\"hi\"\"\"\n,\"line\nbreak\",\"cr\r\"\n,,\n".to_vec()
        );
        // A lone empty field must not become an empty line, which readers skip.
        let lone = write_chunks(&[vec![Vec::new()], vec![b"x".to_vec()]], 1 << 20);
        assert_eq!(lone.concat(), b"\"\"\nx\n".to_vec());
    }

    #[test]
    fn a_row_refused_before_it_began_discards_nothing_written() {
        let rows = vec![
            vec![b"header".to_vec()],
            vec![b"first".to_vec()],
            vec![b"second".to_vec()],
        ];
        for chunk_size in [1, 1 << 20] {
            let write = |out: &mut CsvChunks| {
                for row in &rows {
                    // As the transform does for a tolerated row refused before `begin_row`.
                    out.discard_row();
                    out.write_row(row.iter().map(Vec::as_slice)).expect("write");
                }
                out.discard_row();
            };
            let written = through_id_stage(write, chunk_size, ReplacementIds::new(key()));
            assert_eq!(written.concat(), b"header\nfirst\nsecond\n".to_vec());
        }
    }

    #[test]
    fn a_stopped_id_stage_is_reported() {
        let (tx, rx) = sync_channel(1);
        let mut out = CsvChunks::start(1, ReplacementIds::new(key()), tx).expect("start");
        drop(rx);
        let err = out
            .write_row([b"a".as_slice()])
            .expect_err("nobody receives");
        assert!(matches!(err, ExtractError::StageStopped("ids")), "{err}");
    }

    #[test]
    fn the_id_stage_sends_no_end_when_the_transform_stopped_without_one() {
        let (tx, rows) = sync_channel(4);
        let mut out = CsvChunks::start(1, ReplacementIds::new(key()), tx).expect("start");
        out.write_row([b"a".as_slice()]).expect("write");
        drop(out);
        let (plain_tx, rx) = sync_channel(4);
        let err = write_ids(rows, vec![plain_tx]).expect_err("no End from the transform");
        assert!(
            matches!(err, ExtractError::StageStopped("transform")),
            "{err}"
        );
        assert!(matches!(rx.recv(), Ok(PlainChunk::Data(_))));
        assert!(rx.recv().is_err(), "the channel closes without End");
    }
}
