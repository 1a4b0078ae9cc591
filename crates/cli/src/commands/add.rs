//! `heph add`: creates a task (or with `--note`, a note) from title words
//! that may carry quick-add tokens (`+tag`, `due:`, `sched:`, `pri:`) and
//! from flags. Building the request is pure ([`create_params`]); a token and
//! a flag that set the same field are a usage error, not a silent override.

use heph_core::input::{self, Ymd};
use heph_core::rpc::{CreateParams, method};
use heph_core::{Kind, Node, Priority, Status};

use crate::commands::{body_arg, date_arg, priority_arg, status_arg, tag_name};
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// The fields of a new task or note (shared with `heph note`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NewNode {
    /// The title; words may include +tag, due:DATE, sched:DATE and pri:P
    #[arg(required = true, value_name = "TITLE")]
    pub title: Vec<String>,
    /// Due date: today, tomorrow, fri, +3d, +2w, eom, 2026-12-01, …
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub due: Option<String>,
    /// Scheduled date (same forms as --due)
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub scheduled: Option<String>,
    /// Priority: high, medium, low, none (or h, m, l, n)
    #[arg(short, long, value_name = "P", value_parser = priority_arg)]
    pub priority: Option<Priority>,
    /// A tag (repeatable; +tag in the title works too)
    #[arg(short, long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The parent node (id or unique prefix)
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// The body, in markdown; - reads it from stdin
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub body: Option<String>,
    /// Status: todo (default), doing, done, cancelled
    #[arg(long, value_name = "S", value_parser = status_arg)]
    pub status: Option<Status>,
}

/// `heph add`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Create a note instead of a task
    #[arg(long)]
    pub note: bool,
    #[command(flatten)]
    pub new: NewNode,
}

fn one_of<T>(
    token: Option<T>,
    flag: Option<T>,
    what: &str,
    token_name: &str,
    flag_name: &str,
) -> Result<Option<T>, CliError> {
    match (token, flag) {
        (Some(_), Some(_)) => Err(CliError::usage(format!(
            "the {what} is given twice ({token_name} in the title and {flag_name})"
        ))),
        (t, f) => Ok(t.or(f)),
    }
}

/// The `node.create` request for these words and flags. `body` is the
/// already-read body (see [`body_arg`]).
pub fn create_params(
    new: &NewNode,
    kind: Kind,
    body: Option<String>,
    today: Ymd,
) -> Result<CreateParams, CliError> {
    let quick = input::parse_quick_add(&new.title.join(" "), today).map_err(CliError::usage)?;
    let due = new
        .due
        .as_deref()
        .map(|d| date_arg("--due", d, today))
        .transpose()?;
    let scheduled = new
        .scheduled
        .as_deref()
        .map(|d| date_arg("--scheduled", d, today))
        .transpose()?;
    let mut tags = quick.tags;
    for tag in new.tags.iter().map(|t| tag_name(t)) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(CreateParams {
        kind: Some(kind),
        title: quick.title,
        body,
        status: new.status,
        priority: one_of(
            quick.priority,
            new.priority,
            "priority",
            "pri:",
            "--priority",
        )?,
        due: one_of(quick.due, due, "due date", "due:", "--due")?,
        scheduled: one_of(
            quick.scheduled,
            scheduled,
            "scheduled date",
            "sched:",
            "--scheduled",
        )?,
        parent: new.parent.clone(),
        tags,
        links: Vec::new(),
    })
}

/// Creates the node and prints it.
pub fn create(ctx: &Ctx, new: NewNode, kind: Kind) -> Result<(), CliError> {
    let params = create_params(&new, kind, None, ctx.today())?;
    let params = CreateParams {
        body: body_arg(new.body)?,
        ..params
    };
    let node: Node = ctx.client()?.call(method::NODE_CREATE, &params)?;
    if ctx.json() {
        ctx.out.json(&node)
    } else {
        ctx.out.print(&output::added(&node, &ctx.now))
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let kind = if args.note { Kind::Note } else { Kind::Task };
    create(ctx, args.new, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Ymd = (2026, 11, 24);

    fn new(title: &str) -> NewNode {
        NewNode {
            title: title.split(' ').map(String::from).collect(),
            ..NewNode::default()
        }
    }

    fn check(new: NewNode, expected: CreateParams) {
        assert_eq!(
            create_params(&new, Kind::Task, None, TODAY).unwrap(),
            expected
        );
    }

    fn check_err(new: NewNode, expected: &str) {
        let err = create_params(&new, Kind::Task, None, TODAY).err().unwrap();
        assert_eq!(err.report().unwrap().to_string(), expected);
        assert_eq!(err.exit(), crate::exit::Exit::Usage);
    }

    fn params(title: &str) -> CreateParams {
        CreateParams {
            kind: Some(Kind::Task),
            title: title.into(),
            ..CreateParams::default()
        }
    }

    #[test]
    fn words_and_flags_combine() {
        check(new("Buy milk"), params("Buy milk"));
        check(
            NewNode {
                due: Some("fri".into()),
                tags: vec!["+errand".into(), "home".into()],
                parent: Some("6f1c".into()),
                status: Some(Status::Doing),
                ..new("Buy milk +home pri:h")
            },
            CreateParams {
                due: Some("2026-11-27".into()),
                priority: Some(Priority::High),
                tags: vec!["home".into(), "errand".into()],
                parent: Some("6f1c".into()),
                status: Some(Status::Doing),
                ..params("Buy milk")
            },
        );
        check(
            NewNode {
                scheduled: Some("-1d".into()),
                priority: Some(Priority::Low),
                ..new("Call due:2026-12-01")
            },
            CreateParams {
                due: Some("2026-12-01".into()),
                scheduled: Some("2026-11-23".into()),
                priority: Some(Priority::Low),
                ..params("Call")
            },
        );
    }

    #[test]
    fn conflicts_and_bad_values_are_usage_errors() {
        check_err(
            NewNode {
                due: Some("fri".into()),
                ..new("Pay due:mon")
            },
            "error: the due date is given twice (due: in the title and --due)\n",
        );
        check_err(
            NewNode {
                priority: Some(Priority::Low),
                ..new("Pay p:h")
            },
            "error: the priority is given twice (pri: in the title and --priority)\n",
        );
        check_err(
            NewNode {
                scheduled: Some("someday".into()),
                ..new("Pay")
            },
            "error: invalid value for --scheduled: cannot read \"someday\" as a date; use today, \
             tomorrow, yesterday, a weekday (mon or monday), +3d, +2w, +1m, -1d, eow, eom, \
             YYYY-MM-DD or an RFC 3339 date-time\n",
        );
        check_err(
            new("+home"),
            "error: the title is empty: give some words besides +tags and due:, sched: or pri: tokens\n",
        );
    }
}
