//! Promotion through pull requests (gates with `review: true`, or `--review`), check runs
//! and the summary of a move for people.
//!
//! The pull request comes from one branch per stage move, `stagegate/promote/<S>-to-<T>`,
//! holding the very merge commit a direct promotion would make (tested commit plus the
//! decision YAML, trailers in its message). Re-running reuses that commit while it still
//! merges the same tested commit into the same head of T, so reviews stay valid, and
//! updates the one open pull request (title, body, labels) instead of opening another.
//! When it is approved (a review of that very head) and the gate still says promote, it is
//! merged with a merge commit — never squash or rebase — whose message carries the
//! decision's trailers, so `git log --first-parent T` reads the same as without review. A
//! gate that turns red again makes the pull request a draft, with the reason.

use gix::ObjectId;

use crate::error::{Error, Result};
use crate::forge::summary::{
    BaselineRow, CandidateChange, DecisionKind, EnvItem, JobRow, PromotionSummary,
};
use crate::forge::{Forge, MergeOutcome, promotion_branch};
use crate::gate::{Decision, Evaluation, JobState};
use crate::plan::{JobKind, MovePlan, Planner, short};
use crate::repo::Cas;
use crate::repo::remote::git;

/// What a forge-backed promotion needs.
pub struct Review<'a> {
    pub forge: &'a dyn Forge,
    /// The remote the promotion branch is pushed to and T is fetched from.
    pub remote: String,
}

