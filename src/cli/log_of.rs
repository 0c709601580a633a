//! `stagegate log-of KEY`: print a job's full log, from whichever store keeps it.

use std::io::Write;

use super::{Code, Ctx};
use crate::artifact::Store;
use crate::error::{Error, Result};
use crate::ledger::Ledger;

/// Print the full log of a job's latest result (or of one attempt), fetched from the store
/// its ledger record points at: a registry or directory any runner reaches, or, for logs
/// kept by the default store, the machine that ran the job. A job that passed with no more
/// output than its record's excerpt holds has no log file: its excerpt is printed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The job key, or a unique prefix of at least 4 hex digits (as `plan` and `run` print).
    pub key: String,
    /// Which attempt (1 is the first; default: the latest).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let view = Ledger::new(repo, &planner.pipeline.results_ref).view()?;
    let keys = view.keys_with_prefix(&args.key)?;
    let key = match keys.as_slice() {
        [one] => one,
        [] => {
            return Err(Error::usage_help(
                format!("no recorded result has a key starting with {:?}", args.key),
                format!(
                    "give at least 4 hex digits of a key that `{}` shows with a result",
                    crate::advice::Advice::Plan
                ),
            ));
        }
        many => {
            return Err(Error::usage_help(
                format!("{:?} matches {} keys", args.key, many.len()),
                "give more digits of the key",
            ));
        }
    };
    let results = view.results(key)?;
    let record = match args.attempt {
        None => results.last(),
        Some(n) => results.iter().find(|r| r.attempt == n),
    }
    .ok_or_else(|| {
        Error::usage_help(
            format!(
                "job {} has no attempt {}",
                key.short(),
                args.attempt.unwrap_or_default()
            ),
            format!("it has {}", super::count(results.len(), "recorded attempt")),
        )
    })?;
    if record.log.is_none() && record.tries > 0 {
        // It ran and its whole output fit in the record's excerpt: no log file was made.
        let mut out = std::io::stdout().lock();
        if !record.excerpt.is_empty() {
            let _ = writeln!(out, "{}", record.excerpt);
        }
        return Ok(0);
    }
    let location = record.log.as_deref().ok_or_else(|| {
        Error::usage(format!(
            "job {} ({}) has no log recorded: it never started",
            key.short(),
            record.name
        ))
    })?;
    let store = Store::open(
        planner.pipeline.artifact_store.as_deref(),
        repo.root_dir(),
        repo.git_dir(),
    )?;
    let mut out = std::io::stdout().lock();
    store.copy_log(location, &mut out)?;
    Ok(0)
}
