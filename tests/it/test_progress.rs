//! Live progress without a terminal: a line when each job starts and ends, and a periodic
//! "still running: …" naming each running job (tested with a short interval: the slow job
//! waits for a file the test writes only once that line has appeared, so nothing depends
//! on timing).

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::common::TestEnv;

const PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\n";

/// Tests `slow` (waits until `marker` exists) and `quick`, both over components/xen,
/// with a pending bump of xen on staging.
fn repo(marker: &std::path::Path) -> TestEnv {
    let slow = format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.02; done\n",
        marker.display()
    );
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", PIPELINE),
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        (
            "tests/slow.yaml",
            "name: slow\nuses: [components/xen]\nrun: ./tests/slow.sh\ntimeout: 2m\n",
        ),
        ("tests/slow.sh", &slow),
        (
            "tests/quick.yaml",
            "name: quick\nuses: [components/xen]\nrun: ./tests/quick.sh\n",
        ),
        ("tests/quick.sh", "#!/bin/sh\nexit 0\n"),
    ]);
    env.commit_on(
        "staging",
        "Bump xen",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    env
}

#[test]
fn without_a_terminal_each_job_start_and_end_is_a_line_and_long_jobs_are_still_running() {
    let scratch = tempfile::Builder::new()
        .prefix("stagegate-scratch-")
        .tempdir()
        .unwrap();
    let marker = scratch.path().join("let-slow-finish");
    let env = repo(&marker);

    let mut child = env
        .sg_cmd(&["run", "-j", "2"])
        .env("STAGEGATE_STILL_RUNNING", "100ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut released = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if !released && line.starts_with("still running: ") && line.contains("slow") {
            assert!(!line.contains("quick"), "quick finished at once: {line}");
            std::fs::write(&marker, "").unwrap();
            released = true;
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    assert!(
        released,
        "no \"still running\" line named the slow job:\n{text}"
    );
    let at = |what: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("no such line in\n{text}"))
    };
    let slow_started = at(&|l| l.starts_with("started ") && l.contains("slow"));
    let quick_started = at(&|l| l.starts_with("started ") && l.contains("quick"));
    let quick_ended = at(&|l| l.contains("] pass") && l.contains("quick"));
    let still = at(&|l| l.starts_with("still running: ") && l.contains("slow"));
    let slow_ended = at(&|l| l.contains("] pass") && l.contains("slow"));
    assert!(slow_started < still && still < slow_ended, "{text}");
    assert!(quick_started < quick_ended, "{text}");
    // Each "still running" line gives the time so far.
    assert!(lines[still].contains("s)"), "{text}");
}

#[test]
fn a_still_running_interval_that_is_not_a_duration_is_a_usage_error() {
    let env = repo(std::path::Path::new("/nonexistent"));
    let out = env
        .sg_cmd(&["run"])
        .env("STAGEGATE_STILL_RUNNING", "often")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("STAGEGATE_STILL_RUNNING=\"often\" is not a duration"),
        "{err}"
    );
}

#[test]
fn run_dry_run_json_is_one_document_listing_what_would_run() {
    let env = repo(std::path::Path::new("/nonexistent"));
    let out = env.sg_ok(&["run", "--dry-run", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"));
    let jobs: Vec<&str> = v["would_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(jobs.len(), 2, "{v}");
    assert!(jobs.iter().any(|j| j.contains("slow")), "{v}");
    assert_eq!(v["reused"], 0, "{v}");
}

#[test]
fn a_run_whose_summary_goes_into_a_closed_pipe_ends_quietly_with_its_results_recorded() {
    let scratch = tempfile::Builder::new()
        .prefix("stagegate-scratch-")
        .tempdir()
        .unwrap();
    let marker = scratch.path().join("let-slow-finish");
    std::fs::write(&marker, "").unwrap();
    let env = repo(&marker);
    let mut child = env
        .sg_cmd(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before the summary is written: its write gets EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}: {err}",
        out.status
    );
    // The summary comes after the results are recorded: both jobs have one.
    let again = env.sg_ok(&["run", "--dry-run"]);
    assert!(
        again.contains("0 to run, 2 with results already"),
        "{again}"
    );
}
