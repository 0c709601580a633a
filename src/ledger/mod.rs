//! The results ledger: every job result, committed as YAML to a dedicated ref.
//!
//! Layout (why it is fast): a result for job key `K` attempt `n` lives at
//!
//! ```text
//! K[0..2]/K[2..4]/K/NNNN-XXXXXXXX-VERDICT.yaml   NNNN = attempt, XXXXXXXX = writer nonce,
//!                                                 VERDICT = pass, fail, flaky, error, skipped
//! ```
//!
//! Keys are sha256 hex, so the two fan-out levels spread a million results over 65,536
//! directories of ~15 entries: looking a key up reads three small trees whatever the ledger's
//! size, and writing a result rewrites three small trees plus a 256-entry root. The nonce
//! makes paths unique even between runners that never saw each other's writes (two machines
//! recording attempt 1 of the same key), so ledgers merge by union without conflicts. The
//! verdict in the name lets a key's flake history be counted from one listing of its
//! directory, without reading every attempt ([`History`]). Ledgers written before the
//! verdict was named hold `NNNN-XXXXXXXX.yaml`: both forms are read everywhere, and a name
//! without a verdict (or with one this version does not know) costs a read of its record.
//!
//! Records are forward compatible: fields a newer stagegate added are ignored (the record
//! itself is never rewritten, so they stay), and a record this version cannot read at all
//! is skipped, never fatal: it is noted once in [`take_unreadable`] for the CLI to report.
//!
//! Writing is a compare-and-swap on the ref: build the new commit on the tip we read, swap
//! only if the ref is still there, otherwise rebuild on the new tip and try again. A runner
//! killed mid-write leaves at most unreferenced objects; the ref always names a whole
//! commit whose every record parses.

pub mod growth;
pub mod history;
pub mod recorder;
pub mod sync;

pub use history::History;

use std::collections::{BTreeMap, HashMap, HashSet};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::keys::{Digest, JobKey};
use crate::repo::{Cas, Entry, Repo};

/// The outcome of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Failed, then passed on retry.
    Flaky,
    /// Could not run: timeout, missing tool, infrastructure.
    Error,
    Skipped,
}

impl Verdict {
    pub const ALL: [Verdict; 5] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Flaky,
        Verdict::Error,
        Verdict::Skipped,
    ];

    /// A result that settles the job: nothing would be learned by running it again.
    pub fn is_final(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Flaky | Verdict::Fail)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Flaky => "flaky",
            Verdict::Error => "error",
            Verdict::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the job's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Exit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// Who ran the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Runner {
    pub host: String,
    pub user: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_url: Option<String>,
    /// The host labels the runner offered when it ran the job (DESIGN §4.18). Optional:
    /// records written before labels existed have none, and older readers ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// One item of the environment the job ran in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EnvRecord {
    pub item: String,
    pub version: String,
    #[serde(default)]
    pub candidate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// What a successful build produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ArtifactRecord {
    pub digest: Digest,
    pub size: u64,
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The build's cache (`build.cache`), stored beside the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::records::CacheRecord>,
}

/// One attempt of one job, as committed to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResultRecord {
    pub key: JobKey,
    pub kind: String,
    pub name: String,
    pub role: String,
    #[serde(default)]
    pub candidates: Vec<String>,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub exit: Exit,
    /// How many times the command ran (1 + retries used).
    pub tries: u32,
    pub started: String,
    pub finished: String,
    pub duration_ms: u64,
    pub runner: Runner,
    /// The commit whose checkout the job ran in.
    pub commit: String,
    pub env: Vec<EnvRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactRecord>,
    /// Where the full log is kept (on the runner's machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The last lines of the log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub excerpt: String,
    /// Filled in when reading: the attempt number from the path.
    #[serde(skip)]
    pub attempt: u32,
}

/// The ledger ref of a repository.
pub struct Ledger<'r> {
    pub repo: &'r Repo,
    pub reference: String,
}

