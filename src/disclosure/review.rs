//! Publication review (seed 001 section 4.3 J): a table a recipient intends to publish, checked
//! as an attacker would read it. The upload is CSV: one column per dimension, then `count`,
//! optionally `percent`; a dimension's total is the category `Total`; a suppressed count is
//! `#` or empty. Margins may be given or not (a margin not given is unknown to a reader, like a
//! suppressed cell). Only counts are read: no other column is accepted.
//!
//! Problems found, each naming its cell: a count of 1 to threshold - 1 shown; a suppressed
//! count a reader can work back out, or pin inside `1..threshold`, from the shown counts and
//! the table's additivity (the attacker's linear programs of `audit.rs`); a percentage shown
//! beside a suppressed count (with its total, it gives the count away).

use std::collections::HashMap;

use serde::Serialize;

use super::audit::{components, solve_component, Interval};
use super::table::{Table, MAX_CELLS, MAX_DIMENSIONS};

/// Largest upload, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 4 * 1024 * 1024;
/// Most rows an upload may have.
pub const MAX_ROWS: usize = 200_000;

/// Why an upload is refused (nothing is reviewed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Larger than [`MAX_UPLOAD_BYTES`] or [`MAX_ROWS`].
    #[error("the table is too large: at most {MAX_UPLOAD_BYTES} bytes and {MAX_ROWS} rows")]
    TooLarge,
    /// Not CSV, or a row of the wrong length.
    #[error("line {line}: {problem}")]
    Csv {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The header is not dimensions, `count` and optionally `percent`.
    #[error("the header must be 1 to {MAX_DIMENSIONS} dimension columns, then `count`, optionally `percent`")]
    Header,
    /// A count that is not a whole number, `#` or empty.
    #[error("line {line}: count {text:?} is not a whole number, `#` or empty")]
    Count {
        /// 1-based line number.
        line: u64,
        /// The text (a count, never personal data: only counts are accepted).
        text: String,
    },
    /// A negative count.
    #[error("line {line}: counts cannot be negative")]
    Negative {
        /// 1-based line number.
        line: u64,
    },
    /// The same cell twice.
    #[error("line {line}: the cell {cell:?} appears twice")]
    Duplicate {
        /// 1-based line number.
        line: u64,
        /// The cell's categories.
        cell: Vec<String>,
    },
    /// Shown counts that do not add up.
    #[error(
        "the table is not additive: the total {total:?} is {found}, its shown parts sum to {sum}"
    )]
    NotAdditive {
        /// The total's categories.
        total: Vec<String>,
        /// The total shown.
        found: u64,
        /// What its parts sum to.
        sum: u64,
    },
    /// More cells than allowed.
    #[error("the table has more than {MAX_CELLS} cells")]
    TooManyCells,
}

/// What is wrong with one cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Finding {
    /// A small count shown.
    SmallCellShown {
        /// The cell's categories.
        cell: Vec<String>,
        /// Its count.
        count: u64,
        /// The fix.
        fix: String,
    },
    /// A suppressed count a reader can work out, or pin below the threshold.
    SuppressedRecoverable {
        /// The cell's categories.
        cell: Vec<String>,
        /// What a reader can tell: the least and greatest value it can have.
        interval: Interval,
        /// The fix.
        fix: String,
    },
    /// A percentage shown beside a suppressed count.
    PercentageReveals {
        /// The cell's categories.
        cell: Vec<String>,
        /// The fix.
        fix: String,
    },
}

/// The review of one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// The threshold applied.
    pub threshold: u64,
    /// Cells read (margins included, given or not).
    pub cells: usize,
    /// Whether the table may be published as it is.
    pub passes: bool,
    /// Every problem, in cell order.
    pub findings: Vec<Finding>,
}

struct Parsed {
    sizes: Vec<usize>,
    categories: Vec<Vec<String>>,
    /// Known counts by coordinates (a dimension's total is its size); absent: unknown.
    counts: HashMap<Vec<usize>, u64>,
    /// Cells with a percentage shown.
    percent: Vec<Vec<usize>>,
}

/// One data line of the upload: its cell (`None`: a total), its count (`None`: suppressed)
/// and whether it shows a percentage.
struct Row {
    line: u64,
    coords: Vec<Option<usize>>,
    count: Option<u64>,
    percent: bool,
}

fn is_total(text: &str) -> bool {
    text.trim().eq_ignore_ascii_case("total")
}

