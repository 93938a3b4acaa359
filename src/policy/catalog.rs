//! The element catalog: every data element of seed 001 Appendices A-D (and the charge elements
//! that section 3.1 D forbids), loaded from `config/policy/elements/*.toml` and checked so that
//! a catalog that contradicts the rule cannot be loaded at all.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::domain::level::Level;
use crate::policy::protected::{ProtectedCategories, ProtectedError};

/// Errors raised while loading or validating the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A catalog file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A catalog file is not valid TOML or has fields of the wrong type.
    #[error("{file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// The parser's error, which carries the line.
        source: toml::de::Error,
    },
    /// An element breaks a catalog rule.
    #[error("{file}:{line}: element `{element}`: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the element's table.
        line: usize,
        /// The element id as written.
        element: String,
        /// What is wrong.
        reason: String,
    },
    /// The same element id is defined twice.
    #[error("{file}:{line}: element `{element}` is already defined in {first}")]
    Duplicate {
        /// The file with the second definition.
        file: String,
        /// 1-based line of the second definition.
        line: usize,
        /// The element id.
        element: String,
        /// Where the first definition is (`file:line`).
        first: String,
    },
    /// The protected-categories file is invalid.
    #[error(transparent)]
    Protected(#[from] ProtectedError),
    /// A text is not a valid element id.
    #[error("`{0}` is not an element id (expected `<file_type>.<snake_case_name>`)")]
    InvalidId(String),
}

/// Stable identifier of a catalog element: `<file_type>.<snake_case name>`, e.g.
/// `med_claim.service_date_from`. Ids are never reused or renamed once shipped.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ElementId(String);

impl TryFrom<String> for ElementId {
    type Error = CatalogError;

    fn try_from(text: String) -> Result<Self, CatalogError> {
        ElementId::parse(&text)
    }
}

impl From<ElementId> for String {
    fn from(id: ElementId) -> String {
        id.0
    }
}

impl ElementId {
    /// Parses an id, checking its shape and that its prefix is a known file type.
    pub fn parse(s: &str) -> Result<Self, CatalogError> {
        let bad = || CatalogError::InvalidId(s.to_owned());
        let (ft, local) = s.split_once('.').ok_or_else(bad)?;
        FileType::from_str(ft).map_err(|_| bad())?;
        let snake = |p: &str| {
            p.starts_with(|c: char| c.is_ascii_lowercase())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !snake(local) {
            return Err(bad());
        }
        Ok(ElementId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the file type, used as the output column header.
    pub fn local(&self) -> &str {
        self.0.split_once('.').map_or(self.0.as_str(), |(_, l)| l)
    }

    /// The file type named by the prefix.
    pub fn file_type(&self) -> FileType {
        // `parse` is the only constructor and it checked the prefix, so the fallback is dead code
        // kept only to avoid a panic path.
        self.0
            .split_once('.')
            .and_then(|(ft, _)| FileType::from_str(ft).ok())
            .unwrap_or(FileType::Quality)
    }
}

impl fmt::Display for ElementId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ElementId {
    type Err = CatalogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ElementId::parse(s)
    }
}

/// The kinds of source file Steward releases (seed 001 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// APCD medical eligibility.
    MedElig,
    /// APCD medical claims.
    MedClaim,
    /// APCD pharmacy eligibility.
    PharmElig,
    /// APCD pharmacy claims.
    PharmClaim,
    /// APCD dental eligibility.
    DentalElig,
    /// APCD dental claims.
    DentalClaim,
    /// Hospital inpatient discharges.
    HospInpatient,
    /// Hospital outpatient encounters.
    HospOutpatient,
    /// Hospital restructuring data (Appendix A-1).
    Restructuring,
    /// Hospital quality data (Appendix A-2).
    Quality,
}

/// The text is not a known file type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown file type `{0}`")]
pub struct ParseFileTypeError(String);

impl FileType {
    /// Every file type, in catalog order.
    pub const ALL: [FileType; 10] = [
        FileType::MedElig,
        FileType::MedClaim,
        FileType::PharmElig,
        FileType::PharmClaim,
        FileType::DentalElig,
        FileType::DentalClaim,
        FileType::HospInpatient,
        FileType::HospOutpatient,
        FileType::Restructuring,
        FileType::Quality,
    ];

