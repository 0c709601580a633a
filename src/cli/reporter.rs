//! Printing a run as it happens: the library's run reports [`Event`]s, and the reporters
//! here print them: text for people (live progress on stderr, the summary on stdout), the
//! run's JSON document for programs, and GitHub annotations for failed jobs in Actions.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Format;
use crate::error::{Error, Result};
use crate::ledger::Verdict;
use crate::runner::session::{Report, Sink};
use crate::runner::{Event, Outcome};

/// Every reporter a run's events go to, as `format` asks: text, or the JSON document
/// (handed out by [`RunReporter::take_json`]); GitHub annotations either way.
pub struct RunReporter {
    text: Option<Text>,
    /// The JSON document of each run that finished, in order.
    json: Option<Mutex<Vec<serde_json::Value>>>,
}

impl RunReporter {
    pub fn new(format: Format) -> Arc<RunReporter> {
        Arc::new(RunReporter {
            text: (format == Format::Text).then(Text::default),
            json: (format == Format::Json).then(Mutex::default),
        })
    }

    /// The sink to hand the library's run.
    pub fn sink(self: &Arc<Self>) -> Sink {
        let me = self.clone();
        Arc::new(move |e| me.event(e))
    }

    fn event(&self, e: Event) {
        if let Event::RunFinished { report } = &e {
            if let Some(text) = &self.text {
                text.clear();
            }
            annotate_failures(report);
            if let Some(json) = &self.json {
                json.lock().expect("reporter lock").push(run_json(report));
            }
        }
        if let Some(text) = &self.text {
            text.event(e);
        }
    }

    /// The JSON documents of the runs that finished since last asked, oldest first.
    pub fn take_json(&self) -> Vec<serde_json::Value> {
        self.json
            .as_ref()
            .map(|j| std::mem::take(&mut *j.lock().expect("reporter lock")))
            .unwrap_or_default()
    }
}

/// A run as JSON (the README documents it): `{ran, reused, recorded, interrupted}`, or
/// with `--dry-run` `{would_run, reused}`.
pub fn run_json(report: &Report) -> serde_json::Value {
    if report.dry_run {
        let rows: Vec<serde_json::Value> = report
            .would_run
            .iter()
            .map(|(key, job)| serde_json::json!({"key": key, "job": job}))
            .collect();
        return serde_json::json!({"would_run": rows, "reused": report.reused});
    }
    let rows: Vec<serde_json::Value> = report
        .outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "key": o.key,
                "job": o.label,
                "verdict": o.verdict,
                "elsewhere": o.elsewhere,
                "reason": o.reason,
                "duration_ms": o.duration.as_millis() as u64,
                "log": o.log,
            })
        })
        .collect();
    serde_json::json!({
        "ran": rows,
        "reused": report.reused,
        "recorded": report.recorded,
        "interrupted": report.interrupted,
    })
}

/// In GitHub Actions: an error annotation for each job that failed or ended in error.
fn annotate_failures(report: &Report) {
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
}

