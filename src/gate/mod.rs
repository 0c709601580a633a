//! Gates: from a move's plan, its recorded results and the recorded facts about its
//! candidates (holds, rejections, waivers, approvals, first sightings), a decision per
//! candidate group.
//!
//! A group is promoted when every job its gate requires has an acceptable verdict, every
//! member has been pending for the soak time (counted from when it was first seen pending,
//! as recorded in the ledger — never from a commit date, which anyone can set), no member is
//! held, and a changed pipeline has an approval. A job that fails while its baseline (the
//! same test, all of T) passed is a regression and rejects the group; one whose baseline
//! fails too "fails like baseline" and does not block when the gate says `baseline: true`;
//! a waived failure does not block. A rejection is sticky: once recorded for a candidate's
//! content it stands, without running anything again, until that content changes or the
//! failures it names are waived. Missing results, errors and soak time mean wait. An
//! invalid candidate is its own group, `invalid`, and never moves. Groups never wait for
//! each other.
//!
//! This module decides; it writes nothing (that is `promote`) and prints nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::ledger::{LedgerView, ResultRecord, Verdict};
use crate::manifest::ItemId;
use crate::plan::{CandidateId, Job, JobKind, MovePlan, Role, describe};
use crate::records::HoldRecord;

/// What the gate says of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Promote,
    Wait,
    Held,
    Rejected,
    Invalid,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Promote => "promote",
            State::Wait => "wait",
            State::Held => "held",
            State::Rejected => "rejected",
            State::Invalid => "invalid",
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
    /// Failed, and someone waived that result.
    Waived,
    Error,
    Missing,
}

/// The documented lowercase name, as JSON output has it: what decision records carry.
impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Passed => "passed",
            JobState::Flaky => "flaky",
            JobState::FailsLikeBaseline => "fails_like_baseline",
            JobState::Regression => "regression",
            JobState::FailedBaselineMissing => "failed_baseline_missing",
            JobState::Waived => "waived",
            JobState::Error => "error",
            JobState::Missing => "missing",
        })
    }
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

/// Why a candidate is not promoted (or a note on why it is).
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// missing, error, regression, build-failed, fails-like-baseline, baseline-missing,
    /// held, soak, untested, missing-artifact, in-use, invalid, invalid-dependency,
    /// rejected, approval, waived, bisect
    pub kind: &'static str,
    pub item: Option<String>,
    pub job: Option<String>,
    pub message: String,
}

/// A recorded rejection: the failing jobs it rests on.
#[derive(Debug, Clone, Default)]
pub struct Rejection {
    pub failed: Vec<String>,
    pub reasons: Vec<String>,
}

/// What is recorded about candidates, besides results: the facts the gate weighs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Holds in force on S.
    pub holds: Holds,
    /// Rejections into T, by content key.
    pub rejected: BTreeMap<String, Rejection>,
    /// Waived job keys.
    pub waived: BTreeSet<String>,
    /// Approved content keys (a pipeline change, a reviewed candidate).
    pub approved: BTreeSet<String>,
    /// When each content key was first seen pending into T (Unix seconds).
    pub seen: BTreeMap<String, i64>,
    /// What the newest bisect of a content key found (one line), by content key.
    pub bisected: BTreeMap<String, String>,
}

/// The gate's verdict on one group of candidates (most groups have one member).
#[derive(Debug, Clone, Serialize)]
pub struct GroupEval {
    pub members: Vec<CandidateId>,
    pub state: State,
    pub reasons: Vec<Reason>,
    pub jobs: Vec<JobVerdict>,
    /// Seconds left before the soak time has passed (0 when it has).
    pub soak_left: u64,
    /// The state comes from a rejection recorded before (nothing was judged again).
    pub sticky: bool,
}

/// The gate's verdict on every candidate of a move.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// One per group of the plan (same order), then one per invalid candidate.
    pub groups: Vec<GroupEval>,
}

impl Evaluation {
    pub fn of(&self, id: &CandidateId) -> Option<&GroupEval> {
        self.groups.iter().find(|g| g.members.contains(id))
    }

    /// Indexes of the groups the gate promotes, in plan order.
    pub fn promotable(&self) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|i| self.groups[*i].state == State::Promote)
            .collect()
    }
}

/// Holds in force on a stage, by candidate.
pub type Holds = BTreeMap<CandidateId, HoldRecord>;

/// The latest result of every job of `plan`.
pub fn latest(plan: &MovePlan, results: &LedgerView) -> Result<BTreeMap<String, ResultRecord>> {
    let mut out = BTreeMap::new();
    for key in plan.jobs.keys() {
        if let Some(r) = results.latest(key)? {
            out.insert(key.clone(), r);
        }
    }
    Ok(out)
}

