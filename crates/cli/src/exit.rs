//! Exit codes, the CLI's error type, and how an error reads on stderr.
//!
//! Every failure becomes a [`Report`]: one lowercase sentence without a
//! trailing period (`error: …`), optional detail lines (the candidates of an
//! ambiguous id, the last lines of a log), and `hint: …` when there is a
//! command that fixes it. [`CliError::report`] is pure, so each message is
//! pinned by a snapshot test. This module never writes anything itself.

use std::fmt;
use std::io;

use heph_core::config::ConfigError;
use heph_core::rpc::{RpcError, code};
use serde_json::Value;

use crate::rpc_client::ClientError;

/// The process exit codes, as `heph --help` documents them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// Something went wrong.
    Error = 1,
    /// The command line was wrong (clap's own errors too).
    Usage = 2,
    /// The daemon is not running.
    NotRunning = 3,
    /// The user must act, e.g. sign in again (reserved).
    ActionNeeded = 4,
}

/// The exit-code table shown at the end of `heph --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  error
  2  usage error (unknown flag, bad value, nothing to do)
  3  the heph daemon is not running (start it with: heph daemon start)
  4  action needed (for example: sign in again)";

/// The hint that starts the daemon.
pub const START_HINT: &str = "heph daemon start";

/// What went wrong in a command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Talking to the daemon failed, or the daemon refused the request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The command line makes no sense (exit 2).
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// Anything else, already phrased for a person.
    #[error("{message}")]
    Failed {
        message: String,
        details: Vec<String>,
        hint: Option<String>,
    },
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or process operation failed.
    #[error("{context}: {}", io_reason(.source))]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Stdout was closed by its reader (`heph list | head -1`): stop quietly, exit 0.
    #[error("stdout is closed")]
    BrokenPipe,
    /// The errors were already printed (e.g. some ids of `heph done a b c`).
    #[error("some operations failed")]
    Reported(Exit),
}

impl CliError {
    /// A usage error without a hint.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage {
            message: message.into(),
            hint: None,
        }
    }

    /// A plain error without a hint.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            details: Vec::new(),
            hint: None,
        }
    }

    /// An error with a hint.
    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Failed {
            message: message.into(),
            details: Vec::new(),
            hint: Some(hint.into()),
        }
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is the typed "daemon not running" failure.
    pub fn is_not_running(&self) -> bool {
        matches!(self, Self::Client(ClientError::NotRunning { .. }))
    }

    /// The exit code this error ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Client(ClientError::NotRunning { .. }) => Exit::NotRunning,
            Self::Usage { .. } => Exit::Usage,
            Self::BrokenPipe => Exit::Ok,
            Self::Reported(exit) => *exit,
            _ => Exit::Error,
        }
    }

    /// What to print on stderr, or `None` when nothing should be printed.
    pub fn report(&self) -> Option<Report> {
        let report = match self {
            Self::BrokenPipe | Self::Reported(_) => return None,
            Self::Client(err) => client_report(err),
            Self::Usage { message, hint } => Report::new(message).hint_opt(hint.clone()),
            Self::Failed {
                message,
                details,
                hint,
            } => Report {
                details: details.clone(),
                ..Report::new(message).hint_opt(hint.clone())
            },
            Self::Config(err) => Report::new(sentence(&err.to_string())),
            Self::Io { .. } => Report::new(self.to_string()),
        };
        Some(Report {
            exit: self.exit(),
            ..report
        })
    }
}

/// An error as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// One lowercase sentence without a trailing period.
    pub message: String,
    /// Lines printed under the message, indented.
    pub details: Vec<String>,
    /// The command or step that fixes it.
    pub hint: Option<String>,
    pub exit: Exit,
}

impl Report {
    /// A report with only a message, exiting 1.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            details: Vec::new(),
            hint: None,
            exit: Exit::Error,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    fn hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Report {
    /// `error: …`, the detail lines, then `hint: …`, each ending in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        for line in &self.details {
            writeln!(f, "  {line}")?;
        }
        if let Some(hint) = &self.hint {
            writeln!(f, "hint: {hint}")?;
        }
        Ok(())
    }
}

/// An I/O error's reason in lowercase, without Rust's "(os error N)" suffix.
pub fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    sentence(text)
}

/// Makes a sentence from someone else's text fit ours: no trailing period,
/// and a lowercase first letter unless the first word is an acronym.
pub fn sentence(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_owned(),
    }
}

fn client_report(err: &ClientError) -> Report {
    match err {
        ClientError::NotRunning { .. } => Report::new(err.to_string()).hint(START_HINT),
        ClientError::Timeout { .. } | ClientError::Closed { .. } => {
            Report::new(err.to_string()).hint("heph daemon logs")
        }
        ClientError::Connect { .. } | ClientError::Io { .. } | ClientError::Protocol { .. } => {
            Report::new(err.to_string())
        }
        ClientError::Rpc(rpc) => rpc_report(rpc),
    }
}

