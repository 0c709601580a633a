//! Gates and promotion on real repositories: `run` (or `cycle`) records real results of
//! real scripts, then `promote` decides, merges and records; `hold`, `release` and `drop`
//! commit on the source stage; `why` and `log` explain it all.
//!
//! Most tests use a two-stage repository (`staging` → `stable`) with two components, `xen`
//! and `linux`, and one test `boot` that uses both. Its script reads the versions it is
//! given, so a candidate can fail at its new version only.

use std::process::Command;

use stagegate::promote::DecisionRecord;

use crate::common::{TestEnv, base_env};

const LEDGER: &str = "refs/stagegate/results";
const WITH_BASELINE: &str = "{require: [test], baseline: true}";
const BOOT_TEST: &str =
    "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n";
/// Boots everything except xen 2.
const BOOTS_UNLESS_XEN_2: &str = r#"#!/bin/sh
echo "booting xen $STAGEGATE_COMPONENT_XEN_VERSION with linux $STAGEGATE_COMPONENT_LINUX_VERSION"
if [ "$STAGEGATE_COMPONENT_XEN_VERSION" = 2 ]; then
  echo "xen 2: no console after the hypervisor starts"
  exit 1
fi
echo "login prompt reached"
"#;
/// Fails whatever the versions: the fault is in the test setup, on every stage.
const NEVER_BOOTS: &str = r#"#!/bin/sh
echo "booting xen $STAGEGATE_COMPONENT_XEN_VERSION with linux $STAGEGATE_COMPONENT_LINUX_VERSION"
echo "the test host has no serial console"
exit 1
"#;

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
}

/// `staging` → `stable` with the gate into stable `gate`, xen 1 and linux 1 on both, and
/// the `boot` test running `script`. HEAD is on staging.
fn state_repo(gate: &str, script: &str) -> TestEnv {
    let pipeline = format!("version: 1\nstages: [staging, stable]\ngates:\n  stable: {gate}\n");
    TestEnv::init_with(&[
        ("stagegate.yaml", &pipeline),
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", script),
    ])
}

/// Commit a new version of a component on staging.
fn bump(env: &TestEnv, name: &str, version: &str) -> String {
    env.commit_on(
        "staging",
        &format!("Bump {name} to {version}"),
        &[(
            &format!("components/{name}.yaml"),
            &component(name, version),
        )],
    )
}

/// `stagegate -C <repo> ARGS` as user `tester`, outside CI, with git's clock unless `when`
/// (a git date) fixes the time of what stagegate commits.
fn stagegate(env: &TestEnv, when: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = env.sg_cmd(args);
    cmd.env("USER", "tester");
    for var in [
        "LOGNAME",
        "STAGEGATE_CI_URL",
        "GITHUB_SERVER_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_RUN_ID",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_DATE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(when) = when {
        cmd.env("GIT_AUTHOR_DATE", when)
            .env("GIT_COMMITTER_DATE", when);
    }
    cmd
}

fn expect(mut cmd: Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// Run stagegate, require exit `code`; returns stdout.
fn sg(env: &TestEnv, code: i32, args: &[&str]) -> String {
    expect(stagegate(env, None, args), code)
}

/// Same, with what stagegate commits dated `when`.
fn sg_at(env: &TestEnv, when: &str, code: i32, args: &[&str]) -> String {
    expect(stagegate(env, Some(when), args), code)
}

fn sg_json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&sg(env, 0, args)).unwrap()
}

/// Commit `files` on `branch` with author and committer dates `when`.
fn commit_at(
    env: &TestEnv,
    branch: &str,
    when: &str,
    message: &str,
    files: &[(&str, &str)],
) -> String {
    env.git(&["checkout", "-q", branch]);
    for (p, c) in files {
        env.write(p, c);
    }
    env.git(&["add", "-A"]);
    let mut cmd = Command::new("git");
    base_env(&mut cmd, env.home());
    let out = cmd
        .arg("-C")
        .arg(&env.repo)
        .args(["commit", "-q", "--no-verify", "-m", message])
        .env("GIT_AUTHOR_DATE", when)
        .env("GIT_COMMITTER_DATE", when)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.rev("HEAD")
}

