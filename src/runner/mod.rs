//! Executing jobs: in parallel on tokio, each in its own process group, with retries,
//! timeouts, capped logs, builds stored in the artifact store, and every result handed to
//! the recorder as soon as it is known.
//!
//! [`session`] chooses what to run (from the plan and the ledger) and runs it: checkouts,
//! the runtime, signals, recording. The runner never prints: it reports [`Event`]s to a
//! callback the caller supplies.
//!
//! What a job sees (never spliced into shell text; values travel as variables):
//!
//! | variable | value |
//! |---|---|
//! | `STAGEGATE_JOB` | the job key |
//! | `STAGEGATE_JOB_NAME`, `STAGEGATE_ROLE` | test name or built item; candidate, combination, baseline, build, test-change |
//! | `STAGEGATE_COMMIT` | the commit checked out as the working directory |
//! | `STAGEGATE_OUT` | an empty directory for outputs (a build writes its artifact here) |
//! | `STAGEGATE_ENV_FILE` | a JSON file describing the whole environment |
//! | `STAGEGATE_<IMAGE|COMPONENT>_<NAME>_VERSION` | each used item's version |
//! | `…_ARTIFACT`, `…_DIGEST` | for built images: the artifact's local path and digest |
//! | `…_GIT`, `…_COMMIT` | for components with a source |
//! | `…_CANDIDATE` | `1` for the item(s) under test, else `0` |
//! | `STAGEGATE_ITEM`, `STAGEGATE_VERSION` | for builds: the item being built |
//! | `STAGEGATE_CACHE`, `…_DIGEST`, `…_VERSION` | for builds whose item's build record on T has a cache (`build.cache`): its local path and digest, and the version that left it |
//!
//! Nothing else of the runner's environment reaches a job: it starts from `PATH`, `HOME`,
//! `LANG`, `LC_*` and `TMPDIR` ([`base_env`]), plus the variables the pipeline lists in
//! `env.pass` and `env.secret`. Every secret value the tool knows is masked in the log and
//! the excerpt as the output arrives, before a byte is written (`mask`).
//!
//! Only the job's own exit status makes `fail`. Whatever stops the runner from running
//! the job or keeping what it made (a checkout it refuses, a log or store it cannot
//! write, a task that crashed) is `error`, which the next run retries.
//!
//! Jobs share one read-only checkout per commit, holding the files they name (what their
//! keys cover), not the whole tree: write only into `$STAGEGATE_OUT` or a temporary
//! directory.

pub mod claim;
pub mod health;
pub mod mask;
pub mod offers;
pub mod process;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use crate::artifact::oci::ANNOTATION_PREFIX as ANNOTATION;
use crate::artifact::{Kind, Store};
use crate::keys::{Digest, JobKey};
use crate::ledger::{ArtifactRecord, EnvRecord, Exit, ResultRecord, Runner, Verdict};
// Who runs a job is part of its record: `identity` lives beside the ledger's `Runner`.
pub use crate::ledger::identity;
use crate::plan::{Job, JobKind, Role};
use mask::Secrets;
use process::{Ended, Spec};

/// A job with the directory it runs in.
pub struct Ready {
    pub job: Job,
    /// Its checkout, or why there is none (a tree the runner refuses to write): the job
    /// is then an `error` naming the problem.
    pub cwd: std::result::Result<PathBuf, String>,
    /// The files of its checkout still being written, if any: it starts once they are.
    pub files: Option<PendingFiles>,
    /// The variables of the runner's environment the pipeline passes on (`env.pass`,
    /// `env.secret`), with their values.
    pub pass: Passed,
}

/// How far the writing of a run's checkouts got: how many writes are done, or why it
/// stopped.
#[derive(Debug, Clone)]
pub enum CheckoutProgress {
    Done(usize),
    Failed(String),
}

/// The checkout files a job waits for: written once [`CheckoutProgress::Done`] reaches `need`.
#[derive(Debug, Clone)]
pub struct PendingFiles {
    pub progress: watch::Receiver<CheckoutProgress>,
    pub need: usize,
}

impl PendingFiles {
    /// Wait until the job's files are written; why not, when they cannot be (the job is
    /// then an `error`: the runner failed, not the job).
    async fn wait(&self) -> std::result::Result<(), String> {
        let mut rx = self.progress.clone();
        let need = self.need;
        let got = rx
            .wait_for(|w| match w {
                CheckoutProgress::Done(n) => *n >= need,
                CheckoutProgress::Failed(_) => true,
            })
            .await
            .map(|w| w.clone());
        match got {
            Ok(CheckoutProgress::Done(_)) => Ok(()),
            Ok(CheckoutProgress::Failed(why)) => Err(format!("cannot write its checkout: {why}")),
            Err(_) => Err("its checkout was not written".into()),
        }
    }
}

/// Variables passed on to a job, with their values; shared by the jobs of one pipeline.
pub type Passed = Arc<Vec<(String, String)>>;

/// The part of the runner's environment every job gets: `PATH` (a default when unset),
/// `HOME`, `LANG`, `LC_*`, `TMPDIR`.
pub fn base_env() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            matches!(k.as_str(), "PATH" | "HOME" | "LANG" | "TMPDIR") || k.starts_with("LC_")
        })
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    out.sort();
    out
}

