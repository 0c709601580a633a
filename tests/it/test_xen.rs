//! The Xen example (`init --example xen`) and what it rests on: a component with a build.
//!
//! Fast tests: a component's build is planned, recorded on promotion and given to its
//! tests as an image's is; the example scaffolds a valid pipeline; its Xen build fetches
//! exactly the package set of the component's version from a `file://` mirror into an
//! artifact with a sha256 lock, and its watch proposes the mirror's newest version; the
//! boot tests' console verdicts, on canned consoles. The end-to-end test runs
//! `examples/xen.sh` as the README gives it: real packages, Xen booted under QEMU.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use stagegate::ledger::Verdict;
use stagegate::records::BuiltRecord;

use crate::common::TestEnv;
use crate::test_images::results_of;

/// Entering stable needs every changed item built, then every test passing.
const PIPELINE: &str = "version: 1\nstages: [new, staging, stable]\ngates:\n  staging: {require: [build]}\n  stable: {require: [test], baseline: true}\n";

fn built_component(env: &TestEnv, rev: &str, name: &str) -> BuiltRecord {
    let path = format!(".stagegate/built/components/{name}.yaml");
    let text = env.git(&["show", &format!("{rev}:{path}")]);
    stagegate::records::parse(&path, text.as_bytes())
        .unwrap_or_else(|e| panic!("{path} on {rev} does not parse: {e}\n{text}"))
}

#[test]
fn a_component_with_a_build_is_built_recorded_and_given_to_its_tests() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "new"]);
    env.write("stagegate.yaml", PIPELINE);
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "start"]);
    env.git(&["branch", "staging"]);
    env.git(&["branch", "stable"]);
    env.commit_on(
        "new",
        "tool 1",
        &[
            (
                "components/tool.yaml",
                "name: tool\nversion: \"1\"\nbuild: {run: ./recipes/tool.sh, artifact: tool.bin, lock: tool.lock, files: [recipes/tool.flags]}\n",
            ),
            (
                "recipes/tool.sh",
                "#!/bin/sh\nset -eu\necho \"tool $STAGEGATE_VERSION $(cat recipes/tool.flags)\" > \"$STAGEGATE_OUT/tool.bin\"\necho \"tool $STAGEGATE_VERSION amd64 abcd\" > \"$STAGEGATE_OUT/tool.lock\"\n",
            ),
            ("recipes/tool.flags", "fast\n"),
            (
                "tests/uses-tool.yaml",
                "name: uses-tool\nuses: [components/tool]\nrun: ./tests/uses-tool.sh\n",
            ),
            (
                "tests/uses-tool.sh",
                "#!/bin/sh\nset -eu\ngrep -q \"^tool $STAGEGATE_COMPONENT_TOOL_VERSION fast$\" \"${STAGEGATE_COMPONENT_TOOL_ARTIFACT:?no artifact}\"\necho \"got $(cat \"$STAGEGATE_COMPONENT_TOOL_ARTIFACT\") digest $STAGEGATE_COMPONENT_TOOL_DIGEST\"\n",
            ),
        ],
    );
    let plan = env.sg_ok(&["status"]);
    assert!(plan.contains("build components/tool"), "{plan}");
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let rec = built_component(&env, "staging", "tool");
    assert_eq!(rec.version, "1");
    assert_eq!(rec.lock.as_deref(), Some("tool 1 amd64 abcd\n"));
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(b"tool 1 fast\n")));
    assert_eq!(rec.digest, expected);

    // staging -> stable: the test is given the recorded artifact.
    env.sg_ok(&["run"]);
    let r = results_of(&env, "uses-tool");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].verdict, Verdict::Pass, "{}", r[0].excerpt);
    assert!(
        r[0].excerpt
            .contains(&format!("got tool 1 fast digest {expected}")),
        "{}",
        r[0].excerpt
    );
    env.sg_ok(&["promote"]);
    assert_eq!(built_component(&env, "stable", "tool").digest, expected);

    // A build input alone (not the manifest) makes the component a candidate again, whose
    // build is a new one; `why` lists its package changes from the lock.
    env.git(&["checkout", "-q", "new"]);
    env.write("recipes/tool.flags", "slow\n");
    env.write(
        "recipes/tool.sh",
        "#!/bin/sh\nset -eu\necho \"tool $STAGEGATE_VERSION $(cat recipes/tool.flags)\" > \"$STAGEGATE_OUT/tool.bin\"\necho \"tool $STAGEGATE_VERSION-slow amd64 ef01\" > \"$STAGEGATE_OUT/tool.lock\"\n",
    );
    env.git(&["commit", "-q", "--no-verify", "-am", "tool: slow"]);
    env.sg_ok(&["run"]);
    let why = env.sg_ok(&["why", "components/tool"]);
    assert!(
        why.contains("^ tool:amd64 1 -> 1-slow"),
        "the component's package change\n{why}"
    );
    env.sg_ok(&["promote"]);
    assert_ne!(built_component(&env, "staging", "tool").digest, expected);
}

