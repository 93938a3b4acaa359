//! Property tests over generated rows and releases: the promises of the level policy hold for
//! every input, not just the examples.

use std::collections::BTreeSet;

use proptest::prelude::*;
use steward::domain::level::Level;
use steward::policy::catalog::{Catalog, ElementClass, ElementId, FileType};
use steward::policy::{plan, LinkageKey, OptOutSet, ReleaseSpec, RowFilter, WithheldMembers};

use crate::policy_support::{catalog, everything_allowed, opt_outs, schema, LINKAGE_SECRET};

const SSNS: [&str; 4] = ["123-45-6789", "234-56-7890", "345-67-8901", "456-78-9012"];
/// The first two are opted out.
const OPTED_OUT: [&str; 2] = ["123-45-6789", "234-56-7890"];
const DIAGNOSES: [&str; 8] = [
    "I10", "E11.9", "B20", "Z21", "F11.20", "F10.10", "Z33.2", "",
];
const PROTECTED_DX: [&str; 4] = ["B20", "Z21", "F11.20", "F10.10"];
const CPTS: [&str; 6] = ["99213", "59840", "59857", "59858", "87389", "H0020"];
const POS: [&str; 4] = ["11", "51", "57", "22"];
/// A value no output may ever contain: it is only ever in charge columns.
const CHARGE_MARK: &str = "77777.77";

fn catalog_once() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(catalog)
}

#[derive(Debug, Clone)]
struct Row {
    age: u32,
    dob: time::Date,
    service: time::Date,
    dx: &'static str,
    cpt: &'static str,
    pos: &'static str,
    ssn: &'static str,
    member: u32,
}

fn date_in(from: i32, to: i32) -> impl Strategy<Value = time::Date> {
    (from..=to, 1u16..=365).prop_map(|(y, d)| time::Date::from_ordinal_date(y, d).expect("ordinal"))
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u32..=110,
        date_in(1915, 2023),
        date_in(2015, 2025),
        prop::sample::select(DIAGNOSES.to_vec()),
        prop::sample::select(CPTS.to_vec()),
        prop::sample::select(POS.to_vec()),
        prop::sample::select(SSNS.to_vec()),
        0u32..50,
    )
        .prop_map(|(age, dob, service, dx, cpt, pos, ssn, member)| Row {
            age,
            dob,
            service,
            dx,
            cpt,
            pos,
            ssn,
            member,
        })
}

fn age_at(dob: time::Date, at: time::Date) -> i32 {
    let mut a = at.year() - dob.year();
    if (at.month() as u8, at.day()) < (dob.month() as u8, dob.day()) {
        a -= 1;
    }
    a
}

/// A full medical-claims source record (header order of the shipped schema).
fn record(r: &Row) -> (csv::StringRecord, csv::ByteRecord) {
    let schema = schema(catalog_once(), FileType::MedClaim);
    let names: Vec<&str> = schema.columns().iter().map(|c| c.name.as_str()).collect();
    let service = r.service.to_string();
    let values: Vec<String> = names
        .iter()
        .map(|n| match *n {
            "member_age" => r.age.to_string(),
            "member_birth_date" => r.dob.to_string(),
            "service_date_from" | "service_date_thru" | "paid_date" | "approved_date"
            | "admission_date" | "discharge_date" => service.clone(),
            "principal_diagnosis" => r.dx.to_owned(),
            "procedure_code" => r.cpt.to_owned(),
            "place_of_service" => r.pos.to_owned(),
            "member_ssn" | "subscriber_ssn" => r.ssn.to_owned(),
            "member_id" => format!("M{:05}", r.member),
            "member_zip" => "04101-0001".to_owned(),
            "charge_amount" => CHARGE_MARK.to_owned(),
            "member_first_name" => "Zoë".to_owned(),
            "member_last_name" => "Ouellette".to_owned(),
            _ => "v".to_owned(),
        })
        .collect();
    (
        csv::StringRecord::from(names),
        csv::ByteRecord::from(values.iter().map(String::as_str).collect::<Vec<_>>()),
    )
}

fn run(release: &ReleaseSpec, r: &Row, opt: &OptOutSet) -> Vec<(String, ElementClass, String)> {
    let catalog = catalog_once();
    let p = plan(release, &schema(catalog, FileType::MedClaim), catalog).expect("plan");
    let (header, rec) = record(r);
    let mut bound = p.bind("prop.csv", &header).expect("bind");
    let mut out = csv::ByteRecord::new();
    bound
        .apply(&rec, &WithheldMembers::from(opt.clone()), &mut out)
        .expect("apply");
    p.columns()
        .iter()
        .zip(out.iter())
        .map(|(c, v)| {
            (
                c.element.to_string(),
                c.class,
                String::from_utf8(v.to_vec()).expect("utf-8"),
            )
        })
        .collect()
}

