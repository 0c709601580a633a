//! What a promotion has to say, and how it is shown: the pull request body, the step summary
//! and the check run.
//!
//! The promotion code fills a [`PromotionSummary`] per stage move from its plan, the ledger's
//! verdicts and the gate's decision; nothing here decides or reads git. The texts are
//! rendered from `templates/pr-body.md.j2` and `templates/step-summary.md.j2` (minijinja),
//! built into the binary.

use serde::{Deserialize, Serialize};

use super::github::{MAX_BODY_CHARS, truncate_chars};
use super::{Annotation, AnnotationLevel, CheckRun, Conclusion, ForgeKind};
use crate::error::{Error, Result};
use crate::keys::JobKey;
use crate::ledger::Verdict;

const PR_BODY: &str = include_str!("../../templates/pr-body.md.j2");
const STEP_SUMMARY: &str = include_str!("../../templates/step-summary.md.j2");

/// What the gate decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecisionKind {
    Promote,
    Reject,
    #[default]
    Wait,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Promote => "promote",
            DecisionKind::Reject => "reject",
            DecisionKind::Wait => "wait",
        }
    }
}

/// One stage move (S → T) as the gate saw it: what changes, what ran, what it decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PromotionSummary {
    /// The stage promoted from (S).
    pub from: String,
    /// The stage promoted into (T).
    pub to: String,
    /// The tested commit on S (full id).
    pub commit: String,
    /// Its subject line.
    #[serde(default)]
    pub subject: String,
    /// T's head when the gate looked.
    #[serde(default)]
    pub target: Option<String>,
    pub decision: DecisionKind,
    /// Why: one line each (a missing result, a regression, soak time left, …).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// What bisects of this move's rejected components found, one line each
    /// (`components/xen: first bad upstream commit …`), whether they move or stay.
    #[serde(default)]
    pub bisects: Vec<String>,
    pub candidates: Vec<CandidateChange>,
    pub jobs: Vec<JobRow>,
    /// This CI run, if any (GitHub: `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`).
    #[serde(default)]
    pub run_url: Option<String>,
    /// Further links: log indexes, dashboards.
    #[serde(default)]
    pub links: Vec<Link>,
}

/// An item whose manifest differs between S and T.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CandidateChange {
    /// `image` or `component`.
    pub kind: String,
    pub name: String,
    /// The manifest's path in the state repository, e.g. `components/xen.yaml`.
    pub path: String,
    /// T's version (`None`: new item).
    pub old_version: Option<String>,
    /// S's version (`None`: removed item).
    pub new_version: Option<String>,
    /// The manifest's text on T and on S, for the diff.
    #[serde(default)]
    pub old_manifest: Option<String>,
    #[serde(default)]
    pub new_manifest: Option<String>,
}

/// `item` at `version` in a job's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EnvItem {
    /// `components/xen`.
    pub item: String,
    pub version: String,
    /// It is a candidate (S's version) rather than T's.
    #[serde(default)]
    pub candidate: bool,
}

/// One required job and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobRow {
    pub key: JobKey,
    /// For people: `test guest-boot [xen]`.
    pub name: String,
    /// The manifest that defines it (`tests/guest-boot.yaml`): where its annotation goes.
    #[serde(default)]
    pub manifest: Option<String>,
    #[serde(default)]
    pub environment: Vec<EnvItem>,
    /// `None`: no result yet.
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub log_url: Option<String>,
    /// The same test with every item at T's version (`None`: no baseline, e.g. a build).
    #[serde(default)]
    pub baseline: Option<BaselineRow>,
    /// A line or two about the failure (the log's tail), for the annotation.
    #[serde(default)]
    pub details: Option<String>,
    /// The gate's word on this job (`fails while its baseline passes`), for the annotation.
    #[serde(default)]
    pub note: Option<String>,
}

/// A job's baseline and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BaselineRow {
    pub key: JobKey,
    pub verdict: Option<Verdict>,
    #[serde(default)]
    pub log_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Link {
    pub title: String,
    pub url: String,
}

fn failed(v: Option<Verdict>) -> bool {
    matches!(v, Some(Verdict::Fail | Verdict::Error))
}

