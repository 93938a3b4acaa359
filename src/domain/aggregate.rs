//! An aggregate request: a count table of one dataset, by one to four dimensions from the
//! catalog, instead of row-level files (seed 003, the aggregate data release standards). The
//! request names each dimension by the catalog element it is read from and how its values are
//! grouped; [`AggregateRequest::check`] decides whether the release's level allows it.

use std::collections::BTreeSet;

use crate::domain::level::Level;
use crate::policy::catalog::{Catalog, Element, ElementClass, ElementId, FileType, Transform};

/// Most dimensions an aggregate table may have (the disclosure tables' limit).
pub const MAX_DIMENSIONS: usize = crate::disclosure::table::MAX_DIMENSIONS;

/// The threshold of seed 003: no non-zero cell under 11 may be shown.
pub const DEFAULT_THRESHOLD: u32 = 11;

/// The largest threshold a release may set: beyond it nearly every cell of a health table
/// would be suppressed, which is a typo rather than a policy.
pub const MAX_THRESHOLD: u32 = 1_000;

/// How a dimension's source values are grouped into categories.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// The value as the release's level delivers it at row level (a year, a quarter, a
    /// gender, a county, an age top-coded at 90).
    #[default]
    Value,
    /// Five-year age bands, `00-04` to `85-89`, then `90 or over`.
    AgeBand,
    /// The 3-digit ZIP, merged into `000` where the population is 20,000 or less (seed 003).
    Zip3,
    /// A diagnosis or procedure code's first three characters (its category).
    CodeGroup,
}

impl Grouping {
    /// The stable name, as requests and the data dictionary write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Grouping::Value => "value",
            Grouping::AgeBand => "age_band",
            Grouping::Zip3 => "zip3",
            Grouping::CodeGroup => "code_group",
        }
    }
}

/// What a cell counts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Source rows, whatever they are.
    Records,
    /// Claim lines of a claims dataset.
    Claims,
    /// Discharges of the inpatient dataset.
    Discharges,
    /// Distinct members (by the dataset's member id or SSN). Distinct counts do not add up
    /// (one member can be in several cells), so such a table has no margins.
    DistinctMembers,
}

impl Measure {
    /// The stable name: the count column's header and the notice's wording.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Records => "records",
            Measure::Claims => "claims",
            Measure::Discharges => "discharges",
            Measure::DistinctMembers => "distinct_members",
        }
    }

    /// What the count is, in words, for the notice ("discharge counts").
    pub fn phrase(self) -> &'static str {
        match self {
            Measure::Records => "record counts",
            Measure::Claims => "claim counts",
            Measure::Discharges => "discharge counts",
            Measure::DistinctMembers => "member counts",
        }
    }
}

/// One dimension of the table. Its serde form is both the request's (`POST /api/v1/requests`)
/// and the stored request's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The catalog element its values are read from.
    #[schema(value_type = String, example = "med_elig.member_age")]
    pub element: ElementId,
    /// How the values are grouped (the catalog lists each element's groupings).
    #[serde(default)]
    pub grouping: Grouping,
}

impl Dimension {
    /// The table's column header: the element without its dataset prefix, with a suffix
    /// naming the grouping when it is not the plain value (`age_band`, `zip_code_3digit`,
    /// `principal_diagnosis_group`).
    pub fn header(&self) -> String {
        let local = self.element.local();
        match self.grouping {
            Grouping::Value => local.to_owned(),
            Grouping::AgeBand => format!("{local}_band"),
            Grouping::Zip3 => format!("{local}_3digit"),
            Grouping::CodeGroup => format!("{local}_group"),
        }
    }
}

/// The aggregate part of a request (in its serde form, as requested and as stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateRequest {
    /// One to four dimensions, in the table's order.
    pub dimensions: Vec<Dimension>,
    /// What a cell counts.
    pub measure: Measure,
    /// Whether totals per dimension and the grand total are published.
    #[serde(default = "publish_margins")]
    pub margins: bool,
    /// Cells from 1 to `threshold - 1` are suppressed (1 to 1000, default
    /// [`DEFAULT_THRESHOLD`]).
    #[serde(default = "default_threshold")]
    #[schema(minimum = 1, maximum = 1000)]
    pub threshold: u32,
}

