//! The fewest cells a protected suppression can hide, found exactly, to measure how much more
//! `suppress` hides (its information loss) on tables small enough for this to finish.
//!
//! A binary program (`microlp`'s branch and bound) chooses the cells; every primary cell is
//! chosen, and no chosen cell may be alone in a line of the table (a line with one unknown
//! gives it away). Its optimum is a lower bound. The attacker's programs (`audit`) then check
//! the chosen pattern: when it protects every cell it is a minimum; otherwise a cut removes
//! it, and every pattern the failure shows to be unsafe too, and the program runs again:
//!
//! - a primary cell left unprotected stays unprotected under every pattern that hides none of
//!   the shown cells on its group's lines (its group can then only shrink, and the attacker
//!   knows the rest), so one of those must be chosen;
//! - likewise a complementary cell known exactly stays known under such a pattern, so hiding
//!   it needs one of them chosen.

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOutcome};

use std::collections::HashMap;

use super::audit::{audit, components, AuditError};
use super::table::Table;

/// Why the exact minimum was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExactError {
    /// The attacker's programs failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The binary program failed or found nothing (every cell hidden is always a solution, so
    /// this is a solver defect).
    #[error("the binary program failed: {0}")]
    Solver(String),
    /// More rounds than allowed: the table is too large to solve exactly.
    #[error("no proven minimum after {0} rounds")]
    Rounds(usize),
}

/// The exact minimum: how many cells are hidden, primary cells included, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minimum {
    /// Every hidden cell, by index.
    pub hidden: Vec<usize>,
    /// Rounds of the cut loop it took.
    pub rounds: usize,
}

/// The fewest cells to hide so that every primary cell of `table` under `threshold` is
/// protected and no hidden cell is known exactly; gives up after `max_rounds` cuts.
pub fn minimum(table: &Table, threshold: u64, max_rounds: usize) -> Result<Minimum, ExactError> {
    let primary: Vec<bool> = table
        .values()
        .iter()
        .map(|&v| v > 0 && v < threshold)
        .collect();
    if !primary.contains(&true) {
        return Ok(Minimum {
            hidden: Vec::new(),
            rounds: 0,
        });
    }
    let equations = table.equations();
    let membership = table.membership(&equations);
    // Each cut: the cells outside a failed pattern, at least one of which must be hidden
    // (when `when` is hidden, for a complementary cell's cut).
    let mut cuts: Vec<(Option<usize>, Vec<usize>)> = Vec::new();
    for round in 1..=max_rounds {
        let mut problem = Problem::new(OptimizationDirection::Minimize);
        let x: Vec<_> = (0..table.len())
            .map(|c| {
                if primary[c] {
                    problem.add_integer_var(1.0, (1, 1))
                } else {
                    problem.add_binary_var(1.0)
                }
            })
            .collect();
        for eq in &equations {
            let line: Vec<usize> = std::iter::once(eq.total)
                .chain(eq.parts.iter().copied())
                .collect();
            for &cell in &line {
                // The others of the line sum to at least this cell's choice.
                let mut terms: Vec<_> = line
                    .iter()
                    .filter(|&&c| c != cell)
                    .map(|&c| (x[c], 1.0))
                    .collect();
                terms.push((x[cell], -1.0));
                problem.add_constraint(terms.as_slice(), ComparisonOp::Ge, 0.0);
            }
        }
        for (when, outside) in &cuts {
            let mut terms: Vec<_> = outside.iter().map(|&c| (x[c], 1.0)).collect();
            match when {
                Some(cell) => {
                    terms.push((x[*cell], -1.0));
                    problem.add_constraint(terms.as_slice(), ComparisonOp::Ge, 0.0);
                }
                None => problem.add_constraint(terms.as_slice(), ComparisonOp::Ge, 1.0),
            }
        }
        let solution = match problem.solve() {
            Ok(SolveOutcome::Solution(solution)) => solution,
            Ok(other) => return Err(ExactError::Solver(format!("{other:?}"))),
            Err(e) => return Err(ExactError::Solver(e.to_string())),
        };
        let hidden: Vec<bool> = x.iter().map(|&v| solution.var_value(v) > 0.5).collect();
        let intervals = audit(table, &hidden)?;
        // Each group's neighbours: the shown cells on its lines. A pattern that hides none of
        // them leaves the group's cells at most as free as now (see the module's doc).
        let mut neighbours_of = HashMap::new();
        for group in components(table, &equations, &hidden) {
            let mut around: Vec<usize> = group
                .iter()
                .flat_map(|&c| membership[c].iter())
                .flat_map(|&e| {
                    std::iter::once(equations[e].total).chain(equations[e].parts.iter().copied())
                })
                .filter(|&c| !hidden[c])
                .collect();
            around.sort_unstable();
            around.dedup();
            for &c in &group {
                neighbours_of.insert(c, around.clone());
            }
        }
        let mut failed = false;
        for (&cell, interval) in &intervals {
            let unsafe_cell = if primary[cell] {
                !interval.protects(threshold)
            } else {
                interval.is_exact()
            };
            if unsafe_cell {
                failed = true;
                let when = (!primary[cell]).then_some(cell);
                cuts.push((when, neighbours_of[&cell].clone()));
            }
        }
        if !failed {
            return Ok(Minimum {
                hidden: (0..table.len()).filter(|&c| hidden[c]).collect(),
                rounds: round,
            });
        }
    }
    Err(ExactError::Rounds(max_rounds))
}

