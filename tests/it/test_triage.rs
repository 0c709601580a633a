//! Triage on real repositories: recorded overrides with a scope and an expiry (waive,
//! approve, freeze, quarantine), and flake history with the gate's `flaky` policy.
//!
//! Expiry is tested without waiting: `STAGEGATE_NOW` sets the clock of one command.

use std::time::{Duration, SystemTime};

use stagegate::promote::DecisionRecord;

use crate::common::{TestEnv, base_env};
use crate::test_boundary::{edit_ledger, rewrite_record};

const LEDGER: &str = "refs/stagegate/results";

/// Boots unless xen is a 2.x (always broken), or the flag file `$HOME/FLAG` exists for the
/// xen version in it (`base-fails` for xen 1, `cand-fails` for any other).
const BOOT: &str = r#"#!/bin/sh
x="$STAGEGATE_COMPONENT_XEN_VERSION"
echo "booting xen $x"
case "$x" in 2*) echo "xen $x: no console"; exit 1;; esac
[ "$x" = 1 ] && [ -f "$HOME/base-fails" ] && { echo "xen 1: lost the disk"; exit 1; }
[ "$x" != 1 ] && [ -f "$HOME/cand-fails" ] && { echo "xen $x: lost the disk"; exit 1; }
echo "login prompt reached"
"#;
const BOOT_TEST: &str = "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n";

fn pipeline(flaky: &str) -> String {
    format!(
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [test], baseline: true{flaky}}}\n"
    )
}