impl JobRow {
    /// Failed while its baseline failed too: the candidate did not make it worse.
    pub fn fails_like_baseline(&self) -> bool {
        failed(self.verdict) && self.baseline.as_ref().is_some_and(|b| failed(b.verdict))
    }
}

impl PromotionSummary {
    /// `Promote staging → stable: xen 4.20 → 4.21-rc2, debian-host 12.7 → 12.8`.
    pub fn title(&self) -> String {
        let mut t = format!("Promote {} → {}", self.from, self.to);
        let changes: Vec<String> = self
            .candidates
            .iter()
            .map(|c| format!("{} {}", c.name, version_change(c)))
            .collect();
        if !changes.is_empty() {
            t.push_str(": ");
            t.push_str(&changes.join(", "));
        }
        truncate_chars(&t, 250)
    }

    /// The move, as an id for check runs: `staging->stable`.
    pub fn move_id(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }

    /// The check run on the tested commit: completed with the decision (promote: success,
    /// reject: failure) or in progress while the gate waits, with an annotation on the
    /// manifest of each failing or flaky job.
    pub fn check_run(&self, name: &str) -> Result<CheckRun> {
        let conclusion = match self.decision {
            DecisionKind::Promote => Some(Conclusion::Success),
            DecisionKind::Reject => Some(Conclusion::Failure),
            DecisionKind::Wait => None,
        };
        let mut annotations = Vec::new();
        for j in &self.jobs {
            let (level, what) = match j.verdict {
                Some(Verdict::Fail | Verdict::Error) if j.fails_like_baseline() => {
                    (AnnotationLevel::Warning, "fails like its baseline")
                }
                Some(Verdict::Fail | Verdict::Error) => {
                    let regression = j
                        .baseline
                        .as_ref()
                        .is_some_and(|b| matches!(b.verdict, Some(Verdict::Pass | Verdict::Flaky)));
                    (
                        AnnotationLevel::Failure,
                        if regression {
                            "regression: its baseline passes"
                        } else {
                            "failed"
                        },
                    )
                }
                Some(Verdict::Flaky) => (
                    AnnotationLevel::Warning,
                    "flaky: failed, then passed on retry",
                ),
                _ => continue,
            };
            let verdict = j.verdict.map_or("", |v| v.as_str());
            let mut message = match &j.note {
                Some(note) => format!("{}: {verdict}, {note}", j.name),
                None => format!("{}: {verdict}, {what}", j.name),
            };
            if !j.environment.is_empty() {
                message.push_str(&format!("\nenvironment: {}", env_text(&j.environment)));
            }
            if let Some(u) = &j.log_url {
                message.push_str(&format!("\nlog: {u}"));
            }
            annotations.push(Annotation {
                path: j
                    .manifest
                    .clone()
                    .unwrap_or_else(|| "stagegate.yaml".into()),
                start_line: 1,
                end_line: 1,
                annotation_level: level,
                title: truncate_chars(&format!("{} {verdict}", j.name), 255),
                message: truncate_chars(&message, 60_000),
                raw_details: j.details.as_ref().map(|d| truncate_chars(d, 60_000)),
            });
        }
        let counts = self.counts();
        let title = format!(
            "{}: {} ({})",
            self.move_id(),
            self.decision.as_str(),
            if counts.is_empty() {
                "no jobs".to_string()
            } else {
                counts
            }
        );
        Ok(CheckRun {
            name: name.to_string(),
            head_sha: self.commit.clone(),
            conclusion,
            title,
            summary: render_step_summary(std::slice::from_ref(self))?,
            text: None,
            details_url: self.run_url.clone(),
            external_id: Some(self.move_id()),
            annotations,
        })
    }

