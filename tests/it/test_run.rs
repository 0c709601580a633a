//! `stagegate run`: real scripts on real repositories, checked through the ledger
//! (`refs/stagegate/results`), the logs, the output and the exit code.
//!
//! Scripts report to a scratch directory outside the repository (jobs run in a temporary
//! checkout), whose absolute path is written into the script itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stagegate::ledger::{ResultRecord, Verdict};

use crate::common::{TestEnv, base_env};

const LEDGER: &str = "refs/stagegate/results";
/// Two stages; entering stable needs tests, no baseline (one job per test).
pub(crate) const PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\n";
pub(crate) const XEN_1: &str = "name: xen\nversion: \"1\"\n";
pub(crate) const XEN_2: &str = "name: xen\nversion: \"2\"\n";

/// A directory outside the repository where scripts leave evidence.
pub(crate) fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stagegate-scratch-")
        .tempdir()
        .unwrap()
}

pub(crate) fn test_yaml(name: &str, uses: &str, script: &str, extra: &str) -> String {
    format!("name: {name}\nuses: [{uses}]\nrun: ./tests/{script}\n{extra}")
}

/// Tests over `components/xen` (name, extra manifest fields, script), with a pending
/// commit on staging that bumps xen from 1 to 2: one candidate job per test.
pub(crate) fn repo_with_tests(tests: &[(&str, &str, &str)]) -> TestEnv {
    let mut files: Vec<(String, String)> = vec![
        ("stagegate.yaml".into(), PIPELINE.into()),
        ("components/xen.yaml".into(), XEN_1.into()),
    ];
    for (name, extra, script) in tests {
        files.push((
            format!("tests/{name}.yaml"),
            test_yaml(name, "components/xen", &format!("{name}.sh"), extra),
        ));
        files.push((format!("tests/{name}.sh"), script.to_string()));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let env = TestEnv::init_with(&refs);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", XEN_2)],
    );
    env
}

/// One test `t` (with `extra` manifest fields) running `script`.
pub(crate) fn repo_with_test(extra: &str, script: &str) -> TestEnv {
    repo_with_tests(&[("t", extra, script)])
}

/// `git ARGS` in the repository, `None` when it fails.
pub(crate) fn git_maybe(env: &TestEnv, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("git");
    base_env(&mut cmd, env.home());
    let out = cmd.arg("-C").arg(&env.repo).args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

pub(crate) fn ledger_tip(env: &TestEnv) -> Option<String> {
    git_maybe(env, &["rev-parse", "--verify", "-q", LEDGER]).map(|s| s.trim().to_string())
}

/// Every record on the ledger, by path; each must parse as a result record.
pub(crate) fn ledger(env: &TestEnv) -> BTreeMap<String, ResultRecord> {
    if ledger_tip(env).is_none() {
        return BTreeMap::new();
    }
    let paths = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    paths
        .lines()
        .filter(|p| crate::common::is_result_path(p))
        .map(|path| {
            let text = env.git(&["show", &format!("{LEDGER}:{path}")]);
            let record: ResultRecord = stagegate::records::parse(path, text.as_bytes())
                .unwrap_or_else(|e| panic!("{path} does not parse: {e}\n{text}"));
            (path.to_string(), record)
        })
        .collect()
}

/// The only record on the ledger.
pub(crate) fn only_record(env: &TestEnv) -> (String, ResultRecord) {
    let all = ledger(env);
    assert_eq!(all.len(), 1, "{all:#?}");
    all.into_iter().next().unwrap()
}

/// The planned jobs of every move: key → (name, role).
fn planned(env: &TestEnv) -> BTreeMap<String, (String, String)> {
    let plan = env.json(&["plan", "--format", "json"]);
    let mut out = BTreeMap::new();
    for mv in plan.as_array().unwrap() {
        let jobs: Vec<&serde_json::Value> = match &mv["jobs"] {
            serde_json::Value::Object(m) => m.values().collect(),
            other => other.as_array().unwrap().iter().collect(),
        };
        for job in jobs {
            out.insert(
                job["key"].as_str().unwrap().to_string(),
                (
                    job["name"].as_str().unwrap().to_string(),
                    job["role"].as_str().unwrap().to_string(),
                ),
            );
        }
    }
    out
}

pub(crate) fn key_of(env: &TestEnv, name: &str) -> String {
    let keys: Vec<String> = planned(env)
        .into_iter()
        .filter(|(_, (n, _))| n == name)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys.len(), 1, "{name}: {keys:?}");
    keys.into_iter().next().unwrap()
}

/// The ledger path of attempt `n` of `key`, without the writer nonce.
fn attempt_prefix(key: &str, n: u32) -> String {
    format!("{}/{}/{key}/{n:04}-", &key[..2], &key[2..4])
}

/// Wait for something outside the test's control (a process writing a file); bounded.
pub(crate) fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_within(Duration::from_secs(60), what, done)
}

fn wait_within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process is gone when /proc has no entry for it, or only a zombie's (nothing in this
/// container may be reaping orphans).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(state_of(&stat), Some('Z' | 'X')),
        Err(_) => false,
    }
}

/// The runner has sent SIGKILL by the time it returns; the kernel finishes the exit on its
/// own schedule, so give it a moment (a survivor fails the test after 10 s).
fn assert_dies(what: &str, gone: impl FnMut() -> bool) {
    wait_within(Duration::from_secs(10), what, gone);
}

