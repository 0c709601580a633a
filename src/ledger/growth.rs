//! The ledger only grows: what the pre-receive hook checks of a push to the ledger ref.
//!
//! Every fact the gate weighs (results, rejections, first sightings, overrides) is a path
//! added to the ledger, and every promotion names the ledger commit it rests on. A push that
//! deletes the ref, moves it to a commit that does not contain the old tip, or brings a
//! commit that changes or removes a path one of its parents holds would take evidence away
//! from decisions already made: each is refused. Stagegate itself only ever adds paths
//! ([`super::Ledger::record`], [`super::Ledger::put_new`]) and merges ledgers by union
//! ([`super::sync`]), so a ledger it wrote always passes.
//!
//! Nothing here writes or prints; the hook says what was refused.

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Context, Result};
use crate::repo::Repo;

fn short(id: ObjectId) -> String {
    id.to_hex_with_len(crate::keys::COMMIT_DIGITS).to_string()
}

/// At most this many rewritten paths are named per push (the first ones are enough to act).
const NAMED: usize = 5;

/// Why moving the ledger ref `reference` from `old` to `new` (`None`: created, deleted) is
/// not growth; empty when the push only adds records.
pub fn problems(
    repo: &Repo,
    reference: &str,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<String>> {
    let Some(old) = old else {
        // A new ledger holds nothing yet that a decision could rest on.
        return Ok(Vec::new());
    };
    let Some(new) = new else {
        return Ok(vec![format!(
            "refusing to delete the results ledger {reference} (at {}): decisions rest on its records; the ledger only grows",
            short(old)
        )]);
    };
    if !repo.is_ancestor(old, new)? {
        return Ok(vec![format!(
            "refusing to rewind the results ledger {reference}: {} does not contain its tip {}; the ledger only grows: fetch it, let stagegate merge it into yours (any command with --remote does), and push again without --force",
            short(new),
            short(old)
        )]);
    }
    let mut out = Vec::new();
    let walk = repo
        .git
        .rev_walk([new])
        .with_hidden([old])
        .all()
        .context(|| format!("walking {reference} from {} to {}", short(old), short(new)))?;
    for info in walk {
        let info = info.context(|| format!("walking {reference}"))?;
        let commit = repo.commit(info.id)?;
        for parent in &commit.parents {
            let mut lost = Vec::new();
            lost_paths(repo, repo.tree_of(*parent)?, commit.tree, "", &mut lost)?;
            for (path, how) in lost {
                if out.len() >= NAMED {
                    out.push(format!("… and more in {reference}"));
                    return Ok(out);
                }
                out.push(format!(
                    "refusing ledger commit {} on {reference}: it {how} {path}; a ledger commit only adds records, it never changes or removes one",
                    short(info.id)
                ));
            }
        }
    }
    Ok(out)
}

/// The paths of tree `old` that tree `new` does not hold unchanged, with how (`removes`,
/// `rewrites`); subtrees with the same id are skipped, so this reads only what changed.
fn lost_paths(
    repo: &Repo,
    old: ObjectId,
    new: ObjectId,
    prefix: &str,
    out: &mut Vec<(String, &'static str)>,
) -> Result<()> {
    if old == new || out.len() > NAMED {
        return Ok(());
    }
    let theirs: std::collections::HashMap<String, crate::repo::Entry> = repo
        .tree_entries(new)?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    for e in repo.tree_entries(old)? {
        let path = format!("{prefix}{}", e.name);
        match theirs.get(&e.name) {
            None if e.kind == EntryKind::Tree => {
                out.push((format!("{path}/ (every record under it)"), "removes"))
            }
            None => out.push((path, "removes")),
            Some(n) if n.id == e.id && n.kind == e.kind => {}
            Some(n) if n.kind == EntryKind::Tree && e.kind == EntryKind::Tree => {
                lost_paths(repo, e.id, n.id, &format!("{path}/"), out)?;
            }
            Some(_) => out.push((path, "rewrites")),
        }
    }
    Ok(())
}
