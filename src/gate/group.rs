//! One group's decision, phase by phase: standing rejections; the required jobs' verdicts;
//! what the planner found blocking; holds, approvals and soak, member by member; freezes.
//! Each phase adds findings — a reason and the state it asks for — and the group's state is
//! the greatest of them (Promote < Wait < Held < Rejected): a regression rejects a held
//! group, a hold outweighs a missing result. Reasons keep the order of the phases.

use std::collections::BTreeMap;

use crate::advice::Advice;
use crate::keys::{ContentKey, JobKey};
use crate::overrides::{OverrideRef, QuarantineRecord, WaiveRecord};
use crate::plan::{Blocked, Candidate, CandidateId, MovePlan};

use super::{Facts, Finding, GroupEval, Reason, ReasonKind, Recorded, State, job};

/// What the phases found so far.
#[derive(Default)]
struct Findings {
    found: Vec<Finding>,
    /// The overrides that changed the decision.
    used: Vec<OverrideRef>,
    /// The longest soak time any member has left, in seconds.
    soak_left: u64,
}

impl Findings {
    fn push(&mut self, state: State, reason: Reason) {
        self.found.push(Finding { state, reason });
    }

    /// The group's state: the greatest any finding asks for, promote when none asks.
    fn state(&self) -> State {
        self.found
            .iter()
            .map(|f| f.state)
            .fold(State::Promote, State::max)
    }
}

pub(super) fn evaluate_group(
    plan: &MovePlan,
    members: &[CandidateId],
    required: &[JobKey],
    blocked: &[Blocked],
    latest: &BTreeMap<JobKey, Recorded>,
    facts: &Facts,
    now: i64,
) -> GroupEval {
    // What a reason that is about the group, not one member, names.
    let first = members.first().map(|m| m.to_string());
    let mut f = Findings::default();
    let standing = standing_rejections(plan, members, facts, &mut f);
    let mut jobs = Vec::with_capacity(required.len());
    for key in required {
        let judged = job::judge(plan, key, latest, facts, first.as_deref(), now);
        f.found.extend(judged.finding);
        f.used.extend(judged.used);
        jobs.push(judged.verdict);
    }
    // A standing rejection decides alone: its jobs are shown as they stand, nothing else
    // is weighed, no override changed it.
    if !standing.is_empty() {
        return GroupEval {
            members: members.to_vec(),
            state: State::Rejected,
            reasons: standing,
            jobs,
            soak_left: 0,
            sticky: true,
            overrides: Vec::new(),
        };
    }
    for b in blocked {
        f.push(State::Wait, blocked_reason(b, first.as_deref()));
    }
    for m in members {
        // A member the plan does not list has nothing recorded about it to weigh.
        if let Some(c) = plan.candidate(m) {
            member(plan, m, c, facts, now, &mut f);
        }
    }
    freezes(plan, facts, first.as_deref(), &mut f);
    let state = f.state();
    f.used.sort();
    f.used.dedup();
    GroupEval {
        members: members.to_vec(),
        state,
        reasons: f.found.into_iter().map(|x| x.reason).collect(),
        jobs,
        soak_left: f.soak_left,
        sticky: false,
        overrides: f.used,
    }
}

