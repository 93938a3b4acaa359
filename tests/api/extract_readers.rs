//! A plain local source is read by the SIMD reader while it can vouch for each record, and by
//! the exact reader from the first it cannot. Whatever the bytes (quotes well and badly formed,
//! CR, CRLF and blank lines, a byte-order mark, rows of the wrong width, values that fail
//! validation), the extract must be the one the exact reader alone makes: the same delivered
//! bytes, the same counts, the same error naming the same line. The exact reader alone reads
//! the same bytes gzip-compressed.

use std::io::{Read, Write};
use std::sync::Arc;

use proptest::prelude::*;
use steward::domain::level::Level;
use steward::extract::{
    extract_dataset, DatasetRequest, InvalidRowTolerance, JobControl, SourceLocation,
};
use steward::policy::catalog::FileType;
use steward::policy::{plan, NamedIdentities, WithheldMembers};
use steward::storage::{FsStore, ObjectKey, SharedStore};
use tokio::io::AsyncReadExt;

use crate::policy_support::{catalog, everything_allowed, opt_outs, schema};

/// How one field is written.
#[derive(Debug, Clone, Copy)]
enum Quoting {
    /// Quoted only when it needs to be, as a CSV writer does.
    Needed,
    /// Always quoted.
    Always,
    /// As it is, even when that splits or breaks the row.
    Raw,
}

