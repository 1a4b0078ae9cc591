//! Human output: the task table, a node's detail view, the daemon's status,
//! and the one-line confirmations of each verb.
//!
//! Every function here is pure: it takes nodes (or `DaemonInfo`) plus a
//! [`Now`] that pins the local date, instant and time zone, and returns the
//! text. Nothing here writes, reads the clock or talks to the daemon, so each
//! layout is pinned by snapshot tests. `--json` output needs no code here:
//! it is the wire types serialized as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use heph_core::input::Ymd;
use heph_core::rpc::DaemonInfo;
use heph_core::{Kind, Node, NodeId, Priority, Status, date};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The moment a command runs at, as output needs it.
#[derive(Debug, Clone)]
pub struct Now {
    /// The local calendar date.
    pub today: Ymd,
    pub instant: Timestamp,
    pub tz: TimeZone,
}

impl Now {
    /// The real local time.
    pub fn local() -> Self {
        Self::at(Timestamp::now(), TimeZone::system())
    }

    /// A fixed instant in a fixed zone (tests).
    pub fn at(instant: Timestamp, tz: TimeZone) -> Self {
        let d = instant.to_zoned(tz.clone()).date();
        Self {
            today: (
                i64::from(d.year()),
                d.month().unsigned_abs().into(),
                d.day().unsigned_abs().into(),
            ),
            instant,
            tz,
        }
    }

