//! Byte-level value transforms used on every row: no allocation, no `String`.
//!
//! Accepted source formats: dates `YYYY-MM-DD` or `YYYYMMDD`; reference periods additionally
//! `YYYYMM` (an eligibility month, read as its last day so that someone who turns 90 during
//! the month counts as 90); ages as whole years (or the text `90 or over`).

use time::{Date, Month};

/// Text shown instead of an age of 90 or more (seed 001 Appendix A).
pub const AGE_TOP_CODE: &[u8] = b"90 or over";

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn ymd(y: u32, m: u32, d: u32) -> Option<Date> {
    if !(1..=9999).contains(&y) {
        return None;
    }
    let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
    // Checked arithmetic on the year is unnecessary: 1..=9999 fits i32.
    Date::from_calendar_date(y as i32, month, u8::try_from(d).ok()?).ok()
}

/// Parses `YYYY-MM-DD` or `YYYYMMDD` (surrounding spaces ignored).
pub fn parse_date(raw: &[u8]) -> Option<Date> {
    let b = raw.trim_ascii();
    match b.len() {
        10 if b[4] == b'-' && b[7] == b'-' => {
            ymd(digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..])?)
        }
        8 => ymd(digits(&b[..4])?, digits(&b[4..6])?, digits(&b[6..])?),
        _ => None,
    }
}

/// Parses a date, or a `YYYYMM` / `YYYY-MM` period as the last day of that month.
pub fn parse_reference(raw: &[u8]) -> Option<Date> {
    let b = raw.trim_ascii();
    let (y, m) = match b.len() {
        6 => (digits(&b[..4])?, digits(&b[4..])?),
        7 if b[4] == b'-' => (digits(&b[..4])?, digits(&b[5..])?),
        _ => return parse_date(b),
    };
    let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
    let first = ymd(y, m, 1)?;
    Date::from_calendar_date(first.year(), month, month.length(first.year())).ok()
}

/// The year a date, `YYYYMM` month, year or `YYYYQn` period starts with: its first four
/// bytes, which must be digits and followed by nothing or a non-digit.
pub fn leading_year(raw: &[u8]) -> Option<i32> {
    let b = raw.trim_ascii();
    let year = i32::try_from(digits(b.get(..4)?)?).ok()?;
    // `2024`, `2024-03-01`, `2024Q1`, `202403`, `20240301`; not `20245` nor `2024031`.
    let rest = &b[4..];
    let ok = match rest.first() {
        Some(c) if c.is_ascii_digit() => {
            matches!(rest.len(), 2 | 4) && rest.iter().all(u8::is_ascii_digit)
        }
        _ => true,
    };
    ok.then_some(year)
}

/// Whole years from `dob` to `at` (negative when `at` precedes `dob`).
pub fn age_at(dob: Date, at: Date) -> i32 {
    let mut age = at.year() - dob.year();
    if (u8::from(at.month()), at.day()) < (u8::from(dob.month()), dob.day()) {
        age -= 1;
    }
    age
}

/// An age field as read from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// A number of whole years.
    Years(u32),
    /// Already top-coded upstream.
    NinetyOrOver,
}

/// Parses an age field: digits, or the top-code text itself.
pub fn parse_age(raw: &[u8]) -> Option<Age> {
    let b = raw.trim_ascii();
    if b.eq_ignore_ascii_case(AGE_TOP_CODE) {
        return Some(Age::NinetyOrOver);
    }
    digits(b).filter(|n| *n < 200).map(Age::Years)
}

