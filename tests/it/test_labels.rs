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
