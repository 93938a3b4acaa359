//! What an aggregate release delivers of a suppressed table: the table as CSV in the format
//! the publication review reads (dimension columns, `count`, `percent`; a total as `Total`, a
//! suppressed value as `#`), the audit file with every suppressed cell's interval so anyone can
//! check the proof, and the notice of seed 003 section C.

use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use super::audit::Interval;
use super::suppress::{CellStatus, Suppression};
use super::table::Table;

/// How a total is labelled.
pub const TOTAL: &str = "Total";

/// How a suppressed value is shown (seed 003 section C).
pub const SUPPRESSED: &str = "#";

/// The audit file's format tag.
pub const AUDIT_FORMAT: &str = "steward-aggregate-audit/v1";

/// A suppressed table with the names of its dimensions and categories.
#[derive(Debug, Clone, Copy)]
pub struct Published<'a> {
    /// The counts, margins included.
    pub table: &'a Table,
    /// What is suppressed, and the proof.
    pub suppression: &'a Suppression,
    /// Each dimension's column header.
    pub headers: &'a [String],
    /// Each dimension's category names, in the table's order.
    pub categories: &'a [Vec<String>],
    /// What a cell counts (`discharges`).
    pub measure: &'a str,
    /// Whether the margins are published (a table of distinct counts has none).
    pub margins: bool,
}

impl Published<'_> {
    /// The cells delivered, in row-major order of the table with its totals.
    fn cells(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.table.len()).filter(|&c| self.margins || !self.table.is_margin(c))
    }

    fn labels(&self, cell: usize) -> Vec<&str> {
        self.table
            .labelled(cell)
            .iter()
            .zip(self.categories)
            .map(|(c, names)| c.map_or(TOTAL, |c| names[c].as_str()))
            .collect()
    }

    fn shown(&self, cell: usize) -> Option<u64> {
        (self.suppression.status[cell] == CellStatus::Published).then(|| self.table.values()[cell])
    }

    /// The share of the grand total, only where it reveals nothing: the count and the grand
    /// total are both shown, so the percentage is computed from published values alone.
    fn percent(&self, cell: usize) -> Option<String> {
        if !self.margins {
            return None;
        }
        let grand = self.table.index(self.table.sizes());
        let total = self.shown(grand).filter(|&t| t > 0)?;
        let count = self.shown(cell)?;
        Some(format!("{:.1}", count as f64 * 100.0 / total as f64))
    }

    /// The table as CSV.
    pub fn table_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        header.push("count");
        if self.margins {
            header.push("percent");
        }
        out.write_record(&header)?;
        for cell in self.cells() {
            let mut row: Vec<String> = self.labels(cell).into_iter().map(str::to_owned).collect();
            row.push(
                self.shown(cell)
                    .map_or_else(|| SUPPRESSED.to_owned(), |v| v.to_string()),
            );
            if self.margins {
                row.push(self.percent(cell).unwrap_or_else(|| SUPPRESSED.to_owned()));
            }
            out.write_record(&row)?;
        }
        out.into_inner().map_err(|e| e.into_error().into())
    }

    /// The audit file: the published table and every suppressed cell's interval as the
    /// attacker's linear programs bound it (or a hypercube proves it at least as wide).
    pub fn audit_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let (primary, complementary) = self.suppression.counts();
        let audit = AuditFile {
            format: AUDIT_FORMAT,
            measure: self.measure,
            threshold: self.suppression.threshold,
            margins: self.margins,
            rule: "every suppressed cell's interval is not a single value; every primary cell's interval is at least `threshold` wide and reaches `threshold`",
            dimensions: self
                .headers
                .iter()
                .zip(self.categories)
                .map(|(column, categories)| AuditDimension {
                    column,
                    categories,
                })
                .collect(),
            cells: self.cells().count(),
            primary,
            complementary,
            published: self
                .cells()
                .map(|cell| PublishedCell {
                    categories: self.labels(cell),
                    count: self.shown(cell),
                })
                .collect(),
            suppressed: self
                .cells()
                .filter_map(|cell| {
                    let status = self.suppression.status[cell];
                    let interval = self.suppression.intervals[cell]?;
                    (status != CellStatus::Published).then(|| SuppressedCell {
                        categories: self.labels(cell),
                        status,
                        interval,
                    })
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&audit)
    }
}

