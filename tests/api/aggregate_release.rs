//! An aggregate release end to end, on both databases: a Level I table of inpatient discharges
//! by year, 3-digit ZIP and age band is requested, reviewed, approved and put under a DUA over
//! HTTPS; the extract job counts the synthetic source, suppresses and proves the table, and
//! delivers it encrypted with its audit, notice and dictionary. The test recounts the source
//! itself and checks every delivered number against it, and attacks the published table with
//! its own linear programs. Bad aggregate requests are refused by name and change nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;

use serde_json::{json, Value};
use steward::db::extracts;
use steward::disclosure::{audit, review::review, Table};
use steward::extract::manifest;

use crate::extract_job::{read_object, run_extract};
use crate::helpers::{spawn_app_configured, Db, Store};
use crate::on_both_databases;
use crate::release_support::{execute_request, expect, people};

fn aggregate_request(aggregate: Value) -> Value {
    json!({
        "level": "I",
        "datasets": ["hosp_inpatient"],
        "purpose": "Discharge trends by area and age",
        "ultimate_recipient": "State University health policy group",
        "security_measures": "Encrypted laptops, access limited to the named analysts",
        "publication_plan": "The delivered table, as suppressed",
        "filters": { "years": { "first": 2020, "last": 2023 } },
        "aggregate": aggregate
    })
}

fn table_request() -> Value {
    aggregate_request(json!({
        "dimensions": [
            { "element": "hosp_inpatient.discharge_year" },
            { "element": "hosp_inpatient.zip_code", "grouping": "zip3" },
            { "element": "hosp_inpatient.age", "grouping": "age_band" }
        ],
        "measure": "discharges"
    }))
}

/// The source recounted independently: discharges in 2020-2023 by year, 3-digit area (only
/// `040` is listed as over 20,000 people in this test's population table) and age band.
fn recount(source: &std::path::Path) -> HashMap<Vec<String>, u64> {
    let mut reader = csv::Reader::from_path(source).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (date, zip, age) = (at("discharge_date"), at("zip_code"), at("age"));
    let mut counts = HashMap::new();
    for record in reader.records().map(Result::unwrap) {
        let year = &record[date][..4];
        if !("2020"..="2023").contains(&year) {
            continue;
        }
        let area = if record[zip].starts_with("040") {
            "040"
        } else {
            "000"
        };
        let band = match record[age].parse::<u32>() {
            Ok(n) if n < 90 => format!("{:02}-{:02}", n / 5 * 5, n / 5 * 5 + 4),
            Ok(_) => "90 or over".to_owned(),
            Err(_) => "unknown".to_owned(),
        };
        *counts
            .entry(vec![year.to_owned(), area.to_owned(), band])
            .or_default() += 1;
    }
    counts
}

on_both_databases!(an_aggregate_release_runs_end_to_end);

