//! The Debian example (`init --example debian`) and package-lock changes in `why`/`diff`.
//!
//! The lock tests use small repositories whose recipe copies a package list into its lock
//! file. The end-to-end test builds a real Debian image with mmdebstrap, boots it under
//! QEMU, and rebuilds it offline from the package cache stored beside it. The runner's
//! download cache lives under the cargo target directory, so only the first run of the
//! suite on a machine downloads packages. The boot tests' verdicts on a runner whose KVM or
//! emulator is broken are shown in seconds, without root, on the example with stand-in
//! builds (a disk whose kernel QEMU refuses), and end to end by the real thing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use stagegate::ledger::Verdict;

use crate::common::TestEnv;
use crate::test_images::{built, results_of};

/// Two stages; entering stable needs every changed image built.
const BUILD_PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [build]}\n";

/// A recipe whose lock is the package list committed beside it.
const LOCK_RECIPE: &str = "#!/bin/sh\nset -eu\n\
    echo \"host $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\n\
    cp recipes/packages.txt \"$STAGEGATE_OUT/packages.lock\"\n";

fn host_image(version: &str) -> String {
    format!(
        "name: host\nversion: \"{version}\"\n\
         build: {{run: ./recipes/host.sh, artifact: disk.img, lock: packages.lock, files: [recipes/packages.txt]}}\n"
    )
}

const OLD_LOCK: &str = "# NAME VERSION ARCH SHA256\n\
    bash 5.2.15-2+b7 amd64 aaaa\n\
    libc6 2.36-9+deb12u8 amd64 bbbb\n\
    linux-image-6.1.0-27-amd64 6.1.115-1 amd64 cccc\n\
    sed 4.9-1 amd64 dddd\n";

const NEW_LOCK: &str = "# NAME VERSION ARCH SHA256\n\
    bash 5.2.15-2+b7 amd64 aaaa\n\
    libc6 2.36-9+deb12u10 amd64 b2b2\n\
    linux-image-6.1.0-28-amd64 6.1.119-1 amd64 c2c2\n\
    sed 4.9-1 amd64 dddd\n";

/// `host` 1 built from OLD_LOCK and promoted to stable, then version 2 with `lock`
/// committed on staging and built.
fn rebuilt_with(lock: &str) -> TestEnv {
    let env = TestEnv::init_with(&[("stagegate.yaml", BUILD_PIPELINE)]);
    env.commit_on(
        "staging",
        "host 1",
        &[
            ("images/host.yaml", &host_image("1")),
            ("recipes/host.sh", LOCK_RECIPE),
            ("recipes/packages.txt", OLD_LOCK),
        ],
    );
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    env.commit_on(
        "staging",
        "host 2: a point release",
        &[
            ("images/host.yaml", &host_image("2")),
            ("recipes/packages.txt", lock),
        ],
    );
    env.sg_ok(&["run"]);
    env
}

