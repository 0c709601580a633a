//! The pipeline model: stages, pending commits, candidates, environments and jobs.
//!
//! For each stage move S → T this computes, from git objects alone (no work tree):
//! the pending commits (first-parent commits on S since the merge base with T), each one's
//! candidates (items whose manifest or build inputs differ from T's head), and the jobs
//! the gate into T requires, each in the environment of DESIGN.md §4.1: a candidate only
//! ever with T's versions of everything else; the combination too when a commit changes
//! several items a test uses; and, when the gate compares with a baseline, the same test at
//! T. It reads no results and runs nothing: the ledger and the runner come after it.

pub mod key;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::{
    DEFAULT_JOB_TIMEOUT, Gate, Item, ItemId, ItemKind, Pipeline, Requirement, Stage, TESTS_DIR,
    Test,
};
use crate::records::RECORDS_DIR;
use crate::repo::Repo;
use key::{KeyInput, KeyItem};
pub use snapshot::{ParseCache, Snapshot, short};

/// How many pending commits one move considers at most (newest first).
pub const MAX_PENDING: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Build,
    Test,
}

/// Why a job exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Builds a candidate image.
    Build,
    /// One candidate, everything else at T.
    Candidate,
    /// Several candidates of one commit together, everything else at T.
    Combination,
    /// A changed test, every item at T.
    TestChange,
    /// The same test with every item at T, for comparison.
    Baseline,
}

/// One item of a job's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct EnvItem {
    pub item: ItemId,
    pub version: String,
    /// Whether this is the pending commit's version (a candidate) or T's.
    pub candidate: bool,
    #[serde(serialize_with = "ser_oid")]
    pub manifest: ObjectId,
    /// `sha256:…` of the built artifact, when the image has a built record for this version.
    pub digest: Option<String>,
    /// The store location of that artifact.
    pub location: Option<String>,
    /// The build job producing the artifact, when it is built in this plan.
    pub build_job: Option<String>,
    /// For components with a source: the repository and commit.
    pub git: Option<String>,
    pub commit: Option<String>,
}

/// One build, or one test run in one environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Job {
    pub key: String,
    pub kind: JobKind,
    /// The test's name, or the id of the item being built.
    pub name: String,
    pub role: Role,
    /// The candidates this job puts in T's environment.
    pub candidates: Vec<ItemId>,
    /// The commit checked out to run it.
    #[serde(serialize_with = "ser_oid")]
    pub commit: ObjectId,
    pub run: String,
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    pub retries: u32,
    pub env: Vec<EnvItem>,
    /// For builds: the artifact and lock file the recipe writes into `$STAGEGATE_OUT`.
    pub artifact: Option<String>,
    pub lock: Option<String>,
    /// Jobs whose results this one needs first (builds of artifacts it uses).
    pub after: Vec<String>,
    /// For candidate and combination jobs of a gate that compares with a baseline: the key
    /// of the baseline job (the same test, every item at T).
    pub baseline: Option<String>,
}

/// An item whose manifest or build inputs differ between a pending commit and T.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Candidate {
    pub item: ItemId,
    /// T's version (`None`: the item is new).
    pub from: Option<String>,
    /// The pending commit's version (`None`: the item is removed).
    pub to: Option<String>,
    /// Only the build recipe or its files changed, not the manifest.
    pub inputs_only: bool,
}

/// A commit on S that T does not contain yet.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Pending {
    #[serde(serialize_with = "ser_oid")]
    pub commit: ObjectId,
    pub subject: String,
    pub time: i64,
    pub candidates: Vec<Candidate>,
    pub changed_tests: Vec<String>,
    /// The keys of the jobs the gate requires for this commit.
    pub required: Vec<String>,
    /// Candidates no test uses (when the gate requires tests).
    pub untested: Vec<ItemId>,
}

/// Everything about one stage move S → T.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct MovePlan {
    pub from: Stage,
    pub to: Stage,
    pub gate: Gate,
    #[serde(serialize_with = "ser_oid")]
    pub from_head: ObjectId,
    #[serde(serialize_with = "ser_oid")]
    pub to_head: ObjectId,
    pub pending: Vec<Pending>,
    pub jobs: BTreeMap<String, Job>,
}

/// Reads the pipeline and plans each stage move.
pub struct Planner<'r> {
    pub repo: &'r Repo,
    pub pipeline: Pipeline,
    pub cache: Rc<ParseCache>,
    /// Stage heads read from here instead of the stage's branch (by stage name): `plan
    /// --rev` plans what a pull request's head would cause, without moving any ref.
    pub heads: BTreeMap<String, ObjectId>,
}

