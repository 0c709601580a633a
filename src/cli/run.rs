//! `stagegate run`: run the planned jobs that have no result yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gix::ObjectId;

use super::{Code, Ctx, Format, print_json};
use crate::artifact::Store;
use crate::error::{Error, Result};
use crate::ledger::recorder::Recorder;
use crate::ledger::{ArtifactRecord, Ledger, Verdict};
use crate::plan::{Job, MovePlan, Planner, describe};
use crate::repo::Checkout;
use crate::runner::mask::Secrets;
use crate::runner::{self, Event, Outcome, Passed, Ready, Settings};

/// Run every planned job that has no settled result (pass, flaky or fail): builds and
/// tests, in parallel, each in a temporary checkout, recording each result in the ledger.
///
/// Exits 3 when a job ended in `error` (it could not run: a timeout, a missing interpreter,
/// a log or store the runner cannot write; the next run tries it again), 1 when a job
/// failed or could not start (a build it needs did not succeed), 130 when interrupted.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Only the jobs of the moves into or out of this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this job (a key or a unique key prefix); repeatable.
    #[arg(long = "job", value_name = "KEY")]
    pub job: Vec<String>,
    /// Run only shard I of N (1-based): a deterministic split by key, for N machines.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Show what would run, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run this job again even if it has a result (a key or prefix); repeatable.
    #[arg(long, value_name = "KEY")]
    pub rerun: Vec<String>,
    /// Run again every job whose latest result is fail or error.
    #[arg(long)]
    pub failed: bool,
    /// Push the results ledger to the remote afterwards.
    #[arg(long)]
    pub push: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

fn parse_shard(s: &str) -> std::result::Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 1/4")?;
    let i: u64 = i.parse().map_err(|_| "I must be a number")?;
    let n: u64 = n.parse().map_err(|_| "N must be a number")?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: I must be between 1 and N"));
    }
    Ok((i, n))
}

/// Whether `key` falls in shard `i` of `n`.
fn in_shard(key: &str, (i, n): (u64, u64)) -> bool {
    let x = u64::from_str_radix(&key[..16], 16).unwrap_or(0);
    x % n == i - 1
}

fn matches(key: &str, patterns: &[String]) -> bool {
    patterns
        .iter()
        .any(|p| !p.is_empty() && key.starts_with(p.as_str()))
}

/// What a run did.
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub recorded: usize,
    pub interrupted: bool,
    /// Jobs that already had a settled result.
    pub reused: usize,
    /// With --dry-run: the jobs that would run (key, job).
    pub would_run: Vec<(String, String)>,
}

impl Report {
    pub fn code(&self) -> Code {
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
            matches!(o.verdict, None | Some(Verdict::Fail)) && !o.elsewhere
        }) {
            1
        } else {
            0
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, args.push)?;
    let plans = planner.plan_all(args.stage.as_deref())?;
    let report = run_plans(&planner, &plans, &args)?;
    if args.format == Format::Json {
        let rows: Vec<serde_json::Value> = report
            .outcomes
            .iter()
            .map(|o| serde_json::json!({"key": o.key, "job": o.label, "verdict": o.verdict, "elsewhere": o.elsewhere, "reason": o.reason, "duration_ms": o.duration.as_millis() as u64, "log": o.log}))
            .collect();
        if args.dry_run {
            let rows: Vec<serde_json::Value> = report
                .would_run
                .iter()
                .map(|(key, job)| serde_json::json!({"key": key, "job": job}))
                .collect();
            print_json(&serde_json::json!({"would_run": rows, "reused": report.reused}));
        } else {
            print_json(
                &serde_json::json!({"ran": rows, "reused": report.reused, "recorded": report.recorded, "interrupted": report.interrupted}),
            );
        }
    }
    Ok(report.code())
}

