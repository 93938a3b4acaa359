//! The extract of an aggregate release: one pass over the source counts each cell, then the
//! table is suppressed and proved (`disclosure`), and the files the package delivers are made:
//! the table, the suppression audit, the notice and the data dictionary. They are small (the
//! table is bounded by `disclosure::table::MAX_CELLS`), so the job seals each whole.
//!
//! Memory holds the categories and the cells, never rows; for distinct members it also holds
//! one 128-bit keyed hash per member and cell (the member ids themselves are not kept).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::pipeline::SourceRows;
use super::{ExtractError, JobControl, SourceLocation};
use crate::disclosure::publish::{self, Published};
use crate::disclosure::table::{Table, TableError, MAX_CELLS};
use crate::disclosure::{suppress, SuppressError, Suppression};
use crate::domain::aggregate::Measure;
use crate::policy::aggregate::AggregatePlan;
use crate::storage::SharedStore;

/// Why an aggregate table could not be made. Nothing is published in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// Reading the source failed.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// No source row is within the release's filters.
    #[error("no source row is within the release's filters: the table would be empty")]
    Empty,
    /// The dimensions make more cells than a table may have.
    #[error("the dimensions make more than {MAX_CELLS} cells; ask for coarser dimensions")]
    TooLarge,
    /// The table is malformed (a defect).
    #[error(transparent)]
    Table(#[from] TableError),
    /// Suppression failed.
    #[error(transparent)]
    Suppress(#[from] SuppressError),
    /// The suppression's proof does not hold (a defect: nothing unproved is published).
    #[error("the suppression could not be proved safe; nothing was published")]
    Unproved,
    /// Writing an output failed.
    #[error("writing the {0}: {1}")]
    Output(&'static str, String),
}

impl AggregateError {
    /// Whether a retry cannot change the outcome.
    pub fn is_permanent(&self) -> bool {
        match self {
            AggregateError::Extract(e) => e.is_permanent(),
            AggregateError::Empty
            | AggregateError::TooLarge
            | AggregateError::Table(_)
            | AggregateError::Suppress(_)
            | AggregateError::Unproved
            | AggregateError::Output(..) => true,
        }
    }
}

/// What the pass over the source found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateCounts {
    /// Source rows read.
    pub source_rows: u64,
    /// Rows outside the release's filters.
    pub outside_filters: u64,
    /// Rows counted in the table.
    pub counted: u64,
    /// For distinct members: counted rows without a member id (not counted as a member).
    pub without_member: u64,
}

/// The files of an aggregate package, as plaintext.
#[derive(Debug, Clone)]
pub struct AggregateFiles {
    /// The table, `count` suppressed as `#`.
    pub table_csv: Vec<u8>,
    /// The suppression audit.
    pub audit_json: Vec<u8>,
    /// Seed 003 section C's notice.
    pub notice: Vec<u8>,
    /// What the pass found.
    pub counts: AggregateCounts,
    /// Cells delivered, primary and complementary suppressions.
    pub cells: (usize, usize, usize),
}

/// One dimension's categories as they are met: name to id, and names by id.
#[derive(Default)]
struct Categories {
    ids: HashMap<Vec<u8>, u32>,
    names: Vec<Vec<u8>>,
}

impl Categories {
    fn id(&mut self, name: &[u8]) -> Result<u32, AggregateError> {
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= MAX_CELLS {
            return Err(AggregateError::TooLarge);
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_vec(), id);
        self.names.push(name.to_vec());
        Ok(id)
    }

    /// Names in sorted order, and each id's position in it.
    fn sorted(self) -> (Vec<String>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.names.len()).collect();
        order.sort_by(|&a, &b| self.names[a].cmp(&self.names[b]));
        let mut position = vec![0; order.len()];
        for (at, &id) in order.iter().enumerate() {
            position[id] = at;
        }
        let names = order
            .iter()
            .map(|&id| {
                let name = String::from_utf8_lossy(&self.names[id]).into_owned();
                // `Total` labels the margins; a source value spelled so is told apart.
                if name.eq_ignore_ascii_case(publish::TOTAL) {
                    format!("{name} (source value)")
                } else {
                    name
                }
            })
            .collect();
        (names, position)
    }
}

/// The counts read from the source, by cell (each dimension's category id).
struct Counted {
    categories: Vec<Categories>,
    cells: HashMap<[u32; 4], u64>,
    counts: AggregateCounts,
}

/// Reads the source once and counts every cell (blocking: run it on a blocking thread).
fn count(
    plan: &AggregatePlan,
    source: &SourceLocation,
    store: &SharedStore,
    runtime: &tokio::runtime::Handle,
    control: &JobControl,
) -> Result<Counted, AggregateError> {
    let mut rows = SourceRows::open(source, store, runtime, control)?;
    let bound = plan
        .bind(&rows.name, &rows.header)
        .map_err(ExtractError::from)?;
    let dimensions = plan.dimensions().len();
    let mut categories: Vec<Categories> = (0..dimensions).map(|_| Categories::default()).collect();
    let mut cells: HashMap<[u32; 4], u64> = HashMap::new();
    // Distinct members: keyed 128-bit hashes under keys made for this pass only.
    let keys = (RandomState::new(), RandomState::new());
    let mut members: HashSet<([u32; 4], u128)> = HashSet::new();
    let mut counts = AggregateCounts::default();
    let mut record = csv::ByteRecord::new();
    let mut buf = Vec::new();
    while let Some(read) = rows.next(&mut record)? {
        read?;
        counts.source_rows += 1;
        if counts.source_rows.is_multiple_of(65_536) && control.is_cancelled() {
            return Err(ExtractError::Cancelled.into());
        }
        if !bound.within_filters(&record).map_err(ExtractError::from)? {
            counts.outside_filters += 1;
            continue;
        }
        let mut cell = [0u32; 4];
        for (d, slot) in cell.iter_mut().enumerate().take(dimensions) {
            bound.category(d, &record, &mut buf);
            *slot = categories[d].id(&buf)?;
        }
        counts.counted += 1;
        if plan.measure() == Measure::DistinctMembers {
            match bound.member(&record) {
                Some(member) => {
                    let hash = (u128::from(keys.0.hash_one(member)) << 64)
                        | u128::from(keys.1.hash_one(member));
                    members.insert((cell, hash));
                }
                None => counts.without_member += 1,
            }
            continue;
        }
        *cells.entry(cell).or_default() += 1;
    }
    if plan.measure() == Measure::DistinctMembers {
        for (cell, _) in members {
            *cells.entry(cell).or_default() += 1;
        }
    }
    Ok(Counted {
        categories,
        cells,
        counts,
    })
}

