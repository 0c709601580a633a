//! `stagegate unfreeze STAGE`: lift the freezes of a stage.

use super::{Code, Ctx, Format};
use crate::error::Result;
use crate::ledger::Ledger;

/// Lift every freeze of STAGE in force: promotion into it resumes with the next `promote`.
/// The freezes stay in the ledger's history; the lifting is recorded beside them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The frozen stage.
    pub stage: String,
    /// Why it may move again (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let stage = super::freeze::gated_stage(&planner, &args.stage)?;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let frozen: Vec<_> =
        crate::overrides::freezes(&ledger.view()?, &stage, crate::records::now_secs())?
            .iter()
            .map(|f| f.to_ref())
            .collect();
    crate::overrides::remove(&ledger, &frozen, &[], args.reason.as_deref())?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    super::print_lifted(
        "stage",
        &stage,
        &frozen,
        &format!("{stage} is not frozen"),
        args.format,
    );
    Ok(0)
}
