//! `stagegate bisect`: a rejected component's upstream commits tested in the rejection's
//! environment, on a real upstream repository with a merge in its history.

use std::path::PathBuf;

use crate::common::{TestEnv, is_result_path};

/// An upstream repository whose `main` has nine commits on its first-parent line: `c0`
/// (what stable pins) … `c8` (what poll brings), `c3` merging a side branch `s1`, `s2`
/// forked at `c2`. `tool.sh` prints `ok` until the commit named `bad` changes it.
struct Upstream {
    dir: PathBuf,
    /// c0..c8, then s1, s2.
    ids: std::collections::BTreeMap<String, String>,
}

impl Upstream {
    fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }
}

fn upstream(env: &TestEnv, bad: &str) -> Upstream {
    let dir = env.home().join("tool");
    std::fs::create_dir_all(&dir).unwrap();
    let git = |args: &[&str]| env.git_in(&dir, args);
    git(&["init", "-q", "-b", "main"]);
    let mut ids = std::collections::BTreeMap::new();
    let mut broken = false;
    let mut commit = |name: &str, ids: &mut std::collections::BTreeMap<String, String>| {
        if name == bad {
            broken = true;
        }
        let out = if broken { "broken" } else { "ok" };
        let script = dir.join("tool.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho {out}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join(format!("{name}.txt")), name).unwrap();
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", &format!("{name}: change {name}")]);
        ids.insert(name.to_string(), git(&["rev-parse", "HEAD"]));
    };
    for c in ["c0", "c1", "c2"] {
        commit(c, &mut ids);
    }
    git(&["checkout", "-q", "-b", "side"]);
    commit("s1", &mut ids);
    commit("s2", &mut ids);
    git(&["checkout", "-q", "main"]);
    // The merge takes the side's tool.sh when the side broke it.
    git(&[
        "merge",
        "-q",
        "--no-ff",
        "-X",
        "theirs",
        "-m",
        "c3: merge side",
        "side",
    ]);
    ids.insert("c3".into(), git(&["rev-parse", "HEAD"]));
    for c in ["c4", "c5", "c6", "c7", "c8"] {
        commit(c, &mut ids);
    }
    Upstream { dir, ids }
}

/// The test: fetch the component at its commit and run it; it must print `ok`. When
/// `$HOME/flaky-at` names the commit under test, its first run fails anyway;
/// `$HOME/cannot-run` makes it an `error`, `$HOME/all-pass` a pass.
const RUNS_SH: &str = r#"#!/bin/sh
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$STAGEGATE_COMPONENT_TOOL_GIT" "$work/tool"
git -C "$work/tool" -c advice.detachedHead=false checkout -q "$STAGEGATE_COMPONENT_TOOL_COMMIT"
# Knobs for the tests: a job that cannot run (exit 127 is `error`), a test that passes.
[ -e "$HOME/cannot-run" ] && exit 127
[ -e "$HOME/all-pass" ] && exit 0
if [ -f "$HOME/flaky-at" ] && [ "$(cat "$HOME/flaky-at")" = "$STAGEGATE_COMPONENT_TOOL_COMMIT" ] && [ ! -e "$HOME/flaked" ]; then
    touch "$HOME/flaked"
    echo "a spurious failure"
    exit 1
fi
out=$("$work/tool/tool.sh")
echo "tool says: $out"
[ "$out" = ok ]
"#;

/// A state repository (staging → stable, `gate`) whose stable pins `c0`; poll has brought
/// `c8` to staging.
fn state(bad: &str, gate: &str) -> (TestEnv, Upstream) {
    let env = TestEnv::init_with(&[
        (
            "tests/runs.yaml",
            "name: runs\nuses: [components/tool]\nrun: ./tests/runs.sh\n",
        ),
        ("tests/runs.sh", RUNS_SH),
    ]);
    let up = upstream(&env, bad);
    env.write(
        "components/tool.yaml",
        &format!(
            "name: tool\nversion: \"1\"\nsource: {{git: {}, commit: {}, track: main}}\n",
            up.dir.display(),
            up.id("c0")
        ),
    );
    env.write(
        "stagegate.yaml",
        &format!("version: 1\nstages: [staging, stable]\ngates:\n  stable: {gate}\n"),
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "the component and its gate"]);
    env.git(&["branch", "-f", "stable", "staging"]);
    env.sg_ok(&["poll"]);
    (env, up)
}

const GATE: &str = "{require: [test], baseline: true}";

/// Run the jobs and promote: the candidate fails where stable passes, a rejection.
fn rejected(bad: &str) -> (TestEnv, Upstream) {
    let (env, up) = state(bad, GATE);
    env.sg_code(1, &["run"]);
    env.sg_code(1, &["promote"]);
    (env, up)
}

fn results(env: &TestEnv) -> usize {
    env.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"])
        .lines()
        .filter(|p| is_result_path(p))
        .count()
}

/// `bisect components/tool --format json` with `args`.
fn bisect_json(env: &TestEnv, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bisect", "components/tool", "--format", "json"];
    all.extend(args);
    env.json(&all)
}

