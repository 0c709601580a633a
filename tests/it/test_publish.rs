//! With a remote, every ref stagegate writes is pushed, and every command reads after a
//! fetch: stage commits from poll, holds, releases, drops, promotions and the results
//! ledger (results and rejections) reach the remote, so any runner picks up where
//! another stopped.

use std::path::{Path, PathBuf};

use crate::common::TestEnv;

/// `components/c` at 1 on both stages, bumped to 2 on staging by the pending commit; a
/// test that fails with c at 2 (a regression) unless `ok` exists; `components/d` at 1
/// with a watch that says 3.
/// Published to a bare `origin.git`; returns the env and the origin.
fn setup() -> (TestEnv, PathBuf) {
    let env = TestEnv::init_with(&[
        ("components/c.yaml", "name: c\nversion: \"1\"\n"),
        (
            "components/d.yaml",
            "name: d\nversion: \"1\"\nwatch: {run: ./watch.sh}\n",
        ),
        ("watch.sh", "#!/bin/sh\necho 3\n"),
        (
            "tests/t.yaml",
            "name: t\nuses: [components/c]\nrun: ./t.sh\n",
        ),
        (
            "t.sh",
            "#!/bin/sh\n[ -e ok ] || [ \"$STAGEGATE_COMPONENT_C_VERSION\" != 2 ]\n",
        ),
    ]);
    env.commit_on(
        "staging",
        "Bump c to 2",
        &[("components/c.yaml", "name: c\nversion: \"2\"\n")],
    );
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    (env, origin)
}

fn remote_rev(env: &TestEnv, origin: &Path, rev: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(origin)
        .args(["rev-parse", "--verify", "--quiet", rev])
        .output()
        .unwrap();
    let _ = env;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn poll_pushes_its_commit_on_the_first_stage() {
    let (env, origin) = setup();
    env.sg_ok(&["--remote", "origin", "poll"]);
    let local = env.rev("staging");
    assert!(
        env.git(&["show", "staging:components/d.yaml"])
            .contains("version: \"3\""),
        "poll bumped d"
    );
    assert_eq!(remote_rev(&env, &origin, "staging"), Some(local));
}

#[test]
fn hold_release_and_drop_reach_the_remote() {
    let (env, origin) = setup();
    for args in [
        &["hold", "components/c", "--reason", "wait for the notes"][..],
        &["release", "components/c"],
        &["drop", "components/c", "--reason", "breaks t"],
    ] {
        let mut all = vec!["--remote", "origin"];
        all.extend_from_slice(args);
        env.sg_ok(&all);
        assert_eq!(
            remote_rev(&env, &origin, "staging"),
            Some(env.rev("staging")),
            "after {args:?}"
        );
    }
    let subjects = env.git_in(&origin, &["log", "--format=%s", "-3", "staging"]);
    assert_eq!(subjects.lines().count(), 3, "{subjects}");
}

#[test]
fn a_rejection_reaches_the_remote_ledger() {
    let (env, origin) = setup();
    env.sg_code(1, &["--remote", "origin", "cycle", "--no-poll"]);
    let ledger = remote_rev(&env, &origin, "refs/stagegate/results").expect("pushed");
    assert_eq!(ledger, env.rev("refs/stagegate/results"));
    let files = env.git_in(&origin, &["ls-tree", "-r", "--name-only", &ledger]);
    assert!(
        files.lines().any(|f| f.starts_with("decisions/stable/")),
        "the rejection is in the remote's ledger: {files}"
    );
}

#[test]
fn a_runner_builds_on_the_stage_another_runner_pushed() {
    let (env, origin) = setup();
    let rb = env.clone_of(&origin, "b");
    // A holds; B, which never fetched, releases: B's release goes on top of A's hold.
    env.sg_ok(&[
        "--remote",
        "origin",
        "hold",
        "components/c",
        "--reason",
        "notes",
    ]);
    let held = env.rev("staging");
    rb.sg_ok(&["--remote", "origin", "release", "components/c"]);
    let released = remote_rev(&env, &origin, "staging").unwrap();
    assert_eq!(rb.rev("staging"), released);
    assert_eq!(rb.rev("staging^"), held, "built on the remote's head");
    // And A follows the remote on its next read.
    env.sg_ok(&["--remote", "origin", "status"]);
    assert_eq!(env.rev("staging"), released);
}

#[test]
fn a_stage_that_diverged_from_the_remote_is_an_error_that_says_how_to_resolve_it() {
    let (env, origin) = setup();
    let b = env.home().join("b");
    env.git(&["clone", "-q", origin.to_str().unwrap(), b.to_str().unwrap()]);
    env.git_in(&b, &["commit", "-q", "--allow-empty", "-m", "theirs"]);
    env.git_in(&b, &["push", "-q", "origin", "staging"]);
    env.commit_on("staging", "ours", &[("NOTES", "ours\n")]);
    let (_, err) = env.sg_code(3, &["--remote", "origin", "status"]);
    assert!(
        err.contains("branch staging has diverged from origin/staging"),
        "{err}"
    );
    assert!(err.contains("git rebase origin/staging staging"), "{err}");
}

#[test]
fn without_a_remote_nothing_is_pushed() {
    let (env, origin) = setup();
    let before = remote_rev(&env, &origin, "staging");
    env.sg_ok(&["hold", "components/c", "--reason", "local only"]);
    env.sg_code(1, &["cycle", "--no-poll"]);
    assert_eq!(remote_rev(&env, &origin, "staging"), before);
    assert_eq!(remote_rev(&env, &origin, "refs/stagegate/results"), None);
}

#[test]
fn a_promotion_the_remote_refuses_is_taken_back() {
    let (env, origin) = setup();
    env.commit_on(
        "staging",
        "c 3 instead",
        &[("components/c.yaml", "name: c\nversion: \"3\"\n")],
    );
    env.write_hook(
        &origin,
        "pre-receive",
        "#!/bin/sh\nwhile read old new ref; do\n  [ \"$ref\" != refs/heads/stable ] || { echo 'stable is frozen' >&2; exit 1; }\ndone\n",
    );
    let before = env.rev("stable");
    let (_, err) = env.sg_code(3, &["--remote", "origin", "cycle", "--no-poll"]);
    assert!(err.contains("stable is frozen"), "{err}");
    assert_eq!(
        env.rev("stable"),
        before,
        "the refused promotion is not kept"
    );
    assert_eq!(
        remote_rev(&env, &origin, "refs/stagegate/results"),
        Some(env.rev("refs/stagegate/results")),
        "the results went out all the same"
    );
    // Once the remote takes it, the next cycle promotes.
    std::fs::remove_file(origin.join("hooks/pre-receive")).unwrap();
    env.sg_ok(&["--remote", "origin", "cycle", "--no-poll"]);
    assert_eq!(remote_rev(&env, &origin, "stable"), Some(env.rev("stable")));
    assert_ne!(env.rev("stable"), before);
}
