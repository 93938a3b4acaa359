//! Planning an aggregate table (pure, like `plan.rs`): which source column each dimension reads
//! and how a source value becomes the dimension's category at the release's level: the
//! row-level transform (age top-coded at 90, dates as years or quarters), five-year age bands,
//! diagnosis and procedure categories, and 3-digit ZIPs merged into `000` unless their
//! population is over 20,000 (seed 003, Appendix F).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::domain::aggregate::{AggregateError, AggregateRequest, Dimension, Grouping, Measure};
use crate::domain::level::Level;
use crate::policy::catalog::{Catalog, ElementId, SubjectKey, Transform};
use crate::policy::linkage::LinkageKey;
use crate::policy::plan::{plan, BindError, BoundPlan, ExtractPlan, ReleaseSpec, RowFilter};
use crate::policy::schema::{DatasetSchema, Derivation};
use crate::policy::transform::{self, Age, AGE_TOP_CODE};

/// The category of a value that is blank or cannot be read.
pub const UNKNOWN: &[u8] = b"unknown";

/// The 3-digit ZIP that stands for every area of 20,000 people or fewer.
pub const MERGED_ZIP3: &[u8] = b"000";

/// A 3-digit ZIP is shown only where more people than this live in it (seed 003).
pub const ZIP3_MIN_POPULATION: u64 = 20_000;

/// The population of each 3-digit ZIP area.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zip3Population {
    areas: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PopulationFile {
    population: BTreeMap<String, u64>,
}

/// The population table does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct PopulationError {
    file: String,
    why: String,
}

impl Zip3Population {
    /// Parses `[population]` with one `"NNN" = people` entry per area.
    pub fn parse(file: &str, text: &str) -> Result<Self, PopulationError> {
        let error = |why: String| PopulationError {
            file: file.to_owned(),
            why,
        };
        let parsed: PopulationFile = toml::from_str(text).map_err(|e| error(e.to_string()))?;
        for area in parsed.population.keys() {
            if area.len() != 3 || !area.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error(format!("`{area}` is not a 3-digit ZIP")));
            }
        }
        Ok(Self {
            areas: parsed.population,
        })
    }

    /// Whether a 3-digit ZIP may be shown as itself.
    pub fn shown(&self, zip3: &[u8]) -> bool {
        std::str::from_utf8(zip3)
            .ok()
            .and_then(|z| self.areas.get(z))
            .is_some_and(|&people| people > ZIP3_MIN_POPULATION)
    }
}

/// Why an aggregate table could not be planned against the dataset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregatePlanError {
    /// The request itself is refused (the catalog changed since it was filed).
    #[error(transparent)]
    Request(#[from] AggregateError),
    /// A dimension's element was not approved.
    #[error("dimension `{0}` was not approved")]
    NotApproved(ElementId),
    /// The dataset's schema does not map a dimension's element.
    #[error("the dataset does not map dimension `{0}`")]
    NotMapped(ElementId),
    /// Distinct members asked for, and the schema maps no member id or SSN.
    #[error("the dataset maps no member id or SSN to count distinct members by")]
    NoMemberColumn,
}

/// Where a dimension's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ValueSource {
    /// A source column.
    Column(String),
    /// An age computed from a birth date and a reference date.
    AgeAt { birth_date: String, at: String },
}

/// One planned dimension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDimension {
    /// The dimension as requested.
    pub dimension: Dimension,
    /// The element's name in the catalog.
    pub name: String,
    /// The row-level transform at the release's level, which `value` grouping applies.
    pub transform: Option<Transform>,
    source: ValueSource,
}

impl PlannedDimension {
    /// How the categories are made, for the data dictionary.
    pub fn describe(&self) -> String {
        match self.dimension.grouping {
            Grouping::Value => match self.transform {
                Some(t) => format!("value as delivered at this level ({t:?})"),
                None => "value".to_owned(),
            },
            Grouping::AgeBand => "five-year age bands, 90 or over top-coded".to_owned(),
            Grouping::Zip3 => format!(
                "3-digit ZIP; areas of {ZIP3_MIN_POPULATION} people or fewer, and unreadable ZIPs, as 000"
            ),
            Grouping::CodeGroup => "the code's first three characters (its category)".to_owned(),
        }
    }
}

