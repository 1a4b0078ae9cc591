//! `heph sync` (run a sync round now) and `heph sync --status` (how sync
//! stands: last success, pending ops, hub seq, the last change of the hub's
//! log and what was re-sent after it, the real cause of the last failure). The daemon does the syncing; this asks it and reports.

use heph_core::rpc::{SyncStatus, method};

use crate::context::Ctx;
use crate::exit::{CliError, Exit};
use crate::output::{Now, duration};

/// `heph sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only report how sync stands; exits 1 when the last attempt failed
    #[arg(long)]
    pub status: bool,
}

/// The `--status` view.
pub fn status_text(s: &SyncStatus, now: &Now) -> String {
    let mut out = format!("{}\n", s.message);
    if !s.configured {
        return out;
    }
    let now_ms = u64::try_from(now.instant.as_millisecond()).unwrap_or(0);
    let row =
        |out: &mut String, key: &str, value: String| out.push_str(&format!("{key:<13}{value}\n"));
    if let Some(hub) = &s.hub_url {
        row(&mut out, "hub", hub.clone());
    }
    row(
        &mut out,
        "last success",
        match s.last_success_ms {
            Some(ms) => format!(
                "{} ago ({})",
                duration(now_ms.saturating_sub(ms)),
                now.local_time(ms)
            ),
            None => "not since the daemon started".into(),
        },
    );
    row(
        &mut out,
        "pending",
        format!("{} local ops not yet on the hub", s.pending_ops),
    );
    if let Some(seq) = s.hub_seq {
        row(&mut out, "hub seq", seq.to_string());
    }
    if let Some(c) = &s.hub_log_change {
        let when = format!(
            "{} ago ({})",
            duration(now_ms.saturating_sub(c.at_ms)),
            now.local_time(c.at_ms)
        );
        row(
            &mut out,
            "hub log",
            if c.done {
                format!(
                    "changed {when}; re-sent all {} ops this device held, {} of them new to the hub",
                    c.ops, c.accepted
                )
            } else {
                format!(
                    "changed {when}; re-sending all {} ops this device holds, {} sent so far",
                    c.ops, c.sent
                )
            },
        );
    }
    if let Some(err) = &s.last_error {
        row(&mut out, "last error", err.clone());
    }
    if let Some(hint) = &s.hint {
        out.push_str(&format!("hint: {hint}\n"));
    }
    out
}

/// The one line after a successful `heph sync`.
pub fn synced_text(s: &SyncStatus) -> String {
    format!(
        "synced with {}: hub seq {}, {} local ops still to send\n",
        s.hub_url.as_deref().unwrap_or("the hub"),
        s.hub_seq
            .map_or_else(|| "unknown".into(), |q| q.to_string()),
        s.pending_ops
    )
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    if args.status {
        let status: SyncStatus = client.call(method::SYNC_STATUS, ())?;
        if ctx.json() {
            ctx.out.json(&status)?;
        } else {
            ctx.out.print(&status_text(&status, &ctx.now))?;
        }
        return if status.last_error.is_some() {
            Err(CliError::Reported(Exit::Error))
        } else {
            Ok(())
        };
    }
    let status: SyncStatus = client.call(method::SYNC_NOW, ())?;
    if ctx.json() {
        ctx.out.json(&status)
    } else {
        ctx.out.print(&synced_text(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use jiff::tz::TimeZone;

    fn now() -> Now {
        Now::at(
            Timestamp::from_millisecond(1_764_000_000_000).unwrap(),
            TimeZone::UTC,
        )
    }

    #[test]
    fn status_views() {
        let local = SyncStatus {
            configured: false,
            message: "no hub is configured: this replica works offline".into(),
            ..SyncStatus::default()
        };
        assert_eq!(
            status_text(&local, &now()),
            "no hub is configured: this replica works offline\n"
        );
        let failing = SyncStatus {
            configured: true,
            hub_url: Some("https://hub.example".into()),
            last_success_ms: Some(1_764_000_000_000 - 4_000),
            pending_ops: 3,
            hub_seq: Some(120),
            last_error: Some("cannot reach the hub https://hub.example: connection refused".into()),
            message: "the hub is unreachable".into(),
            hint: Some("heph sync --status".into()),
            hub_log_change: None,
        };
        insta::assert_snapshot!(status_text(&failing, &now()), @r"
        the hub is unreachable
        hub          https://hub.example
        last success 4s ago (2025-11-24 15:59:56 +00:00)
        pending      3 local ops not yet on the hub
        hub seq      120
        last error   cannot reach the hub https://hub.example: connection refused
        hint: heph sync --status
        ");
        let changed = SyncStatus {
            configured: true,
            hub_url: Some("https://hub.example".into()),
            last_success_ms: Some(1_764_000_000_000 - 4_000),
            message: "in sync with https://hub.example".into(),
            hub_log_change: Some(heph_core::rpc::HubLogChange {
                at_ms: 1_764_000_000_000 - 60_000,
                ops: 240,
                sent: 240,
                accepted: 5,
                done: true,
            }),
            ..SyncStatus::default()
        };
        insta::assert_snapshot!(status_text(&changed, &now()), @r"
        in sync with https://hub.example
        hub          https://hub.example
        last success 4s ago (2025-11-24 15:59:56 +00:00)
        pending      0 local ops not yet on the hub
        hub log      changed 1m ago (2025-11-24 15:59:00 +00:00); re-sent all 240 ops this device held, 5 of them new to the hub
        ");
        assert_eq!(
            synced_text(&failing),
            "synced with https://hub.example: hub seq 120, 3 local ops still to send\n"
        );
    }
}
