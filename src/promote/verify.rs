//! Replaying a decision: does a commit on a gated stage hold, from git alone?
//!
//! A promotion commit names, in its decision record, the S head it judged (`tested`), the T
//! head it was made on (`into`, its first parent) and when (`decided-at`). Replaying means:
//! plan that very move again with T's pipeline of the time, weigh the results the ledger
//! held at that time, the holds on that S head, the waivers and approvals, and check that
//! the gate moves exactly what the record says moved, and that the commit's tree is exactly
//! T's tree plus those candidates (and the record itself). Nothing here writes anything.
//!
//! A record of format 2 ([`super::DECISION_FORMAT`]) names the ledger commit its judgement
//! read: the decision is replayed on exactly that commit, which must still be in the
//! ledger's history (so a rewound or deleted ledger is found without any hook), and the
//! commit's message is derived again too. A record without a format (written before) is
//! replayed as it always was, on the ledger as of its decision time, and compared as it was
//! written.
//!
//! Besides promotions, a gated stage may carry the commits stagegate makes on a person's
//! behalf: holds and releases (which touch only `.stagegate/holds/`) and drops (which only
//! put back the next stage's content). Anything else — a hand-made merge, an edited
//! decision, a rewritten tree — does not hold.

use std::collections::BTreeSet;

use gix::ObjectId;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerView};
use crate::manifest::Stage;
use crate::plan::{CandidateId, Planner, short};
use crate::records;

use super::{DecisionRecord, moves_whole};

/// What replaying one commit found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub commit: String,
    /// promotion, hold, release, drop, or unknown
    pub kind: String,
    pub holds: bool,
    /// Why it does not hold (empty when it does).
    pub problems: Vec<String>,
    pub subject: String,
}

/// Replay `commit` as a commit on `stage`. `ledger_tip` overrides the ledger ref (a push
/// that updates it along with the stage).
pub fn verify_commit(
    planner: &Planner,
    stage: &Stage,
    commit: ObjectId,
    ledger_tip: Option<Option<ObjectId>>,
) -> Result<Verdict> {
    let repo = planner.repo;
    let info = repo.commit(commit)?;
    let mut v = Verdict {
        commit: commit.to_string(),
        kind: "unknown".into(),
        holds: false,
        problems: Vec::new(),
        subject: info.subject().to_string(),
    };
    let Some(parent) = info.parents.first().copied() else {
        v.problems
            .push("a root commit: a gated stage only grows by promotions".into());
        return Ok(v);
    };
    let changed = changed_paths(planner, parent, commit)?;
    let merged = forge_merge_of(repo, &info)?;
    let squash_merged = match merged {
        None => forge_squash_merge_of(repo, &info)?,
        Some(_) => None,
    };
    let squashed = merged.is_none()
        && info.trailer("Stagegate-Decision").is_none()
        && (info.parents.len() == 1 || squash_merged.is_some())
        && changed
            .iter()
            .any(|p| p.starts_with(&format!("{}/", records::decisions_dir(&stage.name))));
    if info.trailer("Stagegate-Decision").is_some() || merged.is_some() || squashed {
        // GitHub's and GitLab's merge buttons make a merge whose second parent is the
        // promotion; their squash buttons a commit of the promotion's tree and a message
        // of its own — which GitLab, under its merge-commit method, merges in turn.
        let (promotion, how) = match merged {
            Some(p) => (p, Forge::Merged),
            None if squashed => (squash_merged.unwrap_or(commit), Forge::Squashed),
            None => (commit, Forge::No),
        };
        v.kind = match how {
            Forge::No => "promotion",
            Forge::Merged => "promotion merged by the forge",
            Forge::Squashed => "promotion squash-merged by the forge",
        }
        .into();
        let pinfo = repo.commit(promotion)?;
        v.problems = verify_promotion(
            planner,
            stage,
            promotion,
            parent,
            &pinfo,
            ledger_tip,
            how == Forge::Squashed,
        )?;
        // Under `trust:` (T's, as it was), a promotion is a runner's signed word.
        if let Some(trust) = planner.trust_of(parent)?
            && let Err(why) = crate::trust::Policy::new(&trust).by_runner(repo, promotion)?
        {
            v.problems.push(match how {
                Forge::Squashed => format!(
                    "the promotion was squash- or rebase-merged by the forge, so no runner the trust: of {} lists signed it ({why}): merge promotion pull (or merge) requests with the merge button (GitLab: the merge-commit method, without squash), or let stagegate merge them once approved (it does at its next run)",
                    stage.name
                ),
                _ => format!(
                    "the promotion commit is not signed by a runner the trust: of {} lists ({why}): promote with a runner's key in STAGEGATE_SIGNING_KEY",
                    stage.name
                ),
            });
        }
    } else if info.trailer("Stagegate-Hold").is_some()
        || info.trailer("Stagegate-Release").is_some()
    {
        v.kind = if info.trailer("Stagegate-Hold").is_some() {
            "hold"
        } else {
            "release"
        }
        .into();
        let dir = format!("{}/", records::holds_dir(&stage.name));
        for p in changed.iter().filter(|p| !p.starts_with(&dir)) {
            v.problems.push(format!(
                "a {} commit may change only {dir}, not {p}",
                v.kind
            ));
        }
        if info.parents.len() != 1 {
            v.problems
                .push(format!("a {} commit has one parent", v.kind));
        }
    } else if info.trailer("Stagegate-Drop").is_some() {
        v.kind = "drop".into();
        v.problems = verify_drop(planner, stage, commit, &changed)?;
    } else {
        v.problems.push(format!(
            "{} is not a promotion the gate made (no Stagegate-Decision trailer)",
            short(commit)
        ));
    }
    v.holds = v.problems.is_empty();
    Ok(v)
}

