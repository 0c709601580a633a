//! `stagegate check`: one test per diagnostic, asserting file, line and message.

use crate::common::TestEnv;

fn base() -> TestEnv {
    TestEnv::init_with(&[
        ("images/host.yaml", "name: host\nversion: \"1.0\"\n"),
        ("components/xen.yaml", "name: xen\nversion: \"4.20\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [images/host, components/xen]\nrun: ./tests/boot.sh\n",
        ),
        ("tests/boot.sh", "#!/bin/sh\nexit 0\n"),
    ])
}

/// Run check, expect exit 1, return stderr.
fn check_fails(env: &TestEnv) -> String {
    env.sg_code(1, &["check"]).1
}

#[test]
fn a_valid_repository_checks_ok() {
    let env = base();
    assert_eq!(
        env.sg_ok(&["check"]).trim(),
        "ok: 2 items, 1 test, 2 stages"
    );
}

#[test]
fn an_unknown_field_is_located() {
    let env = base();
    env.write(
        "images/host.yaml",
        "name: host\nversion: \"1.0\"\nbuidl: {}\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("images/host.yaml:3:1: error: unknown field `buidl`"),
        "{err}"
    );
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn a_wrong_type_is_located() {
    let env = base();
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host]\nrun: ./tests/boot.sh\nretries: many\n",
    );
    let err = check_fails(&env);
    assert!(err.contains("tests/boot.yaml:4:10: error:"), "{err}");
}

#[test]
fn a_name_that_does_not_match_the_file_is_reported() {
    let env = base();
    env.write("images/host.yaml", "name: hots\nversion: \"1.0\"\n");
    let err = check_fails(&env);
    assert!(
        err.contains(
            "images/host.yaml:1:7: error: name \"hots\" does not match the file name \"host\""
        ),
        "{err}"
    );
}

#[test]
fn a_test_using_a_missing_item_gets_a_did_you_mean() {
    let env = base();
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses:\n  - images/hots\n  - components/xen\nrun: ./tests/boot.sh\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("tests/boot.yaml:3:5: error: `uses` names images/hots, which does not exist"),
        "{err}"
    );
    assert!(err.contains("help: did you mean images/host?"), "{err}");
}

#[test]
fn a_stage_listed_twice_is_reported() {
    let env = base();
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable, staging]\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("stagegate.yaml:2:27: error: stage \"staging\" is listed twice"),
        "{err}"
    );
}

#[test]
fn paths_that_escape_the_repository_are_reported() {
    let env = base();
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host]\nrun: ../outside.sh\nfiles: [/etc/passwd]\n",
    );
    let err = check_fails(&env);
    assert!(err.contains("tests/boot.yaml:3:6: error: `run` runs \"../outside.sh\", which is outside the repository"), "{err}");
    assert!(
        err.contains("tests/boot.yaml:4:9: error: `files` path \"/etc/passwd\" is absolute"),
        "{err}"
    );
}

#[test]
fn a_name_with_a_slash_or_dots_is_reported() {
    let env = base();
    env.write("components/xen.yaml", "name: ../xen\nversion: \"1\"\n");
    let err = check_fails(&env);
    assert!(
        err.contains("components/xen.yaml:1:7: error: invalid component name \"../xen\""),
        "{err}"
    );
}

