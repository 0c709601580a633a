//! `stagegate diff A B`: what changes between two stages or commits, item by item.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use similar::TextDiff;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::manifest::ItemKind;
use crate::plan::Planner;

/// Show, item by item, how the manifests differ between A and B (stages, branches or
/// commits) as unified diffs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The old side: a stage, branch or commit.
    pub a: String,
    /// The new side: a stage, branch or commit.
    pub b: String,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct ItemDiff {
    path: String,
    change: &'static str,
    diff: String,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let planner = Planner::new(&repo, None)?;
    let resolve = |rev: &str| match planner.pipeline.stages.iter().find(|s| s.name == rev) {
        Some(s) => planner.stage_head(s),
        None => repo.resolve(rev),
    };
    let (a, b) = (resolve(&args.a)?, resolve(&args.b)?);
    let (ta, tb) = (repo.tree_of(a)?, repo.tree_of(b)?);
    let mut diffs = Vec::new();
    for dir in ItemKind::ALL.iter().map(|k| k.dir()).chain(["tests"]) {
        let ea = repo.list(ta, dir)?;
        let eb = repo.list(tb, dir)?;
        let by_name = |es: &[crate::repo::Entry]| -> BTreeMap<String, crate::repo::Entry> {
            es.iter()
                .filter(|e| e.name.ends_with(".yaml"))
                .map(|e| (e.name.clone(), e.clone()))
                .collect()
        };
        let (ma, mb) = (by_name(&ea), by_name(&eb));
        let names: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        for name in names {
            let x = ma.get(name);
            let y = mb.get(name);
            if x.map(|e| e.id) == y.map(|e| e.id) {
                continue;
            }
            let text = |e: Option<&crate::repo::Entry>| -> Result<String> {
                Ok(match e {
                    Some(e) => String::from_utf8_lossy(&repo.blob(e.id)?).into_owned(),
                    None => String::new(),
                })
            };
            let (old, new) = (text(x)?, text(y)?);
            let path = format!("{dir}/{name}");
            let change = match (x, y) {
                (None, _) => "added",
                (_, None) => "removed",
                _ => "changed",
            };
            let diff = TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .header(&format!("{}:{path}", args.a), &format!("{}:{path}", args.b))
                .to_string();
            diffs.push(ItemDiff { path, change, diff });
        }
    }
    match args.format {
        Format::Json => print_json(&diffs),
        Format::Text => {
            if diffs.is_empty() {
                println!("no manifest differs between {} and {}", args.a, args.b);
            }
            for d in &diffs {
                print!("{}", d.diff);
            }
        }
    }
    Ok(0)
}
