//! A checkout of only the files jobs name, in two steps. [`Plan`] reads the tree, with the
//! refusals of [`Repo::checkout`] for every directory it reads on the way, and says what to
//! write; [`write`] writes it. Writing reads only blobs, so it can run on another thread
//! (through a repository handle of its own) while the first jobs already run: a run of a
//! thousand jobs does not wait for a thousand files before it starts the first.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use super::Repo;
use crate::error::{IoContext, Result};

/// One thing to create in a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Dir(PathBuf),
    File {
        path: PathBuf,
        blob: ObjectId,
        executable: bool,
    },
    Link {
        path: PathBuf,
        target: ObjectId,
    },
}

impl Write {
    /// Where it writes.
    pub fn path(&self) -> &Path {
        match self {
            Write::Dir(p) | Write::File { path: p, .. } | Write::Link { path: p, .. } => p,
        }
    }
}

/// What to write into `dir` for a checkout of some paths of `tree`, path set by path set:
/// each [`Plan::add`] says only what earlier calls did not.
pub struct Plan<'r> {
    repo: &'r Repo,
    tree: ObjectId,
    dir: PathBuf,
    /// Each directory of the tree is read (and checked) once, however many paths go
    /// through it: a thousand jobs naming a thousand manifests of `tests/` read `tests/`
    /// once.
    dirs: HashMap<ObjectId, HashMap<Vec<u8>, (EntryKind, ObjectId)>>,
    /// Entries planned whole: a later path under one of them is already there.
    written: HashSet<String>,
    /// Directories planned on the way to an entry, by their path in the tree.
    made: HashSet<String>,
}

impl<'r> Plan<'r> {
    pub fn new(repo: &'r Repo, tree: ObjectId, dir: &Path) -> Plan<'r> {
        Plan {
            repo,
            tree,
            dir: dir.to_path_buf(),
            dirs: HashMap::new(),
            written: HashSet::new(),
            made: HashSet::new(),
        }
    }

    /// What to write so that the entries of the tree at `paths` (files, symlinks, whole
    /// directories) and the directories that lead to them are in the checkout. A path the
    /// tree lacks is left out, as a full checkout would lack it; where the tree holds a
    /// file or symlink at a directory of the path, that entry is written and the walk
    /// stops. A tree the runner refuses is [`crate::Error::UnsafeTree`], before anything of
    /// this call is written.
    pub fn add(&mut self, paths: &[String]) -> Result<Vec<Write>> {
        let mut paths: Vec<&str> = paths
            .iter()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let mut out = Vec::new();
        'paths: for path in paths {
            let mut node = self.tree;
            let mut at = self.dir.clone();
            let mut prefix = String::new();
            let parts: Vec<&str> = path.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let shown = format!("{prefix}{part}");
                if self.written.contains(&shown) {
                    continue 'paths;
                }
                let Some((kind, oid)) = self.lookup(node, &prefix, part)? else {
                    continue 'paths;
                };
                at = at.join(part);
                let last = i + 1 == parts.len();
                if last || kind != EntryKind::Tree {
                    self.whole(kind, oid, &at, &shown, &mut out)?;
                    self.written.insert(shown);
                    continue 'paths;
                }
                if self.made.insert(shown.clone()) {
                    out.push(Write::Dir(at.clone()));
                }
                node = oid;
                prefix = format!("{shown}/");
            }
        }
        Ok(out)
    }

    /// What to write for every file of the tree: a whole checkout.
    pub fn everything(&self) -> Result<Vec<Write>> {
        let mut out = Vec::new();
        for (name, kind, oid) in self.repo.checkable_entries(self.tree, "")? {
            let shown = String::from_utf8_lossy(&name).into_owned();
            self.whole(
                kind,
                oid,
                &self.dir.join(OsStr::from_bytes(&name)),
                &shown,
                &mut out,
            )?;
        }
        Ok(out)
    }

    fn lookup(
        &mut self,
        tree: ObjectId,
        prefix: &str,
        name: &str,
    ) -> Result<Option<(EntryKind, ObjectId)>> {
        if !self.dirs.contains_key(&tree) {
            let entries = self
                .repo
                .checkable_entries(tree, prefix)?
                .into_iter()
                .map(|(name, kind, oid)| (name, (kind, oid)))
                .collect();
            self.dirs.insert(tree, entries);
        }
        Ok(self.dirs[&tree].get(name.as_bytes()).copied())
    }

    /// Plan the entry at `path` whole: a directory with everything in it, a file, a link.
    fn whole(
        &self,
        kind: EntryKind,
        oid: ObjectId,
        path: &Path,
        shown: &str,
        out: &mut Vec<Write>,
    ) -> Result<()> {
        match kind {
            EntryKind::Tree => {
                out.push(Write::Dir(path.to_path_buf()));
                let prefix = format!("{shown}/");
                for (name, kind, oid) in self.repo.checkable_entries(oid, &prefix)? {
                    let shown = format!("{prefix}{}", String::from_utf8_lossy(&name));
                    self.whole(kind, oid, &path.join(OsStr::from_bytes(&name)), &shown, out)?;
                }
            }
            EntryKind::Blob | EntryKind::BlobExecutable => out.push(Write::File {
                path: path.to_path_buf(),
                blob: oid,
                executable: kind == EntryKind::BlobExecutable,
            }),
            EntryKind::Link => out.push(Write::Link {
                path: path.to_path_buf(),
                target: oid,
            }),
            EntryKind::Commit => {}
        }
        Ok(())
    }
}