/// The trailers of a commit's message, one `Key: value` per line.
fn trailers(env: &TestEnv, rev: &str) -> Vec<String> {
    env.git(&["log", "-1", "--format=%(trailers:only,unfold)", rev])
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn identity() -> String {
    format!("tester@{}", stagegate::ledger::hostname())
}

fn decided_by() -> String {
    format!("stagegate {} ({})", env!("CARGO_PKG_VERSION"), identity())
}

/// Paths of the files in `rev`'s tree (recursively) under `dir`.
fn files_under(env: &TestEnv, rev: &str, dir: &str) -> Vec<String> {
    env.git(&["ls-tree", "-r", "--name-only", rev, "--", dir])
        .lines()
        .map(String::from)
        .collect()
}

/// `git ls-tree -r REV` without stagegate's records: mode, type, id and path of every file.
fn tree_outside_records(env: &TestEnv, rev: &str) -> String {
    env.git(&["ls-tree", "-r", rev])
        .lines()
        .filter(|l| !l.split('\t').nth(1).unwrap().starts_with(".stagegate/"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_decision(env: &TestEnv, rev: &str, path: &str) -> DecisionRecord {
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    stagegate::records::parse(path, text.as_bytes())
        .unwrap_or_else(|e| panic!("{path} does not parse: {e}\n{text}"))
}

fn ledger_tip(env: &TestEnv) -> String {
    env.rev(LEDGER)
}

fn ledger_decisions(env: &TestEnv) -> Vec<String> {
    files_under(env, LEDGER, "decisions")
}

/// Check that `stable` is a promotion of `tested` made on top of `old`: a merge commit with
/// those parents whose files are the tested ones, with only stagegate's records added.
fn assert_promoted(env: &TestEnv, old: &str, tested: &str) {
    let head = env.rev("stable");
    assert_eq!(
        env.git(&["log", "-1", "--format=%P", &head]),
        format!("{old} {tested}"),
        "a merge of the tested commit (second parent) into stable's old head (first)"
    );
    assert_eq!(
        tree_outside_records(env, &head),
        tree_outside_records(env, tested),
        "stable holds exactly the tested files"
    );
    let changed = env.git(&["diff", "--name-only", tested, &head]);
    assert!(!changed.is_empty());
    for path in changed.lines() {
        assert!(
            path.starts_with(".stagegate/"),
            "{path} differs from the tested commit"
        );
    }
}

#[test]
fn promote_merges_a_passing_candidate_with_its_decision() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let old = env.rev("stable");
    let tested = bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);

    let out = sg(&env, 0, &["promote"]);
    let head = env.rev("stable");
    assert_eq!(
        out,
        format!(
            "staging → stable: promoted components/xen as {}\n  components/xen 1 → 3: promote (1 pass)\n",
            &head[..10],
        )
    );
    assert_promoted(&env, &old, &tested);

    // The decision, as YAML in stable's tree.
    let records = files_under(&env, "stable", ".stagegate/decisions/stable");
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].ends_with(&format!("-{}.yaml", &tested[..10])),
        "{records:?}"
    );
    let d = read_decision(&env, "stable", &records[0]);
    assert_eq!(d.decision, "promote");
    assert_eq!((d.from.as_str(), d.to.as_str()), ("staging", "stable"));
    assert_eq!(d.tested, tested);
    assert_eq!(d.into, old);
    assert_eq!(d.subject, "Bump xen to 3");
    assert_eq!(d.decided_by, decided_by());
    assert!(d.gate.baseline);
    assert_eq!(d.gate.require, ["test"]);
    assert_eq!(d.candidates.len(), 1);
    let c = &d.candidates[0];
    assert_eq!(
        (c.item.as_str(), c.from.as_deref(), c.to.as_deref()),
        ("components/xen", Some("1"), Some("3"))
    );
    assert_eq!(d.jobs.len(), 1);
    let j = &d.jobs[0];
    assert_eq!(j.job, "test  boot [components/xen]");
    assert_eq!((j.verdict.as_str(), j.state.as_str()), ("pass", "passed"));
    assert_eq!(j.baseline.as_deref(), Some("pass"));
    assert!(j.baseline_key.is_some());
    assert!(d.reasons.is_empty(), "{:?}", d.reasons);

    // The message: a subject, the verdicts, the trailers.
    let message = env.git(&["log", "-1", "--format=%B", "stable"]);
    assert!(
        message.starts_with("Promote to stable: components/xen 1 -> 3\n"),
        "{message}"
    );
    assert!(
        message.contains("  pass    test  boot [components/xen] (baseline: pass)\n"),
        "{message}"
    );
    assert_eq!(
        trailers(&env, "stable"),
        [
            "Stagegate-Decision: promote".to_string(),
            "Stagegate-Stage: staging -> stable".into(),
            format!("Stagegate-Tested: {tested}"),
            "Stagegate-Results: 1 pass".into(),
            "Stagegate-Candidate: components/xen 3".into(),
            format!("Stagegate-Decided-By: {}", decided_by()),
        ]
    );
}

