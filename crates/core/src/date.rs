//! RFC 3339 dates and date-times as the `due` and `scheduled` fields hold them.
//!
//! A value is either a full date (`2026-11-25`) or a date-time with an offset
//! (`2026-11-25T09:30:00+01:00`). [`sort_key`] maps both onto one string order
//! so range queries compare them: a date-time becomes its UTC instant
//! (`2026-11-25T08:30:00Z`), a date stays as it is and therefore sorts before
//! every instant of its own day. Pure functions: no clock, no time zone.

use std::fmt;

/// Why a string is not an RFC 3339 date or date-time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateError(&'static str);

impl fmt::Display for DateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The number of days in month `m` (1–12) of year `y`.
pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn parse_date(b: &[u8]) -> Result<(i64, u32, u32), DateError> {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(DateError("expected a date as YYYY-MM-DD"));
    }
    let (Some(y), Some(m), Some(d)) = (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]))
    else {
        return Err(DateError("expected a date as YYYY-MM-DD"));
    };
    let y = i64::from(y);
    if !(1..=12).contains(&m) {
        return Err(DateError("the month must be 01 to 12"));
    }
    if d == 0 || d > days_in_month(y, m) {
        return Err(DateError("the day does not exist in that month"));
    }
    Ok((y, m, d))
}

/// A parsed value: a calendar date, or an instant in UTC seconds plus nanoseconds.
enum Parsed {
    Date,
    Instant { secs: i64, frac: String },
}

fn parse(s: &str) -> Result<Parsed, DateError> {
    let b = s.as_bytes();
    let (y, m, d) = parse_date(b.get(..10).unwrap_or(b))?;
    if b.len() == 10 {
        return Ok(Parsed::Date);
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(DateError("expected 'T' between the date and the time"));
    }
    let rest = &b[11..];
    if rest.len() < 9 || rest[2] != b':' || rest[5] != b':' {
        return Err(DateError(
            "expected a time as HH:MM:SS followed by Z or an offset",
        ));
    }
    let (Some(hh), Some(mm), Some(ss)) = (
        digits(&rest[0..2]),
        digits(&rest[3..5]),
        digits(&rest[6..8]),
    ) else {
        return Err(DateError("expected a time as HH:MM:SS"));
    };
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(DateError("the time is out of range"));
    }
    let mut i = 8;
    let mut frac = String::new();
    if rest[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < rest.len() && rest[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 9 {
            return Err(DateError("fractional seconds must be 1 to 9 digits"));
        }
        frac = std::str::from_utf8(&rest[start..i])
            .unwrap_or_default()
            .to_owned();
    }
    let offset_secs: i64 = match &rest[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (Some(oh), Some(om)) = (digits(&[*h1, *h2]), digits(&[*m1, *m2])) else {
                return Err(DateError("the offset must be +HH:MM or -HH:MM"));
            };
            if oh > 23 || om > 59 {
                return Err(DateError("the offset is out of range"));
            }
            let v = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' { -v } else { v }
        }
        _ => {
            return Err(DateError(
                "expected Z or an offset such as +01:00 after the time",
            ));
        }
    };
    let ss = ss.min(59); // a leap second sorts as the last second of its minute
    let secs =
        days_from_civil(y, m, d) * 86_400 + i64::from(hh * 3600 + mm * 60 + ss) - offset_secs;
    Ok(Parsed::Instant { secs, frac })
}

/// Checks that `s` is an RFC 3339 full-date or date-time.
pub fn validate(s: &str) -> Result<(), DateError> {
    parse(s).map(|_| ())
}

/// The key under which range queries order a valid date or date-time.
///
/// Dates map to `YYYY-MM-DD`; date-times to their UTC instant
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (fixed width, so string order is time order). Returns `None` for an invalid value.
pub fn sort_key(s: &str) -> Option<String> {
    match parse(s).ok()? {
        Parsed::Date => Some(s[..10].to_owned()),
        Parsed::Instant { secs, frac } => {
            let days = secs.div_euclid(86_400);
            let tod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(days);
            if !(0..=9999).contains(&y) {
                return None;
            }
            Some(format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:0<9}Z",
                tod / 3600,
                tod % 3600 / 60,
                tod % 60
            ))
        }
    }
}

/// The exclusive upper key of an inclusive range bound: for a date, every
/// instant of that day is within the bound.
pub fn upper_bound_key(s: &str) -> Option<String> {
    let key = sort_key(s)?;
    Some(if key.len() == 10 {
        format!("{key}~")
    } else {
        format!("{key}\u{0}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        assert_eq!(sort_key(input).as_deref(), expected, "{input}");
    }

    #[test]
    fn sort_keys() {
        check("2026-11-25", Some("2026-11-25"));
        check("2024-02-29", Some("2024-02-29"));
        check(
            "2026-11-25T09:30:00+01:00",
            Some("2026-11-25T08:30:00.000000000Z"),
        );
        check(
            "2026-11-25T00:30:00+01:00",
            Some("2026-11-24T23:30:00.000000000Z"),
        );
        check(
            "2026-12-31T23:30:00-01:00",
            Some("2027-01-01T00:30:00.000000000Z"),
        );
        check(
            "2026-11-25t09:30:00.25z",
            Some("2026-11-25T09:30:00.250000000Z"),
        );
        check(
            "2026-11-25T09:30:00Z",
            Some("2026-11-25T09:30:00.000000000Z"),
        );
        // Fractions order correctly against whole seconds.
        assert!(sort_key("2026-11-25T09:30:00Z") < sort_key("2026-11-25T09:30:00.5Z"));
    }

    #[test]
    fn invalid_values() {
        for bad in [
            "",
            "2026",
            "2026-13-01",
            "2026-02-29",
            "2023-02-29",
            "2026-11-31",
            "26-11-25",
            "2026-11-25T",
            "2026-11-25T25:00:00Z",
            "2026-11-25T09:30:00",
            "2026-11-25T09:30Z",
            "2026-11-25T09:30:00+0100",
            "2026-11-25T09:30:00.Z",
            "tomorrow",
            "2026-11-25X",
        ] {
            assert!(validate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_date_sorts_before_every_instant_of_its_day_and_its_upper_bound_after() {
        let day = sort_key("2026-11-25").unwrap();
        let upper = upper_bound_key("2026-11-25").unwrap();
        let morning = sort_key("2026-11-25T00:00:00Z").unwrap();
        let night = sort_key("2026-11-25T23:59:59.999Z").unwrap();
        let next = sort_key("2026-11-26").unwrap();
        assert!(day < morning && night < upper && upper < next);
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_956, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
