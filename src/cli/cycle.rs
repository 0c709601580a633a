//! `stagegate cycle`: poll, run, promote — what a cron job or the Action calls.

use super::reporter::RunReporter;
use super::{Code, Ctx, Format, print_json, show};
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
    let planner = ctx.start(args.push)?;
    let text = args.format == Format::Text;
    // With --format json, one document: what poll did, then each move's runs and decision.
    let mut doc = serde_json::Map::new();
    let mut poll_failed = 0;
    if !args.no_poll {
        if text {
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
        match polled {
            Ok(bumps) if text => show::bumps(&bumps, args.format),
            Ok(bumps) => {
                doc.insert("poll".into(), serde_json::json!(bumps));
            }
            Err(e) => {
                eprintln!("poll failed; running and promoting what is pending anyway:");
                poll_failed = super::report(&e);
                doc.insert("poll_error".into(), serde_json::json!(e.to_string()));
            }
        }
    }
    let moves = promote::publish::moves(&planner, args.stage.as_deref())?;
    let forge = crate::forge::configured()?;
    let remote = ctx.review_remote(&planner.pipeline)?;
    let opts = promote::Options::for_runner(false, forge.as_deref(), remote, args.review);
    let run_opts = session::Options {
        parallel: args.parallel,
        still_running: super::reporter::still_running_interval()?,
        ..Default::default()
    };
    let reporter = RunReporter::new(args.format);
    let mut outcomes = Vec::new();
    let mut moved = Vec::new();
    let mut interrupted = false;
    let mut bisect_failed = 0;
    for (s, t) in &moves {
        if text {
            println!("== {} → {}", s.name, t.name);
        }
        let plan = planner.plan_move(s, t)?;
        // Run what the gate needs (the combination of candidates that pass alone too),
        // then decide.
        let reports = session::run_for_gate(&planner, &plan, &run_opts, reporter.sink())?;
        let mut entry = serde_json::json!({
            "from": s.name,
            "to": t.name,
            "runs": reporter.take_json(),
        });
        if reports.iter().any(|r| r.interrupted) {
            interrupted = true;
            moved.push(entry);
            break;
        }
        // A gate that says `bisect` has each rejected component bisected before promote
        // records the rejection, so the decision names the first bad upstream commit.
        match super::bisect::due(&planner, &plan, args.parallel, args.format)? {
            130 => {
                interrupted = true;
                moved.push(entry);
                break;
            }
            code => bisect_failed = bisect_failed.max(code),
        }
        let outcome = promote::publish::promote_and_publish(&planner, s, t, &opts)?;
        if text {
            show::decisions(std::slice::from_ref(&outcome), args.format, false);
        }
        entry["promote"] = serde_json::json!(outcome);
        moved.push(entry);
        outcomes.push(outcome);
    }
    if !text {
        doc.insert("moves".into(), serde_json::Value::Array(moved));
        doc.insert("interrupted".into(), serde_json::json!(interrupted));
        print_json(&doc);
    }
    if interrupted {
        return Ok(130);
    }
    show::github_outputs(&outcomes)?;
    Ok(show::code(&outcomes).max(poll_failed).max(bisect_failed))
}
