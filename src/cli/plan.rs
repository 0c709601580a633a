//! `stagegate plan`: the jobs for every candidate.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Code, Ctx, print_json};
use crate::error::Result;
use crate::keys::JobKey;
use crate::ledger::{Ledger, Verdict};
use crate::plan::{Job, MovePlan, describe};

/// Show the jobs the gates require for each candidate (or group of candidates judged
/// together): keys, environments, whether a result is already recorded, and why a job that
/// is needed could not be planned (the candidate waits).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the moves into or out of this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only jobs without a settled result (the ones `run` would run).
    #[arg(long)]
    pub missing: bool,
    /// Plan as if REV were the head of the `--stage` stage (default: the first), e.g. a
    /// pull request's head: the jobs the pull request would cause. No ref is moved.
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// How to print: text for people, json for programs, github-matrix for a job matrix,
    /// gitlab-pipeline for a GitLab child pipeline.
    #[arg(long, value_enum, default_value_t)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    /// `{"include": [{"key", "name", "stage", "needs", "runs-on"}, …], "exclusive": […],
    /// "left_out": […]}` for GitHub Actions job matrices (README: Host labels): the jobs
    /// that can start now (with `--missing`, those without a result), each on a runner of
    /// its own; a job that needs a build of this run comes in the next.
    GithubMatrix,
    /// A GitLab child pipeline (README: The CI/CD component), JSON, which is YAML: the jobs
    /// `github-matrix` would list, as `parallel:matrix` jobs grouped by the runner `tags`
    /// of their needs (`labels: {NAME: {tags: [...]}}`), a `resource_group` for those that
    /// need an `exclusive: true` label, and a `record` job that records what they export.
    GitlabPipeline,
}

/// A job with what the ledger knows of it.
#[derive(Serialize)]
pub struct JobView<'a> {
    #[serde(flatten)]
    pub job: &'a Job,
    pub result: Option<Verdict>,
}

/// A move as `plan --format json` prints it: the plan, with `jobs` as a list of jobs
/// each carrying its recorded `result`.
#[derive(Serialize)]
struct MoveView<'a> {
    from: &'a crate::manifest::Stage,
    to: &'a crate::manifest::Stage,
    gate: &'a crate::manifest::Gate,
    from_head: String,
    to_head: String,
    candidates: &'a [crate::plan::Candidate],
    groups: &'a [crate::plan::Group],
    /// The jobs testing together the groups that pass alone, when there are several.
    combination: Option<&'a crate::plan::Group>,
    jobs: Vec<JobView<'a>>,
}

