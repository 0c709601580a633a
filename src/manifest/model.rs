//! The validated model of a state repository's manifests.
//!
//! Every type here has passed the strict checks in `manifest::parse`; code further down the
//! chain (plan, runner, gate) never re-validates. The types serialize to the stable JSON that
//! `--format json` prints and to the canonical encoding job keys hash.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{PIPELINE_FILE, TESTS_DIR};

/// Images are built from a recipe; components are software pinned to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Image,
    Component,
}

impl ItemKind {
    pub const ALL: [ItemKind; 2] = [ItemKind::Image, ItemKind::Component];

    /// The directory of the state repository that holds this kind's manifests.
    pub fn dir(self) -> &'static str {
        match self {
            ItemKind::Image => "images",
            ItemKind::Component => "components",
        }
    }

    pub fn from_dir(dir: &str) -> Option<ItemKind> {
        match dir {
            "images" => Some(ItemKind::Image),
            "components" => Some(ItemKind::Component),
            _ => None,
        }
    }
}

/// `images/NAME` or `components/NAME`: how manifests, tests and the CLI name an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId {
    pub kind: ItemKind,
    pub name: String,
}

impl ItemId {
    pub fn new(kind: ItemKind, name: impl Into<String>) -> Self {
        ItemId {
            kind,
            name: name.into(),
        }
    }

    /// The manifest's path in the repository.
    pub fn path(&self) -> String {
        format!("{}/{}.yaml", self.kind.dir(), self.name)
    }

    /// Parse `images/NAME` / `components/NAME` (a trailing `.yaml` is tolerated).
    pub fn parse(text: &str) -> Option<ItemId> {
        let text = text.strip_suffix(".yaml").unwrap_or(text);
        let (dir, name) = text.split_once('/')?;
        let kind = ItemKind::from_dir(dir)?;
        valid_name(name).then(|| ItemId::new(kind, name))
    }

    /// The upper-case stem of the environment variables that describe this item to a job:
    /// `images/debian-host` → `STAGEGATE_IMAGE_DEBIAN_HOST`.
    pub fn env_stem(&self) -> String {
        let kind = match self.kind {
            ItemKind::Image => "IMAGE",
            ItemKind::Component => "COMPONENT",
        };
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("STAGEGATE_{kind}_{name}")
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.dir(), self.name)
    }
}

impl Serialize for ItemId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a candidate is: an item, a test, or the pipeline itself. An id like [`ItemId`],
/// kept beside it so records of candidates (holds, decisions) need nothing of `plan`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandidateId {
    Item(ItemId),
    Test(String),
    Pipeline,
    /// The repository files: every path that is not an item's manifest or a file it names,
    /// a test's, the pipeline or stagegate's records (`.github/`, `CODEOWNERS`, a README).
    /// Like the pipeline, only an approval moves them (DESIGN §4.15).
    Files,
}

/// How the repository files are named as a candidate.
pub const FILES_CANDIDATE: &str = "repository-files";

impl CandidateId {
    /// `images/NAME`, `components/NAME`, `tests/NAME` or `stagegate.yaml` (a trailing
    /// `.yaml` is tolerated on the first three).
    pub fn parse(text: &str) -> Option<CandidateId> {
        if text == PIPELINE_FILE || text == "pipeline" {
            return Some(CandidateId::Pipeline);
        }
        if text == FILES_CANDIDATE {
            return Some(CandidateId::Files);
        }
        if let Some(name) = text.strip_prefix("tests/") {
            let name = name.strip_suffix(".yaml").unwrap_or(name);
            return valid_name(name).then(|| CandidateId::Test(name.into()));
        }
        ItemId::parse(text).map(CandidateId::Item)
    }

    /// The manifest's path in the repository.
    pub fn path(&self) -> String {
        match self {
            CandidateId::Item(i) => i.path(),
            CandidateId::Test(t) => format!("{TESTS_DIR}/{t}.yaml"),
            CandidateId::Pipeline => PIPELINE_FILE.into(),
            // No manifest: the candidate is the files themselves.
            CandidateId::Files => FILES_CANDIDATE.into(),
        }
    }

    /// A file name for records about this candidate: `images-host`, `tests-boot`, `pipeline`.
    pub fn slug(&self) -> String {
        match self {
            CandidateId::Item(i) => format!("{}-{}", i.kind.dir(), i.name),
            CandidateId::Test(t) => format!("tests-{t}"),
            CandidateId::Pipeline => "pipeline".into(),
            CandidateId::Files => FILES_CANDIDATE.into(),
        }
    }

