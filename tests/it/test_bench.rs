//! The benchmark generator (`benches/gen.py`) makes the repository it is asked for: the
//! figures of DESIGN.md §7 mean nothing if the repository they are measured on is not.
//! These tests check its shape and that stagegate reads it, not any timing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestEnv, base_env};

/// `python3 benches/gen.py ARGS --out DIR`; returns the summary it prints.
fn generate(env: &TestEnv, out: &Path, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/gen.py");
    let mut cmd = Command::new("python3");
    base_env(&mut cmd, env.home());
    let output = cmd
        .arg(script)
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "gen.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("gen.py prints a JSON summary")
}

/// A `--small` repository with the given seed, at the env's `repo` path.
fn small(seed: &str) -> TestEnv {
    let env = TestEnv::new();
    generate(&env, &env.repo, &["--small", "--seed", seed]);
    env
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.is_empty()).collect()
}

fn count(env: &TestEnv, args: &[&str]) -> usize {
    lines(&env.git(args)).len()
}

#[test]
fn small_repository_has_the_requested_items_tests_and_history() {
    let env = small("7");
    assert_eq!(
        count(&env, &["ls-tree", "--name-only", "new", "images/"]),
        40
    );
    assert_eq!(
        count(&env, &["ls-tree", "--name-only", "new", "components/"]),
        160
    );
    let tests = env.git(&["ls-tree", "new", "tests/"]);
    let manifests = lines(&tests)
        .into_iter()
        .filter(|l| l.ends_with(".yaml"))
        .count();
    assert_eq!(manifests, 20);
    // Every test's script is there, executable.
    let scripts: Vec<&str> = lines(&tests)
        .into_iter()
        .filter(|l| l.ends_with(".sh"))
        .collect();
    assert_eq!(scripts.len(), 20);
    assert!(scripts.iter().all(|l| l.starts_with("100755 blob")));

    assert_eq!(env.git(&["rev-list", "--count", "new"]), "500");
    assert_eq!(env.git(&["rev-list", "--count", "stable..staging"]), "4");
    assert_eq!(env.git(&["rev-list", "--count", "staging..new"]), "4");
    env.git(&["merge-base", "--is-ancestor", "stable", "staging"]);
    env.git(&["merge-base", "--is-ancestor", "staging", "new"]);
    assert_eq!(env.git(&["symbolic-ref", "HEAD"]), "refs/heads/new");
}

#[test]
fn small_repository_has_the_requested_results_in_the_ledger_layout() {
    let env = small("7");
    let paths = env.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    let paths = lines(&paths);
    assert_eq!(paths.len(), 2000);
    for p in paths {
        // K[0:2]/K[2:4]/K/0001-<8 hex>-<verdict>.yaml
        let parts: Vec<&str> = p.split('/').collect();
        assert_eq!(parts.len(), 4, "{p}");
        let key = parts[2];
        assert_eq!(key.len(), 64, "{p}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{p}");
        assert_eq!((parts[0], parts[1]), (&key[..2], &key[2..4]), "{p}");
        let name: Vec<&str> = parts[3].strip_suffix(".yaml").unwrap().split('-').collect();
        assert_eq!(name.len(), 3, "{p}");
        assert_eq!(name[0], "0001", "{p}");
        assert!(
            name[1].len() == 8 && name[1].bytes().all(|b| b.is_ascii_hexdigit()),
            "{p}"
        );
        let record = env.git(&["show", &format!("refs/stagegate/results:{p}")]);
        assert!(
            record.contains(&format!("\nverdict: {}\n", name[2])),
            "{p}: {record}"
        );
    }
}

#[test]
fn small_repository_passes_check_and_has_pending_candidates_and_results() {
    let env = small("7");
    env.sg_ok(&["check", "stable"]);
    env.sg_ok(&["check", "new"]);

    let status = env.json(&["status", "--format", "json"]);
    let moves = status.as_array().unwrap();
    assert_eq!(moves.len(), 2, "{status:#}");
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    for m in moves {
        let candidates = m["candidates"].as_array().unwrap();
        assert!(!candidates.is_empty(), "{m:#}");
        for c in candidates {
            for (label, n) in c["jobs"].as_object().unwrap() {
                *verdicts.entry(label.clone()).or_default() += n.as_u64().unwrap();
            }
        }
    }
    // The generator records results for real jobs (their keys computed as plan/key.rs
    // says): stagegate finds and parses them.
    assert!(
        verdicts.get("pass").is_some_and(|n| *n > 0),
        "no recorded result found for a planned job: does job_key in benches/gen.py still \
         compute keys as src/plan/key.rs does? {verdicts:?}"
    );
    assert!(
        verdicts.get("missing").is_some_and(|n| *n > 0),
        "{verdicts:?}"
    );

    let plan = env.json(&["plan", "--format", "json"]);
    for m in plan.as_array().unwrap() {
        assert!(!m["jobs"].as_array().unwrap().is_empty(), "{m:#}");
    }
}

