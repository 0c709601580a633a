//! Every command stagegate suggests works as printed (DESIGN.md §4.17, issue 27 item 4).
//!
//! Each scenario builds one decision state on a real repository (a regression, an error
//! waiting for its backoff, an error over budget, a hold, a freeze, a pipeline change and a
//! repository-files change waiting for approval, a missing result, an invalid manifest),
//! collects every `stagegate …` command that `status`, `why ITEM`, `promote` and the errors
//! of a few mistaken commands print, and runs each exactly as printed (the `--reason …`
//! placeholder filled in) on that state: it must not be a usage error (exit 2), and it must
//! do what the advice said. The kinds seen are checked against `Advice::KINDS`, so a new
//! kind of advice fails here until a scenario prints and runs it.

use std::collections::BTreeSet;

use stagegate::advice::Advice;

use crate::common::TestEnv;

const PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n";
const BOOT_TEST: &str =
    "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n";
/// Fails with xen 2; says "could not test" (exit 125) with xen 5 until `$HOME/can-test`
/// exists.
const BOOT: &str = r#"#!/bin/sh
x="$STAGEGATE_COMPONENT_XEN_VERSION"
[ "$x" = 2 ] && { echo "xen 2: no console"; exit 1; }
[ "$x" = 5 ] && [ ! -e "$HOME/can-test" ] && { echo "kvm: failed to set MSR 0x10a" >&2; exit 125; }
echo "login prompt reached"
"#;

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
}

/// `staging` → `stable` under `pipeline`, xen 1 and linux 1 on both, the `boot` test.
fn repo(pipeline: &str) -> TestEnv {
    let env = TestEnv::init_with(&[
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ]);
    for stage in ["stable", "staging"] {
        env.commit_on(stage, "The gate", &[("stagegate.yaml", pipeline)]);
    }
    env
}

fn bump(env: &TestEnv, name: &str, version: &str) {
    env.commit_on(
        "staging",
        &format!("Bump {name} to {version}"),
        &[(
            &format!("components/{name}.yaml"),
            &component(name, version),
        )],
    );
}

/// Fails at the upstream commit `$HOME/bad-commit` names, and with tool version 3.
const TOOL_TEST: &str = r#"#!/bin/sh
[ "$STAGEGATE_COMPONENT_TOOL_COMMIT" = "$(cat "$HOME/bad-commit")" ] && { echo "tool broke"; exit 1; }
[ "$STAGEGATE_COMPONENT_TOOL_VERSION" = 3 ] && { echo "tool 3 broke"; exit 1; }
echo "tool works"
"#;

/// Component `tool` from an upstream repository of two commits, stable at the first;
/// staging has tool `version` (at the second commit when `moved`), rejected by a run.
fn upstream_state(version: &str, moved: bool) -> TestEnv {
    let env = repo(PIPELINE);
    // Beside the state repository, named relatively, with fixed dates: every build of this
    // state has the same manifests, so the same job keys, as advice printed on one is run
    // on another.
    let up = env.home().join("tool");
    std::fs::create_dir_all(&up).unwrap();
    let git = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        crate::common::base_env(&mut cmd, env.home());
        let out = cmd
            .arg("-C")
            .arg(&up)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    let mut ids = Vec::new();
    for n in ["one", "two"] {
        std::fs::write(up.join(n), n).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", n]);
        ids.push(git(&["rev-parse", "HEAD"]));
    }
    std::fs::write(env.home().join("bad-commit"), &ids[1]).unwrap();
    let tool = |v: &str, commit: &str| {
        format!(
            "name: tool\nversion: \"{v}\"\nsource: {{git: ../tool, commit: {commit}, track: main}}\n"
        )
    };
    env.commit_on(
        "staging",
        "The tool and its test",
        &[
            ("components/tool.yaml", &tool("1", &ids[0])),
            (
                "tests/tool.yaml",
                "name: tool\nuses: [components/tool]\nrun: ./tests/tool.sh\n",
            ),
            ("tests/tool.sh", TOOL_TEST),
        ],
    );
    env.git(&["branch", "-f", "stable", "staging"]);
    let commit = if moved { &ids[1] } else { &ids[0] };
    env.commit_on(
        "staging",
        &format!("Bump tool to {version}"),
        &[("components/tool.yaml", &tool(version, commit))],
    );
    env.sg_code(1, &["cycle", "--no-poll"]);
    env
}

