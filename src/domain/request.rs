//! A data request (seed 001 section 3.2, "Data applications shall at a minimum ...") and its
//! validation against the element catalog, so that an element that does not exist or is above
//! the level is refused at submission, not at extraction (issue 5). Also the reviewer's
//! narrowing of the element list, which may only ever remove elements.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::aggregate::{AggregateError, AggregateRequest};
use crate::domain::ids::{OrgId, UserId};
use crate::domain::level::Level;
use crate::policy::{Catalog, ElementId, FileType};

/// Longest free text accepted in any field of a request, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Earliest year a row filter may name: no source data is older (and a typo such as `202`
/// must not silently mean "everything").
pub const EARLIEST_YEAR: i32 = 1990;

/// Latest year a row filter may name.
pub const LATEST_YEAR: i32 = 2999;

/// Errors of request validation and narrowing; each names the offending item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request names no dataset.
    #[error("the request names no dataset")]
    NoDatasets,
    /// A dataset is listed twice.
    #[error("dataset `{0}` is listed more than once")]
    DuplicateDataset(FileType),
    /// A dataset is listed but none of its elements is requested.
    #[error("dataset `{0}` is requested but none of its elements is")]
    DatasetWithoutElements(FileType),
    /// The request names no element.
    #[error("the request names no element")]
    NoElements,
    /// An element is listed twice.
    #[error("element `{0}` is listed more than once")]
    DuplicateElement(ElementId),
    /// The element is not in the catalog.
    #[error("element `{0}` is not in the element catalog")]
    UnknownElement(ElementId),
    /// The element belongs to a dataset that the request does not name.
    #[error("element `{element}` belongs to dataset `{dataset}`, which the request does not name")]
    DatasetNotRequested {
        /// The element.
        element: ElementId,
        /// Its dataset.
        dataset: FileType,
    },
    /// The element may never be released at row level (seed 001 section 3.1 D, charges).
    #[error("element `{0}` is never released at row level (seed 001 section 3.1 D)")]
    NeverReleasable(ElementId),
    /// The element needs a higher level than the one requested.
    #[error("element `{element}` needs Level {lowest} but the request is for Level {level}")]
    AboveLevel {
        /// The element.
        element: ElementId,
        /// The lowest level that may carry it.
        lowest: Level,
        /// The request's level.
        level: Level,
    },
    /// A Level II or III element has no reason (seed 001 sections 3.2 C, 3.3 C: minimum
    /// necessary).
    #[error(
        "element `{0}` is a Level II or III element and needs a reason (minimum necessary, seed 001 section 3.2 C)"
    )]
    MissingReason(ElementId),
    /// An Appendix C element is requested without being asked for by name (seed 001 section
    /// 7.2 A).
    #[error(
        "element `{0}` is supplemental (Appendix C) and must also be asked for by name in the supplemental list"
    )]
    SupplementalNotNamed(ElementId),
    /// The supplemental list names an element that is not from Appendix C.
    #[error("element `{0}` is named as supplemental but is not an Appendix C element")]
    NotSupplemental(ElementId),
    /// The supplemental list names an element that is not among the requested elements.
    #[error("element `{0}` is named as supplemental but is not among the requested elements")]
    SupplementalNotRequested(ElementId),
    /// A required text field is empty.
    #[error("`{0}` is required and may not be blank")]
    Blank(&'static str),
    /// A text field is too long.
    #[error("`{field}` is longer than {max} characters")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// The year range is empty or outside the years the agency holds.
    #[error("bad year range {first}-{last}: {why}")]
    BadYearRange {
        /// First year asked for.
        first: i32,
        /// Last year asked for.
        last: i32,
        /// What is wrong.
        why: &'static str,
    },
    /// A payer is listed twice.
    #[error("payer `{0}` is listed more than once")]
    DuplicatePayer(String),
    /// At review, an element was proposed that the request did not ask for: approval may narrow
    /// the request, never widen it.
    #[error("element `{0}` was not requested; approval may only narrow the request")]
    NotRequested(ElementId),
    /// At review, every element was removed: that is a denial, not an approval.
    #[error("the approved element list is empty; deny the request instead")]
    NothingApproved,
    /// The aggregate part of the request is refused.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// At review, a dimension of an aggregate request was removed: the table would change
    /// shape, so the request goes back for changes instead.
    #[error("an aggregate request's dimensions cannot be narrowed; return it for changes instead")]
    AggregateNarrowed,
}

