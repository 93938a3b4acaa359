//! Dataset schemas (`config/datasets/<file_type>.toml`): the source columns of one file type,
//! in file order, each mapped to the catalog elements derived from it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::catalog::{line_of, Catalog, ElementClass, ElementId, FileType};

/// Errors raised while loading a dataset schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has fields of the wrong type.
    #[error("{file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// The parser's error, which carries the line.
        source: toml::de::Error,
    },
    /// A column maps to an element id the catalog does not have.
    #[error("{file}:{line}: column `{column}` maps to unknown element `{element}`")]
    UnknownElement {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The source column.
        column: String,
        /// The element id as written.
        element: String,
    },
    /// A column maps to an element of another file type.
    #[error("{file}:{line}: column `{column}` maps to `{element}`, which is not a `{file_type}` element")]
    WrongFileType {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The source column.
        column: String,
        /// The element id.
        element: String,
        /// The schema's file type.
        file_type: FileType,
    },
    /// Two columns map to the same element, or a column is listed twice.
    #[error("{file}:{line}: `{what}` appears twice")]
    Duplicate {
        /// The file.
        file: String,
        /// 1-based line of the second occurrence.
        line: usize,
        /// The repeated column name or element id.
        what: String,
    },
    /// A column name is empty.
    #[error("{file}:{line}: empty column name")]
    EmptyColumn {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
    },
    /// A derived element or a row filter names a column the schema does not have.
    #[error("{file}:{line}: `{what}` names column `{column}`, which the schema does not list")]
    UnknownColumn {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// What names it (`derived med_claim.member_age`, `filters.payer`).
        what: String,
        /// The column as written.
        column: String,
    },
    /// A derived element is not of a class its computation produces.
    #[error("{file}:{line}: element `{element}` cannot be derived as {compute}: it is not an age element")]
    NotDerivable {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// The element id.
        element: String,
        /// The computation asked for.
        compute: &'static str,
    },
    /// Two schema files describe the same file type.
    #[error("{file}: a schema for `{file_type}` was already loaded")]
    DuplicateFileType {
        /// The second file.
        file: String,
        /// The file type.
        file_type: FileType,
    },
}

/// One source column and the elements derived from it (none: never emitted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    /// Column name in the source header.
    pub name: String,
    /// Elements derived from it.
    pub elements: Vec<ElementId>,
}

/// An element computed from other columns of the same row instead of read from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedElement {
    /// The element delivered.
    pub element: ElementId,
    /// How it is computed.
    pub compute: Derivation,
}

/// The computations a schema may declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derivation {
    /// Age in whole years at the time of service, from a birth date and a service date (or
    /// `YYYYMM` month); the same arithmetic that decides the Level II birth-date rule.
    AgeAt {
        /// Column holding the birth date.
        birth_date: String,
        /// Column holding the date the age is measured at.
        at: String,
    },
}

/// The columns a release's row filters read (seed 001 section 3.3 C, minimum necessary).
/// A dataset without one cannot be filtered that way: its rows are not about services or
/// payers (the hospital restructuring file), and the manifest says the filter did not apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterColumns {
    /// Column whose leading four digits are the row's service year (a date, a `YYYYMM` month,
    /// a year or a `YYYYQn` period).
    pub service_year: Option<String>,
    /// Column holding the row's payer id.
    pub payer: Option<String>,
}