/// The people's view of one evaluated commit of a move.
pub fn summary(planner: &Planner, plan: &MovePlan, e: &Evaluation) -> Result<PromotionSummary> {
    let repo = planner.repo;
    let pending = plan
        .pending
        .iter()
        .find(|p| p.commit == e.commit)
        .expect("evaluated commits are pending");
    let (c_tree, t_tree) = (repo.tree_of(e.commit)?, repo.tree_of(plan.to_head)?);
    let text = |tree: ObjectId, path: &str| -> Result<Option<String>> {
        Ok(repo
            .read(tree, path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let mut candidates = Vec::new();
    for c in &pending.candidates {
        let path = c.item.path();
        candidates.push(CandidateChange {
            kind: format!("{:?}", c.item.kind).to_lowercase(),
            name: c.item.name.clone(),
            path: path.clone(),
            old_version: c.from.clone(),
            new_version: c.to.clone(),
            old_manifest: text(t_tree, &path)?,
            new_manifest: text(c_tree, &path)?,
        });
    }
    let jobs = e
        .jobs
        .iter()
        .map(|j| {
            let job = &plan.jobs[&j.key];
            JobRow {
                key: j.key.clone(),
                name: j.label.clone(),
                manifest: Some(match job.kind {
                    JobKind::Test => format!("tests/{}.yaml", job.name),
                    JobKind::Build => job.candidates.first().map(|c| c.path()).unwrap_or_default(),
                }),
                environment: job
                    .env
                    .iter()
                    .map(|x| EnvItem {
                        item: x.item.to_string(),
                        version: x.version.clone(),
                        candidate: x.candidate,
                    })
                    .collect(),
                verdict: j.verdict,
                log_url: j.log.clone(),
                baseline: j.baseline_key.clone().map(|key| BaselineRow {
                    key,
                    verdict: j.baseline,
                    log_url: None,
                }),
                details: j.excerpt.clone(),
                note: match j.state {
                    JobState::FailsLikeBaseline => {
                        Some("fails like its baseline: not a regression".into())
                    }
                    JobState::Regression => Some("a regression".into()),
                    _ => j.reason.clone(),
                },
            }
        })
        .collect();
    Ok(PromotionSummary {
        from: plan.from.name.clone(),
        to: plan.to.name.clone(),
        commit: e.commit.to_string(),
        subject: e.subject.clone(),
        target: Some(plan.to_head.to_string()),
        decision: match e.decision {
            Decision::Promote => DecisionKind::Promote,
            Decision::Reject => DecisionKind::Reject,
            Decision::Wait => DecisionKind::Wait,
        },
        reasons: e.reasons.iter().map(|r| r.message.clone()).collect(),
        candidates,
        jobs,
        run_url: crate::runner::identity().ci_url,
        links: Vec::new(),
    })
}

/// What reviewing did for the chosen commit.
pub struct Reviewed {
    /// T's new head when the pull request was merged.
    pub promoted: Option<ObjectId>,
    pub notes: Vec<String>,
}

/// Put the promotion up for review, or merge it when it is approved.
pub fn via_pull_request(
    planner: &Planner,
    plan: &MovePlan,
    chosen: &Evaluation,
    summary: &PromotionSummary,
    review: &Review,
    merge_commit: impl FnOnce() -> Result<ObjectId>,
) -> Result<Reviewed> {
    let repo = planner.repo;
    let git_dir = repo.git_dir();
    let branch = promotion_branch(&plan.from.name, &plan.to.name);
    let mut notes = Vec::new();

    // Reuse the branch's commit while it still promotes the same commit into the same T.
    let tracking = format!("refs/stagegate-remotes/{}/{branch}", review.remote);
    let published = match crate::repo::remote::ls_remote(git_dir, &review.remote, &branch)? {
        Some(sha) => {
            git(
                git_dir,
                &[
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    &review.remote,
                    &format!("+refs/heads/{branch}:{tracking}"),
                ],
            )?;
            let id = ObjectId::from_hex(sha.as_bytes()).map_err(|_| {
                Error::infra(format!(
                    "{} answered a malformed id for {branch}",
                    review.remote
                ))
            })?;
            let parents = repo.commit(id)?.parents;
            (parents == [plan.to_head, chosen.commit]).then_some(id)
        }
        None => None,
    };
    let head = match published {
        Some(id) => id,
        None => {
            let m = merge_commit()?;
            // The branch belongs to stagegate: it is replaced whenever what it promotes changes.
            git(
                git_dir,
                &[
                    "push",
                    "--quiet",
                    "--force",
                    &review.remote,
                    &format!("{m}:refs/heads/{branch}"),
                ],
            )?;
            notes.push(format!("pushed {branch} ({})", short(m)));
            m
        }
    };
    let (pr, upsert) = review.forge.upsert_pr(
        &branch,
        &plan.to.branch,
        &summary.title(),
        &crate::forge::summary::render_pr_body(summary)?,
        false,
    )?;
    let what = match upsert {
        crate::forge::Upsert::Opened => "opened",
        crate::forge::Upsert::Updated => "updated",
        crate::forge::Upsert::Unchanged => "unchanged:",
    };
    notes.push(format!("{what} pull request #{} ({})", pr.number, pr.url));
    review
        .forge
        .add_labels(pr.number, &["stagegate".to_string()])?;
    if pr.draft {
        review.forge.set_draft(pr.number, false, None)?;
        notes.push(format!(
            "pull request #{} is ready for review again",
            pr.number
        ));
    }
    let head_hex = head.to_string();
    if !review.forge.approved(pr.number, Some(&head_hex))? {
        notes.push(format!(
            "waiting for an approving review of pull request #{} ({})",
            pr.number, pr.url
        ));
        return Ok(Reviewed {
            promoted: None,
            notes,
        });
    }
    let message = repo.commit(head)?.message;
    let (title, body) = message.split_once("\n\n").unwrap_or((message.as_str(), ""));
    match review
        .forge
        .merge_pr(pr.number, title.trim(), body.trim_end(), &head_hex)?
    {
        MergeOutcome::Merged { sha } => {
            notes.push(format!(
                "merged pull request #{} as {}",
                pr.number,
                &sha[..sha.len().min(10)]
            ));
            let promoted = follow_remote(planner, plan, &review.remote)?;
            Ok(Reviewed {
                promoted: promoted.or(Some(head)),
                notes,
            })
        }
        MergeOutcome::HeadMoved { message } | MergeOutcome::NotMergeable { message } => {
            notes.push(format!(
                "pull request #{} was not merged: {message}; waiting",
                pr.number
            ));
            Ok(Reviewed {
                promoted: None,
                notes,
            })
        }
    }
}

/// After the forge merged into T, bring the local T to the remote's (a fast-forward).
fn follow_remote(planner: &Planner, plan: &MovePlan, remote: &str) -> Result<Option<ObjectId>> {
    let repo = planner.repo;
    let tracking = format!("refs/stagegate-remotes/{remote}/heads/{}", plan.to.branch);
    git(
        repo.git_dir(),
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            remote,
            &format!("+refs/heads/{}:{tracking}", plan.to.branch),
        ],
    )?;
    let Some(theirs) = repo.ref_target(&tracking)? else {
        return Ok(None);
    };
    let ours = repo.ref_target(&plan.to.ref_name())?;
    if ours == Some(theirs) {
        return Ok(Some(theirs));
    }
    if ours.is_some_and(|o| !repo.is_ancestor(o, theirs).unwrap_or(false)) {
        return Ok(None);
    }
    if repo.cas(
        &plan.to.ref_name(),
        ours,
        theirs,
        "stagegate: follow the merged pull request",
    )? == Cas::Updated
        && let Some(o) = ours
    {
        crate::repo::remote::sync_worktree(repo, &plan.to.branch, o, theirs);
    }
    Ok(Some(theirs))
}

/// The gate is red for this move: an open promotion pull request becomes a draft, saying why.
pub fn redden(plan: &MovePlan, newest: &Evaluation, review: &Review) -> Result<Option<String>> {
    let branch = promotion_branch(&plan.from.name, &plan.to.name);
    let Some(pr) = review.forge.find_open_pr(&branch, &plan.to.branch)? else {
        return Ok(None);
    };
    if pr.draft {
        return Ok(None);
    }
    let reasons: Vec<&str> = newest.reasons.iter().map(|r| r.message.as_str()).collect();
    let why = format!(
        "stagegate: the gate into {} is no longer green ({}): {}",
        plan.to.name,
        newest.decision,
        reasons.join("; ")
    );
    review.forge.set_draft(pr.number, true, Some(&why))?;
    Ok(Some(format!(
        "pull request #{} turned into a draft: the gate is {}",
        pr.number, newest.decision
    )))
}
