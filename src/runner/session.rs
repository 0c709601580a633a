//! A run: choose the planned jobs that need running, check out their commits, run them,
//! record every result in the ledger, and publish it. What `stagegate run` and `cycle` do
//! between planning and printing, as a library call with an [`Options`] value.
//!
//! It never prints: progress goes to the caller's [`Sink`] as [`Event`]s, warnings to
//! [`crate::error::warn`], and what happened comes back as a [`Report`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gix::ObjectId;

use super::mask::Secrets;
use super::{Event, Outcome, Passed, Ready, Settings};
use crate::artifact::Store;
use crate::error::{Error, Result};
use crate::keys::JobKey;
use crate::ledger::recorder::Recorder;
use crate::ledger::{ArtifactRecord, Ledger, LedgerView, Verdict};
use crate::plan::{Job, MovePlan, Planner, describe};
use crate::repo::{Checkout, sparse};

/// Which of the planned jobs to run, and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How many jobs run at once (`None`: the number of cores).
    pub parallel: Option<usize>,
    /// Only the jobs whose key starts with one of these (empty: every job).
    pub jobs: Vec<String>,
    /// Only shard I of N (1-based): a deterministic split by key.
    pub shard: Option<(u64, u64)>,
    /// Choose the jobs, run nothing ([`Report::would_run`]).
    pub dry_run: bool,
    /// Run these jobs again (key prefixes) even if they have a result.
    pub rerun: Vec<String>,
    /// Run again every job whose latest result is fail or error.
    pub failed: bool,
    /// How often to report the jobs still running ([`Event::StillRunning`]); `None`: never.
    pub still_running: Option<Duration>,
    /// Keep the results for another job to record (`run --export`): the local ledger gets
    /// them, nothing is published, and no signing key is needed (a job that runs candidate
    /// code holds none).
    pub export: bool,
    /// What this runner offers: only jobs whose `needs` it meets are taken, the others are
    /// left for other runners ([`Report::left`]). `None`: every job (bisect, recheck).
    pub offers: Option<super::offers::Offers>,
}

/// A job this run left for a runner that meets its needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Left {
    pub key: JobKey,
    pub job: String,
    /// The candidates it tests or builds: whose `why` says who can run it.
    pub items: Vec<String>,
    /// The labels it needs that this runner does not offer, or holds back as unhealthy
    /// (empty when it waits for a build that was left).
    pub needs: Vec<String>,
    /// For people: why it was left.
    pub why: String,
}

/// An errored job a run left for later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deferred {
    pub key: JobKey,
    pub job: String,
    /// The candidates it tests or builds: what a recheck names.
    pub items: Vec<String>,
}

/// The candidates `job` tests or builds, as people name them.
fn items_of(job: &Job) -> Vec<String> {
    job.candidates.iter().map(ToString::to_string).collect()
}

/// What the gate of one move asks a run to do: the move's runnable plan (the jobs it still
/// needs, with the environment policy of its target) and the keys to try again although
/// they have a settled result. The judgement (`crate::judge`) makes it; the runner only runs.
#[derive(Debug, Clone)]
pub struct Work {
    pub plan: MovePlan,
    pub retries: BTreeSet<JobKey>,
    /// Errored jobs not to run now (their backoff has not passed, or their error budget is
    /// spent), unless a person names them (`--job`, `--rerun`, `--failed`).
    pub deferred: BTreeSet<JobKey>,
}

/// Where a run's [`Event`]s go; called from the runner's threads as things happen.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// One per job this run chose, in the order they were chosen.
    pub outcomes: Vec<Outcome>,
    /// How many results were committed to the ledger.
    pub recorded: usize,
    /// A signal (SIGINT, SIGTERM) stopped the run; running jobs were killed.
    pub interrupted: bool,
    /// Jobs that already had a settled result.
    pub reused: usize,
    /// Errored jobs left for later: their backoff has not passed, or they wait for a
    /// recheck.
    pub deferred: Vec<Deferred>,
    /// The keys whose failure in this run rejects a candidate, as the gate judged after the
    /// run (filled by the caller that judges: [`crate::cycle::run`]). A failure that blocks
    /// nothing (like its baseline, quarantined, waived, a heisenbug the gate waits on or
    /// allows) is not among them.
    pub rejecting: BTreeSet<JobKey>,
    /// This was a dry run ([`Options::dry_run`]): nothing ran.
    pub dry_run: bool,
    /// With [`Options::dry_run`]: the jobs that would run (key, job).
    pub would_run: Vec<(JobKey, String)>,
    /// Jobs without a settled result this runner cannot serve (their `needs`), left for
    /// another: nothing is recorded for them.
    pub left: Vec<Left>,
}

