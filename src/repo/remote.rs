//! The few operations gix cannot do yet, done by the `git` binary: push, fetch, ls-remote;
//! and publishing: once a command named a remote ([`super::Repo::publish_to`]), every
//! branch stagegate writes is first brought up to the remote's head ([`follow`]) and then
//! pushed ([`publish_branch`]), so no runner keeps a stage commit to itself.
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

/// Before stagegate moves `branch` from `old` to `new`: when the work tree has that branch
/// checked out and could not follow the move (`git read-tree -m -u` would refuse: a file
/// the move changes has uncommitted changes), refuse, so nothing moves. Moving anyway
/// would leave the index and work tree at `old`, staging a revert of the new commit that
/// the next `git commit -a` makes. Uncommitted changes to other files are fine: they are
/// kept when the work tree follows ([`sync_worktree`]).
pub fn can_sync_worktree(
    repo: &super::Repo,
    branch: &str,
    old: gix::ObjectId,
    new: gix::ObjectId,
) -> Result<()> {
    let Some(work) = repo.work_dir() else {
        return Ok(());
    };
    if !has_checked_out(repo, branch) {
        return Ok(());
    }
    let _ = git(work, &["update-index", "-q", "--refresh"]);
    if git(
        work,
        &[
            "read-tree",
            "-n",
            "-m",
            "-u",
            &old.to_string(),
            &new.to_string(),
        ],
    )
    .is_ok()
    {
        return Ok(());
    }
    // The files the move changes that have uncommitted changes (staged or not).
    let changed = git(
        work,
        &[
            "diff",
            "--name-only",
            "--no-renames",
            &old.to_string(),
            &new.to_string(),
        ],
    )
    .unwrap_or_default();
    let changed: Vec<&str> = changed.lines().collect();
    let mut args = vec!["status", "--porcelain=v1", "--no-renames", "-z", "--"];
    args.extend(changed.iter().copied());
    let dirty: Vec<String> = git(work, &args)
        .unwrap_or_default()
        .split('\0')
        .filter_map(|l| l.get(3..))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let files = if dirty.is_empty() {
        "files it changes".to_string()
    } else {
        dirty.join(", ")
    };
    Err(Error::usage_help(
        format!(
            "{branch} is checked out in {} with uncommitted changes to {files}, which this \
             command would change too: nothing was changed",
            work.display()
        ),
        "commit them (`git commit`) or set them aside (`git stash`), then run the command again",
    ))
}

/// The work tree's uncommitted changes that stagegate does not see (it reads commits):
/// every changed tracked file, and untracked files in the manifest directories and the
/// pipeline file (other untracked files are build output more often than content).
/// Empty without a work tree, or when git cannot tell.
pub fn uncommitted(repo: &super::Repo) -> Vec<String> {
    let Some(work) = repo.work_dir() else {
        return Vec::new();
    };
    let out = git(
        work,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--no-renames",
            "--untracked-files=normal",
        ],
    )
    .unwrap_or_default();
    let manifests = ["stagegate.yaml", "images/", "components/", "tests/"];
    out.split('\0')
        .filter_map(|l| Some((l.get(..2)?, l.get(3..)?)))
        .filter(|(xy, path)| {
            !path.is_empty()
                && (*xy != "??"
                    || manifests
                        .iter()
                        .any(|m| path.starts_with(m) || m.starts_with(path)))
        })
        .map(|(_, path)| path.to_string())
        .collect()
}

/// Whether the work tree has `branch` checked out.
fn has_checked_out(repo: &super::Repo, branch: &str) -> bool {
    let head = repo.git.head_name().ok().flatten();
    head.as_ref().map(|h| h.as_bstr().to_string()) == Some(format!("refs/heads/{branch}"))
}