fn parse(csv_text: &[u8]) -> Result<Parsed, ReviewError> {
    if csv_text.len() > MAX_UPLOAD_BYTES {
        return Err(ReviewError::TooLarge);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(csv_text);
    let header = reader
        .headers()
        .map_err(|e| ReviewError::Csv {
            line: 1,
            problem: e.to_string(),
        })?
        .clone();
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let count_at = names
        .iter()
        .position(|n| n == "count")
        .ok_or(ReviewError::Header)?;
    let percent_at = match &names[count_at + 1..] {
        [] => None,
        [p] if p == "percent" => Some(count_at + 1),
        _ => return Err(ReviewError::Header),
    };
    let dims = count_at;
    if dims == 0 || dims > MAX_DIMENSIONS {
        return Err(ReviewError::Header);
    }
    let mut categories: Vec<Vec<String>> = vec![Vec::new(); dims];
    let mut rows: Vec<Row> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i as u64 + 2;
        if i >= MAX_ROWS {
            return Err(ReviewError::TooLarge);
        }
        let record = record.map_err(|e| ReviewError::Csv {
            line,
            problem: e.to_string(),
        })?;
        let mut coords = Vec::with_capacity(dims);
        for (d, list) in categories.iter_mut().enumerate() {
            let text = record[d].trim();
            if is_total(text) {
                coords.push(None);
                continue;
            }
            let at = match list.iter().position(|c| c == text) {
                Some(at) => at,
                None => {
                    list.push(text.to_owned());
                    list.len() - 1
                }
            };
            coords.push(Some(at));
        }
        let text = record[count_at].trim();
        let count = match text {
            "" | "#" => None,
            t if t.starts_with('-') => return Err(ReviewError::Negative { line }),
            t => Some(t.parse::<u64>().map_err(|_| ReviewError::Count {
                line,
                text: t.chars().take(20).collect(),
            })?),
        };
        // A blank or masked (`#`) percentage shows nothing.
        let percent = percent_at.is_some_and(|p| !matches!(record[p].trim(), "" | "#"));
        rows.push(Row {
            line,
            coords,
            count,
            percent,
        });
    }
    let sizes: Vec<usize> = categories.iter().map(|c| c.len().max(1)).collect();
    sizes
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n + 1))
        .filter(|&c| c <= MAX_CELLS)
        .ok_or(ReviewError::TooManyCells)?;
    let mut counts = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut percent = Vec::new();
    for Row {
        line,
        coords,
        count,
        percent: shows_percent,
    } in rows
    {
        let full: Vec<usize> = coords
            .iter()
            .zip(&sizes)
            .map(|(c, &n)| c.unwrap_or(n))
            .collect();
        if !seen.insert(full.clone()) {
            return Err(ReviewError::Duplicate {
                line,
                cell: label(&categories, &sizes, &full),
            });
        }
        if let Some(count) = count {
            counts.insert(full.clone(), count);
        } else if shows_percent {
            percent.push(full.clone());
        }
    }
    Ok(Parsed {
        sizes,
        categories,
        counts,
        percent,
    })
}

fn label(categories: &[Vec<String>], sizes: &[usize], coords: &[usize]) -> Vec<String> {
    coords
        .iter()
        .enumerate()
        .map(|(d, &c)| {
            if c >= sizes[d] {
                "Total".to_owned()
            } else {
                categories[d].get(c).cloned().unwrap_or_default()
            }
        })
        .collect()
}

