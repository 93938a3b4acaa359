//! Planning (which columns a release gets, and how) and the per-row transform.
//!
//! [`plan`] is pure: from the release, the dataset schema and the catalog it decides the output
//! columns or refuses. [`ExtractPlan::bind`] matches the plan to an actual CSV header, and
//! [`BoundPlan::apply`] turns one source record into one output record, reusing the caller's
//! buffer.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use crate::domain::level::Level;
use crate::policy::catalog::{
    Catalog, CodeKind, ElementClass, ElementId, FileType, SubjectKey, Transform,
};
use crate::policy::linkage::{LinkageKey, ReplacementIds};
use crate::policy::members::{MemberKey, Withheld, WithheldMembers};
use crate::policy::protected::{Effect, ProtectedCategories};
use crate::policy::schema::{DatasetSchema, Derivation};
use crate::policy::transform::{self, Age, AGE_TOP_CODE};

/// Why a plan was refused. Every variant names the element concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The release names an element the catalog does not have.
    #[error("element `{element}` is not in the catalog")]
    UnknownElement {
        /// The element id.
        element: ElementId,
    },
    /// An approved element needs a higher level than the release has.
    #[error(
        "element `{element}` needs Level {element_level} but the release is Level {release_level}"
    )]
    AboveLevel {
        /// The element id.
        element: ElementId,
        /// Its lowest level.
        element_level: Level,
        /// The release's level.
        release_level: Level,
    },
    /// An approved element is a charge, which is never released at row level.
    #[error("element `{element}` is a charge and is never released at row level (seed 001 section 3.1 D)")]
    NeverReleasable {
        /// The element id.
        element: ElementId,
    },
    /// An approved Appendix C element was not requested by name.
    #[error("element `{element}` is supplemental (Appendix C) and was not requested by name")]
    SupplementalNotRequested {
        /// The element id.
        element: ElementId,
    },
    /// A planned column is not on the approved list (an internal safeguard; never expected).
    #[error("element `{element}` is not approved for this release")]
    NotApproved {
        /// The element id.
        element: ElementId,
    },
    /// A birth date is approved but the schema does not map the date its age is measured at.
    #[error("element `{element}` needs `{reference}` to compute the age, and the dataset does not map it")]
    MissingReference {
        /// The birth-date element.
        element: ElementId,
        /// The reference date element.
        reference: ElementId,
    },
    /// Direct identifiers were approved but the dataset maps no SSN or member id to check
    /// opt-outs against, so they could not be withheld from people who opted out.
    #[error("element `{element}` is a direct identifier, and the `{file_type}` dataset maps no SSN or member id to check opt-outs against")]
    NoOptOutSubject {
        /// The first direct-identifier element.
        element: ElementId,
        /// The dataset's file type.
        file_type: FileType,
    },
}

/// Why a plan could not be matched to a file's header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The header lacks a column the plan needs.
    #[error("{file}: the header has no column `{column}`, which the extract needs")]
    MissingColumn {
        /// The file.
        file: String,
        /// The missing source column.
        column: String,
    },
    /// The header names a column twice.
    #[error("{file}: the header names column `{column}` twice")]
    DuplicateColumn {
        /// The file.
        file: String,
        /// The repeated column.
        column: String,
    },
}

/// Why a row could not be transformed. Messages name file, line and column, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The row does not have as many fields as the header.
    #[error("{file}: line {line}: expected {expected} fields, found {found}")]
    WrongArity {
        /// The file.
        file: String,
        /// 1-based line where the record starts.
        line: u64,
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// A value a transform needs could not be parsed.
    #[error("{file}: line {line}, column `{column}`: not {expected}")]
    Unparseable {
        /// The file.
        file: String,
        /// 1-based line where the record starts.
        line: u64,
        /// The source column.
        column: String,
        /// What was expected there.
        expected: &'static str,
    },
}

impl RowError {
    /// How counts name the row as a whole, when no one column is at fault.
    pub const ROW: &'static str = "(row)";

    /// The source column the error is about ([`RowError::ROW`] for the row as a whole).
    pub fn column(&self) -> &str {
        match self {
            RowError::WrongArity { .. } => RowError::ROW,
            RowError::Unparseable { column, .. } => column,
        }
    }

    /// What was wrong, without the value, for counts.
    pub fn reason(&self) -> String {
        match self {
            RowError::WrongArity { .. } => "wrong number of fields".to_owned(),
            RowError::Unparseable { expected, .. } => format!("not {expected}"),
        }
    }
}

