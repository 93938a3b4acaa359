//! The catalog covers exactly the appendix list kept beside it, and obeys the seed's rules.

use std::collections::BTreeSet;

use steward::domain::level::Level;
use steward::policy::catalog::{appendix_entries, ElementClass, FileType, Origin};
use steward::policy::{DatasetSchema, SchemaError};

use crate::policy_support::{catalog, config_dir};

fn appendix_list() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(config_dir().join("policy/appendix_elements.txt"))
        .expect("appendix list");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let parts: Vec<&str> = l.splitn(3, " | ").collect();
            assert_eq!(parts.len(), 3, "malformed line `{l}`");
            (
                parts[0].to_owned(),
                parts[1].to_owned(),
                parts[2].to_owned(),
            )
        })
        .collect()
}

#[test]
fn catalog_covers_exactly_the_appendix_list() {
    let list = appendix_list();
    let listed: BTreeSet<_> = list.iter().cloned().collect();
    assert_eq!(
        listed.len(),
        list.len(),
        "the appendix list has duplicate lines"
    );
    let catalogued = appendix_entries(&catalog());
    let missing: Vec<_> = listed.difference(&catalogued).collect();
    let extra: Vec<_> = catalogued.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "appendix elements missing from the catalog: {missing:#?}"
    );
    assert!(
        extra.is_empty(),
        "catalog elements not in the appendix list: {extra:#?}"
    );
    // Counts per appendix, as printed in the seed, so a silently shortened list is noticed.
    let count = |a: &str| list.iter().filter(|(x, _, _)| x == a).count();
    assert_eq!(count("A-1"), 14);
    assert_eq!(count("A-2"), 61);
    assert_eq!(count("D"), 16);
    assert_eq!(list.len(), 442);
}

#[test]
fn elements_outside_the_appendices_are_charges_or_quality_keys() {
    for e in catalog().elements() {
        match e.origin {
            Origin::Section31D => {
                assert_eq!(e.class, ElementClass::Charge, "{}", e.id);
                assert_eq!(e.lowest_level, None, "{}", e.id);
                assert!(
                    Level::ALL.iter().all(|l| e.transform_at(*l).is_none()),
                    "{}",
                    e.id
                );
            }
            Origin::Implied => {
                assert_eq!(e.file_type(), FileType::Quality, "{}", e.id);
                assert!(e.note.is_some(), "{} must say why it exists", e.id);
            }
            _ => assert!(e.origin.appendix().is_some()),
        }
    }
}

#[test]
fn every_file_type_has_elements_a_schema_and_charges_where_money_is_billed() {
    let catalog = catalog();
    let schemas =
        DatasetSchema::load_dir(&config_dir().join("datasets"), &catalog).expect("schemas");
    for ft in FileType::ALL {
        assert!(catalog.elements_of(ft).count() > 0, "{ft}");
        let schema = schemas
            .get(&ft)
            .unwrap_or_else(|| panic!("no schema for {ft}"));
        // Every catalog element of the file type is mapped by the shipped schema.
        for e in catalog.elements_of(ft) {
            assert!(schema.column_of(&e.id).is_some(), "{} is not mapped", e.id);
        }
    }
    for ft in [
        FileType::MedClaim,
        FileType::PharmClaim,
        FileType::DentalClaim,
        FileType::HospInpatient,
        FileType::HospOutpatient,
    ] {
        assert!(
            catalog
                .elements_of(ft)
                .any(|e| e.class == ElementClass::Charge),
            "{ft}"
        );
    }
}

#[test]
fn levels_follow_the_appendices() {
    for e in catalog().elements() {
        let want = match e.origin {
            Origin::A | Origin::A1 | Origin::A2 | Origin::C | Origin::Implied => Some(Level::I),
            Origin::B => Some(Level::II),
            Origin::D => Some(Level::III),
            Origin::Section31D => None,
        };
        assert_eq!(e.lowest_level, want, "{}", e.id);
        assert_eq!(e.supplemental, e.origin == Origin::C, "{}", e.id);
    }
}

#[test]
fn unknown_element_in_a_schema_names_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("med_claim.toml");
    std::fs::write(
        &path,
        "file_type = \"med_claim\"\ncolumns = [\n  { name = \"paid_date\", elements = [\"med_claim.year_paid\"] },\n  { name = \"x\", elements = [\"med_claim.no_such_thing\"] },\n]\n",
    )
    .expect("write");
    let err = DatasetSchema::load(&path, &catalog()).expect_err("unknown element");
    assert!(
        matches!(err, SchemaError::UnknownElement { line: 4, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("med_claim.toml:4")
            && msg.contains("med_claim.no_such_thing")
            && msg.contains("`x`"),
        "{msg}"
    );
}

#[test]
fn schema_errors_for_wrong_file_type_and_duplicates() {
    let catalog = catalog();
    let err = DatasetSchema::parse("s.toml", "file_type = \"med_claim\"\ncolumns = [\n { name = \"a\", elements = [\"pharm_claim.drug_name\"] },\n]\n", &catalog)
        .expect_err("wrong file type");
    assert!(err.to_string().starts_with("s.toml:3:"), "{err}");
    let err = DatasetSchema::parse("s.toml", "file_type = \"med_claim\"\ncolumns = [\n { name = \"a\", elements = [\"med_claim.drg\"] },\n { name = \"b\", elements = [\"med_claim.drg\"] },\n]\n", &catalog)
        .expect_err("duplicate");
    assert!(err.to_string().starts_with("s.toml:4:"), "{err}");
}
