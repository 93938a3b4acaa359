//! Protected categories (seed 001 section 3.1 E-H): code lists, kept in
//! `config/policy/protected.toml`, that mark a row as one whose direct identifiers or
//! practitioner identity must not be released. See that file for the matching rules.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::policy::catalog::{line_of, CodeKind};

/// Errors raised while loading the protected-category configuration.
#[derive(Debug, thiserror::Error)]
pub enum ProtectedError {
    /// The file is not valid TOML or has fields of the wrong type.
    #[error("{file}: {source}")]
    Toml {
        /// The file.
        file: String,
        /// The parser's error, which carries the line.
        source: toml::de::Error,
    },
    /// A pattern is malformed.
    #[error("{file}:{line}: category `{category}`: pattern `{pattern}`: {reason}")]
    Pattern {
        /// The file.
        file: String,
        /// 1-based line of the category table.
        line: usize,
        /// The category id.
        category: String,
        /// The pattern as written.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A code-list override file does not hold exactly the one category it is configured for.
    #[error("{file}: configured as the code list of category `{category}`, so it must define exactly that one category")]
    OverrideShape {
        /// The override file.
        file: String,
        /// The category id it is configured under.
        category: String,
    },
    /// Two categories share an id.
    #[error("{file}:{line}: category `{category}` is defined twice")]
    Duplicate {
        /// The file.
        file: String,
        /// 1-based line of the second definition.
        line: usize,
        /// The category id.
        category: String,
    },
}

/// What a match does to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Level III direct identifiers are blanked (sections 3.1 F, G, H).
    BlankDirectIdentifiers,
    /// Practitioner-identifying elements are blanked at every level (section 3.1 E).
    BlankPractitionerIdentity,
}

impl Effect {
    fn index(self) -> usize {
        self as usize
    }
}

/// Longest normalized code we look at; longer codes are compared on this prefix, which is
/// longer than any pattern (patterns are limited to it).
const MAX_CODE: usize = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// Codes starting with these bytes.
    Prefix(Vec<u8>),
    /// Codes whose first `lo.len()` bytes sort within `lo..=hi`.
    Range(Vec<u8>, Vec<u8>),
}

impl Pattern {
    /// Every two-byte head (first two normalized bytes, as a big-endian `u16`) that a code
    /// this pattern matches can start with.
    fn heads(&self) -> std::ops::RangeInclusive<u16> {
        let head =
            |bytes: &[u8], fill: u8| u16::from_be_bytes([bytes[0], *bytes.get(1).unwrap_or(&fill)]);
        match self {
            Pattern::Prefix(p) => head(p, 0x00)..=head(p, 0xFF),
            Pattern::Range(lo, hi) => head(lo, 0x00)..=head(hi, 0xFF),
        }
    }

    fn matches(&self, code: &[u8]) -> bool {
        match self {
            Pattern::Prefix(p) => code.starts_with(p),
            Pattern::Range(lo, hi) => {
                code.len() >= lo.len() && {
                    let head = &code[..lo.len()];
                    head >= lo.as_slice() && head <= hi.as_slice()
                }
            }
        }
    }
}

/// One configured category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Its id (`hiv`, `substance_use`, ...).
    pub id: String,
    /// What a match does.
    pub effect: Effect,
    /// The legal source, as documented in the file.
    pub source: String,
}

/// The patterns of one effect and code kind, with a bitmap of the two-byte heads a matching
/// code can start with: most codes on most rows match nothing, and are turned away by one
/// lookup before they are normalized in full or compared with any pattern.
#[derive(Debug, Clone, Default)]
struct PatternSet {
    heads: Vec<u64>,
    patterns: Vec<Pattern>,
}

impl PatternSet {
    const HEAD_WORDS: usize = (u16::MAX as usize + 1) / 64;

    fn push(&mut self, pattern: Pattern) {
        self.heads.resize(Self::HEAD_WORDS, 0);
        for head in pattern.heads() {
            self.heads[usize::from(head / 64)] |= 1 << (head % 64);
        }
        self.patterns.push(pattern);
    }

    /// Whether one code (not yet normalized) matches.
    fn matches(&self, code: &[u8]) -> bool {
        let mut normalized = code
            .iter()
            .filter(|b| !ignored_in_code(**b))
            .map(u8::to_ascii_uppercase);
        let Some(first) = normalized.next() else {
            return false;
        };
        // A one-byte code is compared with the patterns directly; it is rare.
        if let Some(second) = normalized.next() {
            let head = u16::from_be_bytes([first, second]);
            if self.heads[usize::from(head / 64)] & (1 << (head % 64)) == 0 {
                return false;
            }
        }
        let mut buf = [0u8; MAX_CODE];
        let n = normalize(code, &mut buf);
        self.patterns.iter().any(|p| p.matches(&buf[..n]))
    }
}

