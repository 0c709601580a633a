//! Gates: from a move's plan and its recorded results, a decision per pending commit.
//!
//! A pending commit is promoted when every job its gate requires has an acceptable
//! verdict, its soak time has passed, and none of its candidates is held. A job that
//! fails while its baseline (the same test, all of T) passed is a regression and rejects
//! the commit; one whose baseline fails too "fails like baseline" and does not block when
//! the gate says `baseline: true`. Missing results, errors and soak time mean wait.
//!
//! This module decides; it writes nothing (that is `promote`) and prints nothing.

use std::collections::BTreeMap;

use gix::ObjectId;
use serde::Serialize;

use crate::error::Result;
use crate::ledger::{LedgerView, ResultRecord, Verdict};
use crate::manifest::ItemId;
use crate::plan::{Job, JobKind, MovePlan, Pending, Role, describe};
use crate::records::HoldRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Promote,
    Reject,
    Wait,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Promote => "promote",
            Decision::Reject => "reject",
            Decision::Wait => "wait",
        })
    }
}

/// The state of one required job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Passed,
    Flaky,
    /// Failed, and so did its baseline: not this candidate's doing.
    FailsLikeBaseline,
    /// Failed where the baseline passed (or there is no baseline to compare with).
    Regression,
    /// Failed, the baseline has no result yet.
    FailedBaselineMissing,
    Error,
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobVerdict {
    pub key: String,
    pub label: String,
    pub kind: JobKind,
    pub role: Role,
    pub candidates: Vec<ItemId>,
    pub verdict: Option<Verdict>,
    pub state: JobState,
    pub baseline_key: Option<String>,
    pub baseline: Option<Verdict>,
    pub reason: Option<String>,
    pub excerpt: Option<String>,
    pub log: Option<String>,
}

/// Why a commit is not promoted (or a note on why it is).
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// missing, error, regression, build-failed, fails-like-baseline, baseline-missing,
    /// held, soak, untested
    pub kind: &'static str,
    pub item: Option<String>,
    pub job: Option<String>,
    pub message: String,
}

/// The gate's verdict on one pending commit.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    #[serde(serialize_with = "ser_oid")]
    pub commit: ObjectId,
    pub subject: String,
    pub decision: Decision,
    pub reasons: Vec<Reason>,
    pub jobs: Vec<JobVerdict>,
    /// Seconds left before the soak time has passed (0 when it has).
    pub soak_left: u64,
}

/// Holds in force on a stage, by item.
pub type Holds = BTreeMap<ItemId, HoldRecord>;

/// Evaluate every pending commit of `plan`, newest first.
pub fn evaluate(
    plan: &MovePlan,
    results: &LedgerView,
    holds: &Holds,
    now: i64,
) -> Result<Vec<Evaluation>> {
    let mut latest: BTreeMap<&str, Option<ResultRecord>> = BTreeMap::new();
    for key in plan.jobs.keys() {
        latest.insert(key, results.latest(key)?);
    }
    Ok(plan
        .pending
        .iter()
        .map(|p| evaluate_one(plan, p, &latest, holds, now))
        .collect())
}

