//! `stagegate check [REV]`: validate every manifest.

use serde::Serialize;

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, Result};
use crate::manifest::{Diagnostic, Files, ManifestSet, PIPELINE_FILE, WorkTree};
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
    let (files, place): (Box<dyn Files>, String) = match (&args.rev, repo.work_dir()) {
        (None, Some(wd)) => (
            Box::new(WorkTree {
                root: wd.to_path_buf(),
            }),
            wd.display().to_string(),
        ),
        (rev, _) => {
            let rev = rev.as_deref().unwrap_or("HEAD");
            let commit = repo.resolve(rev)?;
            (
                Box::new(TreeFiles::new(repo, repo.tree_of(commit)?)),
                rev.to_string(),
            )
        }
    };
    // Not a state repository is a usage error (exit 2), as for every other command; a
    // pipeline that does not validate is a check that said no (exit 1).
    if files.read(PIPELINE_FILE)?.is_none() {
        return Err(Error::usage_help(
            format!("{place} has no {PIPELINE_FILE}: this is not a state repository"),
            format!(
                "run `{}` to make it one, or pass -C DIR",
                crate::advice::Advice::Init { dir: None }
            ),
        ));
    }
    let loaded = ManifestSet::load(files.as_ref())?;
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
                "ok: {}, {}, {}",
                super::count(s.items.len(), "item"),
                super::count(s.tests.len(), "test"),
                super::count(s.pipeline.stages.len(), "stage")
            ),
            None => {
                for d in &diags {
                    eprintln!("{d}");
                }
                eprintln!("{} found", super::count(diags.len(), "problem"));
            }
        },
    }
    super::github::annotate(&diags);
    Ok(if diags.is_empty() { 0 } else { 1 })
}