#[test]
fn promote_rejects_a_regression_and_records_it_once() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let old = env.rev("stable");
    let bad = bump(&env, "xen", "2");
    let ran = sg(&env, 1, &["run"]);
    assert!(ran.contains("ran 2 jobs: 1 fail, 1 pass"), "{ran}");

    let out = sg(&env, 1, &["promote"]);
    assert_eq!(
        out,
        "staging → stable: nothing to promote\n  components/xen 1 → 2: rejected\n    - test  boot [components/xen] fails where stable passes: a regression\n  recorded the rejection of components/xen in the results ledger\n"
    );
    assert_eq!(env.rev("stable"), old, "stable does not move");

    // Recorded by the candidate's content, not by a commit.
    let content = sg_json(&env, &["status", "--format", "json"])[0]["candidates"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("decisions/stable/{content}.yaml");
    assert_eq!(ledger_decisions(&env), vec![path.clone()]);
    let d = read_decision(&env, LEDGER, &path);
    assert_eq!(d.decision, "reject");
    assert_eq!(
        (d.tested.as_str(), d.into.as_str()),
        (bad.as_str(), old.as_str())
    );
    let j = &d.jobs[0];
    assert_eq!(
        (
            j.job.as_str(),
            j.verdict.as_str(),
            j.state.as_str(),
            j.baseline.as_deref()
        ),
        (
            "test  boot [components/xen]",
            "fail",
            "regression",
            Some("pass")
        )
    );
    assert_eq!(
        d.reasons,
        ["test  boot [components/xen] fails where stable passes: a regression"]
    );
    let tip = ledger_tip(&env);
    let subject = env.git(&["log", "-1", "--format=%s", &tip]);
    assert_eq!(
        subject,
        "Reject components/xen for stable: components/xen 1 -> 2"
    );
    assert!(trailers(&env, &tip).contains(&"Stagegate-Decision: reject".to_string()));
    assert!(trailers(&env, &tip).contains(&format!("Stagegate-Tested: {bad}")));

    // Deciding again records nothing new: the rejection stands by content.
    // The rejection stands from the promote before: reported, not signalled.
    let again = sg(&env, 0, &["promote"]);
    assert!(
        again.contains("  components/xen 1 → 2: rejected\n"),
        "{again}"
    );
    assert!(!again.contains("recorded the rejection"), "{again}");
    assert_eq!(ledger_tip(&env), tip);
    assert_eq!(ledger_decisions(&env), [path]);
    assert_eq!(env.rev("stable"), old);
}

#[test]
fn a_rejected_candidate_blocks_nothing_and_drop_tidies_it_away() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let old = env.rev("stable");
    bump(&env, "xen", "2");
    let good = bump(&env, "linux", "2");
    // The good candidate moves at once; the bad one stays, rejected, and holds nothing back.
    let out = sg(&env, 1, &["cycle"]);
    assert!(
        out.contains("staging → stable: promoted components/linux as "),
        "{out}"
    );
    assert!(
        out.contains("recorded the rejection of components/xen"),
        "{out}"
    );
    let promotion = env.rev("stable");
    assert_eq!(
        env.git(&["log", "-1", "--format=%P", &promotion]),
        old,
        "staging does not move whole: one parent, T's head"
    );
    assert_eq!(
        env.git(&["show", "stable:components/linux.yaml"]).trim(),
        component("linux", "2").trim()
    );
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]).trim(),
        component("xen", "1").trim()
    );
    let d = read_decision(
        &env,
        "stable",
        &files_under(&env, "stable", ".stagegate/decisions/stable")[0],
    );
    assert_eq!(d.tested, good);
    assert_eq!(d.stayed.len(), 1);
    assert_eq!(
        (d.stayed[0].item.as_str(), d.stayed[0].state.as_str()),
        ("components/xen", "rejected")
    );
    // Sticky: nothing runs again, and the rejection stands (reported, exit 0).
    let again = sg(&env, 0, &["cycle"]);
    assert!(again.contains("components/xen 1 → 2: rejected"), "{again}");
    assert!(again.contains("nothing to run"), "{again}");
    assert_eq!(env.rev("stable"), promotion);

    let out = sg(
        &env,
        0,
        &["drop", "components/xen", "--reason", "xen 2 has no console"],
    );
    let dropped = env.rev("staging");
    assert_eq!(
        out,
        format!(
            "dropped components/xen 2 (back to 1) from staging ({} on staging)\n",
            &dropped[..10]
        )
    );
    assert_eq!(
        env.rev("staging^"),
        good,
        "the drop is a new commit on staging"
    );
    assert_eq!(
        env.git(&["diff", "--name-only", &good, &dropped]),
        "components/xen.yaml"
    );
    assert_eq!(
        env.read("components/xen.yaml"),
        component("xen", "1"),
        "the work tree follows"
    );
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", &dropped]),
        "Drop components/xen 2 (back to 1) from staging: xen 2 has no console"
    );
    assert_eq!(
        trailers(&env, &dropped),
        [
            "Stagegate-Drop: components/xen".to_string(),
            "Stagegate-Stage: staging".into(),
            "Stagegate-Reason: xen 2 has no console".into(),
            format!("Stagegate-By: {}", identity()),
        ]
    );
    // Nothing differs any more: every view agrees.
    assert_eq!(
        sg(&env, 0, &["promote"]),
        "staging → stable: nothing pending\n"
    );
    let status = sg(&env, 0, &["status"]);
    assert!(status.contains("up to date"), "{status}");
    let why = sg(&env, 0, &["why", "components/xen"]);
    assert!(
        why.starts_with("components/xen: staging 1, stable 1\nnot pending anywhere"),
        "{why}"
    );
}

