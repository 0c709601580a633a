//! Images and poll: built artifacts in the content-addressed store and their records on
//! promotion, derived images, `poll` (watch commands, tracked branches, `max-age`), and the
//! component push gate — the real binary, real scripts, real repositories.
//!
//! Tests that need real disk images use the bundled example (`stagegate init`: `mke2fs`,
//! `qemu-img`, a component on the branches `hello/main` and `hello/master`); the others use small repositories
//! whose recipes are a few lines of shell, so what a job received can be read back from
//! the ledger (a recipe writes it into its lock file, which the ledger records).

use std::path::PathBuf;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use stagegate::ledger::{ResultRecord, Verdict};
use stagegate::promote::DecisionRecord;
use stagegate::records::BuiltRecord;

use crate::common::TestEnv;

const LEDGER: &str = "refs/stagegate/results";

/// Two stages; entering stable needs every changed image built.
const BUILD_PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build]}\n";

/// A base image's recipe: its artifact names the version it was built as.
const BASE_RECIPE: &str = "#!/bin/sh\nset -eu\n\
    echo \"base $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\n";

/// A derived image's recipe: its artifact is the parent's plus a line, and its lock file
/// records which parent artifact it was given.
const CHILD_RECIPE: &str = "#!/bin/sh\nset -eu\n\
    parent=\"${STAGEGATE_IMAGE_BASE_ARTIFACT:?no parent artifact}\"\n\
    { cat \"$parent\"; echo \"child $STAGEGATE_VERSION\"; } > \"$STAGEGATE_OUT/disk.img\"\n\
    printf 'parent-artifact: %s\\nparent-digest: %s\\n' \"$parent\" \"${STAGEGATE_IMAGE_BASE_DIGEST:-}\" \
    > \"$STAGEGATE_OUT/received.lock\"\n";

fn base_image(version: &str, extra: &str) -> String {
    format!(
        "name: base\nversion: \"{version}\"\n{extra}\
         build: {{run: ./recipes/base.sh, artifact: disk.img}}\n"
    )
}

fn child_image(version: &str) -> String {
    format!(
        "name: child\nversion: \"{version}\"\nbased-on: {{image: base}}\n\
         build: {{run: ./recipes/child.sh, artifact: disk.img, lock: received.lock}}\n"
    )
}

