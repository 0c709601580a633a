//! Overrides: a person's recorded word that changes what the gate would decide alone.
//!
//! Each is a YAML record committed to the results ledger (beside the results they speak
//! about, so every runner that fetches the ledger sees them, and `git log` of the ledger
//! shows who decided what and why), with an id, an author, a reason, a scope and an
//! optional expiry:
//!
//! ```text
//! overrides/waive/<job key>/<id>.yaml          a failing result that must not block
//! overrides/approve/<content key>/<id>.yaml    a candidate (a pipeline change) approved to move
//! overrides/freeze/<stage>/<id>.yaml           no promotion into <stage>
//! overrides/quarantine/<test>/<id>.yaml        <test> runs and records, but does not gate
//! overrides/removed/<id>.yaml                  the override <id> was lifted, by whom, why
//! overrides/recheck/<stage>/<content key>/<id>.yaml
//!                                              run a candidate's failing jobs into <stage> again
//! ```
//!
//! A recheck waives nothing: it names the job keys that had failed or errored and their
//! newest attempt then; the gate judges them by the attempts after it (and by their whole
//! history, for the flaky policy), counts their errors anew, and a rejection decided before
//! it is judged again.
//!
//! Records are never rewritten: lifting one is a record of its own, and an expired one
//! simply stops counting. A waiver is for one job key and an approval for one content key,
//! so either lapses by itself when what it spoke about changes (a new version has new
//! keys). Records of the first format (`overrides/waive/<key>.yaml`, no id, no expiry) are
//! still read.
//!
//! Every lookup is by path (a job key, a content key, a stage), so the gate reads only the
//! overrides of what it judges, however large the ledger. This module reads and writes
//! records; the gate weighs them, the CLI prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{ContentKey, JobKey};
use crate::ledger::{Ledger, LedgerView};

pub const WAIVE_DIR: &str = "overrides/waive";
pub const APPROVE_DIR: &str = "overrides/approve";
pub const FREEZE_DIR: &str = "overrides/freeze";
pub const QUARANTINE_DIR: &str = "overrides/quarantine";
pub const REMOVED_DIR: &str = "overrides/removed";
pub const RECHECK_DIR: &str = "overrides/recheck";

/// A person's word that the environment a candidate's jobs failed or errored in is fixed:
/// run them again, as new attempts beside the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecheckRecord {
    pub id: String,
    /// The candidate: `images/NAME`, `tests/NAME`, …
    pub candidate: String,
    /// Its content key: the recheck is for exactly this version.
    pub content: ContentKey,
    /// The stage it is pending into.
    pub stage: String,
    /// The jobs run again.
    pub jobs: Vec<RecheckedJob>,
    /// The rejection record (its git object) this recheck lifts, when one stood: that
    /// rejection is judged again; one decided after the recheck stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifts: Option<String>,
    pub reason: String,
    pub author: String,
    pub created: String,
}

/// One job a recheck runs again: its key, and its newest attempt when it was rechecked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecheckedJob {
    pub key: JobKey,
    pub job: String,
    /// The job's newest attempt number then (0: it had none).
    pub attempt: u32,
}

impl RecheckRecord {
    pub fn to_ref(&self) -> OverrideRef {
        OverrideRef {
            id: self.id.clone(),
            kind: "recheck".into(),
            scope: format!(
                "{} at {} into {}",
                self.candidate,
                self.content.override_form(),
                self.stage
            ),
            by: self.author.clone(),
            reason: self.reason.clone(),
            created: self.created.clone(),
            expires: None,
        }
    }
}

/// Where the rechecks of candidates pending into `stage` are, one directory per content.
pub fn recheck_dir(stage: &str) -> String {
    format!("{RECHECK_DIR}/{stage}")
}

/// The rechecks of `content` into `stage`, in no particular order.
pub fn rechecks(
    view: &LedgerView,
    stage: &str,
    content: &ContentKey,
) -> Result<Vec<RecheckRecord>> {
    records_in(view, &format!("{}/{content}", recheck_dir(stage)))
}

