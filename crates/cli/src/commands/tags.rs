//! `heph tags`: every tag in use, with how many live nodes carry it.

use heph_core::rpc::{TagsResult, method};

use crate::context::Ctx;
use crate::exit::CliError;

/// `heph tags`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// `+home  3` lines, tags aligned.
pub fn tags_text(result: &TagsResult) -> String {
    let width = result
        .tags
        .iter()
        .map(|t| t.tag.chars().count() + 1)
        .max()
        .unwrap_or(0);
    result
        .tags
        .iter()
        .map(|t| format!("{:<width$}  {}\n", format!("+{}", t.tag), t.count))
        .collect()
}

pub fn run(ctx: &Ctx, _args: Args) -> Result<(), CliError> {
    let result: TagsResult = ctx.client()?.call(method::TAGS_LIST, ())?;
    if ctx.json() {
        return ctx.out.json(&result);
    }
    if result.tags.is_empty() {
        ctx.out.note("no tags yet (heph tag ID TAG adds one)");
        return Ok(());
    }
    ctx.out.print(&tags_text(&result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use heph_core::rpc::TagCount;

    #[test]
    fn aligned() {
        let result = TagsResult {
            tags: vec![
                TagCount {
                    tag: "home".into(),
                    count: 3,
                },
                TagCount {
                    tag: "errands".into(),
                    count: 12,
                },
            ],
        };
        assert_eq!(tags_text(&result), "+home     3\n+errands  12\n");
    }
}
