//! The job phase of the gate: each required job's verdict, weighed against its baseline, its
//! history, waivers and quarantines, and the reason it gives with the state that asks for.

use std::collections::BTreeMap;

use crate::advice::Advice;
use crate::keys::JobKey;
use crate::ledger::Verdict;
use crate::manifest::FlakyPolicy;
use crate::overrides::{OverrideRef, QuarantineRecord, WaiveRecord};
use crate::plan::{Job, JobKind, MovePlan, describe};

use super::{Finding, History, JobState, JobVerdict, Reason, ReasonKind, Recorded, State};

/// What one job's results mean to the gate (a pure function: see the table tests).
pub struct JobFacts<'a> {
    pub verdict: Option<Verdict>,
    pub history: &'a History,
    pub baseline: Option<Verdict>,
    pub baseline_history: Option<&'a History>,
    pub waived: bool,
    pub quarantined: bool,
}

pub(super) fn job_state(plan: &MovePlan, job: &Job, f: &JobFacts) -> JobState {
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

/// One required job, judged.
pub(super) struct Judged {
    pub verdict: JobVerdict,
    /// The reason it gives, if any (a passing job gives none).
    pub finding: Option<Finding>,
    /// The waiver or quarantine that changed its verdict.
    pub used: Option<OverrideRef>,
}

/// Judge the job `key` of `plan` by its newest result and history, and its baseline's.
/// `fallback` names the item a job without candidates (a test change) speaks of.
pub(super) fn judge(
    plan: &MovePlan,
    key: &JobKey,
    latest: &BTreeMap<JobKey, Recorded>,
    facts: &super::Facts,
    fallback: Option<&str>,
    now: i64,
) -> Judged {
    // The planner only requires jobs it planned: a key missing here is a bug in the plan.
    let job: &Job = &plan.jobs[key];
    let recheck = facts.rechecked.get(key);
    // A rechecked job's attempts up to the recheck no longer decide: it waits for a new one.
    let recorded = latest
        .get(key)
        .filter(|r| recheck.is_none_or(|m| r.latest.attempt > m.attempt));
    let rechecking = recheck.filter(|_| recorded.is_none() && latest.contains_key(key));
    let rec = recorded.map(|r| &r.latest);
    let history = latest
        .get(key)
        .map(|r| r.history.clone())
        .unwrap_or_default();
    let base = job.baseline.as_ref().and_then(|b| latest.get(b));
    let baseline_history = base.map(|r| r.history.clone());
    let waiver = facts.waived.get(key);
    let quarantine = (job.kind == JobKind::Test)
        .then(|| facts.quarantined.get(&job.name))
        .flatten();
    let item = job
        .candidates
        .first()
        .map(|c| c.to_string())
        .or_else(|| fallback.map(String::from));
    let seen = Seen {
        plan,
        job,
        item: item.clone(),
        label: describe(job),
        verdict: rec.map(|r| r.verdict),
        why: rec.and_then(|r| r.reason.clone()),
        history: &history,
        baseline: base.map(|r| r.latest.verdict),
        baseline_history: baseline_history.as_ref(),
    };
    let mut state = job_state(
        plan,
        job,
        &JobFacts {
            verdict: seen.verdict,
            history: &history,
            baseline: seen.baseline,
            baseline_history: seen.baseline_history,
            waived: waiver.is_some(),
            quarantined: quarantine.is_some(),
        },
    );
    let mut budget = None;
    if let (JobState::Error, Some(r)) = (state, recorded) {
        let b = super::error_budget(
            &plan.gate.errors,
            &r.errors,
            recheck.map_or(0, |m| m.attempt),
            &r.latest.finished,
            now,
        );
        state = match b {
            super::Budget::Due { .. } => JobState::Error,
            super::Budget::Until { .. } => JobState::ErrorWaiting,
            super::Budget::Spent { .. } => JobState::Errored,
        };
        budget = Some(b);
    }
    let said = match (rechecking, state) {
        (Some(m), JobState::Missing) => Some((
            State::Wait,
            ReasonKind::Missing,
            format!(
                "{} was rechecked by {} ({}): {}; its new attempt runs at the next `{}`",
                seen.label,
                m.by.by,
                m.by.id,
                m.by.reason,
                Advice::Run
            ),
        )),
        (None, JobState::Missing) if !job.needs.is_empty() => {
            match crate::runners::unserved(&facts.runners, &job.needs, now) {
                Some(why) => Some((
                    State::Wait,
                    ReasonKind::Unserved,
                    format!(
                        "{} {why}; it runs when a runner offering {} runs `{}`",
                        seen.label,
                        if job.needs.len() == 1 { "it" } else { "them" },
                        Advice::run_with(&job.needs)
                    ),
                )),
                None => say(&seen, state, waiver, quarantine, budget),
            }
        }
        _ => say(&seen, state, waiver, quarantine, budget),
    };
    let finding = said.map(|(state, kind, message)| Finding {
        state,
        reason: Reason {
            kind,
            item,
            job: Some(key.clone()),
            message,
        },
    });
    let used = match state {
        JobState::Waived => waiver.map(WaiveRecord::to_ref),
        JobState::Quarantined => quarantine.map(QuarantineRecord::to_ref),
        _ => recheck.map(|m| m.by.clone()),
    };
    let verdict = JobVerdict {
        key: key.clone(),
        label: seen.label.clone(),
        kind: job.kind,
        role: job.role,
        candidates: job.candidates.clone(),
        verdict: seen.verdict,
        state,
        baseline_key: job.baseline.clone(),
        baseline: seen.baseline,
        reason: seen.why.clone(),
        excerpt: rec.map(|r| r.excerpt.clone()).filter(|e| !e.is_empty()),
        log: rec.and_then(|r| r.log.clone()),
        history: history.clone(),
        baseline_history: baseline_history.clone(),
        needs: job.needs.clone(),
    };
    Judged {
        verdict,
        finding,
        used,
    }
}

/// What the gate saw of one job, for its messages.
struct Seen<'a> {
    plan: &'a MovePlan,
    job: &'a Job,
    /// The item its reasons name.
    item: Option<String>,
    label: String,
    verdict: Option<Verdict>,
    /// The reason its newest result records.
    why: Option<String>,
    history: &'a History,
    baseline: Option<Verdict>,
    baseline_history: Option<&'a History>,
}

