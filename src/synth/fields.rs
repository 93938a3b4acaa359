//! How each source column is filled. Every value is rendered into a caller-provided byte
//! buffer: no allocation per field or per row.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration};

use crate::policy::catalog::FileType;

/// Size of the render buffer; every rendered value fits.
pub const BUF: usize = 256;

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Susan",
    "Richard",
    "Jessica",
    "Joseph",
    "Sarah",
    "Thomas",
    "Karen",
    "José",
    "Zoë",
    "Renée",
    "Łukasz",
    "Søren",
    "Chloé",
    "Nguyễn Văn",
    "Ana María",
    "Björn",
    "Amélie",
    "Siobhán",
    "Dmitrií",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Martin",
    "Thibodeau",
    "Pelletier",
    "Ouellette",
    "O'Brien",
    "Müller",
    "Nuñez",
    "Çelik",
    "Đặng",
    "Gagnon",
    "Lévesque",
    "Côté",
    "Ng",
    "MacDonald",
    "St. Pierre",
    "Øvergård",
];
const PLACES: &[(&str, &str, &str)] = &[
    ("Portland", "ME", "04101"),
    ("Portland", "ME", "04102-1234"),
    ("Bangor", "ME", "04401"),
    ("Lewiston", "ME", "04240"),
    ("Augusta", "ME", "04330"),
    ("Biddeford", "ME", "04005"),
    ("Presque Isle", "ME", "04769"),
    ("Saint-Léonard", "NB", "E7E 1A1"),
    ("Dover", "NH", "038201111"),
    ("Caribou", "ME", ""),
];
const STREETS: &[&str] = &[
    "Main St",
    "Congress St",
    "Elm St",
    "Forest Ave",
    "Rue Principale",
];

const COMMON_DX: &[&str] = &[
    "I10", "E11.9", "J06.9", "M54.5", "Z00.00", "K21.9", "R51.9", "S93.401A", "N39.0", "E78.5",
    "J45.909", "M17.11", "R10.9", "Z23",
];
const COMMON_CPT: &[&str] = &[
    "99213", "99214", "80053", "85025", "71046", "93000", "36415", "97110", "G0439",
];
const COMMON_ICD_PROC: &[&str] = &["0DJ08ZZ", "30233N1", "0SRC0J9", "5A1955Z", "BW03ZZZ"];
const HOSPITALS: &[&str] = &["H001", "H002", "H003", "H004", "H005", "H006"];
const SPECIALTIES: &[&str] = &["08", "11", "26", "01", "16", "30", "37"];

/// What the row is about; decides its codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Ordinary care.
    Routine,
    /// HIV diagnosis or test.
    Hiv,
    /// Substance-use treatment.
    SubstanceUse,
    /// Psychiatric inpatient stay.
    Psychiatric,
    /// Abortion procedure.
    Abortion,
}

/// A synthetic person, shared by every file.
#[derive(Debug, Clone)]
pub struct Member {
    /// Position in the member list.
    pub index: u64,
    /// Payer member id.
    pub member_id: String,
    /// SSN, `XXX-XX-XXXX`.
    pub ssn: String,
    subscriber_ssn: String,
    contract: String,
    first: &'static str,
    last: &'static str,
    dob: Date,
    gender: &'static str,
    place: usize,
    street_no: u32,
    street: &'static str,
    apartment: Option<u32>,
    group: u32,
    /// Listed in `optout.csv`.
    pub opted_out: bool,
}

fn ssn(rng: &mut ChaCha8Rng) -> String {
    // Issued-looking SSNs only: area 001-665 or 667-899, group 01-99, serial 0001-9999.
    let mut area = rng.gen_range(1..=898u32);
    if area >= 666 {
        area += 1;
    }
    let group = rng.gen_range(1..=99u32);
    let serial = rng.gen_range(1..=9999u32);
    format!("{area:03}-{group:02}-{serial:04}")
}