/// The state letter of a /proc/<pid>/stat line (after the parenthesised command name).
fn state_of(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Live (non-zombie) processes in process group `pgid`.
fn live_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // state ppid pgrp ...
        if fields.len() > 2
            && fields[2].parse::<i32>() == Ok(pgid)
            && !matches!(fields[0], "Z" | "X")
        {
            out.push(pid);
        }
    }
    out
}

pub(crate) fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// --- verdicts ---

#[test]
fn a_passing_job_is_recorded_as_pass_with_its_output() {
    let env = repo_with_test("", "#!/bin/sh\necho hello from the test\nexit 0\n");
    let key = key_of(&env, "t");
    let out = env.sg_ok(&["run", "-j", "2"]);
    assert!(out.contains("1 pass"), "{out}");
    let (path, r) = only_record(&env);
    assert!(path.starts_with(&attempt_prefix(&key, 1)), "{path}");
    assert!(path.ends_with(".yaml"), "{path}");
    assert_eq!(r.key, key);
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.exit.code, Some(0));
    assert_eq!(r.tries, 1);
    assert_eq!(r.kind, "test");
    assert_eq!(r.name, "t");
    assert_eq!(r.role, "candidate");
    // The test is stable's: the rules, and the tests, come from the target stage.
    assert_eq!(r.commit, env.rev("stable"));
    assert_eq!(r.env[0].item, "components/xen");
    assert_eq!(r.env[0].version, "2");
    assert_eq!(r.excerpt, "hello from the test");
    // The excerpt is the whole output: no log file was written, and log-of prints it.
    assert_eq!(r.log, None);
    assert_eq!(env.sg_ok(&["log-of", &key]), "hello from the test\n");
}

