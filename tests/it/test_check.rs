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
