//! Forges (GitHub, GitLab): promotion pull or merge requests, checks, commit statuses.
//!
//! This module is the end of the data flow: the promotion code decides, and the forge only
//! shows the decision where people review it. It owns:
//!
//! - [`Forge`], the small trait the promotion code calls (one pull request per stage move,
//!   draft when red, check runs, who may approve, deleting a merged branch), which both
//!   forges implement; [`ForgeKind`] holds the words each uses for people;
//! - [`configured`], the one place that picks a forge (environment, `forge:`, remote);
//! - [`codeowners`], who owns which path, read as GitHub reads CODEOWNERS;
//! - [`github::GitHub`], that trait over GitHub's REST and GraphQL APIs (octocrab), with
//!   retries on transient failures and waits on rate limits;
//! - [`gitlab::GitLab`], that trait over GitLab's REST API v4 (merge requests, approvals,
//!   members, commit statuses), with the same retry policy;
//! - [`summary::PromotionSummary`], what a promotion has to say, and its renderings: the
//!   pull request body, the step summary and the check run.
//!
//! It never decides anything and never touches git: a forge call that fails is an
//! infrastructure error (exit code 3) that names the call, the repository, the HTTP status
//! and the forge's own message.

pub mod codeowners;
pub mod github;
pub mod gitlab;
pub mod summary;

use serde::Serialize;

use crate::error::Result;

pub use github::{GitHub, GitHubConfig, RetryPolicy};
pub use gitlab::{GitLab, GitLabConfig};
pub use summary::{
    BaselineRow, CandidateChange, DecisionKind, EnvItem, JobRow, Link, PromotionSummary,
};

/// Which forge, and the words it uses: what people read in notes and in the request's
/// description says "merge request" and `!12` on GitLab, "pull request" and `#12` on GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    GitHub,
    GitLab,
}

impl ForgeKind {
    /// `GitHub`, `GitLab`.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::GitLab => "GitLab",
        }
    }

    /// `pull request`, `merge request`.
    pub fn request(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "pull request",
            ForgeKind::GitLab => "merge request",
        }
    }

    /// `#12`, `!12`.
    pub fn reference(self, number: u64) -> String {
        match self {
            ForgeKind::GitHub => format!("#{number}"),
            ForgeKind::GitLab => format!("!{number}"),
        }
    }

    /// Who may approve, for people.
    pub fn approvers(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "someone with write access",
            ForgeKind::GitLab => "a member with at least the Developer role",
        }
    }

    /// A `trust.people` entry's login on this forge (`github:` or `gitlab:`).
    pub fn login_of(self, p: &crate::manifest::TrustedPerson) -> Option<&str> {
        match self {
            ForgeKind::GitHub => p.github.as_deref(),
            ForgeKind::GitLab => p.gitlab.as_deref(),
        }
    }

    /// Where the forge reads CODEOWNERS on the target branch, in order.
    pub fn codeowners_locations(self) -> &'static [&'static str] {
        match self {
            ForgeKind::GitHub => &codeowners::LOCATIONS,
            ForgeKind::GitLab => &codeowners::GITLAB_LOCATIONS,
        }
    }

    /// The `trust.people` key naming a login on this forge.
    pub fn person_key(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "github",
            ForgeKind::GitLab => "gitlab",
        }
    }
}

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
    /// Why approvals the forge lists do not count (given for an earlier head), for people.
    pub ignored: Vec<String>,
    /// What the forge's own approval rules still want (GitLab's `approvals_left`): while
    /// anything is here, the promotion is not approved, whoever approved.
    pub wanting: Vec<String>,
}

