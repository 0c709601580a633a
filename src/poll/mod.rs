//! Poll: notice what changed upstream and commit candidates to the first stage.
//!
//! Three sources of news, each becoming one commit on the first stage with a message and
//! trailers saying why (`Stagegate-Poll: ITEM`, `Stagegate-Reason: …`):
//!
//! - an item's `watch` command prints a newer upstream version (for an image `based-on` an
//!   upstream release, that release's version; for a component, its own version);
//! - a component's tracked branch (`source.track`, read with `git ls-remote`) moved past
//!   the pinned `source.commit`;
//! - an image's newest build (its built records, on any stage) is older than its
//!   `max-age`.
//!
//! An image derived (`based-on: {image: P}`) from an image that is bumped, or already
//! pending, is bumped too so it is rebuilt on the new parent. Nothing is committed for an
//! item already pending on the first move (unless that version was rejected), a version
//! that was rejected or dropped is never proposed again, and a second poll with nothing
//! new commits nothing. Manifests are edited as text, so comments and layout survive; the result is
//! parsed again before it is committed.

use std::collections::BTreeSet;
use std::time::Duration;

use gix::objs::tree::EntryKind;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::keys::{LONG_COMMIT_DIGITS, short_commit};
use crate::manifest::parse::parse_item;
use crate::manifest::{BasedOn, Item, ItemId, ItemKind};
use crate::plan::{CandidateId, Planner, Snapshot};
use crate::repo::Checkout;
use crate::runner::process::Ended;

/// One bump poll made (or would make).
#[derive(Debug, Clone, Serialize)]
pub struct Bump {
    pub item: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub commit: Option<String>,
}

/// A change to one manifest, applied as text.
struct Change {
    id: ItemId,
    version: String,
    commit: Option<(String, String)>,
    upstream: Option<(String, String)>,
    reason: String,
}

pub struct Options {
    pub dry_run: bool,
    pub now: i64,
}

pub fn poll(planner: &Planner, opts: &Options) -> Result<Vec<Bump>> {
    let (first, second) = planner
        .pipeline
        .moves()
        .next()
        .ok_or_else(|| Error::usage("the pipeline has one stage: nothing to poll into"))?;
    let first_head = planner.stage_head(first)?;
    let s = planner.snapshot(first_head)?;
    // Items already pending on the first move are left alone until that settles — unless
    // their version was rejected (it will never settle): the next upstream change replaces it.
    let plan = planner.plan_move(first, second)?;
    let view = crate::ledger::Ledger::new(planner.repo, &planner.pipeline.results_ref).view()?;
    let judgement = crate::judge::judge(planner, plan, &view, opts.now)?;
    let pending: BTreeSet<ItemId> = judgement
        .plan
        .candidates
        .iter()
        .filter(|c| !judgement.facts.rejected.contains_key(&c.content))
        .filter_map(|c| c.id.item().cloned())
        .collect();

    let mut items: Vec<std::rc::Rc<Item>> = Vec::new();
    for kind in ItemKind::ALL {
        for id in s.item_ids(kind)? {
            // An item whose manifest does not parse is an invalid candidate: nothing to poll.
            if let Ok(Some((_, item))) = s.item(&id) {
                items.push(item);
            }
        }
    }
    // Never propose again a version that was rejected or dropped.
    let refused = |c: &Change| -> Result<bool> {
        let refused =
            crate::judge::facts::refused_versions(&view, &CandidateId::Item(c.id.clone()))?;
        Ok(refused.iter().any(|r| {
            r.version.as_deref() == Some(c.version.as_str())
                || c.upstream
                    .as_ref()
                    .is_some_and(|(_, new)| r.upstream.as_deref() == Some(new.as_str()))
                || c.commit
                    .as_ref()
                    .is_some_and(|(_, new)| r.commit.as_deref() == Some(new.as_str()))
        }))
    };
    let mut checkout: Option<Checkout> = None;
    let mut changes: Vec<Change> = Vec::new();
    for item in &items {
        if pending.contains(&item.id) {
            continue;
        }
        // Each source in turn, the first that proposes a version not refused before: a
        // watch that reports a dropped version does not shadow `max-age`.
        let mut chosen = None;
        if let Some(c) = watch_change(planner, &s, item, &mut checkout, opts.now)?
            && !refused(&c)?
        {
            chosen = Some(c);
        }
        if chosen.is_none()
            && let Some(c) = track_change(planner, item)?
            && !refused(&c)?
        {
            chosen = Some(c);
        }
        if chosen.is_none()
            && let Some(c) = age_change(planner, item, opts.now)?
            && !refused(&c)?
        {
            chosen = Some(c);
        }
        changes.extend(chosen);
    }
    // Derived images follow a parent that is bumped (by a change this poll keeps) or
    // pending; a parent change that never happens bumps nothing.
    let moving: BTreeSet<ItemId> = changes
        .iter()
        .map(|c| c.id.clone())
        .chain(pending.iter().cloned())
        .collect();
    for item in &items {
        if let Some(parent) = item.parent_image()
            && moving.contains(&parent)
            && !moving.contains(&item.id)
        {
            let c = Change {
                id: item.id.clone(),
                version: restamp(&item.version, opts.now),
                commit: None,
                upstream: None,
                reason: format!("its parent {parent} changed"),
            };
            if !refused(&c)? {
                changes.push(c);
            }
        }
    }
    let kept = changes;
    let mut bumps = Vec::new();
    for c in kept {
        let old = items
            .iter()
            .find(|i| i.id == c.id)
            .map(|i| i.version.clone())
            .unwrap_or_default();
        let commit = if opts.dry_run {
            None
        } else {
            Some(commit_change(planner, first, &c, &old)?)
        };
        bumps.push(Bump {
            item: c.id.to_string(),
            from: old,
            to: c.version,
            reason: c.reason,
            commit,
        });
    }
    Ok(bumps)
}