impl Report {
    /// The exit status the run asks for (the README's exit codes): 130 interrupted, 3 a
    /// job of this run ended in `error`, 1 a job of this run failed and that rejects a
    /// candidate ([`Report::rejecting`]), or a job could not start, else 0.
    pub fn code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self
            .outcomes
            .iter()
            .any(|o| o.verdict == Some(Verdict::Error))
        {
            3
        } else if self.outcomes.iter().any(|o| {
            // A job that could not start (a build it needs failed or has no result yet)
            // is not a success: `run --job KEY` must not go green having run nothing.
            let rejects = o.verdict == Some(Verdict::Fail) && self.rejecting.contains(&o.key);
            (o.verdict.is_none() || rejects) && !o.elsewhere
        }) {
            1
        } else {
            0
        }
    }
}

/// Whether `key` falls in shard `i` of `n`.
fn in_shard(key: &JobKey, (i, n): (u64, u64)) -> bool {
    // A number from the key's first 64 bits: a split, not a short form.
    let x = u64::from_str_radix(&key.as_str()[..16], 16).unwrap_or(0);
    x % n == i - 1
}

fn matches(key: &JobKey, patterns: &[String]) -> bool {
    patterns.iter().any(|p| !p.is_empty() && key.starts_with(p))
}

/// The jobs chosen to run, and what the run needs to know about them.
struct Selection {
    jobs: Vec<Job>,
    reused: usize,
    /// How many attempts each selected job had when planned: more later means another
    /// run recorded it meanwhile.
    planned_attempts: HashMap<JobKey, u32>,
    /// The ledger's tip when the attempts above were counted.
    planned_tip: Option<ObjectId>,
    /// Errored jobs left for later.
    deferred: Vec<Deferred>,
    /// Builds this run does not include, but whose artifacts selected jobs need.
    known: HashMap<JobKey, ArtifactRecord>,
    /// Jobs left for a runner that meets their needs.
    left: Vec<Left>,
}

/// Select the jobs of `work` that need running, run them, record the results, and
/// publish the ledger when the repository publishes. Interrupting signals (SIGINT,
/// SIGTERM) are taken over while jobs run: they kill the jobs and end the run early.
///
/// The sink hears [`Event::RunStarted`] when jobs are about to run, the jobs' events, and
/// [`Event::RunFinished`] once the results are recorded, or at once when there is nothing
/// to run (or a dry run).
pub fn run(
    planner: &Planner,
    work: &[Work],
    view: &LedgerView,
    opts: &Options,
    sink: Sink,
) -> Result<Report> {
    let selection = select(work, view, opts)?;
    let plans: Vec<&MovePlan> = work.iter().map(|w| &w.plan).collect();
    run_selection(planner, &plans, selection, opts, sink)
}

/// Run exactly `jobs`, each once, whatever the ledger already holds for them, with the
/// environment policy of the moves in `plans` (which must hold the jobs): what `bisect`
/// runs to reproduce a result. Only [`Options::parallel`] counts.
pub fn run_jobs(
    planner: &Planner,
    plans: &[&MovePlan],
    jobs: Vec<Job>,
    opts: &Options,
    sink: Sink,
) -> Result<Report> {
    let view = Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
    let mut planned_attempts = HashMap::new();
    for j in &jobs {
        planned_attempts.insert(j.key.clone(), view.attempt_count(&j.key)?);
    }
    let known = known_builds(&view, &jobs)?;
    let selection = Selection {
        jobs,
        reused: 0,
        planned_attempts,
        planned_tip: view.tip,
        known,
        deferred: Vec::new(),
        left: Vec::new(),
    };
    let opts = Options {
        parallel: opts.parallel,
        ..Options::default()
    };
    run_selection(planner, plans, selection, &opts, sink)
}