fn publish_margins() -> bool {
    true
}

fn default_threshold() -> u32 {
    DEFAULT_THRESHOLD
}

/// Why an aggregate request was refused; each names the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// Not exactly one dataset.
    #[error("an aggregate request counts exactly one dataset, not {0}")]
    Datasets(usize),
    /// No dimension, or more than four.
    #[error("an aggregate table has 1 to {MAX_DIMENSIONS} dimensions, not {0}")]
    DimensionCount(usize),
    /// A dimension's element is not in the catalog.
    #[error("dimension `{0}` is not an element of the catalog")]
    UnknownDimension(ElementId),
    /// The same element is used twice.
    #[error("dimension `{0}` is listed more than once")]
    DuplicateDimension(ElementId),
    /// A dimension's element belongs to another dataset.
    #[error("dimension `{element}` belongs to dataset `{dataset}`, not the one counted")]
    OtherDataset {
        /// The element.
        element: ElementId,
        /// Its dataset.
        dataset: FileType,
    },
    /// The element cannot be a dimension at the release's level, or not with that grouping.
    #[error("dimension `{element}` ({grouping}) is not allowed at Level {level}: {why}")]
    NotAllowed {
        /// The element.
        element: ElementId,
        /// The grouping asked for.
        grouping: &'static str,
        /// The release's level.
        level: Level,
        /// Why.
        why: &'static str,
    },
    /// The measure does not fit the dataset.
    #[error("measure `{measure}` does not fit dataset `{dataset}`: {why}")]
    Measure {
        /// The measure.
        measure: &'static str,
        /// The dataset.
        dataset: FileType,
        /// Why.
        why: &'static str,
    },
    /// The threshold is out of range.
    #[error("the suppression threshold must be from 1 to {MAX_THRESHOLD}, not {0}")]
    Threshold(u32),
    /// The request also lists row-level elements.
    #[error("an aggregate request names dimensions, not elements")]
    ElementsListed,
}

/// Whether `element`, grouped by `grouping`, may be a dimension of a table at `level`.
fn allowed(element: &Element, grouping: Grouping, level: Level) -> Result<(), &'static str> {
    let transform = element.transform_at(level);
    match element.class {
        ElementClass::DirectIdentifier | ElementClass::ReplacementId | ElementClass::Provider => {
            return Err("it identifies a person or a practitioner")
        }
        ElementClass::Charge | ElementClass::Financial => {
            return Err("amounts are measures, not categories")
        }
        _ => {}
    }
    match grouping {
        // Seed 003 allows a 3-digit ZIP in de-identified tables where the population is over
        // 20,000; smaller ones are merged into `000` by the extract.
        Grouping::Zip3 => {
            let is_zip = [Level::I, Level::II, Level::III]
                .into_iter()
                .any(|l| element.transform_at(l) == Some(Transform::Zip5));
            is_zip.then_some(()).ok_or("it is not a ZIP code")
        }
        Grouping::AgeBand => match transform {
            Some(Transform::TopCodeAge90) => Ok(()),
            Some(_) => Err("it is not an age"),
            None => Err("the element is above the release's level"),
        },
        Grouping::CodeGroup => match (element.code_kind, transform) {
            (None, _) => Err("it is not a diagnosis or procedure code"),
            (Some(_), Some(_)) => Ok(()),
            (Some(_), None) => Err("the element is above the release's level"),
        },
        Grouping::Value => match transform {
            None => Err("the element is above the release's level"),
            Some(Transform::BirthDateUnless90 | Transform::ReplacementId) => {
                Err("its values identify a person")
            }
            Some(_) => Ok(()),
        },
    }
}

/// The groupings `element` may be a dimension by at `level`, for the catalog.
pub fn allowed_groupings(element: &Element, level: Level) -> Vec<Grouping> {
    [
        Grouping::Value,
        Grouping::AgeBand,
        Grouping::Zip3,
        Grouping::CodeGroup,
    ]
    .into_iter()
    .filter(|&g| allowed(element, g, level).is_ok())
    .collect()
}

