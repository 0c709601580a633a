//! Commits stagegate makes on a stage on a person's behalf: hold, release, drop.
//!
//! Each is an ordinary commit on the stage branch, written from objects (no work tree) and
//! moved in by compare-and-swap, with trailers that `stagegate log` reads back.

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::manifest::{ItemId, Stage};
use crate::plan::{Planner, Snapshot};
use crate::records::{self, HoldRecord};

/// What an edit did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Edited {
    pub stage: String,
    pub commit: Option<String>,
    pub message: String,
}

/// The stage (the S of a move S → T) on which `item` is pending, first in pipeline order.
pub fn pending_stage<'p>(
    planner: &'p Planner,
    item: &ItemId,
) -> Result<Option<(&'p Stage, &'p Stage)>> {
    for (s, t) in planner.pipeline.moves() {
        let plan = planner.plan_move(s, t)?;
        if plan
            .pending
            .iter()
            .any(|p| p.candidates.iter().any(|c| &c.item == item))
        {
            return Ok(Some((s, t)));
        }
    }
    Ok(None)
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
    let r = crate::runner::identity();
    format!("{}@{}", r.user, r.host)
}

fn parse_item(text: &str) -> Result<ItemId> {
    ItemId::parse(text).ok_or_else(|| {
        Error::usage_help(
            format!("{text:?} is not an item"),
            "write images/NAME or components/NAME",
        )
    })
}

fn resolve_stage<'p>(
    planner: &'p Planner,
    item: &ItemId,
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
    let id = parse_item(item)?;
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
    let id = parse_item(item)?;
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
        "`stagegate status` shows what is pending; `stagegate log` shows holds",
    ))
}

pub fn drop_item(planner: &Planner, item: &str, reason: &str) -> Result<Edited> {
    let id = parse_item(item)?;
    let (s, t) = pending_stage(planner, &id)?.ok_or_else(|| {
        Error::usage_help(
            format!("{id} is not pending on any stage: nothing to drop"),
            "`stagegate status` shows what is pending",
        )
    })?;
    let t_head = planner.stage_head(t)?;
    let t_snap = Snapshot::new(planner.repo, t_head, planner.cache.clone())?;
    let s_snap = Snapshot::new(planner.repo, planner.stage_head(s)?, planner.cache.clone())?;
    let path = id.path();
    let t_entry = planner.repo.entry(t_snap.tree, &path)?;
    let from = s_snap.item(&id)?.map(|(_, i)| i.version.clone());
    let to = t_snap.item(&id)?.map(|(_, i)| i.version.clone());
    // The manifest, and for images the build inputs, go back to T's.
    let mut edits: Vec<(String, Option<(EntryKind, ObjectId)>)> =
        vec![(path.clone(), t_entry.as_ref().map(|e| (e.kind, e.id)))];
    if let (Some((_, item_s)), Some((_, item_t))) = (s_snap.item(&id)?, t_snap.item(&id)?) {
        for (p, _) in s_snap
            .build_files(&item_s)?
            .into_iter()
            .chain(t_snap.build_files(&item_t)?)
        {
            let e = planner.repo.entry(t_snap.tree, &p)?;
            edits.push((p, e.map(|e| (e.kind, e.id))));
        }
    }
    let what = match (&from, &to) {
        (Some(f), Some(t2)) => format!("{id} {f} (back to {t2})"),
        (Some(f), None) => format!("{id} {f} (new on {}; removed)", s.name),
        _ => id.to_string(),
    };
    let msg = format!(
        "Drop {what} from {}: {}\n\nReverts {id} to {}'s version so the commits after it can move on.\n\nStagegate-Drop: {id}\nStagegate-Stage: {}\nStagegate-Reason: {}\nStagegate-By: {}\n",
        s.name,
        one_line(reason),
        t.name,
        s.name,
        one_line(reason),
        who()
    );
    let commit = commit_on(planner, s, &msg, |_| Ok(edits.clone()))?;
    Ok(Edited {
        stage: s.name.clone(),
        commit: Some(commit),
        message: format!("dropped {what} from {}", s.name),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