/// One source row: per column, a value override; its quoting; how it ends; what precedes it.
#[derive(Debug, Clone)]
struct Row {
    overrides: Vec<(usize, &'static str, Quoting)>,
    width_change: i8,
    terminator: &'static str,
    blank_before: &'static str,
}

const VALUES: &[&str] = &[
    "",
    " ",
    "\t",
    "A1",
    "x y",
    "2021-07-04",
    "20200101",
    "not a date",
    "41",
    "93",
    "a,b",
    "q\"q",
    "line\nbreak",
    "cr\rhere",
    "\u{feff}B",
    "Z99.9",
    "B20",
    // Quoting that breaks when written raw: text after a closing quote, and a quote that
    // never closes.
    "\"a\"b",
    "\"abc",
];

/// Columns whose values the extract checks, transforms or reads for members.
const CHECKED: &[&str] = &[
    "service_date_from",
    "member_age",
    "member_birth_date",
    "member_id",
    "member_ssn",
    "principal_diagnosis",
    "payer_id",
];

fn row(names: &[String]) -> impl Strategy<Value = Row> {
    let checked: Vec<usize> = CHECKED
        .iter()
        .filter_map(|c| names.iter().position(|n| n == c))
        .collect();
    let column = prop_oneof![0..names.len(), prop::sample::select(checked)];
    let quoting = prop_oneof![
        6 => Just(Quoting::Needed),
        2 => Just(Quoting::Always),
        1 => Just(Quoting::Raw),
    ];
    (
        prop::collection::vec((column, prop::sample::select(VALUES), quoting), 0..4),
        prop_oneof![12 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
        prop_oneof![12 => Just("\n"), 2 => Just("\r\n"), 1 => Just("\r")],
        prop_oneof![20 => Just(""), 1 => Just("\n"), 1 => Just("\r\n")],
    )
        .prop_map(|(overrides, width_change, terminator, blank_before)| Row {
            overrides,
            width_change,
            terminator,
            blank_before,
        })
}

fn write_field(out: &mut Vec<u8>, value: &str, quoting: Quoting) {
    let needs = value.contains([',', '"', '\r', '\n']);
    match quoting {
        Quoting::Raw => out.extend_from_slice(value.as_bytes()),
        Quoting::Needed if !needs => out.extend_from_slice(value.as_bytes()),
        _ => {
            out.push(b'"');
            out.extend_from_slice(value.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        }
    }
}

/// How the file is laid out around its generated rows.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Every row of the header's width, LF-ended, with no blank line between.
    clean: bool,
    bom: bool,
    crlf_header: bool,
    /// Valid rows before the generated ones, to put those beyond the readers' first buffer.
    filler: usize,
    last_newline: bool,
}

/// The source text: the med_claim schema's header, then each row from valid defaults.
fn source_text(names: &[String], rows: &[Row], layout: Layout) -> Vec<u8> {
    let mut out = Vec::new();
    if layout.bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    out.extend_from_slice(names.join(",").as_bytes());
    out.extend_from_slice(if layout.crlf_header { b"\r\n" } else { b"\n" });
    let filler = Row {
        overrides: Vec::new(),
        width_change: 0,
        terminator: "\n",
        blank_before: "",
    };
    let rows: Vec<&Row> = std::iter::repeat_n(&filler, layout.filler)
        .chain(rows)
        .collect();
    let clean = layout.clean;
    for (i, row) in rows.iter().enumerate() {
        if !clean {
            out.extend_from_slice(row.blank_before.as_bytes());
        }
        let member = format!("M{}", i % 5);
        let mut values: Vec<(String, Quoting)> = names
            .iter()
            .map(|name| {
                let value = match name.as_str() {
                    "service_date_from" | "service_date_thru" | "paid_date" => "2023-04-01",
                    "member_birth_date" => "1970-02-03",
                    "member_age" => "41",
                    "member_id" | "subscriber_id" => member.as_str(),
                    "member_ssn" => "123-45-6789",
                    "submitter_id" => "S1",
                    "payer_id" => "P1",
                    _ => "",
                };
                (value.to_owned(), Quoting::Needed)
            })
            .collect();
        for &(column, value, quoting) in &row.overrides {
            values[column] = (value.to_owned(), quoting);
        }
        match if clean { 0 } else { row.width_change } {
            -1 => {
                values.pop();
            }
            1 => values.push(("extra".to_owned(), Quoting::Needed)),
            _ => {}
        }
        for (at, (value, quoting)) in values.iter().enumerate() {
            if at > 0 {
                out.push(b',');
            }
            write_field(&mut out, value, *quoting);
        }
        if i + 1 < rows.len() || layout.last_newline {
            out.extend_from_slice(if clean {
                b"\n"
            } else {
                row.terminator.as_bytes()
            });
        }
    }
    out
}

/// What an extract made: the plaintext and counts, or the error's text.
async fn outcome(
    dir: &std::path::Path,
    source: &std::path::Path,
    level: Level,
    tolerance: InvalidRowTolerance,
) -> Result<(String, String), String> {
    let catalog = catalog();
    let release = everything_allowed(&catalog, FileType::MedClaim, level, "org-a");
    let p = plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).unwrap();
    let store: SharedStore = Arc::new(FsStore::new(dir.join("objects")));
    let identity = age::x25519::Identity::generate();
    let named = p
        .delivers_direct_identifiers()
        .then(|| Arc::new(NamedIdentities::new()));
    let key = ObjectKey::parse(&format!(
        "releases/{}/med_claim.csv.zst.age",
        source.file_name().unwrap().to_string_lossy()
    ))
    .unwrap();
    let request = DatasetRequest {
        plan: Arc::new(p),
        source: SourceLocation::Path(source.to_path_buf()),
        members: Arc::new(WithheldMembers::from(opt_outs(&[]))),
        tolerance,
        named,
        recipients: vec![Box::new(identity.to_public())],
        key: key.clone(),
    };
    let control = Arc::new(JobControl::default());
    let sealed = extract_dataset(request, store.clone(), control.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut object = store.get(&key, None).await.unwrap();
    let mut ciphertext = Vec::new();
    object.body.read_to_end(&mut ciphertext).await.unwrap();
    let decryptor = age::Decryptor::new(ciphertext.as_slice()).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut compressed = Vec::new();
    reader.read_to_end(&mut compressed).unwrap();
    let plaintext = zstd::decode_all(compressed.as_slice()).unwrap();
    // Progress counts each byte of the source once, whichever reader read it.
    let size = std::fs::metadata(source).unwrap().len();
    assert_eq!(control.current_source(), (size, size));
    let counts = &sealed.counts;
    // Learned identities are keys under a per-run seed: their number is what compares.
    let counts = format!(
        "{} rows, {} delivered, {} outside, dropped {:?}, {} learned, {} suspect",
        counts.source_rows,
        counts.delivered,
        counts.outside_filters,
        counts.dropped,
        counts.learned_links.len(),
        counts.suspect_links
    );
    Ok((String::from_utf8_lossy(&plaintext).into_owned(), counts))
}

/// `text` as a plain source (read by the SIMD reader while it vouches for it) and as a gzip
/// one (read by the exact reader alone).
fn both_sources(dir: &std::path::Path, text: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let plain = dir.join("plain.csv");
    std::fs::write(&plain, text).unwrap();
    let gzipped = dir.join("exact.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    std::fs::write(&gzipped, gz.finish().unwrap()).unwrap();
    (plain, gzipped)
}

fn med_claim_columns() -> Vec<String> {
    schema(&catalog(), FileType::MedClaim)
        .columns()
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_simd_reader_delivers_what_the_exact_reader_delivers(
        rows in prop::collection::vec(row(&med_claim_columns()), 0..24),
        clean in prop::bool::ANY,
        bom in prop::bool::weighted(0.1),
        crlf_header in prop::bool::weighted(0.2),
        filler in prop_oneof![3 => Just(0usize), 1 => 2000..2600usize],
        last_newline in prop::bool::weighted(0.8),
        level in prop::sample::select(vec![Level::I, Level::II, Level::III]),
        tolerant in prop::bool::ANY,
    ) {
        let names = med_claim_columns();
        let layout = Layout { clean, bom, crlf_header, filler, last_newline };
        let text = source_text(&names, &rows, layout);
        let dir = tempfile::tempdir().unwrap();
        let (plain, gzipped) = both_sources(dir.path(), &text);
        let tolerance = if tolerant {
            InvalidRowTolerance { max_rows: 0, max_fraction: 1.0 }
        } else {
            InvalidRowTolerance::default()
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let fast = runtime.block_on(outcome(dir.path(), &plain, level, tolerance));
        let exact = runtime.block_on(outcome(dir.path(), &gzipped, level, tolerance));
        // Messages name the file: the same text but for its name.
        let fast = fast.map_err(|e| e.replace(&plain.display().to_string(), "SOURCE"));
        let exact = exact.map_err(|e| e.replace(&gzipped.display().to_string(), "SOURCE"));
        prop_assert_eq!(fast, exact);
    }
}

#[test]
fn an_invalid_value_names_its_real_line_whatever_the_line_ends_and_reader() {
    let names = med_claim_columns();
    let column = names.iter().position(|n| n == "service_date_from").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (terminator, blank_before) in [("\r\n", ""), ("\n", "\n"), ("\r\n", "\r\n"), ("\n", "")] {
        let mut rows: Vec<Row> = (0..4)
            .map(|_| Row {
                overrides: Vec::new(),
                width_change: 0,
                terminator,
                blank_before,
            })
            .collect();
        rows[2]
            .overrides
            .push((column, "not a date", Quoting::Needed));
        let layout = Layout {
            clean: false,
            bom: false,
            crlf_header: terminator == "\r\n",
            filler: 0,
            last_newline: true,
        };
        let text = source_text(&names, &rows, layout);
        // Counted in the text itself: 1 + the LFs before the invalid row's value.
        let at = text.windows(10).position(|w| w == b"not a date").unwrap();
        let line = 1 + text[..at].iter().filter(|&&b| b == b'\n').count();
        let dir = tempfile::tempdir().unwrap();
        let (plain, gzipped) = both_sources(dir.path(), &text);
        for source in [&plain, &gzipped] {
            let error = runtime
                .block_on(outcome(
                    dir.path(),
                    source,
                    Level::I,
                    InvalidRowTolerance::default(),
                ))
                .unwrap_err();
            assert!(
                error.contains(&format!("line {line}, column `service_date_from`")),
                "{terminator:?} {blank_before:?}: {error}"
            );
        }
    }
}