/// After stagegate moved `branch` from `old` to `new`: if the work tree has that branch
/// checked out, bring the index and work tree along (`git read-tree -m -u`, which refuses
/// to overwrite local changes). Best effort: a refusal leaves the work tree as it was and
/// says how to catch up.
pub fn sync_worktree(repo: &super::Repo, branch: &str, old: gix::ObjectId, new: gix::ObjectId) {
    let Some(work) = repo.work_dir() else { return };
    if !has_checked_out(repo, branch) {
        return;
    }
    // Refresh stat data first: an index written from a tree alone looks modified to git.
    let _ = git(work, &["update-index", "-q", "--refresh"]);
    if let Err(e) = git(
        work,
        &["read-tree", "-m", "-u", &old.to_string(), &new.to_string()],
    ) {
        crate::error::warn(format!(
            "{branch} moved to {new}, but the work tree could not follow: {e}\n  help: commit or stash your changes, then run `git reset --keep {branch}`"
        ));
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
        let said = e.to_string();
        if said.contains("refusing to update checked out branch")
            || said.contains("branch is currently checked out")
        {
            // git's receive.denyCurrentBranch: no fetch and no retry changes that.
            return Error::infra_help(
                format!(
                    "pushing {branch} to {remote} was refused: {CHECKED_OUT} \
                     (git's receive.denyCurrentBranch)"
                ),
                format!(
                    "make {remote} a bare repository (`git clone --bare`), check out another \
                     branch there, or let pushes update its work tree: \
                     `git -C REMOTE-DIR config receive.denyCurrentBranch updateInstead`"
                ),
            );
        }
        Error::infra_help(
            format!("pushing {branch} to {remote} was rejected: {e}"),
            format!(
                "someone else updated {branch} on {remote}; fetch it, then run the command again"
            ),
        )
    })?;
    Ok(())
}

/// How a push refused because the remote has the branch checked out is explained.
const CHECKED_OUT: &str = "the remote is a repository with a work tree that has this branch checked out, and git does not move a checked-out branch by push";

/// Whether `e` is a refused push that trying again cannot fix (the remote has the branch
/// checked out), so a caller rebuilding on the remote's head stops at once.
pub fn refused_for_good(e: &Error) -> bool {
    e.to_string().contains(CHECKED_OUT)
}

/// Where a remote's `reference` is fetched to: `refs/stagegate-remotes/<remote>/<ref tail>`.
pub fn tracking_ref(remote: &str, reference: &str) -> String {
    let tail = reference.strip_prefix("refs/").unwrap_or(reference);
    format!("refs/stagegate-remotes/{remote}/{tail}")
}

/// Fetch `branches` from `remote` and bring each local branch up to it: created when
/// missing, fast-forwarded when behind (a work tree on it follows), left alone when ahead
/// (its new commits are pushed by the next write). A branch that diverged from the remote
/// is an error: stagegate never picks one side's commits over the other's.
pub fn follow(repo: &super::Repo, remote: &str, branches: &[&str]) -> Result<()> {
    let mut specs = Vec::new();
    let listed = git(repo.git_dir(), &["ls-remote", "--heads", "--", remote])?;
    let present: std::collections::HashSet<&str> = listed
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, name)| name))
        .collect();
    for b in branches {
        let full = format!("refs/heads/{b}");
        if present.contains(full.as_str()) {
            specs.push(format!("+{full}:{}", tracking_ref(remote, &full)));
        }
    }
    if specs.is_empty() {
        return Ok(());
    }
    let mut args = vec!["fetch", "--quiet", "--no-tags", "--", remote];
    args.extend(specs.iter().map(String::as_str));
    git(repo.git_dir(), &args)?;
    for b in branches {
        let full = format!("refs/heads/{b}");
        let Some(theirs) = repo.ref_target(&tracking_ref(remote, &full))? else {
            continue;
        };
        let ours = repo.ref_target(&full)?;
        let moved = match ours {
            None => repo.cas(&full, None, theirs, "stagegate: from the remote")?,
            Some(o) if o == theirs || repo.is_ancestor(theirs, o)? => continue,
            Some(o) if repo.is_ancestor(o, theirs)? => {
                let moved = repo.cas(
                    &full,
                    Some(o),
                    theirs,
                    "stagegate: fast-forward to the remote",
                )?;
                if moved == super::Cas::Updated {
                    sync_worktree(repo, b, o, theirs);
                }
                moved
            }
            Some(o) => {
                return Err(Error::infra_help(
                    format!(
                        "branch {b} has diverged from {remote}/{b}: here {}, there {}",
                        o.to_hex_with_len(crate::keys::LONG_COMMIT_DIGITS),
                        theirs.to_hex_with_len(crate::keys::LONG_COMMIT_DIGITS)
                    ),
                    format!(
                        "keep one side: `git rebase {remote}/{b} {b}` to keep both, or `git branch -f {b} {remote}/{b}` to drop the local commits"
                    ),
                ));
            }
        };
        if moved != super::Cas::Updated {
            return Err(Error::infra(format!(
                "branch {b} moved while following {remote}; try again"
            )));
        }
    }
    Ok(())
}