#[test]
fn generator_is_reproducible_from_the_seed() {
    let env = TestEnv::new();
    let dir = |name: &str| -> PathBuf { env.home().join(name) };
    let heads = |d: &Path| {
        env.git_in(
            d,
            &[
                "rev-parse",
                "new",
                "staging",
                "stable",
                "refs/stagegate/results",
            ],
        )
    };
    generate(&env, &dir("a"), &["--small", "--seed", "3"]);
    generate(&env, &dir("b"), &["--small", "--seed", "3"]);
    generate(&env, &dir("c"), &["--small", "--seed", "4"]);
    assert_eq!(heads(&dir("a")), heads(&dir("b")));
    assert_ne!(heads(&dir("a")), heads(&dir("c")));
}

#[test]
fn sizes_can_be_set_one_by_one() {
    let env = TestEnv::new();
    let summary = generate(
        &env,
        &env.repo,
        &[
            "--items",
            "50",
            "--tests",
            "7",
            "--commits",
            "30",
            "--results",
            "99",
        ],
    );
    assert_eq!(summary["items"], 50);
    assert_eq!(env.git(&["rev-list", "--count", "new"]), "30");
    assert_eq!(
        count(
            &env,
            &["ls-tree", "-r", "--name-only", "refs/stagegate/results"]
        ),
        99
    );
    let items = count(&env, &["ls-tree", "--name-only", "new", "images/"])
        + count(&env, &["ls-tree", "--name-only", "new", "components/"]);
    assert_eq!(items, 50);
    env.sg_ok(&["check", "stable"]);
}

#[test]
fn runner_repository_plans_exactly_the_requested_trivial_jobs() {
    let env = TestEnv::new();
    generate(&env, &env.repo, &["--runner", "30"]);
    env.sg_ok(&["check"]);
    let plan = env.json(&["plan", "--stage", "stable", "--format", "json"]);
    let moves = plan.as_array().unwrap();
    assert_eq!(moves.len(), 1, "{plan:#}");
    let jobs = moves[0]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 30);
    assert!(
        jobs.iter()
            .all(|j| j["run"] == "./t.sh" && j["result"].is_null())
    );
}

/// `python3 benches/derive.py --base BASE ARGS --out OUT`.
fn derive(env: &TestEnv, base: &Path, out: &Path, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/derive.py");
    let mut cmd = Command::new("python3");
    base_env(&mut cmd, env.home());
    let output = cmd
        .arg(script)
        .arg("--base")
        .arg(base)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "derive.py {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("derive.py prints a JSON summary")
}

/// The candidates of the move into `to`, from `status --format json`.
fn candidates_into(env: &TestEnv, to: &str) -> Vec<serde_json::Value> {
    let status = env.json(&["status", "--format", "json"]);
    let mv = status
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == to)
        .unwrap_or_else(|| panic!("no move into {to}: {status:#}"))
        .clone();
    mv["candidates"].as_array().unwrap().clone()
}