/// Every value to mask: those of the tool's own tokens and of the variables `names`
/// (what pipelines list in `env.secret`), as set in the runner's environment.
pub fn known_secrets<'a>(names: impl IntoIterator<Item = &'a String>) -> Secrets {
    let mut all: Vec<String> = crate::manifest::TOOL_SECRETS
        .iter()
        .map(|s| s.to_string())
        .collect();
    all.extend(names.into_iter().cloned());
    Secrets::new(lookup_env(&all).into_iter().map(|(_, v)| v))
}

/// The named variables of the runner's environment that are set, with their values.
pub fn lookup_env<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<(String, String)> {
    names
        .into_iter()
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v)))
        .collect()
}

pub struct Settings {
    pub parallel: usize,
    pub log_dir: PathBuf,
    pub log_cap: u64,
    pub store: Arc<Store>,
    /// Relative `source.git` paths are resolved against this (the repository root).
    pub root: PathBuf,
    /// What `source.git: .` means: the state repository as other machines reach it.
    pub self_url: String,
    pub runner: Runner,
    /// A directory for this run's scratch space: one slot per parallel job, reused from
    /// job to job (`slot-N/out` is `$STAGEGATE_OUT`, `slot-N/env.json` the env file).
    /// Reusing them, rather than making and deleting a directory per job, keeps a run of
    /// many short jobs from spending its time allocating inodes.
    pub scratch: PathBuf,
    /// The base of every job's environment ([`base_env`]).
    pub base_env: Vec<(String, String)>,
    /// Values masked in logs, excerpts and records.
    pub secrets: Secrets,
    /// Claims on job keys shared by the runs on this machine (`None`: unavailable, every
    /// selected job runs).
    pub claims: Option<Arc<claim::Claims>>,
    /// Whether the ledger gained a result for a key since this run planned: checked once a
    /// claim is taken, so a job another run finished meanwhile is not run twice.
    pub recorded_since_plan: Option<RecordedSince>,
}

/// See [`Settings::recorded_since_plan`].
pub type RecordedSince = Box<dyn Fn(&JobKey) -> bool + Send + Sync>;

/// What happened to a job in this run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub key: JobKey,
    pub label: String,
    /// `None` when the job did not run (interrupted, or a build it needs failed).
    pub verdict: Option<Verdict>,
    pub reason: Option<String>,
    pub duration: Duration,
    pub log: Option<PathBuf>,
    pub record: Option<ResultRecord>,
    /// Another run on this machine has the job (it holds the claim, or recorded it after
    /// this run planned): not run here, and no failure of this run.
    pub elsewhere: bool,
}

