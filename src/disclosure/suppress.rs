//! Small-cell suppression with its proof (seed 003; CMS cell-size policy): every non-zero cell
//! under the threshold is suppressed (primary), then further cells (complementary) until the
//! attacker's problem, solved by `audit`, leaves every primary cell an interval at least the
//! threshold wide that reaches the threshold, and no suppressed cell exactly known.
//!
//! Complementary cells come first from hypercubes (`cube.rs`): each primary cell gets the
//! cheapest cube of suppressed cells that lets it move by at least the threshold, and the cube
//! is its proof. The proof is then checked: a group of suppressed cells small enough
//! (`EXACT_GROUP`) is solved exactly by the attacker's linear programs (`audit.rs`), and every
//! cell must come out safe; a larger group keeps the cubes' intervals, which lie inside the
//! attacker's exact ones.
//!
//! When no cube protects a primary cell, or the exact check disagrees, the slower search
//! takes over from what is suppressed: every line with a single suppressed cell gets a second
//! (a line with one unknown gives it away); then, while the exact audit finds a cell exposed,
//! one more cell in one of its lines is suppressed, the smallest at least the threshold, an
//! interior cell before a margin. Suppression only grows, so it ends: at worst every cell in
//! reach is suppressed and nothing is bounded.

use serde::Serialize;

use super::audit::{components, solve_component, AuditError, Interval};
use super::cube;
use super::exact;
use super::table::{Equation, Table};

/// Largest group of suppressed cells whose intervals are solved exactly as a check of the
/// cubes (two linear programs per cell); larger groups keep the cubes' intervals.
const EXACT_GROUP: usize = 100;

/// Largest table whose complementary cells are pruned (each trial solves its group again);
/// on the 55,000-cell benchmark pruning took half a minute per 1,000 trials and showed none
/// of the cubes' cells unneeded.
const PRUNE_CELLS: usize = 5_000;

/// Rounds the exact minimum of a small table may take before the heuristic's pattern is kept.
const EXACT_ROUNDS: usize = 20;

/// Why a cell is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Shown.
    Published,
    /// Suppressed for its own small value.
    Primary,
    /// Suppressed so that a primary cell cannot be worked out.
    Complementary,
}

/// A suppressed table and its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// The threshold applied.
    pub threshold: u64,
    /// Every cell's status, by index.
    pub status: Vec<CellStatus>,
    /// Every suppressed cell's interval as the attacker can bound it, by index.
    pub intervals: Vec<Option<Interval>>,
}

impl Suppression {
    /// Primary suppression alone, for a table published without margins: with no total
    /// published, no equation ties a suppressed cell to anything shown, so the attacker's
    /// exact interval of each is `[0, unbounded)`.
    pub fn without_margins(table: &Table, threshold: u64) -> Result<Suppression, SuppressError> {
        if threshold < 1 {
            return Err(SuppressError::Threshold);
        }
        let mut status = vec![CellStatus::Published; table.len()];
        let mut intervals = vec![None; table.len()];
        for (cell, &value) in table.values().iter().enumerate() {
            if !table.is_margin(cell) && value > 0 && value < threshold {
                status[cell] = CellStatus::Primary;
                intervals[cell] = Some(Interval {
                    low: 0.0,
                    high: f64::INFINITY,
                    exact: true,
                });
            }
        }
        Ok(Suppression {
            threshold,
            status,
            intervals,
        })
    }

    /// Whether every suppressed cell has an interval that shows it safe: the check run on a
    /// suppression before anything is published.
    pub fn is_proved(&self) -> bool {
        self.status
            .iter()
            .zip(&self.intervals)
            .all(|(&s, i)| match (s, i) {
                (CellStatus::Published, _) => true,
                (s, Some(interval)) => safe(s, interval, self.threshold),
                (_, None) => false,
            })
    }

    /// How many cells are suppressed, primary and complementary.
    pub fn counts(&self) -> (usize, usize) {
        let count = |s| self.status.iter().filter(|&&x| x == s).count();
        (count(CellStatus::Primary), count(CellStatus::Complementary))
    }
}

/// Why suppression could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressError {
    /// A threshold below 1.
    #[error("the threshold must be at least 1")]
    Threshold,
    /// The audit failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Whether a suppressed cell is safe: a primary cell protected at the threshold, any other
/// not exactly known.
fn safe(status: CellStatus, interval: &Interval, threshold: u64) -> bool {
    match status {
        CellStatus::Primary => interval.protects(threshold),
        _ => !interval.is_exact(),
    }
}

