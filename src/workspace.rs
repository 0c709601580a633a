//! The state repository a command works on, opened once per command: the git repository,
//! the remote it shares results and stages through, and the planner over both. Commands
//! start here instead of each opening the repository, reading the pipeline and fetching
//! on its own.
//!
//! The remote is the one named (`--remote NAME` or `STAGEGATE_REMOTE`); when none is
//! named but the command pushes (`--push`), or `stagegate.yaml` says
//! `results: {push: true}`, it is `origin`. Without one, everything stays local. This
//! module never prints.

use std::path::Path;

use crate::error::Result;
use crate::manifest::Pipeline;
use crate::plan::Planner;
use crate::repo::Repo;

/// An opened state repository and the remote named for it.
pub struct Workspace {
    repo: Repo,
    /// The remote named on the command line, if any.
    named_remote: Option<String>,
}

impl Workspace {
    /// The state repository at or above `dir`; `remote` is the one the user named.
    pub fn discover(dir: &Path, remote: Option<String>) -> Result<Workspace> {
        Ok(Workspace {
            repo: Repo::discover(dir)?,
            named_remote: remote,
        })
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The remote results and stages are shared through, if any (`push`: the command
    /// was asked to push, so `origin` serves when none is named).
    pub fn remote(&self, pipeline: &Pipeline, push: bool) -> Option<String> {
        self.named_remote
            .clone()
            .or_else(|| (push || pipeline.push_results).then(|| "origin".to_string()))
    }

    /// The planner over the repository as it is here, without the remote.
    pub fn planner(&self) -> Result<Planner<'_>> {
        Planner::new(&self.repo, None)
    }

    /// What a command that reads the stages starts with: the planner, after (with a
    /// remote) bringing every stage branch and the ledger up to the remote's, and with
    /// every ref written from then on published (stage commits as they are made; the
    /// ledger by [`Workspace::publish_results`]).
    pub fn start(&self, push: bool) -> Result<Planner<'_>> {
        let planner = self.planner()?;
        if let Some(remote) = self.remote(&planner.pipeline, push) {
            self.repo.publish_to(&remote);
            let branches: Vec<&str> = planner
                .pipeline
                .stages
                .iter()
                .map(|s| s.branch.as_str())
                .collect();
            crate::repo::remote::follow(&self.repo, &remote, &branches)?;
            crate::ledger::sync::fetch(&self.repo, &remote, &planner.pipeline.results_ref)?;
            // The runners' heartbeats say why a job waits; they are not evidence, and a
            // remote that cannot give them changes no decision.
            if let Err(e) = crate::runners::fetch(&self.repo, &remote, crate::records::now_secs()) {
                crate::error::warn(format!("could not fetch the runners' heartbeats: {e}"));
            }
        }
        Ok(planner)
    }

    /// After a command wrote results (jobs, rejections, overrides): push the ledger when
    /// publishing.
    pub fn publish_results(&self, pipeline: &Pipeline) -> Result<()> {
        crate::ledger::sync::publish(&self.repo, &pipeline.results_ref)
    }
}
