//! The five readers of a decision agree (issue 25): `status`, `why`, `plan --format json`,
//! `promote --dry-run` and `report.json` each ask the gate about every candidate, and must
//! say the same of it — its state, its reasons, the jobs that judge it and their verdicts.
//!
//! Each scenario makes a real state repository, reads it through all five at one fixed time
//! (`STAGEGATE_NOW`, so a soak's age is the same for each), and requires every candidate to
//! read the same in all five, then the state and reason kinds the scenario is about: five
//! readers equally wrong fail too.
//!
//! `plan` carries no state of its own. It is held to what it does carry: an invalid
//! candidate is in no group and its diagnostics are its reasons; a rejection that stands
//! plans nothing; any other candidate's group requires exactly the jobs the gate judged it
//! on, with the verdicts the others read, and names why it could not plan more; when
//! several groups pass alone, their combination is planned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::common::TestEnv;

/// Boots unless xen is a 2.x (always broken), xen 3 meets linux 3 (they break only
/// together), or the flag file `$HOME/FLAG` exists for the xen version in it
/// (`base-fails` for xen 1, the stable one; `cand-fails` for any other).
const BOOT: &str = r#"#!/bin/sh
x="$STAGEGATE_COMPONENT_XEN_VERSION"; l="$STAGEGATE_COMPONENT_LINUX_VERSION"
echo "booting xen $x with linux $l"
case "$x" in 2*) echo "xen $x: no console"; exit 1;; esac
[ "$x" = 3 ] && [ "$l" = 3 ] && { echo "xen 3 and linux 3 disagree"; exit 1; }
[ "$x" = 1 ] && [ -f "$HOME/base-fails" ] && { echo "xen 1: lost the disk"; exit 1; }
[ "$x" != 1 ] && [ -f "$HOME/cand-fails" ] && { echo "xen $x: lost the disk"; exit 1; }
echo "login prompt reached"
"#;
const BOOT_TEST: &str =
    "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n";

/// The pipeline with `extra` added to the gate into stable (`, soak: 1h`, …).
fn pipeline(extra: &str) -> String {
    format!(
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [test], baseline: true{extra}}}\n"
    )
}

/// `staging` → `stable`, xen 1 and linux 1 on both, the `boot` test, `extra` on the gate.
fn repo_with(extra: &str) -> TestEnv {
    TestEnv::init_with(&[
        ("stagegate.yaml", &pipeline(extra)),
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

fn repo() -> TestEnv {
    repo_with("")
}

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
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

/// Make the flag file `name` exist (or not) in the test's home: see [`BOOT`].
fn flag(env: &TestEnv, name: &str, on: bool) {
    let path = env.home().join(name);
    if on {
        std::fs::write(path, "").unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
}

/// RFC 3339 of now + `secs`: the one clock all five readers of a check share.
fn at(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs)).to_string()
}

/// stagegate at the time `now`, required to exit with one of `codes`; returns stdout.
fn sg_at(env: &TestEnv, now: &str, args: &[&str], codes: &[i32]) -> String {
    let out = env.sg_cmd(args).env("STAGEGATE_NOW", now).output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "stagegate {args:?} exited {:?}, wanted one of {codes:?}\nstdout:\n{o}\nstderr:\n{e}",
        out.status.code()
    );
    o.into_owned()
}

fn json_at(env: &TestEnv, now: &str, args: &[&str], codes: &[i32]) -> Value {
    let out = sg_at(env, now, args, codes);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stagegate {args:?}: {e}\n{out}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not a list: {v}"))
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

fn texts(v: &Value) -> Vec<String> {
    arr(v).iter().map(text).collect()
}

/// The element of `list` whose `field` is `value`.
fn find<'a>(list: &'a Value, field: &str, value: &str, what: &str) -> &'a Value {
    arr(list)
        .iter()
        .find(|x| x[field] == value)
        .unwrap_or_else(|| panic!("{what}: nothing has {field} {value:?} in {list:#}"))
}

