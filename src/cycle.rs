//! Orchestration: the loop "judge, run what the judgement needs, judge again, promote", as
//! library calls with an [`Options`] value — what `run`, `bisect` and `cycle` do between
//! parsing arguments and printing.
//!
//! This is the one module that knows both the judgement (`judge`) and the runner
//! (`runner`): the runner is handed the jobs to run and never asks why; the judgement never
//! runs anything. It never prints: runs report through the runner's [`Sink`], the rest
//! through [`CycleEvent`]s, and what happened comes back typed ([`CycleReport`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::bisect::record::BisectRecord;
use crate::bisect::{self, Outcome, Progress, Target};
use crate::error::{Error, Result};
use crate::judge::{self, Judgement};
use crate::keys::JobKey;
use crate::ledger::Ledger;
use crate::manifest::ItemId;
use crate::plan::{Job, MovePlan, Planner};
use crate::poll::Bump;
use crate::promote::{self, MoveOutcome};
use crate::runner::session::{self, Report, Sink, Work};

/// `stagegate run`: run what the gates of the moves into or out of `stage` need.
pub fn run(
    planner: &Planner,
    stage: Option<&str>,
    opts: &session::Options,
    now: i64,
    sink: Sink,
) -> Result<Report> {
    let opts = &as_runner(planner, opts, now);
    // One view for the judgement and the run's selection: what the one read, the other
    // does not read again.
    let view = Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
    let work: Vec<Work> = judge::judge_all(planner, stage, &view, now)?
        .iter()
        .map(Judgement::work)
        .collect();
    let mut report = session::run(planner, &work, &view, opts, sink)?;
    // Whether a failure of this run said no is the gate's to tell: judged again on what
    // the run recorded.
    if report
        .outcomes
        .iter()
        .any(|o| o.verdict == Some(crate::ledger::Verdict::Fail))
    {
        let view = Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
        report.rejecting = judge::judge_all(planner, stage, &view, now)?
            .iter()
            .flat_map(rejecting)
            .collect();
    }
    Ok(report)
}

/// `opts` once this runner's labels passed their health tests (those that fail are held
/// back: their jobs are left for a healthy runner), after recording its heartbeat.
fn as_runner(planner: &Planner, opts: &session::Options, now: i64) -> session::Options {
    let mut opts = opts.clone();
    if let Some(offers) = &mut opts.offers
        && !opts.dry_run
    {
        let last = planner
            .pipeline
            .stages
            .last()
            .and_then(|s| planner.repo.ref_target(&s.ref_name()).ok().flatten());
        crate::runner::health::check(planner.repo, &planner.pipeline, last, offers, now);
    }
    heartbeat(planner, &opts, now);
    opts
}

/// Record that this runner was seen, with what it offers and which of its labels' health
/// checks fail (`crate::runners`), before it judges and runs: a run that says where jobs
/// can run is a runner others may wait for. Not for a dry run, an export (a CI job running
/// candidate code writes nothing shared), or a run without offers. Heartbeats are not
/// evidence: failing to write one is a warning, never the run's failure.
fn heartbeat(planner: &Planner, opts: &session::Options, now: i64) {
    let Some(offers) = &opts.offers else {
        return;
    };
    if opts.dry_run || opts.export {
        return;
    }
    let hb = crate::runners::Heartbeat::new(
        &crate::ledger::identity().host,
        offers.labels.iter().cloned().collect(),
        offers.unhealthy.clone(),
        now,
    );
    if let Err(e) = crate::runners::beat(planner.repo, &hb, now) {
        crate::error::warn(format!("could not record this runner's heartbeat: {e}"));
    }
}

/// The job keys whose failure rejects a candidate in `judgement` (a standing rejection
/// does not count: it said no before).
pub fn rejecting(judgement: &Judgement) -> BTreeSet<JobKey> {
    judgement
        .decided
        .evaluation
        .groups
        .iter()
        .filter(|g| g.state == crate::gate::State::Rejected && !g.sticky)
        .flat_map(|g| &g.jobs)
        .filter(|j| {
            matches!(
                j.state,
                crate::gate::JobState::Regression | crate::gate::JobState::Heisenbug
            )
        })
        .map(|j| j.key.clone())
        .collect()
}

