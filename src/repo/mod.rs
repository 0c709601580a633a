//! Git access through gix: reading trees at commits, walking first-parent history, writing
//! blobs, trees and commits, and compare-and-swap ref updates.
//!
//! Nothing here knows what a manifest or a stage is; it speaks objects and refs. Commands
//! that gix cannot do yet (push, fetch, ls-remote) shell out to `git` in `repo::remote`.

pub mod lock;
pub mod pack;
pub mod pool;
pub mod remote;
pub mod sparse;

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::refs::transaction::{PreviousValue, RefEdit};

use crate::error::{Context, Error, IoContext, Result};
use crate::manifest::{FileKind, Files};

/// Tree edits: `(path, Some((kind, id)))` upserts, `(path, None)` removes.
pub type Edits = Vec<(String, Option<(EntryKind, ObjectId)>)>;

/// A state repository opened for reading and writing objects and refs.
pub struct Repo {
    pub git: gix::Repository,
    /// The remote every ref this repository writes is pushed to (and read from after a
    /// fetch), once the command has said which ([`Repo::publish_to`]).
    publish: std::sync::OnceLock<String>,
}

/// One entry of a directory in a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub id: ObjectId,
    pub kind: EntryKind,
}

/// What a commit says about itself.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    pub message: String,
    pub author: String,
    pub time: i64,
}

impl CommitInfo {
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }

    /// The values of `Key: value` trailers in the message's last paragraph.
    pub fn trailers(&self, key: &str) -> Vec<&str> {
        let last = self
            .message
            .trim_end()
            .rsplit("\n\n")
            .next()
            .unwrap_or_default();
        last.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
            .collect()
    }

    pub fn trailer(&self, key: &str) -> Option<&str> {
        self.trailers(key).into_iter().next()
    }
}

/// The outcome of a compare-and-swap ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    Updated,
    /// The ref was not at the expected value: someone else moved it.
    Moved {
        actual: Option<ObjectId>,
    },
}

impl Repo {
    /// Open the repository containing `dir` (a work tree or a bare repository).
    pub fn discover(dir: &Path) -> Result<Repo> {
        // Absolute, so paths handed to jobs (artifacts, logs) work from any directory.
        let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let found = gix::discover(dir).map_err(|e| {
            let cause = crate::error::chain(&e);
            let problem = if !dir.exists() {
                "does not exist".to_string()
            } else if cause.contains("Could not find a git repository") {
                "is not in a git repository".to_string()
            } else {
                // Unreadable, untrusted: what git discovery reported, for whoever can fix it.
                format!("cannot be opened as a git repository ({cause})")
            };
            Error::usage_help(
                format!("{} {problem}", dir.display()),
                format!(
                    "run `{}` to make it a state repository, or pass -C DIR",
                    crate::advice::Advice::Init {
                        dir: Some(dir.display().to_string())
                    }
                ),
            )
        })?;
        Repo::open(found.workdir().unwrap_or(found.git_dir()))
    }

    /// Open the repository at `dir` exactly (a work tree or a git directory).
    pub fn open(dir: &Path) -> Result<Repo> {
        // Every ledger write adds a pack (repo::pack), and concurrent runners add them
        // faster than `git gc --auto` folds them: leave room for many indices.
        let slots = gix::odb::store::init::Slots::AsNeededByDiskState {
            multiplier: 2.0,
            minimum: 4096,
        };
        let options = gix::open::Options::default().object_store_slots(slots);
        let mut git =
            gix::open_opts(dir, options).context(|| format!("opening {}", dir.display()))?;
        git.object_cache_size_if_unset(32 * 1024 * 1024);
        Ok(Repo::from_git(git))
    }

    pub fn from_git(git: gix::Repository) -> Repo {
        Repo {
            git,
            publish: Default::default(),
        }
    }

    /// From now on, push every ref written to `remote`, and fetch before writing.
    pub fn publish_to(&self, remote: &str) {
        let _ = self.publish.set(remote.to_string());
    }

    /// Where this state repository is reached from elsewhere: the URL of the remote it
    /// publishes to (or of `origin`), else its own directory. A component whose
    /// `source.git` is `.` lives here, on branches of its own.
    pub fn self_url(&self) -> String {
        let name = self.publishing().unwrap_or("origin");
        let url = self
            .git
            .config_snapshot()
            .string(format!("remote.{name}.url").as_str())
            .map(|u| u.to_string());
        match url {
            // A relative path is relative to the repository, as git reads it.
            Some(u) if u.starts_with("./") || u.starts_with("../") => {
                self.root_dir().join(u).display().to_string()
            }
            Some(u) => u,
            None => self.root_dir().display().to_string(),
        }
    }