#[test]
fn why_lists_the_packages_a_rebuilt_image_upgraded_added_and_removed() {
    let env = rebuilt_with(NEW_LOCK);
    let out = env.sg_ok(&["why", "images/host"]);
    assert!(
        out.contains("packages of images/host 2 (build ")
            && out.contains(") vs 1 (stable): 1 upgraded, 1 added, 1 removed (2 unchanged)"),
        "{out}"
    );
    for line in [
        "^ libc6:amd64 2.36-9+deb12u8 -> 2.36-9+deb12u10",
        "+ linux-image-6.1.0-28-amd64:amd64 6.1.119-1",
        "- linux-image-6.1.0-27-amd64:amd64 6.1.115-1",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(
        !out.contains("bash"),
        "unchanged packages are not listed\n{out}"
    );

    let json = env.json(&["why", "images/host", "--format", "json"]);
    let p = &json["pending"][0]["packages"];
    assert_eq!(p["item"], "images/host");
    assert_eq!(p["old"]["from"], "stable");
    assert_eq!(p["old"]["version"], "1");
    assert_eq!(p["new"]["version"], "2");
    assert_eq!(p["changes"]["upgraded"][0]["name"], "libc6");
    assert_eq!(p["changes"]["upgraded"][0]["from"], "2.36-9+deb12u8");
    assert_eq!(p["changes"]["upgraded"][0]["to"], "2.36-9+deb12u10");
    assert_eq!(
        p["changes"]["added"][0]["name"],
        "linux-image-6.1.0-28-amd64"
    );
    assert_eq!(p["changes"]["unchanged"], 2);
}

#[test]
fn why_shows_a_rebuild_to_an_older_package_set_as_a_downgrade() {
    let env = rebuilt_with(&OLD_LOCK.replace("sed 4.9-1", "sed 4.8-1"));
    let out = env.sg_ok(&["why", "images/host"]);
    assert!(out.contains("1 downgraded"), "{out}");
    assert!(out.contains("v sed:amd64 4.9-1 -> 4.8-1"), "{out}");
}

#[test]
fn why_says_the_packages_are_the_same_when_only_lock_comments_differ() {
    let env = rebuilt_with(&OLD_LOCK.replace("# NAME", "# rebuilt offline\n# NAME"));
    let out = env.sg_ok(&["why", "images/host"]);
    assert!(out.contains("vs 1 (stable): the same 4 packages"), "{out}");
}

#[test]
fn why_names_the_line_of_a_lock_it_cannot_compare() {
    let env = rebuilt_with(&format!("{OLD_LOCK}gcc 12 amd64 eeee extra-field\n"));
    let out = env.sg_ok(&["why", "images/host"]);
    assert!(
        out.contains("a lock cannot be compared: line 6: 5 fields; a lock line is NAME [VERSION [ARCH [SHA256]]]"),
        "{out}"
    );
}

#[test]
fn diff_shows_the_package_changes_between_two_builds_of_an_image() {
    let env = rebuilt_with(NEW_LOCK);
    let before = env.rev("stable");
    env.sg_ok(&["promote"]);
    let out = env.sg_ok(&["diff", &before, "stable"]);
    assert!(out.contains("+version: \"2\""), "the manifest diff\n{out}");
    assert!(
        out.contains(&format!(
            "packages of images/host 2 (stable) vs 1 ({before}): 1 upgraded, 1 added, 1 removed (2 unchanged)"
        )),
        "{out}"
    );
    assert!(
        out.contains("^ libc6:amd64 2.36-9+deb12u8 -> 2.36-9+deb12u10"),
        "{out}"
    );
    let json = env.json(&["diff", &before, "stable", "--format", "json"]);
    let host = json
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "images/host.yaml")
        .expect("the image's entry");
    assert_eq!(
        host["packages"]["changes"]["removed"][0]["version"],
        "6.1.115-1"
    );
    // Stages that hold the same build show no package changes.
    let same = env.json(&["diff", "stable", "staging", "--format", "json"]);
    assert_eq!(same, serde_json::json!([]));
}

#[test]
fn init_example_debian_scaffolds_a_valid_pipeline_and_quick_stays_the_default() {
    let env = TestEnv::new();
    let out = env.sg_ok(&["init", "--example", "debian", env.repo.to_str().unwrap()]);
    assert!(out.contains("Initialized a state repository"), "{out}");
    env.sg_ok(&["check"]);
    for path in [
        "images/debian-host.yaml",
        "images/debian-guest.yaml",
        "recipes/debian-host.sh",
        "recipes/debian-guest.sh",
        "recipes/stagegate-init",
        "tests/host-boots.yaml",
        "tests/guest-boots.yaml",
        "tests/boot.sh",
        "watch/debian-point-release.sh",
    ] {
        assert!(env.repo.join(path).is_file(), "{path} is missing");
    }
    let host = env.read("images/debian-host.yaml");
    assert!(host.contains("max-age: 7d"), "{host}");
    assert!(
        host.contains("watch: {run: ./watch/debian-point-release.sh}"),
        "{host}"
    );
    let msg = env.git(&["log", "-1", "--format=%B", "new"]);
    assert!(msg.contains("mmdebstrap"), "{msg}");

    let quick = TestEnv::new();
    quick.sg_ok(&["init", quick.repo.to_str().unwrap(), "--example"]);
    assert!(quick.repo.join("recipes/host.sh").is_file());
    assert!(!quick.repo.join("recipes/debian-host.sh").exists());

    let (_, err) = env.sg_code(2, &["init", "--example", "gentoo", "elsewhere"]);
    assert!(err.contains("quick") && err.contains("debian"), "{err}");
}