#[test]
fn a_failure_like_the_baseline_is_promoted_when_the_gate_compares_with_it() {
    let env = state_repo(WITH_BASELINE, NEVER_BOOTS);
    let old = env.rev("stable");
    let tested = bump(&env, "xen", "3");
    // Both fail, like each other: nothing said no (exit 0).
    let ran = sg(&env, 0, &["run"]);
    assert!(ran.contains("ran 2 jobs: 2 fail"), "{ran}");

    sg(&env, 0, &["promote"]);
    assert_promoted(&env, &old, &tested);
    let message = env.git(&["log", "-1", "--format=%B", "stable"]);
    assert!(
        message.contains("  fail    test  boot [components/xen] (baseline: fail)\n"),
        "{message}"
    );
    assert!(
        message.contains("note: test  boot [components/xen] fails, and so does its baseline on stable: not a regression\n"),
        "{message}"
    );
    assert!(trailers(&env, "stable").contains(&"Stagegate-Results: 1 fail".to_string()));
    let records = files_under(&env, "stable", ".stagegate/decisions/stable");
    let d = read_decision(&env, "stable", &records[0]);
    let j = &d.jobs[0];
    assert_eq!(
        (j.verdict.as_str(), j.state.as_str(), j.baseline.as_deref()),
        ("fail", "fails_like_baseline", Some("fail"))
    );
}

#[test]
fn a_failure_is_rejected_when_the_gate_has_no_baseline() {
    // Without a baseline there is nothing to tell a regression from a failure T has too:
    // any failure of a required job rejects (DESIGN.md §4.2, src/gate).
    let env = state_repo("{require: [test]}", NEVER_BOOTS);
    let old = env.rev("stable");
    let tested = bump(&env, "xen", "3");
    let ran = sg(&env, 1, &["run"]);
    assert!(ran.contains(": 1 fail;"), "{ran}");

    let out = sg(&env, 1, &["promote"]);
    assert_eq!(
        out,
        "staging → stable: nothing to promote\n  components/xen 1 → 3: rejected\n    - test  boot [components/xen] fails (exit status 1)\n  recorded the rejection of components/xen in the results ledger\n"
    );
    assert_eq!(env.rev("stable"), old);
    let d = read_decision(&env, LEDGER, &ledger_decisions(&env)[0]);
    assert_eq!(d.tested, tested);
}

#[test]
fn a_failure_waits_for_its_baseline_before_it_is_judged() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let old = env.rev("stable");
    bump(&env, "xen", "2");
    let plan = sg_json(&env, &["plan", "--format", "json"]);
    let candidate = plan[0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["role"] == "candidate")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    // Its baseline has no result yet: nothing said no (exit 0).
    sg(&env, 0, &["run", "--job", &candidate]);

    let out = sg(&env, 0, &["promote"]);
    assert!(
        out.contains("    - test  boot [components/xen] fails; its baseline on stable has no result yet to compare with (run `stagegate run`)\n"),
        "{out}"
    );
    assert!(out.contains(": wait\n"), "{out}");
    assert_eq!(env.rev("stable"), old);
    assert!(ledger_decisions(&env).is_empty(), "a wait is not recorded");

    // The baseline passes: now it is a regression.
    sg(&env, 0, &["run"]);
    let out = sg(&env, 1, &["promote"]);
    assert!(
        out.contains("fails where stable passes: a regression"),
        "{out}"
    );
}

/// A git date `secs` seconds before now.
fn ago(secs: i64) -> String {
    format!("{} +0000", stagegate::records::now_secs() - secs)
}