/// Suppresses `table` at `threshold` and proves it (see the module documentation).
pub fn suppress(table: &Table, threshold: u64) -> Result<Suppression, SuppressError> {
    suppress_with(table, threshold, EXACT_ROUNDS)
}

/// [`suppress`] with the exact minimum of a small table given `exact_rounds` rounds (0: the
/// heuristic alone, as the information-loss benchmark compares it).
pub fn suppress_with(
    table: &Table,
    threshold: u64,
    exact_rounds: usize,
) -> Result<Suppression, SuppressError> {
    if threshold < 1 {
        return Err(SuppressError::Threshold);
    }
    let status: Vec<CellStatus> = table
        .values()
        .iter()
        .map(|&v| {
            if v > 0 && v < threshold {
                CellStatus::Primary
            } else {
                CellStatus::Published
            }
        })
        .collect();
    let equations = table.equations();
    let membership = table.membership(&equations);
    let primary = status.clone();
    let mut found = from_cubes(table, &equations, &membership, status, threshold)?;
    if table.len() <= EXACT_GROUP && exact_rounds > 0 {
        // A small table may yield to the exact minimum (`exact.rs`) in a few rounds; when it
        // does, and hides fewer cells, it is kept, proved like any other pattern.
        if let Ok(minimum) = exact::minimum(table, threshold, exact_rounds) {
            if minimum.hidden.len() < hidden_count(&found) {
                let mut status = primary;
                for cell in minimum.hidden {
                    if status[cell] == CellStatus::Published {
                        status[cell] = CellStatus::Complementary;
                    }
                }
                let none = vec![None; table.len()];
                if let Some(proved) =
                    prove(table, &equations, &membership, &status, &none, threshold)?
                {
                    found = proved;
                }
            }
        }
    }
    Ok(found)
}

fn hidden_count(s: &Suppression) -> usize {
    let (primary, complementary) = s.counts();
    primary + complementary
}

/// Complementary cells from hypercubes, proved (or, failing that, the line search), pruned.
fn from_cubes(
    table: &Table,
    equations: &[Equation],
    membership: &[Vec<usize>],
    mut status: Vec<CellStatus>,
    threshold: u64,
) -> Result<Suppression, SuppressError> {
    let (proved, unprotected) = cube::protect(table, &mut status, threshold);
    if unprotected.is_empty() {
        if let Some(done) = prove(table, equations, membership, &status, &proved, threshold)? {
            return Ok(prune(table, equations, membership, done)?);
        }
    }
    let found = search(table, equations, membership, status, threshold)?;
    Ok(prune(table, equations, membership, found)?)
}

/// The suppressed cells connected to `seeds` through lines, under `hidden`, sorted.
fn group_of(
    seeds: &[usize],
    hidden: &[bool],
    equations: &[Equation],
    membership: &[Vec<usize>],
) -> Vec<usize> {
    let mut seen: std::collections::HashSet<usize> =
        seeds.iter().copied().filter(|&c| hidden[c]).collect();
    let mut queue: Vec<usize> = seen.iter().copied().collect();
    while let Some(cell) = queue.pop() {
        for &e in &membership[cell] {
            for other in equation_cells(&equations[e]) {
                if hidden[other] && seen.insert(other) {
                    queue.push(other);
                }
            }
        }
    }
    let mut group: Vec<usize> = seen.into_iter().collect();
    group.sort_unstable();
    group
}