/// The validated schema of one file type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSchema {
    /// The file type described.
    pub file_type: FileType,
    /// Where it was loaded from, for messages.
    pub source: String,
    columns: Vec<SchemaColumn>,
    derived: Vec<DerivedElement>,
    filters: FilterColumns,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    file_type: FileType,
    columns: Vec<RawColumn>,
    #[serde(default)]
    derived: Vec<toml::Spanned<RawDerived>>,
    #[serde(default)]
    filters: Option<toml::Spanned<RawFilters>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerived {
    element: String,
    compute: RawCompute,
    birth_date: String,
    at: String,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawCompute {
    AgeAt,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    service_year: Option<String>,
    payer: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    name: toml::Spanned<String>,
    elements: Vec<toml::Spanned<String>>,
}

impl DatasetSchema {
    /// Parses and validates a schema against the catalog; `file` labels messages.
    pub fn parse(file: &str, text: &str, catalog: &Catalog) -> Result<DatasetSchema, SchemaError> {
        let raw: RawSchema = toml::from_str(text).map_err(|source| SchemaError::Toml {
            file: file.to_owned(),
            source,
        })?;
        let mut columns = Vec::with_capacity(raw.columns.len());
        let mut seen_columns = HashMap::new();
        let mut seen_elements = HashMap::new();
        for col in raw.columns {
            let line = line_of(text, col.name.span().start);
            let name = col.name.into_inner();
            if name.trim().is_empty() {
                return Err(SchemaError::EmptyColumn {
                    file: file.to_owned(),
                    line,
                });
            }
            if seen_columns.insert(name.clone(), line).is_some() {
                return Err(SchemaError::Duplicate {
                    file: file.to_owned(),
                    line,
                    what: name,
                });
            }
            let mut elements = Vec::with_capacity(col.elements.len());
            for spanned in col.elements {
                let line = line_of(text, spanned.span().start);
                let text_id = spanned.into_inner();
                let known = ElementId::parse(&text_id)
                    .ok()
                    .filter(|id| catalog.get(id).is_some());
                let Some(id) = known else {
                    return Err(SchemaError::UnknownElement {
                        file: file.to_owned(),
                        line,
                        column: name,
                        element: text_id,
                    });
                };
                if id.file_type() != raw.file_type {
                    return Err(SchemaError::WrongFileType {
                        file: file.to_owned(),
                        line,
                        column: name,
                        element: text_id,
                        file_type: raw.file_type,
                    });
                }
                if seen_elements.insert(id.clone(), line).is_some() {
                    return Err(SchemaError::Duplicate {
                        file: file.to_owned(),
                        line,
                        what: text_id,
                    });
                }
                elements.push(id);
            }
            columns.push(SchemaColumn { name, elements });
        }
        let unknown_column = |line: usize, what: String, column: &str| {
            (!seen_columns.contains_key(column)).then(|| SchemaError::UnknownColumn {
                file: file.to_owned(),
                line,
                what,
                column: column.to_owned(),
            })
        };
        let mut derived = Vec::with_capacity(raw.derived.len());
        for spanned in raw.derived {
            let line = line_of(text, spanned.span().start);
            let d = spanned.into_inner();
            let element = ElementId::parse(&d.element)
                .ok()
                .and_then(|id| catalog.get(&id));
            let Some(element) = element else {
                return Err(SchemaError::UnknownElement {
                    file: file.to_owned(),
                    line,
                    column: "(derived)".to_owned(),
                    element: d.element,
                });
            };
            if element.file_type() != raw.file_type {
                return Err(SchemaError::WrongFileType {
                    file: file.to_owned(),
                    line,
                    column: "(derived)".to_owned(),
                    element: d.element,
                    file_type: raw.file_type,
                });
            }
            let RawCompute::AgeAt = d.compute;
            if element.class != ElementClass::Age {
                return Err(SchemaError::NotDerivable {
                    file: file.to_owned(),
                    line,
                    element: d.element,
                    compute: "age_at",
                });
            }
            if seen_elements.insert(element.id.clone(), line).is_some() {
                return Err(SchemaError::Duplicate {
                    file: file.to_owned(),
                    line,
                    what: d.element,
                });
            }
            for column in [&d.birth_date, &d.at] {
                if let Some(e) = unknown_column(line, format!("derived {}", d.element), column) {
                    return Err(e);
                }
            }
            derived.push(DerivedElement {
                element: element.id.clone(),
                compute: Derivation::AgeAt {
                    birth_date: d.birth_date,
                    at: d.at,
                },
            });
        }
        let mut filters = FilterColumns::default();
        if let Some(spanned) = raw.filters {
            let line = line_of(text, spanned.span().start);
            let f = spanned.into_inner();
            for (what, column) in [
                ("filters.service_year", &f.service_year),
                ("filters.payer", &f.payer),
            ] {
                if let Some(e) = column
                    .as_deref()
                    .and_then(|c| unknown_column(line, what.to_owned(), c))
                {
                    return Err(e);
                }
            }
            filters = FilterColumns {
                service_year: f.service_year,
                payer: f.payer,
            };
        }
        Ok(DatasetSchema {
            file_type: raw.file_type,
            source: file.to_owned(),
            columns,
            derived,
            filters,
        })
    }

    /// Reads and validates one schema file.
    pub fn load(path: &Path, catalog: &Catalog) -> Result<DatasetSchema, SchemaError> {
        let text = std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        DatasetSchema::parse(&path.display().to_string(), &text, catalog)
    }

    /// Reads every `*.toml` schema in a directory (normally `config/datasets`).
    pub fn load_dir(
        dir: &Path,
        catalog: &Catalog,
    ) -> Result<BTreeMap<FileType, DatasetSchema>, SchemaError> {
        let io = |source| SchemaError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut out = BTreeMap::new();
        for path in paths {
            let schema = DatasetSchema::load(&path, catalog)?;
            if out.contains_key(&schema.file_type) {
                return Err(SchemaError::DuplicateFileType {
                    file: schema.source,
                    file_type: schema.file_type,
                });
            }
            out.insert(schema.file_type, schema);
        }
        Ok(out)
    }

    /// The source columns, in file order.
    pub fn columns(&self) -> &[SchemaColumn] {
        &self.columns
    }

    /// The elements computed from other columns.
    pub fn derived(&self) -> &[DerivedElement] {
        &self.derived
    }

    /// The columns the row filters read.
    pub fn filters(&self) -> &FilterColumns {
        &self.filters
    }

    /// Every source column a file of this dataset must have: each mapped column (including
    /// the unmapped ones listed, so a misaligned file is caught) and what derivations and
    /// filters read.
    pub fn required_columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Whether the schema delivers `element`, from a column or by derivation.
    pub fn provides(&self, element: &ElementId) -> bool {
        self.column_of(element).is_some() || self.derived.iter().any(|d| d.element == *element)
    }

    /// The source column an element is read from (derived elements have none).
    pub fn column_of(&self, element: &ElementId) -> Option<&str> {
        self.columns
            .iter()
            .find(|c| c.elements.contains(element))
            .map(|c| c.name.as_str())
    }
}
