//! Promotion: merge commits into the next stage, with the decision committed as YAML.
//!
//! For a move S → T the gate's chosen commit C is merged into T with a merge commit whose
//! first parent is T's head and second C (never a rewrite). Its tree is C's tree with T's
//! own records kept: T's decisions and holds, and every built record (T's, overridden by
//! C's, overridden by what this gate built), plus this decision. Trailers in the message
//! make `git log --first-parent T` an audit trail on its own. The ref moves by
//! compare-and-swap: if T moved since we looked, we plan and decide again, never clobber.
//!
//! Rejections are recorded in the results ledger (`decisions/<T>/<commit>.yaml`), not on
//! S: a rejection is a fact about results, and a commit on S would itself be a new pending
//! commit (and, on every later run, another). `git log refs/stagegate/results` and
//! `stagegate log` show them.

pub mod edits;
pub mod push_gate;
pub mod review;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gate::{self, Decision, Evaluation, Holds};
use crate::ledger::{Ledger, Verdict};
use crate::manifest::{Gate, ItemId, ItemKind, Stage};
use crate::plan::{MovePlan, Planner, short};
use crate::records::{self, BuiltRecord, HoldRecord, RECORDS_DIR};
use crate::repo::{Cas, Repo};

/// A decision, as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DecisionRecord {
    pub decision: String,
    pub from: String,
    pub to: String,
    /// The commit of S that was tested.
    pub tested: String,
    pub subject: String,
    /// T's head the decision was made against.
    pub into: String,
    pub decided_by: String,
    pub decided_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_url: Option<String>,
    pub gate: GateRecord,
    pub candidates: Vec<CandidateRecord>,
    pub jobs: Vec<JobRecord>,
    #[serde(default)]
    pub built: Vec<String>,
    /// The component push gate's pushes (into the last stage only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<push_gate::PushRecord>,
    #[serde(default)]
    pub reasons: Vec<String>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobRecord {
    pub key: String,
    pub job: String,
    pub verdict: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_key: Option<String>,
}

/// What `promote` did for one move.
#[derive(Debug, Clone, Serialize)]
pub struct MoveOutcome {
    pub from: String,
    pub to: String,
    /// The merge commit made on T, if one was.
    pub promoted: Option<String>,
    pub tested: Option<String>,
    /// Commits whose rejection was recorded by this run.
    pub rejected: Vec<String>,
    pub evaluations: Vec<Evaluation>,
    /// Items pushed to their own repository's branch (the component push gate).
    pub pushed: Vec<String>,
    pub notes: Vec<String>,
    /// The newest evaluated commit (the promoted one, when one was), for people: the
    /// pull request body, the step summary, the check run.
    #[serde(skip)]
    pub summary: Option<crate::forge::PromotionSummary>,
}

pub struct Options<'a> {
    pub dry_run: bool,
    pub by: String,
    pub ci_url: Option<String>,
    /// The forge, when one is configured: promotions through pull requests (gates with
    /// `review: true`) and check runs on tested commits.
    pub review: Option<review::Review<'a>>,
    /// Promote through pull requests whatever the gates say (`--review`).
    pub force_review: bool,
}