/// Run the item's `watch` command; a newer upstream version is a change.
fn watch_change(
    planner: &Planner,
    s: &Snapshot,
    item: &Item,
    checkout: &mut Option<Checkout>,
    now: i64,
) -> Result<Option<Change>> {
    let Some(w) = &item.watch else {
        return Ok(None);
    };
    if checkout.is_none() {
        *checkout = Some(Checkout::new(planner.repo, s.tree)?);
    }
    let dir = checkout.as_ref().expect("just made").path();
    let out = run_watch(
        &w.run,
        &dir,
        w.timeout.unwrap_or(Duration::from_secs(300)),
        &item.id,
        &planner.pipeline.env,
    )?;
    let newest = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(String::from);
    let Some(newest) = newest else {
        return Err(Error::infra_help(
            format!("the watch command of {} printed nothing", item.id),
            "a watch command prints the newest upstream version on its last line",
        ));
    };
    if newest.contains(char::is_whitespace) || newest.len() > 100 {
        return Err(Error::infra(format!(
            "the watch command of {} printed {newest:?}, which is not a version",
            item.id
        )));
    }
    match &item.based_on {
        Some(BasedOn::Upstream { component, version }) if item.id.kind == ItemKind::Image => {
            if version.as_deref() == Some(newest.as_str()) {
                return Ok(None);
            }
            let old = version.clone().unwrap_or_default();
            Ok(Some(Change {
                id: item.id.clone(),
                version: format!("{newest}-{}", date(now)),
                commit: None,
                upstream: Some((old, newest.clone())),
                reason: format!("upstream {component} {newest} released"),
            }))
        }
        _ => {
            if item.version == newest {
                return Ok(None);
            }
            Ok(Some(Change {
                id: item.id.clone(),
                version: newest.clone(),
                commit: None,
                upstream: None,
                reason: format!("upstream {newest} released"),
            }))
        }
    }
}

/// A watch command runs like a job: a clean environment plus what the pipeline passes on,
/// with every known secret masked in its output.
fn run_watch(
    run: &str,
    dir: &std::path::Path,
    timeout: Duration,
    id: &ItemId,
    env: &crate::manifest::JobEnv,
) -> Result<String> {
    let log = tempfile::NamedTempFile::new().map_err(|e| {
        Error::infra(format!(
            "{id}: creating a temporary file for its watch command's output in {}: {e}",
            std::env::temp_dir().display()
        ))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Error::infra(format!(
                "{id}: starting the runtime for its watch command: {e}"
            ))
        })?;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let mut vars = crate::runner::base_env();
    vars.extend(crate::runner::lookup_env(
        env.pass.iter().chain(&env.secret),
    ));
    let secrets = crate::runner::known_secrets(&env.secret);
    let spec = crate::runner::process::Spec {
        run,
        cwd: dir,
        env: &vars,
        secrets: &secrets,
        timeout,
        log_cap: 1 << 20,
    };
    let output = crate::runner::process::JobLog::new(log.path().to_path_buf());
    let f = rt.block_on(crate::runner::process::run(spec, output, rx));
    let output = f.log.text();
    let how = match f.ended {
        Ended::Exited(0) => return Ok(output),
        Ended::Exited(c) => format!("exit status {c}"),
        Ended::Signaled(sig) => format!("killed by signal {sig}"),
        Ended::TimedOut => format!("timed out after {}", humantime::format_duration(timeout)),
        Ended::Cancelled => "interrupted".into(),
        Ended::SpawnFailed(why) => why,
    };
    Err(Error::infra_help(
        format!(
            "the watch command of {id} ({run}) failed: {how}\n{}",
            f.excerpt
        ),
        "fix the watch script; poll changes nothing until it works",
    ))
}