    /// The snake_case name used in ids, file names and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::MedElig => "med_elig",
            FileType::MedClaim => "med_claim",
            FileType::PharmElig => "pharm_elig",
            FileType::PharmClaim => "pharm_claim",
            FileType::DentalElig => "dental_elig",
            FileType::DentalClaim => "dental_claim",
            FileType::HospInpatient => "hosp_inpatient",
            FileType::HospOutpatient => "hosp_outpatient",
            FileType::Restructuring => "restructuring",
            FileType::Quality => "quality",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FileType {
    type Err = ParseFileTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FileType::ALL
            .into_iter()
            .find(|ft| ft.as_str() == s)
            .ok_or_else(|| ParseFileTypeError(s.to_owned()))
    }
}

/// Where in seed 001 an element comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub enum Origin {
    /// Appendix A (Level I).
    #[serde(rename = "A")]
    A,
    /// Appendix A-1 (restructuring, Level I).
    #[serde(rename = "A-1")]
    A1,
    /// Appendix A-2 (quality, Level I).
    #[serde(rename = "A-2")]
    A2,
    /// Appendix B (Level II).
    #[serde(rename = "B")]
    B,
    /// Appendix C (supplemental, any level, must be requested by name).
    #[serde(rename = "C")]
    C,
    /// Appendix D (Level III direct identifiers).
    #[serde(rename = "D")]
    D,
    /// Section 3.1 D: charges, held in the catalog only so that they are never released.
    #[serde(rename = "section 3.1 D")]
    Section31D,
    /// Not printed in the seed but needed to make a file usable (the key of a quality row).
    #[serde(rename = "implied")]
    Implied,
}

impl Origin {
    /// The label used in `appendix_elements.txt`, or `None` when not from an appendix.
    pub fn appendix(self) -> Option<&'static str> {
        match self {
            Origin::A => Some("A"),
            Origin::A1 => Some("A-1"),
            Origin::A2 => Some("A-2"),
            Origin::B => Some("B"),
            Origin::C => Some("C"),
            Origin::D => Some("D"),
            Origin::Section31D | Origin::Implied => None,
        }
    }

    /// The lowest level the seed allows for elements of this origin (`None`: never).
    fn level(self) -> Option<Level> {
        match self {
            Origin::A | Origin::A1 | Origin::A2 | Origin::C | Origin::Implied => Some(Level::I),
            Origin::B => Some(Level::II),
            Origin::D => Some(Level::III),
            Origin::Section31D => None,
        }
    }
}

/// What kind of information an element carries; row rules key off the class.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ElementClass {
    /// Identifies a person directly (name, SSN): Level III only, blanked on protected rows and
    /// for opted-out members.
    DirectIdentifier,
    /// Agency-assigned replacement number (never the raw value).
    ReplacementId,
    /// A date or part of one.
    Date,
    /// Where the person lives.
    Geography,
    /// An age, top-coded at 90.
    Age,
    /// Diagnoses, procedures and other clinical facts.
    Clinical,
    /// Paid amounts and cost sharing.
    Financial,
    /// Identifies or narrows down a practitioner; blanked on abortion-procedure rows.
    Provider,
    /// Charges: never released at row level (section 3.1 D).
    Charge,
    /// Anything else.
    Other,
}

/// How a source value is rendered at a given level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The value as it is in the source.
    Keep,
    /// Four-digit year of a date: `2024`.
    Year,
    /// Quarter of a date, one digit: `3`.
    Quarter,
    /// Month of a date, two digits: `07`.
    Month,
    /// Year and quarter of a date: `2024Q3`.
    YearQuarter,
    /// The full date, normalized to `YYYY-MM-DD`.
    Date,
    /// An age in whole years; 90 and above becomes `90 or over`.
    #[serde(rename = "top_code_age_90")]
    TopCodeAge90,
    /// A birth date (`YYYY-MM-DD`), blank when the person is 90 or older at the reference date.
    #[serde(rename = "birth_date_unless_90")]
    BirthDateUnless90,
    /// The first five digits of a ZIP code; anything else becomes blank.
    Zip5,
    /// Keyed replacement id (HMAC-SHA-256 under the recipient organization's linkage key).
    ReplacementId,
}