/// The latest verdict of every job in `plans`.
pub fn verdicts(ledger: &Ledger, plans: &[MovePlan]) -> Result<BTreeMap<JobKey, Option<Verdict>>> {
    let view = ledger.view()?;
    let mut out = BTreeMap::new();
    for p in plans {
        for key in p.jobs.keys() {
            if !out.contains_key(key) {
                out.insert(key.clone(), view.latest(key)?.map(|r| r.verdict));
            }
        }
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let mut planner = ctx.start(false)?;
    let repo = planner.repo;
    if let Some(rev) = &args.rev {
        let stage = match &args.stage {
            Some(s) => planner.stage(s)?.name.clone(),
            None => planner.pipeline.stages[0].name.clone(),
        };
        let id = repo.resolve(rev).map_err(|_| {
            crate::error::Error::usage_help(
                format!("--rev {rev:?} does not name a commit"),
                "fetch it first (a pull request's head: git fetch origin pull/N/head)",
            )
        })?;
        planner.heads.insert(stage, id);
    }
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    // What run would run: nothing for a rejection that stands, and the combination of
    // what passes alone.
    let judgements = crate::judge::judge_all(&planner, args.stage.as_deref(), &view, ctx.now())?;
    let plans: Vec<MovePlan> = judgements.iter().map(|j| j.runnable()).collect();
    let combos: Vec<Option<crate::plan::Group>> = judgements
        .iter()
        .map(|j| j.combination_group().cloned())
        .collect();
    let verdicts = verdicts(&ledger, &plans)?;
    let wanted = |j: &Job| {
        !args.missing
            || !verdicts
                .get(&j.key)
                .copied()
                .flatten()
                .is_some_and(Verdict::is_final)
    };
    match args.format {
        PlanFormat::Json => {
            let views: Vec<MoveView> = plans
                .iter()
                .zip(&combos)
                .map(|(p, combo)| MoveView {
                    from: &p.from,
                    to: &p.to,
                    gate: &p.gate,
                    from_head: p.from_head.to_string(),
                    to_head: p.to_head.to_string(),
                    candidates: &p.candidates,
                    groups: &p.groups,
                    combination: combo.as_ref(),
                    jobs: p
                        .jobs
                        .values()
                        .filter(|j| wanted(j))
                        .map(|j| JobView {
                            job: j,
                            result: verdicts[&j.key],
                        })
                        .collect(),
                })
                .collect();
            print_json(&views);
        }
        PlanFormat::GithubMatrix | PlanFormat::GitlabPipeline => {
            // Each matrix job runs on a runner of its own, all at once: a job that needs a
            // build without a passing result (a derived image's build, a test of a new
            // image) could only be skipped and fail its matrix job, so it waits for the
            // next run, when the build it needs is in the ledger and its artifact in the
            // store.
            let mut ready = BTreeMap::new();
            for p in &plans {
                for j in p.jobs.values() {
                    for dep in &j.after {
                        if !ready.contains_key(dep) {
                            let built = view.latest(dep)?.is_some_and(|r| {
                                r.artifact.is_some()
                                    && matches!(r.verdict, Verdict::Pass | Verdict::Flaky)
                            });
                            ready.insert(dep.clone(), built);
                        }
                    }
                }
            }
            let startable = |j: &Job| wanted(j) && j.after.iter().all(|d| ready[d]);
            let gitlab = args.format == PlanFormat::GitlabPipeline;
            let m = if gitlab {
                matrix(&planner.pipeline, &plans, &startable, Engine::GitLab)
            } else {
                matrix(&planner.pipeline, &plans, &startable, Engine::GitHub)
            };
            for l in &m.left_out {
                eprintln!(
                    "left out of the matrix: {} ({}): {}",
                    l.name,
                    l.key.short(),
                    l.reason
                );
            }
            if gitlab {
                let text = serde_json::to_string_pretty(&gitlab_pipeline(&planner.pipeline, &m))
                    .map_err(|e| crate::error::Error::infra(format!("the pipeline: {e}")))?;
                println!("{text}");
            } else {
                println!("{}", serde_json::json!(m));
            }
        }
        PlanFormat::Text => {
            for (p, combo) in plans.iter().zip(&combos) {
                println!("{} → {}", p.from.name, p.to.name);
                if p.candidates.is_empty() {
                    println!("  nothing pending");
                }
                for c in p.candidates.iter().filter(|c| c.is_invalid()) {
                    println!("  {}: invalid", c.id);
                    for d in &c.invalid {
                        println!("    {}:{}:{}: {}", d.file, d.line, d.column, d.message);
                    }
                }
                for g in p.groups.iter().chain(combo.as_ref()) {
                    let labels: Vec<String> = g
                        .members
                        .iter()
                        .filter_map(|m| p.candidate(m))
                        .map(|c| {
                            super::show::candidate_label(
                                &c.id,
                                c.from.as_deref(),
                                c.to.as_deref(),
                                c.present,
                                c.new,
                            )
                        })
                        .collect();
                    if combo.as_ref().is_some_and(|c| std::ptr::eq(c, g)) {
                        println!("  together: {}", labels.join(" + "));
                    } else {
                        println!("  {}", labels.join(" + "));
                    }
                    for key in &g.required {
                        let job = &p.jobs[key];
                        if !wanted(job) {
                            continue;
                        }
                        let result =
                            verdicts[key].map_or("no result".to_string(), |v| v.to_string());
                        println!(
                            "    {:<50} {}  {}{}",
                            describe(job),
                            key.short(),
                            result,
                            needs_note(job)
                        );
                        if let Some(b) = &job.baseline {
                            let bres =
                                verdicts[b].map_or("no result".to_string(), |v| v.to_string());
                            println!(
                                "    {:<50} {}  {}{}",
                                describe(&p.jobs[b]),
                                b.short(),
                                bres,
                                needs_note(&p.jobs[b])
                            );
                        }
                    }
                    for b in &g.blocked {
                        println!("    not planned: {}", b.message);
                    }
                    if g.required.is_empty() && g.blocked.is_empty() {
                        println!("    no jobs required");
                    }
                }
            }
        }
    }
    Ok(0)
}

/// `  needs kvm, x86_64` after a job's line when it needs host labels (nothing otherwise).
fn needs_note(job: &Job) -> String {
    if job.needs.is_empty() {
        String::new()
    } else {
        format!("  needs {}", job.needs.join(", "))
    }
}

/// Where a job runs when it needs no label: GitHub's hosted runner.
pub const DEFAULT_RUNS_ON: &str = "ubuntu-latest";

/// One job of a GitHub matrix: the key `run --job` takes, its name, and where it runs.
#[derive(Serialize)]
struct MatrixEntry {
    key: JobKey,
    name: String,
    stage: String,
    needs: Vec<String>,
    #[serde(rename = "runs-on")]
    runs_on: Vec<String>,
}

/// A job no runner of the matrix can serve: a label it needs has no `runs-on`.
#[derive(Serialize)]
struct LeftOut {
    key: JobKey,
    name: String,
    stage: String,
    needs: Vec<String>,
    reason: String,
}

/// `plan --format github-matrix`: `include` (the jobs any number of runners may run at
/// once), `exclusive` (the jobs that need an `exclusive: true` label: the workflow runs
/// them one at a time, `max-parallel: 1`, so none is cancelled as a concurrency group
/// would), and `left_out` (jobs needing a label that `labels:` maps to no runner).
#[derive(Serialize)]
struct Matrix {
    include: Vec<MatrixEntry>,
    exclusive: Vec<MatrixEntry>,
    left_out: Vec<LeftOut>,
}

/// The CI engine a matrix is for: which mapping of `labels:` names its runners.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    /// `runs-on` (`ubuntu-latest` for a job that needs nothing).
    GitHub,
    /// `tags` (none for a job that needs nothing: any runner of the project).
    GitLab,
}