impl<'r> Planner<'r> {
    /// Read the pipeline from the commit at `rev` (HEAD by default: the work tree's branch).
    pub fn new(repo: &'r Repo, rev: Option<&str>) -> Result<Planner<'r>> {
        let cache = Rc::new(ParseCache::default());
        let rev = rev.unwrap_or("HEAD");
        let commit = repo.resolve(rev).map_err(|_| {
            Error::usage_help(
                format!(
                    "cannot read the pipeline: {rev:?} does not name a commit in {}",
                    repo.root_dir().display()
                ),
                "run `stagegate init` to create a state repository, or pass -C DIR",
            )
        })?;
        let pipeline = Snapshot::new(repo, commit, cache.clone())?.pipeline()?;
        Ok(Planner {
            repo,
            pipeline,
            cache,
            heads: BTreeMap::new(),
        })
    }

    pub fn snapshot(&self, commit: ObjectId) -> Result<Snapshot<'r>> {
        Snapshot::new(self.repo, commit, self.cache.clone())
    }

    pub fn stage_head(&self, stage: &Stage) -> Result<ObjectId> {
        if let Some(id) = self.heads.get(&stage.name) {
            return Ok(*id);
        }
        self.repo.ref_target(&stage.ref_name())?.ok_or_else(|| {
            Error::usage_help(
                format!("stage {:?} has no branch {:?}", stage.name, stage.branch),
                format!("create it: git branch {} <commit>", stage.branch),
            )
        })
    }

