//! The release workflow (`.github/workflows/release.yml`), run by `act` on this host for a
//! tag of this source: the x86_64 build job as written (its toolchain step, the static musl
//! build of the dist profile, the completions and man pages packed beside the binary), then
//! the publish job as written. What needs GitHub is a stand-in: `actions/checkout` clones a
//! repository made of this source tree and tagged; the artifact actions keep the run's
//! artifacts in a directory; `actions/attest-build-provenance` (Sigstore signing with the
//! run's OIDC token) writes a bundle file and says where, as the real one does; and `gh`
//! on PATH records the `gh release create` it is asked for and copies the assets it names.
//! The aarch64 job (a native build on an arm runner) is left out with `--matrix`.
//!
//! The build is a real one: its target directory is kept under this checkout's `target/`,
//! so only the first run on a machine builds from nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

const CHECKOUT: &str = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1";
const UPLOAD_ARTIFACT: &str = "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f";
const DOWNLOAD_ARTIFACT: &str =
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c";
const ATTEST: &str = "actions/attest-build-provenance@977bb373ede98d70efbf0b7b13af9c3d6651dc60";
const TARGET: &str = "x86_64-unknown-linux-musl";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write_exec(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A repository of this source tree as git has it (tracked files, as they are in the work
/// tree), committed and tagged `vVERSION`: what the release's checkout clones.
fn tagged_source(dir: &Path) -> String {
    let files = run(Command::new("git")
        .arg("-C")
        .arg(root())
        .args(["ls-files", "-z"]));
    for f in files.split('\0').filter(|f| !f.is_empty()) {
        let from = root().join(f);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dir.join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(dir).args(args));
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=Release",
        "-c",
        "user.email=release@example.com",
        "commit",
        "-q",
        "-m",
        "the release",
    ]);
    git(&["tag", &format!("v{VERSION}")]);
    // act names the repository (github.repository) after the origin remote.
    git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/octo-org/stagegate.git",
    ]);
    git(&["rev-parse", "HEAD"])
}

/// The stand-ins (see the module doc) under `dir`.
fn stand_ins(dir: &Path) {
    write_exec(
        &dir.join("checkout/action.yml"),
        "name: stand-in for actions/checkout\ndescription: clones the tagged source\ninputs:\n  persist-credentials: {description: ignored, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      run: git clone -q --branch \"$GITHUB_REF_NAME\" \"$TEST_ORIGIN\" .\n",
    );
    write_exec(
        &dir.join("upload-artifact/action.yml"),
        "name: stand-in for actions/upload-artifact\ndescription: keeps the artifact\ninputs:\n  name: {description: x, required: true}\n  path: {description: x, required: true}\n  if-no-files-found: {description: x, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        NAME: ${{ inputs.name }}\n        FROM: ${{ inputs.path }}\n      run: |\n        test -e \"$FROM\"\n        mkdir -p \"$TEST_ARTIFACTS/$NAME\" && cp \"$FROM\" \"$TEST_ARTIFACTS/$NAME/\"\n",
    );
    write_exec(
        &dir.join("download-artifact/action.yml"),
        "name: stand-in for actions/download-artifact\ndescription: every artifact of the run, merged\ninputs:\n  path: {description: x, required: true}\n  merge-multiple: {description: x, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        TO: ${{ inputs.path }}\n      run: mkdir -p \"$TO\" && cp \"$TEST_ARTIFACTS\"/*/* \"$TO/\"\n",
    );
    write_exec(
        &dir.join("attest/action.yml"),
        "name: stand-in for actions/attest-build-provenance\ndescription: a bundle naming the subjects' digests\ninputs:\n  subject-path: {description: x, required: true}\noutputs:\n  bundle-path: {description: x, value: \"${{ steps.attest.outputs.bundle-path }}\"}\nruns:\n  using: composite\n  steps:\n    - id: attest\n      shell: bash\n      env:\n        SUBJECTS: ${{ inputs.subject-path }}\n      run: |\n        bundle=\"$RUNNER_TEMP/attestation.jsonl\"\n        sha256sum $SUBJECTS > \"$bundle\"\n        echo \"bundle-path=$bundle\" >> \"$GITHUB_OUTPUT\"\n",
    );
    write_exec(
        &dir.join("bin/gh"),
        "#!/bin/sh\n# gh release create TAG --repo R ... FILES: record the call, keep the assets.\necho \"$@\" > \"$TEST_RELEASE/gh-args\"\nfor a in \"$@\"; do [ -f \"$a\" ] && cp \"$a\" \"$TEST_RELEASE/\"; done\nexit 0\n",
    );
}