/// One decision state: how to build it, and the items whose `why` to read.
struct Scenario {
    name: &'static str,
    build: fn() -> TestEnv,
    items: &'static [&'static str],
    /// Commands run on the state for the errors they print (their help names a command).
    mistakes: &'static [&'static [&'static str]],
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "a regression is rejected",
            build: || {
                let env = repo(PIPELINE);
                bump(&env, "xen", "2");
                env.sg_code(1, &["cycle", "--no-poll"]);
                env
            },
            items: &["components/xen"],
            mistakes: &[],
        },
        Scenario {
            name: "an error waits for its backoff",
            build: || {
                let env = repo(
                    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], errors: {retries: 1, backoff: 10m}}\n",
                );
                bump(&env, "xen", "5");
                env.sg_code(3, &["cycle", "--no-poll"]);
                env
            },
            items: &["components/xen"],
            // The run leaves the job for its backoff and says what runs it now.
            mistakes: &[&["run"]],
        },
        Scenario {
            name: "an error is retried by the next run",
            build: || {
                let env = repo(
                    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], errors: {retries: 1, backoff: 0s}}\n",
                );
                bump(&env, "xen", "5");
                env.sg_code(3, &["cycle", "--no-poll"]);
                env
            },
            items: &["components/xen"],
            mistakes: &[],
        },
        Scenario {
            name: "an error over budget",
            build: || {
                let env = repo(
                    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], errors: {retries: 0}}\n",
                );
                bump(&env, "xen", "5");
                env.sg_code(3, &["cycle", "--no-poll"]);
                std::fs::write(env.home().join("can-test"), "").unwrap();
                env
            },
            items: &["components/xen"],
            mistakes: &[],
        },
        Scenario {
            name: "a hold",
            build: || {
                let env = repo(PIPELINE);
                bump(&env, "linux", "2");
                env.sg_ok(&["hold", "components/linux", "--reason", "vendor says wait"]);
                env
            },
            items: &["components/linux"],
            // Nothing of linux fails: recheck's refusal names `why`.
            mistakes: &[&["recheck", "components/linux", "--reason", "just in case"]],
        },
        Scenario {
            name: "a freeze",
            build: || {
                let env = repo(PIPELINE);
                bump(&env, "linux", "2");
                env.sg_ok(&["freeze", "stable", "--reason", "release week"]);
                env
            },
            items: &["components/linux"],
            // A key nothing has: log-of names `plan`. Nothing is held: release names `log`.
            mistakes: &[&["log-of", "ffff"], &["release", "components/linux"]],
        },
        Scenario {
            name: "a pipeline change waits for approval",
            build: || {
                let env = repo(PIPELINE);
                env.commit_on(
                    "staging",
                    "Loosen the gate",
                    &[(
                        "stagegate.yaml",
                        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: []}\n",
                    )],
                );
                env
            },
            items: &["stagegate.yaml"],
            mistakes: &[],
        },
        Scenario {
            name: "a missing result",
            build: || {
                let env = repo(PIPELINE);
                bump(&env, "linux", "2");
                env
            },
            items: &["components/linux"],
            // An item no stage has: the error names `status`. Nothing is rejected yet:
            // bisect names `run` and `promote`, which judge it first.
            mistakes: &[
                &["why", "components/nothing-of-the-sort"],
                &["bisect", "components/linux"],
            ],
        },
        Scenario {
            name: "a job needs a host label no runner serves",
            build: || {
                let env = repo(PIPELINE);
                env.commit_on(
                    "staging",
                    "Boot needs the big box",
                    &[("tests/boot.yaml", &format!("{BOOT_TEST}needs: [big-box]\n"))],
                );
                env.git(&["branch", "-f", "stable", "staging"]);
                bump(&env, "linux", "2");
                env
            },
            items: &["components/linux"],
            // The matrix leaves the job out and names a runner with the label; a run
            // without the label leaves it and says whose `why` explains.
            mistakes: &[&["plan", "--format", "github-matrix"], &["run"]],
        },
        Scenario {
            name: "not a state repository",
            build: || {
                let env = TestEnv::new();
                std::fs::create_dir_all(&env.repo).unwrap();
                env.git(&["init", "-q", "-b", "main"]);
                env.write("README", "not yet a state repository\n");
                env.git(&["add", "-A"]);
                env.git(&["commit", "-q", "-m", "start"]);
                env
            },
            items: &[],
            mistakes: &[],
        },
        Scenario {
            name: "a rejected component tracks an upstream repository",
            build: || upstream_state("2", true),
            items: &["components/tool"],
            mistakes: &[],
        },
        Scenario {
            name: "a rejected component changed its manifest, not its upstream commit",
            build: || upstream_state("3", false),
            items: &["components/tool"],
            // Bisect has no upstream commits to search: it names `diff`.
            mistakes: &[&["bisect", "components/tool"]],
        },
        Scenario {
            name: "an invalid manifest",
            build: || {
                let env = repo(PIPELINE);
                env.commit_on(
                    "staging",
                    "A broken manifest",
                    &[("components/bad.yaml", "name: bad\nversion: [\n")],
                );
                env
            },
            items: &["components/bad"],
            mistakes: &[],
        },
        Scenario {
            name: "a repository-files candidate",
            build: || {
                let env = repo(PIPELINE);
                env.commit_on(
                    "staging",
                    "Code owners",
                    &[(".github/CODEOWNERS", "* @octo-org/admins\n")],
                );
                env
            },
            items: &["repository-files"],
            mistakes: &[],
        },
    ]
}

