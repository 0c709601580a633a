//! `stagegate drop ITEM --reason TEXT`: revert a candidate so later commits can move.

use super::{Code, Ctx, Format};
use crate::error::Result;

/// Drop a pending candidate: revert ITEM (its manifest, the files it names, its build
/// record) to the next stage's version, on the last stage it is pending on and on every
/// earlier stage holding the same version. The dropped version is recorded, so `poll`
/// never proposes it again (a later upstream version is proposed as usual).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate: images/NAME, components/NAME, tests/NAME or stagegate.yaml.
    pub item: String,
    /// Why (recorded in the commit message).
    #[arg(long)]
    pub reason: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let done = crate::promote::edits::drop_item(&planner, &args.item, &args.reason)?;
    match args.format {
        Format::Json => super::print_json(&done),
        Format::Text => {
            for d in &done {
                super::print_edit(d, Format::Text);
            }
        }
    }
    Ok(0)
}