/// Progress reports, in the order things happen.
pub enum Event<'a> {
    /// The jobs are chosen and about to start: `total` of them.
    RunStarted { total: usize },
    /// A job started running.
    Started { label: &'a str },
    /// Every so often ([`session::Options::still_running`]) while jobs run: each running
    /// job and how long it has run so far, longest-running first.
    StillRunning { running: &'a [(String, Duration)] },
    /// A job failed and runs again (`attempt` is the try about to start; `reason` why the
    /// last one failed).
    Retrying {
        label: &'a str,
        attempt: u32,
        reason: &'a str,
    },
    /// A job ended, or will not run (its outcome says why).
    Finished { outcome: &'a Outcome },
    /// Every job ended and the results are recorded (not yet published).
    RunFinished { report: &'a session::Report },
}

/// Run every job in `ready` (respecting `after` dependencies), hand each result to `record`
/// as soon as it is known, and report progress. `known` holds build results recorded
/// earlier, for jobs that need an artifact built before this run.
pub async fn execute(
    ready: Vec<Ready>,
    known: HashMap<JobKey, ArtifactRecord>,
    settings: Arc<Settings>,
    record: std::sync::mpsc::Sender<ResultRecord>,
    progress: Arc<dyn Fn(Event) + Send + Sync>,
    cancel: watch::Receiver<bool>,
) -> Vec<Outcome> {
    let sem = Arc::new(Semaphore::new(settings.parallel.max(1)));
    let slots: Arc<Mutex<Vec<SlotState>>> = Arc::new(Mutex::new(
        (0..settings.parallel.max(1))
            .rev()
            .map(|i| SlotState::new(&settings.scratch, i))
            .collect(),
    ));
    // Each job publishes its artifact (or failure) for the jobs that need it.
    let mut publishers: HashMap<JobKey, watch::Sender<Option<Result<ArtifactRecord, String>>>> =
        HashMap::new();
    let mut receivers: HashMap<JobKey, watch::Receiver<Option<Result<ArtifactRecord, String>>>> =
        HashMap::new();
    for r in &ready {
        let (tx, rx) = watch::channel(None);
        publishers.insert(r.job.key.clone(), tx);
        receivers.insert(r.job.key.clone(), rx);
    }
    let known = Arc::new(known);
    let mut handles = Vec::new();
    let mut jobs = Vec::new();
    for r in ready {
        jobs.push(r.job.clone());
        let deps: Vec<(JobKey, Option<watch::Receiver<_>>)> = r
            .job
            .after
            .iter()
            .map(|k| (k.clone(), receivers.get(k).cloned()))
            .collect();
        let publish = publishers
            .remove(&r.job.key)
            .expect("one publisher per job");
        let slots = slots.clone();
        let (sem, settings, record, progress, cancel, known) = (
            sem.clone(),
            settings.clone(),
            record.clone(),
            progress.clone(),
            cancel.clone(),
            known.clone(),
        );
        handles.push(tokio::spawn(async move {
            // Shared with the blocking work done for the job off the runtime.
            let r = Arc::new(r);
            // Wait for the builds this job needs.
            let mut artifacts: BTreeMap<JobKey, ArtifactRecord> = BTreeMap::new();
            for (key, rx) in deps {
                let got = match rx {
                    Some(mut rx) => match rx.wait_for(|v| v.is_some()).await {
                        Ok(v) => v.clone().expect("waited for Some"),
                        Err(_) => Err("the build was not run".to_string()),
                    },
                    None => known.get(&key).cloned().ok_or_else(|| {
                        format!(
                            "build {} has no passing result yet; run it first",
                            key.short()
                        )
                    }),
                };
                match got {
                    Ok(a) => {
                        artifacts.insert(key, a);
                    }
                    Err(why) if why == ELSEWHERE => {
                        // Its build runs in another run, which runs this job after it.
                        let outcome = elsewhere(
                            &r.job,
                            format!("its build {} runs in another run", key.short()),
                        );
                        let _ = publish.send(Some(Err(ELSEWHERE.into())));
                        progress(Event::Finished { outcome: &outcome });
                        return outcome;
                    }
                    Err(why) => {
                        let outcome = not_run(
                            &r.job,
                            format!("skipped: needs build {}: {why}", key.short()),
                        );
                        let _ = publish.send(Some(Err("a build it needs did not succeed".into())));
                        progress(Event::Finished { outcome: &outcome });
                        return outcome;
                    }
                }
            }
            let _permit = sem
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let mut slot = Slot::take(&slots);
            if *cancel.borrow() {
                let outcome = not_run(&r.job, "interrupted before it started".into());
                let _ = publish.send(Some(Err("interrupted".into())));
                return outcome;
            }
            if let Some(why) = claimed_elsewhere(&settings, &r.job.key) {
                let outcome = elsewhere(&r.job, why.into());
                let _ = publish.send(Some(Err(ELSEWHERE.into())));
                progress(Event::Finished { outcome: &outcome });
                return outcome;
            }
            let artifacts = Arc::new(artifacts);
            let label = crate::plan::describe(&r.job);
            progress(Event::Started { label: &label });
            let outcome = run_job(
                &r,
                &artifacts,
                &settings,
                &mut slot,
                cancel,
                &|attempt, reason| {
                    progress(Event::Retrying {
                        label: &label,
                        attempt,
                        reason,
                    })
                },
            )
            .await;
            drop(slot);
            let outcome = keep_log(outcome, &settings).await;
            let artifact = outcome.record.as_ref().and_then(|rec| rec.artifact.clone());
            let _ = publish.send(Some(match (outcome.verdict, artifact) {
                (Some(Verdict::Pass), Some(a)) => Ok(a),
                _ => Err(outcome
                    .reason
                    .clone()
                    .unwrap_or_else(|| "it did not pass".into())),
            }));
            if let Some(rec) = &outcome.record {
                let _ = record.send(rec.clone());
            }
            progress(Event::Finished { outcome: &outcome });
            outcome
        }));
    }
    let mut out = Vec::new();
    for (h, job) in handles.into_iter().zip(jobs) {
        match h.await {
            Ok(o) => out.push(o),
            Err(e) => {
                // A task that crashed is the runner's failure, never the job's: `error`,
                // recorded so the gate knows and the next run tries again.
                let why = if e.is_panic() {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    format!("the runner crashed while running this job ({msg}); report it as a bug")
                } else {
                    "the runner stopped this job before it finished".to_string()
                };
                let outcome = finish(
                    not_run(&job, String::new()),
                    &job,
                    &settings,
                    &crate::records::now_rfc3339(),
                    Verdict::Error,
                    Some(why),
                    None,
                    0,
                    String::new(),
                    None,
                    None,
                    &BTreeMap::new(),
                );
                if let Some(rec) = &outcome.record {
                    let _ = record.send(rec.clone());
                }
                progress(Event::Finished { outcome: &outcome });
                out.push(outcome);
            }
        }
    }
    out
}

/// A scratch slot held by one running job; given back on drop.
struct Slot {
    state: Option<SlotState>,
    pool: Arc<Mutex<Vec<SlotState>>>,
}

/// One slot's scratch space: `out` (`$STAGEGATE_OUT`) and `env.json`, made by the first job
/// that uses the slot and reused by the next ones. The env file stays open and is rewritten
/// in place, so a job costs no new inode and no directory entry here.
struct SlotState {
    out: PathBuf,
    env_file: PathBuf,
    env: Option<std::fs::File>,
}

impl SlotState {
    fn new(scratch: &Path, index: usize) -> SlotState {
        let dir = scratch.join(format!("slot-{index}"));
        SlotState {
            out: dir.join("out"),
            env_file: dir.join("env.json"),
            env: None,
        }
    }

    /// Whether the output directory is there and empty: nothing of the last job's to
    /// remove (one `getdents`).
    fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.out).is_ok_and(|mut d| d.next().is_none())
    }

    /// The slot's state, to be moved to a blocking thread and given back; the slot keeps
    /// its paths meanwhile, so a thread that never gives it back (a panic) costs only the
    /// open env file, which the next job makes again.
    fn lend(&mut self) -> SlotState {
        let stay = SlotState {
            out: self.out.clone(),
            env_file: self.env_file.clone(),
            env: None,
        };
        std::mem::replace(self, stay)
    }

    /// Make `env.json` hold `doc`: rewritten in place in the file the slot holds open,
    /// unless a job removed or replaced it (then a new one is made).
    fn write_env(&mut self, doc: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
        let current = match self.env.take() {
            Some(f) => {
                let m = f.metadata()?;
                let here = std::fs::symlink_metadata(&self.env_file);
                let same = here.is_ok_and(|h| h.ino() == m.ino() && h.dev() == m.dev());
                (m.nlink() > 0 && same).then_some((f, m.len()))
            }
            None => None,
        };
        let (f, len) = match current {
            Some(c) => c,
            None => {
                let _ = std::fs::remove_file(&self.env_file);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&self.env_file)?;
                (f, 0)
            }
        };
        f.write_all_at(doc, 0)?;
        if len != doc.len() as u64 {
            f.set_len(doc.len() as u64)?;
        }
        self.env = Some(f);
        Ok(())
    }
}