#[test]
fn under_act_the_release_builds_a_static_binary_and_publishes_it_with_sums_and_provenance() {
    let Some(act) = crate::common::require_tool("act") else {
        return;
    };
    if !crate::common::require_tools(&["musl-gcc", "rustup", "cargo"]) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let origin = home.join("source");
    let commit = tagged_source(&origin);
    let tools = home.join("tools");
    stand_ins(&tools);
    let (artifacts, release) = (home.join("artifacts"), home.join("release"));
    std::fs::create_dir_all(&release).unwrap();
    let event = home.join("push.json");
    std::fs::write(
        &event,
        serde_json::json!({
            "ref": format!("refs/tags/v{VERSION}"),
            "after": commit,
            "repository": {"full_name": "octo-org/stagegate", "name": "stagegate", "owner": {"login": "octo-org"}}
        })
        .to_string(),
    )
    .unwrap();
    // Kept from one run of the suite to the next, as the Debian example keeps its downloads.
    let target_dir = root().join("target/act-release");
    let env_var = |k: &str| std::env::var(k).unwrap_or_default();
    // The machine's toolchain and crate cache, wherever the steps' HOME is.
    let home_dir = env_var("HOME");
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or(format!("{home_dir}/.cargo"));
    let rustup_home = std::env::var("RUSTUP_HOME").unwrap_or(format!("{home_dir}/.rustup"));
    let out = Command::new(&act)
        .current_dir(&origin)
        .env(
            "PATH",
            format!("{}:{}", tools.join("bin").display(), env_var("PATH")),
        )
        .arg("push")
        .arg("-W")
        .arg(origin.join(".github/workflows/release.yml"))
        .arg("-e")
        .arg(&event)
        .args(["-P", "ubuntu-24.04=-self-hosted", "--action-offline-mode"])
        .args(["--matrix", &format!("target:{TARGET}")])
        .arg("--action-cache-path")
        .arg(home.join("act-cache"))
        .args([
            "--local-repository",
            &format!("{CHECKOUT}={}", tools.join("checkout").display()),
        ])
        .args([
            "--local-repository",
            &format!(
                "{UPLOAD_ARTIFACT}={}",
                tools.join("upload-artifact").display()
            ),
        ])
        .args([
            "--local-repository",
            &format!(
                "{DOWNLOAD_ARTIFACT}={}",
                tools.join("download-artifact").display()
            ),
        ])
        .args([
            "--local-repository",
            &format!("{ATTEST}={}", tools.join("attest").display()),
        ])
        .args(["--env", &format!("TEST_ORIGIN={}", origin.display())])
        .args(["--env", &format!("TEST_ARTIFACTS={}", artifacts.display())])
        .args(["--env", &format!("TEST_RELEASE={}", release.display())])
        .args([
            "--env",
            &format!("CARGO_TARGET_DIR={}", target_dir.display()),
        ])
        .args(["--env", &format!("CARGO_HOME={cargo_home}")])
        .args(["--env", &format!("RUSTUP_HOME={rustup_home}")])
        .args(["-s", "GITHUB_TOKEN=not-used"])
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "act failed:\n{log}");
    assert!(!log.contains("is dynamically linked"), "{log}");

    // Published: the archive, the source commit, the sums and the provenance bundle.
    let args = std::fs::read_to_string(release.join("gh-args")).unwrap();
    assert!(
        args.starts_with(&format!(
            "release create v{VERSION} --repo octo-org/stagegate --verify-tag"
        )),
        "{args}"
    );
    let asset = format!("stagegate-{TARGET}.tar.gz");
    for name in [
        asset.as_str(),
        "SOURCE_COMMIT",
        "SHA256SUMS",
        "provenance.sigstore.json",
    ] {
        assert!(release.join(name).is_file(), "{name} not published: {args}");
    }
    assert_eq!(
        std::fs::read_to_string(release.join("SOURCE_COMMIT"))
            .unwrap()
            .trim(),
        commit
    );
    let check = run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&release));
    assert!(check.contains(&format!("{asset}: OK")), "{check}");
    assert!(check.contains("SOURCE_COMMIT: OK"), "{check}");
    // The bundle is what the attest step made of the archive.
    let bundle = std::fs::read_to_string(release.join("provenance.sigstore.json")).unwrap();
    assert!(bundle.contains(&asset), "{bundle}");

    // The archive: the static binary at its top (what scripts/install.sh extracts), its
    // completions and its man pages.
    let unpacked = home.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(release.join(&asset))
        .arg("-C")
        .arg(&unpacked));
    for f in [
        "stagegate",
        "completions/stagegate.bash",
        "completions/_stagegate",
        "completions/stagegate.fish",
        "man/man1/stagegate.1",
        "man/man1/stagegate-cycle.1",
    ] {
        assert!(unpacked.join(f).is_file(), "{f} is not in {asset}");
    }
    let version = run(Command::new(unpacked.join("stagegate")).arg("--version"));
    assert_eq!(version, format!("stagegate {VERSION}"));
    let file = std::fs::read(unpacked.join("stagegate")).unwrap();
    assert!(
        !file.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"),
        "the binary names a dynamic loader"
    );
    let size = file.len();
    assert!(size < 25 << 20, "{size} bytes: not stripped?");
}
