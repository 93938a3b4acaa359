//! Property tests: tables of 2 to 4 dimensions with margins and skewed counts, suppressed, then
//! attacked by a linear program written independently of `audit` (every cell a variable,
//! published cells fixed by their bounds, every line an equation, no grouping): no primary
//! cell is recovered or pinned inside `1..threshold`, no suppressed cell is known exactly, and
//! every shown cell is 0 or at least the threshold.

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus, SolveOutcome};
use proptest::prelude::*;

use super::suppress::{suppress, CellStatus};
use super::table::Table;

const THRESHOLD: u64 = 11;

/// The attacker's bounds on `cell`: min and max over every table consistent with what is
/// shown.
fn attack(table: &Table, status: &[CellStatus], cell: usize) -> (f64, f64) {
    let solve = |direction| {
        let mut problem = Problem::new(direction);
        let vars: Vec<_> = (0..table.len())
            .map(|c| {
                let objective = if c == cell { 1.0 } else { 0.0 };
                let bounds = match status[c] {
                    CellStatus::Published => {
                        let v = table.values()[c] as f64;
                        (v, v)
                    }
                    _ => (0.0, f64::INFINITY),
                };
                problem.add_var(objective, bounds)
            })
            .collect();
        for eq in table.equations() {
            let mut terms: Vec<_> = eq.parts.iter().map(|&p| (vars[p], 1.0)).collect();
            terms.push((vars[eq.total], -1.0));
            problem.add_constraint(terms.as_slice(), ComparisonOp::Eq, 0.0);
        }
        match problem.solve() {
            Ok(SolveOutcome::Solution(solution)) => {
                assert_eq!(solution.status(), SolutionStatus::Optimal);
                solution.objective()
            }
            Ok(other) => panic!("the attack did not finish: {other:?}"),
            Err(microlp::Error::Unbounded) => f64::INFINITY,
            Err(e) => panic!("the attack failed: {e}"),
        }
    };
    (
        solve(OptimizationDirection::Minimize),
        solve(OptimizationDirection::Maximize),
    )
}

/// Sizes of 2 to 4 dimensions (smaller as dimensions grow) and skewed counts: most cells small
/// or zero, some large.
fn tables() -> impl Strategy<Value = Table> {
    (2usize..=4)
        .prop_flat_map(|dims| {
            let most = match dims {
                2 => 6,
                3 => 4,
                _ => 3,
            };
            proptest::collection::vec(2usize..=most, dims)
        })
        .prop_flat_map(|sizes| {
            let cells: usize = sizes.iter().product();
            (
                Just(sizes),
                proptest::collection::vec(
                    prop_oneof![
                        3 => 0u64..=10,
                        1 => 11u64..=400,
                    ],
                    cells,
                ),
            )
        })
        .prop_map(|(sizes, interior)| Table::from_interior(&sizes, &interior).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_independent_attack_recovers_no_primary_cell(table in tables()) {
        let result = suppress(&table, THRESHOLD).unwrap();
        for (cell, &status) in result.status.iter().enumerate() {
            let value = table.values()[cell];
            match status {
                CellStatus::Published => {
                    prop_assert!(value == 0 || value >= THRESHOLD, "cell {cell} shows {value}");
                }
                CellStatus::Primary | CellStatus::Complementary => {
                    let (low, high) = attack(&table, &result.status, cell);
                    prop_assert!(high - low > 1e-6, "cell {cell} ({value}) is known exactly");
                    if status == CellStatus::Primary {
                        prop_assert!(value > 0 && value < THRESHOLD);
                        prop_assert!(
                            high >= THRESHOLD as f64 - 1e-6,
                            "primary cell {cell} ({value}) is pinned below the threshold: [{low}, {high}]"
                        );
                        prop_assert!(
                            high - low >= THRESHOLD as f64 - 1e-6,
                            "primary cell {cell} ({value}): [{low}, {high}] is narrower than the threshold"
                        );
                    }
                    // The audit's interval is the attacker's, or (a cube's) lies inside it.
                    let audited = result.intervals[cell].unwrap();
                    if audited.exact {
                        prop_assert!((audited.low - low).abs() < 1e-6);
                        prop_assert!(audited.high == high || (audited.high - high).abs() < 1e-6);
                    } else {
                        prop_assert!(audited.low >= low - 1e-6 && audited.high <= high + 1e-6);
                    }
                }
            }
        }
    }
}