#[derive(Serialize)]
struct AuditFile<'a> {
    format: &'static str,
    measure: &'a str,
    threshold: u64,
    margins: bool,
    rule: &'static str,
    dimensions: Vec<AuditDimension<'a>>,
    cells: usize,
    primary: usize,
    complementary: usize,
    published: Vec<PublishedCell<'a>>,
    suppressed: Vec<SuppressedCell<'a>>,
}

#[derive(Serialize)]
struct AuditDimension<'a> {
    column: &'a str,
    categories: &'a [String],
}

#[derive(Serialize)]
struct PublishedCell<'a> {
    categories: Vec<&'a str>,
    /// `None`: suppressed.
    count: Option<u64>,
}

#[derive(Serialize)]
struct SuppressedCell<'a> {
    categories: Vec<&'a str>,
    status: CellStatus,
    interval: Interval,
}

/// Why an audit file could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuditFileError {
    /// Not an audit file of this format.
    #[error("not a suppression audit file: {0}")]
    Malformed(String),
    /// The attacker's programs failed.
    #[error(transparent)]
    Audit(#[from] super::audit::AuditError),
}

/// The outcome of checking an audit file.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCheck {
    /// Cells published (margins included when published).
    pub cells: usize,
    /// Suppressed cells the file names as primary.
    pub primary: usize,
    /// Other suppressed cells.
    pub complementary: usize,
    /// Each cell found unsafe: its categories and the interval an attacker finds.
    pub unsafe_cells: Vec<(Vec<String>, Interval)>,
}

#[derive(Deserialize)]
struct ReadAudit {
    format: String,
    threshold: u64,
    margins: bool,
    dimensions: Vec<ReadDimension>,
    published: Vec<ReadCell>,
    suppressed: Vec<ReadSuppressed>,
}

#[derive(Deserialize)]
struct ReadDimension {
    categories: Vec<String>,
}

#[derive(Deserialize)]
struct ReadCell {
    categories: Vec<String>,
    count: Option<u64>,
}

#[derive(Deserialize)]
struct ReadSuppressed {
    categories: Vec<String>,
    status: String,
}