/// Reviews an uploaded table at `threshold`.
pub fn review(csv_text: &[u8], threshold: u64) -> Result<Review, ReviewError> {
    let parsed = parse(csv_text)?;
    let sizes = &parsed.sizes;
    let interior: Vec<u64> = vec![0; sizes.iter().product()];
    // The shape only; every value is set below, unknown ones stay 0 and are never read.
    let shape = Table::from_interior(sizes, &interior).map_err(|_| ReviewError::TooManyCells)?;
    let mut values = vec![0u64; shape.len()];
    let mut known = vec![false; shape.len()];
    for (coords, &count) in &parsed.counts {
        let index = shape.index(coords);
        values[index] = count;
        known[index] = true;
    }
    let table = Table::with_values(sizes, values);
    let equations = table.equations();
    for eq in &equations {
        if known[eq.total] && eq.parts.iter().all(|&p| known[p]) {
            let sum: u64 = eq.parts.iter().map(|&p| table.values()[p]).sum();
            if sum != table.values()[eq.total] {
                return Err(ReviewError::NotAdditive {
                    total: label(&parsed.categories, sizes, &table.coords(eq.total)),
                    found: table.values()[eq.total],
                    sum,
                });
            }
        }
    }
    let name = |cell: usize| label(&parsed.categories, sizes, &table.coords(cell));
    let mut findings = Vec::new();
    for (cell, (&v, &shown)) in table.values().iter().zip(&known).enumerate() {
        if shown && v > 0 && v < threshold {
            findings.push(Finding::SmallCellShown {
                cell: name(cell),
                count: v,
                fix: format!("suppress this count (below {threshold}) and enough others in its rows and columns that it cannot be worked out"),
            });
        }
    }
    let hidden: Vec<bool> = known.iter().map(|k| !k).collect();
    let membership = table.membership(&equations);
    for group in components(&table, &equations, &hidden) {
        // A missing margin that shares no line with a suppressed count hides nothing.
        let found =
            solve_component(&table, &equations, &membership, &group, &hidden).map_err(|_| {
                ReviewError::NotAdditive {
                    total: name(group[0]),
                    found: 0,
                    sum: 0,
                }
            })?;
        for (&cell, interval) in group.iter().zip(found) {
            if !interval.protects(threshold) {
                findings.push(Finding::SuppressedRecoverable {
                    cell: name(cell),
                    interval,
                    fix: format!(
                        "a reader can tell this count lies in [{}, {}]: suppress another count (at least {threshold}) in one of its rows or columns, or the total that gives it away",
                        interval.low,
                        interval.high
                    ),
                });
            }
        }
    }
    for coords in &parsed.percent {
        findings.push(Finding::PercentageReveals {
            cell: label(&parsed.categories, sizes, coords),
            fix: "remove the percentage of a suppressed count: with its total it gives the count away".into(),
        });
    }
    Ok(Review {
        threshold,
        cells: table.len(),
        passes: findings.is_empty(),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(csv: &str) -> Vec<Finding> {
        review(csv.as_bytes(), 11).unwrap().findings
    }

    const GOOD: &str = "county,gender,count\n\
        A,F,#\nA,M,#\nA,Total,40\n\
        B,F,#\nB,M,#\nB,Total,55\n\
        C,F,30\nC,M,44\nC,Total,74\n\
        Total,F,50\nTotal,M,119\nTotal,Total,169\n";

    #[test]
    fn a_correct_table_passes() {
        let r = review(GOOD.as_bytes(), 11).unwrap();
        assert!(r.passes, "{:?}", r.findings);
    }

    #[test]
    fn a_shown_seven_is_found() {
        let bad = GOOD.replace("C,F,30\nC,M,44", "C,F,7\nC,M,67");
        let found = problems(&bad);
        assert!(
            found.iter().any(|f| matches!(f, Finding::SmallCellShown { cell, count: 7, .. } if cell == &["C", "F"])),
            "{found:?}"
        );
    }

    #[test]
    fn a_total_minus_shown_cells_revealing_a_suppressed_four_is_found() {
        // Row A: F suppressed (4), M shown (36), total 40: F = 40 - 36.
        let bad = "county,gender,count\n\
            A,F,#\nA,M,36\nA,Total,40\n\
            B,F,20\nB,M,35\nB,Total,55\n\
            Total,F,24\nTotal,M,71\nTotal,Total,95\n";
        let found = problems(bad);
        assert!(
            found.iter().any(
                |f| matches!(f, Finding::SuppressedRecoverable { cell, interval, .. }
                if cell == &["A", "F"] && interval.is_exact() && (interval.low - 4.0).abs() < 1e-6)
            ),
            "{found:?}"
        );
    }

    #[test]
    fn a_percentage_revealing_a_three_is_found() {
        let bad = "county,gender,count,percent\n\
            A,F,#,7.5\nA,M,#,\nA,Total,40,100\n\
            B,F,#,\nB,M,#,\nB,Total,55,100\n\
            C,F,30,\nC,M,44,\nC,Total,74,\n\
            Total,F,50,\nTotal,M,119,\nTotal,Total,169,\n";
        let found = problems(bad);
        assert!(
            found.iter().any(
                |f| matches!(f, Finding::PercentageReveals { cell, .. } if cell == &["A", "F"])
            ),
            "{found:?}"
        );
    }

    #[test]
    fn bad_uploads_are_refused_by_name() {
        let refused = |csv: &str| review(csv.as_bytes(), 11).unwrap_err();
        assert_eq!(refused("county,total\nA,3\n"), ReviewError::Header);
        assert!(matches!(
            refused("county,count\nA,-3\n"),
            ReviewError::Negative { line: 2 }
        ));
        assert!(matches!(
            refused("county,count\nA,three\n"),
            ReviewError::Count { line: 2, .. }
        ));
        assert!(matches!(
            refused("county,count\nA,30\nA,31\n"),
            ReviewError::Duplicate { line: 3, .. }
        ));
        assert!(matches!(
            refused("county,count\nA,30\nB,31\nTotal,60\n"),
            ReviewError::NotAdditive {
                found: 60,
                sum: 61,
                ..
            }
        ));
        assert!(matches!(
            refused("county,count\nA\n"),
            ReviewError::Csv { line: 2, .. }
        ));
        assert_eq!(
            review(&vec![b'a'; MAX_UPLOAD_BYTES + 1], 11).unwrap_err(),
            ReviewError::TooLarge
        );
    }
}
