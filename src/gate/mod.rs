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
//! History counts, not only the newest result ([`History`]): a job that fails where it (or
//! its baseline) has passed and failed before is a heisenbug, weighed by the gate's `flaky`
//! policy (block, wait for more tries, allow); a baseline that never passed makes a failure
//! "fails like baseline". A quarantined test runs and records but does not gate; a frozen
//! target stage holds everything. Every override that changed a decision is named in it.
//!
//! This module decides; it writes nothing (that is `promote`) and prints nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::keys::{ContentKey, JobKey};
use crate::ledger::{LedgerView, ResultRecord, Verdict};
use crate::manifest::ItemId;
use crate::overrides::{ApproveRecord, FreezeRecord, OverrideRef, QuarantineRecord, WaiveRecord};
use crate::plan::{CandidateId, JobKind, MovePlan, Role};
use crate::records::HoldRecord;

mod group;
mod job;
mod reason;
#[cfg(test)]
mod tests;

pub use job::JobFacts;
pub use reason::ReasonKind;

/// The flake history of a job key lives with the ledger, which computes it from the attempts'
/// file names; the gate reads it.
pub use crate::ledger::History;

/// What the gate says of a candidate. Ordered by weight: a group's state is the greatest
/// its findings ask for, so the declaration order is the contract (rejected outweighs held,
/// held outweighs wait).
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
    /// Failed where it (or its baseline) passed and failed before, and the gate blocks it.
    Heisenbug,
    /// A heisenbug the gate's policy waits on: it needs more tries.
    HeisenbugWaiting,
    /// A heisenbug the gate's policy allows.
    HeisenbugAllowed,
    /// Did not pass, and its test is quarantined: it does not gate.
    Quarantined,
    /// Could not run; the next run tries it again (its error budget has retries left).
    Error,
    /// Could not run; the next retry waits for its backoff to pass.
    ErrorWaiting,
    /// Could not run, as often as the gate's error budget allows: it waits for a
    /// `stagegate recheck` once the environment is fixed.
    Errored,
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
            JobState::Heisenbug => "heisenbug",
            JobState::HeisenbugWaiting => "heisenbug_waiting",
            JobState::HeisenbugAllowed => "heisenbug_allowed",
            JobState::Quarantined => "quarantined",
            JobState::Error => "error",
            JobState::ErrorWaiting => "error_waiting",
            JobState::Errored => "errored",
            JobState::Missing => "missing",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobVerdict {
    pub key: JobKey,
    pub label: String,
    pub kind: JobKind,
    pub role: Role,
    pub candidates: Vec<ItemId>,
    pub verdict: Option<Verdict>,
    pub state: JobState,
    pub baseline_key: Option<JobKey>,
    pub baseline: Option<Verdict>,
    pub reason: Option<String>,
    pub excerpt: Option<String>,
    pub log: Option<String>,
    /// Every attempt of this job key, counted.
    pub history: History,
    /// Every attempt of the baseline's key, counted.
    pub baseline_history: Option<History>,
    /// The host labels a runner must offer to run it (`needs:`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
}

/// Why a candidate is not promoted (or a note on why it is).
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub kind: ReasonKind,
    pub item: Option<String>,
    /// The key of the job it speaks of.
    pub job: Option<JobKey>,
    pub message: String,
}

/// A reason, and the state it asks of its group: the group's state is the greatest any of
/// its findings asks for.
#[derive(Debug, Clone)]
struct Finding {
    state: State,
    reason: Reason,
}

/// A recorded rejection: the failing jobs it rests on.
#[derive(Debug, Clone, Default)]
pub struct Rejection {
    pub failed: Vec<JobKey>,
    pub reasons: Vec<String>,
    /// The test each failed key ran (as its result records), for quarantines.
    pub tests: BTreeMap<JobKey, String>,
    /// The candidates it judged together, each with its content key (none in records
    /// written before 0.2): it stands only while the group holds exactly these.
    pub judged: Vec<(String, Option<ContentKey>)>,
    /// The git object of the record (what a recheck names when it lifts it).
    pub record: String,
    /// Which decision recorded it: S's and T's heads, when and by whom (empty in a
    /// record that does not say). A promotion made in the same run did not rest on it.
    pub by: DecisionStamp,
}

/// What tells one recorded decision from another made on other heads or at another time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionStamp {
    pub tested: String,
    pub into: String,
    pub decided_at: String,
    pub decided_by: String,
}

/// What is recorded about candidates, besides results: the facts the gate weighs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Holds in force on S.
    pub holds: Holds,
    /// Rejections into T, by content key.
    pub rejected: BTreeMap<ContentKey, Rejection>,
    /// Waivers in force, by job key.
    pub waived: BTreeMap<JobKey, WaiveRecord>,
    /// Approvals in force into T, by content key (a pipeline change, a reviewed candidate).
    pub approved: BTreeMap<ContentKey, ApproveRecord>,
    /// Freezes of T in force: nothing moves into T while there is one.
    pub frozen: Vec<FreezeRecord>,
    /// Quarantines in force for the gate into T, by test name.
    pub quarantined: BTreeMap<String, QuarantineRecord>,
    /// When each content key was first seen pending into T (Unix seconds).
    pub seen: BTreeMap<ContentKey, i64>,
    /// What the newest bisect of a content key found (one line), by content key.
    pub bisected: BTreeMap<ContentKey, String>,
    /// Under `trust:`: holds on S whose commit no one entitled to hold signed (not in
    /// `holds`), and holds a commit no one entitled to release removed (in `holds`).
    pub holds_not_counted: Vec<crate::trust::NotCounted>,
    pub holds_restored: Vec<crate::trust::Deleted>,
    /// Job keys someone rechecked (`stagegate recheck`): the newest attempt each had then,
    /// and the recheck. Attempts up to that one no longer count; errors are counted anew.
    pub rechecked: BTreeMap<JobKey, Rechecked>,
    /// Rejections a recheck lifted, by content key: judged again, naming the recheck.
    pub lifted: BTreeMap<ContentKey, OverrideRef>,
    /// The runners' heartbeats (`crate::runners`): not evidence, only why a job that needs
    /// host labels waits ([`ReasonKind::Unserved`]).
    pub runners: Vec<crate::runners::Heartbeat>,
}