/// Record a recheck of `candidate` at `content` into `stage`: `jobs` run again.
pub fn recheck(
    ledger: &Ledger,
    candidate: &str,
    content: &ContentKey,
    stage: &str,
    jobs: Vec<RecheckedJob>,
    lifts: Option<String>,
    reason: &str,
) -> Result<RecheckRecord> {
    require_reason(reason)?;
    let id = new_id(content.as_str());
    let rec = RecheckRecord {
        id: id.clone(),
        candidate: candidate.to_string(),
        content: content.clone(),
        stage: stage.to_string(),
        jobs,
        lifts,
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
    };
    let mut items = vec![candidate.to_string()];
    items.extend(rec.jobs.iter().map(|j| j.key.to_string()));
    put(
        ledger,
        format!("{}/{content}/{id}.yaml", recheck_dir(stage)),
        crate::records::to_yaml(&rec),
        &rec.to_ref(),
        Some(stage),
        &items,
    )?;
    Ok(rec)
}

/// A waived failing result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WaiveRecord {
    /// Absent in records of the first format (their id is the key's first 12 digits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The job key whose failure is waived: one test, in one environment.
    pub key: JobKey,
    /// The job, for people: `test boot [components/xen]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Only into this stage (any stage when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub reason: String,
    pub author: String,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339; it stops counting then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// An approval of one candidate's content into one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApproveRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The candidate: `stagegate.yaml`, `images/NAME`, …
    pub candidate: String,
    /// Its content key: the approval is for exactly this version.
    pub content: ContentKey,
    /// The stage it may enter.
    pub stage: String,
    pub reason: String,
    pub author: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A stage that nothing may enter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FreezeRecord {
    pub id: String,
    pub stage: String,
    pub reason: String,
    pub author: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// A test that runs and records, but does not gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuarantineRecord {
    pub id: String,
    pub test: String,
    /// Only for the gate into this stage (every gate when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub reason: String,
    pub author: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// An override lifted before its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RemovalRecord {
    pub id: String,
    /// waive, approve, freeze, quarantine
    pub kind: String,
    /// What it was about, for people.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub author: String,
    pub created: String,
}

/// An override, as `status`, `log` and decision records show it: which one, by whom, why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OverrideRef {
    pub id: String,
    /// waive, approve, freeze, quarantine
    pub kind: String,
    /// What it covers: `job KEY (test boot [components/xen])`, `stage stable`, `test boot`, …
    pub scope: String,
    pub by: String,
    pub reason: String,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl OverrideRef {
    /// One line for people: `freeze 1a2b3c4d5e6f of stage stable by a@b: reason (until …)`.
    pub fn line(&self) -> String {
        format!(
            "{} {} of {} by {} since {}: {}{}",
            self.kind,
            self.id,
            self.scope,
            self.by,
            self.created,
            self.reason,
            self.expires
                .as_ref()
                .map(|e| format!(" (until {e})"))
                .unwrap_or_default()
        )
    }
}

impl WaiveRecord {
    pub fn id(&self) -> String {
        if self.id.is_empty() {
            self.key.short().to_string()
        } else {
            self.id.clone()
        }
    }

    pub fn to_ref(&self) -> OverrideRef {
        OverrideRef {
            id: self.id(),
            kind: "waive".into(),
            scope: format!(
                "job {}{}{}",
                self.key.short(),
                self.job
                    .as_ref()
                    .map(|j| format!(" ({})", one_line(j)))
                    .unwrap_or_default(),
                self.stage
                    .as_ref()
                    .map(|s| format!(" into {s}"))
                    .unwrap_or_default()
            ),
            by: self.author.clone(),
            reason: self.reason.clone(),
            created: self.created.clone(),
            expires: self.expires.clone(),
        }
    }
}

impl ApproveRecord {
    pub fn id(&self) -> String {
        if self.id.is_empty() {
            self.content.override_form().to_string()
        } else {
            self.id.clone()
        }
    }

    pub fn to_ref(&self) -> OverrideRef {
        OverrideRef {
            id: self.id(),
            kind: "approve".into(),
            scope: format!(
                "{} at {} into {}",
                self.candidate,
                self.content.override_form(),
                self.stage
            ),
            by: self.author.clone(),
            reason: self.reason.clone(),
            created: self.created.clone(),
            expires: self.expires.clone(),
        }
    }
}

