//! Host labels (DESIGN §4.18): what a job needs (`needs:`), what a runner offers, where
//! each job runs, and what waits when no runner can serve it.

use crate::common::TestEnv;
use crate::test_run::repo_with_tests;

const PASS: &str = "#!/bin/sh\nexit 0\n";

/// Two tests of xen 2: `plain` (any host) and `boot` (needs kvm).
fn kvm_repo() -> TestEnv {
    repo_with_tests(&[("plain", "", PASS), ("boot", "needs: [kvm]\n", PASS)])
}

fn job_of<'a>(plan: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    plan[0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {plan}"))
}

#[test]
fn a_bad_label_in_needs_is_located() {
    let env = kvm_repo();
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\nneeds: [kvm, Big Host, kvm]\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("tests/boot.yaml:4:14: error: `needs` entry \"Big Host\" is not a host label"),
        "{err}"
    );
    assert!(err.contains("`needs` lists \"kvm\" twice"), "{err}");
    assert!(err.contains("help: use lower-case letters"), "{err}");
}

#[test]
fn an_image_may_need_labels_to_build() {
    let env = TestEnv::init_with(&[(
        "images/host.yaml",
        "name: host\nversion: \"1\"\nbuild: {run: ./b.sh, artifact: disk}\nneeds: [x86_64, kvm]\n",
    )]);
    env.write("b.sh", PASS);
    env.sg_ok(&["check"]);
    env.edit("images/host.yaml", "kvm]", "k/vm]");
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("images/host.yaml:4:17: error: `needs` entry \"k/vm\""),
        "{err}"
    );
}

#[test]
fn plan_shows_each_jobs_needs_and_keys_do_not_depend_on_them_being_met() {
    let env = kvm_repo();
    let plan = env.json(&["plan", "--format", "json"]);
    assert_eq!(job_of(&plan, "boot")["needs"], serde_json::json!(["kvm"]));
    assert_eq!(job_of(&plan, "plain")["needs"], serde_json::json!([]));
    let text = env.sg_ok(&["plan"]);
    let boot = text.lines().find(|l| l.contains("test  boot")).unwrap();
    assert!(boot.ends_with("no result  needs kvm"), "{text}");
    let plain = text.lines().find(|l| l.contains("test  plain")).unwrap();
    assert!(!plain.contains("needs"), "{text}");
    // The same plan, whatever the runner that asks offers.
    let key = job_of(&plan, "boot")["key"].clone();
    let mut cmd = env.sg_cmd(&["plan", "--format", "json"]);
    cmd.env("STAGEGATE_LABELS", "kvm");
    let again: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    assert_eq!(job_of(&again, "boot")["key"], key);
}

/// `stagegate ARGS` as a runner called `host` offering only `labels` (nothing detected).
fn as_runner(env: &TestEnv, host: &str, labels: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = env.sg_cmd(args);
    cmd.env("STAGEGATE_HOST", host)
        .env("STAGEGATE_NO_DETECT", "1")
        .env("STAGEGATE_LABELS", labels);
    cmd.output().unwrap()
}

/// The YAML records of `key` in the ledger of `env`.
fn records_of(env: &TestEnv, key: &str) -> Vec<String> {
    let paths = env.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    paths
        .lines()
        .filter(|p| p.contains(&format!("/{key}/")))
        .map(|p| env.git(&["show", &format!("refs/stagegate/results:{p}")]))
        .collect()
}