/// A component whose tracked branch moved past its pinned commit.
fn track_change(planner: &Planner, item: &Item) -> Result<Option<Change>> {
    let Some(src) = &item.source else {
        return Ok(None);
    };
    let (Some(track), Some(pinned)) = (&src.track, &src.commit) else {
        return Ok(None);
    };
    let url =
        crate::manifest::resolve_git(&src.git, planner.repo.root_dir(), &planner.repo.self_url());
    let tip = crate::repo::remote::ls_remote(planner.repo.git_dir(), &url, track).map_err(|e| {
        Error::infra_help(
            format!("{}: cannot read its tracked branch {track}: {e}", item.id),
            "check source.git (and the network); poll commits nothing until it can read it",
        )
    })?;
    let Some(tip) = tip else {
        return Err(Error::infra_help(
            format!("{}: {url} has no branch {track}", item.id),
            "fix source.track, or the repository URL",
        ));
    };
    if tip.starts_with(pinned.as_str()) {
        return Ok(None);
    }
    Ok(Some(Change {
        id: item.id.clone(),
        version: tracked_version(track, &tip),
        commit: Some((pinned.clone(), tip.clone())),
        upstream: None,
        reason: format!(
            "upstream {track} moved to {}",
            short_commit(&tip, LONG_COMMIT_DIGITS)
        ),
    }))
}

/// An image whose newest build is older than its `max-age`.
///
/// The newest build anywhere in the pipeline counts, not only the last stage's: a rebuild
/// already on its way (built into a later stage, waiting for its tests) is not started
/// again on every poll. A record counts where it matches the version of the item on its
/// stage (one left behind by a reverted bump does not); when none does, the most
/// downstream record decides.
fn age_change(planner: &Planner, item: &Item, now: i64) -> Result<Option<Change>> {
    let Some(max_age) = item.max_age else {
        return Ok(None);
    };
    let mut matching: Option<(i64, String, String)> = None;
    let mut downstream: Option<(i64, String, String)> = None;
    for stage in planner.pipeline.stages.iter().rev() {
        let snap = planner.snapshot(planner.stage_head(stage)?)?;
        let Some(rec) = snap.built(&item.id)? else {
            continue;
        };
        let built = humantime::parse_rfc3339(&rec.built_at)
            .map(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs() as i64
            })
            .unwrap_or(0);
        let found = (built, rec.built_at.clone(), stage.name.clone());
        if downstream.is_none() {
            downstream = Some(found.clone());
        }
        let current = snap
            .item(&item.id)?
            .is_some_and(|(_, i)| i.version == rec.version);
        if current && matching.as_ref().is_none_or(|m| built > m.0) {
            matching = Some(found);
        }
    }
    let Some((built, built_at, stage)) = matching.or(downstream) else {
        return Ok(None);
    };
    if now - built < max_age.as_secs() as i64 {
        return Ok(None);
    }
    Ok(Some(Change {
        id: item.id.clone(),
        version: restamp(&item.version, now),
        commit: None,
        upstream: None,
        reason: format!(
            "max-age {} exceeded (built {built_at} on {stage})",
            humantime::format_duration(max_age),
        ),
    }))
}