impl FreezeRecord {
    pub fn to_ref(&self) -> OverrideRef {
        OverrideRef {
            id: self.id.clone(),
            kind: "freeze".into(),
            scope: format!("stage {}", self.stage),
            by: self.author.clone(),
            reason: self.reason.clone(),
            created: self.created.clone(),
            expires: self.expires.clone(),
        }
    }
}

impl QuarantineRecord {
    pub fn to_ref(&self) -> OverrideRef {
        OverrideRef {
            id: self.id.clone(),
            kind: "quarantine".into(),
            scope: format!(
                "test {}{}",
                self.test,
                self.stage
                    .as_ref()
                    .map(|s| format!(" into {s}"))
                    .unwrap_or_default()
            ),
            by: self.author.clone(),
            reason: self.reason.clone(),
            created: self.created.clone(),
            expires: self.expires.clone(),
        }
    }
}

/// Who is acting: `user@host`.
pub fn author() -> String {
    let r = crate::ledger::identity();
    format!("{}@{}", r.user, r.host)
}

fn require_reason(reason: &str) -> Result<()> {
    if reason.trim().is_empty() {
        return Err(Error::usage_help(
            "an override needs a reason",
            "say why with --reason TEXT; it is recorded with your name",
        ));
    }
    Ok(())
}

/// When an override ends: `--expires` (a date, `2026-12-01`, meaning its start in UTC, or
/// an RFC 3339 time) or `--for` (a duration from now: `3d`, `12h`). Returns RFC 3339, or
/// `None` for an override that lasts until it is removed. Anything else, or a time already
/// past, is a usage error that says what is expected.
pub fn expiry(expires: Option<&str>, lasting: Option<&str>, now: i64) -> Result<Option<String>> {
    let at = match (expires, lasting) {
        (Some(_), Some(_)) => {
            return Err(Error::usage_help(
                "--expires and --for both say when the override ends",
                "give one: --expires 2026-12-01 or --for 3d",
            ));
        }
        (None, None) => return Ok(None),
        (Some(e), None) => {
            let e = e.trim();
            let text = if e.len() == 10 && e.as_bytes().get(4) == Some(&b'-') {
                format!("{e}T00:00:00Z")
            } else {
                e.to_string()
            };
            let t = humantime::parse_rfc3339_weak(&text).map_err(|_| {
                Error::usage_help(
                    format!("--expires {e:?} is not a date or a time"),
                    "expected a date like 2026-12-01 (UTC) or an RFC 3339 time like 2026-12-01T18:00:00Z; or use --for 3d",
                )
            })?;
            crate::records::unix_secs(t)
        }
        (None, Some(d)) => {
            let d = d.trim();
            let dur = humantime::parse_duration(d).map_err(|_| {
                Error::usage_help(
                    format!("--for {d:?} is not a duration"),
                    "expected a duration like 3d, 12h or 1week; or use --expires 2026-12-01",
                )
            })?;
            if dur.is_zero() {
                return Err(Error::usage_help(
                    "--for 0 would end the override before it starts",
                    "give a duration like 3d, 12h or 1week",
                ));
            }
            now.saturating_add(dur.as_secs().min(i64::MAX as u64) as i64)
        }
    };
    if at <= now {
        return Err(Error::usage_help(
            format!(
                "the expiry {} has already passed (now is {})",
                rfc3339(at),
                rfc3339(now)
            ),
            "give a time in the future: --expires YYYY-MM-DD or --for 3d",
        ));
    }
    Ok(Some(rfc3339(at)))
}

fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
    )
    .to_string()
}

/// Whether an expiry (RFC 3339) has passed at `now`. A time that does not parse (a record
/// edited by hand) counts as passed: an override nobody can read the end of does not apply.
pub fn expired(expires: Option<&str>, now: i64) -> bool {
    match expires {
        None => false,
        Some(e) => match humantime::parse_rfc3339_weak(e) {
            Ok(t) => crate::records::unix_secs(t) <= now,
            Err(_) => true,
        },
    }
}