/// Which code system a code element holds, for protected-category matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeKind {
    /// ICD-9-CM or ICD-10-CM diagnosis (including external-cause codes).
    Diagnosis,
    /// ICD-9-CM or ICD-10-PCS procedure.
    IcdProcedure,
    /// CPT or HCPCS procedure.
    CptHcpcs,
    /// CDT dental procedure.
    Cdt,
    /// NUBC revenue code.
    RevenueCode,
    /// CMS place of service (or dental facility type).
    PlaceOfService,
    /// NUBC type of bill.
    TypeOfBill,
    /// National Drug Code.
    Ndc,
    /// NUCC provider taxonomy.
    Taxonomy,
}

impl CodeKind {
    /// Number of kinds, for per-kind tables.
    pub(crate) const COUNT: usize = 9;

    /// Position in per-kind tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// An element that identifies the person a row is about, used to look up opt-outs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKey {
    /// The member's or patient's Social Security Number.
    Ssn,
    /// The payer's member id.
    MemberId,
}

/// One catalog element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Stable id.
    pub id: ElementId,
    /// Name as printed in the seed.
    pub name: String,
    /// Where in the seed it comes from.
    pub origin: Origin,
    /// Kind of information.
    pub class: ElementClass,
    /// Appendix C: must be requested by name.
    pub supplemental: bool,
    /// Lowest level that may carry it; `None` for charges, which no level may carry.
    pub lowest_level: Option<Level>,
    /// Transform per level (indexed by [`Level::index`]); `None` where not allowed.
    transforms: [Option<Transform>; 3],
    /// For birth dates: the date element the age is measured at.
    pub age_reference: Option<ElementId>,
    /// For replacement ids: the value space (`ssn`, `member_id`, ...), so equal raw values in
    /// different spaces do not get equal replacements, while a member SSN and a subscriber SSN
    /// of the same person do.
    pub replacement_domain: Option<String>,
    /// For code elements: the code system, consulted by protected-category matching.
    pub code_kind: Option<CodeKind>,
    /// For elements identifying the row's person: what kind of identity, for opt-outs.
    pub subject_key: Option<SubjectKey>,
    /// Free-text rationale, where the catalog departs from the letter of the seed.
    pub note: Option<String>,
    /// Catalog file and line that defined it (`file:line`), for messages.
    pub defined_at: String,
}

impl Element {
    /// The element's file type.
    pub fn file_type(&self) -> FileType {
        self.id.file_type()
    }

    /// The transform used at `level`, or `None` when the element is not allowed there.
    pub fn transform_at(&self, level: Level) -> Option<Transform> {
        self.transforms[level.index()]
    }
}

/// The loaded catalog plus the protected-category configuration that goes with it.
#[derive(Debug, Clone)]
pub struct Catalog {
    elements: BTreeMap<ElementId, Element>,
    protected: ProtectedCategories,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    file_type: FileType,
    element: Vec<toml::Spanned<RawElement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElement {
    id: String,
    name: String,
    origin: Origin,
    class: ElementClass,
    #[serde(default)]
    supplemental: bool,
    level: Option<Level>,
    #[serde(default)]
    transforms: BTreeMap<Level, Transform>,
    age_reference: Option<String>,
    replacement_domain: Option<String>,
    code_kind: Option<CodeKind>,
    subject_key: Option<SubjectKey>,
    note: Option<String>,
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Catalog {
    /// Loads `<dir>/elements/*.toml` and `<dir>/protected.toml` (normally `config/policy`).
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let elements_dir = dir.join("elements");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CatalogError::Io { path, source }
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&elements_dir).map_err(io(&elements_dir))? {
            let path = entry.map_err(io(&elements_dir))?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        // Sorted so that duplicate-definition messages do not depend on directory order.
        paths.sort();
        let mut files = Vec::new();
        for path in &paths {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            files.push((path.display().to_string(), text));
        }
        let protected_path = dir.join("protected.toml");
        let protected_text =
            std::fs::read_to_string(&protected_path).map_err(io(&protected_path))?;
        let protected =
            ProtectedCategories::parse(&protected_path.display().to_string(), &protected_text)?;
        Catalog::from_files(&files, protected)
    }

    /// Builds a catalog from `(file label, TOML text)` pairs; the label is used in messages.
    pub fn from_files(
        files: &[(String, String)],
        protected: ProtectedCategories,
    ) -> Result<Catalog, CatalogError> {
        let mut elements: BTreeMap<ElementId, Element> = BTreeMap::new();
        for (file, text) in files {
            let raw: RawFile = toml::from_str(text).map_err(|source| CatalogError::Toml {
                file: file.clone(),
                source,
            })?;
            for spanned in raw.element {
                let line = line_of(text, spanned.span().start);
                let element = check_element(file, line, raw.file_type, spanned.into_inner())?;
                if let Some(first) = elements.get(&element.id) {
                    return Err(CatalogError::Duplicate {
                        file: file.clone(),
                        line,
                        element: element.id.to_string(),
                        first: first.defined_at.clone(),
                    });
                }
                elements.insert(element.id.clone(), element);
            }
        }
        // Cross-element rule: a birth date's reference must be a date of the same file.
        for element in elements.values() {
            if let Some(reference) = &element.age_reference {
                let ok = elements.get(reference).is_some_and(|r| {
                    r.class == ElementClass::Date && r.file_type() == element.file_type()
                });
                if !ok {
                    let (file, line) = split_defined_at(&element.defined_at);
                    return Err(CatalogError::Invalid {
                        file,
                        line,
                        element: element.id.to_string(),
                        reason: format!(
                            "age_reference `{reference}` is not a date element of the same file type"
                        ),
                    });
                }
            }
        }
        Ok(Catalog {
            elements,
            protected,
        })
    }

    /// The element with this id.
    pub fn get(&self, id: &ElementId) -> Option<&Element> {
        self.elements.get(id)
    }

    /// Every element, in id order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.elements.values()
    }

