//! `stagegate quarantine TEST --reason TEXT`: a test that runs but does not gate.

use super::{Code, Ctx, Expiry, Format};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::plan::{CandidateId, Planner};

/// Quarantine a test: it still runs and its results are still recorded (its history keeps
/// growing), but a failure, an error or a missing result of it blocks no gate. Until
/// `stagegate unquarantine TEST` or the expiry. Recorded in the results ledger with your
/// name, the time and the reason; `stagegate status` lists what is quarantined.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The test: tests/NAME (or NAME).
    pub test: String,
    /// Why (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only for the gate into this stage (default: every gate).
    #[arg(long)]
    pub stage: Option<String>,
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
    let test = test_name(&planner, &args.test)?;
    let stage = args
        .stage
        .as_deref()
        .map(|s| super::freeze::gated_stage(&planner, s))
        .transpose()?;
    let expires = args.expiry.resolve()?;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let rec = crate::overrides::quarantine(&ledger, &test, stage, expires, reason)?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    super::print_override("quarantined", &rec.to_ref(), args.format);
    Ok(0)
}

/// The name of the test `text` names (`tests/NAME` or `NAME`).
pub fn test_name(planner: &Planner, text: &str) -> Result<String> {
    let t = text.trim();
    let path = if t.starts_with("tests/") {
        t.to_string()
    } else {
        format!("tests/{t}")
    };
    match crate::promote::edits::parse_candidate(planner, &path)? {
        CandidateId::Test(name) => Ok(name),
        other => Err(Error::usage_help(
            format!("{other} is not a test"),
            "quarantine a test: tests/NAME",
        )),
    }
}
