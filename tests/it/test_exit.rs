//! The README's exit code table (DESIGN.md §5), row by row: 1 only for a new "no" in this
//! run, 3 for an infrastructure failure or a job `error` in this run (3 wins over 1),
//! nothing already true before the command changes its exit, read-only commands exit 0
//! unless they could not read, 2 for usage and input errors.

use crate::common::TestEnv;
use crate::test_run::repo_with_tests;

/// The exit code of `stagegate ARGS`, with stdout and stderr for the message.
fn code(env: &TestEnv, args: &[&str]) -> (i32, String) {
    let out = env.sg(args);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "stagegate {args:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn expect(env: &TestEnv, want: i32, args: &[&str]) -> String {
    let (got, text) = code(env, args);
    assert_eq!(got, want, "{text}");
    text
}

const PASS: &str = "#!/bin/sh\nexit 0\n";
const FAIL: &str = "#!/bin/sh\necho broken; exit 1\n";
const ERROR: &str = "#!/bin/sh\necho 'no emulator' >&2; exit 125\n";

/// xen 1 → 2 pending on staging, judged by the tests `(name, script)`.
fn repo(tests: &[(&str, &str)]) -> TestEnv {
    let t: Vec<(&str, &str, &str)> = tests.iter().map(|(n, s)| (*n, "", *s)).collect();
    repo_with_tests(&t)
}

/// A repository whose candidate was rejected by an earlier cycle (that one exited 1).
fn rejected_before() -> TestEnv {
    let env = repo(&[("t", FAIL)]);
    expect(&env, 1, &["cycle", "--no-poll"]);
    env
}

#[test]
fn exit_init() {
    let env = TestEnv::new();
    let dir = env.home().join("fresh");
    let out = env
        .sg_cmd(&["init", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let file = env.home().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = env
        .sg_cmd(&["init", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn exit_check() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["check"]);
    env.write(
        "tests/t.yaml",
        "name: t\nuses: [components/nope]\nrun: ./tests/t.sh\n",
    );
    expect(&env, 1, &["check"]);
    let bare = TestEnv::new();
    std::fs::create_dir_all(&bare.repo).unwrap();
    bare.git(&["init", "-q"]);
    expect(&bare, 2, &["check"]);
}

#[test]
fn exit_read_only_commands_are_0_whatever_the_states() {
    // A standing rejection and an errored job: still 0 for whoever only reads.
    let env = repo(&[("t", FAIL), ("e", ERROR)]);
    expect(&env, 3, &["cycle", "--no-poll"]);
    for args in [
        &["status"][..],
        &["status", "--format", "json"],
        &["plan"],
        &["why", "components/xen"],
        &["log"],
        &["diff", "stable", "staging"],
    ] {
        expect(&env, 0, args);
    }
    let out = env.home().join("report");
    expect(&env, 0, &["report", "--out", out.to_str().unwrap()]);
    expect(&env, 2, &["why", "components/nope"]);
    expect(&env, 2, &["diff", "stable", "no-such-rev"]);
}

#[test]
fn exit_run() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["run"]);
    expect(&env, 2, &["run", "--job", "ffffffffffff"]);
    // A failure that rejects: 1.
    let env = repo(&[("t", FAIL)]);
    expect(&env, 1, &["run"]);
    // An error of this run: 3, also when a failure rejects in the same run.
    let env = repo(&[("t", FAIL), ("e", ERROR)]);
    expect(&env, 3, &["run"]);
    // An old error whose retry is not due: nothing ran, nothing new: 0.
    expect(&env, 0, &["run"]);
}

#[test]
fn exit_run_failure_that_blocks_nothing_is_0() {
    // The gate compares with baselines, and the baseline fails too: not a regression.
    let env = repo(&[("t", FAIL)]);
    env.commit_on(
        "stable",
        "baselines",
        &[(
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n",
        )],
    );
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["merge", "-q", "--no-edit", "stable"]);
    let text = expect(&env, 0, &["run"]);
    assert!(text.contains("fail"), "{text}");
}