impl Member {
    /// Generates member `index`.
    pub fn generate(index: u64, rng: &mut ChaCha8Rng) -> Member {
        let own_ssn = ssn(rng);
        let subscriber_ssn = if rng.gen_bool(0.7) {
            own_ssn.clone()
        } else {
            ssn(rng)
        };
        // One member in 25 is born 1924-1931: 90 or older at their 2022-2024 services.
        let year = if index % 25 == 3 {
            rng.gen_range(1924..=1931)
        } else {
            rng.gen_range(1940..=2021)
        };
        let dob = Date::from_ordinal_date(year, rng.gen_range(1..=365)).unwrap_or(Date::MIN);
        Member {
            index,
            member_id: format!("M{index:08}"),
            ssn: own_ssn,
            subscriber_ssn,
            contract: format!("C{:07}", rng.gen_range(0..10_000_000u32)),
            first: FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())],
            last: LAST_NAMES[rng.gen_range(0..LAST_NAMES.len())],
            dob,
            gender: ["M", "F", "F", "M", "U"][rng.gen_range(0..5)],
            place: rng.gen_range(0..PLACES.len()),
            street_no: rng.gen_range(1..400),
            street: STREETS[rng.gen_range(0..STREETS.len())],
            apartment: rng.gen_bool(0.3).then(|| rng.gen_range(1..30)),
            group: rng.gen_range(0..5000),
            // About one member in 23 has opted out of Level III releases.
            opted_out: index % 23 == 5,
        }
    }
}

/// A synthetic practitioner.
#[derive(Debug, Clone)]
struct Practitioner {
    first: &'static str,
    middle: &'static str,
    last: &'static str,
    npi: String,
    code: String,
    taxonomy: &'static str,
}

/// Shared pools of practitioners.
#[derive(Debug, Clone)]
pub struct Pools {
    practitioners: Vec<Practitioner>,
}

impl Pools {
    /// Fixed pools (independent of the seed, so practitioner ids are stable).
    pub fn new() -> Pools {
        let taxonomies = [
            "207Q00000X",
            "208D00000X",
            "207R00000X",
            "2084P0800X",
            "207V00000X",
        ];
        let practitioners = (0..120u32)
            .map(|i| Practitioner {
                first: FIRST_NAMES[(i as usize * 7) % FIRST_NAMES.len()],
                middle: ["A", "B", "", "J", "M"][(i % 5) as usize],
                last: LAST_NAMES[(i as usize * 11) % LAST_NAMES.len()],
                npi: format!("1{:09}", 234_500_000 + i * 7919),
                code: format!("P{:05}", i),
                taxonomy: taxonomies[(i % 5) as usize],
            })
            .collect();
        Pools { practitioners }
    }
}

impl Default for Pools {
    fn default() -> Self {
        Pools::new()
    }
}

/// How a column is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// One of these values.
    Pick(&'static [&'static str]),
    /// An integer in the range.
    Int(u32, u32),
    /// An amount in dollars and cents within the range of whole dollars.
    Money(u32, u32),
    /// A rate between 0 and 1 with three decimals.
    Rate,
    /// Member attributes.
    MemberId,
    /// The member's SSN.
    Ssn,
    /// The subscriber's SSN.
    SubscriberSsn,
    /// The contract number.
    Contract,
    /// Member first name.
    FirstName,
    /// Member last name.
    LastName,
    /// Member birth date.
    Dob,
    /// Member gender.
    Gender,
    /// Member city.
    City,
    /// Member state.
    State,
    /// Member ZIP.
    Zip,
    /// Street address (with a comma when there is an apartment).
    Street,
    /// Group id.
    GroupId,
    /// Age at the row's reference date.
    Age,
    /// Row record id.
    RecordId,
    /// Payer claim id.
    ClaimId,
    /// Medical record number.
    Mrn,
    /// Service start.
    ServiceFrom,
    /// Service end.
    ServiceThru,
    /// Paid date.
    Paid,
    /// Approved date.
    Approved,
    /// Admission date.
    Admission,
    /// Discharge date.
    Discharge,
    /// Date of the n-th procedure (empty when there is none).
    ProcDate(u8),
    /// Eligibility year.
    CovYear,
    /// Eligibility month.
    CovMonth,
    /// Eligibility period `YYYYMM`.
    CovPeriod,
    /// n-th diagnosis (0 = principal).
    Diag(u8),
    /// Admitting diagnosis.
    Admitting,
    /// CPT/HCPCS procedure.
    Cpt,
    /// n-th ICD procedure.
    IcdProc(u8),
    /// Place of service.
    Pos,
    /// Revenue code.
    Rev,
    /// Accommodation revenue codes (`;`-separated).
    AccomRev,
    /// Type of bill.
    Tob,
    /// National drug code.
    Ndc,
    /// Drug name.
    DrugName,
    /// Taxonomy of the row's practitioner.
    Taxonomy,
    /// Practitioner first name by role.
    PractFirst(u8),
    /// Practitioner middle initial by role.
    PractMiddle(u8),
    /// Practitioner last name by role.
    PractLast(u8),
    /// Practitioner NPI by role.
    PractNpi(u8),
    /// Agency practitioner code by role.
    PractCode(u8),
    /// Length of stay in days.
    Los,
    /// Free text, sometimes with commas, quotes and newlines.
    Note,
}