/// A fresh override id: 12 hex digits, unique per writer and moment.
fn new_id(what: &str) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!(
        "{what}\n{}\n{}\n{}\n{:?}",
        author(),
        std::process::id(),
        crate::records::now_rfc3339(),
        std::time::SystemTime::now()
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..6])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn removed_path(id: &str) -> String {
    format!("{REMOVED_DIR}/{id}.yaml")
}

/// Commit one override record with trailers `log` reads.
fn put(
    ledger: &Ledger,
    path: String,
    yaml: String,
    r: &OverrideRef,
    stage: Option<&str>,
    items: &[String],
) -> Result<()> {
    let mut msg = format!(
        "{} {}: {}\n\nStagegate-Override: {} {}\nStagegate-Scope: {}\n",
        capitalized(&r.kind),
        r.scope,
        one_line(&r.reason),
        r.kind,
        r.id,
        r.scope
    );
    if let Some(s) = stage {
        msg.push_str(&format!("Stagegate-Stage: {s}\n"));
    }
    for i in items {
        msg.push_str(&format!("Stagegate-Item: {i}\n"));
    }
    if let Some(e) = &r.expires {
        msg.push_str(&format!("Stagegate-Expires: {e}\n"));
    }
    msg.push_str(&format!(
        "Stagegate-Reason: {}\nStagegate-By: {}\n",
        one_line(&r.reason),
        r.by
    ));
    ledger.put_new(&[(path, yaml)], &msg)?;
    Ok(())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What a new waiver covers besides its key.
pub struct WaiveScope {
    /// The job, for people.
    pub job: Option<String>,
    /// The items the job tests (for `log ITEM`).
    pub items: Vec<String>,
    pub stage: Option<String>,
    pub expires: Option<String>,
    /// The `trust:` the waiver is weighed under: a waiver it does not count (unsigned, not
    /// entitled) is not one already in force.
    pub trust: Option<crate::manifest::Trust>,
}

/// Record a waiver of job `key` (a full key). Returns it, or `None` when a waiver of that
/// key for that stage is already in force.
pub fn waive(
    ledger: &Ledger,
    key: &JobKey,
    scope: WaiveScope,
    reason: &str,
) -> Result<Option<WaiveRecord>> {
    require_reason(reason)?;
    let view = ledger.view()?.trusting(scope.trust.as_ref())?;
    let now = crate::records::now_secs();
    if waivers(&view, key, now)?
        .iter()
        .any(|w| w.stage == scope.stage && w.expires.is_none())
    {
        return Ok(None);
    }
    let id = new_id(key.as_str());
    let rec = WaiveRecord {
        id: id.clone(),
        key: key.clone(),
        job: scope.job,
        stage: scope.stage,
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
        expires: scope.expires,
    };
    let mut items = scope.items;
    items.push(key.to_string());
    put(
        ledger,
        format!("{WAIVE_DIR}/{key}/{id}.yaml"),
        crate::records::to_yaml(&rec),
        &rec.to_ref(),
        rec.stage.as_deref(),
        &items,
    )?;
    Ok(Some(rec))
}

/// Record an approval of `candidate` at `content` into `stage`. `None` when one is already
/// in force.
pub fn approve(
    ledger: &Ledger,
    candidate: &str,
    content: &ContentKey,
    stage: &str,
    expires: Option<String>,
    reason: &str,
    trust: Option<&crate::manifest::Trust>,
) -> Result<Option<ApproveRecord>> {
    require_reason(reason)?;
    let view = ledger.view()?.trusting(trust)?;
    let now = crate::records::now_secs();
    if approvals(&view, content, now)?
        .iter()
        .any(|a| a.stage == stage && a.expires.is_none())
    {
        return Ok(None);
    }
    let id = new_id(content.as_str());
    let rec = ApproveRecord {
        id: id.clone(),
        candidate: candidate.to_string(),
        content: content.clone(),
        stage: stage.to_string(),
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
        expires,
    };
    put(
        ledger,
        format!("{APPROVE_DIR}/{content}/{id}.yaml"),
        crate::records::to_yaml(&rec),
        &rec.to_ref(),
        Some(stage),
        &[candidate.to_string()],
    )?;
    Ok(Some(rec))
}

/// Freeze `stage`: nothing is promoted into it until the freeze is lifted or expires.
pub fn freeze(
    ledger: &Ledger,
    stage: &str,
    expires: Option<String>,
    reason: &str,
) -> Result<FreezeRecord> {
    require_reason(reason)?;
    let id = new_id(stage);
    let rec = FreezeRecord {
        id: id.clone(),
        stage: stage.to_string(),
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
        expires,
    };
    put(
        ledger,
        format!("{FREEZE_DIR}/{stage}/{id}.yaml"),
        crate::records::to_yaml(&rec),
        &rec.to_ref(),
        Some(stage),
        &[],
    )?;
    Ok(rec)
}

/// Quarantine `test` (into `stage`, or every stage): it runs and records, but does not gate.
pub fn quarantine(
    ledger: &Ledger,
    test: &str,
    stage: Option<String>,
    expires: Option<String>,
    reason: &str,
) -> Result<QuarantineRecord> {
    require_reason(reason)?;
    let id = new_id(test);
    let rec = QuarantineRecord {
        id: id.clone(),
        test: test.to_string(),
        stage,
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
        expires,
    };
    put(
        ledger,
        format!("{QUARANTINE_DIR}/{test}/{id}.yaml"),
        crate::records::to_yaml(&rec),
        &rec.to_ref(),
        rec.stage.as_deref(),
        &[format!("tests/{test}")],
    )?;
    Ok(rec)
}

/// Lift the overrides `which` (in force, as [`all`] lists them): one removal record each,
/// in one commit. The records themselves stay, so `git log` still shows them.
/// `items` are what `log ITEM` finds the lifting under.
pub fn remove(
    ledger: &Ledger,
    which: &[OverrideRef],
    items: &[String],
    reason: Option<&str>,
) -> Result<()> {
    if which.is_empty() {
        return Ok(());
    }
    let by = author();
    let at = crate::records::now_rfc3339();
    let mut files = Vec::new();
    let mut msg = String::new();
    for r in which {
        let rec = RemovalRecord {
            id: r.id.clone(),
            kind: r.kind.clone(),
            scope: r.scope.clone(),
            reason: reason.map(String::from),
            author: by.clone(),
            created: at.clone(),
        };
        files.push((removed_path(&r.id), crate::records::to_yaml(&rec)));
    }
    let first = &which[0];
    msg.push_str(&format!(
        "Lift {} {}{}\n\n",
        first.kind,
        first.scope,
        if which.len() > 1 {
            format!(" and {} more", which.len() - 1)
        } else {
            String::new()
        }
    ));
    for r in which {
        msg.push_str(&format!("Stagegate-Override: un{} {}\n", r.kind, r.id));
        msg.push_str(&format!("Stagegate-Scope: {}\n", r.scope));
    }
    for i in items {
        msg.push_str(&format!("Stagegate-Item: {i}\n"));
    }
    if let Some(r) = reason {
        msg.push_str(&format!("Stagegate-Reason: {}\n", one_line(r)));
    }
    msg.push_str(&format!("Stagegate-By: {by}\n"));
    ledger.put_new(&files, &msg)?;
    Ok(())
}

/// Whether override `id` was lifted.
pub fn is_removed(view: &LedgerView, id: &str) -> Result<bool> {
    Ok(view.read(&removed_path(id))?.is_some())
}

fn quarantine_id(q: &QuarantineRecord) -> (String, Option<&str>) {
    (q.id.clone(), q.expires.as_deref())
}

/// The `records` in force at `now`: not expired, not lifted. `which` gives a record's id
/// and expiry.
fn in_force<T>(
    view: &LedgerView,
    records: Vec<T>,
    now: i64,
    which: impl Fn(&T) -> (String, Option<&str>),
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let (id, expires) = which(&r);
        if !expired(expires, now) && !is_removed(view, &id)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Every record directly under `dir`, parsed.
fn records_in<T: serde::de::DeserializeOwned>(view: &LedgerView, dir: &str) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for name in view.list(dir)? {
        let path = format!("{dir}/{name}");
        if let Some(bytes) = view.read(&path)? {
            out.push(crate::records::parse(&path, &bytes)?);
        }
    }
    Ok(out)
}

/// The records of one scope: `<dir>/<scope>/*.yaml`, and `<dir>/<scope>.yaml` of the first
/// format.
fn scoped<T: serde::de::DeserializeOwned>(
    view: &LedgerView,
    dir: &str,
    scope: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let legacy = format!("{dir}/{scope}.yaml");
    if let Some(bytes) = view.read(&legacy)? {
        out.push(crate::records::parse(&legacy, &bytes)?);
    }
    out.extend(records_in(view, &format!("{dir}/{scope}"))?);
    Ok(out)
}

/// The waivers of job `key` in force at `now`, oldest first.
pub fn waivers(view: &LedgerView, key: &JobKey, now: i64) -> Result<Vec<WaiveRecord>> {
    let waivers = scoped::<WaiveRecord>(view, WAIVE_DIR, key.as_str())?;
    let mut out = in_force(view, waivers, now, |w| (w.id(), w.expires.as_deref()))?;
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// The scopes under `dir` that have records: `<scope>/` and `<scope>.yaml` of the first
/// format. One listing, so that asking about many scopes (every planned job key) looks up
/// only those that have any.
fn scopes_with_records(view: &LedgerView, dir: &str) -> Result<std::collections::HashSet<String>> {
    let mut out: std::collections::HashSet<String> = view.dirs(dir)?.into_iter().collect();
    out.extend(
        view.list(dir)?
            .into_iter()
            .filter_map(|f| f.strip_suffix(".yaml").map(String::from)),
    );
    Ok(out)
}

/// The first waiver in force of each of `keys` into `stage`.
pub fn waived<'a>(
    view: &LedgerView,
    stage: &str,
    keys: impl IntoIterator<Item = &'a JobKey>,
    now: i64,
) -> Result<BTreeMap<JobKey, WaiveRecord>> {
    let with_records = scopes_with_records(view, WAIVE_DIR)?;
    let mut out = BTreeMap::new();
    for k in keys
        .into_iter()
        .filter(|k| with_records.contains(k.as_str()))
    {
        if let Some(w) = waivers(view, k, now)?
            .into_iter()
            .find(|w| w.stage.as_deref().is_none_or(|s| s == stage))
        {
            out.insert(k.clone(), w);
        }
    }
    Ok(out)
}

/// The waiver of job `key`'s failure in force now, if someone recorded one: who, when, why.
pub fn waiver(view: &LedgerView, key: &JobKey) -> Result<Option<WaiveRecord>> {
    Ok(waivers(view, key, crate::records::now_secs())?
        .into_iter()
        .next())
}

/// The approvals of content `content` in force at `now`.
pub fn approvals(view: &LedgerView, content: &ContentKey, now: i64) -> Result<Vec<ApproveRecord>> {
    let approvals = scoped::<ApproveRecord>(view, APPROVE_DIR, content.as_str())?;
    in_force(view, approvals, now, |a| (a.id(), a.expires.as_deref()))
}

/// The approval in force of each of `contents` into `stage`.
pub fn approved<'a>(
    view: &LedgerView,
    stage: &str,
    contents: impl IntoIterator<Item = &'a ContentKey>,
    now: i64,
) -> Result<BTreeMap<ContentKey, ApproveRecord>> {
    let with_records = scopes_with_records(view, APPROVE_DIR)?;
    let mut out = BTreeMap::new();
    for c in contents
        .into_iter()
        .filter(|c| with_records.contains(c.as_str()))
    {
        if let Some(a) = approvals(view, c, now)?
            .into_iter()
            .find(|a| a.stage == stage)
        {
            out.insert(c.clone(), a);
        }
    }
    Ok(out)
}