/// A fake mirror with one Release file saying `version`.
fn fake_mirror(dir: &Path, version: &str) -> String {
    let dists = dir.join("dists/bookworm");
    std::fs::create_dir_all(&dists).unwrap();
    std::fs::write(
        dists.join("Release"),
        format!("Origin: Debian\nSuite: oldstable\nVersion: {version}\nCodename: bookworm\n"),
    )
    .unwrap();
    format!("file://{}", dir.display())
}

#[test]
fn a_new_debian_point_release_on_the_mirror_becomes_a_candidate_image() {
    if !crate::common::require_tools(&["curl"]) {
        return;
    }
    let env = TestEnv::new();
    env.sg_ok(&["init", "--example", "debian", env.repo.to_str().unwrap()]);
    // The example starts pending on new; settle it so that poll looks at it afresh.
    for stage in ["staging", "stable"] {
        env.git(&["update-ref", &format!("refs/heads/{stage}"), "new"]);
    }
    let mirror = fake_mirror(&env.home().join("mirror"), "12.99");
    let out = env
        .sg_cmd(&["poll"])
        .env("STAGEGATE_DEBIAN_MIRROR", &mirror)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host = env.git(&["show", "new:images/debian-host.yaml"]);
    assert!(
        host.contains("based-on: {component: debian, version: \"12.99\"}"),
        "{host}"
    );
    assert!(host.contains("version: \"12.99-"), "{host}");
    let guest = env.git(&["show", "new:images/debian-guest.yaml"]);
    assert!(
        !guest.contains("version: \"12.15-1\""),
        "the derived guest is bumped too\n{guest}"
    );

    // Settled, with the mirror still at that point release: nothing new to commit.
    for stage in ["staging", "stable"] {
        env.git(&["update-ref", &format!("refs/heads/{stage}"), "new"]);
    }
    let head = env.rev("new");
    let again = env
        .sg_cmd(&["poll"])
        .env("STAGEGATE_DEBIAN_MIRROR", &mirror)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(env.rev("new"), head, "no newer point release, no commit");
}

/// Whether this machine can build the Debian example: `tools` are installed and this is
/// root (mmdebstrap's root mode). Under CI (`.ci/run` runs as root and installs them)
/// either missing fails the test instead of skipping it.
fn can_build_debian(tools: &[&str]) -> bool {
    if !crate::common::require_tools(tools) {
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !crate::common::in_ci(),
            "the Debian example builds as root (mmdebstrap root mode), and CI is set"
        );
        eprintln!("NOTICE: skipped: the Debian example builds as root");
        return false;
    }
    true
}

#[test]
fn an_offline_build_without_a_package_cache_is_an_error_not_a_failure() {
    let Some(env) = debian_example() else {
        return;
    };
    env.edit(
        "images/debian-host.yaml",
        "run: ./recipes/debian-host.sh",
        "run: ./recipes/debian-host.sh --offline",
    );
    // One pending commit: the example itself, offline.
    env.git(&[
        "commit",
        "-q",
        "--no-verify",
        "--amend",
        "-am",
        "The example, offline",
    ]);
    // Nothing is on staging yet: no build record, so no package cache to build from.
    let excerpt = host_build_error(&env, None);
    assert!(
        excerpt.contains(
            "debian-host 12.15-1: --offline, and no package set is cached for debian-host"
        ) && excerpt.contains("build it once with the mirror reachable"),
        "{excerpt}"
    );
}

