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
/// of its own on the same object store). Nothing is written through a symlink or over a
/// file: directories and files are created new (`O_EXCL`, `O_NOFOLLOW`).
pub fn write(repo: &Repo, w: &Write) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match w {
        Write::Dir(path) => {
            std::fs::create_dir(path).io_context(|| format!("creating {}", path.display()))
        }
        Write::File {
            path,
            blob,
            executable,
        } => {
            let data = repo.blob(*blob)?;
            // No program starts while an executable file is open (see SPAWN).
            let _open = executable.then(|| SPAWN.write().unwrap_or_else(|e| e.into_inner()));
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if *executable { 0o755 } else { 0o644 })
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .io_context(|| format!("writing {}", path.display()))?;
            std::io::Write::write_all(&mut f, &data)
                .io_context(|| format!("writing {}", path.display()))
        }
        Write::Link { path, target } => {
            let target = repo.blob(*target)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), path)
                .io_context(|| format!("linking {}", path.display()))
        }
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
    fn writing_over_something_already_there_is_refused() {
        let (_d, repo, tree) = tree(&[("t.sh", "exit 0")]);
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("t.sh"), "other").unwrap();
        let writes = Plan::new(&repo, tree, out.path())
            .add(&paths(&["t.sh"]))
            .unwrap();
        assert!(write(&repo, &writes[0]).is_err());
        assert_eq!(
            std::fs::read_to_string(out.path().join("t.sh")).unwrap(),
            "other"
        );
    }
}
