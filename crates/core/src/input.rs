//! What people type: relative dates (`tomorrow`, `fri`, `+2w`), priorities,
//! statuses, and quick-add lines such as `Buy milk +home due:tomorrow pri:high`.
//!
//! Shared by `heph` and `heph-tui`, so both read input the same way. Pure:
//! "today" is a parameter (the caller reads its local clock), nothing here
//! touches the clock, a time zone or the process. Errors are one lowercase
//! sentence that names the accepted forms.

use crate::date;
use crate::node::{Priority, Status};

/// A calendar date as `(year, month 1–12, day 1–31)`.
pub type Ymd = (i64, u32, u32);

/// The forms [`parse_date`] accepts, as the end of an error sentence.
pub const DATE_FORMS: &str = "use today, tomorrow, yesterday, a weekday (mon or monday), \
     +3d, +2w, +1m, -1d, eow, eom, YYYY-MM-DD or an RFC 3339 date-time";

const WEEKDAYS: [(&str, &[&str]); 7] = [
    ("monday", &["mon"]),
    ("tuesday", &["tue", "tues"]),
    ("wednesday", &["wed"]),
    ("thursday", &["thu", "thur", "thurs"]),
    ("friday", &["fri"]),
    ("saturday", &["sat"]),
    ("sunday", &["sun"]),
];

/// Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
fn weekday(days: i64) -> i64 {
    (days + 3).rem_euclid(7)
}

fn format_ymd((y, m, d): Ymd) -> String {
    format!("{y:04}-{m:02}-{d:02}")
}

fn from_days(days: i64) -> String {
    format_ymd(date::civil_from_days(days))
}

fn weekday_index(word: &str) -> Option<i64> {
    WEEKDAYS
        .iter()
        .position(|(full, short)| *full == word || short.contains(&word))
        .map(|i| i as i64)
}

/// Adds `months` to a date, clamping the day to the end of the target month.
fn add_months((y, m, d): Ymd, months: i64) -> Option<Ymd> {
    let index = y.checked_mul(12)? + i64::from(m) - 1 + months;
    let (y, m) = (index.div_euclid(12), (index.rem_euclid(12) + 1) as u32);
    Some((y, m, d.min(date::days_in_month(y, m))))
}

/// `+3d`, `-2w`, `1m`, `+1y`: a signed count and a unit.
fn offset(today: Ymd, word: &str) -> Option<String> {
    let (sign, rest) = match word.as_bytes().first()? {
        b'+' => (1, &word[1..]),
        b'-' => (-1, &word[1..]),
        _ => (1, word),
    };
    let unit = rest.chars().last()?;
    let count = &rest[..rest.len() - unit.len_utf8()];
    if count.is_empty() || count.len() > 5 || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = sign * count.parse::<i64>().ok()?;
    let days = date::days_from_civil(today.0, today.1, today.2);
    let out = match unit {
        'd' => from_days(days + n),
        'w' => from_days(days + 7 * n),
        'm' => format_ymd(add_months(today, n)?),
        'y' => format_ymd(add_months(today, 12 * n)?),
        _ => return None,
    };
    Some(out)
}

/// Reads a date as people type it and returns an RFC 3339 date or date-time.
///
/// Accepts (case-insensitive) `today`, `tomorrow`, `yesterday`; a weekday
/// (`monday`, `mon`, optionally after `next`), meaning the next such day
/// strictly after `today`; offsets `+3d`, `+2w`, `+1m`, `+1y`, `-1d` (a month
/// step clamps to the month's end, so 31 January `+1m` is 28 or 29 February);
/// `eow` (the coming Sunday, today if it is Sunday), `eom` (the last day of
/// this month); an ISO date `2026-12-01`; and an RFC 3339 date-time, returned
/// unchanged once valid.
pub fn parse_date(text: &str, today: Ymd) -> Result<String, String> {
    let trimmed = text.trim();
    let word = trimmed.to_lowercase();
    let days = date::days_from_civil(today.0, today.1, today.2);
    let relative = match word.as_str() {
        "today" => Some(days),
        "tomorrow" => Some(days + 1),
        "yesterday" => Some(days - 1),
        "eow" => Some(days + (6 - weekday(days))),
        "eom" => Some(date::days_from_civil(
            today.0,
            today.1,
            date::days_in_month(today.0, today.1),
        )),
        _ => {
            let name = word.strip_prefix("next ").map_or(word.as_str(), str::trim);
            weekday_index(name).map(|target| {
                let ahead = (target - weekday(days)).rem_euclid(7);
                days + if ahead == 0 { 7 } else { ahead }
            })
        }
    };
    if let Some(d) = relative {
        return Ok(from_days(d));
    }
    if let Some(out) = offset(today, &word) {
        return Ok(out);
    }
    // Something that starts like a date gets the validator's precise reason.
    let b = trimmed.as_bytes();
    if b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return match date::validate(trimmed) {
            Ok(()) => Ok(trimmed.to_owned()),
            Err(reason) => Err(format!("cannot read {trimmed:?} as a date: {reason}")),
        };
    }
    Err(format!("cannot read {trimmed:?} as a date; {DATE_FORMS}"))
}

