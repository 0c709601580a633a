//! The workflows as shipped, under `act`, on the example with images (`init --example`:
//! a host image built with `mke2fs -d` and `qemu-img`, a guest image derived from it, a
//! component, two tests that inspect the images), with a registry on 127.0.0.1 standing
//! in for ghcr.io as `artifacts.store`. Each act run is a run on fresh runners: a new home,
//! new checkouts of `origin`, nothing local from an earlier run. What a later run tests
//! with, it can only have from the registry: the tests prove it by the registry's own log
//! (the image blobs downloaded), and the results record the images' digests.

use super::act::Act;
use crate::common::TestEnv;
use crate::registry::Registry;

const STORE_REPO: &str = "state/artifacts";

/// The example pending on `new`, its store the registry's `state/artifacts` over plain
/// http, pushed to `origin`; `None` (skipped) when act or docker-registry is missing.
fn example_with_registry() -> Option<(Act, Registry)> {
    let act = crate::common::require_tool("act")?;
    // What the example's recipes and tests run.
    if !crate::common::require_tools(&["mke2fs", "debugfs", "e2fsck", "qemu-img"]) {
        return None;
    }
    let env = TestEnv::new();
    let dir = env.home().join("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let registry = Registry::start(&dir)?;
    let store = format!("oci+http://{}/{STORE_REPO}", registry.addr);
    env.sg_ok(&[
        "init",
        env.repo.to_str().unwrap(),
        "--example",
        "--store",
        &store,
    ]);
    Some((Act::on(act, env), registry))
}

/// The digest of the artifact that the build record of `image` on `stage` (in `origin`)
/// names, after checking that the record says it is in the registry.
fn built(w: &Act, stage: &str, image: &str) -> String {
    let text = w.env.git_in(
        &w.origin,
        &[
            "show",
            &format!("{stage}:.stagegate/built/images/{image}.yaml"),
        ],
    );
    let record: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let digest = record["digest"].as_str().unwrap().to_string();
    let location = record["location"].as_str().unwrap();
    assert!(
        location.starts_with("oci+http://127.0.0.1:") && location.ends_with(&digest),
        "{text}"
    );
    digest
}

/// The results in `origin`'s ledger of test `name`.
pub(super) fn results(w: &Act, name: &str) -> Vec<serde_json::Value> {
    let files = w.env.git_in(
        &w.origin,
        &["ls-tree", "-r", "--name-only", "refs/stagegate/results"],
    );
    files
        .lines()
        .filter(|p| crate::common::is_result_path(p))
        .map(|p| {
            let text = w
                .env
                .git_in(&w.origin, &["show", &format!("refs/stagegate/results:{p}")]);
            serde_saphyr::from_str::<serde_json::Value>(&text).unwrap()
        })
        .filter(|r| r["name"] == name)
        .collect()
}

/// The digest `result` records for `item` in its environment.
fn digest_in(result: &serde_json::Value, item: &str) -> String {
    result["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["item"] == item)
        .and_then(|e| e["digest"].as_str())
        .unwrap_or_else(|| panic!("no digest of {item} in {result:#}"))
        .to_string()
}

/// A new commit on `hello/main` in `origin`, the branch the example's component tracks.
fn upstream_commit(w: &Act) {
    let dir = w.env.home().join("hello");
    w.env.git(&[
        "clone",
        "-q",
        "-b",
        "hello/main",
        w.origin.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let script = dir.join("hello.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, text + "echo \"hello, now with a second line\"\n").unwrap();
    w.env
        .git_in(&dir, &["commit", "-q", "-am", "hello: say more"]);
    w.env.git_in(&dir, &["push", "-q", "origin", "hello/main"]);
}

fn runner(w: &Act, name: &str) -> std::path::PathBuf {
    let home = w.env.home().join(name);
    assert!(!home.exists(), "a fresh runner");
    home
}

#[test]
fn under_act_the_cycle_on_a_fresh_runner_tests_with_the_images_another_runner_built() {
    let Some((w, registry)) = example_with_registry() else {
        return;
    };

    // Runner A: builds both images (pushed to the registry), tests them, promotes both moves.
    let out = w.run_fresh(&runner(&w, "runner-a"), "stagegate-cycle.yml", "schedule");
    assert!(out.contains("build images/debian-host"), "{out}");
    assert!(out.contains("build images/debian-guest"), "{out}");
    assert!(out.contains("staging → stable: promoted"), "{out}");
    let host = built(&w, "stable", "debian-host");
    let guest = built(&w, "stable", "debian-guest");
    let tags = registry.tags(STORE_REPO);
    for digest in [&host, &guest] {
        assert!(tags.contains(&digest.replace("sha256:", "sg-")), "{tags:?}");
        // A tested what it built itself: nothing was downloaded yet.
        assert_eq!(registry.pulls(digest, 0), 0, "{digest}");
    }

    // Upstream moves: the next run bumps only the component, whose tests need the images.
    upstream_commit(&w);

    // Runner B: a new checkout, a new home, no artifact of A's. It rebuilds nothing: its
    // tests of the component run on A's images, downloaded from the registry.
    let out = w.run_fresh(&runner(&w, "runner-b"), "stagegate-cycle.yml", "schedule");
    assert!(out.contains("poll: components/hello 1.0 → main-"), "{out}");
    assert!(!out.contains("build images/"), "nothing is rebuilt:\n{out}");
    assert!(
        out.contains("staging → stable: promoted components/hello"),
        "{out}"
    );
    assert!(registry.pulls(&host, 1) >= 1, "B downloaded the host image");
    assert!(
        registry.pulls(&guest, 1) >= 1,
        "B downloaded the guest image"
    );
    assert_eq!(registry.tags(STORE_REPO), tags, "no new artifact");
    // B's results name the images A built, by digest.
    for (test, images) in [
        ("host-boots", vec![("images/debian-host", &host)]),
        (
            "guest-boots",
            vec![
                ("images/debian-host", &host),
                ("images/debian-guest", &guest),
            ],
        ),
    ] {
        let found: Vec<_> = results(&w, test)
            .into_iter()
            .filter(|r| r["candidates"] == serde_json::json!(["components/hello"]))
            .collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0]["verdict"], "pass", "{:#}", found[0]);
        for (item, digest) in images {
            assert_eq!(&digest_in(&found[0], item), digest, "{test}");
        }
    }
    assert_eq!(built(&w, "stable", "debian-host"), host);
}

#[test]
fn under_act_the_matrix_builds_an_image_in_one_job_and_uses_it_in_others_on_fresh_runners() {
    let Some((w, registry)) = example_with_registry() else {
        return;
    };
    let key_of = |out: &str, name: &str| -> String {
        // `run --job KEY --export result-KEY`, as the matrix job `name` ran it.
        let line = out
            .lines()
            .find(|l| l.contains(&format!("/{name}")) && l.contains(" run --job "))
            .unwrap_or_else(|| panic!("no matrix job {name}:\n{out}"));
        let key = line.split(" run --job ").nth(1).unwrap();
        key.split_whitespace().next().unwrap().to_string()
    };

    // Run 1: the matrix holds only what can start: the host's build. The guest is built on
    // the host's artifact, which has no result yet.
    let out = w.run_fresh(&runner(&w, "run-1"), "stagegate-matrix.yml", "schedule");
    let host_key = key_of(&out, "build images/debian-host");
    assert!(
        out.contains(&format!("--export result-{host_key}")),
        "{out}"
    );
    assert!(!out.contains("/build images/debian-guest"), "{out}");
    assert!(
        out.contains(&format!(
            "recorded {} build images/debian-host: pass",
            &host_key[..12]
        )),
        "{out}"
    );
    assert!(out.contains("new → staging: nothing to promote"), "{out}");
    assert_eq!(registry.tags(STORE_REPO).len(), 1, "the host image");

    // Run 2, on other runners: the guest's build, on the host image from the registry.
    let out = w.run_fresh(&runner(&w, "run-2"), "stagegate-matrix.yml", "schedule");
    let guest_key = key_of(&out, "build images/debian-guest");
    assert!(!out.contains("/build images/debian-host"), "{out}");
    assert!(
        out.contains(&format!(
            "recorded {} build images/debian-guest: pass",
            &guest_key[..12]
        )),
        "{out}"
    );
    assert!(out.contains("new → staging: promoted"), "{out}");
    let host = built(&w, "staging", "debian-host");
    let guest = built(&w, "staging", "debian-guest");
    assert_eq!(
        registry.pulls(&host, 1),
        1,
        "the guest's build downloaded the host"
    );
    assert_eq!(registry.pulls(&guest, 0), 0);

    // Run 3: each test on a runner of its own, with both images from the registry.
    let out = w.run_fresh(&runner(&w, "run-3"), "stagegate-matrix.yml", "schedule");
    for test in ["host-boots", "guest-boots"] {
        let key = key_of(&out, &format!("test  {test}"));
        assert!(
            out.contains(&format!("recorded {} test {test}: pass", &key[..12])),
            "{out}"
        );
    }
    assert!(!out.contains("/build images/"), "{out}");
    assert!(out.contains("staging → stable: promoted"), "{out}");
    // Both tests need the host image, each on its own runner: two more downloads.
    assert!(
        registry.pulls(&host, 3) >= 3,
        "each test job downloaded the host"
    );
    assert!(
        registry.pulls(&guest, 1) >= 1,
        "guest-boots downloaded the guest"
    );
    assert_eq!(registry.tags(STORE_REPO).len(), 2);
    for (test, images) in [
        ("host-boots", vec![("images/debian-host", &host)]),
        (
            "guest-boots",
            vec![
                ("images/debian-host", &host),
                ("images/debian-guest", &guest),
            ],
        ),
    ] {
        let found = results(&w, test);
        assert!(!found.is_empty(), "{test}");
        for r in &found {
            assert_eq!(r["verdict"], "pass", "{r:#}");
            for (item, digest) in &images {
                assert_eq!(&&digest_in(r, item), digest, "{test}");
            }
        }
    }
    assert_eq!(built(&w, "stable", "debian-guest"), guest);
}