    fn today_key(&self) -> String {
        let (y, m, d) = self.today;
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Whether an open task's `due` has passed: a date once its day is over,
    /// a date-time once its instant is.
    pub fn is_overdue(&self, node: &Node) -> bool {
        if node.deleted || !matches!(node.status, Some(Status::Todo | Status::Doing)) {
            return false;
        }
        let Some(key) = node.due_key() else {
            return false;
        };
        if key.len() == 10 {
            key < self.today_key()
        } else {
            date::sort_key(&self.instant.to_string()).is_some_and(|now| key < now)
        }
    }

    /// Unix milliseconds (an HLC's wall time) as local `YYYY-MM-DD HH:MM:SS ±HH:MM`.
    pub fn local_time(&self, ms: u64) -> String {
        i64::try_from(ms)
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(|t| {
                t.to_zoned(self.tz.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            })
            .unwrap_or_else(|| format!("{ms} ms"))
    }

    /// A `due`/`scheduled` value for a table: dates as they are, date-times in local time.
    pub fn when(&self, value: &str) -> String {
        if value.len() == 10 {
            return value.to_owned();
        }
        match value.parse::<Timestamp>() {
            Ok(t) => t
                .to_zoned(self.tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string(),
            Err(_) => value.to_owned(),
        }
    }
}

/// The first 8 characters of an id: what tables show and prefixes usually need.
pub fn short_id(id: &NodeId) -> &str {
    &id.as_str()[..8]
}

/// The title, or a placeholder for a node whose title has not arrived yet.
pub fn title(node: &Node) -> &str {
    node.title.as_deref().unwrap_or("(untitled)")
}

/// The agenda order: overdue first, then by due (undated last), then
/// priority high → none, then most recently updated.
pub fn sort_nodes(nodes: &mut [Node], now: &Now) {
    nodes.sort_by_cached_key(|n| {
        (
            !now.is_overdue(n),
            n.due_key().is_none(),
            n.due_key(),
            std::cmp::Reverse(n.priority),
            std::cmp::Reverse(n.updated),
        )
    });
}

fn priority_word(p: Priority) -> &'static str {
    match p {
        Priority::None => "",
        other => other.as_str(),
    }
}

fn status_word(node: &Node) -> &'static str {
    if node.deleted {
        return "deleted";
    }
    match (node.kind, node.status) {
        (Some(Kind::Note), _) => "note",
        (_, Some(s)) => s.as_str(),
        (_, None) => "",
    }
}

fn tags_text(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("+{t}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn title_with_tags(node: &Node) -> String {
    let tags = tags_text(&node.tags);
    if tags.is_empty() {
        title(node).to_owned()
    } else {
        format!("{} {tags}", title(node))
    }
}

/// Lays out rows of cells in left-aligned columns two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The `heph list` table, in the order given (see [`sort_nodes`]).
pub fn list_table(nodes: &[Node], now: &Now) -> String {
    let mut rows = vec![vec![
        "ID".to_owned(),
        "PRI".to_owned(),
        "DUE".to_owned(),
        "STATUS".to_owned(),
        "TITLE".to_owned(),
    ]];
    for node in nodes {
        let due = match &node.due {
            Some(d) if now.is_overdue(node) => format!("{} overdue", now.when(d)),
            Some(d) => now.when(d),
            None => String::new(),
        };
        rows.push(vec![
            short_id(&node.id).to_owned(),
            priority_word(node.priority).to_owned(),
            due,
            status_word(node).to_owned(),
            title_with_tags(node),
        ]);
    }
    table(&rows)
}

/// What `heph list` says on stderr when nothing matched.
pub fn empty_list_message(default_filter: bool) -> &'static str {
    if default_filter {
        "no open tasks (heph add TITLE adds one)"
    } else {
        "nothing matches"
    }
}

/// `6f1c0a9e  Buy milk +home`: a node in one line.
pub fn node_line(node: &Node) -> String {
    format!("{}  {}", short_id(&node.id), title_with_tags(node))
}

/// The confirmation of `add`/`note`: `added task 6f1c0a9e  Buy milk +home (due 2026-11-25, high)`.
pub fn added(node: &Node, now: &Now) -> String {
    let kind = match node.kind {
        Some(Kind::Note) => "note",
        _ => "task",
    };
    let mut facts = Vec::new();
    if let Some(due) = &node.due {
        facts.push(format!("due {}", now.when(due)));
    }
    if let Some(s) = &node.scheduled {
        facts.push(format!("scheduled {}", now.when(s)));
    }
    if node.priority != Priority::None {
        facts.push(format!("{} priority", node.priority.as_str()));
    }
    let facts = if facts.is_empty() {
        String::new()
    } else {
        format!(" ({})", facts.join(", "))
    };
    format!("added {kind} {}{facts}\n", node_line(node))
}

/// `verb 6f1c0a9e  Title +tags`, one line: the confirmation of edit, done, rm, tag.
pub fn changed(verb: &str, node: &Node) -> String {
    format!("{verb} {}\n", node_line(node))
}

/// The confirmation of `heph link`.
pub fn linked(node: &Node, rel: &str, target: &str, removed: bool) -> String {
    let verb = if removed { "unlinked" } else { "linked" };
    format!("{verb} {} {rel} {target}\n", short_id(&node.id))
}

/// The `heph show` view. `titles` maps the parent's and linked nodes' ids to
/// their titles, when they could be read.
pub fn node_detail(node: &Node, titles: &BTreeMap<NodeId, String>, now: &Now) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row = |key: &str, value: String| rows.push(vec![key.to_owned(), value]);
    let related = |id: &NodeId| match titles.get(id) {
        Some(t) => format!("{}  {t}", short_id(id)),
        None => id.to_string(),
    };
    row("id", node.id.to_string());
    row(
        "kind",
        node.kind.map_or("(unknown)", Kind::as_str).to_owned(),
    );
    if let Some(s) = node.status {
        row("status", s.as_str().to_owned());
    }
    row("priority", node.priority.as_str().to_owned());
    if let Some(d) = &node.due {
        let mark = if now.is_overdue(node) {
            " (overdue)"
        } else {
            ""
        };
        row("due", format!("{d}{mark}"));
    }
    if let Some(s) = &node.scheduled {
        row("scheduled", s.clone());
    }
    if let Some(p) = &node.parent {
        row("parent", related(p));
    }
    if !node.tags.is_empty() {
        row("tags", tags_text(&node.tags));
    }
    for (i, link) in node.links.iter().enumerate() {
        let key = if i == 0 { "links" } else { "" };
        row(key, format!("{} {}", link.rel, related(&link.target)));
    }
    row("created", now.local_time(node.created.wall_ms));
    row("updated", now.local_time(node.updated.wall_ms));
    if node.deleted {
        row("deleted", "yes (heph list --deleted shows it)".to_owned());
    }
    for (field, value) in &node.extra {
        row(field, value.to_string());
    }
    let mut out = format!("{}\n", title(node));
    out.push_str(&table(&rows));
    if !node.body.is_empty() {
        out.push('\n');
        out.push_str(node.body.trim_end());
        out.push('\n');
    }
    out
}