/// What one writer of the ledger wrote so far ([`Ledger::record`]): its packs, folded into
/// one when it is done, and the trees among their objects, uncompressed. Each commit edits
/// the ledger's upper trees again, and reading them back from a large ledger's packs (delta
/// chains, inflation) was most of a writer's time against a million results.
#[derive(Default)]
pub struct Written {
    pub packs: crate::repo::pack::Fold,
    trees: gix::odb::memory::Storage,
    /// Where each commit is announced (commit → parent) before the ref can point at it, so
    /// that a reader who finds it at the ref's tip knows it for this writer's own at once:
    /// announced after, a reader in between would read the ledger again for nothing, through
    /// a pack its object store does not know yet (listing the pack directory to find it).
    pub own: Option<recorder::OwnCommits>,
}

impl Written {
    /// The most tree bytes kept (a run of 1,000 jobs into a million results keeps ~3 MiB).
    const TREE_LIMIT: usize = 16 << 20;

    fn keep_trees(&mut self, trees: gix::odb::memory::Storage) {
        let bytes: usize = trees.values().map(|(_, d)| d.len()).sum();
        if bytes <= Self::TREE_LIMIT {
            self.trees = trees;
        }
    }
}

/// The results of one read of the ledger's tip.
pub struct LedgerView<'r> {
    repo: &'r Repo,
    pub tip: Option<ObjectId>,
    tree: Option<ObjectId>,
    /// Only results finished at or before this RFC 3339 time count (for replaying a
    /// decision as it was made).
    as_of: Option<String>,
    /// What [`LedgerView::latest_with_history`] found, by key: the gate asks again for the
    /// keys of a combination of candidates, and the view never changes. Shared by every
    /// view [`LedgerView::trusting`] derives from one view under the same `trust:` (the same
    /// tip, time and evidence): a run selects its jobs from what its judgement read.
    histories: std::sync::Arc<std::sync::Mutex<history::Memo>>,
    /// The memos of the views derived from this one, by policy (`""`: no `trust:`).
    derived: std::sync::Mutex<HashMap<String, std::sync::Arc<std::sync::Mutex<history::Memo>>>>,
    /// What does not count under the `trust:` this view judges with ([`crate::trust`]):
    /// left out of every read.
    evidence: Option<std::sync::Arc<crate::trust::Evidence>>,
    /// What [`LedgerView::trusting`] assessed, by policy: every move of a command judges
    /// from this one view, most under the same `trust:`.
    assessed: std::sync::Mutex<HashMap<String, std::sync::Arc<crate::trust::Evidence>>>,
}

/// The record in blob `id`, stored at `path` (`…/NNNN-XXXXXXXX[-VERDICT].yaml`): its
/// attempt number comes from the file name.
pub fn read_record(repo: &Repo, path: &str, id: ObjectId) -> Result<ResultRecord> {
    let mut r: ResultRecord = crate::records::parse(path, &repo.blob(id)?)?;
    r.attempt = attempt_of(path.rsplit('/').next().unwrap_or_default());
    Ok(r)
}

/// The file name of attempt `attempt` of a result with `verdict`, written by `nonce`.
fn record_name(attempt: u32, nonce: &str, verdict: Verdict) -> String {
    format!("{attempt:04}-{nonce}-{verdict}.yaml")
}

