//! `GET /api/v1/catalog`: a requester discovers the element ids, levels and groupings a
//! request names, without reading the source.

use crate::helpers::{spawn_app_configured, Db, Store};
use crate::release_support::{expect, people};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_reads_the_catalog() {
    let app = spawn_app_configured(Db::Sqlite, Store::Fs, &[]).await;
    let p = people(&app).await;
    let catalog = expect(&app, "GET", "/api/v1/catalog", &p.requester.1, None, 200).await;
    let datasets = catalog["datasets"].as_array().unwrap();
    assert_eq!(datasets.len(), 10);
    let inpatient = datasets
        .iter()
        .find(|d| d["id"] == "hosp_inpatient")
        .unwrap();
    let element = |id: &str| {
        inpatient["elements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id)
            .unwrap()
            .clone()
    };
    let zip = element("hosp_inpatient.zip_code");
    assert_eq!(zip["level"], "II");
    assert_eq!(zip["class"], "geography");
    assert_eq!(zip["transforms"]["II"], "zip5");
    assert!(zip["transforms"].get("I").is_none());
    assert_eq!(zip["level_one_groupings"], serde_json::json!(["zip3"]));
    let age = element("hosp_inpatient.age");
    assert_eq!(
        age["level_one_groupings"],
        serde_json::json!(["value", "age_band"])
    );
    let name = element("hosp_inpatient.patient_last_name");
    assert_eq!(name["level"], "III");
    assert_eq!(name["level_one_groupings"], serde_json::json!([]));
    // Every role may read it; nobody signed out.
    expect(&app, "GET", "/api/v1/catalog", &p.it.1, None, 200).await;
    let anonymous = app.call("GET", "/api/v1/catalog", None, None).await;
    assert_eq!(anonymous.status(), 401);
}
