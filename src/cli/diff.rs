//! `stagegate diff A B`: what changes between two stages or commits, item by item.

use std::collections::BTreeSet;

use serde::Serialize;
use similar::TextDiff;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::manifest::ItemKind;
use crate::plan::Planner;

/// Show, item by item, how A and B (stages, branches or commits) differ as unified diffs:
/// the manifest of every candidate — image, component, test or stagegate.yaml — and the
/// files it names (build recipes, test scripts), and the repository files (`.github/`,
/// CODEOWNERS: everything else), exactly what `status` calls a difference;
/// and for each image built on both sides, how its package set (the recorded lock)
/// changed: packages added, removed, upgraded.
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
    /// For an image built on both sides: how its package set changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<super::packages::PackageChanges>,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.workspace()?.planner()?;
    let repo = planner.repo;
    let resolve = |rev: &str| match planner.pipeline.stages.iter().find(|s| s.name == rev) {
        Some(s) => planner.stage_head(s),
        None => repo.resolve(rev),
    };
    let (a, b) = (resolve(&args.a)?, resolve(&args.b)?);
    let (ta, tb) = (repo.tree_of(a)?, repo.tree_of(b)?);
    // The candidates of a move from B into A, file by file: their manifests and the files
    // they name — what `status` and `why` call a difference.
    let (sa, sb) = (planner.snapshot(a)?, planner.snapshot(b)?);
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for c in crate::plan::candidate::candidates(&sb, &sa)? {
        // The repository files are their own paths (a workflow, CODEOWNERS).
        if c.id == crate::plan::CandidateId::Files {
            paths.extend(c.paths.iter().cloned());
            continue;
        }
        paths.insert(c.id.path());
        for snap in [&sa, &sb] {
            let (content, _) = crate::plan::candidate::content_of(snap, &c.id)?;
            paths.extend(content.files.into_iter().map(|(p, _)| p));
        }
    }
    let mut diffs = Vec::new();
    for path in paths {
        let (x, y) = (repo.entry(ta, &path)?, repo.entry(tb, &path)?);
        if x.as_ref().map(|e| e.id) == y.as_ref().map(|e| e.id) {
            continue;
        }
        let text = |e: Option<&crate::repo::Entry>| -> Result<String> {
            Ok(match e {
                Some(e) => String::from_utf8_lossy(&repo.blob(e.id)?).into_owned(),
                None => String::new(),
            })
        };
        let (old, new) = (text(x.as_ref())?, text(y.as_ref())?);
        let change = match (&x, &y) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "changed",
        };
        let diff = TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{}:{path}", args.a), &format!("{}:{path}", args.b))
            .to_string();
        diffs.push(ItemDiff {
            path,
            change,
            diff,
            packages: None,
        });
    }
    add_package_changes(&planner, (a, &args.a), (b, &args.b), &mut diffs)?;
    match args.format {
        Format::Json => print_json(&diffs),
        Format::Text => {
            if diffs.is_empty() {
                println!("no item differs between {} and {}", args.a, args.b);
            }
            for d in &diffs {
                print!("{}", d.diff);
                if let Some(c) = &d.packages {
                    super::packages::print_text(c, "");
                }
            }
        }
    }
    Ok(0)
}

/// Attach to each image built on both sides with different locks the package changes;
/// an image rebuilt with an unchanged manifest gets an entry of its own (`rebuilt`).
fn add_package_changes(
    planner: &Planner,
    (a, a_name): (gix::ObjectId, &str),
    (b, b_name): (gix::ObjectId, &str),
    diffs: &mut Vec<ItemDiff>,
) -> Result<()> {
    let (sa, sb) = (planner.snapshot(a)?, planner.snapshot(b)?);
    // Images and components with a build (a component's lock is its package set too).
    for id in ItemKind::ALL
        .into_iter()
        .map(|k| sb.item_ids(k))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        let (Some(old), Some(new)) = (
            super::packages::recorded(&sa, &id, a_name)?,
            super::packages::recorded(&sb, &id, b_name)?,
        ) else {
            continue;
        };
        let Some(changes) = super::packages::compare(&id, old, new) else {
            continue;
        };
        let path = id.path();
        match diffs.iter_mut().find(|d| d.path == path) {
            Some(d) => d.packages = Some(changes),
            None => diffs.push(ItemDiff {
                path,
                change: "rebuilt",
                diff: String::new(),
                packages: Some(changes),
            }),
        }
    }
    Ok(())
}
