//! Bisect: name the upstream commit that broke a rejected component.
//!
//! A component that tracks an upstream branch (`source.git`, `source.commit`, `source.track`)
//! moves from T's commit to the candidate's, often many upstream commits at once. When the
//! gate rejects it (a test regressed against T), this tests the upstream commits in
//! between, in the same environment as the rejection (T's everything else, the tests that
//! regressed), and names the first bad one:
//!
//! 1. the two ends first: T's commit must pass and the candidate's must fail, each
//!    reproducibly, or the bisect is inconclusive (the regression is flaky, or lies
//!    elsewhere);
//! 2. then a binary search over the tracked branch's first-parent line, like `git bisect
//!    --first-parent`: a merged side branch is one step, its merge;
//! 3. when the first bad commit is a merge, the search goes on into the side it merged
//!    (unless [`Options::first_parent`]): the first bad commit of that side, or the merge
//!    itself when every commit of the side passes (the combination broke it).
//!
//! Each tested commit is settled by [`search::settle`]: `reproduce` agreeing results, and
//! an `error` is no verdict (it is run again; a second one stops the bisect, exit 3).
//! Every result is recorded in the ledger under a job key of its own: the component's
//! manifest pinned to that commit at version `bisect-<commit>` is part of the key, so no
//! two commits share a key, the gate's own jobs keep their verdicts, and a repeated bisect
//! reuses what was recorded. The outcome is
//! recorded too ([`record`]), where the gate, `why`, `log`, decisions and pull requests
//! read it.
//!
//! Running jobs is the caller's ([`Runner`]); this module never prints.

pub mod history;
pub mod record;
pub mod search;

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::advice::Advice;
use crate::error::{Error, Result};
use crate::gate::{JobState, State};
use crate::keys::{ContentKey, JobKey, LONG_COMMIT_DIGITS, short_commit};
use crate::ledger::{Ledger, Verdict};
use crate::manifest::{BisectPolicy, ItemId, ItemKind};
use crate::plan::{CandidateId, Job, JobKind, MovePlan, Planner, Role};
use history::{Upstream, short};
use record::{BisectRecord, CommitRecord, StepRecord};
use search::Settled;

/// How to bisect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agreeing results that settle one tested commit.
    pub reproduce: u32,
    /// Stop at the first bad commit of the tracked branch's first-parent line, even when
    /// it is a merge.
    pub first_parent: bool,
    /// Who is bisecting, for the record.
    pub by: String,
}

/// Runs jobs and records their results in the ledger (the bisect reads them back there).
pub trait Runner {
    /// Run each of `jobs` once. Returns `false` when interrupted.
    fn run(&mut self, jobs: Vec<Job>) -> Result<bool>;
}

/// What happened, as it happens: for the command line to show.
pub enum Progress<'a> {
    /// The commits to search, once the upstream history is read.
    Line { commits: usize },
    /// Testing a commit (`role` as in [`StepRecord::role`]).
    Testing {
        commit: &'a str,
        subject: &'a str,
        role: &'a str,
    },
    /// A commit settled.
    Settled { step: &'a StepRecord },
}

/// A rejected component and what bisecting it needs.
pub struct Target {
    pub id: ItemId,
    pub plan: MovePlan,
    pub content: ContentKey,
    /// T's upstream commit and the candidate's, as the manifests write them.
    pub good: String,
    pub bad: String,
    /// `source.git` as written, and as git reaches it.
    pub git: String,
    pub url: String,
    pub track: Option<String>,
    /// The candidate's manifest text (S's).
    pub manifest: String,
    /// The candidate's jobs that regressed.
    pub jobs: Vec<Job>,
    /// The gate's bisect policy (T's rules), if it has one.
    pub policy: Option<BisectPolicy>,
}

