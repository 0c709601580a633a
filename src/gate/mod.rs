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
use crate::ledger::{LedgerView, ResultRecord, Verdict};
use crate::manifest::FlakyPolicy;
use crate::manifest::ItemId;
use crate::overrides::{ApproveRecord, FreezeRecord, OverrideRef, QuarantineRecord, WaiveRecord};
use crate::plan::{CandidateId, Job, JobKind, MovePlan, Role, describe};
use crate::records::HoldRecord;

/// The flake history of a job key lives with the ledger, which computes it from the attempts'
/// file names; the gate reads it.
pub use crate::ledger::History;

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
    /// Failed where it (or its baseline) passed and failed before, and the gate blocks it.
    Heisenbug,
    /// A heisenbug the gate's policy waits on: it needs more tries.
    HeisenbugWaiting,
    /// A heisenbug the gate's policy allows.
    HeisenbugAllowed,
    /// Did not pass, and its test is quarantined: it does not gate.
    Quarantined,
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
            JobState::Heisenbug => "heisenbug",
            JobState::HeisenbugWaiting => "heisenbug_waiting",
            JobState::HeisenbugAllowed => "heisenbug_allowed",
            JobState::Quarantined => "quarantined",
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
    /// Every attempt of this job key, counted.
    pub history: History,
    /// Every attempt of the baseline's key, counted.
    pub baseline_history: Option<History>,
}

/// Why a candidate is not promoted (or a note on why it is).
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    /// missing, error, regression, build-failed, fails-like-baseline, baseline-missing,
    /// held, soak, untested, missing-artifact, in-use, invalid, invalid-dependency,
    /// rejected, approval, waived, bisect, heisenbug, quarantined, frozen
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
    /// The test each failed key ran (as its result records), for quarantines.
    pub tests: BTreeMap<String, String>,
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
    pub rejected: BTreeMap<String, Rejection>,
    /// Waivers in force, by job key.
    pub waived: BTreeMap<String, WaiveRecord>,
    /// Approvals in force into T, by content key (a pipeline change, a reviewed candidate).
    pub approved: BTreeMap<String, ApproveRecord>,
    /// Freezes of T in force: nothing moves into T while there is one.
    pub frozen: Vec<FreezeRecord>,
    /// Quarantines in force for the gate into T, by test name.
    pub quarantined: BTreeMap<String, QuarantineRecord>,
    /// When each content key was first seen pending into T (Unix seconds).
    pub seen: BTreeMap<String, i64>,
    /// What the newest bisect of a content key found (one line), by content key.
    pub bisected: BTreeMap<String, String>,
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
}

