//! The decision model of DESIGN.md §4.5, §4.6 and §4.11 on real repositories: candidates
//! are items (and tests, and the pipeline), judged and moved on their own; rejection is
//! sticky by content; the rules come from the target; invalid content is a state, not a
//! crash; and a promotion can be replayed (`verify`) and enforced by a pre-receive hook.

use std::process::Command;

use stagegate::promote::DecisionRecord;

use crate::common::{TestEnv, base_env};

const LEDGER: &str = "refs/stagegate/results";
const PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n";
const BOOT_TEST: &str =
    "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n";
/// Boots everything except xen 2 and linux 9 (each alone), and fails when both xen 3 and
/// linux 3 are in (together only).
const BOOT: &str = r#"#!/bin/sh
x="$STAGEGATE_COMPONENT_XEN_VERSION"; l="$STAGEGATE_COMPONENT_LINUX_VERSION"
echo "booting xen $x with linux $l"
[ "$x" = 2 ] && { echo "xen 2: no console"; exit 1; }
[ "$l" = 9 ] && { echo "linux 9: panic"; exit 1; }
[ "$x" = 3 ] && [ "$l" = 3 ] && { echo "xen 3 and linux 3 disagree"; exit 1; }
echo "login prompt reached"
"#;

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
}

/// `staging` → `stable`, xen 1 and linux 1 on both, the `boot` test. HEAD on staging.
fn repo() -> TestEnv {
    TestEnv::init_with(&[
        ("stagegate.yaml", PIPELINE),
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

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

/// The version of `path` on `rev`.
fn version(env: &TestEnv, rev: &str, path: &str) -> String {
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string()
}

/// The candidates of the first move, as `status --format json` gives them.
fn candidates(env: &TestEnv) -> Vec<serde_json::Value> {
    env.json(&["status", "--format", "json"])[0]["candidates"]
        .as_array()
        .unwrap()
        .clone()
}

fn state_of(env: &TestEnv, item: &str) -> String {
    candidates(env)
        .iter()
        .find(|c| c["item"] == item)
        .unwrap_or_else(|| panic!("{item} is not a candidate"))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The decision record a promotion commit on `rev` added.
fn decision_of(env: &TestEnv, rev: &str) -> DecisionRecord {
    let added = env.git(&[
        "diff",
        "--name-only",
        "--diff-filter=A",
        &format!("{rev}^"),
        rev,
        "--",
        ".stagegate/decisions",
    ]);
    let path = added.lines().next().expect("a decision record");
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    stagegate::records::parse(path, text.as_bytes()).unwrap()
}

#[test]
fn a_held_candidate_holds_nothing_else_back() {
    let env = repo();
    let old = env.rev("stable");
    bump(&env, "xen", "3");
    bump(&env, "linux", "2");
    env.sg_ok(&["hold", "components/xen", "--reason", "wait for XSA-999"]);
    env.sg_ok(&["run"]);
    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("promoted components/linux as "), "{out}");
    assert!(out.contains("components/xen 1 → 3: held"), "{out}");
    assert_eq!(version(&env, "stable", "components/linux.yaml"), "2");
    assert_eq!(version(&env, "stable", "components/xen.yaml"), "1");
    assert_eq!(env.git(&["log", "-1", "--format=%P", "stable"]), old);
    assert_eq!(state_of(&env, "components/xen"), "held");
    let d = decision_of(&env, "stable");
    assert_eq!(d.stayed[0].item, "components/xen");
    assert_eq!(d.stayed[0].state, "held");
}

#[test]
fn a_rejection_is_sticky_until_its_failure_is_waived() {
    let env = repo();
    bump(&env, "xen", "2");
    env.sg_code(1, &["cycle"]);
    assert_eq!(state_of(&env, "components/xen"), "rejected");
    // Nothing new runs for the same content, even when stable moves under it.
    let results = env.git(&["rev-list", "--count", LEDGER]);
    // Standing, so reported and not signalled: exit 0.
    let (out, _) = env.sg_code(0, &["cycle"]);
    assert!(out.contains("nothing to run"), "{out}");
    assert_eq!(env.git(&["rev-list", "--count", LEDGER]), results);
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("staging → stable: rejected"), "{why}");
    assert!(
        why.contains("components/xen at this content was rejected for stable"),
        "{why}"
    );
    // A person decides the failure does not count: the key `why` names.
    let json = env.json(&["why", "components/xen", "--format", "json"]);
    let key = json["pending"][0]["evaluation"]["reasons"][0]["message"]
        .as_str()
        .unwrap()
        .split("`stagegate waive ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    let out = env.sg_ok(&[
        "waive",
        &key,
        "--reason",
        "the console test is known broken",
    ]);
    assert!(out.starts_with("waived "), "{out}");
    let waiver = env.git(&["log", "-1", "--format=%B", LEDGER]);
    assert!(
        waiver.contains("Stagegate-Reason: the console test is known broken"),
        "{waiver}"
    );
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    assert_eq!(version(&env, "stable", "components/xen.yaml"), "2");
}

#[test]
fn a_waiver_needs_a_reason_and_a_known_key() {
    let env = repo();
    bump(&env, "xen", "2");
    let (_, err) = env.sg_code(2, &["waive", "abcdef", "--reason", "x"]);
    assert!(
        err.contains("no planned or recorded job has a key starting with \"abcdef\""),
        "{err}"
    );
    let key = env.json(&["plan", "--format", "json"])[0]["groups"][0]["required"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (_, err) = env.sg_code(2, &["waive", &key, "--reason", " "]);
    assert!(err.contains("an override needs a reason"), "{err}");
}

#[test]
fn candidates_that_pass_alone_but_not_together_move_one_at_a_time() {
    let env = repo();
    bump(&env, "xen", "3");
    bump(&env, "linux", "3");
    // Each passes alone; together they fail: only the first moves.
    let (out, _) = env.sg_code(0, &["cycle"]);
    assert!(
        out.contains("components/linux, components/xen pass alone but not together"),
        "{out}"
    );
    assert!(out.contains("promoted components/linux as "), "{out}");
    assert_eq!(version(&env, "stable", "components/linux.yaml"), "3");
    assert_eq!(version(&env, "stable", "components/xen.yaml"), "1");
    // Judged again against the new stable, xen 3 now fails with linux 3: rejected.
    let (out, _) = env.sg_code(1, &["cycle"]);
    assert!(out.contains("components/xen 1 → 3: rejected"), "{out}");
    assert_eq!(version(&env, "stable", "components/xen.yaml"), "1");
}

#[test]
fn candidates_that_pass_together_move_in_one_commit() {
    let env = repo();
    let old = env.rev("stable");
    bump(&env, "xen", "4");
    let head = bump(&env, "linux", "4");
    let out = env.sg_ok(&["cycle"]);
    assert!(
        out.contains("promoted components/linux, components/xen as "),
        "{out}"
    );
    // S moved whole: a merge with S's head, one first-parent entry.
    assert_eq!(
        env.git(&["log", "-1", "--format=%P", "stable"]),
        format!("{old} {head}")
    );
    assert_eq!(
        env.git(&["rev-list", "--first-parent", "--count", "stable"]),
        "2"
    );
    let d = decision_of(&env, "stable");
    let combined: Vec<&str> = d
        .jobs
        .iter()
        .map(|j| j.job.as_str())
        .filter(|j| j.contains(" + "))
        .collect();
    assert_eq!(combined, ["test  boot [components/xen + components/linux]"]);
}

#[test]
fn invalid_candidates_are_shown_never_move_and_block_nothing() {
    let env = repo();
    bump(&env, "linux", "2");
    env.commit_on(
        "staging",
        "Broken things",
        &[
            ("components/bad.yaml", "name: bad\nversion: [1\n"),
            (
                "tests/ghost.yaml",
                "name: ghost\nuses: [components/nope]\nrun: ./tests/boot.sh\n",
            ),
            (
                "tests/lost.yaml",
                "name: lost\nuses: [components/xen]\nrun: ./tests/lost.sh\n",
            ),
            ("recipes/loop.sh", "#!/bin/sh\n"),
            (
                "images/egg.yaml",
                "name: egg\nversion: \"1\"\nbased-on: {image: hen}\nbuild: {run: ./recipes/loop.sh, artifact: a}\n",
            ),
            (
                "images/hen.yaml",
                "name: hen\nversion: \"1\"\nbased-on: {image: egg}\nbuild: {run: ./recipes/loop.sh, artifact: a}\n",
            ),
        ],
    );
    let status = env.sg_ok(&["status"]);
    assert!(
        status.contains("  components/bad new: invalid\n"),
        "{status}"
    );
    assert!(status.contains("    - components/bad.yaml:2:"), "{status}");
    assert!(status.contains("  tests/ghost new: invalid\n"), "{status}");
    assert!(
        status.contains("`uses` names components/nope, which does not exist"),
        "{status}"
    );
    assert!(status.contains("  tests/lost new: invalid\n"), "{status}");
    assert!(
        status.contains("\"tests/lost.sh\" does not exist"),
        "{status}"
    );
    assert!(
        status.contains("  images/egg new at 1: invalid\n"),
        "{status}"
    );
    assert!(
        status.contains("images/egg.yaml:1:1: `based-on` makes a cycle through images/egg"),
        "{status}"
    );
    let plan = env.sg_ok(&["plan"]);
    assert!(plan.contains("  tests/ghost: invalid\n"), "{plan}");
    let why = env.sg_ok(&["why", "tests/ghost"]);
    assert!(why.contains("staging → stable: invalid"), "{why}");
    // Everything else carries on.
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/linux as "), "{out}");
    assert!(out.contains("tests/ghost new: invalid"), "{out}");
    for p in ["components/bad.yaml", "tests/ghost.yaml", "tests/lost.yaml"] {
        assert!(
            env.git(&["ls-tree", "--name-only", "stable", p]).is_empty(),
            "{p} reached stable"
        );
    }
    // Fixing it on staging supersedes it.
    env.commit_on(
        "staging",
        "Fix bad",
        &[("components/bad.yaml", "name: bad\nversion: \"1\"\n")],
    );
    assert_eq!(state_of(&env, "components/bad"), "wait");
}

#[test]
fn an_invalid_pipeline_or_manifest_on_the_first_stage_stops_no_command() {
    let env = repo();
    bump(&env, "linux", "2");
    env.commit_on(
        "staging",
        "Break the pipeline",
        &[("stagegate.yaml", "version: 1\nstages: [staging\n")],
    );
    // HEAD (staging) cannot say which stages there are; stable's pipeline does.
    let out = env.sg_ok(&["status"]);
    assert!(out.contains("  stagegate.yaml changed: invalid\n"), "{out}");
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/linux as "), "{out}");
    env.sg_ok(&["drop", "stagegate.yaml", "--reason", "typo"]);
    assert_eq!(
        env.git(&["show", "staging:stagegate.yaml"]),
        PIPELINE.trim_end()
    );
    assert!(env.sg_ok(&["status"]).contains("up to date"));
}

#[test]
fn a_pending_pipeline_change_does_not_judge_itself_and_moves_only_when_approved() {
    let env = repo();
    // A change that would drop the gate's tests and rename the stages.
    let loose = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: []}\n";
    env.commit_on("staging", "Loosen the gate", &[("stagegate.yaml", loose)]);
    bump(&env, "xen", "2");
    let (out, _) = env.sg_code(1, &["cycle"]);
    // The rules are stable's: xen 2 is tested, and fails.
    assert!(out.contains("components/xen 1 → 2: rejected"), "{out}");
    assert!(out.contains("stagegate.yaml changed: wait"), "{out}");
    assert!(
        out.contains("a change of stagegate.yaml moves into stable only with an approval"),
        "{out}"
    );
    let why = env.sg_ok(&["why", "stagegate.yaml"]);
    assert!(why.contains("staging → stable: waiting"), "{why}");
    assert!(why.contains("approval: "), "{why}");
    assert_eq!(
        env.git(&["show", "stable:stagegate.yaml"]),
        PIPELINE.trim_end()
    );

    let out = env.sg_ok(&[
        "approve",
        "stagegate.yaml",
        "--reason",
        "we test elsewhere now",
    ]);
    assert_eq!(
        out,
        "approved stagegate.yaml into stable: we test elsewhere now\n"
    );
    // xen's rejection stands from the cycle before: reported, not signalled (exit 0).
    let (out, _) = env.sg_code(0, &["cycle"]);
    assert!(out.contains("promoted stagegate.yaml as "), "{out}");
    assert_eq!(
        env.git(&["show", "stable:stagegate.yaml"]),
        loose.trim_end()
    );
}

#[test]
fn removing_an_item_a_test_uses_waits_and_an_unused_one_moves() {
    let env = repo();
    env.commit_on(
        "stable",
        "An unused component",
        &[("components/old.yaml", &component("old", "1"))],
    );
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["merge", "-q", "stable"]);
    env.git(&["rm", "-q", "components/xen.yaml", "components/old.yaml"]);
    env.git(&["commit", "-q", "-m", "Remove xen and old"]);
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted components/old as "), "{out}");
    assert!(
        out.contains("components/xen removed (was 1): wait"),
        "{out}"
    );
    assert!(
        out.contains("tests/boot on stable uses components/xen, which is removed"),
        "{out}"
    );
    assert!(
        env.git(&["ls-tree", "--name-only", "stable", "components/old.yaml"])
            .is_empty()
    );
    assert_eq!(version(&env, "stable", "components/xen.yaml"), "1");
}

