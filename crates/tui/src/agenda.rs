//! What the lists show, derived from the loaded nodes: the agenda's
//! sections (overdue, today, upcoming, no date, done), the notes list, the
//! tag and text filters, and how a due date reads ("tomorrow", "3d ago").
//!
//! Pure functions of the nodes, the filters and a [`Now`]: nothing here
//! reads the clock or talks to the daemon, so `update` and the views derive
//! the same rows from the same state.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use heph_core::date;
use heph_core::{Kind, Node, NodeId, Status};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// "Now" as the agenda sees it: an instant and the local time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Now {
    pub ms: i64,
    pub tz: TimeZone,
}

impl Now {
    /// The instant, clamped into jiff's range.
    fn instant(&self) -> Timestamp {
        Timestamp::from_millisecond(self.ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Today's local date as `(year, month, day)`.
    pub fn today(&self) -> (i64, u32, u32) {
        let d = self.instant().to_zoned(self.tz.clone()).date();
        (
            i64::from(d.year()),
            d.month().unsigned_abs().into(),
            d.day().unsigned_abs().into(),
        )
    }

    fn today_days(&self) -> i64 {
        let (y, m, d) = self.today();
        date::days_from_civil(y, m, d)
    }
}

/// A `due` or `scheduled` value placed in local time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct When {
    /// Days since 1970-01-01 of the local date.
    days: i64,
    /// Local `HH:MM` for a date-time.
    time: Option<String>,
    /// For a date-time, whether its instant has passed.
    passed: bool,
}

fn when(value: &str, now: &Now) -> Option<When> {
    if value.len() == 10 {
        let (y, m, d) = (
            value[0..4].parse().ok()?,
            value[5..7].parse().ok()?,
            value[8..10].parse().ok()?,
        );
        return Some(When {
            days: date::days_from_civil(y, m, d),
            time: None,
            passed: false,
        });
    }
    let t: Timestamp = value.to_ascii_uppercase().parse().ok()?;
    let z = t.to_zoned(now.tz.clone());
    let d = z.date();
    Some(When {
        days: date::days_from_civil(
            i64::from(d.year()),
            d.month().unsigned_abs().into(),
            d.day().unsigned_abs().into(),
        ),
        time: Some(z.strftime("%H:%M").to_string()),
        passed: t < now.instant(),
    })
}

/// The agenda's sections, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Overdue,
    Today,
    Upcoming,
    NoDate,
    /// Done and cancelled tasks, shown only on request.
    Done,
    /// The notes view's single section.
    Notes,
}

impl Section {
    pub fn label(self) -> &'static str {
        match self {
            Section::Overdue => "Overdue",
            Section::Today => "Today",
            Section::Upcoming => "Upcoming",
            Section::NoDate => "No date",
            Section::Done => "Done",
            Section::Notes => "Notes",
        }
    }
}

/// Which list is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Agenda,
    Notes,
}

/// What narrows a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Case-insensitive (ASCII) substring of the title or body, as `node.list`'s `text`.
    pub text: String,
    /// Carries this tag.
    pub tag: Option<String>,
    /// Show done and cancelled tasks in a last section.
    pub show_done: bool,
}

impl Filter {
    pub fn matches(&self, node: &Node) -> bool {
        if let Some(tag) = &self.tag {
            if !node.tags.iter().any(|t| t == tag) {
                return false;
            }
        }
        let text = self.text.trim();
        if text.is_empty() {
            return true;
        }
        let needle = text.to_ascii_lowercase();
        let hit = |s: &str| s.to_ascii_lowercase().contains(&needle);
        node.title.as_deref().is_some_and(hit) || hit(&node.body)
    }
}

/// One line of a list: a section heading or a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Row<'a> {
    Header { section: Section, count: usize },
    Item { section: Section, node: &'a Node },
}

/// The section a task belongs in.
pub fn section(node: &Node, now: &Now) -> Section {
    if matches!(node.status, Some(Status::Done | Status::Cancelled)) {
        return Section::Done;
    }
    let Some(w) = node.due.as_deref().and_then(|d| when(d, now)) else {
        return Section::NoDate;
    };
    let today = now.today_days();
    if w.days < today || (w.days == today && w.passed) {
        Section::Overdue
    } else if w.days == today {
        Section::Today
    } else {
        Section::Upcoming
    }
}

fn is_note(node: &Node) -> bool {
    node.kind == Some(Kind::Note)
}