/// Holds in force on `stage`, read from its head.
pub fn holds(repo: &Repo, stage: &Stage, head: ObjectId) -> Result<Holds> {
    let tree = repo.tree_of(head)?;
    let mut out = Holds::new();
    for e in repo.list(tree, &records::holds_dir(&stage.name))? {
        if e.kind == EntryKind::Tree {
            continue;
        }
        let path = format!("{}/{}", records::holds_dir(&stage.name), e.name);
        let h: HoldRecord = records::parse(&path, &repo.blob(e.id)?)?;
        if let Some(id) = ItemId::parse(&h.item) {
            out.insert(id, h);
        }
    }
    Ok(out)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

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
        let view = ledger.view()?;
        let holds = holds(repo, from, plan.from_head)?;
        let evals = gate::evaluate(&plan, &view, &holds, now())?;
        let mut outcome = MoveOutcome {
            from: from.name.clone(),
            to: to.name.clone(),
            promoted: None,
            tested: None,
            rejected: Vec::new(),
            evaluations: Vec::new(),
            pushed: Vec::new(),
            notes: Vec::new(),
            summary: None,
        };
        let reviewed = plan.gate.review || opts.force_review;
        if reviewed && opts.review.is_none() && !opts.dry_run {
            return Err(Error::usage_help(
                format!(
                    "promotion into {} goes through a pull request, and no forge is configured",
                    to.name
                ),
                "set GITHUB_TOKEN and GITHUB_REPOSITORY (the Action does), or set `review: false` on the gate",
            ));
        }
        if !opts.dry_run {
            outcome.rejected = record_rejections(planner, &plan, &evals, opts)?;
        }
        let chosen = gate::pick(&evals).cloned();
        if let Some(e) = chosen.as_ref().or(evals.first()) {
            let s = review::summary(planner, &plan, e)?;
            // A forge sees only what was pushed: a check on a commit it lacks is refused.
            if let (Some(r), false) = (&opts.review, opts.dry_run)
                && crate::repo::remote::is_published(repo, e.commit, &from.branch)?
            {
                review::post_check(&plan, &s, r, reviewed)?;
            }
            outcome.summary = Some(s);
        }
        let Some(chosen) = chosen else {
            if let (Some(r), Some(newest), true, false) =
                (&opts.review, evals.first(), reviewed, opts.dry_run)
                && let Some(note) = review::redden(&plan, newest, r)?
            {
                outcome.notes.push(note);
            }
            outcome.evaluations = evals;
            return Ok(outcome);
        };
        outcome.tested = Some(chosen.commit.to_string());
        if opts.dry_run {
            outcome.evaluations = evals;
            return Ok(outcome);
        }
        if reviewed && let Some(r) = &opts.review {
            let summary = outcome.summary.clone().expect("made above");
            // The pull request carries the merge commit without push-gate results: merging
            // it is the promotion, so components are pushed only once it is merged.
            let done = review::via_pull_request(planner, &plan, &summary, r, || {
                merge_commit(planner, &plan, &chosen, opts, Vec::new())
            })?;
            outcome.notes.extend(done.notes);
            if done.promoted.is_some() {
                let pushed = push_gate::push_components(planner, &plan, chosen.commit)?;
                outcome.pushed = pushed.iter().map(push_gate::PushRecord::describe).collect();
            }
            outcome.promoted = done.promoted.map(|m| m.to_string());
            outcome.evaluations = evals;
            return Ok(outcome);
        }
        if let Some((merge, pushed)) = apply(planner, &plan, &chosen, opts)? {
            outcome.pushed = pushed.iter().map(push_gate::PushRecord::describe).collect();
            outcome.promoted = Some(merge.to_string());
            outcome.evaluations = evals;
            return Ok(outcome);
        }
        // Someone else moved T between our look and our update: decide again.
    }
    Err(Error::infra_help(
        format!("{} kept moving while promoting into it", to.branch),
        "another promoter is active; run promote again when it is done",
    ))
}

