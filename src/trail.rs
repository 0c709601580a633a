//! The audit trail, read from git history alone: promotions, rejections, holds, releases,
//! drops and polls, from the stage branches' first-parent history and the results ledger.
//!
//! It reads commits and their trailers; it decides nothing and prints nothing (`stagegate
//! log` and `stagegate report` show it).

use serde::Serialize;

use crate::error::Result;
use crate::plan::CandidateId;
use crate::plan::Planner;
use crate::repo::{CommitInfo, Repo};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Entry {
    pub time: i64,
    pub when: String,
    /// promote, reject, hold, release, drop, poll, bisect
    pub kind: String,
    pub stage: String,
    pub commit: String,
    pub tested: Option<String>,
    pub items: Vec<String>,
    pub built: Vec<String>,
    pub results: Option<String>,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub subject: String,
    /// For an override (waive, approve, freeze, quarantine, and un… when lifted): its id
    /// and what it covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// How far back one branch is read at most, by default.
pub const MAX_WALK: usize = 20_000;

fn entry_of(c: &CommitInfo) -> Option<Entry> {
    let (kind, items) = if let Some(d) = c.trailer("Stagegate-Decision") {
        (
            d.to_string(),
            c.trailers("Stagegate-Candidate")
                .into_iter()
                .map(String::from)
                .collect(),
        )
    } else if let Some(i) = c.trailer("Stagegate-Hold") {
        ("hold".to_string(), vec![i.to_string()])
    } else if let Some(i) = c.trailer("Stagegate-Release") {
        ("release".to_string(), vec![i.to_string()])
    } else if let Some(i) = c.trailer("Stagegate-Drop") {
        ("drop".to_string(), vec![i.to_string()])
    } else if let Some(i) = c.trailer("Stagegate-Poll") {
        ("poll".to_string(), vec![i.to_string()])
    } else if let Some(i) = c.trailer("Stagegate-Bisect") {
        ("bisect".to_string(), vec![i.to_string()])
    } else if let Some(o) = c.trailer("Stagegate-Override") {
        (
            o.split_whitespace().next().unwrap_or_default().to_string(),
            c.trailers("Stagegate-Item")
                .into_iter()
                .map(String::from)
                .collect(),
        )
    } else {
        return None;
    };
    Some(Entry {
        time: c.time,
        when: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(c.time.max(0) as u64),
        )
        .to_string(),
        kind,
        stage: c.trailer("Stagegate-Stage").unwrap_or_default().to_string(),
        commit: c.id.to_string(),
        tested: c.trailer("Stagegate-Tested").map(String::from),
        items,
        built: c
            .trailers("Stagegate-Built")
            .into_iter()
            .map(String::from)
            .collect(),
        results: c.trailer("Stagegate-Results").map(String::from),
        reason: c.trailer("Stagegate-Reason").map(String::from),
        by: c
            .trailer("Stagegate-By")
            .or(c.trailer("Stagegate-Decided-By"))
            .map(String::from),
        subject: c.subject().to_string(),
        id: c
            .trailer("Stagegate-Override")
            .and_then(|o| o.split_whitespace().nth(1))
            .map(String::from),
        scope: c.trailer("Stagegate-Scope").map(String::from),
        expires: c.trailer("Stagegate-Expires").map(String::from),
    })
}