/// Checks an audit file as a reader can, from the published counts alone: the attacker's
/// programs are solved again for every suppressed cell; a cell the file calls primary must be
/// protected at the threshold, and no suppressed cell may be known exactly. The intervals the
/// file states are not trusted.
pub fn check_audit(json: &[u8]) -> Result<AuditCheck, AuditFileError> {
    let malformed = |why: String| AuditFileError::Malformed(why);
    let file: ReadAudit = serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
    if file.format != AUDIT_FORMAT {
        return Err(malformed(format!("format `{}`", file.format)));
    }
    let sizes: Vec<usize> = file.dimensions.iter().map(|d| d.categories.len()).collect();
    // Every cell of the table with its totals, in order; without margins only the interior
    // is listed, and nothing ties one cell to another.
    let expected = sizes
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n + 1))
        .filter(|&n| n <= super::table::MAX_CELLS && !sizes.is_empty())
        .ok_or_else(|| {
            malformed(format!(
                "{} dimensions of {sizes:?} categories",
                sizes.len()
            ))
        })?;
    let interior: usize = sizes.iter().product();
    let listed = if file.margins { expected } else { interior };
    if file.published.len() != listed {
        return Err(malformed(format!(
            "{} cells listed, the dimensions make {listed}",
            file.published.len()
        )));
    }
    let mut cells = vec![Some(0); expected];
    let mut hidden = vec![false; expected];
    let mut at = HashMap::new();
    let names = |d: usize, c: usize| -> &str {
        file.dimensions[d]
            .categories
            .get(c)
            .map_or(TOTAL, String::as_str)
    };
    for index in 0..expected {
        let table_coords: Vec<usize> = {
            let mut rest = index;
            let mut coords = vec![0; sizes.len()];
            for d in (0..sizes.len()).rev() {
                coords[d] = rest % (sizes[d] + 1);
                rest /= sizes[d] + 1;
            }
            coords
        };
        let is_margin = table_coords.iter().zip(&sizes).any(|(c, n)| c == n);
        if is_margin && !file.margins {
            continue;
        }
        let key: Vec<String> = table_coords
            .iter()
            .enumerate()
            .map(|(d, &c)| names(d, c).to_owned())
            .collect();
        at.insert(key, index);
    }
    for cell in &file.published {
        let index = *at
            .get(&cell.categories)
            .ok_or_else(|| malformed(format!("unknown cell {:?}", cell.categories)))?;
        cells[index] = cell.count;
        hidden[index] = cell.count.is_none();
    }
    let table = Table::from_published(&sizes, &cells).map_err(|e| malformed(e.to_string()))?;
    let intervals = if file.margins {
        super::audit::audit(&table, &hidden)?
    } else {
        hidden
            .iter()
            .enumerate()
            .filter(|(_, &h)| h)
            .map(|(c, _)| {
                let open = Interval {
                    low: 0.0,
                    high: f64::INFINITY,
                    exact: true,
                };
                (c, open)
            })
            .collect()
    };
    let mut primary_cells = std::collections::HashSet::new();
    for s in &file.suppressed {
        let index = *at
            .get(&s.categories)
            .ok_or_else(|| malformed(format!("unknown cell {:?}", s.categories)))?;
        if !hidden[index] {
            return Err(malformed(format!(
                "cell {:?} is listed as suppressed but published",
                s.categories
            )));
        }
        if s.status == "primary" {
            primary_cells.insert(index);
        }
    }
    let mut unsafe_cells = Vec::new();
    let mut sorted: Vec<_> = intervals.into_iter().collect();
    sorted.sort_by_key(|(c, _)| *c);
    for (cell, interval) in sorted {
        let safe = if primary_cells.contains(&cell) {
            interval.protects(file.threshold)
        } else {
            !interval.is_exact()
        };
        if !safe {
            let key = at
                .iter()
                .find(|(_, &i)| i == cell)
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            unsafe_cells.push((key, interval));
        }
    }
    let suppressed = hidden.iter().filter(|&&h| h).count();
    Ok(AuditCheck {
        cells: file.published.len(),
        primary: primary_cells.len(),
        complementary: suppressed - primary_cells.len(),
        unsafe_cells,
    })
}

/// A number as the notice writes it: "eleven (11)".
fn in_words(n: u64) -> String {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    match WORDS.get(n as usize) {
        Some(word) => format!("{word} ({n})"),
        None => n.to_string(),
    }
}