fn evaluate_one(
    plan: &MovePlan,
    pending: &Pending,
    latest: &BTreeMap<&str, Option<ResultRecord>>,
    holds: &Holds,
    now: i64,
) -> Evaluation {
    let mut reasons = Vec::new();
    let mut jobs = Vec::new();
    let mut reject = false;
    let mut wait = false;
    for key in &pending.required {
        let job: &Job = &plan.jobs[key];
        let rec = latest.get(key.as_str()).and_then(|r| r.as_ref());
        let verdict = rec.map(|r| r.verdict);
        let baseline_key = job.baseline.clone();
        let baseline = baseline_key
            .as_deref()
            .and_then(|b| latest.get(b))
            .and_then(|r| r.as_ref())
            .map(|r| r.verdict);
        let label = describe(job);
        let item = job.candidates.first().map(|c| c.to_string());
        let state = match verdict {
            Some(Verdict::Pass) => JobState::Passed,
            Some(Verdict::Flaky) => JobState::Flaky,
            Some(Verdict::Fail) => match (plan.gate.baseline, &baseline_key, baseline) {
                (true, Some(_), Some(Verdict::Fail)) => JobState::FailsLikeBaseline,
                (true, Some(_), None | Some(Verdict::Error | Verdict::Skipped)) => {
                    JobState::FailedBaselineMissing
                }
                _ => JobState::Regression,
            },
            Some(Verdict::Error | Verdict::Skipped) => JobState::Error,
            None => JobState::Missing,
        };
        let why = rec.and_then(|r| r.reason.clone());
        match state {
            JobState::Passed | JobState::Flaky => {}
            JobState::FailsLikeBaseline => reasons.push(Reason {
                kind: "fails-like-baseline",
                item: item.clone(),
                job: Some(key.clone()),
                message: format!(
                    "{label} fails, and so does its baseline on {}: not a regression",
                    plan.to.name
                ),
            }),
            JobState::FailedBaselineMissing => {
                wait = true;
                reasons.push(Reason {
                    kind: "baseline-missing",
                    item: item.clone(),
                    job: Some(key.clone()),
                    message: format!("{label} fails; its baseline on {} has no result yet to compare with (run `stagegate run`)", plan.to.name),
                });
            }
            JobState::Regression => {
                reject = true;
                let (kind, message) = if job.kind == JobKind::Build {
                    (
                        "build-failed",
                        format!(
                            "{label} failed{}",
                            why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
                        ),
                    )
                } else if baseline == Some(Verdict::Pass) || baseline == Some(Verdict::Flaky) {
                    (
                        "regression",
                        format!("{label} fails where {} passes: a regression", plan.to.name),
                    )
                } else {
                    (
                        "regression",
                        format!(
                            "{label} fails{}",
                            why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
                        ),
                    )
                };
                reasons.push(Reason {
                    kind,
                    item: item.clone(),
                    job: Some(key.clone()),
                    message,
                });
            }
            JobState::Error => {
                wait = true;
                reasons.push(Reason {
                    kind: "error",
                    item: item.clone(),
                    job: Some(key.clone()),
                    message: format!(
                        "{label} could not run{}; retry with `stagegate run --failed`",
                        why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
                    ),
                });
            }
            JobState::Missing => {
                wait = true;
                reasons.push(Reason {
                    kind: "missing",
                    item: item.clone(),
                    job: Some(key.clone()),
                    message: format!("{label} has no result yet (run `stagegate run`)"),
                });
            }
        }
        jobs.push(JobVerdict {
            key: key.clone(),
            label,
            kind: job.kind,
            role: job.role,
            candidates: job.candidates.clone(),
            verdict,
            state,
            baseline_key,
            baseline,
            reason: why,
            excerpt: rec.map(|r| r.excerpt.clone()).filter(|e| !e.is_empty()),
            log: rec.and_then(|r| r.log.clone()),
        });
    }
    for id in &pending.untested {
        wait = true;
        reasons.push(Reason {
            kind: "untested",
            item: Some(id.to_string()),
            job: None,
            message: format!("no test uses {id}, and the gate into {} requires tests; add one under tests/ that uses it", plan.to.name),
        });
    }
    for c in &pending.candidates {
        if let Some(h) = holds.get(&c.item) {
            wait = true;
            reasons.push(Reason {
                kind: "held",
                item: Some(c.item.to_string()),
                job: None,
                message: format!(
                    "{} is held on {} by {} since {}: {} (release with `stagegate release {}`)",
                    c.item, h.stage, h.by, h.at, h.reason, c.item
                ),
            });
        }
    }
    let mut soak_left = 0;
    if let Some(soak) = plan.gate.soak {
        let age = now.saturating_sub(pending.time).max(0) as u64;
        if age < soak.as_secs() {
            soak_left = soak.as_secs() - age;
            wait = true;
            reasons.push(Reason {
                kind: "soak",
                item: None,
                job: None,
                message: format!(
                    "on {} for {} of the {} soak; {} left",
                    plan.from.name,
                    humantime::format_duration(std::time::Duration::from_secs(age)),
                    humantime::format_duration(soak),
                    humantime::format_duration(std::time::Duration::from_secs(soak_left))
                ),
            });
        }
    }
    let decision = if reject {
        Decision::Reject
    } else if wait {
        Decision::Wait
    } else {
        Decision::Promote
    };
    Evaluation {
        commit: pending.commit,
        subject: pending.subject.clone(),
        decision,
        reasons,
        jobs,
        soak_left,
    }
}

/// The newest pending commit the gate promotes, if any.
pub fn pick(evals: &[Evaluation]) -> Option<&Evaluation> {
    evals.iter().find(|e| e.decision == Decision::Promote)
}

/// Counts of verdicts among an evaluation's jobs, for trailers and summaries.
pub fn counts(e: &Evaluation) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for j in &e.jobs {
        *out.entry(j.verdict.map_or("missing", Verdict::as_str))
            .or_default() += 1;
    }
    out
}

pub fn counts_line(e: &Evaluation) -> String {
    let c = counts(e);
    if c.is_empty() {
        return "no jobs".into();
    }
    c.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ser_oid<S: serde::Serializer>(id: &ObjectId, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(id)
}