/// The attempt number a record's file name (`NNNN-XXXXXXXX-VERDICT.yaml`, or the older
/// `NNNN-XXXXXXXX.yaml`) gives; 0 when it has none.
fn attempt_of(name: &str) -> u32 {
    name.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The verdict a record's file name gives: `None` for the older `NNNN-XXXXXXXX.yaml`, and
/// for a verdict this version does not know (the record says what it is).
fn verdict_of(name: &str) -> Option<Verdict> {
    let mut parts = name.strip_suffix(".yaml")?.splitn(3, '-');
    let word = parts.nth(2)?;
    Verdict::ALL.into_iter().find(|v| v.as_str() == word)
}

/// `K[0..2]/K[2..4]/K`: where the results of `key` live (a layout, not a short form).
pub fn key_dir(key: &JobKey) -> String {
    let key = key.as_str();
    format!("{}/{}/{}", &key[..2], &key[2..4], key)
}

fn valid_prefix(prefix: &str) -> bool {
    prefix.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_key(key: &JobKey) -> bool {
    let key = key.as_str();
    key.len() >= 8 && key.bytes().all(|b| b.is_ascii_hexdigit())
}

impl<'r> Ledger<'r> {
    pub fn new(repo: &'r Repo, reference: &str) -> Ledger<'r> {
        Ledger {
            repo,
            reference: reference.to_string(),
        }
    }

    pub fn view(&self) -> Result<LedgerView<'r>> {
        let tip = self.repo.ref_target(&self.reference)?;
        self.view_at(tip)
    }

    /// The ledger as of commit `tip` (a ref value not yet written, as in a pre-receive hook).
    pub fn view_at(&self, tip: Option<ObjectId>) -> Result<LedgerView<'r>> {
        if let Some(t) = tip {
            let kind = self
                .repo
                .git
                .find_header(t)
                .context(|| format!("reading {} at {t}", self.reference))?
                .kind();
            if kind != gix::object::Kind::Commit {
                return Err(Error::infra_help(
                    format!(
                        "the results ref {} points at a {kind} ({t}), not a commit: it is not a results ledger",
                        self.reference
                    ),
                    format!(
                        "point it back at its last commit (`git reflog {0}` lists them), or delete it (`git update-ref -d {0}`) to start an empty ledger",
                        self.reference
                    ),
                ));
            }
        }
        let tree = tip.map(|t| self.repo.tree_of(t)).transpose()?;
        Ok(LedgerView {
            repo: self.repo,
            tip,
            tree,
            as_of: None,
            histories: Default::default(),
            derived: Default::default(),
            evidence: None,
            assessed: Default::default(),
        })
    }

    /// Commit `records` in one commit (none when there are none); returns the commit.
    /// Retries on a lost race by rebuilding on the new tip, so concurrent writers never
    /// lose a record. What was written is noted in `written`: the packs, for the caller to
    /// fold when it is done, and the trees and the commit, for the next call to read back
    /// from memory; each commit is announced to `written.own` before the ref moves.
    pub fn record(
        &self,
        records: &[ResultRecord],
        message: &str,
        written: &mut Written,
    ) -> Result<Option<ObjectId>> {
        if records.is_empty() {
            return Ok(None);
        }
        for r in records {
            if !valid_key(&r.key) {
                return Err(Error::infra(format!(
                    "refusing to record a result with malformed key {:?}",
                    r.key
                )));
            }
        }
        let texts: Vec<String> = records.iter().map(crate::records::to_yaml).collect();
        let nonce = nonce();
        let mut failures = 0u32;
        loop {
            // New objects go to memory first and reach the disk as one pack (repo::pack).
            // The trees earlier calls wrote are there too, to be read back (not written
            // again): the upper trees of the ledger are edited by every commit.
            let mut git = self.repo.git.clone().with_object_memory();
            // Numbering an attempt reads the trees along its key's path, and the edit
            // below reads them again.
            git.object_cache_size(Some(8 << 20));
            let mut mem = Repo::from_git(git);
            let known: HashSet<ObjectId> = written.trees.keys().copied().collect();
            mem.git
                .objects
                .set_object_memory(std::mem::take(&mut written.trees));
            let blobs: Vec<(ObjectId, &ResultRecord)> = texts
                .iter()
                .zip(records)
                .map(|(t, r)| Ok((mem.write_blob(t.as_bytes())?, r)))
                .collect::<Result<_>>()?;
            let view = Ledger::new(&mem, &self.reference).view()?;
            let tip = view.tip;
            let base_tree = view
                .tree
                .unwrap_or_else(|| ObjectId::empty_tree(gix::hash::Kind::Sha1));
            let mut next_attempt: BTreeMap<&JobKey, u32> = BTreeMap::new();
            let mut edits = Vec::new();
            for (blob, r) in &blobs {
                let n = match next_attempt.get(&r.key) {
                    Some(n) => *n,
                    None => view.attempt_count(&r.key)? + 1,
                };
                next_attempt.insert(&r.key, n + 1);
                edits.push((
                    format!("{}/{}", key_dir(&r.key), record_name(n, &nonce, r.verdict)),
                    Some((EntryKind::Blob, *blob)),
                ));
            }
            let tree = mem.edit_tree_trusted(base_tree, &edits)?;
            let parents: Vec<ObjectId> = tip.into_iter().collect();
            let commit = mem.write_commit(tree, &parents, message)?;
            let mut packed = None;
            if let Some(mut storage) = mem.git.objects.take_object_memory() {
                let objects: Vec<_> = storage
                    .iter()
                    .filter(|(id, _)| !known.contains(*id))
                    .map(|(id, (kind, data))| (*id, *kind, data.clone()))
                    .collect();
                // The commit too: the next call reads it as the ledger's tip, and from the
                // pack just written it is found only by listing the pack directory again.
                storage.retain(|_, (kind, _)| {
                    matches!(kind, gix::object::Kind::Tree | gix::object::Kind::Commit)
                });
                written.keep_trees(storage);
                let dir = self.repo.git.common_dir().join("objects");
                let entries = crate::repo::pack::compress(&objects)?;
                packed = crate::repo::pack::write(&dir, entries.clone())?.map(|w| (w, entries));
            }
            if let Some(own) = &written.own
                && let Ok(mut own) = own.lock()
            {
                own.insert(commit, tip);
            }
            let swapped = self.repo.cas(
                &self.reference,
                tip,
                commit,
                &format!("stagegate: {message}"),
            );
            // The ref reaches the pack now (or it lost the race and is garbage): either
            // way `git gc` may fold it.
            if let Some((mut pack, entries)) = packed {
                pack.release();
                written.packs.add(pack, entries);
            }
            match swapped {
                Ok(Cas::Updated) => return Ok(Some(commit)),
                Ok(Cas::Moved { .. }) => {}
                Err(e) => {
                    failures += 1;
                    if failures > 20 {
                        return Err(e);
                    }
                }
            }
            // Lost the race or the lock: back off a little, with jitter, and rebuild.
            let pause = 1 + (std::process::id() as u64 + failures as u64 * 7) % 10;
            std::thread::sleep(std::time::Duration::from_millis(pause));
        }
    }
}

impl Ledger<'_> {
    /// Commit `files` (path → YAML) into the ledger in one commit, leaving alone every path
    /// that already exists (the first record of a fact wins: a first sighting, a rejection).
    /// A compare-and-swap retried on a lost race. Returns the paths written; nothing is
    /// committed when every path already exists.
    pub fn put_new(&self, files: &[(String, String)], message: &str) -> Result<Vec<String>> {
        self.put(files, &[], message)
    }

    /// [`Ledger::put_new`], writing the paths of `replace` even where they exist: a fact
    /// that a newer one of its kind supersedes (a rejection judged again after a recheck,
    /// or after its group changed). The one it replaces stays in the ledger's history.
    pub fn put(
        &self,
        files: &[(String, String)],
        replace: &[String],
        message: &str,
    ) -> Result<Vec<String>> {
        for _ in 0..50 {
            let view = self.view()?;
            let base = view
                .tree
                .unwrap_or_else(|| ObjectId::empty_tree(gix::hash::Kind::Sha1));
            let mut edits = Vec::new();
            let mut written = Vec::new();
            for (path, text) in files {
                if view.tree.is_some()
                    && !replace.contains(path)
                    && self.repo.entry(base, path)?.is_some()
                {
                    continue;
                }
                let blob = self.repo.write_blob(text.as_bytes())?;
                edits.push((path.clone(), Some((EntryKind::Blob, blob))));
                written.push(path.clone());
            }
            if edits.is_empty() {
                return Ok(written);
            }
            let tree = self.repo.edit_tree(base, &edits)?;
            let parents: Vec<ObjectId> = view.tip.into_iter().collect();
            let commit = self.repo.write_commit(tree, &parents, message)?;
            let reflog = format!("stagegate: {}", message.lines().next().unwrap_or_default());
            if self.repo.cas(&self.reference, view.tip, commit, &reflog)? == Cas::Updated {
                return Ok(written);
            }
        }
        Err(Error::infra_help(
            format!("{} kept moving while recording", self.reference),
            "another runner is recording; run the command again",
        ))
    }
}