impl Approval {
    /// Approved by someone, and nobody asks for changes.
    pub fn is_approved(&self) -> bool {
        !self.approved_by.is_empty()
            && self.changes_requested_by.is_empty()
            && self.wanting.is_empty()
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
    /// Which forge this is (for the words people read).
    fn kind(&self) -> ForgeKind;

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

    /// What `user` may do in the repository (GitHub: `GET …/collaborators/{user}/permission`;
    /// GitLab: the member's access level, Developer and up reading as write).
    /// Someone who is not a collaborator has [`Permission::None`] or [`Permission::Read`].
    fn permission(&self, user: &str) -> Result<Permission>;

    /// Why `user`, with permission `p` (from [`Forge::permission`]), may not approve, for
    /// people: `reviewer has read access to the repository, not write`.
    fn access_text(&self, user: &str, p: Permission) -> String {
        format!(
            "{user} has {} access to the repository, not write",
            p.as_str()
        )
    }

    /// The logins of the members of team `org/slug` (a CODEOWNERS owner `@org/slug`; on
    /// GitLab the group `org/slug`), or `None` when the forge will not say (a token without
    /// `members: read`, a group the token cannot see).
    fn team_members(&self, org: &str, slug: &str) -> Result<Option<Vec<String>>>;

    /// Delete a branch of the repository (a merged promotion branch). `false`: it was not
    /// there (already deleted, by GitHub's "delete head branches" setting or a person).
    fn delete_branch(&self, branch: &str) -> Result<bool>;

    /// The requests whose merge made commit `sha` (or that hold it): how a commit the
    /// forge's squash or rebase button made is traced to its request (GitHub: the pull
    /// requests of a commit; GitLab: the merge requests of a commit).
    fn requests_of_commit(&self, sha: &str) -> Result<Vec<PullRequest>>;

    /// Comment on request `number`, unless one of its comments already holds `marker` (an
    /// HTML comment the body starts with): said once, however many runs see the same thing.
    /// `true`: commented now.
    fn comment_once(&self, number: u64, marker: &str, body: &str) -> Result<bool>;

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

/// The forge, when the environment configures one; `None` otherwise. The one place that
/// picks a forge:
///
/// 1. GitLab, in GitLab CI (`GITLAB_CI=true`), or when the pipeline says `forge: gitlab`,
///    or when it names no forge, the GitHub variables are unset and the review remote's
///    host is a GitLab (`gitlab.com`, `gitlab.…`) — with `STAGEGATE_GITLAB_TOKEN` or
///    `GITLAB_TOKEN` set ([`GitLabConfig::from_lookup`] says where from);
/// 2. GitHub otherwise (or with `forge: github`), with `GITHUB_TOKEN` (or
///    `STAGEGATE_GITHUB_APP_TOKEN`) and `GITHUB_REPOSITORY` set.
///
/// `setting` is the pipeline's `forge:`, `remote_url` the review remote's URL.
pub fn configured(
    setting: Option<&crate::manifest::ForgeSetting>,
    remote_url: Option<&str>,
) -> Result<Option<Box<dyn Forge>>> {
    configured_from(setting, remote_url, |k| std::env::var(k).ok())
}

/// [`configured`] with the variables looked up by `env`.
pub fn configured_from(
    setting: Option<&crate::manifest::ForgeSetting>,
    remote_url: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Box<dyn Forge>>> {
    use crate::manifest::ForgeName;
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let github_env =
        (set(github::ENV_APP_TOKEN) || set(github::ENV_TOKEN)) && set(github::ENV_REPOSITORY);
    let gitlab_ci = env(gitlab::ENV_CI).is_some_and(|v| v.trim() == "true");
    let gitlab = match setting.map(|s| s.kind) {
        Some(ForgeName::Gitlab) => true,
        Some(ForgeName::Github) => false,
        None => gitlab_ci || (!github_env && remote_url.is_some_and(gitlab::looks_like_gitlab)),
    };
    if gitlab {
        let hints = gitlab::Hints {
            url: setting.and_then(|s| s.url.clone()),
            project: setting.and_then(|s| s.project.clone()),
            remote_url: remote_url.map(str::to_string),
        };
        return Ok(match GitLabConfig::from_lookup(&hints, &env)? {
            Some(cfg) => Some(Box::new(GitLab::new(cfg)?)),
            None => None,
        });
    }
    if github_env {
        Ok(Some(Box::new(GitHub::new(GitHubConfig::from_lookup(
            None, &env,
        )?)?)))
    } else {
        Ok(None)
    }
}

/// The branch a promotion pull request comes from: one per stage move, so re-running finds
/// the same pull request.
pub fn promotion_branch(from: &str, to: &str) -> String {
    format!("stagegate/promote/{from}-to-{to}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ForgeName, ForgeSetting};

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn picked(
        setting: Option<&ForgeSetting>,
        remote: Option<&str>,
        pairs: &[(&str, &str)],
    ) -> Option<String> {
        configured_from(setting, remote, env(pairs))
            .unwrap()
            .map(|f| f.describe())
    }

    const GITHUB: [(&str, &str); 2] = [("GITHUB_TOKEN", "t"), ("GITHUB_REPOSITORY", "o/r")];

    #[test]
    fn github_stays_the_forge_where_its_variables_are_set() {
        assert_eq!(
            picked(None, Some("git@gitlab.com:g/s.git"), &GITHUB).as_deref(),
            Some("GitHub o/r (https://api.github.com)")
        );
        assert_eq!(picked(None, None, &[]), None);
    }

    #[test]
    fn gitlab_ci_picks_gitlab_over_a_github_token() {
        let mut vars = GITHUB.to_vec();
        vars.extend([
            ("GITLAB_CI", "true"),
            ("CI_API_V4_URL", "https://gitlab.example.org/api/v4"),
            ("CI_PROJECT_ID", "42"),
            ("GITLAB_TOKEN", "glpat-x"),
        ]);
        assert_eq!(
            picked(None, None, &vars).as_deref(),
            Some("GitLab 42 (https://gitlab.example.org/api/v4)")
        );
        // In GitLab CI without a GitLab token: no forge, not GitHub.
        vars.retain(|(k, _)| *k != "GITLAB_TOKEN");
        assert_eq!(picked(None, None, &vars), None);
    }

    #[test]
    fn a_gitlab_remote_picks_gitlab_with_a_token() {
        assert_eq!(
            picked(
                None,
                Some("https://gitlab.com/xen-project/state.git"),
                &[("STAGEGATE_GITLAB_TOKEN", "glpat-x")]
            )
            .as_deref(),
            Some("GitLab xen-project/state (https://gitlab.com/api/v4)")
        );
        assert_eq!(
            picked(
                None,
                Some("https://github.com/o/r.git"),
                &[("GITLAB_TOKEN", "x")]
            ),
            None
        );
    }

    #[test]
    fn the_pipeline_names_the_forge_and_a_self_hosted_instance() {
        let gitlab = ForgeSetting {
            kind: ForgeName::Gitlab,
            url: Some("https://git.lab.example".into()),
            project: Some("hw/state".into()),
        };
        assert_eq!(
            picked(
                Some(&gitlab),
                Some("git@git.lab.example:hw/state.git"),
                &[("GITLAB_TOKEN", "x")]
            )
            .as_deref(),
            Some("GitLab hw/state (https://git.lab.example/api/v4)")
        );
        // Named GitLab: the remote's host need not look like one; the project comes from it.
        let bare = ForgeSetting {
            url: None,
            project: None,
            ..gitlab
        };
        assert_eq!(
            picked(
                Some(&bare),
                Some("ssh://git@code.example:2222/hw/state.git"),
                &[("GITLAB_TOKEN", "x")]
            )
            .as_deref(),
            Some("GitLab hw/state (https://code.example/api/v4)")
        );
        let github = ForgeSetting {
            kind: ForgeName::Github,
            url: None,
            project: None,
        };
        assert_eq!(
            picked(
                Some(&github),
                Some("git@gitlab.com:g/s.git"),
                &[("GITLAB_TOKEN", "x")]
            ),
            None,
            "forge: github ignores a GitLab token"
        );
    }

    #[test]
    fn gitlab_without_a_project_to_name_is_a_usage_error() {
        let gitlab = ForgeSetting {
            kind: ForgeName::Gitlab,
            url: None,
            project: None,
        };
        let e = configured_from(
            Some(&gitlab),
            Some("/srv/git/state.git"),
            env(&[("GITLAB_TOKEN", "x")]),
        )
        .err()
        .unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("which GitLab project?"), "{e}");
    }

    #[test]
    fn each_forge_has_its_words() {
        assert_eq!(ForgeKind::GitHub.reference(7), "#7");
        assert_eq!(ForgeKind::GitLab.reference(7), "!7");
        assert_eq!(ForgeKind::GitLab.request(), "merge request");
        assert_eq!(
            ForgeKind::GitLab.codeowners_locations()[2],
            ".gitlab/CODEOWNERS"
        );
    }
}
