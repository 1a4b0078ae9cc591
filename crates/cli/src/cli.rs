//! The command line's shape: global flags and the verbs, as clap derive types.
//!
//! Each verb's own flags live in its module under `commands/`; this module
//! only lists the verbs and the flags every command shares. Parsing only:
//! nothing here reads the environment or talks to the daemon.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    add, auth, daemon, demo, done, edit, hub, link, list, note, restore, rm, show, sync, tag, tags,
};
use crate::exit::EXIT_CODES_HELP;

/// Tasks and notes that live on your machine: the Hephaestus command line.
#[derive(Debug, Parser)]
#[command(
    name = "heph",
    version,
    after_help = EXIT_CODES_HELP,
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The daemon's socket [env: HEPH_SOCKET] [default: $XDG_RUNTIME_DIR/heph/hephd.sock, else beside the db]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub socket: Option<PathBuf>,
    /// The database (for `heph daemon start|install`) [env: HEPH_DB] [default: $XDG_DATA_HOME/heph/heph.db]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub db: Option<PathBuf>,
    /// The config file [env: HEPH_CONFIG] [default: $XDG_CONFIG_HOME/heph/config.toml]
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
    /// Print JSON on stdout (and only JSON); messages go to stderr
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add a task: heph add Buy milk +home due:tomorrow pri:high
    Add(add::Args),
    /// Add a note (same as heph add --note)
    Note(note::Args),
    /// List tasks (open ones by default) or notes
    #[command(visible_alias = "ls")]
    List(list::Args),
    /// Show everything about one task or note
    Show(show::Args),
    /// Change a task or note
    Edit(edit::Args),
    /// Mark tasks done
    Done(done::Args),
    /// Delete tasks or notes
    Rm(rm::Args),
    /// Bring back deleted tasks or notes
    Restore(restore::Args),
    /// Add or remove tags
    Tag(tag::Args),
    /// Add or remove a typed link between two nodes
    Link(link::Args),
    /// List tags with how many nodes carry each
    Tags(tags::Args),
    /// Sync with the hub now, or with --status report how sync stands
    Sync(sync::Args),
    /// Sign in to the hub (device code flow), show sign-in health, sign out
    Auth(auth::Args),
    /// Manage who may use the hub: grant, revoke, members (run on the hub machine)
    Hub(hub::Args),
    /// Start, stop and install the heph daemon (hephd)
    Daemon(daemon::Args),
    /// Run the quickstart: a hub and two devices signing in and syncing, in a temporary directory
    Demo(demo::Args),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("heph").chain(args.iter().copied()))
    }

    #[test]
    fn title_words_and_flags_mix() {
        let cli = parse(&[
            "add", "Buy", "milk", "--due", "tomorrow", "+home", "-p", "h",
        ])
        .unwrap();
        let Command::Add(args) = cli.command else {
            panic!("not add")
        };
        assert_eq!(args.new.title, ["Buy", "milk", "+home"]);
        assert_eq!(args.new.due.as_deref(), Some("tomorrow"));
        assert_eq!(args.new.priority, Some(heph_core::Priority::High));
        // Global flags go anywhere.
        let cli = parse(&["list", "--json", "--socket", "/s"]).unwrap();
        assert!(cli.global.json);
    }

    #[test]
    fn usage_errors_exit_2() {
        for bad in [
            &["add"][..],
            &["add", "x", "-p", "urgent"],
            &["edit", "6f", "--due", "mon", "--no-due"],
            &["frobnicate"],
            &["list", "--limit", "many"],
            &["done"],
            &["link", "a", "blocks"],
        ] {
            let err = parse(bad).err().unwrap();
            assert_eq!(err.exit_code(), 2, "{bad:?}");
        }
        assert_eq!(parse(&["--help"]).err().unwrap().exit_code(), 0);
        assert_eq!(parse(&[]).err().unwrap().exit_code(), 2);
    }

    #[test]
    fn help_documents_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  the heph daemon is not running"), "{help}");
    }
}
