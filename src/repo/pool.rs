//! Checkout directories kept from one run to the next, in `$TMPDIR/stagegate-UID/`.
//!
//! A run of a thousand tests at one commit writes a thousand manifests into its checkout.
//! Made new and removed each run, that is a thousand inodes allocated and freed every time,
//! and on some file systems allocating an inode soon after many were freed is slow (ext4
//! without a journal passes over every recently freed inode: 8 µs a file at the start of a
//! run, 300 µs by the thousandth). A run instead takes a directory of the pool (a slot),
//! preferring the one that last held the same tree, and [`sparse::write`] leaves a file
//! that already holds the right bytes as it is, rewrites one that does not, and creates
//! only what is missing.
//!
//! What a job sees does not change: before any job starts, [`prune`] removes from the
//! slot everything the run does not plan (what earlier runs and their jobs left), and
//! every planned file is checked against its blob by the writer. After the run, what the
//! jobs added is removed again. A slot is held with an exclusive `flock` for the whole run,
//! so concurrent runs never share one; a run that finds none free (or no safe pool
//! directory) uses a fresh temporary directory, as before.
//!
//! Slots do not pile up: a run that takes one also empties every other free slot that no
//! run has used for [`STALE`] (what a finished run leaves is only the files it wrote,
//! but a pool of 16 such copies of a large repository's manifests should not outlive its
//! use). A slot some run holds is never touched.
//!
//! [`sparse::write`]: super::sparse::write

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use gix::ObjectId;

/// The most slots a pool holds: more concurrent checkouts than this get temporary ones.
const SLOTS: usize = 16;

/// How long a slot no run used keeps its files.
pub const STALE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// A directory of the pool, held by this process until dropped.
#[derive(Debug)]
pub struct Slot {
    pub dir: PathBuf,
    /// Where the slot's tree is noted, for the next run to prefer it.
    tree_note: PathBuf,
    /// The `flock` on the slot's lock file: released when the file is closed.
    _lock: File,
}

impl Slot {
    /// Note the tree the slot now holds, once its run ended cleanly: a preference for the
    /// next run (never trusted for content), and the sign that no job of this run is left
    /// in it.
    pub fn note_tree(&self, tree: ObjectId) {
        let _ = std::fs::write(&self.tree_note, tree.to_string());
    }
}

/// The pool's directory for this user, made private; `Err` says why it cannot be used
/// (another user's directory, a symlink, loose permissions).
pub fn dir() -> Result<PathBuf, String> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("stagegate-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let m = std::fs::symlink_metadata(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.file_type().is_dir() || m.uid() != uid || m.mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of this user",
            dir.display()
        ));
    }
    Ok(dir)
}

/// Take a free slot of the pool in `pool`, preferring one that last held `tree`; `None`
/// when every slot is taken (or cannot be locked).
pub fn take(pool: &Path, tree: ObjectId) -> Option<Slot> {
    let wanted = tree.to_string();
    let mut order: Vec<usize> = (0..SLOTS).collect();
    // Slots that held this tree first: their files are most likely right already.
    order.sort_by_key(|i| {
        std::fs::read_to_string(pool.join(format!("{i}.tree"))).map_or(true, |t| t != wanted)
    });
    for i in order {
        let lock = match lock(pool, i, true) {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(_) => return None,
        };
        let dir = pool.join(i.to_string());
        // The note is written again when a run ends cleanly (Slot::note_tree). A slot
        // without one was left by a run that was killed, and the jobs it left running
        // may still write there: move that directory aside for good, so that they never
        // share one with this run's jobs.
        let note = pool.join(format!("{i}.tree"));
        let clean = std::fs::remove_file(&note).is_ok();
        if !clean && std::fs::symlink_metadata(&dir).is_ok() && set_aside(&dir).is_err() {
            continue;
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                if std::fs::remove_file(&dir).is_err() {
                    continue;
                }
                if std::fs::create_dir(&dir).is_err() {
                    continue;
                }
            }
            Err(_) => {
                if std::fs::create_dir(&dir).is_err() {
                    continue;
                }
            }
        }
        empty_stale(pool, i, std::time::SystemTime::now());
        return Some(Slot {
            dir,
            tree_note: note,
            _lock: lock,
        });
    }
    None
}

