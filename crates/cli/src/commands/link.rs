//! `heph link`: adds a typed link (`blocks`, `relates`, …) from one node to
//! another, or with `--remove` takes it away. Both ends accept prefixes.

use heph_core::Node;
use heph_core::rpc::{LinkParams, method};

use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph link`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The source node's id or a unique prefix of it
    pub id: String,
    /// The relation: blocks, relates, …
    pub rel: String,
    /// The target node's id or a unique prefix of it
    pub target: String,
    /// Remove the link instead
    #[arg(short, long)]
    pub remove: bool,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let params = LinkParams {
        id: args.id.clone(),
        rel: args.rel.clone(),
        target: args.target.clone(),
        remove: args.remove,
    };
    let node: Node = ctx.client()?.call(method::NODE_LINK, params)?;
    if ctx.json() {
        return ctx.out.json(&node);
    }
    // Name the target by its full short id when the link shows it.
    let target = node
        .links
        .iter()
        .find(|l| l.rel == args.rel && l.target.as_str().starts_with(&args.target))
        .map_or(args.target.clone(), |l| {
            output::short_id(&l.target).to_owned()
        });
    ctx.out
        .print(&output::linked(&node, &args.rel, &target, args.remove))
}