/// The rows of `view`: headings followed by their nodes, empty sections left out.
///
/// Within a section: priority high → none, then the earliest due, then
/// creation order. Notes: priority, then the most recently updated.
pub fn rows<'a>(
    nodes: &'a BTreeMap<NodeId, Node>,
    view: View,
    filter: &Filter,
    now: &Now,
) -> Vec<Row<'a>> {
    let mut groups: BTreeMap<Section, Vec<&Node>> = BTreeMap::new();
    for node in nodes.values() {
        if node.deleted || !filter.matches(node) {
            continue;
        }
        let section = match view {
            View::Notes if is_note(node) => Section::Notes,
            View::Agenda if !is_note(node) => section(node, now),
            _ => continue,
        };
        if section == Section::Done && !filter.show_done {
            continue;
        }
        groups.entry(section).or_default().push(node);
    }
    let mut out = Vec::new();
    for (section, mut list) in groups {
        if section == Section::Notes {
            list.sort_by(|a, b| {
                (Reverse(a.priority), Reverse(&a.updated), a.id).cmp(&(
                    Reverse(b.priority),
                    Reverse(&b.updated),
                    b.id,
                ))
            });
        } else {
            list.sort_by_cached_key(|n| {
                (
                    Reverse(n.priority),
                    n.due_key().is_none(),
                    n.due_key(),
                    n.created,
                    n.id,
                )
            });
        }
        out.push(Row::Header {
            section,
            count: list.len(),
        });
        out.extend(list.into_iter().map(|node| Row::Item { section, node }));
    }
    out
}