/// A watch script that prints `lines` (the last one is the newest version).
fn watch_script(lines: &str) -> String {
    format!("#!/bin/sh\nprintf '{lines}'\n")
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The default artifact store of a repository.
fn store(env: &TestEnv) -> PathBuf {
    env.repo.join(".git/stagegate/artifacts/sha256")
}

fn store_path(env: &TestEnv, digest: &str) -> PathBuf {
    store(env).join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// The built record of image `name` in the tree of `rev`.
pub(crate) fn built(env: &TestEnv, rev: &str, name: &str) -> BuiltRecord {
    let path = format!(".stagegate/built/images/{name}.yaml");
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    stagegate::records::parse(&path, text.as_bytes())
        .unwrap_or_else(|e| panic!("{path} on {rev} does not parse: {e}\n{text}"))
}

/// Every result on the ledger.
fn ledger(env: &TestEnv) -> Vec<ResultRecord> {
    let paths = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    paths
        .lines()
        .filter(|p| crate::common::is_result_path(p))
        .map(|path| {
            let text = env.git(&["show", &format!("{LEDGER}:{path}")]);
            stagegate::records::parse(path, text.as_bytes())
                .unwrap_or_else(|e| panic!("{path} does not parse: {e}\n{text}"))
        })
        .collect()
}

/// The ledger's results for the job named `name` (a test, or a built item's id).
pub(crate) fn results_of(env: &TestEnv, name: &str) -> Vec<ResultRecord> {
    ledger(env).into_iter().filter(|r| r.name == name).collect()
}

/// The planned jobs named `name` across every move, as JSON.
pub(crate) fn planned(env: &TestEnv, name: &str) -> Vec<serde_json::Value> {
    let plan = env.json(&["plan", "--format", "json"]);
    let mut out = Vec::new();
    for mv in plan.as_array().unwrap() {
        let jobs: Vec<&serde_json::Value> = match &mv["jobs"] {
            serde_json::Value::Object(m) => m.values().collect(),
            other => other.as_array().unwrap().iter().collect(),
        };
        out.extend(jobs.into_iter().filter(|j| j["name"] == name).cloned());
    }
    out
}

/// The values of trailer `key` in the message of `rev`.
fn trailer(env: &TestEnv, rev: &str, key: &str) -> Vec<String> {
    let fmt = format!("--format=%(trailers:key={key},valueonly)");
    env.git(&["log", "-1", &fmt, rev])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

fn message(env: &TestEnv, rev: &str) -> String {
    env.git(&["log", "-1", "--format=%B", rev])
}

/// The day of `t` in UTC, as poll stamps it (`YYYYMMDD`).
fn day_of(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()[..10].replace('-', "")
}

/// Today, as poll stamps it.
fn today() -> String {
    day_of(SystemTime::now())
}

/// `version` is `base` stamped by a poll that ran since `since` (midnight may have passed).
fn assert_stamped(version: &str, base: &str, since: SystemTime) {
    let days = [day_of(since), today()];
    assert!(
        days.iter().any(|d| version == format!("{base}+r{d}")),
        "{version} is not {base} stamped with one of {days:?}"
    );
}

/// Whether `s` is a date `YYYY.MM.DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'.'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn version_of(env: &TestEnv, rev: &str, path: &str) -> String {
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    text.lines()
        .find_map(|l| l.strip_prefix("version: "))
        .unwrap_or_else(|| panic!("{path} on {rev} has no version line:\n{text}"))
        .split(" #")
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

// --- the example's component repository ---

/// Commit a change to `file` on the example component's `branch` (its history lives in
/// the state repository, on `hello/<branch>`) from a clone, and push it there; returns the
/// commit.
fn upstream_commit(env: &TestEnv, branch: &str, file: &str, line: &str) -> String {
    let work = env.home().join("hello-work");
    if !work.exists() {
        env.git_in(
            env.home(),
            &[
                "clone",
                "-q",
                env.repo.to_str().unwrap(),
                work.to_str().unwrap(),
            ],
        );
    }
    env.git_in(&work, &["fetch", "-q", "origin"]);
    env.git_in(
        &work,
        &[
            "checkout",
            "-q",
            "-B",
            branch,
            &format!("origin/hello/{branch}"),
        ],
    );
    let path = work.join(file);
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    env.git_in(&work, &["add", "-A"]);
    env.git_in(&work, &["commit", "-q", "-m", &format!("{file}: {line}")]);
    env.git_in(
        &work,
        &["push", "-q", "origin", &format!("HEAD:hello/{branch}")],
    );
    env.git_in(&work, &["rev-parse", "HEAD"])
}

fn upstream_rev(env: &TestEnv, branch: &str) -> String {
    env.rev(&format!("hello/{branch}"))
}

/// The decision the merge commit `rev` on `stage` added (the one for its second parent).
fn decision_of(env: &TestEnv, rev: &str, stage: &str) -> DecisionRecord {
    let tested = env.rev(&format!("{rev}^2"));
    let dir = format!(".stagegate/decisions/{stage}");
    let found: Vec<DecisionRecord> = env
        .git(&["ls-tree", "--name-only", &format!("{rev}:{dir}")])
        .lines()
        .map(|name| {
            let path = format!("{dir}/{name}");
            let text = env.git(&["show", &format!("{rev}:{path}")]);
            stagegate::records::parse::<DecisionRecord>(&path, text.as_bytes()).unwrap()
        })
        .filter(|d| d.tested == tested)
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    found.into_iter().next().unwrap()
}

// --- builds and the artifact store ---

#[test]
fn a_build_is_stored_under_its_digest_recorded_on_promotion_and_given_to_later_tests() {
    let env = TestEnv::init_example();
    // Let the host test say which artifact it was given.
    env.edit(
        "tests/host-boots.sh",
        "echo \"host-boots: ok\"",
        "echo \"artifact: $STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT\"\necho \"host-boots: ok\"",
    );
    env.commit_on("new", "host-boots: say which artifact it inspects", &[]);

    // new -> staging: the builds run and their records land in staging's tree.
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let rec = built(&env, "staging", "debian-host");
    assert_eq!(rec.item, "images/debian-host");
    assert_eq!(rec.version, "12.8-1");
    let file = store_path(&env, rec.digest.as_str());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(
        format!("sha256:{}", sha256_hex(&bytes)),
        rec.digest,
        "the stored file hashes to its name"
    );
    assert_eq!(rec.size, bytes.len() as u64);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "stored artifacts are read-only: {mode:o}");
    assert_eq!(rec.location, format!("file://{}", file.display()));
    assert_eq!(
        rec.lock.as_deref(),
        Some(env.read("recipes/host-packages.txt").as_str()),
        "the package list the image was built from"
    );
    let build = results_of(&env, "images/debian-host");
    assert_eq!(build.len(), 1, "{build:#?}");
    assert_eq!(rec.build_job, build[0].key);
    assert_eq!(rec.built_at, build[0].finished);
    assert!(rec.builder.contains('@'), "{}", rec.builder);
    assert_eq!(
        build[0].artifact.as_ref().map(|a| &a.digest),
        Some(&rec.digest)
    );
    // Every artifact in the store is named by the hash of its content.
    let mut stored = 0;
    for entry in std::fs::read_dir(store(&env)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), name);
        stored += 1;
    }
    assert_eq!(stored, 2, "host and guest");
    assert_eq!(
        built(&env, "staging", "debian-guest").version,
        "12.8-1",
        "each built image has its own record"
    );

    // staging -> stable: the tests are given the stored artifact.
    env.sg_ok(&["run"]);
    let test = results_of(&env, "host-boots");
    assert_eq!(test.len(), 1, "{test:#?}");
    assert_eq!(test[0].verdict, Verdict::Pass, "{:#?}", test[0]);
    assert!(
        test[0]
            .excerpt
            .contains(&format!("artifact: {}", file.display())),
        "{}",
        test[0].excerpt
    );
    let host = test[0]
        .env
        .iter()
        .find(|e| e.item == "images/debian-host")
        .unwrap();
    assert_eq!(host.digest.as_ref(), Some(&rec.digest));
    env.sg_ok(&["promote"]);
    assert_eq!(built(&env, "stable", "debian-host"), rec);
}

