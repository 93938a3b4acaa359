//! Row-level rules of the extract beyond the level policy (issue 10): derived age, dirty
//! source rows (the real line number, no retry, tolerated drops counted), and the review that
//! refuses filters selecting no row.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use steward::domain::level::Level;
use steward::extract::{
    extract_dataset, DatasetRequest, DroppedRows, ExtractError, InvalidRowTolerance, JobControl,
    SourceLocation,
};
use steward::policy::catalog::FileType;
use steward::policy::shipped::DATASETS;
use steward::policy::{plan, DatasetSchema, RowError, RowOutcome, WithheldMembers};
use steward::storage::{FsStore, ObjectKey, SharedStore};

use crate::extract_pipeline::{decrypt, stored_bytes};
use crate::helpers::{spawn_app_configured, Db, Store};
use crate::on_both_databases;
use crate::policy_support::{catalog, everything_allowed, opt_outs, schema};
use crate::release_support::{call, in_review, level_one_request, people};

/// The shipped med_claim schema for a source that has no age column: the age is derived.
fn derived_age_schema() -> String {
    let (_, shipped) = DATASETS
        .iter()
        .find(|(label, _)| label.ends_with("med_claim.toml"))
        .expect("shipped med_claim schema");
    let without_age = shipped.replace(
        "  { name = \"member_age\", elements = [\"med_claim.member_age\"] },\n",
        "",
    );
    assert_ne!(&without_age, shipped, "the shipped schema maps member_age");
    without_age.replace(
        "[filters]",
        "derived = [\n  { element = \"med_claim.member_age\", compute = \"age_at\", birth_date = \"member_birth_date\", at = \"service_date_from\" },\n]\n\n[filters]",
    )
}

#[test]
fn age_is_derived_from_birth_and_service_dates_at_every_level() {
    let catalog = catalog();
    let schema = DatasetSchema::parse("derived.toml", &derived_age_schema(), &catalog)
        .expect("schema with a derived age");
    assert!(schema
        .column_of(&"med_claim.member_age".parse().unwrap())
        .is_none());
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
    let header = csv::StringRecord::from(names.clone());
    // (birth date, service date, age shown, birth date shown at Levels II and III)
    let cases = [
        ("1950-06-15", "2024-06-14", "73", "1950-06-15"),
        ("1950-06-15", "2024-06-15", "74", "1950-06-15"),
        ("1934-06-16", "2024-06-15", "89", "1934-06-16"),
        ("1934-06-15", "2024-06-15", "90 or over", ""),
        ("1920-01-01", "2024-03-01", "90 or over", ""),
        ("", "2024-03-01", "", ""),
        ("1950-06-15", "", "", ""),
    ];
    for level in [Level::I, Level::II, Level::III] {
        let release = everything_allowed(&catalog, FileType::MedClaim, level, "org-a");
        let p = plan(&release, &schema, &catalog).expect("plan");
        let mut bound = p.bind("src.csv", &header).expect("bind");
        let age = p
            .columns()
            .iter()
            .position(|c| c.header == "member_age")
            .expect("age delivered at every level");
        let dob = p
            .columns()
            .iter()
            .position(|c| c.header == "member_birth_date");
        assert_eq!(dob.is_some(), level >= Level::II);
        let members = WithheldMembers::from(opt_outs(&[]));
        for (birth, service, shown_age, shown_dob) in cases {
            let values: Vec<&str> = names
                .iter()
                .map(|n| match *n {
                    "member_birth_date" => birth,
                    "service_date_from" => service,
                    _ => "",
                })
                .collect();
            let record = csv::ByteRecord::from(values);
            let mut out = csv::ByteRecord::new();
            let outcome = bound.apply(&record, &members, &mut out).expect("apply");
            assert!(matches!(outcome, RowOutcome::Delivered(_)));
            assert_eq!(
                &out[age],
                shown_age.as_bytes(),
                "{level:?} {birth} {service}"
            );
            if let Some(dob) = dob {
                assert_eq!(
                    &out[dob],
                    shown_dob.as_bytes(),
                    "{level:?} {birth} {service}"
                );
            }
        }
        // A service before the birth is a bad row, named without its values.
        let values: Vec<&str> = names
            .iter()
            .map(|n| match *n {
                "member_birth_date" => "2020-01-01",
                "service_date_from" => "2019-01-01",
                _ => "",
            })
            .collect();
        let err = bound
            .apply(
                &csv::ByteRecord::from(values),
                &members,
                &mut csv::ByteRecord::new(),
            )
            .expect_err("service before birth");
        assert!(matches!(err, RowError::Unparseable { .. }), "{err}");
        assert!(!err.to_string().contains("2020"), "{err}");
    }
}

