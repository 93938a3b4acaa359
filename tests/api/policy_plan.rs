//! Planning refusals and bad input: each gets a precise error naming what is wrong.

use steward::domain::level::Level;
use steward::policy::catalog::{ElementId, FileType};
use steward::policy::{plan, BindError, PlanError, RowError, WithheldMembers};

use crate::policy_support::{catalog, everything_allowed, opt_outs, schema};

fn id(s: &str) -> ElementId {
    ElementId::parse(s).expect("id")
}

#[test]
fn refuses_elements_above_the_level() {
    let catalog = catalog();
    let mut release = everything_allowed(&catalog, FileType::MedClaim, Level::I, "org");
    release.approved.insert(id("med_claim.service_date_from"));
    let err =
        plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).expect_err("above level");
    assert_eq!(
        err,
        PlanError::AboveLevel {
            element: id("med_claim.service_date_from"),
            element_level: Level::II,
            release_level: Level::I
        }
    );
    assert!(err.to_string().contains("med_claim.service_date_from"));

    let mut release = everything_allowed(&catalog, FileType::MedElig, Level::II, "org");
    release.approved.insert(id("med_elig.member_ssn"));
    let err =
        plan(&release, &schema(&catalog, FileType::MedElig), &catalog).expect_err("above level");
    assert!(
        matches!(
            err,
            PlanError::AboveLevel {
                element_level: Level::III,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn refuses_charges_at_every_level() {
    let catalog = catalog();
    for level in Level::ALL {
        let mut release = everything_allowed(&catalog, FileType::HospInpatient, level, "org");
        release.approved.insert(id("hosp_inpatient.total_charges"));
        let err = plan(
            &release,
            &schema(&catalog, FileType::HospInpatient),
            &catalog,
        )
        .expect_err("charge");
        assert_eq!(
            err,
            PlanError::NeverReleasable {
                element: id("hosp_inpatient.total_charges")
            }
        );
    }
}

#[test]
fn refuses_supplemental_elements_not_requested() {
    let catalog = catalog();
    let mut release = everything_allowed(&catalog, FileType::MedClaim, Level::II, "org");
    release
        .supplemental_requested
        .remove(&id("med_claim.attending_npi"));
    let err =
        plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).expect_err("supplemental");
    assert_eq!(
        err,
        PlanError::SupplementalNotRequested {
            element: id("med_claim.attending_npi")
        }
    );
}

#[test]
fn refuses_unknown_elements() {
    let catalog = catalog();
    let mut release = everything_allowed(&catalog, FileType::MedClaim, Level::II, "org");
    release.approved.insert(id("med_claim.favourite_colour"));
    let err = plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).expect_err("unknown");
    assert_eq!(
        err,
        PlanError::UnknownElement {
            element: id("med_claim.favourite_colour")
        }
    );
}

#[test]
fn only_approved_elements_are_planned_and_unmapped_columns_are_reported() {
    let catalog = catalog();
    let mut release = everything_allowed(&catalog, FileType::MedClaim, Level::I, "org");
    release
        .approved
        .retain(|e| e.as_str() == "med_claim.member_age" || e.as_str() == "med_claim.year_paid");
    let p = plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).expect("plan");
    assert_eq!(p.header(), ["member_age", "year_paid"]);
    assert_eq!(
        p.unmapped_source_columns(),
        [
            "member_street_address",
            "rendering_provider_tax_id",
            "claim_note"
        ]
    );
}

#[test]
fn header_lacking_a_needed_column_names_file_and_column() {
    let catalog = catalog();
    let release = everything_allowed(&catalog, FileType::DentalClaim, Level::II, "org");
    let p = plan(&release, &schema(&catalog, FileType::DentalClaim), &catalog).expect("plan");
    let header = csv::StringRecord::from(vec!["submitter_id", "payer_id"]);
    let err = p
        .bind("dental_2023.csv", &header)
        .expect_err("missing column");
    assert_eq!(
        err,
        BindError::MissingColumn {
            file: "dental_2023.csv".into(),
            column: "individual_relationship_code".into()
        }
    );
    assert_eq!(err.to_string(), "dental_2023.csv: the header has no column `individual_relationship_code`, which the extract needs");
}

fn quality_release_on(csv_text: &str) -> Result<csv::ByteRecord, RowError> {
    let catalog = catalog();
    let release = everything_allowed(&catalog, FileType::HospOutpatient, Level::I, "org");
    let p = plan(
        &release,
        &schema(&catalog, FileType::HospOutpatient),
        &catalog,
    )
    .expect("plan");
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(csv_text.as_bytes());
    let header = reader.headers().expect("header").clone();
    let mut bound = p.bind("outpatient.csv", &header).expect("bind");
    let mut record = csv::ByteRecord::new();
    let mut out = csv::ByteRecord::new();
    let mut last = Ok(out.clone());
    while reader.read_byte_record(&mut record).expect("read") {
        last = bound
            .apply(&record, &WithheldMembers::from(opt_outs(&[])), &mut out)
            .map(|_| out.clone());
        if last.is_err() {
            break;
        }
    }
    last
}

fn outpatient_csv(edit: impl Fn(&str) -> Option<&'static str>, extra: bool) -> String {
    let catalog = catalog();
    let names: Vec<String> = schema(&catalog, FileType::HospOutpatient)
        .columns()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let good: Vec<&str> = names
        .iter()
        .map(|n| match n.as_str() {
            "service_date_from" | "service_date_thru" | "line_service_date" => "2024-03-05",
            "age" => "45",
            _ => "",
        })
        .collect();
    let bad: Vec<&str> = names
        .iter()
        .zip(&good)
        .map(|(n, g)| edit(n).unwrap_or(g))
        .collect();
    let mut text = format!("{}\n{}\n", names.join(","), good.join(","));
    text.push_str(&bad.join(","));
    if extra {
        text.push_str(",surplus");
    }
    text.push('\n');
    text
}

#[test]
fn wrong_arity_names_file_and_line() {
    let err = quality_release_on(&outpatient_csv(|_| None, true)).expect_err("arity");
    assert!(
        matches!(err, RowError::WrongArity { line: 3, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("outpatient.csv: line 3: expected "),
        "{err}"
    );
}

#[test]
fn unparseable_date_names_file_line_and_column_but_not_the_value() {
    let text = outpatient_csv(
        |n| (n == "service_date_thru").then_some("2024-02-31"),
        false,
    );
    let err = quality_release_on(&text).expect_err("bad date");
    assert_eq!(
        err.to_string(),
        "outpatient.csv: line 3, column `service_date_thru`: not a date (YYYY-MM-DD or YYYYMMDD)"
    );
    let text = outpatient_csv(|n| (n == "age").then_some("forty"), false);
    let err = quality_release_on(&text).expect_err("bad age");
    assert!(
        err.to_string().contains("column `age`") && !err.to_string().contains("forty"),
        "{err}"
    );
    assert!(quality_release_on(&outpatient_csv(|_| None, false)).is_ok());
}