/// The "still running" interval: `STAGEGATE_STILL_RUNNING` (e.g. `30s`, `5m`, `0` for
/// never), 60 s by default.
pub fn still_running_interval() -> Result<Option<Duration>> {
    let Ok(text) = std::env::var("STAGEGATE_STILL_RUNNING") else {
        return Ok(Some(Duration::from_secs(60)));
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

/// Live progress that scales from one-second tests to two-hour image builds. On a
/// terminal: a bar naming every running job. Otherwise (a CI log, a cron mail): a line when
/// a job starts, retries and ends, and a "still running: …" line naming each running job
/// and its time so far whenever the run reports them (`STAGEGATE_STILL_RUNNING`). Then the
/// summary on stdout.
#[derive(Default)]
struct Text {
    /// Set when the run starts (its size known).
    active: Mutex<Option<Arc<Progress>>>,
}

/// What the display knows of a started run.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    /// Jobs done, and the running ones with their start (a label may run twice at once).
    jobs: Mutex<(usize, Vec<(String, Instant)>)>,
}

/// A line on stderr, in one write: `eprintln!` writes each piece of its format on its
/// own (stderr is unbuffered), three writes a job for `started …`.
fn say(mut line: String) {
    use std::io::Write;
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A duration for people: `45s`, `4m 10s`, `2h 03m`.
fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `build images/host (1h 06m), test guest-boots (5s)`.
fn running_list<'a>(jobs: impl IntoIterator<Item = (&'a str, Duration)>) -> String {
    jobs.into_iter()
        .map(|(label, d)| format!("{label} ({})", elapsed(d)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Progress {
    /// The running jobs, longest-running first, each with its time so far.
    fn running(&self) -> String {
        let jobs = self.jobs.lock().expect("display lock");
        running_list(
            jobs.1
                .iter()
                .map(|(l, start)| (l.as_str(), start.elapsed())),
        )
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

impl Text {
    fn event(&self, e: Event) {
        match e {
            Event::RunStarted { total } => self.start(total),
            Event::Started { label } => self.started(label),
            Event::StillRunning { running } => self.still_running(running),
            Event::Retrying {
                label,
                attempt,
                reason,
            } => self.line(format!("retrying {label} (try {attempt}; {reason})")),
            Event::Finished { outcome } => self.finished(outcome),
            Event::RunFinished { report } => print_report(report),
        }
    }

    /// The run's jobs are chosen: show the bar on a terminal.
    fn start(&self, total: usize) {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done, {wide_msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        *self.active.lock().expect("display lock") = Some(Arc::new(Progress {
            bar,
            total,
            jobs: Mutex::new((0, Vec::new())),
        }));
    }

    fn state(&self) -> Option<Arc<Progress>> {
        self.active.lock().expect("display lock").clone()
    }

    /// A line above the bar, or on stderr without one.
    fn line(&self, line: String) {
        match self.state().as_ref().and_then(|p| p.bar.as_ref()) {
            Some(b) => b.println(line),
            None => say(line),
        }
    }

    fn started(&self, label: &str) {
        let Some(p) = self.state() else { return };
        p.jobs
            .lock()
            .expect("display lock")
            .1
            .push((label.to_string(), Instant::now()));
        match &p.bar {
            Some(_) => p.show_running(),
            None => say(format!("started {label}")),
        }
    }

    fn still_running(&self, running: &[(String, Duration)]) {
        let Some(p) = self.state() else { return };
        match &p.bar {
            // The bar's message already names them; refresh the times.
            Some(_) => p.show_running(),
            None => say(format!(
                "still running: {}",
                running_list(running.iter().map(|(l, d)| (l.as_str(), *d)))
            )),
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
            None => say(line),
        }
    }

    /// Clear the bar (before the summary is printed).
    fn clear(&self) {
        if let Some(p) = self.active.lock().expect("display lock").take()
            && let Some(b) = &p.bar
        {
            b.finish_and_clear();
        }
    }
}

/// A job's duration in its end line: tenths of a second under a minute, else as `elapsed`.
fn elapsed_precise(d: Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        elapsed(d)
    }
}

/// What a run did, for people: what would run (a dry run), that nothing needed running,
/// or a table of the jobs that ran.
fn print_report(report: &Report) {
    if report.dry_run {
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
    } else {
        print_summary(&report.outcomes, report.reused);
        if report.interrupted {
            println!(
                "interrupted: running jobs were killed; {} finished results were recorded",
                report.recorded
            );
        }
    }
}

fn print_summary(outcomes: &[Outcome], reused: usize) {
    use std::io::Write;
    // One write for the table, not one per line (stdout is line-buffered): a thousand
    // jobs are a thousand lines.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let _ = writeln!(out, "{:<8} {:<12} {:>8}  job", "verdict", "key", "time");
    for o in outcomes {
        let v = o.shown();
        *counts.entry(v.clone()).or_default() += 1;
        let _ = writeln!(
            out,
            "{v:<8} {:<12} {:>7.1}s  {}",
            &o.key[..12],
            o.duration.as_secs_f64(),
            o.label
        );
        if let Some(r) = &o.reason
            && o.verdict != Some(Verdict::Pass)
        {
            let _ = writeln!(out, "{:<8} {:<12} {:>8}  ↳ {r}", "", "", "");
        }
        if let Some(l) = &o.log
            && matches!(o.verdict, Some(Verdict::Fail | Verdict::Error))
        {
            let _ = writeln!(
                out,
                "{:<8} {:<12} {:>8}  ↳ log: {}",
                "",
                "",
                "",
                l.display()
            );
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let _ = writeln!(
        out,
        "ran {}: {}; {reused} already had results",
        super::count(outcomes.len(), "job"),
        parts.join(", ")
    );
    let _ = out.flush();
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