    /// `2 pass, 1 fail, 1 no result`.
    fn counts(&self) -> String {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for j in &self.jobs {
            let k = j.verdict.map_or("no result".to_string(), |v| v.to_string());
            match counts.iter_mut().find(|(n, _)| *n == k) {
                Some((_, c)) => *c += 1,
                None => counts.push((k, 1)),
            }
        }
        counts
            .iter()
            .map(|(k, c)| format!("{c} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn version_change(c: &CandidateChange) -> String {
    match (&c.old_version, &c.new_version) {
        (Some(o), Some(n)) => format!("{o} → {n}"),
        (None, Some(n)) => format!("(new) → {n}"),
        (Some(o), None) => format!("{o} → (removed)"),
        (None, None) => "(unversioned)".to_string(),
    }
}

fn env_text(env: &[EnvItem]) -> String {
    env.iter()
        .map(|e| format!("{}@{}", e.item, e.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A unified diff of two manifest texts (`None`: the file does not exist on that side).
pub fn manifest_diff(path: &str, old: Option<&str>, new: Option<&str>) -> String {
    let a = if old.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".into()
    };
    let b = if new.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".into()
    };
    // A deadline keeps a pathological pair of files from stalling a promotion; past it the
    // diff is still correct, only less minimal.
    similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(2))
        .diff_lines(old.unwrap_or(""), new.unwrap_or(""))
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string()
}

/// A Markdown code fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// A candidate as the templates see it.
#[derive(Serialize)]
struct CandidateView<'a> {
    #[serde(flatten)]
    c: &'a CandidateChange,
    change: String,
    /// `` `xen` 4.20 → 4.21-rc2 ``
    label: String,
    diff: String,
    /// Lines left out of `diff`.
    omitted: usize,
    fence: String,
}

#[derive(Serialize)]
struct JobView<'a> {
    #[serde(flatten)]
    j: &'a JobRow,
    env: String,
    fails_like_baseline: bool,
}

#[derive(Serialize)]
struct MoveView<'a> {
    #[serde(flatten)]
    s: &'a PromotionSummary,
    title: String,
    candidate_views: Vec<CandidateView<'a>>,
    job_views: Vec<JobView<'a>>,
    counts: String,
    diffs_omitted: bool,
    /// The command that prints this move's whole diff (advice, rendered once).
    diff_command: String,
    /// The forge's words (`name`, `request`, `approvers`).
    forge: ForgeWords,
}

/// What the description calls the forge, its requests and who may approve.
#[derive(Serialize)]
struct ForgeWords {
    name: &'static str,
    request: &'static str,
    approvers: &'static str,
}

impl From<ForgeKind> for ForgeWords {
    fn from(k: ForgeKind) -> ForgeWords {
        ForgeWords {
            name: k.name(),
            request: k.request(),
            approvers: k.approvers(),
        }
    }
}

/// The full diff of each candidate's manifest.
fn diffs(s: &PromotionSummary) -> Vec<String> {
    s.candidates
        .iter()
        .map(|c| {
            manifest_diff(
                &c.path,
                c.old_manifest.as_deref(),
                c.new_manifest.as_deref(),
            )
        })
        .collect()
}

fn view<'a>(
    s: &'a PromotionSummary,
    diffs: &[String],
    max_diff_lines: Option<usize>,
    kind: ForgeKind,
) -> MoveView<'a> {
    let candidate_views = s
        .candidates
        .iter()
        .zip(diffs)
        .map(|(c, full)| {
            let lines: Vec<&str> = full.lines().collect();
            let keep = max_diff_lines.unwrap_or(0).min(lines.len());
            let diff = lines[..keep].join("\n");
            CandidateView {
                c,
                change: version_change(c),
                label: format!("`{}` {}", c.name, version_change(c)),
                fence: fence_for(&diff),
                omitted: lines.len() - keep,
                diff,
            }
        })
        .collect();
    let job_views = s
        .jobs
        .iter()
        .map(|j| JobView {
            j,
            env: j
                .environment
                .iter()
                .map(|e| {
                    let t = format!("{}@{}", e.item, e.version);
                    if e.candidate { format!("**{t}**") } else { t }
                })
                .collect::<Vec<_>>()
                .join(", "),
            fails_like_baseline: j.fails_like_baseline(),
        })
        .collect();
    MoveView {
        title: s.title(),
        candidate_views,
        job_views,
        counts: s.counts(),
        diffs_omitted: max_diff_lines.is_none(),
        diff_command: crate::advice::Advice::Diff {
            old: s.to.clone(),
            new: s.from.clone(),
        }
        .to_string(),
        forge: kind.into(),
        s,
    }
}