#[test]
fn a_changed_test_is_judged_with_the_targets_items() {
    let env = repo();
    bump(&env, "xen", "2");
    env.commit_on(
        "staging",
        "Boot shows its versions",
        &[("tests/boot.sh", &BOOT.replace("booting", "now booting"))],
    );
    let plan = env.json(&["plan", "--format", "json"]);
    let jobs = plan[0]["jobs"].as_array().unwrap();
    let changed: Vec<&serde_json::Value> =
        jobs.iter().filter(|j| j["role"] == "test_change").collect();
    assert_eq!(changed.len(), 1, "{plan:#}");
    let versions: Vec<(&str, &str)> = changed[0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["item"].as_str().unwrap(), e["version"].as_str().unwrap()))
        .collect();
    assert_eq!(
        versions,
        [("components/xen", "1"), ("components/linux", "1")]
    );
    // The changed test passes with stable's items and moves; xen 2 is rejected by
    // stable's test.
    let (out, _) = env.sg_code(1, &["cycle"]);
    assert!(out.contains("promoted tests/boot as "), "{out}");
    assert!(out.contains("components/xen 1 → 2: rejected"), "{out}");
    let why = env.sg_ok(&["why", "tests/boot"]);
    assert!(why.starts_with("tests/boot: staging content "), "{why}");
    assert!(why.contains("not pending anywhere"), "{why}");
}