#[test]
fn init_example_xen_scaffolds_a_valid_pipeline() {
    let env = TestEnv::new();
    let out = env.sg_ok(&["init", "--example", "xen", env.repo.to_str().unwrap()]);
    assert!(out.contains("Initialized a state repository"), "{out}");
    assert!(!out.contains("hello/main"), "no hello component: {out}");
    env.sg_ok(&["check"]);
    for path in [
        "images/xen-host.yaml",
        "images/xen-guest.yaml",
        "components/xen.yaml",
        "recipes/debian.sh",
        "recipes/debian-host.sh",
        "recipes/xen-host.packages",
        "recipes/xen-host.customize",
        "recipes/xen-guest.sh",
        "recipes/xen.sh",
        "recipes/xen.cmdline",
        "recipes/stagegate-init",
        "tests/xen-boots.yaml",
        "tests/guest-starts.yaml",
        "tests/xen-boot.sh",
        "tests/xen-console.sh",
        "watch/xen-version.sh",
        "watch/debian-point-release.sh",
    ] {
        assert!(env.repo.join(path).is_file(), "{path} is missing");
    }
    let status = env.sg_ok(&["status"]);
    for job in [
        "build images/xen-host",
        "build images/xen-guest",
        "build components/xen",
    ] {
        assert!(status.contains(job), "{job}\n{status}");
    }
    let host = env.read("images/xen-host.yaml");
    assert!(host.contains("max-age: 7d"), "{host}");
    assert!(
        host.contains("watch: {run: ./watch/debian-point-release.sh}"),
        "{host}"
    );
    let xen = env.read("components/xen.yaml");
    assert!(
        xen.contains("watch: {run: ./watch/xen-version.sh}"),
        "{xen}"
    );
    // The Debian example's host recipe is the same file.
    assert_eq!(
        env.read("recipes/debian-host.sh"),
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/debian/recipes/debian-host.sh")
        )
        .unwrap()
    );
}

/// The versions the fake mirror serves: each package of the Xen set, as fake .debs.
const XEN_SET: [&str; 14] = [
    "xen-hypervisor-4.17-amd64",
    "xen-utils-4.17",
    "xen-utils-common",
    "xenstore-utils",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenmisc4.17",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
];

/// A `file://` mirror whose index lists the Xen set at `versions` (plain Packages), with
/// .debs whose content names package and version. `corrupt`: this package's .deb does not
/// match the index.
fn fake_xen_mirror(dir: &Path, versions: &[&str], corrupt: Option<&str>) -> String {
    let index = dir.join("dists/bookworm/main/binary-amd64");
    std::fs::create_dir_all(&index).unwrap();
    std::fs::create_dir_all(dir.join("pool")).unwrap();
    let mut packages = String::new();
    for v in versions {
        for p in XEN_SET {
            let deb = format!("pool/{p}_{v}_amd64.deb");
            let content = format!("{p} {v}\n");
            std::fs::write(dir.join(&deb), &content).unwrap();
            let mut sum = hex::encode(Sha256::digest(content.as_bytes()));
            if corrupt == Some(p) {
                sum = "0".repeat(64);
            }
            packages.push_str(&format!(
                "Package: {p}\nSource: xen\nVersion: {v}\nArchitecture: amd64\nFilename: {deb}\nSHA256: {sum}\n\n"
            ));
        }
        // Another source's package, which is not Xen's.
        packages.push_str(&format!(
            "Package: libyajl2\nVersion: {v}\nArchitecture: amd64\nFilename: pool/x.deb\nSHA256: {}\n\n",
            "1".repeat(64)
        ));
    }
    std::fs::write(index.join("Packages"), packages).unwrap();
    format!("file://{}", dir.display())
}

