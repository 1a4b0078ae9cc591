//! The status line: the daemon/sync chip and the sign-in chip, derived from
//! `sync.status` and `auth.status` as last read, and "now".
//!
//! Each chip says the state and, when something is wrong, the command that
//! tells more or fixes it (`heph daemon start`, `heph sync --status`,
//! `heph auth status`). The full sentences and the exact `heph auth login …`
//! command are in the health popup (`s`).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::theme::{Severity, Theme};
use crate::app::{App, Daemon};

/// Auth states in which no one needs to act.
const SIGNED_IN: &[&str] = &["valid", "refresh_due", "refreshing"];

/// One chip: its text and how serious it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chip {
    pub text: String,
    pub severity: Severity,
}

fn chip(text: impl Into<String>, severity: Severity) -> Chip {
    Chip {
        text: text.into(),
        severity,
    }
}

/// `4s`, `3m`, `2h`, `5d`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The daemon and sync chip.
pub fn sync_chip(app: &App) -> Option<Chip> {
    match &app.daemon {
        Daemon::Down { .. } => {
            return Some(chip(
                "✕ daemon not running · heph daemon start",
                Severity::Bad,
            ));
        }
        Daemon::Connecting => return Some(chip("… connecting", Severity::Neutral)),
        Daemon::Up => {}
    }
    let sync = app.sync.as_ref()?;
    if !sync.configured {
        return Some(chip("○ local only", Severity::Neutral));
    }
    let pending = match sync.pending_ops {
        0 => String::new(),
        n => format!(" · {n} pending"),
    };
    Some(if app.syncing {
        chip(format!("↻ syncing{pending}"), Severity::Busy)
    } else if sync.last_error.is_some() {
        chip(
            format!("✕ hub unreachable{pending} · heph sync --status"),
            Severity::Bad,
        )
    } else if let Some(t) = sync.last_success_ms {
        chip(
            format!("● synced {} ago{pending}", age(app.now.ms - t as i64)),
            Severity::Good,
        )
    } else {
        chip(format!("○ not synced yet{pending}"), Severity::Neutral)
    })
}

/// The sign-in chip; none when no sign-in is configured or the daemon is down.
pub fn auth_chip(app: &App) -> Option<Chip> {
    if app.daemon != Daemon::Up {
        return None;
    }
    let auth = app.auth.as_ref().filter(|a| a.configured)?;
    Some(if auth.action_needed {
        chip("⚠ auth · heph auth status", Severity::Warn)
    } else if SIGNED_IN.contains(&auth.state.as_str()) {
        match &auth.subject {
            Some(who) => chip(format!("✓ signed in as {who}"), Severity::Good),
            None => chip("✓ signed in", Severity::Good),
        }
    } else {
        chip(
            format!("⚠ auth {} · heph auth status", auth.state.replace('_', " ")),
            Severity::Warn,
        )
    })
}

/// Draws the status line into `area` (one row).
pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut spans = vec![Span::raw(" ")];
    for c in [sync_chip(app), auth_chip(app)].into_iter().flatten() {
        spans.push(Span::styled(c.text, theme.chip(c.severity)));
        spans.push(Span::raw("   "));
    }
    let left = Line::from(spans);
    let help = Line::from(vec![
        Span::styled("s", theme.key()),
        Span::styled(" health  ", theme.dim()),
        Span::styled("?", theme.key()),
        Span::styled(" help ", theme.dim()),
    ]);
    let room = usize::from(area.width);
    frame.render_widget(left.clone(), area);
    if left.width() + help.width() <= room {
        let w = help.width() as u16;
        let right = Rect {
            x: area.x + area.width - w,
            width: w,
            ..area
        };
        frame.render_widget(help, right);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Action, update};
    use crate::testutil::{app_with, sample_nodes};
    use heph_core::rpc::{AuthStatus, SyncStatus};

    fn hub(f: impl FnOnce(&mut SyncStatus)) -> SyncStatus {
        let mut s = SyncStatus {
            configured: true,
            hub_url: Some("https://hub.example".into()),
            message: "synced".into(),
            ..SyncStatus::default()
        };
        f(&mut s);
        s
    }

    fn check_sync(sync: SyncStatus, syncing: bool, expected: &str) {
        let mut app = app_with(sample_nodes());
        app.sync = Some(sync);
        app.syncing = syncing;
        assert_eq!(sync_chip(&app).unwrap().text, expected);
    }

    #[test]
    fn sync_chips() {
        let now = crate::testutil::NOW_MS as u64;
        check_sync(crate::testutil::local_sync(), false, "○ local only");
        check_sync(
            hub(|s| s.last_success_ms = Some(now - 4_000)),
            false,
            "● synced 4s ago",
        );
        check_sync(
            hub(|s| {
                s.last_success_ms = Some(now - 125_000);
                s.pending_ops = 3;
            }),
            false,
            "● synced 2m ago · 3 pending",
        );
        check_sync(hub(|_| {}), false, "○ not synced yet");
        check_sync(hub(|_| {}), true, "↻ syncing");
        check_sync(
            hub(|s| {
                s.last_error = Some("cannot connect to https://hub.example".into());
                s.pending_ops = 2;
            }),
            false,
            "✕ hub unreachable · 2 pending · heph sync --status",
        );
    }

    #[test]
    fn a_down_daemon_hides_the_rest() {
        let mut app = app_with(sample_nodes());
        update(
            &mut app,
            Action::Disconnected {
                reason: "gone".into(),
            },
        );
        assert_eq!(
            sync_chip(&app),
            Some(chip(
                "✕ daemon not running · heph daemon start",
                Severity::Bad
            ))
        );
        assert_eq!(auth_chip(&app), None);
    }

    fn check_auth(state: &str, subject: Option<&str>, action: bool, expected: Option<&str>) {
        let mut app = app_with(sample_nodes());
        app.auth = Some(AuthStatus {
            configured: state != "not_configured",
            state: state.into(),
            subject: subject.map(str::to_owned),
            action_needed: action,
            message: String::new(),
            hint: None,
            ..AuthStatus::default()
        });
        assert_eq!(
            auth_chip(&app).map(|c| c.text).as_deref(),
            expected,
            "{state}"
        );
    }

    #[test]
    fn auth_chips() {
        check_auth("not_configured", None, false, None);
        check_auth("valid", Some("alice"), false, Some("✓ signed in as alice"));
        check_auth("refreshing", None, false, Some("✓ signed in"));
        check_auth("needs_login", None, true, Some("⚠ auth · heph auth status"));
        // A spoke without tokens whose hub has not asked for one yet.
        check_auth(
            "not_signed_in",
            None,
            false,
            Some("⚠ auth not signed in · heph auth status"),
        );
        check_auth(
            "unreachable",
            Some("alice"),
            false,
            Some("⚠ auth unreachable · heph auth status"),
        );
    }

    #[test]
    fn ages() {
        for (ms, text) in [
            (0, "0s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (7_200_000, "2h"),
            (3 * 86_400_000, "3d"),
            (-5, "0s"),
        ] {
            assert_eq!(age(ms), text, "{ms}");
        }
    }
}