/// Small tables like those of small-area health data (most cells small or empty), for
/// comparing `suppress` with the exact minimum: two and three dimensions of 2 to 5 categories,
/// margins included, up to a few hundred cells. The same seed gives the same tables.
pub fn small_tables(count: usize, seed: u64) -> Vec<Table> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let dims = rng.gen_range(2..=3);
            let sizes: Vec<usize> = (0..dims)
                .map(|_| rng.gen_range(2..=if dims == 2 { 5 } else { 4 }))
                .collect();
            let interior: Vec<u64> = (0..sizes.iter().product::<usize>())
                .map(|_| match rng.gen_range(0..10) {
                    0..=2 => rng.gen_range(1..=10),
                    3 => 0,
                    _ => rng.gen_range(11..=200),
                })
                .collect();
            Table::from_interior(&sizes, &interior).expect("sizes within the limits")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disclosure::suppress::suppress;

    #[test]
    fn a_single_small_cell_in_a_two_by_two_table_needs_the_whole_rectangle() {
        // One small cell: the cheapest protection is its rectangle with the other three.
        let table = Table::from_interior(&[2, 2], &[3, 40, 50, 60]).expect("table");
        let min = minimum(&table, 11, 50).expect("minimum");
        assert_eq!(min.hidden.len(), 4);
        let (p, c) = suppress(&table, 11).expect("suppress").counts();
        assert_eq!(p + c, 4);
    }

    #[test]
    fn nothing_small_hides_nothing() {
        let table = Table::from_interior(&[2, 3], &[30, 40, 0, 60, 12, 11]).expect("table");
        assert!(minimum(&table, 11, 5).expect("minimum").hidden.is_empty());
    }

    #[test]
    fn suppression_hides_at_most_a_fifth_more_than_the_minimum_on_small_two_way_tables() {
        let mut compared = 0;
        for table in small_tables(24, 11)
            .into_iter()
            .filter(|t| t.sizes().len() == 2)
        {
            let Ok(exact) = minimum(&table, 11, 100) else {
                continue;
            };
            let (p, c) = suppress(&table, 11).expect("suppress").counts();
            assert!(
                (p + c) as f64 <= 1.2 * exact.hidden.len() as f64,
                "{:?}: {} hidden, minimum {}",
                table.sizes(),
                p + c,
                exact.hidden.len()
            );
            compared += 1;
        }
        assert!(compared >= 8, "only {compared} tables compared");
    }
}