/// Every command in backquotes in `text` that starts with `stagegate `.
fn printed(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("stagegate "))
        .map(String::from)
        .collect()
}

/// Everything `status`, `why ITEM`, `promote` and the mistaken commands print, stdout and
/// stderr, on the state of `s` (promote last: it may change the state).
fn advice_of(env: &TestEnv, s: &Scenario) -> BTreeSet<String> {
    let mut runs: Vec<Vec<&str>> = vec![vec!["status"]];
    runs.extend(s.items.iter().map(|i| vec!["why", i]));
    runs.extend(s.mistakes.iter().map(|m| m.to_vec()));
    runs.push(vec!["promote"]);
    let mut all = BTreeSet::new();
    for args in runs {
        let out = env.sg(&args);
        for stream in [&out.stdout, &out.stderr] {
            all.extend(printed(&String::from_utf8_lossy(stream)));
        }
    }
    all
}

/// The arguments of `cmd` after `stagegate`, split as a shell would, with the reason
/// placeholder filled in.
fn words(cmd: &str) -> Vec<String> {
    let mut w = shlex::split(cmd).unwrap_or_else(|| panic!("{cmd:?} does not split"));
    assert_eq!(w.remove(0), "stagegate", "{cmd}");
    for i in 1..w.len() {
        if w[i] == "…" && w[i - 1] == "--reason" {
            w[i] = "fixed by the advice test".into();
        }
    }
    assert!(
        !w.iter().any(|x| x.contains('…')),
        "{cmd:?} holds a placeholder besides the reason"
    );
    w
}

/// How many results the ledger holds.
fn attempts(env: &TestEnv) -> usize {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&env.repo)
        .args(["ls-tree", "-r", "--name-only", "refs/stagegate/results"])
        .output()
        .unwrap();
    // No ledger yet: no results.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| crate::common::is_result_path(p))
        .count()
}

fn why(env: &TestEnv, item: &str) -> String {
    env.sg_ok(&["why", item])
}

