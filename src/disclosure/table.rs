//! A count table of one to four dimensions with every margin: each dimension's categories plus
//! a total, stored densely. Its additive structure is a set of equations, one per line of the
//! table (a dimension varying, the others fixed, totals included): the categories sum to the
//! total. Published cells, suppression and the attacker's problem are all stated over it.

/// Most dimensions a table may have.
pub const MAX_DIMENSIONS: usize = 4;
/// Most cells (margins included) a table may have.
pub const MAX_CELLS: usize = 2_000_000;

/// Why a table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No dimension, or more than [`MAX_DIMENSIONS`].
    #[error("a table has 1 to {MAX_DIMENSIONS} dimensions, not {0}")]
    Dimensions(usize),
    /// A dimension without categories.
    #[error("dimension {0} has no category")]
    EmptyDimension(usize),
    /// Too many cells.
    #[error("the table has more than {MAX_CELLS} cells")]
    TooLarge,
    /// The counts do not fill the table.
    #[error("expected {expected} counts, got {found}")]
    Shape {
        /// Cells the shape needs.
        expected: usize,
        /// Counts given.
        found: usize,
    },
    /// A margin is not the sum of its line.
    #[error("the table is not additive: the total at {cell:?} is {found}, its line sums to {sum}")]
    NotAdditive {
        /// The total's coordinates (`None`: the total category).
        cell: Vec<Option<usize>>,
        /// The total given.
        found: u64,
        /// What its line sums to.
        sum: u64,
    },
}

/// One line of the table: `parts` sum to `total` (cell indexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equation {
    /// The line's total cell.
    pub total: usize,
    /// Its category cells.
    pub parts: Vec<usize>,
}

/// A dense table with margins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Categories per dimension (the total not counted).
    sizes: Vec<usize>,
    /// Strides of the extended shape (each dimension `size + 1` long).
    strides: Vec<usize>,
    /// Every cell's count, margins included.
    values: Vec<u64>,
}

fn extended(sizes: &[usize]) -> Result<(Vec<usize>, usize), TableError> {
    if sizes.is_empty() || sizes.len() > MAX_DIMENSIONS {
        return Err(TableError::Dimensions(sizes.len()));
    }
    if let Some(d) = sizes.iter().position(|&n| n == 0) {
        return Err(TableError::EmptyDimension(d));
    }
    let mut strides = vec![0; sizes.len()];
    let mut total = 1usize;
    for d in (0..sizes.len()).rev() {
        strides[d] = total;
        total = total
            .checked_mul(sizes[d] + 1)
            .filter(|&t| t <= MAX_CELLS)
            .ok_or(TableError::TooLarge)?;
    }
    Ok((strides, total))
}

impl Table {
    /// A table from its interior counts (row-major over `sizes`); the margins are summed.
    pub fn from_interior(sizes: &[usize], interior: &[u64]) -> Result<Self, TableError> {
        let (strides, len) = extended(sizes)?;
        let expected: usize = sizes.iter().product();
        if interior.len() != expected {
            return Err(TableError::Shape {
                expected,
                found: interior.len(),
            });
        }
        let mut table = Self {
            sizes: sizes.to_vec(),
            strides,
            values: vec![0; len],
        };
        let mut coords = vec![0usize; sizes.len()];
        for &count in interior {
            // Add the count to every cell it is part of: each subset of its coordinates
            // replaced by the total.
            for mask in 0..(1usize << sizes.len()) {
                let index: usize = (0..sizes.len())
                    .map(|d| {
                        let c = if mask & (1 << d) != 0 {
                            sizes[d]
                        } else {
                            coords[d]
                        };
                        c * table.strides[d]
                    })
                    .sum();
                table.values[index] += count;
            }
            for d in (0..sizes.len()).rev() {
                coords[d] += 1;
                if coords[d] < sizes[d] {
                    break;
                }
                coords[d] = 0;
            }
        }
        Ok(table)
    }

    /// A table of published counts, as a reader holds it: every cell in the order of
    /// [`Table::from_cells`], suppressed ones as `None`. The attacker's programs read only the
    /// published cells, so suppressed cells are held as 0; the table is not checked for
    /// additivity (the reader cannot check it).
    pub fn from_published(sizes: &[usize], cells: &[Option<u64>]) -> Result<Self, TableError> {
        let (strides, len) = extended(sizes)?;
        if cells.len() != len {
            return Err(TableError::Shape {
                expected: len,
                found: cells.len(),
            });
        }
        Ok(Self {
            sizes: sizes.to_vec(),
            strides,
            values: cells.iter().map(|c| c.unwrap_or(0)).collect(),
        })
    }

    /// A table from every cell (row-major over the extended shape, each dimension's total
    /// last), refused unless every line sums to its total.
    pub fn from_cells(sizes: &[usize], cells: &[u64]) -> Result<Self, TableError> {
        let (strides, len) = extended(sizes)?;
        if cells.len() != len {
            return Err(TableError::Shape {
                expected: len,
                found: cells.len(),
            });
        }
        let table = Self {
            sizes: sizes.to_vec(),
            strides,
            values: cells.to_vec(),
        };
        for eq in table.equations() {
            let sum: u64 = eq.parts.iter().map(|&p| table.values[p]).sum();
            if sum != table.values[eq.total] {
                return Err(TableError::NotAdditive {
                    cell: table.labelled(eq.total),
                    found: table.values[eq.total],
                    sum,
                });
            }
        }
        Ok(table)
    }