impl Slot {
    fn take(pool: &Arc<Mutex<Vec<SlotState>>>) -> Slot {
        let state = pool
            .lock()
            .expect("slot pool")
            .pop()
            .expect("a slot per semaphore permit");
        Slot {
            state: Some(state),
            pool: pool.clone(),
        }
    }
}

impl std::ops::Deref for Slot {
    type Target = SlotState;
    fn deref(&self) -> &SlotState {
        self.state.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Slot {
    fn deref_mut(&mut self) -> &mut SlotState {
        self.state.as_mut().expect("held until dropped")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let (Some(state), Ok(mut p)) = (self.state.take(), self.pool.lock()) {
            p.push(state);
        }
    }
}

/// Make `dir` an existing, empty directory (what a previous job left there goes).
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir),
        Err(e) => Err(e),
    }
}

fn not_run(job: &Job, reason: String) -> Outcome {
    Outcome {
        key: job.key.clone(),
        label: crate::plan::describe(job),
        verdict: None,
        reason: Some(reason),
        duration: Duration::ZERO,
        log: None,
        record: None,
        elsewhere: false,
    }
}

/// What a job's dependents are told when another run has it.
const ELSEWHERE: &str = "another run on this machine has it";

/// A job another run on this machine runs (or has just recorded): not ours to run.
fn elsewhere(job: &Job, reason: String) -> Outcome {
    Outcome {
        elsewhere: true,
        ..not_run(job, reason)
    }
}

/// Why this run must leave `key` alone, if it must: another live run holds its claim, or
/// recorded it after this run planned. `None` (run it) also when claims are unavailable.
fn claimed_elsewhere(settings: &Settings, key: &JobKey) -> Option<&'static str> {
    let claims = settings.claims.as_ref()?;
    match claims.try_claim(key) {
        Ok(false) => Some("another run on this machine is running it"),
        Ok(true)
            if settings
                .recorded_since_plan
                .as_ref()
                .is_some_and(|f| f(key)) =>
        {
            Some("another run on this machine recorded its result meanwhile")
        }
        _ => None,
    }
}

/// A job's variables, name and value.
type Vars = Vec<(String, String)>;

/// Environment variables describing the job, and the JSON for `STAGEGATE_ENV_FILE`.
fn job_env(
    r: &Ready,
    artifacts: &BTreeMap<JobKey, ArtifactRecord>,
    settings: &Settings,
    out: &Path,
    env_file: &Path,
) -> Result<(Vars, Vec<u8>), String> {
    let job = &r.job;
    let mut vars = vec![
        ("STAGEGATE_JOB".to_string(), job.key.to_string()),
        ("STAGEGATE_JOB_NAME".to_string(), job.name.clone()),
        (
            "STAGEGATE_ROLE".to_string(),
            role_name(job.role).to_string(),
        ),
        ("STAGEGATE_COMMIT".to_string(), job.commit.to_string()),
        ("STAGEGATE_OUT".to_string(), out.display().to_string()),
        (
            "STAGEGATE_ENV_FILE".to_string(),
            env_file.display().to_string(),
        ),
    ];
    let mut described = Vec::new();
    for e in &job.env {
        let stem = e.item.env_stem();
        vars.push((format!("{stem}_VERSION"), e.version.clone()));
        vars.push((
            format!("{stem}_CANDIDATE"),
            if e.candidate { "1" } else { "0" }.into(),
        ));
        let mut artifact_path = None;
        let mut digest = e.digest.clone();
        let mut location = e.location.clone();
        if let Some(k) = &e.build_job {
            let a = artifacts
                .get(k)
                .ok_or_else(|| format!("the artifact of {} was not built", e.item))?;
            digest = Some(a.digest.clone());
            location = Some(a.location.clone());
        }
        if let Some(d) = &digest {
            let path = settings
                .store
                .get(d, location.as_deref())
                .map_err(|why| format!("{}: {why}", e.item))?;
            vars.push((format!("{stem}_ARTIFACT"), path.display().to_string()));
            vars.push((format!("{stem}_DIGEST"), d.to_string()));
            artifact_path = Some(path.display().to_string());
        }
        let git = e
            .git
            .as_ref()
            .map(|g| crate::manifest::resolve_git(g, &settings.root, &settings.self_url));
        if let Some(g) = &git {
            vars.push((format!("{stem}_GIT"), g.clone()));
        }
        if let Some(c) = &e.commit {
            vars.push((format!("{stem}_COMMIT"), c.clone()));
        }
        if job.kind == JobKind::Build && job.candidates.first() == Some(&e.item) {
            vars.push(("STAGEGATE_ITEM".into(), e.item.to_string()));
            vars.push(("STAGEGATE_VERSION".into(), e.version.clone()));
        }
        described.push(EnvItem {
            artifact: artifact_path,
            candidate: e.candidate,
            commit: e.commit.as_deref(),
            digest,
            git,
            item: e.item.to_string(),
            version: &e.version,
        });
    }
    // A build's last-known-good cache, fetched (and verified) like an artifact: a store
    // that lost it is the runner's problem, not the recipe's.
    let mut cache = None;
    if let Some(c) = &job.cache_from {
        let path = settings
            .store
            .get(&c.digest, Some(&c.location))
            .map_err(|why| format!("the cache of {} {}: {why}", job.name, c.version))?;
        vars.push(("STAGEGATE_CACHE".into(), path.display().to_string()));
        vars.push(("STAGEGATE_CACHE_DIGEST".into(), c.digest.to_string()));
        vars.push(("STAGEGATE_CACHE_VERSION".into(), c.version.clone()));
        cache = Some(EnvCache {
            digest: &c.digest,
            path: path.display().to_string(),
            version: &c.version,
        });
    }
    let doc = EnvDoc {
        cache,
        commit: job.commit.to_string(),
        items: described,
        job: &job.key,
        name: &job.name,
        role: role_name(job.role),
    };
    Ok((vars, serde_json::to_vec_pretty(&doc).expect("json")))
}