fn matrix(
    pipeline: &crate::manifest::Pipeline,
    plans: &[MovePlan],
    wanted: &dyn Fn(&Job) -> bool,
    engine: Engine,
) -> Matrix {
    let runners = |l: &crate::manifest::LabelPolicy| -> Vec<String> {
        match engine {
            Engine::GitHub => l.runs_on.clone(),
            Engine::GitLab => l.tags.clone(),
        }
    };
    let (key, example) = match engine {
        Engine::GitHub => ("runs-on", "self-hosted, "),
        Engine::GitLab => ("tags", ""),
    };
    let mut m = Matrix {
        include: Vec::new(),
        exclusive: Vec::new(),
        left_out: Vec::new(),
    };
    let mut seen = std::collections::BTreeSet::new();
    for p in plans {
        for j in p.jobs.values().filter(|j| wanted(j)) {
            if !seen.insert(j.key.clone()) {
                continue;
            }
            let unmapped: Vec<&str> = j
                .needs
                .iter()
                .filter(|n| {
                    pipeline
                        .labels
                        .get(*n)
                        .is_none_or(|l| runners(l).is_empty())
                })
                .map(String::as_str)
                .collect();
            if !unmapped.is_empty() {
                m.left_out.push(LeftOut {
                    key: j.key.clone(),
                    name: describe(j),
                    stage: p.to.name.clone(),
                    needs: j.needs.clone(),
                    reason: format!(
                        "needs {}, which `labels:` in stagegate.yaml maps to no runner (add e.g. `labels: {{{}: {{{key}: [{example}{}]}}}}`); it waits for a runner started by hand (`{}`)",
                        unmapped
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        unmapped[0],
                        unmapped[0],
                        crate::advice::Advice::RunLabels {
                            labels: j.needs.join(",")
                        }
                    ),
                });
                continue;
            }
            let mut runs_on: Vec<String> = Vec::new();
            for n in &j.needs {
                for r in runners(&pipeline.labels[n]) {
                    if !runs_on.contains(&r) {
                        runs_on.push(r);
                    }
                }
            }
            if runs_on.is_empty() && engine == Engine::GitHub {
                runs_on.push(DEFAULT_RUNS_ON.into());
            }
            let entry = MatrixEntry {
                key: j.key.clone(),
                name: describe(j),
                stage: p.to.name.clone(),
                needs: j.needs.clone(),
                runs_on,
            };
            if j.needs.iter().any(|n| pipeline.labels[n].exclusive) {
                m.exclusive.push(entry);
            } else {
                m.include.push(entry);
            }
        }
    }
    m
}