/// Writes a med_claim source with every schema column: row `i` gets `rows[i]`'s values, the
/// rest valid (a service date, an age).
fn write_source(path: &Path, rows: usize, overrides: &BTreeMap<usize, (&str, &str)>) {
    let schema = schema(&catalog(), FileType::MedClaim);
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(&names).unwrap();
    for i in 0..rows {
        let row: Vec<String> = names
            .iter()
            .map(|n| match (overrides.get(&i), *n) {
                (Some((column, value)), n) if *column == n => (*value).to_owned(),
                (_, "service_date_from") => "2023-04-01".to_owned(),
                (_, "member_age") => "41".to_owned(),
                (_, "member_id") => format!("M{i}"),
                _ => String::new(),
            })
            .collect();
        writer.write_record(&row).unwrap();
    }
    writer.flush().unwrap();
}

async fn extract(
    dir: &Path,
    source: &Path,
    tolerance: InvalidRowTolerance,
) -> Result<steward::extract::SealedFile, ExtractError> {
    extract_plaintext(dir, source, tolerance)
        .await
        .map(|(sealed, _)| sealed)
}

/// [`extract`], with the plaintext CSV it stored.
async fn extract_plaintext(
    dir: &Path,
    source: &Path,
    tolerance: InvalidRowTolerance,
) -> Result<(steward::extract::SealedFile, Vec<u8>), ExtractError> {
    let catalog = catalog();
    let release = everything_allowed(&catalog, FileType::MedClaim, Level::I, "org-a");
    let p = plan(&release, &schema(&catalog, FileType::MedClaim), &catalog).unwrap();
    let store: SharedStore = Arc::new(FsStore::new(dir.join("objects")));
    let identity = age::x25519::Identity::generate();
    let request = DatasetRequest {
        plan: Arc::new(p),
        source: SourceLocation::Path(source.to_path_buf()),
        members: Arc::new(WithheldMembers::from(opt_outs(&[]))),
        tolerance,
        named: None,
        recipients: vec![Box::new(identity.to_public())],
        key: ObjectKey::parse("releases/x/med_claim.csv.zst.age").unwrap(),
    };
    let sealed = extract_dataset(request, store.clone(), Arc::new(JobControl::default())).await?;
    let plaintext = decrypt(&stored_bytes(&store, &sealed.key).await, &identity);
    Ok((sealed, plaintext))
}