/// What a bisect ended with.
pub enum Outcome {
    /// Found a first bad commit, or found the regression does not reproduce: recorded.
    Done(Box<BisectRecord>),
    /// A signal stopped it; what ran is recorded, the next bisect picks it up.
    Interrupted,
}

/// `stagegate why ID`, as advice.
fn why(id: &impl std::fmt::Display) -> Advice {
    Advice::Why {
        item: id.to_string(),
    }
}

/// The rejected component `id` on the move where it is rejected (judged at `now`), with
/// what bisecting it needs; a usage error (exit 2) saying what to do when it is not one.
pub fn target(planner: &Planner, id: &CandidateId, now: i64) -> Result<Target> {
    let item = match id {
        CandidateId::Item(i) if i.kind == ItemKind::Component => i.clone(),
        _ => {
            return Err(Error::usage_help(
                format!(
                    "{id} is not a component: bisect looks for the upstream commit that broke a component"
                ),
                format!(
                    "name a rejected component that tracks an upstream repository (components/NAME); `{}` lists the rejected candidates",
                    Advice::Status
                ),
            ));
        }
    };
    let view = Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
    let mut states = Vec::new();
    for (s, t) in planner.pipeline.moves() {
        let plan = planner.plan_move(s, t)?;
        if plan.candidate(id).is_none() {
            continue;
        }
        let judgement = crate::judge::judge(planner, plan, &view, now)?;
        match judgement.group(id) {
            None => states.push(format!("waiting on {} → {}", s.name, t.name)),
            Some(g) if g.state != State::Rejected => {
                states.push(format!("{} on {} → {}", g.state, s.name, t.name));
            }
            Some(_) => return target_in(planner, &judgement, &item),
        }
    }
    let help = format!(
        "bisect names the upstream commit behind a rejection: `{}` and `{}` judge {id} first, and `{}` says where it stands",
        Advice::Run,
        Advice::Promote { push: false },
        why(id)
    );
    if states.is_empty() {
        Err(Error::usage_help(
            format!("{id} is not pending on any stage move: there is no rejection to bisect"),
            help,
        ))
    } else {
        Err(Error::usage_help(
            format!(
                "{id} is not rejected ({}): there is no regression to bisect",
                states.join("; ")
            ),
            help,
        ))
    }
}

/// [`target`] on a move already judged, where `item`'s group is rejected: what `why`
/// asks to say whether `bisect` applies, without judging the move again.
pub fn target_in(
    planner: &Planner,
    judgement: &crate::judge::Judgement,
    item: &ItemId,
) -> Result<Target> {
    let id = CandidateId::Item(item.clone());
    let (Some(c), Some(g)) = (judgement.plan.candidate(&id), judgement.group(&id)) else {
        return Err(Error::usage_help(
            format!("{id} is not pending on this move"),
            format!("`{}` says where it stands", why(&id)),
        ));
    };
    let keys = regressed(g, &judgement.facts, &c.content);
    target_on(
        planner,
        item.clone(),
        judgement.plan.clone(),
        c.content.clone(),
        &keys,
    )
}