/// Select the jobs of `plans` that need running, run them, record the results.
pub fn run_plans(planner: &Planner, plans: &[MovePlan], args: &Args) -> Result<Report> {
    let repo = planner.repo;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    // Only what the gates still need: not the jobs of a candidate whose rejection stands,
    // and the combination of the candidates that pass alone.
    let mut all: BTreeMap<String, Job> = BTreeMap::new();
    for p in plans {
        for j in crate::promote::jobs_to_run(planner, p, &view)? {
            all.entry(j.key.clone()).or_insert(j);
        }
    }
    for pattern in args.job.iter().chain(&args.rerun) {
        let n = all
            .keys()
            .filter(|k| k.starts_with(pattern.as_str()))
            .count();
        if n == 0 {
            return Err(Error::usage_help(
                format!("no planned job has a key starting with {pattern:?}"),
                "see the keys with `stagegate plan`",
            ));
        }
    }
    let mut selected = Vec::new();
    // How many attempts each selected job had when planned: more later means another run
    // recorded it meanwhile.
    let mut planned_attempts: HashMap<String, u32> = HashMap::new();
    let mut known: HashMap<String, ArtifactRecord> = HashMap::new();
    let mut reused = 0;
    for (key, job) in &all {
        if !args.job.is_empty() && !matches(key, &args.job) {
            continue;
        }
        if let Some(s) = args.shard
            && !in_shard(key, s)
        {
            continue;
        }
        let latest = view.latest(key)?;
        let verdict = latest.as_ref().map(|r| r.verdict);
        let forced = matches(key, &args.rerun)
            || (args.failed && matches!(verdict, Some(Verdict::Fail | Verdict::Error)));
        if verdict.is_some_and(Verdict::is_final) && !forced {
            reused += 1;
            continue;
        }
        planned_attempts.insert(key.clone(), view.attempt_count(key)?);
        selected.push(job.clone());
    }
    // Builds this run does not include, but whose artifacts selected jobs need.
    let selected_keys: BTreeSet<String> = selected.iter().map(|j| j.key.clone()).collect();
    for job in &selected {
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

    if args.dry_run {
        // JSON is one document, printed by the caller: nothing else on stdout.
        if args.format == Format::Text {
            for j in &selected {
                println!("would run {} {}", &j.key[..12], describe(j));
            }
            println!("{} to run, {} with results already", selected.len(), reused);
        }
        return Ok(Report {
            outcomes: Vec::new(),
            recorded: 0,
            interrupted: false,
            reused,
            would_run: selected
                .iter()
                .map(|j| (j.key.clone(), describe(j)))
                .collect(),
        });
    }
    if selected.is_empty() {
        if args.format == Format::Text {
            if reused == 0 {
                println!("nothing to run: no jobs are planned");
            } else {
                println!(
                    "nothing to run: {} planned, all with results",
                    super::count(reused, "job")
                );
            }
        }
        return Ok(Report {
            outcomes: Vec::new(),
            recorded: 0,
            interrupted: false,
            reused,
            would_run: Vec::new(),
        });
    }

    // One checkout per commit, shared by its jobs. A tree the runner refuses to write
    // (an entry that escapes it, a name twice) makes its jobs an `error` naming the path.
    let mut checkouts: HashMap<ObjectId, std::result::Result<Checkout, String>> = HashMap::new();
    for j in &selected {
        if let std::collections::hash_map::Entry::Vacant(e) = checkouts.entry(j.commit) {
            e.insert(match Checkout::new(repo, repo.tree_of(j.commit)?) {
                Ok(c) => Ok(c),
                Err(err @ Error::UnsafeTree { .. }) => {
                    Err(format!("cannot check out commit {}: {err}", j.commit))
                }
                Err(err) => return Err(err),
            });
        }
    }
    // What each job may see of our environment: the `env:` of the pipeline that judges it
    // (the target stage's), and the values to mask: ours and every secret it names.
    let (passes, secrets) = job_env_policy(planner, plans)?;
    let fallback = Arc::new(Vec::new());
    let ready: Vec<Ready> = selected
        .into_iter()
        .map(|job| Ready {
            cwd: checkouts[&job.commit]
                .as_ref()
                .map(|c| c.path())
                .map_err(Clone::clone),
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
    let settings = Arc::new(Settings {
        parallel: args.parallel.unwrap_or_else(|| {
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
        runner: runner::identity(),
        scratch: scratch.path().to_path_buf(),
        base_env: runner::base_env(),
        secrets,
        claims: claims.clone(),
        recorded_since_plan: Some(recorded_since(
            git_dir.clone(),
            planner.pipeline.results_ref.clone(),
            planned_attempts,
        )),
    });
    let recorder = Recorder::start(git_dir.clone(), planner.pipeline.results_ref.clone());
    let display = Arc::new(Display::new(total, args.format == Format::Text)?);
    let progress: Arc<dyn Fn(Event) + Send + Sync> = {
        let display = display.clone();
        Arc::new(move |e| display.event(e))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
        let outcomes = runner::execute(
            ready,
            known,
            settings,
            recorder.sender.clone(),
            progress,
            cancel_rx.clone(),
        )
        .await;
        let interrupted = *cancel_rx.borrow();
        signals.abort();
        (outcomes, interrupted)
    });
    let recorded = recorder.finish()?;
    drop(claims);
    if recorded > 0 {
        // Each ledger commit is a pack of its own; let git fold them (and any loose
        // objects) together once there are enough to matter. Cheap when there are not.
        if let Err(e) = crate::repo::remote::git(
            &git_dir,
            &["-c", "gc.autoDetach=false", "gc", "--auto", "--quiet"],
        ) {
            eprintln!("warning: git gc --auto failed ({e}); the results are recorded");
        }
    }
    display.finish();
    drop(checkouts);
    for o in outcomes
        .iter()
        .filter(|o| matches!(o.verdict, Some(Verdict::Fail | Verdict::Error)))
    {
        let excerpt = o
            .record
            .as_ref()
            .map(|r| r.excerpt.as_str())
            .unwrap_or_default();
        let log = o.log.as_ref().map(|l| l.display().to_string());
        super::github::job_failed(&o.label, o.reason.as_deref(), excerpt, log.as_deref());
    }
    if args.format == Format::Text {
        print_summary(&outcomes, reused);
        if interrupted {
            println!(
                "interrupted: running jobs were killed; {recorded} finished results were recorded"
            );
        }
    }
    super::sync::publish_results(repo, &planner.pipeline)?;
    Ok(Report {
        outcomes,
        recorded,
        interrupted,
        reused,
        would_run: Vec::new(),
    })
}

/// The claims shared by the runs on this machine; without them (an unwritable `.git`)
/// every selected job runs, as before claims existed.
fn open_claims(git_dir: &std::path::Path) -> Option<Arc<runner::claim::Claims>> {
    let path = git_dir.join("stagegate/claims");
    match runner::claim::Claims::open(&path) {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            eprintln!(
                "warning: cannot open {} ({e}): concurrent runs on this machine may run the same jobs",
                path.display()
            );
            None
        }
    }
}

/// Whether the ledger holds more attempts of a key than when this run planned.
fn recorded_since(
    git_dir: std::path::PathBuf,
    reference: String,
    planned: HashMap<String, u32>,
) -> runner::RecordedSince {
    let repo: Mutex<Option<crate::repo::Repo>> = Mutex::new(None);
    Box::new(move |key| {
        let Ok(mut guard) = repo.lock() else {
            return false;
        };
        if guard.is_none() {
            *guard = crate::repo::Repo::open(&git_dir).ok();
        }
        let Some(repo) = guard.as_ref() else {
            return false;
        };
        let now = Ledger::new(repo, &reference)
            .view()
            .and_then(|v| v.attempt_count(key));
        now.is_ok_and(|n| n > planned.get(key).copied().unwrap_or(0))
    })
}

/// For each job, the variables the pipeline of its move's target stage passes on (`env.pass`
/// and `env.secret`, read on T: the rules come from T), and every value to mask: the
/// tool's own tokens and each pipeline's secrets.
fn job_env_policy(
    planner: &Planner,
    plans: &[MovePlan],
) -> Result<(HashMap<String, Passed>, Secrets)> {
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
                let v = Arc::new(runner::lookup_env(env.pass.iter().chain(&env.secret)));
                by_target.insert(p.to_head, v.clone());
                v
            }
        };
        for k in p.jobs.keys() {
            by_key.entry(k.clone()).or_insert_with(|| pass.clone());
        }
    }
    Ok((by_key, runner::known_secrets(&secret_names)))
}