impl<'r> LedgerView<'r> {
    /// This view, counting only the results finished by `time` (RFC 3339, UTC).
    pub fn as_of(mut self, time: &str) -> Self {
        self.as_of = Some(time.to_string());
        self.histories = Default::default();
        self.derived = Default::default();
        self
    }

    /// This view as it counts under `trust` ([`crate::trust::assess`]): the records the
    /// policy does not count are left out of every read. Without `trust:`, the view as is.
    pub fn trusting(&self, trust: Option<&crate::manifest::Trust>) -> Result<LedgerView<'r>> {
        let policy = trust.map(crate::trust::Policy::new);
        let histories = self
            .derived
            .lock()
            .map(|mut m| {
                m.entry(policy.as_ref().map_or("", |p| p.id()).to_string())
                    .or_default()
                    .clone()
            })
            .unwrap_or_default();
        let evidence = match policy {
            Some(policy) => {
                let known = self
                    .assessed
                    .lock()
                    .ok()
                    .and_then(|m| m.get(policy.id()).cloned());
                Some(match known {
                    Some(e) => e,
                    None => {
                        let e = crate::trust::assess(self.repo, self.tip, &policy)?;
                        if let Ok(mut m) = self.assessed.lock() {
                            m.insert(policy.id().to_string(), e.clone());
                        }
                        e
                    }
                })
            }
            None => None,
        };
        Ok(LedgerView {
            repo: self.repo,
            tip: self.tip,
            tree: self.tree,
            as_of: self.as_of.clone(),
            histories,
            derived: Default::default(),
            evidence,
            assessed: Default::default(),
        })
    }

    /// What this view leaves out, when it judges under `trust:`.
    pub fn evidence(&self) -> Option<&crate::trust::Evidence> {
        self.evidence.as_deref()
    }

    fn counts(&self, path: &str) -> bool {
        self.evidence.as_ref().is_none_or(|e| e.counts(path))
    }

    /// The content of a file of the ledger's tree (facts beside the results: decisions,
    /// first sightings, overrides), or `None`.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        if !self.counts(path) {
            return Ok(None);
        }
        let found = match self.tree {
            Some(t) => self.repo.read(t, path)?,
            None => None,
        };
        match (found, self.evidence.as_ref().and_then(|e| e.restored(path))) {
            (None, Some(blob)) => Ok(Some(self.repo.blob(blob)?)),
            (found, _) => Ok(found),
        }
    }

    /// The entries directly under `dir` in the ledger's tree.
    fn entries(&self, dir: &str) -> Result<Vec<Entry>> {
        let mut out = match self.tree {
            Some(t) => self.repo.list(t, dir)?,
            None => Vec::new(),
        };
        if let Some(ev) = &self.evidence {
            let dir = dir.trim_end_matches('/');
            out.retain(|e| e.kind == EntryKind::Tree || self.counts(&format!("{dir}/{}", e.name)));
            restore(&mut out, ev.restored_in(dir));
        }
        Ok(out)
    }

    /// The records of `key`'s directory this view counts (with those a ledger commit
    /// deleted, under `trust:`).
    fn key_entries(&self, key: &JobKey) -> Result<Vec<Entry>> {
        let mut out = match self.key_tree(key)? {
            Some(t) => self.repo.tree_entries(t)?,
            None => Vec::new(),
        };
        if let Some(ev) = &self.evidence {
            let dir = key_dir(key);
            out.retain(|e| self.counts(&format!("{dir}/{}", e.name)));
            restore(&mut out, ev.restored_in(&dir));
        }
        Ok(out)
    }

    /// The names of the files directly under `dir` in the ledger's tree.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|e| e.kind != EntryKind::Tree)
            .map(|e| e.name)
            .collect())
    }

    /// The names of the directories directly under `dir` in the ledger's tree.
    pub fn dirs(&self, dir: &str) -> Result<Vec<String>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|e| e.kind == EntryKind::Tree)
            .map(|e| e.name)
            .collect())
    }

    /// The files directly under `dir`, by name, with their blob ids: one read of `dir`
    /// for many lookups in it (a path lookup scans the directory each time).
    pub fn files(&self, dir: &str) -> Result<HashMap<String, ObjectId>> {
        Ok(self
            .entries(dir)?
            .into_iter()
            .filter(|e| e.kind != EntryKind::Tree)
            .map(|e| (e.name, e.id))
            .collect())
    }

    /// The content of blob `id` (one [`LedgerView::files`] listed).
    pub fn blob(&self, id: ObjectId) -> Result<Vec<u8>> {
        self.repo.blob(id)
    }

    /// The tree id of a key's directory, if it has any results.
    fn key_tree(&self, key: &JobKey) -> Result<Option<ObjectId>> {
        let Some(tree) = self.tree else {
            return Ok(None);
        };
        if !valid_key(key) {
            return Ok(None);
        }
        Ok(self
            .repo
            .entry(tree, &key_dir(key))?
            .filter(|e| e.kind == EntryKind::Tree)
            .map(|e| e.id))
    }

    pub fn attempt_count(&self, key: &JobKey) -> Result<u32> {
        Ok(match self.key_tree(key)? {
            Some(t) => self.repo.tree_entries(t)?.len() as u32,
            None => 0,
        })
    }

    /// Every recorded attempt of `key`, oldest first.
    pub fn results(&self, key: &JobKey) -> Result<Vec<ResultRecord>> {
        let mut out = Vec::new();
        for e in self.key_entries(key)? {
            if let Some(r) = self.counted(key, &e)? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| (a.attempt, &a.finished).cmp(&(b.attempt, &b.finished)));
        Ok(out)
    }

    /// The result that counts for `key`: the newest attempt (the one [`results`] lists
    /// last). Only the records of the highest attempt number are read — a job retried many
    /// times costs one record, not all of them — going back an attempt only when none of
    /// those is readable or counts yet (`as_of`).
    ///
    /// [`results`]: LedgerView::results
    pub fn latest(&self, key: &JobKey) -> Result<Option<ResultRecord>> {
        let mut entries: Vec<(u32, Entry)> = self
            .key_entries(key)?
            .into_iter()
            .map(|e| (attempt_of(&e.name), e))
            .collect();
        // By attempt, newest last; the tree's name order within one attempt, as `results`.
        entries.sort_by_key(|(n, _)| *n);
        while let Some(&(attempt, _)) = entries.last() {
            let from = entries.partition_point(|(n, _)| *n < attempt);
            let mut best: Option<ResultRecord> = None;
            for (_, e) in entries.drain(from..) {
                let Some(r) = self.counted(key, &e)? else {
                    continue;
                };
                // Ties go to the later entry, as `results` (a stable sort) orders them.
                if best.as_ref().is_none_or(|b| r.finished >= b.finished) {
                    best = Some(r);
                }
            }
            if best.is_some() {
                return Ok(best);
            }
        }
        Ok(None)
    }

    /// The record `e` of `key`'s directory, if it can be read and counts in this view.
    fn counted(&self, key: &JobKey, e: &Entry) -> Result<Option<ResultRecord>> {
        let path = format!("{}/{}", key_dir(key), e.name);
        let r = match read_record(self.repo, &path, e.id) {
            Ok(r) => r,
            Err(why) => {
                note_unreadable(&path, &why);
                return Ok(None);
            }
        };
        let late = self
            .as_of
            .as_ref()
            .is_some_and(|t| r.finished.as_str() > t.as_str());
        Ok((!late).then_some(r))
    }

    /// The keys with results that start with `prefix` (at least 4 hex digits: only the
    /// ledger directory of that prefix is read).
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<JobKey>> {
        let (Some(root), true) = (self.tree, prefix.len() >= 4 && valid_prefix(prefix)) else {
            return Ok(Vec::new());
        };
        let prefix = prefix.to_ascii_lowercase();
        let dir = format!("{}/{}", &prefix[..2], &prefix[2..4]);
        let Some(e) = self.repo.entry(root, &dir)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .repo
            .tree_entries(e.id)?
            .into_iter()
            .map(|k| k.name)
            .filter(|k| k.starts_with(&prefix))
            .map(JobKey::from)
            .collect())
    }

    /// Every key with results (walks the whole ledger: for tests and tools, not planning).
    pub fn keys(&self) -> Result<Vec<JobKey>> {
        let Some(root) = self.tree else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // Facts recorded beside the results (decisions/, seen/, …) are not keys.
        for a in self.repo.tree_entries(root)? {
            if a.name.len() != 2 || a.kind != EntryKind::Tree {
                continue;
            }
            for b in self.repo.tree_entries(a.id)? {
                out.extend(
                    self.repo
                        .tree_entries(b.id)?
                        .into_iter()
                        .map(|k| JobKey::from(k.name)),
                );
            }
        }
        Ok(out)
    }
}

