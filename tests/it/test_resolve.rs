//! Every command that names an item resolves it the same way: short names, did-you-mean
//! on a typo, exit 2 for a name no stage has.

use crate::common::TestEnv;

#[test]
fn a_short_name_resolves_to_the_only_item_that_has_it() {
    let env = TestEnv::init_example();
    let v = env.json(&["why", "hello", "--format", "json"]);
    assert_eq!(v["item"], "components/hello", "{v}");
    env.sg_ok(&["log", "hello"]);
    let out = env.sg_ok(&["hold", "hello", "--reason", "wait for the notes"]);
    assert!(out.contains("components/hello"), "{out}");
    env.sg_ok(&["release", "hello"]);
}

#[test]
fn a_typo_is_refused_with_the_nearest_name_and_nothing_is_committed() {
    let env = TestEnv::init_example();
    let before = env.git(&["rev-parse", "new"]);
    for args in [
        &["hold", "components/helo", "--stage", "new", "--reason", "x"][..],
        &["release", "helo"],
        &["drop", "components/helo", "--reason", "x"],
        &["why", "helo"],
        &["log", "components/helo"],
        &["approve", "components/helo", "--reason", "x"],
    ] {
        let (_, err) = env.sg_code(2, args);
        assert!(err.contains("exists on no stage"), "{args:?}: {err}");
        assert!(
            err.contains("did you mean components/hello?"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(env.git(&["rev-parse", "new"]), before, "nothing committed");
}

#[test]
fn why_and_log_work_for_tests_and_the_pipeline() {
    let env = TestEnv::init_example();
    for name in [
        "tests/host-boots",
        "host-boots",
        "stagegate.yaml",
        "pipeline",
    ] {
        env.sg_ok(&["why", name]);
        env.sg_ok(&["log", name]);
    }
    let v = env.json(&["why", "host-boots", "--format", "json"]);
    assert_eq!(v["item"], "tests/host-boots", "{v}");
}
