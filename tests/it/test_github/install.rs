//! The action's install step (`scripts/install.sh`) against a fake release served on
//! 127.0.0.1: the released binary when its checksum matches, a refusal when it does not,
//! a build from source (here a stand-in `cargo` that records how it was called) when
//! there is no release for the action's ref. The server also answers `git ls-remote` (the
//! dumb HTTP protocol: a plain `info/refs`), which is how a floating major tag (`v0`)
//! finds its newest release.
//!
//! The build provenance check runs the GitHub CLI, which verifies Sigstore bundles against
//! keys it fetches from the network: here `gh` is a stand-in on PATH that records how it
//! was called and answers as `gh attestation verify` does (exit 0 verified, 1 not). It is
//! always there unless a test takes it away, so a real `gh` on the machine is never asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn target() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64-unknown-linux-musl",
        _ => "x86_64-unknown-linux-musl",
    }
}

/// The repository the releases belong to, as in `https://github.com/OWNER/NAME`.
const REPO: &str = "octo/stagegate";

/// Files served at `/octo/stagegate/releases/download/<tag>/<name>`, and the repository's
/// tags at `/octo/stagegate/info/refs`; anything else is a 404. Paths are recorded and
/// looked up without the `/octo/stagegate` prefix.
struct Releases {
    url: String,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Releases {
    fn start() -> Releases {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Default::default();
        let requests: Arc<Mutex<Vec<String>>> = Default::default();
        let (s, f, r) = (server.clone(), files.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let url = req.url().to_string();
                let path = url
                    .strip_prefix(&format!("/{REPO}"))
                    .unwrap_or("/not-this-repository")
                    .to_string();
                r.lock().unwrap().push(path.clone());
                // git asks for `info/refs?service=git-upload-pack`; a plain answer (not
                // the smart protocol's content type) is the dumb protocol's ref list.
                let key = path.split('?').next().unwrap_or_default();
                let body = f.lock().unwrap().get(key).cloned();
                let resp = match body {
                    Some(b) => tiny_http::Response::from_data(b).with_status_code(200),
                    None => {
                        tiny_http::Response::from_data(b"Not Found".to_vec()).with_status_code(404)
                    }
                };
                let _ = req.respond(resp);
            }
        });
        Releases {
            url: format!("http://127.0.0.1:{port}/{REPO}/releases/download"),
            files,
            requests,
            server,
            thread: Some(thread),
        }
    }

    fn put(&self, tag: &str, name: &str, data: Vec<u8>) {
        self.files
            .lock()
            .unwrap()
            .insert(format!("/releases/download/{tag}/{name}"), data);
    }

    /// A release `tag` whose binary prints `says`, with SHA256SUMS (and SOURCE_COMMIT).
    fn publish(&self, work: &Path, tag: &str, says: &str, commit: &str) {
        let dir = work.join(format!("release-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stagegate"), format!("#!/bin/sh\necho '{says}'\n")).unwrap();
        run(Command::new("chmod")
            .args(["+x", "stagegate"])
            .current_dir(&dir));
        let asset = format!("stagegate-{}.tar.gz", target());
        run(Command::new("tar")
            .args(["-czf", &asset, "stagegate"])
            .current_dir(&dir));
        std::fs::write(dir.join("SOURCE_COMMIT"), format!("{commit}\n")).unwrap();
        let sums = run(Command::new("sha256sum")
            .args([asset.as_str(), "SOURCE_COMMIT"])
            .current_dir(&dir));
        self.put(tag, &asset, std::fs::read(dir.join(&asset)).unwrap());
        self.put(
            tag,
            "SOURCE_COMMIT",
            std::fs::read(dir.join("SOURCE_COMMIT")).unwrap(),
        );
        self.put(tag, "SHA256SUMS", sums.into_bytes());
    }

    /// The tags `git ls-remote` lists, each at a commit of its own.
    fn tags(&self, tags: &[&str]) {
        let refs: String = tags
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{:040x}\trefs/tags/{t}\n", i + 1))
            .collect();
        self.files
            .lock()
            .unwrap()
            .insert("/info/refs".into(), refs.into_bytes());
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Installed {
    code: i32,
    stdout: String,
    stderr: String,
    bin: PathBuf,
    github_path: String,
    cargo_calls: String,
    gh_calls: String,
}

/// What `gh attestation verify` says of the download.
#[derive(Clone, Copy, PartialEq)]
enum Gh {
    Verifies,
    Refuses,
    /// Not installed: PATH holds only the tools the script needs.
    Missing,
}

/// Run the install script as the action does, with `cargo` on PATH a stand-in that
/// records its arguments and "builds" a binary saying `built from source`, and `gh` one
/// whose attestation check passes.
fn install(work: &Path, releases: &Releases, reference: &str) -> Installed {
    install_with(work, releases, reference, Gh::Verifies, &[])
}

/// The tools the install script runs, each linked into `dir`: a PATH without `gh`.
fn tools_without_gh(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for tool in [
        "bash",
        "sed",
        "head",
        "uname",
        "mktemp",
        "curl",
        "awk",
        "sha256sum",
        "cut",
        "tr",
        "cat",
        "tar",
        "gzip",
        "mkdir",
        "install",
        "rm",
        "git",
        "sort",
        "env",
    ] {
        let found = crate::common::which(tool).unwrap_or_else(|| panic!("{tool} is missing"));
        let link = dir.join(tool);
        if !link.exists() {
            std::os::unix::fs::symlink(found, link).unwrap();
        }
    }
}

fn install_with(
    work: &Path,
    releases: &Releases,
    reference: &str,
    gh: Gh,
    env: &[(&str, &str)],
) -> Installed {
    let fake_bin = work.join("fake-bin");
    let _ = std::fs::remove_dir_all(&fake_bin);
    std::fs::create_dir_all(&fake_bin).unwrap();
    let gh_calls = work.join("gh-calls");
    let _ = std::fs::remove_file(&gh_calls);
    if gh != Gh::Missing {
        let (code, says) = match gh {
            Gh::Verifies => (0, "✓ Verification succeeded!"),
            _ => (
                1,
                "✗ Verification failed: no attestation matches the digest of the artifact",
            ),
        };
        std::fs::write(
            fake_bin.join("gh"),
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\necho '{says}'\nexit {code}\n",
                gh_calls.display()
            ),
        )
        .unwrap();
        run(Command::new("chmod").arg("+x").arg(fake_bin.join("gh")));
    }
    let calls = work.join("cargo-calls");
    std::fs::write(
        fake_bin.join("cargo"),
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\nprintf '#!/bin/sh\\necho built from source\\n' > \"$2/bin/stagegate\"\nchmod +x \"$2/bin/stagegate\"\n",
            calls.display()
        ),
    )
    .unwrap();
    run(Command::new("chmod").arg("+x").arg(fake_bin.join("cargo")));
    let dir = work.join(format!("install-{}", reference.replace('/', "_")));
    let _ = std::fs::remove_dir_all(&dir);
    let github_path = work.join("github_path");
    let _ = std::fs::remove_file(&github_path);
    let system = if gh == Gh::Missing {
        let tools = work.join("tools");
        tools_without_gh(&tools);
        tools.display().to_string()
    } else {
        std::env::var("PATH").unwrap_or_default()
    };
    let path = format!("{}:{system}", fake_bin.display());
    let out = Command::new("bash")
        .arg(root().join("scripts/install.sh"))
        .env_clear()
        .envs(env.iter().copied())
        .env("PATH", path)
        .env("HOME", work)
        .env("STAGEGATE_ACTION_PATH", root())
        .env("STAGEGATE_REF", reference)
        .env("STAGEGATE_RELEASES", &releases.url)
        .env("STAGEGATE_INSTALL_DIR", &dir)
        .env("GITHUB_PATH", &github_path)
        .output()
        .unwrap();
    Installed {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        bin: dir.join("bin/stagegate"),
        github_path: std::fs::read_to_string(&github_path).unwrap_or_default(),
        cargo_calls: std::fs::read_to_string(&calls).unwrap_or_default(),
        gh_calls: std::fs::read_to_string(&gh_calls).unwrap_or_default(),
    }
}

