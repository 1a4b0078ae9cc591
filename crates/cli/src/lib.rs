//! `heph`, the Hephaestus command line: a small synchronous client of the
//! `hephd` daemon's local RPC (DESIGN §6, §8).
//!
//! [`main`] parses flags with clap ([`cli`]), resolves settings exactly as
//! the daemon does ([`context`]), runs one verb from [`commands`] and turns
//! the outcome into an exit code ([`exit`]). Every sentence a person reads is
//! built by a pure function in [`output`], [`exit`] or [`service`] so that it
//! can be snapshot-tested; only [`context::Out`] writes to stdout and stderr.
//! There is no async runtime: the RPC is one blocking request line and one
//! response line on a unix socket ([`rpc_client`]).

pub mod cli;
pub mod commands;
pub mod context;
pub mod exit;
pub mod launch;
pub mod output;
pub mod rpc_client;
pub mod service;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::context::{Ctx, Out};
use crate::exit::Exit;

/// Runs `heph` with these arguments (the first is the program name).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            // A closed pipe while printing help is not an error either.
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    let out = Out::new(cli.global.json);
    let exit = match Ctx::from_process(&cli.global, out.clone()) {
        Ok(ctx) => match commands::run(&ctx, cli.command) {
            Ok(()) => Exit::Ok,
            Err(err) => out.fail(&err),
        },
        Err(err) => out.fail(&err),
    };
    ExitCode::from(exit as u8)
}
