//! `stagegate why ITEM`: why an item is or is not promoted.

use crate::advice::Advice;
use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::gate::{GroupEval, JobState, ReasonKind, State};
use crate::keys::{ContentKey, JobKey, LONG_COMMIT_DIGITS, short_commit};
use crate::ledger::Ledger;
use crate::plan::candidate::content_of;
use crate::plan::{CandidateId, Planner};

/// Explain where ITEM stands: its version on every stage and, for each stage it is pending
/// on, every requirement of the gate and its state (missing results, failing jobs with
/// their log excerpt, fails-like-baseline, soak time left, holds, a recorded rejection,
/// an invalid manifest). Works for images, components, tests and the pipeline.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The candidate: images/NAME, components/NAME, tests/NAME or stagegate.yaml.
    pub item: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct StageVersion {
    stage: String,
    /// The item's version there (`None`: absent, or not an item).
    version: Option<String>,
    /// Whether the stage has it at all.
    present: bool,
    /// The content key there (what rejections and approvals are about).
    content: ContentKey,
}

#[derive(Serialize)]
struct PendingWhy {
    from: String,
    to: String,
    state: State,
    with: Vec<CandidateId>,
    evaluation: Option<GroupEval>,
    notes: Vec<String>,
    /// For an image: how the candidate's package set differs from the target stage's.
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<super::packages::PackageChanges>,
    /// Records T's `trust:` does not count, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_counted: Vec<crate::trust::NotCounted>,
    /// Records a ledger commit deleted, weighed as they were.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    restored: Vec<crate::trust::Deleted>,
    /// For a recorded rejection: the results it rests on that are not among the move's
    /// jobs (whose keys changed when T moved on since), with their excerpts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rejected_by: Vec<RejectedBy>,
}

/// A result a recorded rejection rests on.
#[derive(Serialize)]
struct RejectedBy {
    key: JobKey,
    job: String,
    verdict: crate::ledger::Verdict,
    excerpt: String,
}

#[derive(Serialize)]
struct Why {
    item: String,
    stages: Vec<StageVersion>,
    pending: Vec<PendingWhy>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let id = crate::promote::edits::parse_candidate(&planner, &args.item)?;
    let mut stages = Vec::new();
    for s in &planner.pipeline.stages {
        let snap = planner.snapshot(planner.stage_head(s)?)?;
        let (content, _) = content_of(&snap, &id)?;
        stages.push(StageVersion {
            stage: s.name.clone(),
            version: id
                .item()
                .and_then(|i| snap.item(i).ok().flatten())
                .map(|(_, it)| it.version.clone()),
            present: content.manifest.is_some(),
            content: content.key(&id),
        });
    }
    if stages.iter().all(|s| !s.present) && id != CandidateId::Files {
        return Err(Error::usage_help(
            format!("{id} exists on no stage"),
            format!(
                "`{}` lists what is pending; check the spelling",
                Advice::Status
            ),
        ));
    }
    let view = Ledger::new(repo, &planner.pipeline.results_ref).view()?;
    let mut pending = Vec::new();
    for (s, t) in planner.pipeline.moves() {
        let plan = planner.plan_move(s, t)?;
        if plan.candidate(&id).is_none() {
            continue;
        }
        let judgement = crate::judge::judge(&planner, plan, &view, ctx.now())?;
        let (plan, decided) = (&judgement.plan, &judgement.decided);
        let g = judgement.group(&id).cloned();
        let state = judgement.state(&id);
        let moving = judgement.moved().contains(&id);
        let packages = match (&id, &g) {
            (CandidateId::Item(item), Some(g)) => package_changes(&planner, &view, plan, g, item)?,
            _ => None,
        };
        let mut notes = if moving || state != State::Wait {
            Vec::new()
        } else {
            decided.notes.clone()
        };
        // A rejected component whose upstream commits can be searched: say how, unless a
        // bisect already named the commit.
        let bisected = g.as_ref().is_some_and(|g| {
            g.reasons
                .iter()
                .any(|r| r.kind == crate::gate::ReasonKind::Bisect)
        });
        let bisectable = || match &id {
            CandidateId::Item(item) if item.kind == crate::manifest::ItemKind::Component => {
                crate::bisect::target_in(&planner, &judgement, item).is_ok()
            }
            _ => false,
        };
        if state == State::Rejected && !bisected && bisectable() {
            notes.push(format!(
                "bisect: `{}` names the upstream commit that broke it",
                Advice::Bisect {
                    item: id.to_string()
                }
            ));
        }
        // The results a standing rejection rests on that are not among the move's jobs
        // now (T moved on since, so the jobs have other keys): without them, `why` would
        // not show what failed.
        let mut rejected_by = Vec::new();
        if state == State::Rejected
            && let Some(c) = plan.candidate(&id)
            && let Some(r) = judgement.facts.rejected.get(&c.content)
        {
            let shown: Vec<&JobKey> = g
                .iter()
                .flat_map(|g| g.jobs.iter().map(|j| &j.key))
                .collect();
            for key in r.failed.iter().filter(|k| !shown.contains(k)) {
                if let Some(res) = view.latest(key)? {
                    rejected_by.push(RejectedBy {
                        key: key.clone(),
                        job: res.name.clone(),
                        verdict: res.verdict,
                        excerpt: res.excerpt.clone(),
                    });
                }
            }
        }
        pending.push(PendingWhy {
            from: s.name.clone(),
            to: t.name.clone(),
            state,
            with: g
                .as_ref()
                .map(|g| g.members.iter().filter(|m| **m != id).cloned().collect())
                .unwrap_or_default(),
            evaluation: g,
            notes,
            packages,
            not_counted: judgement.not_counted.clone(),
            restored: judgement.restored.clone(),
            rejected_by,
        });
    }
    let why = Why {
        item: id.to_string(),
        stages,
        pending,
    };
    match args.format {
        Format::Json => print_json(&why),
        Format::Text => print_text(&why, &id),
    }
    Ok(0)
}