fn run_selection(
    planner: &Planner,
    plans: &[&MovePlan],
    selection: Selection,
    opts: &Options,
    sink: Sink,
) -> Result<Report> {
    let reused = selection.reused;
    let deferred = selection.deferred.clone();
    let left = selection.left.clone();
    if opts.dry_run || selection.jobs.is_empty() {
        let report = Report {
            outcomes: Vec::new(),
            recorded: 0,
            interrupted: false,
            reused,
            deferred,
            rejecting: BTreeSet::new(),
            dry_run: opts.dry_run,
            would_run: if opts.dry_run {
                selection
                    .jobs
                    .iter()
                    .map(|j| (j.key.clone(), describe(j)))
                    .collect()
            } else {
                Vec::new()
            },
            left,
        };
        sink(Event::RunFinished { report: &report });
        return Ok(report);
    }
    let repo = planner.repo;
    let Selection {
        jobs,
        planned_attempts,
        planned_tip,
        known,
        ..
    } = selection;

    // One checkout per commit, shared by its jobs, holding the files they name (what
    // their keys cover), not every file of the commit. A tree the runner refuses to write
    // (an entry that escapes it, a name twice) makes its jobs an `error` naming the path.
    // The files are written on a thread of their own, in the order the jobs start, each
    // job waiting only for its own: the first job does not wait for the last one's files.
    let mut per_commit: BTreeMap<ObjectId, Vec<(usize, Vec<String>)>> = BTreeMap::new();
    for (n, j) in jobs.iter().enumerate() {
        per_commit
            .entry(j.commit)
            .or_default()
            .push((n, planner.job_files(j)?));
    }
    let mut checkouts: HashMap<ObjectId, std::result::Result<Checkout, String>> = HashMap::new();
    // What each job needs written, by its position in `jobs`.
    let mut job_writes: Vec<Vec<sparse::Write>> = vec![Vec::new(); jobs.len()];
    for (commit, files) in per_commit {
        let tree = repo.tree_of(commit)?;
        // A checkout kept from an earlier run when there is one (repo::pool): its files
        // that are right already are not written again.
        let mut checkout = Checkout::kept(tree)?;
        let mut plan = sparse::Plan::new(repo, tree, &checkout.path());
        let planned: Result<Vec<(usize, Vec<sparse::Write>)>> = files
            .into_iter()
            .map(|(n, paths)| Ok((n, plan.add(&paths)?)))
            .collect();
        match planned {
            Ok(planned) => {
                checkout.keep_only(
                    planned
                        .iter()
                        .flat_map(|(_, w)| w.iter().map(|w| w.path().to_path_buf()))
                        .collect(),
                )?;
                for (n, w) in planned {
                    job_writes[n] = w;
                }
                checkouts.insert(commit, Ok(checkout));
            }
            Err(err @ Error::UnsafeTree { .. }) => {
                checkouts.insert(
                    commit,
                    Err(format!("cannot check out commit {commit}: {err}")),
                );
            }
            Err(err) => return Err(err),
        }
    }
    let (writer, pending) = write_checkouts(repo, job_writes);
    let checkouts = Checkouts {
        writer: Some(writer),
        dirs: checkouts,
    };
    // What each job may see of our environment: the `env:` of the pipeline that judges it
    // (the target stage's), and the values to mask: ours and every secret it names.
    let (passes, secrets) = job_env_policy(planner, plans)?;
    let fallback = Arc::new(Vec::new());
    let ready: Vec<Ready> = jobs
        .into_iter()
        .zip(pending)
        .map(|(job, files)| Ready {
            cwd: checkouts.dirs[&job.commit]
                .as_ref()
                .map(|c| c.path())
                .map_err(Clone::clone),
            files,
            pass: passes
                .get(&job.key)
                .cloned()
                .unwrap_or_else(|| fallback.clone()),
            job,
        })
        .collect();
    let total = ready.len();

    let git_dir = repo.git_dir().to_path_buf();
    let store = Store::open(
        planner.pipeline.artifact_store.as_deref(),
        repo.root_dir(),
        &git_dir,
    )?;
    let scratch = tempfile::Builder::new()
        .prefix("stagegate-run-")
        .tempdir()
        .map_err(|e| Error::infra(format!("cannot create a temporary directory: {e}")))?;
    // Held until the results are committed: a run that claims a job after us must find
    // its result in the ledger.
    let claims = open_claims(&git_dir);
    let recorder = Recorder::start(repo, planner.pipeline.results_ref.clone());
    let settings = Arc::new(Settings {
        parallel: opts.parallel.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }),
        log_dir: git_dir.join("stagegate/logs"),
        log_cap: std::env::var("STAGEGATE_LOG_CAP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(8 * 1024 * 1024),
        store: Arc::new(store),
        root: repo.root_dir().to_path_buf(),
        self_url: repo.self_url(),
        runner: {
            let mut me = super::identity();
            me.labels = opts
                .offers
                .as_ref()
                .map(|o| o.serving())
                .unwrap_or_default();
            me
        },
        scratch: scratch.path().to_path_buf(),
        base_env: super::base_env(),
        secrets,
        claims: claims.clone(),
        recorded_since_plan: Some(recorded_since(
            repo,
            planner.pipeline.results_ref.clone(),
            (planned_tip, planned_attempts),
            recorder.commits.clone(),
        )),
    });
    sink(Event::RunStarted { total });
    let (sink, ticker) = still_running(sink, opts.still_running);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::infra(format!("cannot start the job runtime: {e}")))?;
    let (outcomes, interrupted) = rt.block_on(async {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        // Take over SIGINT and SIGTERM before any job starts: a signal that found the
        // default action would kill us and leave the jobs' process groups running.
        use tokio::signal::unix::{SignalKind, signal};
        let (int, term) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        let signals = tokio::spawn(async move {
            let (Ok(mut int), Ok(mut term)) = (int, term) else {
                return false;
            };
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            let _ = cancel_tx.send(true);
            true
        });
        let outcomes = super::execute(
            ready,
            known,
            settings,
            recorder.sender.clone(),
            sink.clone(),
            cancel_rx.clone(),
        )
        .await;
        let interrupted = *cancel_rx.borrow();
        signals.abort();
        (outcomes, interrupted)
    });
    drop(ticker);
    let recorded = recorder.finish()?;
    drop(claims);
    // Every job has ended: the checkouts go on a thread while the ledger is tidied and
    // published (removing a thousand files takes a while on some file systems).
    let removing = std::thread::spawn(move || drop(checkouts));
    if recorded > 0 && crate::repo::pack::gc_due(repo) {
        // This run's packs are folded into one; let git fold the runs' packs (and any
        // loose objects) together once there are enough to matter.
        if let Err(e) = crate::repo::remote::git(
            &git_dir,
            &["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
        ) {
            crate::error::warn(format!(
                "git gc --auto failed ({e}); the results are recorded"
            ));
        }
    }
    let _ = removing.join();
    let report = Report {
        outcomes,
        recorded,
        interrupted,
        reused,
        deferred,
        rejecting: BTreeSet::new(),
        dry_run: false,
        would_run: Vec::new(),
        left,
    };
    sink(Event::RunFinished { report: &report });
    if !opts.export {
        crate::ledger::sync::publish(repo, &planner.pipeline.results_ref)?;
    }
    Ok(report)
}