#[tokio::test]
async fn an_invalid_value_fails_the_extract_naming_its_file_line_and_column_not_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("med_claim.csv");
    // Data row index 1 is the file's line 3 (the header is line 1).
    write_source(
        &source,
        4,
        &BTreeMap::from([(1, ("member_age", "forty-one"))]),
    );
    let err = extract(dir.path(), &source, InvalidRowTolerance::default())
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    match &err {
        ExtractError::Row(RowError::Unparseable { line, column, .. }) => {
            assert_eq!(*line, 3, "{err}");
            assert_eq!(column, "member_age");
        }
        other => panic!("expected an unparseable value, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("line 3") && !text.contains("forty-one"),
        "{text}"
    );
    assert!(
        !dir.path().join("objects/releases").exists()
            || std::fs::read_dir(dir.path().join("objects/releases"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[tokio::test]
async fn a_row_with_the_wrong_number_of_fields_names_its_real_line() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("med_claim.csv");
    write_source(&source, 3, &BTreeMap::new());
    let mut text = std::fs::read_to_string(&source).unwrap();
    text.push_str("only,three,fields\n");
    std::fs::write(&source, text).unwrap();
    let err = extract(dir.path(), &source, InvalidRowTolerance::default())
        .await
        .unwrap_err();
    match &err {
        ExtractError::MalformedRow { line, .. } => assert_eq!(*line, 5, "{err}"),
        other => panic!("expected a malformed row, got {other}"),
    }
}

#[tokio::test]
async fn tolerated_invalid_rows_are_dropped_and_counted_per_column_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("med_claim.csv");
    let bad = BTreeMap::from([
        (2, ("member_age", "n/a")),
        (5, ("member_age", "-3")),
        (7, ("service_date_from", "2023-13-45")),
    ]);
    write_source(&source, 10, &bad);
    let tolerance = InvalidRowTolerance {
        max_rows: 3,
        max_fraction: 0.0,
    };
    let sealed = extract(dir.path(), &source, tolerance).await.unwrap();
    assert_eq!(sealed.rows, 7);
    assert_eq!(sealed.counts.source_rows, 10);
    assert_eq!(
        sealed.counts.dropped,
        vec![
            DroppedRows {
                column: "member_age".into(),
                reason: "not an age in whole years".into(),
                rows: 2
            },
            DroppedRows {
                column: "service_date_from".into(),
                reason: "not a date (YYYY-MM-DD or YYYYMMDD)".into(),
                rows: 1
            },
        ]
    );

    // One more than allowed by count fails; so does a fraction above the limit.
    let strict = InvalidRowTolerance {
        max_rows: 2,
        max_fraction: 0.0,
    };
    let err = extract(dir.path(), &source, strict).await.unwrap_err();
    assert!(matches!(err, ExtractError::Row(_)), "{err}");
    let by_fraction = InvalidRowTolerance {
        max_rows: 0,
        max_fraction: 0.2,
    };
    let err = extract(dir.path(), &source, by_fraction).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::TooManyInvalidRows {
                invalid: 3,
                rows: 10,
                ..
            }
        ),
        "{err}"
    );
    let loose = InvalidRowTolerance {
        max_rows: 0,
        max_fraction: 0.3,
    };
    assert_eq!(extract(dir.path(), &source, loose).await.unwrap().rows, 7);
}

/// A tolerated row refused before it is written (the wrong number of fields, as the first data
/// row and right after a delivered one) leaves every delivered row and the header in place.
#[tokio::test]
async fn a_tolerated_malformed_row_takes_no_delivered_row_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("med_claim.csv");
    write_source(&source, 6, &BTreeMap::new());
    let text = std::fs::read_to_string(&source).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // Lines 2 and 5 (data rows 0 and 3) become rows of three fields.
    lines[1] = "only,three,fields";
    lines[4] = "only,three,fields";
    std::fs::write(&source, lines.join("\n") + "\n").unwrap();
    let tolerance = InvalidRowTolerance {
        max_rows: 2,
        max_fraction: 0.0,
    };
    let (sealed, plaintext) = extract_plaintext(dir.path(), &source, tolerance)
        .await
        .unwrap();
    assert_eq!(sealed.rows, 4);
    let mut reader = csv::Reader::from_reader(plaintext.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        sealed
            .columns
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "the header is intact"
    );
    let delivered = reader.records().map(Result::unwrap).count();
    assert_eq!(delivered, 4, "every delivered row is in the file");
}

on_both_databases!(
    a_data_error_fails_the_job_at_once_and_returns_the_release,
    approval_is_refused_when_the_filters_select_no_row,
);

/// The Level I test request's source; with `bad_year`, the row on line 6 has a year (the filter
/// column) that is not one.
fn med_elig_source(dir: &Path, bad_year: bool) -> std::path::PathBuf {
    steward::synth::generate(dir, 300, 3).unwrap();
    let path = dir.join("med_elig.csv");
    if bad_year {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let year = header.iter().position(|c| *c == "year").unwrap();
        let mut row: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(lines[5].as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        row[year] = "20x3".into();
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(&row).unwrap();
        lines[5] = String::from_utf8(writer.into_inner().unwrap())
            .unwrap()
            .trim_end()
            .to_owned();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    path
}

/// IT staff start the extract of `release`.
async fn start_extract(app: &crate::helpers::TestApp, it: &crate::helpers::Session, release: &str) {
    let path = format!("/api/v1/releases/{release}/extract");
    let (status, body) = call(app, "POST", &path, it, None).await;
    assert!((200..300).contains(&status), "{status} {body}");
}

/// A job runner over the app's queue with the extract executor, as `serve` runs one.
fn runner(app: &crate::helpers::TestApp, name: &str) -> steward::jobs::Runner {
    steward::jobs::Runner::new(
        app.state.jobs.clone(),
        Arc::new(steward::extract::job::ExtractExecutor::new(&app.state)),
        name.into(),
        steward::jobs::RunnerConfig::default(),
    )
}

/// A Steward whose med_elig source is `med_elig_source(dir, bad_year)`; jobs run by the test.
async fn app_with_med_elig(db: Db, dir: &Path, bad_year: bool) -> crate::helpers::TestApp {
    let source = med_elig_source(dir, bad_year).display().to_string();
    spawn_app_configured(
        db,
        Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &source),
        ],
    )
    .await
}

