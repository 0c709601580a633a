//! What the tool writes for GitHub Actions, given the environment a workflow step gets.

use crate::common::TestEnv;

/// Run stagegate as a workflow step would: `GITHUB_ACTIONS=true`, with the output and
/// step-summary files GitHub provides.
fn step(env: &TestEnv, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String, String) {
    let output = env.home().join("github_output");
    let summary = env.home().join("github_step_summary");
    let mut cmd = env.sg_cmd(args);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "octo-org/state")
        .env("GITHUB_RUN_ID", "4242");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        read(&output),
        read(&summary),
    )
}

#[test]
fn cycle_in_actions_writes_outputs_and_a_step_summary() {
    let env = TestEnv::init_example();
    let (code, _, outputs, summary) = step(&env, &["cycle", "-j", "2"], &[]);
    assert_eq!(code, 0);
    let staging = env.rev("staging");
    let stable = env.rev("stable");
    assert!(outputs.contains("decision=promote\n"), "{outputs}");
    assert!(
        outputs.contains(&format!("promoted=staging:{staging} stable:{stable}\n")),
        "{outputs}"
    );
    assert!(
        outputs.contains("pass=4\n"),
        "two builds and two tests: {outputs}"
    );
    assert!(outputs.contains("fail=0\n"), "{outputs}");
    assert!(summary.contains("### new → staging: promote"), "{summary}");
    assert!(
        summary.contains("guest-boots"),
        "the verdict table lists the jobs: {summary}"
    );
    assert!(
        summary.contains("### staging → stable: promote"),
        "{summary}"
    );
}

#[test]
fn a_failing_job_in_actions_is_an_error_annotation_with_its_log_in_a_group() {
    let env = TestEnv::init_with(&[
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n",
        ),
        (
            "tests/boot.sh",
            "#!/bin/sh\necho \"booting xen $STAGEGATE_COMPONENT_XEN_VERSION\"\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" != 2 ]\n",
        ),
    ]);
    env.commit_on(
        "staging",
        "Bump xen",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    let (code, stdout, _, _) = step(&env, &["run"], &[]);
    assert_eq!(code, 1);
    assert!(stdout.contains("::error title=test  boot [components/xen]::test  boot [components/xen] failed: exit status 1"), "{stdout}");
    // The excerpt sits in a group, fenced from workflow commands (test_boundary).
    let group = stdout
        .split_once("::group::log of test  boot [components/xen]\n")
        .and_then(|(_, rest)| rest.split_once("\n::endgroup::"))
        .map(|(inside, _)| inside)
        .unwrap_or_else(|| panic!("no group: {stdout}"));
    let lines: Vec<&str> = group.lines().collect();
    let token = lines[0].strip_prefix("::stop-commands::").expect("fenced");
    assert_eq!(
        lines[1..],
        ["booting xen 2", &format!("::{token}::")],
        "{stdout}"
    );
}

#[test]
fn secrets_are_masked_before_anything_else_is_printed() {
    let env = TestEnv::init_example();
    let (_, stdout, _, _) = step(
        &env,
        &["status"],
        &[("STAGEGATE_GITHUB_APP_TOKEN", "ghs_secret_app_token")],
    );
    assert!(
        stdout.starts_with("::add-mask::ghs_secret_app_token\n"),
        "{stdout}"
    );
}

#[test]
fn registry_credentials_are_masked_too() {
    let env = TestEnv::init_example();
    let (_, stdout, _, _) = step(
        &env,
        &["status"],
        &[
            ("STAGEGATE_OCI_TOKEN", "oci_bearer_secret"),
            ("STAGEGATE_OCI_PASSWORD", "oci_basic_secret"),
        ],
    );
    assert!(
        stdout.contains("::add-mask::oci_bearer_secret\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::add-mask::oci_basic_secret\n"),
        "{stdout}"
    );
}

#[test]
fn init_github_writes_the_example_workflows() {
    let env = crate::common::TestEnv::new();
    // `--github DIR`: the directory is not taken for the workflow's name.
    env.sg_ok(&[
        "init",
        "--github",
        "--store",
        "oci://ghcr.io/octo-org/state/artifacts",
        env.repo.to_str().unwrap(),
    ]);
    let files = env.git(&["ls-tree", "-r", "--name-only", "new", ".github/workflows"]);
    assert_eq!(
        files,
        ".github/workflows/stagegate-cycle.yml\n.github/workflows/stagegate-pull-request.yml"
    );
    assert!(
        env.repo
            .join(".github/workflows/stagegate-cycle.yml")
            .is_file()
    );
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    env.sg_ok(&["check"]);
}

#[test]
fn the_step_summary_stays_within_githubs_limit_and_links_the_full_report() {
    let env = TestEnv::init_example();
    // Earlier steps of the job already wrote nearly 1 MiB.
    let summary = env.home().join("github_step_summary");
    let before = "x".repeat(1024 * 1024 - 600) + "\n";
    std::fs::write(&summary, &before).unwrap();
    let (code, stdout, _, after) = step(&env, &["cycle", "-j", "2"], &[]);
    assert_eq!(code, 0);
    assert!(after.len() <= 1024 * 1024, "{} bytes", after.len());
    let added = &after[before.len()..];
    assert!(
        added.contains("**This summary is cut at GitHub's 1024 KiB limit.** The full report is in [the job's log](https://github.com/octo-org/state/actions/runs/4242)"),
        "{added}"
    );
    // The whole summary is in the log, where workflow commands are stopped.
    let start = stdout
        .find("::group::full step summary\n::stop-commands::")
        .unwrap();
    let full = &stdout[start..];
    assert!(full.contains("### staging → stable: promote"), "{full}");
    assert!(!added.contains("### staging → stable"), "{added}");
}
