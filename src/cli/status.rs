//! `stagegate status`: where every stage stands.

use crate::advice::Advice;
use std::collections::BTreeMap;

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::gate::State;
use crate::keys::{COMMIT_DIGITS, ContentKey, short_commit};
use crate::ledger::Ledger;
use crate::overrides::OverrideRef;
use crate::plan::{CandidateId, Planner};

/// Show each stage move: heads, and every candidate (an item, test or pipeline change whose
/// content differs between the two stages) with what the gate says of it — promote, wait,
/// held, rejected or invalid — and why, with its job counts by verdict.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
pub struct CandidateView {
    pub item: CandidateId,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Present on S (false: a removal).
    pub present: bool,
    /// New on S (T does not have it).
    pub new: bool,
    /// The content key of S's version.
    pub content: ContentKey,
    pub state: State,
    /// The other candidates it is judged and moves with.
    pub with: Vec<CandidateId>,
    pub jobs: BTreeMap<&'static str, usize>,
    pub reasons: Vec<String>,
}

#[derive(Serialize)]
pub struct MoveView {
    pub from: String,
    pub to: String,
    pub from_head: String,
    pub to_head: String,
    pub candidates: Vec<CandidateView>,
    /// Why what passes alone does not move yet (a combination), if anything.
    pub notes: Vec<String>,
    /// T is frozen: nothing moves into it (the freezes in force).
    pub frozen: Vec<OverrideRef>,
    /// Every override in force for this move: freezes of T, quarantined tests, waivers of
    /// planned jobs, approvals of pending content.
    pub overrides: Vec<OverrideRef>,
    /// T's pipeline declares `trust:`: only signed evidence counts.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub signed_evidence: bool,
    /// Records about this move that T's `trust:` does not count, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_counted: Vec<crate::trust::NotCounted>,
    /// Records a ledger commit deleted, weighed as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<crate::trust::Deleted>,
    /// Runners seen in the last day whose health checks fail (README: Host labels): the
    /// same list on every move.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unhealthy_runners: Vec<crate::runners::Heartbeat>,
}

/// The state of every move as the gate sees it now (reads only; records nothing).
pub fn views(planner: &Planner, stage: Option<&str>, now: i64) -> Result<Vec<MoveView>> {
    let repo = planner.repo;
    let view = Ledger::new(repo, &planner.pipeline.results_ref).view()?;
    let mut out = Vec::new();
    let beats = crate::runners::read(planner.repo).unwrap_or_default();
    let sick: Vec<crate::runners::Heartbeat> = crate::runners::unhealthy(&beats, now)
        .into_iter()
        .cloned()
        .collect();
    for j in crate::judge::judge_all(planner, stage, &view, now)? {
        let p = &j.plan;
        let candidates = p
            .candidates
            .iter()
            .map(|c| {
                let g = j.group(&c.id);
                CandidateView {
                    item: c.id.clone(),
                    from: c.from.clone(),
                    to: c.to.clone(),
                    present: c.present,
                    new: c.new,
                    content: c.content.clone(),
                    state: j.state(&c.id),
                    with: g
                        .map(|g| g.members.iter().filter(|m| **m != c.id).cloned().collect())
                        .unwrap_or_default(),
                    jobs: g.map(|g| crate::gate::counts(&g.jobs)).unwrap_or_default(),
                    reasons: g
                        .map(|g| g.reasons.iter().map(|r| r.message.clone()).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        out.push(MoveView {
            from: p.from.name.clone(),
            to: p.to.name.clone(),
            from_head: p.from_head.to_string(),
            to_head: p.to_head.to_string(),
            candidates,
            notes: j.decided.notes.clone(),
            frozen: j.facts.frozen.iter().map(|f| f.to_ref()).collect(),
            overrides: j.facts.overrides(),
            signed_evidence: p.trust.is_some(),
            not_counted: j.not_counted.clone(),
            restored: j.restored.clone(),
            unhealthy_runners: sick.clone(),
        });
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let views = views(&planner, None, ctx.now())?;
    match args.format {
        Format::Json => print_json(&views),
        Format::Text => {
            for v in &views {
                println!(
                    "{} ({}) → {} ({})",
                    v.from,
                    short_commit(&v.from_head, COMMIT_DIGITS),
                    v.to,
                    short_commit(&v.to_head, COMMIT_DIGITS)
                );
                for f in &v.frozen {
                    println!(
                        "  FROZEN: {} (lift with `{}`)",
                        f.line(),
                        Advice::Unfreeze {
                            stage: v.to.clone()
                        }
                    );
                }
                if v.candidates.is_empty() {
                    println!("  up to date");
                }
                for c in &v.candidates {
                    let label = super::show::candidate_label(
                        &c.item,
                        c.from.as_deref(),
                        c.to.as_deref(),
                        c.present,
                        c.new,
                    );
                    let counts: Vec<String> =
                        c.jobs.iter().map(|(k, n)| format!("{n} {k}")).collect();
                    let counts = if counts.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", counts.join(", "))
                    };
                    println!("  {label}: {}{counts}", c.state);
                    if !c.with.is_empty() {
                        let with: Vec<String> = c.with.iter().map(|w| w.to_string()).collect();
                        println!("    together with {}", with.join(", "));
                    }
                    for r in &c.reasons {
                        println!("    - {r}");
                    }
                }
                for n in &v.notes {
                    println!("  {n}");
                }
                let others: Vec<&OverrideRef> =
                    v.overrides.iter().filter(|o| o.kind != "freeze").collect();
                if !others.is_empty() {
                    println!("  overrides in force:");
                    for o in others {
                        println!("    {}", o.line());
                    }
                }
                super::why::print_not_counted(&v.not_counted, &v.restored, &v.to);
            }
            if let Some(v) = views.first()
                && !v.unhealthy_runners.is_empty()
            {
                println!("unhealthy runners (they take none of these labels' jobs):");
                for h in &v.unhealthy_runners {
                    for (label, why) in &h.unhealthy {
                        println!("  {} `{label}`: {why} (seen {})", h.host, h.seen);
                    }
                }
            }
            // stagegate judges commits: say so when the work tree holds more.
            let dirty = crate::repo::remote::uncommitted(planner.repo);
            if !dirty.is_empty() {
                const SHOWN: usize = 10;
                let mut files = dirty
                    .iter()
                    .take(SHOWN)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if dirty.len() > SHOWN {
                    files.push_str(&format!(" and {} more", dirty.len() - SHOWN));
                }
                println!(
                    "uncommitted changes in the work tree (not judged): {files} — commit them to make them candidates"
                );
            }
        }
    }
    Ok(0)
}