async fn a_data_error_fails_the_job_at_once_and_returns_the_release(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_med_elig(db, dir.path(), true).await;
    let p = people(&app).await;
    let release = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0201").await;
    start_extract(&app, &p.it.1, &release).await;
    let runner = runner(&app, "test-runner");
    let outcome = runner.run_once().await.unwrap();
    assert!(
        matches!(
            outcome,
            steward::jobs::RunOutcome::Ran {
                state: steward::jobs::JobState::Failed,
                ..
            }
        ),
        "{outcome:?}"
    );
    let jobs = app.state.jobs.list(None).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].attempts, 1, "not retried");
    let error = jobs[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("line 6") && error.contains("`year`"),
        "{error}"
    );
    assert!(!error.contains("20x3"), "{error}");
    // Nothing is left to run, and IT staff may start again once the source is fixed.
    assert!(matches!(
        runner.run_once().await.unwrap(),
        steward::jobs::RunOutcome::Idle
    ));
    let status = crate::release_support::status_of(&app, &release, &p.director.1).await;
    assert_eq!(status, "dua_executed");
}

async fn approval_is_refused_when_the_filters_select_no_row(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_med_elig(db, dir.path(), false).await;
    let p = people(&app).await;
    // The synthetic eligibility covers 2022-2024; this asks for 2019-2020.
    let mut request = level_one_request();
    request["filters"] = json!({ "years": { "first": 2019, "last": 2020 } });
    let id = in_review(&app, &p.requester.1, &p.privacy.1, &request).await;
    let base = format!("/api/v1/releases/{id}");
    let (status, body) = call(
        &app,
        "POST",
        &format!("{base}/approve"),
        &p.director.1,
        None,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "filters_select_no_rows", "{body}");
    assert!(body.to_string().contains("med_elig"), "{body}");
    let status = crate::release_support::status_of(&app, &id, &p.director.1).await;
    assert_eq!(status, "in_review", "nothing changed");
}

on_both_databases!(a_level_three_release_names_no_protected_member_in_any_file);

/// Writes a source with every column of the dataset's schema, blank except the given values.
fn write_rows(path: &Path, file_type: FileType, rows: &[Vec<(&str, &str)>]) {
    let schema = schema(&catalog(), file_type);
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(&names).unwrap();
    for row in rows {
        writer
            .write_record(names.iter().map(|n| {
                row.iter()
                    .find(|(column, _)| column == n)
                    .map_or("", |(_, v)| *v)
            }))
            .unwrap();
    }
    writer.flush().unwrap();
}