/// Held for reading while this process starts a program, and for writing while a
/// [`write`] has an executable file open. A child between fork and exec holds a copy of
/// every open descriptor, close-on-exec or not; if one is a script being written, every
/// `exec` of that script fails with ETXTBSY ("text file busy") until the child's own exec:
/// a job starting `./t.sh` while another job's checkout files are written would fail to
/// start. A file without an executable bit cannot be started, so writing one takes no
/// lock: a thousand manifests written while jobs start do not hold the starts up (on a
/// file system where creating a file is slow, that held the first jobs back by 300 ms).
pub static SPAWN: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Write what a [`Plan`] said, reading blobs through `repo` (on another thread, a handle
/// of its own on the same object store). Nothing is written through a symlink: a
/// directory, file or link is created new (`O_EXCL`, `O_NOFOLLOW`), unless one is already
/// there (a checkout kept from an earlier run, [`super::pool`]): a directory is kept, a
/// file that holds the blob's bytes is kept (its mode set), one that does not is
/// rewritten in place, a link to the same target is kept, and anything else in the way
/// (a symlink where a directory goes) is removed first.
pub fn write(repo: &Repo, w: &Write) -> Result<()> {
    match w {
        Write::Dir(path) => match std::fs::create_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match std::fs::symlink_metadata(path) {
                    Ok(m) if m.file_type().is_dir() => Ok(()),
                    _ => replace(path, || std::fs::create_dir(path)),
                }
            }
            r => r,
        }
        .io_context(|| format!("creating {}", path.display())),
        Write::File {
            path,
            blob,
            executable,
        } => {
            let data = repo.blob(*blob)?;
            write_file(path, &data, *executable)
                .io_context(|| format!("writing {}", path.display()))
        }
        Write::Link { path, target } => {
            let target = repo.blob(*target)?;
            let target = OsStr::from_bytes(&target);
            match std::os::unix::fs::symlink(target, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match std::fs::read_link(path) {
                        Ok(t) if t.as_os_str() == target => Ok(()),
                        _ => replace(path, || std::os::unix::fs::symlink(target, path)),
                    }
                }
                r => r,
            }
            .io_context(|| format!("linking {}", path.display()))
        }
    }
}

/// Remove what is at `path` (never following a symlink), then `make` it again.
fn replace(path: &Path, make: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(path)?;
    super::pool::remove(path, m.file_type())?;
    make()
}