/// The reason a job in `state` gives, and the state it asks of its group: none for a pass;
/// a note (promote) for an excused failure; wait for what more runs can settle; rejected
/// for a failure that is this candidate's.
fn say(
    s: &Seen,
    state: JobState,
    waiver: Option<&WaiveRecord>,
    quarantine: Option<&QuarantineRecord>,
    budget: Option<super::Budget>,
) -> Option<(State, ReasonKind, String)> {
    let label = &s.label;
    let to = &s.plan.to.name;
    match state {
        JobState::Passed | JobState::Flaky => None,
        JobState::Waived => waiver.map(|w| {
            (
                State::Promote,
                ReasonKind::Waived,
                format!(
                    "{label} fails; the failure is waived by {} ({}): {}",
                    w.author,
                    w.id(),
                    w.reason
                ),
            )
        }),
        JobState::Quarantined => quarantine.map(|q| {
            (
                State::Promote,
                ReasonKind::Quarantined,
                format!(
                    "{label} {}; tests/{} is quarantined by {} ({}): {}; it does not gate",
                    match s.verdict {
                        Some(Verdict::Fail) => "fails",
                        Some(_) => "could not run",
                        None => "has no result yet",
                    },
                    s.job.name,
                    q.author,
                    q.id,
                    q.reason
                ),
            )
        }),
        JobState::Heisenbug | JobState::HeisenbugWaiting | JobState::HeisenbugAllowed => {
            Some(heisenbug(s, state))
        }
        JobState::FailsLikeBaseline => Some((
            State::Promote,
            ReasonKind::FailsLikeBaseline,
            fails_like_baseline(s),
        )),
        JobState::FailedBaselineMissing => Some((
            State::Wait,
            ReasonKind::BaselineMissing,
            format!(
                "{label} fails; its baseline on {to} has no result yet to compare with (run `{}`)",
                Advice::Run
            ),
        )),
        JobState::Regression => Some(regression(s)),
        JobState::Error | JobState::ErrorWaiting | JobState::Errored => Some(error(s, budget)),
        JobState::Missing if s.job.needs.is_empty() => Some((
            State::Wait,
            ReasonKind::Missing,
            format!("{label} has no result yet (run `{}`)", Advice::Run),
        )),
        JobState::Missing => Some((
            State::Wait,
            ReasonKind::Missing,
            format!(
                "{label} has no result yet (run `{}` on a host that has {})",
                Advice::run_with(&s.job.needs),
                if s.job.needs.len() == 1 { "it" } else { "them" }
            ),
        )),
    }
}