#[test]
fn exit_promote() {
    let env = repo(&[("t", FAIL)]);
    expect(&env, 1, &["run"]);
    expect(&env, 1, &["promote", "--dry-run"]);
    expect(&env, 1, &["promote"]);
    // Standing: 0, and listed.
    let text = expect(&env, 0, &["promote", "--format", "json"]);
    assert!(
        text.contains("\"standing\": [\n      \"components/xen\""),
        "{text}"
    );
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["run"]);
    expect(&env, 0, &["promote"]);
}

#[test]
fn exit_cycle() {
    let env = rejected_before();
    expect(&env, 0, &["cycle", "--no-poll"]);
    // 3 wins over 1.
    let env = repo(&[("t", FAIL), ("e", ERROR)]);
    expect(&env, 3, &["cycle", "--no-poll"]);
    // A test whose script cannot run (exit 126) is an error of this cycle: 3, not 0.
    let env = repo(&[("t", "#!/bin/sh\nexit 126\n")]);
    expect(&env, 3, &["cycle", "--no-poll"]);
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["cycle", "--no-poll"]);
}

#[test]
fn exit_hold_release_drop() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 2, &["hold", "components/nope", "--reason", "x"]);
    expect(&env, 0, &["hold", "components/xen", "--reason", "vendor"]);
    expect(&env, 0, &["release", "components/xen"]);
    expect(&env, 0, &["drop", "components/xen", "--reason", "bad"]);
}

#[test]
fn exit_overrides() {
    let env = rejected_before();
    let key = env.json(&["why", "components/xen", "--format", "json"])["pending"][0]["evaluation"]
        ["jobs"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    expect(&env, 2, &["waive", &key[..12]]);
    expect(&env, 0, &["waive", &key[..12], "--reason", "known"]);
    expect(&env, 0, &["freeze", "stable", "--reason", "release"]);
    expect(&env, 0, &["unfreeze", "stable", "--reason", "done"]);
    expect(&env, 0, &["quarantine", "tests/t", "--reason", "flaky lab"]);
    expect(&env, 0, &["unquarantine", "tests/t", "--reason", "fixed"]);
    expect(&env, 2, &["approve", "stagegate.yaml"]);
}

#[test]
fn exit_recheck() {
    let env = rejected_before();
    expect(&env, 2, &["recheck", "components/xen"]);
    expect(&env, 2, &["recheck", "tests/t", "--reason", "x"]);
    expect(&env, 0, &["recheck", "components/xen", "--reason", "fixed"]);
    expect(&env, 0, &["recheck", "--all", "--reason", "fixed"]);
}

#[test]
fn exit_poll() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["poll"]);
}

#[test]
fn exit_bisect() {
    let env = rejected_before();
    expect(&env, 2, &["bisect", "components/xen"]);
}

#[test]
fn exit_verify() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["cycle", "--no-poll"]);
    expect(&env, 0, &["verify"]);
}

#[test]
fn exit_hook() {
    let env = repo(&[("t", PASS)]);
    let bare = env.bare_clone("shared.git");
    expect(
        &env,
        0,
        &["hook", "install", "--pre-receive", bare.to_str().unwrap()],
    );
}

#[test]
fn exit_store() {
    let env = repo(&[("t", PASS)]);
    let file = env.home().join("blob");
    std::fs::write(&file, "bytes").unwrap();
    expect(&env, 0, &["store", "put", file.to_str().unwrap()]);
    expect(&env, 2, &["store", "get", "not-a-digest"]);
}

#[test]
fn exit_completions_and_man() {
    let env = repo(&[("t", PASS)]);
    expect(&env, 0, &["completions", "bash"]);
    expect(&env, 2, &["completions", "no-such-shell"]);
    expect(&env, 0, &["man"]);
}

#[test]
fn exit_log_of() {
    let env = rejected_before();
    expect(&env, 2, &["log-of", "ffffffffffff"]);
}