#[test]
fn every_commit_carries_the_time_it_was_written() {
    let env = repo();
    env.commit_on(
        "staging",
        "A slow boot",
        &[("tests/boot.sh", "#!/bin/sh\nsleep 2\necho slow but fine\n")],
    );
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("promoted tests/boot as "), "{out}");
    let d = decision_of(&env, "stable");
    let committed: i64 = env
        .git(&["log", "-1", "--format=%ct", "stable"])
        .parse()
        .unwrap();
    let decided = humantime::parse_rfc3339(&d.decided_at)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        committed >= decided,
        "committed {committed}, decided {decided}"
    );
}

#[test]
fn drop_reverts_the_version_on_every_earlier_stage_and_poll_never_proposes_it_again() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "new"]);
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [new, staging, stable]\ngates:\n  staging: {require: [test]}\n  stable: {require: [test], baseline: true}\n",
    );
    env.write("components/linux.yaml", &component("linux", "1"));
    env.write(
        "components/xen.yaml",
        "name: xen\nversion: \"1\"\nwatch: {run: ./watch.sh}\n",
    );
    env.write("watch.sh", "#!/bin/sh\ncat ./upstream-version\n");
    env.write("upstream-version", "2\n");
    env.write("tests/boot.yaml", BOOT_TEST);
    env.write("tests/boot.sh", "#!/bin/sh\nexit 0\n");
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "start"]);
    env.git(&["branch", "staging"]);
    env.git(&["branch", "stable"]);

    // poll proposes xen 2, and it reaches staging.
    let out = env.sg_ok(&["cycle", "--stage", "staging"]);
    assert!(out.contains("promoted components/xen as "), "{out}");
    assert_eq!(version(&env, "new", "components/xen.yaml"), "2");
    assert_eq!(version(&env, "staging", "components/xen.yaml"), "2");

    let out = env.sg_ok(&["drop", "components/xen", "--reason", "no console"]);
    assert!(out.contains("from staging"), "{out}");
    assert!(out.contains("from new"), "{out}");
    for stage in ["new", "staging", "stable"] {
        assert_eq!(version(&env, stage, "components/xen.yaml"), "1", "{stage}");
    }
    // The dropped version is never proposed again; the next one is.
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("poll: nothing new"), "{out}");
    assert_eq!(version(&env, "new", "components/xen.yaml"), "1");
    env.commit_on("new", "upstream 3", &[("upstream-version", "3\n")]);
    let out = env.sg_ok(&["poll"]);
    assert!(out.contains("components/xen 1 → 3"), "{out}");
}

