//! Text-only PDF documents (the approval letter, the destruction certificate), typeset with
//! the `krilla` library in DejaVu Sans, which is embedded (subset) in every file: the names
//! people have (`Đại học Y Hà Nội`, `Zażółć`, `Αθήνα`) print as written, and `pdftotext` reads
//! them back. Output is deterministic: the same document gives the same bytes, so what the
//! server signs can be rendered again and compared.

use std::sync::{Arc, LazyLock};

use krilla::geom::Point;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use krilla::Document;

/// Page width in points (US Letter).
const PAGE_WIDTH: f32 = 612.0;
/// Page height in points (US Letter).
const PAGE_HEIGHT: f32 = 792.0;
/// Left, right and top margin in points.
const MARGIN: f32 = 72.0;
/// Lowest baseline a body line may use (from the top of the page); below it is the footer.
const BODY_BOTTOM: f32 = PAGE_HEIGHT - 72.0;
/// Baseline of the footer (from the top of the page).
const FOOTER_Y: f32 = PAGE_HEIGHT - 40.0;
/// Body font size in points.
const BODY_SIZE: f32 = 11.0;
/// Title font size in points.
const TITLE_SIZE: f32 = 16.0;
/// Footer font size in points.
const FOOTER_SIZE: f32 = 9.0;

static REGULAR_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");

/// A font for drawing (krilla) and the same font for measuring (rustybuzz).
struct Face {
    draw: Font,
    measure: rustybuzz::Face<'static>,
}

fn load(bytes: &'static [u8]) -> Face {
    // The fonts are compiled in: failing to parse them is a build defect, caught by every test
    // that renders a document.
    let data: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(bytes);
    Face {
        draw: Font::new(data.into(), 0).expect("the embedded font parses"),
        measure: rustybuzz::Face::from_slice(bytes, 0).expect("the embedded font parses"),
    }
}

static REGULAR: LazyLock<Face> = LazyLock::new(|| load(REGULAR_TTF));
static BOLD: LazyLock<Face> = LazyLock::new(|| load(BOLD_TTF));

impl Face {
    /// Width of `text` at `size` in points, shaped as `draw_text` shapes it (kerning included).
    fn width(&self, text: &str, size: f32) -> f32 {
        let mut buffer = rustybuzz::UnicodeBuffer::new();
        buffer.push_str(text);
        buffer.guess_segment_properties();
        let shaped = rustybuzz::shape(&self.measure, &[], buffer);
        let units: i32 = shaped.glyph_positions().iter().map(|p| p.x_advance).sum();
        units as f32 * size / f32::from(self.measure.units_per_em() as u16)
    }
}

/// One block of a document, top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// The title, in bold.
    Title(String),
    /// A paragraph, wrapped to the page width.
    Para(String),
    /// A list item: a hanging indent after a dash.
    Item(String),
    /// A line's height of space.
    Gap,
}

/// A text document: blocks, and a footer printed on every page with its page number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDocument {
    /// The blocks in order.
    pub blocks: Vec<Block>,
    /// Printed at the foot of every page, followed by "page N of M".
    pub footer: String,
}

/// One placed line: baseline (from the top), font size, bold or not, indent.
struct Placed {
    y: f32,
    size: f32,
    bold: bool,
    x: f32,
    text: String,
}