#[test]
fn a_duplicate_key_is_reported() {
    let env = base();
    env.write(
        "images/host.yaml",
        "name: host\nversion: \"1.0\"\nversion: \"2.0\"\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("images/host.yaml:3:1: error:") && err.to_lowercase().contains("duplicate"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let env = base();
    env.write(
        "images/host.yaml",
        "name: host\nversion: \"1.0\"\nbogus: 1\n",
    );
    env.write("components/xen.yaml", "name: zen\nversion: \"1\"\n");
    let err = check_fails(&env);
    assert!(err.contains("images/host.yaml:3:1"), "{err}");
    assert!(err.contains("components/xen.yaml:1:7"), "{err}");
    assert!(err.contains("problems found"), "{err}");
}

#[test]
fn an_alias_bomb_is_refused_with_a_clear_message() {
    let env = base();
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = if i == 1 {
            "a".to_string()
        } else {
            format!("a{}", i - 1)
        };
        bomb.push_str(&format!("a{i}: &a{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    env.write("images/host.yaml", &bomb);
    let err = check_fails(&env);
    assert!(err.contains("images/host.yaml:"), "{err}");
}

#[test]
fn deep_nesting_is_refused() {
    let env = base();
    let deep = format!(
        "name: host\nversion: \"1\"\ndescription: {}{}\n",
        "[".repeat(500),
        "]".repeat(500)
    );
    env.write("images/host.yaml", &deep);
    let err = check_fails(&env);
    assert!(err.contains("images/host.yaml:3:"), "{err}");
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let env = base();
    env.write(
        "images/host.yaml",
        &format!(
            "name: host\nversion: \"1\"\ndescription: \"{}\"\n",
            "x".repeat(2 * 1024 * 1024)
        ),
    );
    let err = check_fails(&env);
    assert!(
        err.contains("images/host.yaml:1:1: error: file is"),
        "{err}"
    );
}

#[test]
fn a_syntax_error_is_located() {
    let env = base();
    env.write("images/host.yaml", "name: host\nversion: [1.0\n");
    let err = check_fails(&env);
    assert!(err.contains("images/host.yaml:"), "{err}");
}

#[test]
fn check_reads_a_commit_when_given_one() {
    let env = base();
    env.write("images/host.yaml", "name: broken\n");
    // The work tree is broken, the committed tree is not.
    assert_eq!(
        env.sg_ok(&["check", "HEAD"]).trim(),
        "ok: 2 items, 1 test, 2 stages"
    );
    check_fails(&env);
}

#[test]
fn check_json_lists_diagnostics() {
    let env = base();
    env.write("images/host.yaml", "name: hots\nversion: \"1\"\n");
    let out = env.sg_code(1, &["check", "--format", "json"]).0;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["diagnostics"][0]["file"], "images/host.yaml");
    assert_eq!(v["diagnostics"][0]["line"], 1);
}

#[test]
fn outside_a_repository_is_a_usage_error() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    let (_, err) = env.sg_code(2, &["status"]);
    assert!(err.contains("is not in a git repository"), "{err}");
    assert!(err.contains("help:"), "{err}");
}

/// Commit the work tree on the current branch (without the pre-commit hook).
fn commit_all(env: &TestEnv) {
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "change"]);
}

#[test]
fn a_run_script_that_is_not_executable_in_git_is_refused_with_the_fix() {
    let env = base();
    env.git(&["update-index", "--chmod=-x", "tests/boot.sh"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "lose the x bit"]);
    let err = env.sg_code(1, &["check", "HEAD"]).1;
    assert!(
        err.contains(
            "tests/boot.yaml:3:6: error: `run` runs \"tests/boot.sh\", which is not executable (mode 100644 in git)"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: run `git update-index --chmod=+x tests/boot.sh`"),
        "{err}"
    );
}

#[test]
fn a_run_script_that_is_not_executable_in_the_work_tree_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = base();
    let script = env.repo.join("tests/boot.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = check_fails(&env);
    assert!(
        err.contains(
            "tests/boot.yaml:3:6: error: `run` runs \"tests/boot.sh\", which is not executable"
        ),
        "{err}"
    );
    assert!(
        err.contains("git update-index --chmod=+x tests/boot.sh"),
        "{err}"
    );
}

#[test]
fn a_run_path_without_dot_slash_is_refused_with_the_dot_slash_spelling() {
    let env = base();
    env.write("ci/smoke.sh", "#!/bin/sh\nexit 0\n");
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host]\nrun: ci/smoke.sh --fast\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains(
            "tests/boot.yaml:3:6: error: `run` starts with \"ci/smoke.sh\", a repository file, without `./`"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: write `run: ./ci/smoke.sh --fast`"),
        "{err}"
    );
    // A command from PATH is not a repository file: still fine.
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host]\nrun: sh -c true\n",
    );
    env.sg_ok(&["check"]);
}

#[test]
fn an_unquoted_version_yaml_reads_as_another_number_is_refused() {
    let env = base();
    env.write("images/host.yaml", "name: host\nversion: 3.10\n");
    let err = check_fails(&env);
    assert!(
        err.contains(
            "images/host.yaml:2:10: error: `version: 3.10` is read by YAML as the number 3.1, not the text \"3.10\""
        ),
        "{err}"
    );
    assert!(err.contains("help: quote it: version: \"3.10\""), "{err}");
}

#[test]
fn an_unquoted_based_on_version_yaml_reads_as_another_number_is_refused() {
    let env = base();
    env.write(
        "images/host.yaml",
        "name: host\nversion: \"1\"\nbased-on: {component: debian, version: 12.10}\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("images/host.yaml:3:40: error: `based-on.version: 12.10` is read by YAML as the number 12.1"),
        "{err}"
    );
    assert!(err.contains("help: quote it: version: \"12.10\""), "{err}");
}

#[test]
fn an_unquoted_version_yaml_keeps_as_written_is_accepted() {
    let env = base();
    env.write("images/host.yaml", "name: host\nversion: 12.8 # bare\n");
    env.sg_ok(&["check"]);
}

