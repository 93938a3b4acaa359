//! Timestamps as fixed-width RFC 3339 UTC text, so they compare correctly as text in SQL on
//! both backends.

use time::format_description::FormatItem;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::DbError;

const FORMAT: &[FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
);

/// Formats a time for storage.
pub fn encode(t: OffsetDateTime) -> Result<String, DbError> {
    t.to_offset(UtcOffset::UTC)
        .format(FORMAT)
        .map_err(|e| DbError::Sqlx(sqlx::Error::Encode(Box::new(e))))
}

/// Parses a stored time.
pub fn decode(text: &str) -> Result<OffsetDateTime, DbError> {
    PrimitiveDateTime::parse(text, FORMAT)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|e| DbError::Sqlx(sqlx::Error::Decode(Box::new(e))))
}

/// Parses an optional stored time.
pub fn decode_opt(text: Option<String>) -> Result<Option<OffsetDateTime>, DbError> {
    text.as_deref().map(decode).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_sorts_as_text() {
        let a = time::macros::datetime!(2026-03-01 12:00:00.123456 UTC);
        let b = a + time::Duration::seconds(1);
        let (ta, tb) = (encode(a).unwrap(), encode(b).unwrap());
        assert_eq!(decode(&ta).unwrap(), a);
        assert!(ta < tb);
    }
}
