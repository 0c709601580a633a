//! How decisions print: what `promote` (and `cycle`) decided for each move, as text or
//! JSON, with the step summary and outputs in GitHub Actions; poll's bumps; the label of a
//! candidate. Shared by the commands that show them.

use super::{Code, Format, print_json};
use crate::error::Result;
use crate::gate::State;
use crate::keys::{COMMIT_DIGITS, short_commit};
use crate::plan::CandidateId;
use crate::promote::MoveOutcome;

/// In GitHub Actions: the step summary and the step outputs for what was decided.
pub fn github_outputs(outcomes: &[MoveOutcome]) -> Result<()> {
    if !super::github::active() {
        return Ok(());
    }
    let summaries: Vec<crate::forge::PromotionSummary> =
        outcomes.iter().filter_map(|o| o.summary.clone()).collect();
    if !summaries.is_empty() {
        super::github::summary(&crate::forge::summary::render_step_summary(&summaries)?);
    }
    let decision = if outcomes.iter().any(|o| o.promoted.is_some()) {
        "promote"
    } else if code(outcomes) == 1 {
        "reject"
    } else {
        "wait"
    };
    let promoted: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.promoted.as_ref().map(|p| format!("{}:{p}", o.to)))
        .collect();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for o in outcomes {
        for g in o.evaluation.iter().flat_map(|e| &e.groups) {
            for (k, n) in crate::gate::counts(&g.jobs) {
                *counts.entry(k).or_default() += n;
            }
        }
    }
    let mut pairs = vec![
        ("decision", decision.to_string()),
        ("promoted", promoted.join(" ")),
    ];
    for v in ["pass", "fail", "flaky", "error", "missing"] {
        pairs.push((v, counts.get(v).copied().unwrap_or(0).to_string()));
    }
    super::github::outputs(&pairs);
    Ok(())
}

/// 1 when a rejected candidate is still pending after this run (it stays on S; nothing
/// else waits for it, but someone should look).
pub fn code(outcomes: &[MoveOutcome]) -> Code {
    if outcomes.iter().any(MoveOutcome::has_new_rejection) {
        1
    } else {
        0
    }
}

pub fn decisions(outcomes: &[MoveOutcome], format: Format, dry_run: bool) {
    if format == Format::Json {
        print_json(&outcomes);
        return;
    }
    for o in outcomes {
        let head = format!("{} → {}", o.from, o.to);
        let moved: Vec<String> = o.moved.iter().map(|m| m.to_string()).collect();
        match &o.promoted {
            Some(m) => println!(
                "{head}: promoted {} as {}",
                moved.join(", "),
                short_commit(m, COMMIT_DIGITS)
            ),
            None if dry_run && !moved.is_empty() => {
                println!("{head}: would promote {}", moved.join(", "))
            }
            _ if o.candidates.is_empty() => println!("{head}: nothing pending"),
            _ => println!("{head}: nothing to promote"),
        }
        for c in &o.candidates {
            let label = candidate_label(
                &c.item,
                c.from.as_deref(),
                c.to.as_deref(),
                c.present,
                c.new,
            );
            if c.state == State::Promote && (c.moved || dry_run) {
                println!("  {label}: promote ({})", c.results);
                continue;
            }
            let state = if c.state == State::Promote {
                State::Wait
            } else {
                c.state
            };
            println!("  {label}: {state}");
            for r in &c.reasons {
                println!("    - {r}");
            }
        }
        for r in &o.rejected {
            println!("  recorded the rejection of {r} in the results ledger");
        }
        for n in &o.notes {
            println!("  {n}");
        }
        for p in &o.pushed {
            println!("  push gate: {p}");
        }
        for a in &o.attested {
            match &a.location {
                Ok(at) => println!(
                    "  attested {} {}: a signed verification summary at {at} (check: stagegate verify --artifact {} --stage {})",
                    a.item, a.digest, a.digest, a.stage
                ),
                Err(e) => println!(
                    "  attested {} {} in the results ledger ({}); the store refused it: {e}",
                    a.item, a.digest, a.ledger
                ),
            }
        }
    }
}

/// `components/xen 1 → 3`, `images/host new at 2`, `images/old removed (was 1)`,
/// `tests/boot changed`.
pub fn candidate_label(
    id: &CandidateId,
    from: Option<&str>,
    to: Option<&str>,
    present: bool,
    new: bool,
) -> String {
    match (from, to) {
        _ if !present => match from {
            Some(f) => format!("{id} removed (was {f})"),
            None => format!("{id} removed"),
        },
        (None, None) if new => format!("{id} new"),
        (None, Some(to)) => format!("{id} new at {to}"),
        (Some(from), Some(to)) if from == to => format!("{id} {to}, files changed"),
        (Some(from), Some(to)) => format!("{id} {from} → {to}"),
        _ => format!("{id} changed"),
    }
}

/// What poll committed (or would), as text or JSON.
pub fn bumps(bumps: &[crate::poll::Bump], format: Format) {
    match format {
        Format::Json => print_json(&bumps),
        Format::Text => {
            if bumps.is_empty() {
                println!("poll: nothing new");
            }
            for b in bumps {
                let commit = b
                    .commit
                    .as_deref()
                    .map(|c| format!(" ({})", short_commit(c, COMMIT_DIGITS)))
                    .unwrap_or_else(|| " (dry run)".into());
                println!(
                    "poll: {} {} → {}: {}{commit}",
                    b.item, b.from, b.to, b.reason
                );
            }
        }
    }
}
