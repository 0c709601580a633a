//! Every message in plain words: a sweep over error paths (bad YAML of many kinds, missing
//! repositories, bad refs, bad arguments) that checks the exit code and that nothing of the
//! implementation leaks: Rust debug output, library type names, `os error N`.

use crate::common::TestEnv;

/// What must never reach a user: debug-printed values, library error variants, raw OS codes.
fn leaks(text: &str) -> Vec<String> {
    let mut found: Vec<String> = [
        "Some(",
        "None)",
        "{ ",
        "os error",
        "NotFound",
        "Error(",
        "Options",
        "untagged enum",
    ]
    .iter()
    .filter(|s| text.contains(*s))
    .map(|s| s.to_string())
    .collect();
    // CamelCase words are type or enum variant names (`DuplicateKeyPolicy`, `StageDoc`).
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let camel = word.starts_with(|c: char| c.is_ascii_uppercase())
            && word
                .as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
        if camel && word != "GitHub" {
            found.push(word.to_string());
        }
    }
    found
}

fn assert_plain(what: &str, code: i32, env: &TestEnv, args: &[&str]) -> String {
    let (out, err) = env.sg_code(code, args);
    // Temporary directories have random names that may look like CamelCase.
    let text = format!("{out}{err}").replace(env.tmp.path().to_str().unwrap(), "TMP");
    let found = leaks(&text);
    assert!(found.is_empty(), "{what}: {found:?} in\n{text}");
    text
}

#[test]
fn the_leak_detector_catches_what_it_must() {
    for leaky in [
        "budget breached: Documents { documents: 2 }",
        "duplicate mapping key: name, set DuplicateKeyPolicy in Options if acceptable",
        "data did not match any variant of untagged enum Scalar",
        "in any of its parents: NotFound",
        "No such file or directory (os error 2)",
        "state: Passed, x: Some(3)",
    ] {
        assert!(!leaks(leaky).is_empty(), "{leaky}");
    }
    assert!(leaks("error: the GitHub API said no; write `{key: value}`").is_empty());
}

#[test]
fn malformed_manifests_get_plain_located_messages() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.sg_ok(&["init"]);
    let deep = format!(
        "name: x\nversion: \"1\"\ndescription: {}{}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    let bomb = format!(
        "name: x\nversion: \"1\"\n{}",
        (0..1100)
            .map(|i| format!("a{i}: &a{i} [1]\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "duplicate key",
            "images/x.yaml",
            "name: x\nname: y\nversion: \"1\"\n".into(),
            "duplicate key `name`",
        ),
        (
            "unclosed bracket",
            "images/x.yaml",
            "name: x\nversion: [1\n".into(),
            "images/x.yaml:2:",
        ),
        (
            "mapping for a scalar",
            "images/x.yaml",
            "name: x\nversion: {a: 1}\n".into(),
            "expected a single value",
        ),
        (
            "null for a scalar",
            "images/x.yaml",
            "name: x\nversion: ~\n".into(),
            "expected a single value",
        ),
        (
            "two documents",
            "images/x.yaml",
            "name: x\nversion: \"1\"\n---\nname: y\n".into(),
            "one YAML document",
        ),
        (
            "unknown field",
            "images/x.yaml",
            "name: x\nversion: \"1\"\nbogus: 1\n".into(),
            "unknown field `bogus`",
        ),
        (
            "scalar for a mapping",
            "images/x.yaml",
            "name: x\nversion: \"1\"\nbuild: 3\n".into(),
            "expected a mapping",
        ),
        (
            "a list as the document",
            "images/x.yaml",
            "[1, 2]\n".into(),
            "expected a mapping",
        ),
        (
            "empty file",
            "images/x.yaml",
            String::new(),
            "images/x.yaml",
        ),
        (
            "not UTF-8",
            "images/x.yaml",
            "name: \u{0}\n".into(),
            "images/x.yaml",
        ),
        ("deep nesting", "images/x.yaml", deep, "images/x.yaml:3:"),
        ("too many anchors", "images/x.yaml", bomb, "images/x.yaml"),
        (
            "string for a list",
            "tests/t.yaml",
            "name: t\nuses: images/x\nrun: x\n".into(),
            "expected a list",
        ),
        (
            "list for a string",
            "tests/t.yaml",
            "name: t\nuses: [images/x]\nrun: [x]\n".into(),
            "expected a single text value",
        ),
        (
            "word for a number",
            "tests/t.yaml",
            "name: t\nuses: [images/x]\nrun: x\nretries: many\n".into(),
            "expected a whole number",
        ),
        (
            "bad duration",
            "tests/t.yaml",
            "name: t\nuses: [images/x]\nrun: x\ntimeout: forever\n".into(),
            "not a duration",
        ),
        (
            "name and file differ",
            "tests/t.yaml",
            "name: my-check\nuses: [images/x]\nrun: x\n".into(),
            "rename the file to tests/my-check.yaml",
        ),
        (
            "bad stage",
            "stagegate.yaml",
            "version: 1\nstages: [{name: a}, b]\n".into(),
            "expected a stage",
        ),
        (
            "bad based-on",
            "images/x.yaml",
            "name: x\nversion: \"1\"\nbased-on: [x]\n".into(),
            "images/x.yaml:3:",
        ),
    ];
    let pipeline = env.read("stagegate.yaml");
    for (what, path, text, expect) in &cases {
        env.write(path, text);
        let out = assert_plain(what, 1, &env, &["check"]);
        assert!(
            out.contains(expect),
            "{what}: expected {expect:?} in\n{out}"
        );
        std::fs::remove_file(env.repo.join(path)).unwrap();
        env.write("stagegate.yaml", &pipeline);
    }
    // The image the tests name, so that only the test file is wrong.
    let _ = std::fs::remove_dir_all(env.repo.join("images"));
    let _ = std::fs::remove_dir_all(env.repo.join("tests"));
}

