//! Promotion: move every candidate the gate passes from S into T, in one commit carrying
//! the decision as YAML.
//!
//! For a move S → T the promotion is one commit on T whose tree is T's tree with exactly
//! the promoted candidates' files taken from S (manifest, the files it names, its build
//! record), plus the decision record; its first parent is T's head, so `git log
//! --first-parent T` reads one entry per promotion. When every candidate moves (S moves
//! whole), it is a merge commit with S's head as second parent and S's tree. Before two or
//! more groups land together their combination must have passed; when it fails while each
//! passed alone, the first moves alone and the others are judged again against the new T.
//! The ref moves by compare-and-swap: if T moved since we looked, we plan and decide again,
//! never clobber.
//!
//! Rejections, first sightings and refused versions are recorded in the results ledger
//! (see [`facts`]), not on S: a commit on S would itself be a new candidate.

pub mod attest;
pub mod edits;
pub mod publish;
pub mod push_gate;
pub mod review;
pub mod verify;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gate::{self, Evaluation, State};
use crate::keys::{ContentKey, JobKey};
use crate::ledger::{Ledger, LedgerView, Verdict};
use crate::manifest::{Gate, Stage};
use crate::plan::{CandidateId, MovePlan, Planner, short};
use crate::records::{self, BuiltRecord, RECORDS_DIR};
use crate::repo::Cas;

/// The format of the decision records this stagegate writes ([`DecisionRecord::format`]).
///
/// 1 (the field absent): records written before records named their ledger commit; they
/// are verified as they were written, against the ledger as of their decision time.
/// 2: the record names the ledger commit its judgement read (`ledger`), and is verified
/// against exactly that commit, which must still be in the ledger's history.
pub const DECISION_FORMAT: u32 = 2;

/// A decision, as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DecisionRecord {
    /// The record's format ([`DECISION_FORMAT`]); absent in records written before 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    pub decision: String,
    pub from: String,
    pub to: String,
    /// S's head when the decision was made.
    pub tested: String,
    pub subject: String,
    /// T's head the decision was made against.
    pub into: String,
    pub decided_by: String,
    pub decided_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_url: Option<String>,
    /// The tip of the results ledger the judgement read (format 2; absent when the ledger
    /// was empty): `verify` replays the decision on exactly this commit, and refuses a
    /// ledger whose history no longer holds it (a rewind, a deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    pub gate: GateRecord,
    /// What moved (a promotion) or what was rejected (a rejection).
    pub candidates: Vec<CandidateRecord>,
    pub jobs: Vec<JobRecord>,
    #[serde(default)]
    pub built: Vec<String>,
    /// The component push gate's pushes (into the last stage only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<push_gate::PushRecord>,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// What stayed on S, and why (a promotion that did not move everything).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stayed: Vec<StayedRecord>,
    /// The overrides (waivers, approvals, quarantines) that changed this decision: which,
    /// by whom, why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<crate::overrides::OverrideRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GateRecord {
    pub require: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    pub review: bool,
    pub baseline: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CandidateRecord {
    pub item: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The content key of what moved (absent in records written before 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StayedRecord {
    pub item: String,
    pub state: String,
    #[serde(default)]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobRecord {
    pub key: JobKey,
    pub job: String,
    pub verdict: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_key: Option<JobKey>,
    /// Every attempt of the job, when there was more than one (a re-run adds to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<gate::History>,
    /// Every attempt of the baseline, when there was more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_history: Option<gate::History>,
}

/// One candidate as `promote` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateOutcome {
    pub item: CandidateId,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Present on S (false: a removal).
    pub present: bool,
    /// New on S (T does not have it).
    pub new: bool,
    pub state: State,
    /// It moved in this run's promotion.
    pub moved: bool,
    pub results: String,
    pub reasons: Vec<String>,
}

/// What `promote` did for one move.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    pub from: String,
    pub to: String,
    /// The promotion commit made on T, if one was.
    pub promoted: Option<String>,
    /// S's head the decision was made on.
    pub tested: Option<String>,
    /// The candidates that moved (or would, with --dry-run).
    pub moved: Vec<CandidateId>,
    /// Candidates whose rejection was recorded by this run.
    pub rejected: Vec<String>,
    /// Candidates whose rejection stood before this run (recorded earlier, nothing judged
    /// again): reported, not signalled.
    pub standing: Vec<String>,
    pub candidates: Vec<CandidateOutcome>,
    /// Items pushed to their own repository's branch (the component push gate).
    pub pushed: Vec<String>,
    pub notes: Vec<String>,
    /// T is frozen: the freezes in force (nothing moved).
    pub frozen: Vec<crate::overrides::OverrideRef>,
    /// The signed verification summaries this promotion published (with a signing key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attested: Vec<attest::Attested>,
    #[serde(skip)]
    pub evaluation: Option<Evaluation>,
    /// The promotion (or the first candidate), for people: the pull request body, the
    /// step summary, the check run.
    #[serde(skip)]
    pub summary: Option<crate::forge::PromotionSummary>,
}