    /// Find a stage by name or branch.
    pub fn stage(&self, name: &str) -> Result<&Stage> {
        self.pipeline
            .stages
            .iter()
            .find(|s| s.name == name || s.branch == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self
                    .pipeline
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                Error::usage_help(
                    format!("no stage named {name:?}"),
                    format!("stages are: {}", names.join(", ")),
                )
            })
    }

    /// The gate into `to`, as configured on `to`'s own branch: a commit cannot change the
    /// rules of its own promotion. Falls back to the pipeline read at start.
    pub fn gate_of(&self, to: &Stage, to_head: ObjectId) -> Result<Gate> {
        match self.snapshot(to_head)?.pipeline() {
            Ok(p) => Ok(p.gate(&to.name)),
            Err(_) => Ok(self.pipeline.gate(&to.name)),
        }
    }

    /// Plans for every move, optionally only the move into or out of `stage`.
    pub fn plan_all(&self, stage: Option<&str>) -> Result<Vec<MovePlan>> {
        let only = stage
            .map(|s| self.stage(s).map(|s| s.name.clone()))
            .transpose()?;
        let moves: Vec<(Stage, Stage)> = self
            .pipeline
            .moves()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect();
        moves
            .iter()
            .filter(|(s, t)| only.as_ref().is_none_or(|o| &s.name == o || &t.name == o))
            .map(|(s, t)| self.plan_move(s, t))
            .collect()
    }

    pub fn plan_move(&self, from: &Stage, to: &Stage) -> Result<MovePlan> {
        let from_head = self.stage_head(from)?;
        let to_head = self.stage_head(to)?;
        let gate = self.gate_of(to, to_head)?;
        let base = self.repo.merge_base(from_head, to_head)?;
        let ids = self.repo.first_parents(from_head, base, MAX_PENDING)?;
        let t = self.snapshot(to_head)?;
        let mut plan = MovePlan {
            from: from.clone(),
            to: to.clone(),
            gate,
            from_head,
            to_head,
            pending: Vec::new(),
            jobs: BTreeMap::new(),
        };
        for id in ids {
            let c = self.snapshot(id)?;
            let info = self.repo.commit(id)?;
            let (candidates, changed_tests) = self.candidates(&c, &t)?;
            let mut pending = Pending {
                commit: id,
                subject: info.subject().to_string(),
                time: info.time,
                candidates,
                changed_tests,
                required: Vec::new(),
                untested: Vec::new(),
            };
            self.jobs_for(&mut plan, &mut pending, &c, &t)?;
            plan.pending.push(pending);
        }
        Ok(plan)
    }

    /// The items (and tests) whose definition differs between `c` and `t`.
    pub fn candidates(&self, c: &Snapshot, t: &Snapshot) -> Result<(Vec<Candidate>, Vec<String>)> {
        let mut out = Vec::new();
        for kind in ItemKind::ALL {
            let (a, b) = (c.dir(kind.dir())?, t.dir(kind.dir())?);
            if a == b {
                continue;
            }
            let b_map: BTreeMap<&str, ObjectId> =
                b.iter().map(|e| (e.name.as_str(), e.id)).collect();
            let a_map: BTreeMap<&str, ObjectId> =
                a.iter().map(|e| (e.name.as_str(), e.id)).collect();
            for (name, oid) in &a_map {
                if b_map.get(name) != Some(oid)
                    && let Some(n) = name.strip_suffix(".yaml")
                {
                    let id = ItemId::new(kind, n);
                    let to = c.item(&id)?.map(|(_, i)| i.version.clone());
                    let from = t.item(&id)?.map(|(_, i)| i.version.clone());
                    out.push(Candidate {
                        item: id,
                        from,
                        to,
                        inputs_only: false,
                    });
                }
            }
            for name in b_map.keys().filter(|n| !a_map.contains_key(*n)) {
                if let Some(n) = name.strip_suffix(".yaml") {
                    let id = ItemId::new(kind, n);
                    let from = t.item(&id)?.map(|(_, i)| i.version.clone());
                    out.push(Candidate {
                        item: id,
                        from,
                        to: None,
                        inputs_only: false,
                    });
                }
            }
        }
        // Tests whose manifest changed.
        let mut changed_tests = BTreeSet::new();
        let (ta, tb) = (c.dir(TESTS_DIR)?, t.dir(TESTS_DIR)?);
        if ta != tb {
            for e in ta.iter().filter(|e| e.name.ends_with(".yaml")) {
                if !tb.iter().any(|x| x.name == e.name && x.id == e.id) {
                    changed_tests.insert(e.name.trim_end_matches(".yaml").to_string());
                }
            }
        }
        // Files outside the manifests: build recipes and test scripts.
        let mut changed_files = Vec::new();
        diff_paths(
            self.repo,
            Some(c.tree),
            Some(t.tree),
            "",
            &mut changed_files,
        )?;
        if !changed_files.is_empty() {
            let changed: BTreeSet<&str> = changed_files.iter().map(String::as_str).collect();
            let touches = |files: &[(String, Option<ObjectId>)]| {
                files.iter().any(|(p, _)| {
                    changed.contains(p.as_str())
                        || changed.iter().any(|c| c.starts_with(&format!("{p}/")))
                })
            };
            for id in c.item_ids(ItemKind::Image)? {
                if out.iter().any(|cand| cand.item == id) {
                    continue;
                }
                if let Some((_, item)) = c.item(&id)?
                    && item.build.is_some()
                    && touches(&c.build_files(&item)?)
                {
                    out.push(Candidate {
                        item: id,
                        from: Some(item.version.clone()),
                        to: Some(item.version.clone()),
                        inputs_only: true,
                    });
                }
            }
            for (_, test) in c.tests()?.iter() {
                if touches(&c.test_files(test)?) {
                    changed_tests.insert(test.name.clone());
                }
            }
        }
        out.sort_by(|a, b| a.item.cmp(&b.item));
        Ok((out, changed_tests.into_iter().collect()))
    }

    fn jobs_for(
        &self,
        plan: &mut MovePlan,
        pending: &mut Pending,
        c: &Snapshot,
        t: &Snapshot,
    ) -> Result<()> {
        let present: Vec<&Candidate> = pending
            .candidates
            .iter()
            .filter(|k| k.to.is_some())
            .collect();
        let cand_ids: BTreeSet<ItemId> = present.iter().map(|k| k.item.clone()).collect();
        let mut builds: BTreeMap<ItemId, String> = BTreeMap::new();

        if plan.gate.requires(Requirement::Build) {
            // Parents before children, so a child's build can name its parent's build job.
            let mut order: Vec<ItemId> = cand_ids
                .iter()
                .filter(|i| i.kind == ItemKind::Image)
                .cloned()
                .collect();
            order.sort_by_key(|id| depth(c, id));
            for id in order {
                let Some((oid, item)) = c.item(&id)? else {
                    continue;
                };
                if item.build.is_none() {
                    continue;
                }
                let job = self.build_job(c, t, &item, oid, &builds)?;
                builds.insert(id, job.key.clone());
                pending.required.push(job.key.clone());
                plan.jobs.entry(job.key.clone()).or_insert(job);
            }
        }

        if plan.gate.requires(Requirement::Test) {
            let mut used: BTreeSet<ItemId> = BTreeSet::new();
            for (test_oid, test) in c.tests()?.iter() {
                let touched: Vec<ItemId> = test
                    .uses
                    .iter()
                    .filter(|u| cand_ids.contains(*u))
                    .cloned()
                    .collect();
                used.extend(touched.iter().cloned());
                let mut envs: Vec<(Role, Vec<ItemId>)> = Vec::new();
                if touched.is_empty() {
                    if pending.changed_tests.contains(&test.name) {
                        envs.push((Role::TestChange, Vec::new()));
                    }
                } else {
                    for u in &touched {
                        envs.push((Role::Candidate, vec![u.clone()]));
                    }
                    if touched.len() > 1 {
                        envs.push((Role::Combination, touched.clone()));
                    }
                }
                for (role, set) in envs {
                    // A solo environment T lacks an item for is covered by the combination.
                    let Some(mut job) =
                        self.test_job(c, t, c.commit, test, *test_oid, role, &set, &builds)?
                    else {
                        continue;
                    };
                    if plan.gate.baseline
                        && role != Role::TestChange
                        && let Some((b_oid, b_test)) = t.test(&test.name)?
                        && let Some(b) = self.test_job(
                            t,
                            t,
                            t.commit,
                            &b_test,
                            b_oid,
                            Role::Baseline,
                            &[],
                            &BTreeMap::new(),
                        )?
                    {
                        job.baseline = Some(b.key.clone());
                        plan.jobs.entry(b.key.clone()).or_insert(b);
                    }
                    pending.required.push(job.key.clone());
                    plan.jobs.entry(job.key.clone()).or_insert(job);
                }
            }
            pending.untested = cand_ids
                .iter()
                .filter(|i| !used.contains(*i))
                .cloned()
                .collect();
        }
        pending.required.sort();
        pending.required.dedup();
        Ok(())
    }

    /// The environment entry for `id` as seen in `snap`, or `None` if `snap` lacks it.
    fn env_item(
        &self,
        snap: &Snapshot,
        id: &ItemId,
        candidate: bool,
        builds: &BTreeMap<ItemId, String>,
    ) -> Result<Option<EnvItem>> {
        let Some((oid, item)) = snap.item(id)? else {
            return Ok(None);
        };
        let mut env = EnvItem {
            item: id.clone(),
            version: item.version.clone(),
            candidate,
            manifest: oid,
            digest: None,
            location: None,
            build_job: None,
            git: item.source.as_ref().map(|s| s.git.clone()),
            commit: item.source.as_ref().and_then(|s| s.commit.clone()),
        };
        if candidate && let Some(k) = builds.get(id) {
            env.build_job = Some(k.clone());
        } else if let Some(rec) = snap.built(id)?
            && rec.version == item.version
        {
            env.digest = Some(rec.digest.clone());
            env.location = Some(rec.location.clone());
        }
        Ok(Some(env))
    }

    #[allow(clippy::too_many_arguments)]
    fn test_job(
        &self,
        c: &Snapshot,
        t: &Snapshot,
        checkout: ObjectId,
        test: &Test,
        test_oid: ObjectId,
        role: Role,
        set: &[ItemId],
        builds: &BTreeMap<ItemId, String>,
    ) -> Result<Option<Job>> {
        let mut env = Vec::new();
        for u in &test.uses {
            let candidate = set.contains(u);
            let snap = if candidate { c } else { t };
            match self.env_item(snap, u, candidate, builds)? {
                Some(e) => env.push(e),
                None => return Ok(None),
            }
        }
        let files = c.test_files(test)?;
        let key = job_key("test", &test.name, test_oid, &files, &env);
        let after = env.iter().filter_map(|e| e.build_job.clone()).collect();
        Ok(Some(Job {
            key,
            kind: JobKind::Test,
            name: test.name.clone(),
            role,
            candidates: set.to_vec(),
            commit: checkout,
            run: test.run.clone(),
            timeout: test.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT),
            retries: test.retries,
            env,
            artifact: None,
            lock: None,
            after,
            baseline: None,
        }))
    }

    fn build_job(
        &self,
        c: &Snapshot,
        t: &Snapshot,
        item: &Item,
        oid: ObjectId,
        builds: &BTreeMap<ItemId, String>,
    ) -> Result<Job> {
        let build = item.build.as_ref().expect("caller checked");
        // The item itself (its version, for the recipe), then its parent image.
        let mut env = vec![EnvItem {
            item: item.id.clone(),
            version: item.version.clone(),
            candidate: true,
            manifest: oid,
            digest: None,
            location: None,
            build_job: None,
            git: None,
            commit: None,
        }];
        if let Some(parent) = item.parent_image() {
            // The parent as it will be: being built in this commit, or T's built one.
            let in_commit = builds.contains_key(&parent);
            let snap = if in_commit { c } else { t };
            if let Some(e) = self.env_item(snap, &parent, in_commit, builds)? {
                env.push(e);
            }
        }
        let files = c.build_files(item)?;
        let name = item.id.to_string();
        let key = job_key("build", &name, oid, &files, &env);
        let after = env.iter().filter_map(|e| e.build_job.clone()).collect();
        Ok(Job {
            key,
            kind: JobKind::Build,
            name,
            role: Role::Build,
            candidates: vec![item.id.clone()],
            commit: c.commit,
            run: build.run.clone(),
            timeout: build.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT),
            retries: 0,
            env,
            artifact: Some(build.artifact.clone()),
            lock: build.lock.clone(),
            after,
            baseline: None,
        })
    }
}