/// The validated plan of one aggregate table.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    level: Level,
    dimensions: Vec<PlannedDimension>,
    measure: Measure,
    margins: bool,
    threshold: u64,
    member_column: Option<String>,
    rows: ExtractPlan,
    zip3: Arc<Zip3Population>,
}

/// Plans `request` over one dataset: every dimension approved, mapped by the schema and
/// allowed at `level`. `filter` is the release's row filter.
#[allow(clippy::too_many_arguments)]
pub fn plan_aggregate(
    request: &AggregateRequest,
    level: Level,
    approved: &BTreeSet<ElementId>,
    filter: RowFilter,
    catalog: &Catalog,
    schema: &DatasetSchema,
    zip3: Arc<Zip3Population>,
) -> Result<AggregatePlan, AggregatePlanError> {
    request.check(level, &[schema.file_type], catalog)?;
    let mut dimensions = Vec::new();
    for dimension in &request.dimensions {
        let id = &dimension.element;
        if !approved.contains(id) {
            return Err(AggregatePlanError::NotApproved(id.clone()));
        }
        let element = catalog
            .get(id)
            .ok_or_else(|| AggregateError::UnknownDimension(id.clone()))?;
        let source = match schema.column_of(id) {
            Some(column) => ValueSource::Column(column.to_owned()),
            None => schema
                .derived()
                .iter()
                .find(|d| &d.element == id)
                .map(|d| {
                    let Derivation::AgeAt { birth_date, at } = &d.compute;
                    ValueSource::AgeAt {
                        birth_date: birth_date.clone(),
                        at: at.clone(),
                    }
                })
                .ok_or_else(|| AggregatePlanError::NotMapped(id.clone()))?,
        };
        dimensions.push(PlannedDimension {
            dimension: dimension.clone(),
            name: element.name.clone(),
            transform: element.transform_at(level),
            source,
        });
    }
    let member_column = match request.measure {
        Measure::DistinctMembers => {
            let subject = |key| {
                catalog
                    .elements_of(schema.file_type)
                    .filter(|e| e.subject_key == Some(key))
                    .find_map(|e| schema.column_of(&e.id))
            };
            let column = subject(SubjectKey::MemberId)
                .or_else(|| subject(SubjectKey::Ssn))
                .ok_or(AggregatePlanError::NoMemberColumn)?;
            Some(column.to_owned())
        }
        _ => None,
    };
    // The row filters are the row-level pipeline's own, through a plan that delivers no
    // column (so its linkage key is never used).
    let spec = ReleaseSpec {
        level,
        approved: BTreeSet::new(),
        supplemental_requested: BTreeSet::new(),
        linkage: LinkageKey::derive(&[0u8; 32], "aggregate").expect("a 32-byte key is valid"),
        filter,
    };
    let rows = plan(&spec, schema, catalog).expect("a plan of no column cannot be refused");
    Ok(AggregatePlan {
        level,
        dimensions,
        measure: request.measure,
        margins: request.margins,
        threshold: u64::from(request.threshold),
        member_column,
        rows,
        zip3,
    })
}

impl AggregatePlan {
    /// The release's level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The dimensions, in the table's order.
    pub fn dimensions(&self) -> &[PlannedDimension] {
        &self.dimensions
    }

    /// What a cell counts.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// Whether margins are published.
    pub fn margins(&self) -> bool {
        self.margins
    }

    /// The suppression threshold.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// The row-level plan whose row filters the table applies.
    pub fn rows(&self) -> &ExtractPlan {
        &self.rows
    }