/// Add the `restored` files (name, blob) that `entries` lacks, in name order.
fn restore(entries: &mut Vec<Entry>, restored: Vec<(String, ObjectId)>) {
    if restored.is_empty() {
        return;
    }
    for (name, id) in restored {
        if !entries.iter().any(|e| e.name == name) {
            entries.push(Entry {
                name,
                id,
                kind: EntryKind::Blob,
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Ledger records that could not be read, by path, with why; each noted once.
static UNREADABLE: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

fn note_unreadable(path: &str, why: &Error) {
    if let Ok(mut m) = UNREADABLE.lock() {
        m.entry(path.to_string()).or_insert_with(|| {
            why.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        });
    }
}

/// The records skipped since the last call (path → why), for the CLI to report once.
pub fn take_unreadable() -> BTreeMap<String, String> {
    UNREADABLE
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
}

/// Eight hex digits that differ between writers (process, time, counter).
fn nonce() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}-{}",
        std::process::id(),
        now.as_nanos(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        hostname()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..4])
}

/// Who is running: host, user, process, and the CI run when there is one.
pub fn identity() -> Runner {
    let ci_url = match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        (Ok(s), Ok(r), Ok(id)) => Some(format!("{s}/{r}/actions/runs/{id}")),
        _ => std::env::var("STAGEGATE_CI_URL").ok(),
    };
    Runner {
        host: std::env::var("STAGEGATE_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(hostname),
        user: std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| login_name()),
        pid: std::process::id(),
        ci_url,
        labels: Vec::new(),
    }
}

/// The name of the user running us, from the password database.
fn login_name() -> String {
    // SAFETY: getpwuid returns a pointer to static storage or null; we copy the name out
    // before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid{}", libc::getuid());
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