    /// A table of the shape `sizes` over `values` as given, additive or not: for a reader's
    /// view, where unknown cells hold a placeholder that is never read. `values` must have the
    /// shape's length (a defect otherwise).
    pub(crate) fn with_values(sizes: &[usize], values: Vec<u64>) -> Self {
        let (strides, len) = extended(sizes).expect("a shape checked by the caller");
        assert_eq!(values.len(), len, "values of the table's shape");
        Self {
            sizes: sizes.to_vec(),
            strides,
            values,
        }
    }

    /// Categories per dimension.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Every cell's count.
    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// Number of cells, margins included.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the table has no cell (never: every dimension has a category).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A cell's coordinates; a dimension's total is its size.
    pub fn coords(&self, index: usize) -> Vec<usize> {
        (0..self.sizes.len())
            .map(|d| (index / self.strides[d]) % (self.sizes[d] + 1))
            .collect()
    }

    /// A cell's coordinates with the total as `None`.
    pub fn labelled(&self, index: usize) -> Vec<Option<usize>> {
        self.coords(index)
            .into_iter()
            .zip(&self.sizes)
            .map(|(c, &n)| (c < n).then_some(c))
            .collect()
    }

    /// The index of a cell by coordinates (a dimension's total is its size).
    pub fn index(&self, coords: &[usize]) -> usize {
        coords.iter().zip(&self.strides).map(|(c, s)| c * s).sum()
    }

    /// Whether a cell is a margin (a total in some dimension).
    pub fn is_margin(&self, index: usize) -> bool {
        self.coords(index)
            .iter()
            .zip(&self.sizes)
            .any(|(c, n)| c == n)
    }

    /// Every line of the table.
    pub fn equations(&self) -> Vec<Equation> {
        let mut out = Vec::new();
        for (d, &n) in self.sizes.iter().enumerate() {
            for index in 0..self.values.len() {
                // One equation per line: start from each cell whose coordinate in `d` is the
                // total.
                if (index / self.strides[d]) % (n + 1) != n {
                    continue;
                }
                let base = index - n * self.strides[d];
                out.push(Equation {
                    total: index,
                    parts: (0..n).map(|k| base + k * self.strides[d]).collect(),
                });
            }
        }
        out
    }

    /// For each cell, the equations (indexes into `equations`) it takes part in.
    pub fn membership(&self, equations: &[Equation]) -> Vec<Vec<usize>> {
        let mut of = vec![Vec::new(); self.values.len()];
        for (e, eq) in equations.iter().enumerate() {
            of[eq.total].push(e);
            for &p in &eq.parts {
                of[p].push(e);
            }
        }
        of
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_summed_and_lines_are_equations() {
        // 2 x 3 interior.
        let t = Table::from_interior(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(t.len(), 12);
        // Row totals 6 and 15, column totals 5 7 9, grand total 21.
        assert_eq!(t.values()[t.index(&[0, 3])], 6);
        assert_eq!(t.values()[t.index(&[1, 3])], 15);
        assert_eq!(t.values()[t.index(&[2, 1])], 7);
        assert_eq!(t.values()[t.index(&[2, 3])], 21);
        // Lines: 3 + 1 along dimension 0 (4 columns incl. total), 2 + 1 along dimension 1.
        assert_eq!(t.equations().len(), 4 + 3);
        assert!(t.is_margin(t.index(&[2, 0])) && !t.is_margin(t.index(&[1, 2])));
        assert_eq!(t.labelled(t.index(&[2, 1])), vec![None, Some(1)]);
        let again = Table::from_cells(&[2, 3], t.values()).unwrap();
        assert_eq!(again, t);
    }

    #[test]
    fn bad_shapes_and_non_additive_tables_are_refused() {
        assert_eq!(
            Table::from_interior(&[], &[]),
            Err(TableError::Dimensions(0))
        );
        assert_eq!(
            Table::from_interior(&[2, 2, 2, 2, 2], &[0; 32]),
            Err(TableError::Dimensions(5))
        );
        assert_eq!(
            Table::from_interior(&[2, 0], &[]),
            Err(TableError::EmptyDimension(1))
        );
        assert!(matches!(
            Table::from_interior(&[2, 2], &[1, 2, 3]),
            Err(TableError::Shape { .. })
        ));
        let mut cells = Table::from_interior(&[2, 2], &[1, 2, 3, 4])
            .unwrap()
            .values()
            .to_vec();
        cells[2] += 1; // a row total
        assert!(matches!(
            Table::from_cells(&[2, 2], &cells),
            Err(TableError::NotAdditive { .. })
        ));
        assert_eq!(
            Table::from_interior(&[2000, 2000], &[]),
            Err(TableError::TooLarge)
        );
    }
}
