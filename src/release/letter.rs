//! The approval letter: a short PDF from the executive director stating what was approved,
//! under which DUA and for how long (seed 000 step 6: the extract ships "with the final approval
//! letter signed by the Executive Director"). It goes into the extract package; the caller signs
//! its bytes with the server's Ed25519 key.
//!
//! The PDF is written by hand (PDF 1.4, the standard Helvetica font, text only) rather than with
//! a PDF library: the letter is a few pages of text, and the output must be byte-for-byte
//! deterministic so the same inputs give the same signed bytes.

use std::fmt::Write as _;

use time::Date;

use crate::domain::dua::DuaNumber;
use crate::domain::level::Level;
use crate::domain::release::ReleaseId;
use crate::policy::{ElementId, FileType};

/// Page width in points (US Letter).
const PAGE_WIDTH: i32 = 612;
/// Page height in points (US Letter).
const PAGE_HEIGHT: i32 = 792;
/// Left, right and top margin in points.
const MARGIN: i32 = 72;
/// Lowest baseline a body line may use; below it is the footer.
const BODY_BOTTOM: i32 = 72;
/// Baseline of the footer.
const FOOTER_Y: i32 = 40;
/// Body font size in points.
const BODY_SIZE: i32 = 11;
/// Title font size in points.
const TITLE_SIZE: i32 = 16;
/// Footer font size in points.
const FOOTER_SIZE: i32 = 9;

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

/// One line of the letter, before layout.
enum Line {
    /// Text at a font size.
    Text(i32, Vec<u8>),
    /// Vertical space of one body line.
    Gap,
}

/// Renders the letter as a complete PDF file.
pub fn render_approval_letter(data: &LetterData) -> Vec<u8> {
    let pages = paginate(&compose(data));
    write_pdf(data, &pages)
}

fn level_description(level: Level) -> &'static str {
    match level {
        Level::I => "Level I (de-identified data)",
        Level::II => "Level II (limited data set)",
        Level::III => "Level III (data including direct identifiers)",
    }
}

/// The letter's text, wrapped to the page width.
fn compose(data: &LetterData) -> Vec<Line> {
    fn para(lines: &mut Vec<Line>, size: i32, first: &str, rest: &str, text: &str) {
        for line in wrap(&encode(text), size, first, rest) {
            lines.push(Line::Text(size, line));
        }
    }
    let mut lines = Vec::new();
    para(&mut lines, TITLE_SIZE, "", "", "Approval of data release");
    lines.push(Line::Gap);
    let body = BODY_SIZE;
    para(
        &mut lines,
        body,
        "",
        "",
        &format!("Date of approval: {}", data.approved_on),
    );
    para(
        &mut lines,
        body,
        "",
        "    ",
        &format!("To: {}", data.organization),
    );
    para(
        &mut lines,
        body,
        "",
        "",
        &format!("Release: {}", data.release_id),
    );
    para(
        &mut lines,
        body,
        "",
        "",
        &format!("Level: {}", level_description(data.level)),
    );
    para(
        &mut lines,
        body,
        "",
        "",
        &format!(
            "Data Use Agreement: {}, in force from {} through {}",
            data.dua_number, data.dua_effective, data.dua_expiry
        ),
    );
    lines.push(Line::Gap);
    para(
        &mut lines,
        body,
        "",
        "",
        &format!(
            "I approve the release of the data described below to {}. The data are released only \
             under Data Use Agreement {}: they may be used only for the purposes approved in the \
             application, only the elements listed below are released, and the data must be \
             returned or destroyed when the agreement ends or when the Executive Director directs.",
            data.organization, data.dua_number
        ),
    );
    lines.push(Line::Gap);
    para(&mut lines, body, "", "", "Datasets:");
    for dataset in &data.datasets {
        para(&mut lines, body, "  - ", "    ", dataset.as_str());
    }
    lines.push(Line::Gap);
    para(
        &mut lines,
        body,
        "",
        "",
        &format!("Approved data elements ({}):", data.elements.len()),
    );
    for element in &data.elements {
        para(
            &mut lines,
            body,
            "  - ",
            "    ",
            &format!("{}: {}", element.id, element.name),
        );
    }
    lines.push(Line::Gap);
    lines.push(Line::Gap);
    para(&mut lines, body, "", "", &data.director_name);
    para(&mut lines, body, "", "", "Executive Director");
    para(
        &mut lines,
        body,
        "",
        "",
        &format!("Approved on {}", data.approved_on),
    );
    lines
}