    /// The remote refs are published to, if any.
    pub fn publishing(&self) -> Option<&str> {
        self.publish.get().map(String::as_str)
    }

    pub fn git_dir(&self) -> &Path {
        self.git.git_dir()
    }

    pub fn work_dir(&self) -> Option<&Path> {
        self.git.workdir()
    }

    /// The directory relative paths in `stagegate.yaml` are resolved against.
    pub fn root_dir(&self) -> &Path {
        self.work_dir().unwrap_or_else(|| self.git_dir())
    }

    /// Resolve a revision (`stable`, `HEAD~2`, a hex id) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<ObjectId> {
        let id = self.git.rev_parse_single(rev).map_err(|_| {
            Error::usage_help(
                format!("unknown revision {rev:?}"),
                "name a branch, a stage or a commit id",
            )
        })?;
        let obj = id.object().context(|| format!("reading {rev}"))?;
        let commit = obj
            .peel_to_commit()
            .map_err(|_| Error::usage(format!("{rev:?} does not name a commit")))?;
        Ok(commit.id)
    }

    /// A watch on the files that hold ref `name` (its loose file and `packed-refs`), to tell
    /// cheaply whether it may have moved; `None` when its refs are not kept in those files
    /// (a `reftable`, a ref outside `refs/`).
    pub fn ref_watch(&self, name: &str) -> Option<RefWatch> {
        let common = self.git.common_dir();
        if !name.starts_with("refs/") || common.join("reftable").exists() {
            return None;
        }
        Some(RefWatch {
            loose: common.join(name),
            packed: common.join("packed-refs"),
        })
    }

    /// The object a ref points to, or `None` when the ref does not exist.
    pub fn ref_target(&self, name: &str) -> Result<Option<ObjectId>> {
        match self
            .git
            .try_find_reference(name)
            .context(|| format!("reading ref {name}"))?
        {
            None => Ok(None),
            Some(mut r) => Ok(Some(
                r.peel_to_id()
                    .context(|| format!("peeling ref {name}"))?
                    .detach(),
            )),
        }
    }

    /// The object ref `name` points at, as written (a symbolic ref is followed), without
    /// reading that object: peeling reads it to follow tags, and an object in a pack that
    /// another writer of this store just made is found only after listing the pack
    /// directory again. For a ref only stagegate writes (the ledger), never a tag.
    pub fn ref_id(&self, name: &str) -> Result<Option<ObjectId>> {
        let Some(mut r) = self
            .git
            .try_find_reference(name)
            .context(|| format!("reading ref {name}"))?
        else {
            return Ok(None);
        };
        if let Some(id) = r.target().try_id() {
            return Ok(Some(id.to_owned()));
        }
        Ok(Some(
            r.peel_to_id()
                .context(|| format!("peeling ref {name}"))?
                .detach(),
        ))
    }

    /// Every local branch (`refs/heads/…`) and the commit it points to, in name order.
    pub fn branches(&self) -> Result<Vec<(String, ObjectId)>> {
        let refs = self.git.references().context(|| "listing refs".into())?;
        let mut out = Vec::new();
        for r in refs
            .local_branches()
            .context(|| "listing branches".into())?
            .flatten()
        {
            let mut r = r;
            let name = r.name().shorten().to_string();
            if let Ok(id) = r.peel_to_id() {
                out.push((name, id.detach()));
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn commit(&self, id: ObjectId) -> Result<CommitInfo> {
        let c = self
            .git
            .find_commit(id)
            .context(|| format!("reading commit {id}"))?;
        let decoded = c.decode().context(|| format!("decoding commit {id}"))?;
        let author = decoded.author().context(|| format!("author of {id}"))?;
        let committer = decoded
            .committer()
            .context(|| format!("committer of {id}"))?;
        Ok(CommitInfo {
            id,
            tree: decoded.tree(),
            parents: decoded.parents().collect(),
            message: decoded.message.to_str_lossy().into_owned(),
            author: format!("{} <{}>", author.name, author.email),
            time: committer.time().map(|t| t.seconds).unwrap_or_default(),
        })
    }

    pub fn tree_of(&self, commit: ObjectId) -> Result<ObjectId> {
        let c = self
            .git
            .find_commit(commit)
            .context(|| format!("reading commit {commit}"))?;
        Ok(c.tree_id()
            .context(|| format!("reading tree of {commit}"))?
            .detach())
    }

    /// The entry at `path` in `tree`, if any.
    pub fn entry(&self, tree: ObjectId, path: &str) -> Result<Option<Entry>> {
        let t = self
            .git
            .find_tree(tree)
            .context(|| format!("reading tree {tree}"))?;
        let e = t
            .lookup_entry_by_path(path)
            .context(|| format!("looking up {path}"))?;
        Ok(e.map(|e| Entry {
            name: e.filename().to_string(),
            id: e.object_id(),
            kind: e.mode().kind(),
        }))
    }

    /// The entries of the directory `dir` in `tree` (empty `dir` means the root), sorted.
    pub fn list(&self, tree: ObjectId, dir: &str) -> Result<Vec<Entry>> {
        let dir_tree = if dir.is_empty() {
            tree
        } else {
            match self.entry(tree, dir)? {
                Some(e) if e.kind == EntryKind::Tree => e.id,
                _ => return Ok(Vec::new()),
            }
        };
        self.tree_entries(dir_tree)
    }

    pub fn tree_entries(&self, tree: ObjectId) -> Result<Vec<Entry>> {
        let t = self
            .git
            .find_tree(tree)
            .context(|| format!("reading tree {tree}"))?;
        let decoded = t.decode().context(|| format!("decoding tree {tree}"))?;
        Ok(decoded
            .entries
            .iter()
            .map(|e| Entry {
                name: e.filename.to_str_lossy().into_owned(),
                id: e.oid.to_owned(),
                kind: e.mode.kind(),
            })
            .collect())
    }

    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        let mut b = self
            .git
            .find_blob(id)
            .context(|| format!("reading blob {id}"))?;
        Ok(b.take_data())
    }

    /// The content of the file at `path` in `tree`, if it is a file.
    pub fn read(&self, tree: ObjectId, path: &str) -> Result<Option<Vec<u8>>> {
        match self.entry(tree, path)? {
            Some(e) if e.kind != EntryKind::Tree && e.kind != EntryKind::Commit => {
                Ok(Some(self.blob(e.id)?))
            }
            _ => Ok(None),
        }
    }

    /// First-parent commits from `head` back to (not including) `stop`, newest first.
    /// Stops at the root when `stop` is not on the first-parent chain.
    pub fn first_parents(
        &self,
        head: ObjectId,
        stop: Option<ObjectId>,
        limit: usize,
    ) -> Result<Vec<ObjectId>> {
        let mut out = Vec::new();
        let mut cur = Some(head);
        while let Some(id) = cur {
            if Some(id) == stop || out.len() >= limit {
                break;
            }
            out.push(id);
            let c = self
                .git
                .find_commit(id)
                .context(|| format!("reading commit {id}"))?;
            cur = c.parent_ids().next().map(|p| p.detach());
        }
        Ok(out)
    }

    pub fn merge_base(&self, a: ObjectId, b: ObjectId) -> Result<Option<ObjectId>> {
        Ok(self
            .git
            .merge_base(a, b)
            .context(|| format!("merge-base of {a} and {b}"))?
            .map(|id| id.detach()))
    }

    /// Whether `ancestor` is reachable from `descendant` (or equal to it).
    pub fn is_ancestor(&self, ancestor: ObjectId, descendant: ObjectId) -> Result<bool> {
        Ok(ancestor == descendant || self.merge_base(ancestor, descendant)? == Some(ancestor))
    }

    pub fn write_blob(&self, data: &[u8]) -> Result<ObjectId> {
        Ok(self
            .git
            .write_blob(data)
            .context(|| "writing a blob".into())?
            .detach())
    }

    /// Write `tree` with `edits` applied: `(path, Some((kind, id)))` upserts, `(path, None)` removes.
    pub fn edit_tree(
        &self,
        tree: ObjectId,
        edits: &[(String, Option<(EntryKind, ObjectId)>)],
    ) -> Result<ObjectId> {
        let mut ed = self
            .git
            .edit_tree(tree)
            .context(|| format!("editing tree {tree}"))?;
        each_edit(edits, |path, change| match change {
            Some((kind, id)) => ed.upsert(path, kind, id).map(drop),
            None => ed.remove(path).map(drop),
        })?;
        Ok(ed.write().context(|| "writing a tree".into())?.detach())
    }

    /// [`Repo::edit_tree`] for paths this program made (the ledger's), without gix's checks
    /// of every entry of every tree it writes (a valid name, an object that exists): each
    /// upper tree of a ledger of a million results has 256 entries, each looked up in
    /// every pack, for every record. The trees are written through [`gix::Repository::write_object`].
    pub fn edit_tree_trusted(
        &self,
        tree: ObjectId,
        edits: &[(String, Option<(EntryKind, ObjectId)>)],
    ) -> Result<ObjectId> {
        let root: gix::objs::Tree = self
            .git
            .find_tree(tree)
            .context(|| format!("reading tree {tree}"))?
            .decode()
            .context(|| format!("decoding tree {tree}"))?
            .into();
        let mut ed = gix::objs::tree::Editor::new(root, &self.git.objects, self.git.object_hash());
        each_edit(edits, |path, change| match change {
            Some((kind, id)) => ed.upsert(path.split('/'), kind, id).map(drop),
            None => ed.remove(path.split('/')).map(drop),
        })?;
        ed.write(|t| self.git.write_object(t).map(|id| id.detach()))
            .context(|| "writing a tree".into())
    }

    /// Write a commit object (no ref is moved). Identity comes from git's usual configuration
    /// and environment, falling back to `stagegate <stagegate@localhost>`. The time is the
    /// moment of writing (gix would give the time the repository was opened), unless
    /// `GIT_COMMITTER_DATE` / `GIT_AUTHOR_DATE` fix it, as for git.
    pub fn write_commit(
        &self,
        tree: ObjectId,
        parents: &[ObjectId],
        message: &str,
    ) -> Result<ObjectId> {
        let now = gix::date::Time::now_local_or_utc();
        let mut time_buf = gix::date::parse::TimeBuf::default();
        let fallback = gix::actor::SignatureRef {
            name: "stagegate".into(),
            email: "stagegate@localhost".into(),
            time: now.to_str(&mut time_buf),
        };
        let fixed = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        let mut committer = match self.git.committer() {
            Some(Ok(s)) => s,
            _ => fallback,
        };
        if !fixed("GIT_COMMITTER_DATE") {
            committer.time = fallback.time;
        }
        let mut author = match self.git.author() {
            Some(Ok(s)) => s,
            _ => committer,
        };
        if !fixed("GIT_AUTHOR_DATE") {
            author.time = fallback.time;
        }
        let mut commit = gix::objs::Commit {
            message: message.into(),
            tree,
            author: author.into(),
            committer: committer.into(),
            encoding: None,
            parents: parents.iter().copied().collect(),
            extra_headers: Vec::new(),
        };
        // Signed in git's own format when this process has a key (`crate::sshsig`): the
        // signature covers the commit as written without its `gpgsig` header.
        if let Some(signer) = crate::sshsig::signer() {
            use gix::objs::WriteTo;
            let mut payload = Vec::new();
            commit
                .write_to(&mut payload)
                .context(|| "encoding a commit to sign".into())?;
            let sig = signer.sign(&payload).map_err(Error::infra)?;
            commit.extra_headers.push(("gpgsig".into(), sig.into()));
        }
        let id = self
            .git
            .write_object(&commit)
            .context(|| "writing a commit".into())?;
        Ok(id.detach())
    }

    /// Move `name` to `new` only if it is still at `expected` (`None`: must not exist).
    ///
    /// A stale lock of the ref (`NAME.lock` left by a killed process, see [`lock`]) is
    /// cleared, with a warning, and the update tried again; a live one is an error that
    /// names the lock file.
    pub fn cas(
        &self,
        name: &str,
        expected: Option<ObjectId>,
        new: ObjectId,
        reflog: &str,
    ) -> Result<Cas> {
        let full: gix::refs::FullName = name.try_into().context(|| format!("ref name {name}"))?;
        let msg = reflog.replace('\n', " ");
        // One more try after clearing a stale lock, or when the lock that stood in the way
        // was gone by the time we looked (its holder finished). A live lock is waited on
        // for a while: its holder (another runner recording, a `git fetch`) keeps it for
        // milliseconds, longer only on a loaded machine.
        let mut retried = false;
        let busy_since = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            let prev = match expected {
                Some(old) => PreviousValue::MustExistAndMatch(old.into()),
                None => PreviousValue::MustNotExist,
            };
            let e =
                match self
                    .git
                    .edit_reference(RefEdit::update(full.clone(), new, prev, msg.clone()))
                {
                    Ok(_) => return Ok(Cas::Updated),
                    Err(e) => e,
                };
            let actual = self.ref_target(name)?;
            if actual != expected {
                return Ok(Cas::Moved { actual });
            }
            let failed = || Error::Git {
                context: format!("updating {name}"),
                source: Box::new(e),
            };
            match lock::clear_if_stale(self.git.common_dir(), name) {
                Ok(lock::Lock::Absent) if !retried => retried = true,
                Ok(lock::Lock::Cleared { path, age }) if !retried => {
                    retried = true;
                    crate::error::warn(format!(
                        "cleared the stale lock {} of {name}: written {} ago and open in no process, it was left by a process killed while updating {name}",
                        path.display(),
                        lock::age(age)
                    ));
                }
                Ok(lock::Lock::Live { .. }) if busy_since.elapsed() < lock::BUSY_WAIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                Ok(lock::Lock::Live { path, age }) => {
                    return Err(Error::infra_help(
                        format!(
                            "cannot update {name}: it is locked by {} (written {} ago; waited {})",
                            path.display(),
                            lock::age(age),
                            lock::age(lock::BUSY_WAIT)
                        ),
                        format!(
                            "another git or stagegate process is updating {name}: run the command again when it is done. A lock whose process was killed is cleared by the next command once it is {} old; to clear it now, make sure no git or stagegate process is running on this repository and remove {}",
                            lock::age(lock::STALE_AGE),
                            path.display()
                        ),
                    ));
                }
                _ => return Err(failed()),
            }
        }
    }

    /// Commit `edits` (computed from the branch's current head) on top of `branch` and move
    /// it there by compare-and-swap, rebuilding on the new head when the branch moved
    /// meanwhile. A work tree that has the branch checked out follows, keeping uncommitted
    /// changes to other files; when uncommitted changes touch a file the commit changes,
    /// nothing is done and the error says so.
    pub fn commit_on_branch(
        &self,
        branch: &str,
        message: &str,
        edits: impl Fn(ObjectId) -> Result<Vec<(String, Option<(EntryKind, ObjectId)>)>>,
    ) -> Result<ObjectId> {
        let name = format!("refs/heads/{branch}");
        let mut refused = None;
        for _ in 0..10 {
            // With a remote, build on its newest head, and publish what was built: a
            // commit only this machine has is one no other runner sees.
            if let Some(r) = self.publishing() {
                remote::follow(self, r, &[branch])?;
            }
            let head = self
                .ref_target(&name)?
                .ok_or_else(|| Error::usage(format!("there is no branch {branch:?}")))?;
            let tree = self.edit_tree(self.tree_of(head)?, &edits(head)?)?;
            let commit = self.write_commit(tree, &[head], message)?;
            // A checked-out branch moves only when its work tree can follow.
            remote::can_sync_worktree(self, branch, head, commit)?;
            let reflog = format!("stagegate: {}", message.lines().next().unwrap_or_default());
            if self.cas(&name, Some(head), commit, &reflog)? == Cas::Updated {
                remote::sync_worktree(self, branch, head, commit);
                match remote::publish_branch(self, branch) {
                    Ok(()) => return Ok(commit),
                    // Someone else pushed to the branch meanwhile: take theirs, build again.
                    // Nothing is kept that the remote refused.
                    Err(e) => {
                        self.cas(
                            &name,
                            Some(commit),
                            head,
                            "stagegate: rebuild on the remote",
                        )?;
                        remote::sync_worktree(self, branch, commit, head);
                        if remote::refused_for_good(&e) {
                            return Err(e);
                        }
                        refused = Some(e);
                    }
                }
            }
        }
        Err(refused
            .unwrap_or_else(|| Error::infra(format!("branch {branch} kept moving; try again"))))
    }

    /// Write the files of `tree` into `dir` (which must exist and be empty): a checkout
    /// without an index.
    ///
    /// A checkout never writes outside `dir`, whatever the tree holds: an entry named
    /// empty, `.`, `..`, `.git` or holding `/` or NUL, or a name twice in one directory
    /// (`git fsck` calls it duplicateEntries; a default remote accepts it) refuses the
    /// whole tree with [`Error::UnsafeTree`] naming the path. Files are opened
    /// `O_NOFOLLOW` and a directory already in place is checked not to be a symlink
    /// ([`sparse::write`]), so nothing is ever written through a symlink the tree put there.
    pub fn checkout(&self, tree: ObjectId, dir: &Path) -> Result<()> {
        let writes = sparse::Plan::new(self, tree, dir).everything()?;
        writes.iter().try_for_each(|w| sparse::write(self, w))
    }

    /// The entries of `tree` (at `prefix/` in the checkout), each refused as
    /// [`Repo::checkout`] says when its name could write outside the checkout or appears
    /// twice.
    pub(crate) fn checkable_entries(
        &self,
        tree: ObjectId,
        prefix: &str,
    ) -> Result<Vec<(Vec<u8>, EntryKind, ObjectId)>> {
        let t = self
            .git
            .find_tree(tree)
            .context(|| format!("reading tree {tree}"))?;
        let decoded = t.decode().map_err(|e| Error::UnsafeTree {
            path: if prefix.is_empty() {
                ".".into()
            } else {
                prefix.trim_end_matches('/').into()
            },
            why: format!("its tree object {tree} cannot be parsed ({e})"),
        })?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(decoded.entries.len());
        for e in &decoded.entries {
            let raw: &[u8] = e.filename.as_ref();
            let refuse = |why: &str| Error::UnsafeTree {
                path: format!("{prefix}{}", raw.to_str_lossy()),
                why: why.to_string(),
            };
            if raw.is_empty()
                || raw == b"."
                || raw == b".."
                || raw.eq_ignore_ascii_case(b".git")
                || raw.contains(&b'/')
                || raw.contains(&0)
            {
                return Err(refuse("the name could write outside the checkout"));
            }
            if !seen.insert(raw) {
                return Err(refuse(
                    "the name appears twice in one directory (git fsck: duplicateEntries)",
                ));
            }
            out.push((raw.to_vec(), e.mode.kind(), e.oid.to_owned()));
        }
        Ok(out)
    }
}

