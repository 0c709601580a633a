//! The facts the gate weighs besides results, read from (and written to) git:
//!
//! ```text
//! S's tree:  .stagegate/holds/<S>/<slug>.yaml          holds in force on S
//! ledger:    decisions/<T>/<content>.yaml              a rejection into T (sticky)
//!            seen/<T>/<content>.yaml                   when a content was first seen pending
//!            versions/<slug>/<content>.yaml            a rejected or dropped version, for poll
//!            overrides/…                               waivers and approvals (`overrides`)
//! ```
//!
//! Every ledger path is keyed by a candidate's content key, so a fact is about one exact
//! version, never about a name, and is found with one tree lookup however large the ledger.

use std::collections::BTreeMap;

use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::gate::{DecisionStamp, Facts, Holds, Rejection};
use crate::keys::{ContentKey, Digest, JobKey};
use crate::ledger::{Ledger, LedgerView};
use crate::manifest::Stage;
use crate::plan::{Candidate, CandidateId, MovePlan, Planner};
use crate::records::{self, HoldRecord};
use crate::repo::Repo;

/// When a candidate's content was first seen pending into a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SeenRecord {
    pub candidate: String,
    pub content: ContentKey,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// RFC 3339.
    pub first_seen: String,
}

/// A version that must not be proposed again: rejected, or dropped by someone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VersionRecord {
    pub candidate: String,
    pub content: ContentKey,
    /// rejected or dropped
    pub why: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// For an image based on an upstream release: that release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// For a component with a source: the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub at: String,
}

pub fn decision_path(to: &str, content: &ContentKey) -> String {
    format!("{}/{}", decisions_dir(to), record_name(content))
}

pub fn seen_path(to: &str, content: &ContentKey) -> String {
    format!("{}/{}", seen_dir(to), record_name(content))
}

/// Where the decisions on moves into `to` are, one file per content.
fn decisions_dir(to: &str) -> String {
    format!("decisions/{to}")
}

/// Where the contents first seen in moves into `to` are, one file per content.
fn seen_dir(to: &str) -> String {
    format!("seen/{to}")
}

/// The file of `content` in [`decisions_dir`] and [`seen_dir`].
fn record_name(content: &ContentKey) -> String {
    format!("{content}.yaml")
}

pub fn versions_dir(id: &CandidateId) -> String {
    format!("versions/{}", id.slug())
}

/// Holds in force on `stage`, read from its head.
pub fn holds(repo: &Repo, stage: &Stage, head: gix::ObjectId) -> Result<Holds> {
    let tree = repo.tree_of(head)?;
    let mut out = Holds::new();
    for e in repo.list(tree, &records::holds_dir(&stage.name))? {
        if e.kind == EntryKind::Tree {
            continue;
        }
        let path = format!("{}/{}", records::holds_dir(&stage.name), e.name);
        let h: HoldRecord = records::parse(&path, &repo.blob(e.id)?)?;
        if let Some(id) = CandidateId::parse(&h.item) {
            out.insert(id, h);
        }
    }
    Ok(out)
}

/// How far back a hold's commit is looked for on S's first-parent history.
const HOLD_HISTORY: usize = 10_000;

