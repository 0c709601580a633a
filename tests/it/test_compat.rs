//! What an older stagegate wrote stays readable, and its decisions verify: the history in
//! tests/fixtures/history/ (made by `make.sh` there with stagegate as of e0dd364, before the
//! judgement moved to its own module) is read by every reader, and each promotion's decision
//! record is derived again from the evidence it rests on, byte for byte.

use std::path::PathBuf;

use crate::common::*;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history/e0dd364.bundle")
}

/// The fixture's state repository, every ref as it was written (stages, the component's
/// upstream branches, the results ledger), checked out on `stable`.
fn history() -> TestEnv {
    let env = TestEnv::new();
    env.git_in(env.home(), &["init", "-q", env.repo.to_str().unwrap()]);
    env.git(&["fetch", "-q", fixture().to_str().unwrap(), "+refs/*:refs/*"]);
    env.git(&["checkout", "-q", "-f", "stable"]);
    env
}

/// The promotions on `stage`, oldest first.
fn promotions(env: &TestEnv, stage: &str) -> Vec<String> {
    let out = env.git(&[
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H",
        "--grep=^Stagegate-Decision: promote",
        stage,
    ]);
    out.lines().map(str::to_string).collect()
}

#[test]
fn decisions_written_before_the_judgement_moved_are_derived_again_byte_for_byte() {
    let env = history();
    let mut checked = 0;
    for stage in ["staging", "stable"] {
        for commit in promotions(&env, stage) {
            let out = env.sg_ok(&["verify", &commit, "--stage", stage]);
            assert!(out.starts_with(&format!("ok   {stage} ")), "{out}");
            checked += 1;
        }
    }
    // new → staging and staging → stable for the example, the released bump, and the bump
    // that moved past the rejected guest image.
    assert!(checked >= 5, "only {checked} promotions in the fixture");
}

#[test]
fn records_written_before_the_judgement_moved_are_read_by_every_reader() {
    let env = history();
    let status = env.json(&["status", "--format", "json"]);
    let guest = status
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["candidates"].as_array().unwrap())
        .find(|c| c["item"] == "images/debian-guest")
        .unwrap_or_else(|| panic!("the rejected guest image is pending: {status}"));
    assert_eq!(guest["state"], "rejected", "{guest}");
    let why = env.sg_ok(&["why", "images/debian-guest"]);
    assert!(why.contains("was rejected for staging"), "{why}");
    let log = env.sg_ok(&["log", "components/hello"]);
    assert!(log.contains("waiting for the release notes"), "{log}");
    env.sg_ok(&["plan", "--format", "json"]);
    env.sg_ok(&["report", "--out", env.home().join("site").to_str().unwrap()]);
}

#[test]
fn a_decision_edited_after_the_fact_does_not_verify() {
    let env = history();
    let repo = env.repo.to_str().unwrap();
    let head = env.rev("stable");
    let path = env.git(&[
        "diff-tree",
        "--no-commit-id",
        "--name-only",
        "-r",
        "stable^",
        "stable",
        "--",
        ".stagegate/decisions/stable/",
    ]);
    let path = path.trim();
    assert!(path.ends_with(".yaml"), "{path}");
    let record = env.git(&["show", &format!("stable:{path}")]);
    assert!(record.contains("verdict: pass"), "{record}");
    // Same parents, same message, the same tree but for one verdict of the decision.
    let edited = record.replacen("verdict: pass", "verdict: fail", 1);
    let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], &edited);
    let index = env.home().join("index");
    let git_index = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-C", repo])
            .args(args)
            .env("GIT_INDEX_FILE", &index)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    git_index(&["read-tree", &head]);
    git_index(&[
        "update-index",
        "--cacheinfo",
        &format!("100644,{},{path}", blob.trim()),
    ]);
    let tree = git_index(&["write-tree"]);
    let message = env.git(&["log", "-1", "--format=%B", &head]);
    let parents = env.git(&["log", "-1", "--format=%P", &head]);
    let mut args = vec!["commit-tree", tree.as_str()];
    for p in parents.split_whitespace() {
        args.extend(["-p", p]);
    }
    args.extend(["-m", message.as_str()]);
    let forged = env.git(&args);
    let (out, _) = env.sg_code(1, &["verify", forged.trim(), "--stage", "stable"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
    assert!(
        out.contains("is not the decision the gate makes of the evidence it rests on"),
        "{out}"
    );
}