#[test]
fn soak_counts_from_when_a_candidate_was_first_seen_never_from_commit_dates() {
    let env = state_repo(
        "{require: [test], baseline: true, soak: 1h}",
        BOOTS_UNLESS_XEN_2,
    );
    let old = env.rev("stable");
    // A commit dated two hours back does not pass a one-hour soak: anyone can set a date.
    commit_at(
        &env,
        "staging",
        &ago(2 * 3600),
        "Bump xen to 3",
        &[("components/xen.yaml", &component("xen", "3"))],
    );
    bump(&env, "linux", "2");
    sg(&env, 0, &["run"]);

    // The first promote sees both pending, and notes when.
    let out = sg_json(&env, &["promote", "--format", "json"]);
    assert_eq!(env.rev("stable"), old);
    let cands = out[0]["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2, "{out:#}");
    for c in cands {
        assert_eq!(c["state"], "wait", "{out:#}");
        let reasons = c["reasons"].as_array().unwrap();
        assert_eq!(reasons.len(), 1, "{out:#}");
        let r = reasons[0].as_str().unwrap();
        assert!(r.contains(" of the 1h soak; "), "{r}");
    }

    // The ledger remembers when each was first seen pending; say xen was seen 2h ago.
    let status = sg_json(&env, &["status", "--format", "json"]);
    let xen = status[0]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == "components/xen")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("seen/stable/{xen}.yaml");
    let record = env.git(&["show", &format!("{LEDGER}:{path}")]);
    let seen_at = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600),
    )
    .to_string();
    let line = record
        .lines()
        .find(|l| l.starts_with("first-seen: "))
        .unwrap();
    let backdated_record = record.replace(line, &format!("first-seen: {seen_at}"));
    rewrite_ledger_file(&env, &path, &backdated_record);

    let out = sg(&env, 0, &["promote", "--dry-run"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "staging → stable: would promote components/xen",
        "{out}"
    );
    assert_eq!(lines[1], "  components/linux 1 → 2: wait", "{out}");
    assert!(
        lines[2].starts_with("    - components/linux pending on staging for ")
            && lines[2].contains(" of the 1h soak; ")
            && lines[2].ends_with(" left"),
        "{out}"
    );
    assert_eq!(
        lines[3], "  components/xen 1 → 3: promote (1 pass)",
        "{out}"
    );
    assert_eq!(env.rev("stable"), old, "a dry run changes nothing");

    sg(&env, 0, &["promote"]);
    assert_eq!(env.git(&["log", "-1", "--format=%P", "stable"]), old);
    // What stayed, and why, in words that do not change from one run to the next.
    let records = files_under(&env, "stable", ".stagegate/decisions/stable");
    let d = read_decision(&env, "stable", &records[0]);
    assert_eq!(d.stayed.len(), 1);
    assert_eq!(
        (d.stayed[0].item.as_str(), d.stayed[0].state.as_str()),
        ("components/linux", "wait")
    );
    assert_eq!(
        d.stayed[0].reasons,
        ["components/linux is still soaking on staging (1h soak)"]
    );
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]).trim(),
        component("xen", "3").trim()
    );
    let why = sg(&env, 0, &["why", "components/linux"]);
    assert!(why.contains("staging → stable: waiting"), "{why}");
    assert!(
        why.contains("  soak: components/linux pending on staging for "),
        "{why}"
    );
}

/// Replace one file of the results ledger (a new commit on its ref), as if written then.
fn rewrite_ledger_file(env: &TestEnv, path: &str, text: &str) {
    let blob_file = env.home().join("blob");
    std::fs::write(&blob_file, text).unwrap();
    let blob = env.git(&["hash-object", "-w", blob_file.to_str().unwrap()]);
    let index = env.home().join("ledger-index");
    let with_index = |args: &[&str]| {
        let mut cmd = Command::new("git");
        base_env(&mut cmd, env.home());
        let out = cmd
            .arg("-C")
            .arg(&env.repo)
            .args(args)
            .env("GIT_INDEX_FILE", &index)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    with_index(&["read-tree", LEDGER]);
    with_index(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("100644,{blob},{path}"),
    ]);
    let tree = with_index(&["write-tree"]);
    let commit = env.git(&["commit-tree", &tree, "-p", LEDGER, "-m", "test: rewrite"]);
    env.git(&["update-ref", LEDGER, &commit]);
}