async fn an_aggregate_release_runs_end_to_end(db: Db) {
    let source_dir = tempfile::tempdir().unwrap();
    steward::synth::generate(source_dir.path(), 20_000, 7).unwrap();
    let source = source_dir.path().join("hosp_inpatient.csv");
    let population = source_dir.path().join("zip3.toml");
    std::fs::write(
        &population,
        "[population]\n\"040\" = 50000\n\"041\" = 15000\n",
    )
    .unwrap();
    let app = spawn_app_configured(
        db,
        Store::Fs,
        &[
            ("STEWARD_JOBS__RUN_IN_SERVE", "false"),
            (
                "STEWARD_EXTRACT__SOURCES__HOSP_INPATIENT",
                &source.display().to_string(),
            ),
            (
                "STEWARD_POLICY__ZIP3_POPULATION",
                &population.display().to_string(),
            ),
        ],
    )
    .await;
    let p = people(&app).await;
    let recipient = age::x25519::Identity::generate();
    let registered = app
        .post_json(
            "/api/v1/me/keys",
            Some(&p.requester.1.access_token),
            &json!({ "public_key": recipient.to_public().to_string(), "label": "laptop" }),
        )
        .await;
    assert_eq!(registered.status(), 201);

    let release = execute_request(&app, &p, &table_request(), None, "DUA-2026-0301").await;
    // The request reads back as filed: dimensions, no element list.
    let shown = expect(
        &app,
        "GET",
        &format!("/api/v1/releases/{release}"),
        &p.requester.1,
        None,
        200,
    )
    .await;
    assert_eq!(shown["request"]["aggregate"]["threshold"], 11);
    assert_eq!(shown["request"]["elements"], json!([]));
    assert_eq!(shown["approved_elements"].as_array().unwrap().len(), 3);
    run_extract(&app, &p, &release).await;

    let release_id: uuid::Uuid = release.parse().unwrap();
    let files = extracts::files(&app.state.db, release_id).await.unwrap();
    let names: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "aggregate_table.csv.age",
            "approval_letter.pdf.age",
            "data_dictionary.csv.age",
            "manifest.json",
            "notice.txt.age",
            "suppression_audit.json.age",
        ])
    );
    let manifest_file = files.iter().find(|f| f.name == "manifest.json").unwrap();
    let manifest = manifest::verify(
        &read_object(&app, &manifest_file.object_key).await,
        &app.state.signer.public_hex(),
    )
    .expect("the manifest verifies");
    let mut plain = BTreeMap::new();
    for entry in &manifest.files {
        let record = files.iter().find(|f| f.name == entry.name).unwrap();
        let ciphertext = read_object(&app, &record.object_key).await;
        assert!(ciphertext.starts_with(b"age-encryption.org/v1\n"));
        let mut plaintext = Vec::new();
        age::Decryptor::new(ciphertext.as_slice())
            .unwrap()
            .decrypt(std::iter::once(&recipient as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut plaintext)
            .unwrap();
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&plaintext)),
            entry.plaintext.sha256
        );
        plain.insert(entry.name.clone(), plaintext);
    }

    // Every shown count is the true count, and 0 or at least 11; every true count from 1 to
    // 10 is masked.
    let truth = recount(&source);
    let table_csv = &plain["aggregate_table.csv.age"];
    let mut reader = csv::Reader::from_reader(table_csv.as_slice());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "discharge_year",
            "zip_code_3digit",
            "age_band",
            "count",
            "percent"
        ]
    );
    let mut masked = 0;
    let mut interior = 0;
    let mut areas = BTreeSet::new();
    for row in reader.records().map(Result::unwrap) {
        let key: Vec<String> = row.iter().take(3).map(str::to_owned).collect();
        areas.insert(key[1].clone());
        let true_count: u64 = if key.iter().any(|k| k == "Total") {
            truth
                .iter()
                .filter(|(k, _)| k.iter().zip(&key).all(|(a, b)| b == "Total" || a == b))
                .map(|(_, v)| v)
                .sum()
        } else {
            interior += 1;
            truth.get(&key).copied().unwrap_or(0)
        };
        match &row[3] {
            "#" => {
                masked += 1;
                assert_eq!(&row[4], "#", "no percentage beside a masked count");
            }
            shown => {
                let shown: u64 = shown.parse().unwrap();
                assert_eq!(shown, true_count, "{key:?}");
                assert!(shown == 0 || shown >= 11, "{key:?} shows {shown}");
            }
        }
        if (1..11).contains(&true_count) {
            assert_eq!(&row[3], "#", "{key:?} is {true_count}");
        }
    }
    assert!(masked > 0, "the synthetic table has small cells");
    assert!(interior > 20);
    assert_eq!(
        areas,
        BTreeSet::from(["000".to_owned(), "040".to_owned(), "Total".to_owned()])
    );
    // The delivered table passes the publication review as it stands.
    let report = review(table_csv, 11).unwrap();
    assert!(report.passes, "{:?}", report.findings);

    // The audit file names every masked cell with an interval that protects it, and the
    // attacker's own programs, run here on the table rebuilt from the truth, agree.
    let audit_file: Value = serde_json::from_slice(&plain["suppression_audit.json.age"]).unwrap();
    assert_eq!(audit_file["format"], "steward-aggregate-audit/v1");
    assert_eq!(audit_file["threshold"], 11);
    let suppressed = audit_file["suppressed"].as_array().unwrap();
    assert_eq!(suppressed.len(), masked);
    for cell in suppressed {
        let low = cell["interval"]["low"].as_f64().unwrap();
        let high = cell["interval"]["high"].as_f64().unwrap_or(f64::INFINITY);
        assert!(high - low > 0.5, "{cell}");
        if cell["status"] == "primary" {
            assert!(high >= 11.0 && high - low >= 11.0 - 1e-6, "{cell}");
        }
    }
    let categories: Vec<Vec<String>> = audit_file["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["categories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    let sizes: Vec<usize> = categories.iter().map(Vec::len).collect();
    let mut values = vec![0u64; sizes.iter().product()];
    for (key, count) in &truth {
        let index = key
            .iter()
            .zip(&categories)
            .zip(&sizes)
            .fold(0, |acc, ((k, names), n)| {
                acc * n + names.iter().position(|c| c == k).unwrap()
            });
        values[index] = *count;
    }
    let table = Table::from_interior(&sizes, &values).unwrap();
    let published = audit_file["published"].as_array().unwrap();
    let hidden: Vec<bool> = published.iter().map(|c| c["count"].is_null()).collect();
    let intervals = audit(&table, &hidden).unwrap();
    for (cell, interval) in intervals {
        let value = table.values()[cell];
        assert!(!interval.is_exact(), "cell {cell} is recoverable");
        if (1..11).contains(&value) {
            assert!(interval.protects(11), "cell {cell} ({value}): {interval:?}");
        }
    }

    // A reader re-checks the audit file from its published counts with the shipped command.
    let audit_path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(audit_path.path(), &plain["suppression_audit.json.age"]).unwrap();
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["verify", "audit"])
        .arg(audit_path.path())
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).starts_with("suppression verified:"));

    let notice = String::from_utf8(plain["notice.txt.age"].clone()).unwrap();
    assert!(notice.contains("non-zero discharge counts under eleven (11) were redacted"));
    let dictionary = String::from_utf8(plain["data_dictionary.csv.age"].clone()).unwrap();
    assert!(dictionary.contains("zip_code_3digit,hosp_inpatient.zip_code"));
    assert!(dictionary.contains("(row filter: service_years)"));
    let table_entry = manifest
        .files
        .iter()
        .find(|f| f.name == "aggregate_table.csv.age")
        .unwrap();
    assert_eq!(table_entry.kind, manifest::FileKind::AggregateTable);
    let report = table_entry.source.as_ref().unwrap();
    assert_eq!(
        report.source_rows - report.outside_filters,
        truth.values().sum::<u64>()
    );
}

