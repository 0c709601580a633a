//! Nothing reaches a stage unjudged (DESIGN §4.15): the repository files — every path that
//! is not an item, a test, the pipeline or stagegate's records — are one candidate that only
//! an approval moves, shown by `status`, never carried by another candidate's promotion; and
//! `verify` refuses a promotion whose tree carries a path its decision does not name.

use crate::common::TestEnv;

const BOOT_TEST: &str = "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n";
const BOOT: &str = "#!/bin/sh\necho ok\n";

fn component(version: &str) -> String {
    format!("name: xen\nversion: \"{version}\"\n")
}

fn repo() -> TestEnv {
    TestEnv::init_with(&[
        ("components/xen.yaml", &component("1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

#[test]
fn a_workflow_added_on_the_first_stage_is_a_candidate_only_an_approval_moves() {
    let env = repo();
    env.commit_on(
        "staging",
        "A workflow and code owners",
        &[
            (".github/workflows/x.yml", "on: push\n"),
            (".github/CODEOWNERS", "* @octo-org/admins\n"),
        ],
    );
    env.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    let status = env.sg_ok(&["status"]);
    assert!(status.contains("repository-files"), "{status}");
    let diff = env.sg_ok(&["diff", "stable", "staging"]);
    assert!(diff.contains("+++ staging:.github/CODEOWNERS"), "{diff}");
    assert!(diff.contains("+* @octo-org/admins"), "{diff}");
    assert!(
        status
            .contains("only with an approval: `stagegate approve repository-files --stage stable"),
        "{status}"
    );
    // xen moves; the workflow and CODEOWNERS stay on staging.
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"2\"")
    );
    let tree = env.git(&["ls-tree", "-r", "--name-only", "stable"]);
    assert!(
        !tree.contains(".github/"),
        "unreviewed files rode along: {tree}"
    );
    let out = env.sg_ok(&["verify", "stable", "--stage", "stable"]);
    assert!(out.starts_with("ok"), "{out}");
    // Approved, they move.
    env.sg_ok(&[
        "approve",
        "repository-files",
        "--stage",
        "stable",
        "--reason",
        "reviewed the workflow",
    ]);
    env.sg_ok(&["promote", "--stage", "stable"]);
    let tree = env.git(&["ls-tree", "-r", "--name-only", "stable"]);
    assert!(tree.contains(".github/workflows/x.yml"), "{tree}");
    assert!(tree.contains(".github/CODEOWNERS"), "{tree}");
    let status = env.sg_ok(&["status"]);
    assert!(!status.contains("repository-files"), "{status}");
}

#[test]
fn verify_refuses_a_promotion_that_carries_a_path_its_decision_does_not_name() {
    let env = repo();
    env.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote", "--stage", "stable"]);
    let promotion = env.rev("stable");
    let before = env.rev("stable^");
    let message = env.git(&["log", "-1", "--format=%B", &promotion]);
    // The same promotion with a workflow slipped into its tree.
    env.git(&["checkout", "-q", "stable"]);
    env.write(".github/workflows/evil.yml", "on: push\n");
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "x"]);
    let tree = env.git(&["rev-parse", "HEAD^{tree}"]);
    env.git(&["reset", "-q", "--hard", &promotion]);
    let forged = env.git(&["commit-tree", &tree, "-p", &before, "-m", &message]);
    let (out, _) = env.sg_code(1, &["verify", &forged, "--stage", "stable"]);
    assert!(out.contains(".github/workflows/evil.yml"), "{out}");
}

#[test]
fn a_removal_waits_for_what_still_uses_the_item_whatever_the_gate_requires() {
    let env = TestEnv::init_with(&[
        (
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build]}\n",
        ),
        ("components/xen.yaml", &component("1")),
        ("components/linux.yaml", "name: linux\nversion: \"1\"\n"),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ]);
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["rm", "-q", "components/xen.yaml"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "Remove xen"]);
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(
        why.contains("tests/boot on stable uses components/xen, which is removed"),
        "{why}"
    );
    env.sg_ok(&["promote", "--stage", "stable"]);
    assert!(
        env.git(&["ls-tree", "--name-only", "stable", "components/"])
            .contains("xen.yaml"),
        "the removal moved while tests/boot still uses it"
    );
    env.sg_ok(&["check", "stable"]);
    // Once its test is removed (the test's script goes with it), it moves.
    env.git(&["rm", "-q", "tests/boot.yaml", "tests/boot.sh"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "Remove boot"]);
    env.sg_ok(&["promote", "--stage", "stable"]);
    env.sg_ok(&["promote", "--stage", "stable"]);
    let files = env.git(&["ls-tree", "-r", "--name-only", "stable"]);
    assert!(!files.contains("components/xen.yaml"), "{files}");
    assert!(!files.contains("tests/boot"), "{files}");
    env.sg_ok(&["check", "stable"]);
}