#[test]
fn hold_blocks_promotion_until_release() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let old = env.rev("stable");
    bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);

    let out = sg(
        &env,
        0,
        &["hold", "components/xen", "--reason", "wait for XSA-999"],
    );
    let held = env.rev("staging");
    assert_eq!(
        out,
        format!(
            "held components/xen on staging ({} on staging)\n",
            &held[..10]
        )
    );
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", &held]),
        "Hold components/xen on staging: wait for XSA-999"
    );
    assert_eq!(
        trailers(&env, &held),
        [
            "Stagegate-Hold: components/xen".to_string(),
            "Stagegate-Stage: staging".into(),
            "Stagegate-Reason: wait for XSA-999".into(),
            format!("Stagegate-By: {}", identity()),
        ]
    );
    assert_eq!(
        files_under(&env, "staging", ".stagegate"),
        [".stagegate/holds/staging/components-xen.yaml"]
    );

    let out = sg(&env, 0, &["promote"]);
    assert!(
        out.starts_with("staging → stable: nothing to promote\n"),
        "{out}"
    );
    let reason = format!(
        "    - components/xen is held on staging by {} since ",
        identity()
    );
    assert!(out.contains(&reason), "{out}");
    assert!(
        out.contains(": wait for XSA-999 (release with `stagegate release components/xen`)\n"),
        "{out}"
    );
    assert!(
        !out.contains("has no result"),
        "the hold needs no new run: {out}"
    );
    assert_eq!(env.rev("stable"), old);

    let out = sg(&env, 0, &["release", "components/xen"]);
    let released = env.rev("staging");
    assert_eq!(
        out,
        format!(
            "released components/xen on staging ({} on staging)\n",
            &released[..10]
        )
    );
    assert_eq!(env.rev("staging^"), held);
    assert_eq!(
        trailers(&env, &released),
        [
            "Stagegate-Release: components/xen".to_string(),
            "Stagegate-Stage: staging".into(),
            format!("Stagegate-By: {}", identity()),
        ]
    );
    assert!(files_under(&env, "staging", ".stagegate").is_empty());

    sg(&env, 0, &["promote"]);
    assert_promoted(&env, &old, &released);
    assert!(files_under(&env, "stable", ".stagegate/holds").is_empty());
}

#[test]
fn promote_is_a_noop_when_run_twice() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);
    sg(&env, 0, &["promote"]);
    let head = env.rev("stable");
    let tip = ledger_tip(&env);

    assert_eq!(
        sg(&env, 0, &["promote"]),
        "staging → stable: nothing pending\n"
    );
    assert_eq!(
        sg(&env, 0, &["promote", "--dry-run"]),
        "staging → stable: nothing pending\n"
    );
    assert_eq!(env.rev("stable"), head);
    assert_eq!(ledger_tip(&env), tip);
    let json = sg_json(&env, &["promote", "--format", "json"]);
    assert_eq!(json[0]["promoted"], serde_json::Value::Null);
    assert_eq!(json[0]["candidates"], serde_json::json!([]));
}

#[test]
fn apply_leaves_a_target_that_moved_since_the_plan_alone() {
    use stagegate::{ledger::Ledger, plan::CandidateId, plan::Planner, promote, repo::Repo};

    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let tested = bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);

    let repo = Repo::discover(&env.repo).unwrap();
    let planner = Planner::new(&repo, None).unwrap();
    let (s, t) = planner.pipeline.moves().next().unwrap();
    let plan = planner.plan_move(s, t).unwrap();
    let view = Ledger::new(&repo, &planner.pipeline.results_ref)
        .view()
        .unwrap();
    let now = stagegate::records::now_secs();
    let judgement = stagegate::judge::judge(&planner, plan, &view, now).unwrap();
    let (plan, decided) = (&judgement.plan, &judgement.decided);
    assert_eq!(
        judgement.moved(),
        [CandidateId::parse("components/xen").unwrap()]
    );
    assert_eq!(plan.from_head.to_string(), tested);

    // Someone else moves stable between the decision and the update.
    let moved = env.commit_on(
        "stable",
        "Someone else's commit",
        &[("NOTES.md", "moved\n")],
    );
    let opts = promote::Options {
        dry_run: false,
        by: "test".into(),
        ci_url: None,
        review: None,
        force_review: false,
        now,
    };
    assert_eq!(
        promote::apply(&planner, plan, decided, &opts, &view).unwrap(),
        None
    );
    assert_eq!(env.rev("stable"), moved, "stable keeps the other commit");
}

#[test]
fn promote_plans_again_on_top_of_a_target_that_moved() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let tested = bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);
    // Someone else moves stable: a hold for the stage after it.
    sg(
        &env,
        0,
        &[
            "hold",
            "components/linux",
            "--stage",
            "stable",
            "--reason",
            "keep linux 1",
        ],
    );
    let moved = env.rev("stable");

    let out = sg(&env, 0, &["promote"]);
    assert!(
        out.starts_with("staging → stable: promoted components/xen as "),
        "{out}"
    );
    assert_promoted(&env, &moved, &tested);
    assert_eq!(
        files_under(&env, "stable", ".stagegate/holds"),
        [".stagegate/holds/stable/components-linux.yaml"],
        "stable's own records stay"
    );
    let records = files_under(&env, "stable", ".stagegate/decisions/stable");
    assert_eq!(read_decision(&env, "stable", &records[0]).into, moved);
}