/// `env.json` (`STAGEGATE_ENV_FILE`), its fields in name order.
#[derive(serde::Serialize)]
struct EnvDoc<'a> {
    cache: Option<EnvCache<'a>>,
    commit: String,
    items: Vec<EnvItem<'a>>,
    job: &'a JobKey,
    name: &'a str,
    role: &'static str,
}

#[derive(serde::Serialize)]
struct EnvItem<'a> {
    artifact: Option<String>,
    candidate: bool,
    commit: Option<&'a str>,
    digest: Option<Digest>,
    git: Option<String>,
    item: String,
    version: &'a str,
}

#[derive(serde::Serialize)]
struct EnvCache<'a> {
    digest: &'a Digest,
    path: String,
    version: &'a str,
}

/// Everything a job needs before it starts: its checkout, an empty output directory and
/// its environment. Any failure here is the runner's, said with what to fix. (Its log is
/// written later, and only when there is something to keep: see [`process::JobLog`].)
/// Whether preparing `job` reads nothing from the store: no artifact in its environment
/// and no last-known-good cache ([`job_env`] verifies or fetches each of those in full).
fn reads_no_artifact(job: &Job) -> bool {
    job.cache_from.is_none()
        && job
            .env
            .iter()
            .all(|e| e.build_job.is_none() && e.digest.is_none())
}

fn prepare(
    r: &Ready,
    artifacts: &BTreeMap<JobKey, ArtifactRecord>,
    settings: &Settings,
    slot: &mut SlotState,
) -> Result<(Vars, PathBuf), String> {
    let cwd = r.cwd.clone()?;
    empty_dir(&slot.out).map_err(|e| {
        format!(
            "cannot prepare the output directory {}: {e}",
            slot.out.display()
        )
    })?;
    let (vars, doc) = job_env(r, artifacts, settings, &slot.out, &slot.env_file)?;
    slot.write_env(&doc)
        .map_err(|e| format!("writing {}: {e}", slot.env_file.display()))?;
    let mut env = Vec::with_capacity(settings.base_env.len() + r.pass.len() + vars.len());
    env.extend(settings.base_env.iter().cloned());
    env.extend(r.pass.iter().cloned());
    env.extend(vars);
    Ok((env, cwd))
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Build => "build",
        Role::Candidate => "candidate",
        Role::Combination => "combination",
        Role::TestChange => "test-change",
        Role::Baseline => "baseline",
        Role::Bisect => "bisect",
    }
}

