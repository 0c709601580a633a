//! `TestEnv`: real git repositories in temp dirs, driven through the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The stagegate binary built from this checkout.
///
/// `target/debug/stagegate` is the binary of whichever checkout built last: checkouts of
/// this repository (git worktrees) may share one target directory, and a build in any of
/// them re-links it while these tests run. Each checkout's own build is kept as
/// `deps/stagegate-HASH`, which holds the checkout's path (the compilation directory in its
/// debug info); the newest such that is not a test harness is ours. The choice is cached per build of the tests.
pub fn stagegate_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_bin).clone()
}

fn find_bin() -> PathBuf {
    let linked = assert_cmd::cargo::cargo_bin("stagegate");
    let Some(deps) = linked.parent().map(|d| d.join("deps")) else {
        return linked;
    };
    let me = std::env::current_exe().unwrap();
    let stamp = std::fs::metadata(&me)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    // A directory per build of the tests, holding `stagegate` (a link to the binary), so
    // a test can also put it on PATH.
    let cache = std::env::temp_dir().join(format!(
        "stagegate-bin-{}-{stamp}",
        me.file_name().unwrap().to_string_lossy()
    ));
    let link = cache.join("stagegate");
    if link.is_file() {
        return link;
    }
    let needle = format!("{}\0", env!("CARGO_MANIFEST_DIR"));
    let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("stagegate-")
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    let found = candidates.into_iter().map(|(_, p)| p).find(|p| {
        // Ours, and not the test harness of `src/main.rs` (also deps/stagegate-HASH).
        std::fs::read(p).is_ok_and(|bytes| {
            memchr::memmem::find(&bytes, needle.as_bytes()).is_some()
                && memchr::memmem::find(&bytes, b"RUST_TEST_THREADS").is_none()
        })
    });
    let Some(found) = found else {
        return linked;
    };
    let _ = std::fs::create_dir_all(&cache);
    // Another test process may have made the link meanwhile: the same one.
    let _ = std::os::unix::fs::symlink(&found, &link);
    if link.is_file() { link } else { found }
}

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    /// The state repository (created by `init_example` or `init_empty`).
    pub repo: PathBuf,
}

/// The environment every subprocess gets: a fixed identity, no user or system git config.
pub fn base_env(cmd: &mut Command, home: &Path) {
    cmd.env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_GLOBAL", home.join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        // A temporary directory of the test's own: the runner keeps checkouts there from
        // one run to the next (a pool per user), and tests must not share them.
        .env("TMPDIR", own_tmp(home))
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITLAB_CI")
        .env_remove("GITLAB_TOKEN")
        .env_remove("STAGEGATE_GITLAB_TOKEN")
        .env_remove("STAGEGATE_OCI_TOKEN")
        .env_remove("STAGEGATE_OCI_USERNAME")
        .env_remove("STAGEGATE_OCI_PASSWORD")
        .env_remove("STAGEGATE_REMOTE")
        .env_remove("STAGEGATE_REPORT_URL");
}

/// `home/tmp`, made if missing.
fn own_tmp(home: &Path) -> PathBuf {
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp).expect("a temporary directory in the test's home");
    tmp
}

/// Whether this is a CI run (`CI` set to anything but empty, `false` or `0`), where
/// `.ci/run` has installed every tool the tests need.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Where `name` is: on PATH, or in /usr/sbin or /sbin (where Debian keeps `mke2fs`).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The path of an external tool a test needs, or `None` when it is missing and the test may
/// be skipped. Under `CI=true` (where `.ci/run` installs every such tool) a missing tool is a
/// failure, never a silent skip: a test that skipped in CI tested nothing.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = which(name);
    if found.is_none() {
        assert!(
            !in_ci(),
            "{name} is not installed, and CI is set: `.ci/run` must install it"
        );
        eprintln!("NOTICE: {name} is not installed; skipping (`.ci/run` installs it)");
    }
    found
}

