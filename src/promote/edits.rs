//! Commits stagegate makes on a stage on a person's behalf: hold, release, drop.
//!
//! Each is an ordinary commit on the stage branch, written from objects (no work tree) and
//! moved in by compare-and-swap, with trailers that `stagegate log` reads back.

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::manifest::Stage;
use crate::plan::candidate::content_of;
use crate::plan::{CandidateId, Planner};
use crate::records::{self, HoldRecord};

/// What an edit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Edited {
    pub stage: String,
    pub commit: Option<String>,
    pub message: String,
}

/// The moves (S, T) on which `id` is a candidate, in pipeline order.
pub fn pending_moves<'p>(
    planner: &'p Planner,
    id: &CandidateId,
) -> Result<Vec<(&'p Stage, &'p Stage)>> {
    let mut out = Vec::new();
    for (s, t) in planner.pipeline.moves() {
        let sh = planner.snapshot(planner.stage_head(s)?)?;
        let th = planner.snapshot(planner.stage_head(t)?)?;
        if *id == CandidateId::Files {
            if crate::plan::candidate::repository_files(&sh, &th)?.is_some() {
                out.push((s, t));
            }
            continue;
        }
        let (a, _) = content_of(&sh, id)?;
        let (b, _) = content_of(&th, id)?;
        if a != b {
            out.push((s, t));
        }
    }
    Ok(out)
}

/// The stage (the S of a move S → T) on which `id` is pending, first in pipeline order.
pub fn pending_stage<'p>(
    planner: &'p Planner,
    id: &CandidateId,
) -> Result<Option<(&'p Stage, &'p Stage)>> {
    Ok(pending_moves(planner, id)?.into_iter().next())
}

/// Apply `edits` to `stage`'s head as one commit; retried if the branch moves meanwhile.
fn commit_on(
    planner: &Planner,
    stage: &Stage,
    message: &str,
    edits: impl Fn(ObjectId) -> Result<Vec<(String, Option<(EntryKind, ObjectId)>)>>,
) -> Result<String> {
    Ok(planner
        .repo
        .commit_on_branch(&stage.branch, message, edits)?
        .to_string())
}

fn who() -> String {
    let r = crate::ledger::identity();
    format!("{}@{}", r.user, r.host)
}

/// The candidate a command line names: resolved against every stage
/// ([`crate::plan::resolve`]), so a short name works, a typo gets a suggestion, and a name
/// no stage has is refused.
pub fn parse_candidate(planner: &Planner, text: &str) -> Result<CandidateId> {
    let name = crate::plan::resolve::resolve(planner, text)?;
    CandidateId::parse(&name).ok_or_else(|| {
        Error::usage_help(
            format!("{text:?} is not an item"),
            "write images/NAME, components/NAME, tests/NAME or stagegate.yaml",
        )
    })
}

fn resolve_stage<'p>(
    planner: &'p Planner,
    item: &CandidateId,
    stage: Option<&str>,
) -> Result<&'p Stage> {
    match stage {
        Some(s) => planner.stage(s),
        None => pending_stage(planner, item)?
            .map(|(s, _)| s)
            .ok_or_else(|| {
                Error::usage_help(
                    format!("{item} is not pending on any stage"),
                    "name the stage with --stage",
                )
            }),
    }
}

pub fn hold(planner: &Planner, item: &str, reason: &str, stage: Option<&str>) -> Result<Edited> {
    let id = parse_candidate(planner, item)?;
    let stage = resolve_stage(planner, &id, stage)?;
    let head = planner.stage_head(stage)?;
    let path = records::hold_path(&stage.name, &id);
    if let Some(existing) = planner.repo.read(planner.repo.tree_of(head)?, &path)? {
        let h: HoldRecord = records::parse(&path, &existing)?;
        return Ok(Edited {
            stage: stage.name.clone(),
            commit: None,
            message: format!(
                "{id} is already held on {} by {}: {}",
                stage.name, h.by, h.reason
            ),
        });
    }
    let rec = HoldRecord {
        item: id.to_string(),
        stage: stage.name.clone(),
        reason: reason.to_string(),
        by: who(),
        at: records::now_rfc3339(),
    };
    let blob = planner.repo.write_blob(records::to_yaml(&rec).as_bytes())?;
    let msg = format!(
        "Hold {id} on {}: {}\n\n{id} will not be promoted from {} until it is released.\n\nStagegate-Hold: {id}\nStagegate-Stage: {}\nStagegate-Reason: {}\nStagegate-By: {}\n",
        stage.name,
        one_line(reason),
        stage.name,
        stage.name,
        one_line(reason),
        rec.by
    );
    let commit = commit_on(planner, stage, &msg, |_| {
        Ok(vec![(path.clone(), Some((EntryKind::Blob, blob)))])
    })?;
    Ok(Edited {
        stage: stage.name.clone(),
        commit: Some(commit),
        message: format!("held {id} on {}", stage.name),
    })
}