/// Text for a snapshot: the repository path, the user's identity, the version and the
/// `names`' commits (full and abbreviated) replaced by placeholders. The snapshot filters
/// (see `assert_text!`) then take out the remaining hashes, times and log file names.
fn redact(env: &TestEnv, text: &str, names: &[(&str, &str)]) -> String {
    let mut out = text
        .replace(env.repo.to_str().unwrap(), "[repo]")
        .replace(&identity(), "tester@[host]")
        .replace(
            &format!("stagegate {}", env!("CARGO_PKG_VERSION")),
            "stagegate [version]",
        );
    for (sha, name) in names {
        out = out
            .replace(*sha, &format!("[{name}]"))
            .replace(&sha[..10], &format!("[{name}]"));
    }
    out
}

/// Snapshot `text` with what changes from run to run filtered out.
macro_rules! assert_text {
    ($name:expr, $text:expr) => {
        insta::with_settings!({filters => vec![
            (r"\.git/stagegate/logs/\S+", ".git/stagegate/logs/[log]"),
            (r"sha256:[0-9a-f]{64}", "sha256:[digest]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[time]"),
            (r"\b[0-9a-f]{12}\b", "[key]"),
            (r"\b[0-9a-f]{10}\b", "[hash]"),
        ]}, {
            insta::assert_snapshot!($name, $text);
        })
    };
}

#[test]
fn why_explains_a_waiting_item_with_a_missing_result() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let bumped = bump(&env, "xen", "3");
    let out = sg(&env, 0, &["why", "components/xen"]);
    assert_text!(
        "why_missing",
        redact(&env, &out, &[(&bumped, "bump-xen-3")])
    );
    let json = sg_json(&env, &["why", "components/xen", "--format", "json"]);
    assert_eq!(json["pending"][0]["state"], "wait");
    assert_eq!(json["pending"][0]["evaluation"]["state"], "wait");
    assert_eq!(
        json["pending"][0]["evaluation"]["reasons"][0]["kind"],
        "missing"
    );
}

#[test]
fn why_shows_a_failing_job_with_its_log_excerpt() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let bad = bump(&env, "xen", "2");
    sg(&env, 1, &["run"]);
    let out = sg(&env, 0, &["why", "components/xen"]);
    assert_text!("why_failing", redact(&env, &out, &[(&bad, "bump-xen-2")]));
}

#[test]
fn why_shows_a_hold_with_its_reason() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    bump(&env, "xen", "3");
    sg(&env, 0, &["run"]);
    sg(
        &env,
        0,
        &["hold", "components/xen", "--reason", "wait for XSA-999"],
    );
    let held = env.rev("staging");
    let out = sg(&env, 0, &["why", "components/xen"]);
    assert_text!("why_held", redact(&env, &out, &[(&held, "hold")]));
}

#[test]
fn log_shows_promotions_rejections_holds_releases_and_drops() {
    let env = state_repo(WITH_BASELINE, BOOTS_UNLESS_XEN_2);
    let day = "2025-06-02";
    let at = |hm: &str| format!("{day} {hm}:00 +0000");
    let xen2 = commit_at(
        &env,
        "staging",
        &at("09:00"),
        "Bump xen to 2",
        &[("components/xen.yaml", &component("xen", "2"))],
    );
    let linux2 = commit_at(
        &env,
        "staging",
        &at("09:01"),
        "Bump linux to 2",
        &[("components/linux.yaml", &component("linux", "2"))],
    );
    sg_at(&env, &at("09:10"), 1, &["cycle"]);
    let promoted1 = env.rev("stable");
    sg_at(
        &env,
        &at("09:20"),
        0,
        &["drop", "components/xen", "--reason", "xen 2 has no console"],
    );
    let dropped = env.rev("staging");
    sg_at(&env, &at("09:30"), 0, &["cycle"]);
    assert_eq!(env.rev("stable"), promoted1, "nothing left to promote");
    let xen3 = commit_at(
        &env,
        "staging",
        &at("10:00"),
        "Bump xen to 3",
        &[("components/xen.yaml", &component("xen", "3"))],
    );
    sg_at(
        &env,
        &at("10:05"),
        0,
        &["hold", "components/xen", "--reason", "wait for XSA-999"],
    );
    let held = env.rev("staging");
    sg_at(&env, &at("10:10"), 0, &["cycle"]);
    assert_eq!(env.rev("stable"), promoted1, "held");
    sg_at(&env, &at("10:15"), 0, &["release", "components/xen"]);
    let released = env.rev("staging");
    sg_at(&env, &at("10:20"), 0, &["promote"]);
    let promoted2 = env.rev("stable");
    assert_ne!(promoted2, promoted1);

    let reject_xen2 = env.git(&[
        "log",
        "--format=%H",
        "--grep",
        "^Reject components/xen",
        LEDGER,
    ]);
    let names = [
        (xen2.as_str(), "bump-xen-2"),
        (linux2.as_str(), "bump-linux-2"),
        (xen3.as_str(), "bump-xen-3"),
        (dropped.as_str(), "drop"),
        (held.as_str(), "hold"),
        (released.as_str(), "release"),
        (promoted1.as_str(), "promotion-1"),
        (promoted2.as_str(), "promotion-2"),
        (reject_xen2.as_str(), "rejection-xen-2"),
    ];
    let out = sg(&env, 0, &["log"]);
    assert_text!("log_all", redact(&env, &out, &names));
    let out = sg(&env, 0, &["log", "components/xen"]);
    assert_text!("log_xen", redact(&env, &out, &names));
    let out = sg(&env, 0, &["log", "components/linux", "-n", "1"]);
    assert_text!("log_linux_last", redact(&env, &out, &names));
}