/// Reads a priority: `high`, `medium`, `low`, `none`, or `h`, `m`, `l`, `n` (any case).
pub fn parse_priority(text: &str) -> Result<Priority, String> {
    match text.trim().to_lowercase().as_str() {
        "high" | "h" => Ok(Priority::High),
        "medium" | "med" | "m" => Ok(Priority::Medium),
        "low" | "l" => Ok(Priority::Low),
        "none" | "n" => Ok(Priority::None),
        _ => Err(format!(
            "{:?} is not a priority; use high, medium, low or none (or h, m, l, n)",
            text.trim()
        )),
    }
}

/// Reads a task status: `todo`, `doing`, `done`, `cancelled` (any case; `canceled` too).
pub fn parse_status(text: &str) -> Result<Status, String> {
    match text.trim().to_lowercase().as_str() {
        "todo" => Ok(Status::Todo),
        "doing" => Ok(Status::Doing),
        "done" => Ok(Status::Done),
        "cancelled" | "canceled" => Ok(Status::Cancelled),
        _ => Err(format!(
            "{:?} is not a status; use todo, doing, done or cancelled",
            text.trim()
        )),
    }
}

/// A quick-add line taken apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuickAdd {
    /// The remaining words, joined by single spaces.
    pub title: String,
    /// `+tag` tokens, in order, without the `+`, without duplicates.
    pub tags: Vec<String>,
    /// `due:DATE`, as an RFC 3339 date or date-time.
    pub due: Option<String>,
    /// `sched:DATE` (or `scheduled:DATE`).
    pub scheduled: Option<String>,
    /// `pri:P` (or `p:P`, `priority:P`).
    pub priority: Option<Priority>,
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("{name} is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

/// Takes a quick-add line apart: title words plus inline tokens.
///
/// Tokens are whole words: `+tag`, `due:DATE`, `sched:DATE` (`scheduled:`),
/// `pri:P` (`p:`, `priority:`), with keys in any case and values as
/// [`parse_date`] and [`parse_priority`] read them. Any other word is part of
/// the title; a leading backslash keeps a word literal (`\+1` is the title
/// word `+1`). A token given twice, a bad value or an empty title is an error.
pub fn parse_quick_add(line: &str, today: Ymd) -> Result<QuickAdd, String> {
    let mut out = QuickAdd::default();
    let mut words: Vec<&str> = Vec::new();
    for word in line.split_whitespace() {
        if let Some(literal) = word.strip_prefix('\\') {
            if !literal.is_empty() {
                words.push(literal);
            }
            continue;
        }
        if let Some(tag) = word.strip_prefix('+') {
            if tag.is_empty() || tag.starts_with('+') {
                words.push(word);
            } else if !out.tags.iter().any(|t| t == tag) {
                out.tags.push(tag.to_owned());
            }
            continue;
        }
        let Some((key, value)) = word.split_once(':') else {
            words.push(word);
            continue;
        };
        let key = key.to_lowercase();
        let needs_value = |what: &str| {
            if value.is_empty() {
                Err(format!("{key}: needs {what}, as in {key}:tomorrow"))
            } else {
                Ok(())
            }
        };
        match key.as_str() {
            "due" => {
                needs_value("a date")?;
                let d = parse_date(value, today)?;
                set_once(&mut out.due, d, "due:")?;
            }
            "sched" | "scheduled" => {
                needs_value("a date")?;
                let d = parse_date(value, today)?;
                set_once(&mut out.scheduled, d, "sched:")?;
            }
            "pri" | "p" | "priority" => {
                if value.is_empty() {
                    return Err(format!("{key}: needs a priority, as in {key}:high"));
                }
                set_once(&mut out.priority, parse_priority(value)?, "pri:")?;
            }
            _ => words.push(word),
        }
    }
    out.title = words.join(" ");
    if out.title.is_empty() {
        return Err(
            "the title is empty: give some words besides +tags and due:, sched: or pri: tokens"
                .into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tuesday, 24 November 2026.
    const TODAY: Ymd = (2026, 11, 24);

    fn check(input: &str, expected: &str) {
        assert_eq!(
            parse_date(input, TODAY).as_deref(),
            Ok(expected),
            "{input:?}"
        );
    }

    fn check_err(input: &str, expected: &str) {
        assert_eq!(
            parse_date(input, TODAY),
            Err(expected.to_owned()),
            "{input:?}"
        );
    }

    #[test]
    fn relative_words() {
        check("today", "2026-11-24");
        check("TODAY", "2026-11-24");
        check(" tomorrow ", "2026-11-25");
        check("Yesterday", "2026-11-23");
        check("eow", "2026-11-29");
        check("eom", "2026-11-30");
    }

    #[test]
    fn weekdays_are_strictly_after_today() {
        check("wednesday", "2026-11-25");
        check("wed", "2026-11-25");
        check("thu", "2026-11-26");
        check("thurs", "2026-11-26");
        check("fri", "2026-11-27");
        check("Sat", "2026-11-28");
        check("sunday", "2026-11-29");
        check("mon", "2026-11-30");
        // Today is a Tuesday: "tuesday" is next week's.
        check("tuesday", "2026-12-01");
        check("tue", "2026-12-01");
        check("next monday", "2026-11-30");
        check("Next  Fri", "2026-11-27");
    }

    #[test]
    fn offsets() {
        check("+0d", "2026-11-24");
        check("+3d", "2026-11-27");
        check("3d", "2026-11-27");
        check("-1d", "2026-11-23");
        check("+10d", "2026-12-04");
        check("+2w", "2026-12-08");
        check("-1w", "2026-11-17");
        check("+1m", "2026-12-24");
        check("+2m", "2027-01-24");
        check("-11m", "2025-12-24");
        check("+1y", "2027-11-24");
        check("+400d", "2027-12-29");
    }

    #[test]
    fn months_clamp_to_the_month_end() {
        let jan31 = (2027, 1, 31);
        assert_eq!(parse_date("+1m", jan31).unwrap(), "2027-02-28");
        assert_eq!(parse_date("+1m", (2028, 1, 31)).unwrap(), "2028-02-29");
        assert_eq!(parse_date("+3m", jan31).unwrap(), "2027-04-30");
        assert_eq!(parse_date("-1m", (2027, 3, 31)).unwrap(), "2027-02-28");
        assert_eq!(parse_date("+1y", (2028, 2, 29)).unwrap(), "2029-02-28");
        assert_eq!(parse_date("eom", (2028, 2, 3)).unwrap(), "2028-02-29");
        assert_eq!(
            parse_date("tomorrow", (2026, 12, 31)).unwrap(),
            "2027-01-01"
        );
        // Sunday: the end of the week is today.
        assert_eq!(parse_date("eow", (2026, 11, 29)).unwrap(), "2026-11-29");
    }

    #[test]
    fn iso_forms_pass_through_unchanged() {
        check("2026-12-01", "2026-12-01");
        check("2028-02-29", "2028-02-29");
        check("2026-12-01T09:30:00+01:00", "2026-12-01T09:30:00+01:00");
        check("2026-12-01T09:30:00Z", "2026-12-01T09:30:00Z");
        check("2026-12-01t09:30:00.5z", "2026-12-01t09:30:00.5z");
    }

    #[test]
    fn errors_name_the_accepted_forms() {
        check_err(
            "someday",
            "cannot read \"someday\" as a date; use today, tomorrow, yesterday, a weekday \
             (mon or monday), +3d, +2w, +1m, -1d, eow, eom, YYYY-MM-DD or an RFC 3339 date-time",
        );
        check_err(
            "2026-13-01",
            "cannot read \"2026-13-01\" as a date: the month must be 01 to 12",
        );
        check_err(
            "2026-02-29",
            "cannot read \"2026-02-29\" as a date: the day does not exist in that month",
        );
        check_err(
            "2026-12-01T09:30",
            "cannot read \"2026-12-01T09:30\" as a date: expected a time as HH:MM:SS followed by Z or an offset",
        );
        for bad in [
            "",
            "+",
            "+d",
            "+3x",
            "3",
            "next",
            "next week",
            "mond",
            "+999999d",
            "1.5d",
            "+-1d",
        ] {
            assert!(parse_date(bad, TODAY).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn priorities_and_statuses() {
        for (text, p) in [
            ("high", Priority::High),
            ("H", Priority::High),
            ("medium", Priority::Medium),
            ("m", Priority::Medium),
            ("Low", Priority::Low),
            ("none", Priority::None),
            ("n", Priority::None),
        ] {
            assert_eq!(parse_priority(text), Ok(p), "{text}");
        }
        assert_eq!(
            parse_priority("urgent"),
            Err(
                "\"urgent\" is not a priority; use high, medium, low or none (or h, m, l, n)"
                    .into()
            )
        );
        assert_eq!(parse_status("Doing"), Ok(Status::Doing));
        assert_eq!(parse_status("canceled"), Ok(Status::Cancelled));
        assert_eq!(
            parse_status("open"),
            Err("\"open\" is not a status; use todo, doing, done or cancelled".into())
        );
    }

    fn quick(title: &str) -> QuickAdd {
        QuickAdd {
            title: title.into(),
            ..QuickAdd::default()
        }
    }

    fn check_quick(input: &str, expected: QuickAdd) {
        assert_eq!(parse_quick_add(input, TODAY), Ok(expected), "{input:?}");
    }

    fn check_quick_err(input: &str, expected: &str) {
        assert_eq!(
            parse_quick_add(input, TODAY),
            Err(expected.to_owned()),
            "{input:?}"
        );
    }

    #[test]
    fn quick_add_lines() {
        check_quick("Buy milk", quick("Buy milk"));
        check_quick("  Buy   milk  ", quick("Buy milk"));
        check_quick(
            "Buy milk +home due:tomorrow pri:high",
            QuickAdd {
                tags: vec!["home".into()],
                due: Some("2026-11-25".into()),
                priority: Some(Priority::High),
                ..quick("Buy milk")
            },
        );
        check_quick(
            "+work Call Bob sched:fri p:m +phone +work about the invoice",
            QuickAdd {
                tags: vec!["work".into(), "phone".into()],
                scheduled: Some("2026-11-27".into()),
                priority: Some(Priority::Medium),
                ..quick("Call Bob about the invoice")
            },
        );
        check_quick(
            "Ship DUE:2026-12-01T09:00:00Z Scheduled:+1w Priority:low",
            QuickAdd {
                due: Some("2026-12-01T09:00:00Z".into()),
                scheduled: Some("2026-12-01".into()),
                priority: Some(Priority::Low),
                ..quick("Ship")
            },
        );
        // Words that only look like tokens stay in the title.
        check_quick(
            "Read https://example.org re: C++ + notes",
            quick("Read https://example.org re: C++ + notes"),
        );
        check_quick("Vote \\+1 on \\due:friday", quick("Vote +1 on due:friday"));
        check_quick("a ++b", quick("a ++b"));
    }

    #[test]
    fn quick_add_errors() {
        check_quick_err(
            "+home due:tomorrow",
            "the title is empty: give some words besides +tags and due:, sched: or pri: tokens",
        );
        check_quick_err(
            "",
            "the title is empty: give some words besides +tags and due:, sched: or pri: tokens",
        );
        check_quick_err("Pay due:", "due: needs a date, as in due:tomorrow");
        check_quick_err("Pay p:", "p: needs a priority, as in p:high");
        check_quick_err(
            "Pay due:someday",
            "cannot read \"someday\" as a date; use today, tomorrow, yesterday, a weekday \
             (mon or monday), +3d, +2w, +1m, -1d, eow, eom, YYYY-MM-DD or an RFC 3339 date-time",
        );
        check_quick_err("Pay due:mon due:tue", "due: is given twice");
        check_quick_err("Pay p:h pri:l", "pri: is given twice");
        check_quick_err(
            "Pay pri:urgent",
            "\"urgent\" is not a priority; use high, medium, low or none (or h, m, l, n)",
        );
    }
}
