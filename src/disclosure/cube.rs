//! Hypercube protection: a cheap way to choose complementary cells that carries its own proof.
//!
//! Pick, for a cell `p`, one partner coordinate in every dimension (another category, or the
//! total). The 2^k cells whose coordinates each come from `p` or from the partner are the
//! corners of a hypercube. Adding `t` to every corner with sign `+1` and `-t` to every corner
//! with sign `-1` leaves every line's sum unchanged, where a corner's sign flips once for each
//! dimension in which it takes the partner and both `p`'s coordinate and the partner's are
//! categories (a total moves with its categories, not against them). So if every corner is
//! suppressed, the true table moved by `t` is another table the attacker cannot tell apart
//! from it, for every `t` that keeps the corners non-negative: `p` can be anything in
//! `[v - down, v + up]`, with `up` the least value of the `-1` corners and `down` the least of
//! the `+1` corners. That interval lies inside the attacker's exact one, so a cube that makes
//! it wide enough proves `p` protected, and every other corner not exactly known.

use super::audit::Interval;
use super::suppress::CellStatus;
use super::table::Table;

/// Partners tried per dimension, best first (all of them when the dimension is this small).
const PARTNERS_PER_DIMENSION: usize = 6;

/// One hypercube: its corners with their signs, and how far it can move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cube {
    /// Corner cells with their signs, `p` first with `+1`.
    pub corners: Vec<(usize, i8)>,
    /// How much `p` can grow (the least `-1` corner).
    pub up: u64,
    /// How much `p` can shrink (the least `+1` corner).
    pub down: u64,
}

impl Cube {
    /// The interval the cube proves for its corner `cell` (of sign `sign`).
    pub fn interval(&self, table: &Table, cell: usize, sign: i8) -> Interval {
        let v = table.values()[cell] as f64;
        let (grow, shrink) = if sign > 0 {
            (self.up, self.down)
        } else {
            (self.down, self.up)
        };
        // No corner moving against it: nothing bounds the cell above (`u64::MAX` stands for
        // that, and so does an infinite `high`).
        let high = if grow == u64::MAX {
            f64::INFINITY
        } else {
            v + grow as f64
        };
        Interval {
            low: (v - shrink as f64).max(0.0),
            high,
            exact: false,
        }
    }

    /// Whether the cube protects its first corner at `threshold`.
    pub fn protects(&self, table: &Table, threshold: u64) -> bool {
        let v = table.values()[self.corners[0].0];
        v.saturating_add(self.up) >= threshold && self.up.saturating_add(self.down) >= threshold
    }
}

/// The cube from `p` to `partner` (one coordinate per dimension, each different from `p`'s).
fn cube(table: &Table, p: &[usize], partner: &[usize]) -> Cube {
    let sizes = table.sizes();
    let k = p.len();
    let mut corners = Vec::with_capacity(1 << k);
    let mut coords = vec![0usize; k];
    let (mut up, mut down) = (u64::MAX, u64::MAX);
    for mask in 0..(1usize << k) {
        let mut sign = 1i8;
        for d in 0..k {
            if mask & (1 << d) != 0 {
                coords[d] = partner[d];
                if p[d] < sizes[d] && partner[d] < sizes[d] {
                    sign = -sign;
                }
            } else {
                coords[d] = p[d];
            }
        }
        let cell = table.index(&coords);
        let v = table.values()[cell];
        if sign > 0 {
            down = down.min(v);
        } else {
            up = up.min(v);
        }
        corners.push((cell, sign));
    }
    Cube { corners, up, down }
}

/// Every combination of one partner per dimension from `lists`.
fn combinations(lists: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for list in lists {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                list.iter().map(move |&q| {
                    let mut next = prefix.clone();
                    next.push(q);
                    next
                })
            })
            .collect();
    }
    out
}

/// Partner candidates per dimension for `p`, best first: the line neighbour (p with that
/// coordinate replaced) already suppressed, then the largest neighbour (it lets `p` move
/// most); zeros last (a zero corner cannot shrink). All of them when `all`.
fn partners(table: &Table, status: &[CellStatus], p: &[usize], all: bool) -> Vec<Vec<usize>> {
    table
        .sizes()
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            let mut list: Vec<usize> = (0..=n).filter(|&q| q != p[d]).collect();
            let mut coords = p.to_vec();
            list.sort_by_key(|&q| {
                coords[d] = q;
                let cell = table.index(&coords);
                let v = table.values()[cell];
                (
                    status[cell] == CellStatus::Published,
                    v == 0,
                    std::cmp::Reverse(v),
                    q,
                )
            });
            if !all {
                list.truncate(PARTNERS_PER_DIMENSION);
            }
            list
        })
        .collect()
}

