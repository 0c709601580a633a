//! `stagegate promote`: evaluate every gate and merge what passes.

use super::{Code, Ctx, Format, show};
use crate::error::Result;
use crate::promote;

/// Evaluate every gate, then merge the newest passing commit of each stage into the next
/// (a merge commit carrying the decision as YAML and trailers). Rejections are recorded.
///
/// Exits 1 when the gate rejects a candidate in this run (a regression), 0 otherwise:
/// promoted, waiting, or a rejection that stood before (listed, not signalled).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only the move into this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Print the decisions, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Push each promoted stage branch to the remote.
    #[arg(long)]
    pub push: bool,
    /// Promote through pull requests for every gate, not only those with `review: true`.
    #[arg(long)]
    pub review: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(args.push)?;
    let moves = promote::publish::moves(&planner, args.stage.as_deref())?;
    let remote = ctx.review_remote(&planner.pipeline)?;
    let forge = ctx.forge(&planner.pipeline, &remote)?;
    let opts = promote::Options::for_runner(
        args.dry_run,
        forge.as_deref(),
        remote,
        args.review,
        ctx.now(),
    );
    let mut outcomes = Vec::new();
    for (s, t) in &moves {
        outcomes.push(promote::publish::promote_and_publish(
            &planner, s, t, &opts,
        )?);
    }
    show::decisions(&outcomes, args.format, args.dry_run);
    show::github_outputs(&outcomes)?;
    Ok(show::code(&outcomes))
}