/// Maps text to bytes the WinAnsiEncoding Helvetica font can show: printable ASCII and the
/// Latin-1 letters and signs (which WinAnsi encodes at their Unicode code points, so names such
/// as "Zoë" print correctly); typographic punctuation folds to ASCII; anything else becomes `?`
/// and control characters become spaces, so no input can break the PDF syntax or layout.
fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        // The `as` casts below are lossless: each arm only matches code points below 256.
        match c {
            ' '..='~' => out.push(c as u8),
            '\u{A0}' => out.push(b' '),
            // Soft hyphen is invisible in most viewers; a hyphen is what was meant.
            '\u{AD}' => out.push(b'-'),
            '\u{A1}'..='\u{FF}' => out.push(c as u32 as u8),
            '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{2032}' => out.push(b'\''),
            '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{2033}' => out.push(b'"'),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push(b'-'),
            '\u{2026}' => out.extend_from_slice(b"..."),
            c if c.is_control() || c.is_whitespace() => out.push(b' '),
            _ => out.push(b'?'),
        }
    }
    out
}

/// Width of one encoded byte in Helvetica, in thousandths of the font size (the standard AFM
/// metrics). Latin-1 bytes use a conservative upper bound: wrapping early is harmless,
/// overflowing the margin is not.
fn glyph_width(b: u8) -> u32 {
    const ASCII: [u16; 95] = [
        278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
        278, // ' '-'/'
        556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584,
        556, // '0'-'?'
        1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
        778, // '@'-'O'
        667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
        556, // 'P'-'_'
        333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556,
        556, // '`'-'o'
        556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'-'~'
    ];
    match b {
        0x20..=0x7E => u32::from(ASCII[usize::from(b - 0x20)]),
        _ => 1000,
    }
}

/// Width of `text` at `size`, in thousandths of a point.
fn text_width(text: &[u8], size: i32) -> u64 {
    let units: u64 = text.iter().map(|b| u64::from(glyph_width(*b))).sum();
    units * u64::from(size.unsigned_abs())
}

/// Greedy word wrap to the text width; `first` prefixes the first line and `rest` the others
/// (a list item's hanging indent). A word too long for a line is cut between characters.
fn wrap(text: &[u8], size: i32, first: &str, rest: &str) -> Vec<Vec<u8>> {
    let limit = u64::from((PAGE_WIDTH - 2 * MARGIN).unsigned_abs()) * 1000;
    let fits = |line: &[u8]| text_width(line, size) <= limit;
    let mut lines = Vec::new();
    let mut line: Vec<u8> = first.as_bytes().to_vec();
    let mut has_word = false;
    for word in text.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
        let mut candidate = line.clone();
        if has_word {
            candidate.push(b' ');
        }
        candidate.extend_from_slice(word);
        if fits(&candidate) {
            line = candidate;
            has_word = true;
            continue;
        }
        if has_word {
            lines.push(std::mem::replace(&mut line, rest.as_bytes().to_vec()));
        }
        // Place the word on the fresh line, cutting it when it alone is wider than the line.
        for b in word {
            line.push(*b);
            if !fits(&line) {
                line.pop();
                lines.push(std::mem::replace(&mut line, rest.as_bytes().to_vec()));
                line.push(*b);
            }
        }
        has_word = true;
    }
    lines.push(line);
    lines
}

/// One placed line: baseline and font size.
struct Placed {
    y: i32,
    size: i32,
    text: Vec<u8>,
}

/// Lays the lines out on pages, top to bottom.
fn paginate(lines: &[Line]) -> Vec<Vec<Placed>> {
    let top = PAGE_HEIGHT - MARGIN;
    let mut pages = vec![Vec::new()];
    let mut y = top;
    for line in lines {
        let (size, text) = match line {
            Line::Gap => (BODY_SIZE, None),
            Line::Text(size, text) => (*size, Some(text)),
        };
        // Leading of 1.3 times the size, rounded up, so lines never touch.
        let leading = (size * 13 + 9) / 10;
        if y - leading < BODY_BOTTOM {
            pages.push(Vec::new());
            y = top;
            if text.is_none() {
                continue; // no blank space at the top of a page
            }
        }
        if let (Some(text), Some(page)) = (text, pages.last_mut()) {
            page.push(Placed {
                y,
                size,
                text: text.clone(),
            });
        }
        y -= leading;
    }
    pages
}

