//! Release levels of seed 001: I (de-identified), II (limited data set), III (direct identifiers).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A release level; the order is the order of privilege (`I < II < III`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Level {
    /// De-identified data (Appendices A, A-1, A-2 and requested Appendix C).
    I,
    /// Limited data set: Level I plus Appendix B.
    II,
    /// Direct identifiers: Level II plus Appendix D.
    III,
}

/// The text was not one of `I`, `II`, `III`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown release level `{0}`: expected I, II or III")]
pub struct ParseLevelError(String);

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::I, Level::II, Level::III];

    /// The roman numeral used in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::I => "I",
            Level::II => "II",
            Level::III => "III",
        }
    }

    /// Position in [`Level::ALL`], for per-level tables.
    pub fn index(self) -> usize {
        match self {
            Level::I => 0,
            Level::II => 1,
            Level::III => 2,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the exact numerals: a typo such as "ll" must not silently become a level.
        match s {
            "I" => Ok(Level::I),
            "II" => Ok(Level::II),
            "III" => Ok(Level::III),
            other => Err(ParseLevelError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_privilege() {
        assert!(Level::I < Level::II && Level::II < Level::III);
    }

    #[test]
    fn round_trips_through_text() {
        for level in Level::ALL {
            assert_eq!(level.to_string().parse::<Level>(), Ok(level));
        }
        assert!("IV".parse::<Level>().is_err());
        assert!("ii".parse::<Level>().is_err());
    }

    #[test]
    fn serde_uses_numerals() {
        #[derive(Deserialize, Serialize)]
        struct W {
            level: Level,
        }
        let w: W = toml::from_str("level = \"III\"").expect("parse");
        assert_eq!(w.level, Level::III);
        assert_eq!(
            toml::to_string(&W { level: Level::II }).expect("ser"),
            "level = \"II\"\n"
        );
    }
}
