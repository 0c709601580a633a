//! What the report shows, as data: the model behind every page and behind `report.json`.
//!
//! The JSON form is a stable interface (README, "report.json"): fields are only ever added;
//! a change of meaning bumps [`FORMAT_VERSION`].

use serde::Serialize;

use crate::gate::JobState;
use crate::keys::{Digest, JobKey};
use crate::ledger::{EnvRecord, Verdict};
use crate::manifest::Gate;
use crate::overrides::WaiveRecord;
use crate::plan::{JobKind, Role};
use crate::records::HoldRecord;
use crate::trail;

/// The version of `report.json`'s shape.
pub const FORMAT_VERSION: u32 = 1;

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// Seconds since the epoch at generation: ages below are counted from it.
    pub generated_unix: i64,
    /// The stages, in pipeline order.
    pub stages: Vec<StageView>,
    /// Every stage move S → T with its candidates.
    pub moves: Vec<MoveView>,
    /// The newest entries of the audit trail (`stagegate log`): what moved recently.
    pub recent: Vec<trail::Entry>,
    /// The tested commits of the newest results, newest first: the columns of the history
    /// grid (an OSSTest "flight").
    pub flights: Vec<Flight>,
    /// Every job name (a test, or `build <item>`) with its newest runs.
    pub tests: Vec<TestHistory>,
    /// Items that are candidates or moved recently, with their versions through the stages.
    pub items: Vec<ItemHistory>,
    /// How much history was read: the newest `runs_read` results of the ledger, at most
    /// `runs_limit`.
    pub runs_read: usize,
    pub runs_limit: usize,
    /// The artifacts on each stage that carry a signed verification summary, with the
    /// command that checks it (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationView>,
    /// The forge page of the state repository (`https://github.com/OWNER/REPO`), when it
    /// has one: commits link to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<String>,
}

/// The signed verification summary (SLSA VSA) of an artifact a stage holds, as the ledger
/// records it: what it says, and how anyone checks it.
#[derive(Debug, Clone, Serialize)]
pub struct AttestationView {
    pub stage: String,
    pub item: String,
    pub version: String,
    /// `sha256:<hex>` of the artifact.
    pub digest: Digest,
    /// The promotion commit it names.
    pub promotion: String,
    /// The `keyid` of its signature (the signing key's SHA256 fingerprint).
    pub keyid: String,
    /// Where the ledger keeps it.
    pub ledger: String,
    /// Where the store keeps the artifact (and, beside it, the summary).
    pub location: String,
    /// The command that checks it.
    pub check: String,
}

/// One stage: its branch head and how old it is.
#[derive(Debug, Clone, Serialize)]
pub struct StageView {
    pub name: String,
    pub branch: String,
    pub head: String,
    pub subject: String,
    /// The head's commit time (RFC 3339).
    pub committed_at: String,
    /// Seconds between the head's commit time and the report's generation.
    pub age_seconds: i64,
}

/// One stage move S → T.
#[derive(Debug, Clone, Serialize)]
pub struct MoveView {
    pub from: String,
    pub to: String,
    pub from_head: String,
    pub to_head: String,
    /// The gate into T, as T's own pipeline states it.
    pub gate: Gate,
    pub candidates: Vec<CandidateView>,
}

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Every requirement is met: the next `promote` moves it.
    Promote,
    /// Something is missing: results, soak time, an error to retry.
    Wait,
    /// Someone holds it on S (`stagegate hold`).
    Held,
    /// A required job regressed: it stays on S until its content changes.
    Rejected,
    /// Its manifest does not parse or resolve on S: it never moves until fixed.
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Promote => "promote",
            State::Wait => "wait",
            State::Held => "held",
            State::Rejected => "rejected",
            State::Invalid => "invalid",
        }
    }
}

/// A candidate of a move: an item (or a changed test) that differs between S and T.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateView {
    /// `images/NAME`, `components/NAME` or `tests/NAME`.
    pub item: String,
    /// T's version (`null`: new on S).
    pub from_version: Option<String>,
    /// S's version (`null`: removed on S).
    pub to_version: Option<String>,
    /// new, removed, changed, or inputs (only its build recipe or files changed).
    pub change: &'static str,
    pub state: State,
    /// The one line that says why.
    pub reason: String,
    /// Every reason the gate gives that concerns this candidate.
    pub reasons: Vec<ReasonView>,
    /// S's head (what was judged), and its subject.
    pub commit: String,
    pub subject: String,
    /// The jobs that judge it, each with its baseline.
    pub jobs: Vec<JobView>,
    /// Holds on this item on S.
    pub holds: Vec<HoldRecord>,
    /// Waivers of its jobs' failures (`stagegate waive`): who, when and why.
    pub waivers: Vec<WaiveRecord>,
    /// The manifest as a unified diff, T → S (empty when only build inputs changed).
    pub diff: String,
    /// The candidate's page, relative to the report's root.
    pub page: String,
    /// For a component bump: the upstream commits it brings in (first-parent line, newest
    /// first, at most [`UPSTREAM_SHOWN`]), and how many more there are.
    pub upstream: Vec<UpstreamCommit>,
    pub upstream_more: usize,
}

