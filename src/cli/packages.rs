//! Package changes of an image between two builds, for `why` and `diff`: the first thing
//! a tester asks when a point release or a weekly rebuild breaks something.
//!
//! The locks come from what stagegate recorded: a stage's build record
//! (`.stagegate/built/…`, written on promotion) or, for a candidate not yet promoted, the
//! result of its build job in the ledger. The comparison itself is [`crate::lockdiff`].

use serde::Serialize;

use crate::error::Result;
use crate::gate::{JobState, JobVerdict};
use crate::ledger::LedgerView;
use crate::lockdiff::{self, LockDiff};
use crate::manifest::ItemId;
use crate::plan::{JobKind, Snapshot};

/// One side of a comparison: where the lock comes from and the version built.
#[derive(Debug, Clone, Serialize)]
pub struct Built {
    /// A stage or revision name, or `build KEY` for a candidate's build result.
    pub from: String,
    pub version: String,
    #[serde(skip)]
    pub lock: String,
}

/// What changed in an image's package set from `old` to `new`.
#[derive(Debug, Clone, Serialize)]
pub struct PackageChanges {
    pub item: String,
    pub old: Built,
    pub new: Built,
    /// `None` when a lock does not parse (`error` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<LockDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Compare two builds' locks; `None` when they are the same text.
pub fn compare(item: &ItemId, old: Built, new: Built) -> Option<PackageChanges> {
    if old.lock == new.lock {
        return None;
    }
    let (changes, error) = match lockdiff::diff(&old.lock, &new.lock) {
        Ok(d) => (Some(d), None),
        Err(e) => (None, Some(format!("a lock cannot be compared: {e}"))),
    };
    Some(PackageChanges {
        item: item.to_string(),
        old,
        new,
        changes,
        error,
    })
}

/// The lock of `id` as built on `snap` (its build record), labelled `from`.
pub fn recorded(snap: &Snapshot, id: &ItemId, from: &str) -> Result<Option<Built>> {
    Ok(snap.built(id)?.and_then(|r| {
        r.lock.clone().map(|lock| Built {
            from: from.to_string(),
            version: r.version.clone(),
            lock,
        })
    }))
}

/// The lock of candidate `id` in a pending commit: the build record on S when it is of
/// the version S names, else the passing result of the candidate's build job.
pub fn candidate(
    s: &Snapshot,
    s_name: &str,
    view: &LedgerView,
    jobs: &[JobVerdict],
    id: &ItemId,
) -> Result<Option<Built>> {
    let version = s.item(id)?.map(|(_, i)| i.version.clone());
    if let Some(b) = recorded(s, id, s_name)?
        && Some(&b.version) == version.as_ref()
    {
        return Ok(Some(b));
    }
    for j in jobs {
        if j.kind != JobKind::Build
            || !j.candidates.contains(id)
            || !matches!(j.state, JobState::Passed | JobState::Flaky)
        {
            continue;
        }
        if let Some(r) = view.latest(&j.key)?
            && let Some(lock) = r.artifact.and_then(|a| a.lock)
        {
            return Ok(Some(Built {
                from: format!("build {}", j.key.short()),
                version: version.clone().unwrap_or_default(),
                lock,
            }));
        }
    }
    Ok(None)
}

/// At most this many changed packages are listed in text; JSON has them all.
const MAX_LINES: usize = 40;

/// Print the changes for people, each line indented by `indent`.
pub fn print_text(c: &PackageChanges, indent: &str) {
    let head = format!(
        "{indent}packages of {} {} ({}) vs {} ({})",
        c.item, c.new.version, c.new.from, c.old.version, c.old.from
    );
    match (&c.changes, &c.error) {
        (_, Some(e)) => println!("{head}: {e}"),
        (Some(d), None) if d.is_empty() => println!("{head}: the same {} packages", d.unchanged),
        (Some(d), None) => {
            println!("{head}: {}", d.summary());
            let lines = d.lines();
            for l in lines.iter().take(MAX_LINES) {
                println!("{indent}  {l}");
            }
            if lines.len() > MAX_LINES {
                println!(
                    "{indent}  … and {} more (--format json lists them all)",
                    lines.len() - MAX_LINES
                );
            }
        }
        (None, None) => {}
    }
}