/// Which rows a release may receive (seed 001 section 3.3 C, minimum necessary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFilter {
    /// Service years, inclusive; `None` for every year.
    pub years: Option<RangeInclusive<i32>>,
    /// Payer ids; empty for every payer.
    pub payers: BTreeSet<String>,
}

/// What the extract job knows about the release, as far as row policy is concerned.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    /// The release's level.
    pub level: Level,
    /// Elements approved for delivery (minimum necessary), across all datasets of the release.
    pub approved: BTreeSet<ElementId>,
    /// Appendix C elements the request named explicitly.
    pub supplemental_requested: BTreeSet<ElementId>,
    /// The recipient organization's linkage key, for replacement ids.
    pub linkage: LinkageKey,
    /// The approved row filters.
    pub filter: RowFilter,
}

/// One output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedColumn {
    /// The catalog element delivered.
    pub element: ElementId,
    /// Output header: the element id without its file-type prefix.
    pub header: String,
    /// Source column it is read from.
    pub source_column: String,
    /// How it is rendered at the release's level.
    pub transform: Transform,
    /// The element's class (drives row rules).
    pub class: ElementClass,
    /// For birth dates: the source column holding the reference date.
    pub reference_column: Option<String>,
    /// For replacement ids: the value space.
    pub replacement_domain: Option<String>,
    /// For derived elements: how the value is computed (then `source_column` is unused).
    pub derivation: Option<Derivation>,
}

/// The columns the protected-member pass reads of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberColumns {
    /// Code columns that can put a row in a category that withholds direct identifiers.
    pub codes: Vec<(String, CodeKind)>,
    /// Columns identifying the row's member (SSN, member id).
    pub subjects: Vec<(String, SubjectKey)>,
}

impl MemberColumns {
    /// Whether a row can carry two identities of one member, so that it links them.
    pub fn links_identities(&self) -> bool {
        self.subjects.len() >= 2
    }
}

/// How one row filter applies to a dataset, as the manifest and data dictionary state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterUse {
    /// The filter selects rows by this source column.
    ByColumn(String),
    /// The dataset has no such column (its rows are not about services or payers), so the
    /// filter does not narrow it.
    NotApplicable,
    /// The release sets no such filter.
    Unrestricted,
}

/// The validated plan for one dataset of one release.
#[derive(Debug, Clone)]
pub struct ExtractPlan {
    file_type: FileType,
    level: Level,
    columns: Vec<PlannedColumn>,
    unmapped_source_columns: Vec<String>,
    unavailable: Vec<ElementId>,
    subject_columns: Vec<(String, SubjectKey)>,
    code_columns: Vec<(String, CodeKind)>,
    guard_direct: bool,
    guard_practitioner: bool,
    linkage: LinkageKey,
    protected: ProtectedCategories,
    filter: RowFilter,
    year_column: Option<String>,
    payer_column: Option<String>,
}