/// The move S → T of a document whose moves name their stages as strings (status,
/// promote, report) or as stage objects (plan).
fn move_of<'a>(doc: &'a Value, from: &str, to: &str, what: &str) -> &'a Value {
    let name = |v: &Value| v.get("name").unwrap_or(v).clone();
    arr(doc)
        .iter()
        .find(|m| name(&m["from"]) == from && name(&m["to"]) == to)
        .unwrap_or_else(|| panic!("{what} has no move {from} → {to}: {doc:#}"))
}

/// `(kind, message)` of each reason in `list`.
fn kinded(list: &Value) -> Vec<(String, String)> {
    arr(list)
        .iter()
        .map(|r| (text(&r["kind"]), text(&r["message"])))
        .collect()
}

/// What all five readers agreed on for one candidate.
#[derive(Debug)]
struct Agreed {
    state: String,
    /// The kinds of its reasons, in order.
    kinds: Vec<String>,
    /// The reasons' messages, in order.
    reasons: Vec<String>,
}

/// Read the repository through all five readers at the time `now`, require them to agree on
/// every candidate (panicking with the first disagreement), and return what they agreed on,
/// by candidate.
fn read_all(env: &TestEnv, now: &str) -> BTreeMap<String, Agreed> {
    let status = json_at(env, now, &["status", "--format", "json"], &[0]);
    let plan = json_at(env, now, &["plan", "--format", "json"], &[0]);
    // Exit 1 says a rejection is pending: a reading like any other here.
    let promote = json_at(
        env,
        now,
        &["promote", "--dry-run", "--format", "json"],
        &[0, 1],
    );
    let site = tempfile::tempdir_in(env.home()).unwrap();
    sg_at(
        env,
        now,
        &["report", "--out", site.path().to_str().unwrap()],
        &[0],
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(site.path().join("report.json")).unwrap())
            .unwrap();

    let mut agreed = BTreeMap::new();
    assert_eq!(arr(&plan).len(), arr(&status).len(), "plan: {plan:#}");
    assert_eq!(
        arr(&promote).len(),
        arr(&status).len(),
        "promote: {promote:#}"
    );
    assert_eq!(
        arr(&report["moves"]).len(),
        arr(&status).len(),
        "report: {:#}",
        report["moves"]
    );
    for sm in arr(&status) {
        let (from, to) = (text(&sm["from"]), text(&sm["to"]));
        let pm = move_of(&plan, &from, &to, "plan");
        let om = move_of(&promote, &from, &to, "promote --dry-run");
        let rm = move_of(&report["moves"], &from, &to, "report.json");
        for (what, m) in [("plan", pm), ("report.json", rm)] {
            assert_eq!(m["from_head"], sm["from_head"], "{what}: {from} → {to}");
            assert_eq!(m["to_head"], sm["to_head"], "{what}: {from} → {to}");
        }
        let items = |m: &Value| -> Vec<String> {
            arr(&m["candidates"])
                .iter()
                .map(|c| text(&c["item"]))
                .collect()
        };
        let names = items(sm);
        assert_eq!(items(pm), names, "plan's candidates of {from} → {to}");
        assert_eq!(items(om), names, "promote's candidates of {from} → {to}");
        assert_eq!(items(rm), names, "report's candidates of {from} → {to}");
        let ids =
            |list: &Value| -> Vec<String> { arr(list).iter().map(|f| text(&f["id"])).collect() };
        assert_eq!(
            ids(&om["frozen"]),
            ids(&sm["frozen"]),
            "the freezes of {to}"
        );

        // The candidates whose group passes alone, as the gate judged them (before the
        // combination of several such groups had its say), and their groups.
        let mut passing: BTreeSet<String> = BTreeSet::new();
        let mut passing_groups: BTreeSet<Vec<String>> = BTreeSet::new();
        let mut moved: Vec<String> = Vec::new();
        for sc in arr(&sm["candidates"]) {
            let item = text(&sc["item"]);
            let ctx = format!("{item} ({from} → {to})");
            let why = json_at(env, now, &["why", &item, "--format", "json"], &[0]);
            let wp = find(&why["pending"], "to", &to, &format!("why {item}"));
            assert_eq!(wp["from"], from.as_str(), "why {ctx}");
            let ev = &wp["evaluation"];
            assert!(ev.is_object(), "why {ctx} has no evaluation: {wp:#}");
            let oc = find(&om["candidates"], "item", &item, "promote");
            let rc = find(&rm["candidates"], "item", &item, "report.json");
            let pc = find(&pm["candidates"], "item", &item, "plan");

            let state = text(&sc["state"]);
            assert_eq!(
                text(&wp["state"]),
                state,
                "why vs status: the state of {ctx}"
            );
            assert_eq!(
                text(&oc["state"]),
                state,
                "promote --dry-run vs status: the state of {ctx}"
            );
            assert_eq!(
                text(&rc["state"]),
                state,
                "report.json vs status: the state of {ctx}"
            );

            // Reasons: status and promote carry messages, why and the report kinds too.
            let reasons = texts(&sc["reasons"]);
            let why_reasons = kinded(&ev["reasons"]);
            let messages: Vec<String> = why_reasons.iter().map(|(_, m)| m.clone()).collect();
            assert_eq!(messages, reasons, "why vs status: the reasons of {ctx}");
            assert_eq!(
                texts(&oc["reasons"]),
                reasons,
                "promote --dry-run vs status: the reasons of {ctx}"
            );
            let (combination, report_reasons): (Vec<_>, Vec<_>) = kinded(&rc["reasons"])
                .into_iter()
                .partition(|(k, _)| k == "combination");
            assert_eq!(
                report_reasons, why_reasons,
                "report.json vs why: the reasons of {ctx}"
            );
            // A candidate that passes alone but does not move this time waits on its
            // combination: the move's notes say why, wherever they are shown.
            let raw = text(&ev["state"]);
            let demoted = raw == "promote" && state != "promote";
            let notes = texts(&sm["notes"]);
            let combination: Vec<String> = combination.into_iter().map(|(_, m)| m).collect();
            if demoted {
                assert!(!notes.is_empty(), "status says {ctx} waits, and not why");
                assert_eq!(
                    texts(&wp["notes"]),
                    notes,
                    "why vs status: the notes of {ctx}"
                );
                assert_eq!(
                    combination, notes,
                    "report.json vs status: the notes of {ctx}"
                );
                for n in &notes {
                    assert!(
                        texts(&om["notes"]).contains(n),
                        "promote --dry-run lacks the note {n:?} on {ctx}: {om:#}"
                    );
                }
            } else {
                assert_eq!(combination, Vec::<String>::new(), "report.json: {ctx}");
            }
            // The report's one line says why from among the reasons.
            if state != "promote" {
                let line = text(&rc["reason"]);
                assert!(
                    reasons.contains(&line) || combination.contains(&line),
                    "report.json's one-line reason of {ctx} ({state}) is {line:?}, none of {reasons:#?}"
                );
            }

            // The jobs that judge it: keys and states (why, report), verdicts (why, report,
            // plan), counts of verdicts (status, promote).
            let jobs: Vec<(String, String, String)> = arr(&ev["jobs"])
                .iter()
                .map(|j| {
                    (
                        text(&j["key"]),
                        text(&j["state"]),
                        j["verdict"].as_str().unwrap_or("missing").to_string(),
                    )
                })
                .collect();
            let report_jobs: Vec<(String, String, String)> = arr(&rc["jobs"])
                .iter()
                .map(|j| {
                    (
                        text(&j["key"]),
                        text(&j["state"]),
                        j["result"]["verdict"]
                            .as_str()
                            .unwrap_or("missing")
                            .to_string(),
                    )
                })
                .collect();
            assert_eq!(report_jobs, jobs, "report.json vs why: the jobs of {ctx}");
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for (_, _, v) in &jobs {
                *counts.entry(v.clone()).or_default() += 1;
            }
            let status_counts: BTreeMap<String, u64> =
                serde_json::from_value(sc["jobs"].clone()).unwrap();
            assert_eq!(
                status_counts, counts,
                "status vs why: the job counts of {ctx}"
            );
            let line = if counts.is_empty() {
                "no jobs".to_string()
            } else {
                counts
                    .iter()
                    .map(|(v, n)| format!("{n} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            assert_eq!(
                text(&oc["results"]),
                line,
                "promote --dry-run vs why: the results of {ctx}"
            );

            // What it moves with, and whether it moves.
            let with = texts(&sc["with"]);
            assert_eq!(
                texts(&wp["with"]),
                with,
                "why vs status: what {ctx} is judged with"
            );
            assert_eq!(
                oc["moved"],
                state == "promote",
                "promote --dry-run moves {ctx} as status has it {state}"
            );
            if state == "promote" {
                moved.push(item.clone());
            }

            plan_agrees(pm, pc, &ctx, &state, ev, &with, &why_reasons);
            if raw == "promote" {
                passing.insert(item.clone());
                passing_groups.insert(texts(&ev["members"]));
            }
            let previous = agreed.insert(
                item.clone(),
                Agreed {
                    state,
                    kinds: why_reasons.iter().map(|(k, _)| k.clone()).collect(),
                    reasons,
                },
            );
            assert!(previous.is_none(), "{item} is pending on two moves");
        }
        assert_eq!(
            texts(&om["moved"]),
            moved,
            "promote --dry-run vs status: what moves {from} → {to}"
        );
        // Several groups passing alone: the plan has their combination's jobs.
        let combination = &pm["combination"];
        if passing_groups.len() > 1 {
            let members: BTreeSet<String> = texts(&combination["members"]).into_iter().collect();
            assert_eq!(
                members, passing,
                "plan's combination of {from} → {to}: {pm:#}"
            );
            for key in texts(&combination["required"]) {
                find(&pm["jobs"], "key", &key, "plan's combination jobs");
            }
        } else {
            assert!(
                combination.is_null(),
                "plan has a combination of {from} → {to} where fewer than two groups pass: {combination:#}"
            );
        }
    }
    agreed
}

/// What `plan --format json` says of one candidate agrees with the gate's evaluation of it
/// (`ev`, as `why` has it), what status says it moves `with`, and its reasons.
fn plan_agrees(
    pm: &Value,
    pc: &Value,
    ctx: &str,
    state: &str,
    ev: &Value,
    with: &[String],
    reasons: &[(String, String)],
) {
    let item = text(&pc["item"]);
    let groups: Vec<&Value> = arr(&pm["groups"])
        .iter()
        .filter(|g| texts(&g["members"]).contains(&item))
        .collect();
    if state == "invalid" {
        // The gate's reasons are the plan's diagnostics, located.
        let diagnostics: Vec<(String, String)> = arr(&pc["invalid"])
            .iter()
            .map(|d| {
                let help = d["help"]
                    .as_str()
                    .map(|h| format!(" (help: {h})"))
                    .unwrap_or_default();
                (
                    "invalid".to_string(),
                    format!(
                        "{}:{}:{}: {}{help}",
                        text(&d["file"]),
                        d["line"],
                        d["column"],
                        text(&d["message"])
                    ),
                )
            })
            .collect();
        assert_eq!(
            diagnostics, reasons,
            "plan vs why: the diagnostics of {ctx}"
        );
        assert!(groups.is_empty(), "plan groups the invalid {ctx}: {pm:#}");
        return;
    }
    assert_eq!(
        arr(&pc["invalid"]).len(),
        0,
        "plan has diagnostics for {ctx}, which is {state}"
    );
    assert_eq!(groups.len(), 1, "plan's groups of {ctx}: {pm:#}");
    let g = groups[0];
    assert_eq!(
        g["members"], ev["members"],
        "plan vs why: the group of {ctx}"
    );
    let others: Vec<String> = texts(&g["members"])
        .into_iter()
        .filter(|m| *m != item)
        .collect();
    assert_eq!(others, with, "plan vs status: what {ctx} is judged with");
    let blocked = kinded(&g["blocked"]);
    if ev["sticky"] == true {
        // A rejection that stands: nothing runs for it again.
        assert_eq!(state, "rejected", "{ctx}: sticky but {state}");
        assert_eq!(
            texts(&g["required"]),
            Vec::<String>::new(),
            "plan still plans jobs for {ctx}, rejected for good"
        );
        assert!(
            blocked.iter().any(|(k, _)| k == "rejected"),
            "plan does not say why {ctx} plans nothing: {g:#}"
        );
        return;
    }
    let keys: Vec<String> = arr(&ev["jobs"]).iter().map(|j| text(&j["key"])).collect();
    assert_eq!(
        texts(&g["required"]),
        keys,
        "plan vs why: the jobs that judge {ctx}"
    );
    for j in arr(&ev["jobs"]) {
        let planned = find(&pm["jobs"], "key", &text(&j["key"]), "plan's jobs");
        assert_eq!(
            planned["result"], j["verdict"],
            "plan vs why: the result of {} for {ctx}",
            j["label"]
        );
    }
    for b in &blocked {
        assert!(
            reasons.contains(b),
            "plan says {ctx} could not be planned because {b:?}; the gate does not: {reasons:#?}"
        );
    }
}

/// The five readers agree, and the candidates are exactly `want`: each with its state and
/// the kinds of its reasons.
#[track_caller]
fn assert_agree(
    env: &TestEnv,
    now: &str,
    want: &[(&str, &str, &[&str])],
) -> BTreeMap<String, Agreed> {
    let agreed = read_all(env, now);
    let got: Vec<(&str, &str, Vec<&str>)> = agreed
        .iter()
        .map(|(item, a)| {
            (
                item.as_str(),
                a.state.as_str(),
                a.kinds.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let mut want: Vec<(&str, &str, Vec<&str>)> =
        want.iter().map(|(i, s, k)| (*i, *s, k.to_vec())).collect();
    want.sort();
    assert_eq!(got, want, "what all five say: {agreed:#?}");
    agreed
}

#[test]
fn a_passing_group_and_its_combination() {
    let env = repo();
    bump(&env, "xen", "4");
    bump(&env, "linux", "4");
    // Each alone, then their combination.
    env.sg_ok(&["run"]);
    env.sg_ok(&["run"]);
    assert_agree(
        &env,
        &at(0),
        &[
            ("components/xen", "promote", &[]),
            ("components/linux", "promote", &[]),
        ],
    );
}

#[test]
fn a_regression_then_its_recorded_rejection() {
    let env = repo();
    bump(&env, "xen", "2");
    env.sg_code(1, &["run"]);
    assert_agree(
        &env,
        &at(0),
        &[("components/xen", "rejected", &["regression"])],
    );
    // Recorded: it stands without being judged again, and plans nothing.
    env.sg_code(1, &["promote"]);
    assert_agree(
        &env,
        &at(0),
        &[("components/xen", "rejected", &["rejected"])],
    );
}

#[test]
fn a_failure_like_the_baselines() {
    let env = repo();
    bump(&env, "xen", "3");
    flag(&env, "base-fails", true);
    flag(&env, "cand-fails", true);
    // A failure like its baseline's blocks nothing: not a new "no" (exit 0).
    env.sg_code(0, &["run"]);
    assert_agree(
        &env,
        &at(0),
        &[("components/xen", "promote", &["fails-like-baseline"])],
    );
}

/// The baseline fails, then passes on a re-run (flaky); the candidate fails once.
fn flaky_baseline(extra: &str) -> TestEnv {
    let env = repo_with(extra);
    bump(&env, "xen", "3");
    flag(&env, "base-fails", true);
    flag(&env, "cand-fails", true);
    env.sg_code(0, &["run"]);
    let why = env.json(&["why", "components/xen", "--format", "json"]);
    let base = text(&why["pending"][0]["evaluation"]["jobs"][0]["baseline_key"]);
    flag(&env, "base-fails", false);
    env.sg_ok(&["run", "--rerun", &base]);
    env
}

#[test]
fn a_flaky_baseline_under_the_block_policy() {
    let env = flaky_baseline("");
    assert_agree(
        &env,
        &at(0),
        &[("components/xen", "rejected", &["heisenbug"])],
    );
}

#[test]
fn a_flaky_baseline_under_the_wait_policy() {
    let env = flaky_baseline(", flaky: {policy: wait, tries: 1}");
    assert_agree(&env, &at(0), &[("components/xen", "wait", &["heisenbug"])]);
}

#[test]
fn a_flaky_baseline_under_the_allow_policy() {
    let env = flaky_baseline(", flaky: {policy: allow}");
    assert_agree(
        &env,
        &at(0),
        &[("components/xen", "promote", &["heisenbug"])],
    );
}

#[test]
fn a_hold() {
    let env = repo();
    bump(&env, "xen", "3");
    env.sg_ok(&["hold", "components/xen", "--reason", "wait for XSA-999"]);
    env.sg_ok(&["run"]);
    assert_agree(&env, &at(0), &[("components/xen", "held", &["held"])]);
}

#[test]
fn a_freeze() {
    let env = repo();
    bump(&env, "xen", "3");
    env.sg_ok(&["freeze", "stable", "--reason", "release 4.21 in progress"]);
    env.sg_ok(&["run"]);
    let agreed = assert_agree(&env, &at(0), &[("components/xen", "held", &["frozen"])]);
    let reason = &agreed["components/xen"].reasons[0];
    assert!(reason.contains("release 4.21 in progress"), "{reason}");
}

#[test]
fn a_waiver() {
    let env = repo();
    bump(&env, "xen", "2");
    env.sg_code(1, &["cycle"]);
    let why = env.json(&["why", "components/xen", "--format", "json"]);
    let key = text(&why["pending"][0]["evaluation"]["jobs"][0]["key"]);
    env.sg_ok(&[
        "waive",
        &key,
        "--reason",
        "the console test is known broken",
    ]);
    assert_agree(&env, &at(0), &[("components/xen", "promote", &["waived"])]);
}

#[test]
fn an_approval_pending_then_given() {
    let env = repo();
    env.commit_on(
        "staging",
        "Allow flaky failures",
        &[("stagegate.yaml", &pipeline(", flaky: {policy: allow}"))],
    );
    env.sg_ok(&["run"]);
    assert_agree(&env, &at(0), &[("stagegate.yaml", "wait", &["approval"])]);
    env.sg_ok(&[
        "approve",
        "stagegate.yaml",
        "--reason",
        "flakes are triaged by hand",
    ]);
    assert_agree(&env, &at(0), &[("stagegate.yaml", "promote", &[])]);
}

#[test]
fn a_soak_in_progress() {
    let env = repo_with(", soak: 1h");
    bump(&env, "linux", "2");
    // Runs, and records when the candidate was first seen pending; it soaks from then.
    env.sg_ok(&["cycle"]);
    let agreed = assert_agree(&env, &at(600), &[("components/linux", "wait", &["soak"])]);
    // Ten minutes on (give or take the seconds the set-up took), the same for all five.
    let reason = &agreed["components/linux"].reasons[0];
    assert!(reason.contains(" of the 1h soak; "), "{reason}");
    assert!(reason.contains("pending on staging for 10m"), "{reason}");
}

#[test]
fn an_invalid_manifest_beside_a_candidate_that_moves() {
    let env = repo();
    bump(&env, "linux", "2");
    env.commit_on(
        "staging",
        "Broken things",
        &[
            ("components/bad.yaml", "name: bad\nversion: [1\n"),
            (
                "tests/ghost.yaml",
                "name: ghost\nuses: [components/nope]\nrun: ./tests/boot.sh\n",
            ),
        ],
    );
    env.sg_ok(&["run"]);
    assert_agree(
        &env,
        &at(0),
        &[
            ("components/bad", "invalid", &["invalid"]),
            ("tests/ghost", "invalid", &["invalid"]),
            ("components/linux", "promote", &[]),
        ],
    );
}

#[test]
fn candidates_that_pass_alone_wait_for_their_combination() {
    let env = repo();
    bump(&env, "xen", "4");
    bump(&env, "linux", "4");
    // Each alone; their combination has not run yet.
    env.sg_ok(&["run"]);
    assert_agree(
        &env,
        &at(0),
        &[
            ("components/xen", "wait", &[]),
            ("components/linux", "wait", &[]),
        ],
    );
}

#[test]
fn candidates_that_pass_alone_but_not_together() {
    let env = repo();
    bump(&env, "xen", "3");
    bump(&env, "linux", "3");
    env.sg_ok(&["run"]);
    // Their combination fails: no candidate is rejected (each moves alone), exit 0.
    env.sg_code(0, &["run"]);
    // The first moves alone; the other waits to be judged against the new stable.
    assert_agree(
        &env,
        &at(0),
        &[
            ("components/linux", "promote", &[]),
            ("components/xen", "wait", &[]),
        ],
    );
}