/// A release of this version whose binary says "stagegate from the release", built from
/// `commit`; `None` when the tools the script needs are missing (outside CI).
fn released(commit: &str) -> Option<(tempfile::TempDir, Releases, String)> {
    if !crate::common::require_tools(&["bash", "curl", "tar", "sha256sum"]) {
        return None;
    }
    let work = tempfile::tempdir().unwrap();
    let releases = Releases::start();
    let tag = format!("v{VERSION}");
    releases.publish(work.path(), &tag, "stagegate from the release", commit);
    Some((work, releases, tag))
}

#[test]
fn the_release_matching_the_actions_tag_is_installed_when_its_checksum_matches() {
    let Some((work, releases, tag)) = released("abc") else {
        return;
    };
    let r = install(work.path(), &releases, &tag);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("checksum verified"), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "stagegate from the release");
    assert_eq!(
        run(&mut Command::new(&r.bin)).trim(),
        "stagegate from the release"
    );
    assert_eq!(
        r.github_path.trim(),
        r.bin.parent().unwrap().to_str().unwrap()
    );
    assert!(r.cargo_calls.is_empty(), "nothing built: {}", r.cargo_calls);
}

#[test]
fn a_download_whose_checksum_does_not_match_is_refused() {
    let Some((work, releases, tag)) = released("abc") else {
        return;
    };
    // The asset is swapped after the sums were made.
    releases.put(
        &tag,
        &format!("stagegate-{}.tar.gz", target()),
        b"not what was released".to_vec(),
    );
    let r = install(work.path(), &releases, &tag);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("::error title=stagegate install::checksum mismatch for stagegate-"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("refusing to install it"), "{}", r.stdout);
    assert!(!r.bin.exists(), "nothing installed");
    assert!(r.cargo_calls.is_empty(), "and nothing built instead");
    assert!(r.github_path.is_empty());
}

