//! The work tree of a state repository: stagegate judges commits, says when the work tree
//! holds more, and never leaves it undoing what it committed.

use crate::common::TestEnv;

/// `components/d` at 1 with a watch that says 3, `components/e` at 1; HEAD on staging,
/// the first stage, so poll commits on the checked-out branch.
fn setup() -> TestEnv {
    TestEnv::init_with(&[
        (
            "components/d.yaml",
            "name: d\nversion: \"1\"\nwatch: {run: ./watch.sh}\n",
        ),
        ("watch.sh", "#!/bin/sh\necho 3\n"),
        ("components/e.yaml", "name: e\nversion: \"1\"\n"),
    ])
}

#[test]
fn status_names_the_manifests_with_uncommitted_changes() {
    let env = setup();
    let clean = env.sg_ok(&["status"]);
    assert!(!clean.contains("uncommitted"), "{clean}");
    env.write("components/e.yaml", "name: e\nversion: \"2\"\n");
    env.write("images/new.yaml", "name: new\nversion: \"1\"\n");
    let out = env.sg_ok(&["status"]);
    assert!(
        out.contains(
            "uncommitted changes in the work tree (not judged): components/e.yaml, images/ \
             — commit them to make them candidates"
        ),
        "{out}"
    );
}

#[test]
fn poll_refuses_and_changes_nothing_when_the_manifest_it_bumps_is_edited_on_the_checked_out_branch()
{
    let env = setup();
    let before = env.rev("staging");
    let edited = "name: d\nversion: \"1\"\ndescription: mine\nwatch: {run: ./watch.sh}\n";
    env.write("components/d.yaml", edited);
    let (_, err) = env.sg_code(2, &["poll"]);
    assert!(
        err.contains("staging is checked out in")
            && err.contains("with uncommitted changes to components/d.yaml")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(
        err.contains("help: commit them (`git commit`) or set them aside (`git stash`)"),
        "{err}"
    );
    assert_eq!(env.rev("staging"), before, "the branch did not move");
    assert_eq!(
        env.git(&["diff", "--cached", "--name-only"]),
        "",
        "nothing staged"
    );
    assert_eq!(env.read("components/d.yaml"), edited, "the edit is kept");
    // With the edit set aside, the same poll bumps d.
    env.git(&["stash", "-q"]);
    env.sg_ok(&["poll"]);
    env.git(&["stash", "drop", "-q"]);
    assert!(env.read("components/d.yaml").contains("version: \"3\""));
    assert_eq!(env.git(&["status", "--porcelain"]), "");
}

#[test]
fn poll_on_the_checked_out_branch_keeps_unrelated_edits_and_brings_the_work_tree_along() {
    let env = setup();
    env.write(
        "components/e.yaml",
        "name: e\nversion: \"1\"\ndescription: mine\n",
    );
    env.sg_ok(&["poll"]);
    assert!(
        env.git(&["show", "staging:components/d.yaml"])
            .contains("version: \"3\"")
    );
    assert!(env.read("components/d.yaml").contains("version: \"3\""));
    assert_eq!(
        env.git(&["diff", "--cached", "--name-only"]),
        "",
        "nothing staged"
    );
    assert_eq!(env.git(&["diff", "--name-only"]), "components/e.yaml");
    assert!(env.read("components/e.yaml").contains("description: mine"));
}

#[test]
fn a_push_refused_because_the_remote_has_the_branch_checked_out_says_so() {
    let env = setup();
    // A repository with a work tree, on staging: git refuses to move its staging by push.
    let origin = env.home().join("origin");
    env.git(&[
        "clone",
        "-q",
        env.repo.to_str().unwrap(),
        origin.to_str().unwrap(),
    ]);
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    let before = env.rev("staging");
    let (_, err) = env.sg_code(3, &["--remote", "origin", "poll"]);
    assert!(
        err.contains("pushing staging to origin was refused: the remote is a repository with a work tree that has this branch checked out"),
        "{err}"
    );
    assert!(err.contains("receive.denyCurrentBranch"), "{err}");
    assert!(err.contains("git clone --bare"), "{err}");
    assert!(!err.contains("someone else updated"), "{err}");
    assert_eq!(
        env.rev("staging"),
        before,
        "nothing the remote refused is kept"
    );
    assert_eq!(env.git(&["status", "--porcelain"]), "");
}