/// Holds in force on `stage` at `head` under `trust` (DESIGN §4.16): a hold counts when the
/// commit that wrote it is signed by someone entitled to `hold`; a hold removed, between T's
/// head and `head`, by a commit no one entitled to `release` signed is in force as it was.
/// Returns the holds, those not counted and those restored.
type TrustedHolds = (
    Holds,
    Vec<crate::trust::NotCounted>,
    Vec<crate::trust::Deleted>,
);
fn trusted_holds(
    repo: &Repo,
    stage: &Stage,
    head: gix::ObjectId,
    to_head: gix::ObjectId,
    trust: &crate::manifest::Trust,
) -> Result<TrustedHolds> {
    use crate::manifest::RecordKind;
    let policy = crate::trust::Policy::new(trust);
    let dir = records::holds_dir(&stage.name);
    let files = |commit: gix::ObjectId| -> Result<Vec<crate::repo::Entry>> {
        Ok(repo
            .list(repo.tree_of(commit)?, &dir)?
            .into_iter()
            .filter(|e| e.kind != EntryKind::Tree)
            .collect())
    };
    let mut out = Holds::new();
    let mut not_counted = Vec::new();
    let mut restored = Vec::new();
    let current = files(head)?;
    let keep = |path: &str, blob: gix::ObjectId, out: &mut Holds| -> Result<()> {
        let h: HoldRecord = records::parse(path, &repo.blob(blob)?)?;
        if let Some(id) = CandidateId::parse(&h.item) {
            out.insert(id, h);
        }
        Ok(())
    };
    for e in &current {
        let path = format!("{dir}/{}", e.name);
        // The commit that wrote this content: the oldest of the first-parent run of commits
        // holding it.
        let mut by = head;
        for _ in 0..HOLD_HISTORY {
            let Some(p) = repo.commit(by)?.parents.first().copied() else {
                break;
            };
            if repo
                .entry(repo.tree_of(p)?, &path)?
                .is_some_and(|x| x.id == e.id)
            {
                by = p;
            } else {
                break;
            }
        }
        match policy.entitled(repo, by, RecordKind::Hold)? {
            Ok(()) => keep(&path, e.id, &mut out)?,
            Err(why) => not_counted.push(crate::trust::NotCounted {
                path,
                commit: by.to_string(),
                why,
            }),
        }
    }
    // Releases since T's head: a hold file a commit removed. Newest first, the newest word
    // on a hold file decides: it is there now, or the newest removal released it.
    let base = repo.merge_base(head, to_head)?;
    let mut decided: std::collections::HashSet<String> =
        current.iter().map(|e| e.name.clone()).collect();
    let mut c = head;
    for _ in 0..HOLD_HISTORY {
        if Some(c) == base {
            break;
        }
        let Some(p) = repo.commit(c)?.parents.first().copied() else {
            break;
        };
        let now = files(c)?;
        for b in files(p)? {
            if now.iter().any(|n| n.name == b.name) || !decided.insert(b.name.clone()) {
                continue;
            }
            if policy.entitled(repo, c, RecordKind::Release)?.is_err() {
                let path = format!("{dir}/{}", b.name);
                keep(&path, b.id, &mut out)?;
                restored.push(crate::trust::Deleted {
                    path,
                    blob: b.id.to_string(),
                    commit: c.to_string(),
                });
            }
        }
        c = p;
    }
    Ok((out, not_counted, restored))
}