#[test]
fn drop_reverts_an_image_and_its_build_record() {
    let disk = |v: &str| {
        format!(
            "name: disk\nversion: \"{v}\"\nbuild: {{run: ./recipes/disk.sh, artifact: disk.img}}\n"
        )
    };
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "new"]);
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [new, staging, stable]\ngates:\n  staging: {require: [build]}\n  stable: {require: []}\n",
    );
    env.write(
        "recipes/disk.sh",
        "#!/bin/sh\necho \"disk $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\n",
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "start"]);
    env.git(&["branch", "staging"]);
    env.git(&["branch", "stable"]);
    env.commit_on("new", "disk 1", &[("images/disk.yaml", &disk("1"))]);
    env.sg_ok(&["cycle"]);
    assert_eq!(
        version(&env, "stable", ".stagegate/built/images/disk.yaml"),
        "1"
    );
    // disk 2 is built into staging, and held there.
    env.commit_on("new", "disk 2", &[("images/disk.yaml", &disk("2"))]);
    env.sg_ok(&["cycle", "--stage", "staging"]);
    env.sg_ok(&[
        "hold",
        "images/disk",
        "--stage",
        "staging",
        "--reason",
        "look first",
    ]);
    assert_eq!(
        version(&env, "staging", ".stagegate/built/images/disk.yaml"),
        "2"
    );

    let out = env.sg_ok(&["drop", "images/disk", "--reason", "not this one"]);
    assert!(
        out.contains("dropped images/disk 2 (back to 1) from staging"),
        "{out}"
    );
    assert!(out.contains("from new"), "{out}");
    for stage in ["new", "staging"] {
        assert_eq!(version(&env, stage, "images/disk.yaml"), "1", "{stage}");
    }
    assert_eq!(
        env.rev("staging:.stagegate/built/images/disk.yaml"),
        env.rev("stable:.stagegate/built/images/disk.yaml"),
        "the build record goes back with the manifest"
    );
    let status = env.sg_ok(&["status"]);
    assert_eq!(status.matches("up to date").count(), 2, "{status}");
}