#[test]
fn without_a_release_for_the_ref_the_action_builds_from_its_source() {
    if !crate::common::require_tools(&["bash", "curl", "tar", "sha256sum"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let releases = Releases::start();
    let tag = format!("v{VERSION}");
    let r = install(work.path(), &releases, &tag);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("no release {tag}")),
        "{}",
        r.stderr
    );
    assert_eq!(r.stdout.trim(), "built from source");
    assert_eq!(
        r.cargo_calls.trim(),
        format!(
            "install --path {} --locked --root {} --quiet",
            root().display(),
            r.bin.parent().unwrap().parent().unwrap().display()
        )
    );
    assert_eq!(
        releases.requests(),
        [format!("/releases/download/{tag}/SHA256SUMS")]
    );
}

#[test]
fn a_branch_ref_builds_from_source_without_asking_for_a_release() {
    let Some((work, releases, _)) = released("abc") else {
        return;
    };
    let r = install(work.path(), &releases, "main");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), "built from source");
    assert!(releases.requests().is_empty());
}

#[test]
fn a_sha_ref_gets_the_release_only_when_it_was_built_from_that_commit() {
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let Some((work, releases, _)) = released(commit) else {
        return;
    };
    let r = install(work.path(), &releases, commit);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), "stagegate from the release");

    let other = "89abcdef0123456789abcdef0123456789abcdef";
    let r = install(work.path(), &releases, other);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&format!("not {other}")), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "built from source");
}

#[test]
fn a_floating_major_tag_installs_the_newest_release_of_that_major() {
    let Some((work, releases, _)) = released("abc") else {
        return;
    };
    releases.publish(work.path(), "v0.9.0", "stagegate 0.9.0", "abc");
    releases.publish(work.path(), "v0.10.1", "stagegate 0.10.1", "abc");
    releases.publish(work.path(), "v1.0.0", "stagegate 1.0.0", "abc");
    // v0.11.0-rc1 is a pre-release; v0.11.0 is tagged but its release is not out yet.
    releases.tags(&[
        "v0.9.0",
        "v0.10.1",
        "v0.11.0-rc1",
        "v0.11.0",
        "v1.0.0",
        "v0.2",
        "v00",
    ]);
    let r = install(work.path(), &releases, "v0");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), "stagegate 0.10.1", "{}", r.stderr);
    assert!(r.stderr.contains("checksum verified"), "{}", r.stderr);
    assert!(r.cargo_calls.is_empty(), "nothing built: {}", r.cargo_calls);
    let asked: Vec<String> = releases
        .requests()
        .into_iter()
        .filter(|p| p.ends_with("/SHA256SUMS"))
        .collect();
    assert_eq!(
        asked,
        [
            "/releases/download/v0.11.0/SHA256SUMS",
            "/releases/download/v0.10.1/SHA256SUMS"
        ],
        "newest first, the unpublished one skipped, never v1 or a pre-release"
    );

    let r = install(work.path(), &releases, "v1");
    assert_eq!(r.stdout.trim(), "stagegate 1.0.0", "{}", r.stderr);
}

