//! Candidates, groups, environments and job keys (`status`, `plan`, `diff`).

use crate::common::TestEnv;

const HOST: &str = "name: host\nversion: \"1.0\"\n";
const GUEST: &str = "name: guest\nversion: \"1.0\"\n";
const XEN: &str = "name: xen\nversion: \"4.20\"\n";
const OTHER: &str = "name: other\nversion: \"1\"\n";
const BOOT: &str =
    "name: boot\nuses: [images/host, images/guest, components/xen]\nrun: ./tests/boot.sh\n";
const SOLO: &str = "name: solo\nuses: [components/other]\nrun: ./tests/solo.sh\n";

fn env() -> TestEnv {
    TestEnv::init_with(&[
        ("images/host.yaml", HOST),
        ("images/guest.yaml", GUEST),
        ("components/xen.yaml", XEN),
        ("components/other.yaml", OTHER),
        ("tests/boot.yaml", BOOT),
        ("tests/boot.sh", "#!/bin/sh\nexit 0\n"),
        ("tests/solo.yaml", SOLO),
        ("tests/solo.sh", "#!/bin/sh\nexit 0\n"),
    ])
}

/// The required jobs of the groups of candidates of the staging → stable move (and of
/// their combination, once planned).
fn jobs(env: &TestEnv) -> Vec<serde_json::Value> {
    let plan = env.json(&["plan", "--format", "json"]);
    let mv = &plan[0];
    assert_eq!(mv["from"]["name"], "staging");
    let groups = mv["groups"].as_array().unwrap();
    assert!(!groups.is_empty(), "{plan:#}");
    let all = mv["jobs"].as_array().unwrap();
    let mut out: Vec<serde_json::Value> = Vec::new();
    for g in groups
        .iter()
        .chain(mv["combination"].as_object().map(|_| &mv["combination"]))
    {
        for k in g["required"].as_array().unwrap() {
            let job = all.iter().find(|j| j["key"] == *k).unwrap().clone();
            if !out.iter().any(|j| j["key"] == job["key"]) {
                out.push(job);
            }
        }
    }
    out
}

