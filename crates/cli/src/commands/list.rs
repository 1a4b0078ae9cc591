//! `heph list`: selects nodes through `node.list` and prints them in agenda
//! order (overdue, then by due, then priority). By default it shows open
//! tasks (todo and doing). Sorting and `--limit` happen here, after the
//! daemon's answer, so the limit keeps the most urgent nodes.

use heph_core::input::Ymd;
use heph_core::rpc::{ListParams, ListResult, method};
use heph_core::{Kind, NodeId, Status, date};

use crate::commands::{date_arg, get_node, status_arg, tag_name};
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph list`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Every task and note, whatever its status
    #[arg(short, long)]
    pub all: bool,
    /// Notes instead of tasks
    #[arg(long)]
    pub notes: bool,
    /// Only this status (repeatable): todo, doing, done, cancelled
    #[arg(long, value_name = "S", value_parser = status_arg)]
    pub status: Vec<Status>,
    /// Only nodes with this tag
    #[arg(short, long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Due strictly before this date (a date excludes its whole day)
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub due_before: Option<String>,
    /// Due strictly after this date (a date excludes its whole day)
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub due_after: Option<String>,
    /// Only nodes whose title or body contains this text (ASCII case-insensitive)
    #[arg(short, long, value_name = "TEXT")]
    pub search: Option<String>,
    /// Only children of this node (id or unique prefix)
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// Include deleted nodes
    #[arg(long)]
    pub deleted: bool,
    /// Show at most N nodes (the first N in agenda order)
    #[arg(short = 'n', long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Args {
    /// Whether no filter was given (plain `heph list`).
    fn is_default(&self) -> bool {
        !self.all
            && !self.notes
            && self.status.is_empty()
            && self.tag.is_none()
            && self.due_before.is_none()
            && self.due_after.is_none()
            && self.search.is_none()
            && self.parent.is_none()
            && !self.deleted
    }
}

/// Moves a date bound by `days`; date-times are kept (a bound that close
/// to an instant differs by nothing a person can type).
fn shift(bound: String, days: i64) -> String {
    if bound.len() != 10 {
        return bound;
    }
    let (y, m, d) = (
        bound[..4].parse().unwrap_or(0),
        bound[5..7].parse().unwrap_or(1),
        bound[8..10].parse().unwrap_or(1),
    );
    let (y, m, d) = date::civil_from_days(date::days_from_civil(y, m, d) + days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The `node.list` query for these flags (`parent` already resolved to an id).
pub fn query(args: &Args, parent: Option<NodeId>, today: Ymd) -> Result<ListParams, CliError> {
    let kind = if args.notes {
        Some(Kind::Note)
    } else if args.all {
        None
    } else {
        Some(Kind::Task)
    };
    let status = if !args.status.is_empty() {
        args.status.clone()
    } else if args.all || args.notes {
        Vec::new()
    } else {
        vec![Status::Todo, Status::Doing]
    };
    // The query's bounds are inclusive; "before"/"after" are not.
    let due_to = args
        .due_before
        .as_deref()
        .map(|d| date_arg("--due-before", d, today).map(|d| shift(d, -1)))
        .transpose()?;
    let due_from = args
        .due_after
        .as_deref()
        .map(|d| date_arg("--due-after", d, today).map(|d| shift(d, 1)))
        .transpose()?;
    Ok(ListParams {
        kind,
        status,
        tag: args.tag.as_deref().map(tag_name),
        due_from,
        due_to,
        parent,
        text: args.search.clone(),
        include_deleted: args.deleted,
        limit: None,
    })
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let parent = match &args.parent {
        Some(prefix) => Some(get_node(&mut client, prefix)?.id),
        None => None,
    };
    let params = query(&args, parent, ctx.today())?;
    let mut result: ListResult = client.call(method::NODE_LIST, &params)?;
    output::sort_nodes(&mut result.nodes, &ctx.now);
    if let Some(limit) = args.limit {
        result.nodes.truncate(limit);
    }
    if ctx.json() {
        return ctx.out.json(&result);
    }
    if result.nodes.is_empty() {
        ctx.out.note(output::empty_list_message(args.is_default()));
        return Ok(());
    }
    ctx.out.print(&output::list_table(&result.nodes, &ctx.now))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Ymd = (2026, 11, 24);

    fn check(args: Args, expected: ListParams) {
        assert_eq!(query(&args, None, TODAY).unwrap(), expected);
    }

    #[test]
    fn default_is_open_tasks() {
        check(
            Args::default(),
            ListParams {
                kind: Some(Kind::Task),
                status: vec![Status::Todo, Status::Doing],
                ..ListParams::default()
            },
        );
        check(
            Args {
                all: true,
                ..Args::default()
            },
            ListParams::default(),
        );
        check(
            Args {
                notes: true,
                tag: Some("+home".into()),
                search: Some("milk".into()),
                deleted: true,
                limit: Some(3),
                ..Args::default()
            },
            ListParams {
                kind: Some(Kind::Note),
                tag: Some("home".into()),
                text: Some("milk".into()),
                include_deleted: true,
                ..ListParams::default()
            },
        );
        check(
            Args {
                status: vec![Status::Done],
                ..Args::default()
            },
            ListParams {
                kind: Some(Kind::Task),
                status: vec![Status::Done],
                ..ListParams::default()
            },
        );
    }

    #[test]
    fn before_and_after_are_strict() {
        check(
            Args {
                all: true,
                due_before: Some("tomorrow".into()),
                due_after: Some("2026-03-01".into()),
                ..Args::default()
            },
            ListParams {
                due_to: Some("2026-11-24".into()),
                due_from: Some("2026-03-02".into()),
                ..ListParams::default()
            },
        );
        check(
            Args {
                all: true,
                due_before: Some("2027-01-01".into()),
                due_after: Some("2026-11-24T10:00:00Z".into()),
                ..Args::default()
            },
            ListParams {
                due_to: Some("2026-12-31".into()),
                due_from: Some("2026-11-24T10:00:00Z".into()),
                ..ListParams::default()
            },
        );
        let err = query(
            &Args {
                due_after: Some("later".into()),
                ..Args::default()
            },
            None,
            TODAY,
        )
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("invalid value for --due-after: cannot read \"later\""),
            "{err}"
        );
    }
}
