//! The on-disk shapes of the manifests, exactly as users write them.
//!
//! These types exist only to be deserialized strictly (`deny_unknown_fields` everywhere)
//! with source spans; `manifest::model` turns them into the types the rest of the tool uses.
//! Keep field names obvious: they are the file format documented in the README.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineDoc {
    pub version: Spanned<u32>,
    pub stages: Vec<Spanned<StageDoc>>,
    #[serde(default)]
    pub gates: BTreeMap<String, Spanned<GateDoc>>,
    #[serde(default)]
    pub results: Option<ResultsDoc>,
    #[serde(default)]
    pub artifacts: Option<ArtifactsDoc>,
    #[serde(default)]
    pub env: Option<EnvDoc>,
    #[serde(default)]
    pub trust: Option<TrustDoc>,
    /// Host labels (DESIGN §4.18): a health test each, and what they are on the CI engines.
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<LabelDoc>>,
    /// Which forge reviews promotions (DESIGN §6, §6b): `forge: gitlab`, or
    /// `forge: {kind: gitlab, url: https://gitlab.example.org, project: group/state}`.
    #[serde(default)]
    pub forge: Option<Spanned<ForgeDoc>>,
}

/// `forge: gitlab` or `forge: {kind: gitlab, url: …, project: …}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ForgeDoc {
    Kind(String),
    Full(ForgeFullDoc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ForgeFullDoc {
    pub kind: String,
    /// The instance, for a self-hosted GitLab (`https://gitlab.example.org`).
    #[serde(default)]
    pub url: Option<String>,
    /// The project path (`group/name`), when the remote's URL does not say it.
    #[serde(default)]
    pub project: Option<String>,
}

/// `labels: {kvm: {health: ./tests/kvm-health.sh, every: 1h, runs-on: [self-hosted, kvm],
/// tags: [kvm], exclusive: true}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LabelDoc {
    #[serde(default)]
    pub health: Option<Spanned<String>>,
    #[serde(default)]
    pub every: Option<Spanned<String>>,
    #[serde(default)]
    pub runs_on: Option<Spanned<RunsOnDoc>>,
    /// GitLab runner tags (`tags: [kvm, x86_64]`), the GitLab counterpart of `runs-on`.
    #[serde(default)]
    pub tags: Option<Spanned<RunsOnDoc>>,
    #[serde(default)]
    pub exclusive: bool,
}

/// `runs-on: self-hosted` or `runs-on: [self-hosted, arm64]`, as GitHub writes it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RunsOnDoc {
    One(String),
    Many(Vec<String>),
}

/// `trust:`: whose signatures make evidence count (DESIGN §4.16).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustDoc {
    /// The ledger commit from which signatures are required; it and its ancestors count
    /// as they are (adopting `trust:` on a repository with history).
    #[serde(default)]
    pub since: Option<Spanned<String>>,
    #[serde(default)]
    pub runners: Vec<Spanned<TrustedKeyDoc>>,
    #[serde(default)]
    pub people: Vec<Spanned<TrustedPersonDoc>>,
    #[serde(default)]
    pub retired: Vec<Spanned<RetiredKeyDoc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedKeyDoc {
    pub name: Spanned<String>,
    pub key: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedPersonDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub may: Vec<Spanned<String>>,
    #[serde(default)]
    pub github: Option<String>,
    #[serde(default)]
    pub gitlab: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetiredKeyDoc {
    #[serde(default)]
    pub name: Option<String>,
    pub key: Spanned<String>,
    /// The ledger commit up to which its signatures still count (none: not at all).
    #[serde(default)]
    pub until: Option<Spanned<String>>,
}

/// `env: {pass: [NAME…], secret: [NAME…]}`: the runner's variables a job may see.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvDoc {
    #[serde(default)]
    pub pass: Vec<Spanned<String>>,
    #[serde(default)]
    pub secret: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StageDoc {
    Name(String),
    Full(StageFullDoc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFullDoc {
    pub name: String,
    pub branch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GateDoc {
    #[serde(default)]
    pub require: Vec<Spanned<String>>,
    #[serde(default)]
    pub soak: Option<Spanned<String>>,
    #[serde(default)]
    pub review: bool,
    #[serde(default)]
    pub baseline: bool,
    #[serde(default)]
    pub bisect: Option<Spanned<BisectDoc>>,
    #[serde(default)]
    pub flaky: Option<Spanned<FlakyDoc>>,
    #[serde(default)]
    pub errors: Option<Spanned<ErrorsDoc>>,
}

/// `errors: {retries: N, backoff: DURATION}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ErrorsDoc {
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub backoff: Option<Spanned<String>>,
}

/// `bisect: true`, or `bisect: {reproduce: N}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BisectDoc {
    Flag(bool),
    Full(BisectFullDoc),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BisectFullDoc {
    #[serde(default)]
    pub reproduce: Option<Spanned<i64>>,
}

/// `flaky: {policy: block|wait|allow, tries: N}` of a gate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FlakyDoc {
    pub policy: Spanned<String>,
    #[serde(default)]
    pub tries: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ResultsDoc {
    #[serde(default, rename = "ref")]
    pub reference: Option<Spanned<String>>,
    #[serde(default)]
    pub push: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArtifactsDoc {
    pub store: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageDoc {
    pub name: Spanned<String>,
    pub version: Spanned<Scalar>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub based_on: Option<Spanned<BasedOnDoc>>,
    #[serde(default)]
    pub build: Option<BuildDoc>,
    #[serde(default)]
    pub max_age: Option<Spanned<String>>,
    #[serde(default)]
    pub watch: Option<WatchDoc>,
    /// What a host must offer to build it (`needs: [kvm, x86_64]`).
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ComponentDoc {
    pub name: Spanned<String>,
    pub version: Spanned<Scalar>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub source: Option<SourceDoc>,
    /// Built before it is tested (DESIGN §3), as an image is.
    #[serde(default)]
    pub build: Option<BuildDoc>,
    #[serde(default)]
    pub watch: Option<WatchDoc>,
    /// What a host must offer to build it (`needs: [x86_64]`).
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
}

/// A version may be written bare (`version: 12.8`); YAML would read that as a float, so
/// accept numbers and keep their text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BasedOnDoc {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub component: Option<String>,
    #[serde(default)]
    pub version: Option<Spanned<Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildDoc {
    pub run: Spanned<String>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    pub artifact: Spanned<String>,
    #[serde(default)]
    pub lock: Option<Spanned<String>>,
    #[serde(default)]
    pub cache: Option<Spanned<String>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchDoc {
    pub run: Spanned<String>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceDoc {
    pub git: Spanned<String>,
    #[serde(default)]
    pub commit: Option<Spanned<String>>,
    #[serde(default)]
    pub track: Option<Spanned<String>>,
    #[serde(default)]
    pub push_to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TestDoc {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub uses: Vec<Spanned<String>>,
    pub run: Spanned<String>,
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
    /// What a host must offer to run it (`needs: [kvm, iommu]`).
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
}
