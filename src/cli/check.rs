//! `stagegate check [REV]`: validate every manifest.

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::manifest::{Diagnostic, ManifestSet, WorkTree};
use crate::repo::TreeFiles;

/// Validate every manifest at REV (default: the work tree) and report all problems.
///
/// Exits 1 when any manifest is invalid, printing `file:line:col: error: …` for each
/// problem (and GitHub `::error` annotations when run in GitHub Actions).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The commit to check (a branch, stage or commit id); default: the work tree.
    pub rev: Option<String>,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    items: usize,
    tests: usize,
    diagnostics: &'a [Diagnostic],
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let repo = ctx.repo()?;
    let loaded = match (&args.rev, repo.work_dir()) {
        (None, Some(wd)) => ManifestSet::load(&WorkTree {
            root: wd.to_path_buf(),
        })?,
        (rev, _) => {
            let commit = repo.resolve(rev.as_deref().unwrap_or("HEAD"))?;
            ManifestSet::load(&TreeFiles::new(&repo, repo.tree_of(commit)?))?
        }
    };
    let (set, diags) = match loaded {
        Ok(set) => (Some(set), Vec::new()),
        Err(d) => (None, d.0),
    };
    match args.format {
        Format::Json => print_json(&Report {
            ok: diags.is_empty(),
            items: set.as_ref().map_or(0, |s| s.items.len()),
            tests: set.as_ref().map_or(0, |s| s.tests.len()),
            diagnostics: &diags,
        }),
        Format::Text => match &set {
            Some(s) => println!(
                "ok: {} items, {} tests, {} stages",
                s.items.len(),
                s.tests.len(),
                s.pipeline.stages.len()
            ),
            None => {
                for d in &diags {
                    eprintln!("{d}");
                }
                eprintln!(
                    "{} problem{} found",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" }
                );
            }
        },
    }
    super::github::annotate(&diags);
    Ok(if diags.is_empty() { 0 } else { 1 })
}
