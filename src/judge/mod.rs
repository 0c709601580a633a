//! One home for judgement: from a move's plan and the ledger, the [`Judgement`] every
//! command reads — which candidates move, wait, are held, rejected or invalid, with their
//! reasons, and the jobs the gate still needs.
//!
//! [`judge`] is the only place that reads the facts ([`facts::load`]) and asks the gate
//! ([`crate::gate::evaluate`]); `status`, `why`, `plan`, `run`, `promote`, `verify`, `poll`,
//! `bisect` and `report` all start from its value, so they cannot disagree. It reads the
//! ledger and the stages; it writes nothing but first sightings ([`facts::record_seen`],
//! called by promotion), runs nothing and prints nothing. The clock is passed in.

pub mod facts;

use std::collections::BTreeSet;

use crate::error::Result;
use crate::gate::{self, Evaluation, Facts, GroupEval, JobState, State};
use crate::keys::JobKey;
use crate::ledger::LedgerView;
use crate::plan::{Blocked, CandidateId, Group, MovePlan, Planner};

/// The gate's judgement of one move S → T: the plan it judged, the facts it weighed, and
/// what it decided.
#[derive(Debug, Clone)]
pub struct Judgement {
    pub plan: MovePlan,
    pub facts: Facts,
    pub decided: Decided,
    /// When several groups pass alone: the group of their combination and the plan that
    /// holds its jobs.
    combination: Option<(Group, MovePlan)>,
    /// Records about this move that T's `trust:` does not count, and why: shown, never
    /// weighed.
    pub not_counted: Vec<crate::trust::NotCounted>,
    /// Records about this move a ledger commit deleted, weighed as they were (under
    /// `trust:`: the ledger only grows).
    pub restored: Vec<crate::trust::Deleted>,
    /// What the ledger says of the runnable jobs beyond their verdicts: which errored ones
    /// wait (for their backoff, or for a recheck), and which rechecked ones need a new try.
    pending: Pending,
}

/// Runnable jobs a run treats apart from their verdicts.
#[derive(Debug, Clone, Default)]
struct Pending {
    /// Errored jobs not to be run now: their backoff has not passed, or their error budget
    /// is spent.
    deferred: BTreeSet<JobKey>,
    /// Rechecked jobs with no attempt since the recheck: run again although settled.
    rechecked: BTreeSet<JobKey>,
}

/// What the gate decides for one move: the evaluation, and which candidates move.
#[derive(Debug, Clone)]
pub struct Decided {
    pub evaluation: Evaluation,
    /// The groups that move, in plan order.
    pub moving: Vec<usize>,
    /// The combination of the moving groups, when more than one passed alone.
    pub combination: Option<GroupEval>,
    pub notes: Vec<String>,
}

impl Decided {
    pub fn moved(&self, plan: &MovePlan) -> Vec<CandidateId> {
        self.moving
            .iter()
            .flat_map(|i| plan.groups[*i].members.iter().cloned())
            .collect()
    }
}

/// Judge every candidate of `plan` at `now` (Unix seconds), then the combination of those
/// that pass alone.
///
/// Under `trust:` in T's pipeline, only the evidence it trusts is weighed
/// ([`LedgerView::trusting`]); what it does not count is in [`Judgement::not_counted`].
pub fn judge(
    planner: &Planner,
    mut plan: MovePlan,
    view: &LedgerView,
    now: i64,
) -> Result<Judgement> {
    let view = &view.trusting(plan.trust.as_ref())?;
    facts::stale_parents(planner, &mut plan, view)?;
    let mut facts = facts::load(planner, &plan, view, now)?;
    // Heartbeats only explain a wait; one that cannot be read explains nothing.
    if plan.jobs.values().any(|j| !j.needs.is_empty()) {
        facts.runners = crate::runners::read(planner.repo).unwrap_or_default();
    }
    judge_on(planner, plan, view, facts, now)
}

