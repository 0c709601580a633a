//! Overrides: a person's recorded word that changes what the gate would decide alone.
//!
//! Two kinds exist so far, each a YAML record committed to the results ledger (beside the
//! results they speak about, so every runner that fetches the ledger sees them, and
//! `git log` of the ledger shows who decided what and why):
//!
//! ```text
//! overrides/waive/<job key>.yaml            a failing result that must not block
//! overrides/approve/<content key>.yaml      a candidate (a pipeline change) approved to move
//! ```
//!
//! Every record carries `author`, `reason` and `created`; the format leaves room for more
//! (a scope, an expiry) without breaking older readers, since unknown fields are refused
//! only by this version's parser and every field added later will be optional.
//!
//! This module reads and writes records; the gate weighs them, the CLI prints.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerView};

pub const WAIVE_DIR: &str = "overrides/waive";
pub const APPROVE_DIR: &str = "overrides/approve";

/// A waived failing result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WaiveRecord {
    /// The job key whose failure is waived.
    pub key: String,
    pub reason: String,
    pub author: String,
    /// RFC 3339.
    pub created: String,
}

/// An approval of one candidate's content into one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ApproveRecord {
    /// The candidate: `stagegate.yaml`, `images/NAME`, …
    pub candidate: String,
    /// Its content key: the approval is for exactly this version.
    pub content: String,
    /// The stage it may enter.
    pub stage: String,
    pub reason: String,
    pub author: String,
    pub created: String,
}

pub fn waive_path(key: &str) -> String {
    format!("{WAIVE_DIR}/{key}.yaml")
}

pub fn approve_path(content: &str) -> String {
    format!("{APPROVE_DIR}/{content}.yaml")
}

/// Who is acting: `user@host`.
pub fn author() -> String {
    let r = crate::runner::identity();
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

/// Record a waiver of job `key` (a full key). Returns false when it was already waived.
pub fn waive(ledger: &Ledger, key: &str, reason: &str) -> Result<bool> {
    require_reason(reason)?;
    let rec = WaiveRecord {
        key: key.to_string(),
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
    };
    let msg = format!(
        "Waive {}: {}\n\nStagegate-Waive: {key}\nStagegate-Reason: {}\nStagegate-By: {}\n",
        &key[..key.len().min(12)],
        one_line(reason),
        one_line(reason),
        rec.author
    );
    let done = ledger.put_new(&[(waive_path(key), crate::records::to_yaml(&rec))], &msg)?;
    Ok(!done.is_empty())
}

/// Record an approval of `candidate` at `content` into `stage`. False when already approved.
pub fn approve(
    ledger: &Ledger,
    candidate: &str,
    content: &str,
    stage: &str,
    reason: &str,
) -> Result<bool> {
    require_reason(reason)?;
    let rec = ApproveRecord {
        candidate: candidate.to_string(),
        content: content.to_string(),
        stage: stage.to_string(),
        reason: reason.to_string(),
        author: author(),
        created: crate::records::now_rfc3339(),
    };
    let msg = format!(
        "Approve {candidate} into {stage}: {}\n\nStagegate-Approve: {candidate}\nStagegate-Stage: {stage}\nStagegate-Reason: {}\nStagegate-By: {}\n",
        one_line(reason),
        one_line(reason),
        rec.author
    );
    let done = ledger.put_new(
        &[(approve_path(content), crate::records::to_yaml(&rec))],
        &msg,
    )?;
    Ok(!done.is_empty())
}

/// The keys among `keys` that are waived.
pub fn waived<'a>(
    view: &LedgerView,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for k in keys {
        if let Some(rec) = waiver(view, k)? {
            out.insert(rec.key);
        }
    }
    Ok(out)
}

/// The waiver of job `key`'s failure, if someone recorded one: who, when and why.
pub fn waiver(view: &LedgerView, key: &str) -> Result<Option<WaiveRecord>> {
    let path = waive_path(key);
    match view.read(&path)? {
        Some(bytes) => Ok(Some(crate::records::parse(&path, &bytes)?)),
        None => Ok(None),
    }
}

/// The content keys among `contents` approved into `stage`.
pub fn approved<'a>(
    view: &LedgerView,
    stage: &str,
    contents: impl IntoIterator<Item = &'a String>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for c in contents {
        let path = approve_path(c);
        if let Some(bytes) = view.read(&path)? {
            let rec: ApproveRecord = crate::records::parse(&path, &bytes)?;
            if rec.stage == stage {
                out.insert(rec.content);
            }
        }
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
