//! `stagegate approve CANDIDATE --reason TEXT`: let a pipeline change move.

use super::{Code, Ctx, Expiry, Format, print_json};
use crate::error::{Error, Result};
use crate::ledger::Ledger;

/// Approve a pending candidate — a change of stagegate.yaml, which no run can move on its
/// own — into the next stage. The approval is for exactly the pending content: a later
/// change needs a new one. Recorded in the results ledger with your name, the time and the
/// reason; `--remove ID` lifts it (recorded too).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate: stagegate.yaml (or images/NAME, components/NAME, tests/NAME).
    #[arg(required_unless_present = "remove")]
    pub candidate: Option<String>,
    /// Why (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// The stage it may enter (default: the next stage of the first move it is pending on).
    #[arg(long)]
    pub stage: Option<String>,
    #[command(flatten)]
    pub expiry: Expiry,
    /// Lift the approval with this id instead (`stagegate status` lists them).
    #[arg(long, value_name = "ID", conflicts_with_all = ["candidate", "stage"])]
    pub remove: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    if let Some(id) = &args.remove {
        return super::lift_by_id(
            repo,
            &planner.pipeline,
            "approve",
            id,
            args.reason.as_deref(),
            args.format,
        );
    }
    let reason = super::reason_of(args.reason.as_deref())?;
    let expires = args.expiry.resolve()?;
    let id = crate::promote::edits::parse_candidate(
        &planner,
        args.candidate.as_deref().unwrap_or_default(),
    )?;
    let moves = crate::promote::edits::pending_moves(&planner, &id)?;
    let found = moves.into_iter().find(|(_, t)| {
        args.stage
            .as_ref()
            .is_none_or(|s| &t.name == s || &t.branch == s)
    });
    let Some((s, t)) = found else {
        return Err(Error::usage_help(
            format!(
                "{id} is not pending{}",
                args.stage
                    .as_ref()
                    .map(|s| format!(" into {s}"))
                    .unwrap_or_default()
            ),
            format!("`{}` shows what is pending", crate::advice::Advice::Status),
        ));
    };
    let plan = planner.plan_move(s, t)?;
    let c = plan
        .candidate(&id)
        .ok_or_else(|| Error::usage(format!("{id} is not pending into {}", t.name)))?;
    let rec = crate::overrides::approve(
        &ledger,
        &id.to_string(),
        &c.content,
        &t.name,
        expires,
        reason,
        plan.trust.as_ref(),
    )?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "candidate": id,
            "stage": t.name,
            "content": c.content,
            "recorded": rec.is_some(),
            "override": rec.as_ref().map(|r| r.to_ref()),
        })),
        Format::Text => match &rec {
            Some(_) => println!("approved {id} into {}: {reason}", t.name),
            None => println!("{id} was already approved into {}", t.name),
        },
    }
    Ok(0)
}