/// `12.8-1` → `12.8-1+r20261124`; an earlier `+rYYYYMMDD` is replaced. Always a new
/// version: a second bump the same day is `+r20261124.2`, then `.3`, and so on (a
/// `max-age` under a day, a parent bumped twice in a day).
fn restamp(version: &str, now: i64) -> String {
    let today = date(now).replace('.', "");
    // The version without poll's stamp, the stamp's day and its count that day.
    let stamped = version.rsplit_once("+r").and_then(|(base, stamp)| {
        let (day, n) = match stamp.split_once('.') {
            Some((day, n)) => (day, n.parse::<u32>().ok()?),
            None => (stamp, 1),
        };
        (day.len() == 8 && day.bytes().all(|c| c.is_ascii_digit())).then_some((base, day, n))
    });
    match stamped {
        Some((base, day, n)) if day == today => format!("{base}+r{today}.{}", n + 1),
        Some((base, _, _)) => format!("{base}+r{today}"),
        None => format!("{version}+r{today}"),
    }
}

/// `YYYY.MM.DD` in UTC.
fn date(now: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s[..10].replace('-', ".")
}

/// A component's manifest `text` pinned to upstream `commit` (replacing `old`, the commit
/// it pins) at `version`: what poll would commit had the tracked branch stopped there.
/// `bisect` keys the jobs it runs at each upstream commit by it.
pub fn pinned(id: &ItemId, text: &str, old: &str, commit: &str, version: &str) -> Result<String> {
    edit_text(
        &id.path(),
        text,
        &Change {
            id: id.clone(),
            version: version.to_string(),
            commit: Some((old.to_string(), commit.to_string())),
            upstream: None,
            reason: String::new(),
        },
    )
}

/// The version poll gives a component tracking `track` at `commit`: `main-0123456789ab`
/// (a version is no place for the `/` of `hello/main`).
fn tracked_version(track: &str, commit: &str) -> String {
    format!(
        "{}-{}",
        track.rsplit('/').next().unwrap_or(track),
        short_commit(commit, LONG_COMMIT_DIGITS)
    )
}

/// The manifest text with the change applied, verified by parsing it again.
fn edit_text(path: &str, text: &str, c: &Change) -> Result<String> {
    let ends = text.ends_with('\n');
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let quote = |v: &str| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
    let Some(line) = lines.iter_mut().find(|l| l.starts_with("version:")) else {
        return Err(Error::infra(format!(
            "{path}: no top-level `version:` line to update; edit it by hand"
        )));
    };
    let comment = line
        .find(" #")
        .map(|i| line[i..].to_string())
        .unwrap_or_default();
    *line = format!("version: {}{comment}", quote(&c.version));
    if let Some((old, new)) = &c.upstream {
        set_based_on_version(&mut lines, old, &quote(new));
    }
    let mut out = lines.join("\n");
    if ends {
        out.push('\n');
    }
    if let Some((old, new)) = &c.commit {
        if !out.contains(old.as_str()) {
            return Err(Error::infra(format!(
                "{path}: cannot find the pinned commit {old} to replace"
            )));
        }
        out = out.replacen(old.as_str(), new, 1);
    }
    let parsed = parse_item(c.id.kind, path, out.as_bytes()).map_err(crate::Error::Invalid)?;
    if parsed.version != c.version {
        return Err(Error::infra(format!(
            "{path}: editing the version did not take; edit it by hand"
        )));
    }
    if let Some((_, new)) = &c.upstream
        && !matches!(&parsed.based_on, Some(BasedOn::Upstream { version: Some(v), .. }) if v == new)
    {
        return Err(Error::infra(format!(
            "{path}: could not set `based-on` to version {new}; edit it by hand"
        )));
    }
    Ok(out)
}

/// Set the `version` of the top-level `based-on` mapping (flow or block style) to
/// `quoted`, adding the key when the mapping has none: otherwise the next poll would see
/// the same release as new again.
fn set_based_on_version(lines: &mut Vec<String>, old: &str, quoted: &str) {
    let Some(at) = lines.iter().position(|l| l.starts_with("based-on:")) else {
        return;
    };
    let line = &lines[at];
    if line.contains('{') {
        lines[at] = if line.contains("version:") {
            replace_version(line, old, quoted)
        } else if let Some(close) = line.rfind('}') {
            format!("{}, version: {quoted}{}", &line[..close], &line[close..])
        } else {
            return;
        };
        return;
    }
    let body = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with(' ') || l.trim().is_empty())
        .count();
    if let Some(i) =
        (at + 1..at + 1 + body).find(|&i| lines[i].trim_start().starts_with("version:"))
    {
        lines[i] = replace_version(&lines[i], old, quoted);
    } else if let Some(last) = (at + 1..at + 1 + body).rfind(|&i| !lines[i].trim().is_empty()) {
        // After the mapping's last line, indented like its first entry.
        let first = &lines[at + 1..=last]
            .iter()
            .find(|l| !l.trim().is_empty())
            .expect("last is one");
        let indent = first[..first.len() - first.trim_start().len()].to_string();
        lines.insert(last + 1, format!("{indent}version: {quoted}"));
    }
}

