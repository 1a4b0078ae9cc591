//! `heph tag`: adds tags to one node, or with `--remove` takes them off.
//! `+home` and `home` name the same tag.

use heph_core::Node;
use heph_core::rpc::{TagParams, method};

use crate::commands::tag_name;
use crate::context::Ctx;
use crate::exit::CliError;
use crate::output;

/// `heph tag`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The node's id or a unique prefix of it
    pub id: String,
    /// Tags to add (or remove)
    #[arg(required = true, value_name = "TAG")]
    pub tags: Vec<String>,
    /// Remove these tags instead
    #[arg(short, long)]
    pub remove: bool,
}

/// The `node.tag` request.
pub fn params(args: &Args) -> TagParams {
    let tags: Vec<String> = args.tags.iter().map(|t| tag_name(t)).collect();
    let (add, remove) = if args.remove {
        (Vec::new(), tags)
    } else {
        (tags, Vec::new())
    };
    TagParams {
        id: args.id.clone(),
        add,
        remove,
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<(), CliError> {
    let node: Node = ctx.client()?.call(method::NODE_TAG, params(&args))?;
    if ctx.json() {
        ctx.out.json(&node)
    } else {
        let verb = if args.remove { "untagged" } else { "tagged" };
        ctx.out.print(&output::changed(verb, &node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_signs_are_dropped() {
        let args = Args {
            id: "6f".into(),
            tags: vec!["+home".into(), "work".into()],
            remove: false,
        };
        assert_eq!(params(&args).add, ["home", "work"]);
        let args = Args {
            remove: true,
            ..args
        };
        assert_eq!(params(&args).remove, ["home", "work"]);
        assert!(params(&args).add.is_empty());
    }
}
