//! `heph restore`: brings back deleted tasks or notes (sets the `deleted`
//! register to false; every field they had comes back with them).

use std::collections::BTreeMap;

use heph_core::rpc::{UpdateParams, method};
use serde_json::Value;

use crate::commands::for_each_id;
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph restore`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Ids or unique prefixes of the deleted tasks or notes (`heph list --deleted` shows them)
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    for_each_id(
        ctx,
        &args.ids,
        |node| output::changed("restored", node),
        |client, id| {
            let set = BTreeMap::from([("deleted".to_owned(), Value::Bool(false))]);
            let params = UpdateParams {
                id: id.to_owned(),
                set,
            };
            Ok(client.call(method::NODE_UPDATE, params)?)
        },
    )
}