    /// The elements of one file type, in id order.
    pub fn elements_of(&self, file_type: FileType) -> impl Iterator<Item = &Element> {
        self.elements
            .values()
            .filter(move |e| e.file_type() == file_type)
    }

    /// The protected-category configuration.
    pub fn protected(&self) -> &ProtectedCategories {
        &self.protected
    }
}

fn split_defined_at(defined_at: &str) -> (String, usize) {
    match defined_at.rsplit_once(':') {
        Some((file, line)) => (file.to_owned(), line.parse().unwrap_or(0)),
        None => (defined_at.to_owned(), 0),
    }
}

/// Validates one raw element against the rules of seed 001 that the catalog must respect.
fn check_element(
    file: &str,
    line: usize,
    file_type: FileType,
    raw: RawElement,
) -> Result<Element, CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        file: file.to_owned(),
        line,
        element: raw.id.clone(),
        reason,
    };
    let id = ElementId::parse(&raw.id).map_err(|e| invalid(e.to_string()))?;
    if id.file_type() != file_type {
        return Err(invalid(format!(
            "id prefix does not match the file's file_type `{file_type}`"
        )));
    }
    if raw.supplemental != (raw.origin == Origin::C) {
        return Err(invalid(
            "supplemental must be true exactly for Appendix C elements".into(),
        ));
    }
    let is_charge = raw.class == ElementClass::Charge;
    if is_charge != (raw.origin == Origin::Section31D) {
        return Err(invalid(
            "charge elements, and only they, come from section 3.1 D".into(),
        ));
    }
    if raw.level != raw.origin.level() {
        return Err(invalid(format!(
            "origin {:?} requires level {}",
            raw.origin,
            raw.origin.level().map_or("none".into(), |l| l.to_string())
        )));
    }
    let mut transforms = [None; 3];
    match raw.level {
        None => {
            if !raw.transforms.is_empty() {
                return Err(invalid(
                    "a charge element is never releasable and may not have transforms".into(),
                ));
            }
        }
        Some(lowest) => {
            for level in Level::ALL {
                let t = raw.transforms.get(&level).copied();
                if (level >= lowest) != t.is_some() {
                    return Err(invalid(format!(
                        "transforms must be given for exactly the levels from {lowest} up (level {level})"
                    )));
                }
                transforms[level.index()] = t;
            }
        }
    }
    if raw.class == ElementClass::DirectIdentifier && raw.level != Some(Level::III) {
        return Err(invalid("direct identifiers are Level III only".into()));
    }
    // Level I is de-identified: dates no finer than year and quarter, no birth date, no ZIP.
    if let Some(t) = transforms[Level::I.index()] {
        if matches!(
            t,
            Transform::Date | Transform::Month | Transform::BirthDateUnless90 | Transform::Zip5
        ) {
            return Err(invalid(format!(
                "transform {t:?} is finer than Level I allows"
            )));
        }
    }
    if raw.class == ElementClass::Age
        && transforms
            .iter()
            .flatten()
            .any(|t| *t != Transform::TopCodeAge90)
    {
        return Err(invalid(
            "ages must be top-coded at 90 at every level".into(),
        ));
    }
    let uses = |want: Transform| transforms.iter().flatten().any(|t| *t == want);
    if uses(Transform::BirthDateUnless90) != raw.age_reference.is_some() {
        return Err(invalid(
            "age_reference is required exactly for birth_date_unless_90".into(),
        ));
    }
    if uses(Transform::ReplacementId) != raw.replacement_domain.is_some() {
        return Err(invalid(
            "replacement_domain is required exactly for replacement_id".into(),
        ));
    }
    let age_reference = raw
        .age_reference
        .as_deref()
        .map(ElementId::parse)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    if raw.name.trim().is_empty() {
        return Err(invalid("name is empty".into()));
    }
    Ok(Element {
        id,
        name: raw.name,
        origin: raw.origin,
        class: raw.class,
        supplemental: raw.supplemental,
        lowest_level: raw.level,
        transforms,
        age_reference,
        replacement_domain: raw.replacement_domain,
        code_kind: raw.code_kind,
        subject_key: raw.subject_key,
        note: raw.note,
        defined_at: format!("{file}:{line}"),
    })
}