const YN: &[&str] = &["Y", "N"];

impl Field {
    /// The generator for a schema column, or `None` when unknown.
    pub fn for_column(ft: FileType, name: &str) -> Option<Field> {
        use Field::*;
        let n = |prefix: &str| -> Option<u8> {
            name.strip_prefix(prefix)?
                .split('_')
                .next()?
                .parse::<u8>()
                .ok()
        };
        Some(match name {
            "submitter_id" => Pick(&["SUB0101", "SUB0102", "SUB0207"]),
            // Payer ids as the APCD assigns them, so release filters can name them.
            "payer_id" => Pick(&["P01", "P02", "P03", "P04"]),
            "year" => CovYear,
            "month" => CovMonth,
            "coverage_period" => CovPeriod,
            "coverage_level_code" => Pick(&["IND", "FAM", "ESP"]),
            "member_gender" | "gender" | "standardized_member_gender" => Gender,
            "member_state" => State,
            "medical_coverage"
            | "prescription_drug_coverage"
            | "dental_coverage"
            | "primary_insurance_indicator"
            | "medicare_coverage"
            | "duplicate_indicator"
            | "generic_drug_indicator"
            | "compound_drug_indicator" => Pick(YN),
            "coverage_type" => Pick(&["ASW", "ASO", "STN", "UND"]),
            "market_category_code" => Pick(&["IND", "FCH", "GS1", "GLG", "OTH"]),
            "record_type" => Pick(&["ME", "MC", "PC", "DC"]),
            "member_age" | "age" => Age,
            "record_id" => RecordId,
            "file_id" => Pick(&["F2023001", "F2023002"]),
            "standardized_relationship_code" | "individual_relationship_code" => {
                Pick(&["20", "01", "19", "G8"])
            }
            "standardized_product_code" => Pick(&["HM", "PR", "EP", "MC", "MD"]),
            "member_birth_date" | "birth_date" => Dob,
            "member_city" => City,
            "member_zip" | "zip_code" => Zip,
            "subscriber_ssn" => SubscriberSsn,
            "contract_number" => Contract,
            "member_ssn" | "patient_ssn" => Ssn,
            "member_id" => MemberId,
            "group_id" => GroupId,
            "member_first_name" | "patient_first_name" => FirstName,
            "member_last_name" | "patient_last_name" => LastName,
            "member_street_address" | "patient_street_address" => Street,
            "admission_priority" => Pick(&["1", "2", "3", "4", "9"]),
            "admission_point_of_origin" | "admission_source" => Pick(&["1", "2", "4", "5", "9"]),
            "discharge_status" => Pick(&["01", "02", "06", "07", "20", "30"]),
            "type_of_bill" | "bill_type" => Tob,
            "place_of_service" | "facility_type" => Pos,
            "claim_status" => Pick(&["01", "02", "19", "22"]),
            "admitting_diagnosis" => Admitting,
            "e_code" | "e_codes" => Pick(&["", "", "", "W19.XXXA", "V43.52XA"]),
            "principal_diagnosis" => Diag(0),
            "revenue_code" => Rev,
            "procedure_code" | "cpt_hcpcs_code" => Cpt,
            "procedure_modifier_1" | "procedure_modifier_2" | "modifiers" => {
                Pick(&["", "", "25", "59", "LT", "RT"])
            }
            "icd_procedure_code" | "principal_procedure" => IcdProc(0),
            "quantity" | "units" | "quantity_dispensed" => Int(1, 12),
            "paid_amount" | "ingredient_cost" => Money(0, 2500),
            "prepaid_amount" | "postage_amount" | "dispensing_fee" => Money(0, 15),
            "copay_amount" | "coinsurance_amount" | "deductible_amount" => Money(0, 200),
            "drg" | "cms_drg" | "apr_drg" => Pick(&["", "193", "291", "392", "470", "871", "885"]),
            "drg_version" => Pick(&["", "40", "41"]),
            "apc" => Pick(&["", "5012", "5521", "5371"]),
            "apc_version" => Pick(&["", "2023"]),
            "ndc" | "drug_code" => Ndc,
            "drug_name" => DrugName,
            "provider_id" | "prescribing_physician_id" | "ordering_practitioner" => PractCode(2),
            "paid_date" => Paid,
            "service_date_from" | "date_filled" | "line_service_date" => ServiceFrom,
            "service_date_thru" => ServiceThru,
            "approved_date" => Approved,
            "admission_date" => Admission,
            "discharge_date" => Discharge,
            "admission_hour" | "discharge_hour" => Int(0, 23),
            "claim_id" => ClaimId,
            "attending_first_name" => PractFirst(0),
            "attending_middle_initial" => PractMiddle(0),
            "attending_last_name" => PractLast(0),
            "attending_npi" => PractNpi(0),
            "operating_first_name" => PractFirst(1),
            "operating_middle_initial" => PractMiddle(1),
            "operating_last_name" => PractLast(1),
            "operating_npi" => PractNpi(1),
            "billing_provider_name" => PractLast(2),
            "billing_provider_npi" | "performing_practitioner_npi" => PractNpi(2),
            "charge_amount"
            | "total_charges"
            | "accommodation_charges"
            | "ancillary_charges"
            | "line_item_charges" => Money(50, 90_000),
            "rendering_provider_tax_id" | "attending_tax_id" | "performing_tax_id" => {
                Pick(&["01-0211501", "01-0238552", "04-3412345"])
            }
            "prescriber_dea_number" => Pick(&["AB1234563", "FM7654321"]),
            "claim_note" | "pharmacy_note" | "discharge_note" | "visit_note"
            | "submission_note" => Note,
            "new_or_refill" => Pick(&["N", "R"]),
            "dispense_as_written_code" => Pick(&["0", "1", "2"]),
            "days_supply" => Pick(&["30", "90", "7", "14"]),
            "pharmacy_detail_key" => RecordId,
            "cdt_code" => Pick(&["D0120", "D1110", "D2391", "D0274", "D7140"]),
            "hospital_code" => Pick(HOSPITALS),
            "hospital_service_area" | "health_planning_area" => {
                Pick(&["HSA01", "HSA07", "HSA12", "HSA22"])
            }
            "county" => Pick(&[
                "Cumberland",
                "Penobscot",
                "Androscoggin",
                "Aroostook",
                "York",
            ]),
            "principal_payer_code" | "secondary_payer_code" | "tertiary_payer_code" => {
                Pick(&["", "MC", "MD", "CO", "SP"])
            }
            "principal_payer_naic" | "secondary_payer_naic" | "tertiary_payer_naic" => {
                Pick(&["", "60054", "95433", "64246"])
            }
            "principal_payer_name" => Pick(&["Anthem", "MaineCare", "Medicare", "Aetna, Inc."]),
            "principal_diagnosis_poa" => Pick(&["Y", "N", "U", "W", ""]),
            "attending_specialty"
            | "surgeon_specialty"
            | "ordering_specialty"
            | "performing_specialty" => Pick(SPECIALTIES),
            "accommodation_revenue_codes" => AccomRev,
            "ancillary_revenue_codes" => Pick(&["0250;0300", "0450", "0320;0730;0250", ""]),
            "accommodation_days" | "ancillary_revenue_code_count" | "detail_record_count" => {
                Int(1, 9)
            }
            "apr_mdc" | "cms_mdc" => Pick(&["05", "06", "08", "19", "20"]),
            "length_of_stay" => Los,
            "birth_weight" => Pick(&["", "", "", "3250", "2480"]),
            "race" => Pick(&["R1", "R2", "R3", "R5", "R9"]),
            "ethnicity" => Pick(&["E1", "E2", "E9"]),
            "medical_record_number" => Mrn,
            "geo_code" | "town_county_code" => Pick(&["23005", "23019", "23001", "23003"]),
            "attending_physician_code" => PractCode(0),
            "surgeon_code" => PractCode(1),
            "ordering_taxonomy" | "performing_taxonomy" => Taxonomy,
            "parent_name" => Pick(&[
                "Northern Light Health",
                "MaineHealth",
                "Central Maine Healthcare",
            ]),
            "hospital_name" => Pick(&[
                "Maine Medical Center",
                "Eastern Maine Medical Center",
                "St. Mary's Regional",
            ]),
            "department_name" => Pick(&[
                "Cardiology",
                "Obstetrics & Gynecology",
                "Behavioral Health",
                "Orthopedics",
            ]),
            "tax_id" => Pick(&["01-0211501", "01-0238552"]),
            "tax_status" => Pick(&["Non-profit", "For-profit"]),
            "physical_location" => Pick(&[
                "22 Bramhall St, Portland, ME 04102",
                "489 State St, Bangor, ME 04401",
            ]),
            "services_description" => Pick(&[
                "Primary care, walk-in clinic",
                "Outpatient surgery; imaging",
                "Behavioral health, \"intensive\" outpatient",
            ]),
            "relationship" => Pick(&["Subsidiary", "Affiliate", "Department"]),
            "physician_last_name" => PractLast(0),
            "physician_first_name" => PractFirst(0),
            "physician_middle_initial" => PractMiddle(0),
            "physician_credential" => Pick(&["M.D.", "D.O."]),
            "employment_status" => Pick(&[
                "Employed 2019-03-01",
                "Contracted 2021-07-15",
                "Separated 2023-01-31",
            ]),
            "physician_specialty" => Pick(&[
                "Cardiology",
                "Family Medicine",
                "Psychiatry",
                "Anesthesiology",
            ]),
            "filing_contact_email" => Pick(&["filings@example.org", "compliance@example.org"]),
            "reporting_period" => Pick(&["2023Q1", "2023Q2", "2023Q3", "2023Q4"]),
            _ => {
                if let Some(i) = n("other_diagnosis_") {
                    Diag(i)
                } else if let Some(i) = n("diagnosis_") {
                    if name.ends_with("_poa") {
                        Pick(&["Y", "N", "U", ""])
                    } else {
                        Diag(i.saturating_sub(1))
                    }
                } else if let Some(i) = n("procedure_").or_else(|| n("icd_procedure_")) {
                    // Procedure n (inpatient 2-6 after the principal, outpatient 1-6) is slot n-1.
                    let slot = i.saturating_sub(1);
                    if name.ends_with("_date") {
                        ProcDate(slot)
                    } else {
                        IcdProc(slot)
                    }
                } else if name == "principal_procedure_date" {
                    ProcDate(0)
                } else if ft == FileType::Quality {
                    Rate
                } else {
                    return None;
                }
            }
        })
    }
}

