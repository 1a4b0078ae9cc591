//! `heph restore`: brings back deleted tasks or notes (sets the `deleted`
//! register to false; every field they had comes back with them).

use serde_json::Value;

use crate::commands::set_on_each;
use crate::context::Ctx;
use crate::exit::CliError;

/// `heph restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ids or unique prefixes of the deleted tasks or notes (`heph list --deleted` shows them)
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    set_on_each(ctx, &args.ids, "restored", "deleted", Value::Bool(false))
}