/// How the candidate item's package set (its build from S) differs from T's build.
fn package_changes(
    planner: &Planner,
    view: &crate::ledger::LedgerView,
    plan: &crate::plan::MovePlan,
    g: &GroupEval,
    id: &crate::manifest::ItemId,
) -> Result<Option<super::packages::PackageChanges>> {
    use super::packages;
    let (ss, ts) = (
        planner.snapshot(plan.from_head)?,
        planner.snapshot(plan.to_head)?,
    );
    // Only an item with a build (an image, or a component built as the Xen example's is)
    // has a package set; an invalid manifest has none to show.
    match ss.item(id) {
        Ok(Some((_, item))) if item.build.is_some() => {}
        _ => return Ok(None),
    }
    let (Some(new), Some(old)) = (
        packages::candidate(&ss, &plan.from.name, view, &g.jobs, id)?,
        packages::recorded(&ts, id, &plan.to.name)?,
    ) else {
        return Ok(None);
    };
    Ok(packages::compare(id, old, new))
}

/// The records the gate into `to` did not weigh, one line each.
pub fn print_not_counted(
    not_counted: &[crate::trust::NotCounted],
    restored: &[crate::trust::Deleted],
    to: &str,
) {
    if !restored.is_empty() {
        println!(
            "  restored ({} record(s) a ledger commit deleted; the ledger only grows, so they count as they were):",
            restored.len()
        );
        for d in restored {
            println!(
                "    {} — deleted by commit {}",
                d.path,
                short_commit(&d.commit, LONG_COMMIT_DIGITS)
            );
        }
    }
    if not_counted.is_empty() {
        return;
    }
    println!(
        "  not counted ({} record(s); the trust: of {to} counts signed evidence only):",
        not_counted.len()
    );
    for n in not_counted {
        println!(
            "    {} — {} (ledger commit {})",
            n.path,
            n.why,
            short_commit(&n.commit, LONG_COMMIT_DIGITS)
        );
    }
}

/// How much of the excerpt of each result a rejection rests on `why` prints.
const REJECTED_EXCERPT_LINES: usize = 20;