/// Whether an institutional review board oversees the use (seed 001 section 3.2 E).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Irb {
    /// No IRB is to be used.
    NotUsed,
    /// An IRB is used.
    Used {
        /// The board's name.
        board: String,
        /// The protocol or approval number, when one exists yet.
        protocol: Option<String>,
    },
}

/// One requested element and why it is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedElement {
    /// The catalog element.
    pub element: ElementId,
    /// Why the element is needed; required for Level II and III elements (seed 001 section
    /// 3.2 C).
    pub reason: Option<String>,
}

/// Inclusive range of service years the rows are limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YearRange {
    /// First year, inclusive.
    pub first: i32,
    /// Last year, inclusive.
    pub last: i32,
}

/// Row filters: which rows of the datasets are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFilters {
    /// Service years.
    pub years: YearRange,
    /// Payer ids to limit the rows to; empty means every payer.
    pub payers: Vec<String>,
}

/// A data request as the applicant wrote it; [`DataRequest::validate`] checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRequest {
    /// The requesting organization (seed 001 section 3.2 A).
    pub organization: OrgId,
    /// The person filing it, a user of that organization (checked by the caller).
    pub contact: UserId,
    /// The level asked for (section 3.2 B).
    pub level: Level,
    /// The datasets asked for.
    pub datasets: Vec<FileType>,
    /// The exact elements asked for, each with its reason (sections 3.2 C, 3.3 C).
    pub elements: Vec<RequestedElement>,
    /// The Appendix C elements asked for by name (section 7.2 A); each must also be in
    /// `elements`.
    pub supplemental: Vec<ElementId>,
    /// What the data will be used for (section 3.2 D).
    pub purpose: String,
    /// Whether an IRB is used (section 3.2 E).
    pub irb: Irb,
    /// The ultimate recipient or user of the data (section 3.2 F).
    pub ultimate_recipient: String,
    /// Security and privacy measures (section 3.2 G).
    pub security_measures: String,
    /// How, or if, results will be published (section 3.2 H).
    pub publication_plan: String,
    /// Which rows are wanted.
    pub filters: RowFilters,
    /// For an aggregate release, the table asked for; `None` for row-level files. The
    /// dimensions' elements are then the request's `elements`.
    pub aggregate: Option<AggregateRequest>,
}

/// A request that passed [`DataRequest::validate`]; only that function makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRequest {
    request: DataRequest,
    datasets: BTreeSet<FileType>,
    elements: BTreeSet<ElementId>,
    supplemental: BTreeSet<ElementId>,
}

/// The elements a reviewer approved: a non-empty subset of the request's elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedElements {
    elements: BTreeSet<ElementId>,
    supplemental: BTreeSet<ElementId>,
}

fn check_text(field: &'static str, text: &str) -> Result<(), RequestError> {
    if text.trim().is_empty() {
        return Err(RequestError::Blank(field));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(RequestError::TooLong {
            field,
            max: MAX_TEXT_CHARS,
        });
    }
    Ok(())
}

impl YearRange {
    fn check(self) -> Result<(), RequestError> {
        let bad = |why| RequestError::BadYearRange {
            first: self.first,
            last: self.last,
            why,
        };
        if self.first > self.last {
            return Err(bad("the first year is after the last"));
        }
        if self.first < EARLIEST_YEAR || self.last > LATEST_YEAR {
            return Err(bad("years must be between 1990 and 2999"));
        }
        Ok(())
    }
}