/// The newest result and the history of every job of `plan`: for each planned key, one
/// listing of its attempts, the records of the newest and at most two more (see
/// [`LedgerView::latest_with_history`]), nothing else of the ledger.
pub fn latest(plan: &MovePlan, results: &LedgerView) -> Result<BTreeMap<String, Recorded>> {
    let mut out = BTreeMap::new();
    for key in plan.jobs.keys() {
        if let Some((latest, history)) = results.latest_with_history(key)? {
            out.insert(key.clone(), Recorded { latest, history });
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
            overrides: Vec::new(),
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

/// What one job's results mean to the gate (a pure function: the table test below).
pub struct JobFacts<'a> {
    pub verdict: Option<Verdict>,
    pub history: &'a History,
    pub baseline: Option<Verdict>,
    pub baseline_history: Option<&'a History>,
    pub waived: bool,
    pub quarantined: bool,
}

fn job_state(plan: &MovePlan, job: &Job, f: &JobFacts) -> JobState {
    let compared = plan.gate.baseline && job.baseline.is_some();
    let base = f.baseline_history.filter(|_| compared);
    let state = match f.verdict {
        Some(Verdict::Pass) => JobState::Passed,
        Some(Verdict::Flaky) => JobState::Flaky,
        Some(Verdict::Fail) if f.waived => JobState::Waived,
        // Passed and failed for the same key, or its baseline did: a heisenbug.
        Some(Verdict::Fail) if f.history.has_passed() || base.is_some_and(History::is_flaky) => {
            match plan.gate.flaky {
                FlakyPolicy::Block => JobState::Heisenbug,
                FlakyPolicy::Allow => JobState::HeisenbugAllowed,
                FlakyPolicy::Wait { tries } if f.history.tries_since_first_fail < tries => {
                    JobState::HeisenbugWaiting
                }
                FlakyPolicy::Wait { .. } => JobState::Heisenbug,
            }
        }
        // A test that never passed on T does not block.
        Some(Verdict::Fail) if base.is_some_and(History::never_passed) => {
            JobState::FailsLikeBaseline
        }
        Some(Verdict::Fail) => match (compared, f.baseline) {
            (true, Some(Verdict::Fail)) => JobState::FailsLikeBaseline,
            (true, None | Some(Verdict::Error | Verdict::Skipped)) => {
                JobState::FailedBaselineMissing
            }
            _ => JobState::Regression,
        },
        Some(Verdict::Error | Verdict::Skipped) => JobState::Error,
        None => JobState::Missing,
    };
    match state {
        JobState::Passed | JobState::Flaky | JobState::Waived => state,
        _ if f.quarantined && job.kind == JobKind::Test => JobState::Quarantined,
        _ => state,
    }
}

fn evaluate_group(
    plan: &MovePlan,
    members: &[CandidateId],
    required: &[String],
    blocked: &[crate::plan::Blocked],
    latest: &BTreeMap<String, Recorded>,
    facts: &Facts,
    now: i64,
) -> GroupEval {
    let mut reasons = Vec::new();
    let mut jobs = Vec::new();
    let mut used: Vec<OverrideRef> = Vec::new();
    let (mut reject, mut wait, mut held) = (false, false, false);
    let one = members.first().map(|m| m.to_string());

    // A rejection recorded for this very content stands until a waiver covers it; its
    // jobs are shown as they stand, nothing is judged again.
    let mut sticky = Vec::new();
    for m in members {
        let Some(c) = plan.candidate(m) else { continue };
        if let Some(r) = facts.rejected.get(&c.content) {
            let quarantined = |k: &String| {
                r.tests
                    .get(k)
                    .and_then(|t| facts.quarantined.get(t))
                    .map(QuarantineRecord::to_ref)
            };
            let excused = |k: &String| {
                facts
                    .waived
                    .get(k)
                    .map(WaiveRecord::to_ref)
                    .or_else(|| quarantined(k))
            };
            if !r.failed.is_empty() && r.failed.iter().all(|k| excused(k).is_some()) {
                // Lifted by waivers or quarantines: they are why it is judged again.
                used.extend(r.failed.iter().filter_map(excused));
                continue;
            }
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
        let recorded = latest.get(key.as_str());
        let rec = recorded.map(|r| &r.latest);
        let verdict = rec.map(|r| r.verdict);
        let history = recorded.map(|r| r.history.clone()).unwrap_or_default();
        let baseline_key = job.baseline.clone();
        let base = baseline_key.as_deref().and_then(|b| latest.get(b));
        let baseline = base.map(|r| r.latest.verdict);
        let baseline_history = base.map(|r| r.history.clone());
        let label = describe(job);
        let item = job
            .candidates
            .first()
            .map(|c| c.to_string())
            .or_else(|| one.clone());
        let quarantine = (job.kind == JobKind::Test)
            .then(|| facts.quarantined.get(&job.name))
            .flatten();
        let state = job_state(
            plan,
            job,
            &JobFacts {
                verdict,
                history: &history,
                baseline,
                baseline_history: baseline_history.as_ref(),
                waived: facts.waived.contains_key(key),
                quarantined: quarantine.is_some(),
            },
        );
        let why = rec.and_then(|r| r.reason.clone());
        let flake = if history.has_passed() {
            format!("it passed before for the same key: {}", history.line())
        } else {
            format!(
                "its baseline on {} is flaky: {}; this job: {}",
                plan.to.name,
                baseline_history
                    .as_ref()
                    .map(History::line)
                    .unwrap_or_default(),
                history.line()
            )
        };
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
            JobState::Waived => {
                let w = &facts.waived[key];
                used.push(w.to_ref());
                push(
                    "waived",
                    format!(
                        "{label} fails; the failure is waived by {} ({}): {}",
                        w.author,
                        w.id(),
                        w.reason
                    ),
                )
            }
            JobState::Quarantined => {
                let q = quarantine.expect("quarantined jobs have a quarantine");
                used.push(q.to_ref());
                push(
                    "quarantined",
                    format!(
                        "{label} {}; tests/{} is quarantined by {} ({}): {}; it does not gate",
                        match verdict {
                            Some(Verdict::Fail) => "fails",
                            Some(_) => "could not run",
                            None => "has no result yet",
                        },
                        job.name,
                        q.author,
                        q.id,
                        q.reason
                    ),
                )
            }
            JobState::Heisenbug => {
                reject = true;
                push(
                    "heisenbug",
                    format!(
                        "{label} fails, and is flaky ({flake}); the gate blocks flaky failures"
                    ),
                );
            }
            JobState::HeisenbugWaiting => {
                wait = true;
                let tries = match plan.gate.flaky {
                    FlakyPolicy::Wait { tries } => tries,
                    _ => 0,
                };
                push(
                    "heisenbug",
                    format!(
                        "{label} fails, and is flaky ({flake}); the gate waits for {} more tr{} (each `stagegate run` tries it again)",
                        tries - history.tries_since_first_fail,
                        if tries - history.tries_since_first_fail == 1 {
                            "y"
                        } else {
                            "ies"
                        }
                    ),
                );
            }
            JobState::HeisenbugAllowed => push(
                "heisenbug",
                format!("{label} fails, and is flaky ({flake}); the gate allows flaky failures"),
            ),
            JobState::FailsLikeBaseline => push(
                "fails-like-baseline",
                if baseline != Some(Verdict::Fail)
                    && baseline_history.as_ref().is_some_and(History::never_passed)
                {
                    format!(
                        "{label} fails, and its baseline never passed on {} ({}): not a regression",
                        plan.to.name,
                        baseline_history
                            .as_ref()
                            .map(History::line)
                            .unwrap_or_default()
                    )
                } else {
                    format!(
                        "{label} fails, and so does its baseline on {}: not a regression",
                        plan.to.name
                    )
                },
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
            history,
            baseline_history,
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
            overrides: Vec::new(),
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
        if *m == CandidateId::Pipeline
            && let Some(a) = facts.approved.get(&c.content)
        {
            used.push(a.to_ref());
        } else if *m == CandidateId::Pipeline {
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
    for f in &facts.frozen {
        held = true;
        used.push(f.to_ref());
        reasons.push(Reason {
            kind: "frozen",
            item: one.clone(),
            job: None,
            message: format!(
                "{} is frozen by {} since {}: {}{} (lift with `stagegate unfreeze {}`)",
                plan.to.name,
                f.author,
                f.created,
                f.reason,
                f.expires
                    .as_ref()
                    .map(|e| format!("; until {e}"))
                    .unwrap_or_default(),
                plan.to.name
            ),
        });
    }
    used.sort();
    used.dedup();
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
        overrides: used,
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