/// Member 0's protected claim carries only their P01 member id; the eligibility file ties it to
/// their SSN and the SSN to their P02 id, but only after a row naming them by the P02 id alone
/// was written. The first pass records the P01 id; writing the files learns the SSN and the P02
/// id, finds that an earlier row may have named the latter, and so the job records every linked
/// identity and writes the files again: member 0 is named nowhere, member 1 keeps their name,
/// and only one copy is stored.
async fn a_level_three_release_names_no_protected_member_in_any_file(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("med_claim.csv");
    let elig = dir.path().join("med_elig.csv");
    let person = |id: &'static str, ssn: &'static str, payer: &'static str, last: &'static str| {
        vec![
            ("member_id", id),
            ("member_ssn", ssn),
            ("payer_id", payer),
            ("member_first_name", "Pat"),
            ("member_last_name", last),
        ]
    };
    let claim = |mut row: Vec<(&'static str, &'static str)>, dx: &'static str| {
        row.extend([
            ("principal_diagnosis", dx),
            ("service_date_from", "2023-05-01"),
        ]);
        row
    };
    write_rows(
        &claims,
        FileType::MedClaim,
        &[
            claim(person("B0", "101-45-6701", "P02", "Zero"), "I10"),
            claim(person("A1", "101-45-6702", "P01", "One"), "I10"),
            claim(person("A0", "", "P01", "Zero"), "B20"),
        ],
    );
    let enrolled = |row: Vec<(&'static str, &'static str)>| {
        let mut row = row;
        row.push(("year", "2023"));
        row
    };
    write_rows(
        &elig,
        FileType::MedElig,
        &[
            // Named before anything links B0 to member 0: only a second writing can blank it.
            enrolled(person("B0", "", "P02", "Zero")),
            enrolled(person("A0", "101-45-6701", "P01", "Zero")),
            enrolled(person("B0", "101-45-6701", "P02", "Zero")),
            enrolled(person("A1", "101-45-6702", "P01", "One")),
        ],
    );
    let (claims_text, elig_text) = (claims.display().to_string(), elig.display().to_string());
    let app = spawn_app_configured(
        db,
        Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            ("STEWARD_EXTRACT__SOURCES__MED_CLAIM", &claims_text),
            ("STEWARD_EXTRACT__SOURCES__MED_ELIG", &elig_text),
        ],
    )
    .await;
    let p = people(&app).await;
    let request = json!({
        "level": "III",
        "datasets": ["med_claim", "med_elig"],
        "elements": [
            { "element": "med_claim.principal_diagnosis" },
            { "element": "med_claim.member_id", "reason": "Linking claims to enrollment" },
            { "element": "med_elig.member_id", "reason": "Linking claims to enrollment" },
            { "element": "med_elig.member_last_name", "reason": "Registry linkage by name" }
        ],
        "purpose": "Registry linkage study",
        "irb": { "board": "State University IRB", "protocol": "2026-017" },
        "ultimate_recipient": "State University cancer epidemiology unit",
        "security_measures": "Enclave without internet access",
        "publication_plan": "Peer-reviewed article, aggregate results only",
        "filters": { "years": { "first": 2023, "last": 2023 } }
    });
    let four_yes = json!({
        "present": ["A", "B", "C", "D", "E"],
        "votes": [
            { "member": "A", "vote": "yes" }, { "member": "B", "vote": "yes" },
            { "member": "C", "vote": "yes" }, { "member": "D", "vote": "yes" },
            { "member": "E", "vote": "no" }
        ],
        "reason": "Meeting of 2026-03-05"
    });
    let release = crate::release_support::execute_request(
        &app,
        &p,
        &request,
        Some(&four_yes),
        "DUA-2026-0301",
    )
    .await;
    start_extract(&app, &p.it.1, &release).await;
    let runner = runner(&app, "test-runner");
    let outcome = runner.run_once().await.unwrap();
    let jobs = app.state.jobs.list(None).await.unwrap();
    assert!(
        matches!(
            outcome,
            steward::jobs::RunOutcome::Ran {
                state: steward::jobs::JobState::Succeeded,
                ..
            }
        ),
        "{outcome:?} {jobs:?}"
    );
    let log = app.state.jobs.log_lines(jobs[0].id).await.unwrap();
    assert!(
        log.iter().any(|l| l.contains("extracting again")),
        "{log:?}"
    );

    let release_id: uuid::Uuid = release.parse().unwrap();
    let files = steward::db::extracts::files(&app.state.db, release_id)
        .await
        .unwrap();
    let stored = app
        .state
        .store
        .list(&steward::storage::KeyPrefix::parse("releases/").unwrap())
        .await
        .unwrap();
    assert_eq!(stored.len(), files.len(), "the first writing was discarded");
    let wrapped = steward::db::extracts::wrapped_key(&app.state.db, release_id)
        .await
        .unwrap()
        .unwrap();
    let identity = app.state.master.unwrap(&wrapped.wrapped).unwrap();
    let mut names = Vec::new();
    for name in ["med_claim.csv.zst.age", "med_elig.csv.zst.age"] {
        let file = files.iter().find(|f| f.name == name).unwrap();
        let ciphertext = crate::extract_job::read_object(&app, &file.object_key).await;
        let decryptor = age::Decryptor::new(ciphertext.as_slice()).unwrap();
        let mut compressed = Vec::new();
        std::io::Read::read_to_end(
            &mut decryptor
                .decrypt(std::iter::once(identity.identity() as &dyn age::Identity))
                .unwrap(),
            &mut compressed,
        )
        .unwrap();
        let plain = zstd::decode_all(compressed.as_slice()).unwrap();
        let mut reader = csv::Reader::from_reader(plain.as_slice());
        let header = reader.headers().unwrap().clone();
        let last = header.iter().position(|c| c == "member_last_name");
        for row in reader.records() {
            let row = row.unwrap();
            if let Some(last) = last {
                names.push(row[last].to_owned());
            }
        }
    }
    assert_eq!(names, ["", "", "", "One"], "member 0 is named nowhere");
}