fn replace_version(line: &str, old: &str, quoted: &str) -> String {
    for pat in [
        format!("version: \"{old}\""),
        format!("version: '{old}'"),
        format!("version: {old}"),
    ] {
        if line.contains(&pat) {
            return line.replacen(&pat, &format!("version: {quoted}"), 1);
        }
    }
    line.to_string()
}

fn commit_change(
    planner: &Planner,
    stage: &crate::manifest::Stage,
    c: &Change,
    old: &str,
) -> Result<String> {
    let repo = planner.repo;
    let path = c.id.path();
    let msg = format!(
        "poll: {} {old} -> {}\n\n{}.\n\nStagegate-Poll: {}\nStagegate-Stage: {}\nStagegate-Reason: {}\n",
        c.id, c.version, c.reason, c.id, stage.name, c.reason
    );
    // The edit is made on whatever the branch holds when the commit is written.
    let commit = repo.commit_on_branch(&stage.branch, &msg, |head| {
        let text = repo
            .read(repo.tree_of(head)?, &path)?
            .ok_or_else(|| Error::infra(format!("{path} vanished from {}", stage.branch)))?;
        let new_text = edit_text(&path, &String::from_utf8_lossy(&text), c)?;
        Ok(vec![(
            path.clone(),
            Some((EntryKind::Blob, repo.write_blob(new_text.as_bytes())?)),
        )])
    })?;
    Ok(commit.to_string())
}

#[cfg(test)]
mod tests {
    use super::{Change, edit_text, restamp, set_based_on_version};
    use crate::manifest::{ItemId, ItemKind};

    #[test]
    fn a_bumped_manifest_keeps_its_final_newline_and_comments() {
        let change = |version: &str| Change {
            id: ItemId::new(ItemKind::Image, "host"),
            version: version.into(),
            commit: None,
            upstream: None,
            reason: String::new(),
        };
        let text = "name: host\nversion: \"1\" # pinned\n";
        assert_eq!(
            edit_text("images/host.yaml", text, &change("2")).unwrap(),
            "name: host\nversion: \"2\" # pinned\n"
        );
        let bare = "name: host\nversion: \"1\"";
        assert_eq!(
            edit_text("images/host.yaml", bare, &change("2")).unwrap(),
            "name: host\nversion: \"2\"",
            "no newline is added that was not there"
        );
    }

    fn set(text: &str) -> String {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        set_based_on_version(&mut lines, "1", "\"2\"");
        lines.join("\n")
    }

    #[test]
    fn the_based_on_version_is_set_in_flow_and_block_style() {
        assert_eq!(
            set("based-on: {component: d, version: \"1\"}"),
            "based-on: {component: d, version: \"2\"}"
        );
        assert_eq!(
            set("based-on: {component: d} # upstream"),
            "based-on: {component: d, version: \"2\"} # upstream"
        );
        assert_eq!(
            set("based-on:\n  component: d\n  version: 1\nbuild: x"),
            "based-on:\n  component: d\n  version: \"2\"\nbuild: x"
        );
        assert_eq!(
            set("based-on:\n    component: d\nbuild: x"),
            "based-on:\n    component: d\n    version: \"2\"\nbuild: x"
        );
        assert_eq!(set("version: 1\nbuild: x"), "version: 1\nbuild: x");
    }

    #[test]
    fn restamp_always_gives_a_new_version() {
        let now = 1_795_557_197; // 2026-11-24
        assert_eq!(restamp("12.8-1", now), "12.8-1+r20261124");
        assert_eq!(restamp("12.8-1+r20261101", now), "12.8-1+r20261124");
        assert_eq!(restamp("12.8-1+r20261124", now), "12.8-1+r20261124.2");
        assert_eq!(restamp("12.8-1+r20261124.2", now), "12.8-1+r20261124.3");
        assert_eq!(restamp("12.8-1+r20261101.4", now), "12.8-1+r20261124");
        assert_eq!(restamp("1+rc2", now), "1+rc2+r20261124");
    }
}
