//! The policy Steward ships, compiled into the binary so that `steward` works from any
//! directory with nothing beside it: the element catalog, the dataset schemas and the
//! protected-category code lists of `config/`. An agency replaces one dataset schema or one
//! code list by naming its own file in `[policy]`; everything else stays as shipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::policy::aggregate::{PopulationError, Zip3Population};
use crate::policy::catalog::{Catalog, CatalogError, FileType};
use crate::policy::protected::{ProtectedCategories, ProtectedError};
use crate::policy::schema::{DatasetSchema, SchemaError};

macro_rules! shipped {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../", $path)))),*]
    };
}

/// The catalog files, as `(label, TOML)`.
pub const ELEMENTS: &[(&str, &str)] = shipped!(
    "config/policy/elements/dental_claim.toml",
    "config/policy/elements/dental_elig.toml",
    "config/policy/elements/hosp_inpatient.toml",
    "config/policy/elements/hosp_outpatient.toml",
    "config/policy/elements/med_claim.toml",
    "config/policy/elements/med_elig.toml",
    "config/policy/elements/pharm_claim.toml",
    "config/policy/elements/pharm_elig.toml",
    "config/policy/elements/quality.toml",
    "config/policy/elements/restructuring.toml",
);

/// The dataset schemas, as `(label, TOML)`.
pub const DATASETS: &[(&str, &str)] = shipped!(
    "config/datasets/dental_claim.toml",
    "config/datasets/dental_elig.toml",
    "config/datasets/hosp_inpatient.toml",
    "config/datasets/hosp_outpatient.toml",
    "config/datasets/med_claim.toml",
    "config/datasets/med_elig.toml",
    "config/datasets/pharm_claim.toml",
    "config/datasets/pharm_elig.toml",
    "config/datasets/quality.toml",
    "config/datasets/restructuring.toml",
);

/// The protected-category code lists, as `(label, TOML)`.
pub const PROTECTED: (&str, &str) = (
    "config/policy/protected.toml",
    include_str!("../../config/policy/protected.toml"),
);

/// The population of each 3-digit ZIP area, as `(label, TOML)`.
pub const ZIP3_POPULATION: (&str, &str) = (
    "config/policy/zip3_population.toml",
    include_str!("../../config/policy/zip3_population.toml"),
);

/// Why the policy could not be loaded. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// An override file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The catalog is invalid (boxed, as are the next two: they are large).
    #[error("element catalog: {0}")]
    Catalog(Box<CatalogError>),
    /// A code list is invalid.
    #[error("protected code lists: {0}")]
    Protected(Box<ProtectedError>),
    /// A dataset schema is invalid.
    #[error("dataset schema: {0}")]
    Schema(Box<SchemaError>),
    /// The 3-digit ZIP population table is invalid.
    #[error("3-digit ZIP populations: {0}")]
    Population(#[from] PopulationError),
    /// An override schema describes another file type than the key it is configured under.
    #[error("{file}: configured as the schema of `{expected}` but describes `{found}`")]
    SchemaFileType {
        /// The override file.
        file: String,
        /// The key in `policy.dataset_schemas`.
        expected: FileType,
        /// The file type the file declares.
        found: FileType,
    },
}

impl From<CatalogError> for PolicyError {
    fn from(e: CatalogError) -> Self {
        PolicyError::Catalog(Box::new(e))
    }
}

impl From<ProtectedError> for PolicyError {
    fn from(e: ProtectedError) -> Self {
        PolicyError::Protected(Box::new(e))
    }
}

impl From<SchemaError> for PolicyError {
    fn from(e: SchemaError) -> Self {
        PolicyError::Schema(Box::new(e))
    }
}

/// Where an agency replaces part of the shipped policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyOverrides {
    /// Dataset schema files, each replacing the shipped schema of its file type.
    pub dataset_schemas: BTreeMap<FileType, PathBuf>,
    /// Code-list files by category id, each holding that one category.
    pub code_lists: BTreeMap<String, PathBuf>,
    /// The 3-digit ZIP population table, replacing the shipped one.
    pub zip3_population: Option<PathBuf>,
}

/// The loaded policy: the catalog (with its code lists) and the schema of every file type.
#[derive(Debug, Clone)]
pub struct Policy {
    catalog: Arc<Catalog>,
    schemas: BTreeMap<FileType, DatasetSchema>,
    zip3: Arc<Zip3Population>,
}

fn read(path: &PathBuf) -> Result<(String, String), PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}

impl Policy {
    /// The shipped policy, unchanged.
    pub fn shipped() -> Result<Policy, PolicyError> {
        Policy::load(&PolicyOverrides::default())
    }

    /// The shipped policy with the agency's overrides applied.
    pub fn load(overrides: &PolicyOverrides) -> Result<Policy, PolicyError> {
        let mut code_lists = Vec::new();
        for (id, path) in &overrides.code_lists {
            let (label, text) = read(path)?;
            code_lists.push((id.clone(), label, text));
        }
        let protected = ProtectedCategories::parse_with_overrides(PROTECTED, &code_lists)?;
        let files: Vec<(String, String)> = ELEMENTS
            .iter()
            .map(|(label, text)| ((*label).to_owned(), (*text).to_owned()))
            .collect();
        let catalog = Catalog::from_files(&files, protected)?;

        let mut schemas = BTreeMap::new();
        for (label, text) in DATASETS {
            let schema = DatasetSchema::parse(label, text, &catalog)?;
            schemas.insert(schema.file_type, schema);
        }
        for (file_type, path) in &overrides.dataset_schemas {
            let (label, text) = read(path)?;
            let schema = DatasetSchema::parse(&label, &text, &catalog)?;
            if schema.file_type != *file_type {
                return Err(PolicyError::SchemaFileType {
                    file: label,
                    expected: *file_type,
                    found: schema.file_type,
                });
            }
            schemas.insert(*file_type, schema);
        }
        let zip3 = match &overrides.zip3_population {
            None => Zip3Population::parse(ZIP3_POPULATION.0, ZIP3_POPULATION.1)?,
            Some(path) => {
                let (label, text) = read(path)?;
                Zip3Population::parse(&label, &text)?
            }
        };
        Ok(Policy {
            catalog: Arc::new(catalog),
            schemas,
            zip3: Arc::new(zip3),
        })
    }

    /// The element catalog and its code lists.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The schema of one file type (every file type has one).
    pub fn schema(&self, file_type: FileType) -> Option<&DatasetSchema> {
        self.schemas.get(&file_type)
    }

    /// The population of each 3-digit ZIP area, for aggregate tables.
    pub fn zip3_population(&self) -> &Arc<Zip3Population> {
        &self.zip3
    }

    /// Every schema, by file type.
    pub fn schemas(&self) -> &BTreeMap<FileType, DatasetSchema> {
        &self.schemas
    }
}