#[test]
fn a_test_needing_an_image_without_an_artifact_is_not_run_and_its_candidate_waits() {
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", PIPELINE),
        (
            "images/disk.yaml",
            "name: disk\nversion: \"1\"\nbuild: {run: ./recipes/disk.sh, artifact: disk.img}\n",
        ),
        (
            "recipes/disk.sh",
            "#!/bin/sh\n: > \"$STAGEGATE_OUT/disk.img\"\n",
        ),
        ("components/xen.yaml", &component("xen", "1")),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [images/disk, components/xen]\nrun: ./tests/boot.sh\n",
        ),
        ("tests/boot.sh", "#!/bin/sh\nexit 1\n"),
    ]);
    env.commit_on(
        "staging",
        "Bump disk and xen",
        &[
            (
                "images/disk.yaml",
                "name: disk\nversion: \"2\"\nbuild: {run: ./recipes/disk.sh, artifact: disk.img}\n",
            ),
            ("components/xen.yaml", &component("xen", "2")),
        ],
    );
    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("nothing to run: no jobs are planned"), "{out}");
    assert!(out.contains("components/xen 1 → 2: wait"), "{out}");
    assert!(
        out.contains("images/disk 1 has no built artifact on"),
        "{out}"
    );
    assert!(out.contains("images/disk 1 → 2: wait"), "{out}");
    assert!(
        env.git(&["rev-parse", "--verify", "-q", LEDGER]).is_empty()
            || !env
                .git(&["ls-tree", "-r", "--name-only", LEDGER])
                .lines()
                .any(crate::common::is_result_path),
        "no job ran"
    );
}