fn data_str<'a>(data: Option<&'a Value>, key: &str) -> Option<&'a str> {
    data?.get(key)?.as_str()
}

/// How long an id prefix must be so that every candidate reads differently.
fn distinct_prefix_len(ids: &[&str]) -> usize {
    let mut len = 8;
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            len = len.max(common + 1);
        }
    }
    len
}

/// The report for an error the daemon answered with. A `hint` string in
/// the error's data (e.g. `NOT_CONFIGURED`, `HUB`) becomes the hint line
/// when no better one is known.
pub fn rpc_report(err: &RpcError) -> Report {
    let mut report = rpc_report_by_code(err);
    if report.hint.is_none() {
        report.hint = data_str(err.data.as_ref(), "hint").map(str::to_owned);
    }
    report
}

fn rpc_report_by_code(err: &RpcError) -> Report {
    let data = err.data.as_ref();
    match err.code {
        code::NOT_FOUND => match data_str(data, "id") {
            Some(id) => Report::new(format!("no node has an id starting with {id:?}"))
                .hint("heph list --all shows every node with its id"),
            None => Report::new(sentence(&err.message)),
        },
        code::AMBIGUOUS => {
            let candidates: Vec<(&str, &str)> = data
                .and_then(|d| d.get("candidates"))
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|c| {
                            (
                                c.get("id").and_then(Value::as_str).unwrap_or("?"),
                                c.get("title").and_then(Value::as_str).unwrap_or(""),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let message = match data_str(data, "id") {
                Some(id) if !candidates.is_empty() => format!(
                    "the id {id:?} is ambiguous: it starts {} nodes",
                    candidates.len()
                ),
                Some(id) => format!("the id {id:?} is ambiguous"),
                None => sentence(&err.message),
            };
            let ids: Vec<&str> = candidates.iter().map(|(id, _)| *id).collect();
            let width = distinct_prefix_len(&ids);
            let details = candidates
                .iter()
                .map(|(id, title)| {
                    let short = id.get(..width).unwrap_or(id);
                    format!("{short}  {title}").trim_end().to_owned()
                })
                .collect();
            Report {
                details,
                ..Report::new(message).hint("type more of the id")
            }
        }
        code::INVALID_VALUE => match (data_str(data, "field"), data_str(data, "reason")) {
            (Some(field), Some(reason)) => {
                Report::new(format!("invalid {field}: {}", sentence(reason)))
            }
            _ => Report::new(sentence(&err.message)),
        },
        code::DELETED => match (data_str(data, "id"), data_str(data, "title")) {
            (Some(id), title) => Report::new(format!(
                "{} ({id}) is deleted, so it was not changed",
                title.map_or_else(|| "the node".to_owned(), |t| format!("{t:?}"))
            ))
            .hint(format!("heph restore {id}")),
            _ => Report::new(sentence(&err.message)).hint("heph list --deleted"),
        },
        code::METHOD_NOT_FOUND => Report::new(format!(
            "the heph daemon does not understand this request ({}); it may be older than this heph",
            sentence(&err.message)
        ))
        .hint("heph daemon restart"),
        code::SHUTTING_DOWN => Report::new("the heph daemon is shutting down").hint(START_HINT),
        code::STORE => Report::new(format!("the database failed: {}", sentence(&err.message)))
            .hint("heph daemon logs"),
        code::CLOCK => Report::new(format!(
            "the clock cannot stamp the change: {}",
            sentence(&err.message)
        )),
        _ => Report::new(sentence(&err.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(err: CliError) -> String {
        match err.report() {
            Some(r) => format!("[exit {}]\n{r}", r.exit as u8),
            None => format!("[exit {}, silent]", err.exit() as u8),
        }
    }

    fn rpc(code: i64, message: &str, data: Option<Value>) -> String {
        let mut err = RpcError::new(code, message);
        err.data = data;
        render(CliError::Client(ClientError::Rpc(err)))
    }

    #[test]
    fn not_running() {
        let err = CliError::Client(ClientError::NotRunning {
            socket: "/run/user/1000/heph/hephd.sock".into(),
        });
        insta::assert_snapshot!(render(err), @r"
        [exit 3]
        error: the heph daemon is not running (no answer on /run/user/1000/heph/hephd.sock)
        hint: heph daemon start
        ");
    }

    #[test]
    fn ambiguous_lists_candidates() {
        let data = json!({"id": "6f", "candidates": [
            {"id": "6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a", "title": "Buy milk"},
            {"id": "6f9d2b11-0c3e-4a5f-9b6d-7e8f9a0b1c2d", "title": "Call Bob"},
        ]});
        insta::assert_snapshot!(rpc(code::AMBIGUOUS, "ambiguous id", Some(data)), @r#"
        [exit 1]
        error: the id "6f" is ambiguous: it starts 2 nodes
          6f1c0a9e  Buy milk
          6f9d2b11  Call Bob
        hint: type more of the id
        "#);
    }

    #[test]
    fn ambiguous_candidates_sharing_eight_characters_get_longer_ids() {
        let data = json!({"id": "6f1c0a9e", "candidates": [
            {"id": "6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a", "title": "Buy milk"},
            {"id": "6f1c0a9e-4b9d-4c1f-8a3e-5b7d9c0e1f2a", "title": ""},
        ]});
        insta::assert_snapshot!(rpc(code::AMBIGUOUS, "ambiguous id", Some(data)), @r#"
        [exit 1]
        error: the id "6f1c0a9e" is ambiguous: it starts 2 nodes
          6f1c0a9e-4b2  Buy milk
          6f1c0a9e-4b9
        hint: type more of the id
        "#);
    }

    #[test]
    fn rpc_errors() {
        insta::assert_snapshot!(rpc(code::NOT_FOUND, "No such node.", Some(json!({"id": "zz"}))), @r#"
        [exit 1]
        error: no node has an id starting with "zz"
        hint: heph list --all shows every node with its id
        "#);
        insta::assert_snapshot!(rpc(code::NOT_FOUND, "No such node.", None), @r"
        [exit 1]
        error: no such node
        ");
        insta::assert_snapshot!(rpc(
            code::INVALID_VALUE,
            "invalid title",
            Some(json!({"field": "title", "reason": "a title must be 1 to 1000 characters"}))
        ), @r"
        [exit 1]
        error: invalid title: a title must be 1 to 1000 characters
        ");
        insta::assert_snapshot!(rpc(code::DELETED, "node is deleted", Some(json!({"id": "9a2e0c1d-0000-4000-8000-000000000000", "title": "Buy milk"}))), @r#"
        [exit 1]
        error: "Buy milk" (9a2e0c1d-0000-4000-8000-000000000000) is deleted, so it was not changed
        hint: heph restore 9a2e0c1d-0000-4000-8000-000000000000
        "#);
        insta::assert_snapshot!(rpc(code::METHOD_NOT_FOUND, "Unknown method node.frob", None), @r"
        [exit 1]
        error: the heph daemon does not understand this request (unknown method node.frob); it may be older than this heph
        hint: heph daemon restart
        ");
        insta::assert_snapshot!(rpc(code::SHUTTING_DOWN, "bye", None), @r"
        [exit 1]
        error: the heph daemon is shutting down
        hint: heph daemon start
        ");
        insta::assert_snapshot!(rpc(code::STORE, "database is locked", None), @r"
        [exit 1]
        error: the database failed: database is locked
        hint: heph daemon logs
        ");
        insta::assert_snapshot!(rpc(-32008, "The hub at https://hub.example is unreachable.", Some(json!({"hint": "heph sync --status"}))), @"
        [exit 1]
        error: the hub at https://hub.example is unreachable
        hint: heph sync --status
        ");
        insta::assert_snapshot!(rpc(code::INTERNAL, "HLC overflow.", None), @r"
        [exit 1]
        error: HLC overflow
        ");
    }

    #[test]
    fn other_errors() {
        insta::assert_snapshot!(render(CliError::Usage {
            message: "nothing to change".into(),
            hint: Some("give at least one of --title, --due".into()),
        }), @r"
        [exit 2]
        error: nothing to change
        hint: give at least one of --title, --due
        ");
        insta::assert_snapshot!(render(CliError::io(
            "cannot read the log file /x/hephd.log",
            io::Error::from_raw_os_error(libc::ENOENT),
        )), @r"
        [exit 1]
        error: cannot read the log file /x/hephd.log: no such file or directory
        ");
        insta::assert_snapshot!(render(CliError::Client(ClientError::Timeout {
            socket: "/s.sock".into(),
            method: "node.list".into(),
            after: std::time::Duration::from_secs(30),
        })), @r"
        [exit 1]
        error: the heph daemon did not answer node.list within 30 s (socket /s.sock)
        hint: heph daemon logs
        ");
        insta::assert_snapshot!(render(CliError::BrokenPipe), @"[exit 0, silent]");
        insta::assert_snapshot!(render(CliError::Reported(Exit::NotRunning)), @"[exit 3, silent]");
    }

    #[test]
    fn sentences() {
        assert_eq!(sentence("Node not found."), "node not found");
        assert_eq!(sentence("HLC is bad"), "HLC is bad");
        assert_eq!(sentence("ok"), "ok");
        assert_eq!(sentence(""), "");
        assert_eq!(sentence("É"), "É");
    }
}