/// Checks every approved and requested element against the catalog and the level, then lays
/// out the output columns in schema order. Pure: no I/O, no clock.
pub fn plan(
    release: &ReleaseSpec,
    schema: &DatasetSchema,
    catalog: &Catalog,
) -> Result<ExtractPlan, PlanError> {
    for id in release
        .supplemental_requested
        .iter()
        .chain(&release.approved)
    {
        if catalog.get(id).is_none() {
            return Err(PlanError::UnknownElement {
                element: id.clone(),
            });
        }
    }
    // The whole approved list is checked, not only this dataset's part: a release that
    // approves something it may not have is wrong as a whole.
    for id in &release.approved {
        let Some(element) = catalog.get(id) else {
            return Err(PlanError::UnknownElement {
                element: id.clone(),
            });
        };
        let Some(lowest) = element.lowest_level else {
            return Err(PlanError::NeverReleasable {
                element: id.clone(),
            });
        };
        if lowest > release.level || element.transform_at(release.level).is_none() {
            return Err(PlanError::AboveLevel {
                element: id.clone(),
                element_level: lowest,
                release_level: release.level,
            });
        }
        if element.supplemental && !release.supplemental_requested.contains(id) {
            return Err(PlanError::SupplementalNotRequested {
                element: id.clone(),
            });
        }
    }

    let mut columns = Vec::new();
    let mut unmapped_source_columns = Vec::new();
    let mut subject_columns = Vec::new();
    let mut code_columns = Vec::new();
    for col in schema.columns() {
        if col.elements.is_empty() {
            unmapped_source_columns.push(col.name.clone());
        }
        for id in &col.elements {
            let Some(element) = catalog.get(id) else {
                return Err(PlanError::UnknownElement {
                    element: id.clone(),
                });
            };
            if let Some(kind) = element.code_kind {
                code_columns.push((col.name.clone(), kind));
            }
            if let Some(key) = element.subject_key {
                subject_columns.push((col.name.clone(), key));
            }
            if !release.approved.contains(id) {
                continue;
            }
            let Some(transform) = element.transform_at(release.level) else {
                // Checked above; kept as a refusal rather than a panic.
                return Err(PlanError::AboveLevel {
                    element: id.clone(),
                    element_level: element.lowest_level.unwrap_or(Level::III),
                    release_level: release.level,
                });
            };
            let reference_column = match &element.age_reference {
                None => None,
                Some(reference) => Some(
                    schema
                        .column_of(reference)
                        .ok_or_else(|| PlanError::MissingReference {
                            element: id.clone(),
                            reference: reference.clone(),
                        })?
                        .to_owned(),
                ),
            };
            columns.push(PlannedColumn {
                element: id.clone(),
                header: id.local().to_owned(),
                source_column: col.name.clone(),
                transform,
                class: element.class,
                reference_column,
                replacement_domain: element.replacement_domain.clone(),
                derivation: None,
            });
        }
    }
    for derived in schema.derived() {
        if !release.approved.contains(&derived.element) {
            continue;
        }
        let Some(element) = catalog.get(&derived.element) else {
            return Err(PlanError::UnknownElement {
                element: derived.element.clone(),
            });
        };
        let Some(transform) = element.transform_at(release.level) else {
            return Err(PlanError::AboveLevel {
                element: derived.element.clone(),
                element_level: element.lowest_level.unwrap_or(Level::III),
                release_level: release.level,
            });
        };
        let Derivation::AgeAt { birth_date, .. } = &derived.compute;
        columns.push(PlannedColumn {
            element: derived.element.clone(),
            header: derived.element.local().to_owned(),
            source_column: birth_date.clone(),
            transform,
            class: element.class,
            reference_column: None,
            replacement_domain: None,
            derivation: Some(derived.compute.clone()),
        });
    }
    code_columns.dedup();
    subject_columns.dedup();

    // Defence in depth: re-check the finished layout against the rules it was built from.
    for c in &columns {
        if !release.approved.contains(&c.element) {
            return Err(PlanError::NotApproved {
                element: c.element.clone(),
            });
        }
        if c.class == ElementClass::Charge {
            return Err(PlanError::NeverReleasable {
                element: c.element.clone(),
            });
        }
    }

    let guard_direct = columns
        .iter()
        .any(|c| c.class == ElementClass::DirectIdentifier);
    if guard_direct && subject_columns.is_empty() {
        let element = columns
            .iter()
            .find(|c| c.class == ElementClass::DirectIdentifier)
            .map(|c| c.element.clone());
        if let Some(element) = element {
            return Err(PlanError::NoOptOutSubject {
                element,
                file_type: schema.file_type,
            });
        }
    }
    let guard_practitioner = columns.iter().any(|c| c.class == ElementClass::Provider);
    let unavailable = release
        .approved
        .iter()
        .filter(|id| id.file_type() == schema.file_type && !schema.provides(id))
        .cloned()
        .collect();
    Ok(ExtractPlan {
        file_type: schema.file_type,
        level: release.level,
        columns,
        unmapped_source_columns,
        unavailable,
        subject_columns,
        code_columns,
        guard_direct,
        guard_practitioner,
        linkage: release.linkage.clone(),
        protected: catalog.protected().clone(),
        filter: release.filter.clone(),
        year_column: schema.filters().service_year.clone(),
        payer_column: schema.filters().payer.clone(),
    })
}

impl ExtractPlan {
    /// The dataset's file type.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }

    /// The release's level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The output columns, in order.
    pub fn columns(&self) -> &[PlannedColumn] {
        &self.columns
    }