#[test]
fn the_example_moves_a_component_past_a_broken_image_in_one_cycle() {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    env.commit_on(
        "new",
        "hello 1.1, and a guest recipe that breaks",
        &[
            (
                "components/hello.yaml",
                &env.read("components/hello.yaml")
                    .replace("version: \"1.0\"", "version: \"1.1\""),
            ),
            (
                "images/debian-guest.yaml",
                &env.read("images/debian-guest.yaml")
                    .replace("version: \"12.8-1\"", "version: \"12.8-2\""),
            ),
            (
                "recipes/guest.sh",
                "#!/bin/sh\necho \"the preparation step is broken\"\nexit 1\n",
            ),
        ],
    );
    let (out, _) = env.sg_code(1, &["cycle"]);
    assert!(
        out.contains("new → staging: promoted components/hello as "),
        "{out}"
    );
    assert!(
        out.contains("staging → stable: promoted components/hello as "),
        "{out}"
    );
    assert_eq!(version(&env, "stable", "components/hello.yaml"), "1.1");
    assert_eq!(
        version(&env, "stable", "images/debian-guest.yaml"),
        "12.8-1"
    );
    assert_eq!(version(&env, "new", "images/debian-guest.yaml"), "12.8-2");
    let why = env.sg_ok(&["why", "images/debian-guest"]);
    assert!(
        why.starts_with("images/debian-guest: new 12.8-2, staging 12.8-1, stable 12.8-1\n"),
        "{why}"
    );
    assert!(why.contains("new → staging: rejected"), "{why}");
    assert!(
        why.contains("FAIL build images/debian-guest — fail"),
        "{why}"
    );
    assert!(why.contains("the preparation step is broken"), "{why}");
}

/// `git push` from the state repository, returning whether it was accepted and stderr.
fn push(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("git");
    base_env(&mut cmd, env.home());
    let out = cmd
        .arg("-C")
        .arg(&env.repo)
        .arg("push")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_guarded_remote_refuses_a_hand_made_merge_and_accepts_a_real_promotion() {
    let env = repo();
    let remote = env.bare_clone("remote.git");
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    let out = env.sg_ok(&["hook", "install", "--pre-receive", remote.to_str().unwrap()]);
    assert!(out.starts_with("installed "), "{out}");
    assert!(remote.join("hooks/pre-receive").exists());
    let before = env.git_in(&remote, &["rev-parse", "stable"]);

    // A hand-made merge of a version that fails the gate.
    bump(&env, "xen", "2");
    env.git(&["checkout", "-q", "stable"]);
    env.git(&[
        "merge",
        "-q",
        "--no-ff",
        "staging",
        "-m",
        "Promote to stable (by hand)",
    ]);
    let (ok, err) = push(&env, &["origin", "staging", "stable"]);
    assert!(!ok, "the push was accepted:\n{err}");
    assert!(
        err.contains("stagegate: refusing the push to stable"),
        "{err}"
    );
    assert!(err.contains("is not a promotion the gate made"), "{err}");
    // The refusal's advice, run below as printed.
    assert!(
        err.contains("run `stagegate promote --push` (see `stagegate verify`)"),
        "{err}"
    );
    assert_eq!(env.git_in(&remote, &["rev-parse", "stable"]), before);
    let (out, _) = env.sg_code(1, &["verify"]);
    assert!(out.contains("FAIL stable "), "{out}");
    env.git(&["reset", "-q", "--hard", &before]);
    env.git(&["checkout", "-q", "staging"]);

    // A real promotion: linux moves, xen 2 stays, rejected.
    bump(&env, "linux", "2");
    env.sg_code(1, &["run"]);
    let (out, err) = env.sg_code(1, &["promote", "--push"]);
    assert!(
        out.contains("promoted components/linux as "),
        "{out}\n{err}"
    );
    assert_eq!(
        env.git_in(&remote, &["rev-parse", "stable"]),
        env.rev("stable"),
        "{err}"
    );
    let out = env.sg_ok(&["verify"]);
    assert!(out.starts_with("ok   stable "), "{out}");
    assert!(
        out.contains(" promotion: Promote to stable: components/linux 1 -> 2"),
        "{out}"
    );

    // A rewritten decision: the same promotion with xen slipped into its tree.
    let head = env.rev("stable");
    let tree_with_xen = {
        env.git(&["checkout", "-q", "stable"]);
        env.write("components/xen.yaml", &component("xen", "2"));
        env.git(&["add", "components/xen.yaml"]);
        env.git(&["write-tree"])
    };
    let message = env.git(&["log", "-1", "--format=%B", &head]);
    let parent = env.rev("stable^");
    let forged = env.git(&["commit-tree", &tree_with_xen, "-p", &parent, "-m", &message]);
    env.git(&["reset", "-q", "--hard", &forged]);
    let (ok, err) = push(&env, &["-f", "origin", "stable"]);
    assert!(!ok, "{err}");
    assert!(err.contains("a gated stage only moves forward"), "{err}");
    env.git(&["reset", "-q", "--hard", &parent]);
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["branch", "-f", "stable", &head]);
    let (out, _) = env.sg_code(1, &["verify", &forged, "--stage", "stable"]);
    assert!(
        out.contains("its tree is not stable's plus what moved: components/xen.yaml differ"),
        "{out}"
    );
}

