//! The few operations gix cannot do yet, done by the `git` binary: push, fetch, ls-remote.
//!
//! Every call passes arguments as a vector (never through a shell) and turns a failure
//! into an infrastructure error that quotes git's own message.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// Run `git -C dir ARGS`, returning stdout; a non-zero exit is an infrastructure error.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| {
            Error::infra_help(
                format!("cannot run git: {e}"),
                "install git and put it on PATH",
            )
        })?;
    if !out.status.success() {
        return Err(Error::infra(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit a remote's branch points to (`git ls-remote`), or `None` when it has no such branch.
pub fn ls_remote(dir: &Path, url: &str, branch: &str) -> Result<Option<String>> {
    let full = format!("refs/heads/{branch}");
    let out = git(dir, &["ls-remote", "--", url, &full])?;
    Ok(out.lines().find_map(|l| {
        let (id, name) = l.split_once('\t')?;
        (name == full).then(|| id.to_string())
    }))
}
