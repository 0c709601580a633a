//! Forges (GitHub): promotion pull requests, check runs, commit statuses.
//!
//! This module is the end of the data flow: the promotion code decides, and the forge only
//! shows the decision where people review it. It owns:
//!
//! - [`Forge`], the small trait the promotion code calls (one pull request per stage move,
//!   draft when red, check runs, who may approve, deleting a merged branch), so a second
//!   forge can follow GitHub without touching the callers;
//! - [`codeowners`], who owns which path, read as GitHub reads CODEOWNERS;
//! - [`github::GitHub`], that trait over GitHub's REST and GraphQL APIs (octocrab), with
//!   retries on transient failures and waits on rate limits;
//! - [`summary::PromotionSummary`], what a promotion has to say, and its renderings: the
//!   pull request body, the step summary and the check run.
//!
//! It never decides anything and never touches git: a forge call that fails is an
//! infrastructure error (exit code 3) that names the call, the repository, the HTTP status
//! and the forge's own message.

pub mod codeowners;
pub mod github;
pub mod summary;

use serde::Serialize;

use crate::error::Result;

pub use github::{GitHub, GitHubConfig, RetryPolicy};
pub use summary::{
    BaselineRow, CandidateChange, DecisionKind, EnvItem, JobRow, Link, PromotionSummary,
};

/// A pull request as stagegate needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: u64,
    /// Where people read it.
    pub url: String,
    pub title: String,
    pub body: String,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub draft: bool,
    /// Open (not closed and not merged).
    pub open: bool,
    pub merged: bool,
    /// The forge's global id (GitHub's GraphQL node id), needed to change the draft flag.
    pub node_id: Option<String>,
}

/// What [`Forge::upsert_pr`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsert {
    Opened,
    Updated,
    /// The open pull request already said exactly this.
    Unchanged,
}

/// What [`Forge::set_draft`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DraftChange {
    /// The pull request already was (or was not) a draft.
    Unchanged,
    /// The draft flag was changed.
    Changed,
    /// The forge refused to change the flag (a token without the permission); a comment
    /// saying what stagegate wanted, and why, was left on the pull request instead.
    Commented,
}

/// The reviews of a pull request, reduced to each reviewer's latest word.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Reviewers whose latest review approves.
    pub approved_by: Vec<String>,
    /// Reviewers whose latest review requests changes.
    pub changes_requested_by: Vec<String>,
}

impl Approval {
    /// Approved by someone, and nobody asks for changes.
    pub fn is_approved(&self) -> bool {
        !self.approved_by.is_empty() && self.changes_requested_by.is_empty()
    }
}

/// What someone may do in a repository, as GitHub's collaborator permission says it
/// (`maintain` reads as `write`, `triage` as `read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Write,
    Admin,
}

impl Permission {
    /// May push, and so may approve a promotion.
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// The result of a check, as GitHub's check runs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Neutral,
    Cancelled,
    Skipped,
    TimedOut,
    ActionRequired,
}

impl Conclusion {
    /// The commit status state that says the same (for forges or tokens without checks).
    pub fn status_state(self) -> StatusState {
        match self {
            Conclusion::Success | Conclusion::Neutral | Conclusion::Skipped => StatusState::Success,
            Conclusion::Failure | Conclusion::ActionRequired => StatusState::Failure,
            Conclusion::Cancelled | Conclusion::TimedOut => StatusState::Error,
        }
    }
}

/// How much an annotation matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

/// A note on a line of a file in the repository (the manifest of a failing job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: AnnotationLevel,
    pub title: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_details: Option<String>,
}

/// A check on a commit: the gate's verdict on the tested commit, with a Markdown report and
/// an annotation per failing job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRun {
    /// The check's name (also the status context when falling back to a commit status).
    pub name: String,
    pub head_sha: String,
    /// `None`: still in progress (the gate waits for results).
    pub conclusion: Option<Conclusion>,
    pub title: String,
    /// Markdown.
    pub summary: String,
    pub text: Option<String>,
    pub details_url: Option<String>,
    /// Ours, to find the run again (the move, e.g. `staging->stable`).
    pub external_id: Option<String>,
    pub annotations: Vec<Annotation>,
}

/// What [`Forge::create_check_run`] posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CheckPosted {
    CheckRun {
        id: u64,
        url: Option<String>,
    },
    /// Check runs were refused (a token that is not a GitHub App's, or lacks `checks: write`):
    /// the verdict went out as a commit status instead, without annotations.
    Status,
}

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// What a forge does for stagegate. Every method blocks until the forge answered; errors
/// are [`crate::Error::Infra`] (exit code 3) unless a method says otherwise.
pub trait Forge {
    /// Where this forge is, for messages: `GitHub octo/state (https://api.github.com)`.
    fn describe(&self) -> String;

