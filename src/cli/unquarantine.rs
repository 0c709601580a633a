//! `stagegate unquarantine TEST`: the test gates again.

use super::{Code, Ctx, Format};
use crate::error::Result;
use crate::ledger::Ledger;

/// Lift every quarantine of TEST in force: its failures block again from the next
/// `promote`. The quarantine stays in the ledger's history; the lifting is recorded beside.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The test: tests/NAME (or NAME).
    pub test: String,
    /// Why it gates again (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let test = super::quarantine::test_name(&planner, &args.test)?;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    let now = crate::records::now_secs();
    let mut lifted = Vec::new();
    for q in crate::overrides::quarantines_of(&view, &test, now)? {
        lifted.push(q.to_ref());
    }
    crate::overrides::remove(
        &ledger,
        &lifted,
        &[format!("tests/{test}")],
        args.reason.as_deref(),
    )?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    super::print_lifted(
        "test",
        &test,
        &lifted,
        &format!("tests/{test} is not quarantined"),
        args.format,
    );
    Ok(0)
}