/// How a promotion reached T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forge {
    /// As stagegate wrote it.
    No,
    /// A forge's merge button: a merge commit whose second parent is the promotion.
    Merged,
    /// A forge's squash (or rebase) button: the promotion's tree in a commit of its own.
    Squashed,
}

/// The promotion a forge's merge button merged in `info`: a merge of T's head and a commit
/// carrying a decision, with that commit's tree, on the same T's head.
fn forge_merge_of(
    repo: &crate::repo::Repo,
    info: &crate::repo::CommitInfo,
) -> Result<Option<ObjectId>> {
    let [first, second] = info.parents.as_slice() else {
        return Ok(None);
    };
    let p = repo.commit(*second)?;
    Ok((p.trailer("Stagegate-Decision").is_some()
        && p.parents.first() == Some(first)
        && p.tree == info.tree)
        .then_some(p.id))
}

/// The squash a forge merged in `info`: GitLab's squash under its merge-commit method makes
/// a commit of the promotion's tree on T's head (a message of its own, no trailers), then a
/// merge of T's head and that commit, with its tree.
pub(super) fn forge_squash_merge_of(
    repo: &crate::repo::Repo,
    info: &crate::repo::CommitInfo,
) -> Result<Option<ObjectId>> {
    let [first, second] = info.parents.as_slice() else {
        return Ok(None);
    };
    let s = repo.commit(*second)?;
    Ok((s.trailer("Stagegate-Decision").is_none()
        && s.parents.as_slice() == [*first]
        && s.tree == info.tree)
        .then_some(s.id))
}

/// Paths whose blob differs between two commits' trees.
fn changed_paths(planner: &Planner, a: ObjectId, b: ObjectId) -> Result<Vec<String>> {
    let repo = planner.repo;
    let mut out = Vec::new();
    walk(
        repo,
        Some(repo.tree_of(a)?),
        Some(repo.tree_of(b)?),
        &mut out,
    )?;
    Ok(out)
}

fn walk(
    repo: &crate::repo::Repo,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
    out: &mut Vec<String>,
) -> Result<()> {
    crate::plan::candidate::changed_files(repo, a, b, "", &|_| false, out)
}