impl DataRequest {
    /// Checks the request against the catalog, refusing the first problem found, in this order:
    /// texts, year range, payers, datasets, then each element in the order given.
    pub fn validate(&self, catalog: &Catalog) -> Result<ValidatedRequest, RequestError> {
        check_text("purpose", &self.purpose)?;
        check_text("ultimate_recipient", &self.ultimate_recipient)?;
        check_text("security_measures", &self.security_measures)?;
        check_text("publication_plan", &self.publication_plan)?;
        if let Irb::Used { board, protocol } = &self.irb {
            check_text("irb.board", board)?;
            if let Some(protocol) = protocol {
                check_text("irb.protocol", protocol)?;
            }
        }
        self.filters.years.check()?;
        let mut payers = BTreeSet::new();
        for payer in &self.filters.payers {
            check_text("filters.payers", payer)?;
            if !payers.insert(payer.as_str()) {
                return Err(RequestError::DuplicatePayer(payer.clone()));
            }
        }

        if let Some(aggregate) = &self.aggregate {
            return self.validate_aggregate(aggregate, catalog);
        }
        if self.datasets.is_empty() {
            return Err(RequestError::NoDatasets);
        }
        let mut datasets = BTreeSet::new();
        for dataset in &self.datasets {
            if !datasets.insert(*dataset) {
                return Err(RequestError::DuplicateDataset(*dataset));
            }
        }

        if self.elements.is_empty() {
            return Err(RequestError::NoElements);
        }
        let named: BTreeSet<&ElementId> = self.supplemental.iter().collect();
        let mut elements = BTreeSet::new();
        for requested in &self.elements {
            let id = &requested.element;
            if !elements.insert(id.clone()) {
                return Err(RequestError::DuplicateElement(id.clone()));
            }
            let element = catalog
                .get(id)
                .ok_or_else(|| RequestError::UnknownElement(id.clone()))?;
            if !datasets.contains(&element.file_type()) {
                return Err(RequestError::DatasetNotRequested {
                    element: id.clone(),
                    dataset: element.file_type(),
                });
            }
            let lowest = element
                .lowest_level
                .ok_or_else(|| RequestError::NeverReleasable(id.clone()))?;
            if lowest > self.level {
                return Err(RequestError::AboveLevel {
                    element: id.clone(),
                    lowest,
                    level: self.level,
                });
            }
            // Minimum necessary is argued for what goes beyond de-identified data: the
            // elements that only Level II or III may carry (seed 001 section 3.2 C).
            if lowest > Level::I {
                match &requested.reason {
                    None => return Err(RequestError::MissingReason(id.clone())),
                    Some(reason) if reason.trim().is_empty() => {
                        return Err(RequestError::MissingReason(id.clone()))
                    }
                    Some(reason) => check_text("reason", reason)?,
                }
            } else if let Some(reason) = &requested.reason {
                check_text("reason", reason)?;
            }
            if element.supplemental && !named.contains(id) {
                return Err(RequestError::SupplementalNotNamed(id.clone()));
            }
        }

        let mut supplemental = BTreeSet::new();
        for id in &self.supplemental {
            if !supplemental.insert(id.clone()) {
                return Err(RequestError::DuplicateElement(id.clone()));
            }
            let element = catalog
                .get(id)
                .ok_or_else(|| RequestError::UnknownElement(id.clone()))?;
            if !element.supplemental {
                return Err(RequestError::NotSupplemental(id.clone()));
            }
            if !elements.contains(id) {
                return Err(RequestError::SupplementalNotRequested(id.clone()));
            }
        }

        // A dataset with nothing requested from it would be delivered as an empty file: the
        // applicant most likely forgot its elements, and minimum necessary says drop it.
        for dataset in &datasets {
            if !elements.iter().any(|e| e.file_type() == *dataset) {
                return Err(RequestError::DatasetWithoutElements(*dataset));
            }
        }

        Ok(ValidatedRequest {
            request: self.clone(),
            datasets,
            elements,
            supplemental,
        })
    }
}

