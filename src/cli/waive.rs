//! `stagegate waive KEY --reason TEXT`: a failing result that must not block.

use super::{Code, Ctx, Expiry, Format, print_json};
use crate::advice::Advice;
use crate::error::{Error, Result};
use crate::keys::JobKey;
use crate::ledger::Ledger;
use crate::plan::{Planner, describe};

/// Waive one failing result: the job KEY (or a unique prefix of a planned job's key) no
/// longer rejects the candidates it tests, and a rejection resting on it is lifted. A job
/// key is one test in one environment, so the waiver lapses by itself when the content it
/// waived changes. Recorded in the results ledger with your name, the time and the reason;
/// `--remove ID` lifts it (recorded too).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job key (see `stagegate why ITEM` or `stagegate plan`).
    #[arg(required_unless_present = "remove")]
    pub key: Option<String>,
    /// Why the failure does not count (recorded).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only for the gate into this stage (default: every stage the job is planned for).
    #[arg(long)]
    pub stage: Option<String>,
    #[command(flatten)]
    pub expiry: Expiry,
    /// Lift the waiver with this id instead (`stagegate status` lists them).
    #[arg(long, value_name = "ID", conflicts_with_all = ["key", "stage"])]
    pub remove: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    if let Some(id) = &args.remove {
        return super::lift_by_id(
            repo,
            &planner.pipeline,
            "waive",
            id,
            args.reason.as_deref(),
            args.format,
        );
    }
    let reason = super::reason_of(args.reason.as_deref())?;
    let expires = args.expiry.resolve()?;
    if let Some(s) = &args.stage {
        planner.stage(s)?;
    }
    let wanted = args.key.clone().unwrap_or_default().to_ascii_lowercase();
    let found = find_job(&planner, &ledger, &wanted)?;
    if found.build {
        let item = found
            .items
            .first()
            .cloned()
            .unwrap_or_else(|| "ITEM".into());
        return Err(Error::usage_help(
            format!(
                "{} is the build of {item}: a failed build is never waived (nothing could test what it did not build)",
                found.key.short()
            ),
            format!(
                "when the build failed because of its environment, fix that, then `{}`; otherwise a new version of {item} is the way out",
                Advice::Recheck {
                    item: item.clone(),
                    stage: None
                }
            ),
        ));
    }
    let key = found.key.clone();
    let scope = crate::overrides::WaiveScope {
        job: found.job.clone(),
        items: found.items.clone(),
        stage: args.stage.clone(),
        expires,
        trust: match &args.stage {
            Some(s) => planner.trust_of(planner.stage_head(planner.stage(s)?)?)?,
            None => planner.pipeline.trust.clone(),
        },
    };
    let rec = crate::overrides::waive(&ledger, &key, scope, reason)?;
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    match (args.format, &rec) {
        (Format::Json, _) => print_json(&serde_json::json!({
            "key": key,
            "recorded": rec.is_some(),
            "override": rec.as_ref().map(|r| r.to_ref()),
        })),
        (Format::Text, Some(r)) => println!(
            "waived {}: {} (id {}{})",
            key.short(),
            reason,
            r.id,
            r.expires
                .as_ref()
                .map(|e| format!(", until {e}"))
                .unwrap_or_default()
        ),
        (Format::Text, None) => println!("{} was already waived", key.short()),
    }
    Ok(0)
}

/// The job a key (or a unique prefix of one) names: a planned job, or one with recorded
/// results (a failure a standing rejection rests on is no longer planned once T moved).
struct Found {
    key: JobKey,
    job: Option<String>,
    items: Vec<String>,
    build: bool,
}

fn find_job(planner: &Planner, ledger: &Ledger, wanted: &str) -> Result<Found> {
    let mut found: Vec<Found> = Vec::new();
    for p in planner.plan_all(None)? {
        for (k, j) in &p.jobs {
            if k.starts_with(wanted) && !found.iter().any(|x| &x.key == k) {
                found.push(Found {
                    key: k.clone(),
                    job: Some(describe(j)),
                    items: j.candidates.iter().map(|c| c.to_string()).collect(),
                    build: j.kind == crate::plan::JobKind::Build,
                });
            }
        }
    }
    let view = ledger.view()?;
    for k in view.keys_with_prefix(wanted)? {
        if found.iter().any(|x| x.key == k) {
            continue;
        }
        if let Some(r) = view.latest(&k)? {
            found.push(Found {
                job: Some(format!("{} {}", r.kind, r.name)),
                items: r.candidates.clone(),
                build: r.kind == "build",
                key: k,
            });
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if wanted.len() == 64 && wanted.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Found {
            key: JobKey::from(wanted),
            job: None,
            items: Vec::new(),
            build: false,
        }),
        0 => Err(Error::usage_help(
            format!("no planned or recorded job has a key starting with {wanted:?}"),
            format!(
                "`{}` lists the planned jobs' keys and `{}` the rejected items, whose why shows their results' keys; or give the full key",
                crate::advice::Advice::Plan,
                crate::advice::Advice::Status
            ),
        )),
        n => Err(Error::usage_help(
            format!("{wanted:?} starts {n} job keys"),
            "give more of the key",
        )),
    }
}