fn print_text(why: &Why, id: &CandidateId) {
    let versions: Vec<String> = why
        .stages
        .iter()
        .map(|s| {
            let v = match (&s.version, s.present) {
                (_, false) => "(absent)".to_string(),
                (Some(v), true) => v.clone(),
                (None, true) => format!("content {}", s.content.short()),
            };
            format!("{} {v}", s.stage)
        })
        .collect();
    println!("{id}: {}", versions.join(", "));
    if why.pending.is_empty() {
        println!(
            "not pending anywhere: every stage that has it holds the same content as the next"
        );
        return;
    }
    let item = id.to_string();
    for p in &why.pending {
        let verdict = match p.state {
            State::Promote => "ready to promote",
            State::Rejected => "rejected",
            State::Wait => "waiting",
            State::Held => "held",
            State::Invalid => "invalid",
        };
        println!("\n{} → {}: {verdict}", p.from, p.to);
        if !p.with.is_empty() {
            let with: Vec<String> = p.with.iter().map(|w| w.to_string()).collect();
            println!("  judged together with {}", with.join(", "));
        }
        let Some(e) = &p.evaluation else { continue };
        if e.jobs.is_empty() && e.state == State::Promote {
            println!("  no jobs are required by the gate into {}", p.to);
        }
        for j in &e.jobs {
            let mark = match j.state {
                JobState::Passed | JobState::Flaky => "ok  ",
                JobState::FailsLikeBaseline
                | JobState::Waived
                | JobState::HeisenbugAllowed
                | JobState::Quarantined => "ok~ ",
                JobState::Missing | JobState::HeisenbugWaiting => "... ",
                _ => "FAIL",
            };
            let verdict = j.verdict.map_or("no result".to_string(), |v| v.to_string());
            let baseline = match (&j.baseline_key, j.baseline) {
                (Some(_), Some(b)) => format!(", baseline {b}"),
                (Some(_), None) => ", baseline has no result".into(),
                _ => String::new(),
            };
            println!(
                "  {mark} {} — {verdict}{baseline} (key {})",
                j.label,
                j.key.short()
            );
            print_history(e, j);
            // A group whose rejection stands runs nothing: its way out is in its reasons.
            // A job no live runner can serve says so, and since when (README: Host labels).
            let unserved = e.reasons.iter().find(|r| {
                r.kind == crate::gate::ReasonKind::Unserved && r.job.as_ref() == Some(&j.key)
            });
            if let Some(r) = unserved.filter(|_| !e.sticky) {
                let why = r
                    .message
                    .strip_prefix(j.label.as_str())
                    .unwrap_or(&r.message);
                println!("         waits: {}", why.trim_start());
            } else if j.state == JobState::Missing && !e.sticky && j.needs.is_empty() {
                println!(
                    "         next: `{}` (or `{}`)",
                    Advice::Run,
                    Advice::RunJob { key: j.key.clone() }
                );
            } else if j.state == JobState::Missing && !e.sticky {
                println!(
                    "         next: `{}` on a host that has {}",
                    Advice::run_with(&j.needs),
                    j.needs.join(", ")
                );
            }
            if matches!(
                j.state,
                JobState::Regression
                    | JobState::Error
                    | JobState::ErrorWaiting
                    | JobState::Errored
                    | JobState::FailsLikeBaseline
                    | JobState::FailedBaselineMissing
            ) {
                if let Some(r) = &j.reason {
                    println!("         reason: {r}");
                }
                if let Some(l) = &j.log {
                    println!(
                        "         log: {l} (`{}` prints it)",
                        Advice::LogOf { key: j.key.clone() }
                    );
                }
                if let Some(x) = &j.excerpt {
                    for line in x
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        println!("         | {line}");
                    }
                }
            }
        }
        for r in &p.rejected_by {
            println!(
                "  rejected on: {} — {} (key {}); the end of its excerpt:",
                r.job,
                r.verdict,
                r.key.short()
            );
            let lines: Vec<&str> = r.excerpt.lines().collect();
            for line in &lines[lines.len().saturating_sub(REJECTED_EXCERPT_LINES)..] {
                println!("         | {line}");
            }
        }
        if let Some(c) = &p.packages {
            super::packages::print_text(c, "  ");
        }
        print_not_counted(&p.not_counted, &p.restored, &p.to);
        for o in &e.overrides {
            println!("  override: {}", o.line());
        }
        for r in e.reasons.iter().filter(|r| r.job.is_none()) {
            let mine = r.item.as_deref().is_none_or(|i| i == item);
            if mine {
                println!("  {}: {}", r.kind, r.message);
            } else {
                println!(
                    "  {} (of {}): {}",
                    r.kind,
                    r.item.as_deref().unwrap_or("?"),
                    r.message
                );
            }
        }
        for n in &p.notes {
            println!("  {n}");
        }
    }
}

/// A job's flake history, when there is more than one attempt or it is flaky, and what the
/// gate made of it (heisenbug, quarantine, waiver).
fn print_history(e: &GroupEval, j: &crate::gate::JobVerdict) {
    let flaky = matches!(
        j.state,
        JobState::Heisenbug | JobState::HeisenbugWaiting | JobState::HeisenbugAllowed
    );
    if j.history.runs > 1 || flaky {
        println!("         history: {}", j.history.line());
    }
    if let Some(b) = &j.baseline_history
        && (b.runs > 1 || flaky || b.never_passed())
    {
        println!("         baseline history: {}", b.line());
    }
    for r in e.reasons.iter().filter(|r| {
        r.job.as_ref() == Some(&j.key)
            && matches!(
                r.kind,
                ReasonKind::Heisenbug
                    | ReasonKind::Quarantined
                    | ReasonKind::Waived
                    | ReasonKind::Error
                    | ReasonKind::Errored
            )
    }) {
        println!("         {}: {}", r.kind, r.message);
    }
}