#[test]
fn a_corrupted_artifact_makes_the_test_that_needs_it_an_error_and_promotion_waits() {
    let env = TestEnv::init_example();
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let rec = built(&env, "staging", "debian-host");
    let stable = env.rev("stable");

    let file = store_path(&env, rec.digest.as_str());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&file, b"not a disk image").unwrap();

    env.sg_code(3, &["run"]);
    let test = results_of(&env, "host-boots");
    assert_eq!(test.len(), 1, "{test:#?}");
    assert_eq!(test[0].verdict, Verdict::Error, "{:#?}", test[0]);
    let reason = test[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("corrupt")
            && reason.contains("images/debian-host")
            && reason.contains(rec.digest.as_str()),
        "{reason}"
    );
    // The guest's test needs the host's artifact too.
    let guest = results_of(&env, "guest-boots");
    assert_eq!(
        guest.iter().map(|r| r.verdict).collect::<Vec<_>>(),
        [Verdict::Error]
    );

    let out = env.sg_ok(&["promote"]);
    assert!(out.contains("corrupt"), "{out}");
    assert_eq!(env.rev("stable"), stable, "nothing is promoted on an error");
}

// --- derived images ---

/// `images/base` and `images/child` (based on it), built on stable; HEAD on staging.
fn derived_repo() -> TestEnv {
    let env = TestEnv::init_with(&[("stagegate.yaml", BUILD_PIPELINE)]);
    env.commit_on(
        "staging",
        "Add base and child",
        &[
            ("recipes/base.sh", BASE_RECIPE),
            ("recipes/child.sh", CHILD_RECIPE),
            ("images/base.yaml", &base_image("1", "")),
            ("images/child.yaml", &child_image("1")),
        ],
    );
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    env
}

#[test]
fn based_on_gives_the_build_its_parent_artifact_and_keys_it_on_that_artifact() {
    let env = derived_repo();
    let base1 = built(&env, "stable", "base");
    let child1 = built(&env, "stable", "child");
    // Built together: the child was given the parent's artifact from this very run.
    let received = child1.lock.clone().unwrap();
    assert_eq!(
        received,
        format!(
            "parent-artifact: {}\nparent-digest: {}\n",
            store_path(&env, base1.digest.as_str()).display(),
            base1.digest
        )
    );
    let artifact = std::fs::read_to_string(store_path(&env, child1.digest.as_str())).unwrap();
    assert_eq!(artifact, "base 1\nchild 1\n");

    // The child alone changes: built on stable's parent artifact.
    env.commit_on(
        "staging",
        "child 2",
        &[("images/child.yaml", &child_image("2"))],
    );
    let child_builds = planned(&env, "images/child");
    assert_eq!(child_builds.len(), 1, "{child_builds:#?}");
    let on_stable_parent = child_builds[0].clone();
    assert_eq!(on_stable_parent["after"], serde_json::json!([]));
    env.sg_ok(&["run"]);
    let old_parent = results_of(&env, "images/child")
        .into_iter()
        .find(|r| r.key == on_stable_parent["key"].as_str().unwrap())
        .expect("built");
    assert_eq!(old_parent.verdict, Verdict::Pass, "{old_parent:#?}");
    assert_eq!(old_parent.artifact.unwrap().lock, Some(received));

    // Its parent changes too: the child waits for the parent to move first, and is then
    // built on the parent's new artifact (a new key).
    env.commit_on(
        "staging",
        "base 2",
        &[("images/base.yaml", &base_image("2", ""))],
    );
    assert_eq!(
        planned(&env, "images/child"),
        Vec::<serde_json::Value>::new()
    );
    let why = env.sg_ok(&["why", "images/child"]);
    assert!(
        why.contains("images/child is built on images/base, which is pending too"),
        "{why}"
    );
    let out = env.sg_ok(&["cycle", "--no-poll"]);
    assert!(out.contains("promoted images/base as "), "{out}");
    assert_eq!(built(&env, "stable", "base").version, "2");
    let on_new_parent = planned(&env, "images/child");
    assert_eq!(on_new_parent.len(), 1, "{on_new_parent:#?}");
    assert_ne!(
        on_stable_parent["key"], on_new_parent[0]["key"],
        "the child's build key follows its parent's artifact"
    );
    env.sg_ok(&["cycle", "--no-poll"]);
    let child2 = built(&env, "stable", "child");
    let base2 = built(&env, "stable", "base");
    assert_eq!(child2.version, "2");
    assert!(
        child2
            .lock
            .as_deref()
            .unwrap()
            .contains(&format!("parent-digest: {}", base2.digest)),
        "{child2:#?}"
    );
    let content = std::fs::read_to_string(store_path(&env, child2.digest.as_str())).unwrap();
    assert_eq!(content, "base 2\nchild 2\n");
}