impl DataRequest {
    /// The rest of [`DataRequest::validate`] for an aggregate request: the table's checks
    /// stand for the element checks, and the elements must be the dimensions'.
    fn validate_aggregate(
        &self,
        aggregate: &AggregateRequest,
        catalog: &Catalog,
    ) -> Result<ValidatedRequest, RequestError> {
        let elements = aggregate.check(self.level, &self.datasets, catalog)?;
        let listed: BTreeSet<ElementId> = self.elements.iter().map(|e| e.element.clone()).collect();
        if listed != elements
            || listed.len() != self.elements.len()
            || !self.supplemental.is_empty()
        {
            return Err(AggregateError::ElementsListed.into());
        }
        Ok(ValidatedRequest {
            request: self.clone(),
            datasets: self.datasets.iter().copied().collect(),
            elements,
            supplemental: BTreeSet::new(),
        })
    }
}

impl ValidatedRequest {
    /// The request as filed.
    pub fn request(&self) -> &DataRequest {
        &self.request
    }

    /// The level asked for.
    pub fn level(&self) -> Level {
        self.request.level
    }

    /// The datasets asked for.
    pub fn datasets(&self) -> &BTreeSet<FileType> {
        &self.datasets
    }

    /// Every element asked for, supplemental ones included.
    pub fn elements(&self) -> &BTreeSet<ElementId> {
        &self.elements
    }

    /// The Appendix C elements asked for by name.
    pub fn supplemental(&self) -> &BTreeSet<ElementId> {
        &self.supplemental
    }

    /// The reason given for each element that has one.
    pub fn reasons(&self) -> BTreeMap<&ElementId, &str> {
        self.request
            .elements
            .iter()
            .filter_map(|e| e.reason.as_deref().map(|r| (&e.element, r)))
            .collect()
    }

    /// Everything requested, approved as is.
    pub fn approve_all(&self) -> ApprovedElements {
        ApprovedElements {
            elements: self.elements.clone(),
            supplemental: self.supplemental.clone(),
        }
    }
}

/// The reviewer's narrowing: `proposed` must be a non-empty subset of what was requested.
pub fn narrow(
    requested: &ValidatedRequest,
    proposed: &BTreeSet<ElementId>,
) -> Result<ApprovedElements, RequestError> {
    if requested.request.aggregate.is_some() && proposed != requested.elements() {
        return Err(RequestError::AggregateNarrowed);
    }
    requested.approve_all().narrow(proposed)
}

impl ApprovedElements {
    /// Narrows further (a second reviewer): `proposed` must be a non-empty subset of `self`.
    pub fn narrow(&self, proposed: &BTreeSet<ElementId>) -> Result<ApprovedElements, RequestError> {
        if let Some(extra) = proposed.iter().find(|e| !self.elements.contains(*e)) {
            return Err(RequestError::NotRequested(extra.clone()));
        }
        if proposed.is_empty() {
            return Err(RequestError::NothingApproved);
        }
        Ok(ApprovedElements {
            elements: proposed.clone(),
            // Subsets of a validated request stay valid: levels and datasets cannot grow, and a
            // supplemental element stays named exactly when it stays approved.
            supplemental: self.supplemental.intersection(proposed).cloned().collect(),
        })
    }

    /// The approved elements: what extraction obeys.
    pub fn elements(&self) -> &BTreeSet<ElementId> {
        &self.elements
    }

    /// The approved Appendix C elements (each was asked for by name).
    pub fn supplemental(&self) -> &BTreeSet<ElementId> {
        &self.supplemental
    }

