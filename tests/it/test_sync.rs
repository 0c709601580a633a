//! Sharing the results ledger through a remote: runners on different clones push, and
//! every runner sees every result.

use std::path::{Path, PathBuf};

use crate::common::TestEnv;

const TESTS: usize = 6;

/// A state repository with a bumped component used by six tests, published to a bare
/// `origin.git`, and two bare runner clones of it.
fn setup() -> (TestEnv, PathBuf, PathBuf, PathBuf) {
    let mut files: Vec<(String, String)> = vec![(
        "components/c.yaml".into(),
        "name: c\nversion: \"1\"\n".into(),
    )];
    for i in 0..TESTS {
        files.push((
            format!("tests/t{i}.yaml"),
            format!("name: t{i}\nuses: [components/c]\nrun: ./t.sh\n"),
        ));
    }
    files.push(("t.sh".into(), "#!/bin/sh\nexit 0\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let env = TestEnv::init_with(&refs);
    env.commit_on(
        "staging",
        "Bump c",
        &[("components/c.yaml", "name: c\nversion: \"2\"\n")],
    );
    let origin = env.bare_clone("origin.git");
    let a = env.home().join("a.git");
    let b = env.home().join("b.git");
    for clone in [&a, &b] {
        env.git(&[
            "clone",
            "-q",
            "--bare",
            origin.to_str().unwrap(),
            clone.to_str().unwrap(),
        ]);
    }
    (env, origin, a, b)
}

fn at(env: &TestEnv, dir: &Path) -> TestEnv {
    let _ = env;
    TestEnv {
        tmp: tempfile::tempdir().unwrap(),
        repo: dir.to_path_buf(),
    }
}

fn result_files(env: &TestEnv, dir: &Path) -> Vec<String> {
    let out = env.git_in(
        dir,
        &["ls-tree", "-r", "--name-only", "refs/stagegate/results"],
    );
    out.lines()
        .filter(|l| crate::common::is_result_path(l))
        .map(String::from)
        .collect()
}

#[test]
fn runners_on_two_clones_share_every_result_through_the_remote() {
    let (env, origin, a, b) = setup();
    let (ra, rb) = (at(&env, &a), at(&env, &b));
    // Each clone runs half of the plan and pushes; the second push is rejected (the
    // remote moved), so it fetches, merges by union and pushes again.
    ra.sg_ok(&["--remote", "origin", "run", "--shard", "1/2", "--push"]);
    rb.sg_ok(&["--remote", "origin", "run", "--shard", "2/2", "--push"]);
    let on_origin = result_files(&env, &origin);
    assert_eq!(
        on_origin.len(),
        2 * TESTS,
        "a candidate and a baseline job per test: {on_origin:#?}"
    );
    // A fetches before reading: it now sees B's results and has nothing left to run.
    let out = ra.sg_ok(&["--remote", "origin", "run"]);
    assert!(out.contains("nothing to run"), "{out}");
    assert_eq!(result_files(&env, &a).len(), 2 * TESTS);
}

#[test]
fn results_stay_local_without_a_remote() {
    let (env, origin, a, _b) = setup();
    let ra = at(&env, &a);
    ra.sg_ok(&["run", "--shard", "1/2"]);
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&origin)
        .args(["rev-parse", "--verify", "--quiet", "refs/stagegate/results"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing was pushed without a remote");
}

#[test]
fn a_push_the_remote_rejects_is_an_infrastructure_error_and_keeps_the_results() {
    let (env, origin, a, _b) = setup();
    let ra = at(&env, &a);
    env.write_hook(
        &origin,
        "pre-receive",
        "#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n",
    );
    let (_, err) = ra.sg_code(3, &["run", "--push"]);
    assert!(err.contains("pushes are closed"), "{err}");
    assert!(err.contains("origin"), "{err}");
    assert_eq!(
        result_files(&env, &a).len(),
        2 * TESTS,
        "results stay in the local ledger"
    );
}

#[test]
fn an_unreachable_remote_is_an_infrastructure_error_before_anything_runs() {
    let (env, _origin, a, _b) = setup();
    let ra = at(&env, &a);
    env.git_in(
        &a,
        &["remote", "set-url", "origin", "/nonexistent/origin.git"],
    );
    let (out, err) = ra.sg_code(3, &["--remote", "origin", "run"]);
    assert!(err.contains("/nonexistent/origin.git"), "{err}");
    assert!(!out.contains("pass"), "nothing ran on a stale view: {out}");
}
