//! The pipeline model: stages, candidates, environments and jobs.
//!
//! For each stage move S → T this computes, from git objects alone (no work tree): the
//! candidates (items, tests and the pipeline file whose content differs between S's head
//! tree and T's head tree, see [`candidate`]), and the jobs the gate into T requires for
//! each, in the environment of DESIGN.md §4.1: a candidate only ever with T's versions of
//! everything else, judged by T's tests (a changed test by its own new version, with T's
//! items). Candidates that cannot be judged apart — a new test and the new item it uses, a
//! derived image and the new parent it needs, two items sharing a changed file — form one
//! group that is judged, and moves, as one. The rules (stages, gates) come from T, never
//! from S. A job that cannot be planned (an artifact nobody built, an item T lacks) is not
//! planned: its group waits, saying why. It reads no results and runs nothing: the ledger
//! and the runner come after it.

pub mod candidate;
pub mod key;
pub mod resolve;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use gix::ObjectId;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys::{Digest, JobKey};
pub use crate::manifest::CandidateId;
use crate::manifest::{
    DEFAULT_JOB_TIMEOUT, Gate, Item, ItemId, ItemKind, Pipeline, Requirement, Stage, Test,
};
use crate::repo::Repo;
pub use candidate::{Candidate, Content};
use key::{KeyInput, KeyItem};
pub use snapshot::{ParseCache, Snapshot, short};

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
    /// Several candidates together, everything else at T.
    Combination,
    /// A changed test, every item at T (or at S, for the items of its group).
    TestChange,
    /// The same test with every item at T, for comparison.
    Baseline,
    /// A regressed test with the candidate at one of the upstream commits `bisect` tests.
    Bisect,
}

/// One item of a job's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct EnvItem {
    pub item: ItemId,
    pub version: String,
    /// Whether this is S's version (a candidate) or T's.
    pub candidate: bool,
    #[serde(serialize_with = "ser_oid")]
    pub manifest: ObjectId,
    /// `sha256:…` of the built artifact, when the image has a built record for this version.
    pub digest: Option<Digest>,
    /// The store location of that artifact.
    pub location: Option<String>,
    /// The build job producing the artifact, when it is built in this plan.
    pub build_job: Option<JobKey>,
    /// For components with a source: the repository and commit.
    pub git: Option<String>,
    pub commit: Option<String>,
}

/// One build, or one test run in one environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Job {
    pub key: JobKey,
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
    /// For builds: the cache file the recipe writes into `$STAGEGATE_OUT` (`build.cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// For builds: the cache of the item's build record on T, given to the recipe as
    /// `$STAGEGATE_CACHE`: what the last build that passed T's gate left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_from: Option<CacheFrom>,
    /// Jobs whose results this one needs first (builds of artifacts it uses).
    pub after: Vec<JobKey>,
    /// For candidate and combination jobs of a gate that compares with a baseline: the key
    /// of the baseline job (the same test, every item at T).
    pub baseline: Option<JobKey>,
    /// The labels a host must offer to run it: the test's (or built image's) `needs:`,
    /// sorted. Not part of the key: a result from any host that offers them counts.
    pub needs: Vec<String>,
}

/// The cache a build starts from: that of the item's build record on T, the stage the
/// build is for, so it is the last one that passed T's gate ("last known good").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct CacheFrom {
    /// The version whose build left it.
    pub version: String,
    pub digest: Digest,
    pub location: String,
}

/// What blocks a group, as output and records name it (`missing-artifact`, …); the gate
/// gives it as its reason (`gate::ReasonKind`). Declared in the order of the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BlockedKind {
    /// A test on T uses an item S removes.
    InUse,
    /// A candidate needs an item that is invalid on S.
    InvalidDependency,
    /// A job needs an artifact nobody built (or cannot build).
    MissingArtifact,
    /// A derived image whose parent is pending too.
    ParentPending,
    /// Rejected before at this content: nothing runs for it again.
    Rejected,
    /// No test uses a candidate item, and the gate requires tests.
    Untested,
}