#[test]
fn derived_repository_has_exactly_the_requested_candidates_each_with_jobs() {
    let base = small("3");
    let env = TestEnv::new();
    let summary = derive(&env, &base.repo, &env.repo, &["--candidates", "12"]);
    assert_eq!(summary["candidates"], 12);
    env.sg_ok(&["check", "staging"]);
    let cands = candidates_into(&env, "stable");
    assert_eq!(cands.len(), 12, "{cands:#?}");
    for c in &cands {
        // A bump the generator made too (on staging) has its results: it may promote.
        assert!(c["state"] == "wait" || c["state"] == "promote", "{c:#}");
        let jobs: u64 = c["jobs"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert!(jobs > 0, "every candidate has jobs: {c:#}");
    }
    // The same ledger as the base, read through the base's objects.
    assert_eq!(
        env.git(&["rev-parse", "refs/stagegate/results"]),
        base.git(&["rev-parse", "refs/stagegate/results"])
    );
    assert!(candidates_into(&env, "staging").is_empty());
}

#[test]
fn derived_repository_gives_every_listed_result_the_requested_attempts() {
    let base = small("3");
    let plan = base.json(&["plan", "--format", "json"]);
    let keys: Vec<String> = plan
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["jobs"].as_array().unwrap().clone())
        .filter(|j| !j["result"].is_null())
        .map(|j| j["key"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !keys.is_empty(),
        "the generated ledger has results of real jobs"
    );
    let list = base.home().join("keys");
    std::fs::write(&list, keys.join("\n")).unwrap();
    let env = TestEnv::new();
    let list_arg = list.display().to_string();
    let summary = derive(
        &env,
        &base.repo,
        &env.repo,
        &["--attempts", "3", "--keys", &list_arg],
    );
    assert_eq!(summary["keys_with_results"], keys.len());
    for k in &keys {
        let dir = format!("refs/stagegate/results:{}/{}/{k}", &k[..2], &k[2..4]);
        let names = env.git(&["ls-tree", "--name-only", &dir]);
        let attempts: Vec<(&str, &str)> = lines(&names)
            .iter()
            .map(|n| (&n[..4], n.rsplit('-').next().unwrap()))
            .collect();
        // A flaky job rerun twice: its record, a failure, its record again.
        assert_eq!(
            attempts,
            [
                ("0001", "pass.yaml"),
                ("0002", "fail.yaml"),
                ("0003", "pass.yaml")
            ],
            "{k}"
        );
        let failed = env.git(&["show", &format!("{dir}/{}", lines(&names)[1])]);
        assert!(failed.contains("\nverdict: fail\n"), "{failed}");
    }
    // The newest attempt is a copy: what status says is what it says of the base.
    assert_eq!(
        candidates_into(&env, "stable"),
        candidates_into(&base, "stable")
    );
}

/// `benches/store.sh` runs end to end on a tiny artifact and reports its three figures
/// (whether a ratio meets its target on 1 MiB says nothing: exit 0 or 1 are both fine).
#[test]
fn store_bench_measures_push_pull_and_memory() {
    if crate::common::require_tool("docker-registry").is_none()
        || crate::common::require_tool("curl").is_none()
    {
        return;
    }
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("stagegate");
    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/store.sh"))
        .args(["--size", "1", "--runs", "1", "--bin"])
        .arg(&bin)
        .arg("--out")
        .arg(env.home().join("bench"))
        .env("HOME", env.home())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("store: 1 MiB artifact, 1 runs"), "{text}");
    for figure in [
        "push: stagegate ",
        "pull: stagegate ",
        "peak RSS of store put/get",
    ] {
        assert!(text.contains(figure), "{figure} in {text}");
    }
}

/// An ed25519 key pair for `gen.py --sign`: the private key file (KEY.pub beside it).
fn signing_key(env: &TestEnv) -> PathBuf {
    let key = env.home().join("bench-key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key
}

/// `--sign KEY`: every stage's pipeline trusts the key as a runner's, every ledger commit is
/// signed with it as git signs (`git verify-commit` says Good), stagegate counts every
/// record, and the ids are still the same for the same seed (and key).
#[test]
fn signed_repository_trusts_its_key_and_counts_every_ledger_record() {
    if crate::common::require_tool("ssh-keygen").is_none() {
        return;
    }
    let env = TestEnv::new();
    let key = signing_key(&env);
    let key_arg = key.display().to_string();
    let summary = generate(&env, &env.repo, &["--small", "--sign", &key_arg]);
    assert_eq!(summary["signed_ledger_commits"], 1, "{summary:#}");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    for stage in ["new", "staging", "stable"] {
        let pipeline = env.git(&["show", &format!("{stage}:stagegate.yaml")]);
        assert!(
            pipeline.contains(&format!(
                "trust:\n  runners:\n    - {{name: bench, key: \"{}\"}}",
                public.join(" ")
            )),
            "{stage}: {pipeline}"
        );
    }

    let allowed = env.home().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("gen@example.invalid {}\n", public.join(" ")),
    )
    .unwrap();
    let mut cmd = Command::new("git");
    base_env(&mut cmd, env.home());
    let out = cmd
        .current_dir(&env.repo)
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "refs/stagegate/results"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("Good \"git\" signature"), "{err}");

    let status = env.json(&["status", "--format", "json"]);
    let mut passed = 0;
    for m in status.as_array().unwrap() {
        assert_eq!(m["signed_evidence"], true, "{m:#}");
        assert!(m.get("not_counted").is_none(), "{m:#}");
        for c in m["candidates"].as_array().unwrap() {
            passed += c["jobs"]["pass"].as_u64().unwrap_or(0);
        }
    }
    assert!(
        passed > 0,
        "the real jobs' signed results count: {status:#}"
    );

    let again = env.home().join("again");
    generate(&env, &again, &["--small", "--sign", &key_arg]);
    let heads = |d: &Path| env.git_in(d, &["rev-parse", "new", "stable", "refs/stagegate/results"]);
    assert_eq!(heads(&env.repo), heads(&again));
}