// --- poll ---

/// A repository with an image built from a recipe and whatever else `files` adds;
/// nothing pending. HEAD on staging.
fn poll_repo(files: &[(&str, &str)]) -> TestEnv {
    let mut all: Vec<(&str, &str)> = vec![
        ("stagegate.yaml", BUILD_PIPELINE),
        ("recipes/base.sh", BASE_RECIPE),
    ];
    all.extend_from_slice(files);
    TestEnv::init_with(&all)
}

#[test]
fn poll_bumps_an_image_when_its_watch_finds_a_new_upstream_release() {
    let image = "name: base\n\
        version: \"1-2026.01.01\" # set by poll\n\
        based-on: {component: debian, version: \"1\"}\n\
        build: {run: ./recipes/base.sh, artifact: disk.img}\n\
        watch: {run: ./watch/debian.sh}\n";
    let env = poll_repo(&[
        ("images/base.yaml", image),
        (
            "watch/debian.sh",
            &watch_script("checking the mirror\\n2\\n"),
        ),
    ]);
    let before = env.rev("staging");

    let out = env.sg_ok(&["poll"]);
    assert!(out.contains("images/base"), "{out}");
    assert_eq!(env.rev("staging^"), before, "one commit");
    let version = version_of(&env, "staging", "images/base.yaml");
    let (release, date) = version.split_once('-').unwrap();
    assert_eq!(release, "2");
    assert!(is_date(date), "{version}");
    let text = env.git(&["show", "staging:images/base.yaml"]);
    assert!(
        text.contains("based-on: {component: debian, version: \"2\"}"),
        "{text}"
    );
    assert!(text.contains("# set by poll"), "comments survive: {text}");
    assert_eq!(trailer(&env, "staging", "Stagegate-Poll"), ["images/base"]);
    assert_eq!(
        trailer(&env, "staging", "Stagegate-Reason"),
        ["upstream debian 2 released"]
    );
    env.sg_ok(&["check", "staging"]);
}

#[test]
fn poll_records_the_release_in_a_based_on_that_named_none() {
    let image = "name: base\n\
        version: \"1\"\n\
        based-on:\n  component: debian\n\
        build: {run: ./recipes/base.sh, artifact: disk.img}\n\
        watch: {run: ./watch.sh}\n";
    let env = poll_repo(&[
        ("images/base.yaml", image),
        ("watch.sh", &watch_script("2\\n")),
    ]);

    env.sg_ok(&["poll"]);
    let text = env.git(&["show", "staging:images/base.yaml"]);
    assert!(
        text.contains("based-on:\n  component: debian\n  version: \"2\"\n"),
        "{text}"
    );
    // Built and promoted: the same release is not news again.
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let staging = env.rev("staging");
    let out = env.sg_ok(&["poll"]);
    assert_eq!(out.trim(), "poll: nothing new");
    assert_eq!(env.rev("staging"), staging);
}

#[test]
fn poll_bumps_a_component_to_the_version_its_watch_prints() {
    let env = poll_repo(&[
        (
            "components/tool.yaml",
            "name: tool\nversion: \"1.0\"\nwatch: {run: ./watch/tool.sh}\n",
        ),
        ("watch/tool.sh", &watch_script("1.0\\n1.1\\n")),
    ]);
    let before = env.rev("staging");

    env.sg_ok(&["poll"]);
    assert_eq!(env.rev("staging^"), before, "one commit");
    assert_eq!(
        version_of(&env, "staging", "components/tool.yaml"),
        "1.1",
        "the last line printed is the newest version"
    );
    assert_eq!(
        trailer(&env, "staging", "Stagegate-Poll"),
        ["components/tool"]
    );
    assert_eq!(
        trailer(&env, "staging", "Stagegate-Reason"),
        ["upstream 1.1 released"]
    );
}