/// Run the example's host build with the mirror `mirror` (when given); it must end in an
/// `error`, whose excerpt is returned.
fn host_build_error(env: &TestEnv, mirror: Option<&str>) -> String {
    // `--failed`: a build that errored a moment ago waits for its backoff otherwise.
    let mut cmd = env.sg_cmd(&["run", "--failed"]);
    if let Some(m) = mirror {
        cmd.env("STAGEGATE_DEBIAN_MIRROR", m);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let build = results_of(env, "images/debian-host");
    assert_eq!(build.len(), 1, "{build:#?}");
    assert_eq!(build[0].verdict, Verdict::Error, "{:#?}", build[0]);
    build[0].excerpt.clone()
}

/// The example, pending on new, when this machine can build it (else `None`).
fn debian_example() -> Option<TestEnv> {
    if !can_build_debian(&["mmdebstrap", "apt-ftparchive", "mke2fs", "qemu-img", "curl"]) {
        return None;
    }
    let env = TestEnv::new();
    env.sg_ok(&["init", "--example", "debian", env.repo.to_str().unwrap()]);
    Some(env)
}

#[test]
fn a_debian_build_falls_back_to_the_package_cache_when_the_mirror_has_moved_on() {
    let Some(env) = debian_example() else {
        return;
    };
    // The image is based on 12.15; the mirror serves 12.99 and can no longer give 12.15's
    // packages. Without a cache on staging, that is an error saying so.
    let mirror = fake_mirror(&env.home().join("mirror"), "12.99");
    let excerpt = host_build_error(&env, Some(&mirror));
    assert!(
        excerpt.contains(&format!(
            "debian-host 12.15-1: the mirror {mirror} has moved on: it serves Debian 12.99, this image is based on 12.15, and no package set is cached for debian-host"
        )),
        "{excerpt}"
    );
}

#[test]
fn a_debian_build_falls_back_to_the_package_cache_when_the_mirror_is_unreachable() {
    let Some(env) = debian_example() else {
        return;
    };
    let excerpt = host_build_error(&env, Some("http://127.0.0.1:9/debian"));
    assert!(
        excerpt
            .contains("debian-host 12.15-1: the mirror http://127.0.0.1:9/debian is unreachable (")
            && excerpt.contains("and no package set is cached for debian-host"),
        "{excerpt}"
    );
}

/// A stand-in for the host build: no packages, no root, seconds. Its `/boot` holds a
/// "kernel" QEMU refuses to load, so a boot that gets as far as the emulator ends at once,
/// with QEMU's status 1: the image's failure.
const STAND_IN_HOST: &str = r##"#!/bin/sh
set -eu
export PATH="$PATH:/usr/sbin:/sbin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/boot"
echo "not a kernel" > "$work/root/boot/vmlinuz-6.1.0-0-stand-in"
echo "not an initramfs" > "$work/root/boot/initrd.img-6.1.0-0-stand-in"
mke2fs -q -F -t ext4 -d "$work/root" "$work/root.raw" 8M
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$STAGEGATE_OUT/disk.qcow2"
echo "# a stand-in: no packages" > "$STAGEGATE_OUT/packages.lock"
tar -cf "$STAGEGATE_OUT/packages.tar" -C "$work/root" boot
"##;

/// A stand-in for the guest build: the host's disk as it is.
const STAND_IN_GUEST: &str = "#!/bin/sh\nset -eu\n\
    cp \"$STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT\" \"$STAGEGATE_OUT/disk.qcow2\"\n\
    echo '# a stand-in: no packages' > \"$STAGEGATE_OUT/packages.lock\"\n";

/// The Debian example with stand-in builds, promoted to staging: its boot tests, which run
/// next, are the example's own (`tests/boot.sh`). `None` when this machine lacks the tools.
fn stand_in_example() -> Option<TestEnv> {
    if !crate::common::require_tools(&["mke2fs", "debugfs", "qemu-img", "qemu-system-x86_64"]) {
        return None;
    }
    let env = TestEnv::new();
    env.sg_ok(&["init", "--example", "debian", env.repo.to_str().unwrap()]);
    env.write("recipes/debian-host.sh", STAND_IN_HOST);
    env.write("recipes/debian-guest.sh", STAND_IN_GUEST);
    env.git(&["add", "-A"]);
    // One pending commit: the example itself, with stand-in builds.
    env.git(&[
        "commit",
        "-q",
        "--no-verify",
        "--amend",
        "-m",
        "The example, stand-in builds",
    ]);
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    // Panics unless the stand-in host reached staging, built.
    built(&env, "staging", "debian-host");
    Some(env)
}

/// A directory of links to every program on this PATH (and in /usr/sbin, /sbin) but
/// `left_out`: a PATH on which exactly those are missing.
fn path_without(dir: &Path, left_out: &[&str]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let link = dir.join(&name);
            if left_out.iter().any(|l| name == *l) || link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(e.path(), link).unwrap();
        }
    }
    dir.display().to_string()
}