/// The node ids of `rows`, in order.
pub fn item_ids(rows: &[Row<'_>]) -> Vec<NodeId> {
    rows.iter()
        .filter_map(|r| match r {
            Row::Item { node, .. } => Some(node.id),
            Row::Header { .. } => None,
        })
        .collect()
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A due or scheduled value as a person reads it, relative to today:
/// `today`, `tomorrow`, `yesterday`, `3d ago`, `Fri`, `Dec 24`, `2027-01-03`,
/// with `HH:MM` after a date-time. The value itself when it cannot be read.
pub fn relative(value: &str, now: &Now) -> String {
    let Some(w) = when(value, now) else {
        return value.to_owned();
    };
    let today = now.today_days();
    let diff = w.days - today;
    let (y, m, d) = date::civil_from_days(w.days);
    let day = match diff {
        0 => "today".to_owned(),
        1 => "tomorrow".to_owned(),
        -1 => "yesterday".to_owned(),
        -13..=-2 => format!("{}d ago", -diff),
        2..=6 => WEEKDAYS[(w.days + 3).rem_euclid(7) as usize].to_owned(),
        _ if y == now.today().0 => format!("{} {d:02}", MONTHS[m as usize - 1]),
        _ => format!("{y:04}-{m:02}-{d:02}"),
    };
    match w.time {
        Some(t) => format!("{day} {t}"),
        None => day,
    }
}

/// Every tag on a live node with the number of live nodes carrying it, by name.
pub fn tag_counts(nodes: &BTreeMap<NodeId, Node>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for node in nodes.values().filter(|n| !n.deleted) {
        for tag in &node.tags {
            *counts.entry(tag).or_default() += 1;
        }
    }
    counts.into_iter().map(|(t, c)| (t.to_owned(), c)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{NOW_MS, node, now};

    fn check_relative(value: &str, expected: &str) {
        assert_eq!(relative(value, &now()), expected, "{value}");
    }

    #[test]
    fn dates_read_relative_to_today() {
        // Today is Tuesday 2026-11-24, 12:00 UTC.
        check_relative("2026-11-24", "today");
        check_relative("2026-11-25", "tomorrow");
        check_relative("2026-11-23", "yesterday");
        check_relative("2026-11-20", "4d ago");
        check_relative("2026-11-27", "Fri");
        check_relative("2026-12-24", "Dec 24");
        check_relative("2026-10-01", "Oct 01");
        check_relative("2027-01-03", "2027-01-03");
        check_relative("2026-11-24T09:30:00+01:00", "today 08:30");
        check_relative("2026-11-25t00:15:00z", "tomorrow 00:15");
        check_relative("garbage", "garbage");
    }

    #[test]
    fn tasks_fall_into_sections() {
        let n = now();
        let check = |due: Option<&str>, status: Status, expected: Section| {
            let mut t = node(1, "t");
            t.due = due.map(str::to_owned);
            t.status = Some(status);
            assert_eq!(section(&t, &n), expected, "{due:?} {status:?}");
        };
        check(Some("2026-11-23"), Status::Todo, Section::Overdue);
        check(Some("2026-11-24"), Status::Todo, Section::Today);
        check(
            Some("2026-11-24T11:59:00Z"),
            Status::Doing,
            Section::Overdue,
        );
        check(Some("2026-11-24T12:01:00Z"), Status::Todo, Section::Today);
        check(Some("2026-11-25"), Status::Todo, Section::Upcoming);
        check(None, Status::Todo, Section::NoDate);
        check(Some("2026-11-23"), Status::Done, Section::Done);
        check(None, Status::Cancelled, Section::Done);
        assert_eq!(NOW_MS % 86_400_000, 43_200_000, "noon UTC");
    }

    fn titles(rows: &[Row<'_>]) -> Vec<String> {
        rows.iter()
            .map(|r| match r {
                Row::Header { section, count } => format!("# {} {count}", section.label()),
                Row::Item { node, .. } => node.title.clone().unwrap(),
            })
            .collect()
    }

    #[test]
    fn the_agenda_sorts_by_priority_within_sections() {
        use heph_core::Priority as P;
        let mut nodes = BTreeMap::new();
        let mut add = |i: u8, title: &str, due: Option<&str>, p, status, kind| {
            let mut n = node(i, title);
            n.due = due.map(str::to_owned);
            n.priority = p;
            n.status = status;
            n.kind = Some(kind);
            nodes.insert(n.id, n);
        };
        add(
            1,
            "late low",
            Some("2026-11-01"),
            P::Low,
            Some(Status::Todo),
            Kind::Task,
        );
        add(
            2,
            "late high",
            Some("2026-11-20"),
            P::High,
            Some(Status::Todo),
            Kind::Task,
        );
        add(
            3,
            "today none",
            Some("2026-11-24"),
            P::None,
            Some(Status::Todo),
            Kind::Task,
        );
        add(
            4,
            "soon med",
            Some("2026-12-01"),
            P::Medium,
            Some(Status::Doing),
            Kind::Task,
        );
        add(
            5,
            "soon med earlier",
            Some("2026-11-28"),
            P::Medium,
            Some(Status::Todo),
            Kind::Task,
        );
        add(6, "undated", None, P::None, Some(Status::Todo), Kind::Task);
        add(7, "finished", None, P::High, Some(Status::Done), Kind::Task);
        add(8, "a note", None, P::None, None, Kind::Note);
        let n = now();
        let mut f = Filter::default();
        assert_eq!(
            titles(&rows(&nodes, View::Agenda, &f, &n)),
            [
                "# Overdue 2",
                "late high",
                "late low",
                "# Today 1",
                "today none",
                "# Upcoming 2",
                "soon med earlier",
                "soon med",
                "# No date 1",
                "undated"
            ]
        );
        f.show_done = true;
        let all = rows(&nodes, View::Agenda, &f, &n);
        assert_eq!(titles(&all)[10..], ["# Done 1", "finished"]);
        assert_eq!(
            titles(&rows(&nodes, View::Notes, &f, &n)),
            ["# Notes 1", "a note"]
        );
        f.text = "SOON".into();
        assert_eq!(
            titles(&rows(&nodes, View::Agenda, &f, &n)),
            ["# Upcoming 2", "soon med earlier", "soon med"]
        );
    }

    #[test]
    fn filters_match_tags_and_text_like_node_list() {
        let mut n = node(1, "Buy Milk");
        n.body = "at the corner shop".into();
        n.tags = vec!["home".into()];
        let check = |text: &str, tag: Option<&str>, expected: bool| {
            let f = Filter {
                text: text.into(),
                tag: tag.map(str::to_owned),
                show_done: false,
            };
            assert_eq!(f.matches(&n), expected, "{text:?} {tag:?}");
        };
        check("", None, true);
        check("milk", None, true);
        check("CORNER", None, true);
        check("bread", None, false);
        check("", Some("home"), true);
        check("milk", Some("work"), false);
    }

    #[test]
    fn tags_are_counted_over_live_nodes() {
        let mut nodes = BTreeMap::new();
        for (i, tags, deleted) in [
            (1, vec!["home", "work"], false),
            (2, vec!["home"], false),
            (3, vec!["home"], true),
        ] {
            let mut n = node(i, "x");
            n.tags = tags.into_iter().map(str::to_owned).collect();
            n.deleted = deleted;
            nodes.insert(n.id, n);
        }
        assert_eq!(
            tag_counts(&nodes),
            [("home".to_owned(), 2), ("work".to_owned(), 1)]
        );
    }
}
