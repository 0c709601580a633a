//! `stagegate report --out DIR`: the static HTML report and its JSON.

use std::path::PathBuf;

use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::report::{self, Options};

/// Write a static HTML report into DIR: each stage's head and age, every candidate with its
/// state and why (a page each: manifest diff, jobs beside their baselines, logs, holds), the
/// history of recent runs (a grid per tested commit, pass rates and durations per test) and
/// each item's versions through the stages; with the same data as DIR/report.json.
/// Readable without JavaScript; publish DIR as it is (GitHub Pages, any web server).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write; it must be new, empty, or an earlier report (replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Read at most this many of the newest results for the history pages.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub runs: usize,
    /// Show at most this many entries of the audit trail.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub trail: usize,
    /// How to print what was written: text for people, json for programs.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(false)?;
    let repo = planner.repo;
    let opts = Options {
        runs: args.runs,
        trail: args.trail,
        now: ctx.now(),
    };
    let data = report::collect(repo, &planner, &opts)?;
    let written = report::write(&data, &args.out)?;
    match args.format {
        Format::Json => print_json(&written),
        Format::Text => println!(
            "wrote {} pages ({} KiB, largest {} at {} KiB) to {}; open {}",
            written.pages,
            written.bytes / 1024,
            written.largest.0,
            written.largest.1 / 1024,
            written.dir.display(),
            written.dir.join("index.html").display()
        ),
    }
    Ok(0)
}