impl MoveOutcome {
    /// The gate said a new "no" in this run: a candidate is rejected whose rejection did not
    /// stand before (a standing one was said before, and changes no exit code).
    pub fn has_new_rejection(&self) -> bool {
        self.candidates.iter().any(|c| {
            c.state == State::Rejected && !c.moved && !self.standing.contains(&c.item.to_string())
        })
    }
}

#[derive(Clone)]
pub struct Options<'a> {
    pub dry_run: bool,
    /// The gate's clock (Unix seconds): soak and the overrides in force are judged at it.
    pub now: i64,
    pub by: String,
    pub ci_url: Option<String>,
    /// The forge, when one is configured: promotions through pull requests (gates with
    /// `review: true`) and check runs on tested commits.
    pub review: Option<review::Review<'a>>,
    /// Promote through pull requests whatever the gates say (`--review`).
    pub force_review: bool,
}

pub use crate::judge::Decided;
use crate::judge::{self, facts};

/// Plan, evaluate and (unless dry-run) promote one move; retries when T moves underneath.
pub fn promote_move(
    planner: &Planner,
    from: &Stage,
    to: &Stage,
    opts: &Options,
) -> Result<MoveOutcome> {
    let repo = planner.repo;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    for _attempt in 0..5 {
        let plan = planner.plan_move(from, to)?;
        if !opts.dry_run && !plan.candidates.is_empty() {
            crate::trust::require_signer(&to.name, plan.trust.as_ref())?;
        }
        if !opts.dry_run {
            facts::record_seen(&ledger, &plan, opts.now)?;
        }
        let view = ledger.view()?;
        let judgement = judge::judge(planner, plan, &view, opts.now)?;
        let (plan, facts, decided) = (&judgement.plan, &judgement.facts, &judgement.decided);
        let moved = judgement.moved();
        let mut outcome = MoveOutcome {
            from: from.name.clone(),
            to: to.name.clone(),
            promoted: None,
            tested: (!moved.is_empty()).then(|| plan.from_head.to_string()),
            moved: moved.clone(),
            rejected: Vec::new(),
            standing: decided
                .evaluation
                .groups
                .iter()
                .filter(|g| g.sticky)
                .flat_map(|g| g.members.iter().map(|m| m.to_string()))
                .collect(),
            candidates: candidate_outcomes(&judgement),
            pushed: Vec::new(),
            notes: decided.notes.clone(),
            frozen: facts.frozen.iter().map(|f| f.to_ref()).collect(),
            attested: Vec::new(),
            evaluation: Some(decided.evaluation.clone()),
            summary: None,
        };
        if let Some(note) = forge_rewrite_note(planner, to, plan.to_head)? {
            if let (Some(review), false) = (&opts.review, opts.dry_run) {
                outcome.notes.extend(say_on_the_request(
                    review.forge,
                    from,
                    to,
                    plan.to_head,
                    &note,
                ));
            }
            outcome.notes.push(note);
        }
        for f in &facts.frozen {
            outcome.notes.push(format!(
                "{} is frozen by {} since {}: {}{}; nothing moves into it until `{}`",
                to.name,
                f.author,
                f.created,
                f.reason,
                f.expires
                    .as_ref()
                    .map(|e| format!(" (until {e})"))
                    .unwrap_or_default(),
                crate::advice::Advice::Unfreeze {
                    stage: to.name.clone()
                }
            ));
        }
        let reviewed = plan.gate.review || opts.force_review;
        if reviewed && opts.review.is_none() && !opts.dry_run {
            return Err(Error::usage_help(
                format!(
                    "promotion into {} goes through a {}, and no forge is configured",
                    to.name,
                    match planner.pipeline.forge.as_ref().map(|f| f.kind) {
                        Some(crate::manifest::ForgeName::Gitlab) => "merge request",
                        _ => "pull request",
                    }
                ),
                "set GITHUB_TOKEN and GITHUB_REPOSITORY (the Action does), or on GitLab STAGEGATE_GITLAB_TOKEN (with `forge: gitlab` outside GitLab CI), or set `review: false` on the gate",
            ));
        }
        if !opts.dry_run {
            outcome.rejected = record_rejections(planner, plan, decided, opts, view.tip)?;
        }
        if !plan.candidates.is_empty() {
            let s = review::summary(planner, plan, decided)?;
            // A forge sees only what was pushed: a check on a commit it lacks is refused.
            if let (Some(r), false) = (&opts.review, opts.dry_run)
                && crate::repo::remote::is_published(repo, plan.from_head, &from.branch)?
            {
                review::post_check(plan, &s, r, reviewed)?;
            }
            outcome.summary = Some(s);
        }
        if moved.is_empty() {
            if let (Some(r), true, false) = (&opts.review, reviewed, opts.dry_run)
                && let Some(note) = review::redden(plan, decided, r)?
            {
                outcome.notes.push(note);
            }
            return Ok(outcome);
        }
        if opts.dry_run {
            return Ok(outcome);
        }
        if reviewed && let Some(r) = &opts.review {
            let summary = outcome.summary.clone().expect("made above");
            // The pull request carries the promotion commit without push-gate results:
            // merging it is the promotion, so components are pushed only once it is merged.
            let done = review::via_pull_request(planner, plan, &summary, r, || {
                promotion_commit(planner, plan, decided, opts, Vec::new(), &view)
            })?;
            outcome.notes.extend(done.notes);
            if done.promoted.is_some() {
                let pushed = push_gate::push_components(planner, plan, &moved)?;
                outcome.pushed = pushed.iter().map(push_gate::PushRecord::describe).collect();
            }
            outcome.promoted = done.promoted.map(|m| m.to_string());
            return Ok(outcome);
        }
        if let Some((commit, pushed)) = apply(planner, plan, decided, opts, &view)? {
            outcome.pushed = pushed.iter().map(push_gate::PushRecord::describe).collect();
            outcome.promoted = Some(commit.to_string());
            return Ok(outcome);
        }
        // Someone else moved T between our look and our update: decide again.
    }
    Err(Error::infra_help(
        format!("{} kept moving while promoting into it", to.branch),
        "another promoter is active; run promote again when it is done",
    ))
}