/// Snapshot `text` with what changes from run to run filtered out, soak ages and who decided
/// too.
macro_rules! assert_text {
    ($env:expr, $name:expr, $text:expr) => {
        crate::common::assert_filtered!(
            $env,
            $name,
            $text,
            (
                r"for [0-9hms ]+( \(first seen now\))? of the",
                "for [age] of the"
            ),
            (r"; [0-9hms ]+ left", "; [left] left"),
            (r"by [^ ]+@\[host\]", "by [who]"),
        )
    };
}

#[test]
fn status_and_why_show_every_candidate_state() {
    let env = TestEnv::init_with(&[
        (
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true, soak: 1h}\n",
        ),
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("components/qemu.yaml", &component("qemu", "1")),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen, components/linux, components/qemu]\nrun: ./tests/boot.sh\n",
        ),
        ("tests/boot.sh", BOOT),
    ]);
    bump(&env, "xen", "2"); // fails: rejected
    bump(&env, "linux", "2"); // passes, soaking: wait
    bump(&env, "qemu", "2"); // passes, held
    env.commit_on(
        "staging",
        "A broken manifest",
        &[("components/bad.yaml", "name: bad\nversion: [1\n")],
    );
    env.sg_ok(&[
        "hold",
        "components/qemu",
        "--reason",
        "wait for the release notes",
    ]);
    env.sg_code(1, &["cycle"]);
    let status = env.sg_ok(&["status"]);
    assert_text!(env, "status_candidate_states", status);
    let why = env.sg_ok(&["why", "components/xen"]);
    assert_text!(env, "why_rejected", why);
    let why = env.sg_ok(&["why", "components/linux"]);
    assert_text!(env, "why_soaking", why);
}

#[test]
fn diff_shows_the_files_a_candidate_names_as_status_does() {
    let env = repo();
    env.commit_on(
        "staging",
        "Boot says more",
        &[(
            "tests/boot.sh",
            &BOOT.replace("login prompt", "the login prompt"),
        )],
    );
    assert!(env.sg_ok(&["status"]).contains("  tests/boot changed: "));
    let out = env.sg_ok(&["diff", "stable", "staging"]);
    assert!(
        out.contains("--- stable:tests/boot.sh\n+++ staging:tests/boot.sh\n"),
        "{out}"
    );
    assert!(out.contains("+echo \"the login prompt reached\""), "{out}");
    assert!(!out.contains("tests/boot.yaml"), "{out}");
}