    /// The output header.
    pub fn header(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.header.as_str()).collect()
    }

    /// Schema columns that map to no element: they are never emitted.
    pub fn unmapped_source_columns(&self) -> &[String] {
        &self.unmapped_source_columns
    }

    /// Approved elements of this file type that the dataset does not map, so cannot deliver.
    pub fn unavailable_elements(&self) -> &[ElementId] {
        &self.unavailable
    }

    /// How the service-year filter applies to this dataset.
    pub fn year_filter(&self) -> FilterUse {
        match (&self.filter.years, &self.year_column) {
            (None, _) => FilterUse::Unrestricted,
            (Some(_), Some(column)) => FilterUse::ByColumn(column.clone()),
            (Some(_), None) => FilterUse::NotApplicable,
        }
    }

    /// How the payer filter applies to this dataset.
    pub fn payer_filter(&self) -> FilterUse {
        match (self.filter.payers.is_empty(), &self.payer_column) {
            (true, _) => FilterUse::Unrestricted,
            (false, Some(column)) => FilterUse::ByColumn(column.clone()),
            (false, None) => FilterUse::NotApplicable,
        }
    }

    /// The approved row filters.
    pub fn filter(&self) -> &RowFilter {
        &self.filter
    }

    /// Whether the plan delivers direct identifiers (so members with protected rows elsewhere
    /// must be known before the first row is written).
    pub fn delivers_direct_identifiers(&self) -> bool {
        self.guard_direct
    }

    /// What the protected-member pass reads of this dataset.
    pub fn protected_member_columns(&self) -> MemberColumns {
        let codes: Vec<(String, CodeKind)> = self
            .code_columns
            .iter()
            .filter(|(_, kind)| {
                self.protected
                    .can_match(Effect::BlankDirectIdentifiers, *kind)
            })
            .cloned()
            .collect();
        MemberColumns {
            codes,
            subjects: self.subject_columns.clone(),
        }
    }

    /// The protected-category code lists the plan checks rows against.
    pub fn protected(&self) -> &ProtectedCategories {
        &self.protected
    }

    /// Matches the plan to a file's header (`file` labels messages). Every column the plan
    /// reads must be present: outputs, age references, and, when rows can be protected, every
    /// code and identity column, so a row is never judged on partial evidence.
    pub fn bind(&self, file: &str, header: &csv::StringRecord) -> Result<BoundPlan, BindError> {
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(BindError::DuplicateColumn {
                    file: file.to_owned(),
                    column: (*name).to_owned(),
                });
            }
        }
        let find = |column: &str| {
            names
                .iter()
                .position(|n| *n == column)
                .ok_or_else(|| BindError::MissingColumn {
                    file: file.to_owned(),
                    column: column.to_owned(),
                })
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        let mut ids = ReplacementIds::new(self.linkage.clone());
        for c in &self.columns {
            if let Some(Derivation::AgeAt { birth_date, at }) = &c.derivation {
                columns.push(BoundColumn {
                    index: find(birth_date)?,
                    source: birth_date.clone(),
                    class: c.class,
                    step: Step::AgeAt {
                        at: find(at)?,
                        at_name: at.clone(),
                        top_code: c.transform == Transform::TopCodeAge90,
                    },
                    run: 1,
                });
                continue;
            }
            let step = match c.transform {
                Transform::Keep => Step::Keep,
                Transform::Year => Step::Year,
                Transform::Quarter => Step::Quarter,
                Transform::Month => Step::Month,
                Transform::YearQuarter => Step::YearQuarter,
                Transform::Date => Step::Date,
                Transform::TopCodeAge90 => Step::TopCodeAge90,
                Transform::Zip5 => Step::Zip5,
                Transform::BirthDateUnless90 => {
                    let reference = c.reference_column.as_deref().unwrap_or_default();
                    Step::BirthDateUnless90 {
                        reference: find(reference)?,
                        reference_name: reference.to_owned(),
                    }
                }
                Transform::ReplacementId => Step::ReplacementId {
                    slot: ids.add_slot(c.replacement_domain.as_deref().unwrap_or_default()),
                },
            };
            columns.push(BoundColumn {
                index: find(&c.source_column)?,
                source: c.source_column.clone(),
                class: c.class,
                step,
                run: 1,
            });
        }
        with_runs(&mut columns);
        let mut code_columns = Vec::new();
        if self.guard_direct || self.guard_practitioner {
            for (name, kind) in &self.code_columns {
                // Every code column must be present, so that a row is never judged on partial
                // evidence; only those a category lists are checked row by row.
                let index = find(name)?;
                let direct = self.guard_direct
                    && self
                        .protected
                        .can_match(Effect::BlankDirectIdentifiers, *kind);
                let practitioner = self.guard_practitioner
                    && self
                        .protected
                        .can_match(Effect::BlankPractitionerIdentity, *kind);
                if direct || practitioner {
                    code_columns.push((index, *kind));
                }
            }
        }
        // The pass required these columns wherever it ran (a release that names anyone), so
        // binding one leniently here loses nothing there and fails no other release.
        let member_code_columns = self
            .protected_member_columns()
            .codes
            .iter()
            .filter_map(|(name, kind)| find(name).ok().map(|index| (index, *kind)))
            .collect();
        // Identity columns are needed to withhold direct identifiers, and wherever present, to
        // notice a row that links a protected member to an identity not yet recorded.
        let mut subject_columns = Vec::new();
        for (name, key) in &self.subject_columns {
            match find(name) {
                Ok(index) => subject_columns.push((index, *key)),
                Err(missing) if self.guard_direct => return Err(missing),
                Err(_) => {}
            }
        }
        let years = match (&self.filter.years, &self.year_column) {
            (Some(range), Some(column)) => Some((find(column)?, column.clone(), range.clone())),
            _ => None,
        };
        let payers = match &self.payer_column {
            Some(column) if !self.filter.payers.is_empty() => Some((
                find(column)?,
                self.filter
                    .payers
                    .iter()
                    .map(|p| p.as_bytes().to_vec())
                    .collect(),
            )),
            _ => None,
        };
        Ok(BoundPlan {
            file: file.to_owned(),
            width: names.len(),
            years,
            payers,
            columns,
            code_columns,
            member_code_columns,
            subject_columns,
            guard_direct: self.guard_direct,
            guard_practitioner: self.guard_practitioner,
            ids,
            protected: self.protected.clone(),
            level: self.level,
        })
    }
}