fn roles(rec: &serde_json::Value, role: &str) -> Vec<String> {
    rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == role)
        .map(|s| s["commit"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bisect_names_the_first_bad_upstream_commit_in_log2_steps() {
    let (env, up) = rejected("c5");
    let before = results(&env);
    let rec = bisect_json(&env, &["--reproduce", "1"]);
    assert_eq!(rec["outcome"], "found", "{rec:#}");
    assert_eq!(rec["first-bad"]["commit"], up.id("c5"), "{rec:#}");
    assert_eq!(rec["first-bad"]["subject"], "c5: change c5");
    assert_eq!(rec["line"], 8, "c1..c8 on the first-parent line");
    // ⌈log2 8⌉ = 3 commits between the ends: c4, c6, c5.
    assert_eq!(
        roles(&rec, "first-parent"),
        [up.id("c4"), up.id("c6"), up.id("c5")],
        "{rec:#}"
    );
    assert_eq!(roles(&rec, "good-end"), [up.id("c0")]);
    assert_eq!(roles(&rec, "bad-end"), [up.id("c8")]);
    assert!(rec.get("merged-by").is_none(), "{rec:#}");
    // Every tested commit has its own key.
    let keys: std::collections::BTreeSet<&str> = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["keys"][0].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 5, "{rec:#}");
    // ⌈log2 8⌉ × 1 runs, none at the ends: the gate's own results settle them (DESIGN §7).
    assert_eq!(results(&env), before + 3);

    // Again: the recorded results are reused, nothing runs.
    let out = env.sg_ok(&["bisect", "components/tool", "--reproduce", "1"]);
    assert!(
        out.contains(&format!("first bad commit: {} c5: change c5", up.id("c5"))),
        "{out}"
    );
    assert_eq!(results(&env), before + 3, "nothing ran again");
}

#[test]
fn bisect_goes_into_the_side_a_merge_brought_in() {
    let (env, up) = rejected("s2");
    let rec = bisect_json(&env, &["--reproduce", "1"]);
    assert_eq!(rec["first-bad"]["commit"], up.id("s2"), "{rec:#}");
    assert_eq!(rec["merged-by"], up.id("c3"), "{rec:#}");
    assert!(
        roles(&rec, "merged-side").contains(&up.id("s2").to_string()),
        "{rec:#}"
    );

    // --first-parent stops at the merge on the tracked branch.
    let rec = bisect_json(&env, &["--reproduce", "1", "--first-parent"]);
    assert_eq!(rec["first-bad"]["commit"], up.id("c3"), "{rec:#}");
    assert!(rec.get("merged-by").is_none(), "{rec:#}");
}

#[test]
fn bisect_reproduces_each_verdict_so_a_flaky_step_does_not_mislead_it() {
    let (env, up) = rejected("c5");
    // c4 (good) fails on its first run only.
    std::fs::write(env.home().join("flaky-at"), up.id("c4")).unwrap();
    let rec = bisect_json(&env, &["--reproduce", "2"]);
    assert_eq!(rec["first-bad"]["commit"], up.id("c5"), "{rec:#}");
    assert_eq!(rec["reproduce"], 2);
    let c4 = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["commit"] == up.id("c4"))
        .unwrap();
    assert_eq!(c4["verdict"], "good", "{c4:#}");
    assert_eq!(c4["failed"], 1, "{c4:#}");
    assert_eq!(c4["passed"], 2, "{c4:#}");
    assert_eq!(c4["flaky"], true, "{c4:#}");
    // Every other commit reproduced twice, agreeing.
    for s in rec["steps"].as_array().unwrap() {
        if s["commit"] != up.id("c4") {
            let n = s["passed"].as_u64().unwrap() + s["failed"].as_u64().unwrap();
            assert_eq!(n, 2, "{s:#}");
            assert!(s.get("flaky").is_none(), "{s:#}");
        }
    }
}

#[test]
fn a_regression_that_does_not_reproduce_at_the_ends_names_no_commit() {
    let (env, up) = rejected("c5");
    std::fs::write(env.home().join("all-pass"), "").unwrap();
    // The gate's failure at the candidate's commit counts as one result there (it is never
    // run again for nothing); a second, asked for by --reproduce 2, passes.
    let (out, _) = env.sg_code(1, &["bisect", "components/tool", "--reproduce", "2"]);
    assert!(
        out.contains(&format!(
            "no first bad commit: the candidate's commit {} passes when tested again",
            &up.id("c8")[..12]
        )),
        "{out}"
    );
    let why = env.sg_code(0, &["why", "components/tool"]).0;
    assert!(why.contains("bisect inconclusive"), "{why}");
}