    /// The datasets that still have at least one approved element.
    pub fn datasets(&self) -> BTreeSet<FileType> {
        self.elements.iter().map(ElementId::file_type).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ProtectedCategories;

    const MED_CLAIM: &str = r#"
file_type = "med_claim"

[[element]]
id = "med_claim.payer_id"
name = "Payer"
origin = "A"
class = "other"
level = "I"
transforms = { I = "keep", II = "keep", III = "keep" }

[[element]]
id = "med_claim.service_date"
name = "Service date"
origin = "B"
class = "date"
level = "II"
transforms = { II = "date", III = "date" }

[[element]]
id = "med_claim.member_group_id"
name = "Member group"
origin = "C"
class = "other"
supplemental = true
level = "I"
transforms = { I = "keep", II = "keep", III = "keep" }

[[element]]
id = "med_claim.total_charge"
name = "Total charge"
origin = "section 3.1 D"
class = "charge"
"#;

    const MED_ELIG: &str = r#"
file_type = "med_elig"

[[element]]
id = "med_elig.member_gender"
name = "Gender"
origin = "A"
class = "other"
level = "I"
transforms = { I = "keep", II = "keep", III = "keep" }

[[element]]
id = "med_elig.member_name"
name = "Name"
origin = "D"
class = "direct_identifier"
level = "III"
transforms = { III = "keep" }
"#;

    fn catalog() -> Catalog {
        let protected = ProtectedCategories::parse("p.toml", "").expect("empty protected");
        Catalog::from_files(
            &[
                ("med_claim.toml".into(), MED_CLAIM.into()),
                ("med_elig.toml".into(), MED_ELIG.into()),
            ],
            protected,
        )
        .expect("test catalog")
    }

    fn id(s: &str) -> ElementId {
        ElementId::parse(s).expect("id")
    }

    fn el(s: &str, reason: Option<&str>) -> RequestedElement {
        RequestedElement {
            element: id(s),
            reason: reason.map(str::to_owned),
        }
    }

    /// A valid Level II request for two datasets with a supplemental element.
    fn request() -> DataRequest {
        DataRequest {
            organization: OrgId::new_random(),
            contact: UserId::new_random(),
            level: Level::II,
            datasets: vec![FileType::MedClaim, FileType::MedElig],
            elements: vec![
                el("med_claim.payer_id", None),
                el("med_claim.service_date", Some("episode timing")),
                el("med_claim.member_group_id", None),
                el("med_elig.member_gender", None),
            ],
            supplemental: vec![id("med_claim.member_group_id")],
            purpose: "Study of readmissions".into(),
            irb: Irb::Used {
                board: "University IRB".into(),
                protocol: Some("2025-113".into()),
            },
            ultimate_recipient: "The study team".into(),
            security_measures: "Encrypted at rest, access-controlled enclave".into(),
            publication_plan: "Aggregate results in a journal".into(),
            filters: RowFilters {
                years: YearRange {
                    first: 2019,
                    last: 2023,
                },
                payers: vec!["P01".into(), "P02".into()],
            },
            aggregate: None,
        }
    }

    fn refused(r: DataRequest) -> RequestError {
        r.validate(&catalog()).expect_err("must be refused")
    }

    #[test]
    fn accepts_a_valid_request() {
        let v = request().validate(&catalog()).expect("valid");
        assert_eq!(v.level(), Level::II);
        assert_eq!(v.elements().len(), 4);
        assert_eq!(
            v.supplemental().iter().collect::<Vec<_>>(),
            vec![&id("med_claim.member_group_id")]
        );
        assert_eq!(
            v.datasets().iter().copied().collect::<Vec<_>>(),
            vec![FileType::MedElig, FileType::MedClaim]
        );
        assert_eq!(
            v.reasons().get(&id("med_claim.service_date")),
            Some(&"episode timing")
        );
    }

    #[test]
    fn refuses_unknown_element() {
        let mut r = request();
        r.elements.push(el("med_claim.no_such", None));
        assert_eq!(
            refused(r),
            RequestError::UnknownElement(id("med_claim.no_such"))
        );
    }

    #[test]
    fn refuses_element_of_a_dataset_not_requested() {
        let mut r = request();
        r.datasets = vec![FileType::MedClaim];
        let err = refused(r);
        assert_eq!(
            err,
            RequestError::DatasetNotRequested {
                element: id("med_elig.member_gender"),
                dataset: FileType::MedElig
            }
        );
        assert!(err.to_string().contains("med_elig.member_gender"), "{err}");
    }

    #[test]
    fn refuses_element_above_level() {
        let mut r = request();
        r.level = Level::I;
        let err = refused(r);
        assert_eq!(
            err,
            RequestError::AboveLevel {
                element: id("med_claim.service_date"),
                lowest: Level::II,
                level: Level::I
            }
        );
        assert_eq!(
            err.to_string(),
            "element `med_claim.service_date` needs Level II but the request is for Level I"
        );

        let mut r = request();
        r.elements.push(el("med_elig.member_name", Some("linkage")));
        assert!(matches!(
            refused(r),
            RequestError::AboveLevel {
                lowest: Level::III,
                ..
            }
        ));
    }

    #[test]
    fn refuses_charges_at_every_level() {
        let mut r = request();
        r.level = Level::III;
        r.elements.push(el("med_claim.total_charge", Some("costs")));
        assert_eq!(
            refused(r),
            RequestError::NeverReleasable(id("med_claim.total_charge"))
        );
    }

    #[test]
    fn refuses_level_two_or_three_element_without_reason() {
        let mut r = request();
        r.elements[1].reason = None;
        assert_eq!(
            refused(r),
            RequestError::MissingReason(id("med_claim.service_date"))
        );
        let mut r = request();
        r.elements[1].reason = Some("  \n".into());
        assert_eq!(
            refused(r),
            RequestError::MissingReason(id("med_claim.service_date"))
        );
        let mut r = request();
        r.level = Level::III;
        r.elements.push(el("med_elig.member_name", None));
        assert_eq!(
            refused(r),
            RequestError::MissingReason(id("med_elig.member_name"))
        );
    }

    #[test]
    fn level_one_elements_need_no_reason_even_in_a_level_three_request() {
        let mut r = request();
        r.level = Level::III;
        r.elements
            .push(el("med_elig.member_name", Some("linkage to registry")));
        assert!(r.validate(&catalog()).is_ok());
    }

    #[test]
    fn refuses_supplemental_element_not_named() {
        let mut r = request();
        r.supplemental.clear();
        let err = refused(r);
        assert_eq!(
            err,
            RequestError::SupplementalNotNamed(id("med_claim.member_group_id"))
        );
        assert!(err.to_string().contains("Appendix C"), "{err}");
    }

    #[test]
    fn refuses_bad_supplemental_list() {
        let mut r = request();
        r.supplemental.push(id("med_claim.payer_id"));
        assert_eq!(
            refused(r),
            RequestError::NotSupplemental(id("med_claim.payer_id"))
        );
        let mut r = request();
        r.elements
            .retain(|e| e.element != id("med_claim.member_group_id"));
        assert_eq!(
            refused(r),
            RequestError::SupplementalNotRequested(id("med_claim.member_group_id"))
        );
        let mut r = request();
        r.supplemental.push(id("med_claim.member_group_id"));
        assert_eq!(
            refused(r),
            RequestError::DuplicateElement(id("med_claim.member_group_id"))
        );
        let mut r = request();
        r.supplemental.push(id("med_claim.nope"));
        assert_eq!(
            refused(r),
            RequestError::UnknownElement(id("med_claim.nope"))
        );
    }

    #[test]
    fn refuses_empty_and_duplicate_lists() {
        let mut r = request();
        r.elements.clear();
        assert_eq!(refused(r), RequestError::NoElements);
        let mut r = request();
        r.datasets.clear();
        assert_eq!(refused(r), RequestError::NoDatasets);
        let mut r = request();
        r.datasets.push(FileType::MedClaim);
        assert_eq!(
            refused(r),
            RequestError::DuplicateDataset(FileType::MedClaim)
        );
        let mut r = request();
        r.elements.push(el("med_claim.payer_id", None));
        assert_eq!(
            refused(r),
            RequestError::DuplicateElement(id("med_claim.payer_id"))
        );
        let mut r = request();
        r.datasets.push(FileType::PharmClaim);
        assert_eq!(
            refused(r),
            RequestError::DatasetWithoutElements(FileType::PharmClaim)
        );
        let mut r = request();
        r.filters.payers.push("P01".into());
        assert_eq!(refused(r), RequestError::DuplicatePayer("P01".into()));
    }

    #[test]
    fn refuses_bad_year_ranges() {
        for (first, last) in [(2023, 2019), (1989, 2000), (2020, 3000), (202, 2020)] {
            let mut r = request();
            r.filters.years = YearRange { first, last };
            let err = refused(r);
            assert!(
                matches!(err, RequestError::BadYearRange { first: f, last: l, .. } if f == first && l == last),
                "{err}"
            );
        }
        let mut r = request();
        r.filters.years = YearRange {
            first: 2020,
            last: 2020,
        };
        assert!(r.validate(&catalog()).is_ok(), "a single year is a range");
    }

    #[test]
    fn refuses_blank_or_huge_texts() {
        let mut r = request();
        r.purpose = " ".into();
        assert_eq!(refused(r), RequestError::Blank("purpose"));
        let mut r = request();
        r.security_measures.clear();
        assert_eq!(refused(r), RequestError::Blank("security_measures"));
        let mut r = request();
        r.ultimate_recipient.clear();
        assert_eq!(refused(r), RequestError::Blank("ultimate_recipient"));
        let mut r = request();
        r.publication_plan.clear();
        assert_eq!(refused(r), RequestError::Blank("publication_plan"));
        let mut r = request();
        r.irb = Irb::Used {
            board: String::new(),
            protocol: None,
        };
        assert_eq!(refused(r), RequestError::Blank("irb.board"));
        let mut r = request();
        r.purpose = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            refused(r),
            RequestError::TooLong {
                field: "purpose",
                max: MAX_TEXT_CHARS
            }
        );
        let mut r = request();
        r.irb = Irb::NotUsed;
        assert!(r.validate(&catalog()).is_ok());
    }