async fn run_job(
    r: &Arc<Ready>,
    artifacts: &Arc<BTreeMap<JobKey, ArtifactRecord>>,
    settings: &Arc<Settings>,
    slot: &mut SlotState,
    cancel: watch::Receiver<bool>,
    retrying: &(dyn Fn(u32, &str) + Send + Sync),
) -> Outcome {
    let job = &r.job;
    let started = crate::records::now_rfc3339();
    let base = Outcome {
        reason: None,
        ..not_run(job, String::new())
    };
    let mut log = process::JobLog::new(process::log_path(&settings.log_dir, &job.key));
    // A job that cannot even be prepared is an `error`: it could not run.
    let files = match &r.files {
        Some(f) => f.wait().await,
        None => Ok(()),
    };
    let prepared = match files {
        // A job that uses no stored artifact, in a slot the last job left empty: preparing
        // it writes one small file, here. A hand-off to the blocking pool and back for each
        // of a thousand short jobs cost a run of them a tenth of its time.
        Ok(()) if reads_no_artifact(&r.job) && slot.is_empty() => {
            prepare(r, artifacts, settings, slot)
        }
        Ok(()) => {
            // Off the runtime: emptying what the last job left in the slot, and verifying
            // (or fetching) the artifacts the job uses, read them in full.
            let (r, artifacts, settings) = (r.clone(), artifacts.clone(), settings.clone());
            let mut lent = slot.lend();
            let done = off_runtime("preparing the job", move || {
                let prepared = prepare(&r, &artifacts, &settings, &mut lent);
                (lent, prepared)
            })
            .await;
            done.and_then(|(lent, prepared)| {
                *slot = lent;
                prepared
            })
        }
        Err(why) => Err(why),
    };
    let out = &slot.out;
    let (vars, cwd) = match prepared {
        Ok(v) => v,
        Err(why) => {
            return finish(
                base,
                job,
                settings,
                &started,
                Verdict::Error,
                Some(why),
                None,
                0,
                String::new(),
                None,
                None,
                artifacts,
            );
        }
    };
    let mut tries = 0u32;
    let mut failed_before = false;
    let mut total = Duration::ZERO;
    loop {
        tries += 1;
        let spec = Spec {
            run: &job.run,
            cwd: &cwd,
            env: &vars,
            secrets: &settings.secrets,
            timeout: job.timeout,
            log_cap: settings.log_cap,
        };
        let f = process::run(spec, log, cancel.clone()).await;
        log = f.log;
        total += f.duration;
        let exit = match &f.ended {
            Ended::Exited(c) => Exit {
                code: Some(*c),
                signal: None,
            },
            Ended::Signaled(s) => Exit {
                code: None,
                signal: Some(*s),
            },
            _ => Exit {
                code: None,
                signal: None,
            },
        };
        let (verdict, reason) = match &f.ended {
            Ended::Cancelled => {
                // Not a result: the log is kept only when it says something.
                let log = if log.needs_file() {
                    off_runtime("writing the job's log", move || log.keep().ok())
                        .await
                        .ok()
                        .flatten()
                } else {
                    None
                };
                return Outcome {
                    reason: Some("interrupted".into()),
                    duration: total,
                    log,
                    ..base
                };
            }
            Ended::Exited(0) => (
                if failed_before {
                    Verdict::Flaky
                } else {
                    Verdict::Pass
                },
                None,
            ),
            Ended::Exited(c @ (126 | 127)) => (
                Verdict::Error,
                Some(format!(
                    "the command could not be run (exit {c}: {})",
                    if *c == 127 {
                        "command or interpreter not found"
                    } else {
                        "not executable"
                    }
                )),
            ),
            Ended::Exited(process::COULD_NOT_TEST) => (
                Verdict::Error,
                Some(format!(
                    "the job declared it could not test (exit {}): not a verdict on the candidate; its log says why — fix that on this runner, then run again",
                    process::COULD_NOT_TEST
                )),
            ),
            Ended::Exited(c) => (Verdict::Fail, Some(format!("exit status {c}"))),
            Ended::Signaled(s) => (Verdict::Fail, Some(format!("killed by signal {s}"))),
            Ended::TimedOut => (
                Verdict::Error,
                Some(format!(
                    "timed out after {}; its process group was killed",
                    humantime::format_duration(job.timeout)
                )),
            ),
            Ended::SpawnFailed(why) => (Verdict::Error, Some(why.clone())),
        };
        if verdict == Verdict::Fail && tries <= job.retries {
            failed_before = true;
            let why = reason.as_deref().unwrap_or("fail");
            log.note(&format!("try {tries} failed ({why}); trying again"));
            retrying(tries + 1, why);
            // Each try starts from an empty output directory: what a failed try left
            // there must not pass for the next try's output. (Off the runtime: removing a
            // large file or tree takes a while.)
            let dir = out.clone();
            let _ = off_runtime("emptying the output directory", move || empty_dir(&dir)).await;
            continue;
        }
        let reason = match (verdict, &reason) {
            (Verdict::Flaky, _) => Some(format!("failed, then passed on try {tries}")),
            _ => reason,
        };
        // A build that passed must have produced what it declares.
        let (verdict, reason, artifact) =
            if job.kind == JobKind::Build && matches!(verdict, Verdict::Pass | Verdict::Flaky) {
                let (r, dir, settings) = (r.clone(), out.clone(), settings.clone());
                let stored = off_runtime("storing the build", move || {
                    store_build(&r.job, &dir, &settings)
                })
                .await
                .unwrap_or_else(|why| Err(Unstored::Store(why)));
                match stored {
                    Ok(a) => (verdict, reason, Some(a)),
                    Err(Unstored::Missing(why)) => (Verdict::Fail, Some(why), None),
                    // The store, not the job, failed (§4.13): the next run retries.
                    Err(Unstored::Store(why)) => (Verdict::Error, Some(why), None),
                }
            } else {
                (verdict, reason, None)
            };
        // A log file only when the record's excerpt does not already say it all.
        let (verdict, reason, log) = if verdict != Verdict::Pass || log.needs_file() {
            match off_runtime("writing the job's log", move || log.keep()).await {
                Ok(Ok(path)) => (verdict, reason, Some(path)),
                // The result would point at nothing (§4.13): the next run retries.
                Ok(Err((path, e))) => (
                    Verdict::Error,
                    Some(format!(
                        "cannot write the job's log {}: {e}; make {} writable (and check free space), then run again",
                        path.display(),
                        settings.log_dir.display()
                    )),
                    None,
                ),
                Err(why) => (Verdict::Error, Some(why), None),
            }
        } else {
            (verdict, reason, None)
        };
        return finish(
            base,
            job,
            settings,
            &started,
            verdict,
            reason,
            Some(exit),
            tries,
            f.excerpt,
            log,
            artifact,
            artifacts,
        )
        .with_duration(total);
    }
}

