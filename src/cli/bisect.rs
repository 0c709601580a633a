//! `stagegate bisect ITEM`: name the upstream commit that broke a rejected component.

use super::{Code, Ctx, Format, print_json};
use crate::bisect::record::{BisectRecord, StepRecord};
use crate::bisect::{self, Outcome, Progress};
use crate::error::Result;
use crate::keys::{LONG_COMMIT_DIGITS, short_commit};
use crate::plan::Job;

/// Find the first bad upstream commit of a rejected component.
///
/// When a component that tracks an upstream repository (`source: {git, commit, track}`)
/// jumped several upstream commits and a test regressed against the target stage, this
/// replays the tests that regressed (with everything else at the target stage) at the
/// upstream commits in between: both ends first (the target's commit must pass, the
/// candidate's must fail), then a binary search of the tracked branch's first-parent line,
/// then into the side a merge brought in when the first bad commit is a merge. Each commit
/// is settled when its results reproduce (`--reproduce`); an `error` is no verdict. Every
/// result is recorded in the ledger, so a repeated bisect runs only what is missing; the
/// outcome is recorded too, and `why`, `log`, the decision and the pull request name it.
///
/// Exits 0 when it names the first bad commit, 1 when the regression does not reproduce at
/// the two ends (nothing to name), 2 when ITEM is not a rejected tracked component, 3 when
/// the upstream cannot be fetched or a commit cannot be tested (an `error` twice), 130
/// when interrupted.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The rejected component: components/NAME.
    pub item: String,
    /// Agreeing results that settle each tested commit (default: the gate's
    /// `bisect: {reproduce: N}`, else 2).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10))]
    pub reproduce: Option<u32>,
    /// Stay on the tracked branch's first-parent line: when the first bad commit is a
    /// merge, name the merge instead of searching the side it brought in.
    #[arg(long)]
    pub first_parent: bool,
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Push the results ledger to the remote afterwards.
    #[arg(long)]
    pub push: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(args.push)?;
    let id = crate::promote::edits::parse_candidate(&planner, &args.item)?;
    let target = bisect::target(&planner, &id, ctx.now())?;
    let opts = bisect::Options {
        reproduce: bisect::reproduce(args.reproduce, target.policy),
        first_parent: args.first_parent,
        by: super::decider(),
    };
    let text = args.format == Format::Text;
    if text {
        println!(
            "bisecting {id} between {} ({}) and {} ({}), replaying {}; each result must reproduce {}×",
            short_commit(&target.good, LONG_COMMIT_DIGITS),
            target.plan.to.name,
            short_commit(&target.bad, LONG_COMMIT_DIGITS),
            target.plan.from.name,
            tests(&target.jobs),
            opts.reproduce
        );
    }
    let mut progress = |p: Progress| {
        if text {
            show(&p);
        }
    };
    match crate::cycle::bisect(&planner, &target, &opts, args.parallel, &mut progress)? {
        Outcome::Interrupted => {
            if text {
                println!(
                    "interrupted: the results recorded so far are kept; `{}` goes on from them",
                    crate::advice::Advice::Bisect {
                        item: id.to_string()
                    }
                );
            }
            Ok(130)
        }
        Outcome::Done(rec) => {
            match args.format {
                Format::Json => print_json(&rec),
                Format::Text => print_outcome(&rec),
            }
            Ok(if rec.first_bad.is_some() { 0 } else { 1 })
        }
    }
}

fn tests(jobs: &[Job]) -> String {
    jobs.iter()
        .map(|j| format!("tests/{}", j.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of a bisect's progress, for people.
pub fn show(p: &Progress) {
    match p {
        Progress::Line { commits } => println!(
            "{} on the first-parent line",
            super::count(*commits, "upstream commit")
        ),
        Progress::Testing { .. } => {}
        Progress::Settled { step } => println!("  {}", step_line(step)),
    }
}

fn step_line(s: &StepRecord) -> String {
    let role = match s.role.as_str() {
        "good-end" => "(the target's commit)",
        "bad-end" => "(the candidate's commit)",
        "merged-side" => "(merged side)",
        _ => "",
    };
    format!(
        "{:<4} {} {} — {} passed, {} failed{} {role}",
        s.verdict,
        short_commit(&s.commit, LONG_COMMIT_DIGITS),
        s.subject,
        s.passed,
        s.failed,
        if s.flaky { ", flaky here" } else { "" }
    )
    .trim_end()
    .to_string()
}

fn print_outcome(rec: &BisectRecord) {
    match &rec.first_bad {
        Some(c) => {
            println!(
                "first bad commit: {} {}\n  author: {}",
                c.commit, c.subject, c.author
            );
            if let Some(m) = &rec.merged_by {
                println!("  merged into {} by {m}", rec.upstream);
            }
            println!(
                "  {} tested between the two ends, {} commits on the first-parent line",
                super::count(rec.steps_between(), "commit"),
                rec.line
            );
        }
        None => println!(
            "no first bad commit: {}",
            rec.reason.as_deref().unwrap_or("inconclusive")
        ),
    }
    if rec.steps.iter().any(|s| s.flaky) {
        println!(
            "  note: some commits both passed and failed; the verdict that reproduced {}× first counted",
            rec.reproduce
        );
    }
    println!(
        "recorded in the ledger: `{}` and `{}` show it",
        crate::advice::Advice::Why {
            item: rec.item.to_string()
        },
        crate::advice::Advice::Log {
            item: Some(rec.item.to_string())
        }
    );
}