/// The line that starts every job of stagegate's GitLab component (templates/gitlab/) and
/// of the child pipeline `plan --format gitlab-pipeline` writes: fetch stagegate's own
/// source at the pinned ref (`STAGEGATE_SOURCE`, `STAGEGATE_REF`, forwarded by the trigger
/// job) and source its `scripts/gitlab-ci.sh`, which installs the released binary
/// (checksum verified, by `scripts/install.sh`) and prepares the checkout for the job's role.
pub const GITLAB_BOOTSTRAP: &str = r#"sg_src="$(mktemp -d)" && git -C "$sg_src" init -q && git -C "$sg_src" fetch -q --depth 1 "$STAGEGATE_SOURCE" "$STAGEGATE_REF" && git -C "$sg_src" -c advice.detachedHead=false checkout -q FETCH_HEAD && . "$sg_src/scripts/gitlab-ci.sh" "$SG_ROLE" || exit 1"#;

/// GitLab runs at most this many jobs from one `parallel:matrix`.
const GITLAB_MATRIX_MAX: usize = 200;

/// A job's name as a matrix value: GitLab puts the values in the job's name, which may not
/// pass 255 characters, and a group's name lists all its candidates.
fn matrix_name(name: &str) -> String {
    const MAX: usize = 100;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let mut out: String = name.chars().take(MAX - 1).collect();
    out.push('…');
    out
}