/// Merge `chosen` into T as decided against `plan`. Returns the merge commit and what the
/// push gate did, or `None` when T is no longer where the plan saw it (nothing is written
/// to T then).
pub fn apply(
    planner: &Planner,
    plan: &MovePlan,
    chosen: &Evaluation,
    opts: &Options,
) -> Result<Option<(ObjectId, Vec<push_gate::PushRecord>)>> {
    let repo = planner.repo;
    let pushed = push_gate::push_components(planner, plan, chosen.commit)?;
    let merge = merge_commit(planner, plan, chosen, opts, pushed.clone())?;
    let reflog = format!(
        "stagegate: promote {} into {}",
        short(chosen.commit),
        plan.to.name
    );
    match repo.cas(&plan.to.ref_name(), Some(plan.to_head), merge, &reflog)? {
        Cas::Updated => {
            crate::repo::remote::sync_worktree(repo, &plan.to.branch, plan.to_head, merge);
            Ok(Some((merge, pushed)))
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

fn decision_record(
    plan: &MovePlan,
    e: &Evaluation,
    opts: &Options,
    built: Vec<String>,
) -> DecisionRecord {
    let pending = plan
        .pending
        .iter()
        .find(|p| p.commit == e.commit)
        .expect("evaluated commits are pending");
    DecisionRecord {
        decision: e.decision.to_string(),
        from: plan.from.name.clone(),
        to: plan.to.name.clone(),
        tested: e.commit.to_string(),
        subject: e.subject.clone(),
        into: plan.to_head.to_string(),
        decided_by: opts.by.clone(),
        decided_at: records::now_rfc3339(),
        ci_url: opts.ci_url.clone(),
        gate: gate_record(&plan.gate),
        candidates: pending
            .candidates
            .iter()
            .map(|c| CandidateRecord {
                item: c.item.to_string(),
                from: c.from.clone(),
                to: c.to.clone(),
            })
            .collect(),
        jobs: e
            .jobs
            .iter()
            .map(|j| JobRecord {
                key: j.key.clone(),
                job: j.label.clone(),
                verdict: j.verdict.map_or("missing".into(), |v| v.to_string()),
                state: format!("{:?}", j.state),
                baseline: j.baseline.map(|v| v.to_string()),
                baseline_key: j.baseline_key.clone(),
            })
            .collect(),
        built,
        pushed: Vec::new(),
        reasons: e.reasons.iter().map(|r| r.message.clone()).collect(),
    }
}

/// Record each newly rejected commit in the ledger, once.
fn record_rejections(
    planner: &Planner,
    plan: &MovePlan,
    evals: &[Evaluation],
    opts: &Options,
) -> Result<Vec<String>> {
    let repo = planner.repo;
    let reference = &planner.pipeline.results_ref;
    let mut done = Vec::new();
    for e in evals.iter().filter(|e| e.decision == Decision::Reject) {
        let path = format!("decisions/{}/{}.yaml", plan.to.name, e.commit);
        for _ in 0..20 {
            let tip = repo.ref_target(reference)?;
            let base = match tip {
                Some(t) => repo.tree_of(t)?,
                None => ObjectId::empty_tree(gix::hash::Kind::Sha1),
            };
            if repo.entry(base, &path)?.is_some() {
                break;
            }
            let rec = decision_record(plan, e, opts, Vec::new());
            let blob = repo.write_blob(records::to_yaml(&rec).as_bytes())?;
            let tree = repo.edit_tree(base, &[(path.clone(), Some((EntryKind::Blob, blob)))])?;
            let msg = rejection_message(plan, e, &rec);
            let commit = repo.write_commit(tree, &tip.into_iter().collect::<Vec<_>>(), &msg)?;
            if repo.cas(reference, tip, commit, "stagegate: record rejection")? == Cas::Updated {
                done.push(e.commit.to_string());
                break;
            }
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

fn trailers(plan: &MovePlan, e: &Evaluation, rec: &DecisionRecord) -> String {
    let mut t = format!(
        "Stagegate-Decision: {}\nStagegate-Stage: {} -> {}\nStagegate-Tested: {}\nStagegate-Results: {}\n",
        e.decision,
        plan.from.name,
        plan.to.name,
        e.commit,
        gate::counts_line(e)
    );
    for c in &rec.candidates {
        t.push_str(&format!(
            "Stagegate-Candidate: {} {}\n",
            c.item,
            c.to.as_deref().unwrap_or("(removed)")
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

fn rejection_message(plan: &MovePlan, e: &Evaluation, rec: &DecisionRecord) -> String {
    let mut body = String::new();
    for r in &e.reasons {
        body.push_str(&format!("- {}\n", r.message));
    }
    format!(
        "Reject {} for {}: {}\n\n{}\nUse `stagegate drop ITEM` on {} to let later commits move.\n\n{}",
        short(e.commit),
        plan.to.name,
        candidates_line(rec),
        body,
        plan.from.name,
        trailers(plan, e, rec)
    )
}

/// Write the merge commit for promoting `e.commit` into T (no ref is moved).
fn merge_commit(
    planner: &Planner,
    plan: &MovePlan,
    e: &Evaluation,
    opts: &Options,
    pushed: Vec<push_gate::PushRecord>,
) -> Result<ObjectId> {
    let repo = planner.repo;
    let c_tree = repo.tree_of(e.commit)?;
    let t_tree = repo.tree_of(plan.to_head)?;
    let mut edits: Vec<(String, Option<(EntryKind, ObjectId)>)> = Vec::new();

    // T's own holds and decisions; the tested commit's holds were its stage's business.
    let holds = format!("{RECORDS_DIR}/holds");
    edits.push((holds.clone(), None));
    if let Some(h) = repo.entry(t_tree, &holds)? {
        edits.push((holds, Some((h.kind, h.id))));
    }
    let t_decisions = records::decisions_dir(&plan.to.name);
    if let Some(d) = repo.entry(t_tree, &t_decisions)? {
        edits.push((t_decisions.clone(), Some((d.kind, d.id))));
    }
    // Built records: T's, unless the tested commit has its own.
    for kind in ItemKind::ALL {
        let dir = format!("{RECORDS_DIR}/built/{}", kind.dir());
        let ours: Vec<String> = repo
            .list(c_tree, &dir)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        for e in repo.list(t_tree, &dir)? {
            if !ours.contains(&e.name) {
                edits.push((format!("{dir}/{}", e.name), Some((e.kind, e.id))));
            }
        }
    }
    // What this gate built.
    let mut built = Vec::new();
    let view = Ledger::new(repo, &planner.pipeline.results_ref).view()?;
    for j in e
        .jobs
        .iter()
        .filter(|j| j.kind == crate::plan::JobKind::Build)
    {
        let Some(rec) = view.latest(&j.key)? else {
            continue;
        };
        let (Some(artifact), true) = (
            rec.artifact.clone(),
            matches!(rec.verdict, Verdict::Pass | Verdict::Flaky),
        ) else {
            continue;
        };
        let Some(id) = j.candidates.first() else {
            continue;
        };
        let job = &plan.jobs[&j.key];
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
            build_job: j.key.clone(),
            builder: format!("{}@{}", rec.runner.user, rec.runner.host),
            built_at: rec.finished.clone(),
        };
        let blob = repo.write_blob(records::to_yaml(&record).as_bytes())?;
        edits.push((records::built_path(id), Some((EntryKind::Blob, blob))));
        built.push(format!("{id} {version} {}", artifact.digest));
    }
    let mut rec = decision_record(plan, e, opts, built);
    rec.pushed = pushed;
    let stamp = rec.decided_at.replace([':', '-'], "");
    let path = format!(
        "{}/{stamp}-{}.yaml",
        records::decisions_dir(&plan.to.name),
        short(e.commit)
    );
    let blob = repo.write_blob(records::to_yaml(&rec).as_bytes())?;
    edits.push((path, Some((EntryKind::Blob, blob))));
    let tree = repo.edit_tree(c_tree, &edits)?;

    let mut body = String::new();
    body.push_str(&format!(
        "Tested {} \"{}\" on {} against {}.\n",
        short(e.commit),
        e.subject,
        plan.from.name,
        plan.to.name
    ));
    if !e.jobs.is_empty() {
        body.push('\n');
        for j in &e.jobs {
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
    for r in &e.reasons {
        body.push_str(&format!("note: {}\n", r.message));
    }
    let msg = format!(
        "Promote to {}: {}\n\n{}\n{}",
        plan.to.name,
        candidates_line(&rec),
        body,
        trailers(plan, e, &rec)
    );
    repo.write_commit(tree, &[plan.to_head, e.commit], &msg)
}
