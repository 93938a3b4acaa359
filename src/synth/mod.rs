//! Synthetic source data (`steward synth`): realistic CSV files for every file type, with the
//! column names of the shipped dataset schemas, consistent across files (the same members in
//! eligibility and claims) and deterministic for a seed. They carry the edge cases the policy
//! rules care about: members aged 90 and over, HIV / substance-use / psychiatric-inpatient rows,
//! opted-out members (listed in `optout.csv`), abortion procedures, empty fields, free text
//! with quoted commas and newlines, and non-ASCII names. All values are invented.

mod fields;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use time::Date;

use crate::policy::catalog::FileType;
use fields::{Ctx, Field, Member, Pools};

/// Errors raised while generating synthetic data.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV writer failed (it wraps I/O errors).
    #[error("cannot write {path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
    /// A shipped dataset schema names a column the generator does not know how to fill.
    #[error("dataset schema `{file_type}` has column `{column}`, which synth cannot generate")]
    UnknownColumn {
        /// The file type.
        file_type: FileType,
        /// The column.
        column: String,
    },
    /// A shipped dataset schema could not be read.
    #[error("embedded dataset schema `{file_type}` is invalid: {source}")]
    Schema {
        /// The file type.
        file_type: FileType,
        /// The parser's error.
        source: toml::de::Error,
    },
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SynthReport {
    /// Per file: file type, path, data rows and bytes written.
    pub files: Vec<SynthFile>,
    /// Number of distinct members.
    pub members: u64,
    /// Members listed in `optout.csv`.
    pub opted_out_members: u64,
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthFile {
    /// Its file type.
    pub file_type: FileType,
    /// Where it was written (`<out_dir>/<file_type>.csv`).
    pub path: PathBuf,
    /// Data rows (header excluded).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// The shipped schemas, embedded so the generator always writes the columns Steward expects.
const SCHEMAS: [(FileType, &str); 10] = [
    (
        FileType::MedElig,
        include_str!("../../config/datasets/med_elig.toml"),
    ),
    (
        FileType::MedClaim,
        include_str!("../../config/datasets/med_claim.toml"),
    ),
    (
        FileType::PharmElig,
        include_str!("../../config/datasets/pharm_elig.toml"),
    ),
    (
        FileType::PharmClaim,
        include_str!("../../config/datasets/pharm_claim.toml"),
    ),
    (
        FileType::DentalElig,
        include_str!("../../config/datasets/dental_elig.toml"),
    ),
    (
        FileType::DentalClaim,
        include_str!("../../config/datasets/dental_claim.toml"),
    ),
    (
        FileType::HospInpatient,
        include_str!("../../config/datasets/hosp_inpatient.toml"),
    ),
    (
        FileType::HospOutpatient,
        include_str!("../../config/datasets/hosp_outpatient.toml"),
    ),
    (
        FileType::Restructuring,
        include_str!("../../config/datasets/restructuring.toml"),
    ),
    (
        FileType::Quality,
        include_str!("../../config/datasets/quality.toml"),
    ),
];

#[derive(Deserialize)]
struct SchemaNames {
    columns: Vec<SchemaName>,
}

#[derive(Deserialize)]
struct SchemaName {
    name: String,
}

/// The source column names of a file type, as in the shipped schema.
pub fn columns(file_type: FileType) -> Result<Vec<String>, SynthError> {
    let text = SCHEMAS
        .iter()
        .find(|(ft, _)| *ft == file_type)
        .map_or("columns = []", |(_, t)| t);
    let parsed: SchemaNames =
        toml::from_str(text).map_err(|source| SynthError::Schema { file_type, source })?;
    Ok(parsed.columns.into_iter().map(|c| c.name).collect())
}

/// Rows of each file for `rows` medical-claims rows.
fn row_count(file_type: FileType, rows: u64, members: u64) -> u64 {
    match file_type {
        FileType::MedClaim => rows,
        // Three coverage months per member keeps eligibility proportionate to claims.
        FileType::MedElig | FileType::PharmElig | FileType::DentalElig => members * 3,
        FileType::PharmClaim => rows.div_ceil(2),
        FileType::DentalClaim | FileType::HospOutpatient => rows.div_ceil(4),
        FileType::HospInpatient => rows.div_ceil(20),
        FileType::Restructuring => 40,
        FileType::Quality => 48,
    }
}

/// Writes `<out_dir>/<file_type>.csv` for every file type and `<out_dir>/optout.csv`.
/// `rows` is the number of medical-claims rows; the other files scale from it.
pub fn generate(out_dir: &Path, rows: u64, seed: u64) -> Result<SynthReport, SynthError> {
    std::fs::create_dir_all(out_dir).map_err(|source| SynthError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pools = Pools::new();
    // About eight claims per member, at least enough members for every edge case to occur.
    let member_count = (rows / 8).clamp(60, 250_000);
    let members: Vec<Member> = (0..member_count)
        .map(|i| Member::generate(i, &mut rng))
        .collect();

    let mut report = SynthReport {
        members: member_count,
        ..SynthReport::default()
    };
    for (file_type, _) in SCHEMAS {
        let names = columns(file_type)?;
        let fields = names
            .iter()
            .map(|n| {
                Field::for_column(file_type, n).ok_or_else(|| SynthError::UnknownColumn {
                    file_type,
                    column: n.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let path = out_dir.join(format!("{}.csv", file_type.as_str()));
        let count = row_count(file_type, rows, member_count);
        // One stream per file type, derived from the seed, so files do not depend on each
        // other's sizes.
        let mut file_rng = ChaCha8Rng::seed_from_u64(
            seed ^ 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(file_type as u64 + 1),
        );
        write_file(
            &path,
            file_type,
            &names,
            &fields,
            count,
            &members,
            &pools,
            &mut file_rng,
        )?;
        let bytes = std::fs::metadata(&path)
            .map_err(|source| SynthError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        report.files.push(SynthFile {
            file_type,
            path,
            rows: count,
            bytes,
        });
    }

    let path = out_dir.join("optout.csv");
    let csv_err = |source| SynthError::Csv {
        path: path.clone(),
        source,
    };
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    w.write_record(["ssn", "member_id"]).map_err(csv_err)?;
    for m in members.iter().filter(|m| m.opted_out) {
        // Registrants give either identifier; alternate so both lookups are exercised.
        if m.index % 2 == 0 {
            w.write_record([m.ssn.as_str(), ""]).map_err(csv_err)?;
        } else {
            w.write_record(["", m.member_id.as_str()])
                .map_err(csv_err)?;
        }
        report.opted_out_members += 1;
    }
    w.flush().map_err(|source| SynthError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
fn write_file(
    path: &Path,
    file_type: FileType,
    names: &[String],
    fields: &[Field],
    count: u64,
    members: &[Member],
    pools: &Pools,
    rng: &mut ChaCha8Rng,
) -> Result<(), SynthError> {
    let csv_err = |source| SynthError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 16)
        .from_writer(BufWriter::with_capacity(1 << 20, file));
    w.write_record(names).map_err(csv_err)?;
    let mut ctx = Ctx::new(file_type);
    let elig = matches!(
        file_type,
        FileType::MedElig | FileType::PharmElig | FileType::DentalElig
    );
    let mut buf = [0u8; fields::BUF];
    let start = Date::from_calendar_date(2022, time::Month::January, 1).unwrap_or(Date::MIN);
    for row in 0..count {
        // Eligibility walks the members in order (three months each) so that every member
        // has coverage; claims pick members at random.
        let member = if elig {
            &members[usize::try_from(row / 3).unwrap_or(0) % members.len()]
        } else {
            &members[rng.gen_range(0..members.len())]
        };
        ctx.next_row(row, member, start, rng, pools);
        for field in fields {
            let n = ctx.render(*field, member, pools, rng, &mut buf);
            w.write_field(&buf[..n]).map_err(csv_err)?;
        }
        w.write_record(None::<&[u8]>).map_err(csv_err)?;
    }
    w.flush().map_err(|source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}
