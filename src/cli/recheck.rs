//! `stagegate recheck ITEM --reason TEXT`: run a candidate's failing or erroring jobs again,
//! once the environment they failed in is fixed.

use crate::advice::Advice;
use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::keys::JobKey;
use crate::ledger::{Ledger, Verdict};
use crate::overrides::{RecheckRecord, RecheckedJob};
use crate::plan::CandidateId;

/// Run a candidate's failing or erroring jobs again, as new attempts beside the old ones,
/// after an infrastructure fault was fixed (a broken KVM, a variable the clean environment
/// no longer passed, a full disk). Nothing is waived: the gate judges the new attempts (and,
/// for the flaky policy, the whole history); their error budget starts again; a rejection
/// decided before the recheck is judged again. Recorded in the results ledger with your
/// name, the time and the reason; the next `stagegate run` (or `cycle`) runs the jobs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate: images/NAME, components/NAME, tests/NAME or stagegate.yaml.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub item: Option<String>,
    /// Every candidate with a failing or erroring job.
    #[arg(long)]
    pub all: bool,
    /// What was fixed (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only the move into this stage (default: every move ITEM is pending in).
    #[arg(long)]
    pub stage: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct Rechecked {
    item: String,
    stage: String,
    id: String,
    jobs: Vec<RecheckedJob>,
    /// The other members of its group, rechecked with it.
    with: Vec<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let reason = super::reason_of(args.reason.as_deref())?;
    let planner = ctx.start(false)?;
    let id = match &args.item {
        Some(text) => Some(crate::promote::edits::parse_candidate(&planner, text)?),
        None => None,
    };
    if let Some(s) = &args.stage {
        planner.stage(s)?;
    }
    let ledger = Ledger::new(planner.repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    let judgements = crate::judge::judge_all(&planner, args.stage.as_deref(), &view, ctx.now())?;
    let mut done: Vec<Rechecked> = Vec::new();
    let mut pending_somewhere = false;
    for j in &judgements {
        // Only moves INTO the stage asked for: `judge_all` also gives the move out of it.
        if args.stage.as_deref().is_some_and(|s| s != j.plan.to.name) {
            continue;
        }
        for g in &j.decided.evaluation.groups {
            let wanted = |m: &CandidateId| id.as_ref().is_none_or(|i| i == m);
            if !g.members.iter().any(wanted) {
                continue;
            }
            pending_somewhere = true;
            let mut jobs: Vec<RecheckedJob> = Vec::new();
            let mut add = |key: &JobKey, label: &str| -> Result<()> {
                if jobs.iter().any(|x| x.key == *key) {
                    return Ok(());
                }
                let Some(latest) = view.latest(key)? else {
                    return Ok(());
                };
                if matches!(
                    latest.verdict,
                    Verdict::Fail | Verdict::Error | Verdict::Skipped
                ) {
                    jobs.push(RecheckedJob {
                        key: key.clone(),
                        job: label.to_string(),
                        attempt: latest.attempt,
                    });
                }
                Ok(())
            };
            for jv in &g.jobs {
                add(&jv.key, &jv.label)?;
                if let Some(b) = &jv.baseline_key {
                    let label = j
                        .plan
                        .jobs
                        .get(b)
                        .map_or_else(|| jv.label.clone(), crate::plan::describe);
                    add(b, &label)?;
                }
            }
            // A standing rejection is lifted even when none of today's jobs failed (T moved
            // since, and the keys it rested on are no longer planned): judged again, the
            // group's jobs run against today's T.
            if jobs.is_empty() && !g.sticky {
                continue;
            }
            let mut first: Option<RecheckRecord> = None;
            for m in &g.members {
                let Some(c) = j.plan.candidate(m) else {
                    continue;
                };
                let rec = crate::overrides::recheck(
                    &ledger,
                    &m.to_string(),
                    &c.content,
                    &j.plan.to.name,
                    jobs.clone(),
                    j.facts.rejected.get(&c.content).map(|r| r.record.clone()),
                    reason,
                )?;
                first.get_or_insert(rec);
            }
            if let Some(rec) = first {
                let item = id
                    .as_ref()
                    .filter(|i| g.members.contains(i))
                    .map_or_else(|| rec.candidate.clone(), |i| i.to_string());
                done.push(Rechecked {
                    with: g
                        .members
                        .iter()
                        .map(|m| m.to_string())
                        .filter(|m| *m != item)
                        .collect(),
                    item,
                    stage: j.plan.to.name.clone(),
                    id: rec.id,
                    jobs,
                });
            }
        }
    }
    if let (Some(i), true) = (&id, done.is_empty()) {
        let stage = args
            .stage
            .as_deref()
            .map(|s| format!(" into {s}"))
            .unwrap_or_default();
        return Err(if pending_somewhere {
            Error::usage_help(
                format!("{i} has no failing or erroring job{stage}: nothing to recheck"),
                format!(
                    "`{}` shows what holds it back",
                    Advice::Why {
                        item: i.to_string()
                    }
                ),
            )
        } else {
            Error::usage_help(
                format!("{i} is not pending{stage}: nothing to recheck"),
                format!(
                    "`{}` lists the candidates of every stage move",
                    Advice::Status
                ),
            )
        });
    }
    if !done.is_empty() {
        ctx.workspace()?.publish_results(&planner.pipeline)?;
    }
    match args.format {
        Format::Json => print_json(&serde_json::json!({ "rechecked": done })),
        Format::Text if done.is_empty() => {
            println!("nothing to recheck: no candidate has a failing or erroring job")
        }
        Format::Text => {
            for r in &done {
                let with = if r.with.is_empty() {
                    String::new()
                } else {
                    format!(" (with {})", r.with.join(", "))
                };
                println!(
                    "rechecked {}{with} into {} (id {}): {} run again at the next `{}`",
                    r.item,
                    r.stage,
                    r.id,
                    super::count(r.jobs.len(), "job"),
                    crate::advice::Advice::Run
                );
                for job in &r.jobs {
                    println!("  {} {}", job.key.short(), job.job);
                }
            }
        }
    }
    Ok(0)
}
