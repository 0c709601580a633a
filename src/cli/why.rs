//! `stagegate why ITEM`: why an item is or is not promoted.

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::gate::{self, Decision, Evaluation, JobState};
use crate::ledger::Ledger;
use crate::manifest::ItemId;
use crate::plan::{Planner, short};

/// Explain where ITEM stands: its version on every stage and, for each stage it is pending
/// on, every requirement of the gate and its state (missing results, failing jobs with
/// their log excerpt, fails-like-baseline, soak time left, holds).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The item: images/NAME or components/NAME.
    pub item: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct StageVersion {
    stage: String,
    version: Option<String>,
}

#[derive(Serialize)]
struct PendingWhy {
    from: String,
    to: String,
    evaluation: Evaluation,
}

#[derive(Serialize)]
struct Why {
    item: String,
    stages: Vec<StageVersion>,
    pending: Vec<PendingWhy>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let id = ItemId::parse(&args.item).ok_or_else(|| {
        Error::usage_help(
            format!("{:?} is not an item", args.item),
            "write images/NAME or components/NAME",
        )
    })?;
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, false)?;
    let mut stages = Vec::new();
    for s in &planner.pipeline.stages {
        let snap = planner.snapshot(planner.stage_head(s)?)?;
        stages.push(StageVersion {
            stage: s.name.clone(),
            version: snap.item(&id)?.map(|(_, i)| i.version.clone()),
        });
    }
    if stages.iter().all(|s| s.version.is_none()) {
        return Err(Error::usage_help(
            format!("{id} exists on no stage"),
            "`stagegate status` lists what is pending; check the spelling",
        ));
    }
    let ledger = Ledger::new(&repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    let mut pending = Vec::new();
    for (s, t) in planner.pipeline.moves() {
        let plan = planner.plan_move(s, t)?;
        let holds = crate::promote::holds(&repo, s, plan.from_head)?;
        let evals = gate::evaluate(&plan, &view, &holds, crate::promote::now())?;
        // The newest pending commit that carries the item is the one that would move it.
        if let Some(e) = evals.into_iter().find(|e| {
            plan.pending
                .iter()
                .any(|p| p.commit == e.commit && p.candidates.iter().any(|c| c.item == id))
        }) {
            pending.push(PendingWhy {
                from: s.name.clone(),
                to: t.name.clone(),
                evaluation: e,
            });
        }
    }
    let why = Why {
        item: id.to_string(),
        stages,
        pending,
    };
    match args.format {
        Format::Json => print_json(&why),
        Format::Text => print_text(&why, &id),
    }
    Ok(0)
}

fn print_text(why: &Why, id: &ItemId) {
    let versions: Vec<String> = why
        .stages
        .iter()
        .map(|s| format!("{} {}", s.stage, s.version.as_deref().unwrap_or("(absent)")))
        .collect();
    println!("{id}: {}", versions.join(", "));
    if why.pending.is_empty() {
        println!("not pending anywhere: every stage that has it agrees with the next");
        return;
    }
    let item = id.to_string();
    for p in &why.pending {
        let e = &p.evaluation;
        let verdict = match e.decision {
            Decision::Promote => "ready to promote".to_string(),
            Decision::Reject => "rejected".to_string(),
            Decision::Wait => "waiting".to_string(),
        };
        println!(
            "\n{} → {}: {verdict} ({} {})",
            p.from,
            p.to,
            short(e.commit),
            e.subject
        );
        let mine: Vec<_> = e
            .jobs
            .iter()
            .filter(|j| j.candidates.iter().any(|c| c == id))
            .collect();
        if mine.is_empty() && e.jobs.is_empty() {
            println!("  no jobs are required by the gate into {}", p.to);
        }
        for j in &mine {
            let mark = match j.state {
                JobState::Passed | JobState::Flaky => "ok  ",
                JobState::FailsLikeBaseline => "ok~ ",
                JobState::Missing => "... ",
                _ => "FAIL",
            };
            let verdict = j.verdict.map_or("no result".to_string(), |v| v.to_string());
            let baseline = match (&j.baseline_key, j.baseline) {
                (Some(_), Some(b)) => format!(", baseline {b}"),
                (Some(_), None) => ", baseline has no result".into(),
                _ => String::new(),
            };
            println!(
                "  {mark} {} — {verdict}{baseline} (key {})",
                j.label,
                &j.key[..12]
            );
            if j.state == JobState::Missing {
                println!(
                    "         next: `stagegate run` (or `stagegate run --job {}`)",
                    &j.key[..12]
                );
            }
            if matches!(
                j.state,
                JobState::Regression
                    | JobState::Error
                    | JobState::FailsLikeBaseline
                    | JobState::FailedBaselineMissing
            ) {
                if let Some(r) = &j.reason {
                    println!("         reason: {r}");
                }
                if let Some(l) = &j.log {
                    println!("         log: {l}");
                }
                if let Some(x) = &j.excerpt {
                    for line in x
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        println!("         | {line}");
                    }
                }
            }
        }
        for r in e
            .reasons
            .iter()
            .filter(|r| r.item.as_deref() == Some(item.as_str()) && r.job.is_none())
        {
            println!("  {}: {}", r.kind, r.message);
        }
        for r in e.reasons.iter().filter(|r| r.item.is_none()) {
            println!("  {}: {}", r.kind, r.message);
        }
        let others: Vec<_> = e
            .reasons
            .iter()
            .filter(|r| r.item.is_some() && r.item.as_deref() != Some(item.as_str()))
            .collect();
        if !others.is_empty() {
            println!("  the same commit also waits on:");
            for r in others {
                println!("    - {}", r.message);
            }
        }
    }
}