pub fn release(planner: &Planner, item: &str, stage: Option<&str>) -> Result<Edited> {
    let id = parse_candidate(planner, item)?;
    let stages: Vec<&Stage> = match stage {
        Some(s) => vec![planner.stage(s)?],
        None => planner.pipeline.stages.iter().collect(),
    };
    for stage in stages {
        let head = planner.stage_head(stage)?;
        let path = records::hold_path(&stage.name, &id);
        if planner
            .repo
            .entry(planner.repo.tree_of(head)?, &path)?
            .is_none()
        {
            continue;
        }
        let msg = format!(
            "Release {id} on {}\n\nStagegate-Release: {id}\nStagegate-Stage: {}\nStagegate-By: {}\n",
            stage.name,
            stage.name,
            who()
        );
        let commit = commit_on(planner, stage, &msg, |_| Ok(vec![(path.clone(), None)]))?;
        return Ok(Edited {
            stage: stage.name.clone(),
            commit: Some(commit),
            message: format!("released {id} on {}", stage.name),
        });
    }
    Err(Error::usage_help(
        format!("{id} is not held on any stage"),
        format!(
            "`{}` shows what is pending; `{}` shows its holds",
            crate::advice::Advice::Status,
            crate::advice::Advice::Log {
                item: Some(id.to_string())
            }
        ),
    ))
}

/// Drop a candidate: revert it (manifest, the files it names, its build record) to the
/// next stage's content on the last stage it is pending on, and on every earlier stage
/// holding that same content; record the dropped version so `poll` never proposes it again.
pub fn drop_item(planner: &Planner, item: &str, reason: &str) -> Result<Vec<Edited>> {
    let id = parse_candidate(planner, item)?;
    let moves = pending_moves(planner, &id)?;
    let Some(&(s, t)) = moves.last() else {
        return Err(Error::usage_help(
            format!("{id} is not pending on any stage: nothing to drop"),
            format!("`{}` shows what is pending", crate::advice::Advice::Status),
        ));
    };
    let repo = planner.repo;
    let s_snap = planner.snapshot(planner.stage_head(s)?)?;
    let t_snap = planner.snapshot(planner.stage_head(t)?)?;
    let (dropped, _) = content_of(&s_snap, &id)?;
    let version = |snap: &crate::plan::Snapshot| {
        id.item()
            .and_then(|i| snap.item(i).ok().flatten())
            .map(|(_, it)| it.version.clone())
    };
    let (from, to) = (version(&s_snap), version(&t_snap));
    // Record the refused version first: a drop that half happened must not be re-proposed.
    let plan = planner.plan_move(s, t)?;
    if let Some(c) = plan.candidate(&id) {
        let ledger = crate::ledger::Ledger::new(repo, &planner.pipeline.results_ref);
        let rec =
            crate::judge::facts::version_record(planner, c, plan.from_head, "dropped", &s.name)?;
        ledger.put_new(
            &[rec],
            &format!(
                "Refuse {id} {} from now on: dropped from {}\n\n{}\n",
                c.to.as_deref().unwrap_or("(this version)"),
                s.name,
                one_line(reason)
            ),
        )?;
    }
    let t_tree = t_snap.tree;
    let mut paths: Vec<String> = vec![id.path()];
    paths.extend(dropped.files.iter().map(|(p, _)| p.clone()));
    let (t_content, _) = content_of(&t_snap, &id)?;
    paths.extend(t_content.files.iter().map(|(p, _)| p.clone()));
    if let Some(i) = id.item() {
        paths.push(crate::records::built_path(i));
    }
    paths.sort();
    paths.dedup();
    let mut edits: Vec<(String, Option<(EntryKind, ObjectId)>)> = Vec::new();
    for p in &paths {
        let e = repo.entry(t_tree, p)?;
        edits.push((p.clone(), e.map(|e| (e.kind, e.id))));
    }
    let what = match (&from, &to) {
        (Some(f), Some(t2)) => format!("{id} {f} (back to {t2})"),
        (Some(f), None) => format!("{id} {f} (new on {}; removed)", s.name),
        _ => id.to_string(),
    };
    // S, and every earlier stage holding the very content dropped.
    let mut stages: Vec<&Stage> = Vec::new();
    for st in &planner.pipeline.stages {
        if st.name == s.name {
            stages.push(st);
            break;
        }
        let snap = planner.snapshot(planner.stage_head(st)?)?;
        if content_of(&snap, &id)?.0 == dropped {
            stages.push(st);
        }
    }
    let mut done = Vec::new();
    for st in stages.into_iter().rev() {
        let msg = format!(
            "Drop {what} from {}: {}\n\nReverts {id} to {}'s version; this version will not be proposed again.\n\nStagegate-Drop: {id}\nStagegate-Stage: {}\nStagegate-Reason: {}\nStagegate-By: {}\n",
            st.name,
            one_line(reason),
            t.name,
            st.name,
            one_line(reason),
            who()
        );
        let commit = commit_on(planner, st, &msg, |_| Ok(edits.clone()))?;
        done.push(Edited {
            stage: st.name.clone(),
            commit: Some(commit),
            message: format!("dropped {what} from {}", st.name),
        });
    }
    Ok(done)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