fn level() -> impl Strategy<Value = Level> {
    prop::sample::select(Level::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any approved list, any file type, any level: the plan either refuses or delivers only
    /// approved elements the level allows, never a charge; it refuses exactly when some
    /// approved element is above the level, a charge, or supplemental and not requested.
    #[test]
    fn plans_never_exceed_level_or_approval(
        ft in prop::sample::select(FileType::ALL.to_vec()),
        level in level(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        request_all_supplemental in any::<bool>(),
    ) {
        let catalog = catalog_once();
        let all: Vec<ElementId> = catalog.elements_of(ft).map(|e| e.id.clone()).collect();
        let approved: BTreeSet<ElementId> = picks.iter().map(|i| all[i.index(all.len())].clone()).collect();
        let supplemental_requested = if request_all_supplemental {
            approved.iter().filter(|id| catalog.get(id).is_some_and(|e| e.supplemental)).cloned().collect()
        } else {
            BTreeSet::new()
        };
        let should_refuse = approved.iter().any(|id| {
            let e = catalog.get(id).expect("known");
            e.lowest_level.is_none_or(|l| l > level) || (e.supplemental && !request_all_supplemental)
        });
        let release = ReleaseSpec {
            level,
            approved: approved.clone(),
            supplemental_requested,
            linkage: LinkageKey::derive(LINKAGE_SECRET, "org").expect("key"),
            filter: RowFilter::default(),
        };
        match plan(&release, &schema(catalog, ft), catalog) {
            Err(_) => prop_assert!(should_refuse),
            Ok(p) => {
                prop_assert!(!should_refuse);
                for c in p.columns() {
                    let e = catalog.get(&c.element).expect("known");
                    prop_assert!(approved.contains(&c.element));
                    prop_assert!(e.lowest_level.is_some_and(|l| l <= level), "{} at {}", c.element, level);
                    prop_assert!(c.class != ElementClass::Charge);
                    if level == Level::I {
                        prop_assert_eq!(e.lowest_level, Some(Level::I));
                    }
                }
            }
        }
    }

    /// The row rules hold for every generated row at every level, with the widest release.
    #[test]
    fn row_rules_hold(r in row(), level in level()) {
        let catalog = catalog_once();
        let release = everything_allowed(catalog, FileType::MedClaim, level, "org");
        let opt = opt_outs(&OPTED_OUT);
        let out = run(&release, &r, &opt);
        let value = |id: &str| out.iter().find(|(e, _, _)| e == id).map(|(_, _, v)| v.clone());

        // No output at any level holds a charge element or a charge value.
        prop_assert!(out.iter().all(|(_, class, v)| *class != ElementClass::Charge && v != CHARGE_MARK));

        // Level I shows no age above 89 as a number, and no Level II/III element at all.
        if level == Level::I {
            let age = value("med_claim.member_age").expect("age column");
            prop_assert!(age.parse::<u32>().map_or(age == "90 or over", |n| n <= 89), "age {}", age);
            for (id, _, _) in &out {
                let e = catalog.get(&ElementId::parse(id).expect("id")).expect("known");
                prop_assert_eq!(e.lowest_level, Some(Level::I));
            }
        }

        // Level II and up: no birth date for a member aged 90+ at service.
        if level >= Level::II && age_at(r.dob, r.service) >= 90 {
            prop_assert_eq!(value("med_claim.member_birth_date"), Some(String::new()));
        }

        // Level III: no direct identifier of an opted-out member or on a protected row.
        let protected = PROTECTED_DX.contains(&r.dx) || r.pos == "51" || r.pos == "57" || r.cpt == "87389" || r.cpt == "H0020";
        if level == Level::III && (OPTED_OUT.contains(&r.ssn) || protected) {
            for (id, class, v) in &out {
                if *class == ElementClass::DirectIdentifier {
                    prop_assert!(v.is_empty(), "{} = {}", id, v);
                }
            }
        }
        if level == Level::III && !OPTED_OUT.contains(&r.ssn) && !protected {
            prop_assert_eq!(value("med_claim.member_ssn"), Some(r.ssn.to_owned()));
        }

        // No abortion-procedure row shows practitioner identity.
        if r.cpt == "59840" || r.cpt == "59857" || r.dx == "Z33.2" {
            for (id, class, v) in &out {
                if *class == ElementClass::Provider {
                    prop_assert!(v.is_empty(), "{} = {}", id, v);
                }
            }
        }
    }

    /// Replacement ids agree within one organization and differ across organizations.
    #[test]
    fn replacement_ids_are_per_organization(r in row(), level in prop::sample::select(vec![Level::II, Level::III])) {
        let catalog = catalog_once();
        let opt = opt_outs(&[]);
        let a1 = run(&everything_allowed(catalog, FileType::MedClaim, level, "org-a"), &r, &opt);
        let a2 = run(&everything_allowed(catalog, FileType::MedClaim, level, "org-a"), &r, &opt);
        let b = run(&everything_allowed(catalog, FileType::MedClaim, level, "org-b"), &r, &opt);
        prop_assert_eq!(&a1, &a2);
        let mut compared = 0;
        for ((id, class, va), (_, _, vb)) in a1.iter().zip(&b) {
            if *class == ElementClass::ReplacementId {
                prop_assert_eq!(va.len(), 32, "{}", id);
                prop_assert_ne!(va, vb, "{}", id);
                compared += 1;
            }
        }
        prop_assert!(compared >= 5);
        // Raw identifiers never appear in replacement columns.
        let member_id = a1.iter().find(|(e, _, _)| e == "med_claim.member_id").map(|(_, _, v)| v.clone());
        prop_assert_ne!(member_id, Some(format!("M{:05}", r.member)));
    }
}