/// The required keys of the group holding `member`.
fn group_keys(env: &TestEnv, member: &str) -> Vec<String> {
    let plan = env.json(&["plan", "--format", "json"]);
    let g = plan[0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["members"].as_array().unwrap().iter().any(|m| m == member))
        .unwrap_or_else(|| panic!("no group holds {member}: {plan:#}"))
        .clone();
    g["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn nothing_is_pending_when_stages_agree() {
    let env = env();
    let out = env.sg_ok(&["status"]);
    assert!(out.contains("up to date"), "{out}");
    let plan = env.json(&["plan", "--format", "json"]);
    assert_eq!(plan[0]["candidates"].as_array().unwrap().len(), 0);
}

#[test]
fn a_bumped_image_is_the_only_candidate_and_each_test_using_it_is_planned() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host to 1.1",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    let status = env.sg_ok(&["status"]);
    assert!(status.contains("images/host 1.0 → 1.1: wait (1 missing)\n    - test  boot [images/host] has no result yet"), "{status}");
    assert!(!status.contains("images/guest"), "{status}");
    let json = env.json(&["status", "--format", "json"]);
    assert_eq!(json[0]["candidates"][0]["state"], "wait");
    assert_eq!(json[0]["candidates"][0]["item"], "images/host");
    let jobs = jobs(&env);
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    let job = &jobs[0];
    assert_eq!(job["name"], "boot");
    assert_eq!(job["role"], "candidate");
    assert_eq!(job["candidates"], serde_json::json!(["images/host"]));
    // The candidate at its new version, everything else at stable's.
    let env_items: Vec<(String, String, bool)> = job["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap().into(),
                e["version"].as_str().unwrap().into(),
                e["candidate"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env_items,
        vec![
            ("images/host".into(), "1.1".into(), true),
            ("images/guest".into(), "1.0".into(), false),
            ("components/xen".into(), "4.20".into(), false)
        ]
    );
    // The gate asks for a baseline: the same test with everything at stable.
    assert!(job["baseline"].is_string());
}

#[test]
fn two_candidates_are_judged_alone_then_together_once_both_pass() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host and xen",
        &[
            ("images/host.yaml", "name: host\nversion: \"1.1\"\n"),
            ("components/xen.yaml", "name: xen\nversion: \"4.21\"\n"),
        ],
    );
    let shapes = |jobs: &[serde_json::Value]| {
        let mut shapes: Vec<(String, String)> = jobs
            .iter()
            .map(|j| {
                (
                    j["role"].as_str().unwrap().to_string(),
                    j["candidates"].to_string(),
                )
            })
            .collect();
        shapes.sort();
        shapes
    };
    // Each alone first: one unknown at a time.
    assert_eq!(
        shapes(&jobs(&env)),
        vec![
            ("candidate".into(), r#"["components/xen"]"#.into()),
            ("candidate".into(), r#"["images/host"]"#.into()),
        ]
    );
    // Both pass alone: before they land together, their combination is planned and run.
    env.sg_ok(&["run"]);
    let jobs = jobs(&env);
    assert_eq!(
        shapes(&jobs),
        vec![
            ("candidate".into(), r#"["components/xen"]"#.into()),
            ("candidate".into(), r#"["images/host"]"#.into()),
            (
                "combination".into(),
                r#"["images/host","components/xen"]"#.into()
            ),
        ]
    );
    let keys: std::collections::BTreeSet<&str> =
        jobs.iter().map(|j| j["key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 3, "each environment has its own key");
}

fn boot_key(env: &TestEnv) -> String {
    jobs(env).iter().find(|j| j["name"] == "boot").unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_changed_test_script_changes_the_key() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    let before = boot_key(&env);
    env.commit_on(
        "staging",
        "Test more",
        &[("tests/boot.sh", "#!/bin/sh\necho more\nexit 0\n")],
    );
    // The changed test is a candidate of its own, judged with stable's items; the image is
    // still judged by stable's version of the test.
    let test_keys = group_keys(&env, "tests/boot");
    assert_eq!(test_keys.len(), 1);
    assert_ne!(
        test_keys[0], before,
        "the script changed, so the key must too"
    );
    assert_eq!(group_keys(&env, "images/host"), vec![before]);
}

#[test]
fn an_unrelated_change_keeps_the_key() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    let before = boot_key(&env);
    // Change an item and a script the boot test does not use, on both stages alike.
    for branch in ["staging", "stable"] {
        env.commit_on(
            branch,
            "Unrelated",
            &[
                ("components/other.yaml", "name: other\nversion: \"2\"\n"),
                ("tests/solo.sh", "#!/bin/sh\ntrue\n"),
            ],
        );
    }
    env.git(&["checkout", "-q", "staging"]);
    let plan = env.json(&["plan", "--format", "json"]);
    let keys: Vec<&str> = plan[0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["name"] == "boot" && j["role"] == "candidate")
        .map(|j| j["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.contains(&before.as_str()),
        "an unrelated change must not change the key: {keys:?} vs {before}"
    );
}

#[test]
fn status_and_plan_work_on_a_bare_repository() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host to 1.1",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    let bare = env.home().join("bare.git");
    env.git(&[
        "clone",
        "-q",
        "--bare",
        env.repo.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    let bare_env = TestEnv {
        tmp: tempfile::tempdir().unwrap(),
        repo: bare.clone(),
    };
    std::fs::write(bare_env.home().join("gitconfig"), "").unwrap();
    let status = bare_env.sg_ok(&["status"]);
    assert!(status.contains("images/host 1.0 → 1.1"), "{status}");
    let plan = bare_env.sg_ok(&["plan"]);
    assert!(plan.contains("test  boot [images/host]"), "{plan}");
    assert!(!bare.join("images").exists(), "no work tree may be written");
}

#[test]
fn diff_shows_each_changed_manifest_as_a_unified_diff() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    let out = env.sg_ok(&["diff", "stable", "staging"]);
    assert!(out.contains("--- stable:images/host.yaml"), "{out}");
    assert!(out.contains("+++ staging:images/host.yaml"), "{out}");
    assert!(
        out.contains("-version: \"1.0\"\n+version: \"1.1\""),
        "{out}"
    );
    assert!(!out.contains("guest"), "{out}");
}

#[test]
fn the_example_from_init_checks_and_plans_its_builds() {
    let env = TestEnv::init_example();
    let out = env.sg_ok(&["check"]);
    assert!(out.starts_with("ok: 3 items, 2 tests, 3 stages"), "{out}");
    let plan = env.sg_ok(&["plan"]);
    assert!(plan.contains("build images/debian-host"), "{plan}");
    assert!(plan.contains("build images/debian-guest"), "{plan}");
    assert_eq!(env.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "new");
    assert_eq!(
        env.git(&["status", "--porcelain"]),
        "",
        "init leaves a clean work tree"
    );
}

#[test]
fn diff_json_lists_each_changed_manifest() {
    let env = env();
    env.commit_on(
        "staging",
        "Bump host, drop guest",
        &[("images/host.yaml", "name: host\nversion: \"1.1\"\n")],
    );
    env.git(&["rm", "-q", "images/guest.yaml"]);
    env.git(&["commit", "-q", "-m", "Drop guest"]);
    let v = env.json(&["diff", "stable", "staging", "--format", "json"]);
    let rows: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().into(),
                r["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("images/guest.yaml".into(), "removed".into()),
            ("images/host.yaml".into(), "changed".into())
        ]
    );
}

#[test]
fn plan_rev_plans_what_a_pull_request_head_would_cause() {
    let env = env();
    // A pull request into staging: its head bumps xen, on a branch of its own.
    env.git(&["checkout", "-q", "-b", "pr-42", "staging"]);
    let head = env.commit_on(
        "pr-42",
        "Bump xen to 4.21",
        &[("components/xen.yaml", "name: xen\nversion: \"4.21\"\n")],
    );
    let staging = env.rev("staging");
    let plan = env.json(&["plan", "--format", "json"]);
    assert_eq!(
        plan[0]["candidates"].as_array().unwrap().len(),
        0,
        "nothing on the stages"
    );
    let plan = env.json(&[
        "plan", "--rev", &head, "--stage", "staging", "--format", "json",
    ]);
    let mv = &plan[0];
    assert_eq!(mv["from_head"], head.as_str());
    let candidates = mv["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 1, "{plan:#}");
    assert_eq!(candidates[0]["item"], "components/xen", "{plan:#}");
    let jobs: Vec<&str> = mv["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert!(jobs.contains(&"boot"), "{jobs:?}");
    assert_eq!(env.rev("staging"), staging, "no ref moved");
    // Without --stage, REV stands for the first stage's head.
    let plan = env.json(&["plan", "--rev", "pr-42", "--format", "json"]);
    assert_eq!(plan[0]["from_head"], head.as_str());

    let (_, err) = env.sg_code(2, &["plan", "--rev", "no-such-thing"]);
    assert!(
        err.contains("--rev \"no-such-thing\" does not name a commit"),
        "{err}"
    );
    assert!(err.contains("git fetch origin pull/N/head"), "{err}");
}

#[test]
fn the_github_matrix_holds_only_jobs_that_can_start_and_a_derived_build_waits_for_its_parent() {
    let env = TestEnv::init_with(&[(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build]}\n",
    )]);
    env.commit_on(
        "staging",
        "Add a host image and a guest built on it",
        &[
            (
                "images/host.yaml",
                "name: host\nversion: \"1\"\nbuild: {run: ./recipes/host.sh, artifact: disk.img}\n",
            ),
            (
                "images/guest.yaml",
                "name: guest\nversion: \"1\"\nbased-on: {image: host}\nbuild: {run: ./recipes/guest.sh, artifact: disk.img}\n",
            ),
            (
                "recipes/host.sh",
                "#!/bin/sh\necho host > \"$STAGEGATE_OUT/disk.img\"\n",
            ),
            (
                "recipes/guest.sh",
                "#!/bin/sh\n{ cat \"$STAGEGATE_IMAGE_HOST_ARTIFACT\"; echo guest; } > \"$STAGEGATE_OUT/disk.img\"\n",
            ),
        ],
    );
    let names = |matrix: &serde_json::Value| -> Vec<String> {
        matrix["include"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let missing = ["plan", "--missing", "--format", "github-matrix"];
    // Each matrix job runs alone on its runner: the guest's build, which needs the host's
    // artifact, would only be skipped there. It comes in the next run.
    let matrix = env.json(&missing);
    assert_eq!(names(&matrix), ["build images/host"], "{matrix:#}");
    let host = matrix["include"][0]["key"].as_str().unwrap().to_string();
    env.sg_ok(&["run", "--job", &host]);
    let matrix = env.json(&missing);
    assert_eq!(names(&matrix), ["build images/guest"], "{matrix:#}");
    let guest = matrix["include"][0]["key"].as_str().unwrap().to_string();
    let out = env.sg_ok(&["run", "--job", &guest]);
    assert!(out.contains("pass"), "{out}");
    assert_eq!(names(&env.json(&missing)), Vec::<String>::new());
    // The plan itself still lists both.
    let plan = env.sg_ok(&["plan"]);
    assert!(plan.contains("build images/host"), "{plan}");
    assert!(plan.contains("build images/guest"), "{plan}");
}
