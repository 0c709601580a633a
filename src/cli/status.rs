//! `stagegate status`: where every stage stands.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::gate::{self, Decision};
use crate::ledger::{Ledger, Verdict};
use crate::plan::{Candidate, Planner};

/// Show each stage move: heads, pending commits, their candidates, job counts by verdict,
/// and what the gate says of each pending commit (promote, reject, wait) and why.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct PendingView<'a> {
    commit: String,
    subject: &'a str,
    candidates: &'a [Candidate],
    changed_tests: &'a [String],
    jobs: BTreeMap<&'static str, usize>,
    /// What the gate says of this commit now, and why.
    gate: Decision,
    reasons: Vec<String>,
}

#[derive(Serialize)]
struct MoveView<'a> {
    from: &'a str,
    to: &'a str,
    from_head: String,
    to_head: String,
    pending: Vec<PendingView<'a>>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, false)?;
    let plans = planner.plan_all(None)?;
    let view = Ledger::new(&repo, &planner.pipeline.results_ref).view()?;
    let now = crate::promote::now();
    let mut views = Vec::new();
    for p in &plans {
        let holds = crate::promote::holds(&repo, &p.from, p.from_head)?;
        let evals = gate::evaluate(p, &view, &holds, now)?;
        let pending = p
            .pending
            .iter()
            .zip(evals)
            .map(|(pend, e)| {
                let mut jobs: BTreeMap<&'static str, usize> = BTreeMap::new();
                for j in &e.jobs {
                    *jobs
                        .entry(j.verdict.map_or("missing", Verdict::as_str))
                        .or_default() += 1;
                }
                PendingView {
                    commit: pend.commit.to_string(),
                    subject: &pend.subject,
                    candidates: &pend.candidates,
                    changed_tests: &pend.changed_tests,
                    jobs,
                    gate: e.decision,
                    reasons: e.reasons.into_iter().map(|r| r.message).collect(),
                }
            })
            .collect();
        views.push(MoveView {
            from: &p.from.name,
            to: &p.to.name,
            from_head: p.from_head.to_string(),
            to_head: p.to_head.to_string(),
            pending,
        });
    }
    match args.format {
        Format::Json => print_json(&views),
        Format::Text => {
            for v in &views {
                println!(
                    "{} ({}) → {} ({})",
                    v.from,
                    &v.from_head[..10],
                    v.to,
                    &v.to_head[..10]
                );
                if v.pending.is_empty() {
                    println!("  up to date");
                }
                for p in &v.pending {
                    println!("  {} {}", &p.commit[..10], p.subject);
                    for c in p.candidates {
                        println!("    {}", candidate_line(c));
                    }
                    for t in p.changed_tests {
                        println!("    tests/{t}: changed");
                    }
                    if !p.jobs.is_empty() {
                        let counts: Vec<String> =
                            p.jobs.iter().map(|(k, n)| format!("{n} {k}")).collect();
                        println!("    jobs: {}", counts.join(", "));
                    }
                    println!("    gate: {}", p.gate);
                    for r in &p.reasons {
                        println!("      - {r}");
                    }
                }
            }
        }
    }
    Ok(0)
}

pub fn candidate_line(c: &Candidate) -> String {
    match (&c.from, &c.to) {
        (None, Some(to)) => format!("{}: new at {to}", c.item),
        (Some(from), None) => format!("{}: removed (was {from})", c.item),
        (Some(from), Some(to)) if c.inputs_only => {
            format!("{}: {from}, build inputs changed", c.item)
        }
        (Some(from), Some(to)) => format!("{}: {from} → {to}", c.item),
        (None, None) => c.item.to_string(),
    }
}
