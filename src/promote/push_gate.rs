//! The component push gate: on promotion into the last stage, a component with
//! `source.push-to` has that branch of its own repository fast-forwarded to the tested
//! commit. Never forced: a push git refuses (not a fast-forward) is reported and recorded
//! in the decision, and not retried.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest::ItemKind;
use crate::plan::{CandidateId, MovePlan, Planner, Snapshot};
use crate::repo::remote::git;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PushRecord {
    pub item: String,
    pub branch: String,
    pub commit: String,
    pub pushed: bool,
    pub message: String,
}

impl PushRecord {
    /// One line for people: `pushed components/hello master 3ec5…: master fast-forwarded …`.
    pub fn describe(&self) -> String {
        let done = if self.pushed {
            "pushed"
        } else {
            "refused to push"
        };
        format!(
            "{done} {} {} {}: {}",
            self.item, self.branch, self.commit, self.message
        )
    }
}

/// Push every moving component candidate that has `push-to`, when `plan` moves into the
/// pipeline's last stage.
pub fn push_components(
    planner: &Planner,
    plan: &MovePlan,
    moved: &[CandidateId],
) -> Result<Vec<PushRecord>> {
    let last = planner.pipeline.stages.last().map(|s| s.name.as_str());
    if last != Some(plan.to.name.as_str()) {
        return Ok(Vec::new());
    }
    let snap = Snapshot::new(planner.repo, plan.from_head, planner.cache.clone())?;
    let mut out = Vec::new();
    for id in moved
        .iter()
        .filter_map(CandidateId::item)
        .filter(|i| i.kind == ItemKind::Component)
    {
        let Some((_, item)) = snap.item(id)? else {
            continue;
        };
        let Some(src) = &item.source else { continue };
        let (Some(branch), Some(commit)) = (&src.push_to, &src.commit) else {
            continue;
        };
        let url = crate::manifest::resolve_git(
            &src.git,
            planner.repo.root_dir(),
            &planner.repo.self_url(),
        );
        let (pushed, message) = match push(planner, &id.name, &url, commit, branch) {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        out.push(PushRecord {
            item: id.to_string(),
            branch: branch.clone(),
            commit: commit.clone(),
            pushed,
            message,
        });
    }
    Ok(out)
}

/// Fetch the commit into a cache repository, then push it (no force) to `branch`.
fn push(
    planner: &Planner,
    name: &str,
    url: &str,
    commit: &str,
    branch: &str,
) -> std::result::Result<String, String> {
    let cache = planner
        .repo
        .git_dir()
        .join("stagegate/components")
        .join(format!("{name}.git"));
    if !cache.exists() {
        std::fs::create_dir_all(&cache)
            .map_err(|e| format!("creating {}: {e}", cache.display()))?;
        gix::init_bare(&cache).map_err(|e| format!("creating {}: {e}", cache.display()))?;
    }
    let fetched = git(
        &cache,
        &["fetch", "--quiet", "--no-tags", "--", url, commit],
    );
    if fetched.is_err() {
        // Servers that refuse fetching by id: fetch the branches instead.
        git(
            &cache,
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--",
                url,
                "+refs/heads/*:refs/heads/*",
            ],
        )
        .map_err(|e| e.to_string())?;
    }
    git(&cache, &["cat-file", "-e", &format!("{commit}^{{commit}}")])
        .map_err(|_| format!("{url} does not have commit {commit}"))?;
    match git(
        &cache,
        &[
            "push",
            "--porcelain",
            "--",
            url,
            &format!("{commit}:refs/heads/{branch}"),
        ],
    ) {
        Ok(_) => Ok(format!(
            "{branch} fast-forwarded to {}",
            crate::keys::short_commit(commit, crate::keys::LONG_COMMIT_DIGITS)
        )),
        Err(e) => {
            let text = e.to_string();
            if text.contains("non-fast-forward")
                || text.contains("fetch first")
                || text.contains("rejected")
            {
                Err(format!(
                    "{branch} was not moved: {} is not a fast-forward of it (never forced; resolve upstream)",
                    crate::keys::short_commit(commit, crate::keys::LONG_COMMIT_DIGITS)
                ))
            } else {
                Err(format!("pushing to {url} failed: {text}"))
            }
        }
    }
}
