//! `stagegate freeze STAGE --reason TEXT`: stop every promotion into a stage.

use super::{Code, Ctx, Expiry, Format};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::plan::Planner;

/// Freeze a stage: nothing is promoted into it (during an incident, a release) until
/// `stagegate unfreeze STAGE` lifts the freeze or it expires. Jobs still run and results
/// are still recorded; `promote` and `cycle` say the stage is frozen and exit 0.
/// Recorded in the results ledger with your name, the time and the reason.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stage nothing may enter (one with a gate: not the first stage).
    pub stage: String,
    /// Why (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub expiry: Expiry,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let reason = super::reason_of(args.reason.as_deref())?;
    let stage = gated_stage(&planner, &args.stage)?;
    let expires = args.expiry.resolve()?;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let rec = crate::overrides::freeze(&ledger, &stage, expires, reason)?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    super::print_override("froze", &rec.to_ref(), args.format);
    Ok(0)
}

/// The stage named `name` (or its branch), when a gate guards it.
pub fn gated_stage(planner: &Planner, name: &str) -> Result<String> {
    let s = planner.stage(name)?;
    if planner
        .pipeline
        .stages
        .first()
        .is_some_and(|f| f.name == s.name)
    {
        return Err(Error::usage_help(
            format!(
                "{} is the first stage: commits enter it directly, nothing is promoted into it",
                s.name
            ),
            format!(
                "freeze a stage after it: {}",
                planner
                    .pipeline
                    .stages
                    .iter()
                    .skip(1)
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(s.name.clone())
}