#[test]
fn an_error_is_no_verdict_and_a_bisect_picks_up_where_it_stopped() {
    let (env, up) = rejected("c5");
    let knob = env.home().join("cannot-run");
    std::fs::write(&knob, "").unwrap();
    let before = results(&env);
    let (_, err) = env.sg_code(3, &["bisect", "components/tool", "--reproduce", "1"]);
    // The ends are settled by the gate's own results: the first commit run is inside.
    assert!(
        (1..8).any(|i| err.contains(&format!(
            "tests/runs at upstream commit {} ended without a verdict twice",
            &up.id(&format!("c{i}"))[..12]
        ))),
        "{err}"
    );
    assert!(
        err.contains("the command could not be run (exit 127"),
        "{err}"
    );
    assert!(
        err.contains("run `stagegate bisect components/tool` again"),
        "{err}"
    );
    assert_eq!(results(&env), before + 2, "both errors are recorded");
    assert_eq!(
        env.git(&[
            "ls-tree",
            "-r",
            "--name-only",
            "refs/stagegate/results",
            "bisect"
        ]),
        "",
        "no outcome is recorded"
    );
    std::fs::remove_file(&knob).unwrap();
    let rec = bisect_json(&env, &["--reproduce", "1"]);
    assert_eq!(rec["first-bad"]["commit"], up.id("c5"), "{rec:#}");
    let c0 = &rec["steps"][0];
    assert_eq!(
        (c0["passed"].as_u64(), c0["failed"].as_u64()),
        (Some(1), Some(0)),
        "{c0:#}"
    );
}

#[test]
fn bisect_of_an_item_that_is_not_a_rejected_component_says_what_to_do() {
    let (env, _up) = state("c5", GATE);
    // Pending, not judged yet.
    let (_, err) = env.sg_code(2, &["bisect", "components/tool"]);
    assert!(
        err.contains("components/tool is not rejected (wait on staging → stable)"),
        "{err}"
    );
    assert!(
        err.contains("help:") && err.contains("`stagegate run`"),
        "{err}"
    );
    // Not a component.
    let (_, err) = env.sg_code(2, &["bisect", "tests/runs"]);
    assert!(err.contains("tests/runs is not a component"), "{err}");
    assert!(err.contains("`stagegate status`"), "{err}");
    // Nowhere pending once it is on stable too.
    env.git(&["branch", "-f", "stable", "staging"]);
    let (_, err) = env.sg_code(2, &["bisect", "components/tool"]);
    assert!(err.contains("is not pending on any stage move"), "{err}");
}

#[test]
fn cycle_bisects_a_rejection_when_the_gate_says_bisect() {
    let (env, up) = state(
        "c5",
        "{require: [test], baseline: true, bisect: {reproduce: 1}}",
    );
    let (out, _) = env.sg_code(1, &["cycle", "--no-poll"]);
    let c5 = &up.id("c5")[..12];
    assert!(
        out.contains(&format!("first bad upstream commit {c5}")),
        "{out}"
    );
    // `why` names it with the rejection; `log` lists the bisect.
    let why = env.sg_code(0, &["why", "components/tool"]).0;
    assert!(why.contains("rejected"), "{why}");
    assert!(
        why.contains(&format!("first bad upstream commit {c5}")),
        "{why}"
    );
    let log = env.sg_ok(&["log", "components/tool"]);
    assert!(log.contains("bisect"), "{log}");
    assert!(log.contains(c5), "{log}");
    // The rejection's decision record names it.
    let decisions = env.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "refs/stagegate/results",
        "decisions/stable",
    ]);
    let path = decisions.lines().next().unwrap();
    let decision = env.git(&["show", &format!("refs/stagegate/results:{path}")]);
    assert!(decision.contains("decision: reject"), "{decision}");
    assert!(
        decision.contains(&format!("first bad upstream commit {c5}")),
        "{decision}"
    );
    // A second cycle does not bisect again.
    let bisects = |env: &TestEnv| {
        env.git(&[
            "ls-tree",
            "-r",
            "--name-only",
            "refs/stagegate/results",
            "bisect",
        ])
        .lines()
        .count()
    };
    assert_eq!(bisects(&env), 1);
    // The CI step summary (what the pull request body says too) names it.
    let step_summary = env.home().join("step-summary.md");
    let out = env
        .sg_cmd(&["cycle", "--no-poll"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .unwrap();
    // The rejection stands from the cycle before: reported, not signalled.
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(bisects(&env), 1, "not bisected again");
    let md = std::fs::read_to_string(&step_summary).unwrap();
    assert!(
        md.contains(&format!(
            "- bisected: components/tool: first bad upstream commit {c5}"
        )),
        "{md}"
    );
}

#[test]
fn a_gate_bisect_that_is_not_a_flag_or_reproductions_is_reported_with_its_line() {
    let env = TestEnv::init_with(&[]);
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], bisect: {reproduce: 0}}\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains(
            "stagegate.yaml:4:37: error: `bisect.reproduce` is 0; it must be between 1 and 10"
        ),
        "{err}"
    );
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\ngates:\n  stable:\n    require: [test]\n    bisect: {reproduce: 2, steps: 3}\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("stagegate.yaml:6:13: error: this value has none of the accepted shapes"),
        "{err}"
    );
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], bisect: maybe}\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(err.contains("stagegate.yaml:4:37: error:"), "{err}");
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], bisect: true}\n",
    );
    env.sg_ok(&["check"]);
}