/// Empty every slot but `taken` that is free and that no run has used for [`STALE`]
/// before `now` (by its note, which a run rewrites when it ends). Its note goes first: a
/// slot left half removed has none, so whoever takes it next sets the rest aside.
fn empty_stale(pool: &Path, taken: usize, now: std::time::SystemTime) {
    let stale = |note: &Path| {
        std::fs::symlink_metadata(note)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE))
    };
    for i in (0..SLOTS).filter(|&i| i != taken) {
        let note = pool.join(format!("{i}.tree"));
        if !stale(&note) {
            continue;
        }
        let Ok(Some(_lock)) = lock(pool, i, false) else {
            continue;
        };
        // Checked again under the lock: a run may have ended there since.
        if stale(&note) && std::fs::remove_file(&note).is_ok() {
            let _ = std::fs::remove_dir_all(pool.join(i.to_string()));
        }
    }
}

/// Slot `i`'s lock file, locked for this process (`flock`, released when the file is
/// closed); `None` when another holds it. `create` makes the file if it is missing.
fn lock(pool: &Path, i: usize, create: bool) -> std::io::Result<Option<File>> {
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(create)
        .truncate(false)
        .open(pool.join(format!("{i}.lock")))?;
    // SAFETY: flock on a descriptor we own.
    let held = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    Ok((!held).then_some(lock))
}

/// Remove from `root` every entry that is not planned (`planned`: the paths a checkout
/// writes, directories included). Planned entries stay, whatever they are, for the writer
/// to check: it replaces one of the wrong kind (a symlink where a directory goes would
/// lead writes out of the checkout). Never follows a symlink.
pub fn prune(root: &Path, planned: &HashSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if !planned.contains(&path) {
            remove(&path, kind)?;
        } else if kind.is_dir() {
            prune(&path, planned)?;
        }
    }
    Ok(())
}

/// Replace the directory `dir` with an empty one: what was there is moved aside (a
/// directory's entry moves whatever it holds, and whoever works in it goes with it) and then
/// removed as far as it can be.
pub fn set_aside(dir: &Path) -> std::io::Result<()> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = dir.as_os_str().to_owned();
    name.push(format!(".dead.{}.{n}", std::process::id()));
    let dead = PathBuf::from(name);
    std::fs::rename(dir, &dead)?;
    std::fs::create_dir(dir)?;
    let _ = std::fs::remove_dir_all(&dead);
    Ok(())
}

