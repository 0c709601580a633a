//! Keeping the local repository in step with the remote's: every read starts from a
//! fetch, and every ref written is pushed.
//!
//! The remote is `--remote NAME` (or `STAGEGATE_REMOTE`); when none is named but the
//! command was given `--push`, or `stagegate.yaml` says `results: {push: true}`, it is
//! `origin`. Without one, everything stays local.

use super::Ctx;
use crate::error::Result;
use crate::manifest::Pipeline;
use crate::repo::Repo;

/// The remote results and stages are shared through, if any.
pub fn remote(ctx: &Ctx, pipeline: &Pipeline, push: bool) -> Option<String> {
    ctx.remote
        .clone()
        .or_else(|| (push || pipeline.push_results).then(|| "origin".to_string()))
}

/// Before a command reads: with a remote, bring every stage branch and the ledger up to
/// the remote's, and publish every ref the command writes from then on (stage commits
/// as they are made; the ledger by [`publish_results`]).
pub fn start(ctx: &Ctx, repo: &Repo, pipeline: &Pipeline, push: bool) -> Result<()> {
    let Some(remote) = remote(ctx, pipeline, push) else {
        return Ok(());
    };
    repo.publish_to(&remote);
    let branches: Vec<&str> = pipeline.stages.iter().map(|s| s.branch.as_str()).collect();
    crate::repo::remote::follow(repo, &remote, &branches)?;
    crate::ledger::sync::fetch(repo, &remote, &pipeline.results_ref)
}

/// After a command wrote results (jobs, rejections): push the ledger when publishing.
pub fn publish_results(repo: &Repo, pipeline: &Pipeline) -> Result<()> {
    crate::ledger::sync::publish(repo, &pipeline.results_ref)
}