/// The example carries its component: a fresh clone of the state repository's remote (a
/// CI checkout, another runner) runs the whole pipeline, push gate included.
#[test]
fn the_example_cycles_in_a_fresh_clone_of_its_remote() {
    let env = TestEnv::init_example();
    let origin = env.bare_clone("origin.git");
    let ci = env.clone_of(&origin, "checkout");
    let out = ci.sg_ok(&["--remote", "origin", "cycle"]);
    assert!(out.contains("staging → stable: promoted"), "{out}");
    assert!(!out.contains("fail"), "{out}");
    let stable = env.git_in(&origin, &["show", "stable:components/hello.yaml"]);
    assert!(stable.contains("git: ."), "{stable}");
    let pinned = env.git_in(&origin, &["rev-parse", "hello/main"]);
    assert_eq!(
        env.git_in(&origin, &["rev-parse", "hello/master"]),
        pinned,
        "the push gate reached the remote"
    );

    // A new commit on the component, pushed by someone else, reaches stable from the clone.
    let tip = upstream_commit(&env, "main", "hello.sh", "echo \"hello, again\"");
    env.git(&["push", "-q", origin.to_str().unwrap(), "hello/main"]);
    ci.sg_ok(&["--remote", "origin", "cycle"]);
    assert_eq!(env.git_in(&origin, &["rev-parse", "hello/master"]), tip);
    let stable = env.git_in(&origin, &["show", "stable:components/hello.yaml"]);
    assert!(stable.contains(&tip), "{stable}");
}

#[test]
fn poll_bumps_a_component_whose_tracked_branch_moved() {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    let new = env.rev("new");
    let tip = upstream_commit(&env, "main", "hello.sh", "echo \"hello, again\"");

    let out = env.sg_ok(&["poll"]);
    assert!(out.contains("components/hello"), "{out}");
    assert_eq!(env.rev("new^"), new, "one commit on the first stage");
    let text = env.git(&["show", "new:components/hello.yaml"]);
    assert!(text.contains(&format!("commit: {tip}")), "{text}");
    assert_eq!(
        version_of(&env, "new", "components/hello.yaml"),
        format!("main-{}", &tip[..12])
    );
    assert!(
        message(&env, "new").contains(&format!(
            "Stagegate-Reason: upstream hello/main moved to {}",
            &tip[..12]
        )),
        "{}",
        message(&env, "new")
    );
    assert_eq!(trailer(&env, "new", "Stagegate-Poll"), ["components/hello"]);
}

/// A built record of `images/base` at version `version`, built at `built_at`.
fn base_record(version: &str, built_at: &str) -> String {
    format!(
        "item: images/base\nversion: \"{version}\"\n\
         digest: sha256:{zero}\nsize: 1\nlocation: file:///nowhere/{zero}\n\
         build-job: {zero}\nbuilder: someone@somewhere\nbuilt-at: \"{built_at}\"\n",
        zero = "0".repeat(64)
    )
}

#[test]
fn poll_rebuilds_an_image_older_than_its_max_age() {
    let env = poll_repo(&[
        ("images/base.yaml", &base_image("1", "max-age: 7d\n")),
        (
            ".stagegate/built/images/base.yaml",
            &base_record("1", "2000-01-01T00:00:00Z"),
        ),
        // Built just now: not due.
        (
            "images/fresh.yaml",
            "name: fresh\nversion: \"1\"\nmax-age: 7d\nbuild: {run: ./recipes/base.sh, artifact: disk.img}\n",
        ),
        (
            ".stagegate/built/images/fresh.yaml",
            &base_record("1", &stagegate::records::now_rfc3339())
                .replace("images/base", "images/fresh"),
        ),
    ]);
    let (before, since) = (env.rev("staging"), SystemTime::now());

    env.sg_ok(&["poll"]);
    assert_eq!(env.rev("staging^"), before, "one commit: fresh is not due");
    assert_stamped(&version_of(&env, "staging", "images/base.yaml"), "1", since);
    assert_eq!(trailer(&env, "staging", "Stagegate-Poll"), ["images/base"]);
    let reason = trailer(&env, "staging", "Stagegate-Reason");
    assert_eq!(
        reason,
        ["max-age 7days exceeded (built 2000-01-01T00:00:00Z on stable)"]
    );
}

#[test]
fn poll_rebuilds_an_image_already_bumped_earlier_the_same_day() {
    // A max-age shorter than a day: the version poll gave it this morning is taken.
    let stamped = format!("1+r{}", today());
    let env = poll_repo(&[
        ("images/base.yaml", &base_image(&stamped, "max-age: 1s\n")),
        (
            ".stagegate/built/images/base.yaml",
            &base_record(&stamped, "2000-01-01T00:00:00Z"),
        ),
    ]);
    let before = env.rev("staging");

    env.sg_ok(&["poll"]);
    assert_eq!(env.rev("staging^"), before, "one commit");
    let version = version_of(&env, "staging", "images/base.yaml");
    assert_ne!(version, stamped);
    assert!(version.starts_with("1+r"), "{version}");
}

