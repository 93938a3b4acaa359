//! Shared helpers for the policy tests: the real configuration under `config/`, and releases
//! that approve everything a level allows.

use std::collections::BTreeSet;
use std::path::PathBuf;

use steward::domain::level::Level;
use steward::policy::catalog::{Catalog, ElementId, FileType};
use steward::policy::{
    plan, DatasetSchema, LinkageKey, OptOutHasher, OptOutSet, ReleaseSpec, RowFilter,
    WithheldMembers,
};

/// The linkage secret used by tests.
pub const LINKAGE_SECRET: &[u8] = b"test-linkage-secret-0123456789abcdef";
/// The opt-out secret used by tests.
pub const OPTOUT_SECRET: &[u8] = b"test-optout-secret-0123456789abcdef";

/// `<crate>/config`.
pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The shipped catalog.
pub fn catalog() -> Catalog {
    Catalog::load(&config_dir().join("policy")).unwrap_or_else(|e| panic!("shipped catalog: {e}"))
}

/// The shipped schema of a file type.
pub fn schema(catalog: &Catalog, file_type: FileType) -> DatasetSchema {
    DatasetSchema::load(
        &config_dir()
            .join("datasets")
            .join(format!("{}.toml", file_type.as_str())),
        catalog,
    )
    .unwrap_or_else(|e| panic!("shipped schema: {e}"))
}

/// Every element of a file type that `level` may carry (all supplemental ones requested).
pub fn everything_allowed(
    catalog: &Catalog,
    file_type: FileType,
    level: Level,
    org: &str,
) -> ReleaseSpec {
    let approved: BTreeSet<ElementId> = catalog
        .elements_of(file_type)
        .filter(|e| e.lowest_level.is_some_and(|l| l <= level))
        .map(|e| e.id.clone())
        .collect();
    let supplemental_requested = approved
        .iter()
        .filter(|id| catalog.get(id).is_some_and(|e| e.supplemental))
        .cloned()
        .collect();
    ReleaseSpec {
        level,
        approved,
        supplemental_requested,
        linkage: LinkageKey::derive(LINKAGE_SECRET, org).expect("linkage key"),
        filter: RowFilter::default(),
    }
}

/// The opt-out hasher used by tests.
pub fn hasher() -> OptOutHasher {
    OptOutHasher::new(OPTOUT_SECRET).expect("hasher")
}

/// An opt-out set holding these SSNs.
pub fn opt_outs(ssns: &[&str]) -> OptOutSet {
    let h = hasher();
    let keys: Vec<_> = ssns.iter().filter_map(|s| h.ssn(s.as_bytes())).collect();
    OptOutSet::new(h, keys)
}

/// Transforms a whole CSV text, returning the output CSV text.
pub fn transform_csv(
    catalog: &Catalog,
    file_type: FileType,
    release: &ReleaseSpec,
    opt_outs: &OptOutSet,
    input: &[u8],
) -> String {
    let schema = schema(catalog, file_type);
    let plan = plan(release, &schema, catalog).expect("plan");
    let mut reader = csv::Reader::from_reader(input);
    let header = reader.headers().expect("header").clone();
    let mut bound = plan.bind("input.csv", &header).expect("bind");
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(plan.header()).expect("write");
    let mut record = csv::ByteRecord::new();
    let mut out = csv::ByteRecord::new();
    let members = WithheldMembers::from(opt_outs.clone());
    while reader.read_byte_record(&mut record).expect("read") {
        let outcome = bound.apply(&record, &members, &mut out).expect("apply");
        if outcome.flags().is_some() {
            writer.write_byte_record(&out).expect("write");
        }
    }
    String::from_utf8(writer.into_inner().expect("flush")).expect("utf-8")
}