/// Remove `path`, whatever it is (a directory with all it holds).
pub fn remove(path: &Path, kind: std::fs::FileType) -> std::io::Result<()> {
    if kind.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(root: &Path, paths: &[&str]) -> HashSet<PathBuf> {
        paths.iter().map(|p| root.join(p)).collect()
    }

    #[test]
    fn prune_leaves_only_what_is_planned_and_never_follows_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("slot");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("tests/deep")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "not ours").unwrap();
        std::fs::write(root.join("tests/a.yaml"), "a").unwrap();
        std::fs::write(root.join("tests/junk"), "j").unwrap();
        std::fs::write(root.join("tests/deep/x"), "x").unwrap();
        std::fs::write(root.join("old.sh"), "o").unwrap();
        // A planned directory replaced by a symlink to somewhere else.
        std::os::unix::fs::symlink(&outside, root.join("lib")).unwrap();
        prune(
            &root,
            &set(&root, &["tests", "tests/a.yaml", "lib", "lib/f"]),
        )
        .unwrap();
        let mut left: Vec<String> = walk(&root);
        left.sort();
        assert_eq!(left, vec!["lib", "tests", "tests/a.yaml"]);
        // The symlink is still there for the writer to replace, and nothing behind it went.
        assert!(
            std::fs::symlink_metadata(root.join("lib"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(outside.join("keep").exists());
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(root).unwrap() {
            let e = e.unwrap();
            let rel = e.file_name().to_string_lossy().into_owned();
            out.push(rel.clone());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()).into_iter().map(|s| format!("{rel}/{s}")));
            }
        }
        out
    }

    #[test]
    fn setting_a_directory_aside_leaves_an_empty_one_in_its_place() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("3");
        std::fs::create_dir_all(dir.join("deep/er")).unwrap();
        std::fs::write(dir.join("deep/er/f"), "x").unwrap();
        // Someone still working in it keeps a handle on the old directory.
        let worker = std::fs::File::open(dir.join("deep")).unwrap();
        set_aside(&dir).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            1,
            "what was set aside is removed"
        );
        drop(worker);
    }

    #[test]
    fn a_slot_is_held_by_one_holder_at_a_time_and_the_same_tree_is_preferred() {
        let t = tempfile::tempdir().unwrap();
        let tree = ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let a = take(t.path(), tree).unwrap();
        let b = take(t.path(), tree).unwrap();
        assert_ne!(a.dir, b.dir, "a held slot is not given out again");
        b.note_tree(tree);
        let b_dir = b.dir.clone();
        drop(b);
        let c = take(t.path(), tree).unwrap();
        assert_eq!(c.dir, b_dir, "the slot that held the tree comes first");
        drop((a, c));
    }

    #[test]
    fn a_slot_no_run_used_for_a_week_is_emptied_unless_a_run_holds_it() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (
            ObjectId::empty_tree(gix::hash::Kind::Sha1),
            ObjectId::empty_blob(gix::hash::Kind::Sha1),
        );
        let week_ago = std::time::SystemTime::now() - STALE - std::time::Duration::from_secs(60);
        // Four slots that ended cleanly, each holding a file: 0 and 2 last used a week
        // ago, 2 held by a run all the same; 3 holds the tree the next run wants.
        let slots: Vec<Slot> = (0..4).map(|_| take(t.path(), a).unwrap()).collect();
        let dirs: Vec<PathBuf> = slots.iter().map(|s| s.dir.clone()).collect();
        for (i, s) in slots.iter().enumerate() {
            std::fs::write(s.dir.join("f"), "x").unwrap();
            s.note_tree(if i == 3 { b } else { a });
        }
        let mut slots = slots.into_iter();
        let held = slots.nth(2).unwrap();
        drop(slots);
        for i in [0, 2] {
            std::fs::File::options()
                .write(true)
                .open(t.path().join(format!("{i}.tree")))
                .unwrap()
                .set_modified(week_ago)
                .unwrap();
        }
        let taker = take(t.path(), b).unwrap();
        assert_eq!(taker.dir, dirs[3]);
        assert!(!dirs[0].exists(), "a stale free slot is emptied");
        assert!(!t.path().join("0.tree").exists());
        assert!(dirs[1].join("f").exists(), "a slot used lately stays");
        assert!(dirs[2].join("f").exists(), "a held slot is never touched");
        assert!(t.path().join("2.tree").exists());
        drop((held, taker));
    }

    #[test]
    fn a_slot_its_run_did_not_end_cleanly_is_not_shared_with_what_that_run_left() {
        let t = tempfile::tempdir().unwrap();
        let tree = ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let a = take(t.path(), tree).unwrap();
        std::fs::write(a.dir.join("kept"), "k").unwrap();
        a.note_tree(tree);
        let dir = a.dir.clone();
        drop(a);
        // Ended cleanly: what it held is there for the next run to check.
        let b = take(t.path(), tree).unwrap();
        assert_eq!(b.dir, dir);
        assert!(dir.join("kept").exists());
        // A run killed while its job runs there: no note.
        std::fs::create_dir(dir.join("job-cwd")).unwrap();
        let orphan_cwd = std::fs::File::open(dir.join("job-cwd")).unwrap();
        drop(b);
        let c = take(t.path(), tree).unwrap();
        assert_eq!(c.dir, dir);
        assert_eq!(
            std::fs::read_dir(&c.dir).unwrap().count(),
            0,
            "an orphan's files shared"
        );
        drop((orphan_cwd, c));
    }
}