/// Live progress that scales from one-second tests to two-hour image builds. On a
/// terminal: a bar naming every running job. Otherwise (a CI log, a cron mail): a line when
/// a job starts and when it ends, and every `STAGEGATE_STILL_RUNNING` (default 60s; `0`
/// turns it off) a "still running: …" line naming each running job and its time so far.
struct Display {
    state: Arc<Progress>,
    ticker: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

/// What the display knows, shared with the thread that prints "still running".
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    enabled: bool,
    /// Jobs done, and the running ones with their start (a label may run twice at once).
    jobs: Mutex<(usize, Vec<(String, std::time::Instant)>)>,
}

/// The "still running" interval: `STAGEGATE_STILL_RUNNING` (e.g. `30s`, `5m`, `0` for
/// never), 60 s by default.
fn still_running_interval() -> Result<Option<std::time::Duration>> {
    let Ok(text) = std::env::var("STAGEGATE_STILL_RUNNING") else {
        return Ok(Some(std::time::Duration::from_secs(60)));
    };
    if text.trim() == "0" {
        return Ok(None);
    }
    humantime::parse_duration(text.trim())
        .map(|d| (!d.is_zero()).then_some(d))
        .map_err(|e| {
            Error::usage_help(
                format!("STAGEGATE_STILL_RUNNING={text:?} is not a duration ({e})"),
                "write a number and a unit, e.g. 30s or 5m, or 0 for no \"still running\" lines",
            )
        })
}