#[test]
fn outside_a_state_repository_every_command_says_so_with_exit_2() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    for args in [
        &["check"][..],
        &["status"],
        &["plan"],
        &["run"],
        &["promote"],
        &["log"],
        &["poll"],
    ] {
        let out = assert_plain(&format!("{args:?} in a plain directory"), 2, &env, args);
        assert!(out.contains("is not in a git repository"), "{out}");
        assert!(out.contains("stagegate init"), "{out}");
    }
    env.git(&["init", "-q", "-b", "main"]);
    env.git(&["commit", "-q", "--allow-empty", "-m", "x"]);
    for args in [&["check"][..], &["check", "HEAD"], &["status"], &["plan"]] {
        let out = assert_plain(&format!("{args:?} without a pipeline"), 2, &env, args);
        assert!(out.contains("not a state repository"), "{out}");
        assert!(out.contains("stagegate init"), "{out}");
    }
    let gone = env.tmp.path().join("gone");
    let mut cmd = env.sg_cmd(&["status"]);
    cmd.args(["-C", gone.to_str().unwrap()]);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    let text = text.replace(env.tmp.path().to_str().unwrap(), "TMP");
    assert!(leaks(&text).is_empty(), "{text}");
}

#[test]
fn bad_refs_and_arguments_get_plain_messages() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.sg_ok(&["init"]);
    for (code, args) in [
        (2, &["diff", "nope", "stable"][..]),
        (2, &["check", "nope"]),
        (2, &["plan", "--rev", "nope"]),
        (2, &["log-of", "zz"]),
        (2, &["log-of", "abcd1234"]),
        (2, &["store", "get", "abc"]),
        (2, &["hold"]),
        (2, &["run", "-j", "lots"]),
        (2, &["run", "--shard", "3/2"]),
        (2, &["frobnicate"]),
    ] {
        assert_plain(&format!("{args:?}"), code, &env, args);
    }
}

#[test]
fn a_results_ref_that_is_not_a_commit_is_named() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.sg_ok(&["init"]);
    let blob = {
        env.write("blob.txt", "not a ledger\n");
        env.git(&["hash-object", "-w", "blob.txt"])
    };
    env.git(&["update-ref", "refs/stagegate/results", &blob]);
    for args in [&["status"][..], &["plan"], &["run"]] {
        let out = assert_plain(&format!("{args:?}"), 3, &env, args);
        assert!(
            out.contains("refs/stagegate/results points at a blob"),
            "{out}"
        );
        assert!(
            out.contains("git update-ref -d refs/stagegate/results"),
            "{out}"
        );
    }
}

#[test]
fn counts_are_singular_for_one() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.sg_ok(&["init"]);
    env.write("images/x.yaml", "name: x\nversion: \"1\"\n");
    let out = env.sg_ok(&["check"]);
    assert!(out.starts_with("ok: 1 item, 0 tests, 3 stages"), "{out}");
    env.write("images/x.yaml", "name: x\n");
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(err.contains("1 problem found"), "{err}");
}
