//! What a bisect found, as recorded in the results ledger beside the results it ran:
//!
//! ```text
//! bisect/<T>/<content>/<time>-<nonce>.yaml     one per bisect of that candidate content
//! ```
//!
//! Records are only ever added; the newest counts. The gate, `why`, `log`, decisions and
//! pull requests read the newest with [`latest`].

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::keys::{ContentKey, JobKey, LONG_COMMIT_DIGITS, short_commit};
use crate::ledger::LedgerView;

/// One bisect of one rejected candidate content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BisectRecord {
    pub item: String,
    pub from: String,
    pub to: String,
    /// The candidate's content key (what the rejection is about).
    pub content: ContentKey,
    /// `source.git` as the manifest writes it.
    pub upstream: String,
    /// T's upstream commit (passes) and the candidate's (fails).
    pub good: String,
    pub bad: String,
    /// Agreeing results that settled each tested commit.
    pub reproduce: u32,
    /// The tests that regressed, replayed at each commit.
    pub tests: Vec<String>,
    /// `found`, or `inconclusive` (the regression did not reproduce at its ends).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<CommitRecord>,
    /// When the first bad commit came in with a merge on the tracked branch: that merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Commits on the first-parent line from `good` (excluded) to `bad` (included).
    pub line: usize,
    /// Every commit tested, in the order it was settled.
    pub steps: Vec<StepRecord>,
    pub by: String,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CommitRecord {
    pub commit: String,
    pub subject: String,
    pub author: String,
}

/// One upstream commit tested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepRecord {
    pub commit: String,
    pub subject: String,
    /// `good-end`, `bad-end` (the two versions, checked first), `first-parent` (a commit
    /// of the tracked branch), `merged-side` (a commit a merge brought in).
    pub role: String,
    /// `good` or `bad`.
    pub verdict: String,
    pub passed: u32,
    pub failed: u32,
    /// It both passed and failed: the side that reproduced first counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
    /// The job keys of its results in the ledger.
    pub keys: Vec<JobKey>,
}

impl BisectRecord {
    /// Commits tested between the two ends.
    pub fn steps_between(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| !s.role.ends_with("-end"))
            .count()
    }

    /// One line for people: what the bisect found.
    pub fn summary(&self) -> String {
        match &self.first_bad {
            Some(c) => format!(
                "first bad upstream commit {} \"{}\"{} (bisected in {} step{} over {} commit{}, each result reproduced {}×)",
                short_commit(&c.commit, LONG_COMMIT_DIGITS),
                c.subject,
                self.merged_by
                    .as_ref()
                    .map(|m| format!(", merged by {}", short_commit(m, LONG_COMMIT_DIGITS)))
                    .unwrap_or_default(),
                self.steps_between(),
                if self.steps_between() == 1 { "" } else { "s" },
                self.line,
                if self.line == 1 { "" } else { "s" },
                self.reproduce
            ),
            None => format!(
                "bisect inconclusive: {}",
                self.reason.as_deref().unwrap_or("no first bad commit")
            ),
        }
    }
}

pub fn dir(to: &str, content: &ContentKey) -> String {
    format!("bisect/{to}/{content}")
}

/// The newest bisect of `content` into `to`, if any.
pub fn latest(view: &LedgerView, to: &str, content: &ContentKey) -> Result<Option<BisectRecord>> {
    let dir = dir(to, content);
    let Some(name) = view.list(&dir)?.into_iter().max() else {
        return Ok(None);
    };
    let path = format!("{dir}/{name}");
    match view.read(&path)? {
        Some(bytes) => Ok(Some(crate::records::parse(&path, &bytes)?)),
        None => Ok(None),
    }
}
