//! `heph rm`: deletes each given node through `node.delete` (a tombstone:
//! the node stays in the log and `heph list --deleted` still shows it).

use heph_core::rpc::{IdParams, method};

use crate::commands::for_each_id;
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph rm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ids or unique prefixes of the tasks or notes
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    for_each_id(
        ctx,
        &args.ids,
        |node| output::changed("deleted", node),
        |client, id| Ok(client.call(method::NODE_DELETE, IdParams { id: id.to_owned() })?),
    )
}