/// A duration in whole units: `45s`, `12m`, `3h 5m`, `2d 4h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The `heph daemon status` view. `service` names an installed unit, if any.
pub fn daemon_status(info: &DaemonInfo, now: &Now, service: Option<&str>) -> String {
    let now_ms = u64::try_from(now.instant.as_millisecond()).unwrap_or(0);
    let up = duration(now_ms.saturating_sub(info.started_ms));
    let mut rows = vec![
        vec!["version".to_owned(), info.version.clone()],
        vec!["mode".to_owned(), info.mode.clone()],
        vec!["socket".to_owned(), info.socket.clone()],
        vec!["db".to_owned(), info.db.clone()],
        vec!["replica".to_owned(), info.replica_id.clone()],
        vec![
            "started".to_owned(),
            format!("{} (up {up})", now.local_time(info.started_ms)),
        ],
        vec![
            "ops".to_owned(),
            format!("{} (last seq {})", info.ops, info.last_seq),
        ],
        vec!["schema".to_owned(), info.schema_version.to_string()],
    ];
    if let Some(service) = service {
        rows.push(vec!["service".to_owned(), service.to_owned()]);
    }
    let mut out = String::new();
    let _ = writeln!(out, "the heph daemon is running (pid {})", info.pid);
    out.push_str(&table(&rows));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use heph_core::{Hlc, Link, ReplicaId};

    /// Tuesday 2026-11-24, 10:00 in UTC+01:00.
    fn now() -> Now {
        Now::at(
            "2026-11-24T09:00:00Z".parse().unwrap(),
            TimeZone::fixed(jiff::tz::offset(1)),
        )
    }

    fn id(n: u8) -> NodeId {
        NodeId::from_random_bytes([n.wrapping_mul(17); 16])
    }

    fn hlc(wall_ms: u64) -> Hlc {
        Hlc {
            wall_ms,
            counter: 0,
            replica: ReplicaId([7; 16]),
        }
    }

    fn task(n: u8, title: &str) -> Node {
        Node {
            kind: Some(Kind::Task),
            title: Some(title.to_owned()),
            status: Some(Status::Todo),
            created: hlc(1_795_000_000_000),
            updated: hlc(1_795_000_000_000 + u64::from(n)),
            ..Node::empty(id(n))
        }
    }

    fn agenda() -> Vec<Node> {
        vec![
            Node {
                tags: vec!["home".into()],
                priority: Priority::High,
                due: Some("2026-11-25".into()),
                ..task(1, "Buy milk")
            },
            Node {
                priority: Priority::Low,
                ..task(2, "Read a book")
            },
            Node {
                due: Some("2026-11-20".into()),
                status: Some(Status::Doing),
                ..task(3, "File taxes")
            },
            Node {
                due: Some("2026-11-24T08:30:00Z".into()),
                ..task(4, "Call the bank")
            },
            Node {
                due: Some("2026-11-24T12:00:00+01:00".into()),
                priority: Priority::Medium,
                ..task(5, "Lunch with Ana")
            },
            Node {
                priority: Priority::High,
                ..task(6, "Fix the bike")
            },
            Node {
                due: Some("2026-11-25".into()),
                tags: vec!["work".into(), "q4".into()],
                ..task(7, "Send the report")
            },
            Node {
                kind: Some(Kind::Note),
                status: None,
                ..task(8, "Ideas")
            },
        ]
    }

    #[test]
    fn list_is_sorted_overdue_first_then_due_then_priority() {
        let now = now();
        let mut nodes = agenda();
        sort_nodes(&mut nodes, &now);
        insta::assert_snapshot!(list_table(&nodes, &now), @"
        ID        PRI     DUE                       STATUS  TITLE
        33333333          2026-11-20 overdue        doing   File taxes
        44444444          2026-11-24 09:30 overdue  todo    Call the bank
        55555555  medium  2026-11-24 12:00          todo    Lunch with Ana
        11111111  high    2026-11-25                todo    Buy milk +home
        77777777          2026-11-25                todo    Send the report +work +q4
        66666666  high                              todo    Fix the bike
        22222222  low                               todo    Read a book
        88888888                                    note    Ideas
        ");
    }

    #[test]
    fn overdue_rules() {
        let now = now();
        let mut n = task(1, "x");
        let mut check = |due: &str, status: Status, expected: bool| {
            n.due = Some(due.into());
            n.status = Some(status);
            assert_eq!(now.is_overdue(&n), expected, "{due} {status:?}");
        };
        check("2026-11-23", Status::Todo, true);
        check("2026-11-24", Status::Todo, false);
        check("2026-11-24T08:59:59Z", Status::Doing, true);
        check("2026-11-24T09:00:01Z", Status::Todo, false);
        check("2026-11-23", Status::Done, false);
        check("2026-11-23", Status::Cancelled, false);
    }

    #[test]
    fn detail_view() {
        let now = now();
        let parent = task(9, "Groceries");
        let other = id(10);
        let node = Node {
            body: "Semi-skimmed.\n\nTwo litres.\n".into(),
            priority: Priority::High,
            due: Some("2026-11-23".into()),
            scheduled: Some("2026-11-22T18:00:00+01:00".into()),
            parent: Some(parent.id),
            tags: vec!["errand".into(), "home".into()],
            links: vec![
                Link {
                    rel: "blocks".into(),
                    target: parent.id,
                },
                Link {
                    rel: "relates".into(),
                    target: other,
                },
            ],
            extra: BTreeMap::from([("colour".to_owned(), serde_json::json!("blue"))]),
            ..task(1, "Buy milk")
        };
        let titles = BTreeMap::from([(parent.id, "Groceries".to_owned())]);
        insta::assert_snapshot!(node_detail(&node, &titles, &now), @r#"
        Buy milk
        id         11111111-1111-4111-9111-111111111111
        kind       task
        status     todo
        priority   high
        due        2026-11-23 (overdue)
        scheduled  2026-11-22T18:00:00+01:00
        parent     99999999  Groceries
        tags       +errand +home
        links      blocks 99999999  Groceries
                   relates aaaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaaa
        created    2026-11-18 12:06:40 +01:00
        updated    2026-11-18 12:06:40 +01:00
        colour     "blue"

        Semi-skimmed.

        Two litres.
        "#);
    }

    #[test]
    fn a_bare_note_in_detail() {
        let node = Node {
            kind: Some(Kind::Note),
            status: None,
            title: None,
            deleted: true,
            ..task(2, "")
        };
        insta::assert_snapshot!(node_detail(&node, &BTreeMap::new(), &now()), @"
        (untitled)
        id        22222222-2222-4222-a222-222222222222
        kind      note
        priority  none
        created   2026-11-18 12:06:40 +01:00
        updated   2026-11-18 12:06:40 +01:00
        deleted   yes (heph list --deleted shows it)
        ");
    }

    #[test]
    fn confirmations() {
        let now = now();
        let nodes = agenda();
        insta::assert_snapshot!(added(&nodes[0], &now), @"added task 11111111  Buy milk +home (due 2026-11-25, high priority)");
        insta::assert_snapshot!(added(&nodes[1], &now), @"added task 22222222  Read a book (low priority)");
        insta::assert_snapshot!(added(&nodes[4], &now), @"added task 55555555  Lunch with Ana (due 2026-11-24 12:00, medium priority)");
        insta::assert_snapshot!(added(&nodes[7], &now), @"added note 88888888  Ideas");
        insta::assert_snapshot!(changed("done", &nodes[6]), @"done 77777777  Send the report +work +q4");
        insta::assert_snapshot!(linked(&nodes[0], "blocks", "33333333", false), @"linked 11111111 blocks 33333333");
    }

    #[test]
    fn daemon_status_view() {
        let info = DaemonInfo {
            version: "0.1.0".into(),
            pid: 4242,
            mode: "local".into(),
            db: "/home/u/.local/share/heph/heph.db".into(),
            socket: "/run/user/1000/heph/hephd.sock".into(),
            replica_id: "6f1c0a9e4b2d4c1f8a3e5b7d9c0e1f2a".into(),
            // 3 h 5 min before now().
            started_ms: 1_795_510_800_000 - 11_100_000,
            ops: 1234,
            last_seq: 1234,
            schema_version: 1,
        };
        insta::assert_snapshot!(
            daemon_status(&info, &now(), Some("systemd user unit /home/u/.config/systemd/user/hephd.service")),
            @"
        the heph daemon is running (pid 4242)
        version  0.1.0
        mode     local
        socket   /run/user/1000/heph/hephd.sock
        db       /home/u/.local/share/heph/heph.db
        replica  6f1c0a9e4b2d4c1f8a3e5b7d9c0e1f2a
        started  2026-11-24 06:55:00 +01:00 (up 3h 5m)
        ops      1234 (last seq 1234)
        schema   1
        service  systemd user unit /home/u/.config/systemd/user/hephd.service
        "
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(999), "0s");
        assert_eq!(duration(59_000), "59s");
        assert_eq!(duration(61_000), "1m");
        assert_eq!(duration(3_720_000), "1h 2m");
        assert_eq!(duration(90_000_000), "1d 1h");
    }
}