/// Put the job's full log in a shared store, and point its record there, so any runner
/// or reviewer can read it (`stagegate log-of KEY`). A log the store refused is an
/// `error`: the job's result would point at nothing.
async fn keep_log(mut outcome: Outcome, settings: &Arc<Settings>) -> Outcome {
    if !settings.store.is_shared() {
        return outcome;
    }
    let (Some(log), Some(record)) = (&outcome.log, &mut outcome.record) else {
        return outcome;
    };
    let annotations = std::collections::BTreeMap::from([
        (format!("{ANNOTATION}.job"), record.key.to_string()),
        (format!("{ANNOTATION}.name"), record.name.clone()),
    ]);
    // A push to a registry: network time, off the runtime.
    let (store, log) = (settings.store.clone(), log.clone());
    let stored = off_runtime("storing its log", move || {
        store
            .put(&log, Kind::Log, annotations)
            .map_err(|e| e.to_string())
    })
    .await
    .and_then(|r| r);
    match stored {
        Ok(stored) => record.log = Some(stored.location),
        Err(e) => {
            let why = format!(
                "the log could not be stored in {}: {e}",
                settings.store.describe()
            );
            record.verdict = Verdict::Error;
            record.reason = Some(why.clone());
            outcome.verdict = Some(Verdict::Error);
            outcome.reason = Some(why);
        }
    }
    outcome
}

/// Run `f`, blocking file or network work (hashing and copying an artifact, a registry
/// push or pull, writing a log, emptying an output directory), on tokio's blocking pool.
/// The job runtime is one thread that also reads every running job's output and fires
/// every timeout: a build storing a 1 GiB artifact there would stall them all (DESIGN §7).
///
/// A panic in `f` stays a panic of the job's task, which [`execute`] records as an
/// `error`; `Err` (saying what was being done) only when the runtime is shutting down.
async fn off_runtime<T: Send + 'static>(
    doing: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(format!("the runner stopped while {doing}")),
    }
}

/// Largest lock file recorded in the ledger.
const MAX_LOCK_BYTES: u64 = 1024 * 1024;

/// Why a passed build has no stored artifact: its own fault, or the store's.
enum Unstored {
    Missing(String),
    Store(String),
}

fn store_build(job: &Job, out: &Path, settings: &Settings) -> Result<ArtifactRecord, Unstored> {
    let name = job.artifact.as_deref().unwrap_or_default();
    let path = out.join(name);
    if !path.is_file() {
        return Err(Unstored::Missing(format!(
            "the build passed but did not write its artifact: $STAGEGATE_OUT/{name} is missing (build.artifact in {})",
            job.name
        )));
    }
    let lock = match &job.lock {
        None => None,
        Some(l) => {
            let lp = out.join(l);
            let meta = std::fs::metadata(&lp).map_err(|_| Unstored::Missing(format!("the build passed but did not write its lock file: $STAGEGATE_OUT/{l} is missing (build.lock in {})", job.name)))?;
            if meta.len() > MAX_LOCK_BYTES {
                return Err(Unstored::Missing(format!(
                    "the lock file $STAGEGATE_OUT/{l} is {} bytes; at most {MAX_LOCK_BYTES} are recorded",
                    meta.len()
                )));
            }
            Some(
                std::fs::read_to_string(&lp)
                    .map_err(|e| Unstored::Missing(format!("reading $STAGEGATE_OUT/{l}: {e}")))?,
            )
        }
    };
    let mut annotations = std::collections::BTreeMap::from([
        (format!("{ANNOTATION}.item"), job.name.clone()),
        (format!("{ANNOTATION}.build-job"), job.key.to_string()),
    ]);
    if let Some(e) = job
        .env
        .iter()
        .find(|e| job.candidates.first() == Some(&e.item))
    {
        annotations.insert(format!("{ANNOTATION}.version"), e.version.clone());
    }
    if let Some(l) = &lock {
        annotations.insert(format!("{ANNOTATION}.lock"), l.clone());
    }
    let cache = match &job.cache {
        None => None,
        Some(c) => {
            let cp = out.join(c);
            if !cp.is_file() {
                return Err(Unstored::Missing(format!(
                    "the build passed but did not write its cache: $STAGEGATE_OUT/{c} is missing (build.cache in {})",
                    job.name
                )));
            }
            let mut notes = annotations.clone();
            notes.remove(&format!("{ANNOTATION}.lock"));
            notes.insert(format!("{ANNOTATION}.cache-of"), job.name.clone());
            let stored = settings
                .store
                .put_moving(&cp, Kind::Artifact, notes)
                .map_err(|e| unstored("cache", e))?;
            Some(crate::records::CacheRecord {
                digest: stored.digest,
                size: stored.size,
                location: stored.location,
            })
        }
    };
    let stored = settings
        .store
        .put_moving(&path, Kind::Artifact, annotations)
        .map_err(|e| unstored("artifact", e))?;
    Ok(ArtifactRecord {
        digest: stored.digest,
        size: stored.size,
        location: stored.location,
        lock,
        cache,
    })
}