/// The notice of seed 003 section C, for a table of `phrase` ("discharge counts")
/// suppressed under `threshold`.
pub fn notice(phrase: &str, threshold: u64) -> String {
    format!(
        "Please note that cells containing non-zero {phrase} under {} were redacted pursuant to the \
Health Insurance Portability and Accountability Act of 1996 (HIPAA) de-identification safe \
harbor, and in accordance with the agency's aggregate data release standards, to avoid possible \
re-identification. (See 45 CFR §164.514(b).)\n\n\
Non-zero numeric references less than {threshold} and related complementary data fields have been \
masked ({SUPPRESSED}) to protect confidentiality.\n",
        in_words(threshold)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disclosure::review::review;
    use crate::disclosure::suppress;

    fn published(table: &Table, suppression: &Suppression, margins: bool) -> Vec<u8> {
        let headers = ["region".to_owned(), "sex".to_owned()];
        let categories = [
            vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            vec!["F".to_owned(), "M".to_owned()],
        ];
        Published {
            table,
            suppression,
            headers: &headers,
            categories: &categories,
            measure: "discharges",
            margins,
        }
        .table_csv()
        .expect("csv")
    }

    #[test]
    fn the_delivered_table_passes_the_publication_review() {
        let table = Table::from_interior(&[3, 2], &[4, 30, 25, 40, 18, 22]).expect("table");
        let suppression = suppress(&table, 11).expect("suppress");
        let csv = published(&table, &suppression, true);
        let text = String::from_utf8(csv.clone()).expect("utf-8");
        assert!(text.starts_with("region,sex,count,percent\n"), "{text}");
        assert!(text.contains("A,F,#,#\n"), "{text}");
        assert!(text.contains("Total,Total,139,100.0\n"), "{text}");
        let report = review(&csv, 11).expect("review");
        assert!(report.findings.is_empty(), "{:?}", report.findings);
    }

    #[test]
    fn percentages_are_withheld_when_the_grand_total_is_suppressed() {
        // A grand total of 9 is itself a primary cell: no percentage may be shown, as each
        // would give the total away from its shown count.
        let table = Table::from_interior(&[3, 2], &[0, 0, 9, 0, 0, 0]).expect("table");
        let suppression = suppress(&table, 11).expect("suppress");
        let text = String::from_utf8(published(&table, &suppression, true)).expect("utf-8");
        assert!(text.contains("A,F,0,#\n"), "{text}");
        assert!(text.contains("Total,Total,#,#\n"), "{text}");
    }

    #[test]
    fn a_table_without_margins_shows_no_total_and_suppresses_small_cells_only() {
        let table = Table::from_interior(&[3, 2], &[4, 30, 25, 40, 18, 22]).expect("table");
        let suppression = Suppression::without_margins(&table, 11).expect("suppress");
        assert!(suppression.is_proved());
        let text = String::from_utf8(published(&table, &suppression, false)).expect("utf-8");
        assert_eq!(
            text,
            "region,sex,count\nA,F,#\nA,M,30\nB,F,25\nB,M,40\nC,F,18\nC,M,22\n"
        );
    }

    #[test]
    fn an_audit_file_is_checked_from_its_published_counts_alone() {
        let table = Table::from_interior(&[3, 2], &[4, 30, 25, 40, 18, 22]).expect("table");
        let suppression = suppress(&table, 11).expect("suppress");
        let headers = ["region".to_owned(), "sex".to_owned()];
        let categories = [
            vec!["A".to_owned(), "B".to_owned(), "C".to_owned()],
            vec!["F".to_owned(), "M".to_owned()],
        ];
        let published = Published {
            table: &table,
            suppression: &suppression,
            headers: &headers,
            categories: &categories,
            measure: "discharges",
            margins: true,
        };
        let json = published.audit_json().expect("json");
        let check = check_audit(&json).expect("check");
        assert!(check.unsafe_cells.is_empty(), "{:?}", check.unsafe_cells);
        assert_eq!((check.cells, check.primary), (12, 1));
        assert_eq!(check.complementary, suppression.counts().1);

        // Primary suppression alone, as an altered file would claim: the margins give the 4
        // away, and the check names the cell.
        let mut alone = suppression.clone();
        for (cell, status) in alone.status.iter_mut().enumerate() {
            if *status == CellStatus::Complementary {
                *status = CellStatus::Published;
                alone.intervals[cell] = None;
            }
        }
        let json = Published {
            suppression: &alone,
            ..published
        }
        .audit_json()
        .expect("json");
        let check = check_audit(&json).expect("check");
        assert_eq!(check.unsafe_cells.len(), 1);
        assert_eq!(check.unsafe_cells[0].0, ["A", "F"]);
        assert!(check.unsafe_cells[0].1.is_exact());
        assert!(matches!(
            check_audit(b"{}"),
            Err(AuditFileError::Malformed(_))
        ));
    }

    #[test]
    fn the_notice_is_seed_003s() {
        let text = notice("discharge counts", 11);
        assert!(text.starts_with(
            "Please note that cells containing non-zero discharge counts under eleven (11) were redacted"
        ));
        assert!(text.contains("(See 45 CFR §164.514(b).)"));
        assert!(text
            .contains("less than 11 and related complementary data fields have been masked (#)"));
        assert!(notice("claim counts", 25).contains("under 25 were redacted"));
    }
}