    pub fn item(&self) -> Option<&ItemId> {
        match self {
            CandidateId::Item(i) => Some(i),
            _ => None,
        }
    }
}

impl fmt::Display for CandidateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CandidateId::Item(i) => write!(f, "{i}"),
            CandidateId::Test(t) => write!(f, "{TESTS_DIR}/{t}"),
            CandidateId::Pipeline => f.write_str(PIPELINE_FILE),
            CandidateId::Files => f.write_str(FILES_CANDIDATE),
        }
    }
}

impl Serialize for CandidateId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Names of items, tests and stages: lower-case letters, digits, `.`, `_`, `-`; no `..`,
/// no `/`, at most 100 characters. They become file names, branch names and variables.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.contains("..")
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Host labels (`needs:`, `--labels`, `labels:` of the pipeline): lower-case letters,
/// digits, `.`, `_`, `-`, starting with a letter or digit, at most 64 characters. They
/// become file names of heartbeats and CI runner labels, so nothing else is allowed.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// What gates can require of a pending commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Requirement {
    Build,
    Test,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub name: String,
    pub branch: String,
}

impl Stage {
    pub fn ref_name(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }
}

/// The conditions for entering a stage.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Gate {
    pub require: Vec<Requirement>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub soak: Option<Duration>,
    pub review: bool,
    pub baseline: bool,
    /// Bisect a rejected tracked component's upstream history (`bisect: true`), and how.
    pub bisect: Option<BisectPolicy>,
    /// What a failure of a flaky test (one that passed and failed for the same job key, or
    /// whose baseline did) does to the gate.
    pub flaky: FlakyPolicy,
    /// How often a job that could not run (`error`) is tried again, and how long apart.
    #[serde(skip_serializing_if = "ErrorPolicy::is_default")]
    pub errors: ErrorPolicy,
}

/// `errors:` of a gate: a job that ended in `error` (it could not run: infrastructure, or
/// its own exit 125) is tried again by later runs at most `retries` times, the n-th retry no
/// sooner than `backoff` × 2^(n-1) after the error before it; then the candidate waits for
/// `stagegate recheck`. Errors are counted per job key from the newest attempts since its
/// last recheck, so a recheck starts the budget again. An error never rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ErrorPolicy {
    pub retries: u32,
    #[serde(serialize_with = "ser_duration")]
    pub backoff: Duration,
}

/// Retries of an errored job unless the gate says otherwise.
pub const DEFAULT_ERROR_RETRIES: u32 = 3;
/// The wait before the first retry of an errored job unless the gate says otherwise.
pub const DEFAULT_ERROR_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// The most retries `errors.retries` may ask for.
pub const MAX_ERROR_RETRIES: u32 = 20;

impl Default for ErrorPolicy {
    fn default() -> Self {
        ErrorPolicy {
            retries: DEFAULT_ERROR_RETRIES,
            backoff: DEFAULT_ERROR_BACKOFF,
        }
    }
}

impl ErrorPolicy {
    fn is_default(&self) -> bool {
        *self == ErrorPolicy::default()
    }

    /// How long after the `n`-th error in a row (1-based) the next retry is due.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor)
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// How `cycle` bisects a rejected component (`bisect:` on a gate) and `bisect ITEM` by
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BisectPolicy {
    /// How many agreeing results settle one tested commit (pass or fail must reproduce).
    pub reproduce: u32,
}

impl Default for BisectPolicy {
    fn default() -> Self {
        BisectPolicy {
            reproduce: DEFAULT_REPRODUCE,
        }
    }
}

/// Results that must agree before a bisect step counts, unless the gate says otherwise.
pub const DEFAULT_REPRODUCE: u32 = 2;
/// The most reproductions a bisect step may ask for.
pub const MAX_REPRODUCE: u32 = 10;

/// `flaky:` of a gate: what a heisenbug does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum FlakyPolicy {
    /// It rejects, like any regression (the default).
    #[default]
    Block,
    /// The gate waits until the job has been tried `tries` more times since it first
    /// failed (each `run` tries it once more); then the newest result counts.
    Wait { tries: u32 },
    /// It does not block.
    Allow,
}

