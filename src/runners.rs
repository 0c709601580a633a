//! The runners' heartbeats (DESIGN §4.18): each `run` and `cycle` writes, on a ref of its
//! own ([`RUNNERS_REF`], one YAML file per runner), who it is, the labels it offers, when
//! it was seen and the labels its health checks hold back. `why` and `status` read them to
//! say why a job that needs a label waits ("no runner offering it has been seen since …").
//!
//! Heartbeats are facts about runners, never evidence: they are not in the results ledger
//! (`crate::trust` does not assess them, the gate never counts them as results), each write
//! replaces the ref with one parentless commit, and heartbeats older than [`KEEP_SECS`] are
//! pruned, so the ref stays one small tree. It never prints.

use std::collections::BTreeMap;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::{Cas, Repo, remote};

/// A heartbeat that says what the one recorded less than this ago (10 minutes) says is
/// not written again: a runner started every minute would otherwise add a commit and its
/// objects to each run, for a liveness counted in days ([`LIVE_SECS`]).
pub const REFRESH_SECS: i64 = 600;

/// Whether `old` still says what `new` would: the same labels and health, and recent.
fn fresh(old: &Heartbeat, new: &Heartbeat, now: i64) -> bool {
    old.labels == new.labels
        && old.unhealthy == new.unhealthy
        && (0..REFRESH_SECS).contains(&(now - old.at))
}

/// Where the heartbeats live.
pub const RUNNERS_REF: &str = "refs/stagegate/runners";
/// Heartbeats older than this (30 days) are dropped when the ref is written.
pub const KEEP_SECS: i64 = 30 * 24 * 3600;
/// A runner seen within this (1 day) serves its labels: a job it can run is expected to
/// be run by it and waits as an ordinary missing result.
pub const LIVE_SECS: i64 = 24 * 3600;

/// One runner's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Heartbeat {
    /// The runner's name: its host (`STAGEGATE_HOST` overrides the host name).
    pub host: String,
    /// Every label it offers, healthy or not.
    #[serde(default)]
    pub labels: Vec<String>,
    /// When it was seen (RFC 3339), and as Unix seconds.
    pub seen: String,
    #[serde(default)]
    pub at: i64,
    /// Offered labels whose health check fails, with why: it takes none of their jobs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unhealthy: BTreeMap<String, String>,
}

impl Heartbeat {
    pub fn new(
        host: &str,
        labels: Vec<String>,
        unhealthy: BTreeMap<String, String>,
        now: i64,
    ) -> Self {
        Heartbeat {
            host: host.to_string(),
            labels,
            seen: crate::records::rfc3339(now),
            at: now,
            unhealthy,
        }
    }

    fn offers(&self, needs: &[String]) -> bool {
        needs.iter().all(|n| self.labels.contains(n))
    }

    fn healthy_for(&self, needs: &[String]) -> bool {
        needs.iter().all(|n| !self.unhealthy.contains_key(n))
    }
}

/// The file of `host` in the tree: its name made safe for a path.
fn file_of(host: &str) -> String {
    let safe: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.yaml", safe.trim_start_matches('.'))
}

/// Every heartbeat of `reference` (the local ref, or a remote's tracking ref), by file.
fn read_at(repo: &Repo, reference: &str) -> Result<BTreeMap<String, Heartbeat>> {
    let mut out = BTreeMap::new();
    let Some(tip) = repo.ref_target(reference)? else {
        return Ok(out);
    };
    for e in repo.tree_entries(repo.tree_of(tip)?)? {
        if e.kind != EntryKind::Blob {
            continue;
        }
        // A file this version cannot read is left alone, never an error: heartbeats are
        // not evidence, and a newer stagegate may write more.
        if let Ok(hb) = crate::records::parse::<Heartbeat>(&e.name, &repo.blob(e.id)?) {
            out.insert(e.name.clone(), hb);
        }
    }
    Ok(out)
}

/// Every runner's last heartbeat, as this repository knows them, newest first.
pub fn read(repo: &Repo) -> Result<Vec<Heartbeat>> {
    let mut all: Vec<Heartbeat> = read_at(repo, RUNNERS_REF)?.into_values().collect();
    all.sort_by(|a, b| b.at.cmp(&a.at).then(a.host.cmp(&b.host)));
    Ok(all)
}