/// A one-line label for people: `test  boot [images/host]`, `build images/host`.
pub fn describe(job: &Job) -> String {
    let what = match job.kind {
        JobKind::Build => format!("build {}", job.name),
        JobKind::Test => format!("test  {}", job.name),
    };
    let env = match job.role {
        Role::Build => String::new(),
        Role::Baseline => " [baseline]".into(),
        Role::TestChange => " [changed test]".into(),
        Role::Candidate | Role::Combination => {
            let names: Vec<String> = job.candidates.iter().map(|c| c.to_string()).collect();
            format!(" [{}]", names.join(" + "))
        }
    };
    format!("{what}{env}")
}

fn job_key(
    kind: &str,
    name: &str,
    manifest: ObjectId,
    files: &[(String, Option<ObjectId>)],
    env: &[EnvItem],
) -> String {
    KeyInput {
        v: 1,
        kind,
        name,
        manifest: manifest.to_string(),
        files: files
            .iter()
            .map(|(p, o)| (p.clone(), o.map(|o| o.to_string())))
            .collect(),
        items: env
            .iter()
            .map(|e| {
                let artifact = e
                    .digest
                    .clone()
                    .or_else(|| e.build_job.as_ref().map(|k| format!("build:{k}")));
                (
                    e.item.to_string(),
                    KeyItem {
                        manifest: e.manifest.to_string(),
                        artifact,
                    },
                )
            })
            .collect(),
    }
    .key()
}