/// An executable `qemu-system-x86_64` in `dir` running `script`; `$QEMU` in it is the real
/// emulator. Returns `dir` followed by `rest`, a PATH.
fn fake_qemu(dir: &Path, script: &str, rest: &str) -> String {
    let real = crate::common::which("qemu-system-x86_64").expect("qemu-system-x86_64");
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("qemu-system-x86_64");
    let text = script.replace("$QEMU", &real.display().to_string());
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("{}:{rest}", dir.display())
}

/// This PATH, with the directories where Debian keeps `mke2fs` and `debugfs`.
fn system_path() -> String {
    format!(
        "/usr/sbin:/sbin:{}",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Run the example's `tests/host-boots.sh` from the work tree as its job would, booting the
/// host image that `rev`'s build record names, with `path` and the extra `vars`.
fn boot_host(env: &TestEnv, rev: &str, path: &str, vars: &[(&str, &str)]) -> Output {
    let host = built(env, rev, "debian-host");
    let mut cmd = Command::new("/bin/sh");
    crate::common::base_env(&mut cmd, env.home());
    cmd.arg("./tests/host-boots.sh")
        .current_dir(&env.repo)
        .env("PATH", path)
        .env(
            "STAGEGATE_IMAGE_DEBIAN_HOST_ARTIFACT",
            host.location.strip_prefix("file://").unwrap(),
        )
        .env("STAGEGATE_IMAGE_DEBIAN_HOST_VERSION", &host.version)
        .env("STAGEGATE_COMPONENT_HELLO_GIT", &env.repo)
        .env("STAGEGATE_COMPONENT_HELLO_COMMIT", env.rev("hello/main"))
        .envs(vars.iter().copied());
    cmd.output().unwrap()
}

/// The newest result of the job named `name`.
fn newest(env: &TestEnv, name: &str) -> stagegate::ledger::ResultRecord {
    results_of(env, name)
        .into_iter()
        .max_by_key(|r| r.attempt)
        .unwrap_or_else(|| panic!("no result for {name}"))
}

/// `run --failed` with `path`, which must exit `code`; then both boot tests' newest results must
/// be `verdict` with `says` in their excerpt.
fn run_boots(env: &TestEnv, path: &str, code: i32, verdict: Verdict, says: &str) {
    // `--failed`: boots that errored a moment ago wait for their backoff otherwise (and
    // their error budget is spent after four in a row): here each runner is a new one.
    let out = env
        .sg_cmd(&["run", "--failed"])
        .env("PATH", path)
        .output()
        .unwrap();
    let logs: Vec<String> = ["host-boots", "guest-boots"]
        .iter()
        .filter_map(|t| results_of(env, t).into_iter().max_by_key(|r| r.attempt))
        .map(|r| format!("{}: {}", r.name, r.excerpt))
        .collect();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}\n{logs:#?}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for test in ["host-boots", "guest-boots"] {
        let r = newest(env, test);
        assert_eq!(r.verdict, verdict, "{test}: {r:#?}");
        assert!(
            r.excerpt.contains(says),
            "{test}: no {says:?} in\n{}",
            r.excerpt
        );
        if verdict == Verdict::Error {
            assert_eq!(r.exit.code, Some(125), "{test}: {r:#?}");
            let reason = r.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("could not test"), "{test}: {reason}");
        }
    }
}