#[derive(Debug, Clone)]
enum Step {
    Keep,
    Year,
    Quarter,
    Month,
    YearQuarter,
    Date,
    TopCodeAge90,
    Zip5,
    BirthDateUnless90 {
        reference: usize,
        reference_name: String,
    },
    /// The id of the value in the domain of a slot of the plan's [`ReplacementIds`].
    ReplacementId {
        slot: usize,
    },
    /// Age derived from the birth date (the column's own index) at the date in `at`.
    AgeAt {
        at: usize,
        at_name: String,
        top_code: bool,
    },
}

#[derive(Debug, Clone)]
struct BoundColumn {
    index: usize,
    source: String,
    class: ElementClass,
    step: Step,
    /// How many columns from this one on are kept as they are, never withheld, and read from
    /// source columns side by side (1 when only this one; see `with_runs`).
    run: usize,
}

/// Sets each column's `run`: the columns from it on that the plan writes exactly as the source
/// holds them (kept, of a class never withheld) from consecutive source columns, so that
/// `apply` may copy their text at once.
fn with_runs(columns: &mut [BoundColumn]) {
    let verbatim = |c: &BoundColumn| {
        matches!(c.step, Step::Keep)
            && !matches!(
                c.class,
                ElementClass::DirectIdentifier | ElementClass::Provider | ElementClass::Charge
            )
    };
    for at in (0..columns.len()).rev() {
        let extends = columns.get(at + 1).is_some_and(|next| {
            verbatim(&columns[at]) && verbatim(next) && next.index == columns[at].index + 1
        });
        columns[at].run = if extends { columns[at + 1].run + 1 } else { 1 };
    }
}

/// What the row rules found on one row (for counts in the manifest; no values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowFlags {
    /// A Level III row whose codes put it in an HIV, substance-use or psychiatric category:
    /// its direct identifiers were blanked.
    pub protected: bool,
    /// A Level III row about a person who opted out: its direct identifiers were blanked.
    pub opted_out: bool,
    /// A Level III row about a member who has a protected row elsewhere in the release: its
    /// direct identifiers were blanked.
    pub protected_member: bool,
    /// An abortion-procedure row: its practitioner elements were blanked.
    pub practitioner_blanked: bool,
}

/// What became of one source row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// The row was written, with what the row rules found.
    Delivered(RowFlags),
    /// The row is outside the release's filters and was not written.
    OutsideFilters,
}

impl RowOutcome {
    /// The row rules' findings, for a delivered row.
    pub fn flags(self) -> Option<RowFlags> {
        match self {
            RowOutcome::Delivered(flags) => Some(flags),
            RowOutcome::OutsideFilters => None,
        }
    }
}

/// One source row as a plan reads it: its fields, unquoted, by index; the line it starts on;
/// and, where the reader can vouch for them, the source bytes of a run of fields.
pub trait SourceRecord {
    /// Number of fields.
    fn len(&self) -> usize;

    /// Whether the row has no fields.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Field `index` (below `len`), unquoted.
    fn field(&self, index: usize) -> &[u8];

    /// The file line the row starts on (the header is line 1); 0 when unknown.
    fn line(&self) -> u64;