/// The rejected components of a judged move that `cycle` bisects: when T's gate says
/// `bisect`, each rejected component that pins upstream commits on both stages and has not
/// been bisected at this content yet.
pub fn due(planner: &Planner, judgement: &crate::judge::Judgement) -> Result<Vec<Target>> {
    let plan = &judgement.plan;
    if plan.gate.bisect.is_none() {
        return Ok(Vec::new());
    }
    let facts = &judgement.facts;
    let mut out = Vec::new();
    for g in judgement
        .decided
        .evaluation
        .groups
        .iter()
        .filter(|g| g.state == State::Rejected)
    {
        for m in &g.members {
            let (CandidateId::Item(id), Some(c)) = (m, plan.candidate(m)) else {
                continue;
            };
            if id.kind != ItemKind::Component || facts.bisected.contains_key(&c.content) {
                continue;
            }
            let keys = regressed(g, facts, &c.content);
            match target_on(planner, id.clone(), plan.clone(), c.content.clone(), &keys) {
                Ok(t) => out.push(t),
                // Not something to bisect (no upstream pins, new on S, …): nothing to do.
                Err(Error::Usage { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The keys of the jobs a rejection rests on: those the gate sees regress now, and those
/// the recorded rejection names.
fn regressed(
    g: &crate::gate::GroupEval,
    facts: &crate::gate::Facts,
    content: &ContentKey,
) -> Vec<JobKey> {
    let mut keys: Vec<JobKey> = g
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Regression)
        .map(|j| j.key.clone())
        .collect();
    if let Some(r) = facts.rejected.get(content) {
        keys.extend(r.failed.iter().cloned());
    }
    keys.sort();
    keys.dedup();
    keys
}

fn target_on(
    planner: &Planner,
    id: ItemId,
    plan: MovePlan,
    content: ContentKey,
    keys: &[JobKey],
) -> Result<Target> {
    let (from, to) = (&plan.from.name, &plan.to.name);
    let s = planner.snapshot(plan.from_head)?;
    let t = planner.snapshot(plan.to_head)?;
    let Some((_, new)) = s.item(&id)? else {
        return Err(Error::usage_help(
            format!("{id} is removed on {from}: there is no new version to bisect"),
            format!("`{}` says why its removal is rejected", why(&id)),
        ));
    };
    let Some((_, old)) = t.item(&id)? else {
        return Err(Error::usage_help(
            format!("{id} is new on {from}: {to} has no version of it to bisect from"),
            format!("`{}` shows the failing jobs and their logs", why(&id)),
        ));
    };
    let pins = |i: &crate::manifest::Item| {
        i.source.as_ref().and_then(|s| {
            s.commit
                .clone()
                .map(|c| (s.git.clone(), c, s.track.clone()))
        })
    };
    let (Some((git, bad, track)), Some((old_git, good, _))) = (pins(&new), pins(&old)) else {
        return Err(Error::usage_help(
            format!(
                "{id} pins no upstream commit on {} (source.git and source.commit): there are no upstream commits to bisect",
                if pins(&new).is_none() { from } else { to }
            ),
            format!(
                "bisect works on components whose manifest says `source: {{git: URL, commit: SHA}}`; `{}` shows what failed",
                why(&id)
            ),
        ));
    };
    if git != old_git {
        return Err(Error::usage_help(
            format!(
                "{id} moved from {old_git} to {git}: its two commits are in different repositories"
            ),
            format!(
                "`{}` shows what failed; bisect needs one upstream history",
                why(&id)
            ),
        ));
    }
    if good == bad {
        return Err(Error::usage_help(
            format!(
                "{id} pins the same upstream commit ({}) on {from} and {to}: what changed is in its manifest, not upstream",
                short_commit(&good, LONG_COMMIT_DIGITS)
            ),
            format!(
                "`{}` shows the change",
                Advice::Diff {
                    old: to.clone(),
                    new: from.clone()
                }
            ),
        ));
    }
    let jobs: Vec<Job> = keys
        .iter()
        .filter_map(|k| plan.jobs.get(k))
        .filter(|j| j.kind == JobKind::Test && j.candidates == [id.clone()])
        .cloned()
        .collect();
    if jobs.is_empty() {
        return Err(Error::usage_help(
            format!(
                "{id}'s rejection rests on no test of {id} alone: there is nothing to replay at its upstream commits"
            ),
            format!("`{}` shows what failed", why(&id)),
        ));
    }
    let manifest = String::from_utf8_lossy(
        &planner
            .repo
            .read(planner.repo.tree_of(plan.from_head)?, &id.path())?
            .unwrap_or_default(),
    )
    .into_owned();
    let url = crate::manifest::resolve_git(&git, planner.repo.root_dir(), &planner.repo.self_url());
    let policy = plan.gate.bisect;
    Ok(Target {
        id,
        plan,
        content,
        good,
        bad,
        git,
        url,
        track,
        manifest,
        jobs,
        policy,
    })
}

/// Bisect `target`, running what has no settled result, and record the outcome.
pub fn bisect(
    planner: &Planner,
    target: &Target,
    opts: &Options,
    runner: &mut dyn Runner,
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    let (up, ids) = history::open(
        planner.repo,
        &target.url,
        target.track.as_deref(),
        &[&target.good, &target.bad],
    )?;
    let (good, bad) = (ids[0], ids[1]);
    let (line, _) = up.first_parent_line(good, bad)?;
    if line.is_empty() {
        return Err(Error::usage_help(
            format!(
                "{}'s candidate commit {} is not newer than {}'s {} upstream: there is nothing between them to bisect",
                target.id,
                short(bad),
                target.plan.to.name,
                short(good)
            ),
            format!("`{}` shows what failed", why(&target.id)),
        ));
    }
    progress(Progress::Line {
        commits: line.len(),
    });
    let mut b = Bisector {
        planner,
        target,
        up: &up,
        opts,
        runner,
        progress,
        steps: Vec::new(),
        settled: BTreeMap::new(),
    };
    let found = match b.search(good, bad, &line) {
        Ok(found) => found,
        Err(Stop::Interrupted) => return Ok(Outcome::Interrupted),
        Err(Stop::Failed(e)) => return Err(e),
    };
    let steps = std::mem::take(&mut b.steps);
    let (first_bad, merged_by, reason) = match found {
        Found::Commit { commit, merged_by } => {
            let (subject, author) = up.describe(commit)?;
            (
                Some(CommitRecord {
                    commit: commit.to_string(),
                    subject,
                    author,
                }),
                merged_by.map(|m| m.to_string()),
                None,
            )
        }
        Found::Inconclusive(why) => (None, None, Some(why)),
    };
    let rec = BisectRecord {
        item: target.id.to_string(),
        from: target.plan.from.name.clone(),
        to: target.plan.to.name.clone(),
        content: target.content.clone(),
        upstream: target.git.clone(),
        good: good.to_string(),
        bad: bad.to_string(),
        reproduce: opts.reproduce,
        tests: target.jobs.iter().map(|j| j.name.clone()).collect(),
        outcome: if first_bad.is_some() {
            "found".into()
        } else {
            "inconclusive".into()
        },
        first_bad,
        merged_by,
        reason,
        line: line.len(),
        steps,
        by: opts.by.clone(),
        at: crate::records::now_rfc3339(),
    };
    save(planner, &rec)?;
    Ok(Outcome::Done(Box::new(rec)))
}

/// Commit `rec` to the ledger, with trailers `log` reads.
fn save(planner: &Planner, rec: &BisectRecord) -> Result<()> {
    let stamp = rec.at.replace([':', '-'], "");
    let nonce = hex::encode(
        &<sha2::Sha256 as sha2::Digest>::digest(
            format!("{}{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes(),
        )[..4],
    );
    let path = format!(
        "{}/{stamp}-{nonce}.yaml",
        record::dir(&rec.to, &rec.content)
    );
    let summary = rec.summary();
    let msg = format!(
        "Bisect {} for {}: {}\n\nBetween {} ({}) and {} ({}) upstream, replaying {}.\n\nStagegate-Bisect: {}\nStagegate-Stage: {} -> {}\n{}Stagegate-Reason: {summary}\nStagegate-By: {}\n",
        rec.item,
        rec.to,
        summary,
        short_commit(&rec.good, LONG_COMMIT_DIGITS),
        rec.to,
        short_commit(&rec.bad, LONG_COMMIT_DIGITS),
        rec.from,
        rec.tests
            .iter()
            .map(|t| format!("tests/{t}"))
            .collect::<Vec<_>>()
            .join(", "),
        rec.item,
        rec.from,
        rec.to,
        rec.first_bad
            .as_ref()
            .map(|c| format!("Stagegate-First-Bad: {}\n", c.commit))
            .unwrap_or_default(),
        rec.by,
    );
    Ledger::new(planner.repo, &planner.pipeline.results_ref)
        .put_new(&[(path, crate::records::to_yaml(rec))], &msg)?;
    crate::ledger::sync::publish(planner.repo, &planner.pipeline.results_ref)?;
    Ok(())
}

enum Found {
    Commit {
        commit: ObjectId,
        merged_by: Option<ObjectId>,
    },
    Inconclusive(String),
}

enum Stop {
    Interrupted,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// How many runs of one commit may end without a verdict before the bisect stops.
const MAX_NO_VERDICT: u32 = 2;

struct Bisector<'a, 'p> {
    planner: &'a Planner<'p>,
    target: &'a Target,
    up: &'a Upstream,
    opts: &'a Options,
    runner: &'a mut dyn Runner,
    progress: &'a mut dyn FnMut(Progress),
    steps: Vec<StepRecord>,
    settled: BTreeMap<ObjectId, bool>,
}

impl Bisector<'_, '_> {
    fn search(&mut self, good: ObjectId, bad: ObjectId, line: &[ObjectId]) -> Result<Found, Stop> {
        if self.is_bad(good, "good-end")? {
            return Ok(Found::Inconclusive(format!(
                "{}'s commit {} fails too: the failure is not the candidate's upstream change",
                self.target.plan.to.name,
                short(good)
            )));
        }
        if !self.is_bad(bad, "bad-end")? {
            return Ok(Found::Inconclusive(format!(
                "the candidate's commit {} passes when tested again: the regression does not reproduce (a flaky test?)",
                short(bad)
            )));
        }
        let at = search::first_bad(line.len(), |i| self.is_bad(line[i], "first-parent"))?;
        let mut first = line[at];
        let mut merged_by = None;
        // Into merged sides, as long as the first bad commit is a merge (nested merges
        // too, up to a bound).
        for _ in 0..16 {
            if self.opts.first_parent {
                break;
            }
            let mut side = self.up.merged_side(first)?;
            if side.is_empty() {
                break;
            }
            let merge = first;
            side.push(merge);
            let at = search::first_bad(side.len(), |i| self.is_bad(side[i], "merged-side"))?;
            if side[at] == merge {
                break;
            }
            merged_by.get_or_insert(merge);
            first = side[at];
        }
        Ok(Found::Commit {
            commit: first,
            merged_by,
        })
    }

    /// Settle `commit`: run the regressed tests there until their results reproduce.
    fn is_bad(&mut self, commit: ObjectId, role: &str) -> Result<bool, Stop> {
        if let Some(bad) = self.settled.get(&commit) {
            return Ok(*bad);
        }
        let (subject, _) = self.up.describe(commit)?;
        let hex = commit.to_string();
        (self.progress)(Progress::Testing {
            commit: &hex,
            subject: &subject,
            role,
        });
        let jobs = self.jobs_at(&hex)?;
        let ledger = Ledger::new(self.planner.repo, &self.planner.pipeline.results_ref);
        let mut no_verdict = 0;
        let (bad, passed, failed, flaky) = loop {
            let view = ledger.view()?;
            let mut need = Vec::new();
            let (mut any_bad, mut all_good) = (false, true);
            let (mut passed, mut failed, mut flaky) = (0, 0, false);
            for (i, j) in jobs.iter().enumerate() {
                let mut results: Vec<Verdict> =
                    view.results(&j.key)?.iter().map(|r| r.verdict).collect();
                // At the ends, the gate's own results count: its candidate job ran the
                // candidate's commit, its baseline T's, in the same environment. They are
                // never run again for the bisect.
                let gate = match role {
                    "bad-end" => self.target.jobs.get(i).map(|g| g.key.clone()),
                    "good-end" => self.target.jobs.get(i).and_then(|g| g.baseline.clone()),
                    _ => None,
                };
                if let Some(k) = gate {
                    results.extend(view.results(&k)?.iter().map(|r| r.verdict));
                }
                passed += results
                    .iter()
                    .filter(|v| matches!(v, Verdict::Pass | Verdict::Flaky))
                    .count() as u32;
                failed += results.iter().filter(|v| **v == Verdict::Fail).count() as u32;
                flaky |= search::disagree(&results);
                match search::settle(&results, self.opts.reproduce) {
                    Settled::Bad => any_bad = true,
                    Settled::Good => {}
                    Settled::Need(_) => {
                        all_good = false;
                        need.push(j.clone());
                    }
                }
            }
            if any_bad || all_good {
                break (any_bad, passed, failed, flaky);
            }
            let before: Vec<u32> = need
                .iter()
                .map(|j| view.attempt_count(&j.key))
                .collect::<Result<_>>()?;
            if !self.runner.run(need.clone())? {
                return Err(Stop::Interrupted);
            }
            let view = ledger.view()?;
            for (j, n) in need.iter().zip(before) {
                let got = view.results(&j.key)?;
                let verdict = (got.len() as u32 > n)
                    .then(|| got.last().map(|r| r.verdict))
                    .flatten();
                if !verdict.is_some_and(Verdict::is_final) {
                    no_verdict += 1;
                    if no_verdict >= MAX_NO_VERDICT {
                        let why = got
                            .last()
                            .and_then(|r| r.reason.clone())
                            .unwrap_or_else(|| "it did not run".into());
                        return Err(Stop::Failed(Error::infra_help(
                            format!(
                                "bisect of {}: tests/{} at upstream commit {} ended without a verdict twice: {why}",
                                self.target.id,
                                j.name,
                                short(commit)
                            ),
                            format!(
                                "fix what stops it, then run `{}` again: the results recorded so far are reused",
                                Advice::Bisect {
                                    item: self.target.id.to_string()
                                }
                            ),
                        )));
                    }
                }
            }
        };
        let step = StepRecord {
            commit: hex,
            subject,
            role: role.to_string(),
            verdict: if bad { "bad" } else { "good" }.into(),
            passed,
            failed,
            flaky,
            keys: jobs.iter().map(|j| j.key.clone()).collect(),
        };
        (self.progress)(Progress::Settled { step: &step });
        self.steps.push(step);
        self.settled.insert(commit, bad);
        Ok(bad)
    }

    /// The regressed jobs with the component pinned to upstream `commit`.
    fn jobs_at(&self, commit: &str) -> Result<Vec<Job>> {
        let t = self.target;
        // A version of bisect's own: no manifest a stage holds says it, so these jobs
        // never share a key (and a result) with the gate's, whose verdicts stay as they
        // were judged.
        let version = format!("bisect-{}", short_commit(commit, LONG_COMMIT_DIGITS));
        let text = crate::poll::pinned(&t.id, &t.manifest, &t.bad, commit, &version)?;
        let manifest = self.planner.repo.write_blob(text.as_bytes())?;
        let mut out = Vec::new();
        for j in &t.jobs {
            let mut env = j.env.clone();
            for e in env.iter_mut().filter(|e| e.item == t.id) {
                e.version = version.clone();
                e.manifest = manifest;
                e.commit = Some(commit.to_string());
                e.candidate = true;
            }
            out.push(self.planner.with_env(j, env, Role::Bisect)?);
        }
        Ok(out)
    }
}

/// The reproductions to use: the command line's, else the gate's, else the default.
pub fn reproduce(asked: Option<u32>, policy: Option<BisectPolicy>) -> u32 {
    asked
        .or(policy.map(|p| p.reproduce))
        .unwrap_or(crate::manifest::DEFAULT_REPRODUCE)
}
