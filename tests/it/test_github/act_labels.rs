//! Host labels on GitHub, under `act`: `stagegate-matrix.yml` as shipped sends a job that
//! needs `arm64` to `runs-on: [self-hosted, arm64]` (the mapping of `labels:` in the
//! pipeline), a job that needs nothing to `ubuntu-latest`, and leaves a job that needs a
//! label mapped to no runner out of the matrix, with the reason in the plan job's log; it
//! never runs.
//!
//! act has no runners of its own: `-P LABEL=-self-hosted` makes this host the runner for a
//! label, and a job goes to the platform of the first label of its `runs-on` that has one
//! (act cannot require a runner to have all of them, as GitHub does). So `self-hosted` is
//! never mapped here: the arm64 job can only start through its `arm64` label. Without a
//! runner for it, act skips the job and names each label of its `runs-on` (GitHub would
//! queue it until such a runner came).
//!
//! act (0.2.89) gives every entry of one matrix the `runs-on` of whichever entry it
//! evaluates first (`runs-on: ${{ matrix.runs-on }}` is evaluated on a node the entries
//! share), so a matrix that mixes `[ubuntu-latest]` and `[self-hosted, arm64]` runs both
//! entries on one platform or skips both, at random. GitHub evaluates each entry on its
//! own; the template is right, and the test keeps each run's matrix to one `runs-on`: the
//! first run, before `arm64` is mapped, holds only the plain job (the arm64 one is left
//! out like the iommu one), and the runs after the mapping only the arm64 job.

use super::act::Act;
use super::act_images::results;
use crate::test_run::repo_with_tests;

const PASS: &str = "#!/bin/sh\nexit 0\n";
const PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\n";
const WORKFLOW: &str = "stagegate-matrix.yml";

/// act's lines for the matrix job of test `name` (`[stagegate matrix/test  NAME [...]-N]`).
fn job_lines<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("[stagegate matrix/test  {name} [");
    out.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// What the plan step printed of `plan --format github-matrix` (its stdout, echoed).
fn planned(out: &str) -> serde_json::Value {
    let line = out
        .lines()
        .find(|l| l.starts_with("[stagegate matrix/plan") && l.contains("| {\"exclusive\":"))
        .unwrap_or_else(|| panic!("no matrix in the plan job's log:\n{out}"));
    serde_json::from_str(line.split_once("| ").unwrap().1).unwrap()
}