/// The example with its images left out: the Xen component alone, pending on new.
fn xen_component_only(env: &TestEnv) {
    env.sg_ok(&["init", "--example", "xen", env.repo.to_str().unwrap()]);
    env.git(&[
        "rm",
        "-q",
        "images/xen-host.yaml",
        "images/xen-guest.yaml",
        "tests/xen-boots.yaml",
        "tests/guest-starts.yaml",
    ]);
    env.git(&["commit", "-q", "--no-verify", "--amend", "-m", "xen alone"]);
}

#[test]
fn the_xen_build_locks_exactly_the_package_set_of_its_version_from_the_mirror() {
    if !crate::common::require_tools(&["curl", "dpkg", "xz", "tar", "sha256sum"]) {
        return;
    }
    let env = TestEnv::new();
    xen_component_only(&env);
    let old = "4.17.5+72-g01140da4e8-1";
    let new = "4.17.7+13-g2445b30a44-0+deb12u1";
    let mirror = fake_xen_mirror(&env.home().join("mirror"), &[old, new], None);
    let out = env
        .sg_cmd(&["run"])
        .env("STAGEGATE_XEN_MIRROR", &mirror)
        .env("STAGEGATE_DEB_CACHE", env.home().join("debs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = results_of(&env, "components/xen");
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].verdict, Verdict::Pass, "{}", r[0].excerpt);
    let built = r[0].artifact.clone().expect("the artifact");
    let lock = built.lock.expect("the lock");
    let lines: Vec<&str> = lock.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), XEN_SET.len(), "{lock}");
    for (line, p) in lines.iter().zip(XEN_SET) {
        let sum = hex::encode(Sha256::digest(format!("{p} {old}\n").as_bytes()));
        assert_eq!(*line, format!("{p} {old} amd64 {sum}"), "{lock}");
    }
    // The artifact: the lock, the command line and the .debs of that version only.
    let tar = built.location.strip_prefix("file://").unwrap();
    let listed = Command::new("tar").args(["-tf", tar]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    let debs: Vec<&str> = listed.lines().filter(|l| l.ends_with(".deb")).collect();
    assert_eq!(debs.len(), XEN_SET.len(), "{listed}");
    assert!(debs.iter().all(|d| d.contains(old)), "{listed}");
    assert!(listed.lines().any(|l| l == "xen.cmdline"), "{listed}");

    // The watch: the mirror's newest version becomes the candidate.
    for stage in ["staging", "stable"] {
        env.git(&["update-ref", &format!("refs/heads/{stage}"), "new"]);
    }
    let out = env
        .sg_cmd(&["poll"])
        .env("STAGEGATE_XEN_MIRROR", &mirror)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xen = env.git(&["show", "new:components/xen.yaml"]);
    assert!(xen.contains(&format!("version: \"{new}\"")), "{xen}");
}

