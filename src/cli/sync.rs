//! Keeping the local ledger in step with the remote's, when a remote is named.

use super::Ctx;
use crate::error::Result;
use crate::manifest::Pipeline;
use crate::repo::Repo;

/// Fetch the remote's ledger and merge it into ours before reading results.
pub fn fetch_results(ctx: &Ctx, repo: &Repo, pipeline: &Pipeline) -> Result<()> {
    if let Some(remote) = &ctx.remote {
        crate::ledger::sync::fetch(repo, remote, &pipeline.results_ref)?;
    }
    Ok(())
}
