//! The shared store: artifacts and full logs in a real OCI registry (Debian's
//! `docker-registry` on 127.0.0.1), reached by several runners on clones of one remote.

use std::path::PathBuf;

use crate::common::TestEnv;
use crate::registry::Registry;

/// A two-stage pipeline whose `images/disk` build writes a small disk file and whose test
/// checks it, with `store` as the artifact store (empty: the default, in `.git`);
/// `images/disk` bumped on staging.
fn pipeline(store: &str) -> TestEnv {
    let env = TestEnv::init_with(&[
        (
            "images/disk.yaml",
            "name: disk\nversion: \"1\"\nbuild:\n  run: ./build.sh\n  artifact: disk.img\n  lock: disk.lock\n",
        ),
        (
            "build.sh",
            "#!/bin/sh\necho \"building disk $STAGEGATE_VERSION\"\necho \"disk $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\necho \"pkg 1\" > \"$STAGEGATE_OUT/disk.lock\"\n",
        ),
        (
            "tests/boots.yaml",
            "name: boots\nuses: [images/disk]\nrun: ./boots.sh\n",
        ),
        (
            "boots.sh",
            "#!/bin/sh\necho \"testing $STAGEGATE_IMAGE_DISK_DIGEST\"\ngrep -q \"disk $STAGEGATE_IMAGE_DISK_VERSION\" \"$STAGEGATE_IMAGE_DISK_ARTIFACT\"\n",
        ),
    ]);
    env.commit_on(
        "staging",
        "Use a shared store",
        &[(
            "stagegate.yaml",
            &format!(
                "version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [build, test]}}\n{}",
                if store.is_empty() {
                    String::new()
                } else {
                    format!("artifacts: {{store: \"{store}\"}}\n")
                }
            ),
        )],
    );
    env.git(&["branch", "-f", "stable", "staging"]);
    env.edit("images/disk.yaml", "\"1\"", "\"2\"");
    env.git(&["commit", "-qam", "Bump disk", "--no-verify"]);
    env
}

