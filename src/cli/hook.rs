//! `stagegate hook`: the server-side guard of gated stages.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use gix::ObjectId;

use super::{Code, Ctx};
use crate::error::{IoContext, Result};
use crate::plan::Planner;
use crate::promote::verify::{gated_stage, verify_update};
use crate::repo::Repo;

const PRE_RECEIVE: &str = include_str!("../../hooks/pre-receive");

/// Install or run the pre-receive hook that guards a shared state repository: a push to a
/// gated stage is accepted only when every commit it adds is a promotion the gate would
/// make (replayed as `stagegate verify` does), or a hold, release or drop; a push to the
/// results ledger only when it adds records (no deletion, no rewind, no commit that changes
/// or removes a record).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: HookCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HookCommand {
    /// Install the hook into a repository (usually the bare one everybody pushes to).
    Install {
        /// The repository to install into: its git directory, or a work tree.
        #[arg(long = "pre-receive", value_name = "DIR")]
        pre_receive: PathBuf,
    },
    /// Run as git's pre-receive hook: reads `OLD NEW REF` lines on stdin.
    PreReceive,
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    match args.command {
        HookCommand::Install { pre_receive } => install(&pre_receive),
        HookCommand::PreReceive => pre_receive(ctx),
    }
}

fn install(dir: &Path) -> Result<Code> {
    let repo = Repo::discover(dir)?;
    let hooks = repo.git_dir().join("hooks");
    std::fs::create_dir_all(&hooks).io_context(|| format!("creating {}", hooks.display()))?;
    let exe = std::env::current_exe().io_context(|| "finding the stagegate binary".into())?;
    let quoted = format!("'{}'", exe.display().to_string().replace('\'', r"'\''"));
    let text = PRE_RECEIVE.replace("exec stagegate ", &format!("exec {quoted} "));
    let path = hooks.join("pre-receive");
    std::fs::write(&path, text).io_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .io_context(|| format!("making {} executable", path.display()))?;
    println!("installed {}", path.display());
    let trusted = crate::plan::Planner::new(&repo, None)
        .ok()
        .is_some_and(|p| p.pipeline.trust.is_some());
    if !trusted {
        println!(
            "note: this pipeline declares no `trust:`, so the hook cannot tell forged results, waivers or decisions from real ones: anyone who can push to refs/stagegate/results writes evidence the gate counts"
        );
        println!(
            "  to require signed evidence: list the runners' and people's keys under `trust:` in stagegate.yaml and give each runner its key in STAGEGATE_SIGNING_KEY (README: Signed evidence)"
        );
    }
    Ok(0)
}

/// While git runs pre-receive, the pushed objects wait in a quarantine directory that gix
/// does not look into: read the repository through a scratch git directory whose object
/// store is the quarantine plus the real one, and whose refs are the real ones.
fn open_quarantined(ctx: &Ctx) -> Result<(Repo, Option<tempfile::TempDir>)> {
    // Not the command's shared workspace: this repository may be opened again below.
    let repo = Repo::discover(&ctx.dir)?;
    let Some(q) = std::env::var_os("GIT_QUARANTINE_PATH") else {
        return Ok((repo, None));
    };
    let real = repo
        .git_dir()
        .canonicalize()
        .io_context(|| format!("resolving {}", repo.git_dir().display()))?;
    let tmp = tempfile::Builder::new()
        .prefix("stagegate-hook-")
        .tempdir()
        .io_context(|| "creating a scratch directory".into())?;
    let t = tmp.path();
    let link = |name: &str| -> Result<()> {
        let from = real.join(name);
        if from.exists() {
            std::os::unix::fs::symlink(&from, t.join(name))
                .io_context(|| format!("linking {}", from.display()))?;
        }
        Ok(())
    };
    link("refs")?;
    link("packed-refs")?;
    link("HEAD")?;
    link("config")?;
    let info = t.join("objects/info");
    std::fs::create_dir_all(&info).io_context(|| format!("creating {}", info.display()))?;
    std::fs::write(
        info.join("alternates"),
        format!(
            "{}\n{}\n",
            PathBuf::from(q).display(),
            real.join("objects").display()
        ),
    )
    .io_context(|| "writing alternates".into())?;
    Ok((Repo::open(t)?, Some(tmp)))
}

fn pre_receive(ctx: &Ctx) -> Result<Code> {
    let (repo, _scratch) = open_quarantined(ctx)?;
    let mut updates: BTreeMap<String, (Option<ObjectId>, Option<ObjectId>)> = BTreeMap::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.io_context(|| "reading the pushed refs".into())?;
        let mut parts = line.split_whitespace();
        let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let id = |hex: &str| {
            ObjectId::from_hex(hex.as_bytes())
                .ok()
                .filter(|i| !i.is_null())
        };
        updates.insert(name.to_string(), (id(old), id(new)));
    }
    let planner = Planner::new(&repo, None)?;
    // A push may bring the results its promotions name: weigh those.
    let ledger_tip = updates
        .get(&planner.pipeline.results_ref)
        .map(|(_, new)| *new);
    let mut refused = 0;
    if let Some((old, new)) = updates.get(&planner.pipeline.results_ref) {
        for p in crate::ledger::growth::problems(&repo, &planner.pipeline.results_ref, *old, *new)?
        {
            eprintln!("stagegate: {p}");
            refused += 1;
        }
    }
    for (name, (old, new)) in &updates {
        let Some(stage) = gated_stage(&planner, name) else {
            continue;
        };
        let Some(new) = new else {
            eprintln!(
                "stagegate: refusing to delete the gated stage {}",
                stage.branch
            );
            refused += 1;
            continue;
        };
        for v in verify_update(&planner, stage, *old, *new, ledger_tip)? {
            if !v.holds {
                refused += 1;
                let mut err = std::io::stderr();
                eprintln!("stagegate: refusing the push to {}:", stage.branch);
                super::verify::print_verdict(&stage.name, &v, &mut err);
            }
        }
    }
    if refused > 0 {
        eprintln!(
            "stagegate: gated stages move only by promotion, and the results ledger only grows: run `{}` (see `{}`)",
            crate::advice::Advice::Promote { push: true },
            crate::advice::Advice::Verify
        );
        return Ok(1);
    }
    Ok(0)
}