/// Whether every one of `tools` is installed (see `require_tool`: under CI a missing one fails
/// the test).
pub fn require_tools(tools: &[&str]) -> bool {
    tools.iter().all(|t| require_tool(t).is_some())
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let tmp = tempfile::Builder::new()
            .prefix("stagegate-test-")
            .tempdir()
            .unwrap();
        std::fs::write(
            tmp.path().join("gitconfig"),
            "[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n",
        )
        .unwrap();
        let repo = tmp.path().join("state");
        TestEnv { tmp, repo }
    }

    /// A state repository made by `stagegate init`: the example pending on `new`.
    pub fn init_example() -> TestEnv {
        let env = TestEnv::new();
        env.sg_ok(&["init", env.repo.to_str().unwrap(), "--example"]);
        env
    }

    pub fn home(&self) -> &Path {
        self.tmp.path()
    }

    /// `stagegate -C <repo> ARGS`.
    pub fn sg_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(stagegate_bin());
        base_env(&mut cmd, self.home());
        cmd.arg("-C").arg(&self.repo).args(args);
        cmd
    }

    pub fn sg(&self, args: &[&str]) -> Output {
        self.sg_cmd(args).output().unwrap()
    }

    /// Run stagegate and require exit code 0; returns stdout.
    pub fn sg_ok(&self, args: &[&str]) -> String {
        let out = self.sg(args);
        assert!(
            out.status.success(),
            "stagegate {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run stagegate and require the exit code; returns (stdout, stderr).
    pub fn sg_code(&self, code: i32, args: &[&str]) -> (String, String) {
        let out = self.sg(args);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "stagegate {args:?}\nstdout:\n{o}\nstderr:\n{e}"
        );
        (o, e)
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.sg_ok(args)).unwrap()
    }

    /// `git -C <dir> ARGS`, required to succeed; returns trimmed stdout.
    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        base_env(&mut cmd, self.home());
        let out = cmd.arg("-C").arg(dir).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `git ARGS` in the repository with `input` on stdin; returns trimmed stdout.
    pub fn git_stdin_bytes(&self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write;
        let mut cmd = Command::new("git");
        base_env(&mut cmd, self.home());
        let mut child = cmd
            .arg("-C")
            .arg(&self.repo)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn git_stdin(&self, args: &[&str], input: &str) -> String {
        self.git_stdin_bytes(args, input.as_bytes())
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.repo, args)
    }

    pub fn write(&self, path: &str, content: &str) {
        let full = self.repo.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    pub fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.repo.join(path)).unwrap()
    }

    /// Switch the work tree to `branch`, write files, commit them all; returns the commit id.
    pub fn commit_on(&self, branch: &str, message: &str, files: &[(&str, &str)]) -> String {
        self.git(&["checkout", "-q", branch]);
        for (p, c) in files {
            self.write(p, c);
        }
        self.git(&["add", "-A"]);
        self.git(&[
            "commit",
            "-q",
            "--no-verify",
            "--allow-empty",
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// A bare clone of the state repository at `<home>/<name>`, e.g. a remote to push to.
    pub fn bare_clone(&self, name: &str) -> PathBuf {
        let path = self.home().join(name);
        self.git(&[
            "clone",
            "-q",
            "--bare",
            self.repo.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        path
    }

    /// Another machine: a clone of `origin` at `<home>/<name>` (with a home of its own),
    /// e.g. a CI checkout or a second runner.
    pub fn clone_of(&self, origin: &Path, name: &str) -> TestEnv {
        let dir = self.home().join(name);
        self.git(&[
            "clone",
            "-q",
            origin.to_str().unwrap(),
            dir.to_str().unwrap(),
        ]);
        TestEnv {
            tmp: tempfile::tempdir().unwrap(),
            repo: dir,
        }
    }

    /// Install an executable hook `name` in the git directory `git_dir`.
    pub fn write_hook(&self, git_dir: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = git_dir.join("hooks").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn rev(&self, rev: &str) -> String {
        self.git(&["rev-parse", rev])
    }

    /// Replace `from` by `to` in a file of the work tree.
    pub fn edit(&self, path: &str, from: &str, to: &str) {
        let text = self.read(path);
        assert!(text.contains(from), "{path} does not contain {from:?}");
        self.write(path, &text.replacen(from, to, 1));
    }
}

/// A minimal pipeline for tests that need no real images: two stages, shell tests.
pub const MINI_PIPELINE: &str =
    "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true}\n";

pub fn item(kind_dir: &str, name: &str, version: &str) -> (String, String) {
    (
        format!("{kind_dir}/{name}.yaml"),
        format!("name: {name}\nversion: \"{version}\"\n"),
    )
}

impl TestEnv {
    /// A two-stage repository (`staging` → `stable`) whose first commit is on both stages:
    /// `files` plus the mini pipeline. HEAD is on `staging`.
    pub fn init_with(files: &[(&str, &str)]) -> TestEnv {
        let env = TestEnv::new();
        std::fs::create_dir_all(&env.repo).unwrap();
        env.git(&["init", "-q", "-b", "staging"]);
        env.write("stagegate.yaml", MINI_PIPELINE);
        for (p, c) in files {
            env.write(p, c);
        }
        env.git(&["add", "-A"]);
        env.git(&["commit", "-q", "-m", "start"]);
        env.git(&["branch", "stable"]);
        env
    }
}

/// Whether a path of the results ledger holds a result (`K[0..2]/K[2..4]/K/…`), not one of
/// the facts recorded beside them (decisions, first sightings, overrides).
pub fn is_result_path(path: &str) -> bool {
    path.split('/')
        .next()
        .is_some_and(|d| d.len() == 2 && d.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Snapshot `text` (from `env`) with what changes from run to run filtered out: the
/// repository's path, the host, log paths, times, job keys and short hashes, then any
/// `extra` (regex, replacement) filters a file needs.
macro_rules! assert_filtered {
    ($env:expr, $name:expr, $text:expr $(, $extra:expr)* $(,)?) => {{
        let text = $text
            .replace($env.repo.to_str().unwrap(), "[repo]")
            .replace(&stagegate::ledger::hostname(), "[host]");
        let mut filters: Vec<(&str, &str)> = vec![
            (r"\.git/stagegate/logs/\S+", ".git/stagegate/logs/[log]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[time]"),
            (r"\b[0-9a-f]{12}\b", "[key]"),
            (r"\b[0-9a-f]{10}\b", "[hash]"),
        ];
        filters.extend([$($extra),*]);
        insta::with_settings!({filters => filters}, {
            insta::assert_snapshot!($name, text);
        })
    }};
}
pub(crate) use assert_filtered;