    /// Matches the plan to a file's header.
    pub fn bind(
        &self,
        file: &str,
        header: &csv::StringRecord,
    ) -> Result<BoundAggregate, BindError> {
        let rows = self.rows.bind(file, header)?;
        let find = |column: &str| {
            header
                .iter()
                .position(|n| n.trim() == column)
                .ok_or_else(|| BindError::MissingColumn {
                    file: file.to_owned(),
                    column: column.to_owned(),
                })
        };
        let mut reads = Vec::new();
        for d in &self.dimensions {
            reads.push(match &d.source {
                ValueSource::Column(c) => Read::Column(find(c)?),
                ValueSource::AgeAt { birth_date, at } => Read::AgeAt {
                    birth_date: find(birth_date)?,
                    at: find(at)?,
                },
            });
        }
        let member = self.member_column.as_deref().map(find).transpose()?;
        Ok(BoundAggregate {
            plan: self.clone(),
            rows,
            reads,
            member,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Read {
    Column(usize),
    AgeAt { birth_date: usize, at: usize },
}

/// A plan matched to a header: it turns a source record into its cell's categories.
#[derive(Debug)]
pub struct BoundAggregate {
    plan: AggregatePlan,
    rows: BoundPlan,
    reads: Vec<Read>,
    member: Option<usize>,
}

impl BoundAggregate {
    /// Whether the record is within the release's row filters (the row-level rules).
    pub fn within_filters(
        &self,
        record: &csv::ByteRecord,
    ) -> Result<bool, crate::policy::RowError> {
        let line = record.position().map_or(0, |p| p.line());
        self.rows.within_filters(record, line)
    }

    /// The member a record counts, for distinct members (`None` when blank).
    pub fn member<'r>(&self, record: &'r csv::ByteRecord) -> Option<&'r [u8]> {
        let value = record.get(self.member?)?.trim_ascii();
        (!value.is_empty()).then_some(value)
    }

    /// Writes dimension `d`'s category of `record` into `out` (cleared first).
    pub fn category(&self, d: usize, record: &csv::ByteRecord, out: &mut Vec<u8>) {
        out.clear();
        let planned = &self.plan.dimensions[d];
        let value = |i: usize| record.get(i).unwrap_or_default().trim_ascii();
        let age = match self.reads[d] {
            Read::AgeAt { birth_date, at } => {
                let dob = transform::parse_date(value(birth_date));
                let at = transform::parse_reference(value(at));
                match (dob, at) {
                    (Some(dob), Some(at)) if transform::age_at(dob, at) >= 0 => {
                        let years = transform::age_at(dob, at) as u32;
                        Some(Age::Years(years))
                    }
                    _ => None,
                }
            }
            Read::Column(i) => transform::parse_age(value(i)),
        };
        let raw = match self.reads[d] {
            Read::Column(i) => value(i),
            Read::AgeAt { .. } => b"",
        };
        let mut buf = [0u8; 16];
        match planned.dimension.grouping {
            Grouping::AgeBand => match age {
                Some(Age::Years(n)) if n < 90 => {
                    let low = n / 5 * 5;
                    out.extend_from_slice(format!("{low:02}-{:02}", low + 4).as_bytes());
                }
                Some(_) => out.extend_from_slice(AGE_TOP_CODE),
                None => out.extend_from_slice(UNKNOWN),
            },
            Grouping::Zip3 => match transform::zip5(raw) {
                Some(zip) if self.plan.zip3.shown(&zip[..3]) => out.extend_from_slice(&zip[..3]),
                _ => out.extend_from_slice(MERGED_ZIP3),
            },
            Grouping::CodeGroup => {
                out.extend(
                    raw.iter()
                        .filter(|b| b.is_ascii_alphanumeric())
                        .take(3)
                        .map(u8::to_ascii_uppercase),
                );
                if out.is_empty() {
                    out.extend_from_slice(UNKNOWN);
                }
            }
            Grouping::Value => match planned.transform {
                Some(Transform::TopCodeAge90) => match age {
                    Some(Age::Years(n)) if n < 90 => {
                        let n = transform::write_u32(n, &mut buf);
                        out.extend_from_slice(&buf[..n]);
                    }
                    Some(_) => out.extend_from_slice(AGE_TOP_CODE),
                    None => out.extend_from_slice(UNKNOWN),
                },
                Some(
                    t @ (Transform::Year
                    | Transform::Quarter
                    | Transform::Month
                    | Transform::YearQuarter
                    | Transform::Date),
                ) => match transform::parse_date(raw) {
                    Some(date) => {
                        let n = match t {
                            Transform::Year => transform::write_year(date, &mut buf),
                            Transform::Quarter => transform::write_quarter(date, &mut buf),
                            Transform::Month => transform::write_month(date, &mut buf),
                            Transform::YearQuarter => transform::write_year_quarter(date, &mut buf),
                            _ => transform::write_date(date, &mut buf),
                        };
                        out.extend_from_slice(&buf[..n]);
                    }
                    None => out.extend_from_slice(UNKNOWN),
                },
                Some(Transform::Zip5) => {
                    out.extend_from_slice(transform::zip5(raw).unwrap_or(UNKNOWN))
                }
                // `check` admits no other transform for a value dimension; `Keep` is the rest.
                _ => out.extend_from_slice(if raw.is_empty() { UNKNOWN } else { raw }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn bound(dimensions: Vec<Dimension>, zip3: Zip3Population) -> BoundAggregate {
        let policy = Policy::shipped().expect("policy");
        let schema = policy
            .schema(crate::policy::FileType::HospInpatient)
            .expect("schema");
        let request = AggregateRequest {
            dimensions,
            measure: Measure::Discharges,
            margins: true,
            threshold: 11,
        };
        let approved = request
            .dimensions
            .iter()
            .map(|d| d.element.clone())
            .collect();
        let plan = plan_aggregate(
            &request,
            Level::I,
            &approved,
            RowFilter::default(),
            policy.catalog(),
            schema,
            Arc::new(zip3),
        )
        .expect("plan");
        let header = csv::StringRecord::from(schema.required_columns().collect::<Vec<_>>());
        plan.bind("test.csv", &header).expect("bind")
    }

    fn dimension(element: &str, grouping: Grouping) -> Dimension {
        Dimension {
            element: ElementId::parse(element).expect("id"),
            grouping,
        }
    }

    #[test]
    fn categories_follow_the_level_i_rules() {
        let zip3 = Zip3Population::parse("t", "[population]\n\"021\" = 1406829\n\"022\" = 20000\n")
            .expect("table");
        let agg = bound(
            vec![
                dimension("hosp_inpatient.age", Grouping::AgeBand),
                dimension("hosp_inpatient.zip_code", Grouping::Zip3),
                dimension("hosp_inpatient.principal_diagnosis", Grouping::CodeGroup),
                dimension("hosp_inpatient.discharge_year", Grouping::Value),
            ],
            zip3,
        );
        let policy = Policy::shipped().expect("policy");
        let schema = policy
            .schema(crate::policy::FileType::HospInpatient)
            .expect("schema");
        let columns: Vec<&str> = schema.required_columns().collect();
        let mut row = vec![String::new(); columns.len()];
        let set = |row: &mut Vec<String>, name: &str, value: &str| {
            let i = columns.iter().position(|c| *c == name).expect("column");
            row[i] = value.to_owned();
        };
        let mut out = Vec::new();
        let mut categories = |ages: &str, zip: &str, dx: &str, date: &str| {
            let mut row = row.clone();
            set(&mut row, "age", ages);
            set(&mut row, "zip_code", zip);
            set(&mut row, "principal_diagnosis", dx);
            set(&mut row, "discharge_date", date);
            let record = csv::ByteRecord::from(row);
            (0..4)
                .map(|d| {
                    agg.category(d, &record, &mut out);
                    String::from_utf8(out.clone()).expect("utf-8")
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            categories("47", "02139-1234", "f10.20", "2023-05-02"),
            ["45-49", "021", "F10", "2023"]
        );
        // 20,000 people is not over 20,000; an area not listed and a bad ZIP merge too.
        assert_eq!(
            categories("93", "02201", "", "")[..3],
            ["90 or over", "000", "unknown"]
        );
        assert_eq!(categories("", "04101", "I21", "x")[..2], ["unknown", "000"]);
        assert_eq!(categories("3", "ABCDE", "I21", "x")[..2], ["00-04", "000"]);
        row.clear();
    }

    #[test]
    fn the_shipped_population_table_shows_only_areas_over_twenty_thousand() {
        let (file, text) = crate::policy::shipped::ZIP3_POPULATION;
        let table = Zip3Population::parse(file, text).expect("shipped table");
        assert!(table.shown(b"021"));
        assert!(table.shown(b"022"));
        assert!(!table.shown(b"040"));
        assert!(Zip3Population::parse("t", "[population]\n\"21\" = 5\n").is_err());
    }
}
