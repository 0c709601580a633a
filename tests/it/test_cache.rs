//! Build caches (`build.cache`): a second build output stored beside the artifact, recorded
//! with it, and handed to the next build of the image from the build record on the stage
//! the build is for (`$STAGEGATE_CACHE`) — the last build that passed that stage's gate.
//!
//! The recipes are a few lines of shell: each writes into its lock which cache it was
//! given, so the ledger says what a build received.

use crate::common::TestEnv;
use crate::test_images::{built, planned, results_of};
use stagegate::ledger::Verdict;

/// Two stages; entering stable needs every changed image built.
const BUILD_PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build]}\n";

/// Says in its lock which cache it was given; leaves `cache of VERSION` as its own.
const CACHE_RECIPE: &str = "#!/bin/sh\nset -eu\n\
    echo \"host $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\n\
    if [ -n \"${STAGEGATE_CACHE:-}\" ]; then\n\
    \x20   printf 'given %s: %s\\n' \"$STAGEGATE_CACHE_VERSION\" \"$(cat \"$STAGEGATE_CACHE\")\" > \"$STAGEGATE_OUT/given.lock\"\n\
    else\n\
    \x20   echo 'given nothing' > \"$STAGEGATE_OUT/given.lock\"\n\
    fi\n\
    echo \"cache of $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/cache.tar\"\n";

fn host_image(version: &str) -> String {
    format!(
        "name: host\nversion: \"{version}\"\n\
         build: {{run: ./recipes/host.sh, artifact: disk.img, lock: given.lock, cache: cache.tar}}\n"
    )
}

/// `images/host` 1 built and promoted to stable, with its cache; HEAD on staging.
fn promoted_with_cache() -> TestEnv {
    let env = TestEnv::init_with(&[("stagegate.yaml", BUILD_PIPELINE)]);
    env.commit_on(
        "staging",
        "host 1",
        &[
            ("images/host.yaml", &host_image("1")),
            ("recipes/host.sh", CACHE_RECIPE),
        ],
    );
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    env
}

/// What the build of `version` was given, from its lock in the ledger.
fn given(env: &TestEnv, version: &str) -> String {
    let r = results_of(env, "images/host")
        .into_iter()
        .find(|r| r.env.iter().any(|e| e.version == version))
        .unwrap_or_else(|| panic!("no build of host {version}"));
    assert_eq!(r.verdict, Verdict::Pass, "{r:#?}");
    r.artifact.unwrap().lock.unwrap()
}

fn stored(env: &TestEnv, digest: &str) -> std::path::PathBuf {
    env.repo
        .join(".git/stagegate/artifacts/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

#[test]
fn a_build_cache_is_stored_beside_the_artifact_and_recorded_on_promotion() {
    let env = promoted_with_cache();
    assert_eq!(
        given(&env, "1"),
        "given nothing\n",
        "a first build has no cache"
    );
    let rec = built(&env, "stable", "host");
    let cache = rec.cache.expect("the cache in the build record");
    let file = stored(&env, cache.digest.as_str());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "cache of 1\n");
    assert_eq!(cache.size, "cache of 1\n".len() as u64);
    assert_eq!(cache.location, format!("file://{}", file.display()));
    assert_ne!(cache.digest, rec.digest, "the artifact is stored apart");
    let build = &results_of(&env, "images/host")[0];
    assert_eq!(
        build.artifact.as_ref().unwrap().cache.as_ref(),
        Some(&cache),
        "the ledger has it too"
    );
}

#[test]
fn a_build_is_given_the_cache_of_the_build_the_target_stage_holds() {
    let env = promoted_with_cache();
    let stable_cache = built(&env, "stable", "host").cache.unwrap();

    env.commit_on(
        "staging",
        "host 2",
        &[("images/host.yaml", &host_image("2"))],
    );
    let build = &planned(&env, "images/host")[0];
    assert_eq!(build["cache_from"]["version"], "1");
    assert_eq!(build["cache_from"]["digest"], stable_cache.digest.as_str());
    env.sg_ok(&["run"]);
    assert_eq!(given(&env, "2"), "given 1: cache of 1\n");

    // Version 2 is built, not promoted: it is not known good. Version 3 starts from 1's.
    env.commit_on(
        "staging",
        "host 3",
        &[("images/host.yaml", &host_image("3"))],
    );
    env.sg_ok(&["run"]);
    assert_eq!(given(&env, "3"), "given 1: cache of 1\n");

    // Once 3 is promoted, the next build starts from 3's.
    env.sg_ok(&["promote"]);
    env.commit_on(
        "staging",
        "host 4",
        &[("images/host.yaml", &host_image("4"))],
    );
    env.sg_ok(&["run"]);
    assert_eq!(given(&env, "4"), "given 3: cache of 3\n");
}

#[test]
fn a_build_cache_missing_from_the_store_is_an_error_naming_it() {
    let env = promoted_with_cache();
    let cache = built(&env, "stable", "host").cache.unwrap();
    std::fs::remove_file(stored(&env, cache.digest.as_str())).unwrap();
    env.commit_on(
        "staging",
        "host 2",
        &[("images/host.yaml", &host_image("2"))],
    );
    env.sg_code(3, &["run"]);
    let r = results_of(&env, "images/host")
        .into_iter()
        .find(|r| r.env.iter().any(|e| e.version == "2"))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Error, "{r:#?}");
    let reason = r.reason.unwrap_or_default();
    assert!(
        reason.contains("the cache of images/host 1") && reason.contains(cache.digest.as_str()),
        "{reason}"
    );
}

#[test]
fn a_build_that_declares_a_cache_and_does_not_write_it_fails() {
    let env = TestEnv::init_with(&[("stagegate.yaml", BUILD_PIPELINE)]);
    env.commit_on(
        "staging",
        "host 1",
        &[
            ("images/host.yaml", &host_image("1")),
            (
                "recipes/host.sh",
                &CACHE_RECIPE.replace("cache.tar", "elsewhere.tar"),
            ),
        ],
    );
    env.sg_code(1, &["run"]);
    let r = &results_of(&env, "images/host")[0];
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert!(
        r.reason.as_deref().unwrap_or_default().contains(
            "did not write its cache: $STAGEGATE_OUT/cache.tar is missing (build.cache in images/host)"
        ),
        "{r:#?}"
    );
}

#[test]
fn check_rejects_a_build_cache_that_names_the_artifact() {
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", BUILD_PIPELINE),
        (
            "images/host.yaml",
            "name: host\nversion: \"1\"\nbuild:\n  run: ./recipes/host.sh\n  artifact: disk.img\n  cache: disk.img\n",
        ),
        ("recipes/host.sh", CACHE_RECIPE),
    ]);
    let err = env.sg_code(1, &["check"]).1;
    assert!(
        err.contains("images/host.yaml:6:10")
            && err.contains("`build.cache` names \"disk.img\", the same file as `build.artifact`")
            && err.contains("e.g. `cache: packages.tar`"),
        "{err}"
    );
}
