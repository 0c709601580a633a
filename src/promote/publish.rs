//! Promoting a move and publishing it: the ledger's new facts, then S, then the promotion
//! on T, and when another runner promoted first, following the remote and deciding again.
//! What `promote` and `cycle` do for each stage move.

use super::{MoveOutcome, Options, promote_move};
use crate::error::{Error, Result};
use crate::manifest::{Pipeline, Stage};
use crate::plan::Planner;
use crate::repo::Repo;
use crate::repo::remote::Pushed;

/// The stage moves in order (S, T), or only the move into `into`.
pub fn moves(planner: &Planner, into: Option<&str>) -> Result<Vec<(Stage, Stage)>> {
    let only = into
        .map(|s| planner.stage(s).map(|s| s.name.clone()))
        .transpose()?;
    Ok(planner
        .pipeline
        .moves()
        .filter(|(_, t)| only.as_ref().is_none_or(|o| o == &t.name))
        .map(|(s, t)| (s.clone(), t.clone()))
        .collect())
}

/// Promote the move S → T and, unless a dry run, publish it (results, then T). When the
/// remote refuses T because another runner promoted first, T follows the remote's branch
/// (results merged from it, never lost), and the move is planned again on top: at most
/// three times (each time left as a warning for the command line).
pub fn promote_and_publish(
    planner: &Planner,
    s: &Stage,
    t: &Stage,
    opts: &Options,
) -> Result<MoveOutcome> {
    let repo = planner.repo;
    for _ in 0..3 {
        let mut outcome = promote_move(planner, s, t, opts)?;
        if opts.dry_run {
            return Ok(outcome);
        }
        match publish_move(repo, &planner.pipeline, &s.branch, &t.branch, &outcome)? {
            Pushed::Pushed => {
                // The promotion stands: its artifacts get their signed summaries.
                if let Some(commit) = &outcome.promoted {
                    let commit = repo.resolve(commit)?;
                    outcome.attested = super::attest::publish(planner, t, commit)?;
                    if !outcome.attested.is_empty() {
                        crate::ledger::sync::publish(repo, &planner.pipeline.results_ref)?;
                    }
                }
                return Ok(outcome);
            }
            Pushed::Followed {
                remote,
                remote_head,
            } => {
                crate::ledger::sync::fetch(repo, &remote, &planner.pipeline.results_ref)?;
                crate::error::warn(format!(
                    "{branch} on {remote} moved while we promoted (another runner promoted first): local {branch} now follows it at {head}, results merged from {remote}; planning again",
                    branch = t.branch,
                    head = remote_head.to_hex_with_len(crate::keys::COMMIT_DIGITS),
                ));
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
    repo: &Repo,
    pipeline: &Pipeline,
    from: &str,
    branch: &str,
    outcome: &MoveOutcome,
) -> Result<Pushed> {
    crate::ledger::sync::publish(repo, &pipeline.results_ref)?;
    let Some(merge) = &outcome.promoted else {
        return Ok(Pushed::Pushed);
    };
    crate::repo::remote::publish_shared(repo, from)?;
    let merge = repo.resolve(merge)?;
    let before = repo.commit(merge)?.parents.first().copied();
    crate::repo::remote::publish_or_follow(repo, branch, before)
}

/// Who decides (or bisects), for the records: `stagegate VERSION (user@host)`.
pub fn decider() -> String {
    let r = crate::ledger::identity();
    format!(
        "stagegate {} ({}@{})",
        env!("CARGO_PKG_VERSION"),
        r.user,
        r.host
    )
}

impl<'a> Options<'a> {
    /// Options for this runner: decided at `now` (Unix seconds) by this stagegate as this
    /// user on this host, with the CI run's URL; through `forge` (pull requests, check runs) when one is
    /// configured, pushing to `remote`.
    pub fn for_runner(
        dry_run: bool,
        forge: Option<&'a dyn crate::forge::Forge>,
        remote: String,
        force_review: bool,
        now: i64,
    ) -> Options<'a> {
        Options {
            dry_run,
            now,
            by: decider(),
            ci_url: crate::ledger::identity().ci_url,
            review: forge.map(|forge| super::review::Review {
                forge,
                remote,
                merge_poll_ms: std::env::var("STAGEGATE_GITHUB_RETRY_BASE_MS")
                    .ok()
                    .or_else(|| std::env::var(crate::forge::gitlab::ENV_RETRY_BASE_MS).ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(1000),
            }),
            force_review,
        }
    }
}
