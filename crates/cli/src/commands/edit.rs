//! `heph edit`: changes fields of one node through `node.update`. The
//! register map is built by a pure function ([`changes`]); asking for no
//! change at all is a usage error (exit 2).

use std::collections::BTreeMap;

use heph_core::input::Ymd;
use heph_core::rpc::{UpdateParams, method};
use heph_core::{Node, NodeId, Priority, Status};
use serde_json::Value;

use crate::commands::{body_arg, date_arg, get_node, priority_arg, status_arg};
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph edit`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The node's id or a unique prefix of it
    pub id: String,
    /// A new title
    #[arg(long, value_name = "TITLE")]
    pub title: Option<String>,
    /// A new due date: today, tomorrow, fri, +3d, 2026-12-01, …
    #[arg(
        long,
        value_name = "DATE",
        allow_hyphen_values = true,
        conflicts_with = "no_due"
    )]
    pub due: Option<String>,
    /// Remove the due date
    #[arg(long)]
    pub no_due: bool,
    /// A new scheduled date
    #[arg(
        long,
        value_name = "DATE",
        allow_hyphen_values = true,
        conflicts_with = "no_scheduled"
    )]
    pub scheduled: Option<String>,
    /// Remove the scheduled date
    #[arg(long)]
    pub no_scheduled: bool,
    /// Priority: high, medium, low, none (or h, m, l, n)
    #[arg(short, long, value_name = "P", value_parser = priority_arg)]
    pub priority: Option<Priority>,
    /// Status: todo, doing, done, cancelled
    #[arg(long, value_name = "S", value_parser = status_arg)]
    pub status: Option<Status>,
    /// A new body, in markdown; - reads it from stdin
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub body: Option<String>,
    /// A new parent (id or unique prefix)
    #[arg(long, value_name = "ID", conflicts_with = "no_parent")]
    pub parent: Option<String>,
    /// Make it a top-level node
    #[arg(long)]
    pub no_parent: bool,
}

impl Args {
    fn changes_nothing(&self) -> bool {
        self.title.is_none()
            && self.due.is_none()
            && !self.no_due
            && self.scheduled.is_none()
            && !self.no_scheduled
            && self.priority.is_none()
            && self.status.is_none()
            && self.body.is_none()
            && self.parent.is_none()
            && !self.no_parent
    }
}

/// The usage error for an edit without changes.
pub fn nothing_to_change() -> CliError {
    CliError::Usage {
        message: "nothing to change".into(),
        hint: Some(
            "give at least one of --title, --due, --no-due, --scheduled, --no-scheduled, \
             --priority, --status, --body, --parent, --no-parent"
                .into(),
        ),
    }
}

/// The registers to set. `body` is the already-read body; `parent` the
/// resolved parent id (`Some(None)` clears it).
pub fn changes(
    args: &Args,
    body: Option<String>,
    parent: Option<Option<NodeId>>,
    today: Ymd,
) -> Result<BTreeMap<String, Value>, CliError> {
    if args.changes_nothing() {
        return Err(nothing_to_change());
    }
    let mut set = BTreeMap::new();
    if let Some(title) = &args.title {
        set.insert("title".into(), Value::from(title.as_str()));
    }
    let mut date = |key: &str, flag: &str, value: &Option<String>, clear: bool| {
        if let Some(text) = value {
            set.insert(key.into(), Value::from(date_arg(flag, text, today)?));
        } else if clear {
            set.insert(key.into(), Value::Null);
        }
        Ok::<(), CliError>(())
    };
    date("due", "--due", &args.due, args.no_due)?;
    date(
        "scheduled",
        "--scheduled",
        &args.scheduled,
        args.no_scheduled,
    )?;
    if let Some(p) = args.priority {
        set.insert("priority".into(), Value::from(p.as_str()));
    }
    if let Some(s) = args.status {
        set.insert("status".into(), Value::from(s.as_str()));
    }
    if let Some(body) = body {
        set.insert("body".into(), Value::from(body));
    }
    if let Some(parent) = parent {
        set.insert(
            "parent".into(),
            parent.map_or(Value::Null, |id| Value::from(id.as_str())),
        );
    }
    Ok(set)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    if args.changes_nothing() {
        return Err(nothing_to_change());
    }
    // Check the values before reading stdin or contacting the daemon.
    changes(&args, None, None, ctx.today())?;
    let body = body_arg(args.body.clone())?;
    let mut client = ctx.client()?;
    let parent = match (&args.parent, args.no_parent) {
        (Some(prefix), _) => Some(Some(get_node(&mut client, prefix)?.id)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let set = changes(&args, body, parent, ctx.today())?;
    let node: Node = client.call(
        method::NODE_UPDATE,
        UpdateParams {
            id: args.id.clone(),
            set,
        },
    )?;
    if ctx.json() {
        ctx.out.json(&node)
    } else {
        ctx.out.print(&output::changed("updated", &node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TODAY: Ymd = (2026, 11, 24);

    fn args() -> Args {
        Args {
            id: "6f".into(),
            ..Args::default()
        }
    }

    fn check(args: Args, body: Option<&str>, parent: Option<Option<NodeId>>, expected: Value) {
        let set = changes(&args, body.map(String::from), parent, TODAY).unwrap();
        assert_eq!(serde_json::to_value(set).unwrap(), expected);
    }

    #[test]
    fn builds_registers() {
        let parent = NodeId::parse("6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a").unwrap();
        check(
            Args {
                title: Some("Buy oat milk".into()),
                due: Some("tomorrow".into()),
                no_scheduled: true,
                priority: Some(Priority::None),
                status: Some(Status::Doing),
                ..args()
            },
            Some("two litres"),
            Some(Some(parent)),
            json!({
                "title": "Buy oat milk",
                "due": "2026-11-25",
                "scheduled": null,
                "priority": "none",
                "status": "doing",
                "body": "two litres",
                "parent": "6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a",
            }),
        );
        check(
            Args {
                no_due: true,
                no_parent: true,
                ..args()
            },
            None,
            Some(None),
            json!({"due": null, "parent": null}),
        );
    }

    #[test]
    fn no_change_is_a_usage_error() {
        let err = changes(&args(), None, None, TODAY).err().unwrap();
        insta::assert_snapshot!(err.report().unwrap().to_string(), @"
        error: nothing to change
        hint: give at least one of --title, --due, --no-due, --scheduled, --no-scheduled, --priority, --status, --body, --parent, --no-parent
        ");
        assert_eq!(err.exit(), crate::exit::Exit::Usage);
    }
}
