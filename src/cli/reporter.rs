//! Printing a run as it happens: the library's run reports [`Event`]s, and the reporters
//! here print them: text for people (live progress on stderr, the summary on stdout), the
//! run's JSON document for programs, and GitHub annotations for failed jobs in Actions.
//!
//! Reporters write to an [`Output`], not to the process's streams directly, so what they
//! print can be read back from a buffer (the snapshot tests below).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Format;
use crate::advice::Advice;
use crate::error::{Error, Result};
use crate::ledger::Verdict;
use crate::runner::session::{Report, Sink};
use crate::runner::{Event, Outcome};

/// Where reporters write: results to `out` (stdout), progress to `err` (stderr), and what
/// those are (a terminal gets a live bar; GitHub Actions gets annotations).
///
/// Writing never fails a command. A closed pipe (`stagegate run | head`) ends the process
/// with SIGPIPE on the write, quietly, as `cli::main` sets up; any other write error (a
/// full disk under `> file`) leaves the stream alone for the rest of the command: the
/// results are in the ledger either way, and there is nobody left on that stream to tell.
pub struct Output {
    out: Mutex<Stream>,
    err: Mutex<Stream>,
    /// `err` is a terminal: progress is a live bar there, not lines.
    terminal: bool,
    /// In GitHub Actions: failed jobs also become annotations on `out`.
    github: bool,
}

/// One stream, and whether a write to it has failed.
struct Stream {
    w: Box<dyn Write + Send>,
    failed: bool,
}

impl Stream {
    fn new(w: impl Write + Send + 'static) -> Mutex<Stream> {
        Mutex::new(Stream {
            w: Box::new(w),
            failed: false,
        })
    }
}

impl Output {
    /// The process's stdout and stderr.
    pub fn stdio() -> Output {
        Output {
            out: Stream::new(std::io::stdout()),
            err: Stream::new(std::io::stderr()),
            terminal: std::io::stderr().is_terminal(),
            github: super::github::active(),
        }
    }

    /// Write what `render` writes to stdout, in one write: `println!` per line would be a
    /// write per line, and a thousand jobs are a thousand lines.
    pub fn out(&self, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
        Self::write(&self.out, render);
    }

    /// Write what `render` writes to stderr, in one write (stderr is unbuffered: `eprintln!`
    /// writes each piece of its format on its own, three writes for `started …`).
    pub fn err(&self, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
        Self::write(&self.err, render);
    }

    fn write(stream: &Mutex<Stream>, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
        let mut buf = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = render(&mut buf);
        let mut s = stream.lock().expect("output lock");
        if s.failed || buf.is_empty() {
            return;
        }
        if s.w.write_all(&buf).and_then(|()| s.w.flush()).is_err() {
            s.failed = true;
        }
    }
}

/// Every reporter a run's events go to, as `format` asks: text, or the JSON document
/// (handed out by [`RunReporter::take_json`]); GitHub annotations either way.
pub struct RunReporter {
    output: Output,
    text: Option<Text>,
    /// The JSON document of each run that finished, in order.
    json: Option<Mutex<Vec<serde_json::Value>>>,
}

impl RunReporter {
    /// A reporter printing to stdout and stderr.
    pub fn new(format: Format) -> Arc<RunReporter> {
        RunReporter::to(format, Output::stdio())
    }