/// Write `beats` over the local ref (each file replaced by the newer of the two), without
/// those older than [`KEEP_SECS`] at `now`: one parentless commit, compare-and-swapped.
fn write_merged(repo: &Repo, beats: &BTreeMap<String, Heartbeat>, now: i64) -> Result<()> {
    for _ in 0..20 {
        let tip = repo.ref_target(RUNNERS_REF)?;
        let mut all = read_at(repo, RUNNERS_REF)?;
        for (file, hb) in beats {
            match all.get(file) {
                Some(old) if old.at > hb.at => {}
                _ => {
                    all.insert(file.clone(), hb.clone());
                }
            }
        }
        all.retain(|_, hb| now - hb.at <= KEEP_SECS);
        let mut edits = Vec::new();
        for (file, hb) in &all {
            let blob = repo.write_blob(crate::records::to_yaml(hb).as_bytes())?;
            edits.push((file.clone(), Some((EntryKind::Blob, blob))));
        }
        let tree = repo.edit_tree(ObjectId::empty_tree(gix::hash::Kind::Sha1), &edits)?;
        if tip.is_some_and(|t| repo.tree_of(t).ok() == Some(tree)) {
            return Ok(());
        }
        let commit = repo.write_commit(tree, &[], "stagegate: runners' heartbeats")?;
        if repo.cas(RUNNERS_REF, tip, commit, "stagegate: heartbeat")? == Cas::Updated {
            return Ok(());
        }
    }
    Err(Error::infra(format!(
        "{RUNNERS_REF} kept moving while writing a heartbeat; try again"
    )))
}

/// Record `hb` (this runner's heartbeat) and, when the repository publishes to a remote,
/// share it: the remote's heartbeats are merged in and the ref pushed.
pub fn beat(repo: &Repo, hb: &Heartbeat, now: i64) -> Result<()> {
    if let Ok(all) = read_at(repo, RUNNERS_REF)
        && let Some(old) = all.get(&file_of(&hb.host))
        && fresh(old, hb, now)
    {
        return Ok(());
    }
    let mine = BTreeMap::from([(file_of(&hb.host), hb.clone())]);
    write_merged(repo, &mine, now)?;
    if let Some(remote) = repo.publishing() {
        push(repo, remote, now)?;
    }
    Ok(())
}

/// Bring the remote's heartbeats into the local ref (newest per runner wins). A remote
/// without any is fine.
pub fn fetch(repo: &Repo, remote_name: &str, now: i64) -> Result<()> {
    let tracking = remote::tracking_ref(remote_name, RUNNERS_REF);
    let exists = remote::git(
        repo.git_dir(),
        &["ls-remote", "--", remote_name, RUNNERS_REF],
    )?;
    if exists.trim().is_empty() {
        return Ok(());
    }
    remote::git(
        repo.git_dir(),
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            remote_name,
            &format!("+{RUNNERS_REF}:{tracking}"),
        ],
    )?;
    let theirs = read_at(repo, &tracking)?;
    write_merged(repo, &theirs, now)
}

/// Push the local heartbeats, leased on what was last fetched; a lost race is fetched,
/// merged and pushed again.
fn push(repo: &Repo, remote_name: &str, now: i64) -> Result<()> {
    let tracking = remote::tracking_ref(remote_name, RUNNERS_REF);
    fetch(repo, remote_name, now)?;
    for _ in 0..5 {
        let Some(local) = repo.ref_target(RUNNERS_REF)? else {
            return Ok(());
        };
        let lease = match repo.ref_target(&tracking)? {
            Some(t) => format!("--force-with-lease={RUNNERS_REF}:{t}"),
            None => format!("--force-with-lease={RUNNERS_REF}:"),
        };
        let pushed = remote::git(
            repo.git_dir(),
            &[
                "push",
                "--quiet",
                "--porcelain",
                &lease,
                remote_name,
                &format!("{local}:{RUNNERS_REF}"),
            ],
        );
        if pushed.is_ok() {
            repo.cas(
                &tracking,
                repo.ref_target(&tracking)?,
                local,
                "stagegate: pushed heartbeats",
            )?;
            return Ok(());
        }
        fetch(repo, remote_name, now)?;
    }
    Err(Error::infra_help(
        format!("could not push {RUNNERS_REF} to {remote_name}: it kept moving"),
        "heartbeats are not evidence; the next run writes one again",
    ))
}