/// A rejection recorded for a member's very content stands until waivers or quarantines
/// cover every failure it rests on; then those overrides are why it is judged again (added
/// to `f`). Returns the reasons of the rejections that stand.
fn standing_rejections(
    plan: &MovePlan,
    members: &[CandidateId],
    facts: &Facts,
    f: &mut Findings,
) -> Vec<Reason> {
    let mut standing = Vec::new();
    for m in members {
        if let Some(l) = plan.candidate(m).and_then(|c| facts.lifted.get(&c.content)) {
            f.used.push(l.clone());
        }
        let Some(r) = plan
            .candidate(m)
            .and_then(|c| facts.rejected.get(&c.content))
        else {
            continue;
        };
        // A rejection stands on exactly what it judged: when a member it judged has changed
        // or left the group, or a new one joined, the group is judged again.
        if !judged_as_now(r, plan, members) {
            continue;
        }
        let excused = |k: &JobKey| {
            facts.waived.get(k).map(WaiveRecord::to_ref).or_else(|| {
                r.tests
                    .get(k)
                    .and_then(|t| facts.quarantined.get(t))
                    .map(QuarantineRecord::to_ref)
            })
        };
        if !r.failed.is_empty() && r.failed.iter().all(|k| excused(k).is_some()) {
            f.used.extend(r.failed.iter().filter_map(excused));
            continue;
        }
        standing.push(Reason {
            kind: ReasonKind::Rejected,
            item: Some(m.to_string()),
            job: None,
            message: format!(
                "{m} at this content was rejected for {}{}; it stays on {} until a new version arrives; once an environment it failed in is fixed, `{}` runs its failing jobs again{}",
                plan.to.name,
                if r.reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", r.reasons.join("; "))
                },
                plan.from.name,
                Advice::Recheck {
                    item: m.to_string(),
                    stage: Some(plan.to.name.clone()),
                },
                match r.failed.as_slice() {
                    [] => String::new(),
                    [k] => format!(", or `{}` waives it", Advice::Waive { key: k.clone() }),
                    _ => format!(
                        ", or {} waive them",
                        r.failed
                            .iter()
                            .map(|k| format!("`{}`", Advice::Waive { key: k.clone() }))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
            ),
        });
    }
    standing
}

/// Whether the group of `members` holds exactly the candidates, at exactly the contents,
/// that the rejection `r` judged. A record that does not say what it judged (written before
/// contents were recorded) is taken at its word.
fn judged_as_now(r: &super::Rejection, plan: &MovePlan, members: &[CandidateId]) -> bool {
    if r.judged.is_empty() || r.judged.iter().any(|(_, c)| c.is_none()) {
        return true;
    }
    let mut then: Vec<(&str, &str)> = r
        .judged
        .iter()
        .filter_map(|(i, c)| Some((i.as_str(), c.as_ref()?.as_str())))
        .collect();
    let now_members: Vec<(String, &ContentKey)> = members
        .iter()
        .filter_map(|m| plan.candidate(m).map(|c| (m.to_string(), &c.content)))
        .collect();
    let mut now: Vec<(&str, &str)> = now_members
        .iter()
        .map(|(i, c)| (i.as_str(), c.as_str()))
        .collect();
    then.sort_unstable();
    now.sort_unstable();
    then == now
}

/// What the planner found blocking the group: it waits, saying so.
fn blocked_reason(b: &Blocked, first: Option<&str>) -> Reason {
    Reason {
        kind: b.kind.into(),
        item: b
            .candidate
            .as_ref()
            .map(|c| c.to_string())
            .or_else(|| first.map(String::from)),
        job: None,
        message: b.message.clone(),
    }
}

/// One member's hold, approval and soak, in that order.
fn member(
    plan: &MovePlan,
    m: &CandidateId,
    c: &Candidate,
    facts: &Facts,
    now: i64,
    f: &mut Findings,
) {
    let reason = |kind, message| Reason {
        kind,
        item: Some(m.to_string()),
        job: None,
        message,
    };
    if let Some(h) = facts.holds.get(m) {
        f.push(
            State::Held,
            reason(
                ReasonKind::Held,
                format!(
                    "{m} is held on {} by {} since {}: {} (release with `{}`)",
                    h.stage,
                    h.by,
                    h.at,
                    h.reason,
                    Advice::Release {
                        item: m.to_string()
                    }
                ),
            ),
        );
    }
    // A change of the pipeline changes the gates themselves, and the repository files
    // (workflows, CODEOWNERS) what guards them: each needs a person's approval.
    if matches!(m, CandidateId::Pipeline | CandidateId::Files) {
        match facts.approved.get(&c.content) {
            Some(a) => f.used.push(a.to_ref()),
            None => f.push(
                State::Wait,
                reason(
                    ReasonKind::Approval,
                    format!(
                        "a change of {m} moves into {} only with an approval: `{}`",
                        plan.to.name,
                        Advice::Approve {
                            candidate: m.to_string(),
                            stage: plan.to.name.clone()
                        }
                    ),
                ),
            ),
        }
    }
    if let Some(soak) = plan.gate.soak {
        // Counted from when the ledger first saw it pending, never from a commit date.
        let (age, note) = match facts.seen.get(&c.content) {
            Some(t) => (now.saturating_sub(*t).max(0) as u64, ""),
            None => (0, " (first seen now)"),
        };
        if age < soak.as_secs() {
            let left = soak.as_secs() - age;
            f.soak_left = f.soak_left.max(left);
            f.push(
                State::Wait,
                reason(
                    ReasonKind::Soak,
                    format!(
                        "{m} pending on {} for {}{note} of the {} soak; {} left",
                        plan.from.name,
                        humantime::format_duration(std::time::Duration::from_secs(age)),
                        humantime::format_duration(soak),
                        humantime::format_duration(std::time::Duration::from_secs(left))
                    ),
                ),
            );
        }
    }
}

/// A frozen target stage holds every group.
fn freezes(plan: &MovePlan, facts: &Facts, first: Option<&str>, f: &mut Findings) {
    for z in &facts.frozen {
        f.used.push(z.to_ref());
        f.push(
            State::Held,
            Reason {
                kind: ReasonKind::Frozen,
                item: first.map(String::from),
                job: None,
                message: format!(
                    "{} is frozen by {} since {}: {}{} (lift with `{}`)",
                    plan.to.name,
                    z.author,
                    z.created,
                    z.reason,
                    z.expires
                        .as_ref()
                        .map(|e| format!("; until {e}"))
                        .unwrap_or_default(),
                    Advice::Unfreeze {
                        stage: plan.to.name.clone()
                    }
                ),
            },
        );
    }
}

/// A rejected group names what a bisect of its members found: the first bad upstream
/// commit, which `why`, decisions and pull requests then show with the rejection.
pub(super) fn note_bisects(e: &mut GroupEval, plan: &MovePlan, facts: &Facts) {
    if e.state != State::Rejected {
        return;
    }
    for m in &e.members {
        if let Some(found) = plan
            .candidate(m)
            .and_then(|c| facts.bisected.get(&c.content))
        {
            e.reasons.push(Reason {
                kind: ReasonKind::Bisect,
                item: Some(m.to_string()),
                job: None,
                message: found.clone(),
            });
        }
    }
}

/// An invalid candidate is a group of its own that never moves: its diagnostics are why.
pub(super) fn invalid(c: &Candidate) -> GroupEval {
    GroupEval {
        members: vec![c.id.clone()],
        state: State::Invalid,
        reasons: c
            .invalid
            .iter()
            .map(|d| Reason {
                kind: ReasonKind::Invalid,
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
    }
}
