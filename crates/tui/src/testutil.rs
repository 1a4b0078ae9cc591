//! Fixtures for the unit and rendering tests: nodes with fixed ids and
//! clocks, a fixed "now", and an [`App`] with a small day's agenda.
//! Compiled only for tests.

use heph_core::rpc::{AuthStatus, SyncStatus};
use heph_core::{Hlc, Kind, Node, NodeId, Priority, ReplicaId, Status};
use jiff::tz::TimeZone;

use crate::agenda::Now;
use crate::app::{Action, App, Daemon};

/// Tuesday 2026-11-24 12:00:00 UTC.
pub const NOW_MS: i64 = 1_795_521_600_000;

pub fn now() -> Now {
    Now {
        ms: NOW_MS,
        tz: TimeZone::UTC,
    }
}

/// The id `0000000i-…` (distinct per `i`, and easy to type as a prefix).
pub fn id(i: u8) -> NodeId {
    NodeId::parse(&format!(
        "{i:02x}{i:02x}{i:02x}{i:02x}-0000-4000-8000-0000000000{i:02x}"
    ))
    .unwrap()
}

/// A todo task with title `title`, created at `i` ms past a fixed time.
pub fn node(i: u8, title: &str) -> Node {
    let hlc = Hlc {
        wall_ms: 1_795_000_000_000 + u64::from(i),
        counter: 0,
        replica: ReplicaId([7; 16]),
    };
    Node {
        kind: Some(Kind::Task),
        title: Some(title.to_owned()),
        status: Some(Status::Todo),
        created: hlc,
        updated: hlc,
        ..Node::empty(id(i))
    }
}

/// A connected app at [`NOW_MS`] with `nodes` loaded and no hub configured.
pub fn app_with(nodes: Vec<Node>) -> App {
    let mut app = App::new(now(), true);
    let _ = crate::app::update(&mut app, Action::Resize(100, 30));
    let _ = crate::app::update(&mut app, Action::Connected);
    let _ = crate::app::update(&mut app, Action::Loaded(nodes));
    let _ = crate::app::update(
        &mut app,
        Action::Status {
            sync: Ok(local_sync()),
            auth: Ok(no_auth()),
        },
    );
    assert_eq!(app.daemon, Daemon::Up);
    app
}

pub fn local_sync() -> SyncStatus {
    SyncStatus {
        configured: false,
        message: "no hub is configured: this replica works offline and keeps every change locally"
            .into(),
        ..SyncStatus::default()
    }
}

pub fn no_auth() -> AuthStatus {
    AuthStatus {
        configured: false,
        state: "not_configured".into(),
        message: "no hub is configured, so no sign-in is needed".into(),
        ..AuthStatus::default()
    }
}

/// A day's agenda: overdue, today, upcoming, undated, done, and two notes.
pub fn sample_nodes() -> Vec<Node> {
    let mut out = Vec::new();
    let mut add = |i: u8, title: &str, f: &dyn Fn(&mut Node)| {
        let mut n = node(i, title);
        f(&mut n);
        out.push(n);
    };
    add(1, "Pay the electricity bill", &|n| {
        n.due = Some("2026-11-20".into());
        n.priority = Priority::High;
        n.tags = vec!["home".into()];
    });
    add(2, "Buy milk", &|n| {
        n.due = Some("2026-11-24".into());
        n.tags = vec!["errand".into(), "home".into()];
    });
    add(3, "Standup", &|n| {
        n.due = Some("2026-11-24T15:30:00Z".into());
        n.priority = Priority::Medium;
        n.status = Some(Status::Doing);
        n.tags = vec!["work".into()];
    });
    add(4, "Review the sync design", &|n| {
        n.due = Some("2026-11-27".into());
        n.priority = Priority::Low;
        n.tags = vec!["work".into()];
        n.body = "# Questions\n\n- Are **cursors** seqs?\n- See [the doc](https://example.org/sync)\n\n```\nheph sync --status\n```".into();
        n.links = vec![heph_core::Link {
            rel: "blocks".into(),
            target: id(5),
        }];
    });
    add(5, "Ship release 0.2", &|n| {
        n.due = Some("2026-12-10".into());
        n.priority = Priority::High;
    });
    add(6, "Read about CRDTs", &|_| {});
    add(7, "Renew passport", &|n| {
        n.status = Some(Status::Done);
    });
    add(8, "Packing list", &|n| {
        n.kind = Some(Kind::Note);
        n.status = None;
        n.body = "Charger, passport, socks".into();
    });
    add(9, "Oat milk brand", &|n| {
        n.kind = Some(Kind::Note);
        n.status = None;
        n.parent = Some(id(2));
    });
    out
}