/// A host image, a guest built on it and a test using both; the gate into staging builds,
/// the gate into stable takes staging's builds and tests.
#[test]
fn a_derived_image_built_on_a_parent_that_was_dropped_waits_for_a_build_on_the_new_one() {
    const RECIPE: &str = "#!/bin/sh\nset -e\necho \"$STAGEGATE_ITEM $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\n";
    let image = |name: &str, version: &str, parent: Option<&str>| {
        format!(
            "name: {name}\nversion: \"{version}\"\n{}build:\n  run: ./recipes/build.sh\n  artifact: disk.img\n",
            parent
                .map(|p| format!("based-on: {{image: {p}}}\n"))
                .unwrap_or_default()
        )
    };
    let env = TestEnv::init_with(&[
        (
            "stagegate.yaml",
            "version: 1\nstages: [new, staging, stable]\ngates:\n  staging: {require: [build, test]}\n  stable: {require: [test]}\n",
        ),
        ("recipes/build.sh", RECIPE),
    ]);
    env.git(&["branch", "new", "staging"]);
    let climb = |rounds: usize| {
        for _ in 0..rounds {
            env.sg(&["run"]);
            env.sg(&["promote"]);
        }
    };
    // Version 1 of both images, and the test, all the way to stable.
    env.commit_on(
        "new",
        "host 1, guest 1, boot",
        &[
            ("images/host.yaml", &image("host", "1", None)),
            ("images/guest.yaml", &image("guest", "1", Some("host"))),
            (
                "tests/boot.yaml",
                "name: boot\nuses: [images/host, images/guest]\nrun: ./tests/boot.sh\n",
            ),
            ("tests/boot.sh", BOOT),
        ],
    );
    climb(5);
    assert!(
        env.git(&["show", "stable:images/guest.yaml"])
            .contains("\"1\"")
    );
    // Stable takes nothing while version 2 climbs to staging.
    env.sg_ok(&[
        "freeze",
        "stable",
        "--reason",
        "hold stable while staging fills",
    ]);
    env.commit_on(
        "new",
        "host 2, guest 2",
        &[
            ("images/host.yaml", &image("host", "2", None)),
            ("images/guest.yaml", &image("guest", "2", Some("host"))),
        ],
    );
    climb(4);
    let staged = |path: &str| env.git(&["show", &format!("staging:{path}")]);
    assert!(staged("images/host.yaml").contains("\"2\""));
    assert!(
        staged("images/guest.yaml").contains("\"2\""),
        "guest 2 built on host 2 reached staging"
    );
    // host 2 turns out bad and is dropped: staging holds host 1 again, guest 2 still
    // carries an artifact built on host 2.
    env.sg_ok(&["drop", "images/host", "--reason", "host 2 is broken"]);
    assert!(staged("images/host.yaml").contains("\"1\""));
    env.sg_ok(&["unfreeze", "stable", "--reason", "go"]);
    climb(2);
    assert!(
        env.git(&["show", "stable:images/guest.yaml"])
            .contains("\"1\""),
        "guest 2, built on the dropped host 2, reached stable"
    );
    let why = env.sg_ok(&["why", "images/guest"]);
    assert!(
        why.contains("images/guest was built on images/host sha256:"),
        "{why}"
    );
    assert!(
        why.contains("but stable will hold images/host sha256:"),
        "{why}"
    );
}