fn unstored(what: &str, e: crate::error::Error) -> Unstored {
    Unstored::Store(format!(
        "the build passed, but storing its {what} failed: {e}; fix the artifact store (space, permissions, network), then run again"
    ))
}

impl Outcome {
    /// The verdict for people: `not run` when there is none, `elsewhere` when another run
    /// has the job.
    pub fn shown(&self) -> String {
        match (self.verdict, self.elsewhere) {
            (Some(v), _) => v.to_string(),
            (None, true) => "elsewhere".into(),
            (None, false) => "not run".into(),
        }
    }

    fn with_duration(mut self, d: Duration) -> Outcome {
        self.duration = d;
        if let Some(r) = &mut self.record {
            r.duration_ms = d.as_millis() as u64;
        }
        self
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    base: Outcome,
    job: &Job,
    settings: &Settings,
    started: &str,
    verdict: Verdict,
    reason: Option<String>,
    exit: Option<Exit>,
    tries: u32,
    excerpt: String,
    log: Option<PathBuf>,
    artifact: Option<ArtifactRecord>,
    artifacts: &BTreeMap<JobKey, ArtifactRecord>,
) -> Outcome {
    let reason = reason.map(|r| settings.secrets.mask_str(&r));
    let record = ResultRecord {
        key: job.key.clone(),
        kind: match job.kind {
            JobKind::Build => "build".into(),
            JobKind::Test => "test".into(),
        },
        name: job.name.clone(),
        role: role_name(job.role).into(),
        candidates: job.candidates.iter().map(|c| c.to_string()).collect(),
        verdict,
        reason: reason.clone(),
        exit: exit.unwrap_or(Exit {
            code: None,
            signal: None,
        }),
        tries,
        started: started.to_string(),
        finished: crate::records::now_rfc3339(),
        duration_ms: 0,
        runner: settings.runner.clone(),
        commit: job.commit.to_string(),
        env: job
            .env
            .iter()
            .map(|e| EnvRecord {
                item: e.item.to_string(),
                version: e.version.clone(),
                candidate: e.candidate,
                // An image built for this job has no digest in the plan: record the one
                // the job actually ran with.
                digest: e
                    .build_job
                    .as_ref()
                    .and_then(|k| artifacts.get(k))
                    .map(|a| a.digest.clone())
                    .or_else(|| e.digest.clone()),
            })
            .collect(),
        artifact,
        log: log.as_ref().map(|l| l.display().to_string()),
        excerpt,
        attempt: 0,
    };
    Outcome {
        verdict: Some(verdict),
        reason,
        log,
        record: Some(record),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trivial_job() -> Job {
        Job {
            key: "ab".repeat(32).into(),
            kind: JobKind::Test,
            name: "t".into(),
            role: Role::Candidate,
            candidates: Vec::new(),
            commit: gix::ObjectId::null(gix::hash::Kind::Sha1),
            run: "true".into(),
            timeout: Duration::from_secs(10),
            retries: 0,
            env: Vec::new(),
            artifact: None,
            lock: None,
            cache: None,
            cache_from: None,
            after: Vec::new(),
            baseline: None,
            needs: Vec::new(),
        }
    }

    /// Only a job whose preparation reads nothing from the store is prepared on the job
    /// runtime: an artifact in its environment or a build's cache is verified or fetched
    /// in full, off it.
    #[test]
    fn a_job_reads_no_artifact_only_without_one_in_its_environment_or_a_cache() {
        assert!(reads_no_artifact(&trivial_job()));
        let mut cached = trivial_job();
        cached.cache_from = Some(crate::plan::CacheFrom {
            version: "1".into(),
            digest: format!("sha256:{}", "cd".repeat(32)).into(),
            location: String::new(),
        });
        assert!(!reads_no_artifact(&cached));
    }

    /// A task that panics mid-job (here: in the progress callback) is recorded as `error`.
    #[test]
    fn a_job_whose_task_panics_is_recorded_as_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let job = trivial_job();
        let settings = Arc::new(Settings {
            parallel: 1,
            log_dir: tmp.path().join("logs"),
            log_cap: 1 << 20,
            store: Arc::new(Store::open(None, tmp.path(), tmp.path()).unwrap()),
            root: tmp.path().to_path_buf(),
            self_url: String::new(),
            runner: identity(),
            scratch: tmp.path().join("scratch"),
            base_env: base_env(),
            secrets: Secrets::default(),
            claims: None,
            recorded_since_plan: None,
        });
        let ready = vec![Ready {
            job,
            cwd: Ok(tmp.path().to_path_buf()),
            files: None,
            pass: Arc::new(Vec::new()),
        }];
        let (tx, rx) = std::sync::mpsc::channel();
        let progress: Arc<dyn Fn(Event) + Send + Sync> = Arc::new(|e| {
            if let Event::Started { .. } = e {
                panic!("injected");
            }
        });
        let (_cancel_tx, cancel) = watch::channel(false);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let outcomes = rt.block_on(execute(
            ready,
            HashMap::new(),
            settings,
            tx,
            progress,
            cancel,
        ));
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].verdict, Some(Verdict::Error));
        let recorded: Vec<ResultRecord> = rx.try_iter().collect();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].verdict, Verdict::Error);
        let reason = recorded[0].reason.as_deref().unwrap();
        assert!(
            reason.contains("crashed") && reason.contains("injected"),
            "{reason}"
        );
    }
}