    /// What the row's kept values are slices of, for the sink to learn from once per row.
    fn bytes(&self) -> RowBytes<'_>;

    /// The `count` fields from `first`, as they stand in the source with their separating
    /// commas, when that is also how a CSV writer would write them (no field quoted or
    /// needing quotes); `None` when the reader cannot vouch for that.
    fn raw_fields(&self, first: usize, count: usize) -> Option<&[u8]> {
        let _ = (first, count);
        None
    }
}

/// What a row's kept values ([`RowSink::source_field`]) are slices of.
#[derive(Debug, Clone, Copy)]
pub enum RowBytes<'a> {
    /// The row's unquoted fields, one after another: a value in them may hold any byte.
    Fields(&'a [u8]),
    /// The row's source text, which holds no quote, CR or LF: a field in it holds no comma
    /// either, so no value taken from one field needs quotes.
    Plain(&'a [u8]),
}

impl SourceRecord for csv::ByteRecord {
    fn len(&self) -> usize {
        csv::ByteRecord::len(self)
    }

    fn field(&self, index: usize) -> &[u8] {
        &self[index]
    }

    fn line(&self) -> u64 {
        self.position().map_or(0, csv::Position::line)
    }

    fn bytes(&self) -> RowBytes<'_> {
        RowBytes::Fields(self.as_slice())
    }
}

/// Where [`BoundPlan::apply`] writes a row: `begin_row` with what the source record's values
/// are slices of, one field per output column in order, then `end_row`.
pub trait RowSink {
    /// A failed write, or a row the plan refused, as the caller reports it.
    type Error: From<RowError>;

    /// Starts a row transformed from a source record.
    fn begin_row(&mut self, source: RowBytes<'_>) {
        let _ = source;
    }

    /// Appends one field to the current row.
    fn field(&mut self, value: &[u8]) -> Result<(), Self::Error>;

    /// Appends one field that is a slice of the `source` given to `begin_row` (a kept value),
    /// which lets a sink reuse what it learned about the record as a whole.
    fn source_field(&mut self, value: &[u8]) -> Result<(), Self::Error> {
        self.field(value)
    }

    /// Appends several kept fields at once: `raw`, from [`SourceRecord::raw_fields`], holds
    /// them with their separating commas, and nothing that needs quotes.
    fn source_fields(&mut self, raw: &[u8]) -> Result<(), Self::Error> {
        raw.split(|&b| b == b',')
            .try_for_each(|value| self.source_field(value))
    }

    /// Ends the current row.
    fn end_row(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Drops what was written of the current row (after `apply` refused it), so a tolerated
    /// invalid row leaves nothing behind.
    fn discard_row(&mut self) {}

    /// Appends the replacement id of `value` in the domain of `slot` (an empty field when the
    /// value has none). A sink may instead write the field's place and have the id computed
    /// later, off the transform's thread, provided the bytes it delivers are the same (the
    /// extract's `CsvChunks` does).
    fn replacement_id(
        &mut self,
        ids: &mut ReplacementIds,
        slot: usize,
        value: &[u8],
    ) -> Result<(), Self::Error> {
        match ids.id(slot, value) {
            Some(id) => self.field(&id),
            None => self.field(b""),
        }
    }
}

/// A row in memory, for tests and callers that inspect it; each row replaces the last.
impl RowSink for csv::ByteRecord {
    type Error = RowError;

    fn begin_row(&mut self, _source: RowBytes<'_>) {
        self.clear();
    }

