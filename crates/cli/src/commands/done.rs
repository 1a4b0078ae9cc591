//! `heph done`: sets the status of each given task to `done`. One id that
//! fails does not stop the others; the exit code is the worst failure's.

use std::collections::BTreeMap;

use heph_core::rpc::{UpdateParams, method};
use serde_json::Value;

use crate::commands::for_each_id;
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph done`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ids or unique prefixes of the tasks
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    for_each_id(
        ctx,
        &args.ids,
        |node| output::changed("done", node),
        |client, id| {
            let set = BTreeMap::from([("status".to_owned(), Value::from("done"))]);
            let params = UpdateParams {
                id: id.to_owned(),
                set,
            };
            Ok(client.call(method::NODE_UPDATE, params)?)
        },
    )
}