/// The freezes of `stage` in force at `now`, oldest first.
pub fn freezes(view: &LedgerView, stage: &str, now: i64) -> Result<Vec<FreezeRecord>> {
    let dir = format!("{FREEZE_DIR}/{stage}");
    let freezes = records_in::<FreezeRecord>(view, &dir)?;
    let mut out = in_force(view, freezes, now, |f| (f.id.clone(), f.expires.as_deref()))?;
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// The quarantines in force at `now` for the gate into `stage` (every stage's when `None`),
/// by test; the oldest of each test.
pub fn quarantines(
    view: &LedgerView,
    stage: Option<&str>,
    now: i64,
) -> Result<BTreeMap<String, QuarantineRecord>> {
    let mut out: BTreeMap<String, QuarantineRecord> = BTreeMap::new();
    for test in view.dirs(QUARANTINE_DIR)? {
        let applying: Vec<QuarantineRecord> =
            records_in::<QuarantineRecord>(view, &format!("{QUARANTINE_DIR}/{test}"))?
                .into_iter()
                .filter(|q| match (stage, &q.stage) {
                    (Some(s), Some(qs)) => s == qs,
                    _ => true,
                })
                .collect();
        for q in in_force(view, applying, now, quarantine_id)? {
            if out.get(&q.test).is_none_or(|old| old.created > q.created) {
                out.insert(q.test.clone(), q);
            }
        }
    }
    Ok(out)
}

/// The freezes in force of every stage of `stages`.
pub fn all_freezes(view: &LedgerView, stages: &[String], now: i64) -> Result<Vec<FreezeRecord>> {
    let mut out = Vec::new();
    for s in stages {
        out.extend(freezes(view, s, now)?);
    }
    Ok(out)
}

/// Every override in force at `now`, of every kind: what `status` lists and what
/// `waive --remove ID` looks an id up in. Reads only the `overrides/` part of the ledger.
pub fn all(view: &LedgerView, now: i64) -> Result<Vec<OverrideRef>> {
    let mut out = Vec::new();
    let scopes = |dir: &str| -> Result<Vec<String>> {
        let mut names = view.dirs(dir)?;
        // Records of the first format: `<dir>/<scope>.yaml`.
        names.extend(
            view.list(dir)?
                .into_iter()
                .filter_map(|n| n.strip_suffix(".yaml").map(String::from)),
        );
        names.sort();
        names.dedup();
        Ok(names)
    };
    for key in scopes(WAIVE_DIR)? {
        let key = JobKey::from(key);
        out.extend(waivers(view, &key, now)?.iter().map(WaiveRecord::to_ref));
    }
    for content in scopes(APPROVE_DIR)? {
        let content = ContentKey::from(content);
        out.extend(
            approvals(view, &content, now)?
                .iter()
                .map(ApproveRecord::to_ref),
        );
    }
    for stage in view.dirs(FREEZE_DIR)? {
        out.extend(freezes(view, &stage, now)?.iter().map(FreezeRecord::to_ref));
    }
    out.extend(
        quarantines(view, None, now)?
            .values()
            .map(QuarantineRecord::to_ref),
    );
    Ok(out)
}

/// The override in force whose id starts with `id` (at least 6 digits), of kind `kind`.
pub fn find(view: &LedgerView, kind: &str, id: &str, now: i64) -> Result<OverrideRef> {
    let id = id.trim().to_ascii_lowercase();
    if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::usage_help(
            format!("{id:?} is not an override id"),
            format!(
                "ids are 12 hex digits (give at least 6); `{}` lists the overrides in force",
                crate::advice::Advice::Status
            ),
        ));
    }
    let found: Vec<OverrideRef> = all(view, now)?
        .into_iter()
        .filter(|r| r.kind == kind && r.id.starts_with(&id))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one")),
        0 => Err(Error::usage_help(
            format!("no {kind} in force has the id {id}"),
            format!(
                "`{}` lists the overrides in force; an expired or lifted one needs no removal",
                crate::advice::Advice::Status
            ),
        )),
        n => Err(Error::usage_help(
            format!("{id} starts {n} {kind} ids"),
            "give more of the id",
        )),
    }
}

/// Every quarantine of `test` in force at `now` (of every stage).
pub fn quarantines_of(view: &LedgerView, test: &str, now: i64) -> Result<Vec<QuarantineRecord>> {
    let all = records_in::<QuarantineRecord>(view, &format!("{QUARANTINE_DIR}/{test}"))?;
    in_force(view, all, now, quarantine_id)
}