impl BlockedKind {
    /// The name output and records carry (the same as serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            BlockedKind::InUse => "in-use",
            BlockedKind::InvalidDependency => "invalid-dependency",
            BlockedKind::MissingArtifact => "missing-artifact",
            BlockedKind::ParentPending => "parent-pending",
            BlockedKind::Rejected => "rejected",
            BlockedKind::Untested => "untested",
        }
    }
}

impl std::fmt::Display for BlockedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a group cannot be judged yet: it waits, saying this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Blocked {
    pub kind: BlockedKind,
    pub candidate: Option<CandidateId>,
    pub message: String,
}

/// Candidates judged, and moved, together; most groups have one member.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Group {
    pub members: Vec<CandidateId>,
    /// The keys of the jobs the gate requires of this group.
    pub required: Vec<JobKey>,
    pub blocked: Vec<Blocked>,
}

/// Everything about one stage move S → T.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct MovePlan {
    pub from: Stage,
    pub to: Stage,
    /// The gate into T, as T's own pipeline says.
    pub gate: Gate,
    #[serde(serialize_with = "ser_oid")]
    pub from_head: ObjectId,
    #[serde(serialize_with = "ser_oid")]
    pub to_head: ObjectId,
    pub candidates: Vec<Candidate>,
    /// The valid candidates, grouped; invalid candidates are in no group.
    pub groups: Vec<Group>,
    pub jobs: BTreeMap<JobKey, Job>,
    /// Whose signatures make evidence count, as T's own pipeline says (`None`: all counts).
    #[serde(skip)]
    pub trust: Option<crate::manifest::Trust>,
}

impl MovePlan {
    pub fn candidate(&self, id: &CandidateId) -> Option<&Candidate> {
        self.candidates.iter().find(|c| &c.id == id)
    }

    /// The index of the group `id` belongs to.
    pub fn group_of(&self, id: &CandidateId) -> Option<usize> {
        self.groups.iter().position(|g| g.members.contains(id))
    }
}