#[test]
fn example_cycle_promotes_through_every_stage_with_trailers() {
    let env = TestEnv::init_example();
    let added = env.rev("new");
    sg(&env, 0, &["cycle"]);
    let (staging, stable) = (env.rev("staging"), env.rev("stable"));
    let candidates = [
        "Stagegate-Candidate: images/debian-guest 12.8-1",
        "Stagegate-Candidate: images/debian-host 12.8-1",
        "Stagegate-Candidate: components/hello 1.0",
        "Stagegate-Candidate: tests/guest-boots (new)",
        "Stagegate-Candidate: tests/host-boots (new)",
    ];
    let subject = "images/debian-guest 12.8-1, images/debian-host 12.8-1, components/hello 1.0, tests/guest-boots, tests/host-boots";

    // stable: one promotion on top of the start of the pipeline.
    let history = env.git(&["log", "--first-parent", "--format=%H %s", "stable"]);
    let start = env.rev("stable~1");
    assert_eq!(
        history,
        format!("{stable} Promote to stable: {subject}\n{start} stagegate: start the pipeline")
    );
    assert_eq!(env.rev("stable^2"), staging);
    let mut expected = vec![
        "Stagegate-Decision: promote".to_string(),
        "Stagegate-Stage: staging -> stable".into(),
        format!("Stagegate-Tested: {staging}"),
        "Stagegate-Results: 2 pass".into(),
    ];
    expected.extend(candidates.iter().map(|c| c.to_string()));
    expected.push(format!("Stagegate-Decided-By: {}", decided_by()));
    // The component push gate's own trailers are tested with it.
    let push = |t: &String| !t.starts_with("Stagegate-Push");
    let got: Vec<String> = trailers(&env, "stable").into_iter().filter(push).collect();
    assert_eq!(got, expected);

    // staging: the promotion that built the images, whose records stable carries.
    let history = env.git(&["log", "--first-parent", "--format=%H %s", "staging"]);
    assert_eq!(
        history,
        format!("{staging} Promote to staging: {subject}\n{start} stagegate: start the pipeline")
    );
    assert_eq!(env.rev("staging^2"), added);
    let t = trailers(&env, "staging");
    assert_eq!(
        t[..3],
        [
            "Stagegate-Decision: promote".to_string(),
            "Stagegate-Stage: new -> staging".into(),
            format!("Stagegate-Tested: {added}"),
        ]
    );
    let built: Vec<&String> = t
        .iter()
        .filter(|l| l.starts_with("Stagegate-Built: "))
        .collect();
    assert_eq!(built.len(), 2, "{t:?}");
    assert!(built[0].starts_with("Stagegate-Built: images/debian-host 12.8-1 sha256:"));
    assert!(built[1].starts_with("Stagegate-Built: images/debian-guest 12.8-1 sha256:"));
    assert_eq!(
        files_under(&env, "stable", ".stagegate/built"),
        [
            ".stagegate/built/images/debian-guest.yaml",
            ".stagegate/built/images/debian-host.yaml"
        ]
    );

    // `stagegate log` lists both promotions, the later stage first, with the builds.
    let log = sg_json(&env, &["log", "--format", "json"]);
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log:#}");
    assert_eq!(entries[0]["stage"], "staging -> stable");
    assert_eq!(entries[0]["commit"], stable.as_str());
    assert_eq!(entries[0]["built"], serde_json::json!([]));
    assert_eq!(entries[1]["stage"], "new -> staging");
    assert_eq!(entries[1]["commit"], staging.as_str());
    assert_eq!(entries[1]["built"].as_array().unwrap().len(), 2);
    let out = sg(&env, 0, &["log"]);
    let names = [
        (added.as_str(), "example"),
        (staging.as_str(), "promotion-staging"),
        (stable.as_str(), "promotion-stable"),
    ];
    // Entries start with the commit time, here the time of the test run.
    let out: String = out
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((when, rest)) if when.len() == 19 && when.starts_with("20") => {
                format!("[time]  {rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert_text!("log_example", redact(&env, &out, &names));
}