/// [`judge`] on facts the caller loaded ([`facts::load`]) and narrowed: `verify` replays a
/// decision without the rejections that same decision run recorded, which it did not rest on.
pub fn judge_on(
    planner: &Planner,
    plan: MovePlan,
    view: &LedgerView,
    facts: Facts,
    now: i64,
) -> Result<Judgement> {
    let evaluation = gate::evaluate(&plan, view, &facts, now)?;
    let (mut not_counted, mut restored) = not_counted(view, &plan);
    not_counted.extend(facts.holds_not_counted.iter().cloned());
    restored.extend(facts.holds_restored.iter().cloned());
    let passing = evaluation.promotable();
    if passing.len() < 2 {
        let mut j = Judgement {
            not_counted,
            restored,
            plan,
            facts,
            decided: Decided {
                evaluation,
                moving: passing,
                combination: None,
                notes: Vec::new(),
            },
            combination: None,
            pending: Pending::default(),
        };
        j.pending = j.pending(view, now)?;
        return Ok(j);
    }
    let (group, combo_plan) = planner.plan_combination(&plan, &passing)?;
    let combo = gate::evaluate_combination(
        &combo_plan,
        &group.members,
        &group.required,
        &group.blocked,
        view,
        &Facts {
            holds: Default::default(),
            ..facts.clone()
        },
        now,
    )?;
    let names = |gs: &[usize]| -> String {
        gs.iter()
            .flat_map(|i| plan.groups[*i].members.iter().map(|m| m.to_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut notes = Vec::new();
    let moving = match combo.state {
        State::Promote => passing,
        State::Rejected => {
            notes.push(format!(
                "{} pass alone but not together: {} moves alone, the others are judged again against the new {}",
                names(&passing),
                names(&passing[..1]),
                plan.to.name
            ));
            passing[..1].to_vec()
        }
        _ => {
            notes.push(format!(
                "{} pass alone; their combination waits: {}",
                names(&passing),
                combo
                    .reasons
                    .iter()
                    .map(|r| r.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            Vec::new()
        }
    };
    let mut j = Judgement {
        not_counted,
        restored,
        plan,
        facts,
        decided: Decided {
            evaluation,
            moving,
            combination: Some(combo),
            notes,
        },
        combination: Some((group, combo_plan)),
        pending: Pending::default(),
    };
    j.pending = j.pending(view, now)?;
    Ok(j)
}

/// The records of `view` its `trust:` leaves out, and those it restores, that speak about
/// `plan`: results of its jobs, decisions on its candidates, and every override.
fn not_counted(
    view: &LedgerView,
    plan: &MovePlan,
) -> (Vec<crate::trust::NotCounted>, Vec<crate::trust::Deleted>) {
    let Some(ev) = view.evidence() else {
        return Default::default();
    };
    let decisions: std::collections::HashSet<String> = plan
        .candidates
        .iter()
        .map(|c| facts::decision_path(&plan.to.name, &c.content))
        .collect();
    // A result lives at `K[0..2]/K[2..4]/K/…`: its third component is its job key.
    let relevant = |path: &str| {
        path.starts_with("overrides/")
            || path
                .split('/')
                .nth(2)
                .is_some_and(|k| plan.jobs.contains_key(k))
            || decisions.contains(path)
    };
    (
        ev.not_counted
            .values()
            .filter(|n| relevant(&n.path))
            .cloned()
            .collect(),
        ev.deleted
            .values()
            .filter(|d| relevant(&d.path))
            .cloned()
            .collect(),
    )
}

/// Judge every move of the pipeline (or only those into or out of `stage`), in order.
pub fn judge_all(
    planner: &Planner,
    stage: Option<&str>,
    view: &LedgerView,
    now: i64,
) -> Result<Vec<Judgement>> {
    planner
        .plan_all(stage)?
        .into_iter()
        .map(|p| judge(planner, p, view, now))
        .collect()
}

impl Judgement {
    /// The candidates that move, in plan order.
    pub fn moved(&self) -> Vec<CandidateId> {
        self.decided.moved(&self.plan)
    }

    /// The gate's verdict on the group `id` belongs to.
    pub fn group(&self, id: &CandidateId) -> Option<&GroupEval> {
        self.decided.evaluation.of(id)
    }

    /// The state of `id` as people see it: a candidate whose group passes but does not move
    /// this time (its combination with others waits, or it moves after another) waits.
    pub fn state(&self, id: &CandidateId) -> State {
        match self.group(id).map_or(State::Wait, |g| g.state) {
            State::Promote
                if !self
                    .decided
                    .moving
                    .iter()
                    .any(|i| self.plan.groups[*i].members.contains(id)) =>
            {
                State::Wait
            }
            s => s,
        }
    }

    /// The group of the combination of what passes alone, when there is one.
    pub fn combination_group(&self) -> Option<&Group> {
        self.combination.as_ref().map(|(g, _)| g)
    }

    /// The plan as `run` and `plan` see it: a group whose rejection stands plans nothing (no
    /// job is run for it again), and when several groups pass alone, the jobs of their
    /// combination join the plan. Only the jobs something still needs are kept: required
    /// ones, their baselines and the builds they use.
    pub fn runnable(&self) -> MovePlan {
        let mut out = self.plan.clone();
        for (g, e) in out.groups.iter_mut().zip(&self.decided.evaluation.groups) {
            if e.sticky {
                g.required.clear();
                g.blocked.push(Blocked {
                    kind: crate::plan::BlockedKind::Rejected,
                    candidate: None,
                    message: "rejected before at this content: nothing runs for it again".into(),
                });
            }
        }
        if let Some((_, cp)) = &self.combination {
            for (k, j) in &cp.jobs {
                out.jobs.entry(k.clone()).or_insert_with(|| j.clone());
            }
        }
        let mut keep: BTreeSet<JobKey> = BTreeSet::new();
        let mut todo: Vec<JobKey> = out
            .groups
            .iter()
            .flat_map(|g| g.required.iter().cloned())
            .chain(
                self.combination
                    .iter()
                    .flat_map(|(g, _)| g.required.iter().cloned()),
            )
            .collect();
        while let Some(k) = todo.pop() {
            if !keep.insert(k.clone()) {
                continue;
            }
            if let Some(j) = out.jobs.get(&k) {
                todo.extend(j.baseline.iter().cloned());
                todo.extend(j.after.iter().cloned());
            }
        }
        out.jobs.retain(|k, _| keep.contains(k));
        out
    }

    /// The keys the gate wants tried again although they have a settled result: heisenbugs
    /// a `flaky: {policy: wait}` gate waits on (each `run` adds one try, so a cron `cycle`
    /// settles them), and jobs rechecked since their newest attempt.
    pub fn retries(&self) -> BTreeSet<JobKey> {
        self.decided
            .evaluation
            .groups
            .iter()
            .flat_map(|g| &g.jobs)
            .filter(|j| j.state == JobState::HeisenbugWaiting)
            .map(|j| j.key.clone())
            .chain(self.pending.rechecked.iter().cloned())
            .collect()
    }

    /// The errored jobs a run leaves alone for now: their backoff has not passed, or their
    /// error budget is spent (they wait for `stagegate recheck`).
    pub fn deferred(&self) -> &BTreeSet<JobKey> {
        &self.pending.deferred
    }

    /// What a run must do for this move: the runnable plan's jobs, which to try again, and
    /// which errored ones to leave alone for now.
    pub fn work(&self) -> crate::runner::session::Work {
        crate::runner::session::Work {
            plan: self.runnable(),
            retries: self.retries(),
            deferred: self.pending.deferred.clone(),
        }
    }

    /// Every runnable job's standing beyond its verdict: errored ones within or beyond their
    /// budget (baselines and builds too, not only the jobs the gate requires), rechecked
    /// ones without a new attempt.
    fn pending(&self, view: &LedgerView, now: i64) -> Result<Pending> {
        let mut out = Pending::default();
        for key in self.runnable().jobs.keys() {
            let Some((latest, _)) = view.latest_with_history(key)? else {
                continue;
            };
            let mark = self.facts.rechecked.get(key).map(|m| m.attempt);
            if mark.is_some_and(|m| latest.attempt <= m) {
                out.rechecked.insert(key.clone());
                continue;
            }
            if latest.verdict.is_final() {
                continue;
            }
            let errors = view.trailing_errors(key)?;
            let budget = gate::error_budget(
                &self.plan.gate.errors,
                &errors,
                mark.unwrap_or(0),
                &latest.finished,
                now,
            );
            if !matches!(budget, gate::Budget::Due { .. }) {
                out.deferred.insert(key.clone());
            }
        }
        Ok(out)
    }
}
