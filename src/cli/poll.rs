//! `stagegate poll`: commit candidates for what changed upstream.

use super::{Code, Ctx, Format};
use crate::error::Result;

/// Run each `watch` command, check each tracked component branch, and find images older
/// than their `max-age`; commit a candidate bump to the first stage for each, with the
/// reason in the message. A second poll with nothing new commits nothing.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Show what would be bumped, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let bumps = crate::poll::poll(
        &planner,
        &crate::poll::Options {
            dry_run: args.dry_run,
            now: ctx.now(),
        },
    )?;
    super::show::bumps(&bumps, args.format);
    Ok(0)
}