    fn to(format: Format, output: Output) -> Arc<RunReporter> {
        Arc::new(RunReporter {
            output,
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
            if self.output.github {
                self.output.out(|w| annotate_failures(report, w));
            }
            if let Some(json) = &self.json {
                json.lock().expect("reporter lock").push(run_json(report));
            }
        }
        if let Some(text) = &self.text {
            text.event(&self.output, e);
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
        let mut doc = serde_json::json!({"would_run": rows, "reused": report.reused});
        if !report.left.is_empty() {
            doc["left"] = serde_json::json!(report.left);
        }
        return doc;
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
    let mut doc = serde_json::json!({
        "ran": rows,
        "reused": report.reused,
        "recorded": report.recorded,
        "interrupted": report.interrupted,
    });
    if !report.deferred.is_empty() {
        doc["deferred"] = report
            .deferred
            .iter()
            .map(|d| serde_json::json!(d))
            .collect();
    }
    if !report.left.is_empty() {
        doc["left"] = serde_json::json!(report.left);
    }
    doc
}

/// For GitHub Actions: an error annotation for each job that failed or ended in error.
fn annotate_failures(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
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
        super::github::job_failed(out, &o.label, o.reason.as_deref(), excerpt, log.as_deref())?;
    }
    Ok(())
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

/// A progress line on stderr.
fn say(output: &Output, line: &str) {
    output.err(|w| writeln!(w, "{line}"));
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
    fn event(&self, output: &Output, e: Event) {
        match e {
            Event::RunStarted { total } => self.start(output, total),
            Event::Started { label } => self.started(output, label),
            Event::StillRunning { running } => self.still_running(output, running),
            Event::Retrying {
                label,
                attempt,
                reason,
            } => self.line(
                output,
                &format!("retrying {label} (try {attempt}; {reason})"),
            ),
            Event::Finished { outcome } => self.finished(output, outcome),
            Event::RunFinished { report } => output.out(|w| print_report(report, w)),
        }
    }

    /// The run's jobs are chosen: show the bar on a terminal.
    fn start(&self, output: &Output, total: usize) {
        // The bar draws on the process's stderr itself, which `output.terminal` says is a
        // terminal; every other output gets lines.
        let bar = output.terminal.then(|| {
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
    fn line(&self, output: &Output, line: &str) {
        match self.state().as_ref().and_then(|p| p.bar.as_ref()) {
            Some(b) => b.println(line),
            None => say(output, line),
        }
    }

    fn started(&self, output: &Output, label: &str) {
        let Some(p) = self.state() else { return };
        p.jobs
            .lock()
            .expect("display lock")
            .1
            .push((label.to_string(), Instant::now()));
        match &p.bar {
            Some(_) => p.show_running(),
            None => say(output, &format!("started {label}")),
        }
    }

    fn still_running(&self, output: &Output, running: &[(String, Duration)]) {
        let Some(p) = self.state() else { return };
        match &p.bar {
            // The bar's message already names them; refresh the times.
            Some(_) => p.show_running(),
            None => say(
                output,
                &format!(
                    "still running: {}",
                    running_list(running.iter().map(|(l, d)| (l.as_str(), *d)))
                ),
            ),
        }
    }

    fn finished(&self, output: &Output, outcome: &Outcome) {
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
            None => say(output, &line),
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

/// ` (`stagegate why ITEM` says more)` for the first of a job's candidates, or nothing.
fn why_of(items: &[String]) -> String {
    items
        .first()
        .map(|item| format!(" (`{}` says more)", Advice::Why { item: item.clone() }))
        .unwrap_or_default()
}

/// What a run did, for people: what would run (a dry run), that nothing needed running,
/// or a table of the jobs that ran.
fn print_report(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    print_main_report(report, out)?;
    if !report.deferred.is_empty() {
        writeln!(
            out,
            "not run now: {} that could not run before (each waits for its retry's backoff, or, its error budget spent, for a recheck; `{}` runs them now)",
            super::count(report.deferred.len(), "job"),
            Advice::RunFailed
        )?;
        for d in &report.deferred {
            writeln!(out, "  {} {}{}", d.key.short(), d.job, why_of(&d.items))?;
        }
    }
    if !report.left.is_empty() {
        writeln!(
            out,
            "left for other runners: {} this runner cannot serve (nothing is recorded for them)",
            super::count(report.left.len(), "job")
        )?;
        for l in &report.left {
            writeln!(
                out,
                "  {} {}: {}{}",
                l.key.short(),
                l.job,
                l.why,
                why_of(&l.items)
            )?;
        }
    }
    Ok(())
}

fn print_main_report(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    if report.dry_run {
        for (key, job) in &report.would_run {
            writeln!(out, "would run {} {job}", key.short())?;
        }
        writeln!(
            out,
            "{} to run, {} with results already",
            report.would_run.len(),
            report.reused
        )
    } else if report.outcomes.is_empty() {
        if report.reused == 0 {
            writeln!(out, "nothing to run: no jobs are planned")
        } else {
            writeln!(
                out,
                "nothing to run: {} planned, all with results",
                super::count(report.reused, "job")
            )
        }
    } else {
        print_summary(&report.outcomes, report.reused, out)?;
        if report.interrupted {
            writeln!(
                out,
                "interrupted: running jobs were killed; {} finished results were recorded",
                report.recorded
            )?;
        }
        Ok(())
    }
}

fn print_summary(outcomes: &[Outcome], reused: usize, out: &mut impl Write) -> std::io::Result<()> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    writeln!(out, "{:<8} {:<12} {:>8}  job", "verdict", "key", "time")?;
    for o in outcomes {
        let v = o.shown();
        *counts.entry(v.clone()).or_default() += 1;
        writeln!(
            out,
            "{v:<8} {:<12} {:>7.1}s  {}",
            o.key.short(),
            o.duration.as_secs_f64(),
            o.label
        )?;
        if let Some(r) = &o.reason
            && o.verdict != Some(Verdict::Pass)
        {
            writeln!(out, "{:<8} {:<12} {:>8}  ↳ {r}", "", "", "")?;
        }
        if let Some(l) = &o.log
            && matches!(o.verdict, Some(Verdict::Fail | Verdict::Error))
        {
            writeln!(
                out,
                "{:<8} {:<12} {:>8}  ↳ log: {}",
                "",
                "",
                "",
                l.display()
            )?;
        }
    }
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(
        out,
        "ran {}: {}; {reused} already had results",
        super::count(outcomes.len(), "job"),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{Output, RunReporter, Stream};
    use crate::cli::Format;
    use crate::ledger::{ResultRecord, Verdict};
    use crate::runner::session::Report;
    use crate::runner::{Event, Outcome};

    /// A stream the test reads back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A reporter writing to two buffers (stdout, stderr), as in GitHub Actions or not.
    fn reporter(format: Format, github: bool) -> (Arc<RunReporter>, Buf, Buf) {
        let (out, err) = (Buf::default(), Buf::default());
        let output = Output {
            out: Stream::new(out.clone()),
            err: Stream::new(err.clone()),
            terminal: false,
            github,
        };
        (RunReporter::to(format, output), out, err)
    }

    fn outcome(key: &str, label: &str, verdict: Option<Verdict>, secs: f64) -> Outcome {
        Outcome {
            key: key.into(),
            label: label.into(),
            verdict,
            reason: None,
            duration: Duration::from_secs_f64(secs),
            log: None,
            record: None,
            elsewhere: false,
        }
    }

    /// The failed job's record: only its excerpt is printed.
    fn record_with_excerpt(excerpt: &str) -> ResultRecord {
        serde_json::from_value(serde_json::json!({
            "key": "b".repeat(64), "kind": "test", "name": "guest-boots", "role": "gate",
            "verdict": "fail", "exit": {"code": 1}, "tries": 2,
            "started": "2025-01-01T00:00:00Z", "finished": "2025-01-01T00:01:05Z",
            "duration-ms": 65000, "runner": {"host": "h", "user": "u", "pid": 1},
            "commit": "c".repeat(40), "env": [], "excerpt": excerpt,
        }))
        .unwrap()
    }

    /// A run of three jobs: a two-hour build passes, a test fails on its second try (its
    /// log excerpt tries to forge a workflow command), and a test never starts.
    fn three_jobs() -> Report {
        let build = outcome(
            &"a".repeat(64),
            "build images/host",
            Some(Verdict::Pass),
            3725.0,
        );
        let mut boots = outcome(
            &"b".repeat(64),
            "test guest-boots",
            Some(Verdict::Fail),
            65.25,
        );
        boots.reason = Some("exit status 1".into());
        boots.log = Some(PathBuf::from("/var/tmp/stagegate/logs/guest-boots.log"));
        boots.record = Some(record_with_excerpt(
            "booting\nkernel panic\n::error title=forged::pwned",
        ));
        let mut net = outcome(&"d".repeat(64), "test net-up", None, 0.0);
        net.reason = Some("the build it needs (images/host) failed".into());
        Report {
            outcomes: vec![build, boots, net],
            recorded: 2,
            interrupted: false,
            reused: 4,
            dry_run: false,
            would_run: Vec::new(),
            left: Vec::new(),
            deferred: Vec::new(),
            rejecting: Default::default(),
        }
    }

    /// Every kind of event, in the order a run reports them.
    fn play(reporter: &Arc<RunReporter>, report: &Report) {
        let sink = reporter.sink();
        let [build, boots, net] = &report.outcomes[..] else {
            panic!("three outcomes")
        };
        sink(Event::RunStarted { total: 3 });
        sink(Event::Started {
            label: &build.label,
        });
        sink(Event::Started {
            label: &boots.label,
        });
        sink(Event::StillRunning {
            running: &[
                (build.label.clone(), Duration::from_secs(3600)),
                (boots.label.clone(), Duration::from_secs(40)),
            ],
        });
        sink(Event::Retrying {
            label: &boots.label,
            attempt: 2,
            reason: "exit status 1",
        });
        sink(Event::Finished { outcome: boots });
        sink(Event::Finished { outcome: build });
        sink(Event::Finished { outcome: net });
        sink(Event::RunFinished { report });
    }

    /// The random fence token of a log excerpt, made stable for the snapshot.
    fn stable(text: &str) -> String {
        let mut out = text.to_string();
        while let Some(at) = out.find("stagegate-") {
            let end = at + "stagegate-".len() + 32;
            assert!(
                out[at + "stagegate-".len()..end]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit()),
                "{out}"
            );
            out.replace_range(at..end, "[fence]");
        }
        out
    }

    #[test]
    fn text_without_a_terminal_is_a_line_per_step_then_the_summary_on_stdout() {
        let (reporter, out, err) = reporter(Format::Text, false);
        play(&reporter, &three_jobs());
        insta::assert_snapshot!("text_stderr", err.text());
        insta::assert_snapshot!("text_stdout", out.text());
        assert!(reporter.take_json().is_empty(), "text makes no JSON");
    }

    #[test]
    fn in_github_actions_failed_jobs_are_annotations_with_their_excerpt_fenced() {
        let (reporter, out, _) = reporter(Format::Text, true);
        play(&reporter, &three_jobs());
        insta::assert_snapshot!("github_stdout", stable(&out.text()));
    }

    #[test]
    fn json_prints_nothing_itself_and_hands_out_each_run_once() {
        let (reporter, out, err) = reporter(Format::Json, false);
        play(&reporter, &three_jobs());
        assert_eq!((out.text(), err.text()), (String::new(), String::new()));
        insta::assert_json_snapshot!("json_runs", reporter.take_json());
        assert!(reporter.take_json().is_empty(), "handed out once");
    }

    #[test]
    fn a_dry_run_an_empty_run_and_an_interrupted_run_read_as_such() {
        let show = |report: &Report| {
            let mut buf = Vec::new();
            super::print_report(report, &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        let nothing = |reused: usize| Report {
            outcomes: Vec::new(),
            recorded: 0,
            interrupted: false,
            reused,
            dry_run: false,
            would_run: Vec::new(),
            left: Vec::new(),
            deferred: Vec::new(),
            rejecting: Default::default(),
        };
        let dry = Report {
            dry_run: true,
            would_run: vec![
                ("a".repeat(64).into(), "build images/host".into()),
                ("b".repeat(64).into(), "test guest-boots".into()),
            ],
            ..nothing(1)
        };
        let mut interrupted = three_jobs();
        interrupted.interrupted = true;
        interrupted.outcomes.truncate(1);
        interrupted.recorded = 1;
        let text = [&dry, &nothing(0), &nothing(3), &interrupted]
            .map(show)
            .join("---\n");
        insta::assert_snapshot!("report_kinds", text);
    }

    /// A stream that refuses every write, counting them.
    struct Refusing(Arc<Mutex<usize>>);

    impl Write for Refusing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stream_that_fails_is_left_alone_and_the_run_goes_on() {
        let (out_writes, err_writes) = (Arc::default(), Arc::default());
        let output = Output {
            out: Stream::new(Refusing(Arc::clone(&out_writes))),
            err: Stream::new(Refusing(Arc::clone(&err_writes))),
            terminal: false,
            github: true,
        };
        let reporter = RunReporter::to(Format::Text, output);
        play(&reporter, &three_jobs());
        assert_eq!(*err_writes.lock().unwrap(), 1, "one try, then no more");
        assert_eq!(*out_writes.lock().unwrap(), 1, "one try, then no more");
    }

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