/// Groups of candidates, each with what already blocks it.
type Grouping = (Vec<Vec<CandidateId>>, Vec<Vec<Blocked>>);

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
    /// Read the pipeline. The stages and gates are those of the *last* stage's branch: the
    /// most trusted rules, which no pending change can rewrite for itself. `rev` (HEAD by
    /// default) only says where to find the stage list; when its pipeline does not parse,
    /// any local branch with a valid pipeline will do.
    pub fn new(repo: &'r Repo, rev: Option<&str>) -> Result<Planner<'r>> {
        let cache = Rc::new(ParseCache::default());
        let rev = rev.unwrap_or("HEAD");
        let commit = repo.resolve(rev).map_err(|_| {
            Error::usage_help(
                format!(
                    "cannot read the pipeline: {rev:?} does not name a commit in {}",
                    repo.root_dir().display()
                ),
                format!(
                    "run `{}` to create a state repository, or pass -C DIR",
                    crate::advice::Advice::Init { dir: None }
                ),
            )
        })?;
        let first = Snapshot::new(repo, commit, cache.clone())?.pipeline();
        let boot = match first {
            Ok(p) => p,
            Err(e) => {
                let mut found = None;
                for (_, id) in repo.branches()? {
                    if let Ok(p) = Snapshot::new(repo, id, cache.clone())?.pipeline() {
                        found = Some(p);
                        break;
                    }
                }
                found.ok_or(e)?
            }
        };
        let pipeline = match boot.stages.last() {
            Some(last) => match repo.ref_target(&last.ref_name())? {
                Some(id) => Snapshot::new(repo, id, cache.clone())?
                    .pipeline()
                    .unwrap_or(boot),
                None => boot,
            },
            None => boot,
        };
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

    /// The repository files `job` names, as its key covers them (its own manifest, the
    /// script its `run` starts with, `files:`, for builds `build.files`), where its commit
    /// has them: all a job's checkout needs to hold.
    pub fn job_files(&self, job: &Job) -> Result<Vec<String>> {
        let snap = self.snapshot(job.commit)?;
        let (manifest, files) = match job.kind {
            JobKind::Test => match snap.test(&job.name)? {
                Some((_, test)) => (test.path(), snap.test_files(&test)?),
                None => return Ok(Vec::new()),
            },
            JobKind::Build => match ItemId::parse(&job.name) {
                Some(id) => match snap.item(&id)? {
                    Some((_, item)) => (id.path(), snap.build_files(&item)?),
                    None => return Ok(Vec::new()),
                },
                None => return Ok(Vec::new()),
            },
        };
        // The manifest is part of the content its key hashes: a recipe may read it (a
        // version, a `based-on`) like any file it names.
        let mut paths: Vec<String> = files
            .into_iter()
            .filter_map(|(path, oid)| oid.map(|_| path))
            .collect();
        if snap.oid(&manifest)?.is_some() && !paths.contains(&manifest) {
            paths.push(manifest);
        }
        Ok(paths)
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

    /// The stage moving into `to`, if `to` has a gate (is not the first stage).
    pub fn move_into(&self, to: &str) -> Option<(&Stage, &Stage)> {
        self.pipeline.moves().find(|(_, t)| t.name == to)
    }

    /// The gate into `to`, as configured on `to`'s own branch: a change cannot rewrite the
    /// rules of its own promotion. Falls back to the pipeline read at start.
    pub fn gate_of(&self, to: &Stage, to_head: ObjectId) -> Result<Gate> {
        match self.snapshot(to_head)?.pipeline() {
            Ok(p) => Ok(p.gate(&to.name)),
            Err(_) => Ok(self.pipeline.gate(&to.name)),
        }
    }

    /// The `trust:` of T's own pipeline at `to_head` (the last stage's, when T's does not
    /// parse), as the gate into T weighs evidence.
    pub fn trust_of(&self, to_head: ObjectId) -> Result<Option<crate::manifest::Trust>> {
        match self.snapshot(to_head)?.pipeline() {
            Ok(p) => Ok(p.trust),
            Err(_) => Ok(self.pipeline.trust.clone()),
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
        self.plan_heads(from, to, from_head, to_head)
    }

    /// Plan the move S → T between two given heads (what `verify` replays).
    pub fn plan_heads(
        &self,
        from: &Stage,
        to: &Stage,
        from_head: ObjectId,
        to_head: ObjectId,
    ) -> Result<MovePlan> {
        let gate = self.gate_of(to, to_head)?;
        let trust = self.trust_of(to_head)?;
        let s = self.snapshot(from_head)?;
        let t = self.snapshot(to_head)?;
        let candidates = candidate::candidates(&s, &t)?;
        let mut plan = MovePlan {
            from: from.clone(),
            to: to.clone(),
            gate,
            from_head,
            to_head,
            candidates,
            groups: Vec::new(),
            jobs: BTreeMap::new(),
            trust,
        };
        let (groups, early) = self.group(&plan.candidates, &s, &t)?;
        for (members, blocked) in groups.into_iter().zip(early) {
            // A group that must wait for something else plans nothing until then.
            let g = if blocked.is_empty() {
                self.plan_group(&mut plan, &members, &s, &t)?
            } else {
                Group {
                    members,
                    required: Vec::new(),
                    blocked,
                }
            };
            plan.groups.push(g);
        }
        Ok(plan)
    }

    /// Group the valid candidates that cannot be judged apart; with each group, what already
    /// blocks it (a dependency that is invalid on S).
    fn group(&self, cands: &[Candidate], s: &Snapshot, t: &Snapshot) -> Result<Grouping> {
        let valid: Vec<&Candidate> = cands.iter().filter(|c| !c.is_invalid()).collect();
        let index: BTreeMap<&CandidateId, usize> =
            valid.iter().enumerate().map(|(i, c)| (&c.id, i)).collect();
        let invalid: BTreeSet<&CandidateId> = cands
            .iter()
            .filter(|c| c.is_invalid())
            .map(|c| &c.id)
            .collect();
        let mut parent: Vec<usize> = (0..valid.len()).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let union = |p: &mut Vec<usize>, a: usize, b: usize| {
            let (ra, rb) = (find(p, a), find(p, b));
            if ra != rb {
                p[ra.max(rb)] = ra.min(rb);
            }
        };
        let mut early: Vec<Vec<Blocked>> = vec![Vec::new(); valid.len()];
        // Something T lacks that `c` needs: join it, or wait when it is invalid on S.
        let needs = |p: &mut Vec<usize>, early: &mut Vec<Vec<Blocked>>, i: usize, u: &ItemId| {
            let uid = CandidateId::Item(u.clone());
            if let Some(&j) = index.get(&uid) {
                union(p, i, j);
            } else if invalid.contains(&uid) {
                early[i].push(Blocked {
                    kind: BlockedKind::InvalidDependency,
                    candidate: Some(valid[i].id.clone()),
                    message: format!(
                        "{} needs {u}, which is invalid on {}: fix {u} first",
                        valid[i].id,
                        s_name(s)
                    ),
                });
            }
        };
        let mut by_file: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in valid.iter().enumerate() {
            if !c.present {
                continue;
            }
            for p in c.paths.iter().skip(1) {
                let here = s.oid(p)?;
                if t.oid(p)? != here {
                    by_file.entry(p.clone()).or_default().push(i);
                }
            }
            match &c.id {
                CandidateId::Test(name) => {
                    if let Some((_, test)) = s.test_manifest(name)? {
                        for u in &test.uses {
                            if t.item_oid(u)?.is_none() {
                                needs(&mut parent, &mut early, i, u);
                            }
                        }
                    }
                }
                CandidateId::Item(id) => {
                    if let Some((_, item)) = s.item(id)?
                        && let Some(p) = item.parent_image()
                    {
                        let pid = CandidateId::Item(p.clone());
                        if t.item_oid(&p)?.is_none() {
                            needs(&mut parent, &mut early, i, &p);
                        } else if index.contains_key(&pid) || invalid.contains(&pid) {
                            // A derived image is built on its parent: while the parent is
                            // pending too, building on T's would test nothing that lands.
                            early[i].push(Blocked {
                                kind: BlockedKind::ParentPending,
                                candidate: Some(c.id.clone()),
                                message: format!(
                                    "{} is built on {p}, which is pending too: it waits for {p} to move first",
                                    c.id
                                ),
                            });
                        }
                    }
                }
                CandidateId::Pipeline | CandidateId::Files => {}
            }
        }
        for members in by_file.values() {
            for w in members.windows(2) {
                union(&mut parent, w[0], w[1]);
            }
        }
        let mut groups: BTreeMap<usize, (Vec<CandidateId>, Vec<Blocked>)> = BTreeMap::new();
        for (i, c) in valid.iter().enumerate() {
            let root = find(&mut parent, i);
            let g = groups.entry(root).or_default();
            g.0.push(c.id.clone());
            g.1.append(&mut early[i]);
        }
        Ok(groups.into_values().unzip())
    }

    /// The jobs the gate requires of the candidates `members` (valid ones), with everything
    /// else at T.
    fn plan_group(
        &self,
        plan: &mut MovePlan,
        members: &[CandidateId],
        s: &Snapshot,
        t: &Snapshot,
    ) -> Result<Group> {
        let mut g = Group {
            members: members.to_vec(),
            required: Vec::new(),
            blocked: Vec::new(),
        };
        let present = |id: &CandidateId| plan.candidate(id).is_some_and(|c| c.present);
        let items: BTreeSet<ItemId> = members
            .iter()
            .filter(|m| present(m))
            .filter_map(|m| m.item().cloned())
            .collect();
        let removed: BTreeSet<ItemId> = members
            .iter()
            .filter(|m| !present(m))
            .filter_map(|m| m.item().cloned())
            .collect();
        let tests: BTreeSet<&str> = members
            .iter()
            .filter_map(|m| match m {
                CandidateId::Test(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        let mut builds: BTreeMap<ItemId, JobKey> = BTreeMap::new();
        let mut jobs: Vec<Job> = Vec::new();

        if plan.gate.requires(Requirement::Build) {
            // Parents before children, so a child's build can name its parent's build job.
            // Components may have a build too (DESIGN §3); none is derived from another.
            let mut order: Vec<ItemId> = items.iter().cloned().collect();
            order.sort_by_key(|id| depth(s, id));
            for id in order {
                let Some((oid, item)) = s.item(&id)? else {
                    continue;
                };
                if item.build.is_none() {
                    continue;
                }
                match self.build_job(s, t, &item, oid, &builds, &items)? {
                    Ok(job) => {
                        builds.insert(id, job.key.clone());
                        jobs.push(job);
                    }
                    Err(why) => g.blocked.push(Blocked {
                        kind: BlockedKind::MissingArtifact,
                        candidate: Some(CandidateId::Item(id.clone())),
                        message: why,
                    }),
                }
            }
        }

        // A removal waits while anything T keeps still uses the item, whatever the gate
        // requires (a build-only gate runs no test that would notice): a test (S's version
        // of one in the group, T's of the others) or an image built on it.
        if !removed.is_empty() {
            let mut users: Vec<(String, Vec<ItemId>)> = Vec::new();
            if !plan.gate.requires(Requirement::Test) {
                for (_, test) in t.tests()?.iter() {
                    let uses = if tests.contains(test.name.as_str()) {
                        match s.test_manifest(&test.name)? {
                            Some((_, st)) => st.uses.clone(),
                            None => continue,
                        }
                    } else {
                        test.uses.clone()
                    };
                    users.push((format!("tests/{}", test.name), uses));
                }
            }
            for id in t.item_ids(ItemKind::Image)? {
                let member = CandidateId::Item(id.clone());
                if members.contains(&member) && !present(&member) {
                    continue;
                }
                let snap = if members.contains(&member) { s } else { t };
                if let Ok(Some((_, item))) = snap.item(&id)
                    && let Some(p) = item.parent_image()
                {
                    users.push((id.to_string(), vec![p]));
                }
            }
            for (user, uses) in users {
                if let Some(u) = uses.iter().find(|u| removed.contains(*u)) {
                    g.blocked.push(Blocked {
                        kind: BlockedKind::InUse,
                        candidate: Some(CandidateId::Item(u.clone())),
                        message: format!(
                            "{user} on {} uses {u}, which is removed: change or remove {user} first",
                            plan.to.name
                        ),
                    });
                }
            }
        }

        if plan.gate.requires(Requirement::Test) {
            let mut used: BTreeSet<ItemId> = BTreeSet::new();
            // The tests that judge: S's version of the tests in the group, T's of the others.
            let mut judging: Vec<(Snapshot, ObjectId, std::rc::Rc<Test>, bool)> = Vec::new();
            for name in &tests {
                if let Some((oid, test)) = s.test_manifest(name)? {
                    judging.push((self.snapshot(s.commit)?, oid, test, true));
                }
            }
            for (oid, test) in t.tests()?.iter() {
                if tests.contains(test.name.as_str()) {
                    continue;
                }
                if test
                    .uses
                    .iter()
                    .any(|u| items.contains(u) || removed.contains(u))
                {
                    judging.push((self.snapshot(t.commit)?, *oid, test.clone(), false));
                }
            }
            for (src, oid, test, changed) in &judging {
                let mut env = Vec::new();
                let mut why = None;
                for u in &test.uses {
                    if removed.contains(u) {
                        why = Some(Blocked {
                            kind: BlockedKind::InUse,
                            candidate: Some(CandidateId::Item(u.clone())),
                            message: format!(
                                "tests/{} on {} uses {u}, which is removed: change or remove the test first",
                                test.name, plan.to.name
                            ),
                        });
                        break;
                    }
                    let candidate = items.contains(u);
                    let snap = if candidate { s } else { t };
                    match self.env_item(snap, u, candidate, &builds)? {
                        Ok(e) => env.push(e),
                        Err(reason) => {
                            why = Some(Blocked {
                                kind: BlockedKind::MissingArtifact,
                                candidate: Some(CandidateId::Item(u.clone())),
                                message: format!("tests/{} cannot run: {reason}", test.name),
                            });
                            break;
                        }
                    }
                }
                used.extend(test.uses.iter().filter(|u| items.contains(*u)).cloned());
                if let Some(b) = why {
                    g.blocked.push(b);
                    continue;
                }
                let set: Vec<ItemId> = env
                    .iter()
                    .filter(|e| e.candidate)
                    .map(|e| e.item.clone())
                    .collect();
                let role = if *changed {
                    Role::TestChange
                } else if set.len() > 1 {
                    Role::Combination
                } else {
                    Role::Candidate
                };
                let mut job = self.test_job(src, test, *oid, role, set, env)?;
                if plan.gate.baseline && !changed {
                    match self.baseline(t, test, *oid)? {
                        Ok(b) => {
                            job.baseline = Some(b.key.clone());
                            plan.jobs.entry(b.key.clone()).or_insert(b);
                        }
                        Err(reason) => {
                            g.blocked.push(Blocked {
                                kind: BlockedKind::MissingArtifact,
                                candidate: None,
                                message: format!(
                                    "the baseline of tests/{} cannot run: {reason}",
                                    test.name
                                ),
                            });
                            continue;
                        }
                    }
                }
                jobs.push(job);
            }
            for id in items.iter().filter(|i| !used.contains(*i)) {
                g.blocked.push(Blocked {
                    kind: BlockedKind::Untested,
                    candidate: Some(CandidateId::Item(id.clone())),
                    message: format!(
                        "no test uses {id}, and the gate into {} requires tests; add one under tests/ that uses it",
                        plan.to.name
                    ),
                });
            }
        }
        for job in jobs {
            g.required.push(job.key.clone());
            plan.jobs.entry(job.key.clone()).or_insert(job);
        }
        g.required.sort();
        g.required.dedup();
        Ok(g)
    }

    /// The jobs that test the candidates of `groups` together, as they would land on T at
    /// once (DESIGN.md §4.1): every job of their union. Jobs whose environment holds one
    /// group's candidates only are that group's own (same key, same result).
    pub fn plan_combination(&self, plan: &MovePlan, groups: &[usize]) -> Result<(Group, MovePlan)> {
        let s = self.snapshot(plan.from_head)?;
        let t = self.snapshot(plan.to_head)?;
        let members: Vec<CandidateId> = groups
            .iter()
            .flat_map(|i| plan.groups[*i].members.iter().cloned())
            .collect();
        let mut scratch = plan.clone();
        let g = self.plan_group(&mut scratch, &members, &s, &t)?;
        Ok((g, scratch))
    }

    /// The environment entry for `id` as seen in `snap`, or why it cannot be given to a job:
    /// the item is absent, or it is an image with a build and no built artifact.
    fn env_item(
        &self,
        snap: &Snapshot,
        id: &ItemId,
        candidate: bool,
        builds: &BTreeMap<ItemId, JobKey>,
    ) -> Result<std::result::Result<EnvItem, String>> {
        let Some((oid, item)) = snap.item(id)? else {
            return Ok(Err(format!("{id} is not on {}", short(snap.commit))));
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
        } else if item.build.is_some() {
            return Ok(Err(format!(
                "{id} {} has no built artifact on {} (no build record for that version)",
                item.version,
                short(snap.commit)
            )));
        }
        Ok(Ok(env))
    }

    fn test_job(
        &self,
        src: &Snapshot,
        test: &Test,
        test_oid: ObjectId,
        role: Role,
        set: Vec<ItemId>,
        env: Vec<EnvItem>,
    ) -> Result<Job> {
        let files = src.test_files(test)?;
        let key = job_key("test", &test.name, test_oid, &files, &env, None);
        let after = env.iter().filter_map(|e| e.build_job.clone()).collect();
        Ok(Job {
            key,
            kind: JobKind::Test,
            name: test.name.clone(),
            role,
            candidates: set,
            commit: src.commit,
            run: test.run.clone(),
            timeout: test.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT),
            retries: test.retries,
            env,
            artifact: None,
            lock: None,
            cache: None,
            cache_from: None,
            after,
            baseline: None,
            needs: test.needs.clone(),
        })
    }

    /// `job` (a test job) run in another environment: the same test from the same commit,
    /// under the key that environment gives it, with no baseline. What `bisect` runs.
    pub fn with_env(&self, job: &Job, env: Vec<EnvItem>, role: Role) -> Result<Job> {
        let src = self.snapshot(job.commit)?;
        let (oid, test) = src.test_manifest(&job.name)?.ok_or_else(|| {
            Error::infra(format!(
                "tests/{} is gone from {}, where its job was planned",
                job.name,
                short(job.commit)
            ))
        })?;
        let set = env
            .iter()
            .filter(|e| e.candidate)
            .map(|e| e.item.clone())
            .collect();
        self.test_job(&src, &test, oid, role, set, env)
    }

    /// The same test with every item at T.
    fn baseline(
        &self,
        t: &Snapshot,
        test: &Test,
        oid: ObjectId,
    ) -> Result<std::result::Result<Job, String>> {
        let mut env = Vec::new();
        for u in &test.uses {
            match self.env_item(t, u, false, &BTreeMap::new())? {
                Ok(e) => env.push(e),
                Err(why) => return Ok(Err(why)),
            }
        }
        Ok(Ok(self.test_job(
            t,
            test,
            oid,
            Role::Baseline,
            Vec::new(),
            env,
        )?))
    }

    fn build_job(
        &self,
        s: &Snapshot,
        t: &Snapshot,
        item: &Item,
        oid: ObjectId,
        builds: &BTreeMap<ItemId, JobKey>,
        group: &BTreeSet<ItemId>,
    ) -> Result<std::result::Result<Job, String>> {
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
            // The parent as it will be: S's when it moves with this image, else T's built one.
            let with = group.contains(&parent);
            let snap = if with { s } else { t };
            match self.env_item(snap, &parent, with, builds)? {
                Ok(e) => env.push(e),
                Err(why) => return Ok(Err(format!("{} cannot be built: {why}", item.id))),
            }
        }
        let files = s.build_files(item)?;
        let name = item.id.to_string();
        let cache_from = t.built(&item.id)?.and_then(|rec| {
            rec.cache.as_ref().map(|c| CacheFrom {
                version: rec.version.clone(),
                digest: c.digest.clone(),
                location: c.location.clone(),
            })
        });
        let key = job_key(
            "build",
            &name,
            oid,
            &files,
            &env,
            cache_from.as_ref().map(|c| c.digest.as_str()),
        );
        let after = env.iter().filter_map(|e| e.build_job.clone()).collect();
        Ok(Ok(Job {
            key,
            kind: JobKind::Build,
            name,
            role: Role::Build,
            candidates: vec![item.id.clone()],
            commit: s.commit,
            run: build.run.clone(),
            timeout: build.timeout.unwrap_or(DEFAULT_JOB_TIMEOUT),
            retries: 0,
            env,
            artifact: Some(build.artifact.clone()),
            lock: build.lock.clone(),
            cache: build.cache.clone(),
            cache_from,
            after,
            baseline: None,
            needs: item.needs.clone(),
        }))
    }
}

fn s_name(s: &Snapshot) -> String {
    short(s.commit)
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
        Role::Bisect => {
            let at: Vec<String> = job
                .env
                .iter()
                .filter(|e| e.candidate)
                .map(|e| format!("{} at {}", e.item, e.version))
                .collect();
            format!(" [bisect {}]", at.join(" + "))
        }
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
    cache: Option<&str>,
) -> JobKey {
    KeyInput {
        v: 1,
        cache,
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
                // The key hashes the digest's text, or the build's key: the same bytes as
                // when both were strings.
                let artifact = e
                    .digest
                    .as_ref()
                    .map(Digest::to_string)
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

fn ser_oid<S: serde::Serializer>(id: &ObjectId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