/// Per-row state: dates, codes and practitioners drawn once per row, so that every column of
/// the row tells the same story.
pub struct Ctx {
    file_type: FileType,
    row: u64,
    scenario: Scenario,
    service_from: Date,
    service_thru: Date,
    paid: Date,
    approved: Date,
    reference: Date,
    cov_year: i32,
    cov_month: u8,
    diags: [&'static str; 13],
    cpt: &'static str,
    icd_procs: [&'static str; 6],
    pos: &'static str,
    rev: &'static str,
    tob: &'static str,
    practitioners: [usize; 3],
    note: u8,
}

fn write_num(mut n: u64, buf: &mut [u8]) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    buf[..len].copy_from_slice(&tmp[i..]);
    len
}

fn write_padded(n: u64, width: usize, buf: &mut [u8]) -> usize {
    let mut v = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    width
}

fn write_date(d: Date, buf: &mut [u8]) -> usize {
    write_padded(u64::from(d.year().unsigned_abs()), 4, buf);
    buf[4] = b'-';
    write_padded(u64::from(u8::from(d.month())), 2, &mut buf[5..]);
    buf[7] = b'-';
    write_padded(u64::from(d.day()), 2, &mut buf[8..]);
    10
}

fn put(s: &str, buf: &mut [u8]) -> usize {
    let b = s.as_bytes();
    let n = b.len().min(buf.len());
    buf[..n].copy_from_slice(&b[..n]);
    n
}

fn age_at(dob: Date, at: Date) -> u64 {
    let mut age = at.year() - dob.year();
    if (u8::from(at.month()), at.day()) < (u8::from(dob.month()), dob.day()) {
        age -= 1;
    }
    u64::try_from(age.max(0)).unwrap_or(0)
}

const NOTES: &[&str] = &[
    "Follow-up in 2 weeks, patient agrees",
    "Called member re: \"prior auth\", left message",
    "Line 1 of note\nLine 2, with comma",
    "Résumé of visit: stable; no change",
    "Referred to specialist, \"urgent\"\r\nsee attached",
];

impl Ctx {
    /// Fresh state for a file.
    pub fn new(file_type: FileType) -> Ctx {
        Ctx {
            file_type,
            row: 0,
            scenario: Scenario::Routine,
            service_from: Date::MIN,
            service_thru: Date::MIN,
            paid: Date::MIN,
            approved: Date::MIN,
            reference: Date::MIN,
            cov_year: 2023,
            cov_month: 1,
            diags: [""; 13],
            cpt: "",
            icd_procs: [""; 6],
            pos: "",
            rev: "",
            tob: "",
            practitioners: [0; 3],
            note: 0,
        }
    }