/// Builds the table of `plan` from its source, suppresses it, proves the suppression and
/// renders the package's files.
pub async fn build_aggregate(
    plan: Arc<AggregatePlan>,
    source: SourceLocation,
    store: SharedStore,
    control: Arc<JobControl>,
) -> Result<AggregateFiles, AggregateError> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let counted = count(&plan, &source, &store, &runtime, &control)?;
        if control.is_cancelled() {
            return Err(ExtractError::Cancelled.into());
        }
        tabulate(&plan, counted)
    })
    .await
    .map_err(|_| AggregateError::Extract(ExtractError::StageLost("aggregate")))?
}

/// Lays the counted cells out as a table, suppresses and proves it, renders the files.
fn tabulate(plan: &AggregatePlan, counted: Counted) -> Result<AggregateFiles, AggregateError> {
    if counted.counts.counted == 0 {
        return Err(AggregateError::Empty);
    }
    let mut names = Vec::new();
    let mut positions = Vec::new();
    for categories in counted.categories {
        let (n, p) = categories.sorted();
        names.push(n);
        positions.push(p);
    }
    let sizes: Vec<usize> = names.iter().map(Vec::len).collect();
    let interior_len = sizes
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&n| n <= MAX_CELLS)
        .ok_or(AggregateError::TooLarge)?;
    let mut interior = vec![0u64; interior_len];
    for (cell, value) in counted.cells {
        let index = positions
            .iter()
            .enumerate()
            .fold(0usize, |acc, (d, p)| acc * sizes[d] + p[cell[d] as usize]);
        interior[index] = value;
    }
    let table = Table::from_interior(&sizes, &interior).map_err(|e| match e {
        TableError::TooLarge => AggregateError::TooLarge,
        e => AggregateError::Table(e),
    })?;
    drop(interior);
    let suppression: Suppression = if plan.margins() {
        suppress(&table, plan.threshold())?
    } else {
        Suppression::without_margins(&table, plan.threshold())?
    };
    if !suppression.is_proved() {
        return Err(AggregateError::Unproved);
    }
    let headers: Vec<String> = plan
        .dimensions()
        .iter()
        .map(|d| d.dimension.header())
        .collect();
    let published = Published {
        table: &table,
        suppression: &suppression,
        headers: &headers,
        categories: &names,
        measure: plan.measure().as_str(),
        margins: plan.margins(),
    };
    let table_csv = published
        .table_csv()
        .map_err(|e| AggregateError::Output("table", e.to_string()))?;
    let audit_json = published
        .audit_json()
        .map_err(|e| AggregateError::Output("audit", e.to_string()))?;
    let (primary, complementary) = suppression.counts();
    let delivered = (0..table.len())
        .filter(|&c| plan.margins() || !table.is_margin(c))
        .count();
    Ok(AggregateFiles {
        table_csv,
        audit_json,
        notice: publish::notice(plan.measure().phrase(), plan.threshold()).into_bytes(),
        counts: counted.counts,
        cells: (delivered, primary, complementary),
    })
}

/// The data dictionary of an aggregate table, in the row-level dictionary's columns: each
/// dimension (its element and how categories are made), the count and percentage, the
/// threshold and the row filters.
pub fn aggregate_dictionary(
    plan: &AggregatePlan,
    file_type: crate::policy::FileType,
    catalog: &crate::policy::Catalog,
) -> Result<Vec<u8>, csv::Error> {
    use super::manifest::{filter_text, filter_use_text};
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["dataset", "column", "element", "name", "transform"])?;
    let dataset = file_type.as_str();
    for d in plan.dimensions() {
        let name = catalog
            .get(&d.dimension.element)
            .map_or("", |e| e.name.as_str());
        writer.write_record([
            dataset,
            &d.dimension.header(),
            d.dimension.element.as_str(),
            name,
            &d.describe(),
        ])?;
    }
    let measure = plan.measure();
    writer.write_record([
        dataset,
        "count",
        "",
        measure.as_str(),
        &format!(
            "{}; non-zero counts under {} and the cells that would give them away shown as {}",
            measure.phrase(),
            plan.threshold(),
            publish::SUPPRESSED
        ),
    ])?;
    if plan.margins() {
        writer.write_record([
            dataset,
            "percent",
            "",
            "share of the grand total",
            &format!(
                "one decimal; shown only where the count and the grand total are both shown, else {}",
                publish::SUPPRESSED
            ),
        ])?;
    }
    let rows = plan.rows();
    for (filter, applies) in [
        ("service_years", rows.year_filter()),
        ("payers", rows.payer_filter()),
    ] {
        writer.write_record([
            dataset,
            &format!("(row filter: {filter})"),
            "",
            &filter_text(rows.filter(), filter),
            &filter_use_text(&applies),
        ])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}