/// What the runner lacks is never the image's failure: a boot test on a runner whose
/// emulator is missing, cannot execute, or crashes says "could not test" (exit 125), an
/// `error`, and the candidate waits; an emulator that works and an image that does not
/// boot is a `fail`.
#[test]
fn a_debian_boot_test_without_a_working_emulator_is_an_error_never_a_failure() {
    let Some(env) = stand_in_example() else {
        return;
    };
    let stable = env.rev("stable");
    let home = env.home().to_path_buf();

    let missing = path_without(&home.join("no-qemu"), &["qemu-system-x86_64"]);
    run_boots(
        &env,
        &missing,
        3,
        Verdict::Error,
        "qemu-system-x86_64 is missing: install it (Debian: apt-get install qemu-system-x86)",
    );
    // Alone on PATH: a shell that cannot execute a program goes on to the next one there.
    let not_executable = fake_qemu(
        &home.join("bad-qemu"),
        "#!/nonexistent/interpreter\n",
        &missing,
    );
    run_boots(
        &env,
        &not_executable,
        3,
        Verdict::Error,
        "qemu-system-x86_64 cannot start a machine (status 127)",
    );
    // Starts (the probe passes), then is killed as the OOM killer kills.
    let crashing = fake_qemu(
        &home.join("crashing-qemu"),
        "#!/bin/sh\ncase \"$*\" in *-qmp*) exec $QEMU \"$@\" ;; esac\nkill -KILL $$\n",
        &missing,
    );
    run_boots(
        &env,
        &crashing,
        3,
        Verdict::Error,
        "qemu-system-x86_64 ended with status 137 under TCG",
    );
    // Errors wait: nothing moved, nothing rejected.
    env.sg(&["promote"]);
    assert_eq!(env.rev("stable"), stable);
    let recorded = env.git(&["ls-tree", "-r", "--name-only", "refs/stagegate/results"]);
    assert!(
        !recorded.lines().any(|p| p.starts_with("decisions/")),
        "no rejection is recorded\n{recorded}"
    );

    // A working emulator, and a kernel it cannot load: the image's failure.
    run_boots(
        &env,
        &system_path(),
        1,
        Verdict::Fail,
        "before the boot check ran; the end of its console:",
    );
}

/// KVM that aborts, hangs, or reports an error is never used: the boot starts again under
/// TCG (here the stand-in's kernel then fails to load, the image's failure, exit 1).
/// `STAGEGATE_DEBIAN_KVM=try` takes the KVM path on any machine, `off` never.
#[test]
fn a_debian_boot_falls_back_to_tcg_when_kvm_aborts_hangs_or_reports_an_error() {
    let Some(env) = stand_in_example() else {
        return;
    };
    let home = env.home().to_path_buf();
    let on_kvm = |name: &str, kvm: &str| {
        fake_qemu(
            &home.join(name),
            &format!(
                "#!/bin/sh\ncase \" $* \" in *\" -enable-kvm \"*) {kvm} ;; esac\nexec $QEMU \"$@\"\n"
            ),
            &system_path(),
        )
    };
    let aborts = on_kvm(
        "aborting-kvm",
        "echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; exit 134",
    );
    let hangs = on_kvm("hanging-kvm", "exec sleep 600");
    let errs = on_kvm(
        "erring-kvm",
        "echo 'KVM internal error. Suberror: 1' >&2; exec sleep 600",
    );
    for (path, why) in [
        (
            &aborts,
            "QEMU ended with status 134 before the boot check ran",
        ),
        (&hangs, "nothing on the console in 10s"),
        (&errs, "QEMU reported: KVM internal error. Suberror: 1"),
    ] {
        let out = boot_host(&env, "staging", path, &[("STAGEGATE_DEBIAN_KVM", "try")]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{why}\n{text}");
        assert!(
            text.contains(&format!(
                "host-boots: KVM is unusable here ({why}); booting under TCG instead"
            )) && text.contains("under TCG (at most 300s)")
                && text.contains("host-boots: qemu ended (status 1)"),
            "{why}\n{text}"
        );
    }

    let off = boot_host(&env, "staging", &aborts, &[("STAGEGATE_DEBIAN_KVM", "off")]);
    let text = String::from_utf8_lossy(&off.stdout);
    assert!(
        !text.contains("KVM") && text.contains("under TCG"),
        "{text}"
    );
    let wrong = boot_host(&env, "staging", &aborts, &[("STAGEGATE_DEBIAN_KVM", "yes")]);
    assert_eq!(wrong.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&wrong.stderr)
            .contains("STAGEGATE_DEBIAN_KVM is 'yes' on this runner: use auto, try or off"),
        "{wrong:?}"
    );
}