/// Push `branch` when the repository publishes to a remote (a fast-forward, never forced);
/// nothing to do otherwise.
pub fn publish_branch(repo: &super::Repo, branch: &str) -> Result<()> {
    let Some(remote) = repo.publishing() else {
        return Ok(());
    };
    push_branch(repo.git_dir(), remote, branch)?;
    let full = format!("refs/heads/{branch}");
    if let Some(id) = repo.ref_target(&full)? {
        let tracking = tracking_ref(remote, &full);
        repo.cas(
            &tracking,
            repo.ref_target(&tracking)?,
            id,
            "stagegate: pushed",
        )?;
    }
    Ok(())
}

/// Whether `commit` is on the remote's `branch` (as last fetched or pushed), so a forge
/// can see it; always true when nothing is published.
pub fn is_published(repo: &super::Repo, commit: gix::ObjectId, branch: &str) -> Result<bool> {
    let Some(remote) = repo.publishing() else {
        return Ok(true);
    };
    match repo.ref_target(&tracking_ref(remote, &format!("refs/heads/{branch}")))? {
        Some(tip) => repo.is_ancestor(commit, tip),
        None => Ok(false),
    }
}

/// How publishing a stage branch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The remote's branch is now ours (or nothing is published).
    Pushed,
    /// The remote's branch had moved on from where the promotion started (another runner
    /// promoted first): the local branch now follows it, at `remote_head`, and the local
    /// promotion is dropped, to be planned again on top.
    Followed {
        remote: String,
        remote_head: gix::ObjectId,
    },
}

/// Publish `branch` (a fast-forward push to the publishing remote). When the remote refuses
/// it, the local branch is never left diverged: if the remote's branch moved on from `base`
/// (the promotion's parent: another runner promoted first), the local branch follows it;
/// otherwise the promotion is taken back to `base` and the refusal returned. Either way
/// only the local promotion commit is dropped; results live on the ledger, merged, never
/// reset.
pub fn publish_or_follow(
    repo: &super::Repo,
    branch: &str,
    base: Option<gix::ObjectId>,
) -> Result<Pushed> {
    let Some(remote) = repo.publishing().map(str::to_string) else {
        return Ok(Pushed::Pushed);
    };
    let full = format!("refs/heads/{branch}");
    let tracking = tracking_ref(&remote, &full);
    let mut tries = 0;
    let refused = loop {
        let refused = match publish_branch(repo, branch) {
            Ok(()) => return Ok(Pushed::Pushed),
            Err(e) => e,
        };
        let Some(ours) = repo.ref_target(&full)? else {
            return Err(refused);
        };
        let fetched = git(
            repo.git_dir(),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--",
                &remote,
                &format!("+{full}:{tracking}"),
            ],
        );
        let theirs = match fetched {
            Ok(_) => repo.ref_target(&tracking)?,
            Err(_) => None,
        };
        if let (Some(theirs), Some(base)) = (theirs, base)
            && theirs != ours
            && theirs != base
            && repo.is_ancestor(base, theirs)?
            && repo.is_ancestor(base, ours)?
            && repo.cas(
                &full,
                Some(ours),
                theirs,
                "stagegate: follow the remote after a refused push",
            )? == super::Cas::Updated
        {
            sync_worktree(repo, branch, ours, theirs);
            return Ok(Pushed::Followed {
                remote,
                remote_head: theirs,
            });
        }
        // The winner's push may still be in flight (the remote's ref locked, not yet
        // moved): wait for it and try again, then follow it.
        if !lost_race(&refused.to_string()) || tries >= RACE_TRIES {
            break refused;
        }
        race_pause(tries);
        tries += 1;
    };
    if let Some(base) = base
        && let Some(ours) = repo.ref_target(&full)?
        && repo.cas(
            &full,
            Some(ours),
            base,
            "stagegate: promotion refused by the remote",
        )? == super::Cas::Updated
    {
        sync_worktree(repo, branch, ours, base);
    }
    Err(refused)
}