/// `benches/run.sh --signed` runs end to end in its small form and reports its figures
/// (whether a ratio meets its target at this size says nothing: exit 0 or 1 are both fine,
/// but the signed ledger must count and the promotion must verify).
#[test]
fn signed_bench_measures_status_plan_and_verify() {
    if crate::common::require_tool("ssh-keygen").is_none() {
        return;
    }
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("stagegate");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/run.sh"))
        .args(["--small", "--signed", "--runs", "1", "--bin"])
        .arg(&bin)
        .arg("--out")
        .arg(env.home().join("bench"))
        .env("HOME", env.home())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}\n{err}");
    for figure in [
        "status, signed ledger / git plumbing",
        "plan, signed ledger / git plumbing",
        "status, no cached verdicts (cold)",
        "verify, no cached verdicts (cold)",
        "peak RSS: verify (cached verdicts)",
    ] {
        assert!(text.contains(figure), "{figure} in {text}\n{err}");
    }
    let counted = text
        .lines()
        .find(|l| l.starts_with("signed ledger: records not counted"))
        .unwrap_or_else(|| panic!("{text}\n{err}"));
    assert!(counted.contains(" ok "), "{counted}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("verify of one signed promotion") && !l.contains("failed")),
        "{text}\n{err}"
    );
}

/// `benches/build.sh --small` runs end to end and reports its two figures (whether a ratio
/// meets its target on 16 MiB says nothing: exit 0 or 1 are both fine).
#[test]
fn build_bench_measures_a_build_and_a_test_against_their_scripts() {
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("stagegate");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/build.sh"))
        .args(["--small", "--bin"])
        .arg(&bin)
        .arg("--out")
        .arg(env.home().join("bench"))
        .env("HOME", env.home())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{text}\n{err}");
    assert!(
        text.contains("builds and images: 16 MiB artifact, 1 runs"),
        "{text}"
    );
    for figure in [
        "build job / its recipe by hand",
        "test job with a stored image / by hand",
    ] {
        assert!(text.contains(figure), "{figure} in {text}\n{err}");
    }
}

/// `benches/compare.sh --small ARGS --before BEFORE --after AFTER` (its repositories in the
/// test's home): its exit code, stdout and stderr.
fn compare(
    env: &TestEnv,
    args: &[&str],
    before: &Path,
    after: &Path,
) -> (Option<i32>, String, String) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare.sh"))
        .arg("--small")
        .args(args)
        .arg("--before")
        .arg(before)
        .arg("--after")
        .arg(after)
        .arg("--out")
        .arg(env.home().join("bench"))
        .env("HOME", env.home())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The rows of compare.sh's table: the lines between its header and its verdict.
fn table(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !l.starts_with("command "))
        .skip(1)
        .take_while(|l| !l.starts_with("a command of --after") && !l.starts_with("no command of"))
        .collect()
}

/// `benches/compare.sh` times two binaries alternately on run.sh's commands (generating the
/// small repositories itself) and says which commands of `--after` are slower: an `--after`
/// that sleeps 0.3 s before every command is slower on every row, and the script exits 1.
#[test]
fn compare_bench_marks_every_command_of_a_slower_binary_worse() {
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("stagegate");
    let slow = env.home().join("slow-stagegate");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 0.3\nexec '{}' \"$@\"\n", bin.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (code, text, err) = compare(&env, &["--runs", "5"], &bin, &slow);
    assert_eq!(code, Some(1), "{text}\n{err}");
    let rows = table(&text);
    for command in [
        "status ",
        "plan ",
        "status, 50 commits",
        "status, 30 candidates",
        "plan, 30 candidates",
        "status, 8 attempts per result",
        "run --dry-run",
        "report",
        "run of 100 jobs -j 2",
        "second run (nothing to do)",
        "run of 100 jobs into the 2000 ledger",
    ] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(command))
            .unwrap_or_else(|| panic!("no row for {command:?} in {text}\n{err}"));
        assert!(row.contains("x worse"), "{row}");
    }
    assert!(text.contains("more than 5% slower"), "{text}");
}

/// `benches/compare.sh --instructions` counts what each binary executes under callgrind:
/// the same binary on both sides executes the same work, within 5%, on every row.
#[test]
fn compare_bench_counts_instructions_alike_for_the_same_binary() {
    if crate::common::require_tool("valgrind").is_none() {
        return;
    }
    let env = TestEnv::new();
    let bin = assert_cmd::cargo::cargo_bin("stagegate");
    let (code, text, err) = compare(&env, &["--instructions"], &bin, &bin);
    assert_eq!(code, Some(0), "{text}\n{err}");
    let rows = table(&text);
    assert_eq!(rows.len(), 12, "{text}");
    for row in rows {
        // "LABEL  26.6 M  26.7 M  1.004x": the numbers before each "M".
        let words: Vec<&str> = row.split_whitespace().collect();
        let counts: Vec<f64> = words
            .windows(2)
            .filter(|w| w[1] == "M")
            .filter_map(|w| w[0].parse::<f64>().ok())
            .collect();
        assert!(
            counts.len() == 2 && counts.iter().all(|n| *n > 1.0),
            "millions of instructions on both sides: {row}"
        );
    }
}