/// Elements grouped as `(appendix, file type, name)`: the shape of `appendix_elements.txt`.
pub fn appendix_entries(catalog: &Catalog) -> BTreeSet<(String, String, String)> {
    catalog
        .elements()
        .filter_map(|e| {
            e.origin.appendix().map(|a| {
                (
                    a.to_owned(),
                    e.file_type().as_str().to_owned(),
                    e.name.clone(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protected() -> ProtectedCategories {
        ProtectedCategories::parse("p.toml", "").expect("empty protected config")
    }

    fn one(element: &str) -> Result<Catalog, CatalogError> {
        let text = format!("file_type = \"med_claim\"\n\n[[element]]\n{element}\n");
        Catalog::from_files(&[("t.toml".into(), text)], protected())
    }

    #[test]
    fn accepts_a_plain_element() {
        let c = one("id = \"med_claim.x\"\nname = \"X\"\norigin = \"A\"\nclass = \"other\"\nlevel = \"I\"\ntransforms = { I = \"keep\", II = \"keep\", III = \"keep\" }")
            .expect("valid");
        assert_eq!(c.elements().count(), 1);
    }

    #[test]
    fn refuses_full_dates_at_level_one() {
        let err = one("id = \"med_claim.x\"\nname = \"X\"\norigin = \"A\"\nclass = \"date\"\nlevel = \"I\"\ntransforms = { I = \"date\", II = \"date\", III = \"date\" }")
            .expect_err("must refuse");
        let msg = err.to_string();
        assert!(
            msg.contains("t.toml:3")
                && msg.contains("med_claim.x")
                && msg.contains("finer than Level I"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_charge_with_a_level() {
        let err = one("id = \"med_claim.c\"\nname = \"C\"\norigin = \"section 3.1 D\"\nclass = \"charge\"\nlevel = \"I\"\ntransforms = { I = \"keep\", II = \"keep\", III = \"keep\" }")
            .expect_err("must refuse");
        assert!(err.to_string().contains("requires level none"), "{err}");
    }

    #[test]
    fn refuses_missing_level_transform() {
        let err = one("id = \"med_claim.x\"\nname = \"X\"\norigin = \"B\"\nclass = \"other\"\nlevel = \"II\"\ntransforms = { II = \"keep\" }")
            .expect_err("must refuse");
        assert!(err.to_string().contains("level III"), "{err}");
    }

    #[test]
    fn refuses_untopcoded_age() {
        let err = one("id = \"med_claim.a\"\nname = \"A\"\norigin = \"A\"\nclass = \"age\"\nlevel = \"I\"\ntransforms = { I = \"keep\", II = \"keep\", III = \"keep\" }")
            .expect_err("must refuse");
        assert!(err.to_string().contains("top-coded"), "{err}");
    }

    #[test]
    fn ids_are_checked() {
        assert!(ElementId::parse("med_claim.service_date_from").is_ok());
        assert!(ElementId::parse("nope.x").is_err());
        assert!(ElementId::parse("med_claim.Bad").is_err());
        assert!(ElementId::parse("med_claim").is_err());
        let id = ElementId::parse("hosp_inpatient.age").expect("valid");
        assert_eq!(id.file_type(), FileType::HospInpatient);
        assert_eq!(id.local(), "age");
    }
}