/// Package lines of a lock (no comments).
fn packages(lock: &str) -> Vec<&str> {
    lock.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The real thing: build the Debian host from packages, derive the guest, boot both
/// under QEMU with the component, promote to stable; then rebuild the host `--offline`
/// from the package cache and get exactly the same package set.
#[test]
fn debian_example_builds_boots_and_rebuilds_offline_from_its_package_cache() {
    let tools = [
        "mmdebstrap",
        "apt-ftparchive",
        "qemu-system-x86_64",
        "qemu-img",
        "mke2fs",
        "debugfs",
        "e2fsck",
    ];
    if !can_build_debian(&tools) {
        return;
    }
    let env = TestEnv::new();
    // Minutes long: run a copy of the binary this test started with, whatever is built
    // meanwhile into the shared target directory.
    let bin = env.home().join("stagegate");
    std::fs::copy(assert_cmd::cargo::cargo_bin("stagegate"), &bin).unwrap();
    let sg_with = |vars: &[(&str, &str)], args: &[&str]| -> String {
        let mut cmd = Command::new(&bin);
        crate::common::base_env(&mut cmd, env.home());
        cmd.envs(vars.iter().copied());
        let out = cmd.arg("-C").arg(&env.repo).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stagegate {args:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let sg = |args: &[&str]| sg_with(&[], args);
    // The runner's download cache outlives the test's home: only the first run of the
    // suite on a machine downloads packages.
    let downloads = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stagegate-cache");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(env.home().join(".cache")).unwrap();
    std::os::unix::fs::symlink(&downloads, env.home().join(".cache/stagegate")).unwrap();
    sg(&["init", "--example", "debian", env.repo.to_str().unwrap()]);

    // new -> staging: the host is built from packages, the guest from the host.
    sg(&["run", "-j", "2"]);
    sg(&["promote"]);
    let host = built(&env, "staging", "debian-host");
    let lock = host.lock.clone().expect("the host's lock");
    let pkgs = packages(&lock);
    assert!(pkgs.len() > 50, "{lock}");
    for p in &pkgs {
        let f: Vec<&str> = p.split(' ').collect();
        assert_eq!(f.len(), 4, "NAME VERSION ARCH SHA256: {p}");
        assert_eq!(f[3].len(), 64, "a sha256: {p}");
    }
    assert!(pkgs.iter().any(|p| p.starts_with("linux-image-")), "{lock}");
    // The package cache is stored beside the image: the lock's set, every .deb of it.
    let cache = host.cache.clone().expect("the host's package cache");
    let tar = cache.location.strip_prefix("file://").unwrap();
    let listed = Command::new("tar").args(["-tf", tar]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        listed.lines().filter(|l| l.ends_with(".deb")).count(),
        pkgs.len(),
        "{listed}"
    );
    let cached_lock = Command::new("tar")
        .args(["-xOf", tar, "packages.lock"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cached_lock.stdout)
            .lines()
            .collect::<Vec<_>>(),
        pkgs
    );
    let guest = built(&env, "staging", "debian-guest");
    assert_eq!(
        packages(guest.lock.as_deref().unwrap()),
        pkgs,
        "the guest carries the host's package set"
    );

    // staging -> stable: both images boot under QEMU and run the component. Whatever KVM
    // this machine has, it is broken here as nested KVM is on some machines: with
    // -enable-kvm the host's boot aborts at once ("failed to set MSR"), the guest's hangs
    // without a word. Both boot under TCG instead, and pass.
    let host_hex = host.digest.as_str().strip_prefix("sha256:").unwrap();
    let broken_kvm = fake_qemu(
        &env.home().join("broken-kvm"),
        &format!(
            "#!/bin/sh\ncase \" $* \" in\n\
             *\" -enable-kvm \"*{host_hex}*) echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69' >&2; exit 134 ;;\n\
             *\" -enable-kvm \"*) exec sleep 600 ;;\n\
             esac\nexec $QEMU \"$@\"\n"
        ),
        &system_path(),
    );
    sg_with(
        &[("PATH", &broken_kvm), ("STAGEGATE_DEBIAN_KVM", "try")],
        &["run", "-j", "2"],
    );
    for (test, why) in [
        (
            "host-boots",
            "QEMU ended with status 134 before the boot check ran",
        ),
        ("guest-boots", "nothing on the console in 10s"),
    ] {
        let r = results_of(&env, test);
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].verdict, Verdict::Pass, "{}", r[0].excerpt);
        assert!(
            r[0].excerpt.contains("stagegate-init: kernel 6.1.")
                && r[0]
                    .excerpt
                    .contains("component: hello from the component under test"),
            "{}",
            r[0].excerpt
        );
        let log = sg(&["log-of", r[0].key.as_str()]);
        assert!(
            log.contains(&format!(
                "{test}: KVM is unusable here ({why}); booting under TCG instead"
            )),
            "{log}"
        );
    }
    sg(&["promote"]);
    assert_eq!(built(&env, "stable", "debian-host").digest, host.digest);

    // A boot that does not finish in time is the image's failure, with its console.
    let hang = boot_host(&env, "stable", &system_path(), &[("BOOT_TIMEOUT", "2")]);
    let text = String::from_utf8_lossy(&hang.stdout);
    assert_eq!(hang.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "host-boots: the image did not finish booting within 2s; the end of its console:"
        ),
        "{text}"
    );

    // An offline rebuild of a new version uses only the package cache staging holds,
    // fetched from the artifact store: not the mirror, not this runner's downloads.
    env.git(&["checkout", "-q", "new"]);
    env.edit(
        "images/debian-host.yaml",
        "version: \"12.15-1\"",
        "version: \"12.15-2\"",
    );
    env.edit(
        "images/debian-host.yaml",
        "run: ./recipes/debian-host.sh",
        "run: ./recipes/debian-host.sh --offline",
    );
    env.commit_on("new", "debian-host: rebuild from the package cache", &[]);
    std::fs::remove_file(env.home().join(".cache/stagegate")).unwrap();
    sg_with(
        &[("STAGEGATE_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")],
        &["run", "-j", "2"],
    );
    let rebuilt = results_of(&env, "images/debian-host")
        .into_iter()
        .find(|r| r.env.iter().any(|e| e.version == "12.15-2"))
        .expect("the offline rebuild");
    assert_eq!(rebuilt.verdict, Verdict::Pass, "{}", rebuilt.excerpt);
    let log = sg(&["log-of", rebuilt.key.as_str()]);
    assert!(
        log.contains("debian-host 12.15-2: --offline: building from the last-known-good package set, that of debian-host 12.15-1"),
        "{log}"
    );
    let rebuilt = rebuilt.artifact.unwrap();
    assert_eq!(
        rebuilt.cache.map(|c| c.digest),
        Some(cache.digest),
        "the same set makes the same cache, stored once"
    );
    let relock = rebuilt.lock.unwrap();
    assert_eq!(
        packages(&relock),
        pkgs,
        "the same package set, from the cache"
    );
    let why = sg(&["why", "images/debian-host"]);
    assert!(
        why.contains(&format!(
            "vs 12.15-1 (staging): the same {} packages",
            pkgs.len()
        )),
        "{why}"
    );
}
