//! Snapshots of what people read from `status`, `plan`, `run` and `promote`: the example
//! pipeline from pending to promoted, and a regression that is rejected. What changes from
//! run to run (hashes, keys, times, durations, paths) is filtered out.

use crate::common::{TestEnv, item};

/// Snapshot `text` with what changes from run to run filtered out, durations too.
macro_rules! assert_text {
    ($env:expr, $name:expr, $text:expr) => {
        crate::common::assert_filtered!($env, $name, $text, (r"\b\d+\.\ds\b", "[secs]"))
    };
}

/// stdout, then stderr under a `--- stderr` line when there is any.
fn both(out: &std::process::Output) -> String {
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if e.is_empty() {
        o.into_owned()
    } else {
        format!("{o}--- stderr\n{e}")
    }
}

fn sg(env: &TestEnv, code: i32, args: &[&str]) -> std::process::Output {
    let out = env.sg(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{}", both(&out));
    out
}

#[test]
fn the_example_reads_the_same_from_pending_to_promoted() {
    let env = TestEnv::init_example();
    assert_text!(
        env,
        "example_status_pending",
        both(&sg(&env, 0, &["status"]))
    );
    assert_text!(env, "example_plan_pending", both(&sg(&env, 0, &["plan"])));
    assert_text!(
        env,
        "example_run_dry",
        both(&sg(&env, 0, &["run", "--dry-run"]))
    );
    // One job at a time, so the progress lines come in one order.
    assert_text!(env, "example_run", both(&sg(&env, 0, &["run", "-j", "1"])));
    assert_text!(env, "example_run_again", both(&sg(&env, 0, &["run"])));
    assert_text!(
        env,
        "example_promote_dry",
        both(&sg(&env, 0, &["promote", "--dry-run"]))
    );
    // Only the move into staging: what then waits on staging lists jobs whose keys (and
    // so their order) depend on the promotion commit's time.
    assert_text!(
        env,
        "example_promote",
        both(&sg(&env, 0, &["promote", "--stage", "staging"]))
    );
}

#[test]
fn a_regression_reads_the_same_in_run_status_and_promote() {
    let (xen, xen1) = item("components", "xen", "1");
    let env = TestEnv::init_with(&[
        (&xen, &xen1),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n",
        ),
        (
            "tests/boot.sh",
            "#!/bin/sh\necho booting xen $STAGEGATE_COMPONENT_XEN_VERSION\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" = 1 ] || { echo panic >&2; exit 1; }\n",
        ),
    ]);
    let (_, xen2) = item("components", "xen", "2");
    env.commit_on("staging", "Bump xen to 2", &[(&xen, &xen2)]);
    assert_text!(env, "regression_plan", both(&sg(&env, 0, &["plan"])));
    assert_text!(
        env,
        "regression_run",
        both(&sg(&env, 1, &["run", "-j", "1"]))
    );
    assert_text!(env, "regression_status", both(&sg(&env, 0, &["status"])));
    assert_text!(env, "regression_promote", both(&sg(&env, 1, &["promote"])));
}