/// The compiled categories: per effect and code kind, the patterns to try.
#[derive(Debug, Clone, Default)]
pub struct ProtectedCategories {
    categories: Vec<Category>,
    table: [[PatternSet; CodeKind::COUNT]; 2],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    category: Vec<toml::Spanned<RawCategory>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    id: String,
    effect: Effect,
    source: String,
    #[serde(default)]
    codes: BTreeMap<CodeKind, Vec<String>>,
}

/// Bytes that normalization drops from a code.
fn ignored_in_code(b: u8) -> bool {
    b == b'.' || b.is_ascii_whitespace()
}

/// Normalizes a code into `buf`: trimmed, ASCII upper-case, `.` and spaces removed. Returns the
/// used length.
fn normalize(raw: &[u8], buf: &mut [u8; MAX_CODE]) -> usize {
    let mut n = 0;
    for &b in raw {
        if ignored_in_code(b) {
            continue;
        }
        if n == MAX_CODE {
            break;
        }
        buf[n] = b.to_ascii_uppercase();
        n += 1;
    }
    n
}

fn compile(pattern: &str) -> Result<Pattern, &'static str> {
    let norm = |s: &str| {
        let mut buf = [0u8; MAX_CODE];
        if s.len() > MAX_CODE {
            return Err("longer than 24 characters");
        }
        let n = normalize(s.as_bytes(), &mut buf);
        if n == 0 {
            return Err("empty");
        }
        if !buf[..n].iter().all(u8::is_ascii_alphanumeric) {
            return Err("codes are letters and digits (with optional `.`)");
        }
        Ok(buf[..n].to_vec())
    };
    match pattern.split_once('-') {
        None => Ok(Pattern::Prefix(norm(pattern)?)),
        Some((lo, hi)) => {
            let (lo, hi) = (norm(lo)?, norm(hi)?);
            if lo.len() != hi.len() {
                return Err("range bounds must have the same length");
            }
            if lo > hi {
                return Err("range is empty (low bound above high bound)");
            }
            Ok(Pattern::Range(lo, hi))
        }
    }
}

/// One category as read from a file, with where it came from (for messages).
struct SourcedCategory {
    file: String,
    line: usize,
    raw: RawCategory,
}

fn read_categories(file: &str, text: &str) -> Result<Vec<SourcedCategory>, ProtectedError> {
    let raw: RawFile = toml::from_str(text).map_err(|source| ProtectedError::Toml {
        file: file.to_owned(),
        source,
    })?;
    let mut out: Vec<SourcedCategory> = Vec::new();
    for spanned in raw.category {
        let line = line_of(text, spanned.span().start);
        let raw = spanned.into_inner();
        if out.iter().any(|c| c.raw.id == raw.id) {
            return Err(ProtectedError::Duplicate {
                file: file.to_owned(),
                line,
                category: raw.id,
            });
        }
        out.push(SourcedCategory {
            file: file.to_owned(),
            line,
            raw,
        });
    }
    Ok(out)
}

impl ProtectedCategories {
    /// Parses the configuration; `file` labels messages.
    pub fn parse(file: &str, text: &str) -> Result<ProtectedCategories, ProtectedError> {
        ProtectedCategories::parse_with_overrides((file, text), &[])
    }

    /// Parses the shipped configuration `(label, text)`, then replaces (or adds) each category
    /// named in `overrides` (`(category id, file label, text)`) by the one category that file
    /// defines, which must carry that id.
    pub fn parse_with_overrides(
        shipped: (&str, &str),
        overrides: &[(String, String, String)],
    ) -> Result<ProtectedCategories, ProtectedError> {
        let mut categories = read_categories(shipped.0, shipped.1)?;
        for (id, file, text) in overrides {
            let mut read = read_categories(file, text)?;
            let single = read.len() == 1 && read[0].raw.id == *id;
            let Some(replacement) = read.pop().filter(|_| single) else {
                return Err(ProtectedError::OverrideShape {
                    file: file.clone(),
                    category: id.clone(),
                });
            };
            match categories.iter_mut().find(|c| c.raw.id == *id) {
                Some(slot) => *slot = replacement,
                None => categories.push(replacement),
            }
        }
        let mut out = ProtectedCategories::default();
        for SourcedCategory { file, line, raw } in categories {
            for (kind, patterns) in &raw.codes {
                for p in patterns {
                    let compiled = compile(p).map_err(|reason| ProtectedError::Pattern {
                        file: file.clone(),
                        line,
                        category: raw.id.clone(),
                        pattern: p.clone(),
                        reason,
                    })?;
                    out.table[raw.effect.index()][kind.index()].push(compiled);
                }
            }
            out.categories.push(Category {
                id: raw.id,
                effect: raw.effect,
                source: raw.source,
            });
        }
        Ok(out)
    }

