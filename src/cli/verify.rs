//! `stagegate verify [REV]`: replay a promotion's decision from git alone.

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::keys::{COMMIT_DIGITS, short_commit};
use crate::promote::attest;
use crate::promote::verify::{Verdict, gated_stage, verify_commit};

/// Re-derive the decision of a commit on a gated stage from git alone — T's pipeline of the
/// time, the results the ledger held then, the holds, waivers and approvals — and say
/// whether it holds: the gate moves exactly what the commit moved, its tree is T's plus
/// exactly that, its decision record is the gate's byte for byte, and the ledger commit the
/// decision rests on is still in the ledger's history (a rewound or deleted ledger is
/// reported). Holds, releases and drops are checked for touching only what they may.
///
/// With `--artifact DIGEST`, check instead the signed verification summaries (SLSA VSA)
/// of that artifact, from the results ledger and the artifact store: signed by a runner key
/// the `trust:` of its stage lists, about that digest, naming the pipeline and the results
/// of the promotion that earned it, and that promotion replayed as above.
///
/// Exits 0 when everything holds, 1 when something does not.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit to check (default: the head of every gated stage).
    #[arg(conflicts_with = "artifact")]
    pub rev: Option<String>,
    /// The stage REV is on (default: from its `Stagegate-Stage` trailer); with
    /// --artifact, the stage whose summary to check (default: every stage's).
    #[arg(long)]
    pub stage: Option<String>,
    /// Check the signed verification summaries of the artifact with this digest
    /// (`sha256:<hex>`, as its build record says) instead of a commit.
    #[arg(long, value_name = "DIGEST")]
    pub artifact: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct Checked {
    stage: String,
    #[serde(flatten)]
    verdict: Verdict,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    if let Some(digest) = &args.artifact {
        return artifact(&planner, digest, args.stage.as_deref(), args.format);
    }
    let repo = planner.repo;
    let mut targets = Vec::new();
    match &args.rev {
        Some(rev) => {
            let id = repo.resolve(rev)?;
            let stage = match &args.stage {
                Some(s) => planner.stage(s)?.clone(),
                None => {
                    let info = repo.commit(id)?;
                    let to = info
                        .trailer("Stagegate-Stage")
                        .and_then(|s| s.rsplit(" -> ").next())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            Error::usage_help(
                                format!("{rev} carries no Stagegate-Stage trailer"),
                                "name the stage it is on with --stage",
                            )
                        })?;
                    planner.stage(&to)?.clone()
                }
            };
            targets.push((stage, id));
        }
        None => {
            for (_, t) in planner.pipeline.moves() {
                targets.push((t.clone(), planner.stage_head(t)?));
            }
        }
    }
    let mut out = Vec::new();
    for (stage, id) in targets {
        if args.rev.is_none() && gated_stage(&planner, &stage.ref_name()).is_none() {
            continue;
        }
        out.push(Checked {
            stage: stage.name.clone(),
            verdict: verify_commit(&planner, &stage, id, None)?,
        });
    }
    match args.format {
        Format::Json => print_json(&out),
        Format::Text => {
            for c in &out {
                print_verdict(&c.stage, &c.verdict, &mut std::io::stdout());
            }
            let unsigned: Vec<&str> = planner
                .pipeline
                .moves()
                .filter(|(_, t)| out.iter().any(|c| c.stage == t.name))
                .filter(|(_, t)| {
                    planner
                        .stage_head(t)
                        .and_then(|h| planner.trust_of(h))
                        .is_ok_and(|tr| tr.is_none())
                })
                .map(|(_, t)| t.name.as_str())
                .collect();
            if !unsigned.is_empty() {
                println!(
                    "note: the evidence into {} is unsigned (no `trust:` in its stagegate.yaml): anyone who can push can write results the gate counts; see README: Signed evidence",
                    unsigned.join(", ")
                );
            }
        }
    }
    Ok(if out.iter().all(|c| c.verdict.holds) {
        0
    } else {
        1
    })
}

/// One verdict for people: `ok   stable 1234567890 promotion: Promote to stable: …`.
pub fn print_verdict(stage: &str, v: &Verdict, w: &mut dyn std::io::Write) {
    let mark = if v.holds { "ok  " } else { "FAIL" };
    let _ = writeln!(
        w,
        "{mark} {stage} {} {}: {}",
        short_commit(&v.commit, COMMIT_DIGITS),
        v.kind,
        v.subject
    );
    for p in &v.problems {
        let _ = writeln!(w, "       {p}");
    }
}

/// `verify --artifact DIGEST [--stage S]`.
fn artifact(
    planner: &crate::plan::Planner,
    digest: &str,
    stage: Option<&str>,
    format: Format,
) -> Result<Code> {
    let digest = attest::parse_digest(digest)?;
    let stage = stage.map(|s| planner.stage(s)).transpose()?;
    let report = attest::verify_artifact(planner, &digest, stage)?;
    let holds = !report.checked.is_empty() && report.checked.iter().all(|c| c.holds);
    match format {
        Format::Json => print_json(&report),
        Format::Text => {
            for n in &report.notes {
                println!("note: {n}");
            }
            if report.checked.is_empty() {
                println!(
                    "FAIL {digest}: no verification summary{} in the results ledger or the store",
                    stage
                        .map(|s| format!(" into {}", s.name))
                        .unwrap_or_default()
                );
            }
            for c in &report.checked {
                let mark = if c.holds { "ok  " } else { "FAIL" };
                println!(
                    "{mark} {} {} {} {} {}: promotion {}{}; from {}",
                    c.item,
                    c.version,
                    digest.short(),
                    if c.holds { "passed into" } else { "into" },
                    c.stage,
                    short_commit(&c.promotion, COMMIT_DIGITS),
                    c.signer
                        .as_ref()
                        .map(|s| format!(", signed by {s}"))
                        .unwrap_or_default(),
                    c.sources.join(", ")
                );
                for p in &c.problems {
                    println!("       {p}");
                }
            }
        }
    }
    Ok(if holds { 0 } else { 1 })
}