/// A cube of already suppressed cells that protects `p`, the widest.
pub fn existing(table: &Table, status: &[CellStatus], p: usize, threshold: u64) -> Option<Cube> {
    let coords = table.coords(p);
    combinations(&partners(table, status, &coords, false))
        .iter()
        .map(|partner| cube(table, &coords, partner))
        .filter(|c| {
            c.corners
                .iter()
                .all(|&(cell, _)| status[cell] != CellStatus::Published)
                && c.protects(table, threshold)
        })
        .max_by_key(|c| {
            (
                c.up.saturating_add(c.down),
                std::cmp::Reverse(c.corners.clone()),
            )
        })
}

/// The cube that protects `p` at the least cost: fewest cells newly suppressed, then the least
/// value newly hidden; `None` when no cube of the partners tried protects it.
pub fn cheapest(
    table: &Table,
    status: &[CellStatus],
    p: usize,
    threshold: u64,
    all_partners: bool,
) -> Option<Cube> {
    let coords = table.coords(p);
    combinations(&partners(table, status, &coords, all_partners))
        .iter()
        .map(|partner| cube(table, &coords, partner))
        .filter(|c| c.protects(table, threshold))
        .min_by_key(|c| {
            let new: Vec<u64> = c
                .corners
                .iter()
                .filter(|&&(cell, _)| status[cell] == CellStatus::Published)
                .map(|&(cell, _)| table.values()[cell])
                .collect();
            (new.len(), new.iter().sum::<u64>(), c.corners.clone())
        })
}

/// Protects every primary cell with a cube, suppressing its corners; returns each suppressed
/// cell's proved interval (the widest of its cubes) and the primary cells no cube protects.
pub fn protect(
    table: &Table,
    status: &mut [CellStatus],
    threshold: u64,
) -> (Vec<Option<Interval>>, Vec<usize>) {
    let mut proved: Vec<Option<Interval>> = vec![None; table.len()];
    let mut unprotected = Vec::new();
    let primaries: Vec<usize> = (0..table.len())
        .filter(|&c| status[c] == CellStatus::Primary)
        .collect();
    for p in primaries {
        let chosen = existing(table, status, p, threshold)
            .or_else(|| cheapest(table, status, p, threshold, false))
            .or_else(|| cheapest(table, status, p, threshold, true));
        let Some(chosen) = chosen else {
            unprotected.push(p);
            continue;
        };
        for &(cell, sign) in &chosen.corners {
            if status[cell] == CellStatus::Published {
                status[cell] = CellStatus::Complementary;
            }
            let interval = chosen.interval(table, cell, sign);
            let wider = proved[cell].is_none_or(|old| {
                interval.high - interval.low > old.high - old.low
                    || (cell == p && !old.protects(threshold))
            });
            // A primary cell keeps an interval that protects it; any other the widest.
            if wider && (cell != p || interval.protects(threshold)) {
                proved[cell] = Some(interval);
            }
        }
    }
    (proved, unprotected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cube is a direction the table's lines cannot see: moving the corners by their
    /// signs leaves every line's sum as it was.
    #[test]
    fn cubes_keep_every_line_sum() {
        for sizes in [vec![3usize], vec![3, 4], vec![2, 3, 2], vec![2, 2, 2, 2]] {
            let cells: usize = sizes.iter().product();
            let interior: Vec<u64> = (0..cells as u64).map(|i| 50 + i).collect();
            let table = Table::from_interior(&sizes, &interior).unwrap();
            let status = vec![CellStatus::Published; table.len()];
            for p in 0..table.len() {
                let coords = table.coords(p);
                for partner in combinations(&partners(&table, &status, &coords, true)) {
                    let c = cube(&table, &coords, &partner);
                    let mut moved: Vec<i64> = table.values().iter().map(|&v| v as i64).collect();
                    for &(cell, sign) in &c.corners {
                        moved[cell] += i64::from(sign);
                    }
                    let moved: Vec<u64> = moved.into_iter().map(|v| v as u64).collect();
                    assert!(
                        Table::from_cells(&sizes, &moved).is_ok(),
                        "{sizes:?} p {coords:?} partner {partner:?}"
                    );
                }
            }
        }
    }
}