/// Evaluate every candidate of `plan`.
pub fn evaluate(
    plan: &MovePlan,
    results: &LedgerView,
    facts: &Facts,
    now: i64,
) -> Result<Evaluation> {
    let latest = latest(plan, results)?;
    let mut groups: Vec<GroupEval> = plan
        .groups
        .iter()
        .map(|g| {
            let mut e = evaluate_group(
                plan,
                &g.members,
                &g.required,
                &g.blocked,
                &latest,
                facts,
                now,
            );
            note_bisects(&mut e, plan, facts);
            e
        })
        .collect();
    for c in plan.candidates.iter().filter(|c| c.is_invalid()) {
        groups.push(GroupEval {
            members: vec![c.id.clone()],
            state: State::Invalid,
            reasons: c
                .invalid
                .iter()
                .map(|d| Reason {
                    kind: "invalid",
                    item: Some(c.id.to_string()),
                    job: None,
                    message: format!(
                        "{}:{}:{}: {}{}",
                        d.file,
                        d.line,
                        d.column,
                        d.message,
                        d.help
                            .as_ref()
                            .map(|h| format!(" (help: {h})"))
                            .unwrap_or_default()
                    ),
                })
                .collect(),
            jobs: Vec::new(),
            soak_left: 0,
            sticky: false,
        });
    }
    Ok(Evaluation { groups })
}

/// A rejected group names what a bisect of its members found: the first bad upstream
/// commit, which `why`, decisions and pull requests then show with the rejection.
fn note_bisects(e: &mut GroupEval, plan: &MovePlan, facts: &Facts) {
    if e.state != State::Rejected {
        return;
    }
    for m in &e.members {
        if let Some(found) = plan
            .candidate(m)
            .and_then(|c| facts.bisected.get(&c.content))
        {
            e.reasons.push(Reason {
                kind: "bisect",
                item: Some(m.to_string()),
                job: None,
                message: found.clone(),
            });
        }
    }
}

/// Judge the combination of several groups: the jobs `required` (planned for their union).
pub fn evaluate_combination(
    plan: &MovePlan,
    members: &[CandidateId],
    required: &[String],
    blocked: &[crate::plan::Blocked],
    results: &LedgerView,
    facts: &Facts,
    now: i64,
) -> Result<GroupEval> {
    let latest = latest(plan, results)?;
    Ok(evaluate_group(
        plan, members, required, blocked, &latest, facts, now,
    ))
}

fn job_state(
    plan: &MovePlan,
    job: &Job,
    verdict: Option<Verdict>,
    baseline: Option<Verdict>,
    waived: bool,
) -> JobState {
    match verdict {
        Some(Verdict::Pass) => JobState::Passed,
        Some(Verdict::Flaky) => JobState::Flaky,
        Some(Verdict::Fail) if waived => JobState::Waived,
        Some(Verdict::Fail) => match (plan.gate.baseline, &job.baseline, baseline) {
            (true, Some(_), Some(Verdict::Fail)) => JobState::FailsLikeBaseline,
            (true, Some(_), None | Some(Verdict::Error | Verdict::Skipped)) => {
                JobState::FailedBaselineMissing
            }
            _ => JobState::Regression,
        },
        Some(Verdict::Error | Verdict::Skipped) => JobState::Error,
        None => JobState::Missing,
    }
}