/// A job that could not run: it waits, never rejects — for the next run, for its backoff,
/// or (its error budget spent) for a person to fix the environment and recheck.
fn error(s: &Seen, budget: Option<super::Budget>) -> (State, ReasonKind, String) {
    let label = &s.label;
    let why = s.why.as_ref().map(|w| format!(": {w}")).unwrap_or_default();
    let item = s.item.as_deref().unwrap_or("ITEM");
    match budget {
        Some(super::Budget::Spent { n }) => (
            State::Wait,
            ReasonKind::Errored,
            format!(
                "{label} could not run{why}; it errored {n} time{} in a row; fix the environment, then `{}`",
                if n == 1 { "" } else { "s" },
                Advice::Recheck {
                    item: item.to_string(),
                    stage: Some(s.plan.to.name.clone())
                }
            ),
        ),
        Some(super::Budget::Until { n, of, at }) => (
            State::Wait,
            ReasonKind::Error,
            format!(
                "{label} could not run{why} (error {n} of {of}); it is tried again after {} (`{}` tries it now)",
                crate::records::rfc3339(at),
                Advice::RunFailed
            ),
        ),
        Some(super::Budget::Due { n, of }) => (
            State::Wait,
            ReasonKind::Error,
            format!(
                "{label} could not run{why} (error {n} of {of}); the next `{}` tries it again",
                Advice::Run
            ),
        ),
        None => (
            State::Wait,
            ReasonKind::Error,
            format!(
                "{label} could not run{why}; the next `{}` tries it again",
                Advice::Run
            ),
        ),
    }
}

/// A failing job with a flaky history: the gate's `flaky` policy blocks it (rejected),
/// waits for more tries, or allows it (a note).
fn heisenbug(s: &Seen, state: JobState) -> (State, ReasonKind, String) {
    let label = &s.label;
    let flake = if s.history.has_passed() {
        format!("it passed before for the same key: {}", s.history.line())
    } else {
        format!(
            "its baseline on {} is flaky: {}; this job: {}",
            s.plan.to.name,
            s.baseline_history.map(History::line).unwrap_or_default(),
            s.history.line()
        )
    };
    let (group, policy) = match state {
        JobState::HeisenbugWaiting => {
            let tries = match s.plan.gate.flaky {
                FlakyPolicy::Wait { tries } => tries,
                _ => 0,
            };
            // A waiting heisenbug has tries left (job_state says so); saturating all the same.
            let left = tries.saturating_sub(s.history.tries_since_first_fail);
            (
                State::Wait,
                format!(
                    "the gate waits for {left} more tr{} (each `{}` tries it again)",
                    if left == 1 { "y" } else { "ies" },
                    Advice::Run
                ),
            )
        }
        JobState::HeisenbugAllowed => (State::Promote, "the gate allows flaky failures".into()),
        _ => (State::Rejected, "the gate blocks flaky failures".into()),
    };
    (
        group,
        ReasonKind::Heisenbug,
        format!("{label} fails, and is flaky ({flake}); {policy}"),
    )
}

/// Why a failure is not this candidate's: its baseline fails too, or never passed on T.
fn fails_like_baseline(s: &Seen) -> String {
    let to = &s.plan.to.name;
    match s.baseline_history {
        Some(h) if s.baseline != Some(Verdict::Fail) && h.never_passed() => format!(
            "{} fails, and its baseline never passed on {to} ({}): not a regression",
            s.label,
            h.line()
        ),
        _ => format!(
            "{} fails, and so does its baseline on {to}: not a regression",
            s.label
        ),
    }
}

/// A failure that is this candidate's: a failed build, or a test that fails where T passes
/// (or with nothing to compare with).
fn regression(s: &Seen) -> (State, ReasonKind, String) {
    let label = &s.label;
    if s.job.kind == JobKind::Build {
        return (
            State::Rejected,
            ReasonKind::BuildFailed,
            format!(
                "{label} failed{}",
                s.why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
            ),
        );
    }
    let message = if matches!(s.baseline, Some(Verdict::Pass | Verdict::Flaky)) {
        format!(
            "{label} fails where {} passes: a regression",
            s.plan.to.name
        )
    } else {
        format!(
            "{label} fails{}",
            s.why
                .as_ref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        )
    };
    (State::Rejected, ReasonKind::Regression, message)
}
