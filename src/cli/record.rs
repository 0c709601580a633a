//! `stagegate record PATH…`: commit results another job exported (`run --export`), signed.

use std::path::{Path, PathBuf};

use super::{Code, Ctx, Format, print_json};
use crate::error::{Error, IoContext, Result};
use crate::keys::JobKey;
use crate::ledger::{Ledger, ResultRecord};

/// Record results a job exported with `run --export DIR` into the results ledger, signed
/// with this process's key (STAGEGATE_SIGNING_KEY) when it has one. Each file must be a
/// result of the job it is bound to: the job named by --job, or else by the name of the
/// directory holding it, `result-<KEY>` (the artifact name the GitHub matrix template gives
/// each job's results). A result of any other job is refused: a job that ran candidate
/// code speaks for itself only. This is what a CI job that holds the signing key and runs
/// no candidate code does (README: Signed evidence).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Exported results: files, or directories of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The key of the job that produced them (default: each directory's name, result-KEY).
    #[arg(long, value_name = "KEY")]
    pub job: Option<String>,
    /// Push the results ledger to the remote afterwards.
    #[arg(long)]
    pub push: bool,
    /// How to print: text for people, json for programs (stable, documented in the README).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.start(args.push)?;
    let mut files: Vec<(PathBuf, JobKey)> = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in &args.paths {
        // A directory of exports (what downloading every `result-*` artifact makes):
        // each `result-KEY` inside is one job's.
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if args.job.is_none()
            && p.is_dir()
            && !name.as_deref().unwrap_or_default().starts_with("result-")
        {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .io_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|d| d.is_dir())
                .collect();
            inside.sort();
            paths.extend(inside);
        } else {
            paths.push(p.clone());
        }
    }
    for p in &paths {
        if p.is_dir() {
            let bound = bound_key(args.job.as_deref(), p)?;
            let mut inside: Vec<PathBuf> = std::fs::read_dir(p)
                .io_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml"))
                .collect();
            inside.sort();
            files.extend(inside.into_iter().map(|f| (f, bound.clone())));
        } else {
            let dir = p.parent().unwrap_or(Path::new("."));
            files.push((p.clone(), bound_key(args.job.as_deref(), dir)?));
        }
    }
    let mut records: Vec<ResultRecord> = Vec::new();
    for (f, bound) in &files {
        let bytes = std::fs::read(f).io_context(|| format!("reading {}", f.display()))?;
        let r: ResultRecord = crate::records::parse(&f.display().to_string(), &bytes)?;
        let ok =
            r.key == *bound || (bound.as_str().len() >= 12 && r.key.starts_with(bound.as_str()));
        if !ok {
            return Err(Error::usage_help(
                format!(
                    "{}: a result of job {}, not of job {} whose results these are: a job's export speaks for that job only",
                    f.display(),
                    r.key.short(),
                    bound.short()
                ),
                "record each job's export with its own key (--job KEY, or a directory named result-KEY); nothing was recorded",
            ));
        }
        records.push(r);
    }
    if records.is_empty() {
        // Jobs that did not run (a build they need failed) export nothing.
        println!("nothing to record: no exported results (*.yaml) in what was given");
        return Ok(0);
    }
    let last = planner
        .pipeline
        .stages
        .last()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    crate::trust::require_signer(&last, planner.pipeline.trust.as_ref())?;
    let ledger = Ledger::new(planner.repo, &planner.pipeline.results_ref);
    let mut written = crate::ledger::Written::default();
    let message = if records.len() == 1 {
        format!(
            "{} {}: {} (recorded from an export)",
            records[0].kind, records[0].name, records[0].verdict
        )
    } else {
        format!("{} results (recorded from exports)", records.len())
    };
    let committed = ledger.record(&records, &message, &mut written)?;
    let _ = written
        .packs
        .finish(&planner.repo.git.common_dir().join("objects"));
    ctx.workspace()?.publish_results(&planner.pipeline)?;
    let signer = crate::sshsig::signer().map(|s| s.fingerprint());
    match args.format {
        Format::Json => print_json(&serde_json::json!({
            "recorded": records.iter().map(|r| serde_json::json!({
                "key": r.key, "name": r.name, "verdict": r.verdict,
            })).collect::<Vec<_>>(),
            "commit": committed.map(|c| c.to_string()),
            "signed-by": signer,
        })),
        Format::Text => {
            for r in &records {
                println!(
                    "recorded {} {} {}: {}",
                    r.key.short(),
                    r.kind,
                    r.name,
                    r.verdict
                );
            }
            match signer {
                Some(fp) => println!("signed by {fp}"),
                None => println!("unsigned (no STAGEGATE_SIGNING_KEY)"),
            }
        }
    }
    Ok(0)
}

/// The job `dir`'s results are bound to: `job` when given, else the directory's name
/// `result-<KEY>`.
/// The key (or a prefix of at least 12 digits) of the job whose results are in `dir`: given
/// with `--job`, or in the directory's name `result-KEY`.
fn bound_key(job: Option<&str>, dir: &Path) -> Result<JobKey> {
    if let Some(k) = job {
        return Ok(JobKey::from(k.to_ascii_lowercase()));
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.strip_prefix("result-") {
        Some(k) if k.len() >= 12 && k.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(JobKey::from(k.to_ascii_lowercase()))
        }
        _ => Err(Error::usage_help(
            format!(
                "{}: cannot tell which job these results are of (the directory is not named result-KEY)",
                dir.display()
            ),
            "name the job: --job KEY",
        )),
    }
}