/// A duration for people: `45s`, `4m 10s`, `2h 03m`.
fn elapsed(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Progress {
    /// The running jobs, longest-running first, each with its time so far.
    fn running(&self) -> String {
        let jobs = self.jobs.lock().expect("display lock");
        jobs.1
            .iter()
            .map(|(label, start)| format!("{label} ({})", elapsed(start.elapsed())))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn show_running(&self) {
        if let Some(b) = &self.bar {
            let running = self.running();
            b.set_message(if running.is_empty() {
                String::new()
            } else {
                format!("running {running}")
            });
        }
    }
}

impl Display {
    fn new(total: usize, enabled: bool) -> Result<Display> {
        let interval = still_running_interval()?;
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done, {wide_msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        let state = Arc::new(Progress {
            bar,
            total,
            enabled,
            jobs: Mutex::new((0, Vec::new())),
        });
        let ticker = match interval {
            Some(every) if enabled => {
                let (stop, stopped) = std::sync::mpsc::channel::<()>();
                let state = state.clone();
                let thread = std::thread::spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(every)
                    {
                        let running = state.running();
                        match &state.bar {
                            // The bar's message already names them; refresh the times.
                            Some(_) => state.show_running(),
                            None if !running.is_empty() => {
                                eprintln!("still running: {running}");
                            }
                            None => {}
                        }
                    }
                });
                Some((stop, thread))
            }
            _ => None,
        };
        Ok(Display {
            state,
            ticker: Mutex::new(ticker),
        })
    }

    fn event(&self, e: Event) {
        let p = &self.state;
        if !p.enabled {
            return;
        }
        match e {
            Event::Started { label } => {
                p.jobs
                    .lock()
                    .expect("display lock")
                    .1
                    .push((label.to_string(), std::time::Instant::now()));
                match &p.bar {
                    Some(_) => p.show_running(),
                    None => eprintln!("started {label}"),
                }
            }
            Event::Finished { outcome } => {
                let n = {
                    let mut jobs = p.jobs.lock().expect("display lock");
                    jobs.0 += 1;
                    if let Some(i) = jobs.1.iter().position(|(l, _)| *l == outcome.label) {
                        jobs.1.remove(i);
                    }
                    jobs.0
                };
                let verdict = outcome.shown();
                let reason = outcome
                    .reason
                    .as_ref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default();
                let line = format!(
                    "[{n}/{}] {verdict:<7} {} ({}){reason}",
                    p.total,
                    outcome.label,
                    elapsed_precise(outcome.duration)
                );
                match &p.bar {
                    Some(b) => {
                        if !matches!(outcome.verdict, Some(Verdict::Pass)) {
                            b.println(line);
                        }
                        b.set_position(n as u64);
                        p.show_running();
                    }
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    fn finish(&self) {
        if let Some((stop, thread)) = self.ticker.lock().expect("display lock").take() {
            drop(stop);
            let _ = thread.join();
        }
        if let Some(b) = &self.state.bar {
            b.finish_and_clear();
        }
    }
}

/// A job's duration in its end line: tenths of a second under a minute, else as `elapsed`.
fn elapsed_precise(d: std::time::Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        elapsed(d)
    }
}

fn print_summary(outcomes: &[Outcome], reused: usize) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    println!("{:<8} {:<12} {:>8}  job", "verdict", "key", "time");
    for o in outcomes {
        let v = o.shown();
        *counts.entry(v.clone()).or_default() += 1;
        println!(
            "{v:<8} {:<12} {:>7.1}s  {}",
            &o.key[..12],
            o.duration.as_secs_f64(),
            o.label
        );
        if let Some(r) = &o.reason
            && o.verdict != Some(Verdict::Pass)
        {
            println!("{:<8} {:<12} {:>8}  ↳ {r}", "", "", "");
        }
        if let Some(l) = &o.log
            && matches!(o.verdict, Some(Verdict::Fail | Verdict::Error))
        {
            println!(
                "{:<8} {:<12} {:>8}  ↳ log: {}",
                "",
                "",
                "",
                PathBuf::from(l).display()
            );
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "ran {}: {}; {reused} already had results",
        super::count(outcomes.len(), "job"),
        parts.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(super::elapsed(Duration::from_secs(45)), "45s");
        assert_eq!(super::elapsed(Duration::from_secs(250)), "4m 10s");
        assert_eq!(
            super::elapsed(Duration::from_secs(2 * 3600 + 180)),
            "2h 03m"
        );
        assert_eq!(super::elapsed_precise(Duration::from_millis(1250)), "1.2s");
    }

    #[test]
    fn every_running_job_is_named_not_only_the_last_started() {
        let now = std::time::Instant::now();
        let p = super::Progress {
            bar: None,
            total: 3,
            enabled: true,
            jobs: std::sync::Mutex::new((
                1,
                vec![
                    ("build images/host".into(), now - Duration::from_secs(4000)),
                    ("test guest-boots".into(), now - Duration::from_secs(5)),
                ],
            )),
        };
        assert_eq!(
            p.running(),
            "build images/host (1h 06m), test guest-boots (5s)"
        );
    }
}