/// How many `based-on` image ancestors an image has in `snap` (0 for a base image).
fn depth(snap: &Snapshot, id: &ItemId) -> usize {
    let mut d = 0;
    let mut cur = id.clone();
    while d < 64 {
        match snap
            .item(&cur)
            .ok()
            .flatten()
            .and_then(|(_, i)| i.parent_image())
        {
            Some(p) => {
                d += 1;
                cur = p;
            }
            None => break,
        }
    }
    d
}

/// Paths of files that differ between two trees, skipping stagegate's records and the item
/// manifest directories (compared separately). Identical subtrees are skipped by id.
fn diff_paths(
    repo: &Repo,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
    prefix: &str,
    out: &mut Vec<String>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ea = match a {
        Some(a) => repo.tree_entries(a)?,
        None => Vec::new(),
    };
    let eb = match b {
        Some(b) => repo.tree_entries(b)?,
        None => Vec::new(),
    };
    let ma: BTreeMap<&str, &crate::repo::Entry> = ea.iter().map(|e| (e.name.as_str(), e)).collect();
    let mb: BTreeMap<&str, &crate::repo::Entry> = eb.iter().map(|e| (e.name.as_str(), e)).collect();
    let names: BTreeSet<&str> = ma.keys().chain(mb.keys()).copied().collect();
    for name in names {
        if prefix.is_empty() && (name == RECORDS_DIR || ItemKind::from_dir(name).is_some()) {
            continue;
        }
        let x = ma.get(name).copied();
        let y = mb.get(name).copied();
        if x.map(|e| (e.id, e.kind)) == y.map(|e| (e.id, e.kind)) {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let tree =
            |e: Option<&crate::repo::Entry>| e.filter(|e| e.kind == EntryKind::Tree).map(|e| e.id);
        let (tx, ty) = (tree(x), tree(y));
        if tx.is_some() || ty.is_some() {
            diff_paths(repo, tx, ty, &path, out)?;
        }
        if x.is_some_and(|e| e.kind != EntryKind::Tree)
            || y.is_some_and(|e| e.kind != EntryKind::Tree)
        {
            out.push(path);
        }
    }
    Ok(())
}

fn ser_oid<S: serde::Serializer>(id: &ObjectId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