#[test]
fn poll_does_not_rebuild_an_image_whose_rebuild_is_on_its_way() {
    // new -> staging -> stable: stable's build is old, but a rebuild made this morning
    // waits on staging for its tests.
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "new"]);
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [new, staging, stable]\ngates:\n  staging: {require: [build]}\n",
    );
    env.write("recipes/base.sh", BASE_RECIPE);
    env.write("images/base.yaml", &base_image("1", "max-age: 1d\n"));
    env.write(
        ".stagegate/built/images/base.yaml",
        &base_record("1", "2000-01-01T00:00:00Z"),
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "start"]);
    env.git(&["branch", "stable"]);
    env.commit_on(
        "new",
        "rebuilt",
        &[
            (
                "images/base.yaml",
                &base_image("1+r20990101", "max-age: 1d\n"),
            ),
            (
                ".stagegate/built/images/base.yaml",
                &base_record("1+r20990101", &stagegate::records::now_rfc3339()),
            ),
        ],
    );
    env.git(&["branch", "staging"]);
    let new = env.rev("new");

    let out = env.sg_ok(&["poll"]);
    assert_eq!(out.trim(), "poll: nothing new");
    assert_eq!(env.rev("new"), new);
}

#[test]
fn poll_is_idempotent() {
    // A component tracking a branch of a repository of its own.
    let src = TestEnv::new();
    let upstream = src.home().join("tool");
    std::fs::create_dir_all(&upstream).unwrap();
    src.git_in(&upstream, &["init", "-q", "-b", "main"]);
    src.git_in(&upstream, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let pinned = src.git_in(&upstream, &["rev-parse", "HEAD"]);
    let tool = format!(
        "name: tool\nversion: \"1\"\nsource: {{git: {}, commit: {pinned}, track: main}}\n",
        upstream.display()
    );
    let env = poll_repo(&[
        (
            "images/base.yaml",
            &base_image(
                "1",
                "based-on: {component: debian, version: \"1\"}\nwatch: {run: ./watch.sh}\nmax-age: 7d\n",
            ),
        ),
        ("watch.sh", &watch_script("2\\n")),
        (
            ".stagegate/built/images/old.yaml",
            &base_record("1", "2000-01-01T00:00:00Z").replace("images/base", "images/old"),
        ),
        (
            "images/old.yaml",
            "name: old\nversion: \"1\"\nmax-age: 7d\nbuild: {run: ./recipes/base.sh, artifact: disk.img}\n",
        ),
        ("components/tool.yaml", &tool),
    ]);
    src.git_in(&upstream, &["commit", "-q", "--allow-empty", "-m", "two"]);

    let out = env.sg_ok(&["poll"]);
    for item in ["images/base", "images/old", "components/tool"] {
        assert!(out.contains(item), "{out}");
    }
    let bumped = env.rev("staging");

    // Again, with the bumps pending.
    let out = env.sg_ok(&["poll"]);
    assert_eq!(out.trim(), "poll: nothing new");
    assert_eq!(env.rev("staging"), bumped);

    // Again, once they are built and promoted.
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    assert_eq!(
        env.git(&["merge-base", "--is-ancestor", "staging", "stable"]),
        ""
    );
    let out = env.sg_ok(&["poll"]);
    assert_eq!(out.trim(), "poll: nothing new");
    assert_eq!(env.rev("staging"), bumped);
}

#[test]
fn a_derived_image_follows_its_parent_when_poll_bumps_it() {
    let env = poll_repo(&[
        (
            "images/base.yaml",
            &base_image(
                "1",
                "based-on: {component: debian, version: \"1\"}\nwatch: {run: ./watch.sh}\n",
            ),
        ),
        ("watch.sh", &watch_script("2\\n")),
        ("recipes/child.sh", CHILD_RECIPE),
        ("images/child.yaml", &child_image("1")),
    ]);
    let (before, since) = (env.rev("staging"), SystemTime::now());

    env.sg_ok(&["poll"]);
    assert_eq!(env.rev("staging~2"), before, "two commits");
    assert_eq!(
        trailer(&env, "staging~1", "Stagegate-Poll"),
        ["images/base"]
    );
    assert_eq!(trailer(&env, "staging", "Stagegate-Poll"), ["images/child"]);
    assert_eq!(
        trailer(&env, "staging", "Stagegate-Reason"),
        ["its parent images/base changed"]
    );
    assert_stamped(
        &version_of(&env, "staging", "images/child.yaml"),
        "1",
        since,
    );
    // The parent is rebuilt first; the child waits for it, to be built on it.
    assert_eq!(planned(&env, "images/base").len(), 1);
    assert!(planned(&env, "images/child").is_empty());
    let status = env.sg_ok(&["status"]);
    assert!(
        status.contains("images/child is built on images/base, which is pending too: it waits for images/base to move first"),
        "{status}"
    );
}

#[test]
fn a_derived_image_follows_a_parent_bumped_by_hand() {
    let env = poll_repo(&[
        ("images/base.yaml", &base_image("1", "")),
        ("recipes/child.sh", CHILD_RECIPE),
        ("images/child.yaml", &child_image("1")),
    ]);
    let by_hand = env.commit_on(
        "staging",
        "base 2",
        &[("images/base.yaml", &base_image("2", ""))],
    );

    env.sg_ok(&["poll"]);
    assert_eq!(env.rev("staging^"), by_hand, "one commit");
    assert_eq!(trailer(&env, "staging", "Stagegate-Poll"), ["images/child"]);
    let out = env.sg_ok(&["poll"]);
    assert_eq!(out.trim(), "poll: nothing new");
}

#[test]
fn a_derived_image_is_bumped_again_when_its_parent_moves_twice_in_a_day() {
    let stamped = format!("1+r{}", today());
    let env = poll_repo(&[
        ("images/base.yaml", &base_image("1", "")),
        ("recipes/child.sh", CHILD_RECIPE),
        ("images/child.yaml", &child_image(&stamped)),
    ]);
    env.commit_on(
        "staging",
        "base 2",
        &[("images/base.yaml", &base_image("2", ""))],
    );

    env.sg_ok(&["poll"]);
    assert_eq!(trailer(&env, "staging", "Stagegate-Poll"), ["images/child"]);
    assert_ne!(version_of(&env, "staging", "images/child.yaml"), stamped);
}

// --- poll: bad input (DESIGN §8) ---

/// Poll with watches `a-good` (a new release) and `b-broken` running `script`: exit 3, an
/// error naming the broken item, and nothing committed (not even the good bump).
fn poll_fails_on_watch(script: &str) -> String {
    let env = poll_repo(&[
        (
            "components/a-good.yaml",
            "name: a-good\nversion: \"1\"\nwatch: {run: ./watch/good.sh}\n",
        ),
        ("watch/good.sh", &watch_script("2\\n")),
        (
            "components/b-broken.yaml",
            "name: b-broken\nversion: \"1\"\nwatch: {run: ./watch/broken.sh}\n",
        ),
        ("watch/broken.sh", script),
    ]);
    let (staging, stable) = (env.rev("staging"), env.rev("stable"));
    let (_, err) = env.sg_code(3, &["poll"]);
    assert!(err.contains("components/b-broken"), "{err}");
    assert!(!err.contains("a-good"), "{err}");
    assert_eq!(env.rev("staging"), staging, "nothing committed");
    assert_eq!(env.rev("stable"), stable);
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    err
}

#[test]
fn poll_reports_a_failing_watch_command_and_commits_nothing() {
    let err = poll_fails_on_watch("#!/bin/sh\necho 'mirror unreachable' >&2\nexit 4\n");
    assert!(err.contains("exit status 4"), "{err}");
    assert!(err.contains("mirror unreachable"), "{err}");
    assert!(err.contains("./watch/broken.sh"), "{err}");
}

#[test]
fn poll_reports_a_watch_command_that_prints_nothing_and_commits_nothing() {
    let err = poll_fails_on_watch("#!/bin/sh\nexit 0\n");
    assert!(err.contains("printed nothing"), "{err}");
}

#[test]
fn poll_reports_a_watch_command_that_prints_no_version_and_commits_nothing() {
    let err = poll_fails_on_watch("#!/bin/sh\necho 'no releases today'\n");
    assert!(err.contains("not a version"), "{err}");
}

#[test]
fn poll_reports_an_unreachable_tracked_repository_and_commits_nothing() {
    let tool = format!(
        "name: tool\nversion: \"1\"\nsource: {{git: ./upstream/gone.git, commit: {}, track: main}}\n",
        "0".repeat(40)
    );
    let env = poll_repo(&[("components/tool.yaml", &tool)]);
    let staging = env.rev("staging");

    let (_, err) = env.sg_code(3, &["poll"]);
    assert!(err.contains("components/tool"), "{err}");
    assert!(err.contains("gone.git"), "{err}");
    assert_eq!(env.rev("staging"), staging, "nothing committed");
}

// --- the component push gate ---

#[test]
fn the_push_gate_fast_forwards_the_component_repository_to_the_tested_commit() {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    let tip = upstream_commit(&env, "main", "hello.sh", "echo \"hello, again\"");
    assert_ne!(upstream_rev(&env, "master"), tip);

    env.sg_ok(&["cycle"]);
    let text = env.git(&["show", "stable:components/hello.yaml"]);
    assert!(
        text.contains(&tip),
        "the tested commit is on stable: {text}"
    );
    assert_eq!(upstream_rev(&env, "master"), tip);
    assert_eq!(
        trailer(&env, "stable", "Stagegate-Pushed"),
        [format!("components/hello hello/master {tip}")]
    );
    let last = decision_of(&env, "stable", "stable");
    assert_eq!(last.pushed.len(), 1, "{last:#?}");
    assert!(last.pushed[0].pushed);
    assert_eq!(last.pushed[0].commit, tip);
}

#[test]
fn the_push_gate_refuses_a_non_fast_forward_and_records_why() {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    // master moves on its own: the tested commit is no longer a fast-forward of it.
    let diverged = upstream_commit(&env, "master", "NOTES", "a fix made on master only");
    let tip = upstream_commit(&env, "main", "hello.sh", "echo \"hello, again\"");

    let out = env.sg_ok(&["cycle"]);
    assert!(out.contains("refused"), "{out}");
    assert_eq!(upstream_rev(&env, "master"), diverged, "never forced");
    assert_eq!(upstream_rev(&env, "main"), tip);
    let text = env.git(&["show", "stable:components/hello.yaml"]);
    assert!(text.contains(&tip), "promoted all the same: {text}");
    assert_eq!(
        trailer(&env, "stable", "Stagegate-Pushed"),
        Vec::<String>::new()
    );
    assert_eq!(
        trailer(&env, "stable", "Stagegate-Push-Refused"),
        [format!("components/hello hello/master {tip}")]
    );
    let last = decision_of(&env, "stable", "stable");
    assert_eq!(last.pushed.len(), 1, "{last:#?}");
    let push = &last.pushed[0];
    assert!(!push.pushed);
    assert_eq!(push.commit, tip);
    assert!(
        push.message.contains("not a fast-forward"),
        "{}",
        push.message
    );
}

#[test]
fn cycle_still_promotes_what_is_pending_when_a_watch_is_broken() {
    let env = poll_repo(&[
        ("components/c.yaml", "name: c\nversion: \"1\"\n"),
        (
            "components/b-broken.yaml",
            "name: b-broken\nversion: \"1\"\nwatch: {run: ./watch/broken.sh}\n",
        ),
        ("watch/broken.sh", "#!/bin/sh\nexit 4\n"),
    ]);
    env.commit_on(
        "staging",
        "Bump c",
        &[("components/c.yaml", "name: c\nversion: \"2\"\n")],
    );
    let (out, err) = env.sg_code(3, &["cycle"]);
    assert!(
        err.contains("poll failed; running and promoting what is pending anyway"),
        "{err}"
    );
    assert!(err.contains("components/b-broken"), "{err}");
    assert!(out.contains("staging → stable: promoted"), "{out}");
    assert_eq!(
        env.git(&["show", "stable:components/c.yaml"]),
        "name: c\nversion: \"2\""
    );
}

#[test]
fn max_age_fires_while_the_watch_reports_a_version_that_was_dropped() {
    let env = poll_repo(&[
        (
            "images/base.yaml",
            &base_image(
                "1",
                "based-on: {component: debian, version: \"1\"}\nwatch: {run: ./watch.sh}\nmax-age: 7d\n",
            ),
        ),
        ("watch.sh", &watch_script("2\\n")),
        (
            ".stagegate/built/images/base.yaml",
            &base_record("1", "2000-01-01T00:00:00Z"),
        ),
        ("recipes/child.sh", CHILD_RECIPE),
        ("images/child.yaml", &child_image("1")),
    ]);
    // The watch proposes debian 2; it is dropped.
    env.sg_ok(&["poll"]);
    assert_ne!(version_of(&env, "staging", "images/base.yaml"), "1");
    env.sg_ok(&[
        "drop",
        "images/base",
        "--reason",
        "debian 2 breaks the boot",
    ]);
    env.sg_ok(&["drop", "images/child", "--reason", "it followed debian 2"]);
    assert_eq!(version_of(&env, "staging", "images/base.yaml"), "1");
    // The watch still reports debian 2, which is never proposed again: the age check is
    // not shadowed by it, and the image is rebuilt as max-age says.
    let since = SystemTime::now();
    let out = env.sg_ok(&["poll"]);
    assert!(out.contains("max-age"), "{out}");
    assert_stamped(&version_of(&env, "staging", "images/base.yaml"), "1", since);
    let reasons: Vec<String> = ["staging", "staging~1"]
        .iter()
        .flat_map(|r| trailer(&env, r, "Stagegate-Reason"))
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r == "max-age 7days exceeded (built 2000-01-01T00:00:00Z on stable)"),
        "{reasons:?}"
    );
}

#[test]
fn a_derived_image_is_not_bumped_for_a_parent_version_that_was_dropped() {
    let env = poll_repo(&[
        (
            "images/base.yaml",
            &base_image(
                "1",
                "based-on: {component: debian, version: \"1\"}\nwatch: {run: ./watch.sh}\n",
            ),
        ),
        ("watch.sh", &watch_script("2\\n")),
        ("recipes/child.sh", CHILD_RECIPE),
        ("images/child.yaml", &child_image("1")),
    ]);
    env.sg_ok(&["poll"]);
    env.sg_ok(&[
        "drop",
        "images/base",
        "--reason",
        "debian 2 breaks the boot",
    ]);
    env.sg_ok(&["drop", "images/child", "--reason", "it followed debian 2"]);
    let head = env.rev("staging");
    // A day later the watch still reports debian 2, never proposed again: the child follows
    // nothing (a bump of the child today would be refused as the dropped one anyway).
    let tomorrow = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let out = env
        .sg_cmd(&["poll"])
        .env("STAGEGATE_NOW", tomorrow.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.trim(), "poll: nothing new", "{out}");
    assert_eq!(env.rev("staging"), head);
    assert_eq!(version_of(&env, "staging", "images/child.yaml"), "1");
}