/// The keys of the build and the test; `global` goes before `plan` (e.g. `--remote`).
fn job_keys(env: &TestEnv, global: &[&str]) -> (String, String) {
    let mut args = global.to_vec();
    args.extend(["plan", "--format", "json"]);
    let plan = env.json(&args);
    let jobs = plan[0]["jobs"].as_array().unwrap();
    let key = |kind: &str| {
        jobs.iter()
            .find(|j| j["kind"] == kind)
            .unwrap_or_else(|| panic!("a {kind} job in {plan:#}"))["key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    (key("build"), key("test"))
}

fn cache(env: &TestEnv) -> PathBuf {
    env.repo.join(".git/stagegate/artifacts/sha256")
}

#[test]
fn runners_share_artifacts_and_logs_through_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else {
        return;
    };
    let env = pipeline(&registry.store("team/pipeline"));
    let origin = env.bare_clone("origin.git");
    let (a, b, c) = (
        env.clone_of(&origin, "a"),
        env.clone_of(&origin, "b"),
        env.clone_of(&origin, "c"),
    );
    let (build, test) = job_keys(&a, &["--remote", "origin"]);

    // Runner A builds; its artifact and log go to the registry, its result to origin.
    a.sg_ok(&["--remote", "origin", "run", "--job", &build, "--push"]);
    // Runner B has nothing local: it tests with A's artifact, pulled from the registry.
    let ran = b.json(&["--remote", "origin", "run", "--push", "--format", "json"]);
    let keys: Vec<&str> = ran["ran"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [test.as_str()],
        "B ran the test only, never the build"
    );
    assert_eq!(ran["ran"][0]["verdict"], "pass", "{ran:#}");
    assert!(
        std::fs::read_dir(cache(&b)).unwrap().count() >= 1,
        "B pulled the artifact into its cache"
    );

    // Runner C promotes and reads A's build log, which never was on C's machine.
    c.sg_ok(&["--remote", "origin", "promote", "--push"]);
    let record = c.git(&["show", "origin/stable:.stagegate/built/images/disk.yaml"]);
    assert!(
        record.contains(&format!("oci://{}/team/pipeline@sha256:", registry.addr)),
        "{record}"
    );
    // In the registry it is an OCI artifact tagged sg-<hex>, saying what it is.
    let digest = record
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .expect("a digest in the record");
    if let Some(curl) = crate::common::require_tool("curl") {
        let out = std::process::Command::new(curl)
            .args([
                "-sSf",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!(
                "http://{}/v2/team/pipeline/manifests/sg-{}",
                registry.addr,
                digest.trim_start_matches("sha256:")
            ))
            .output()
            .unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(
            manifest["artifactType"],
            "application/vnd.stagegate.artifact.v1"
        );
        assert_eq!(manifest["layers"][0]["digest"], digest);
        let notes = &manifest["annotations"];
        assert_eq!(notes["dev.stagegate.item"], "images/disk", "{manifest:#}");
        assert_eq!(notes["dev.stagegate.version"], "2", "{manifest:#}");
        assert_eq!(notes["dev.stagegate.lock"], "pkg 1\n", "{manifest:#}");
        assert_eq!(notes["dev.stagegate.build-job"], build.as_str());
    }
    let log = c.sg_ok(&["--remote", "origin", "log-of", &build[..8]]);
    assert!(log.contains("building disk 2"), "{log}");
    let log = c.sg_ok(&["--remote", "origin", "log-of", &test]);
    assert!(log.contains("testing sha256:"), "{log}");
    let results = c.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    assert_eq!(
        results.lines().filter(|l| l.contains(&build)).count(),
        1,
        "built once: {results}"
    );
}

#[test]
fn store_put_and_get_round_trip_through_a_registry_and_a_corrupt_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else {
        return;
    };
    let env = pipeline(&registry.store("round/trip"));
    let file = env.home().join("payload.bin");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();
    let put = env.json(&["store", "put", file.to_str().unwrap(), "--format", "json"]);
    let digest = put["digest"].as_str().unwrap().to_string();
    assert_eq!(put["size"], 3_000_000);
    assert_eq!(
        put["location"],
        format!("{}@{digest}", registry.store("round/trip"))
    );

    std::fs::remove_dir_all(cache(&env)).unwrap();
    let out = env.home().join("back.bin");
    env.sg_ok(&["store", "get", &digest, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), payload);

    // Damage the registry's copy: a pull verifies, and refuses it.
    std::fs::remove_dir_all(cache(&env)).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let blob = dir.path().join(format!(
        "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bad = payload.clone();
    bad[1000] ^= 1;
    std::fs::write(&blob, bad).unwrap();
    let (_, err) = env.sg_code(3, &["store", "get", &digest]);
    assert!(err.contains(&digest), "{err}");
    assert!(
        !cache(&env).join(hex).exists(),
        "nothing unverified is kept"
    );
}

#[test]
fn a_registry_that_cannot_be_reached_makes_a_build_an_error_not_a_fail() {
    // Port 1 on 127.0.0.1: nothing listens there.
    let env = pipeline("oci://127.0.0.1:1/team/pipeline");
    let (build, _) = job_keys(&env, &[]);
    let (out, _) = env.sg_code(3, &["run", "--job", &build]);
    assert!(out.contains("error"), "{out}");
    assert!(out.contains("127.0.0.1:1/team/pipeline"), "{out}");
    let status = env.json(&["plan", "--format", "json"]);
    let job = status[0]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == build.as_str())
        .unwrap()
        .clone();
    assert_eq!(job["result"], "error", "{job:#}");
}

#[test]
fn check_names_the_line_of_a_malformed_store_url() {
    let env = pipeline("oci://registry.example");
    let (_, err) = env.sg_code(1, &["check", "staging"]);
    assert!(err.contains("stagegate.yaml:5"), "{err}");
    assert!(err.contains("the repository is missing"), "{err}");
    let env = pipeline("s3://bucket/path");
    let (_, err) = env.sg_code(1, &["check", "staging"]);
    assert!(err.contains("the s3:// scheme is not supported"), "{err}");
}

#[test]
fn an_artifact_copied_from_another_directory_is_verified_before_use() {
    // Two runners on one machine, each with the default store in its own `.git`: B copies
    // A's artifact from where A's record says it is, and refuses it when it was damaged.
    let env = pipeline("");
    let origin = env.bare_clone("origin.git");
    let (a, b) = (env.clone_of(&origin, "a"), env.clone_of(&origin, "b"));
    let (build, test) = job_keys(&a, &["--remote", "origin"]);
    a.sg_ok(&["--remote", "origin", "run", "--job", &build]);
    let stored: Vec<_> = std::fs::read_dir(cache(&a))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let artifact = stored
        .iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("disk 2")))
        .expect("A stored the disk");
    let mut perms = std::fs::metadata(artifact).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(artifact, perms).unwrap();
    std::fs::write(artifact, "disk 2, damaged\n").unwrap();

    let (out, _) = b.sg_code(3, &["--remote", "origin", "run", "--job", &test]);
    assert!(out.contains("corrupt"), "{out}");
    assert!(
        !cache(&b).join(artifact.file_name().unwrap()).exists(),
        "nothing unverified is kept under the digest"
    );
}