#[test]
fn a_syntax_error_in_one_manifest_adds_no_follow_on_error_in_another() {
    let env = base();
    env.write("images/base.yaml", "name: base\nversion: [1.0\n");
    env.write(
        "images/host.yaml",
        "name: host\nversion: \"1.0\"\nbased-on: {image: base}\n",
    );
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host, images/base]\nrun: ./tests/boot.sh\n",
    );
    let err = check_fails(&env);
    assert!(err.contains("images/base.yaml:"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
    assert!(err.contains("1 problem found"), "{err}");
}

#[test]
fn a_run_script_that_is_a_symlink_is_refused_in_the_work_tree_and_in_a_commit() {
    let env = base();
    std::fs::remove_file(env.repo.join("tests/boot.sh")).unwrap();
    std::os::unix::fs::symlink("/bin/true", env.repo.join("tests/boot.sh")).unwrap();
    let err = check_fails(&env);
    assert!(
        err.contains(
            "tests/boot.yaml:3:6: error: `run` names \"tests/boot.sh\", which is (or is under) a symbolic link"
        ),
        "{err}"
    );
    assert!(err.contains("help: a job's key covers the link"), "{err}");
    commit_all(&env);
    let err = env.sg_code(1, &["check", "HEAD"]).1;
    assert!(
        err.contains("tests/boot.yaml:3:6: error: `run` names \"tests/boot.sh\", which is (or is under) a symbolic link"),
        "{err}"
    );
}

#[test]
fn a_run_script_under_a_symlinked_directory_is_refused() {
    let env = base();
    std::fs::create_dir_all(env.home().join("elsewhere")).unwrap();
    std::fs::write(env.home().join("elsewhere/smoke.sh"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink(env.home().join("elsewhere"), env.repo.join("ci")).unwrap();
    env.write(
        "tests/boot.yaml",
        "name: boot\nuses: [images/host]\nrun: ./ci/smoke.sh\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains("\"ci/smoke.sh\", which is (or is under) a symbolic link"),
        "{err}"
    );
    commit_all(&env);
    let err = env.sg_code(1, &["check", "HEAD"]).1;
    assert!(
        err.contains("\"ci/smoke.sh\", which is (or is under) a symbolic link"),
        "{err}"
    );
}

#[test]
fn a_symlinked_manifest_is_refused_by_work_tree_check_and_by_check_rev_alike() {
    let env = base();
    std::fs::create_dir_all(env.repo.join("shared")).unwrap();
    std::fs::write(
        env.repo.join("shared/guest.yaml"),
        "name: guest\nversion: \"1\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../shared/guest.yaml", env.repo.join("images/guest.yaml")).unwrap();
    let want = "images/guest.yaml:1:1: error: images/guest.yaml is a symbolic link; a manifest must be a file";
    let err = check_fails(&env);
    assert!(err.contains(want), "{err}");
    assert!(err.contains("help: git stores the link"), "{err}");
    commit_all(&env);
    let err = env.sg_code(1, &["check", "HEAD"]).1;
    assert!(err.contains(want), "{err}");
}

#[test]
fn a_stage_branch_written_as_a_full_ref_is_refused() {
    let env = base();
    env.write(
        "stagegate.yaml",
        "version: 1\nstages:\n  - staging\n  - {name: stable, branch: refs/heads/stable}\n",
    );
    let err = check_fails(&env);
    assert!(
        err.contains(
            "stagegate.yaml:4:5: error: stage \"stable\": \"refs/heads/stable\" is not a branch name: stagegate adds refs/heads/ itself"
        ),
        "{err}"
    );
    assert!(
        err.contains("help: write the branch's short name: `branch: stable`"),
        "{err}"
    );
}

#[test]
fn a_tracked_or_pushed_branch_written_as_a_full_ref_is_refused() {
    let env = base();
    env.write(
        "components/tool.yaml",
        "name: tool\nversion: \"1\"\nsource: {git: ../tool, commit: 0123456789abcdef0123456789abcdef01234567, track: refs/heads/main, push-to: refs/heads/tested}\n",
    );
    let err = check_fails(&env);
    for (field, value, short) in [
        ("source.track", "refs/heads/main", "main"),
        ("source.push-to", "refs/heads/tested", "tested"),
    ] {
        assert!(
            err.contains(&format!(
                "error: `{field}` \"{value}\" is not a branch name: stagegate adds refs/heads/ itself"
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("help: write the branch's short name: `{short}`")),
            "{err}"
        );
    }
    assert!(err.contains("components/tool.yaml:3:"), "{err}");
}