impl AggregateRequest {
    /// Checks the request for a table of `dataset` at `level` against the catalog. Returns the
    /// dimensions' elements, which stand for the request's element list in review and
    /// approval.
    pub fn check(
        &self,
        level: Level,
        datasets: &[FileType],
        catalog: &Catalog,
    ) -> Result<BTreeSet<ElementId>, AggregateError> {
        let [dataset] = datasets else {
            return Err(AggregateError::Datasets(datasets.len()));
        };
        if self.dimensions.is_empty() || self.dimensions.len() > MAX_DIMENSIONS {
            return Err(AggregateError::DimensionCount(self.dimensions.len()));
        }
        if !(1..=MAX_THRESHOLD).contains(&self.threshold) {
            return Err(AggregateError::Threshold(self.threshold));
        }
        let mut elements = BTreeSet::new();
        for dimension in &self.dimensions {
            let id = &dimension.element;
            let element = catalog
                .get(id)
                .ok_or_else(|| AggregateError::UnknownDimension(id.clone()))?;
            if !elements.insert(id.clone()) {
                return Err(AggregateError::DuplicateDimension(id.clone()));
            }
            if element.file_type() != *dataset {
                return Err(AggregateError::OtherDataset {
                    element: id.clone(),
                    dataset: element.file_type(),
                });
            }
            allowed(element, dimension.grouping, level).map_err(|why| {
                AggregateError::NotAllowed {
                    element: id.clone(),
                    grouping: dimension.grouping.as_str(),
                    level,
                    why,
                }
            })?;
        }
        self.check_measure(*dataset, catalog)?;
        Ok(elements)
    }

