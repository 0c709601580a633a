//! Sharing the ledger through a remote: fetch before reading, push safely after writing.
//!
//! The ledger is shared by union: two ledgers that diverged are merged by a commit whose
//! tree holds every path of both (paths are unique per writer, so they never collide).
//! Pushing uses `--force-with-lease` on the value we last fetched, so a concurrent push is
//! never overwritten: on rejection we fetch, merge and try again.

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::repo::{Cas, Repo, remote};

/// Where a remote's ledger is fetched to.
pub use crate::repo::remote::tracking_ref;

/// Push the ledger when the repository publishes to a remote; nothing to do otherwise.
pub fn publish(repo: &Repo, reference: &str) -> Result<()> {
    match repo.publishing() {
        Some(remote) => push(repo, remote, reference),
        None => Ok(()),
    }
}

fn run_dir(repo: &Repo) -> &std::path::Path {
    repo.git_dir()
}

/// Fetch the remote's ledger and merge it into the local one. A remote without a ledger is fine.
pub fn fetch(repo: &Repo, remote_name: &str, reference: &str) -> Result<()> {
    let tracking = tracking_ref(remote_name, reference);
    let exists = remote::git(run_dir(repo), &["ls-remote", "--", remote_name, reference])?;
    if exists.trim().is_empty() {
        return Ok(());
    }
    remote::git(
        run_dir(repo),
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            remote_name,
            &format!("+{reference}:{tracking}"),
        ],
    )?;
    let theirs = repo.ref_target(&tracking)?;
    if let Some(theirs) = theirs {
        merge_into(repo, reference, theirs)?;
    }
    Ok(())
}

/// Make `reference` contain `theirs`: fast-forward, or a union merge commit.
pub fn merge_into(repo: &Repo, reference: &str, theirs: ObjectId) -> Result<()> {
    for _ in 0..20 {
        let ours = repo.ref_target(reference)?;
        let new = match ours {
            None => theirs,
            Some(o) if repo.is_ancestor(theirs, o)? => return Ok(()),
            Some(o) if repo.is_ancestor(o, theirs)? => theirs,
            Some(o) => {
                let tree = union(repo, repo.tree_of(o)?, repo.tree_of(theirs)?)?;
                repo.write_commit(tree, &[o, theirs], "stagegate: merge results from remote")?
            }
        };
        if repo.cas(reference, ours, new, "stagegate: merge remote results")? == Cas::Updated {
            return Ok(());
        }
    }
    Err(Error::infra(format!(
        "{reference} kept moving while merging remote results; try again"
    )))
}

/// A tree holding every path of `a` and `b` (`a`'s blob wins on the impossible clash).
fn union(repo: &Repo, a: ObjectId, b: ObjectId) -> Result<ObjectId> {
    if a == b {
        return Ok(a);
    }
    let ea: std::collections::HashMap<String, crate::repo::Entry> = repo
        .tree_entries(a)?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    let mut edits = Vec::new();
    for e in repo.tree_entries(b)? {
        match ea.get(&e.name) {
            None => edits.push((e.name.clone(), Some((e.kind, e.id)))),
            Some(x) if x.id == e.id => {}
            Some(x) if x.kind == EntryKind::Tree && e.kind == EntryKind::Tree => {
                edits.push((
                    e.name.clone(),
                    Some((EntryKind::Tree, union(repo, x.id, e.id)?)),
                ));
            }
            Some(_) => {}
        }
    }
    repo.edit_tree(a, &edits)
}

/// Push the local ledger: lease on what we fetched; on rejection fetch, merge, retry.
pub fn push(repo: &Repo, remote_name: &str, reference: &str) -> Result<()> {
    let tracking = tracking_ref(remote_name, reference);
    let mut raced = 0;
    for _ in 0..10 + remote::RACE_TRIES {
        let Some(local) = repo.ref_target(reference)? else {
            return Ok(());
        };
        let lease = match repo.ref_target(&tracking)? {
            Some(t) => format!("--force-with-lease={reference}:{t}"),
            None => format!("--force-with-lease={reference}:"),
        };
        let pushed = remote::git(
            run_dir(repo),
            &[
                "push",
                "--quiet",
                "--porcelain",
                &lease,
                remote_name,
                &format!("{local}:{reference}"),
            ],
        );
        match pushed {
            Ok(_) => {
                repo.cas(
                    &tracking,
                    repo.ref_target(&tracking)?,
                    local,
                    "stagegate: pushed results",
                )?;
                return Ok(());
            }
            Err(e) => {
                // A lost race moved the remote's ledger: merge it and try again. A push
                // refused while the remote stayed where it was will be refused again.
                let before = repo.ref_target(&tracking)?;
                fetch(repo, remote_name, reference)?;
                if repo.ref_target(&tracking)? == before {
                    // The winner's push may still hold the remote's ref: wait and retry.
                    if remote::lost_race(&e.to_string()) && raced < remote::RACE_TRIES {
                        remote::race_pause(raced);
                        raced += 1;
                        continue;
                    }
                    return Err(Error::infra_help(
                        format!("{remote_name} refused the results: {e}"),
                        "the results are safe locally; run the command again to retry the push",
                    ));
                }
            }
        }
    }
    Err(Error::infra_help(
        format!("could not push {reference} to {remote_name}: it kept moving"),
        "the results are safe locally; run the command again to retry the push",
    ))
}