/// The jobs of `work` (what the gates still need: never those of a candidate whose
/// rejection stands, and the combination of the candidates that pass alone), after the
/// options' filters, without the jobs with a settled result unless asked to run them again.
/// `view` is the ledger `work` was judged from: what the judgement read is not read again.
fn select(work: &[Work], view: &LedgerView, opts: &Options) -> Result<Selection> {
    // A result the gate would not count (unsigned, untrusted under a `trust:`) is no
    // reason to skip a job: it is run, and signed.
    let trust = work.iter().find_map(|w| w.plan.trust.as_ref());
    let view = view.trusting(trust)?;
    let mut all: BTreeMap<JobKey, Job> = BTreeMap::new();
    // Heisenbugs a gate waits on for more tries (`flaky: {policy: wait}`), rechecked jobs.
    let mut retry = BTreeSet::new();
    let mut later = BTreeSet::new();
    for w in work {
        for (k, j) in &w.plan.jobs {
            all.entry(k.clone()).or_insert_with(|| j.clone());
        }
        retry.extend(w.retries.iter().cloned());
        later.extend(w.deferred.iter().cloned());
    }
    let mut deferred = Vec::new();
    for pattern in opts.jobs.iter().chain(&opts.rerun) {
        let n = all.keys().filter(|k| k.starts_with(pattern)).count();
        if n == 0 {
            return Err(Error::usage_help(
                format!("no planned job has a key starting with {pattern:?}"),
                format!("see the keys with `{}`", crate::advice::Advice::Plan),
            ));
        }
    }
    let mut jobs = Vec::new();
    let mut planned_attempts: HashMap<JobKey, u32> = HashMap::new();
    let mut reused = 0;
    let mut left: Vec<Left> = Vec::new();
    for (key, job) in &all {
        if !opts.jobs.is_empty() && !matches(key, &opts.jobs) {
            continue;
        }
        if let Some(s) = opts.shard
            && !in_shard(key, s)
        {
            continue;
        }
        // Read (and remembered by the view) when the judgement evaluated the gates.
        let latest = view.latest_with_history(key)?;
        let verdict = latest.as_ref().map(|(r, _)| r.verdict);
        let forced = matches(key, &opts.rerun)
            || retry.contains(key)
            || (opts.failed && matches!(verdict, Some(Verdict::Fail | Verdict::Error)));
        if verdict.is_some_and(Verdict::is_final) && !forced {
            reused += 1;
            continue;
        }
        // An errored job within its backoff, or past its error budget, waits; a person who
        // names it runs it.
        let named = forced || (!opts.jobs.is_empty() && matches(key, &opts.jobs));
        if later.contains(key) && !named {
            deferred.push(Deferred {
                key: key.clone(),
                job: describe(job),
                items: items_of(job),
            });
            continue;
        }
        if let Some(offers) = &opts.offers {
            let missing = offers.missing(&job.needs);
            if !missing.is_empty() {
                let why = missing
                    .iter()
                    .map(|l| match offers.unhealthy.get(l) {
                        Some(bad) => format!("`{l}` (unhealthy here: {bad})"),
                        None => format!("`{l}`"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                left.push(Left {
                    key: key.clone(),
                    job: describe(job),
                    items: items_of(job),
                    needs: missing,
                    why: format!("needs {why}, which this runner does not offer"),
                });
                continue;
            }
        }
        planned_attempts.insert(key.clone(), view.attempt_count(key)?);
        jobs.push(job.clone());
    }
    // A job that needs the artifact of a build left for another runner waits with it.
    loop {
        let waiting: Vec<usize> = jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.after.iter().any(|a| left.iter().any(|l| &l.key == a)))
            .map(|(n, _)| n)
            .collect();
        if waiting.is_empty() {
            break;
        }
        for n in waiting.into_iter().rev() {
            let job = jobs.remove(n);
            planned_attempts.remove(&job.key);
            left.push(Left {
                key: job.key.clone(),
                job: describe(&job),
                items: items_of(&job),
                needs: Vec::new(),
                why: "waits for a build left for another runner".into(),
            });
        }
    }
    if !jobs.is_empty() && !opts.export {
        let chosen: HashSet<&JobKey> = jobs.iter().map(|j| &j.key).collect();
        for w in work
            .iter()
            .filter(|w| w.plan.jobs.keys().any(|k| chosen.contains(k)))
        {
            crate::trust::require_signer(&w.plan.to.name, w.plan.trust.as_ref())?;
        }
    }
    let known = known_builds(&view, &jobs)?;
    Ok(Selection {
        jobs,
        reused,
        planned_attempts,
        planned_tip: view.tip,
        known,
        deferred,
        left,
    })
}

/// Builds `jobs` need that are not among them, with the artifacts they recorded.
fn known_builds(view: &LedgerView, jobs: &[Job]) -> Result<HashMap<JobKey, ArtifactRecord>> {
    let selected_keys: BTreeSet<JobKey> = jobs.iter().map(|j| j.key.clone()).collect();
    let mut known = HashMap::new();
    for job in jobs {
        for dep in &job.after {
            if !selected_keys.contains(dep)
                && let Some(r) = view.latest(dep)?
                && let Some(a) = r.artifact
                && matches!(r.verdict, Verdict::Pass | Verdict::Flaky)
            {
                known.insert(dep.clone(), a);
            }
        }
    }
    Ok(known)
}

/// Stops the "still running" thread when dropped.
struct Ticker(Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>);

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.0.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// `sink`, keeping track of the running jobs, and (every `every`) a thread that reports
/// them as [`Event::StillRunning`] while any run.
fn still_running(sink: Sink, every: Option<Duration>) -> (Sink, Ticker) {
    let Some(every) = every.filter(|d| !d.is_zero()) else {
        return (sink, Ticker(None));
    };
    // The running jobs in the order they started (a label may run twice at once).
    let running: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let tracked: Sink = {
        let (running, sink) = (running.clone(), sink.clone());
        Arc::new(move |e| {
            if let Ok(mut r) = running.lock() {
                match &e {
                    Event::Started { label } => r.push((label.to_string(), Instant::now())),
                    Event::Finished { outcome } => {
                        if let Some(i) = r.iter().position(|(l, _)| *l == outcome.label) {
                            r.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            sink(e)
        })
    };
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
            let now: Vec<(String, Duration)> = match running.lock() {
                Ok(r) => r.iter().map(|(l, t)| (l.clone(), t.elapsed())).collect(),
                Err(_) => return,
            };
            if !now.is_empty() {
                sink(Event::StillRunning { running: &now });
            }
        }
    });
    (tracked, Ticker(Some((stop, thread))))
}

/// The claims shared by the runs on this machine; without them (an unwritable `.git`)
/// every selected job runs, as before claims existed.
fn open_claims(git_dir: &std::path::Path) -> Option<Arc<super::claim::Claims>> {
    let path = git_dir.join("stagegate/claims.d");
    match super::claim::Claims::open(&path) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            crate::error::warn(format!(
                "cannot open {} ({e}): concurrent runs on this machine may run the same jobs",
                path.display()
            ));
            None
        }
    }
}

/// A run's checkouts, by commit, and the thread writing their files. However the run
/// ends, the writer is waited for before the checkouts are removed: removing a directory
/// the writer is still writing into could leave files behind.
struct Checkouts {
    writer: Option<std::thread::JoinHandle<()>>,
    dirs: HashMap<ObjectId, std::result::Result<Checkout, String>>,
}

impl Drop for Checkouts {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Start writing `writes` (what each job needs of its checkout, in the order the jobs
/// start) on a thread of its own; returns it, and for each job what to wait for: every
/// write up to its own, since a file it needs may have been planned for an earlier job of
/// its commit (`None` only when nothing is written before it either).
fn write_checkouts(
    repo: &crate::repo::Repo,
    writes: Vec<Vec<sparse::Write>>,
) -> (
    std::thread::JoinHandle<()>,
    Vec<Option<super::PendingFiles>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(super::CheckoutProgress::Done(0));
    let mut need = 0;
    let pending = writes
        .iter()
        .map(|w| {
            need += w.len();
            (need > 0).then(|| super::PendingFiles {
                progress: rx.clone(),
                need,
            })
        })
        .collect();
    let shared = repo.git.clone().into_sync();
    let handle = std::thread::spawn(move || {
        let repo = crate::repo::Repo::from_git(shared.to_thread_local());
        let mut done = 0;
        for w in writes.iter().flatten() {
            if let Err(e) = sparse::write(&repo, w) {
                tx.send_replace(super::CheckoutProgress::Failed(e.to_string()));
                return;
            }
            done += 1;
            tx.send_replace(super::CheckoutProgress::Done(done));
        }
    });
    (handle, pending)
}

/// Whether the ledger holds more attempts of a key than when this run planned. Reads
/// through `repo`'s object store (shared, not a second copy of its mapped packs).
///
/// Asked once per job, so it is cheap when nothing else recorded: the ref is read again
/// only when its files changed, and when every commit between the planned tip (or a tip
/// checked since) and the ref's tip is one this run's recorder made (`ours`), no other run
/// recorded anything, and the ledger is not read.
/// Only when another writer's commit is in between are the key's attempts counted.
fn recorded_since(
    repo: &crate::repo::Repo,
    reference: String,
    (planned_tip, planned): (Option<ObjectId>, HashMap<JobKey, u32>),
    ours: crate::ledger::recorder::OwnCommits,
) -> super::RecordedSince {
    struct Reader {
        repo: crate::repo::Repo,
        /// A tip up to which only this run's recorder wrote since planning.
        clean: Option<ObjectId>,
        /// The ref's files when it was last read, and the tip read then.
        seen: Option<(crate::repo::RefStamp, Option<ObjectId>)>,
    }
    let shared = repo.git.clone().into_sync();
    let watch = repo.ref_watch(&reference);
    let reader: Mutex<Option<Reader>> = Mutex::new(None);
    Box::new(move |key| {
        let Ok(mut guard) = reader.lock() else {
            return false;
        };
        let reader = guard.get_or_insert_with(|| Reader {
            repo: crate::repo::Repo::from_git(shared.to_thread_local()),
            clean: planned_tip,
            seen: None,
        });
        // The ref is read only when its files changed since it was last read: a job
        // costs two `stat`s here, not a ref lookup (the stamp is taken first, so an update
        // racing the read changes the next stamp).
        let stamp = watch.as_ref().and_then(|w| w.stamp());
        let tip = match reader.seen {
            Some((seen, tip)) if stamp == Some(seen) => tip,
            _ => {
                let Ok(tip) = reader.repo.ref_id(&reference) else {
                    return false;
                };
                reader.seen = stamp.map(|s| (s, tip));
                tip
            }
        };
        if only_ours(tip, reader.clean, &ours) {
            reader.clean = tip;
            return false;
        }
        let now = Ledger::new(&reader.repo, &reference)
            .view_at(tip)
            .and_then(|v| v.attempt_count(key));
        now.is_ok_and(|n| n > planned.get(key).copied().unwrap_or(0))
    })
}

/// Whether walking back from `tip` through commits in `ours` reaches `base`.
fn only_ours(
    tip: Option<ObjectId>,
    base: Option<ObjectId>,
    ours: &crate::ledger::recorder::OwnCommits,
) -> bool {
    let Ok(ours) = ours.lock() else {
        return false;
    };
    let mut at = tip;
    // Each step follows a commit this run made; there are never more than it made.
    for _ in 0..=ours.len() {
        if at == base {
            return true;
        }
        match at.and_then(|c| ours.get(&c)) {
            Some(parent) => at = *parent,
            None => return false,
        }
    }
    false
}

/// For each job, the variables the pipeline of its move's target stage passes on (`env.pass`
/// and `env.secret`, read on T: the rules come from T), and every value to mask: the
/// tool's own tokens and each pipeline's secrets.
fn job_env_policy(
    planner: &Planner,
    plans: &[&MovePlan],
) -> Result<(HashMap<JobKey, Passed>, Secrets)> {
    let mut by_key = HashMap::new();
    let mut secret_names: BTreeSet<String> = BTreeSet::new();
    secret_names.extend(planner.pipeline.env.secret.iter().cloned());
    let mut by_target: HashMap<ObjectId, Passed> = HashMap::new();
    for p in plans {
        let pass = match by_target.get(&p.to_head) {
            Some(v) => v.clone(),
            None => {
                let env = match planner.snapshot(p.to_head)?.pipeline() {
                    Ok(t) => t.env,
                    Err(_) => planner.pipeline.env.clone(),
                };
                secret_names.extend(env.secret.iter().cloned());
                let v = Arc::new(super::lookup_env(env.pass.iter().chain(&env.secret)));
                by_target.insert(p.to_head, v.clone());
                v
            }
        };
        for k in p.jobs.keys() {
            by_key.entry(k.clone()).or_insert_with(|| pass.clone());
        }
    }
    Ok((by_key, super::known_secrets(&secret_names)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    fn ours(pairs: &[(u8, Option<u8>)]) -> crate::ledger::recorder::OwnCommits {
        let w = crate::ledger::recorder::OwnCommits::default();
        w.lock()
            .unwrap()
            .extend(pairs.iter().map(|(c, p)| (id(*c), p.map(id))));
        w
    }

    #[test]
    fn a_tip_reached_through_our_own_commits_only_means_nobody_else_recorded() {
        let w = ours(&[(2, Some(1)), (3, Some(2))]);
        assert!(only_ours(Some(id(1)), Some(id(1)), &w), "unchanged tip");
        assert!(
            only_ours(Some(id(3)), Some(id(1)), &w),
            "two of ours on top"
        );
        // The ledger was empty when the run planned: our first commit has no parent.
        let first = ours(&[(2, None), (3, Some(2))]);
        assert!(only_ours(Some(id(3)), None, &first));
        assert!(only_ours(None, None, &first));
    }

    #[test]
    fn another_writers_commit_in_between_means_the_ledger_must_be_read() {
        // 9 is another run's commit between the planned tip 1 and ours, 3.
        let w = ours(&[(3, Some(9))]);
        assert!(!only_ours(Some(id(3)), Some(id(1)), &w));
        // The tip is another run's commit on top of ours.
        let w = ours(&[(2, Some(1))]);
        assert!(!only_ours(Some(id(9)), Some(id(1)), &w));
        // The ref was deleted meanwhile.
        assert!(!only_ours(None, Some(id(1)), &w));
        // A cycle in what we were told can never loop forever.
        let w = ours(&[(2, Some(3)), (3, Some(2))]);
        assert!(!only_ours(Some(id(2)), Some(id(1)), &w));
    }
}