fn evaluate_group(
    plan: &MovePlan,
    members: &[CandidateId],
    required: &[String],
    blocked: &[crate::plan::Blocked],
    latest: &BTreeMap<String, ResultRecord>,
    facts: &Facts,
    now: i64,
) -> GroupEval {
    let mut reasons = Vec::new();
    let mut jobs = Vec::new();
    let (mut reject, mut wait, mut held) = (false, false, false);
    let one = members.first().map(|m| m.to_string());

    // A rejection recorded for this very content stands until a waiver covers it; its
    // jobs are shown as they stand, nothing is judged again.
    let mut sticky = Vec::new();
    for m in members {
        let Some(c) = plan.candidate(m) else { continue };
        if let Some(r) = facts.rejected.get(&c.content)
            && (r.failed.is_empty() || !r.failed.iter().all(|k| facts.waived.contains(k)))
        {
            let keys: Vec<&str> = r.failed.iter().map(|k| &k[..k.len().min(12)]).collect();
            sticky.push(Reason {
                kind: "rejected",
                item: Some(m.to_string()),
                job: None,
                message: format!(
                    "{m} at this content was rejected for {}{}; it stays on {} until a new version arrives{}",
                    plan.to.name,
                    if r.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", r.reasons.join("; "))
                    },
                    plan.from.name,
                    if keys.is_empty() {
                        String::new()
                    } else {
                        format!(" or `stagegate waive KEY --reason …` waives {}", keys.join(", "))
                    }
                ),
            });
        }
    }
    for key in required {
        let job: &Job = &plan.jobs[key];
        let rec = latest.get(key.as_str());
        let verdict = rec.map(|r| r.verdict);
        let baseline_key = job.baseline.clone();
        let baseline = baseline_key
            .as_deref()
            .and_then(|b| latest.get(b))
            .map(|r| r.verdict);
        let label = describe(job);
        let item = job
            .candidates
            .first()
            .map(|c| c.to_string())
            .or_else(|| one.clone());
        let state = job_state(plan, job, verdict, baseline, facts.waived.contains(key));
        let why = rec.and_then(|r| r.reason.clone());
        let mut push = |kind: &'static str, message: String| {
            reasons.push(Reason {
                kind,
                item: item.clone(),
                job: Some(key.clone()),
                message,
            })
        };
        match state {
            JobState::Passed | JobState::Flaky => {}
            JobState::Waived => push("waived", format!("{label} fails; the failure is waived")),
            JobState::FailsLikeBaseline => push(
                "fails-like-baseline",
                format!(
                    "{label} fails, and so does its baseline on {}: not a regression",
                    plan.to.name
                ),
            ),
            JobState::FailedBaselineMissing => {
                wait = true;
                push(
                    "baseline-missing",
                    format!(
                        "{label} fails; its baseline on {} has no result yet to compare with (run `stagegate run`)",
                        plan.to.name
                    ),
                );
            }
            JobState::Regression => {
                reject = true;
                if job.kind == JobKind::Build {
                    push(
                        "build-failed",
                        format!(
                            "{label} failed{}",
                            why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
                        ),
                    );
                } else if matches!(baseline, Some(Verdict::Pass | Verdict::Flaky)) {
                    push(
                        "regression",
                        format!("{label} fails where {} passes: a regression", plan.to.name),
                    );
                } else {
                    push(
                        "regression",
                        format!(
                            "{label} fails{}",
                            why.as_ref().map(|w| format!(" ({w})")).unwrap_or_default()
                        ),
                    );
                }
            }
            JobState::Error => {
                wait = true;
                push(
                    "error",
                    format!(
                        "{label} could not run{}; retry with `stagegate run --failed`",
                        why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
                    ),
                );
            }
            JobState::Missing => {
                wait = true;
                push(
                    "missing",
                    format!("{label} has no result yet (run `stagegate run`)"),
                );
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
    if !sticky.is_empty() {
        return GroupEval {
            members: members.to_vec(),
            state: State::Rejected,
            reasons: sticky,
            jobs,
            soak_left: 0,
            sticky: true,
        };
    }

    for b in blocked {
        wait = true;
        reasons.push(Reason {
            kind: b.kind,
            item: b
                .candidate
                .as_ref()
                .map(|c| c.to_string())
                .or_else(|| one.clone()),
            job: None,
            message: b.message.clone(),
        });
    }
    let mut soak_left = 0;
    for m in members {
        let Some(c) = plan.candidate(m) else { continue };
        if let Some(h) = facts.holds.get(m) {
            held = true;
            reasons.push(Reason {
                kind: "held",
                item: Some(m.to_string()),
                job: None,
                message: format!(
                    "{m} is held on {} by {} since {}: {} (release with `stagegate release {m}`)",
                    h.stage, h.by, h.at, h.reason
                ),
            });
        }
        if *m == CandidateId::Pipeline && !facts.approved.contains(&c.content) {
            wait = true;
            reasons.push(Reason {
                kind: "approval",
                item: Some(m.to_string()),
                job: None,
                message: format!(
                    "a change of {m} moves into {} only with an approval: `stagegate approve {m} --stage {} --reason …`",
                    plan.to.name, plan.to.name
                ),
            });
        }
        if let Some(soak) = plan.gate.soak {
            let (age, note) = match facts.seen.get(&c.content) {
                Some(t) => (now.saturating_sub(*t).max(0) as u64, ""),
                None => (0, " (first seen now)"),
            };
            if age < soak.as_secs() {
                let left = soak.as_secs() - age;
                soak_left = soak_left.max(left);
                wait = true;
                reasons.push(Reason {
                    kind: "soak",
                    item: Some(m.to_string()),
                    job: None,
                    message: format!(
                        "{m} pending on {} for {}{note} of the {} soak; {} left",
                        plan.from.name,
                        humantime::format_duration(std::time::Duration::from_secs(age)),
                        humantime::format_duration(soak),
                        humantime::format_duration(std::time::Duration::from_secs(left))
                    ),
                });
            }
        }
    }
    let state = if reject {
        State::Rejected
    } else if held {
        State::Held
    } else if wait {
        State::Wait
    } else {
        State::Promote
    };
    GroupEval {
        members: members.to_vec(),
        state,
        reasons,
        jobs,
        soak_left,
        sticky: false,
    }
}

/// Counts of verdicts among a group's jobs, for trailers and summaries.
pub fn counts(jobs: &[JobVerdict]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for j in jobs {
        *out.entry(j.verdict.map_or("missing", Verdict::as_str))
            .or_default() += 1;
    }
    out
}

pub fn counts_line(jobs: &[JobVerdict]) -> String {
    let c = counts(jobs);
    if c.is_empty() {
        return "no jobs".into();
    }
    c.iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