/// `✅ pass`, `❌ fail`, … for a verdict (none: no result yet).
fn verdict_label(v: minijinja::Value) -> String {
    match v.as_str() {
        Some("pass") => "✅ pass".into(),
        Some("fail") => "❌ fail".into(),
        Some("flaky") => "⚠️ flaky".into(),
        Some("error") => "💥 error".into(),
        Some("skipped") => "⏭️ skipped".into(),
        Some(other) => other.to_string(),
        None => "⏳ no result".into(),
    }
}

/// `[log](URL)` for a URL; a local path (a runner's log directory) as code; `—` for none.
fn log_link(v: minijinja::Value) -> String {
    match v.as_str() {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
            format!("[log]({})", u.replace(' ', "%20").replace(')', "%29"))
        }
        Some(p) if !p.is_empty() => format!("`{}`", cell(p.replace('`', "'"))),
        _ => "—".to_string(),
    }
}

/// Make text safe inside a Markdown table cell: one line, no column breaks.
fn cell(s: String) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("verdict", verdict_label);
    env.add_filter("cell", cell);
    env.add_filter("log", log_link);
    // Templates see commit ids as strings (the tested commit, the target's head).
    env.add_filter("short", |s: String| {
        crate::keys::short_commit(&s, crate::keys::LONG_COMMIT_DIGITS).to_string()
    });
    env.add_template("pr-body.md.j2", PR_BODY)
        .expect("templates/pr-body.md.j2 parses");
    env.add_template("step-summary.md.j2", STEP_SUMMARY)
        .expect("templates/step-summary.md.j2 parses");
    env
}

fn render(name: &str, ctx: minijinja::Value) -> Result<String> {
    let env = environment();
    let t = env.get_template(name).expect("template is built in");
    t.render(ctx).map_err(|e| Error::Infra {
        message: format!("rendering templates/{name}: {e:#}"),
        help: Some("this is a bug in stagegate's template; please report it".into()),
    })
}

/// The pull request body for a stage move: the candidates with their manifest diffs, a
/// verdict table with the baseline beside each job, links, and the decision's reasons.
/// Long diffs are shortened so the body stays within GitHub's limit.
pub fn render_pr_body(s: &PromotionSummary) -> Result<String> {
    render_request_body(s, ForgeKind::GitHub)
}

/// [`render_pr_body`] in `kind`'s words: a merge request's description on GitLab.
pub fn render_request_body(s: &PromotionSummary, kind: ForgeKind) -> Result<String> {
    let diffs = diffs(s);
    let mut body = String::new();
    for max_lines in [Some(400), Some(100), Some(20), None] {
        body = render(
            "pr-body.md.j2",
            minijinja::Value::from_serialize(view(s, &diffs, max_lines, kind)),
        )?;
        if body.chars().count() <= MAX_BODY_CHARS - 100 {
            return Ok(body);
        }
    }
    Ok(truncate_chars(&body, MAX_BODY_CHARS - 100))
}

/// Markdown for `$GITHUB_STEP_SUMMARY`: per stage move, the decision, its reasons and a
/// table of verdicts.
pub fn render_step_summary(moves: &[PromotionSummary]) -> Result<String> {
    let no_diffs: Vec<Vec<String>> = moves
        .iter()
        .map(|s| vec![String::new(); s.candidates.len()])
        .collect();
    let views: Vec<MoveView> = moves
        .iter()
        .zip(&no_diffs)
        .map(|(s, d)| view(s, d, Some(0), ForgeKind::GitHub))
        .collect();
    render(
        "step-summary.md.j2",
        minijinja::context! { moves => minijinja::Value::from_serialize(&views) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_is_longer_than_any_backtick_run_inside() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }

    #[test]
    fn a_new_manifest_diffs_against_dev_null() {
        let d = manifest_diff("images/a.yaml", None, Some("name: a\n"));
        assert!(d.starts_with("--- /dev/null\n+++ b/images/a.yaml\n"), "{d}");
        assert!(d.contains("+name: a"), "{d}");
    }

    #[test]
    fn table_cells_stay_on_one_line_and_in_their_column() {
        assert_eq!(cell("a|b\nc".into()), "a\\|b c");
    }
}