/// Publishes again each complementary cell the proof can do without, largest first: the cell
/// is shown on trial, the groups it belonged to are solved exactly again, and it stays shown
/// only if every cell in them is still safe. Groups larger than [`EXACT_GROUP`] are kept as
/// they are (their proof is the cubes'), and so are tables over [`PRUNE_CELLS`].
fn prune(
    table: &Table,
    equations: &[Equation],
    membership: &[Vec<usize>],
    mut found: Suppression,
) -> Result<Suppression, AuditError> {
    if table.len() > PRUNE_CELLS {
        return Ok(found);
    }
    let mut order: Vec<usize> = (0..table.len())
        .filter(|&c| found.status[c] == CellStatus::Complementary)
        .collect();
    order.sort_by_key(|&c| (std::cmp::Reverse(table.values()[c]), c));
    let mut hidden: Vec<bool> = found
        .status
        .iter()
        .map(|&s| s != CellStatus::Published)
        .collect();
    for cell in order {
        if group_of(&[cell], &hidden, equations, membership).len() > EXACT_GROUP {
            continue;
        }
        hidden[cell] = false;
        // The cells left of its group, regrouped without it.
        let neighbours: Vec<usize> = membership[cell]
            .iter()
            .flat_map(|&e| equation_cells(&equations[e]))
            .filter(|&c| hidden[c])
            .collect();
        let remaining = group_of(&neighbours, &hidden, equations, membership);
        let mut trial = Vec::new();
        let mut safe_all = true;
        for group in components_within(&remaining, &hidden, equations, membership) {
            let intervals = solve_component(table, equations, membership, &group, &hidden)?;
            for (&c, interval) in group.iter().zip(intervals) {
                safe_all &= safe(found.status[c], &interval, found.threshold);
                trial.push((c, interval));
            }
            if !safe_all {
                break;
            }
        }
        if safe_all {
            found.status[cell] = CellStatus::Published;
            found.intervals[cell] = None;
            for (c, interval) in trial {
                found.intervals[c] = Some(interval);
            }
        } else {
            hidden[cell] = true;
        }
    }
    Ok(found)
}

/// `cells` split into the groups they form under `hidden`.
fn components_within(
    cells: &[usize],
    hidden: &[bool],
    equations: &[Equation],
    membership: &[Vec<usize>],
) -> Vec<Vec<usize>> {
    let mut left: std::collections::BTreeSet<usize> = cells.iter().copied().collect();
    let mut groups = Vec::new();
    while let Some(&first) = left.iter().next() {
        let group = group_of(&[first], hidden, equations, membership);
        for c in &group {
            left.remove(c);
        }
        groups.push(group);
    }
    groups
}

/// The proof of a cube suppression: exact intervals for small groups, the cubes' for larger
/// ones; `None` when some cell is not shown safe.
fn prove(
    table: &Table,
    equations: &[Equation],
    membership: &[Vec<usize>],
    status: &[CellStatus],
    proved: &[Option<Interval>],
    threshold: u64,
) -> Result<Option<Suppression>, AuditError> {
    let hidden: Vec<bool> = status.iter().map(|&s| s != CellStatus::Published).collect();
    let mut intervals = vec![None; table.len()];
    for group in components(table, equations, &hidden) {
        let found: Vec<Option<Interval>> = if group.len() <= EXACT_GROUP {
            solve_component(table, equations, membership, &group, &hidden)?
                .into_iter()
                .map(Some)
                .collect()
        } else {
            group.iter().map(|&cell| proved[cell]).collect()
        };
        for (&cell, interval) in group.iter().zip(found) {
            match interval {
                Some(interval) if safe(status[cell], &interval, threshold) => {
                    intervals[cell] = Some(interval)
                }
                _ => return Ok(None),
            }
        }
    }
    Ok(Some(Suppression {
        threshold,
        status: status.to_vec(),
        intervals,
    }))
}

/// The exact search: from `status`, suppress more until the attacker's linear programs find
/// every suppressed cell safe.
fn search(
    table: &Table,
    equations: &[Equation],
    membership: &[Vec<usize>],
    mut status: Vec<CellStatus>,
    threshold: u64,
) -> Result<Suppression, SuppressError> {
    let suppressed = |status: &[CellStatus]| -> Vec<bool> {
        status.iter().map(|&s| s != CellStatus::Published).collect()
    };
    // Solved groups, reused while they are unchanged.
    let mut solved: std::collections::HashMap<Vec<usize>, Vec<Interval>> =
        std::collections::HashMap::new();
    loop {
        second_in_every_line(table, equations, &mut status, threshold);
        let hidden = suppressed(&status);
        let mut intervals = vec![None; table.len()];
        let mut exposed = Vec::new();
        for group in components(table, equations, &hidden) {
            let found = match solved.get(&group) {
                Some(found) => found.clone(),
                None => {
                    let found = solve_component(table, equations, membership, &group, &hidden)?;
                    solved.insert(group.clone(), found.clone());
                    found
                }
            };
            for (&cell, interval) in group.iter().zip(found) {
                if !safe(status[cell], &interval, threshold) {
                    exposed.push(cell);
                }
                intervals[cell] = Some(interval);
            }
        }
        if exposed.is_empty() {
            return Ok(Suppression {
                threshold,
                status,
                intervals,
            });
        }
        let mut added = false;
        for cell in exposed {
            let candidates = membership[cell]
                .iter()
                .flat_map(|&e| equation_cells(&equations[e]))
                .filter(|&c| status[c] == CellStatus::Published);
            if let Some(pick) = best(table, candidates, threshold) {
                status[pick] = CellStatus::Complementary;
                added = true;
            }
        }
        if !added {
            // Every cell in reach is suppressed and still exposed: this cannot happen for a
            // table whose cells are all suppressed (nothing is then bounded above), so some
            // published cell remains in a line of the group; suppress the smallest anywhere.
            let pick = best(
                table,
                (0..table.len()).filter(|&c| status[c] == CellStatus::Published),
                threshold,
            );
            match pick {
                Some(pick) => status[pick] = CellStatus::Complementary,
                None => {
                    return Ok(Suppression {
                        threshold,
                        status,
                        intervals,
                    })
                }
            }
        }
    }
}