fn verify_promotion(
    planner: &Planner,
    stage: &Stage,
    commit: ObjectId,
    parent: ObjectId,
    info: &crate::repo::CommitInfo,
    ledger_tip: Option<Option<ObjectId>>,
    squashed: bool,
) -> Result<Vec<String>> {
    let repo = planner.repo;
    let mut problems = Vec::new();
    let Some((from, to)) = planner.move_into(&stage.name) else {
        return Ok(vec![format!(
            "{} is the first stage: nothing is promoted into it",
            stage.name
        )]);
    };
    // The record this commit adds.
    let dir = records::decisions_dir(&to.name);
    let before: BTreeSet<String> = repo
        .list(repo.tree_of(parent)?, &dir)?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let added: Vec<crate::repo::Entry> = repo
        .list(repo.tree_of(commit)?, &dir)?
        .into_iter()
        .filter(|e| !before.contains(&e.name))
        .collect();
    let [entry] = added.as_slice() else {
        return Ok(vec![format!(
            "a promotion adds exactly one decision record under {dir}/ ({} found)",
            added.len()
        )]);
    };
    let path = format!("{dir}/{}", entry.name);
    let rec: DecisionRecord = records::parse(&path, &repo.blob(entry.id)?)?;
    if rec.decision != "promote" {
        problems.push(format!("{path} says {:?}, not promote", rec.decision));
    }
    if (rec.from.as_str(), rec.to.as_str()) != (from.name.as_str(), to.name.as_str()) {
        problems.push(format!(
            "{path} is a decision {} -> {}, on {}",
            rec.from, rec.to, stage.name
        ));
    }
    if ObjectId::from_hex(rec.into.as_bytes()).ok() != Some(parent) {
        problems.push(format!(
            "{path} was decided against {}, but the commit's first parent is {}",
            rec.into,
            short(parent)
        ));
    }
    let tested = ObjectId::from_hex(rec.tested.as_bytes()).map_err(|_| {
        Error::usage(format!(
            "{path}: `tested` is not a commit id: {:?}",
            rec.tested
        ))
    })?;
    if repo.commit(tested).is_err() {
        problems.push(format!(
            "the tested commit {} of {} is not in this repository: push {} first",
            rec.tested, from.name, from.branch
        ));
        return Ok(problems);
    }
    if !problems.is_empty() {
        return Ok(problems);
    }
    let mut plan = planner.plan_heads(from, to, tested, parent)?;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let current = match ledger_tip {
        Some(tip) => tip,
        None => repo.ref_target(&ledger.reference)?,
    };
    let at = humantime::parse_rfc3339(&rec.decided_at)
        .map_err(|e| Error::usage(format!("{path}: decided-at {:?}: {e}", rec.decided_at)))?
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (view, facts) = match rec.format {
        None => {
            // Format 1 (written before records named their ledger commit): the ledger as
            // of the decision, judged at its time, without the rejections recorded by the
            // same run (they come from this very judgement; one recorded by another run
            // in the same second by the same decider is dropped too: format 2 is exact).
            // Weighed under the `trust:` of T as it was when the decision was made.
            let view: LedgerView = ledger
                .view_at(current)?
                .as_of(&rec.decided_at)
                .trusting(plan.trust.as_ref())?;
            let mut facts = crate::judge::facts::load(planner, &plan, &view, at)?;
            let this_run = crate::gate::DecisionStamp {
                tested: rec.tested.clone(),
                into: rec.into.clone(),
                decided_at: rec.decided_at.clone(),
                decided_by: rec.decided_by.clone(),
            };
            facts.rejected.retain(|_, r| r.by != this_run);
            (view, facts)
        }
        Some(format) if format > super::DECISION_FORMAT => {
            problems.push(format!(
                "{path} is a decision record of format {format}, newer than this stagegate reads ({}): verify it with the stagegate that wrote it ({}) or a newer one",
                super::DECISION_FORMAT,
                rec.decided_by
            ));
            return Ok(problems);
        }
        Some(_) => {
            // Exactly the ledger the judgement read, which must still be in the ledger's
            // history: a rewound or deleted ledger is found here, hook or no hook.
            let rests_on = match &rec.ledger {
                Some(hex) => Some(ObjectId::from_hex(hex.as_bytes()).map_err(|_| {
                    Error::usage(format!("{path}: `ledger` is not a commit id: {hex:?}"))
                })?),
                None => None,
            };
            if let Some(x) = rests_on {
                problems.extend(ledger_problems(planner, &path, x, current)?);
                if repo.commit(x).is_err() {
                    return Ok(problems);
                }
            }
            let view = ledger.view_at(rests_on)?.trusting(plan.trust.as_ref())?;
            let facts = crate::judge::facts::load(planner, &plan, &view, at)?;
            (view, facts)
        }
    };
    crate::judge::facts::stale_parents(planner, &mut plan, &view)?;
    let judgement = crate::judge::judge_on(planner, plan, &view, facts, at)?;
    let (plan, decided) = (&judgement.plan, &judgement.decided);
    let moved = judgement.moved();
    let want: BTreeSet<String> = moved.iter().map(CandidateId::to_string).collect();
    let says: BTreeSet<String> = rec.candidates.iter().map(|c| c.item.clone()).collect();
    if want != says {
        let fmt = |s: &BTreeSet<String>| {
            if s.is_empty() {
                "nothing".to_string()
            } else {
                s.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        problems.push(format!(
            "the gate into {} moves {} from {} at {}, the record says {}",
            to.name,
            fmt(&want),
            from.name,
            short(tested),
            fmt(&says)
        ));
        for g in &decided.evaluation.groups {
            for m in &g.members {
                if says.contains(&m.to_string()) && !want.contains(&m.to_string()) {
                    for r in &g.reasons {
                        problems.push(format!("  {m}: {}", r.message));
                    }
                }
            }
        }
        return Ok(problems);
    }
    // The decision the gate makes of the same evidence, by the same decider at the same
    // time, with what the push gate recorded (a fact of the moment, not derived): the
    // record must be it, byte for byte.
    let opts = super::Options {
        dry_run: true,
        now: at,
        by: rec.decided_by.clone(),
        ci_url: rec.ci_url.clone(),
        review: None,
        force_review: false,
    };
    let mut again = super::promotion(planner, plan, decided, &opts, rec.pushed.clone(), &view)?;
    if rec.format.is_none() {
        // Format 1 is compared as it was written: without the fields format 2 added.
        again.record.format = None;
        again.record.ledger = None;
    }
    let derived = records::to_yaml(&again.record);
    if let Some(d) = first_difference(&repo.blob(entry.id)?, derived.as_bytes()) {
        problems.push(format!(
            "{path} is not the decision the gate makes of the evidence it rests on: {d}"
        ));
    }
    // The message names the decider too (`git log` shows it, not the record).
    if let Some(by) = info.trailer("Stagegate-Decided-By")
        && by != rec.decided_by
    {
        problems.push(format!(
            "its Stagegate-Decided-By trailer says {by:?}, but {path} says {:?}",
            rec.decided_by
        ));
    }
    let tree = repo.edit_tree(
        again.tree,
        &[(
            path.clone(),
            Some((gix::objs::tree::EntryKind::Blob, entry.id)),
        )],
    )?;
    let actual = repo.tree_of(commit)?;
    if tree != actual {
        let mut diff = Vec::new();
        walk(repo, Some(tree), Some(actual), &mut diff)?;
        problems.push(format!(
            "its tree is not {}'s plus what moved: {} differ{}",
            to.name,
            diff.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
            if diff.len() > 5 { ", …" } else { "" }
        ));
    }
    let parents: Vec<ObjectId> = if moves_whole(plan, &moved) {
        vec![parent, tested]
    } else {
        vec![parent]
    };
    // A promotion merged through a pull request: the forge's merge commit has the
    // promotion commit (same tree, same first parent) as its second parent.
    let via_forge = match info.parents.as_slice() {
        [first, pr] if *first == parent => {
            let pr = repo.commit(*pr)?;
            pr.parents.first() == Some(&parent) && repo.tree_of(pr.id)? == actual
        }
        _ => false,
    };
    if rec.format.is_some() && info.parents == parents && !squashed {
        let whole = moves_whole(plan, &moved);
        let msg = super::promotion_message(plan, &again.record, &again.jobs, whole);
        if let Some(d) = first_difference(info.message.as_bytes(), msg.as_bytes()) {
            problems.push(format!(
                "its message is not the one the gate writes for {path}: {d}"
            ));
        }
    }
    if info.parents != parents && !via_forge && !squashed {
        problems.push(format!(
            "its parents should be {}",
            parents
                .iter()
                .map(|p| short(*p))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(problems)
}

/// Whether the ledger still holds `rests_on`, the ledger commit the decision in `path` was
/// judged on: it must be the ledger's tip `current` or one of its ancestors. Anything else
/// means the ledger was rewound, replaced or deleted (or not fetched here).
fn ledger_problems(
    planner: &Planner,
    path: &str,
    rests_on: ObjectId,
    current: Option<ObjectId>,
) -> Result<Vec<String>> {
    let repo = planner.repo;
    let reference = &planner.pipeline.results_ref;
    let restore = format!(
        "fetch {reference} from a clone that still has {rests_on} (a runner's), then push it (`git push REMOTE {reference}`), or put it back with `git update-ref {reference} {rests_on}`"
    );
    if repo.commit(rests_on).is_err() {
        return Ok(vec![format!(
            "{path} rests on ledger commit {rests_on}, which is not in this repository: {reference} was rewound or replaced, or not fetched; {restore}"
        )]);
    }
    Ok(match current {
        None => vec![format!(
            "{path} rests on ledger commit {rests_on}, but {reference} does not exist: the ledger was deleted; {restore}"
        )],
        Some(tip) if !repo.is_ancestor(rests_on, tip)? => vec![format!(
            "{path} rests on ledger commit {rests_on}, which {reference} (at {}) no longer contains: the ledger was rewound or replaced; {restore}",
            short(tip)
        )],
        Some(_) => Vec::new(),
    })
}

/// Where `recorded` and `derived` first differ, line by line, for people; `None` when they
/// are the same bytes.
fn first_difference(recorded: &[u8], derived: &[u8]) -> Option<String> {
    if recorded == derived {
        return None;
    }
    let (a, b) = (
        String::from_utf8_lossy(recorded),
        String::from_utf8_lossy(derived),
    );
    let mut ours = a.lines();
    let mut theirs = b.lines();
    for n in 1.. {
        match (ours.next(), theirs.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return Some(format!(
                    "line {n} says {:?}, the gate says {:?}",
                    x.unwrap_or("(end of file)"),
                    y.unwrap_or("(end of file)")
                ));
            }
        }
    }
    None
}

fn verify_drop(
    planner: &Planner,
    stage: &Stage,
    commit: ObjectId,
    changed: &[String],
) -> Result<Vec<String>> {
    let repo = planner.repo;
    let mut problems = Vec::new();
    let next = planner
        .pipeline
        .moves()
        .find(|(s, _)| s.name == stage.name)
        .map(|(_, t)| t);
    let Some(next) = next else {
        return Ok(vec![format!(
            "{} is the last stage: nothing is dropped from it",
            stage.name
        )]);
    };
    let ours = repo.tree_of(commit)?;
    let theirs = repo.tree_of(planner.stage_head(next)?)?;
    for p in changed {
        let a = repo.entry(ours, p)?.map(|e| e.id);
        let b = repo.entry(theirs, p)?.map(|e| e.id);
        if a != b {
            problems.push(format!(
                "a drop puts back {}'s content, but {p} differs from it",
                next.name
            ));
        }
    }
    Ok(problems)
}

/// The gated stage whose branch is `refname` (`refs/heads/…`), if any.
pub fn gated_stage<'p>(planner: &'p Planner, refname: &str) -> Option<&'p Stage> {
    planner
        .pipeline
        .moves()
        .map(|(_, t)| t)
        .find(|t| t.ref_name() == refname)
}

/// Replay every first-parent commit that `new` adds over `old` on `stage`, oldest first.
pub fn verify_update(
    planner: &Planner,
    stage: &Stage,
    old: Option<ObjectId>,
    new: ObjectId,
    ledger_tip: Option<Option<ObjectId>>,
) -> Result<Vec<Verdict>> {
    let repo = planner.repo;
    if let Some(old) = old
        && !repo.is_ancestor(old, new)?
    {
        return Ok(vec![Verdict {
            commit: new.to_string(),
            kind: "rewrite".into(),
            holds: false,
            problems: vec![format!(
                "{} would lose {}: a gated stage only moves forward",
                stage.branch,
                short(old)
            )],
            subject: String::new(),
        }]);
    }
    let mut commits = Vec::new();
    let mut cur = Some(new);
    while let Some(c) = cur {
        if Some(c) == old || commits.len() >= 10_000 {
            break;
        }
        commits.push(c);
        cur = repo.commit(c)?.parents.first().copied();
    }
    commits.reverse();
    commits
        .into_iter()
        .map(|c| verify_commit(planner, stage, c, ledger_tip))
        .collect()
}
