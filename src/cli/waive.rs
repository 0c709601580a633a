//! `stagegate waive KEY --reason TEXT`: a failing result that must not block.

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::plan::Planner;

/// Waive one failing result: the job KEY (or a unique prefix of a planned job's key) no
/// longer rejects the candidates it tests, and a rejection resting on it is lifted. Recorded
/// in the results ledger with your name, the time and the reason.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job key (see `stagegate why ITEM` or `stagegate plan`).
    pub key: String,
    /// Why the failure does not count (recorded).
    #[arg(long)]
    pub reason: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    super::sync::start(ctx, &repo, &planner.pipeline, false)?;
    let mut keys: Vec<String> = Vec::new();
    for p in planner.plan_all(None)? {
        for k in p.jobs.keys() {
            if k.starts_with(&args.key) && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let key = match keys.as_slice() {
        [one] => one.clone(),
        [] if args.key.len() == 64 && args.key.bytes().all(|b| b.is_ascii_hexdigit()) => {
            args.key.to_lowercase()
        }
        [] => {
            return Err(Error::usage_help(
                format!("no planned job has a key starting with {:?}", args.key),
                "see the keys with `stagegate why ITEM`, or give the full key",
            ));
        }
        many => {
            return Err(Error::usage_help(
                format!("{:?} starts {} job keys", args.key, many.len()),
                "give more of the key",
            ));
        }
    };
    let ledger = Ledger::new(&repo, &planner.pipeline.results_ref);
    let new = crate::overrides::waive(&ledger, &key, &args.reason)?;
    super::sync::publish_results(&repo, &planner.pipeline)?;
    match args.format {
        Format::Json => print_json(&serde_json::json!({"key": key, "recorded": new})),
        Format::Text if new => println!("waived {}: {}", &key[..12], args.reason),
        Format::Text => println!("{} was already waived", &key[..12]),
    }
    Ok(0)
}