/// The most extra tries a `flaky: {policy: wait}` gate may ask for.
pub const MAX_FLAKY_TRIES: u32 = 20;

impl Gate {
    pub fn requires(&self, r: Requirement) -> bool {
        self.require.contains(&r)
    }
}

/// `stagegate.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    /// One gate per stage after the first, keyed by the stage it guards.
    pub gates: Vec<(String, Gate)>,
    pub results_ref: String,
    pub push_results: bool,
    /// The artifact store: a path (relative to the repository) or a `file://` URL; `None`
    /// means the default, `<git-dir>/stagegate/artifacts`.
    pub artifact_store: Option<String>,
    /// What of the runner's environment jobs see beyond the fixed set.
    pub env: JobEnv,
    /// Whose signatures make evidence count; `None`: every record counts, signed or not.
    pub trust: Option<Trust>,
    /// What the pipeline says of host labels (`labels:`): health tests, CI runner labels.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, LabelPolicy>,
    /// `forge:`: which forge reviews promotions, and where it is; `None`: from the
    /// environment (GitHub Actions, GitLab CI) or the remote's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeSetting>,
}

/// `forge:` of `stagegate.yaml` (DESIGN §6b).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgeSetting {
    pub kind: ForgeName,
    /// The instance's URL (a self-hosted GitLab).
    pub url: Option<String>,
    /// The project (`group/name`).
    pub project: Option<String>,
}

/// A forge stagegate speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeName {
    Github,
    Gitlab,
}

/// `labels.NAME` of `stagegate.yaml` (DESIGN §4.18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LabelPolicy {
    /// A command (from the repository root of the last stage) that exits 0 when this host
    /// can serve the label; run before taking jobs that need it, at most once per `every`.
    pub health: Option<String>,
    #[serde(serialize_with = "ser_duration")]
    pub every: Duration,
    /// The CI runner labels a job that needs this label runs on (`runs-on` on GitHub).
    pub runs_on: Vec<String>,
    /// The GitLab runner tags a job that needs this label runs on (`tags:` of its job).
    pub tags: Vec<String>,
    /// A scarce host: the CI engine runs its jobs one at a time.
    pub exclusive: bool,
}

/// How often a label's health test runs unless `every:` says otherwise.
pub const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(3600);

/// `trust:` in `stagegate.yaml` (DESIGN §4.16): the runners' keys, and people's keys with
/// the kinds of record each may write. With it, only records in ledger commits signed by a
/// key entitled to their kind count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Trust {
    /// Ledger commit: it and its ancestors count unsigned (`trust:` adopted on a ledger
    /// with history; nothing is re-run).
    pub since: Option<String>,
    pub runners: Vec<TrustedKey>,
    pub people: Vec<TrustedPerson>,
    pub retired: Vec<RetiredKey>,
}

/// A runner's key: it may write results and the gate's own records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustedKey {
    pub name: String,
    /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
    pub key: String,
}

/// A person: the records they may write, and who they are on the forges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustedPerson {
    pub name: String,
    pub key: Option<String>,
    pub may: Vec<RecordKind>,
    pub github: Option<String>,
    pub gitlab: Option<String>,
}

/// A key no longer trusted: records it signed count only up to ledger commit `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetiredKey {
    pub name: Option<String>,
    pub key: String,
    pub until: Option<String>,
}

/// The kinds of record a person may be entitled to write: one per command that writes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Waive,
    Approve,
    Freeze,
    Unfreeze,
    Quarantine,
    Unquarantine,
    Hold,
    Release,
    Drop,
    Recheck,
}

impl RecordKind {
    pub const ALL: [RecordKind; 10] = [
        RecordKind::Waive,
        RecordKind::Approve,
        RecordKind::Freeze,
        RecordKind::Unfreeze,
        RecordKind::Quarantine,
        RecordKind::Unquarantine,
        RecordKind::Hold,
        RecordKind::Release,
        RecordKind::Drop,
        RecordKind::Recheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Waive => "waive",
            RecordKind::Approve => "approve",
            RecordKind::Freeze => "freeze",
            RecordKind::Unfreeze => "unfreeze",
            RecordKind::Quarantine => "quarantine",
            RecordKind::Unquarantine => "unquarantine",
            RecordKind::Hold => "hold",
            RecordKind::Release => "release",
            RecordKind::Drop => "drop",
            RecordKind::Recheck => "recheck",
        }
    }

    pub fn parse(s: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Variables of the runner's environment passed on to jobs (`env:` in `stagegate.yaml`).
/// Everything else is withheld: a job starts from `PATH`, `HOME`, `LANG`, `LC_*`, `TMPDIR`
/// and the `STAGEGATE_*` variables that describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct JobEnv {
    /// Passed on as they are.
    pub pass: Vec<String>,
    /// Passed on, and their values masked in every log, excerpt and record.
    pub secret: Vec<String>,
}