fn equation_cells(eq: &Equation) -> impl Iterator<Item = usize> + '_ {
    std::iter::once(eq.total).chain(eq.parts.iter().copied())
}

/// Gives every line with exactly one suppressed cell a second, until none is left.
fn second_in_every_line(
    table: &Table,
    equations: &[Equation],
    status: &mut [CellStatus],
    threshold: u64,
) {
    loop {
        let mut changed = false;
        for eq in equations {
            let hidden = equation_cells(eq)
                .filter(|&c| status[c] != CellStatus::Published)
                .count();
            if hidden != 1 {
                continue;
            }
            let candidates = equation_cells(eq).filter(|&c| status[c] == CellStatus::Published);
            if let Some(pick) = best(table, candidates, threshold) {
                status[pick] = CellStatus::Complementary;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The cell to suppress among `candidates`: an interior cell before a margin, then the
/// smallest value at least the threshold, then the smallest non-zero, then zeros; ties by
/// index, so the result is deterministic.
fn best(table: &Table, candidates: impl Iterator<Item = usize>, threshold: u64) -> Option<usize> {
    candidates.min_by_key(|&c| {
        let v = table.values()[c];
        let class = if v >= threshold {
            0
        } else if v > 0 {
            1
        } else {
            2
        };
        (table.is_margin(c), class, v, c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(s: &Suppression, t: &Table) -> Vec<String> {
        t.values()
            .iter()
            .zip(&s.status)
            .map(|(v, st)| match st {
                CellStatus::Published => v.to_string(),
                _ => "#".into(),
            })
            .collect()
    }

    #[test]
    fn golden_two_by_three() {
        // Interior:      margins:
        //  3  20  30  |  53
        // 40  50  60  | 150
        // 43  70  90  | 203
        let t = Table::from_interior(&[2, 3], &[3, 20, 30, 40, 50, 60]).unwrap();
        let s = suppress(&t, 11).unwrap();
        // The 3 is primary; its row and column each need a second cell: the smallest at
        // least 11 in each (20 in its row, 40 in its column), then 50 to close the rectangle.
        assert_eq!(
            shown(&s, &t),
            vec!["#", "#", "30", "53", "#", "#", "60", "150", "43", "70", "90", "203"]
        );
        assert_eq!(s.counts(), (1, 3));
        let iv = s.intervals[t.index(&[0, 0])].unwrap();
        assert!(iv.protects(11), "{iv:?}");
    }

    #[test]
    fn golden_nothing_small_nothing_suppressed() {
        let t = Table::from_interior(&[2, 2], &[0, 20, 30, 40]).unwrap();
        let s = suppress(&t, 11).unwrap();
        assert_eq!(s.counts(), (0, 0));
        assert!(s.status.iter().all(|&x| x == CellStatus::Published));
    }

    #[test]
    fn golden_small_margin_is_primary_too() {
        // Row 0 totals 5: the row is all small, and so is its margin.
        let t = Table::from_interior(&[2, 2], &[2, 3, 30, 40]).unwrap();
        let s = suppress(&t, 11).unwrap();
        assert_eq!(s.status[t.index(&[0, 2])], CellStatus::Primary);
        for cell in 0..t.len() {
            if let Some(iv) = s.intervals[cell] {
                assert!(safe(s.status[cell], &iv, 11), "cell {cell}: {iv:?}");
            }
        }
    }

    #[test]
    fn a_threshold_below_one_is_refused() {
        let t = Table::from_interior(&[1], &[5]).unwrap();
        assert_eq!(suppress(&t, 0), Err(SuppressError::Threshold));
    }
}
