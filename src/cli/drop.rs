//! `stagegate drop ITEM --reason TEXT`: revert a candidate so later commits can move.

use super::{Code, Ctx, Format};
use crate::error::Result;
use crate::plan::Planner;

/// Drop a pending candidate: a commit on its stage that reverts ITEM's manifest (and build
/// inputs) to the next stage's version, so the commits after it no longer carry it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The item: images/NAME or components/NAME.
    pub item: String,
    /// Why (recorded in the commit message).
    #[arg(long)]
    pub reason: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, false)?;
    let done = crate::promote::edits::drop_item(&planner, &args.item, &args.reason)?;
    super::print_edit(&done, args.format);
    Ok(0)
}