/// Escapes a byte string for a PDF literal string `( ... )`.
fn pdf_string(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(b'(');
    for b in text {
        if matches!(b, b'(' | b')' | b'\\') {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out.push(b')');
    out
}

/// The content stream of one page.
fn page_content(page: &[Placed], footer: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"BT\n");
    let show = |out: &mut Vec<u8>, size: i32, x: i32, y: i32, text: &[u8]| {
        out.extend_from_slice(format!("/F1 {size} Tf\n1 0 0 1 {x} {y} Tm\n").as_bytes());
        out.extend_from_slice(&pdf_string(text));
        out.extend_from_slice(b" Tj\n");
    };
    for line in page {
        show(&mut out, line.size, MARGIN, line.y, &line.text);
    }
    show(&mut out, FOOTER_SIZE, MARGIN, FOOTER_Y, footer);
    out.extend_from_slice(b"ET\n");
    out
}

/// Serializes the pages as a PDF 1.4 file with a correct cross-reference table.
fn write_pdf(data: &LetterData, pages: &[Vec<Placed>]) -> Vec<u8> {
    // Object numbers: 1 catalog, 2 page tree, 3 font, 4 document info, then per page its page
    // object and its content stream.
    let page_obj = |i: usize| 5 + 2 * i;
    let count = 4 + 2 * pages.len();
    let mut out: Vec<u8> = Vec::new();
    // The second line's high bytes tell transfer tools the file is binary (PDF 1.4, 7.5.2).
    out.extend_from_slice(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
    let mut offsets = vec![0usize; count + 1];
    let mut object = |out: &mut Vec<u8>, num: usize, body: &[u8]| {
        offsets[num] = out.len();
        out.extend_from_slice(format!("{num} 0 obj\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    };

    object(&mut out, 1, b"<< /Type /Catalog /Pages 2 0 R >>");
    let mut kids = String::new();
    for i in 0..pages.len() {
        let _ = write!(kids, "{} 0 R ", page_obj(i));
    }
    object(
        &mut out,
        2,
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.trim_end(),
            pages.len()
        )
        .as_bytes(),
    );
    object(
        &mut out,
        3,
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    );
    let mut info = b"<< /Title ".to_vec();
    info.extend_from_slice(&pdf_string(&encode(&format!(
        "Approval of data release {} under {}",
        data.release_id, data.dua_number
    ))));
    info.extend_from_slice(b" /Producer (Steward) >>");
    object(&mut out, 4, &info);

    for (i, page) in pages.iter().enumerate() {
        let footer = encode(&format!(
            "Release {} - {} - page {} of {}",
            data.release_id,
            data.dua_number,
            i + 1,
            pages.len()
        ));
        let content = page_content(page, &footer);
        object(
            &mut out,
            page_obj(i),
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                page_obj(i) + 1
            )
            .as_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(&content);
        stream.extend_from_slice(b"\nendstream");
        object(&mut out, page_obj(i) + 1, &stream);
    }

    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n", count + 1).as_bytes());
    // Each entry is exactly 20 bytes, ending in space + newline (PDF 1.4, 3.4.3).
    out.extend_from_slice(b"0000000000 65535 f \n");
    for offset in &offsets[1..] {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            count + 1
        )
        .as_bytes(),
    );
    out
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
            organization: "Northern University (Health Policy Lab)".into(),
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

    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    fn ascii_number(bytes: &[u8]) -> usize {
        std::str::from_utf8(bytes)
            .expect("ascii")
            .trim()
            .parse()
            .expect("number")
    }

    /// Checks the file structure: header, xref entries pointing at `N 0 obj`, stream lengths,
    /// trailer size and `startxref`.
    fn check_structure(pdf: &[u8]) -> usize {
        assert!(pdf.starts_with(b"%PDF-1.4\n"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let sx = find(pdf, b"startxref\n", 0).expect("startxref");
        let xref = ascii_number(&pdf[sx + 10..pdf.len() - 6]);
        assert!(
            pdf[xref..].starts_with(b"xref\n0 "),
            "startxref points at xref"
        );
        let header_end = find(pdf, b"\n", xref + 5).expect("subsection header");
        let size = ascii_number(&pdf[xref + 7..header_end]);
        let entries = header_end + 1;
        assert_eq!(&pdf[entries..entries + 20], b"0000000000 65535 f \n");
        for n in 1..size {
            let entry = &pdf[entries + 20 * n..entries + 20 * (n + 1)];
            assert_eq!(&entry[10..], b" 00000 n \n", "entry {n} is 20 bytes");
            let offset = ascii_number(&entry[..10]);
            let want = format!("{n} 0 obj\n");
            assert!(
                pdf[offset..].starts_with(want.as_bytes()),
                "xref entry {n} points at {:?}",
                String::from_utf8_lossy(&pdf[offset..offset + 12])
            );
        }
        assert!(pdf[entries + 20 * size..].starts_with(b"trailer\n"));
        let trailer = find(pdf, b"/Size ", entries).expect("size");
        let size_end = find(pdf, b" ", trailer + 6).expect("end");
        assert_eq!(ascii_number(&pdf[trailer + 6..size_end]), size);
        // Every stream's /Length is its exact byte count.
        let mut at = 0;
        let mut streams = 0;
        while let Some(len_at) = find(pdf, b"/Length ", at) {
            let len_end = find(pdf, b" ", len_at + 8).expect("length end");
            let len = ascii_number(&pdf[len_at + 8..len_end]);
            let start = find(pdf, b"stream\n", len_end).expect("stream") + 7;
            assert!(
                pdf[start + len..].starts_with(b"\nendstream"),
                "stream length"
            );
            at = start + len;
            streams += 1;
        }
        streams
    }

    #[test]
    fn structure_is_valid() {
        let pdf = render_approval_letter(&data());
        assert_eq!(check_structure(&pdf), 1, "one page, one content stream");
        assert_eq!(pdf, render_approval_letter(&data()), "deterministic");
    }

    #[test]
    fn long_letters_span_pages_and_stay_valid() {
        let mut d = data();
        d.elements = (0..150)
            .map(|i| {
                element(
                    &format!("med_claim.element_{i}"),
                    &"A long element name that will need wrapping ".repeat(3),
                )
            })
            .collect();
        d.organization = "X".repeat(400);
        let pdf = render_approval_letter(&d);
        let pages = check_structure(&pdf);
        assert!(pages > 3, "{pages} pages");
        assert!(find(&pdf, format!("/Count {pages}").as_bytes(), 0).is_some());
    }

    #[test]
    fn text_is_escaped_and_encoded() {
        assert_eq!(pdf_string(b"a(b)c\\d"), b"(a\\(b\\)c\\\\d)".to_vec());
        assert_eq!(encode("O’Brien – “x”…"), b"O'Brien - \"x\"...".to_vec());
        assert_eq!(encode("Zoë"), b"Zo\xEB".to_vec());
        assert_eq!(encode("a\tb\nc\u{0}d"), b"a b c d".to_vec());
        assert_eq!(encode("中文 🙂"), b"?? ?".to_vec());
        // Nothing unescaped can close a string early: the director's name with parentheses and
        // a backslash still yields a valid file.
        let pdf = render_approval_letter(&data());
        assert!(find(&pdf, b"Acting \\(Interim\\)", 0).is_some());
        assert!(find(&pdf, b"O'Brien \\\\ Acting", 0).is_some());
    }

    #[test]
    fn wrapping_respects_the_margin() {
        let limit = u64::from((PAGE_WIDTH - 2 * MARGIN).unsigned_abs()) * 1000;
        let text = encode(&format!("{} {}", "word ".repeat(200), "W".repeat(300)));
        let lines = wrap(&text, BODY_SIZE, "  - ", "    ");
        assert!(lines.len() > 5);
        for line in &lines {
            assert!(text_width(line, BODY_SIZE) <= limit);
        }
        assert!(lines[0].starts_with(b"  - word"));
        assert!(lines[1].starts_with(b"    "));
        let rejoined: usize = lines
            .iter()
            .map(|l| l.iter().filter(|b| **b == b'W').count())
            .sum();
        assert_eq!(rejoined, 300, "a long word is cut, not lost");
        assert_eq!(wrap(b"", BODY_SIZE, "", ""), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn pdftotext_reads_the_letter() {
        let Ok(status) = std::process::Command::new("pdftotext").arg("-v").output() else {
            println!("pdftotext is not installed; skipping (apt-get install -y poppler-utils)");
            return;
        };
        assert!(status.status.success() || !status.stderr.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = data();
        d.elements.extend((0..120).map(|i| {
            element(
                &format!("pharm_claim.extra_{i}"),
                "Extra element for a second page",
            )
        }));
        let path = dir.path().join("letter.pdf");
        std::fs::write(&path, render_approval_letter(&d)).expect("write");
        let out = std::process::Command::new("pdftotext")
            .arg("-enc")
            .arg("UTF-8")
            .arg(&path)
            .arg("-")
            .output()
            .expect("run pdftotext");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("utf-8");
        for want in [
            "DUA-2025-0042",
            "in force from 2025-04-01 through 2027-03-31",
            "Release: 00000000-0000-0000-0000-000000001234",
            "Level II (limited data set)",
            "med_claim.service_date_from: Date of Service - From",
            "med_elig.member_zip",
            "pharm_claim.extra_119",
            "Zoë O'Brien \\ Acting (Interim)",
            "Date of approval: 2025-03-14",
            "page 1 of",
            "page 2 of",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }
}