/// The child pipeline of `plan --format gitlab-pipeline`: a `run` stage of
/// `parallel:matrix` jobs, one per set of runner tags (and `resource_group`, for jobs that
/// need an `exclusive: true` label: GitLab runs the jobs of a resource group one at a time),
/// each entry exporting its result as the artifact `result-KEY/`; then a `record` job that
/// holds the write token (and the signing key) and runs no candidate code.
fn gitlab_pipeline(pipeline: &crate::manifest::Pipeline, m: &Matrix) -> serde_json::Value {
    use serde_json::json;
    // (tags, resource group) → entries, in plan order.
    type Runner = (Vec<String>, Option<String>);
    let mut groups: Vec<(Runner, Vec<&MatrixEntry>)> = Vec::new();
    for e in m.include.iter().chain(&m.exclusive) {
        let exclusive: Vec<&str> = e
            .needs
            .iter()
            .filter(|n| pipeline.labels.get(*n).is_some_and(|l| l.exclusive))
            .map(String::as_str)
            .collect();
        let group = (!exclusive.is_empty()).then(|| format!("stagegate/{}", exclusive.join("/")));
        let key = (e.runs_on.clone(), group);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, entries)) => entries.push(e),
            None => groups.push((key, vec![e])),
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("stages".into(), json!(["run", "record"]));
    out.insert(
        ".stagegate".into(),
        json!({"before_script": [GITLAB_BOOTSTRAP]}),
    );
    for ((tags, group), entries) in &groups {
        let chunks: Vec<&[&MatrixEntry]> = entries.chunks(GITLAB_MATRIX_MAX).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut name = "stagegate run".to_string();
            if !tags.is_empty() {
                name.push_str(&format!(" on {}", tags.join(", ")));
            }
            if group.is_some() {
                name.push_str(" one at a time");
            }
            if chunks.len() > 1 {
                name.push_str(&format!(" {}", i + 1));
            }
            let matrix: Vec<serde_json::Value> = chunk
                .iter()
                .map(|e| {
                    let mut v = json!({"SG_JOB": e.key, "SG_NAME": matrix_name(&e.name)});
                    if !e.needs.is_empty() {
                        // The labels the engine chose this runner for (`run --labels`).
                        v["STAGEGATE_LABELS"] = json!(e.needs.join(","));
                    }
                    v
                })
                .collect();
            let mut job = json!({
                "extends": ".stagegate",
                "stage": "run",
                "variables": {"SG_ROLE": "run"},
                "timeout": "3h",
                "parallel": {"matrix": matrix},
                "script": [r#"stagegate --remote origin run --job "$SG_JOB" --export "result-$SG_JOB""#],
                "artifacts": {"when": "always", "paths": ["result-$SG_JOB/"], "expire_in": "1 day"},
            });
            if !tags.is_empty() {
                job["tags"] = json!(tags);
            }
            if let Some(g) = group {
                job["resource_group"] = json!(g);
            }
            out.insert(name, job);
        }
    }
    out.insert(
        "stagegate record".into(),
        json!({
            "extends": ".stagegate",
            "stage": "record",
            "when": "always",
            "variables": {"SG_ROLE": "record"},
            // Where the write token and the signing key are scoped (README: The CI/CD
            // component); no job that runs candidate code has this environment.
            "environment": {"name": "stagegate", "action": "prepare"},
            "script": [
                "set -- result-*",
                r#"if [ -e "$1" ]; then stagegate --remote origin record --push "$@"; else echo "stagegate: no results to record"; fi"#,
            ],
        }),
    );
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, needs: &[&str], tags: &[&str]) -> MatrixEntry {
        MatrixEntry {
            key: key.repeat(12).into(),
            name: format!("test  {key}"),
            stage: "stable".into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            runs_on: tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_gitlab_pipeline_groups_jobs_by_tags_and_locks_exclusive_hosts() {
        let yaml = "version: 1\nstages: [staging, stable]\nlabels:\n  arm64: {tags: [arm64]}\n  box: {tags: [box1], exclusive: true}\n";
        let pipeline =
            crate::manifest::parse::parse_pipeline("stagegate.yaml", yaml.as_bytes()).unwrap();
        let m = Matrix {
            include: vec![
                entry("a", &[], &[]),
                entry("b", &["arm64"], &["arm64"]),
                entry("c", &[], &[]),
            ],
            exclusive: vec![entry("d", &["box"], &["box1"])],
            left_out: Vec::new(),
        };
        let p = gitlab_pipeline(&pipeline, &m);
        let plain = &p["stagegate run"];
        assert!(plain.get("tags").is_none(), "{plain:#}");
        let keys: Vec<&str> = plain["parallel"]["matrix"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["SG_JOB"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["a".repeat(12), "c".repeat(12)]);
        let arm = &p["stagegate run on arm64"];
        assert_eq!(arm["tags"], serde_json::json!(["arm64"]));
        assert_eq!(arm["parallel"]["matrix"][0]["STAGEGATE_LABELS"], "arm64");
        assert!(arm.get("resource_group").is_none());
        let boxed = &p["stagegate run on box1 one at a time"];
        assert_eq!(boxed["resource_group"], "stagegate/box");
        assert_eq!(p["stagegate record"]["when"], "always");
        assert_eq!(p["stages"], serde_json::json!(["run", "record"]));
        // Names with many candidates are cut: the job's name holds them and the key.
        let long = format!("test  boot [{}]", "components/xen + ".repeat(20));
        let cut = matrix_name(&long);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
        assert_eq!(matrix_name("test  boot"), "test  boot");
    }

    #[test]
    fn the_component_starts_its_jobs_as_the_child_pipeline_does() {
        let template = include_str!("../../templates/gitlab/template.yml");
        assert!(
            template.contains(&format!("- '{}'", GITLAB_BOOTSTRAP.replace('\'', "''"))),
            "templates/gitlab/template.yml must start its jobs with GITLAB_BOOTSTRAP"
        );
    }
}