on_both_databases!(bad_aggregate_requests_are_refused_by_name_and_change_nothing);

async fn bad_aggregate_requests_are_refused_by_name_and_change_nothing(db: Db) {
    let app = spawn_app_configured(db, Store::Fs, &[]).await;
    let p = people(&app).await;
    let dimension =
        |element: &str, grouping: &str| json!({ "element": element, "grouping": grouping });
    let cases = [
        (
            json!({ "dimensions": [dimension("hosp_inpatient.shoe_size", "value")], "measure": "discharges" }),
            "dimension `hosp_inpatient.shoe_size` is not an element of the catalog",
        ),
        (
            json!({ "dimensions": [dimension("hosp_inpatient.zip_code", "value")], "measure": "discharges" }),
            "dimension `hosp_inpatient.zip_code` (value) is not allowed at Level I: the element is above the release's level",
        ),
        (
            json!({ "dimensions": [
                dimension("hosp_inpatient.gender", "value"),
                dimension("hosp_inpatient.county", "value"),
                dimension("hosp_inpatient.discharge_year", "value"),
                dimension("hosp_inpatient.discharge_quarter", "value"),
                dimension("hosp_inpatient.age", "age_band"),
            ], "measure": "discharges" }),
            "an aggregate table has 1 to 4 dimensions, not 5",
        ),
        (
            json!({ "dimensions": [dimension("hosp_inpatient.gender", "value")], "measure": "discharges", "threshold": 0 }),
            "the suppression threshold must be from 1 to 1000, not 0",
        ),
        (
            json!({ "dimensions": [dimension("hosp_inpatient.gender", "value")], "measure": "claims" }),
            "measure `claims` does not fit dataset `hosp_inpatient`: it is not a claims dataset",
        ),
    ];
    let before = expect(&app, "GET", "/api/v1/releases", &p.requester.1, None, 200).await;
    for (aggregate, message) in cases {
        let body = aggregate_request(aggregate);
        let json = expect(
            &app,
            "POST",
            "/api/v1/requests",
            &p.requester.1,
            Some(&body),
            422,
        )
        .await;
        assert_eq!(
            json["message"],
            format!("invalid request: {message}"),
            "{json}"
        );
    }
    // Elements beside dimensions are refused too.
    let mut both = table_request();
    both["elements"] = json!([{ "element": "hosp_inpatient.gender" }]);
    let json = expect(
        &app,
        "POST",
        "/api/v1/requests",
        &p.requester.1,
        Some(&both),
        400,
    )
    .await;
    assert_eq!(
        json["message"],
        "an aggregate request names dimensions, not elements"
    );
    let after = expect(&app, "GET", "/api/v1/releases", &p.requester.1, None, 200).await;
    assert_eq!(before, after, "nothing was filed");
}