    /// The configured categories.
    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    /// Whether any code of `kind` can match a category with `effect` (so a plan checks only
    /// the code columns that matter).
    pub fn can_match(&self, effect: Effect, kind: CodeKind) -> bool {
        !self.table[effect.index()][kind.index()].patterns.is_empty()
    }

    /// Whether a code field (possibly several codes separated by `;`) of the given kind matches
    /// a category with the given effect. Allocation-free.
    pub fn matches(&self, effect: Effect, kind: CodeKind, field: &[u8]) -> bool {
        let patterns = &self.table[effect.index()][kind.index()];
        if patterns.patterns.is_empty() {
            return false;
        }
        field
            .split(|b| *b == b';')
            .any(|code| patterns.matches(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[category]]
id = "hiv"
effect = "blank_direct_identifiers"
source = "test"
[category.codes]
diagnosis = ["B20", "F10-F19", "B97.35"]

[[category]]
id = "abortion"
effect = "blank_practitioner_identity"
source = "test"
[category.codes]
cpt_hcpcs = ["59840-59857"]
"#;

    #[test]
    fn prefix_and_range_match_normalized_codes() {
        let p = ProtectedCategories::parse("p.toml", CONFIG).expect("valid");
        let hit =
            |kind, code: &str| p.matches(Effect::BlankDirectIdentifiers, kind, code.as_bytes());
        assert!(hit(CodeKind::Diagnosis, "B20"));
        assert!(hit(CodeKind::Diagnosis, " b20.1 "));
        assert!(hit(CodeKind::Diagnosis, "F10.20"));
        assert!(hit(CodeKind::Diagnosis, "F19"));
        assert!(hit(CodeKind::Diagnosis, "B97.35"));
        assert!(hit(CodeKind::Diagnosis, "I10;F1120"));
        assert!(!hit(CodeKind::Diagnosis, "F20"));
        assert!(!hit(CodeKind::Diagnosis, "F09"));
        assert!(!hit(CodeKind::Diagnosis, "B9734"));
        assert!(!hit(CodeKind::Diagnosis, ""));
        // The same code in another code system does not match.
        assert!(!hit(CodeKind::CptHcpcs, "B20"));
        let abortion = |code: &str| {
            p.matches(
                Effect::BlankPractitionerIdentity,
                CodeKind::CptHcpcs,
                code.as_bytes(),
            )
        };
        assert!(abortion("59840") && abortion("59857") && !abortion("59858") && !abortion("5984"));
    }

    proptest::proptest! {
        /// The two-byte head filter only ever turns away codes that no pattern matches: the
        /// answer is that of normalizing the code and trying every pattern.
        #[test]
        fn the_head_filter_never_turns_away_a_match(
            patterns in proptest::collection::vec("[bfBF0-9]{1,3}(-[bfBF0-9]{1,3})?", 1..6),
            code in "[ .bfBF0-9]{0,6}",
        ) {
            let mut set = PatternSet::default();
            let mut compiled = Vec::new();
            for pattern in &patterns {
                if let Ok(p) = compile(pattern) {
                    set.push(p.clone());
                    compiled.push(p);
                }
            }
            proptest::prop_assume!(!compiled.is_empty());
            let mut buf = [0u8; MAX_CODE];
            let n = normalize(code.as_bytes(), &mut buf);
            let expected = n > 0 && compiled.iter().any(|p| p.matches(&buf[..n]));
            proptest::prop_assert_eq!(set.matches(code.as_bytes()), expected);
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_their_line() {
        let text = "[[category]]\nid = \"x\"\neffect = \"blank_direct_identifiers\"\nsource = \"s\"\n[category.codes]\ndiagnosis = [\"F10-F1\"]\n";
        let err = ProtectedCategories::parse("p.toml", text).expect_err("must refuse");
        let msg = err.to_string();
        assert!(msg.contains("p.toml:1") && msg.contains("F10-F1"), "{msg}");
    }
}