#[test]
fn a_runner_takes_only_the_jobs_whose_needs_it_meets_and_says_what_it_left() {
    let env = kvm_repo();
    let plan = env.json(&["plan", "--format", "json"]);
    let boot = job_of(&plan, "boot")["key"].as_str().unwrap().to_string();
    let plain = job_of(&plan, "plain")["key"].as_str().unwrap().to_string();

    let out = as_runner(&env, "plain-host", "", &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ran: Vec<&str> = doc["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(ran, vec![plain.as_str()]);
    assert_eq!(doc["left"][0]["key"], boot.as_str());
    assert_eq!(doc["left"][0]["needs"], serde_json::json!(["kvm"]));
    assert!(
        records_of(&env, &boot).is_empty(),
        "no verdict for a job left"
    );
    let rec = &records_of(&env, &plain)[0];
    assert!(rec.contains("host: plain-host"), "{rec}");

    // In text, too; and a runner that offers kvm takes it, and says so in its record.
    let out = as_runner(&env, "plain-host", "", &["run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("left for other runners: 1 job") && text.contains("needs `kvm`"),
        "{text}"
    );
    let out = as_runner(&env, "kvm-host", "kvm,iommu", &["run", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let rec = &records_of(&env, &boot)[0];
    assert!(rec.contains("host: kvm-host"), "{rec}");
    assert!(rec.contains("labels:\n  - iommu\n  - kvm"), "{rec}");
}

#[test]
fn a_bad_declared_label_is_a_usage_error() {
    let env = kvm_repo();
    let out = as_runner(&env, "h", "KVM", &["run"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a host label"));
}

#[test]
fn two_runners_on_one_remote_each_run_what_they_can_and_the_kvm_job_waits_visibly_until_its_runner_comes()
 {
    let env = kvm_repo();
    let origin = env.bare_clone("origin.git");
    let a = env.clone_of(&origin, "runner-a");
    let b = env.clone_of(&origin, "runner-b");
    let plan = env.json(&["plan", "--format", "json"]);
    let boot = job_of(&plan, "boot")["key"].as_str().unwrap().to_string();
    let plain = job_of(&plan, "plain")["key"].as_str().unwrap().to_string();
    let r: &[&str] = &["--remote", "origin", "run", "--format", "json"];

    // Only runner-a (no kvm) is up: it runs `plain`, leaves `boot`.
    let out = as_runner(&a, "runner-a", "", r);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ran"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["left"][0]["key"], boot.as_str());

    // Anyone who reads the remote sees why it waits, and a heartbeat ref beside the ledger.
    let why = b.sg_ok(&["--remote", "origin", "why", "components/xen"]);
    assert!(
        why.contains("needs `kvm`: no runner offering it has ever been seen"),
        "{why}"
    );
    let status = b.json(&["--remote", "origin", "status", "--format", "json"]);
    let text = status.to_string();
    assert!(
        text.contains("needs `kvm`: no runner offering it has ever been seen"),
        "{text}"
    );
    let runners = b.git(&["ls-tree", "--name-only", "refs/stagegate/runners"]);
    assert_eq!(runners, "runner-a.yaml");
    let ledger = b.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    assert!(
        !ledger.contains("runner-a.yaml"),
        "heartbeats are not evidence"
    );

    // runner-b offers kvm: it runs `boot` (only), and the move can go.
    let out = as_runner(&b, "runner-b", "kvm", r);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ran: Vec<&str> = doc["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(ran, vec![boot.as_str()]);
    assert!(doc.get("left").is_none(), "{doc}");
    a.git(&[
        "fetch",
        "-q",
        "origin",
        "+refs/stagegate/results:refs/stagegate/results",
    ]);
    assert!(records_of(&a, &boot)[0].contains("host: runner-b"));
    assert!(records_of(&a, &plain)[0].contains("host: runner-a"));
    let why = a.sg_ok(&["--remote", "origin", "why", "components/xen"]);
    assert!(!why.contains("needs `kvm`"), "{why}");
    let status = a.sg_ok(&["--remote", "origin", "status"]);
    assert!(status.contains("components/xen 1 → 2: promote"), "{status}");
}

/// `stagegate ARGS` at the time `now` (RFC 3339) as the runner `host` offering `labels`.
fn at(env: &TestEnv, now: &str, host: &str, labels: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = env.sg_cmd(args);
    cmd.env("STAGEGATE_NOW", now)
        .env("STAGEGATE_HOST", host)
        .env("STAGEGATE_NO_DETECT", "1")
        .env("STAGEGATE_LABELS", labels);
    cmd.output().unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_failing_health_test_keeps_its_labels_jobs_off_the_runner_until_fixed_and_rejects_nothing() {
    let scratch = crate::test_run::scratch();
    let ok = scratch.path().join("kvm-ok");
    let health = format!(
        "#!/bin/sh\ntest -e {} || {{ echo 'cannot open /dev/kvm'; exit 1; }}\n",
        ok.display()
    );
    let env = TestEnv::init_with(&[
        (
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\nlabels:\n  kvm: {health: ./tests/kvm-health.sh, every: 1h}\n",
        ),
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        ("tests/kvm-health.sh", &health),
        (
            "tests/plain.yaml",
            "name: plain\nuses: [components/xen]\nrun: ./tests/pass.sh\n",
        ),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen]\nrun: ./tests/pass.sh\nneeds: [kvm]\n",
        ),
        ("tests/pass.sh", PASS),
    ]);
    env.git(&[
        "update-index",
        "--chmod=+x",
        "tests/kvm-health.sh",
        "tests/pass.sh",
    ]);
    env.git(&["commit", "-q", "--amend", "--no-edit"]);
    env.git(&["branch", "-f", "stable"]);
    env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    let plan = env.json(&["plan", "--format", "json"]);
    let boot = job_of(&plan, "boot")["key"].as_str().unwrap().to_string();
    const T0: &str = "2030-01-01T00:00:00Z";

    // The health test fails: the runner takes `plain`, leaves `boot`, and says why.
    let doc: serde_json::Value = serde_json::from_str(&stdout(&at(
        &env,
        T0,
        "box",
        "kvm",
        &["run", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(doc["ran"].as_array().unwrap().len(), 1, "{doc}");
    let why = doc["left"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("unhealthy here: health test `./tests/kvm-health.sh` failed at 2030-01-01T00:00:00Z: exited 1: cannot open /dev/kvm"),
        "{why}"
    );
    assert!(
        records_of(&env, &boot).is_empty(),
        "no result for a job kept off"
    );
    let why = stdout(&at(&env, T0, "box", "", &["why", "components/xen"]));
    assert!(
        why.contains(
            "no healthy runner offers it; box offers `kvm` but its health check fails (health test"
        ),
        "{why}"
    );
    let status = stdout(&at(&env, T0, "box", "", &["status"]));
    assert!(status.contains("components/xen 1 → 2: wait"), "{status}");
    assert!(status.contains("unhealthy runners"), "{status}");
    assert!(status.contains("box `kvm`: health test"), "{status}");

    // Fixed: within the hour the kept answer stands; after it the test runs again, passes,
    // and `boot` runs. Nothing was rejected along the way.
    std::fs::write(&ok, "").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&stdout(&at(
        &env,
        "2030-01-01T00:30:00Z",
        "box",
        "kvm",
        &["run", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(doc["left"][0]["key"], boot.as_str(), "{doc}");
    let doc: serde_json::Value = serde_json::from_str(&stdout(&at(
        &env,
        "2030-01-01T01:30:00Z",
        "box",
        "kvm",
        &["run", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(doc["ran"][0]["key"], boot.as_str(), "{doc}");
    assert_eq!(doc["ran"][0]["verdict"], "pass", "{doc}");
    let status = stdout(&at(&env, "2030-01-01T01:30:00Z", "box", "", &["status"]));
    assert!(status.contains("components/xen 1 → 2: promote"), "{status}");
    assert!(!status.contains("unhealthy runners"), "{status}");
    let ledger = env.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    assert!(
        !ledger.contains("decisions/"),
        "nothing was decided: {ledger}"
    );
}

#[test]
fn labels_in_the_pipeline_are_checked() {
    let env = kvm_repo();
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\nlabels:\n  KVM: {every: soon}\n  arm64: {runs-on: []}\n  box: {tags: [\"lab box\"]}\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("`labels` names \"KVM\", which is not a host label"),
        "{err}"
    );
    assert!(
        err.contains("`labels.KVM.every` is not a duration"),
        "{err}"
    );
    assert!(err.contains("`labels.arm64.runs-on` is empty"), "{err}");
    assert!(
        err.contains("`labels.box.tags` entry \"lab box\" is not a runner label"),
        "{err}"
    );
}

#[test]
fn the_github_matrix_routes_jobs_by_label_queues_exclusive_ones_and_leaves_out_unmapped_ones() {
    let mut tests: Vec<(&str, &str, &str)> = vec![
        ("plain", "", PASS),
        ("arm", "needs: [arm64]\n", PASS),
        ("io", "needs: [iommu]\n", PASS),
    ];
    let big = ["big1", "big2", "big3"];
    for b in big {
        tests.push((b, "needs: [big-box]\n", PASS));
    }
    let env = repo_with_tests(&tests);
    // The labels' mapping, on both stages (the rules come from the last one).
    let pipeline = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\nlabels:\n  arm64: {runs-on: [self-hosted, arm64]}\n  big-box: {runs-on: [self-hosted, big-box], exclusive: true}\n";
    env.commit_on(
        "stable",
        "Map labels to runners",
        &[("stagegate.yaml", pipeline)],
    );
    env.commit_on(
        "staging",
        "Map labels to runners",
        &[("stagegate.yaml", pipeline)],
    );
    let out = env.sg(&["plan", "--missing", "--format", "github-matrix"]);
    assert!(out.status.success(), "{out:?}");
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |list: &str, name: &str| {
        m[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["name"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("test  {name} "))
            })
            .cloned()
    };
    assert_eq!(
        entry("include", "arm").unwrap()["runs-on"],
        serde_json::json!(["self-hosted", "arm64"])
    );
    assert_eq!(
        entry("include", "arm").unwrap()["needs"],
        serde_json::json!(["arm64"])
    );
    assert_eq!(
        entry("include", "plain").unwrap()["runs-on"],
        serde_json::json!(["ubuntu-latest"])
    );
    // All three jobs of the scarce host are queued in the exclusive matrix; none is lost.
    for b in big {
        assert_eq!(
            entry("exclusive", b).unwrap()["runs-on"],
            serde_json::json!(["self-hosted", "big-box"]),
            "{m}"
        );
        assert!(entry("include", b).is_none());
    }
    assert!(entry("include", "io").is_none() && entry("exclusive", "io").is_none());
    assert_eq!(m["left_out"].as_array().unwrap().len(), 1, "{m}");
    assert!(
        m["left_out"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("needs `iommu`, which `labels:` in stagegate.yaml maps to no runner"),
        "{m}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("left out of the matrix: test  io [components/xen]")
            && err.contains("`iommu`"),
        "{err}"
    );
}

/// The shipped matrix workflow routes each job by its `runs-on`, tells the runner the labels
/// it was chosen for, and queues jobs of scarce hosts one at a time without cancelling any.
#[test]
fn the_matrix_template_routes_by_runs_on_and_queues_exclusive_jobs() {
    let t = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates/github/stagegate-matrix.yml"),
    )
    .unwrap();
    assert_eq!(
        t.matches("runs-on: ${{ matrix.runs-on }}").count(),
        2,
        "{t}"
    );
    assert!(t.contains("STAGEGATE_LABELS: ${{ join(matrix.needs, ',') }}"));
    let excl = &t[t.find("  run-exclusive:").unwrap()..t.find("  record:").unwrap()];
    assert!(excl.contains("max-parallel: 1"), "{excl}");
    assert!(
        excl.contains("fromJSON(needs.plan.outputs.exclusive)"),
        "{excl}"
    );
    assert!(
        !excl.contains("concurrency:"),
        "a concurrency group would cancel queued jobs"
    );
    assert!(t.contains("needs: [plan, run, run-exclusive]"));
    // Each job still exports its result for the separate `record` job to sign.
    assert_eq!(
        t.matches("args: --export result-${{ matrix.key }}").count(),
        2
    );
}

/// The Debian example's boot tests say what they need, and it is not `kvm`: they fall back
/// to TCG (README: the Debian example), so a runner without KVM serves them.
#[test]
fn the_debian_examples_boot_tests_need_an_x86_64_host_not_kvm() {
    let env = TestEnv::new();
    env.sg_ok(&["init", "--example", "debian", env.repo.to_str().unwrap()]);
    env.sg_ok(&["check"]);
    for t in ["host-boots", "guest-boots"] {
        let text = env.read(&format!("tests/{t}.yaml"));
        assert!(text.contains("\nneeds: [x86_64]\n"), "{t}: {text}");
    }
}
