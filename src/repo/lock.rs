//! Stale ref locks: what a process killed in the middle of a ref update leaves behind.
//!
//! git and gix update a ref `R` by creating `R.lock` (exclusively), writing the new value
//! into it and renaming it over `R`. A process killed between the two (`kill -9` of
//! `promote`, a machine that lost power) leaves `R.lock`, often empty, and every later
//! update of `R` fails ("might need manual deletion"). Lock files hold no process id, so
//! "stale" is defined by what a live holder cannot look like:
//!
//! - it is older than [`STALE_AGE`] (10 minutes): a live holder keeps a ref lock for the
//!   milliseconds it takes to write 41 bytes and rename them, so a lock that old was left
//!   by a process that died (or has been stopped for ten minutes, which we treat alike);
//! - and no process on this machine has it open (Linux: no `/proc/*/fd` entry names it,
//!   among the processes we may look at): git and gix keep the lock file open while they
//!   hold it.
//!
//! A younger lock is live, whatever its content: it is never touched, and the error says
//! who to wait for and when it will be cleared. A stale lock is cleared safely: it is first
//! renamed aside, and deleted only if what was renamed is the very file judged stale (same
//! inode); if another process replaced it meanwhile with a fresh lock, that one is put back.
//! Clearing is said on stderr (as a warning), naming the file and its age.
//!
//! Ref locks live beside the ref in the repository's common directory. Repositories whose
//! refs are in a reftable have no such files, and nothing here applies.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long an update waits for a live lock to go before it gives up.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);

/// How old a ref lock must be before it is taken for one a killed process left.
pub const STALE_AGE: Duration = Duration::from_secs(10 * 60);

/// What was found in the way of a ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// No lock file: the update failed for another reason.
    Absent,
    /// A lock a live process may hold (younger than [`STALE_AGE`], or open): left alone.
    Live { path: PathBuf, age: Duration },
    /// A stale lock, now removed.
    Cleared { path: PathBuf, age: Duration },
}

/// The lock file of ref `name` in the repository whose common directory is `common`.
pub fn path_of(common: &Path, name: &str) -> PathBuf {
    common.join(format!("{name}.lock"))
}

/// Look at the lock file of ref `name` and clear it when it is stale (see the module doc).
pub fn clear_if_stale(common: &Path, name: &str) -> std::io::Result<Lock> {
    clear_if_older(common, name, STALE_AGE)
}

fn clear_if_older(common: &Path, name: &str, stale: Duration) -> std::io::Result<Lock> {
    let path = path_of(common, name);
    let judged = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::Absent),
        Err(e) => return Err(e),
    };
    let age = SystemTime::now()
        .duration_since(judged.modified()?)
        .unwrap_or_default();
    if age < stale || !judged.is_file() || held_open(&path) {
        return Ok(Lock::Live { path, age });
    }
    // Aside first, outside refs/ (so no reader takes it for a ref), then check it is the
    // file we judged: a fresh lock made since is put back, untouched.
    let aside_dir = common.join("stagegate");
    std::fs::create_dir_all(&aside_dir)?;
    let aside = aside_dir.join(format!(
        "stale-lock-{}-{}",
        std::process::id(),
        judged.ino()
    ));
    match std::fs::rename(&path, &aside) {
        Ok(()) => {}
        // Someone else cleared it (or its holder finished) meanwhile: nothing in the way.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::Absent),
        Err(e) => return Err(e),
    }
    let moved = std::fs::symlink_metadata(&aside)?;
    if (moved.dev(), moved.ino()) != (judged.dev(), judged.ino()) {
        // A link never replaces a file: if yet another lock appeared, that one stays.
        let _ = std::fs::hard_link(&aside, &path);
        let _ = std::fs::remove_file(&aside);
        return Ok(Lock::Live {
            path,
            age: Duration::ZERO,
        });
    }
    std::fs::remove_file(&aside)?;
    Ok(Lock::Cleared { path, age })
}

/// Whether a process we can see has `path` open (Linux `/proc`; elsewhere, or for the
/// processes of other users we may not look at, nothing is seen).
fn held_open(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        {
            return true;
        }
    }
    false
}

/// For people: `12 minutes`, `3 s`.
pub fn age(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(dir: &Path, name: &str) -> PathBuf {
        let p = path_of(dir, name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"").unwrap();
        p
    }

    #[test]
    fn a_fresh_lock_is_live_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = lock(dir.path(), "refs/heads/stable");
        let got = clear_if_stale(dir.path(), "refs/heads/stable").unwrap();
        assert!(matches!(got, Lock::Live { .. }), "{got:?}");
        assert!(p.exists());
    }

    #[test]
    fn an_old_lock_nobody_holds_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let p = lock(dir.path(), "refs/heads/stable");
        let got = clear_if_older(dir.path(), "refs/heads/stable", Duration::ZERO).unwrap();
        assert!(matches!(got, Lock::Cleared { .. }), "{got:?}");
        assert!(!p.exists());
        assert_eq!(
            clear_if_stale(dir.path(), "refs/heads/stable").unwrap(),
            Lock::Absent
        );
    }

    #[test]
    fn an_old_lock_a_live_process_has_open_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = lock(dir.path(), "refs/stagegate/results");
        let _held = std::fs::File::open(&p).unwrap();
        let got = clear_if_older(dir.path(), "refs/stagegate/results", Duration::ZERO).unwrap();
        assert!(matches!(got, Lock::Live { .. }), "{got:?}");
        assert!(p.exists());
    }
}
