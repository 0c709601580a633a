//! `stagegate log [ITEM]`: the audit trail, from git history alone.

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::keys::{COMMIT_DIGITS, short_commit};
use crate::trail::{Entry, collect};

/// The audit trail, newest first: promotions (with version changes, verdict counts and the
/// tested commit), rejections, holds and releases, drops, builds and polls — read from the
/// stage branches' first-parent history and the results ledger.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only entries about this item (images/NAME, components/NAME, tests/NAME or
    /// stagegate.yaml).
    pub item: Option<String>,
    /// At most this many entries.
    #[arg(short = 'n', long, default_value_t = 50)]
    pub max: usize,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let item = args
        .item
        .as_deref()
        .map(|i| crate::promote::edits::parse_candidate(&planner, i))
        .transpose()?;
    let entries = collect(repo, &planner, item.as_ref(), args.max)?;
    match args.format {
        Format::Json => print_json(&entries),
        Format::Text => {
            if entries.is_empty() {
                println!("no promotions, rejections, holds or drops yet");
            }
            for e in &entries {
                print_entry(e);
            }
        }
    }
    Ok(0)
}

pub fn print_entry(e: &Entry) {
    let when = e.when.replace('T', " ").trim_end_matches('Z').to_string();
    let stage = e.stage.replace(" -> ", "→");
    println!(
        "{when}  {:<8} {:<15} {}",
        e.kind,
        stage,
        short_commit(&e.commit, COMMIT_DIGITS)
    );
    if let (Some(id), Some(scope)) = (&e.id, &e.scope) {
        println!(
            "    {id} of {scope}{}",
            e.expires
                .as_ref()
                .map(|x| format!(", until {x}"))
                .unwrap_or_default()
        );
    } else if !e.items.is_empty() {
        println!("    {}", e.items.join(", "));
    }
    if let Some(t) = &e.tested {
        println!(
            "    tested {}{}",
            short_commit(t, COMMIT_DIGITS),
            e.results
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    for b in &e.built {
        println!("    built {b}");
    }
    if let Some(r) = &e.reason {
        println!("    reason: {r}");
    }
    if let Some(b) = &e.by {
        println!("    by {b}");
    }
}
