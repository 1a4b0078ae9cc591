//! `heph done`: sets the status of each given task to `done`. One id that
//! fails does not stop the others; the exit code is the worst failure's.

use serde_json::Value;

use crate::commands::set_on_each;
use crate::context::Ctx;
use crate::exit::CliError;

/// `heph done`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ids or unique prefixes of the tasks
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    set_on_each(ctx, &args.ids, "done", "status", Value::from("done"))
}