    fn field(&mut self, value: &[u8]) -> Result<(), RowError> {
        self.push_field(value);
        Ok(())
    }
}

/// A plan matched to one file's header, ready to transform its rows.
#[derive(Debug, Clone)]
pub struct BoundPlan {
    file: String,
    width: usize,
    /// The service-year column (index, name) and the years delivered.
    years: Option<(usize, String, RangeInclusive<i32>)>,
    /// The payer column and the payer ids delivered.
    payers: Option<(usize, Vec<Vec<u8>>)>,
    columns: Vec<BoundColumn>,
    code_columns: Vec<(usize, CodeKind)>,
    /// The code columns the protected-member pass reads (whether or not this plan delivers
    /// direct identifiers): what tells the transform a row is protected.
    member_code_columns: Vec<(usize, CodeKind)>,
    subject_columns: Vec<(usize, SubjectKey)>,
    guard_direct: bool,
    guard_practitioner: bool,
    ids: ReplacementIds,
    protected: ProtectedCategories,
    level: Level,
}

impl BoundPlan {
    /// The release's level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Transforms one source record into one row of `out`, field by field, with no allocation
    /// (so the extract writes straight into its CSV writer). The record's position, when the
    /// CSV reader set one, gives the line in error messages. On an error `out` may hold part
    /// of the row; the caller discards it with the rest of the output.
    pub fn apply<S: RowSink>(
        &mut self,
        record: &(impl SourceRecord + ?Sized),
        members: &WithheldMembers,
        out: &mut S,
    ) -> Result<RowOutcome, S::Error> {
        let line = record.line();
        if record.len() != self.width {
            return Err(S::Error::from(RowError::WrongArity {
                file: self.file.clone(),
                line,
                expected: self.width,
                found: record.len(),
            }));
        }
        if !self.within_filters(record, line)? {
            return Ok(RowOutcome::OutsideFilters);
        }
        let mut flags = RowFlags::default();
        for &(index, kind) in &self.code_columns {
            let value = record.field(index);
            if value.is_empty() {
                continue;
            }
            if self.guard_practitioner
                && !flags.practitioner_blanked
                && self
                    .protected
                    .matches(Effect::BlankPractitionerIdentity, kind, value)
            {
                flags.practitioner_blanked = true;
            }
            if self.guard_direct
                && !flags.protected
                && self
                    .protected
                    .matches(Effect::BlankDirectIdentifiers, kind, value)
            {
                flags.protected = true;
            }
        }
        if self.guard_direct {
            for &(index, key) in &self.subject_columns {
                match members.withheld(key, record.field(index)) {
                    Some(Withheld::OptedOut) => flags.opted_out = true,
                    Some(Withheld::ProtectedMember) => flags.protected_member = true,
                    None => {}
                }
            }
        }

        out.begin_row(record.bytes());
        let mut buf = [0u8; 64];
        let mut next = 0;
        while let Some(c) = self.columns.get(next) {
            next += 1;
            if c.run > 1 {
                // Fields kept as they are, side by side in the source: copied at once when the
                // reader vouches for their text and none is blank but for spaces (written
                // empty below).
                if let Some(raw) = record.raw_fields(c.index, c.run) {
                    if memchr::memchr3(b' ', b'\t', b'\x0c', raw).is_none() {
                        out.source_fields(raw)?;
                        next += c.run - 1;
                        continue;
                    }
                }
            }
            let value = record.field(c.index);
            let withheld = match c.class {
                ElementClass::DirectIdentifier => {
                    flags.protected || flags.opted_out || flags.protected_member
                }
                ElementClass::Provider => flags.practitioner_blanked,
                // Unreachable by construction of the plan; blank rather than trust that.
                ElementClass::Charge => true,
                _ => false,
            };
            if withheld || value.trim_ascii().is_empty() {
                out.field(b"")?;
                continue;
            }
            let bad = |expected: &'static str| RowError::Unparseable {
                file: self.file.clone(),
                line,
                column: c.source.clone(),
                expected,
            };
            const DATE: &str = "a date (YYYY-MM-DD or YYYYMMDD)";
            match &c.step {
                Step::Keep => out.source_field(value)?,
                Step::Year | Step::Quarter | Step::Month | Step::YearQuarter | Step::Date => {
                    let d = transform::parse_date(value).ok_or_else(|| bad(DATE))?;
                    let n = match c.step {
                        Step::Year => transform::write_year(d, &mut buf),
                        Step::Quarter => transform::write_quarter(d, &mut buf),
                        Step::Month => transform::write_month(d, &mut buf),
                        Step::YearQuarter => transform::write_year_quarter(d, &mut buf),
                        _ => transform::write_date(d, &mut buf),
                    };
                    out.field(&buf[..n])?;
                }
                Step::TopCodeAge90 => match transform::parse_age(value) {
                    Some(Age::Years(n)) if n < 90 => {
                        let n = transform::write_u32(n, &mut buf);
                        out.field(&buf[..n])?;
                    }
                    Some(_) => out.field(AGE_TOP_CODE)?,
                    None => return Err(bad("an age in whole years").into()),
                },
                Step::Zip5 => out.source_field(transform::zip5(value).unwrap_or_default())?,
                Step::BirthDateUnless90 {
                    reference,
                    reference_name,
                } => {
                    let dob = transform::parse_date(value).ok_or_else(|| bad(DATE))?;
                    let at = record.field(*reference);
                    // Without a reference date the age cannot be shown to be under 90: blank.
                    let keep = if at.trim_ascii().is_empty() {
                        false
                    } else {
                        let at = transform::parse_reference(at).ok_or_else(|| {
                            RowError::Unparseable {
                                file: self.file.clone(),
                                line,
                                column: reference_name.clone(),
                                expected: "a date (YYYY-MM-DD, YYYYMMDD) or a month (YYYYMM)",
                            }
                        })?;
                        transform::age_at(dob, at) < 90
                    };
                    if keep {
                        let n = transform::write_date(dob, &mut buf);
                        out.field(&buf[..n])?;
                    } else {
                        out.field(b"")?;
                    }
                }
                Step::ReplacementId { slot } => out.replacement_id(&mut self.ids, *slot, value)?,
                Step::AgeAt {
                    at,
                    at_name,
                    top_code,
                } => {
                    let dob = transform::parse_date(value).ok_or_else(|| bad(DATE))?;
                    let at = record.field(*at);
                    if at.trim_ascii().is_empty() {
                        out.field(b"")?;
                        continue;
                    }
                    let at =
                        transform::parse_reference(at).ok_or_else(|| RowError::Unparseable {
                            file: self.file.clone(),
                            line,
                            column: at_name.clone(),
                            expected: "a date (YYYY-MM-DD, YYYYMMDD) or a month (YYYYMM)",
                        })?;
                    let age = u32::try_from(transform::age_at(dob, at))
                        .map_err(|_| bad("a birth date on or before the date of service"))?;
                    if *top_code && age >= 90 {
                        out.field(AGE_TOP_CODE)?;
                    } else {
                        let n = transform::write_u32(age, &mut buf);
                        out.field(&buf[..n])?;
                    }
                }
            }
        }
        out.end_row()?;
        Ok(RowOutcome::Delivered(flags))
    }

