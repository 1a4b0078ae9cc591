//! `heph show`: one node with every field, the titles of its parent and
//! linked nodes, and its body. `--json` prints the node exactly as the
//! daemon returned it.

use std::collections::BTreeMap;

use crate::commands::get_node;
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph show`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The node's id or a unique prefix of it
    pub id: String,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let mut client = ctx.client()?;
    let node = get_node(&mut client, &args.id)?;
    if ctx.json() {
        return ctx.out.json(&node);
    }
    let related = node
        .parent
        .iter()
        .chain(node.links.iter().map(|l| &l.target));
    let mut titles = BTreeMap::new();
    for id in related {
        // A related node that cannot be read is shown by id alone.
        match get_node(&mut client, id.as_str()) {
            Ok(other) => {
                titles.insert(*id, output::title(&other).to_owned());
            }
            Err(err) if err.is_not_running() => return Err(err),
            Err(_) => {}
        }
    }
    ctx.out
        .print(&output::node_detail(&node, &titles, &ctx.now))
}