/// Run `cmd` as printed on a fresh copy of the state of `s`, and check it did what its
/// kind promises. Returns its kind.
fn run_as_printed(s: &Scenario, cmd: &str) -> &'static str {
    let w = words(cmd);
    let refs: Vec<&str> = w.iter().map(String::as_str).collect();
    let kind = Advice::kind_of(&refs)
        .unwrap_or_else(|| panic!("{}: {cmd:?} is no kind of advice", s.name));
    let env = (s.build)();
    let before = attempts(&env);
    let out = env.sg(&refs);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let ctx = format!(
        "{}: `{cmd}` exited {:?}\n{o}\n{e}",
        s.name,
        out.status.code()
    );
    assert_ne!(out.status.code(), Some(2), "a usage error: {ctx}");
    assert!(out.status.code().is_some(), "killed: {ctx}");
    let arg = |flagless: usize| refs.iter().filter(|x| !x.starts_with("--")).nth(flagless);
    match kind {
        "run" | "run-failed" | "run-job" | "run-labels" => {
            assert!(attempts(&env) > before, "no job ran: {ctx}");
        }
        "recheck" => {
            let item = arg(1).unwrap();
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let after = why(&env, item);
            assert!(
                after.contains("override: recheck "),
                "{ctx}\nthen:\n{after}"
            );
            assert!(!after.contains("was rejected for"), "{ctx}\nthen:\n{after}");
        }
        "waive" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let after: String = s.items.iter().map(|i| why(&env, i)).collect();
            assert!(!after.contains("was rejected for"), "{ctx}\nthen:\n{after}");
        }
        "approve" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let after = why(&env, arg(1).unwrap());
            assert!(
                !after.contains("only with an approval"),
                "{ctx}\nthen:\n{after}"
            );
        }
        "release" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let after = why(&env, arg(1).unwrap());
            assert!(!after.contains(" is held on "), "{ctx}\nthen:\n{after}");
        }
        "unfreeze" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            let after = env.sg_ok(&["status"]);
            assert!(!after.contains("FROZEN"), "{ctx}\nthen:\n{after}");
        }
        "log-of" | "why" | "status" | "plan" | "log" | "diff" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            assert!(!o.trim().is_empty(), "printed nothing: {ctx}");
        }
        "check" => {
            // It checks the work tree: the broken manifest is a finding (1), not a usage
            // error, and it names the file.
            assert_eq!(out.status.code(), Some(1), "{ctx}");
            assert!(format!("{o}{e}").contains("components/bad.yaml"), "{ctx}");
        }
        "bisect" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            assert!(o.contains("first bad commit: "), "{ctx}");
        }
        "init" => {
            assert_eq!(out.status.code(), Some(0), "{ctx}");
            env.sg_ok(&["status"]);
        }
        "promote" => {
            // It judges: a rejection (1) is an answer, not a mistake.
            assert!(matches!(out.status.code(), Some(0 | 1)), "{ctx}");
        }
        other => panic!("{}: no check for advice of kind {other}", s.name),
    }
    kind
}

/// Kinds printed where a scenario here cannot reach, each run as printed by another test:
/// `verify` by a guarded remote's refusal of a push (git prints the hook's words), run in
/// `test_decision::a_guarded_remote_refuses_a_hand_made_merge_and_accepts_a_real_promotion`.
const RUN_ELSEWHERE: &[&str] = &["verify"];

#[test]
fn every_advice_kind_is_printed_by_some_state_and_works_as_printed() {
    let mut seen = BTreeSet::new();
    for s in scenarios() {
        let env = (s.build)();
        let advice = advice_of(&env, &s);
        for cmd in &advice {
            seen.insert(run_as_printed(&s, cmd));
        }
    }
    let missing: Vec<_> = Advice::KINDS
        .iter()
        .filter(|k| !seen.contains(*k) && !RUN_ELSEWHERE.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "advice kinds no scenario printed and ran: {missing:?} (seen: {seen:?})"
    );
}
