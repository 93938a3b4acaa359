//! The attacker's problem, solved: for every suppressed cell, the least and the greatest value
//! it can take given every published cell, the table's additivity and non-negativity (two
//! linear programs, `microlp`). Suppressed cells that share no equation, even through other
//! suppressed cells, cannot inform each other, so each connected group is solved on its own.

use std::collections::HashMap;

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolutionStatus, SolveOutcome};
use serde::Serialize;

use super::table::{Equation, Table};

/// What an attacker can learn of a suppressed cell: its feasible values lie in
/// `[low, high]` (exactly, or at least, see `exact`); `high` is infinite when nothing bounds
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The least feasible value.
    pub low: f64,
    /// The greatest feasible value (`f64::INFINITY`: unbounded).
    #[serde(serialize_with = "finite_or_null")]
    pub high: f64,
    /// Whether these are the attacker's exact bounds (solved), or bounds proved to lie inside
    /// them (a hypercube's).
    pub exact: bool,
}

fn finite_or_null<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// Tolerance of the comparisons on the solver's floating-point results.
const EPSILON: f64 = 1e-6;

impl Interval {
    /// Whether the attacker knows the value exactly.
    pub fn is_exact(&self) -> bool {
        self.high - self.low < EPSILON
    }

    /// Whether a primary cell is protected at `threshold`: its interval is at least
    /// `threshold` wide and reaches `threshold`, so the attacker cannot show it lies in
    /// `1..threshold`.
    pub fn protects(&self, threshold: u64) -> bool {
        let t = threshold as f64;
        self.high >= t - EPSILON && self.high - self.low >= t - EPSILON
    }
}

/// Why the audit could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The solver found the published values inconsistent (a defect: the table is additive).
    #[error("the attacker's problem for cell {0} has no solution")]
    Infeasible(usize),
    /// The solver failed.
    #[error("the solver failed on cell {cell}: {message}")]
    Solver {
        /// The cell.
        cell: usize,
        /// The solver's message.
        message: String,
    },
}

/// The groups of suppressed cells that share equations, each sorted, in order of first cell.
pub fn components(table: &Table, equations: &[Equation], suppressed: &[bool]) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..table.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for eq in equations {
        let mut cells = std::iter::once(eq.total)
            .chain(eq.parts.iter().copied())
            .filter(|&c| suppressed[c]);
        if let Some(first) = cells.next() {
            for other in cells {
                let (a, b) = (find(&mut parent, first), find(&mut parent, other));
                if a != b {
                    parent[b] = a;
                }
            }
        }
    }
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for cell in (0..table.len()).filter(|&c| suppressed[c]) {
        let root = find(&mut parent, cell);
        groups.entry(root).or_default().push(cell);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    out.sort_by_key(|g| g[0]);
    out
}

/// The intervals of one group's cells (in the group's order).
pub fn solve_component(
    table: &Table,
    equations: &[Equation],
    membership: &[Vec<usize>],
    group: &[usize],
    suppressed: &[bool],
) -> Result<Vec<Interval>, AuditError> {
    // The equations that involve the group (each involves only this group's cells, by
    // construction of the groups), each as (cell, coefficient) pairs and its constant.
    let mut touched: Vec<usize> = group
        .iter()
        .flat_map(|&c| membership[c].iter().copied())
        .collect();
    touched.sort_unstable();
    touched.dedup();
    let position: HashMap<usize, usize> = group.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let rows: Vec<(Vec<(usize, f64)>, f64)> = touched
        .iter()
        .map(|&e| {
            let eq = &equations[e];
            let mut terms = Vec::new();
            // parts - total = 0, published values moved to the right-hand side.
            let mut rhs = 0.0;
            for (cell, coefficient) in eq
                .parts
                .iter()
                .map(|&p| (p, 1.0))
                .chain(std::iter::once((eq.total, -1.0)))
            {
                if suppressed[cell] {
                    terms.push((position[&cell], coefficient));
                } else {
                    rhs -= coefficient * table.values()[cell] as f64;
                }
            }
            (terms, rhs)
        })
        .collect();
    let mut intervals = Vec::with_capacity(group.len());
    for (i, &cell) in group.iter().enumerate() {
        let low = optimize(&rows, group.len(), i, OptimizationDirection::Minimize, cell)?;
        let high = optimize(&rows, group.len(), i, OptimizationDirection::Maximize, cell)?;
        intervals.push(Interval {
            low,
            high,
            exact: true,
        });
    }
    Ok(intervals)
}

fn optimize(
    rows: &[(Vec<(usize, f64)>, f64)],
    vars: usize,
    target: usize,
    direction: OptimizationDirection,
    cell: usize,
) -> Result<f64, AuditError> {
    let mut problem = Problem::new(direction);
    let variables: Vec<_> = (0..vars)
        .map(|v| problem.add_var(if v == target { 1.0 } else { 0.0 }, (0.0, f64::INFINITY)))
        .collect();
    for (terms, rhs) in rows {
        let expr: Vec<_> = terms.iter().map(|&(v, c)| (variables[v], c)).collect();
        problem.add_constraint(expr.as_slice(), ComparisonOp::Eq, *rhs);
    }
    match problem.solve() {
        Ok(SolveOutcome::Solution(solution)) if solution.status() == SolutionStatus::Optimal => {
            Ok(solution.objective())
        }
        // A bound that is not proven optimal proves nothing.
        Ok(_) => Err(AuditError::Solver {
            cell,
            message: "no proven optimum".into(),
        }),
        Err(microlp::Error::Unbounded) => Ok(f64::INFINITY),
        Err(microlp::Error::Infeasible) => Err(AuditError::Infeasible(cell)),
        Err(e) => Err(AuditError::Solver {
            cell,
            message: e.to_string(),
        }),
    }
}

/// Every suppressed cell's interval, by cell index.
pub fn audit(table: &Table, suppressed: &[bool]) -> Result<HashMap<usize, Interval>, AuditError> {
    let equations = table.equations();
    let membership = table.membership(&equations);
    let mut out = HashMap::new();
    for group in components(table, &equations, suppressed) {
        let intervals = solve_component(table, &equations, &membership, &group, suppressed)?;
        out.extend(group.into_iter().zip(intervals));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_suppressed_cell_is_recovered_exactly_from_its_margin() {
        let t = Table::from_interior(&[2, 2], &[3, 20, 30, 40]).unwrap();
        let mut suppressed = vec![false; t.len()];
        suppressed[t.index(&[0, 0])] = true;
        let found = audit(&t, &suppressed).unwrap();
        let iv = found[&t.index(&[0, 0])];
        assert!(iv.is_exact() && (iv.low - 3.0).abs() < 1e-6, "{iv:?}");
        assert!(!iv.protects(11));
    }

    #[test]
    fn a_rectangle_of_suppressions_leaves_an_interval() {
        // 3 20 | 30 40: suppress all four interior cells; the margins pin only sums.
        let t = Table::from_interior(&[2, 2], &[3, 20, 30, 40]).unwrap();
        let mut suppressed = vec![false; t.len()];
        for c in [[0, 0], [0, 1], [1, 0], [1, 1]] {
            suppressed[t.index(&c)] = true;
        }
        let found = audit(&t, &suppressed).unwrap();
        let iv = found[&t.index(&[0, 0])];
        // x00 in [0, 23] (row 0 total 23, column 0 total 33).
        assert!(
            (iv.low - 0.0).abs() < 1e-6 && (iv.high - 23.0).abs() < 1e-6,
            "{iv:?}"
        );
        assert!(iv.protects(11));
        assert_eq!(components(&t, &t.equations(), &suppressed).len(), 1);
    }
}
