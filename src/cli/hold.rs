//! `stagegate hold ITEM --reason TEXT`: keep an item from being promoted.

use super::{Code, Ctx, Format};
use crate::error::Result;

/// Hold ITEM on the stage where it is pending: a commit adding a hold record, so who held
/// what and why is in `git log`. Commits containing the item wait until it is released.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The item: images/NAME or components/NAME.
    pub item: String,
    /// Why (recorded in the hold and the commit message).
    #[arg(long)]
    pub reason: String,
    /// The stage to hold it on (default: where it is pending).
    #[arg(long)]
    pub stage: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let done =
        crate::promote::edits::hold(&planner, &args.item, &args.reason, args.stage.as_deref())?;
    super::print_edit(&done, args.format);
    Ok(0)
}