/// Writes `n` in decimal into `buf`, returning the used length (`n` < 10^9).
pub fn write_u32(mut n: u32, buf: &mut [u8]) -> usize {
    let mut tmp = [0u8; 10];
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

fn write_padded(n: u32, width: usize, buf: &mut [u8]) -> usize {
    for i in (0..width).rev() {
        buf[width - 1 - i] = b'0' + ((n / 10u32.pow(i as u32)) % 10) as u8;
    }
    width
}

/// Year of a date: `2024`.
pub fn write_year(d: Date, buf: &mut [u8]) -> usize {
    write_padded(d.year().unsigned_abs(), 4, buf)
}

/// Quarter of a date, one digit: `3`.
pub fn write_quarter(d: Date, buf: &mut [u8]) -> usize {
    buf[0] = b'1' + (u8::from(d.month()) - 1) / 3;
    1
}

/// Month of a date, two digits: `07`.
pub fn write_month(d: Date, buf: &mut [u8]) -> usize {
    write_padded(u32::from(u8::from(d.month())), 2, buf)
}

/// Year and quarter: `2024Q3`.
pub fn write_year_quarter(d: Date, buf: &mut [u8]) -> usize {
    let n = write_year(d, buf);
    buf[n] = b'Q';
    n + 1 + write_quarter(d, &mut buf[n + 1..])
}

/// Full date: `2024-07-15`.
pub fn write_date(d: Date, buf: &mut [u8]) -> usize {
    write_year(d, buf);
    buf[4] = b'-';
    write_month(d, &mut buf[5..]);
    buf[7] = b'-';
    write_padded(u32::from(d.day()), 2, &mut buf[8..]);
    10
}

/// The 5-digit ZIP of a ZIP or ZIP+4 field, or `None` when the field does not start with five
/// digits (province codes, truncated ZIPs): we never emit what we cannot vouch for.
pub fn zip5(raw: &[u8]) -> Option<&[u8]> {
    let b = raw.trim_ascii();
    let head = b.get(..5)?;
    let rest_ok = match b.get(5..) {
        None | Some([]) => true,
        Some([b'-', tail @ ..]) | Some(tail) => tail.iter().all(u8::is_ascii_digit),
    };
    (head.iter().all(u8::is_ascii_digit) && rest_ok).then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn s(f: impl Fn(&mut [u8]) -> usize) -> String {
        let mut buf = [0u8; 32];
        let n = f(&mut buf);
        String::from_utf8(buf[..n].to_vec()).expect("ascii")
    }

    #[test]
    fn dates_parse_and_format() {
        let d = parse_date(b"2024-07-15").expect("date");
        assert_eq!(parse_date(b"20240715"), Some(d));
        assert_eq!(s(|b| write_year_quarter(d, b)), "2024Q3");
        assert_eq!(s(|b| write_date(d, b)), "2024-07-15");
        assert_eq!(s(|b| write_month(d, b)), "07");
        assert_eq!(s(|b| write_quarter(d, b)), "3");
        assert_eq!(s(|b| write_year(date!(0999 - 01 - 01), b)), "0999");
        for bad in [
            "2024-02-30",
            "2024-13-01",
            "24-07-15",
            "2024/07/15",
            "",
            "0000-01-01",
        ] {
            assert_eq!(parse_date(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_reference(b"202402"), Some(date!(2024 - 02 - 29)));
        assert_eq!(parse_reference(b"2023-02"), Some(date!(2023 - 02 - 28)));
    }

    #[test]
    fn ages() {
        assert_eq!(age_at(date!(1934 - 07 - 16), date!(2024 - 07 - 15)), 89);
        assert_eq!(age_at(date!(1934 - 07 - 15), date!(2024 - 07 - 15)), 90);
        assert_eq!(parse_age(b" 45 "), Some(Age::Years(45)));
        assert_eq!(parse_age(b"90 or over"), Some(Age::NinetyOrOver));
        assert_eq!(parse_age(b"4 5"), None);
        assert_eq!(parse_age(b"-1"), None);
        assert_eq!(s(|b| write_u32(0, b)), "0");
        assert_eq!(s(|b| write_u32(107, b)), "107");
    }

    #[test]
    fn zips() {
        assert_eq!(zip5(b"04101"), Some(&b"04101"[..]));
        assert_eq!(zip5(b"04101-1234"), Some(&b"04101"[..]));
        assert_eq!(zip5(b"041011234"), Some(&b"04101"[..]));
        assert_eq!(zip5(b"4101"), None);
        assert_eq!(zip5(b"K1A 0B1"), None);
        assert_eq!(zip5(b"04101 x"), None);
    }
}