/// A commit's tree, read through the object database (no checkout). Directory listings
/// are cached, so reading every manifest of a directory reads that directory's tree once.
pub struct TreeFiles<'r> {
    pub repo: &'r Repo,
    pub tree: ObjectId,
    dirs: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Vec<Entry>>>>,
}

impl<'r> TreeFiles<'r> {
    pub fn new(repo: &'r Repo, tree: ObjectId) -> TreeFiles<'r> {
        TreeFiles {
            repo,
            tree,
            dirs: Default::default(),
        }
    }

    fn dir(&self, dir: &str) -> Result<std::rc::Rc<Vec<Entry>>> {
        if let Some(d) = self.dirs.borrow().get(dir) {
            return Ok(d.clone());
        }
        let d = std::rc::Rc::new(self.repo.list(self.tree, dir)?);
        self.dirs.borrow_mut().insert(dir.to_string(), d.clone());
        Ok(d)
    }

    fn entry(&self, path: &str) -> Result<Option<Entry>> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        Ok(self.dir(dir)?.iter().find(|e| e.name == name).cloned())
    }
}

impl Files for TreeFiles<'_> {
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .dir(dir)?
            .iter()
            .filter(|e| e.kind != EntryKind::Tree)
            .map(|e| e.name.clone())
            .collect())
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.entry(path)? {
            Some(e) if e.kind != EntryKind::Tree && e.kind != EntryKind::Commit => {
                Ok(Some(self.repo.blob(e.id)?))
            }
            _ => Ok(None),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.entry(path.trim_end_matches('/'))?.is_some())
    }

    fn kind(&self, path: &str) -> Result<Option<FileKind>> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.is_empty() {
            return Ok(Some(FileKind::Dir));
        }
        for i in 1..=parts.len() {
            let Some(e) = self.entry(&parts[..i].join("/"))? else {
                return Ok(None);
            };
            let kind = match e.kind {
                EntryKind::Link => return Ok(Some(FileKind::Symlink)),
                EntryKind::Tree => FileKind::Dir,
                EntryKind::Blob => FileKind::File,
                EntryKind::BlobExecutable => FileKind::Executable,
                EntryKind::Commit => FileKind::Other,
            };
            if i == parts.len() {
                return Ok(Some(kind));
            }
            if kind != FileKind::Dir {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// Apply `edits` (as [`Repo::edit_tree`] takes them) one by one with `apply`, saying which
/// path an error came from.
fn each_edit<E: std::error::Error + Send + Sync + 'static>(
    edits: &[(String, Option<(EntryKind, ObjectId)>)],
    mut apply: impl FnMut(&str, Option<(EntryKind, ObjectId)>) -> std::result::Result<(), E>,
) -> Result<()> {
    for (path, change) in edits {
        apply(path, *change).context(|| match change {
            Some(_) => format!("adding {path}"),
            None => format!("removing {path}"),
        })?;
    }
    Ok(())
}

/// A directory holding a checkout: a temporary one, removed on drop, or a slot of the
/// checkout pool ([`pool`]), kept for the next run.
pub struct Checkout {
    dir: CheckoutDir,
}

enum CheckoutDir {
    Temp(tempfile::TempDir),
    Kept {
        slot: pool::Slot,
        tree: ObjectId,
        /// What the run writes; everything else is removed before and after it.
        planned: std::collections::HashSet<PathBuf>,
    },
}

impl Checkout {
    pub fn new(repo: &Repo, tree: ObjectId) -> Result<Checkout> {
        let dir = Checkout::empty()?;
        repo.checkout(tree, dir.path())?;
        Ok(Checkout {
            dir: CheckoutDir::Temp(dir),
        })
    }

    /// An empty checkout, to write into with [`sparse`].
    pub fn empty_dir() -> Result<Checkout> {
        Ok(Checkout {
            dir: CheckoutDir::Temp(Checkout::empty()?),
        })
    }

    /// A checkout of `tree` to write into with [`sparse`], in a slot of the checkout pool
    /// when one is free (else as [`Checkout::empty_dir`]). What an earlier run left there
    /// stays until [`Checkout::keep_only`] says what this run writes.
    pub fn kept(tree: ObjectId) -> Result<Checkout> {
        let slot = pool::dir().ok().and_then(|p| pool::take(&p, tree));
        match slot {
            Some(slot) => Ok(Checkout {
                dir: CheckoutDir::Kept {
                    slot,
                    tree,
                    planned: Default::default(),
                },
            }),
            None => Checkout::empty_dir(),
        }
    }

    /// Remove from the checkout everything but `planned` (the paths [`sparse`] writes,
    /// directories included), now and again once the checkout is dropped: a job sees only
    /// what its run wrote, and what jobs add does not outlive the run.
    pub fn keep_only(&mut self, paths: std::collections::HashSet<PathBuf>) -> Result<()> {
        if let CheckoutDir::Kept { slot, planned, .. } = &mut self.dir {
            // What cannot be removed entry by entry (a directory a job made unreadable)
            // goes aside whole: the run gets an empty directory at the same place.
            if pool::prune(&slot.dir, &paths).is_err() {
                pool::set_aside(&slot.dir)
                    .io_context(|| format!("clearing the checkout {}", slot.dir.display()))?;
            }
            *planned = paths;
        }
        Ok(())
    }

    fn empty() -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("stagegate-checkout-")
            .tempdir()
            .io_context(|| "creating a temporary directory".into())
    }

    pub fn path(&self) -> PathBuf {
        match &self.dir {
            CheckoutDir::Temp(t) => t.path().to_path_buf(),
            CheckoutDir::Kept { slot, .. } => slot.dir.clone(),
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let CheckoutDir::Kept {
            slot,
            tree,
            planned,
        } = &self.dir
        {
            // What the jobs added goes; the planned files stay for the next run to check.
            // A slot that cannot be cleared is not noted, and the next run clears it.
            if pool::prune(&slot.dir, planned).is_ok() {
                slot.note_tree(*tree);
            }
        }
    }
}

/// See [`Repo::ref_watch`].
#[derive(Debug, Clone)]
pub struct RefWatch {
    loose: PathBuf,
    packed: PathBuf,
}

impl RefWatch {
    /// What the ref's files look like now (identity, size, times). Every update of a ref
    /// replaces one of them, so two equal stamps, the first taken before a read of the
    /// ref, mean that read is still current. `None` when a file cannot be examined.
    ///
    /// While the loose file exists it is the ref (an entry in `packed-refs` under the same
    /// name is shadowed), and every update or deletion replaces or removes it: `packed-refs`
    /// is examined only when there is no loose file. A run that checks its ledger ref before
    /// every job pays one `stat`, not two.
    pub fn stamp(&self) -> Option<RefStamp> {
        let loose = file_stamp(&self.loose)?;
        let packed = match loose {
            Some(_) => None,
            None => file_stamp(&self.packed)?,
        };
        Some(RefStamp([loose, packed]))
    }
}

/// See [`RefWatch::stamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefStamp([Option<FileStamp>; 2]);

/// A file's device, inode, size, and change and modification times (seconds, nanoseconds).
type FileStamp = (u64, u64, u64, [i64; 4]);

/// `Some(None)` for a file that does not exist, `None` when it cannot be examined.
fn file_stamp(path: &Path) -> Option<Option<FileStamp>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) => Some(Some((
            m.dev(),
            m.ino(),
            m.size(),
            [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()],
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_tree_edit_writes_the_tree_a_checked_one_does() {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let blob = |s: &str| (EntryKind::Blob, repo.write_blob(s.as_bytes()).unwrap());
        let empty = ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let base = repo
            .edit_tree(
                empty,
                &[
                    ("ab/cd/abcd1/0001-x-pass.yaml".into(), Some(blob("1"))),
                    ("ab/ef/abef1/0001-y-fail.yaml".into(), Some(blob("2"))),
                    ("zz/old".into(), Some(blob("3"))),
                ],
            )
            .unwrap();
        let edits = vec![
            ("ab/cd/abcd1/0002-z-pass.yaml".to_string(), Some(blob("4"))),
            ("01/02/01021/0001-w-error.yaml".to_string(), Some(blob("5"))),
            ("zz/old".to_string(), None),
        ];
        let checked = repo.edit_tree(base, &edits).unwrap();
        assert_eq!(repo.edit_tree_trusted(base, &edits).unwrap(), checked);
        assert_eq!(
            repo.edit_tree_trusted(empty, &edits[..2]).unwrap(),
            repo.edit_tree(empty, &edits[..2]).unwrap()
        );
    }

    #[test]
    fn a_ref_watch_sees_every_update_and_a_pack_refs() {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let name = "refs/stagegate/results";
        let watch = repo.ref_watch(name).expect("files-backed refs");
        let (a, b) = (
            repo.write_blob(b"a").unwrap(),
            repo.write_blob(b"b").unwrap(),
        );
        let missing = watch.stamp().unwrap();
        assert_eq!(watch.stamp().unwrap(), missing, "nothing moved");
        repo.cas(name, None, a, "a").unwrap();
        let at_a = watch.stamp().unwrap();
        assert_ne!(at_a, missing);
        assert_eq!(watch.stamp().unwrap(), at_a, "nothing moved");
        repo.cas(name, Some(a), b, "b").unwrap();
        let at_b = watch.stamp().unwrap();
        assert_ne!(at_b, at_a);
        // Packing moves the ref into packed-refs, which changes the stamp too.
        remote::git(dir.path(), &["pack-refs", "--all"]).unwrap();
        let packed_b = watch.stamp().unwrap();
        assert_ne!(packed_b, at_b);
        assert_eq!(repo.ref_target(name).unwrap(), Some(b));
        // Without a loose file, packed-refs is the ref: a change there is seen.
        let packed = dir.path().join("packed-refs");
        let text = std::fs::read_to_string(&packed).unwrap();
        // (Written aside and renamed over it, as git does.)
        let new = dir.path().join("packed-refs.new");
        std::fs::write(&new, text.replace(&b.to_string(), &a.to_string())).unwrap();
        std::fs::rename(&new, &packed).unwrap();
        let packed_a = watch.stamp().unwrap();
        assert_ne!(packed_a, packed_b);
        assert_eq!(repo.ref_target(name).unwrap(), Some(a));
        remote::git(dir.path(), &["update-ref", "-d", name]).unwrap();
        assert_ne!(watch.stamp().unwrap(), packed_a, "deleted from packed-refs");
        assert!(repo.ref_watch("HEAD").is_none(), "not under refs/");
    }
}