#[test]
fn verify_accepts_a_promotion_merged_through_a_pull_request() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["cycle"]);
    let promotion = env.rev("stable");
    let before = env.rev("stable^");
    let message = env.git(&["log", "-1", "--format=%B", &promotion]);
    // What a forge's merge button makes: a merge of the promotion branch into stable.
    let merged = env.git(&[
        "commit-tree",
        &format!("{promotion}^{{tree}}"),
        "-p",
        &before,
        "-p",
        &promotion,
        "-m",
        &message,
    ]);
    let out = env.sg_ok(&["verify", &merged, "--stage", "stable"]);
    assert!(out.starts_with("ok   stable "), "{out}");
    // The same merge of something else does not hold.
    let other = env.git(&[
        "commit-tree",
        &format!("{before}^{{tree}}"),
        "-p",
        &before,
        "-p",
        &promotion,
        "-m",
        &message,
    ]);
    let (out, _) = env.sg_code(1, &["verify", &other, "--stage", "stable"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
}

#[test]
fn verify_knows_each_of_the_forges_merge_buttons() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["cycle"]);
    let promotion = env.rev("stable");
    let before = env.rev("stable^");
    let tree = format!("{promotion}^{{tree}}");
    // The merge button, with GitHub's own message: the promotion is its second parent.
    let merged = env.git(&[
        "commit-tree", &tree, "-p", &before, "-p", &promotion, "-m",
        "Merge pull request #7 from octo-org/stagegate/promote/staging-to-stable\n\nPromote to stable",
    ]);
    let out = env.sg_ok(&["verify", &merged, "--stage", "stable"]);
    assert!(out.starts_with("ok   stable "), "{out}");
    assert!(out.contains("promotion merged by the forge"), "{out}");
    // The squash button: the promotion's tree, one parent, a message of its own.
    let squashed = env.git(&[
        "commit-tree",
        &tree,
        "-p",
        &before,
        "-m",
        "Promote to stable: linux 1 -> 2 (#7)",
    ]);
    let out = env.sg_ok(&["verify", &squashed, "--stage", "stable"]);
    assert!(out.starts_with("ok   stable "), "{out}");
    assert!(
        out.contains("promotion squash-merged by the forge"),
        "{out}"
    );
    // A squash that carries anything else besides is refused.
    env.git(&["checkout", "-q", "stable"]);
    env.write("components/xen.yaml", &component("xen", "9"));
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "sneak"]);
    let sneaky_tree = env.git(&["rev-parse", "HEAD^{tree}"]);
    env.git(&["reset", "-q", "--hard", &promotion]);
    let sneaky = env.git(&[
        "commit-tree",
        &sneaky_tree,
        "-p",
        &before,
        "-m",
        "Promote to stable (#7)",
    ]);
    let (out, _) = env.sg_code(1, &["verify", &sneaky, "--stage", "stable"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
    assert!(out.contains("components/xen.yaml"), "{out}");
    // The merge button over something else than the promotion is no promotion.
    let other = env.git(&[
        "commit-tree",
        &format!("{before}^{{tree}}"),
        "-p",
        &before,
        "-p",
        &promotion,
        "-m",
        "Merge",
    ]);
    let (out, _) = env.sg_code(1, &["verify", &other, "--stage", "stable"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
}

#[test]
fn every_run_says_when_the_stage_head_is_a_squash_merged_promotion() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["cycle"]);
    let promotion = env.rev("stable");
    let before = env.rev("stable^");
    let squashed = env.git(&[
        "commit-tree",
        &format!("{promotion}^{{tree}}"),
        "-p",
        &before,
        "-m",
        "Promote to stable (#7)",
    ]);
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["branch", "-f", "stable", &squashed]);
    let out = env.sg_ok(&["promote", "--stage", "stable"]);
    assert!(
        out.contains(&format!(
            "stable's head {} is a promotion squash- or rebase-merged by the forge",
            &squashed[..10]
        )),
        "{out}"
    );
    assert!(out.contains("merge button"), "{out}");
}

#[test]
fn plan_lists_no_jobs_for_a_rejection_that_stands_even_when_stable_moved() {
    let env = repo();
    bump(&env, "xen", "2");
    bump(&env, "linux", "2");
    env.sg_code(1, &["cycle"]);
    // linux moved: xen's jobs against the new stable would have new keys; none is planned.
    assert_eq!(version(&env, "stable", "components/linux.yaml"), "2");
    let matrix = env.json(&["plan", "--missing", "--format", "github-matrix"]);
    assert_eq!(matrix["include"], serde_json::json!([]), "{matrix:#}");
    let plan = env.sg_ok(&["plan"]);
    assert!(
        plan.contains("not planned: rejected before at this content: nothing runs for it again"),
        "{plan}"
    );
    // The rejection stood before this cycle: nothing new said no (exit 0).
    let (out, _) = env.sg_code(0, &["cycle"]);
    assert!(out.contains("nothing to run"), "{out}");
}

#[test]
fn a_test_can_be_held_and_released_like_an_item() {
    let env = repo();
    env.commit_on(
        "staging",
        "Boot says more",
        &[(
            "tests/boot.sh",
            &BOOT.replace("login prompt", "the login prompt"),
        )],
    );
    let out = env.sg_ok(&["hold", "tests/boot", "--reason", "review the new wording"]);
    assert!(out.starts_with("held tests/boot on staging"), "{out}");
    assert!(
        env.git(&[
            "ls-tree",
            "--name-only",
            "-r",
            "staging",
            ".stagegate/holds"
        ])
        .contains(".stagegate/holds/staging/tests-boot.yaml")
    );
    env.sg_ok(&["run"]);
    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("tests/boot changed: held"), "{out}");
    env.sg_ok(&["release", "tests/boot"]);
    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("promoted tests/boot as "), "{out}");
}