/// The tool's own credentials: never passed to a job, always masked.
pub const TOOL_SECRETS: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "STAGEGATE_GITHUB_APP_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
];

/// The most retries a test may ask for.
pub const MAX_RETRIES: u32 = 10;
/// The longest timeout a job (build, test, watch) may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub const DEFAULT_RESULTS_REF: &str = "refs/stagegate/results";

impl Pipeline {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The gate guarding entry into `stage`; a stage without a configured gate requires tests.
    pub fn gate(&self, stage: &str) -> Gate {
        self.gates
            .iter()
            .find(|(s, _)| s == stage)
            .map(|(_, g)| g.clone())
            .unwrap_or_else(|| Gate {
                require: vec![Requirement::Test],
                ..Gate::default()
            })
    }

    /// Adjacent stage pairs `(S, T)`: commits move from S into T.
    pub fn moves(&self) -> impl Iterator<Item = (&Stage, &Stage)> {
        self.stages.windows(2).map(|w| (&w[0], &w[1]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", untagged)]
pub enum BasedOn {
    /// A derived image: built on top of another image's artifact.
    Image { image: String },
    /// An image installed from an upstream release (documentation, and what `watch` tracks).
    Upstream {
        component: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    pub run: String,
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    pub artifact: String,
    pub lock: Option<String>,
    /// A second output, stored beside the artifact: what a later build of this image
    /// starts from (`$STAGEGATE_CACHE`), e.g. the packages it was built from.
    pub cache: Option<String>,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Watch {
    pub run: String,
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Source {
    pub git: String,
    pub commit: Option<String>,
    pub track: Option<String>,
    pub push_to: Option<String>,
}

/// An image or a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Item {
    pub id: ItemId,
    pub version: String,
    pub description: Option<String>,
    pub based_on: Option<BasedOn>,
    pub build: Option<Build>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_age: Option<Duration>,
    pub watch: Option<Watch>,
    pub source: Option<Source>,
    /// The labels a host must offer to build it (DESIGN §4.18); empty: any host.
    pub needs: Vec<String>,
}

impl Item {
    /// The image this one is derived from, if any.
    pub fn parent_image(&self) -> Option<ItemId> {
        match &self.based_on {
            Some(BasedOn::Image { image }) => Some(ItemId::new(ItemKind::Image, image)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Test {
    pub name: String,
    pub description: Option<String>,
    pub uses: Vec<ItemId>,
    pub run: String,
    #[serde(serialize_with = "ser_opt_duration")]
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub files: Vec<String>,
    /// The labels a host must offer to run it (DESIGN §4.18); empty: any host.
    pub needs: Vec<String>,
}

impl Test {
    pub fn path(&self) -> String {
        format!("tests/{}.yaml", self.name)
    }
}

/// The repository file a `run` line starts with, when it names one (`./x.sh args` → `x.sh`).
/// Commands found on `$PATH` (`sh -c …`, `/usr/bin/true`) name no repository file.
pub fn script_of(run: &str) -> Option<&str> {
    let first = run.split_whitespace().next()?;
    let rel = first.strip_prefix("./")?;
    Some(rel.trim_start_matches("./"))
}

/// A `source.git` as git can reach it: `./x` and `../x` are relative to the repository
/// root (`root`), anything else is a URL or path as written.
/// The URL to reach a component's `source.git`: relative paths are relative to the state
/// repository's directory `root`, and `.` is the state repository itself as others reach
/// it (`self_url`: its remote's URL when it has one), where the component's history lives
/// on branches of its own.
pub fn resolve_git(git: &str, root: &std::path::Path, self_url: &str) -> String {
    if git == "." {
        self_url.to_string()
    } else if git.starts_with("./") || git.starts_with("../") {
        root.join(git).display().to_string()
    } else {
        git.to_string()
    }
}

pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(3600);

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}
