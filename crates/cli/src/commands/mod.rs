//! The verbs: one module per command, each with a clap `Args` struct and a
//! `run(ctx, args)` function, plus the helpers several verbs share (reading
//! dates and bodies, resolving id prefixes, acting on several ids).
//!
//! Commands build requests from flags with pure functions, call the daemon
//! through [`Ctx::client`], and print with [`crate::output`]. They never
//! print errors themselves except where one failure must not stop the rest
//! (`done a b c`), and then they return [`CliError::Reported`].

pub mod add;
pub mod auth;
pub mod daemon;
pub mod demo;
pub mod done;
pub mod edit;
pub mod hub;
pub mod link;
pub mod list;
pub mod note;
pub mod restore;
pub mod rm;
pub mod show;
pub mod sync;
pub mod tag;
pub mod tags;

use std::io::Read;

use heph_core::input::{self, Ymd};
use heph_core::rpc::{IdParams, ListResult, UpdateParams, method};
use heph_core::{Node, Priority, Status};

use crate::cli::Command;
use crate::context::Ctx;
use crate::exit::{CliError, Exit};
use crate::rpc_client::Client;

/// Runs one verb.
pub fn run(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    match command {
        Command::Add(args) => add::run(ctx, args),
        Command::Note(args) => note::run(ctx, args),
        Command::List(args) => list::run(ctx, args),
        Command::Show(args) => show::run(ctx, args),
        Command::Edit(args) => edit::run(ctx, args),
        Command::Done(args) => done::run(ctx, args),
        Command::Rm(args) => rm::run(ctx, args),
        Command::Restore(args) => restore::run(ctx, args),
        Command::Tag(args) => tag::run(ctx, args),
        Command::Link(args) => link::run(ctx, args),
        Command::Tags(args) => tags::run(ctx, args),
        Command::Daemon(args) => daemon::run(ctx, args),
        Command::Demo(args) => demo::run(ctx, args),
        Command::Sync(args) => sync::run(ctx, args),
        Command::Auth(args) => auth::run(ctx, args),
        Command::Hub(args) => hub::run(ctx, args),
    }
}

/// clap value parser for priorities (`high`, `h`, …).
pub fn priority_arg(text: &str) -> Result<Priority, String> {
    input::parse_priority(text)
}

/// clap value parser for statuses.
pub fn status_arg(text: &str) -> Result<Status, String> {
    input::parse_status(text)
}

/// Reads a date flag's value, or fails with a usage error naming the flag.
pub fn date_arg(flag: &str, text: &str, today: Ymd) -> Result<String, CliError> {
    input::parse_date(text, today)
        .map_err(|reason| CliError::usage(format!("invalid value for {flag}: {reason}")))
}

/// A `--body` value; `-` reads the body from stdin.
pub fn body_arg(text: Option<String>) -> Result<Option<String>, CliError> {
    match text.as_deref() {
        Some("-") => {
            let mut body = String::new();
            std::io::stdin()
                .read_to_string(&mut body)
                .map_err(|e| CliError::io("cannot read the body from stdin", e))?;
            Ok(Some(body))
        }
        _ => Ok(text),
    }
}

/// A tag as typed: `+home` and `home` mean the same.
pub fn tag_name(text: &str) -> String {
    text.strip_prefix('+').unwrap_or(text).to_owned()
}

/// Fetches one node by id or unique prefix.
pub fn get_node(client: &mut Client, id: &str) -> Result<Node, CliError> {
    Ok(client.call(method::NODE_GET, IdParams { id: id.to_owned() })?)
}

/// Sets one register of each node in `ids` (`heph done`, `heph restore`),
/// printing `verb` beside each node changed.
pub fn set_on_each(
    ctx: &Ctx,
    ids: &[String],
    verb: &str,
    field: &str,
    value: serde_json::Value,
) -> Result<(), CliError> {
    for_each_id(
        ctx,
        ids,
        |node| crate::output::changed(verb, node),
        |client, id| {
            let params = UpdateParams {
                id: id.to_owned(),
                set: std::collections::BTreeMap::from([(field.to_owned(), value.clone())]),
            };
            Ok(client.call(method::NODE_UPDATE, params)?)
        },
    )
}

/// Applies `action` to each id in turn. A failure is printed and the rest
/// still run (a daemon that is not running stops everything at once);
/// succeeded nodes are printed with `line` or as `{"nodes":[…]}`.
pub fn for_each_id(
    ctx: &Ctx,
    ids: &[String],
    line: impl Fn(&Node) -> String,
    mut action: impl FnMut(&mut Client, &str) -> Result<Node, CliError>,
) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let mut done = Vec::new();
    let mut worst = Exit::Ok;
    for id in ids {
        match action(&mut client, id) {
            Ok(node) => {
                if !ctx.json() {
                    ctx.out.print(&line(&node))?;
                }
                done.push(node);
            }
            Err(err) if err.is_not_running() => return Err(err),
            Err(err) => worst = worst.max(ctx.out.fail(&err)),
        }
    }
    if ctx.json() {
        ctx.out.json(&ListResult { nodes: done })?;
    }
    match worst {
        Exit::Ok => Ok(()),
        exit => Err(CliError::Reported(exit)),
    }
}