/// The most upstream commits a candidate's page lists.
pub const UPSTREAM_SHOWN: usize = 50;

/// One upstream commit a component bump brings in.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamCommit {
    pub commit: String,
    pub subject: String,
    pub author: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonView {
    /// missing, error, regression, build-failed, fails-like-baseline, baseline-missing,
    /// held, soak, untested, commit (the commit that carries it is rejected for another
    /// candidate's failure)
    pub kind: String,
    pub message: String,
}

/// A required job, its newest result and its baseline's.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub key: JobKey,
    pub label: String,
    pub kind: JobKind,
    pub role: Role,
    /// How the gate reads the result.
    pub state: JobState,
    pub result: Option<RunView>,
    /// The same test with every item at T, when the gate compares with a baseline.
    pub baseline_key: Option<JobKey>,
    pub baseline: Option<RunView>,
    /// Every attempt of the job's key, counted (runs, passes, fails, flaky, last pass,
    /// first fail).
    pub history: crate::gate::History,
    /// The same of the baseline's key.
    pub baseline_history: Option<crate::gate::History>,
}

/// One recorded result of one job.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    pub key: JobKey,
    pub attempt: u32,
    pub name: String,
    pub kind: String,
    pub role: String,
    pub candidates: Vec<String>,
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub duration_ms: u64,
    pub tries: u32,
    pub finished: String,
    /// The commit whose checkout it ran in.
    pub commit: String,
    pub env: Vec<EnvRecord>,
    /// Where the full log is, as recorded (a URL in a shared store, or a path on the
    /// runner's machine).
    pub log: Option<String>,
    /// A link to it: the URL itself, or a `file://` URL of the local path.
    pub log_url: Option<String>,
    /// For a failure whose log is a file on this machine: its copy in the site
    /// (`logs/KEY-ATTEMPT.log`, from the site's root), which a reader of the published
    /// report can open where a runner's path cannot.
    pub site_log: Option<String>,
    /// The last lines of the log.
    pub excerpt: String,
    pub runner: String,
}

/// The results of one tested commit: a column of the history grid.
#[derive(Debug, Clone, Serialize)]
pub struct Flight {
    pub commit: String,
    /// The commit's subject, when the repository has the commit.
    pub subject: Option<String>,
    /// The newest result's finish time.
    pub finished: String,
    pub results: usize,
    /// What was tested at this commit: the candidates its results put in the environment,
    /// with their versions (`components/xen 4.19.1`); empty when only baselines ran.
    pub tested: Vec<String>,
}

/// The newest runs of one job name.
#[derive(Debug, Clone, Serialize)]
pub struct TestHistory {
    /// The test's name, or `build <item>`.
    pub name: String,
    pub kind: String,
    /// Newest first.
    pub runs: Vec<RunView>,
    /// Runs that passed (pass or flaky) among those with a final verdict.
    pub passed: usize,
    /// Runs with a final verdict (pass, flaky, fail).
    pub judged: usize,
    /// `passed / judged`, `null` without a judged run.
    pub pass_rate: Option<f64>,
    pub mean_duration_ms: Option<u64>,
    /// The test's first page, relative to the report's root.
    pub page: String,
}

/// One item's versions on each stage and its moves.
#[derive(Debug, Clone, Serialize)]
pub struct ItemHistory {
    pub item: String,
    pub versions: Vec<StageVersion>,
    /// Audit trail entries naming it, newest first.
    pub events: Vec<ItemEvent>,
    pub page: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageVersion {
    pub stage: String,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemEvent {
    pub when: String,
    /// promote, reject, hold, release, drop, poll
    pub kind: String,
    /// The stage (or `S -> T` for a decision).
    pub stage: String,
    /// The version the entry names, if it names one.
    pub version: Option<String>,
    pub commit: String,
    pub reason: Option<String>,
}