    fn check_measure(&self, dataset: FileType, catalog: &Catalog) -> Result<(), AggregateError> {
        let refuse = |why| {
            Err(AggregateError::Measure {
                measure: self.measure.as_str(),
                dataset,
                why,
            })
        };
        match self.measure {
            Measure::Records => Ok(()),
            Measure::Claims if dataset.as_str().ends_with("_claim") => Ok(()),
            Measure::Claims => refuse("it is not a claims dataset"),
            Measure::Discharges if dataset == FileType::HospInpatient => Ok(()),
            Measure::Discharges => refuse("only the inpatient dataset records discharges"),
            Measure::DistinctMembers => {
                if self.margins {
                    return refuse(
                        "distinct counts do not add up to totals, so the table must be asked for without margins",
                    );
                }
                let identified = catalog
                    .elements_of(dataset)
                    .any(|e| e.subject_key.is_some());
                if identified {
                    Ok(())
                } else {
                    refuse("the dataset has no member id or SSN to count members by")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn dimension(element: &str, grouping: Grouping) -> Dimension {
        Dimension {
            element: ElementId::parse(element).expect("id"),
            grouping,
        }
    }

    fn request(dimensions: Vec<Dimension>) -> AggregateRequest {
        AggregateRequest {
            dimensions,
            measure: Measure::Discharges,
            margins: true,
            threshold: DEFAULT_THRESHOLD,
        }
    }

    fn check(
        request: &AggregateRequest,
        level: Level,
    ) -> Result<BTreeSet<ElementId>, AggregateError> {
        let policy = Policy::shipped().expect("policy");
        request.check(level, &[FileType::HospInpatient], policy.catalog())
    }

    fn not_allowed(result: Result<BTreeSet<ElementId>, AggregateError>) -> &'static str {
        match result {
            Err(AggregateError::NotAllowed { why, .. }) => why,
            other => panic!("expected NotAllowed, got {other:?}"),
        }
    }

    #[test]
    fn level_i_dimensions_are_accepted_and_stand_for_the_elements() {
        let r = request(vec![
            dimension("hosp_inpatient.discharge_year", Grouping::Value),
            dimension("hosp_inpatient.age", Grouping::AgeBand),
            dimension("hosp_inpatient.zip_code", Grouping::Zip3),
            dimension("hosp_inpatient.principal_diagnosis", Grouping::CodeGroup),
        ]);
        let elements = check(&r, Level::I).expect("accepted");
        assert_eq!(elements.len(), 4);
        assert!(elements.contains(&ElementId::parse("hosp_inpatient.zip_code").expect("id")));
    }

    #[test]
    fn a_dimension_outside_the_catalog_or_the_level_is_refused_by_name() {
        let unknown = request(vec![dimension("hosp_inpatient.shoe_size", Grouping::Value)]);
        assert_eq!(
            check(&unknown, Level::I),
            Err(AggregateError::UnknownDimension(
                ElementId::parse("hosp_inpatient.shoe_size").expect("id")
            ))
        );
        // A 5-digit ZIP is Level II; at Level I only its 3-digit area may be a dimension.
        let zip5 = request(vec![dimension("hosp_inpatient.zip_code", Grouping::Value)]);
        assert_eq!(
            not_allowed(check(&zip5, Level::I)),
            "the element is above the release's level"
        );
        assert!(check(&zip5, Level::II).is_ok());
        let name = request(vec![dimension(
            "hosp_inpatient.patient_last_name",
            Grouping::Value,
        )]);
        assert_eq!(
            not_allowed(check(&name, Level::III)),
            "it identifies a person or a practitioner"
        );
        let gender_band = request(vec![dimension("hosp_inpatient.gender", Grouping::AgeBand)]);
        assert_eq!(
            not_allowed(check(&gender_band, Level::I)),
            "it is not an age"
        );
        let gender_zip = request(vec![dimension("hosp_inpatient.gender", Grouping::Zip3)]);
        assert_eq!(
            not_allowed(check(&gender_zip, Level::I)),
            "it is not a ZIP code"
        );
        let other = request(vec![dimension("med_claim.member_gender", Grouping::Value)]);
        assert!(matches!(
            check(&other, Level::I),
            Err(AggregateError::OtherDataset { .. })
        ));
    }

    #[test]
    fn shape_threshold_and_measure_are_checked() {
        let five: Vec<Dimension> = [
            "hosp_inpatient.gender",
            "hosp_inpatient.county",
            "hosp_inpatient.discharge_year",
            "hosp_inpatient.discharge_quarter",
            "hosp_inpatient.race",
        ]
        .iter()
        .map(|e| dimension(e, Grouping::Value))
        .collect();
        assert_eq!(
            check(&request(five), Level::I),
            Err(AggregateError::DimensionCount(5))
        );
        assert_eq!(
            check(&request(vec![]), Level::I),
            Err(AggregateError::DimensionCount(0))
        );
        let twice = request(vec![
            dimension("hosp_inpatient.gender", Grouping::Value),
            dimension("hosp_inpatient.gender", Grouping::Value),
        ]);
        assert!(matches!(
            check(&twice, Level::I),
            Err(AggregateError::DuplicateDimension(_))
        ));
        let mut zero = request(vec![dimension("hosp_inpatient.gender", Grouping::Value)]);
        zero.threshold = 0;
        assert_eq!(check(&zero, Level::I), Err(AggregateError::Threshold(0)));

        let policy = Policy::shipped().expect("policy");
        let catalog = policy.catalog();
        let claims = request(vec![dimension("med_claim.member_gender", Grouping::Value)]);
        assert!(matches!(
            claims.check(Level::I, &[FileType::MedClaim], catalog),
            Err(AggregateError::Measure {
                measure: "discharges",
                ..
            })
        ));
        let mut members = claims.clone();
        members.measure = Measure::DistinctMembers;
        assert!(matches!(
            members.check(Level::I, &[FileType::MedClaim], catalog),
            Err(AggregateError::Measure {
                measure: "distinct_members",
                ..
            })
        ));
        members.margins = false;
        assert!(members
            .check(Level::I, &[FileType::MedClaim], catalog)
            .is_ok());
        assert_eq!(
            members.check(Level::I, &[FileType::MedClaim, FileType::MedElig], catalog),
            Err(AggregateError::Datasets(2))
        );
    }
}