/// Run what the gate of one move needs, in rounds: once candidates pass alone, their
/// combination is planned from those results and runs in the next round, so the move can
/// be decided at once (at most three rounds). Stops early when interrupted. One report
/// per round, in order.
pub fn run_for_gate(
    planner: &Planner,
    plan: &MovePlan,
    opts: &session::Options,
    now: i64,
    sink: Sink,
) -> Result<Vec<Report>> {
    let ledger = Ledger::new(planner.repo, &planner.pipeline.results_ref);
    let mut view = ledger.view()?;
    let mut work = judge::judge(planner, plan.clone(), &view, now)?.work();
    let mut reports: Vec<Report> = Vec::new();
    let mut tried: BTreeSet<JobKey> = BTreeSet::new();
    for _round in 0..3 {
        let report = session::run(
            planner,
            std::slice::from_ref(&work),
            &view,
            opts,
            sink.clone(),
        )?;
        let interrupted = report.interrupted;
        tried.extend(report.outcomes.iter().map(|o| o.key.clone()));
        reports.push(report);
        if interrupted {
            break;
        }
        // Judged again on what this round recorded: the next round runs what that needs
        // (the combination of what now passes alone), if it was not tried already.
        view = ledger.view()?;
        work = judge::judge(planner, plan.clone(), &view, now)?.work();
        let mut more = false;
        for key in work.plan.jobs.keys() {
            let settled = view.latest(key)?.is_some_and(|r| r.verdict.is_final());
            if !settled && !tried.contains(key) {
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    Ok(reports)
}

/// Bisect `target`, running its jobs through a run session with the environment policy of
/// the move they come from (T's `env:`).
pub fn bisect(
    planner: &Planner,
    target: &Target,
    opts: &bisect::Options,
    parallel: Option<usize>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    let mut runner = SessionRunner {
        planner,
        plan: &target.plan,
        parallel,
    };
    bisect::bisect(planner, target, opts, &mut runner, progress)
}

/// Runs bisect's jobs with the environment policy of the move they come from.
struct SessionRunner<'a, 'p> {
    planner: &'a Planner<'p>,
    plan: &'a MovePlan,
    parallel: Option<usize>,
}

impl bisect::Runner for SessionRunner<'_, '_> {
    fn run(&mut self, jobs: Vec<Job>) -> Result<bool> {
        let mut plan = self.plan.clone();
        for j in &jobs {
            plan.jobs.insert(j.key.clone(), j.clone());
        }
        let opts = session::Options {
            parallel: self.parallel,
            ..Default::default()
        };
        let quiet: Sink = Arc::new(|_| {});
        let report = session::run_jobs(self.planner, &[&plan], jobs, &opts, quiet)?;
        Ok(!report.interrupted)
    }
}

/// What [`cycle`] is asked to do.
pub struct Options<'a> {
    /// How runs run (parallelism, progress interval).
    pub run: session::Options,
    /// How promotions are made (dry run, forge, who decides, the clock).
    pub promote: promote::Options<'a>,
    /// Only the move into this stage.
    pub stage: Option<String>,
    /// Poll for upstream news first.
    pub poll: bool,
    /// The clock (Unix seconds), read as each step starts: a cycle runs for minutes, and a
    /// decision is judged, and says it was made, at the time it is made.
    pub clock: fn() -> i64,
}

/// What happens during a [`cycle`], as it happens, for the command line to show.
pub enum CycleEvent<'a> {
    /// Polling starts.
    Polling,
    Polled(&'a [Bump]),
    /// The poll failed; what is pending runs and moves anyway.
    PollFailed(&'a Error),
    MoveStarted {
        from: &'a str,
        to: &'a str,
    },
    /// A bisect of a rejected component starts (its gate says `bisect`).
    Bisecting {
        target: &'a Target,
        into: &'a str,
    },
    BisectProgress(Progress<'a>),
    Bisected(&'a BisectRecord),
    /// A bisect did not finish; promotion goes on.
    BisectFailed {
        item: &'a ItemId,
        error: &'a Error,
    },
    /// The move is decided (and promoted, unless it was a dry run).
    Decided(&'a MoveOutcome),
    /// The move is over (decided, or interrupted).
    MoveFinished,
}

/// What one move of a [`cycle`] did.
#[derive(Debug, Serialize)]
pub struct MoveCycle {
    pub from: String,
    pub to: String,
    /// Each run round's report (see [`run_for_gate`]).
    #[serde(skip)]
    pub runs: Vec<Report>,
    /// The bisects the gate asked for that finished.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bisected: Vec<BisectRecord>,
    /// The bisects that could not finish (the next cycle tries again).
    #[serde(skip)]
    pub bisect_errors: Vec<Error>,
    /// The decision; none when the cycle was interrupted first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote: Option<MoveOutcome>,
}

/// What a [`cycle`] did.
#[derive(Debug, Serialize)]
pub struct CycleReport {
    /// What poll committed (none when not asked to poll, or when it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<Vec<Bump>>,
    /// Why poll failed, if it did.
    #[serde(skip)]
    pub poll_error: Option<Error>,
    pub moves: Vec<MoveCycle>,
    /// A signal stopped it; what ran is recorded.
    pub interrupted: bool,
}

impl CycleReport {
    /// The decisions made, in move order.
    pub fn outcomes(&self) -> impl Iterator<Item = &MoveOutcome> {
        self.moves.iter().filter_map(|m| m.promote.as_ref())
    }
}

/// One full turn of the pipeline: poll for upstream news, then for each stage move in
/// order judge, run what the gate needs, judge again (bisecting what the gate asks to),
/// and promote what passes — so a commit can travel several stages in one cycle.
pub fn cycle(
    planner: &Planner,
    opts: &Options,
    sink: Sink,
    events: &mut dyn FnMut(CycleEvent),
) -> Result<CycleReport> {
    let run_opts = as_runner(planner, &opts.run, (opts.clock)());
    let mut report = CycleReport {
        poll: None,
        poll_error: None,
        moves: Vec::new(),
        interrupted: false,
    };
    if opts.poll {
        events(CycleEvent::Polling);
        let polled = crate::poll::poll(
            planner,
            &crate::poll::Options {
                dry_run: false,
                now: (opts.clock)(),
            },
        );
        // A broken watch script must not stop what is already pending from moving on.
        match polled {
            Ok(bumps) => {
                events(CycleEvent::Polled(&bumps));
                report.poll = Some(bumps);
            }
            Err(e) => {
                events(CycleEvent::PollFailed(&e));
                report.poll_error = Some(e);
            }
        }
    }
    for (s, t) in promote::publish::moves(planner, opts.stage.as_deref())? {
        events(CycleEvent::MoveStarted {
            from: &s.name,
            to: &t.name,
        });
        let mut m = MoveCycle {
            from: s.name.clone(),
            to: t.name.clone(),
            runs: Vec::new(),
            bisected: Vec::new(),
            bisect_errors: Vec::new(),
            promote: None,
        };
        let plan = planner.plan_move(&s, &t)?;
        m.runs = run_for_gate(planner, &plan, &run_opts, (opts.clock)(), sink.clone())?;
        let interrupted = m.runs.iter().any(|r| r.interrupted)
            || bisect_due(planner, &plan, opts, &mut m, events)?;
        if interrupted {
            report.interrupted = true;
            report.moves.push(m);
            events(CycleEvent::MoveFinished);
            break;
        }
        let promote_opts = promote::Options {
            now: (opts.clock)(),
            ..opts.promote.clone()
        };
        let outcome = promote::publish::promote_and_publish(planner, &s, &t, &promote_opts)?;
        events(CycleEvent::Decided(&outcome));
        m.promote = Some(outcome);
        report.moves.push(m);
        events(CycleEvent::MoveFinished);
    }
    Ok(report)
}

/// A gate that says `bisect` has each rejected component bisected before promotion records
/// the rejection, so the decision names the first bad upstream commit. Returns whether a
/// signal interrupted it.
fn bisect_due(
    planner: &Planner,
    plan: &MovePlan,
    opts: &Options,
    m: &mut MoveCycle,
    events: &mut dyn FnMut(CycleEvent),
) -> Result<bool> {
    if plan.gate.bisect.is_none() {
        return Ok(false);
    }
    let view = Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
    let judgement = judge::judge(planner, plan.clone(), &view, (opts.clock)())?;
    for target in bisect::due(planner, &judgement)? {
        let bisect_opts = bisect::Options {
            reproduce: bisect::reproduce(None, target.policy),
            first_parent: false,
            by: opts.promote.by.clone(),
        };
        events(CycleEvent::Bisecting {
            target: &target,
            into: &plan.to.name,
        });
        let mut progress = |p: Progress| events(CycleEvent::BisectProgress(p));
        match bisect(
            planner,
            &target,
            &bisect_opts,
            opts.run.parallel,
            &mut progress,
        ) {
            Ok(Outcome::Interrupted) => return Ok(true),
            Ok(Outcome::Done(rec)) => {
                events(CycleEvent::Bisected(&rec));
                m.bisected.push(*rec);
            }
            Err(e) => {
                events(CycleEvent::BisectFailed {
                    item: &target.id,
                    error: &e,
                });
                m.bisect_errors.push(e);
            }
        }
    }
    Ok(false)
}
