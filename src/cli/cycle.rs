//! `stagegate cycle`: poll, run, promote — what a cron job or the Action calls.

use super::reporter::RunReporter;
use super::{Code, Ctx, Format, print_json, show};
use crate::cycle::{self, CycleEvent, CycleReport};
use crate::error::Result;
use crate::promote;
use crate::runner::session;

/// One full turn of the pipeline: poll for upstream news, then for each stage move in
/// order run its jobs that have no result and promote what passes — so a commit can travel
/// several stages in one cycle.
///
/// When a gate says `bisect`, a component it rejects is bisected (`stagegate bisect`)
/// before the rejection is recorded.
///
/// Exits 1 when a gate rejects a candidate in this cycle (a rejection that stood before is
/// reported, not signalled), 3 when a job of this cycle ended in `error` or a step failed
/// on infrastructure (3 wins over 1), 130 when interrupted.
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
    #[command(flatten)]
    pub labels: super::run::LabelArgs,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(args.push)?;
    let text = args.format == Format::Text;
    let remote = ctx.review_remote(&planner.pipeline)?;
    let forge = ctx.forge(&planner.pipeline, &remote)?;
    let opts = cycle::Options {
        run: session::Options {
            parallel: args.parallel,
            still_running: super::reporter::still_running_interval()?,
            offers: Some(args.labels.offers()?),
            ..Default::default()
        },
        promote: promote::Options::for_runner(
            false,
            forge.as_deref(),
            remote,
            args.review,
            ctx.now(),
        ),
        stage: args.stage.clone(),
        poll: !args.no_poll,
        clock: crate::records::now_secs,
    };
    let reporter = RunReporter::new(args.format);
    // The exit codes of what failed along the way without stopping the cycle (a poll, a
    // bisect), and each move's run documents (JSON), as they happen.
    let mut failed: Code = 0;
    let mut runs: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut events = |e: CycleEvent| match e {
        CycleEvent::Polling if text => println!("== poll"),
        CycleEvent::Polled(bumps) if text => show::bumps(bumps, args.format),
        CycleEvent::PollFailed(e) => {
            eprintln!("poll failed; running and promoting what is pending anyway:");
            failed = failed.max(super::report(e));
        }
        CycleEvent::MoveStarted { from, to } if text => println!("== {from} → {to}"),
        CycleEvent::Bisecting { target, into } if text => {
            println!("bisecting {} (the gate into {into} says bisect)", target.id)
        }
        CycleEvent::BisectProgress(p) if text => super::bisect::show(&p),
        CycleEvent::Bisected(rec) if text => println!("{}: {}", rec.item, rec.summary()),
        CycleEvent::BisectFailed { item, error } => {
            eprintln!("the bisect of {item} did not finish; promoting anyway:");
            failed = failed.max(super::report(error));
        }
        CycleEvent::Decided(outcome) if text => {
            show::decisions(std::slice::from_ref(outcome), args.format, false)
        }
        CycleEvent::MoveFinished => runs.push(reporter.take_json()),
        _ => {}
    };
    let report = cycle::cycle(&planner, &opts, reporter.sink(), &mut events)?;
    if !text {
        print_json(&json(&report, runs));
    }
    if report.interrupted {
        return Ok(130);
    }
    let outcomes: Vec<promote::MoveOutcome> = report.outcomes().cloned().collect();
    show::github_outputs(&outcomes)?;
    // A job of this run that could not run is an infrastructure failure of this run (3,
    // which wins over a new rejection's 1); errors of earlier runs change nothing.
    let errored = report
        .moves
        .iter()
        .flat_map(|m| &m.runs)
        .flat_map(|r| &r.outcomes)
        .any(|o| o.verdict == Some(crate::ledger::Verdict::Error));
    let ran: Code = if errored { 3 } else { 0 };
    Ok(show::code(&outcomes).max(failed).max(ran))
}

/// The one JSON document of a cycle: what poll did, then each move's runs and decision.
fn json(report: &CycleReport, runs: Vec<Vec<serde_json::Value>>) -> serde_json::Value {
    let mut doc = serde_json::json!(report);
    if let Some(e) = &report.poll_error {
        doc["poll_error"] = serde_json::json!(e.to_string());
    }
    if let Some(moves) = doc["moves"].as_array_mut() {
        for (m, r) in moves.iter_mut().zip(runs) {
            m["runs"] = serde_json::Value::Array(r);
        }
    }
    doc
}