    /// Whether `record` (of the right width) is a protected row: one whose codes put it in a
    /// category whose direct identifiers are withheld, as the protected-member pass judges it,
    /// whether or not this dataset delivers direct identifiers itself.
    pub fn is_protected_row(&self, record: &(impl SourceRecord + ?Sized)) -> bool {
        record.len() == self.width
            && self.member_code_columns.iter().any(|&(index, kind)| {
                let value = record.field(index);
                !value.is_empty()
                    && self
                        .protected
                        .matches(Effect::BlankDirectIdentifiers, kind, value)
            })
    }

    /// Whether a row [`BoundPlan::apply`] delivered with `flags` is a protected row: its flags
    /// say so where the plan guards direct identifiers, its codes otherwise.
    pub fn delivered_protected(
        &self,
        flags: RowFlags,
        record: &(impl SourceRecord + ?Sized),
    ) -> bool {
        if self.guard_direct {
            flags.protected
        } else {
            self.is_protected_row(record)
        }
    }

    /// The replacement-id slots of the plan's columns (a copy), for a sink that computes ids
    /// apart from [`BoundPlan::apply`].
    pub fn replacement_ids(&self) -> ReplacementIds {
        self.ids.clone()
    }

    /// Adds to `out` the identities of the member `record` is about (SSN, member id).
    pub fn row_identities(
        &self,
        record: &(impl SourceRecord + ?Sized),
        members: &WithheldMembers,
        out: &mut Vec<MemberKey>,
    ) {
        if record.len() != self.width {
            return;
        }
        out.extend(
            self.subject_columns
                .iter()
                .filter_map(|&(index, kind)| members.member_key(kind, record.field(index))),
        );
    }

    /// Whether a row these flags describe was written with its direct identifiers.
    pub fn names_the_member(&self, flags: RowFlags) -> bool {
        self.guard_direct && !(flags.protected || flags.opted_out || flags.protected_member)
    }

    /// Whether the row is inside the release's filters. A row without a service year cannot be
    /// shown to be inside the years asked for, so it is not delivered (minimum necessary).
    pub fn within_filters(
        &self,
        record: &(impl SourceRecord + ?Sized),
        line: u64,
    ) -> Result<bool, RowError> {
        if let Some((index, name, years)) = &self.years {
            let value = record.field(*index).trim_ascii();
            if value.is_empty() {
                return Ok(false);
            }
            let year = transform::leading_year(value).ok_or_else(|| RowError::Unparseable {
                file: self.file.clone(),
                line,
                column: name.clone(),
                expected: "a date or period starting with a four-digit year",
            })?;
            if !years.contains(&year) {
                return Ok(false);
            }
        }
        if let Some((index, payers)) = &self.payers {
            let value = record.field(*index).trim_ascii();
            if !payers.iter().any(|p| p.as_slice() == value) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