/// Each candidate as the judgement sees it: the state `status` and `why` show (one that
/// passes but does not move this time waits), whether it moved, its results and reasons.
fn candidate_outcomes(judgement: &judge::Judgement) -> Vec<CandidateOutcome> {
    let moved = judgement.moved();
    judgement
        .plan
        .candidates
        .iter()
        .map(|c| {
            let g = judgement.group(&c.id);
            CandidateOutcome {
                item: c.id.clone(),
                from: c.from.clone(),
                to: c.to.clone(),
                present: c.present,
                new: c.new,
                state: judgement.state(&c.id),
                moved: moved.contains(&c.id),
                results: g.map_or("no jobs".into(), |g| gate::counts_line(&g.jobs)),
                reasons: g
                    .map(|g| g.reasons.iter().map(|r| r.message.clone()).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Move the candidates `decided` promotes into T. Returns the promotion commit and what the
/// push gate did, or `None` when T is no longer where the plan saw it (nothing is written
/// to T then). `view` is the ledger the judgement read.
pub fn apply(
    planner: &Planner,
    plan: &MovePlan,
    decided: &Decided,
    opts: &Options,
    view: &LedgerView,
) -> Result<Option<(ObjectId, Vec<push_gate::PushRecord>)>> {
    let repo = planner.repo;
    let moved = decided.moved(plan);
    let pushed = push_gate::push_components(planner, plan, &moved)?;
    let commit = promotion_commit(planner, plan, decided, opts, pushed.clone(), view)?;
    let names: Vec<String> = moved.iter().map(|m| m.to_string()).collect();
    let reflog = format!(
        "stagegate: promote {} into {}",
        names.join(", "),
        plan.to.name
    );
    match repo.cas(&plan.to.ref_name(), Some(plan.to_head), commit, &reflog)? {
        Cas::Updated => {
            crate::repo::remote::sync_worktree(repo, &plan.to.branch, plan.to_head, commit);
            Ok(Some((commit, pushed)))
        }
        Cas::Moved { .. } => Ok(None),
    }
}

fn gate_record(g: &Gate) -> GateRecord {
    GateRecord {
        require: g
            .require
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect(),
        soak: g.soak.map(|s| humantime::format_duration(s).to_string()),
        review: g.review,
        baseline: g.baseline,
    }
}

fn job_records(jobs: &[gate::JobVerdict]) -> Vec<JobRecord> {
    jobs.iter()
        .map(|j| JobRecord {
            key: j.key.clone(),
            job: j.label.clone(),
            verdict: j.verdict.map_or("missing".into(), |v| v.to_string()),
            state: j.state.to_string(),
            baseline: j.baseline.map(|v| v.to_string()),
            baseline_key: j.baseline_key.clone(),
            history: Some(j.history.clone()).filter(|h| h.runs > 1),
            baseline_history: j.baseline_history.clone().filter(|h| h.runs > 1),
        })
        .collect()
}

fn candidate_record(plan: &MovePlan, id: &CandidateId) -> CandidateRecord {
    let c = plan.candidate(id);
    CandidateRecord {
        item: id.to_string(),
        from: c.and_then(|c| c.from.clone()),
        to: c.and_then(|c| c.to.clone()),
        content: c.map(|c| c.content.clone()),
    }
}

/// The subject of a move: the newest commit on S.
fn subject(planner: &Planner, plan: &MovePlan) -> Result<String> {
    Ok(planner.repo.commit(plan.from_head)?.subject().to_string())
}

#[allow(clippy::too_many_arguments)]
fn record(
    planner: &Planner,
    plan: &MovePlan,
    decision: &str,
    members: &[CandidateId],
    jobs: Vec<JobRecord>,
    reasons: Vec<String>,
    stayed: Vec<StayedRecord>,
    opts: &Options,
) -> Result<DecisionRecord> {
    Ok(DecisionRecord {
        format: Some(DECISION_FORMAT),
        decision: decision.into(),
        from: plan.from.name.clone(),
        to: plan.to.name.clone(),
        tested: plan.from_head.to_string(),
        subject: subject(planner, plan)?,
        into: plan.to_head.to_string(),
        decided_by: opts.by.clone(),
        decided_at: records::rfc3339(opts.now),
        ci_url: opts.ci_url.clone(),
        ledger: None,
        gate: gate_record(&plan.gate),
        candidates: members.iter().map(|m| candidate_record(plan, m)).collect(),
        jobs,
        built: Vec::new(),
        pushed: Vec::new(),
        reasons,
        stayed,
        overrides: Vec::new(),
    })
}

/// Record each newly rejected candidate in the ledger, once, by its content. `judged` is
/// the ledger commit the judgement read.
fn record_rejections(
    planner: &Planner,
    plan: &MovePlan,
    decided: &Decided,
    opts: &Options,
    judged: Option<ObjectId>,
) -> Result<Vec<String>> {
    let ledger = Ledger::new(planner.repo, &planner.pipeline.results_ref);
    let mut done = Vec::new();
    for g in decided
        .evaluation
        .groups
        .iter()
        .filter(|g| g.state == State::Rejected && !g.sticky)
    {
        let reasons: Vec<String> = g
            .reasons
            .iter()
            .filter(|r| {
                matches!(
                    r.kind,
                    gate::ReasonKind::Regression
                        | gate::ReasonKind::BuildFailed
                        | gate::ReasonKind::Bisect
                        | gate::ReasonKind::Heisenbug
                )
            })
            .map(|r| r.message.clone())
            .collect();
        let mut rec = record(
            planner,
            plan,
            "reject",
            &g.members,
            job_records(&g.jobs),
            reasons.clone(),
            Vec::new(),
            opts,
        )?;
        rec.overrides = g.overrides.clone();
        rec.ledger = judged.map(|t| t.to_string());
        let text = records::to_yaml(&rec);
        let mut files = Vec::new();
        // A group judged here is not standing on a rejection (the gate would say `sticky`):
        // a decision recorded before for a member's content no longer stands (a recheck
        // lifted it, or its group changed), and this one takes its place.
        let mut replace = Vec::new();
        for m in &g.members {
            let Some(c) = plan.candidate(m) else { continue };
            replace.push(facts::decision_path(&plan.to.name, &c.content));
            files.push((
                facts::decision_path(&plan.to.name, &c.content),
                text.clone(),
            ));
            files.push(facts::version_record(
                planner,
                c,
                plan.from_head,
                "rejected",
                &plan.to.name,
            )?);
        }
        let mut body = String::new();
        for r in &reasons {
            body.push_str(&format!("- {r}\n"));
        }
        let msg = format!(
            "Reject {} for {}: {}\n\n{}\n{} stays on {} until a new version arrives or its failures are waived.\n\n{}",
            g.members
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            plan.to.name,
            candidates_line(&rec),
            body,
            if g.members.len() == 1 { "It" } else { "They" },
            plan.from.name,
            trailers(plan, "reject", &g.jobs, &rec)
        );
        if !ledger.put(&files, &replace, &msg)?.is_empty() {
            done.extend(g.members.iter().map(|m| m.to_string()));
        }
    }
    Ok(done)
}

fn candidates_line(rec: &DecisionRecord) -> String {
    let parts: Vec<String> = rec
        .candidates
        .iter()
        .map(|c| match (&c.from, &c.to) {
            (Some(f), Some(t)) if f != t => format!("{} {f} -> {t}", c.item),
            (_, Some(t)) => format!("{} {t}", c.item),
            (Some(f), None) => format!("{} removed (was {f})", c.item),
            (None, None) => c.item.clone(),
        })
        .collect();
    if parts.is_empty() {
        "no item changes".into()
    } else {
        parts.join(", ")
    }
}

fn trailers(
    plan: &MovePlan,
    decision: &str,
    jobs: &[gate::JobVerdict],
    rec: &DecisionRecord,
) -> String {
    let mut t = format!(
        "Stagegate-Decision: {decision}\nStagegate-Stage: {} -> {}\nStagegate-Tested: {}\nStagegate-Results: {}\n",
        plan.from.name,
        plan.to.name,
        plan.from_head,
        gate::counts_line(jobs)
    );
    for c in &rec.candidates {
        let cand = CandidateId::parse(&c.item).and_then(|id| plan.candidate(&id));
        let (present, new) = cand.map_or((true, false), |c| (c.present, c.new));
        t.push_str(&format!(
            "Stagegate-Candidate: {} {}\n",
            c.item,
            match (&c.to, present, new) {
                (Some(v), _, _) => v.as_str(),
                (None, false, _) => "(removed)",
                (None, true, true) => "(new)",
                (None, true, false) => "(changed)",
            }
        ));
    }
    for b in &rec.built {
        t.push_str(&format!("Stagegate-Built: {b}\n"));
    }
    for p in &rec.pushed {
        let key = if p.pushed {
            "Stagegate-Pushed"
        } else {
            "Stagegate-Push-Refused"
        };
        t.push_str(&format!("{key}: {} {} {}\n", p.item, p.branch, p.commit));
    }
    t.push_str(&format!("Stagegate-Decided-By: {}\n", rec.decided_by));
    t
}

/// Say `note` (T's head is a promotion the forge's squash or rebase button rewrote) on the
/// promotion request whose merge made `head`, once: the people who pressed the button read
/// it where they pressed it. Returns what was done, for the run's notes; a forge that
/// cannot be asked is a note too, never a failed promotion.
fn say_on_the_request(
    forge: &dyn crate::forge::Forge,
    from: &Stage,
    to: &Stage,
    head: ObjectId,
    note: &str,
) -> Option<String> {
    let kind = forge.kind();
    let branch = crate::forge::promotion_branch(&from.name, &to.name);
    let said = forge.requests_of_commit(&head.to_string()).and_then(|rs| {
        let Some(r) = rs.into_iter().find(|r| r.head_ref == branch && !r.open) else {
            return Ok(None);
        };
        let body = format!(
            "stagegate: {note}.\n\nThis {request} was merged with a button that rewrites commits (squash or rebase), so `{to}` does not hold the promotion commit stagegate made and the gate's decision was attached to.",
            request = kind.request(),
            to = to.name,
        );
        let marker = format!("<!-- stagegate:rewritten {head} -->");
        forge
            .comment_once(r.number, &marker, &body)
            .map(|new| new.then_some(r.number))
    });
    match said {
        Ok(Some(n)) => Some(format!(
            "said so on {} {}",
            kind.request(),
            kind.reference(n)
        )),
        Ok(None) => None,
        Err(e) => Some(format!(
            "could not say so on the {} that made {}: {e}",
            kind.request(),
            head.to_hex_with_len(crate::keys::COMMIT_DIGITS)
        )),
    }
}

/// When T's head is a promotion a forge's squash (or rebase) button rewrote — one parent
/// (or GitLab's merge of such a squash), a decision record added, none of stagegate's
/// trailers — say so on every run, and
/// whether it verifies as that promotion (DESIGN §6: never a silent divergence).
fn forge_rewrite_note(planner: &Planner, to: &Stage, head: ObjectId) -> Result<Option<String>> {
    let repo = planner.repo;
    let info = repo.commit(head)?;
    // One parent (a squash or rebase on T), or GitLab's merge of such a squash.
    let parent = match info.parents.as_slice() {
        [p] => p,
        [p, _] if verify::forge_squash_merge_of(repo, &info)?.is_some() => p,
        _ => return Ok(None),
    };
    if info.trailer("Stagegate-Decision").is_some() {
        return Ok(None);
    }
    let dir = records::decisions_dir(&to.name);
    let before = repo.list(repo.tree_of(*parent)?, &dir)?;
    let added = repo
        .list(info.tree, &dir)?
        .into_iter()
        .any(|e| !before.iter().any(|b| b.name == e.name));
    if !added {
        return Ok(None);
    }
    let v = verify::verify_commit(planner, to, head, None)?;
    let short = head.to_hex_with_len(crate::keys::COMMIT_DIGITS);
    Ok(Some(if v.holds {
        format!(
            "{}'s head {short} is a promotion squash- or rebase-merged by the forge: its tree is the promotion's and its decision verifies, but its history lost the promotion commit; merge promotion pull (or merge) requests with the merge button (GitLab: the merge-commit method, without squash), or let stagegate merge them once approved",
            to.name
        )
    } else {
        format!(
            "{}'s head {short} was squash- or rebase-merged by the forge and does not verify as a promotion: {}; revert it on {} and let stagegate promote again",
            to.name,
            v.problems.join("; "),
            to.branch
        )
    }))
}

/// The tree edits that take `moved` from S into T's tree: manifests, named files and build
/// records. `builds` are the passing build jobs of this decision (key, item).
pub fn moved_edits(
    planner: &Planner,
    plan: &MovePlan,
    moved: &[CandidateId],
    builds: &[(JobKey, crate::manifest::ItemId)],
    view: &LedgerView,
) -> Result<(crate::repo::Edits, Vec<String>)> {
    let repo = planner.repo;
    let s_tree = repo.tree_of(plan.from_head)?;
    let t_tree = repo.tree_of(plan.to_head)?;
    let mut edits = Vec::new();
    let mut built = Vec::new();
    for id in moved {
        let Some(c) = plan.candidate(id) else {
            continue;
        };
        for p in &c.paths {
            let e = repo.entry(s_tree, p)?;
            edits.push((p.clone(), e.map(|e| (e.kind, e.id))));
        }
        if let Some(item) = id.item() {
            // The build record goes with the item; T's record of an older version goes.
            let path = records::built_path(item);
            let here = repo.entry(s_tree, &path)?.filter(|_| c.present);
            if here.is_some() || repo.entry(t_tree, &path)?.is_some() {
                edits.push((path, here.map(|e| (e.kind, e.id))));
            }
        }
    }
    // What this gate built overrides any record carried from S.
    for (key, id) in builds {
        let Some(rec) = view.latest(key)? else {
            continue;
        };
        let (Some(artifact), true) = (
            rec.artifact.clone(),
            matches!(rec.verdict, Verdict::Pass | Verdict::Flaky),
        ) else {
            continue;
        };
        let job = &plan.jobs[key];
        let version = job
            .env
            .iter()
            .find(|x| &x.item == id)
            .map(|x| x.version.clone())
            .unwrap_or_default();
        let record = BuiltRecord {
            item: id.to_string(),
            version: version.clone(),
            digest: artifact.digest.clone(),
            size: artifact.size,
            location: artifact.location.clone(),
            lock: artifact.lock.clone(),
            cache: artifact.cache.clone(),
            build_job: key.clone(),
            builder: format!("{}@{}", rec.runner.user, rec.runner.host),
            built_at: rec.finished.clone(),
        };
        let blob = repo.write_blob(records::to_yaml(&record).as_bytes())?;
        edits.push((records::built_path(id), Some((EntryKind::Blob, blob))));
        built.push(format!("{id} {version} {}", artifact.digest));
    }
    Ok((edits, built))
}

/// Whether moving `moved` moves S whole: every candidate of the move is in it.
pub fn moves_whole(plan: &MovePlan, moved: &[CandidateId]) -> bool {
    plan.candidates.iter().all(|c| moved.contains(&c.id))
}

/// The tree T gets when `moved` moves, before the decision record is added.
pub fn promoted_tree(
    planner: &Planner,
    plan: &MovePlan,
    moved: &[CandidateId],
    builds: &[(JobKey, crate::manifest::ItemId)],
    view: &LedgerView,
) -> Result<(ObjectId, Vec<String>)> {
    let repo = planner.repo;
    let t_tree = repo.tree_of(plan.to_head)?;
    let (edits, built) = moved_edits(planner, plan, moved, builds, view)?;
    let base = if moves_whole(plan, moved) {
        // S's tree, with T's own records under .stagegate/ (S's holds and decisions are S's
        // business), then what moved overrides.
        let s_tree = repo.tree_of(plan.from_head)?;
        let mut pre = vec![(RECORDS_DIR.to_string(), None)];
        if let Some(r) = repo.entry(t_tree, RECORDS_DIR)? {
            pre.push((RECORDS_DIR.to_string(), Some((r.kind, r.id))));
        }
        repo.edit_tree(s_tree, &pre)?
    } else {
        t_tree
    };
    let tree = repo.edit_tree(base, &edits)?;
    Ok((tree, built))
}

/// The passing build jobs of the moving groups.
fn builds_of(plan: &MovePlan, decided: &Decided) -> Vec<(JobKey, crate::manifest::ItemId)> {
    let mut out = Vec::new();
    for i in &decided.moving {
        for k in &plan.groups[*i].required {
            let job = &plan.jobs[k];
            if job.kind == crate::plan::JobKind::Build
                && let Some(id) = job.candidates.first()
            {
                out.push((k.clone(), id.clone()));
            }
        }
    }
    out
}

/// A reason as a decision record keeps it: the same however often the same decision is
/// made (a soak's time left changes every minute; a pull request is re-used only while
/// its promotion commit says the same).
fn lasting(plan: &MovePlan, r: &gate::Reason) -> String {
    match (r.kind, plan.gate.soak) {
        (gate::ReasonKind::Soak, Some(soak)) => format!(
            "{} is still soaking on {} ({} soak)",
            r.item.as_deref().unwrap_or("it"),
            plan.from.name,
            humantime::format_duration(soak)
        ),
        // Which runners were seen is no part of a decision (heartbeats are not evidence,
        // and `verify` must derive the same record without them): it waits for a result.
        (gate::ReasonKind::Unserved, _) => format!(
            "{} has no result yet (run `{}`)",
            r.job
                .as_ref()
                .and_then(|k| plan.jobs.get(k))
                .map_or_else(|| "a job".to_string(), crate::plan::describe),
            crate::advice::Advice::Run
        ),
        _ => r.message.clone(),
    }
}

/// A promotion as the gate decided it: the tree T gets (before the decision record is
/// added), the decision record, and the jobs it rests on.
pub struct Promotion {
    pub tree: ObjectId,
    pub record: DecisionRecord,
    pub jobs: Vec<gate::JobVerdict>,
}

/// The promotion `decided` makes, with the ledger as `view` sees it and what the push gate
/// did (`pushed`): what [`promotion_commit`] writes, and what `verify` derives again to
/// compare, byte for byte, with a recorded decision.
pub fn promotion(
    planner: &Planner,
    plan: &MovePlan,
    decided: &Decided,
    opts: &Options,
    pushed: Vec<push_gate::PushRecord>,
    view: &LedgerView,
) -> Result<Promotion> {
    let moved = decided.moved(plan);
    let (tree, built) = promoted_tree(planner, plan, &moved, &builds_of(plan, decided), view)?;
    let mut jobs: Vec<gate::JobVerdict> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut overrides = Vec::new();
    for i in &decided.moving {
        let g = &decided.evaluation.groups[*i];
        jobs.extend(g.jobs.iter().cloned());
        notes.extend(g.reasons.iter().map(|r| r.message.clone()));
        overrides.extend(g.overrides.iter().cloned());
    }
    overrides.sort();
    overrides.dedup();
    if let Some(c) = &decided.combination
        && c.state == State::Promote
    {
        for j in &c.jobs {
            if !jobs.iter().any(|x| x.key == j.key) {
                jobs.push(j.clone());
            }
        }
    }
    let stayed: Vec<StayedRecord> = decided
        .evaluation
        .groups
        .iter()
        .filter(|g| !g.members.iter().any(|m| moved.contains(m)))
        .flat_map(|g| {
            g.members.iter().map(|m| StayedRecord {
                item: m.to_string(),
                state: if g.state == State::Promote {
                    "wait".into()
                } else {
                    g.state.to_string()
                },
                reasons: g.reasons.iter().map(|r| lasting(plan, r)).collect(),
            })
        })
        .collect();
    let mut rec = record(
        planner,
        plan,
        "promote",
        &moved,
        job_records(&jobs),
        notes,
        stayed,
        opts,
    )?;
    rec.built = built;
    rec.pushed = pushed;
    rec.overrides = overrides;
    rec.ledger = view.tip.map(|t| t.to_string());
    Ok(Promotion {
        tree,
        record: rec,
        jobs,
    })
}

/// Where a promotion's decision record goes in T's tree.
pub fn promotion_record_path(rec: &DecisionRecord, plan: &MovePlan) -> String {
    let stamp = rec.decided_at.replace([':', '-'], "");
    format!(
        "{}/{stamp}-{}.yaml",
        records::decisions_dir(&plan.to.name),
        short(plan.from_head)
    )
}

/// Write the promotion commit for what `decided` moves (no ref is moved), resting on the
/// ledger as `view` (the one the judgement read) holds it.
pub fn promotion_commit(
    planner: &Planner,
    plan: &MovePlan,
    decided: &Decided,
    opts: &Options,
    pushed: Vec<push_gate::PushRecord>,
    view: &LedgerView,
) -> Result<ObjectId> {
    let repo = planner.repo;
    let moved = decided.moved(plan);
    let Promotion {
        tree,
        record: rec,
        jobs,
    } = promotion(planner, plan, decided, opts, pushed, view)?;
    let path = promotion_record_path(&rec, plan);
    let blob = repo.write_blob(records::to_yaml(&rec).as_bytes())?;
    let tree = repo.edit_tree(tree, &[(path, Some((EntryKind::Blob, blob)))])?;
    let whole = moves_whole(plan, &moved);
    let msg = promotion_message(plan, &rec, &jobs, whole);
    let parents: Vec<ObjectId> = if whole {
        vec![plan.to_head, plan.from_head]
    } else {
        vec![plan.to_head]
    };
    repo.write_commit(tree, &parents, &msg)
}

/// The message of the promotion commit carrying `rec` (`whole`: S moves whole): what
/// [`promotion_commit`] writes, and what `verify` derives again to compare.
pub fn promotion_message(
    plan: &MovePlan,
    rec: &DecisionRecord,
    jobs: &[gate::JobVerdict],
    whole: bool,
) -> String {
    let mut body = String::new();
    body.push_str(&format!(
        "Tested on {} at {} \"{}\" against {}{}.\n",
        plan.from.name,
        short(plan.from_head),
        rec.subject,
        plan.to.name,
        if whole { "; all of it moves" } else { "" }
    ));
    if !jobs.is_empty() {
        body.push('\n');
        for j in jobs {
            let baseline = j
                .baseline
                .map(|b| format!(" (baseline: {b})"))
                .unwrap_or_default();
            body.push_str(&format!(
                "  {:<7} {}{baseline}\n",
                j.verdict.map_or("missing".into(), |v| v.to_string()),
                j.label
            ));
        }
    }
    for r in &rec.reasons {
        body.push_str(&format!("note: {r}\n"));
    }
    if !rec.stayed.is_empty() {
        body.push_str(&format!("\nStaying on {}:\n", plan.from.name));
        for s in &rec.stayed {
            body.push_str(&format!("  {} ({})\n", s.item, s.state));
        }
    }
    format!(
        "Promote to {}: {}\n\n{}\n{}",
        plan.to.name,
        candidates_line(rec),
        body,
        trailers(plan, "promote", jobs, rec)
    )
}
