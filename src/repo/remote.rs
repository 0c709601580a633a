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

/// After stagegate moved `branch` from `old` to `new`: if the work tree has that branch
/// checked out, bring the index and work tree along (`git read-tree -m -u`, which refuses
/// to overwrite local changes). Best effort: a refusal leaves the work tree as it was and
/// says how to catch up.
pub fn sync_worktree(repo: &super::Repo, branch: &str, old: gix::ObjectId, new: gix::ObjectId) {
    let Some(work) = repo.work_dir() else { return };
    let head = repo.git.head_name().ok().flatten();
    if head.as_ref().map(|h| h.as_bstr().to_string()) != Some(format!("refs/heads/{branch}")) {
        return;
    }
    // Refresh stat data first: an index written from a tree alone looks modified to git.
    let _ = git(work, &["update-index", "-q", "--refresh"]);
    if let Err(e) = git(
        work,
        &["read-tree", "-m", "-u", &old.to_string(), &new.to_string()],
    ) {
        eprintln!("warning: {branch} moved to {new}, but the work tree could not follow: {e}");
        eprintln!("  help: commit or stash your changes, then run `git reset --keep {branch}`");
    }
}

/// Push `branch` to `remote` as a fast-forward only (no force of any kind): promotions
/// only ever add merge commits on top, so a rejection means someone else moved the branch.
pub fn push_branch(git_dir: &Path, remote: &str, branch: &str) -> Result<()> {
    let full = format!("refs/heads/{branch}");
    git(
        git_dir,
        &["push", "--quiet", remote, &format!("{full}:{full}")],
    )
    .map_err(|e| {
        Error::infra_help(
            format!("pushing {branch} to {remote} was rejected: {e}"),
            format!(
                "someone else updated {branch} on {remote}; fetch it, then run the command again"
            ),
        )
    })?;
    Ok(())
}
