//! `stagegate cycle`: poll, run, promote — what a cron job or the Action calls.

use super::{Code, Ctx, Format};
use crate::error::Result;
use crate::plan::Planner;

/// One full turn of the pipeline: poll for upstream news, then for each stage move in
/// order run its jobs that have no result and promote what passes — so a commit can travel
/// several stages in one cycle.
///
/// When a gate says `bisect`, a component it rejects is bisected (`stagegate bisect`)
/// before the rejection is recorded.
///
/// Exits 1 when a gate rejects a commit, 130 when interrupted.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Only the move into this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Push results and promoted stages to the remote.
    #[arg(long)]
    pub push: bool,
    /// Promote through pull requests for every gate, not only those with `review: true`.
    #[arg(long)]
    pub review: bool,
    /// Skip the poll step.
    #[arg(long)]
    pub no_poll: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, args.push)?;
    let mut poll_failed = 0;
    if !args.no_poll {
        if args.format == Format::Text {
            println!("== poll");
        }
        let polled = crate::poll::poll(
            &planner,
            &crate::poll::Options {
                dry_run: false,
                now: crate::promote::now(),
            },
        );
        // A broken watch script must not stop what is already pending from moving on:
        // report it, carry on, and exit with its code at the end.
        let bumps = match polled {
            Ok(b) => b,
            Err(e) => {
                eprintln!("poll failed; running and promoting what is pending anyway:");
                poll_failed = super::report(&e);
                Vec::new()
            }
        };
        if args.format == Format::Text && poll_failed == 0 {
            super::poll::report(&bumps, args.format);
        }
    }
    let only = args
        .stage
        .as_deref()
        .map(|s| planner.stage(s).map(|s| s.name.clone()))
        .transpose()?;
    let moves: Vec<_> = planner
        .pipeline
        .moves()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    let forge = super::promote::forge_from_env()?;
    let opts =
        super::promote::options(ctx, &planner.pipeline, false, forge.as_deref(), args.review);
    let mut outcomes = Vec::new();
    let mut worst = 0;
    for (s, t) in &moves {
        if only.as_ref().is_some_and(|o| o != &t.name) {
            continue;
        }
        if args.format == Format::Text {
            println!("== {} → {}", s.name, t.name);
        }
        let plan = planner.plan_move(s, t)?;
        let run_opts = crate::runner::session::Options {
            parallel: args.parallel,
            ..Default::default()
        };
        // Run what the gate needs; when candidates pass alone, their combination is
        // planned from those results and run next, before promoting.
        let mut tried: std::collections::BTreeSet<String> = Default::default();
        for _round in 0..3 {
            let report = super::run::run_plans(
                &planner,
                std::slice::from_ref(&plan),
                &run_opts,
                args.format,
            )?;
            if report.interrupted {
                return Ok(130);
            }
            tried.extend(report.outcomes.iter().map(|o| o.key.clone()));
            let view = crate::ledger::Ledger::new(&repo, &planner.pipeline.results_ref).view()?;
            let mut more = false;
            for j in crate::promote::jobs_to_run(&planner, &plan, &view)? {
                let settled = view.latest(&j.key)?.is_some_and(|r| r.verdict.is_final());
                if !settled && !tried.contains(&j.key) {
                    more = true;
                }
            }
            if !more {
                break;
            }
        }
        // A gate that says `bisect` has each rejected component bisected before promote
        // records the rejection, so the decision names the first bad upstream commit.
        match super::bisect::due(&planner, &plan, args.parallel, args.format)? {
            130 => return Ok(130),
            code => worst = worst.max(code),
        }
        let outcome = super::promote::promote_and_publish(&planner, s, t, &opts, false)?;
        super::promote::report(std::slice::from_ref(&outcome), args.format, false);
        worst = worst.max(super::promote::code(std::slice::from_ref(&outcome)));
        outcomes.push(outcome);
    }
    super::promote::publish(&outcomes)?;
    Ok(worst.max(poll_failed))
}
