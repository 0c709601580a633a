//! `stagegate run`: run the planned jobs that have no result yet.

use super::reporter::RunReporter;
use super::{Code, Ctx, Format, print_json};
use crate::error::Result;
use crate::runner::session;

/// Run every planned job that has no settled result (pass, flaky or fail): builds and
/// tests, in parallel, each in a temporary checkout, recording each result in the ledger.
///
/// Exits 3 when a job ended in `error` (it could not run: a timeout, a missing interpreter,
/// a log or store the runner cannot write, or the job's own exit 125, "could not test", as
/// for `git bisect run`; later runs try it again, within the gate's `errors:` budget), 1
/// when a job of this run failed and the gate rejects a candidate for it, or a job could
/// not start (a build it needs did not succeed), 130 when interrupted. A failure that
/// blocks nothing (like its baseline, quarantined, waived) exits 0.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How many jobs run at once (default: the number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub parallel: Option<usize>,
    /// Only the jobs of the moves into or out of this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Only this job (a key or a unique key prefix); repeatable.
    #[arg(long = "job", value_name = "KEY")]
    pub job: Vec<String>,
    /// Run only shard I of N (1-based): a deterministic split by key, for N machines.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Show what would run, run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run this job again even if it has a result (a key or prefix); repeatable.
    #[arg(long, value_name = "KEY")]
    pub rerun: Vec<String>,
    /// Run again every job whose latest result is fail or error.
    #[arg(long)]
    pub failed: bool,
    /// Push the results ledger to the remote afterwards.
    #[arg(long)]
    pub push: bool,
    /// Write each result into DIR (one YAML file per attempt) for another job to sign and
    /// record with `stagegate record`, and publish nothing: for a CI job that runs
    /// candidate code, where the signing key must stay out of its reach (README: Signed
    /// evidence). Needs no signing key.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["push", "dry_run"])]
    pub export: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub labels: LabelArgs,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// What this runner offers (README: Host labels): `run` and `cycle` take only the jobs
/// whose `needs` it meets and say what they left for other runners.
#[derive(Debug, Clone, clap::Args)]
pub struct LabelArgs {
    /// Host labels this runner offers beyond those it detects, comma-separated (`kvm,iommu`).
    #[arg(long, env = "STAGEGATE_LABELS", value_name = "LABEL,...")]
    pub labels: Option<String>,
    /// Offer only the declared labels: detect neither the architecture nor a usable KVM.
    #[arg(
        long,
        env = "STAGEGATE_NO_DETECT",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub no_detect: bool,
}

impl LabelArgs {
    /// The labels this runner offers.
    pub fn offers(&self) -> Result<crate::runner::offers::Offers> {
        let declared = match &self.labels {
            Some(text) => crate::runner::offers::parse_labels(text).map_err(|e| {
                crate::error::Error::usage_help(
                    format!("--labels / STAGEGATE_LABELS: {e}"),
                    "e.g. --labels kvm,iommu",
                )
            })?,
            None => Vec::new(),
        };
        Ok(crate::runner::offers::Offers::new(
            &declared,
            !self.no_detect,
        ))
    }
}

fn parse_shard(s: &str) -> std::result::Result<(u64, u64), String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 1/4")?;
    let i: u64 = i.parse().map_err(|_| "I must be a number")?;
    let n: u64 = n.parse().map_err(|_| "N must be a number")?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("shard {i}/{n}: I must be between 1 and N"));
    }
    Ok((i, n))
}

impl Args {
    /// What the library's run needs of these arguments.
    pub fn options(&self) -> Result<session::Options> {
        Ok(session::Options {
            parallel: self.parallel,
            jobs: self.job.clone(),
            shard: self.shard,
            dry_run: self.dry_run,
            rerun: self.rerun.clone(),
            failed: self.failed,
            still_running: super::reporter::still_running_interval()?,
            export: self.export.is_some(),
            offers: Some(self.labels.offers()?),
        })
    }
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(args.push)?;
    let reporter = RunReporter::new(args.format);
    let report = crate::cycle::run(
        &planner,
        args.stage.as_deref(),
        &args.options()?,
        ctx.now(),
        reporter.sink(),
    )?;
    for doc in reporter.take_json() {
        print_json(&doc);
    }
    if let Some(dir) = &args.export {
        export(dir, &report)?;
    }
    Ok(report.code())
}

/// Write the records of `report` into `dir`, one file per result: `<key>-<n>.yaml`.
fn export(dir: &std::path::Path, report: &session::Report) -> Result<()> {
    use crate::error::IoContext;
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    for (n, o) in report.outcomes.iter().enumerate() {
        if let Some(r) = &o.record {
            let path = dir.join(format!("{}-{n:02}.yaml", r.key));
            std::fs::write(&path, crate::records::to_yaml(r))
                .io_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}