    #[test]
    fn narrowing_only_removes() {
        let v = request().validate(&catalog()).expect("valid");
        let proposed: BTreeSet<_> = [id("med_claim.payer_id"), id("med_claim.service_date")]
            .into_iter()
            .collect();
        let approved = narrow(&v, &proposed).expect("subset");
        assert_eq!(approved.elements(), &proposed);
        assert!(
            approved.supplemental().is_empty(),
            "dropped with its element"
        );
        assert_eq!(
            approved.datasets().into_iter().collect::<Vec<_>>(),
            vec![FileType::MedClaim]
        );

        // Never widen: not even with an element the level and datasets would allow.
        let mut wider = proposed.clone();
        wider.insert(id("med_elig.member_name"));
        assert_eq!(
            narrow(&v, &wider),
            Err(RequestError::NotRequested(id("med_elig.member_name")))
        );
        // A second narrowing cannot bring back what the first removed.
        let back: BTreeSet<_> = [id("med_claim.member_group_id")].into_iter().collect();
        assert_eq!(
            approved.narrow(&back),
            Err(RequestError::NotRequested(id("med_claim.member_group_id")))
        );
        assert_eq!(
            narrow(&v, &BTreeSet::new()),
            Err(RequestError::NothingApproved)
        );
        let all = narrow(&v, v.elements()).expect("same set");
        assert_eq!(all, v.approve_all());
        assert_eq!(all.supplemental(), v.supplemental());
    }

    #[test]
    fn validates_against_the_shipped_catalog() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policy");
        let catalog = Catalog::load(&dir).expect("shipped catalog");
        let level_one: Vec<_> = catalog
            .elements_of(FileType::MedClaim)
            .filter(|e| e.lowest_level == Some(Level::I) && !e.supplemental)
            .map(|e| el(e.id.as_str(), None))
            .collect();
        let mut r = request();
        r.level = Level::I;
        r.datasets = vec![FileType::MedClaim];
        r.elements = level_one;
        r.supplemental.clear();
        r.validate(&catalog)
            .expect("every plain Level I element is requestable");
    }
}
