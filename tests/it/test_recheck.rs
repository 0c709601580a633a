//! Every state has a way out (DESIGN.md §4.17): an error is retried within a budget, with
//! backoff, and never rejects; `recheck` runs a candidate's failing or erroring jobs again
//! once the environment is fixed, lifting a rejection that rested on them without waiving
//! anything; a rejected group is judged again as soon as a member changes.

use std::time::{Duration, SystemTime};

use crate::common::{MINI_PIPELINE, TestEnv};
use crate::test_run::{XEN_2, repo_with_test};

const LEDGER: &str = "refs/stagegate/results";

/// RFC 3339 of now + `secs`.
fn at(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs)).to_string()
}

/// Run stagegate with its clock at `now`; returns (code, stdout, stderr).
fn sg_at(env: &TestEnv, now: &str, args: &[&str]) -> (i32, String, String) {
    let out = env.sg_cmd(args).env("STAGEGATE_NOW", now).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The paths of the ledger.
fn ledger_paths(env: &TestEnv) -> Vec<String> {
    env.git(&["ls-tree", "-r", "--name-only", LEDGER])
        .lines()
        .map(String::from)
        .collect()
}

/// How many attempts the ledger holds.
fn attempts(env: &TestEnv) -> usize {
    ledger_paths(env)
        .iter()
        .filter(|p| crate::common::is_result_path(p))
        .count()
}

/// The first command in backquotes of `text` that starts with `stagegate recheck`, with
/// its reason placeholder filled in: advice run as printed.
fn printed_recheck(text: &str) -> Vec<String> {
    let at = text
        .find("`stagegate recheck ")
        .unwrap_or_else(|| panic!("no recheck advice in:\n{text}"));
    let rest = &text[at + 1..];
    let cmd = &rest[..rest.find('`').unwrap()];
    cmd.split_whitespace()
        .skip(1)
        .map(|w| {
            if w == "…" {
                "the runner was fixed".to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// A test that says "could not test" (exit 125) until `$HOME/can-test` exists, on a gate
/// that retries an error once, ten minutes after it.
fn could_not_test() -> TestEnv {
    let env = repo_with_test(
        "",
        "#!/bin/sh\n[ -e \"$HOME/can-test\" ] && exit 0\necho 'kvm: failed to set MSR 0x10a' >&2\nexit 125\n",
    );
    // The same pipeline on both stages: the gate's rules, not a candidate.
    let pipeline = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], errors: {retries: 1, backoff: 10m}}\n";
    for stage in ["stable", "staging"] {
        env.commit_on(stage, "Retry errors once", &[("stagegate.yaml", pipeline)]);
    }
    env
}

#[test]
fn an_error_is_retried_with_backoff_then_waits_for_a_recheck_and_never_rejects() {
    let env = could_not_test();
    let t0 = at(0);
    let (code, out, err) = sg_at(&env, &t0, &["cycle", "--no-poll"]);
    assert_eq!(code, 3, "a job of this run errored\n{out}\n{err}");
    assert_eq!(attempts(&env), 1);

    // Within the backoff: nothing runs, nothing new happened, the reason says when.
    let (code, out, err) = sg_at(&env, &at(60), &["cycle", "--no-poll"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(attempts(&env), 1, "not retried before its backoff\n{out}");
    assert!(out.contains("not run now: 1 job"), "{out}");
    let (_, why, _) = sg_at(&env, &at(60), &["why", "components/xen"]);
    assert!(
        why.contains("(error 1 of 2); it is tried again after"),
        "{why}"
    );

    // After it: retried, errors again (exit 3); the budget is spent.
    let (code, out, err) = sg_at(&env, &at(11 * 60), &["cycle", "--no-poll"]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert_eq!(attempts(&env), 2);
    let (code, out, err) = sg_at(&env, &at(3 * 3600), &["cycle", "--no-poll"]);
    assert_eq!(code, 0, "an old error changes no exit code\n{out}\n{err}");
    assert_eq!(attempts(&env), 2, "no retry past the budget");
    let (_, why, _) = sg_at(&env, &at(3 * 3600), &["why", "components/xen"]);
    assert!(
        why.contains("it errored 2 times in a row; fix the environment, then `stagegate recheck components/xen --stage stable --reason …`"),
        "{why}"
    );
    let status = sg_at(&env, &at(3 * 3600), &["status"]).1;
    assert!(status.contains("wait"), "{status}");
    assert!(
        !ledger_paths(&env)
            .iter()
            .any(|p| p.starts_with("decisions/")),
        "an error never rejects"
    );

    // The environment is fixed; the recheck `why` printed, run as printed, starts again.
    std::fs::write(env.home().join("can-test"), "").unwrap();
    let args = printed_recheck(&why);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = sg_at(&env, &at(3 * 3600), &args);
    assert_eq!(code, 0, "{args:?}\n{out}\n{err}");
    assert!(
        out.contains("rechecked components/xen into stable"),
        "{out}"
    );
    let (code, out, err) = sg_at(&env, &at(3 * 3600 + 60), &["cycle", "--no-poll"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(attempts(&env), 3, "a new attempt beside the old ones");
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]),
        XEN_2.trim()
    );
}

/// A test that fails (exit 1) until `$HOME/fixed` exists: an environment fault.
const NEEDS_FIX: &str =
    "#!/bin/sh\n[ -e \"$HOME/fixed\" ] && exit 0\necho 'MAKEFLAGS is not set' >&2\nexit 1\n";

#[test]
fn a_rejection_caused_by_the_environment_is_lifted_by_a_recheck_that_waives_nothing() {
    let env = repo_with_test("", NEEDS_FIX);
    env.sg_code(1, &["cycle", "--no-poll"]);
    // Standing: reported, not signalled; listed in JSON.
    let json: serde_json::Value =
        serde_json::from_str(&env.sg_ok(&["cycle", "--no-poll", "--format", "json"])).unwrap();
    assert_eq!(
        json["moves"][0]["promote"]["standing"],
        serde_json::json!(["components/xen"]),
        "{json:#}"
    );
    // `run --rerun KEY` cannot re-run a rejected candidate's job; `why` names the way out.
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(
        !why.contains("next: `stagegate run"),
        "a standing rejection runs nothing: no run advice\n{why}"
    );
    std::fs::write(env.home().join("fixed"), "").unwrap();
    let args = printed_recheck(&why);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.sg_ok(&args);
    let paths = ledger_paths(&env);
    let rec = paths
        .iter()
        .find(|p| p.starts_with("overrides/recheck/stable/"))
        .unwrap_or_else(|| panic!("no recheck record\n{paths:#?}"));
    let text = env.git(&["show", &format!("{LEDGER}:{rec}")]);
    assert!(text.contains("reason: the runner was fixed"), "{text}");
    assert!(text.contains("author: "), "{text}");
    assert!(text.contains("lifts: "), "{text}");
    assert!(
        !paths.iter().any(|p| p.starts_with("overrides/waive/")),
        "nothing is waived"
    );
    assert!(env.sg_ok(&["status"]).contains("wait"));
    env.sg_ok(&["cycle", "--no-poll"]);
    assert_eq!(
        attempts(&env),
        2,
        "the failing job ran again beside its failure"
    );
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]),
        XEN_2.trim()
    );
    // The promotion names the recheck that changed its decision.
    let decision = env.git(&["show", "stable"]);
    assert!(decision.contains("kind: recheck"), "{decision}");
    // And it replays from git alone, byte for byte.
    env.sg_ok(&["verify"]);
}

#[test]
fn a_recheck_that_fails_again_rejects_again_and_that_rejection_stands() {
    let env = repo_with_test("", NEEDS_FIX);
    env.sg_code(1, &["cycle", "--no-poll"]);
    env.sg_ok(&["recheck", "components/xen", "--reason", "retry"]);
    // Not fixed: the new attempt fails too, a new "no" of this run.
    env.sg_code(1, &["cycle", "--no-poll"]);
    assert_eq!(attempts(&env), 2);
    env.sg_ok(&["cycle", "--no-poll"]);
    assert_eq!(attempts(&env), 2, "the new rejection stands: nothing runs");
    let (_, err) = env.sg_code(2, &["recheck", "tests/t", "--reason", "x"]);
    assert!(err.contains("tests/t is not pending"), "{err}");
    let (_, err) = env.sg_code(2, &["recheck", "components/xen"]);
    assert!(err.contains("--reason"), "{err}");
}

/// A new image, a new component and a test using both: judged together as one group.
fn trio() -> TestEnv {
    let env = TestEnv::init_with(&[("stagegate.yaml", MINI_PIPELINE)]);
    env.commit_on(
        "staging",
        "Add guest, qemu and their boot test",
        &[
            ("images/guest.yaml", "name: guest\nversion: \"1\"\n"),
            ("components/qemu.yaml", "name: qemu\nversion: \"1\"\n"),
            (
                "tests/boot.yaml",
                "name: boot\nuses: [images/guest, components/qemu]\nrun: ./tests/boot.sh\n",
            ),
            (
                "tests/boot.sh",
                "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_QEMU_VERSION\" = 1 ] && { echo 'qemu 1 cannot boot'; exit 1; }\nexit 0\n",
            ),
        ],
    );
    env
}

#[test]
fn a_rejected_group_is_judged_again_when_one_member_changes() {
    let env = trio();
    env.sg_code(1, &["cycle", "--no-poll"]);
    let status = env.sg_ok(&["status"]);
    assert!(status.matches("rejected").count() >= 3, "{status}");
    env.commit_on(
        "staging",
        "qemu 2",
        &[("components/qemu.yaml", "name: qemu\nversion: \"2\"\n")],
    );
    let out = env.sg(&["cycle", "--no-poll"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for f in [
        "images/guest.yaml",
        "components/qemu.yaml",
        "tests/boot.yaml",
    ] {
        assert!(
            crate::test_run::git_maybe(&env, &["cat-file", "-e", &format!("stable:{f}")]).is_some(),
            "{f} did not move\n{text}"
        );
    }
    assert_eq!(out.status.code(), Some(0), "{text}");
}

/// Every `stagegate run …` and `stagegate recheck …` that `why` prints, run as printed
/// (a reason filled in for `…`): none is refused.
fn run_printed_advice(env: &TestEnv, why: &str) -> usize {
    let mut ran = 0;
    for (i, part) in why.split('`').enumerate() {
        if i % 2 == 0
            || !(part.starts_with("stagegate run") || part.starts_with("stagegate recheck"))
        {
            continue;
        }
        let args: Vec<String> = part
            .split_whitespace()
            .skip(1)
            .map(|w| {
                if w == "…" {
                    "advice as printed".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.sg(&args);
        assert_ne!(
            out.status.code(),
            Some(2),
            "`{part}` as printed is refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    ran
}

#[test]
fn why_prints_only_advice_that_works_for_a_rejection_that_stands_after_stable_moved() {
    let env = rejected_after_stable_moved();
    let why = env.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("rejected"), "{why}");
    std::fs::write(env.home().join("fixed"), "").unwrap();
    assert!(run_printed_advice(&env, &why) >= 1, "no advice in\n{why}");
    // The recheck lifted the rejection: judged again against the new stable, xen moves.
    env.sg_ok(&["cycle", "--no-poll"]);
    assert_eq!(
        env.git(&["show", "stable:components/xen.yaml"]),
        "name: xen\nversion: \"2\""
    );
}

/// xen 2 fails `boot` (until `$HOME/fixed` exists), linux 2 passes: linux moves, and xen's
/// rejection stands on keys that are no longer planned (stable moved).
fn rejected_after_stable_moved() -> TestEnv {
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", MINI_PIPELINE),
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        ("components/linux.yaml", "name: linux\nversion: \"1\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n",
        ),
        (
            "tests/boot.sh",
            "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" = 2 ] && [ ! -e \"$HOME/fixed\" ] && exit 1\nexit 0\n",
        ),
    ]);
    env.commit_on(
        "staging",
        "xen 2, linux 2",
        &[
            ("components/xen.yaml", "name: xen\nversion: \"2\"\n"),
            ("components/linux.yaml", "name: linux\nversion: \"2\"\n"),
        ],
    );
    env.sg_code(1, &["cycle", "--no-poll"]);
    env
}

#[test]
fn waive_takes_the_key_a_standing_rejection_prints_and_lifts_it() {
    let env = rejected_after_stable_moved();
    let why = env.sg_ok(&["why", "components/xen"]);
    let key = why
        .split("`stagegate waive ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no key to waive in\n{why}"))
        .to_string();
    let plan = env.sg_ok(&["plan"]);
    assert!(
        !plan.contains(&key),
        "the key is recorded, no longer planned\n{plan}"
    );
    env.sg_ok(&["waive", &key, "--reason", "boot console is known broken"]);
    let plan = env.sg_ok(&["plan"]);
    assert!(
        !plan.contains("rejected before at this content"),
        "the waiver lifted the rejection: judged again\n{plan}"
    );
}

#[test]
fn a_failed_build_is_never_waived_and_the_refusal_names_recheck() {
    let env =
        crate::test_run::repo_with_build("#!/bin/sh\necho 'mirror unreachable'\nexit 1\n", &[]);
    env.sg_code(1, &["cycle", "--no-poll"]);
    let why = env.json(&["why", "images/disk", "--format", "json"]);
    let build = why["pending"][0]["evaluation"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "build")
        .unwrap_or_else(|| panic!("no build in {why:#}"))["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, err) = env.sg_code(2, &["waive", &build[..12], "--reason", "x"]);
    assert!(err.contains("a failed build is never waived"), "{err}");
    let args = printed_recheck(&err);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.sg_ok(&args);
    assert!(out.contains("rechecked images/disk"), "{out}");
}