#[test]
fn a_passing_job_with_more_output_than_its_excerpt_keeps_a_log_file() {
    let env = repo_with_test("", "#!/bin/sh\nseq 1 30\nexit 0\n");
    let key = key_of(&env, "t");
    env.sg_ok(&["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(
        r.excerpt.starts_with("11\n") && r.excerpt.ends_with("\n30"),
        "{}",
        r.excerpt
    );
    let log = std::fs::read_to_string(r.log.as_ref().expect("a log")).unwrap();
    let whole: String = (1..=30).map(|i| format!("{i}\n")).collect();
    assert_eq!(log, whole);
    assert_eq!(env.sg_ok(&["log-of", &key]), whole);
}

#[test]
fn passing_jobs_with_little_output_write_no_file_in_the_log_directory() {
    let env = repo_with_test("", "#!/bin/sh\necho fine\nexit 0\n");
    env.sg_ok(&["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(
        !env.repo.join(".git/stagegate/logs").exists(),
        "a log directory was made for a job whose excerpt holds its output"
    );
}

#[test]
fn a_failing_job_is_recorded_as_fail_and_run_exits_1() {
    let env = repo_with_test("", "#!/bin/sh\necho something broke >&2\nexit 3\n");
    let (out, _) = env.sg_code(1, &["run"]);
    assert!(out.contains("1 fail"), "{out}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.exit.code, Some(3));
    assert_eq!(r.tries, 1);
    assert_eq!(r.reason.as_deref(), Some("exit status 3"));
    assert!(r.excerpt.contains("something broke"), "{r:#?}");
}

#[test]
fn a_flaky_job_is_recorded_as_flaky() {
    let dir = scratch();
    let d = dir.path().display();
    // Fails the first time (leaving a marker), passes the second.
    let script = format!(
        "#!/bin/sh\nif [ -e {d}/tried ]; then echo second try; exit 0; fi\ntouch {d}/tried\necho first try fails\nexit 1\n"
    );
    let env = repo_with_test("retries: 1\n", &script);
    let out = env.sg_ok(&["run"]);
    assert!(out.contains("1 flaky"), "{out}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Flaky);
    assert_eq!(r.tries, 2);
    assert_eq!(r.exit.code, Some(0));
    assert!(r.reason.as_deref().unwrap().contains("try 2"), "{r:#?}");
    // The log keeps the failed try too: it is the evidence of the flake.
    let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
    assert!(log.contains("first try fails"), "{log}");
    assert!(log.contains("second try"), "{log}");
}

#[test]
fn a_retry_is_a_line_as_it_happens() {
    let dir = scratch();
    let d = dir.path().display();
    let script =
        format!("#!/bin/sh\nif [ -e {d}/tried ]; then exit 0; fi\ntouch {d}/tried\nexit 4\n");
    let env = repo_with_test("retries: 1\n", &script);
    let (_, err) = env.sg_code(0, &["run"]);
    let lines: Vec<&str> = err.lines().collect();
    let at = |p: &str| lines.iter().position(|l| l.starts_with(p)).expect(p);
    assert!(
        lines.contains(&"retrying test  t [components/xen] (try 2; exit status 4)"),
        "{err}"
    );
    assert!(
        at("started ") < at("retrying ") && at("retrying ") < at("[1/1] flaky"),
        "{err}"
    );
}

#[test]
fn cycle_format_json_prints_one_document() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    let out = env.sg_ok(&["cycle", "--format", "json"]);
    // One document: parsing the whole of stdout fails if anything else was printed.
    let doc: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(doc["poll"], serde_json::json!([]), "{doc:#}");
    assert_eq!(doc["interrupted"], false);
    let moves = doc["moves"].as_array().unwrap();
    assert_eq!(moves.len(), 1, "{doc:#}");
    assert_eq!(
        (moves[0]["from"].as_str(), moves[0]["to"].as_str()),
        (Some("staging"), Some("stable"))
    );
    let ran = &moves[0]["runs"][0]["ran"];
    assert!(
        ran.as_array()
            .unwrap()
            .iter()
            .all(|r| r["verdict"] == "pass")
            && ran[0]["key"].is_string(),
        "{doc:#}"
    );
    let promoted = moves[0]["promote"]["promoted"].as_str().unwrap();
    assert_eq!(env.rev("stable"), env.rev(promoted));
}

#[test]
fn each_try_starts_with_an_empty_output_directory() {
    let dir = scratch();
    let d = dir.path().display();
    let script = format!(
        "#!/bin/sh\nif [ -n \"$(ls -A \"$STAGEGATE_OUT\")\" ]; then echo leftovers; exit 2; fi\ntouch \"$STAGEGATE_OUT/partial\"\nif [ -e {d}/tried ]; then exit 0; fi\ntouch {d}/tried\nexit 1\n"
    );
    let env = repo_with_test("retries: 1\n", &script);
    env.sg_ok(&["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Flaky, "{r:#?}");
}

#[test]
fn a_job_that_keeps_failing_uses_its_retries_and_is_a_fail() {
    let env = repo_with_test("retries: 2\n", "#!/bin/sh\nexit 1\n");
    env.sg_code(1, &["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(r.tries, 3);
}

#[test]
fn a_timed_out_job_is_an_error_and_its_children_are_killed() {
    let dir = scratch();
    let d = dir.path().display();
    let script = format!("#!/bin/sh\nsleep 1000 &\necho $! > {d}/child.pid\nwait\n");
    let env = repo_with_test("timeout: 2s\n", &script);
    let started = Instant::now();
    let (out, _) = env.sg_code(3, &["run"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run waited for the child"
    );
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Error);
    let reason = r.reason.unwrap();
    assert!(reason.contains("timed out after 2s"), "{reason}");
    assert!(out.contains("timed out"), "{out}");
    let child = read_pid(&dir.path().join("child.pid"));
    assert_dies("the background child to be gone with the job", || {
        !alive(child)
    });
}

#[test]
fn a_job_printing_200_mb_gets_a_capped_log_that_says_what_was_cut() {
    let script = "#!/bin/sh\necho first-line\nhead -c 200000000 /dev/zero | tr '\\0' x\necho\necho last-line\n";
    let env = repo_with_test("", script);
    let out = env
        .sg_cmd(&["run"])
        .env("STAGEGATE_LOG_CAP", "1000000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(r.excerpt.ends_with("last-line"), "{}", r.excerpt);
    assert!(r.excerpt.len() <= 4096);
    let log = std::fs::read(r.log.as_ref().unwrap()).unwrap();
    assert!(log.len() < 1_000_200, "the log is {} bytes", log.len());
    assert!(log.starts_with(b"first-line\n"));
    assert!(log.ends_with(b"\nlast-line\n"));
    // 11 + 200,000,000 + 1 + 10 bytes printed, 2 × 500,000 kept.
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("[stagegate: 199000022 bytes of output cut here"),
        "no note of the cut"
    );
}

#[test]
fn a_script_with_a_missing_interpreter_is_an_error_with_a_reason() {
    let env = repo_with_tests(&[]);
    env.commit_on(
        "staging",
        "Add a python test",
        &[
            (
                "tests/py.yaml",
                &test_yaml("py", "components/xen", "py.sh", ""),
            ),
            // Executable (the helper marks *.sh so), with an interpreter that is not there.
            ("tests/py.sh", "#!/nonexistent/python\nprint('hi')\n"),
        ],
    );
    let (out, err) = env.sg_code(3, &["run"]);
    assert!(!err.contains("panicked"), "{err}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Error);
    assert_eq!(r.exit.code, Some(127));
    let reason = r.reason.unwrap();
    assert!(reason.contains("interpreter not found"), "{reason}");
    assert!(out.contains("interpreter not found"), "{out}");
}

/// A job's own "I could not test" (exit 125, as `git bisect run` uses it) is an `error`
/// saying so, never a failure: `run` exits 3, and the candidate waits on staging, not
/// rejected, until a runner can test it; then that verdict settles it.
#[test]
fn a_job_exiting_125_could_not_test_is_an_error_and_the_candidate_waits() {
    let script = "#!/bin/sh\n\
        [ -e \"$HOME/can-test\" ] && exit 0\n\
        echo 'qemu-system-x86_64 is missing: this runner cannot boot images' >&2\n\
        exit 125\n";
    let env = repo_with_test("", script);
    let stable = env.rev("stable");
    let (out, _) = env.sg_code(3, &["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    assert_eq!(r.exit.code, Some(125));
    let reason = r.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("the job declared it could not test (exit 125)"),
        "{reason}"
    );
    assert!(out.contains("could not test"), "{out}");
    assert!(
        r.excerpt.contains("qemu-system-x86_64 is missing"),
        "{}",
        r.excerpt
    );

    // The gate waits on an error: nothing moves, and nothing is rejected.
    env.sg(&["promote"]);
    assert_eq!(env.rev("stable"), stable);
    let status = env.sg_ok(&["status"]);
    assert!(!status.contains("rejected"), "{status}");
    let recorded = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    assert!(
        !recorded.lines().any(|p| p.starts_with("decisions/")),
        "no rejection is recorded\n{recorded}"
    );

    // Within the error's backoff (5 minutes by default) a run leaves it alone.
    let out = env.sg_ok(&["run"]);
    assert!(out.contains("not run now: 1 job"), "{out}");
    // A runner that can test runs the job again after it, and its pass promotes the
    // candidate.
    std::fs::write(env.home().join("can-test"), "").unwrap();
    let later = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string();
    for args in [&["run"][..], &["promote"]] {
        let out = env
            .sg_cmd(args)
            .env("STAGEGATE_NOW", &later)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]),
        XEN_2.trim()
    );
}

#[test]
fn a_test_whose_script_is_a_symlink_is_invalid_and_never_runs() {
    let env = repo_with_tests(&[]);
    env.git(&["checkout", "-q", "staging"]);
    env.write(
        "tests/linked.yaml",
        &test_yaml("linked", "components/xen", "linked.sh", ""),
    );
    std::os::unix::fs::symlink("/bin/true", env.repo.join("tests/linked.sh")).unwrap();
    env.git(&["add", "-A"]);
    env.git(&[
        "commit",
        "-q",
        "--no-verify",
        "-m",
        "Add a test whose script is a link",
    ]);
    let out = env.sg_ok(&["run"]);
    assert!(!out.contains("linked"), "{out}");
    assert!(ledger(&env).values().all(|r| r.name != "linked"));
    let status = env.sg_ok(&["status"]);
    assert!(status.contains("  tests/linked new: invalid\n"), "{status}");
    assert!(
        status.contains("\"tests/linked.sh\" is (or is under) a symbolic link"),
        "{status}"
    );
}

#[test]
fn a_test_whose_script_is_missing_is_invalid_and_never_runs() {
    let env = repo_with_tests(&[]);
    env.commit_on(
        "staging",
        "Add a test without its script",
        &[(
            "tests/gone.yaml",
            &test_yaml("gone", "components/xen", "gone.sh", ""),
        )],
    );
    let out = env.sg_ok(&["run"]);
    assert!(!out.contains("gone"), "{out}");
    assert!(ledger(&env).values().all(|r| r.name != "gone"));
    let status = env.sg_ok(&["status"]);
    assert!(status.contains("  tests/gone new: invalid\n"), "{status}");
    assert!(
        status.contains("\"tests/gone.sh\" does not exist in the repository"),
        "{status}"
    );
}

// --- interruption ---

/// Start `run -j 2` on a quick test and a test that blocks; once the quick result is in
/// the ledger and the blocker has started, send `signal`. The run must exit 130 with the
/// quick result kept, no result for the blocker, and the blocker's process group gone.
fn interrupt_with(signal: i32) {
    let dir = scratch();
    let d = dir.path().display();
    // Record the process group, then block on a background child.
    let blocker = format!(
        "#!/bin/sh\nsleep 1000 &\necho $! > {d}/child.pid\ncut -d' ' -f5 /proc/$$/stat > {d}/pgid.tmp\nmv {d}/pgid.tmp {d}/started\nwait\n"
    );
    let env = repo_with_tests(&[
        ("quick", "", "#!/bin/sh\nexit 0\n"),
        ("block", "", &blocker),
    ]);
    let quick = key_of(&env, "quick");
    let block = key_of(&env, "block");
    let child = env
        .sg_cmd(&["run", "-j", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = dir.path().join("started");
    wait_until(
        "the blocking job to start and the quick one to be recorded",
        || started.exists() && ledger_tip(&env).is_some(),
    );
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    // Every record parses; the finished job is there, the killed one is not.
    let records = ledger(&env);
    let keys: Vec<&str> = records.values().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec![quick.as_str()], "{records:#?}");
    assert!(!keys.contains(&block.as_str()));
    let pgid = read_pid(&started);
    assert!(pgid > 1);
    let child = read_pid(&dir.path().join("child.pid"));
    assert_dies("the job's process group to be gone", || {
        live_members(pgid).is_empty() && !alive(child)
    });
    // The interrupted job has no result, so the next run picks it up again.
    let dry = env.sg_ok(&["run", "--dry-run"]);
    assert!(
        dry.contains(&format!("would run {}", &block[..12])),
        "{dry}"
    );
    assert!(!dry.contains(&quick[..12]), "{dry}");
}

#[test]
fn sigterm_mid_run_exits_130_without_a_partial_result() {
    interrupt_with(libc::SIGTERM);
}

#[test]
fn sigint_mid_run_exits_130_without_a_partial_result() {
    interrupt_with(libc::SIGINT);
}

// --- concurrency ---

#[test]
fn eight_sharded_runners_at_once_record_every_job_exactly_once() {
    let mut files: Vec<(String, String)> = vec![
        // With a baseline: 40 candidate jobs and 40 baseline jobs.
        (
            "stagegate.yaml".into(),
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n".into(),
        ),
        ("components/xen.yaml".into(), XEN_1.into()),
        ("tests/ok.sh".into(), "#!/bin/sh\nexit 0\n".into()),
    ];
    for i in 0..40 {
        files.push((
            format!("tests/t{i:02}.yaml"),
            test_yaml(&format!("t{i:02}"), "components/xen", "ok.sh", ""),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let env = TestEnv::init_with(&refs);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", XEN_2)],
    );
    let planned = planned(&env);
    assert_eq!(planned.len(), 80);

    let children: Vec<_> = (1..=8)
        .map(|i| {
            env.sg_cmd(&["run", "--shard", &format!("{i}/8"), "-j", "2"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let records = ledger(&env);
    let mut per_key: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records.values() {
        assert_eq!(r.verdict, Verdict::Pass);
        *per_key.entry(r.key.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert_eq!(duplicated, Vec::<(&&str, &usize)>::new(), "recorded twice");
    let recorded: BTreeSet<&str> = per_key.keys().copied().collect();
    let expected: BTreeSet<&str> = planned.keys().map(String::as_str).collect();
    assert_eq!(recorded, expected, "lost or unplanned results");
    assert_eq!(records.len(), 80);
}

// --- selection ---

#[test]
fn a_second_run_with_nothing_changed_runs_nothing() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    env.sg_ok(&["run"]);
    let tip = ledger_tip(&env).unwrap();
    let out = env.sg_ok(&["run"]);
    assert!(out.contains("nothing to run"), "{out}");
    assert_eq!(ledger_tip(&env).unwrap(), tip, "the ledger moved");
    assert_eq!(ledger(&env).len(), 1);
}

#[test]
fn dry_run_lists_the_jobs_and_runs_nothing() {
    let dir = scratch();
    let d = dir.path().display();
    let env = repo_with_test("", &format!("#!/bin/sh\ntouch {d}/ran\n"));
    let key = key_of(&env, "t");
    let out = env.sg_ok(&["run", "--dry-run"]);
    assert!(out.contains(&format!("would run {}", &key[..12])), "{out}");
    assert!(out.contains("1 to run"), "{out}");
    assert!(!dir.path().join("ran").exists(), "the job ran");
    assert_eq!(ledger_tip(&env), None);
}

#[test]
fn run_job_runs_only_that_job() {
    let env = repo_with_tests(&[
        ("a", "", "#!/bin/sh\nexit 0\n"),
        ("b", "", "#!/bin/sh\nexit 0\n"),
    ]);
    let a = key_of(&env, "a");
    let b = key_of(&env, "b");
    env.sg_ok(&["run", "--job", &a[..12]]);
    let (_, r) = only_record(&env);
    assert_eq!(r.key, a);
    // The other job is still to run.
    let dry = env.sg_ok(&["run", "--dry-run"]);
    assert!(dry.contains(&b[..12]), "{dry}");
    assert!(!dry.contains(&a[..12]), "{dry}");
}

#[test]
fn run_job_with_an_unknown_key_is_a_usage_error() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    let (_, err) = env.sg_code(2, &["run", "--job", "0000000000"]);
    assert!(err.contains("0000000000"), "{err}");
    assert_eq!(ledger_tip(&env), None);
}

#[test]
fn rerun_adds_a_second_attempt() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    let key = key_of(&env, "t");
    env.sg_ok(&["run"]);
    env.sg_ok(&["run", "--rerun", &key[..12]]);
    let paths: Vec<String> = ledger(&env).into_keys().collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert!(paths[0].starts_with(&attempt_prefix(&key, 1)), "{paths:?}");
    assert!(paths[1].starts_with(&attempt_prefix(&key, 2)), "{paths:?}");
}

#[test]
fn failed_reruns_the_failures_only() {
    let dir = scratch();
    let d = dir.path().display();
    let env = repo_with_tests(&[
        ("good", "", "#!/bin/sh\nexit 0\n"),
        // Fails until the test says otherwise.
        ("bad", "", &format!("#!/bin/sh\ntest -e {d}/fixed\n")),
    ]);
    let good = key_of(&env, "good");
    let bad = key_of(&env, "bad");
    env.sg_code(1, &["run"]);
    // A fail is a settled result: a plain run does not repeat it.
    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let out = env.sg_ok(&["run"]);
    assert!(out.contains("nothing to run"), "{out}");
    env.sg_ok(&["run", "--failed"]);
    let records = ledger(&env);
    let attempts = |key: &str| -> Vec<(u32, Verdict)> {
        records
            .iter()
            .filter(|(_, r)| r.key == key)
            .map(|(p, r)| {
                (
                    p.split('/').nth(3).unwrap()[..4].parse().unwrap(),
                    r.verdict,
                )
            })
            .collect()
    };
    assert_eq!(attempts(&good), vec![(1, Verdict::Pass)]);
    assert_eq!(attempts(&bad), vec![(1, Verdict::Fail), (2, Verdict::Pass)]);
}

// --- what a job sees ---

#[test]
fn a_job_sees_its_key_output_dir_env_file_and_item_versions() {
    let dir = scratch();
    let d = dir.path().display();
    let script = format!(
        "#!/bin/sh\nenv -0 > {d}/env\nls -A \"$STAGEGATE_OUT\" > {d}/out-listing\ntest -d \"$STAGEGATE_OUT\" && touch {d}/out-is-dir\ncp \"$STAGEGATE_ENV_FILE\" {d}/env.json\n"
    );
    let hostile = format!("1; touch {d}/pwned $(touch {d}/pwned2) `touch {d}/pwned3`");
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", PIPELINE),
        ("components/xen.yaml", XEN_1),
        (
            "components/odd-one.yaml",
            &format!("name: odd-one\nversion: \"{hostile}\"\n"),
        ),
        (
            "tests/t.yaml",
            &test_yaml("t", "components/xen, components/odd-one", "t.sh", ""),
        ),
        ("tests/t.sh", &script),
    ]);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", XEN_2)],
    );
    let key = key_of(&env, "t");
    env.sg_ok(&["run"]);

    let raw = std::fs::read(dir.path().join("env")).unwrap();
    let vars: BTreeMap<String, String> = raw
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(vars["STAGEGATE_JOB"], key);
    assert_eq!(vars["STAGEGATE_JOB_NAME"], "t");
    assert_eq!(vars["STAGEGATE_ROLE"], "candidate");
    assert_eq!(vars["STAGEGATE_COMMIT"], env.rev("stable"));
    // The candidate at its new version, the rest at stable's.
    assert_eq!(vars["STAGEGATE_COMPONENT_XEN_VERSION"], "2");
    assert_eq!(vars["STAGEGATE_COMPONENT_XEN_CANDIDATE"], "1");
    assert_eq!(vars["STAGEGATE_COMPONENT_ODD_ONE_VERSION"], hostile);
    assert_eq!(vars["STAGEGATE_COMPONENT_ODD_ONE_CANDIDATE"], "0");
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(
            !dir.path().join(f).exists(),
            "the version was executed ({f})"
        );
    }
    // An existing, empty output directory.
    assert!(dir.path().join("out-is-dir").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out-listing")).unwrap(),
        ""
    );
    // The environment file lists every item.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("env.json")).unwrap()).unwrap();
    assert_eq!(doc["job"], key.as_str());
    let items: BTreeMap<String, (String, bool)> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["item"].as_str().unwrap().to_string(),
                (
                    i["version"].as_str().unwrap().to_string(),
                    i["candidate"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        items,
        BTreeMap::from([
            ("components/xen".to_string(), ("2".to_string(), true)),
            ("components/odd-one".to_string(), (hostile.clone(), false)),
        ])
    );
}

// --- builds ---

/// Builds required into stable, tests too; `images/disk` is bumped from 1 to 2 on
/// staging and built by `build.sh`.
pub(crate) fn repo_with_build(build_script: &str, extra: &[(&str, &str)]) -> TestEnv {
    let mut files = vec![
        (
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build, test]}\n",
        ),
        (
            "images/disk.yaml",
            "name: disk\nversion: \"1\"\nbuild: {run: ./b.sh, artifact: disk.img, lock: pkgs.lock}\n",
        ),
        ("b.sh", build_script),
    ];
    files.extend_from_slice(extra);
    let env = TestEnv::init_with(&files);
    env.commit_on(
        "staging",
        "Bump disk to 2",
        &[(
            "images/disk.yaml",
            "name: disk\nversion: \"2\"\nbuild: {run: ./b.sh, artifact: disk.img, lock: pkgs.lock}\n",
        )],
    );
    env
}

fn store_path(env: &TestEnv, hex: &str) -> PathBuf {
    env.repo.join(".git/stagegate/artifacts/sha256").join(hex)
}

fn build_records(env: &TestEnv) -> Vec<ResultRecord> {
    ledger(env)
        .into_values()
        .filter(|r| r.kind == "build")
        .collect()
}

pub(crate) const GOOD_BUILD: &str = "#!/bin/sh\nset -e\nprintf 'disk %s\\n' \"$STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\necho 'pkg-a 1.0' > \"$STAGEGATE_OUT/pkgs.lock\"\n";

#[test]
fn a_build_stores_its_artifact_by_digest_and_records_it() {
    let env = repo_with_build(GOOD_BUILD, &[]);
    env.sg_ok(&["run"]);
    let builds = build_records(&env);
    assert_eq!(builds.len(), 1, "{builds:#?}");
    let r = &builds[0];
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.name, "images/disk");
    let hex = sha256_hex(b"disk 2\n");
    let a = r.artifact.as_ref().expect("an artifact record");
    assert_eq!(a.digest, format!("sha256:{hex}"));
    assert_eq!(a.size, 7);
    assert_eq!(a.lock.as_deref(), Some("pkg-a 1.0\n"));
    assert_eq!(std::fs::read(store_path(&env, &hex)).unwrap(), b"disk 2\n");
    assert!(a.location.ends_with(&format!("sha256/{hex}")), "{a:#?}");
}

#[test]
fn a_test_gets_the_artifact_built_in_the_same_run() {
    let dir = scratch();
    let d = dir.path().display();
    let test_script = format!(
        "#!/bin/sh\nset -e\ncp \"$STAGEGATE_IMAGE_DISK_ARTIFACT\" {d}/seen\necho \"$STAGEGATE_IMAGE_DISK_DIGEST\" > {d}/digest\n"
    );
    let env = repo_with_build(
        GOOD_BUILD,
        &[
            (
                "tests/boot.yaml",
                &test_yaml("boot", "images/disk", "boot.sh", ""),
            ),
            ("tests/boot.sh", &test_script),
        ],
    );
    env.sg_ok(&["run", "-j", "2"]);
    let hex = sha256_hex(b"disk 2\n");
    assert_eq!(std::fs::read(dir.path().join("seen")).unwrap(), b"disk 2\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("digest")).unwrap(),
        format!("sha256:{hex}\n")
    );
    let test = ledger(&env)
        .into_values()
        .find(|r| r.kind == "test")
        .unwrap();
    assert_eq!(test.verdict, Verdict::Pass);
    // The record says which artifact the test ran with.
    assert_eq!(
        test.env[0].digest.as_ref().map(|d| d.as_str()),
        Some(format!("sha256:{hex}").as_str()),
        "{test:#?}"
    );
}

#[test]
fn a_build_that_does_not_write_its_artifact_fails_with_a_reason() {
    let env = repo_with_build(
        "#!/bin/sh\necho 'pkg-a 1.0' > \"$STAGEGATE_OUT/pkgs.lock\"\n",
        &[],
    );
    let (out, _) = env.sg_code(1, &["run"]);
    let r = &build_records(&env)[0];
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.artifact.is_none());
    let reason = r.reason.as_deref().unwrap();
    assert!(reason.contains("did not write its artifact"), "{reason}");
    assert!(reason.contains("disk.img"), "{reason}");
    assert!(out.contains("did not write its artifact"), "{out}");
}

#[test]
fn a_build_that_does_not_write_its_lock_fails_with_a_reason() {
    let env = repo_with_build("#!/bin/sh\necho disk > \"$STAGEGATE_OUT/disk.img\"\n", &[]);
    env.sg_code(1, &["run"]);
    let r = &build_records(&env)[0];
    assert_eq!(r.verdict, Verdict::Fail);
    let reason = r.reason.as_deref().unwrap();
    assert!(reason.contains("lock"), "{reason}");
    assert!(reason.contains("pkgs.lock"), "{reason}");
    // Nothing half-built reaches the store.
    let store = env.repo.join(".git/stagegate/artifacts/sha256");
    let stored = std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0);
}

#[test]
fn the_example_builds_the_host_and_the_guest_from_it() {
    let env = TestEnv::init_example();
    env.sg_ok(&["run", "-j", "2"]);
    let builds = build_records(&env);
    let by_name: BTreeMap<&str, &ResultRecord> =
        builds.iter().map(|r| (r.name.as_str(), r)).collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        vec!["images/debian-guest", "images/debian-host"]
    );
    let host = by_name["images/debian-host"];
    let guest = by_name["images/debian-guest"];
    assert_eq!(host.verdict, Verdict::Pass, "{host:#?}");
    assert_eq!(guest.verdict, Verdict::Pass, "{guest:#?}");
    let host_art = host.artifact.as_ref().unwrap();
    let guest_art = guest.artifact.as_ref().unwrap();
    assert_ne!(host_art.digest, guest_art.digest);
    for a in [host_art, guest_art] {
        let hex = a.digest.as_str().strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(store_path(&env, hex)).unwrap();
        assert_eq!(sha256_hex(&bytes), hex);
        assert!(a.lock.as_deref().unwrap().contains("linux-image"));
    }
    // The guest was built from the host's artifact, and its record says so.
    let parent = guest
        .env
        .iter()
        .find(|e| e.item == "images/debian-host")
        .unwrap();
    assert_eq!(
        parent.digest.as_ref().map(|d| d.as_str()),
        Some(host_art.digest.as_str())
    );
}

#[test]
fn a_test_whose_build_has_no_result_is_not_run_and_the_run_fails() {
    let env = repo_with_build(
        GOOD_BUILD,
        &[
            (
                "tests/boot.yaml",
                &test_yaml("boot", "images/disk", "boot.sh", ""),
            ),
            ("tests/boot.sh", "#!/bin/sh\nexit 0\n"),
        ],
    );
    let boot = key_of(&env, "boot");
    let build = key_of(&env, "images/disk");
    // A matrix entry for the test alone, before the build's entry ran: not a success.
    let (out, _) = env.sg_code(1, &["run", "--job", &boot[..12]]);
    assert!(out.contains("not run"), "{out}");
    assert!(
        out.contains(&format!("needs build {}", &build[..12])),
        "{out}"
    );
    assert_eq!(ledger_tip(&env), None);
    // Once the build has run, the test runs with its artifact.
    env.sg_ok(&["run", "--job", &build[..12]]);
    env.sg_ok(&["run", "--job", &boot[..12]]);
    assert_eq!(ledger(&env).len(), 2);
}

#[test]
fn a_jobs_checkout_holds_the_files_it_names_and_not_the_rest_of_the_repository() {
    // The test names a helper and a directory (its manifest comes too); the repository
    // holds other files.
    let script = "#!/bin/sh\n. ./lib/helper.sh\nhelper\nfind . -type f -o -type l | sort\n";
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", PIPELINE),
        ("components/xen.yaml", XEN_1),
        (
            "tests/t.yaml",
            &test_yaml(
                "t",
                "components/xen",
                "t.sh",
                "files: [lib/helper.sh, data]\n",
            ),
        ),
        ("tests/t.sh", script),
        ("lib/helper.sh", "helper() { echo helper ran; }\n"),
        ("lib/unnamed.sh", "echo never\n"),
        ("data/a.txt", "a\n"),
        ("data/sub/b.txt", "b\n"),
        ("unnamed.txt", "not named\n"),
    ]);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", XEN_2)],
    );
    env.sg_ok(&["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.excerpt);
    assert_eq!(
        r.excerpt,
        "helper ran\n./data/a.txt\n./data/sub/b.txt\n./lib/helper.sh\n./tests/t.sh\n./tests/t.yaml"
    );
}

#[test]
fn a_job_reads_its_own_manifest_from_its_checkout() {
    // The manifest is part of the content the key hashes, like the files it names.
    let env = repo_with_test("", "#!/bin/sh\nsed -n 's/^name: //p' tests/t.yaml\n");
    env.sg_ok(&["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.excerpt);
    assert_eq!(r.excerpt, "t");
}

#[test]
fn a_checkout_kept_for_the_next_run_holds_only_what_that_run_wrote() {
    let dir = scratch();
    let d = dir.path().display();
    // Each try notes where it ran and what it found, then leaves the checkout worse:
    // new files, a changed manifest, a script that is no longer executable.
    let script = format!(
        "#!/bin/sh
n=$(ls {d} | grep -c '^cwd')
pwd > {d}/cwd$n
find . | sort > {d}/seen$n
cp tests/t.yaml {d}/manifest$n
echo junk > junk.txt
mkdir -p build && echo o > build/out
echo 'changed: 1' >> tests/t.yaml
chmod -x tests/t.sh
"
    );
    let env = repo_with_test("", &script);
    let key = key_of(&env, "t");
    env.sg_ok(&["run"]);
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let checkout = std::path::PathBuf::from(read("cwd0").trim());
    assert!(
        !checkout.join("junk.txt").exists(),
        "what the job added outlived its run"
    );
    assert!(!checkout.join("build").exists());
    env.sg_ok(&["run", "--rerun", &key]);
    assert_eq!(read("cwd1"), read("cwd0"), "the checkout was not kept");
    assert_eq!(
        read("seen1"),
        read("seen0"),
        "the second run saw what the first left"
    );
    assert_eq!(read("manifest1"), read("manifest0"));
    assert!(!read("manifest1").contains("changed"));
    let records = ledger(&env);
    assert_eq!(records.len(), 2);
    assert!(
        records.values().all(|r| r.verdict == Verdict::Pass),
        "{records:?}"
    );
}

#[test]
fn a_manifest_copied_under_another_name_does_not_make_its_test_twice() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    env.git(&["checkout", "-q", "staging"]);
    let manifest = env.read("tests/t.yaml");
    // The same bytes under a name before `t.yaml`, where its `name: t` does not fit.
    env.commit_on("staging", "Copy t", &[("tests/a-copy.yaml", &manifest)]);
    let plan = env.json(&["plan", "--format", "json"]);
    for mv in plan.as_array().unwrap() {
        let jobs = mv["jobs"].as_array().unwrap();
        let t: Vec<_> = jobs.iter().filter(|j| j["name"] == "t").collect();
        assert!(t.len() <= 1, "test t planned {} times: {mv:#}", t.len());
    }
}

#[test]
fn a_file_a_job_reads_without_naming_it_is_missing_from_its_checkout() {
    let env = repo_with_test("", "#!/bin/sh\ncat ./stagegate.yaml\n");
    env.sg_code(1, &["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(r.excerpt.contains("stagegate.yaml"), "{}", r.excerpt);
}

#[test]
fn scripts_written_while_other_jobs_start_all_start() {
    // The checkout's files are written while the first jobs run. A child started while a
    // script was open for writing would hold it open until its exec, and a job starting
    // that script then would fail with ETXTBSY ("text file busy", exit 126).
    let names: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    let tests: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "", "#!/bin/sh\nexit 0\n"))
        .collect();
    let env = repo_with_tests(&tests);
    let out = env.sg_ok(&["run", "-j", "32"]);
    let records = ledger(&env);
    assert_eq!(records.len(), 200, "{out}");
    for (path, r) in &records {
        assert_eq!(r.verdict, Verdict::Pass, "{path}: {}\n{out}", r.excerpt);
    }
}

#[test]
fn a_job_whose_files_another_job_of_its_commit_brought_waits_for_them() {
    // The candidate's job and its baseline run one test at one commit: every file the
    // second needs was planned for the first, behind a large file the writer is still
    // writing when the first jobs start.
    let big = "x".repeat(48 << 20);
    let env = TestEnv::init_with(&[
        (
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n",
        ),
        ("components/xen.yaml", XEN_1),
        (
            "tests/t.yaml",
            "name: t\nuses: [components/xen]\nrun: ./tests/t.sh\nfiles: [data/big.bin]\n",
        ),
        ("tests/t.sh", "#!/bin/sh\ntest -s data/big.bin\n"),
        ("data/big.bin", &big),
    ]);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", XEN_2)],
    );
    let out = env.sg_ok(&["run", "-j", "2"]);
    let records = ledger(&env);
    assert_eq!(records.len(), 2, "{out}");
    for (path, r) in &records {
        assert_eq!(r.verdict, Verdict::Pass, "{path}: {}\n{out}", r.excerpt);
    }
}
