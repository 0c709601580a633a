//! `stagegate promote`: evaluate every gate and merge what passes.

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::gate::State;
use crate::plan::{CandidateId, Planner};
use crate::promote::{self, MoveOutcome, Options};
use crate::repo::remote::Pushed;

/// Evaluate every gate, then merge the newest passing commit of each stage into the next
/// (a merge commit carrying the decision as YAML and trailers). Rejections are recorded.
///
/// Exits 1 when a rejected commit is left pending (a regression), 0 otherwise (promoted or
/// waiting).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Only the move into this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Print the decisions, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Push each promoted stage branch to the remote.
    #[arg(long)]
    pub push: bool,
    /// Promote through pull requests for every gate, not only those with `review: true`.
    #[arg(long)]
    pub review: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// The forge, when the environment configures one (`GITHUB_TOKEN` or
/// `STAGEGATE_GITHUB_APP_TOKEN`, and `GITHUB_REPOSITORY`).
pub fn forge_from_env() -> Result<Option<Box<dyn crate::forge::Forge>>> {
    let token = ["STAGEGATE_GITHUB_APP_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|t| !t.is_empty()));
    let repository = std::env::var("GITHUB_REPOSITORY").is_ok_and(|r| !r.is_empty());
    if token && repository {
        Ok(Some(crate::forge::from_env(None)?))
    } else {
        Ok(None)
    }
}

pub fn options<'a>(
    ctx: &Ctx,
    pipeline: &crate::manifest::Pipeline,
    dry_run: bool,
    forge: Option<&'a dyn crate::forge::Forge>,
    force_review: bool,
) -> Options<'a> {
    let r = crate::runner::identity();
    let remote = super::sync::remote(ctx, pipeline, false).unwrap_or_else(|| "origin".into());
    Options {
        dry_run,
        by: super::decider(),
        ci_url: r.ci_url,
        review: forge.map(|forge| promote::review::Review {
            forge,
            remote,
            merge_poll_ms: std::env::var("STAGEGATE_GITHUB_RETRY_BASE_MS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1000),
        }),
        force_review,
    }
}

/// In GitHub Actions: the step summary and the step outputs for what was decided.
pub fn publish(outcomes: &[MoveOutcome]) -> Result<()> {
    if !super::github::active() {
        return Ok(());
    }
    let summaries: Vec<crate::forge::PromotionSummary> =
        outcomes.iter().filter_map(|o| o.summary.clone()).collect();
    if !summaries.is_empty() {
        super::github::summary(&crate::forge::summary::render_step_summary(&summaries)?);
    }
    let decision = if outcomes.iter().any(|o| o.promoted.is_some()) {
        "promote"
    } else if code(outcomes) == 1 {
        "reject"
    } else {
        "wait"
    };
    let promoted: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.promoted.as_ref().map(|p| format!("{}:{p}", o.to)))
        .collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for o in outcomes {
        for g in o.evaluation.iter().flat_map(|e| &e.groups) {
            for (k, n) in crate::gate::counts(&g.jobs) {
                *counts.entry(k).or_default() += n;
            }
        }
    }
    let mut pairs = vec![
        ("decision", decision.to_string()),
        ("promoted", promoted.join(" ")),
    ];
    for v in ["pass", "fail", "flaky", "error", "missing"] {
        pairs.push((v, counts.get(v).copied().unwrap_or(0).to_string()));
    }
    super::github::outputs(&pairs);
    Ok(())
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, args.push)?;
    let only = args
        .stage
        .as_deref()
        .map(|s| planner.stage(s).map(|s| s.name.clone()))
        .transpose()?;
    let forge = forge_from_env()?;
    let opts = options(
        ctx,
        &planner.pipeline,
        args.dry_run,
        forge.as_deref(),
        args.review,
    );
    let mut outcomes = Vec::new();
    let moves: Vec<_> = planner
        .pipeline
        .moves()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    for (s, t) in &moves {
        if only.as_ref().is_some_and(|o| o != &t.name) {
            continue;
        }
        let outcome = promote_and_publish(&planner, s, t, &opts, args.dry_run)?;
        outcomes.push(outcome);
    }
    report(&outcomes, args.format, args.dry_run);
    publish(&outcomes)?;
    Ok(code(&outcomes))
}

