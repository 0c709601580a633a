//! `stagegate promote`: evaluate every gate and merge what passes.

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::gate::{Decision, Evaluation};
use crate::plan::{Planner, short};
use crate::promote::{self, MoveOutcome, Options};

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
        by: format!(
            "stagegate {} ({}@{})",
            env!("CARGO_PKG_VERSION"),
            r.user,
            r.host
        ),
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
        for e in o.evaluations.iter().take(1) {
            for (k, n) in crate::gate::counts(e) {
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
        let outcome = promote::promote_move(&planner, s, t, &opts)?;
        if !args.dry_run {
            publish_move(&repo, &planner.pipeline, &t.branch, &outcome)?;
        }
        outcomes.push(outcome);
    }
    report(&outcomes, args.format, args.dry_run);
    publish(&outcomes)?;
    Ok(code(&outcomes))
}

/// With a remote: push the results this move recorded (rejections), then the promotion.
/// A promotion the remote refuses (another runner promoted first) is taken back here, so
/// the next run decides again from the remote's stage instead of a diverged one.
pub fn publish_move(
    repo: &crate::repo::Repo,
    pipeline: &crate::manifest::Pipeline,
    branch: &str,
    outcome: &MoveOutcome,
) -> Result<()> {
    super::sync::publish_results(repo, pipeline)?;
    let Some(merge) = &outcome.promoted else {
        return Ok(());
    };
    let merge = repo.resolve(merge)?;
    let refused = match crate::repo::remote::publish_branch(repo, branch) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if let Some(before) = repo.commit(merge)?.parents.first() {
        let full = format!("refs/heads/{branch}");
        if repo.cas(
            &full,
            Some(merge),
            *before,
            "stagegate: promotion refused by the remote",
        )? == crate::repo::Cas::Updated
        {
            crate::repo::remote::sync_worktree(repo, branch, merge, *before);
        }
    }
    Err(refused)
}

/// 1 when a rejected commit is still pending after this run. Commits older than the one
/// promoted (or that would be) are now part of T: their rejection holds nothing back, as
/// when a `drop` let the commits after a rejected one move on.
pub fn code(outcomes: &[MoveOutcome]) -> Code {
    if outcomes
        .iter()
        .any(|o| still_pending(o).any(|e| e.decision == Decision::Reject))
    {
        1
    } else {
        0
    }
}

/// The evaluations of commits newer than the promoted one (all of them when none was).
fn still_pending(o: &MoveOutcome) -> impl Iterator<Item = &Evaluation> {
    let tested = o
        .tested
        .as_deref()
        .and_then(|t| gix::ObjectId::from_hex(t.as_bytes()).ok());
    o.evaluations
        .iter()
        .take_while(move |e| Some(e.commit) != tested)
}

pub fn report(outcomes: &[MoveOutcome], format: Format, dry_run: bool) {
    if format == Format::Json {
        print_json(&outcomes);
        return;
    }
    for o in outcomes {
        let head = format!("{} → {}", o.from, o.to);
        match (&o.promoted, &o.tested) {
            (Some(m), Some(t)) => println!("{head}: promoted {} as {}", &t[..10], &m[..10]),
            (None, Some(t)) if dry_run => println!("{head}: would promote {}", &t[..10]),
            _ if o.evaluations.is_empty() => println!("{head}: nothing pending"),
            _ => println!("{head}: nothing to promote"),
        }
        for e in &o.evaluations {
            print_evaluation(e, o.promoted.is_some() || dry_run);
        }
        for r in &o.rejected {
            println!(
                "  recorded the rejection of {} in the results ledger",
                &r[..10]
            );
        }
        for n in &o.notes {
            println!("  {n}");
        }
        for p in &o.pushed {
            println!("  push gate: {p}");
        }
    }
}

fn print_evaluation(e: &Evaluation, brief: bool) {
    if brief && e.decision == Decision::Promote {
        println!(
            "  {} {}: promote ({})",
            short(e.commit),
            e.subject,
            crate::gate::counts_line(e)
        );
        return;
    }
    println!("  {} {}: {}", short(e.commit), e.subject, e.decision);
    for r in &e.reasons {
        println!("    - {}", r.message);
    }
}
