//! Individual choice (seed 001 section 13): people may have their direct identifiers excluded
//! from every Level III release. Steward stores only keyed hashes of the SSNs and member ids
//! they register ([`OptOutKey`]); extracts hash each row's identity the same way and look it up.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;

use hmac::Mac;

use crate::policy::catalog::SubjectKey;
use crate::policy::linkage::{keyed, MIN_SECRET_LEN};

/// Errors raised by opt-out hashing and import. Messages name lines, never values: the values
/// are SSNs.
#[derive(Debug, thiserror::Error)]
pub enum OptOutError {
    /// The opt-out secret is too short to be a key.
    #[error("the opt-out secret must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort,
    /// The import file could not be read as CSV.
    #[error("opt-out import, line {line}: {message}")]
    Csv {
        /// 1-based line.
        line: u64,
        /// The CSV reader's message.
        message: String,
    },
    /// The first line is not a header of `ssn` and/or `member_id` (it is not echoed: a file
    /// without a header would have an SSN there).
    #[error("opt-out import, line 1: the header must name the columns `ssn` and/or `member_id` and nothing else")]
    Header,
    /// A value is not a valid SSN.
    #[error("opt-out import, line {line}: the ssn is not nine digits of a valid SSN")]
    InvalidSsn {
        /// 1-based line.
        line: u64,
    },
    /// A value is not a valid member id.
    #[error("opt-out import, line {line}: the member_id must be 1-64 letters, digits, `-` or `_`")]
    InvalidMemberId {
        /// 1-based line.
        line: u64,
    },
    /// A row has neither an SSN nor a member id.
    #[error("opt-out import, line {line}: the row has neither an ssn nor a member_id")]
    EmptyRow {
        /// 1-based line.
        line: u64,
    },
    /// A stored key is not 64 hex digits.
    #[error("an opt-out key must be 64 hex digits")]
    InvalidKey,
}

/// Keyed hash of one opted-out identity (SSN or member id). Safe to store and log counts of;
/// without the secret it cannot be reversed or tested against guesses.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OptOutKey([u8; 32]);

impl OptOutKey {
    /// The raw hash bytes, for database storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a key from its 64-digit hex text (as stored).
    pub fn from_hex(s: &str) -> Result<OptOutKey, OptOutError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| OptOutError::InvalidKey)?;
        Ok(OptOutKey(out))
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for OptOutKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OptOutKey({})", self.to_hex())
    }
}

/// Computes opt-out keys under the agency's opt-out secret. `Debug` never shows the secret.
#[derive(Clone)]
pub struct OptOutHasher {
    mac: hmac::Hmac<sha2::Sha256>,
}

impl fmt::Debug for OptOutHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OptOutHasher(..)")
    }
}

/// Normalizes an SSN to its nine digits: `-` and spaces are ignored; area 000, 666 and 9xx,
/// group 00 and serial 0000 are refused (never issued).
pub(crate) fn normalize_ssn(raw: &[u8], out: &mut [u8; 9]) -> bool {
    let mut n = 0;
    for &b in raw.trim_ascii() {
        match b {
            b'-' | b' ' => {}
            b'0'..=b'9' if n < 9 => {
                out[n] = b;
                n += 1;
            }
            _ => return false,
        }
    }
    n == 9
        && &out[..3] != b"000"
        && &out[..3] != b"666"
        && out[0] != b'9'
        && &out[3..5] != b"00"
        && &out[5..] != b"0000"
}

/// Normalizes a member id: trimmed, ASCII upper-case, 1-64 of `[A-Z0-9_-]`.
pub(crate) fn normalize_member_id(raw: &[u8], out: &mut [u8; 64]) -> Option<usize> {
    let raw = raw.trim_ascii();
    if raw.is_empty() || raw.len() > 64 {
        return None;
    }
    for (i, &b) in raw.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        out[i] = b.to_ascii_uppercase();
    }
    Some(raw.len())
}

impl OptOutHasher {
    /// A hasher under `secret` (at least 32 bytes; distinct from the linkage secret).
    pub fn new(secret: &[u8]) -> Result<OptOutHasher, OptOutError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(OptOutError::SecretTooShort);
        }
        Ok(OptOutHasher { mac: keyed(secret) })
    }

    fn key(&self, kind: &[u8], value: &[u8]) -> OptOutKey {
        let mut mac = self.mac.clone();
        mac.update(b"steward/optout/v1\0");
        mac.update(kind);
        mac.update(b"\0");
        mac.update(value);
        OptOutKey(mac.finalize().into_bytes().into())
    }

    /// The key of an SSN (`123-45-6789` and `123456789` agree), or `None` if it is not a
    /// valid SSN.
    pub fn ssn(&self, raw: &[u8]) -> Option<OptOutKey> {
        let mut digits = [0u8; 9];
        normalize_ssn(raw, &mut digits).then(|| self.key(b"ssn", &digits))
    }

    /// The key of a member id (case-insensitive), or `None` if it is not a valid member id.
    pub fn member_id(&self, raw: &[u8]) -> Option<OptOutKey> {
        let mut buf = [0u8; 64];
        normalize_member_id(raw, &mut buf).map(|n| self.key(b"member_id", &buf[..n]))
    }

    /// The key of a source value of the given kind.
    pub fn subject(&self, kind: SubjectKey, raw: &[u8]) -> Option<OptOutKey> {
        match kind {
            SubjectKey::Ssn => self.ssn(raw),
            SubjectKey::MemberId => self.member_id(raw),
        }
    }
}