#[test]
fn a_floating_major_tag_without_a_release_builds_from_source_and_says_why() {
    let Some((work, releases, _)) = released("abc") else {
        return;
    };
    releases.tags(&["v1.0.0"]);
    let r = install(work.path(), &releases, "v0");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("no release v0.x.y"), "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "built from source");
}

#[test]
fn a_floating_major_tag_never_installs_a_release_whose_checksum_does_not_match() {
    let Some((work, releases, _)) = released("abc") else {
        return;
    };
    releases.publish(work.path(), "v0.4.0", "stagegate 0.4.0", "abc");
    releases.put(
        "v0.4.0",
        &format!("stagegate-{}.tar.gz", target()),
        b"not what was released".to_vec(),
    );
    releases.tags(&["v0.3.0", "v0.4.0"]);
    let r = install(work.path(), &releases, "v0");
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("checksum mismatch"), "{}", r.stdout);
    assert!(!r.bin.exists(), "nothing installed");
    assert!(r.cargo_calls.is_empty(), "and nothing built instead");
}

#[test]
fn the_build_provenance_is_verified_with_the_releases_bundle_where_gh_is_installed() {
    let Some((work, releases, tag)) = released("abc") else {
        return;
    };
    releases.put(&tag, "provenance.sigstore.json", b"{}".to_vec());
    let r = install(work.path(), &releases, &tag);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let dir = r.gh_calls.split_whitespace().nth(2).unwrap_or_default();
    let asset = format!("stagegate-{}.tar.gz", target());
    assert!(dir.ends_with(&format!("/{asset}")), "{}", r.gh_calls);
    let bundle = Path::new(dir).with_file_name("provenance.sigstore.json");
    assert_eq!(
        r.gh_calls.trim(),
        format!(
            "attestation verify {dir} --repo {REPO} --signer-workflow {REPO}/.github/workflows/release.yml --bundle {}",
            bundle.display()
        )
    );
    assert!(
        r.stderr.contains(&format!(
            "build provenance verified: {asset} was built by {REPO}'s release workflow"
        )),
        "{}",
        r.stderr
    );
    assert!(r.bin.exists());

    // Without a bundle among the assets, gh asks GitHub's attestation API.
    let (work, releases, tag) = released("abc").unwrap();
    let r = install(work.path(), &releases, &tag);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(!r.gh_calls.contains("--bundle"), "{}", r.gh_calls);
    assert!(
        r.gh_calls.starts_with("attestation verify "),
        "{}",
        r.gh_calls
    );
}

#[test]
fn a_download_whose_provenance_does_not_verify_is_refused_and_not_built_instead() {
    let Some((work, releases, tag)) = released("abc") else {
        return;
    };
    let r = install_with(work.path(), &releases, &tag, Gh::Refuses, &[]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "::error title=stagegate install::the build provenance of stagegate-{}.tar.gz of {tag} does not verify",
            target()
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("Verification failed"),
        "gh's own words: {}",
        r.stderr
    );
    assert!(!r.bin.exists(), "nothing installed");
    assert!(r.cargo_calls.is_empty(), "and nothing built instead");
}

#[test]
fn without_gh_the_checksum_alone_installs_unless_provenance_is_required() {
    let Some((work, releases, tag)) = released("abc") else {
        return;
    };
    let r = install_with(work.path(), &releases, &tag, Gh::Missing, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("build provenance not checked: the GitHub CLI (gh) is not installed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("checksum verified"), "{}", r.stderr);

    let r = install_with(
        work.path(),
        &releases,
        &tag,
        Gh::Missing,
        &[("STAGEGATE_PROVENANCE", "require")],
    );
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("STAGEGATE_PROVENANCE=require, but the GitHub CLI (gh) is not installed"),
        "{}",
        r.stdout
    );
    assert!(!r.bin.exists());

    // off: not even an installed gh is asked.
    let r = install_with(
        work.path(),
        &releases,
        &tag,
        Gh::Refuses,
        &[("STAGEGATE_PROVENANCE", "off")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.gh_calls.is_empty(), "{}", r.gh_calls);
}