fn walk(
    repo: &Repo,
    head: gix::ObjectId,
    item: Option<&CandidateId>,
    max: usize,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<()> {
    if max == 0 {
        return Ok(());
    }
    let want = item.map(|i| i.to_string());
    let mut found = 0;
    let mut next = Some(head);
    for _ in 0..depth {
        let Some(id) = next else { break };
        let info = repo.commit(id)?;
        next = info.parents.first().copied();
        if let Some(e) = entry_of(&info) {
            if let Some(w) = &want
                && !e
                    .items
                    .iter()
                    .any(|i| i == w || i.starts_with(&format!("{w} ")))
            {
                continue;
            }
            out.push(e);
            found += 1;
            if found >= max {
                break;
            }
        }
    }
    Ok(())
}

/// The newest `max` entries of the trail, optionally only those about `item`.
pub fn collect(
    repo: &Repo,
    planner: &Planner,
    item: Option<&CandidateId>,
    max: usize,
) -> Result<Vec<Entry>> {
    collect_within(repo, planner, item, max, MAX_WALK)
}

/// [`collect`], reading at most `depth` first-parent commits of each ref.
pub fn collect_within(
    repo: &Repo,
    planner: &Planner,
    item: Option<&CandidateId>,
    max: usize,
    depth: usize,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for s in &planner.pipeline.stages {
        walk(repo, planner.stage_head(s)?, item, max, depth, &mut out)?;
    }
    if let Some(tip) = repo.ref_target(&planner.pipeline.results_ref)? {
        walk(repo, tip, item, max, depth, &mut out)?;
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert(e.commit.clone()));
    // Newest first. Commit times have one-second resolution, and one `cycle` polls and
    // promotes through several stages within a second, so entries of the same second are
    // ordered by what usually follows what, never by hash: later gates first (a decision,
    // hold, release or drop counts for the gate it acts on, a poll for its stage); within a
    // gate, the promotion, then the edits that let it through, then the rejections before
    // them; then walk order (a branch's own history, newest first). The sort is stable.
    let index = |name: &str| {
        planner
            .pipeline
            .stages
            .iter()
            .position(|s| s.name == name)
            .unwrap_or(0)
    };
    let order = |e: &Entry| {
        let (rank, step) = match e.kind.as_str() {
            "promote" | "reject" => (
                index(e.stage.rsplit(" -> ").next().unwrap_or_default()),
                if e.kind == "promote" { 0 } else { 2 },
            ),
            "poll" => (index(&e.stage), 3),
            _ => (index(&e.stage) + 1, 1),
        };
        (std::cmp::Reverse(e.time), std::cmp::Reverse(rank), step)
    };
    out.sort_by_key(order);
    order_by_ancestry(repo, &mut out)?;
    out.truncate(max);
    Ok(out)
}

/// Within each second, history knows better than the heuristic above: an entry whose commit
/// is an ancestor of another's happened first (a poll before the promotion that carried it,
/// a promotion into staging before the one into stable that merged it). Reorder each
/// same-second run so no entry comes after one of its ancestors, keeping the heuristic
/// order where history says nothing. Runs are small; very large ones are left as they are.
fn order_by_ancestry(repo: &Repo, entries: &mut [Entry]) -> Result<()> {
    let mut start = 0;
    while start < entries.len() {
        let end = start
            + entries[start..]
                .iter()
                .take_while(|e| e.time == entries[start].time)
                .count();
        let run = &mut entries[start..end];
        if run.len() > 1 && run.len() <= 32 {
            let ids: Vec<Option<gix::ObjectId>> = run
                .iter()
                .map(|e| gix::ObjectId::from_hex(e.commit.as_bytes()).ok())
                .collect();
            let mut left: Vec<usize> = (0..run.len()).collect();
            let mut order = Vec::with_capacity(run.len());
            while !left.is_empty() {
                // The first entry (in heuristic order) that no remaining entry descends from.
                let mut pick = 0;
                for (pos, &i) in left.iter().enumerate() {
                    let newest = left.iter().all(|&j| {
                        j == i || !matches!((ids[i], ids[j]), (Some(a), Some(b)) if repo.is_ancestor(a, b).unwrap_or(false))
                    });
                    if newest {
                        pick = pos;
                        break;
                    }
                }
                order.push(left.remove(pick));
            }
            let mut taken: Vec<Option<Entry>> =
                run.iter_mut().map(|e| Some(std::mem::take(e))).collect();
            for (slot, i) in run.iter_mut().zip(order) {
                *slot = taken[i].take().expect("each entry placed once");
            }
        }
        start = end;
    }
    Ok(())
}