/// The registered opt-outs, as consulted by Level III extracts.
#[derive(Debug, Clone)]
pub struct OptOutSet {
    hasher: OptOutHasher,
    keys: HashSet<OptOutKey>,
}

impl OptOutSet {
    /// A set of stored keys, with the hasher that produced them.
    pub fn new(hasher: OptOutHasher, keys: impl IntoIterator<Item = OptOutKey>) -> OptOutSet {
        OptOutSet {
            hasher,
            keys: keys.into_iter().collect(),
        }
    }

    /// Number of registered keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no one is registered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the person identified by this source value opted out. A value that is not a
    /// valid SSN or member id cannot have been registered, so it is not opted out.
    pub fn is_opted_out(&self, kind: SubjectKey, raw: &[u8]) -> bool {
        !self.keys.is_empty()
            && self
                .hasher
                .subject(kind, raw)
                .is_some_and(|k| self.keys.contains(&k))
    }
}

/// Reads an opt-out import CSV (header `ssn` and/or `member_id`; each row gives at least one)
/// and returns only the keyed hashes, without duplicates, in file order. Any invalid row fails
/// the whole import, so nothing is stored from a file that may be misaligned.
pub fn parse_import_csv<R: Read>(
    reader: R,
    hasher: &OptOutHasher,
) -> Result<Vec<OptOutKey>, OptOutError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let csv_err = |e: csv::Error| OptOutError::Csv {
        line: e.position().map_or(1, |p| p.line()),
        message: match e.kind() {
            // Never echo field contents: report the shape of the problem only.
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("expected {expected_len} fields, found {len}")
            }
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
            _ => "unreadable CSV".to_owned(),
        },
    };
    let header = csv.byte_headers().map_err(csv_err)?.clone();
    let mut ssn_col = None;
    let mut member_col = None;
    for (i, name) in header.iter().enumerate() {
        match name.trim_ascii().to_ascii_lowercase().as_slice() {
            b"ssn" if ssn_col.is_none() => ssn_col = Some(i),
            b"member_id" if member_col.is_none() => member_col = Some(i),
            _ => return Err(OptOutError::Header),
        }
    }
    if ssn_col.is_none() && member_col.is_none() {
        return Err(OptOutError::Header);
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    while csv.read_byte_record(&mut record).map_err(csv_err)? {
        let line = record.position().map_or(0, |p| p.line());
        let field = |col: Option<usize>| col.and_then(|c| record.get(c)).map(<[u8]>::trim_ascii);
        let mut any = false;
        if let Some(v) = field(ssn_col).filter(|v| !v.is_empty()) {
            let key = hasher.ssn(v).ok_or(OptOutError::InvalidSsn { line })?;
            any = true;
            if seen.insert(key) {
                out.push(key);
            }
        }
        if let Some(v) = field(member_col).filter(|v| !v.is_empty()) {
            let key = hasher
                .member_id(v)
                .ok_or(OptOutError::InvalidMemberId { line })?;
            any = true;
            if seen.insert(key) {
                out.push(key);
            }
        }
        if !any {
            return Err(OptOutError::EmptyRow { line });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> OptOutHasher {
        OptOutHasher::new(b"optout-secret-optout-secret-0123").expect("hasher")
    }

    #[test]
    fn ssn_forms_agree_and_invalid_ssns_are_refused() {
        let h = hasher();
        assert_eq!(h.ssn(b"123-45-6789"), h.ssn(b" 123456789 "));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "12345678",
            "1234567890",
            "12a456789",
        ] {
            assert_eq!(h.ssn(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(h.member_id(b"m001"), h.member_id(b"M001 "));
        assert_ne!(h.member_id(b"123456789"), h.ssn(b"123456789"));
        let other = OptOutHasher::new(b"another-secret-another-secret-01").expect("hasher");
        assert_ne!(h.ssn(b"123456789"), other.ssn(b"123456789"));
    }

    #[test]
    fn import_returns_only_hashes() {
        let h = hasher();
        let csv = "ssn,member_id\n123-45-6789,\n,M42\n123456789,m42\n";
        let keys = parse_import_csv(csv.as_bytes(), &h).expect("valid");
        assert_eq!(keys.len(), 2);
        let set = OptOutSet::new(h, keys);
        assert!(set.is_opted_out(SubjectKey::Ssn, b"123-45-6789"));
        assert!(set.is_opted_out(SubjectKey::MemberId, b"M42"));
        assert!(!set.is_opted_out(SubjectKey::MemberId, b"M43"));
    }

    #[test]
    fn import_errors_name_the_line_not_the_value() {
        let h = hasher();
        let err = parse_import_csv("ssn\n123-45-6789\n666-45-6789\n".as_bytes(), &h)
            .expect_err("invalid");
        let msg = err.to_string();
        assert!(msg.contains("line 3") && !msg.contains("666"), "{msg}");
        assert!(matches!(
            parse_import_csv("name\nx\n".as_bytes(), &h),
            Err(OptOutError::Header)
        ));
        assert!(matches!(
            parse_import_csv("ssn,member_id\n,\n".as_bytes(), &h),
            Err(OptOutError::EmptyRow { line: 2 })
        ));
        assert!(matches!(
            parse_import_csv("ssn,member_id\n123456789\n".as_bytes(), &h),
            Err(OptOutError::Csv { line: 2, .. })
        ));
    }
}
