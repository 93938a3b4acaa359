//! The approval letter: a short PDF from the executive director stating what was approved,
//! under which DUA and for how long (seed 000 step 6: the extract ships "with the final approval
//! letter signed by the Executive Director"). It goes into the extract package; the caller signs
//! its bytes with the server's Ed25519 key.
//!
//! The text is typeset by [`crate::pdf`] (an embedded font, so every name prints as written);
//! the output is byte-for-byte deterministic, so the same inputs give the same signed bytes.

use time::Date;

use crate::domain::dua::DuaNumber;
use crate::domain::level::Level;
use crate::domain::release::ReleaseId;
use crate::pdf::{self, Block, TextDocument};
use crate::policy::{ElementId, FileType};

/// What the letter states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterData {
    /// The release approved.
    pub release_id: ReleaseId,
    /// The recipient organization's name.
    pub organization: String,
    /// The release level.
    pub level: Level,
    /// The datasets released.
    pub datasets: Vec<FileType>,
    /// The approved elements (after any narrowing at review), in the order to print.
    pub elements: Vec<LetterElement>,
    /// The DUA the data is released under.
    pub dua_number: DuaNumber,
    /// First day of the DUA term.
    pub dua_effective: Date,
    /// Last day of the DUA term.
    pub dua_expiry: Date,
    /// The day the executive director approved the release.
    pub approved_on: Date,
    /// The approving executive director's name.
    pub director_name: String,
}

/// One approved element as printed: its id and its name in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterElement {
    /// The catalog id.
    pub id: ElementId,
    /// The name as printed in seed 001.
    pub name: String,
}

/// Renders the letter as a complete PDF file.
pub fn render_approval_letter(data: &LetterData) -> Vec<u8> {
    pdf::render(&compose(data))
}

fn level_description(level: Level) -> &'static str {
    match level {
        Level::I => "Level I (de-identified data)",
        Level::II => "Level II (limited data set)",
        Level::III => "Level III (data including direct identifiers)",
    }
}

/// The letter's text.
fn compose(data: &LetterData) -> TextDocument {
    let mut blocks = vec![
        Block::Title("Approval of data release".into()),
        Block::Gap,
        Block::Para(format!("Date of approval: {}", data.approved_on)),
        Block::Para(format!("To: {}", data.organization)),
        Block::Para(format!("Release: {}", data.release_id)),
        Block::Para(format!("Level: {}", level_description(data.level))),
        Block::Para(format!(
            "Data Use Agreement: {}, in force from {} through {}",
            data.dua_number, data.dua_effective, data.dua_expiry
        )),
        Block::Gap,
        Block::Para(format!(
            "I approve the release of the data described below to {}. The data are released only \
             under Data Use Agreement {}: they may be used only for the purposes approved in the \
             application, only the elements listed below are released, and the data must be \
             returned or destroyed when the agreement ends or when the Executive Director directs.",
            data.organization, data.dua_number
        )),
        Block::Gap,
        Block::Para("Datasets:".into()),
    ];
    blocks.extend(
        data.datasets
            .iter()
            .map(|d| Block::Item(d.as_str().to_owned())),
    );
    blocks.push(Block::Gap);
    blocks.push(Block::Para(format!(
        "Approved data elements ({}):",
        data.elements.len()
    )));
    blocks.extend(
        data.elements
            .iter()
            .map(|e| Block::Item(format!("{}: {}", e.id, e.name))),
    );
    blocks.extend([
        Block::Gap,
        Block::Gap,
        Block::Para(data.director_name.clone()),
        Block::Para("Executive Director".into()),
        Block::Para(format!("Approved on {}", data.approved_on)),
    ]);
    TextDocument {
        blocks,
        footer: format!("Release {} – {}", data.release_id, data.dua_number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn element(id: &str, name: &str) -> LetterElement {
        LetterElement {
            id: ElementId::parse(id).expect("id"),
            name: name.into(),
        }
    }

    fn data() -> LetterData {
        LetterData {
            release_id: ReleaseId(uuid::Uuid::from_u128(0x1234)),
            organization: "Đại học Y Hà Nội, Uniwersytet Łódzki i Πανεπιστήμιο Αθηνών".into(),
            level: Level::II,
            datasets: vec![FileType::MedClaim, FileType::MedElig],
            elements: vec![
                element("med_claim.payer_id", "Payer ID Number/Name"),
                element("med_claim.service_date_from", "Date of Service – From"),
                element("med_elig.member_zip", "Member ZIP Code"),
            ],
            dua_number: DuaNumber::parse("DUA-2025-0042").expect("number"),
            dua_effective: date!(2025 - 04 - 01),
            dua_expiry: date!(2027 - 03 - 31),
            approved_on: date!(2025 - 03 - 14),
            director_name: "Zoë O’Brien \\ Acting (Interim)".into(),
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(
            render_approval_letter(&data()),
            render_approval_letter(&data())
        );
    }

    #[test]
    fn pdftotext_reads_the_letter_with_every_name_as_written() {
        let mut d = data();
        d.elements.extend((0..120).map(|i| {
            element(
                &format!("pharm_claim.extra_{i}"),
                "Extra element for a second page",
            )
        }));
        let Some(text) = crate::pdf::tests_support::pdftotext(&render_approval_letter(&d)) else {
            return;
        };
        for want in [
            "DUA-2025-0042",
            "in force from 2025-04-01 through 2027-03-31",
            "Release: 00000000-0000-0000-0000-000000001234",
            "Level II (limited data set)",
            "med_claim.service_date_from: Date of Service – From",
            "med_elig.member_zip",
            "pharm_claim.extra_119",
            "Zoë O’Brien \\ Acting (Interim)",
            "To: Đại học Y Hà Nội, Uniwersytet Łódzki i Πανεπιστήμιο Αθηνών",
            "Date of approval: 2025-03-14",
            "page 1 of",
            "page 2 of",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
