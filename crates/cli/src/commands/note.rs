//! `heph note`: `heph add --note` under its own name.

use heph_core::Kind;

use crate::commands::add::{self, NewNode};
use crate::context::Ctx;
use crate::exit::CliError;

/// `heph note`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub new: NewNode,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    add::create(ctx, args.new, Kind::Note)
}