/// Control characters and other whitespace become spaces, so no input changes the layout.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c.is_whitespace() {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Greedy word wrap to `width` points; a word wider than a line is cut between characters.
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in clean(text).split(' ').filter(|w| !w.is_empty()) {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if face.width(&candidate, size) <= width {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if face.width(&line, size) > width && line.chars().count() > 1 {
                line.pop();
                lines.push(std::mem::take(&mut line));
                line.push(c);
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Lays the blocks out on pages.
fn paginate(blocks: &[Block]) -> Vec<Vec<Placed>> {
    let text_width = PAGE_WIDTH - 2.0 * MARGIN;
    let indent = REGULAR.width("–  ", BODY_SIZE);
    let mut lines: Vec<(f32, bool, f32, Option<String>)> = Vec::new();
    for block in blocks {
        match block {
            Block::Title(text) => {
                for line in wrap(&BOLD, text, TITLE_SIZE, text_width) {
                    lines.push((TITLE_SIZE, true, MARGIN, Some(line)));
                }
            }
            Block::Para(text) => {
                for line in wrap(&REGULAR, text, BODY_SIZE, text_width) {
                    lines.push((BODY_SIZE, false, MARGIN, Some(line)));
                }
            }
            Block::Item(text) => {
                for (i, line) in wrap(&REGULAR, text, BODY_SIZE, text_width - indent)
                    .into_iter()
                    .enumerate()
                {
                    let line = if i == 0 { format!("–  {line}") } else { line };
                    let x = if i == 0 { MARGIN } else { MARGIN + indent };
                    lines.push((BODY_SIZE, false, x, Some(line)));
                }
            }
            Block::Gap => lines.push((BODY_SIZE, false, MARGIN, None)),
        }
    }
    let mut pages = vec![Vec::new()];
    let mut y = MARGIN;
    for (size, bold, x, text) in lines {
        // Leading of 1.3 times the size, so lines never touch.
        let leading = size * 1.3;
        if y + leading > BODY_BOTTOM {
            pages.push(Vec::new());
            y = MARGIN;
            if text.is_none() {
                continue; // no blank space at the top of a page
            }
        }
        y += leading;
        if let (Some(text), Some(page)) = (text, pages.last_mut()) {
            page.push(Placed {
                y,
                size,
                bold,
                x,
                text,
            });
        }
    }
    pages
}

/// Renders `document` as a complete PDF file.
pub fn render(document: &TextDocument) -> Vec<u8> {
    let pages = paginate(&document.blocks);
    let footer = clean(&document.footer);
    let mut pdf = Document::new();
    let count = pages.len();
    for (i, lines) in pages.iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).expect("a valid page size");
        let mut page = pdf.start_page_with(settings);
        let mut surface = page.surface();
        for line in lines {
            let face = if line.bold { &*BOLD } else { &*REGULAR };
            surface.draw_text(
                Point::from_xy(line.x, line.y),
                face.draw.clone(),
                line.size,
                &line.text,
                false,
                TextDirection::Auto,
            );
        }
        surface.draw_text(
            Point::from_xy(MARGIN, FOOTER_Y),
            REGULAR.draw.clone(),
            FOOTER_SIZE,
            &format!("{footer} – page {} of {count}", i + 1),
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    // Only a defect in the layout above (say, a non-finite coordinate) could make this fail.
    pdf.finish().expect("the document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_and_wraps_inside_the_margins() {
        let long = "word ".repeat(400);
        let doc = TextDocument {
            blocks: vec![
                Block::Title("Title".into()),
                Block::Para(long.clone()),
                Block::Item(long),
                Block::Gap,
                Block::Para("x".repeat(300)),
            ],
            footer: "footer".into(),
        };
        let a = render(&doc);
        assert_eq!(a, render(&doc), "same document, same bytes");
        assert!(a.starts_with(b"%PDF-"));
        let pages = paginate(&doc.blocks);
        assert!(pages.len() > 1, "a long document spans pages");
        for line in pages.iter().flatten() {
            let face = if line.bold { &*BOLD } else { &*REGULAR };
            assert!(line.x + face.width(&line.text, line.size) <= PAGE_WIDTH - MARGIN + 0.01);
            assert!(line.y <= BODY_BOTTOM);
        }
    }

    #[test]
    fn control_characters_cannot_change_the_layout() {
        assert_eq!(clean("a\nb\tc\u{0}d"), "a b c d");
    }
}

/// For tests (unit and integration): the text `pdftotext` reads from a PDF.
#[doc(hidden)]
pub mod tests_support {
    /// Whether a test that needs a missing tool must fail (CI installs every tool) rather
    /// than skip.
    pub fn tools_required() -> bool {
        std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
    }

    /// Whether `tool` runs; when it does not, a test skips with a note, or fails under CI.
    pub fn tool_available(tool: &str) -> bool {
        let found = std::process::Command::new(tool).arg("-v").output().is_ok();
        assert!(
            found || !tools_required(),
            "`{tool}` is not installed, and CI must run every test (install it)"
        );
        if !found {
            eprintln!("SKIPPED: `{tool}` is not installed");
        }
        found
    }

    /// The UTF-8 text of `pdf` as `pdftotext` reads it, every run of whitespace (line and page
    /// breaks included) made one space, or `None` (skip) where pdftotext is missing outside CI.
    pub fn pdftotext(pdf: &[u8]) -> Option<String> {
        if !tool_available("pdftotext") {
            return None;
        }
        let dir = tempfile_dir();
        let path = dir.join("document.pdf");
        std::fs::write(&path, pdf).expect("write the PDF");
        let out = std::process::Command::new("pdftotext")
            .args(["-enc", "UTF-8"])
            .arg(&path)
            .arg("-")
            .output()
            .expect("run pdftotext");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "pdftotext: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("pdftotext writes UTF-8");
        Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("steward-pdf-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        dir
    }
}