/// Why a job that needs `needs` waits when no live runner can serve it, or `None` when one
/// can (a runner seen within [`LIVE_SECS`] of `now` offers every label, and its health
/// checks for them pass). The text names the labels and the last time a runner offering
/// them was seen, or that none ever was, and the runners that offer them but are unhealthy.
pub fn unserved(beats: &[Heartbeat], needs: &[String], now: i64) -> Option<String> {
    if needs.is_empty() {
        return None;
    }
    let offering: Vec<&Heartbeat> = beats.iter().filter(|h| h.offers(needs)).collect();
    let live = |h: &&Heartbeat| now - h.at <= LIVE_SECS;
    if offering.iter().any(|h| live(h) && h.healthy_for(needs)) {
        return None;
    }
    let names: Vec<String> = needs.iter().map(|n| format!("`{n}`")).collect();
    let it = if needs.len() == 1 { "it" } else { "them all" };
    let mut text = match offering.iter().map(|h| h.at).max() {
        Some(at) if !offering.iter().any(live) => format!(
            "needs {}: no runner offering {it} has been seen since {}",
            names.join(", "),
            crate::records::rfc3339(at)
        ),
        Some(_) => format!("needs {}: no healthy runner offers {it}", names.join(", ")),
        None => format!(
            "needs {}: no runner offering {it} has ever been seen",
            names.join(", ")
        ),
    };
    for h in offering.iter().filter(|h| live(h) && !h.healthy_for(needs)) {
        for (label, why) in needs
            .iter()
            .filter_map(|n| h.unhealthy.get(n).map(|w| (n, w)))
        {
            text.push_str(&format!(
                "; {} offers `{label}` but its health check fails ({why}, {})",
                h.host, h.seen
            ));
        }
    }
    Some(text)
}

/// The runners seen within [`LIVE_SECS`] whose health checks fail, for `status`.
pub fn unhealthy(beats: &[Heartbeat], now: i64) -> Vec<&Heartbeat> {
    beats
        .iter()
        .filter(|h| now - h.at <= LIVE_SECS && !h.unhealthy.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn hb(host: &str, labels: &[&str], at: i64) -> Heartbeat {
        Heartbeat::new(
            host,
            labels.iter().map(|l| l.to_string()).collect(),
            BTreeMap::new(),
            at,
        )
    }

    #[test]
    fn a_job_is_unserved_until_a_live_healthy_runner_offers_its_labels() {
        let kvm = vec!["kvm".to_string()];
        assert!(unserved(&[], &[], NOW).is_none());
        let never = unserved(&[hb("a", &["x86_64"], NOW)], &kvm, NOW).unwrap();
        assert_eq!(
            never,
            "needs `kvm`: no runner offering it has ever been seen"
        );
        let old = unserved(&[hb("b", &["kvm"], NOW - 2 * LIVE_SECS)], &kvm, NOW).unwrap();
        assert!(
            old.contains("has been seen since 2027-01-13T08:00:00Z"),
            "{old}"
        );
        assert!(unserved(&[hb("b", &["kvm"], NOW - 60)], &kvm, NOW).is_none());
        let mut sick = hb("b", &["kvm"], NOW - 60);
        sick.unhealthy
            .insert("kvm".into(), "tests/kvm-health.sh exited 1".into());
        let why = unserved(&[sick], &kvm, NOW).unwrap();
        assert!(why.contains("no healthy runner offers it; b offers `kvm` but its health check fails (tests/kvm-health.sh exited 1"), "{why}");
    }

    #[test]
    fn a_heartbeat_is_written_again_when_it_changes_or_once_it_is_ten_minutes_old() {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        let repo = Repo::open(dir.path()).unwrap();
        let tip = || repo.ref_target(RUNNERS_REF).unwrap();
        beat(&repo, &hb("a", &["kvm"], NOW), NOW).unwrap();
        let first = tip();
        assert!(first.is_some());
        // The same, a minute later: nothing written.
        beat(&repo, &hb("a", &["kvm"], NOW + 60), NOW + 60).unwrap();
        assert_eq!(tip(), first);
        // Another label: written at once.
        beat(&repo, &hb("a", &["kvm", "x86_64"], NOW + 120), NOW + 120).unwrap();
        let second = tip();
        assert_ne!(second, first);
        // A failing health check: written at once.
        let mut sick = hb("a", &["kvm", "x86_64"], NOW + 180);
        sick.unhealthy.insert("kvm".into(), "exited 1".into());
        beat(&repo, &sick, NOW + 180).unwrap();
        let third = tip();
        assert_ne!(third, second);
        // Unchanged but ten minutes old: written again, seen now.
        let later = NOW + 180 + REFRESH_SECS;
        let mut again = sick.clone();
        (again.at, again.seen) = (later, crate::records::rfc3339(later));
        beat(&repo, &again, later).unwrap();
        assert_ne!(tip(), third);
        assert_eq!(read(&repo).unwrap()[0].at, later);
    }

    #[test]
    fn a_runner_name_is_a_safe_file_name() {
        assert_eq!(file_of("ci/box 1"), "ci_box_1.yaml");
        assert_eq!(file_of("..x"), "x.yaml");
    }
}