/// Promote the move S → T and, unless `dry_run`, publish it (results, then T). When the
/// remote refuses T because another runner promoted first, T follows the remote's branch
/// (results merged from it, never lost), and the move is planned again on top: at most
/// three times.
pub fn promote_and_publish(
    planner: &Planner,
    s: &crate::manifest::Stage,
    t: &crate::manifest::Stage,
    opts: &promote::Options,
    dry_run: bool,
) -> Result<MoveOutcome> {
    let repo = planner.repo;
    for _ in 0..3 {
        let outcome = promote::promote_move(planner, s, t, opts)?;
        if dry_run {
            return Ok(outcome);
        }
        match publish_move(repo, &planner.pipeline, &s.branch, &t.branch, &outcome)? {
            Pushed::Pushed => return Ok(outcome),
            Pushed::Followed {
                remote,
                remote_head,
            } => {
                crate::ledger::sync::fetch(repo, &remote, &planner.pipeline.results_ref)?;
                eprintln!(
                    "{branch} on {remote} moved while we promoted (another runner promoted first): local {branch} now follows it at {head}, results merged from {remote}; planning again",
                    branch = t.branch,
                    head = &remote_head.to_string()[..10],
                );
            }
        }
    }
    Err(Error::infra_help(
        format!("{} kept moving on the remote while promoting", t.branch),
        "run the command again",
    ))
}

/// With a remote: push the results this move recorded (rejections, first sightings), then
/// S's branch (the tested commit a guarded remote replays), then the promotion. A
/// promotion the remote refuses is never left diverged: T follows the remote when the
/// remote moved on from where the promotion started, otherwise it is taken back.
pub fn publish_move(
    repo: &crate::repo::Repo,
    pipeline: &crate::manifest::Pipeline,
    from: &str,
    branch: &str,
    outcome: &MoveOutcome,
) -> Result<Pushed> {
    super::sync::publish_results(repo, pipeline)?;
    let Some(merge) = &outcome.promoted else {
        return Ok(Pushed::Pushed);
    };
    crate::repo::remote::publish_branch(repo, from)?;
    let merge = repo.resolve(merge)?;
    let before = repo.commit(merge)?.parents.first().copied();
    crate::repo::remote::publish_or_follow(repo, branch, before)
}

/// 1 when a rejected candidate is still pending after this run (it stays on S; nothing
/// else waits for it, but someone should look).
pub fn code(outcomes: &[MoveOutcome]) -> Code {
    if outcomes.iter().any(MoveOutcome::has_rejection) {
        1
    } else {
        0
    }
}

pub fn report(outcomes: &[MoveOutcome], format: Format, dry_run: bool) {
    if format == Format::Json {
        print_json(&outcomes);
        return;
    }
    for o in outcomes {
        let head = format!("{} → {}", o.from, o.to);
        let moved: Vec<String> = o.moved.iter().map(|m| m.to_string()).collect();
        match &o.promoted {
            Some(m) => println!("{head}: promoted {} as {}", moved.join(", "), &m[..10]),
            None if dry_run && !moved.is_empty() => {
                println!("{head}: would promote {}", moved.join(", "))
            }
            _ if o.candidates.is_empty() => println!("{head}: nothing pending"),
            _ => println!("{head}: nothing to promote"),
        }
        for c in &o.candidates {
            let label = candidate_label(
                &c.item,
                c.from.as_deref(),
                c.to.as_deref(),
                c.present,
                c.new,
            );
            if c.state == State::Promote && (c.moved || dry_run) {
                println!("  {label}: promote ({})", c.results);
                continue;
            }
            let state = if c.state == State::Promote {
                State::Wait
            } else {
                c.state
            };
            println!("  {label}: {state}");
            for r in &c.reasons {
                println!("    - {r}");
            }
        }
        for r in &o.rejected {
            println!("  recorded the rejection of {r} in the results ledger");
        }
        for n in &o.notes {
            println!("  {n}");
        }
        for p in &o.pushed {
            println!("  push gate: {p}");
        }
    }
}

/// `components/xen 1 → 3`, `images/host new at 2`, `images/old removed (was 1)`,
/// `tests/boot changed`.
pub fn candidate_label(
    id: &CandidateId,
    from: Option<&str>,
    to: Option<&str>,
    present: bool,
    new: bool,
) -> String {
    match (from, to) {
        _ if !present => match from {
            Some(f) => format!("{id} removed (was {f})"),
            None => format!("{id} removed"),
        },
        (None, None) if new => format!("{id} new"),
        (None, Some(to)) => format!("{id} new at {to}"),
        (Some(from), Some(to)) if from == to => format!("{id} {to}, files changed"),
        (Some(from), Some(to)) => format!("{id} {from} → {to}"),
        _ => format!("{id} changed"),
    }
}