/// Publish `branch` when the remote's copy may be pushed by another runner at the same
/// moment with the same commits (S's branch, whose head a promotion tested): a refusal that
/// is a lost race is retried, and is no refusal once the remote's branch holds our head.
pub fn publish_shared(repo: &super::Repo, branch: &str) -> Result<()> {
    let Some(remote) = repo.publishing().map(str::to_string) else {
        return Ok(());
    };
    let full = format!("refs/heads/{branch}");
    let tracking = tracking_ref(&remote, &full);
    let mut tries = 0;
    loop {
        let refused = match publish_branch(repo, branch) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if !lost_race(&refused.to_string()) || tries >= RACE_TRIES {
            return Err(refused);
        }
        let fetched = git(
            repo.git_dir(),
            &[
                "fetch",
                "--quiet",
                "--no-tags",
                "--",
                &remote,
                &format!("+{full}:{tracking}"),
            ],
        );
        if let (Ok(_), Some(ours), Some(theirs)) = (
            fetched,
            repo.ref_target(&full)?,
            repo.ref_target(&tracking)?,
        ) && repo.is_ancestor(ours, theirs)?
        {
            return Ok(());
        }
        race_pause(tries);
        tries += 1;
    }
}

/// How many times a push that lost a race is tried again before its refusal stands.
pub const RACE_TRIES: u32 = 6;

/// Whether git's refusal of a push says another writer got there first, or is getting
/// there at this moment, in any of the forms git gives it: the remote's ref moved ("fetch
/// first", "non-fast-forward", a lease's "stale info", "incorrect old value", "but
/// expected"), or its lock was held by the winner's push ("cannot lock ref", "failed to
/// update ref", "unable to create …lock"). A hook's refusal is not a race, whatever the
/// hook said.
pub fn lost_race(refusal: &str) -> bool {
    const FORMS: [&str; 9] = [
        "fetch first",
        "non-fast-forward",
        "stale info",
        "incorrect old value",
        "but expected",
        "cannot lock ref",
        "failed to update ref",
        "failed to lock",
        "unable to create",
    ];
    let text = refusal.to_ascii_lowercase();
    !text.contains("hook declined") && FORMS.iter().any(|f| text.contains(f))
}

/// The pause before try `attempt` (0, 1, …) of a push that lost a race: 100 ms doubling
/// up to 1.6 s (about 5 s over [`RACE_TRIES`]), spread by process so two losers do not
/// collide again.
pub fn race_pause(attempt: u32) {
    let base = 100u64 << attempt.min(4);
    let jitter = u64::from(std::process::id()) % 50;
    std::thread::sleep(std::time::Duration::from_millis(base + jitter));
}

#[cfg(test)]
mod tests {
    use super::lost_race;

    #[test]
    fn every_form_of_a_lost_race_is_one_and_a_hook_refusal_is_not() {
        for refusal in [
            " ! [rejected]        stable -> stable (fetch first)",
            " ! [rejected]        stable -> stable (non-fast-forward)",
            " ! [rejected]        refs/stagegate/results (stale info)",
            "error: cannot lock ref 'refs/heads/stable': is at 1234 but expected 5678",
            " ! [remote rejected] stable -> stable (failed to update ref)",
            "error: Unable to create '/srv/state.git/refs/heads/stable.lock': File exists.",
            " ! [remote rejected] stable -> stable (incorrect old value provided)",
        ] {
            assert!(lost_race(refusal), "{refusal}");
        }
        assert!(!lost_race(
            " ! [remote rejected] stable -> stable (pre-receive hook declined)"
        ));
        assert!(!lost_race("fatal: could not read from remote repository"));
    }
}