fn repo_with(flaky: &str) -> TestEnv {
    TestEnv::init_with(&[
        ("stagegate.yaml", &pipeline(flaky)),
        ("components/xen.yaml", &component("xen", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

fn repo() -> TestEnv {
    repo_with("")
}

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
}

fn bump(env: &TestEnv, version: &str) {
    env.commit_on(
        "staging",
        &format!("Bump xen to {version}"),
        &[("components/xen.yaml", &component("xen", version))],
    );
}

/// RFC 3339 of now + `secs` (negative: in the past).
fn at(secs: i64) -> String {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs((-secs) as u64)
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Run stagegate with its clock at `now`; returns (code, stdout, stderr).
fn sg_at(env: &TestEnv, now: &str, args: &[&str]) -> (i32, String, String) {
    let out = env.sg_cmd(args).env("STAGEGATE_NOW", now).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_json(env: &TestEnv, now: Option<&str>) -> serde_json::Value {
    let out = match now {
        Some(n) => sg_at(env, n, &["status", "--format", "json"]).1,
        None => env.sg_ok(&["status", "--format", "json"]),
    };
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

fn state(env: &TestEnv, now: Option<&str>) -> String {
    status_json(env, now)["candidates"][0]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The key of the candidate's boot job, and of its baseline, as `why` shows them.
fn keys(env: &TestEnv) -> (String, String) {
    let why = env.json(&["why", "components/xen", "--format", "json"]);
    let job = &why["pending"][0]["evaluation"]["jobs"][0];
    (
        job["key"].as_str().unwrap().to_string(),
        job["baseline_key"].as_str().unwrap().to_string(),
    )
}

/// The decision record the newest promotion on stable added.
fn decision(env: &TestEnv) -> DecisionRecord {
    let added = env.git(&[
        "diff",
        "--name-only",
        "--diff-filter=A",
        "stable^",
        "stable",
        "--",
        ".stagegate/decisions",
    ]);
    let path = added.lines().next().expect("a decision record");
    let text = env.git(&["show", &format!("stable:{path}")]);
    stagegate::records::parse(path, text.as_bytes()).unwrap()
}

fn version_on_stable(env: &TestEnv) -> String {
    env.git(&["show", "stable:components/xen.yaml"])
}

#[test]
fn a_waiver_expires_and_can_be_removed_and_the_rejection_stands_again() {
    let env = repo();
    bump(&env, "2");
    env.sg_code(1, &["cycle"]);
    assert_eq!(state(&env, None), "rejected");
    let (key, _) = keys(&env);
    let out = env.sg_ok(&[
        "waive",
        &key[..10],
        "--reason",
        "console test broken upstream",
        "--expires",
        "2099-12-01",
    ]);
    assert!(out.contains("until 2099-12-01T00:00:00Z"), "{out}");
    // In force now; lapsed after its expiry (the clock moved, nothing else did).
    assert_eq!(state(&env, None), "promote");
    assert_eq!(state(&env, Some("2099-12-02T00:00:00Z")), "rejected");
    let listed = &status_json(&env, None)["overrides"];
    assert_eq!(listed[0]["kind"], "waive", "{listed}");
    let scope = listed[0]["scope"].as_str().unwrap();
    assert!(scope.contains("(test boot [components/xen])"), "{scope}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let text = env.sg_ok(&["status"]);
    assert!(text.contains(&format!("waive {id} of job")), "{text}");
    assert!(text.contains("console test broken upstream"), "{text}");

    // Removed: a record of its own; the waiver stays in history.
    let out = env.sg_ok(&["waive", "--remove", &id, "--reason", "fixed upstream"]);
    assert!(out.starts_with(&format!("lifted waive {id}")), "{out}");
    assert_eq!(state(&env, None), "rejected");
    let log = env.sg_ok(&["log"]);
    assert!(log.contains("unwaive"), "{log}");
    assert!(log.contains(&format!("{id} of job")), "{log}");
    let json = env.json(&["log", "--format", "json"]);
    let kinds: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"waive") && kinds.contains(&"unwaive"),
        "{kinds:?}"
    );
    let (_, err) = env.sg_code(2, &["waive", "--remove", &id, "--reason", "again"]);
    assert!(
        err.contains(&format!("no waive in force has the id {id}")),
        "{err}"
    );

    // Waived again, for good: the promotion names the waiver, its author and reason.
    env.sg_ok(&["waive", &key, "--reason", "known broken console"]);
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    let d = decision(&env);
    assert_eq!(d.overrides.len(), 1, "{:?}", d.overrides);
    assert_eq!(d.overrides[0].kind, "waive");
    assert_eq!(d.overrides[0].reason, "known broken console");
    assert!(d.overrides[0].by.contains('@'), "{:?}", d.overrides[0]);
    assert!(d.jobs.iter().any(|j| j.state == "waived"), "{:?}", d.jobs);
}

#[test]
fn a_waiver_lapses_when_the_content_it_waived_changes() {
    let env = repo();
    bump(&env, "2");
    env.sg_code(1, &["cycle"]);
    let (key, _) = keys(&env);
    env.sg_ok(&["waive", &key, "--reason", "xen 2 console is cosmetic"]);
    assert_eq!(state(&env, None), "promote");
    // A new version of the same item: new job keys, which no one waived.
    bump(&env, "2.1");
    env.sg_code(1, &["cycle"]);
    assert_eq!(state(&env, None), "rejected");
    assert!(version_on_stable(&env).contains("\"1\""));
    let s = status_json(&env, None);
    assert!(
        s["overrides"].as_array().unwrap().is_empty(),
        "the old waiver does not apply to the new content: {s}"
    );
}

#[test]
fn a_freeze_stops_every_promotion_until_it_is_lifted() {
    let env = repo();
    bump(&env, "3");
    let out = env.sg_ok(&["freeze", "stable", "--reason", "release 4.21 in progress"]);
    assert!(out.starts_with("froze freeze "), "{out}");
    assert!(out.contains("of stage stable"), "{out}");
    let before = env.rev("stable");
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("stable is frozen by "), "{out}");
    assert!(out.contains("release 4.21 in progress"), "{out}");
    assert!(out.contains("components/xen 1 → 3: held"), "{out}");
    assert_eq!(env.rev("stable"), before);
    // The job ran and was recorded all the same.
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("ok   test  boot"), "{why}");
    assert!(why.contains("frozen: stable is frozen by"), "{why}");
    let s = status_json(&env, None);
    assert_eq!(s["frozen"][0]["kind"], "freeze", "{s}");
    assert_eq!(s["candidates"][0]["state"], "held");
    assert!(env.sg_ok(&["status"]).contains("FROZEN: freeze "));
    let json = env.json(&["promote", "--format", "json"]);
    assert_eq!(json[0]["frozen"][0]["reason"], "release 4.21 in progress");
    assert!(json[0]["promoted"].is_null());

    let out = env.sg_ok(&["unfreeze", "stable", "--reason", "4.21 is out"]);
    assert!(out.starts_with("lifted freeze "), "{out}");
    let log = env.sg_ok(&["log"]);
    assert!(log.contains("unfreeze"), "{log}");
    assert!(log.contains("freeze "), "{log}");
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    assert_eq!(
        env.sg_ok(&["unfreeze", "stable"]).trim(),
        "stable is not frozen"
    );
}

#[test]
fn a_freeze_ends_at_its_expiry() {
    let env = repo();
    bump(&env, "3");
    env.sg_ok(&["freeze", "stable", "--reason", "weekend", "--for", "2d"]);
    env.sg_ok(&["run"]);
    assert_eq!(state(&env, None), "held");
    assert_eq!(state(&env, Some(&at(3 * 86400))), "promote");
    let (code, out, err) = sg_at(&env, &at(3 * 86400), &["promote"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("promoted components/xen as "), "{out}");
}

#[test]
fn the_first_stage_cannot_be_frozen() {
    let env = repo();
    let (_, err) = env.sg_code(2, &["freeze", "staging", "--reason", "x"]);
    assert!(err.contains("staging is the first stage"), "{err}");
    assert!(
        err.contains("help: freeze a stage after it: stable"),
        "{err}"
    );
    let (_, err) = env.sg_code(2, &["freeze", "prod", "--reason", "x"]);
    assert!(err.contains("prod"), "{err}");
    let (_, err) = env.sg_code(2, &["freeze", "stable"]);
    assert!(err.contains("an override needs a reason"), "{err}");
}

#[test]
fn a_bad_expiry_is_a_usage_error_that_says_what_is_expected() {
    let env = repo();
    bump(&env, "2");
    for (args, want) in [
        (
            vec!["freeze", "stable", "--reason", "x", "--expires", "tomorrow"],
            "--expires \"tomorrow\" is not a date or a time",
        ),
        (
            vec!["freeze", "stable", "--reason", "x", "--for", "3 parsecs"],
            "--for \"3 parsecs\" is not a duration",
        ),
        (
            vec![
                "freeze",
                "stable",
                "--reason",
                "x",
                "--expires",
                "2001-01-01",
            ],
            "the expiry 2001-01-01T00:00:00Z has already passed",
        ),
        (
            vec![
                "quarantine",
                "boot",
                "--reason",
                "x",
                "--expires",
                "2099-01-01",
                "--for",
                "1d",
            ],
            "--expires and --for both say when the override ends",
        ),
        (
            vec!["quarantine", "boot", "--reason", "x", "--for", "0s"],
            "--for 0 would end the override before it starts",
        ),
    ] {
        let (_, err) = env.sg_code(2, &args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("help: "), "{args:?}: {err}");
    }
    // Nothing was recorded.
    assert_eq!(env.git(&["for-each-ref", LEDGER]), "");
}

#[test]
fn a_quarantined_test_runs_and_records_but_does_not_gate() {
    let env = repo();
    let out = env.sg_ok(&[
        "quarantine",
        "tests/boot",
        "--reason",
        "boot is flaky on the new lab",
        "--expires",
        "2099-01-01",
    ]);
    assert!(out.starts_with("quarantined quarantine "), "{out}");
    assert!(out.contains("of test boot"), "{out}");
    let s = status_json(&env, None);
    assert_eq!(s["overrides"][0]["kind"], "quarantine", "{s}");
    assert!(env.sg_ok(&["status"]).contains("quarantine "));

    bump(&env, "2");
    // Quarantined, its failure blocks nothing: not a new "no" (exit 0). After its expiry it
    // gates again.
    env.sg_code(0, &["run"]);
    assert_eq!(state(&env, Some("2099-01-02T00:00:00Z")), "rejected");
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    let d = decision(&env);
    assert!(
        d.jobs.iter().any(|j| j.state == "quarantined"),
        "{:?}",
        d.jobs
    );
    assert_eq!(d.overrides[0].kind, "quarantine");
    assert_eq!(d.overrides[0].reason, "boot is flaky on the new lab");
    // It ran, and its failure is recorded.
    let paths = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    assert!(
        paths
            .lines()
            .filter(|p| crate::common::is_result_path(p))
            .count()
            >= 2,
        "{paths}"
    );

    let out = env.sg_ok(&["unquarantine", "boot", "--reason", "lab fixed"]);
    assert!(out.starts_with("lifted quarantine "), "{out}");
    assert!(
        status_json(&env, None)["overrides"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(env.sg_ok(&["log", "tests/boot"]).contains("unquarantine"));
    let out = env.sg_ok(&["unquarantine", "boot"]);
    assert_eq!(out.trim(), "tests/boot is not quarantined");
}

/// Baseline fails, then passes on a re-run: flaky. The candidate fails once.
fn flaky_baseline(env: &TestEnv) -> (String, String) {
    bump(env, "3");
    std::fs::write(env.home().join("base-fails"), "").unwrap();
    std::fs::write(env.home().join("cand-fails"), "").unwrap();
    // Both fail, like each other: nothing said no yet (exit 0).
    env.sg_code(0, &["run"]);
    let (key, base) = keys(env);
    std::fs::remove_file(env.home().join("base-fails")).unwrap();
    env.sg_ok(&["run", "--rerun", &base]);
    (key, base)
}

#[test]
fn a_failure_over_a_flaky_baseline_is_a_heisenbug_that_blocks_by_default() {
    let env = repo();
    flaky_baseline(&env);
    let (out, _) = env.sg_code(1, &["promote"]);
    assert!(out.contains("components/xen 1 → 3: rejected"), "{out}");
    assert!(
        out.contains("is flaky (its baseline on stable is flaky: 2 runs: 1 pass, 1 fail;"),
        "{out}"
    );
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(
        why.contains("baseline history: 2 runs: 1 pass, 1 fail; last pass "),
        "{why}"
    );
    assert!(why.contains("the gate blocks flaky failures"), "{why}");
    let json = env.json(&["why", "components/xen", "--format", "json"]);
    let job = &json["pending"][0]["evaluation"]["jobs"][0];
    assert_eq!(job["state"], "heisenbug");
    assert_eq!(job["baseline_history"]["runs"], 2);
    assert_eq!(job["history"]["fails"], 1);
}

#[test]
fn a_flaky_policy_of_wait_asks_for_more_tries_then_decides() {
    let env = repo_with(", flaky: {policy: wait, tries: 1}");
    flaky_baseline(&env);
    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("components/xen 1 → 3: wait"), "{out}");
    assert!(
        out.contains("waits for 1 more try (each `stagegate run` tries it again)"),
        "{out}"
    );
    // A plain run tries it again, and adds to the record: still failing, it is rejected,
    // and nothing retries it any more.
    let (out, _) = env.sg_code(1, &["run"]);
    assert!(out.contains("ran 1 job: 1 fail"), "{out}");
    let (out, _) = env.sg_code(1, &["promote"]);
    assert!(out.contains("components/xen 1 → 3: rejected"), "{out}");
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("history: 2 runs: 0 pass, 2 fail"), "{why}");
    // The rejection stands from the promote before: reported, not signalled.
    let (out, _) = env.sg_code(0, &["cycle"]);
    assert!(out.contains("nothing to run"), "{out}");
}

#[test]
fn a_flaky_policy_of_allow_lets_a_heisenbug_through_with_its_history_in_the_decision() {
    let env = repo_with(", flaky: {policy: allow}");
    // The same job, run again, fails where it passed: a heisenbug the gate allows (exit 0).
    let key = passed_then_failed(&env, 0);
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("history: 2 runs: 1 pass, 1 fail"), "{why}");
    assert!(why.contains("it passed before for the same key"), "{why}");
    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    let d = decision(&env);
    let job = d.jobs.iter().find(|j| j.key == key).unwrap();
    assert_eq!(job.state, "heisenbug_allowed");
    let h = job.history.as_ref().expect("the history of a re-run job");
    assert_eq!((h.runs, h.passes, h.fails), (2, 1, 1));
    assert!(h.last_pass.is_some() && h.first_fail.is_some());
}

#[test]
fn a_bad_flaky_policy_is_located_in_stagegate_yaml() {
    for (flaky, want) in [
        (
            ", flaky: {policy: sometimes}",
            "unknown flaky policy \"sometimes\"",
        ),
        (
            ", flaky: {policy: wait}",
            "`flaky.policy: wait` needs `tries`",
        ),
        (
            ", flaky: {policy: block, tries: 2}",
            "`flaky.tries` only counts with `policy: wait`",
        ),
        (
            ", flaky: {policy: wait, tries: 99}",
            "`flaky.tries` is 99; it must be 1 to 20",
        ),
    ] {
        let env = repo_with(flaky);
        let (_, err) = env.sg_code(1, &["check"]);
        assert!(err.contains("stagegate.yaml:4:"), "{flaky}: {err}");
        assert!(err.contains(want), "{flaky}: {err}");
        assert!(err.contains("help: "), "{flaky}: {err}");
    }
}

#[test]
fn a_clock_that_does_not_parse_is_ignored_with_a_warning() {
    let env = repo();
    let mut cmd = env.sg_cmd(&["status"]);
    base_env(&mut cmd, env.home());
    let out = cmd.env("STAGEGATE_NOW", "yesterday").output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STAGEGATE_NOW=\"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn a_quarantine_lifts_a_rejection_resting_on_its_test() {
    let env = repo();
    bump(&env, "2");
    env.sg_code(1, &["cycle"]);
    assert_eq!(state(&env, None), "rejected");
    env.sg_ok(&[
        "quarantine",
        "boot",
        "--reason",
        "boot is broken in the lab",
    ]);
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    let d = decision(&env);
    assert_eq!(d.overrides[0].kind, "quarantine", "{:?}", d.overrides);
}

/// The history counts `why` shows for a job: runs, passes, fails.
fn assert_runs_passes_fails(job: &serde_json::Value, (runs, passes, fails): (u64, u64, u64)) {
    let h = &job["history"];
    assert_eq!(
        (&h["runs"], &h["passes"], &h["fails"]),
        (&runs.into(), &passes.into(), &fails.into()),
        "{job:#}"
    );
}

/// The candidate's boot job as `why --format json` shows it, and what `why` wrote to stderr.
fn why_job(env: &TestEnv) -> (serde_json::Value, String) {
    let out = env.sg(&["why", "components/xen", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let why: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = why["pending"][0]["evaluation"]["jobs"][0].clone();
    (job, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Bump xen to 3 and run its candidate job, which passes; then make it fail and run it
/// again, which exits `code` (1 when the gate's flaky policy rejects the heisenbug, 0 when
/// it allows it). Returns the job's key.
fn passed_then_failed(env: &TestEnv, code: i32) -> String {
    bump(env, "3");
    env.sg_ok(&["run"]);
    let (key, _) = keys(env);
    std::fs::write(env.home().join("cand-fails"), "").unwrap();
    env.sg_code(code, &["run", "--rerun", &key]);
    key
}

/// The ledger directory of `key`, and the names of its attempts' files, in order.
fn attempt_files(env: &TestEnv, key: &str) -> (String, Vec<String>) {
    let dir = format!("{}/{}/{key}", &key[..2], &key[2..4]);
    let names = env.git(&["ls-tree", "--name-only", &format!("{LEDGER}:{dir}")]);
    (dir, names.lines().map(String::from).collect())
}

#[test]
fn a_ledger_written_before_verdicts_were_named_is_read_and_added_to() {
    let env = repo();
    let key = passed_then_failed(&env, 1);
    // Rename both attempts as a stagegate that did not name the verdict wrote them.
    let (dir, names) = attempt_files(&env, &key);
    let old: Vec<String> = names
        .iter()
        .map(|n| format!("{}.yaml", n.rsplit_once('-').unwrap().0))
        .collect();
    let texts: Vec<String> = names
        .iter()
        .map(|n| env.git(&["show", &format!("{LEDGER}:{dir}/{n}")]) + "\n")
        .collect();
    let (from, to): (Vec<String>, Vec<String>) = names
        .iter()
        .zip(&old)
        .map(|(n, o)| (format!("{dir}/{n}"), format!("{dir}/{o}")))
        .unzip();
    let mut edits: Vec<(&str, Option<&str>)> = from.iter().map(|p| (p.as_str(), None)).collect();
    edits.extend(
        to.iter()
            .zip(&texts)
            .map(|(p, t)| (p.as_str(), Some(t.as_str()))),
    );
    edit_ledger(&env, &edits);
    // As an older stagegate left it: these names from the start, no commit renaming them.
    let tree = env.git(&["rev-parse", &format!("{LEDGER}^{{tree}}")]);
    let root = env.git(&["commit-tree", &tree, "-m", "Results of an older stagegate"]);
    env.git(&["update-ref", LEDGER, &root]);
    assert_eq!(attempt_files(&env, &key).1, old);

    let (job, err) = why_job(&env);
    assert!(err.is_empty(), "{err}");
    assert_eq!(job["verdict"], "fail", "{job:#}");
    assert_runs_passes_fails(&job, (2, 1, 1));
    assert!(
        env.sg_ok(&["log-of", &key])
            .contains("xen 3: lost the disk")
    );
    let first = env.sg_ok(&["log-of", &key, "--attempt", "1"]);
    assert!(first.contains("login prompt reached"), "{first}");
    let out = env.sg(&["run"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to run"),
        "{out:?}"
    );
    // A re-run adds a named attempt beside the old ones; all three count.
    std::fs::remove_file(env.home().join("cand-fails")).unwrap();
    env.sg_ok(&["run", "--rerun", &key]);
    let (_, now) = attempt_files(&env, &key);
    assert_eq!(now[..2], old[..]);
    assert!(
        now[2].starts_with("0003-") && now[2].ends_with("-pass.yaml"),
        "{now:?}"
    );
    let (job, _) = why_job(&env);
    assert_eq!(job["verdict"], "pass", "{job:#}");
    assert_runs_passes_fails(&job, (3, 2, 1));
    // The report reads every record, old and new: the baseline's and the three attempts.
    let out = env.home().join("site");
    env.sg_ok(&["report", "--out", out.to_str().unwrap()]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["runs_read"], 4, "{:#}", report["runs_read"]);
}

#[test]
fn the_history_is_counted_from_the_attempts_names_reading_only_the_records_it_needs() {
    let env = repo();
    // Re-run three times: pass, fail, fail, pass.
    let key = passed_then_failed(&env, 1);
    env.sg_code(1, &["run", "--rerun", &key]);
    std::fs::remove_file(env.home().join("cand-fails")).unwrap();
    env.sg_ok(&["run", "--rerun", &key]);
    // Each attempt's file is named NNNN-XXXXXXXX-VERDICT.yaml.
    let (dir, names) = attempt_files(&env, &key);
    assert_eq!(names.len(), 4, "{names:?}");
    for (name, (n, verdict)) in
        names
            .iter()
            .zip([(1, "pass"), (2, "fail"), (3, "fail"), (4, "pass")])
    {
        let parts: Vec<&str> = name.strip_suffix(".yaml").unwrap().split('-').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!(parts[0], format!("{n:04}"), "{name}");
        assert!(
            parts[1].len() == 8 && parts[1].bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(parts[2], verdict, "{name}");
    }
    let (job, _) = why_job(&env);
    assert_eq!(job["state"], "passed");
    let history = job["history"].clone();
    assert_eq!(
        (
            &history["runs"],
            &history["passes"],
            &history["fails"],
            &history["tries-since-first-fail"]
        ),
        (&4.into(), &2.into(), &2.into(), &2.into()),
        "{history:#}"
    );
    // The gate reads the newest attempt (also the last pass) and the first failure (2):
    // attempt 3's record is never read, so a record there that no longer parses changes
    // nothing, and nothing reports it.
    let third = format!("{dir}/{}", names[2]);
    let intact = env.git(&["show", &format!("{LEDGER}:{third}")]);
    rewrite_record(&env, &third, "verdict: [broken\n");
    let (job, err) = why_job(&env);
    assert_eq!(job["history"], history);
    assert!(!err.contains("skipped a ledger record"), "{err}");
    let out = env.sg(&["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("skipped a ledger record"), "{err}");
    // Break the first failure's record instead: it is read, skipped and reported as
    // everywhere, and the history counts the attempts that remain.
    rewrite_record(&env, &third, &format!("{intact}\n"));
    rewrite_record(&env, &format!("{dir}/{}", names[1]), "verdict: [broken\n");
    let (job, err) = why_job(&env);
    assert_eq!(err.matches("skipped a ledger record").count(), 1, "{err}");
    assert!(err.contains(&names[1]), "{err}");
    assert_eq!(job["history"]["runs"], 3, "{:#}", job["history"]);
    assert_eq!(job["history"]["fails"], 1, "{:#}", job["history"]);
}