#[test]
fn a_registry_that_needs_credentials_gets_them_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start_with_users(dir.path(), &[("ci", "s3cret")]) else {
        return;
    };
    let env = pipeline(&registry.store("private/store"));
    let file = env.home().join("payload.bin");
    std::fs::write(&file, "payload\n").unwrap();
    let put = ["store", "put", file.to_str().unwrap()];

    let (_, err) = env.sg_code(3, &put);
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );
    assert!(
        err.contains("STAGEGATE_OCI_USERNAME"),
        "the help names the variables: {err}"
    );

    let out = env
        .sg_cmd(&put)
        .env("STAGEGATE_OCI_USERNAME", "ci")
        .env("STAGEGATE_OCI_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a wrong password is refused");

    let out = env
        .sg_cmd(&put)
        .env("STAGEGATE_OCI_USERNAME", "ci")
        .env("STAGEGATE_OCI_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&registry.store("private/store")),
        "{stdout}"
    );
}

/// A pipeline like [`pipeline`] (default store) whose build and test note, in `$HOME`, the
/// inode of the file the recipe wrote and of the image the test was given.
fn noting_inodes() -> TestEnv {
    let env = pipeline("");
    // On both stages, before the bump: a test runs as the target stage defines it.
    env.git(&["reset", "-q", "--hard", "HEAD~1"]);
    env.write(
        "build.sh",
        "#!/bin/sh\necho \"disk $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\necho \"pkg 1\" > \"$STAGEGATE_OUT/disk.lock\"\nstat -c %i \"$STAGEGATE_OUT/disk.img\" > \"$HOME/built.ino\"\n",
    );
    env.write(
        "boots.sh",
        "#!/bin/sh\ngrep -q \"disk $STAGEGATE_IMAGE_DISK_VERSION\" \"$STAGEGATE_IMAGE_DISK_ARTIFACT\"\nstat -c %i \"$STAGEGATE_IMAGE_DISK_ARTIFACT\" > \"$HOME/used.ino\"\n",
    );
    env.git(&["commit", "-qam", "Note inodes", "--no-verify"]);
    env.git(&["branch", "-f", "stable", "staging"]);
    env.edit("images/disk.yaml", "\"1\"", "\"2\"");
    env.git(&["commit", "-qam", "Bump disk", "--no-verify"]);
    env
}

fn inode_in(env: &TestEnv, name: &str) -> u64 {
    std::fs::read_to_string(env.home().join(name))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_build_artifact_is_moved_into_the_store_not_copied() {
    use std::os::unix::fs::MetadataExt;
    let env = noting_inodes();
    let (build, _) = job_keys(&env, &[]);
    env.sg_ok(&["run", "--job", &build]);
    let blob = std::fs::read_dir(cache(&env))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t == "disk 2\n"))
        .expect("the disk is stored");
    let meta = std::fs::metadata(&blob).unwrap();
    // The scratch directory and `.git` share the test's file system: a rename, no copy.
    assert_eq!(
        meta.ino(),
        inode_in(&env, "built.ino"),
        "same inode as written"
    );
    assert_eq!(meta.nlink(), 1, "moved, not linked: nothing else holds it");
    assert_eq!(meta.mode() & 0o777, 0o444, "stored read-only");
    let hex = blob.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        hex,
        format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"disk 2\n")),
        "named by the digest of what the recipe wrote"
    );
}

#[test]
fn a_test_uses_the_stored_image_itself_not_a_copy() {
    use std::os::unix::fs::MetadataExt;
    let env = noting_inodes();
    let ran = env.sg_ok(&["run"]);
    assert!(ran.contains("ran 2 jobs: 2 pass"), "{ran}");
    let used = inode_in(&env, "used.ino");
    let blob = std::fs::read_dir(cache(&env))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t == "disk 2\n"))
        .expect("the disk is stored");
    assert_eq!(std::fs::metadata(&blob).unwrap().ino(), used);
    assert_eq!(
        used,
        inode_in(&env, "built.ino"),
        "one inode from build to test"
    );
}

#[test]
fn store_put_leaves_the_users_file_where_it_was() {
    use std::os::unix::fs::MetadataExt;
    let env = pipeline("");
    let file = env.home().join("mine.bin");
    std::fs::write(&file, "my bytes\n").unwrap();
    let before = std::fs::metadata(&file).unwrap();
    let out = env.sg_ok(&["store", "put", file.to_str().unwrap()]);
    let hex = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(b"my bytes\n")
    );
    assert!(out.starts_with(&format!("sha256:{hex} 9 ")), "{out}");
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "my bytes\n");
    assert_eq!(
        (after.ino(), after.nlink(), after.mode()),
        (before.ino(), before.nlink(), before.mode()),
        "neither moved, linked nor made read-only"
    );
    let blob = cache(&env).join(&hex);
    assert_ne!(std::fs::metadata(&blob).unwrap().ino(), after.ino());
    assert_eq!(std::fs::read_to_string(&blob).unwrap(), "my bytes\n");
}