/// Hold back every derived image whose artifact was built on another artifact of its
/// parent than T will hold once the move is made (DESIGN: derived images follow their
/// parents): a parent that was rejected or dropped after its child was built on it leaves
/// the child's artifact tested on what T will never have. The parent it was built on is
/// read from its build's result in the ledger; the group waits, saying so.
pub fn stale_parents(planner: &Planner, plan: &mut MovePlan, view: &LedgerView) -> Result<()> {
    let s = planner.snapshot(plan.from_head)?;
    let t = planner.snapshot(plan.to_head)?;
    for gi in 0..plan.groups.len() {
        let members = plan.groups[gi].members.clone();
        for m in &members {
            let Some(id) = m.item() else { continue };
            if plan.candidate(m).is_none_or(|c| !c.present) {
                continue;
            }
            // A build planned in this move tests the child on the parent as it will be.
            let built_here = plan.groups[gi].required.iter().any(|k| {
                plan.jobs.get(k).is_some_and(|j| {
                    j.kind == crate::plan::JobKind::Build && j.candidates.contains(id)
                })
            });
            if built_here {
                continue;
            }
            let Ok(Some((_, item))) = s.item(id) else {
                continue;
            };
            let Some(parent) = item.parent_image() else {
                continue;
            };
            let Some(rec) = s.built(id)? else { continue };
            let Some(result) = view.latest(&rec.build_job)? else {
                continue;
            };
            let Some(on) = result
                .env
                .iter()
                .find(|e| e.item == parent.to_string())
                .and_then(|e| e.digest.clone())
            else {
                continue;
            };
            let parent_moves = members.contains(&CandidateId::Item(parent.clone()));
            let side = if parent_moves { &s } else { &t };
            let will = side.built(&parent)?.map(|b| b.digest.clone());
            if will.as_ref() != Some(&on) {
                plan.groups[gi].blocked.push(crate::plan::Blocked {
                    kind: crate::plan::BlockedKind::ParentPending,
                    candidate: Some(m.clone()),
                    message: format!(
                        "{id} was built on {parent} {}, but {} will hold {parent} {}: it waits for a build on that parent (a new version of {id}, built by a gate that builds)",
                        on.short(),
                        plan.to.name,
                        will.as_ref().map_or("with no build".to_string(), Digest::short)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// What the judgement needs of a recorded decision: the jobs it judged and why. Read
/// leniently (the record is `promote`'s to write and to validate; `verify` checks it whole),
/// so decisions written by any version of stagegate are read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DecisionFacts {
    #[serde(default)]
    candidates: Vec<DecidedCandidate>,
    #[serde(default)]
    jobs: Vec<DecidedJob>,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    tested: String,
    #[serde(default)]
    into: String,
    #[serde(default)]
    decided_at: String,
    #[serde(default)]
    decided_by: String,
}

#[derive(Debug, Deserialize)]
struct DecidedCandidate {
    item: String,
    #[serde(default)]
    content: Option<ContentKey>,
}

#[derive(Debug, Deserialize)]
struct DecidedJob {
    key: JobKey,
    state: String,
}

/// Everything recorded about the candidates and jobs of `plan`, with the overrides in
/// force at `now` (Unix seconds).
pub fn load(planner: &Planner, plan: &MovePlan, view: &LedgerView, now: i64) -> Result<Facts> {
    let mut facts = match &plan.trust {
        None => Facts {
            holds: holds(planner.repo, &plan.from, plan.from_head)?,
            ..Facts::default()
        },
        Some(trust) => {
            let (holds, not_counted, restored) = trusted_holds(
                planner.repo,
                &plan.from,
                plan.from_head,
                plan.to_head,
                trust,
            )?;
            Facts {
                holds,
                holds_not_counted: not_counted,
                holds_restored: restored,
                ..Facts::default()
            }
        }
    };
    // Each directory read once: decisions/T and seen/T hold every content ever judged or
    // seen, and a path lookup per candidate would scan them once per candidate.
    let to = &plan.to.name;
    let decisions = view.files(&decisions_dir(to))?;
    let seen = view.files(&seen_dir(to))?;
    let bisected: std::collections::HashSet<String> =
        view.dirs(&format!("bisect/{to}"))?.into_iter().collect();
    for c in &plan.candidates {
        let name = record_name(&c.content);
        if let Some(id) = decisions.get(&name) {
            let path = decision_path(to, &c.content);
            let d: DecisionFacts = records::parse(&path, &view.blob(*id)?)?;
            facts.rejected.insert(
                c.content.clone(),
                Rejection {
                    failed: d
                        .jobs
                        .iter()
                        // Records written before the names were lowercase say "Regression".
                        .filter(|j| {
                            j.state.eq_ignore_ascii_case("regression") || j.state == "heisenbug"
                        })
                        .map(|j| j.key.clone())
                        .collect(),
                    reasons: d.reasons.clone(),
                    tests: BTreeMap::new(),
                    record: id.to_string(),
                    judged: d
                        .candidates
                        .iter()
                        .map(|c| (c.item.clone(), c.content.clone()))
                        .collect(),
                    by: DecisionStamp {
                        tested: d.tested,
                        into: d.into,
                        decided_at: d.decided_at,
                        decided_by: d.decided_by,
                    },
                },
            );
        }
        if bisected.contains(c.content.as_str())
            && let Some(b) = crate::bisect::record::latest(view, to, &c.content)?
        {
            facts.bisected.insert(c.content.clone(), b.summary());
        }
        if let Some(id) = seen.get(&name) {
            let path = seen_path(to, &c.content);
            let s: SeenRecord = records::parse(&path, &view.blob(*id)?)?;
            if let Ok(t) = humantime::parse_rfc3339(&s.first_seen) {
                let secs = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_default();
                facts.seen.insert(c.content.clone(), secs);
            }
        }
    }
    // Rechecks: each job key's mark, and the rejections they name, judged again.
    let rechecked: std::collections::HashSet<String> = view
        .dirs(&crate::overrides::recheck_dir(to))?
        .into_iter()
        .collect();
    for c in plan
        .candidates
        .iter()
        .filter(|c| rechecked.contains(c.content.as_str()))
    {
        let recs = crate::overrides::rechecks(view, to, &c.content)?;
        // A recheck lifts exactly the rejection it names: one decided again after it stands.
        if let Some(lifter) = facts.rejected.get(&c.content).and_then(|r| {
            recs.iter()
                .find(|x| x.lifts.as_deref() == Some(r.record.as_str()))
        }) {
            facts.lifted.insert(c.content.clone(), lifter.to_ref());
            facts.rejected.remove(&c.content);
        }
        for r in &recs {
            for j in &r.jobs {
                let mark = facts.rechecked.entry(j.key.clone()).or_insert_with(|| {
                    crate::gate::Rechecked {
                        attempt: j.attempt,
                        by: r.to_ref(),
                    }
                });
                if j.attempt >= mark.attempt {
                    mark.attempt = j.attempt;
                    mark.by = r.to_ref();
                }
            }
        }
    }
    // The tests the failures of each rejection ran: a quarantine of one lifts it.
    for r in facts.rejected.values_mut() {
        for k in &r.failed {
            let name = match plan.jobs.get(k) {
                Some(j) => Some(j.name.clone()),
                None => view.latest(k)?.map(|rec| rec.name),
            };
            if let Some(n) = name {
                r.tests.insert(k.clone(), n);
            }
        }
    }
    // Waivers of the planned jobs, and of the failures a rejection rests on (keys that are
    // no longer planned once T moved): a waiver of one lifts the rejection.
    let failed: std::collections::BTreeSet<&JobKey> =
        facts.rejected.values().flat_map(|r| &r.failed).collect();
    let keys: std::collections::BTreeSet<&JobKey> = plan.jobs.keys().chain(failed).collect();
    facts.waived = crate::overrides::waived(view, &plan.to.name, keys, now)?;
    facts.approved = crate::overrides::approved(
        view,
        &plan.to.name,
        plan.candidates.iter().map(|c| &c.content),
        now,
    )?;
    facts.frozen = crate::overrides::freezes(view, &plan.to.name, now)?;
    facts.quarantined = crate::overrides::quarantines(view, Some(&plan.to.name), now)?;
    Ok(facts)
}

/// Record the first sighting at `now` (Unix seconds) of every candidate of `plan` not seen
/// before; returns how many.
pub fn record_seen(ledger: &Ledger, plan: &MovePlan, now: i64) -> Result<usize> {
    let now = records::rfc3339(now);
    let view = ledger.view()?;
    let mut files = Vec::new();
    for c in plan.candidates.iter().filter(|c| !c.is_invalid()) {
        let path = seen_path(&plan.to.name, &c.content);
        if view.read(&path)?.is_some() {
            continue;
        }
        let rec = SeenRecord {
            candidate: c.id.to_string(),
            content: c.content.clone(),
            from: plan.from.name.clone(),
            to: plan.to.name.clone(),
            version: c.to.clone(),
            first_seen: now.clone(),
        };
        files.push((path, records::to_yaml(&rec)));
    }
    if files.is_empty() {
        return Ok(0);
    }
    let msg = format!(
        "Seen pending {} -> {}: {} candidate(s)\n",
        plan.from.name,
        plan.to.name,
        files.len()
    );
    Ok(ledger.put_new(&files, &msg)?.len())
}

/// The version record of `c` on `snap`'s side, for poll.
pub fn version_record(
    planner: &Planner,
    c: &Candidate,
    s_head: gix::ObjectId,
    why: &str,
    stage: &str,
) -> Result<(String, String)> {
    let snap = planner.snapshot(s_head)?;
    let item = match c.id.item() {
        Some(i) => snap.item(i).ok().flatten().map(|(_, it)| it),
        None => None,
    };
    let rec = VersionRecord {
        candidate: c.id.to_string(),
        content: c.content.clone(),
        why: why.into(),
        stage: stage.into(),
        version: c.to.clone(),
        upstream: item.as_ref().and_then(|i| match &i.based_on {
            Some(crate::manifest::BasedOn::Upstream { version, .. }) => version.clone(),
            _ => None,
        }),
        commit: item
            .as_ref()
            .and_then(|i| i.source.as_ref().and_then(|s| s.commit.clone())),
        at: records::now_rfc3339(),
    };
    Ok((
        format!("{}/{}.yaml", versions_dir(&c.id), c.content),
        records::to_yaml(&rec),
    ))
}

/// The versions of `id` rejected or dropped before.
pub fn refused_versions(view: &LedgerView, id: &CandidateId) -> Result<Vec<VersionRecord>> {
    let dir = versions_dir(id);
    let mut out = Vec::new();
    for name in view.list(&dir)? {
        let path = format!("{dir}/{name}");
        if let Some(bytes) = view.read(&path)? {
            out.push(records::parse(&path, &bytes)?);
        }
    }
    Ok(out)
}
