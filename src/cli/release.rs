//! `stagegate release ITEM`: lift a hold.

use super::{Code, Ctx, Format};
use crate::error::Result;

/// Release a held item: a commit removing its hold record.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The item: images/NAME or components/NAME.
    pub item: String,
    /// The stage it is held on (default: wherever it is held).
    #[arg(long)]
    pub stage: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let done = crate::promote::edits::release(&planner, &args.item, args.stage.as_deref())?;
    super::print_edit(&done, args.format);
    Ok(0)
}