#[test]
fn a_xen_package_that_does_not_match_the_index_fails_the_build_and_a_missing_version_is_an_error() {
    if !crate::common::require_tools(&["curl", "dpkg", "xz", "tar", "sha256sum"]) {
        return;
    }
    let env = TestEnv::new();
    xen_component_only(&env);
    let old = "4.17.5+72-g01140da4e8-1";
    let corrupt = fake_xen_mirror(&env.home().join("corrupt"), &[old], Some("xen-utils-4.17"));
    let out = env
        .sg_cmd(&["run"])
        .env("STAGEGATE_XEN_MIRROR", &corrupt)
        .env("STAGEGATE_DEB_CACHE", env.home().join("debs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r = results_of(&env, "components/xen");
    assert_eq!(r[0].verdict, Verdict::Fail, "{}", r[0].excerpt);
    assert!(
        r[0].excerpt.contains("xen-utils-4.17_4.17.5+72-g01140da4e8-1_amd64.deb does not match the sha256 of the package index"),
        "{}",
        r[0].excerpt
    );

    // A mirror that no longer lists the version: could not build here, not the version's fault.
    let moved = fake_xen_mirror(&env.home().join("moved"), &["4.17.9-1"], None);
    let out = env
        .sg_cmd(&["run", "--failed"])
        .env("STAGEGATE_XEN_MIRROR", &moved)
        .env("STAGEGATE_DEB_CACHE", env.home().join("debs"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r = results_of(&env, "components/xen");
    let last = r
        .iter()
        .find(|r| r.verdict == Verdict::Error)
        .expect("an error");
    assert!(
        last.excerpt.contains("is not in the package index")
            && last.excerpt.contains("the newest there: 4.17.9-1"),
        "{}",
        last.excerpt
    );
}

/// A canned console: Xen's banner for `version`, dom0's init, then `rest`.
fn console(version: &str, rest: &str) -> String {
    format!(
        "(XEN) Xen version 4.17.6-pre (Debian {version}) (pkg-xen-devel@lists.alioth.debian.org) (x86_64-linux-gnu-gcc (Debian 12.2.0-14+deb12u1) 12.2.0) debug=n Mon Jun  2 2025\r\n\
         [    0.000000] Linux version 6.1.0-57-amd64\r\n\
         stagegate-init: kernel 6.1.0-57-amd64, Debian GNU/Linux 12 (bookworm), xen-host 12.15-1\r\n{rest}"
    )
}

/// `console_verdict` of tests/xen-console.sh on `text`: its status and what it printed.
fn verdict(text: &str, version: &str, checks: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    std::fs::write(&log, text).unwrap();
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/xen/tests/xen-console.sh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(". \"$0\"; console_verdict \"$@\"")
        .arg(&lib)
        .arg(&log)
        .arg(version)
        .args(checks)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn the_boot_verdict_rests_on_the_console_not_on_qemus_exit_status() {
    let v = "4.17.7+13-g2445b30a44-0+deb12u1";
    let good = "xl: list: Domain-0                                   0  1024     2     r-----       5.1\r\nstagegate-init: exit 0\r\n(XEN) Hardware Dom0 shutdown: powering off\r\n";
    assert_eq!(
        verdict(&console(v, good), v, &["xl: list: Domain-0 "]),
        (true, String::new())
    );

    for (text, version, says) in [
        (
            console(v, "[   13.1] d0v0 Unhandled: vec 14, #PF[0000]\r\n"),
            v,
            "crashed: [   13.1] d0v0 Unhandled: vec 14, #PF[0000]",
        ),
        (
            console(
                v,
                "(XEN) ****\r\n(XEN) Panic on CPU 0:\r\n(XEN) Domain 0 allocation is too small for kernel image\r\n(XEN) ****\r\n",
            ),
            v,
            "crashed: (XEN) Panic on CPU 0: Domain 0 allocation is too small for kernel image",
        ),
        (
            console(
                v,
                "[    2.0] Kernel panic - not syncing: System is deadlocked on memory\r\n",
            ),
            v,
            "crashed: [    2.0] Kernel panic - not syncing: System is deadlocked on memory",
        ),
        (
            console(
                v,
                &format!("(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.\r\n{good}"),
            ),
            v,
            "crashed: (XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.",
        ),
        (
            console(v, good),
            "4.17.8-1",
            "the hypervisor is not the component's version 4.17.8-1: (XEN) Xen version 4.17.6-pre (Debian 4.17.7+13-g2445b30a44-0+deb12u1)",
        ),
        (
            "SeaBIOS\r\nBooting from ROM...\r\n".to_string(),
            v,
            "no Xen banner on the console: the hypervisor did not start",
        ),
        (
            console(v, "stagegate-init: exit 0\r\n")
                .replace("stagegate-init: kernel", "init: kernel"),
            v,
            "dom0 did not come up: its init never ran",
        ),
        (
            console(v, "stagegate-init: exit 0\r\n"),
            v,
            "the console does not show: xl: list: Domain-0",
        ),
        (
            console(v, "xl: list: Domain-0    0\r\nstagegate-init: exit 1\r\n"),
            v,
            "the job in dom0 failed: stagegate-init: exit 1",
        ),
        (
            console(v, "xl: list: Domain-0    0\r\n"),
            v,
            "the job in dom0 failed: it did not finish",
        ),
    ] {
        let (ok, why) = verdict(&text, version, &["xl: list: Domain-0 "]);
        assert!(!ok, "{text}");
        assert!(
            why.starts_with(says),
            "{why:?} does not start with {says:?}\n{text}"
        );
    }
}

/// The real thing, as the README gives it: `examples/xen.sh` builds the host from Debian's
/// packages, fetches Xen's, boots Xen under QEMU (TCG where KVM does not work) with dom0
/// and a guest, takes a new Xen version from a local mirror to stable, and rejects a Xen
/// whose command line starves dom0 while a host rebuild moves past it.
#[test]
fn xen_example_takes_a_new_xen_to_stable_and_rejects_one_that_starves_dom0() {
    let tools = [
        "mmdebstrap",
        "apt-ftparchive",
        "qemu-system-x86_64",
        "qemu-img",
        "mke2fs",
        "debugfs",
        "cpio",
        "curl",
        "dpkg-deb",
    ];
    if !crate::common::require_tools(&tools) {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !crate::common::in_ci(),
            "the Xen example builds as root (mmdebstrap root mode), and CI is set"
        );
        eprintln!("NOTICE: skipped: the Xen example builds as root");
        return;
    }
    let env = TestEnv::new();
    // Minutes long: run a copy of the binary this test started with.
    let bin = env.home().join("stagegate");
    std::fs::copy(assert_cmd::cargo::cargo_bin("stagegate"), &bin).unwrap();
    // The download cache the Debian example's test uses: only the first run of the suite
    // on a machine downloads packages.
    let downloads = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stagegate-cache");
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(env.home().join(".cache")).unwrap();
    std::os::unix::fs::symlink(&downloads, env.home().join(".cache/stagegate")).unwrap();

    let work = env.home().join("xen");
    let mut cmd = Command::new("bash");
    crate::common::base_env(&mut cmd, env.home());
    let out = cmd
        .env("STAGEGATE_BIN", &bin)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("examples/xen.sh")
        .arg(&work)
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{o}");
    let state = TestEnv {
        repo: work.join("state"),
        ..env
    };
    if !out.status.success() {
        // What failed, from the ledger: the excerpts of the failing jobs.
        let mut failed = String::new();
        for test in ["xen-boots", "guest-starts"] {
            for r in results_of(&state, test) {
                if r.verdict != Verdict::Pass {
                    failed.push_str(&format!("{} {}:\n{}\n", r.name, r.verdict, r.excerpt));
                }
            }
        }
        panic!(
            "examples/xen.sh exited with {:?}\nstdout:\n{o}\nstderr:\n{e}\nfailed jobs:\n{failed}",
            out.status.code()
        );
    }

    // The versions the script took from the Debian mirror: bookworm's and its update.
    let between = |from: &str, to: &str| -> String {
        o.split_once(from)
            .unwrap()
            .1
            .split_once(to)
            .unwrap()
            .0
            .trim()
            .to_string()
    };
    let old = between("a local mirror with bookworm's Xen ", ":");
    let new = between("== the mirror gains Xen ", " (");

    // Both versions were booted and passed, each with its own banner, dom0 and the guest.
    let boots = results_of(&state, "xen-boots");
    let guests = results_of(&state, "guest-starts");
    for v in [&old, &new] {
        let of = |r: &&stagegate::ledger::ResultRecord| {
            r.env
                .iter()
                .any(|e| e.item == "components/xen" && &e.version == v)
        };
        let b = boots.iter().filter(of).find(|r| r.verdict == Verdict::Pass);
        let b = b.unwrap_or_else(|| panic!("no passing xen-boots of {v}: {boots:#?}"));
        for want in [
            format!("(Debian {v})"),
            "xl: info: xen_version ".into(),
            "xl: list: Domain-0 ".into(),
        ] {
            assert!(b.excerpt.contains(&want), "{want}\n{}", b.excerpt);
        }
        let g = guests
            .iter()
            .filter(of)
            .find(|r| r.verdict == Verdict::Pass);
        let g = g.unwrap_or_else(|| panic!("no passing guest-starts of {v}: {guests:#?}"));
        for want in [
            "guest: xen-guest 12.15-1 is up: kernel 6.1.",
            "xl: create exit 0",
        ] {
            assert!(g.excerpt.contains(want), "{want}\n{}", g.excerpt);
        }
    }

    // On stable: the new Xen (its lock, the exact package set) and the rebuilt host; not
    // the command line that starved dom0.
    let xen = built_component(&state, "stable", "xen");
    assert_eq!(xen.version, new);
    let lock = xen.lock.unwrap();
    assert_eq!(
        lock.lines().filter(|l| !l.starts_with('#')).count(),
        14,
        "{lock}"
    );
    assert!(
        lock.contains(&format!("xen-hypervisor-4.17-amd64 {new} amd64 ")),
        "{lock}"
    );
    let host = state.git(&["show", "stable:images/xen-host.yaml"]);
    assert!(host.contains("version: \"12.15-2\""), "{host}");
    let cmdline = state.git(&["show", "stable:recipes/xen.cmdline"]);
    assert!(cmdline.contains("dom0_mem=1024M,max:1024M"), "{cmdline}");

    // The starved dom0 failed on its console, and `why` shows it.
    let starved = boots
        .iter()
        .find(|r| r.verdict == Verdict::Fail)
        .unwrap_or_else(|| panic!("no failing xen-boots: {boots:#?}"));
    assert!(
        starved.excerpt.contains("dom0_mem=64M,max:64M"),
        "{}",
        starved.excerpt
    );
    assert!(
        starved.excerpt.contains("xen-boots: crashed: ")
            || starved
                .excerpt
                .contains("xen-boots: Xen did not finish within "),
        "{}",
        starved.excerpt
    );
    // `why` shows the results the rejection rests on, though stable moved on since.
    let why = state.sg_ok(&["why", "components/xen"]);
    assert!(why.contains("staging → stable: rejected"), "{why}");
    assert!(why.contains("rejected on: xen-boots — fail"), "{why}");
    assert!(
        why.contains("| xen-boots: crashed: ")
            || why.contains("| xen-boots: Xen did not finish within "),
        "{why}"
    );
    assert!(
        why.contains("command line: console=com1 com1=115200,8n1 dom0_mem=64M,max:64M"),
        "{why}"
    );
    let log = state.sg_ok(&["log"]);
    assert!(
        log.contains("images/xen-host") && log.contains("12.15-2"),
        "{log}"
    );
    assert!(log.contains("reject"), "{log}");
}

#[test]
fn why_shows_the_results_a_rejection_rests_on_after_the_target_stage_moved_on() {
    let test = "name: t\nuses: [components/tool, components/other]\nrun: ./tests/t.sh\n";
    let script = "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_TOOL_VERSION\" != 2 ] || { echo \"boom at tool 2\"; exit 1; }\necho ok\n";
    let (tool1, other1) = (
        crate::common::item("components", "tool", "1"),
        crate::common::item("components", "other", "1"),
    );
    let env = TestEnv::init_with(&[
        (&tool1.0, &tool1.1),
        (&other1.0, &other1.1),
        ("tests/t.yaml", test),
        ("tests/t.sh", script),
    ]);
    let (tool2, other2) = (
        crate::common::item("components", "tool", "2"),
        crate::common::item("components", "other", "2"),
    );
    env.commit_on(
        "staging",
        "tool 2, other 2",
        &[(&tool2.0, &tool2.1), (&other2.0, &other2.1)],
    );
    env.sg(&["run"]);
    env.sg(&["promote"]);
    let stable = env.git(&["show", "stable:components/other.yaml"]);
    assert!(stable.contains("version: \"2\""), "other moved: {stable}");
    // The rejected tool's jobs now run against other 2: new keys, no results.
    let why = env.sg_ok(&["why", "components/tool"]);
    assert!(why.contains("staging → stable: rejected"), "{why}");
    assert!(why.contains("rejected on: t — fail (key "), "{why}");
    assert!(why.contains("         | boom at tool 2"), "{why}");
    let json = env.json(&["why", "components/tool", "--format", "json"]);
    let by = &json["pending"][0]["rejected_by"][0];
    assert_eq!(by["job"], "t");
    assert_eq!(by["verdict"], "fail");
    assert!(
        by["excerpt"].as_str().unwrap().contains("boom at tool 2"),
        "{json}"
    );
}

#[test]
fn a_xen_boot_whose_emulator_cannot_start_could_not_test() {
    if !crate::common::require_tools(&["qemu-img", "debugfs", "mke2fs", "dpkg-deb"]) {
        return;
    }
    let env = TestEnv::new();
    env.sg_ok(&["init", "--example", "xen", env.repo.to_str().unwrap()]);
    let bin = env.home().join("broken-qemu");
    std::fs::create_dir_all(&bin).unwrap();
    let qemu = bin.join("qemu-system-x86_64");
    std::fs::write(
        &qemu,
        "#!/bin/sh\necho 'qemu-system-x86_64: could not load PC BIOS bios-256k.bin' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("tests/xen-boots.sh")
        .current_dir(&env.repo)
        .env("PATH", path)
        .env("HOME", env.home())
        .env("STAGEGATE_DEBIAN_KVM", "off")
        .env(
            "STAGEGATE_IMAGE_XEN_HOST_ARTIFACT",
            "/nonexistent/disk.qcow2",
        )
        .env("STAGEGATE_COMPONENT_XEN_ARTIFACT", "/nonexistent/xen.tar")
        .env(
            "STAGEGATE_COMPONENT_XEN_VERSION",
            "4.17.7+13-g2445b30a44-0+deb12u1",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("could not load PC BIOS")
            && err.contains("qemu-system-x86_64 cannot start a machine (status 1)"),
        "{err}"
    );
}