/// A job key's mark from a recheck.
#[derive(Debug, Clone)]
pub struct Rechecked {
    /// The newest attempt when it was rechecked (0: none).
    pub attempt: u32,
    pub by: OverrideRef,
}

impl Facts {
    /// The overrides in force for this move: freezes of T, quarantines for the gate into T,
    /// waivers of planned jobs and approvals of pending content, sorted by kind and id.
    pub fn overrides(&self) -> Vec<OverrideRef> {
        let mut out: Vec<OverrideRef> = self
            .frozen
            .iter()
            .map(FreezeRecord::to_ref)
            .chain(self.quarantined.values().map(QuarantineRecord::to_ref))
            .chain(self.waived.values().map(WaiveRecord::to_ref))
            .chain(self.approved.values().map(ApproveRecord::to_ref))
            .chain(self.lifted.values().cloned())
            .collect();
        out.sort_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
        out.dedup();
        out
    }
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
    /// The overrides that changed this decision: which, by whom, why.
    pub overrides: Vec<OverrideRef>,
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

/// The newest result of a job, and the history of all its attempts.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub latest: ResultRecord,
    pub history: History,
    /// When the newest attempt is an error: the attempt numbers of the errors in a row
    /// up to it, newest first (what the error budget counts).
    pub errors: Vec<u32>,
}

/// The newest result and the history of every job of `plan`: for each planned key, one
/// listing of its attempts, the records of the newest and at most two more (see
/// [`LedgerView::latest_with_history`]), nothing else of the ledger.
pub fn latest(plan: &MovePlan, results: &LedgerView) -> Result<BTreeMap<JobKey, Recorded>> {
    let mut out = BTreeMap::new();
    for key in plan.jobs.keys() {
        if let Some((latest, history)) = results.latest_with_history(key)? {
            let errors = if latest.verdict.is_final() {
                Vec::new()
            } else {
                results.trailing_errors(key)?
            };
            out.insert(
                key.clone(),
                Recorded {
                    latest,
                    history,
                    errors,
                },
            );
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
    Ok(evaluate_recorded(plan, &latest(plan, results)?, facts, now))
}

/// Evaluate every candidate of `plan` from its jobs' recorded results ([`latest`]): the
/// gate itself, a pure function of what it is given (no ledger, no clock).
pub fn evaluate_recorded(
    plan: &MovePlan,
    latest: &BTreeMap<JobKey, Recorded>,
    facts: &Facts,
    now: i64,
) -> Evaluation {
    let mut groups: Vec<GroupEval> = plan
        .groups
        .iter()
        .map(|g| {
            let mut e = group::evaluate_group(
                plan,
                &g.members,
                &g.required,
                &g.blocked,
                latest,
                facts,
                now,
            );
            group::note_bisects(&mut e, plan, facts);
            e
        })
        .collect();
    groups.extend(
        plan.candidates
            .iter()
            .filter(|c| c.is_invalid())
            .map(group::invalid),
    );
    Evaluation { groups }
}

/// Judge the combination of several groups: the jobs `required` (planned for their union).
pub fn evaluate_combination(
    plan: &MovePlan,
    members: &[CandidateId],
    required: &[JobKey],
    blocked: &[crate::plan::Blocked],
    results: &LedgerView,
    facts: &Facts,
    now: i64,
) -> Result<GroupEval> {
    let latest = latest(plan, results)?;
    Ok(group::evaluate_group(
        plan, members, required, blocked, &latest, facts, now,
    ))
}

/// Where an errored job stands with the gate's error budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// The next run tries it again (the `n`-th error in a row of `of` allowed).
    Due { n: u32, of: u32 },
    /// The next retry is due at this time (Unix seconds).
    Until { n: u32, of: u32, at: i64 },
    /// Errored `n` times in a row: it waits for a recheck.
    Spent { n: u32 },
}

/// The error budget of a job whose newest `errors` attempts (newest first) ended in error,
/// the newest finishing at `finished` (RFC 3339): only attempts after `mark` (the newest
/// when it was last rechecked) count. A pure function of what it is given and `now`.
pub fn error_budget(
    policy: &crate::manifest::ErrorPolicy,
    errors: &[u32],
    mark: u32,
    finished: &str,
    now: i64,
) -> Budget {
    let n = errors.iter().filter(|a| **a > mark).count() as u32;
    let of = policy.retries + 1;
    if n > policy.retries {
        return Budget::Spent { n };
    }
    let at = humantime::parse_rfc3339(finished)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64 + policy.delay(n).as_secs() as i64);
    match at {
        Some(at) if n > 0 && !policy.delay(n).is_zero() && at > now => Budget::Until { n, of, at },
        _ => Budget::Due { n: n.max(1), of },
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