on_both_databases!(a_job_ended_by_the_sweep_hands_its_release_back);

/// Issue 12, finding 2: three restarts of a worker during one job (each a lease left to
/// expire) ended the job through the sweep, which never handed the release back, so retry and a
/// new start both answered 409 for good.
async fn a_job_ended_by_the_sweep_hands_its_release_back(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_med_elig(db, dir.path(), false).await;
    let p = people(&app).await;
    let release = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0401").await;
    let start = format!("/api/v1/releases/{release}/extract");
    let (status, body) = call(&app, "POST", &start, &p.it.1, None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    // Each "worker" claims the job and dies: its lease expires and the next one takes over.
    for attempt in 1..=3 {
        let (_, lease) = app
            .state
            .jobs
            .claim(&format!("worker-{attempt}"))
            .await
            .unwrap()
            .expect("the job is claimable");
        assert_eq!(lease.attempt, attempt);
        app.clock.advance(time::Duration::minutes(10));
    }
    let runner = runner(&app, "survivor");
    assert_eq!(runner.sweep().await.unwrap(), 1);
    let jobs = app.state.jobs.list(None).await.unwrap();
    assert_eq!(jobs[0].state, steward::jobs::JobState::Failed);
    // Half an hour passed: sign in again.
    let (director, it) = (app.login(&p.director.0).await, app.login(&p.it.0).await);
    let status = crate::release_support::status_of(&app, &release, &director).await;
    assert_eq!(status, "dua_executed", "handed back");
    // IT staff can start again, and the new job runs to the end.
    let (status, body) = call(&app, "POST", &start, &it, None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    assert!(matches!(
        runner.run_once().await.unwrap(),
        steward::jobs::RunOutcome::Ran {
            state: steward::jobs::JobState::Succeeded,
            ..
        }
    ));
}

on_both_databases!(a_job_that_succeeds_on_retry_shows_no_error);

/// Issue 12, finding 12: a succeeded job still showed an earlier attempt's error.
async fn a_job_that_succeeds_on_retry_shows_no_error(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = app_with_med_elig(db, dir.path(), false).await;
    let p = people(&app).await;
    let release = crate::release_support::executed_level_one(&app, &p, "DUA-2026-0501").await;
    start_extract(&app, &p.it.1, &release).await;
    // The source is away for the first attempt (a mount not back yet), then returns.
    let source = dir.path().join("med_elig.csv");
    let away = dir.path().join("med_elig.csv.away");
    std::fs::rename(&source, &away).unwrap();
    let runner = runner(&app, "test-runner");
    runner.run_once().await.unwrap();
    let job = app.state.jobs.list(None).await.unwrap().remove(0);
    assert_eq!(job.state, steward::jobs::JobState::Queued);
    assert!(job.error.is_some(), "the failed attempt says why");
    std::fs::rename(&away, &source).unwrap();
    app.clock.advance(time::Duration::minutes(10));
    runner.run_once().await.unwrap();
    let job = app.state.jobs.get(job.id).await.unwrap();
    assert_eq!(job.state, steward::jobs::JobState::Succeeded);
    assert_eq!(job.error, None, "a succeeded job has no error");
}
