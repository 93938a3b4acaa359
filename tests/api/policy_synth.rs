//! `synth` output loads with the shipped schemas, every row passes the transforms, and the
//! edge cases the rules care about are present (counted from the files, not from the report).

use steward::domain::level::Level;
use steward::policy::catalog::FileType;
use steward::policy::{parse_import_csv, plan, OptOutSet, WithheldMembers};
use steward::synth;

use crate::policy_support::{catalog, everything_allowed, hasher, schema};

#[derive(Debug, Default)]
struct Counts {
    rows: u64,
    protected: u64,
    opted_out: u64,
    practitioner_blanked: u64,
    top_coded_ages: u64,
    blanked_birth_dates: u64,
    empty_fields: u64,
    multiline_text: u64,
    quoted_commas: u64,
    non_ascii_names: u64,
}

fn count(dir: &std::path::Path, ft: FileType, opt: &OptOutSet) -> Counts {
    let catalog = catalog();
    let schema = schema(&catalog, ft);
    let path = dir.join(format!("{}.csv", ft.as_str()));
    let mut c = Counts::default();
    let plans: Vec<_> = Level::ALL
        .iter()
        .map(|l| {
            plan(
                &everything_allowed(&catalog, ft, *l, "org"),
                &schema,
                &catalog,
            )
            .expect("plan")
        })
        .collect();
    let mut reader = csv::Reader::from_path(&path).expect("open");
    let header = reader.headers().expect("header").clone();
    let names: Vec<String> = schema.columns().iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        names,
        "{ft}: header differs from the schema"
    );
    let mut bound: Vec<_> = plans
        .iter()
        .map(|p| p.bind(&path.display().to_string(), &header).expect("bind"))
        .collect();
    let age_col = plans[0]
        .columns()
        .iter()
        .position(|c| c.class == steward::policy::ElementClass::Age);
    let dob_col = plans[1]
        .columns()
        .iter()
        .position(|c| c.transform == steward::policy::Transform::BirthDateUnless90);
    let name_cols: Vec<usize> = header
        .iter()
        .enumerate()
        .filter(|(_, n)| n.ends_with("first_name") || n.ends_with("last_name"))
        .map(|(i, _)| i)
        .collect();
    let mut record = csv::ByteRecord::new();
    let mut out = csv::ByteRecord::new();
    let members = WithheldMembers::from(opt.clone());
    while reader.read_byte_record(&mut record).expect("read") {
        c.rows += 1;
        c.empty_fields += record.iter().filter(|f| f.is_empty()).count() as u64;
        c.multiline_text += u64::from(record.iter().any(|f| f.contains(&b'\n')));
        c.quoted_commas += u64::from(record.iter().any(|f| f.contains(&b',')));
        c.non_ascii_names += u64::from(name_cols.iter().any(|i| !record[*i].is_ascii()));
        let f1 = bound[0]
            .apply(&record, &members, &mut out)
            .expect("level I row")
            .flags()
            .expect("no filter");
        if let Some(i) = age_col {
            c.top_coded_ages += u64::from(&out[i] == b"90 or over");
        }
        c.practitioner_blanked += u64::from(f1.practitioner_blanked);
        bound[1]
            .apply(&record, &members, &mut out)
            .expect("level II row");
        if let Some(i) = dob_col {
            c.blanked_birth_dates += u64::from(out[i].is_empty());
        }
        let f3 = bound[2]
            .apply(&record, &members, &mut out)
            .expect("level III row")
            .flags()
            .expect("no filter");
        c.protected += u64::from(f3.protected);
        c.opted_out += u64::from(f3.opted_out);
    }
    c
}

#[test]
fn synth_output_loads_and_holds_the_edge_cases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = synth::generate(dir.path(), 3_000, 11).expect("synth");
    assert_eq!(report.files.len(), FileType::ALL.len());
    let opt_csv = std::fs::read(dir.path().join("optout.csv")).expect("optout.csv");
    let keys = parse_import_csv(opt_csv.as_slice(), &hasher()).expect("optout.csv imports");
    assert_eq!(keys.len() as u64, report.opted_out_members);
    assert!(keys.len() >= 5);
    let opt = OptOutSet::new(hasher(), keys);

    for ft in FileType::ALL {
        let c = count(dir.path(), ft, &opt);
        let reported = report
            .files
            .iter()
            .find(|f| f.file_type == ft)
            .expect("reported");
        assert_eq!(c.rows, reported.rows, "{ft}");
        assert!(c.rows > 0, "{ft}");
        assert!(c.empty_fields > 0, "{ft}: no empty fields");
    }

    let med = count(dir.path(), FileType::MedClaim, &opt);
    assert!(
        med.protected >= 30,
        "HIV / substance-use / psychiatric rows: {med:?}"
    );
    assert!(med.opted_out >= 30, "opted-out members' rows: {med:?}");
    assert!(med.practitioner_blanked >= 10, "abortion rows: {med:?}");
    assert!(med.top_coded_ages >= 30, "members aged 90+: {med:?}");
    assert!(
        med.blanked_birth_dates >= 30,
        "birth dates blanked at 90+: {med:?}"
    );
    assert!(
        med.multiline_text >= 10 && med.quoted_commas >= 10,
        "free text: {med:?}"
    );
    assert!(med.non_ascii_names >= 30, "non-ASCII names: {med:?}");
    for ft in [FileType::HospInpatient, FileType::HospOutpatient] {
        let c = count(dir.path(), ft, &opt);
        assert!(
            c.protected > 0 && c.practitioner_blanked > 0 && c.opted_out > 0,
            "{ft}: {c:?}"
        );
    }
    let elig = count(dir.path(), FileType::MedElig, &opt);
    assert!(elig.opted_out > 0 && elig.top_coded_ages > 0, "{elig:?}");
}

#[test]
fn synth_is_deterministic_and_members_are_shared() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    synth::generate(a.path(), 500, 3).expect("synth");
    synth::generate(b.path(), 500, 3).expect("synth");
    for name in [
        "med_claim.csv",
        "med_elig.csv",
        "hosp_inpatient.csv",
        "optout.csv",
    ] {
        let x = std::fs::read(a.path().join(name)).expect("read");
        let y = std::fs::read(b.path().join(name)).expect("read");
        assert!(x == y, "{name} differs between runs with the same seed");
    }
    let ids = |file: &str| -> std::collections::BTreeSet<String> {
        let mut r = csv::Reader::from_path(a.path().join(file)).expect("open");
        let i = r
            .headers()
            .expect("header")
            .iter()
            .position(|h| h == "member_id")
            .expect("member_id");
        r.records()
            .map(|rec| rec.expect("row")[i].to_owned())
            .collect()
    };
    let eligible = ids("med_elig.csv");
    let claimed = ids("med_claim.csv");
    assert!(
        claimed.is_subset(&eligible),
        "claims for members without eligibility"
    );
    let c = tempfile::tempdir().expect("tempdir");
    synth::generate(c.path(), 500, 4).expect("synth");
    assert!(
        std::fs::read(c.path().join("med_claim.csv")).expect("read")
            != std::fs::read(a.path().join("med_claim.csv")).expect("read")
    );
}