    /// Draws the row's story.
    pub fn next_row(
        &mut self,
        row: u64,
        member: &Member,
        start: Date,
        rng: &mut ChaCha8Rng,
        pools: &Pools,
    ) {
        self.row = row;
        let inpatient = self.file_type == FileType::HospInpatient;
        self.service_from = start + Duration::days(rng.gen_range(0..1095));
        let stay = if inpatient {
            rng.gen_range(1..12)
        } else {
            rng.gen_range(0..3)
        };
        self.service_thru = self.service_from + Duration::days(stay);
        self.paid = self.service_thru + Duration::days(rng.gen_range(10..60));
        self.approved = self.paid - Duration::days(rng.gen_range(1..8));
        // Eligibility: three consecutive months per member, in member order.
        self.cov_year = 2022 + (member.index % 3) as i32;
        self.cov_month = 1 + ((member.index % 10) + row % 3) as u8;
        self.reference = if matches!(
            self.file_type,
            FileType::MedElig | FileType::PharmElig | FileType::DentalElig
        ) {
            let month = time::Month::try_from(self.cov_month).unwrap_or(time::Month::January);
            Date::from_calendar_date(self.cov_year, month, month.length(self.cov_year))
                .unwrap_or(Date::MIN)
        } else {
            self.service_from
        };
        let roll: f64 = rng.gen();
        let clinical = matches!(
            self.file_type,
            FileType::MedClaim | FileType::HospInpatient | FileType::HospOutpatient
        );
        self.scenario = match roll {
            _ if !clinical => Scenario::Routine,
            r if r < 0.015 => Scenario::Hiv,
            r if r < 0.040 => Scenario::SubstanceUse,
            r if r < 0.055 => Scenario::Psychiatric,
            r if r < 0.065 => Scenario::Abortion,
            _ => Scenario::Routine,
        };
        let pick = |rng: &mut ChaCha8Rng, list: &[&'static str]| list[rng.gen_range(0..list.len())];
        self.diags = [""; 13];
        self.icd_procs = [""; 6];
        let extra = rng.gen_range(0..5);
        for slot in self.diags.iter_mut().skip(1).take(extra) {
            *slot = pick(rng, COMMON_DX);
        }
        self.cpt = pick(rng, COMMON_CPT);
        self.pos = pick(rng, &["11", "22", "23", "11", "21"]);
        self.rev = pick(rng, &["0450", "0300", "0510", "0250", ""]);
        self.tob = if inpatient {
            "0111"
        } else {
            pick(rng, &["0131", "0851", ""])
        };
        if inpatient || rng.gen_bool(0.3) {
            self.icd_procs[0] = pick(rng, COMMON_ICD_PROC);
        }
        match self.scenario {
            Scenario::Routine => self.diags[0] = pick(rng, COMMON_DX),
            Scenario::Hiv => {
                self.diags[0] = pick(rng, &["B20", "Z21"]);
                self.cpt = pick(rng, &["87389", "99214", "86703"]);
            }
            Scenario::SubstanceUse => {
                self.diags[0] = pick(rng, &["F10.20", "F11.20", "F14.20", "F11.23"]);
                self.cpt = pick(rng, &["H0020", "H0005", "99213"]);
                self.pos = pick(rng, &["57", "55", "11"]);
            }
            Scenario::Psychiatric => {
                self.diags[0] = pick(rng, &["F20.9", "F32.2", "F31.2"]);
                self.pos = "51";
                self.rev = "0114";
                self.tob = "0111";
            }
            Scenario::Abortion => {
                self.diags[0] = "Z33.2";
                self.cpt = pick(rng, &["59840", "59841", "59851"]);
                self.icd_procs[0] = "10A07ZZ";
            }
        }
        let n = pools.practitioners.len();
        self.practitioners = [
            rng.gen_range(0..n),
            rng.gen_range(0..n),
            rng.gen_range(0..n),
        ];
        self.note = rng.gen_range(0..20);
    }

    /// Renders one field into `buf`, returning its length.
    pub fn render(
        &self,
        field: Field,
        m: &Member,
        pools: &Pools,
        rng: &mut ChaCha8Rng,
        buf: &mut [u8],
    ) -> usize {
        let pr = |role: u8| &pools.practitioners[self.practitioners[usize::from(role.min(2))]];
        match field {
            Field::Pick(list) => put(list[rng.gen_range(0..list.len())], buf),
            Field::Int(lo, hi) => write_num(u64::from(rng.gen_range(lo..=hi)), buf),
            Field::Money(lo, hi) => {
                let cents = rng.gen_range(u64::from(lo) * 100..=u64::from(hi) * 100);
                let n = write_num(cents / 100, buf);
                buf[n] = b'.';
                n + 1 + write_padded(cents % 100, 2, &mut buf[n + 1..])
            }
            Field::Rate => {
                if rng.gen_bool(0.05) {
                    return 0;
                }
                buf[0] = b'0';
                buf[1] = b'.';
                2 + write_padded(rng.gen_range(0..1000), 3, &mut buf[2..])
            }
            Field::MemberId => put(&m.member_id, buf),
            Field::Ssn => put(&m.ssn, buf),
            Field::SubscriberSsn => put(&m.subscriber_ssn, buf),
            Field::Contract => put(&m.contract, buf),
            Field::FirstName => put(m.first, buf),
            Field::LastName => put(m.last, buf),
            Field::Dob => {
                // A few birth dates are missing, as in real submissions.
                if self.row % 97 == 13 {
                    0
                } else {
                    write_date(m.dob, buf)
                }
            }
            Field::Gender => put(m.gender, buf),
            Field::City => put(PLACES[m.place].0, buf),
            Field::State => put(PLACES[m.place].1, buf),
            Field::Zip => put(PLACES[m.place].2, buf),
            Field::Street => {
                let mut n = write_num(u64::from(m.street_no), buf);
                buf[n] = b' ';
                n += 1;
                n += put(m.street, &mut buf[n..]);
                if let Some(apt) = m.apartment {
                    n += put(", Apt ", &mut buf[n..]);
                    n += write_num(u64::from(apt), &mut buf[n..]);
                }
                n
            }
            Field::GroupId => {
                buf[0] = b'G';
                1 + write_padded(u64::from(m.group), 5, &mut buf[1..])
            }
            Field::Age => write_num(age_at(m.dob, self.reference), buf),
            Field::RecordId => {
                buf[0] = b'R';
                1 + write_padded(self.row, 10, &mut buf[1..])
            }
            Field::ClaimId => {
                buf[0] = b'K';
                // Several lines share a claim.
                1 + write_padded(self.row / 3, 10, &mut buf[1..])
            }
            Field::Mrn => {
                let n = put("MRN", buf);
                n + write_padded(m.index * 7 + 1_000_000, 8, &mut buf[n..])
            }
            Field::ServiceFrom | Field::Admission => write_date(self.service_from, buf),
            Field::ServiceThru | Field::Discharge => write_date(self.service_thru, buf),
            Field::Paid => write_date(self.paid, buf),
            Field::Approved => write_date(self.approved, buf),
            Field::ProcDate(i) => match self.icd_procs.get(usize::from(i)) {
                Some(p) if !p.is_empty() => write_date(self.service_from, buf),
                _ => 0,
            },
            Field::CovYear => write_num(u64::from(self.cov_year.unsigned_abs()), buf),
            Field::CovMonth => write_padded(u64::from(self.cov_month), 2, buf),
            Field::CovPeriod => {
                let n = write_num(u64::from(self.cov_year.unsigned_abs()), buf);
                n + write_padded(u64::from(self.cov_month), 2, &mut buf[n..])
            }
            Field::Diag(i) => put(self.diags.get(usize::from(i)).copied().unwrap_or(""), buf),
            Field::Admitting => put(
                if self.file_type == FileType::MedClaim && self.tob.is_empty() {
                    ""
                } else {
                    self.diags[0]
                },
                buf,
            ),
            Field::Cpt => put(self.cpt, buf),
            Field::IcdProc(i) => put(
                self.icd_procs.get(usize::from(i)).copied().unwrap_or(""),
                buf,
            ),
            Field::Pos => put(self.pos, buf),
            Field::Rev => put(self.rev, buf),
            Field::AccomRev => put(
                if self.rev == "0114" {
                    "0124;0114"
                } else {
                    "0110;0120"
                },
                buf,
            ),
            Field::Tob => put(self.tob, buf),
            Field::Ndc => {
                let n = write_padded(rng.gen_range(0..100_000u64), 5, buf);
                n + write_padded(rng.gen_range(0..1_000_000u64), 6, &mut buf[n..])
            }
            Field::DrugName => put(
                [
                    "Atorvastatin 20 MG",
                    "Lisinopril 10mg",
                    "Metformin HCl, ER",
                    "Amoxicillin 500 MG",
                ][rng.gen_range(0..4)],
                buf,
            ),
            Field::Taxonomy => put(
                if self.scenario == Scenario::Psychiatric {
                    "283Q00000X"
                } else {
                    pr(2).taxonomy
                },
                buf,
            ),
            Field::PractFirst(r) => put(pr(r).first, buf),
            Field::PractMiddle(r) => put(pr(r).middle, buf),
            Field::PractLast(r) => put(pr(r).last, buf),
            Field::PractNpi(r) => put(&pr(r).npi, buf),
            Field::PractCode(r) => put(&pr(r).code, buf),
            Field::Los => write_num(
                (self.service_thru - self.service_from)
                    .whole_days()
                    .unsigned_abs(),
                buf,
            ),
            Field::Note => match usize::from(self.note) {
                i if i < NOTES.len() => put(NOTES[i], buf),
                _ => 0,
            },
        }
    }
}
