//! Keeping the local ledger in step with the remote's.
//!
//! The remote is `--remote NAME` (or `STAGEGATE_REMOTE`); when none is named but
//! `stagegate.yaml` says `results: {push: true}`, it is `origin`.

use super::Ctx;
use crate::error::Result;
use crate::manifest::Pipeline;
use crate::repo::Repo;

/// The remote results are shared through, if any.
pub fn remote(ctx: &Ctx, pipeline: &Pipeline) -> Option<String> {
    ctx.remote
        .clone()
        .or_else(|| pipeline.push_results.then(|| "origin".to_string()))
}

/// Fetch the remote's ledger and merge it into ours before reading results.
pub fn fetch_results(ctx: &Ctx, repo: &Repo, pipeline: &Pipeline) -> Result<()> {
    if let Some(remote) = remote(ctx, pipeline) {
        crate::ledger::sync::fetch(repo, &remote, &pipeline.results_ref)?;
    }
    Ok(())
}