/// Make `path` a file holding `data`, executable or not (see [`write`]).
fn write_file(path: &Path, data: &[u8], executable: bool) -> std::io::Result<()> {
    use std::io::{Read, Write as _};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let mode = if executable { 0o755 } else { 0o644 };
    // A file already there (a kept checkout) is read first: one that holds the bytes
    // costs no write, no inode and no lock.
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(mut f) => {
            let m = f.metadata()?;
            if !m.file_type().is_file() {
                drop(f);
                return replace(path, || write_file(path, data, executable));
            }
            let mut same = m.len() == data.len() as u64;
            if same {
                let mut have = Vec::with_capacity(data.len());
                f.read_to_end(&mut have)?;
                same = have == data;
            }
            let right_mode = (m.mode() & 0o111 != 0) == executable;
            drop(f);
            if same {
                if !right_mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
                }
                return Ok(());
            }
            // No program starts while an executable file is open for writing (see SPAWN).
            let _open = (executable || m.mode() & 0o111 != 0)
                .then(|| SPAWN.write().unwrap_or_else(|e| e.into_inner()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?;
            f.write_all(data)?;
            if !right_mode {
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No program starts while an executable file is open (see SPAWN).
            let _open = executable.then(|| SPAWN.write().unwrap_or_else(|e| e.into_inner()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)?;
            f.write_all(data)
        }
        // A symlink (O_NOFOLLOW), a fifo or socket, a directory: not a file we wrote.
        Err(_) => replace(path, || write_file(path, data, executable)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare repository holding `files` (path → content) in one tree.
    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Repo, ObjectId) {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let edits: Vec<_> = files
            .iter()
            .map(|(p, c)| {
                let blob = repo.write_blob(c.as_bytes()).unwrap();
                (p.to_string(), Some((EntryKind::Blob, blob)))
            })
            .collect();
        let empty = ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let tree = repo.edit_tree(empty, &edits).unwrap();
        (dir, repo, tree)
    }

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    fn written(writes: &[Write], root: &Path) -> Vec<String> {
        writes
            .iter()
            .map(|w| {
                let (Write::Dir(p) | Write::File { path: p, .. } | Write::Link { path: p, .. }) = w;
                p.strip_prefix(root).unwrap().display().to_string()
            })
            .collect()
    }

    #[test]
    fn each_add_plans_only_what_earlier_adds_did_not() {
        let (_d, repo, tree) = tree(&[
            ("tests/a.yaml", "a"),
            ("tests/b.yaml", "b"),
            ("lib/x/one", "1"),
            ("lib/x/two", "2"),
            ("t.sh", "exit 0"),
        ]);
        let root = Path::new("/checkout");
        let mut plan = Plan::new(&repo, tree, root);
        let first = plan.add(&paths(&["tests/a.yaml", "t.sh"])).unwrap();
        assert_eq!(written(&first, root), ["t.sh", "tests", "tests/a.yaml"]);
        // The shared script and directory are there already; a named directory comes whole.
        let second = plan
            .add(&paths(&[
                "t.sh",
                "tests/b.yaml",
                "lib/x",
                "lib/x/one",
                "missing",
            ]))
            .unwrap();
        assert_eq!(
            written(&second, root),
            ["lib", "lib/x", "lib/x/one", "lib/x/two", "tests/b.yaml"]
        );
        assert!(
            plan.add(&paths(&["tests/a.yaml", "lib/x/two"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn what_a_plan_says_is_written_by_a_writer_on_another_thread() {
        let (_d, repo, tree) = tree(&[("tests/a.yaml", "name: a\n"), ("t.sh", "exit 0")]);
        let out = tempfile::tempdir().unwrap();
        let writes = Plan::new(&repo, tree, out.path())
            .add(&paths(&["tests/a.yaml", "t.sh"]))
            .unwrap();
        let shared = repo.git.clone().into_sync();
        std::thread::spawn(move || {
            let repo = Repo::from_git(shared.to_thread_local());
            writes.iter().for_each(|x| write(&repo, x).unwrap());
        })
        .join()
        .unwrap();
        let read = |p: &str| std::fs::read_to_string(out.path().join(p)).unwrap();
        assert_eq!(read("tests/a.yaml"), "name: a\n");
        assert_eq!(read("t.sh"), "exit 0");
    }

    #[test]
    fn a_file_already_there_is_kept_when_right_and_rewritten_in_place_when_not() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (_d, repo, tree) = tree(&[("t.sh", "exit 0"), ("same.yaml", "x: 1")]);
        let mut exec = Vec::new();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("t.sh"), "other, and longer than the blob").unwrap();
        // Executable where the tree's is not: the mode is set right as well.
        std::fs::set_permissions(
            out.path().join("t.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(out.path().join("same.yaml"), "x: 1").unwrap();
        let ino = |p: &str| std::fs::metadata(out.path().join(p)).unwrap().ino();
        let (t_ino, same_ino) = (ino("t.sh"), ino("same.yaml"));
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(out.path().join("same.yaml"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        for w in Plan::new(&repo, tree, out.path())
            .add(&paths(&["t.sh", "same.yaml"]))
            .unwrap()
        {
            if let Write::File {
                executable: true, ..
            } = w
            {
                exec.push(w.path().to_path_buf());
            }
            write(&repo, &w).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(out.path().join("t.sh")).unwrap(),
            "exit 0"
        );
        assert_eq!(ino("t.sh"), t_ino, "rewritten in place: no new inode");
        assert_eq!(ino("same.yaml"), same_ino);
        let m = std::fs::metadata(out.path().join("same.yaml")).unwrap();
        assert_eq!(
            m.modified().unwrap(),
            old,
            "a file holding the bytes is not written"
        );
        // The test tree's t.sh is a plain blob: a mode the checkout gives it.
        let mode = std::fs::metadata(out.path().join("t.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111 != 0, !exec.is_empty());
    }

    #[test]
    fn a_symlink_already_there_is_replaced_and_nothing_is_written_through_it() {
        let (_d, repo, tree) = tree(&[("lib/x/one", "1"), ("t.sh", "exit 0")]);
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("checkout");
        let elsewhere = out.path().join("elsewhere");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(elsewhere.join("x")).unwrap();
        std::fs::write(elsewhere.join("target"), "not ours").unwrap();
        // Where a directory goes, and where a file goes.
        std::os::unix::fs::symlink(&elsewhere, root.join("lib")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("target"), root.join("t.sh")).unwrap();
        for w in Plan::new(&repo, tree, &root)
            .add(&paths(&["lib/x/one", "t.sh"]))
            .unwrap()
        {
            write(&repo, &w).unwrap();
        }
        assert!(
            std::fs::symlink_metadata(root.join("lib"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            std::fs::read_to_string(root.join("lib/x/one")).unwrap(),
            "1"
        );
        assert!(
            std::fs::symlink_metadata(root.join("t.sh"))
                .unwrap()
                .is_file()
        );
        assert_eq!(
            std::fs::read_to_string(elsewhere.join("target")).unwrap(),
            "not ours"
        );
        assert!(
            !elsewhere.join("x/one").exists(),
            "written through the symlink"
        );
    }
}
