//! The level policy engine (pure): the element catalog, dataset schemas, extract planning and
//! the row transforms that enforce seed 001's rules on every delivered row.
//!
//! Flow: [`Catalog::load`] and [`DatasetSchema::load_dir`] read `config/policy` and
//! `config/datasets`; [`plan()`] decides the output columns for one release and dataset or
//! refuses; [`ExtractPlan::bind`] matches the plan to a file's header; [`BoundPlan::apply`]
//! transforms each row.
//!
//! Architecture invariant: nothing in this module does I/O other than reading its own
//! configuration files, and nothing here logs values.

pub mod aggregate;
pub mod catalog;
pub mod linkage;
pub mod members;
pub mod optout;
pub mod plan;
pub mod protected;
pub mod schema;
pub mod shipped;
pub mod transform;

pub use catalog::{Catalog, CatalogError, Element, ElementClass, ElementId, FileType, Transform};
pub use linkage::{LinkageError, LinkageKey, ReplacementIds};
pub use members::{MemberKey, NamedIdentities, Withheld, WithheldMembers};
pub use optout::{parse_import_csv, OptOutError, OptOutHasher, OptOutKey, OptOutSet};
pub use plan::{
    plan, BindError, BoundPlan, ExtractPlan, FilterUse, MemberColumns, PlanError, PlannedColumn,
    ReleaseSpec, RowBytes, RowError, RowFilter, RowFlags, RowOutcome, RowSink, SourceRecord,
};
pub use protected::{Effect, ProtectedCategories, ProtectedError};
pub use schema::{DatasetSchema, Derivation, DerivedElement, FilterColumns, SchemaError};
pub use shipped::{Policy, PolicyError, PolicyOverrides};
