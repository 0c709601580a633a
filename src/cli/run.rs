//! `stagegate run`: run the planned jobs that have no result yet.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::ledger::Verdict;
use crate::plan::{MovePlan, Planner};
use crate::runner::session::{self, Report};
use crate::runner::{Event, Outcome};

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

impl Args {
    /// What the library's run needs of these arguments.
    pub fn options(&self) -> session::Options {
        session::Options {
            parallel: self.parallel,
            jobs: self.job.clone(),
            shard: self.shard,
            dry_run: self.dry_run,
            rerun: self.rerun.clone(),
            failed: self.failed,
        }
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, args.push)?;
    let plans = planner.plan_all(args.stage.as_deref())?;
    let report = run_plans(&planner, &plans, &args.options(), args.format)?;
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

/// Run the jobs of `plans` that need running (the library's [`session::run`]), showing
/// progress and the summary as text when `format` is text.
pub fn run_plans(
    planner: &Planner,
    plans: &[MovePlan],
    opts: &session::Options,
    format: Format,
) -> Result<Report> {
    let display = Arc::new(Display::new(format == Format::Text)?);
    let sink: session::Sink = {
        let display = display.clone();
        Arc::new(move |e| display.event(e))
    };
    let report = session::run(planner, plans, opts, sink)?;
    if format == Format::Text {
        if opts.dry_run {
            for (key, job) in &report.would_run {
                println!("would run {} {job}", &key[..12]);
            }
            println!(
                "{} to run, {} with results already",
                report.would_run.len(),
                report.reused
            );
        } else if report.outcomes.is_empty() {
            if report.reused == 0 {
                println!("nothing to run: no jobs are planned");
            } else {
                println!(
                    "nothing to run: {} planned, all with results",
                    super::count(report.reused, "job")
                );
            }
        }
    }
    Ok(report)
}

/// Live progress that scales from one-second tests to two-hour image builds. On a
/// terminal: a bar naming every running job. Otherwise (a CI log, a cron mail): a line when
/// a job starts and when it ends, and every `STAGEGATE_STILL_RUNNING` (default 60s; `0`
/// turns it off) a "still running: …" line naming each running job and its time so far.
struct Display {
    enabled: bool,
    /// How often to say which jobs are still running (`None`: never).
    interval: Option<std::time::Duration>,
    /// Set when the run starts (its size known): what is shown, and the thread that
    /// prints "still running".
    active: Mutex<Option<Active>>,
}

struct Active {
    state: Arc<Progress>,
    ticker: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// What the display knows, shared with the thread that prints "still running".
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
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
    fn new(enabled: bool) -> Result<Display> {
        Ok(Display {
            enabled,
            interval: still_running_interval()?,
            active: Mutex::new(None),
        })
    }

    /// The run's jobs are chosen: show the bar (on a terminal) and start the ticker.
    fn start(&self, total: usize) {
        let bar = std::io::stderr().is_terminal().then(|| {
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
            jobs: Mutex::new((0, Vec::new())),
        });
        let ticker = self.interval.map(|every| {
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
            (stop, thread)
        });
        *self.active.lock().expect("display lock") = Some(Active { state, ticker });
    }

    fn event(&self, e: Event) {
        if let Event::RunFinished { report } = e {
            return self.run_finished(report);
        }
        if !self.enabled {
            return;
        }
        match e {
            Event::RunStarted { total } => self.start(total),
            Event::Started { label } => self.started(label),
            Event::Finished { outcome } => self.finished(outcome),
            Event::RunFinished { .. } => {}
        }
    }

    /// Clear the bar, annotate failures for GitHub, print the summary.
    fn run_finished(&self, report: &Report) {
        self.finish();
        for o in report
            .outcomes
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
        if self.enabled {
            print_summary(&report.outcomes, report.reused);
            if report.interrupted {
                println!(
                    "interrupted: running jobs were killed; {} finished results were recorded",
                    report.recorded
                );
            }
        }
    }

    fn state(&self) -> Option<Arc<Progress>> {
        let active = self.active.lock().expect("display lock");
        active.as_ref().map(|a| a.state.clone())
    }

    fn started(&self, label: &str) {
        let Some(p) = self.state() else { return };
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

    fn finished(&self, outcome: &Outcome) {
        let Some(p) = self.state() else { return };
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

    /// Stop the ticker and clear the bar.
    fn finish(&self) {
        let Some(active) = self.active.lock().expect("display lock").take() else {
            return;
        };
        if let Some((stop, thread)) = active.ticker {
            drop(stop);
            let _ = thread.join();
        }
        if let Some(b) = &active.state.bar {
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