    /// The open pull request from `head_branch` into `base`, if there is one.
    fn find_open_pr(&self, head_branch: &str, base: &str) -> Result<Option<PullRequest>>;

    /// Open a pull request from `head` (a branch of this repository) into `base`.
    fn open_pr(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<PullRequest>;

    fn get_pr(&self, number: u64) -> Result<PullRequest>;

    /// Replace the title and body.
    fn update_pr(&self, number: u64, title: &str, body: &str) -> Result<()>;

    /// Make the pull request a draft (`true`, e.g. when a required job is red) or ready for
    /// review. `reason` is shown to people when the forge cannot change the flag, or when it
    /// changes.
    fn set_draft(&self, number: u64, draft: bool, reason: Option<&str>) -> Result<DraftChange>;

    /// Add labels (existing ones stay).
    fn add_labels(&self, number: u64, labels: &[String]) -> Result<()>;

    /// The reviewers' latest word on the pull request. With `head_sha`, only reviews of that
    /// commit count, so an approval of an earlier promotion never approves a later one.
    fn reviews(&self, number: u64, head_sha: Option<&str>) -> Result<Approval>;

    /// What `user` may do in the repository (GitHub: `GET …/collaborators/{user}/permission`).
    /// Someone who is not a collaborator has [`Permission::None`] or [`Permission::Read`].
    fn permission(&self, user: &str) -> Result<Permission>;

    /// The logins of the members of team `org/slug` (a CODEOWNERS owner `@org/slug`), or
    /// `None` when the forge will not say (a token without `members: read`).
    fn team_members(&self, org: &str, slug: &str) -> Result<Option<Vec<String>>>;

    /// Delete a branch of the repository (a merged promotion branch). `false`: it was not
    /// there (already deleted, by GitHub's "delete head branches" setting or a person).
    fn delete_branch(&self, branch: &str) -> Result<bool>;

    /// Post the check run on `run.head_sha`; falls back to a commit status when check runs
    /// are refused.
    fn create_check_run(&self, run: &CheckRun) -> Result<CheckPosted>;

    /// Set a commit status. `description` is cut to what the forge accepts.
    fn create_status(
        &self,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
        url: Option<&str>,
    ) -> Result<()>;

    /// The one pull request for a stage move: open it, or bring the open one up to date
    /// (re-running never opens a second one). A new pull request is opened as a draft when
    /// `draft`; an existing one keeps its draft flag (use [`Forge::set_draft`]).
    fn upsert_pr(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<(PullRequest, Upsert)> {
        match self.find_open_pr(head, base)? {
            Some(mut pr) => {
                if pr.title == title && pr.body.trim_end() == body.trim_end() {
                    return Ok((pr, Upsert::Unchanged));
                }
                self.update_pr(pr.number, title, body)?;
                pr.title = title.to_string();
                pr.body = body.to_string();
                Ok((pr, Upsert::Updated))
            }
            None => Ok((
                self.open_pr(head, base, title, body, draft)?,
                Upsert::Opened,
            )),
        }
    }
}

/// The forge for this environment: GitHub, configured from `GITHUB_TOKEN` (or
/// `STAGEGATE_GITHUB_APP_TOKEN`), `GITHUB_REPOSITORY` (unless `repository` is given) and
/// `GITHUB_API_URL`. The one place that picks a forge, so another can be added here.
pub fn from_env(repository: Option<&str>) -> Result<Box<dyn Forge>> {
    Ok(Box::new(GitHub::from_env(repository)?))
}

/// The forge, when the environment configures one (`GITHUB_TOKEN` or
/// `STAGEGATE_GITHUB_APP_TOKEN`, and `GITHUB_REPOSITORY`); `None` otherwise.
pub fn configured() -> Result<Option<Box<dyn Forge>>> {
    let token = ["STAGEGATE_GITHUB_APP_TOKEN", "GITHUB_TOKEN"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|t| !t.is_empty()));
    let repository = std::env::var("GITHUB_REPOSITORY").is_ok_and(|r| !r.is_empty());
    if token && repository {
        Ok(Some(from_env(None)?))
    } else {
        Ok(None)
    }
}

/// The branch a promotion pull request comes from: one per stage move, so re-running finds
/// the same pull request.
pub fn promotion_branch(from: &str, to: &str) -> String {
    format!("stagegate/promote/{from}-to-{to}")
}
