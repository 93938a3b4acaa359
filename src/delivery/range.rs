//! The `Range` header of a download: one byte range, for resuming; anything else is refused
//! by name (416), never silently widened to the whole file.

use crate::storage::ByteRange;

/// Why a `Range` header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX` with decimal numbers.
    #[error("malformed Range header (expected bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX)")]
    Malformed,
    /// More than one range was asked for.
    #[error("only one byte range may be requested")]
    Multiple,
    /// The range selects no byte of the file.
    #[error("the range selects no byte of a file of {size} bytes")]
    Unsatisfiable {
        /// The file's size.
        size: u64,
    },
}

/// A parsed range, before the file's size is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No `Range` header: the whole file.
    Whole,
    /// `bytes=FIRST-` or `bytes=FIRST-LAST`.
    From {
        /// First byte.
        first: u64,
        /// Last byte, inclusive.
        last: Option<u64>,
    },
    /// `bytes=-SUFFIX`: the last SUFFIX bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses the header's value (`None`: no header).
    pub fn parse(header: Option<&[u8]>) -> Result<Self, RangeError> {
        let Some(raw) = header else {
            return Ok(RangeRequest::Whole);
        };
        let text = std::str::from_utf8(raw).map_err(|_| RangeError::Malformed)?;
        let spec = text.strip_prefix("bytes=").ok_or(RangeError::Malformed)?;
        if spec.contains(',') {
            return Err(RangeError::Multiple);
        }
        let (first, last) = spec.split_once('-').ok_or(RangeError::Malformed)?;
        let number = |s: &str| -> Result<u64, RangeError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RangeError::Malformed);
            }
            s.parse().map_err(|_| RangeError::Malformed)
        };
        match (first.is_empty(), last.is_empty()) {
            (true, true) => Err(RangeError::Malformed),
            (true, false) => Ok(RangeRequest::Suffix(number(last)?)),
            (false, true) => Ok(RangeRequest::From {
                first: number(first)?,
                last: None,
            }),
            (false, false) => Ok(RangeRequest::From {
                first: number(first)?,
                last: Some(number(last)?),
            }),
        }
    }

    /// The bytes this request selects in a file of `size` bytes, as (range, partial): `partial`
    /// is false only for the whole file without a `Range` header.
    pub fn resolve(self, size: u64) -> Result<(ByteRange, bool), RangeError> {
        let unsatisfiable = RangeError::Unsatisfiable { size };
        match self {
            RangeRequest::Whole => Ok((
                ByteRange {
                    start: 0,
                    end: None,
                },
                false,
            )),
            RangeRequest::From { first, last } => {
                if first >= size || last.is_some_and(|last| last < first) {
                    return Err(unsatisfiable);
                }
                let end = last.map(|last| last.min(size - 1));
                Ok((ByteRange { start: first, end }, true))
            }
            RangeRequest::Suffix(0) => Err(unsatisfiable),
            RangeRequest::Suffix(n) => {
                if size == 0 {
                    return Err(unsatisfiable);
                }
                Ok((
                    ByteRange {
                        start: size.saturating_sub(n),
                        end: None,
                    },
                    true,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(header: &str, size: u64) -> Result<(u64, u64), RangeError> {
        let (range, _) = RangeRequest::parse(Some(header.as_bytes()))?.resolve(size)?;
        Ok(range.resolve(size).expect("resolved ranges select bytes"))
    }

    #[test]
    fn single_ranges_select_what_rfc_9110_says() {
        assert_eq!(resolve("bytes=0-0", 10), Ok((0, 1)));
        assert_eq!(resolve("bytes=5-", 10), Ok((5, 5)));
        assert_eq!(resolve("bytes=5-100", 10), Ok((5, 5)));
        assert_eq!(resolve("bytes=-3", 10), Ok((7, 3)));
        assert_eq!(resolve("bytes=-30", 10), Ok((0, 10)));
        assert_eq!(resolve("bytes=9-9", 10), Ok((9, 1)));
        let (whole, partial) = RangeRequest::parse(None).unwrap().resolve(10).unwrap();
        assert_eq!((whole.resolve(10), partial), (Some((0, 10)), false));
    }

    #[test]
    fn every_other_range_is_refused_by_name() {
        let unsatisfiable = Err(RangeError::Unsatisfiable { size: 10 });
        assert_eq!(resolve("bytes=-0", 10), unsatisfiable);
        assert_eq!(resolve("bytes=5-2", 10), unsatisfiable);
        assert_eq!(resolve("bytes=10-", 10), unsatisfiable);
        assert_eq!(resolve("bytes=0-0,2-3", 10), Err(RangeError::Multiple));
        for malformed in [
            "bytes=99999999999999999999-",
            "bytes=junk",
            "bytes=",
            "bytes=-",
            "bytes=1-2-3",
            "bytes= 1-2",
            "bytes=+1-2",
            "items=0-1",
            "0-1",
        ] {
            assert_eq!(
                resolve(malformed, 10),
                Err(RangeError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            RangeRequest::parse(Some(&[0xff, 0xfe])),
            Err(RangeError::Malformed)
        );
    }
}