/// The names of the entries of `list` in the plan.
fn names(plan: &serde_json::Value, list: &str) -> Vec<String> {
    plan[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// `labels:` mapping `arm64` to runners, on both stages (the rules come from the last one)
/// of the state repository and `origin`.
fn map_arm64(w: &Act) {
    let pipeline = format!("{PIPELINE}labels:\n  arm64: {{runs-on: [self-hosted, arm64]}}\n");
    for stage in ["stable", "staging"] {
        w.env.commit_on(
            stage,
            "Map arm64 to runners",
            &[("stagegate.yaml", &pipeline)],
        );
    }
    w.env.git(&["push", "-q", "origin", "stable", "staging"]);
}

#[test]
fn under_act_the_matrix_sends_a_job_to_the_runner_of_its_labels_and_leaves_out_an_unmapped_one() {
    let Some(act) = crate::common::require_tool("act") else {
        return;
    };
    let env = repo_with_tests(&[
        ("plain", "", PASS),
        ("arm", "needs: [arm64]\n", PASS),
        ("io", "needs: [iommu]\n", PASS),
    ]);
    for stage in ["stable", "staging"] {
        env.commit_on(stage, "Require tests", &[("stagegate.yaml", PIPELINE)]);
    }
    let w = Act::on(act, env);

    // Run 1, no label mapped: the plain job runs on ubuntu-latest, the others are left out.
    let out = w.run_fresh(&w.env.home().join("run-1"), WORKFLOW, "schedule");
    let plan = planned(&out);
    assert_eq!(
        names(&plan, "include"),
        ["test  plain [components/xen]"],
        "{plan:#}"
    );
    assert_eq!(
        plan["include"][0]["runs-on"],
        serde_json::json!(["ubuntu-latest"])
    );
    assert_eq!(
        names(&plan, "left_out"),
        ["test  arm [components/xen]", "test  io [components/xen]"]
    );
    // The reason, on the plan step's stderr (its stdout is the matrix, echoed as one line).
    for (name, label) in [("arm", "arm64"), ("io", "iommu")] {
        assert!(
            out.lines().any(|l| l.starts_with("[stagegate matrix/plan")
                && l.contains(&format!(
                    "| left out of the matrix: test  {name} [components/xen]"
                ))
                && l.contains(&format!(
                    "needs `{label}`, which `labels:` in stagegate.yaml maps to no runner"
                ))),
            "{out}"
        );
    }
    let plain = job_lines(&out, "plain");
    assert!(
        plain.iter().any(|l| l.contains("runs-on:[ubuntu-latest]")),
        "{out}"
    );
    assert!(
        plain.iter().any(|l| l.contains("🏁  Job succeeded")),
        "{out}"
    );
    assert!(out.contains(" test plain: pass"), "{out}");
    assert!(job_lines(&out, "arm").is_empty(), "{out}");

    map_arm64(&w);

    // Run 2: the arm64 job goes to `[self-hosted, arm64]`, and act has no such runner.
    let out = w.run_fresh(&w.env.home().join("run-2"), WORKFLOW, "schedule");
    let plan = planned(&out);
    assert_eq!(names(&plan, "include"), ["test  arm [components/xen]"]);
    assert_eq!(
        plan["include"][0]["runs-on"],
        serde_json::json!(["self-hosted", "arm64"])
    );
    assert_eq!(names(&plan, "left_out"), ["test  io [components/xen]"]);
    let arm = job_lines(&out, "arm");
    for label in ["self-hosted", "arm64"] {
        assert!(
            arm.iter().any(|l| l.contains(&format!(
                "Skipping unsupported platform -- Try running with `-P {label}=...`"
            ))),
            "{out}"
        );
    }
    assert!(!arm.iter().any(|l| l.contains(" run --job ")), "{out}");
    assert!(results(&w, "arm").is_empty());

    // Run 3, with a runner for `arm64`: the job runs there, told the labels it was chosen for.
    let out = w.run_fresh_with(
        &w.env.home().join("run-3"),
        WORKFLOW,
        "schedule",
        &["-P", "arm64=-self-hosted"],
    );
    let plan = planned(&out);
    assert_eq!(names(&plan, "include"), ["test  arm [components/xen]"]);
    let key = plan["include"][0]["key"].as_str().unwrap();
    let arm = job_lines(&out, "arm");
    assert!(
        arm.iter()
            .any(|l| l.contains("runs-on:[self-hosted arm64]")),
        "{out}"
    );
    assert!(
        !arm.iter()
            .any(|l| l.contains("Skipping unsupported platform")),
        "{out}"
    );
    assert!(
        arm.iter()
            .any(|l| l.contains(&format!(" run --job {key} "))),
        "{out}"
    );
    assert!(arm.iter().any(|l| l.contains("🏁  Job succeeded")), "{out}");
    assert!(
        out.contains(&format!("recorded {} test arm: pass", &key[..12])),
        "{out}"
    );
    let found = results(&w, "arm");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]["runner"]["labels"]
            .as_array()
            .unwrap()
            .contains(&"arm64".into()),
        "{:#}",
        found[0]
    );
    for r in results(&w, "plain") {
        assert!(
            !r["runner"]["labels"].to_string().contains("arm64"),
            "{r:#}"
        );
    }

    // The iommu job never ran: no matrix job, no result; the gate waits for it.
    assert!(job_lines(&out, "io").is_empty(), "{out}");
    assert!(results(&w, "io").is_empty());
    assert!(out.contains("staging → stable: wait"), "{out}");
}
