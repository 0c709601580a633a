//! The command line: one file per command, each with its `Args` and a `run` function.
//!
//! This is the only module that prints, and it lives in the binary (`main.rs`): the library
//! below it is denied printing by the compiler. Library errors arrive here as `crate::Error`
//! and leave as a message on stderr and an exit code (the exit codes the README lists).

mod approve;
mod bisect;
mod check;
mod completions;
mod cycle;
mod diff;
mod drop;
mod freeze;
pub mod github;
mod hold;
mod hook;
mod init;
mod log;
mod log_of;
mod man;
mod packages;
mod plan;
mod poll;
mod promote;
mod quarantine;
mod recheck;
mod record;
mod release;
mod report;
mod reporter;
mod run;
mod show;
mod status;
mod store;
mod unfreeze;
mod unquarantine;
mod verify;
mod waive;
mod why;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::repo::Repo;
use crate::workspace::Workspace;

/// A git-native promotion pipeline for test infrastructure.
///
/// Stages are branches (new → staging → stable). stagegate builds and tests what each
/// pending commit changes, records every result in git, and promotes a commit by merging
/// it into the next stage with its decision committed as YAML.
#[derive(Debug, Parser)]
#[command(
    name = "stagegate",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Run as if started in DIR (the state repository).
    #[arg(short = 'C', id = "directory", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The remote to fetch results from and push to.
    #[arg(long, global = true, value_name = "NAME", env = "STAGEGATE_REMOTE")]
    pub remote: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::Args),
    Check(check::Args),
    Status(status::Args),
    Plan(plan::Args),
    Diff(diff::Args),
    Run(run::Args),
    Record(record::Args),
    Promote(promote::Args),
    Why(why::Args),
    Log(log::Args),
    LogOf(log_of::Args),
    Hold(hold::Args),
    Release(release::Args),
    Drop(drop::Args),
    Cycle(cycle::Args),
    Poll(poll::Args),
    Store(store::Args),
    Report(report::Args),
    Verify(verify::Args),
    Hook(hook::Args),
    Waive(waive::Args),
    Approve(approve::Args),
    Bisect(bisect::Args),
    Freeze(freeze::Args),
    Unfreeze(unfreeze::Args),
    Quarantine(quarantine::Args),
    Recheck(recheck::Args),
    Unquarantine(unquarantine::Args),
    Completions(completions::Args),
    Man(man::Args),
}

/// How listing commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// Stable, documented JSON for programs.
    Json,
}

/// What every command gets: the global options, and the state repository they name,
/// opened once on first use and shared by the whole command.
pub struct Ctx {
    pub dir: PathBuf,
    pub remote: Option<String>,
    workspace: std::cell::OnceCell<Workspace>,
    /// The clock, read once per command ([`crate::records::now_secs`]: `STAGEGATE_NOW`
    /// fixes it), so everything a command judges, records and says agrees on the time.
    now: std::cell::OnceCell<i64>,
}

impl Ctx {
    pub fn workspace(&self) -> Result<&Workspace> {
        if let Some(w) = self.workspace.get() {
            return Ok(w);
        }
        let w = Workspace::discover(&self.dir, self.remote.clone())?;
        Ok(self.workspace.get_or_init(|| w))
    }

    /// The command's clock, in seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        *self.now.get_or_init(crate::records::now_secs)
    }

    pub fn repo(&self) -> Result<&Repo> {
        Ok(self.workspace()?.repo())
    }

    /// The planner, in step with the remote ([`Workspace::start`]).
    pub fn start(&self, push: bool) -> Result<crate::plan::Planner<'_>> {
        self.workspace()?.start(push)
    }

    /// The remote promotion branches are pushed to for review (`origin` when none is
    /// configured).
    pub fn review_remote(&self, pipeline: &crate::manifest::Pipeline) -> Result<String> {
        Ok(self
            .workspace()?
            .remote(pipeline, false)
            .unwrap_or_else(|| "origin".into()))
    }

    /// The forge promotions are reviewed on, if one is configured
    /// ([`crate::forge::configured`]: the environment, the pipeline's `forge:`, the review
    /// remote's URL).
    pub fn forge(
        &self,
        pipeline: &crate::manifest::Pipeline,
        remote: &str,
    ) -> Result<Option<Box<dyn crate::forge::Forge>>> {
        let url = crate::repo::remote::git(self.repo()?.git_dir(), &["remote", "get-url", remote])
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        crate::forge::configured(pipeline.forge.as_ref(), url.as_deref())
    }
}

/// What a command asks the process to exit with, when it is not plain success.
pub type Code = i32;

pub fn main() -> i32 {
    // A closed stdout or stderr (`stagegate plan | head`) ends the process quietly with
    // SIGPIPE (status 141 in a shell), as it does for any Unix filter, never with a panic.
    // Jobs and git start with SIGPIPE at its default either way.
    // SAFETY: setting a signal's disposition to its default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The signing key, read and taken out of the environment before any thread or job
    // starts (DESIGN §4.16 b).
    if let Err(e) = crate::sshsig::install_from_env() {
        eprintln!("error: {e}");
        eprintln!(
            "  help: set {} to an unprotected ed25519 key (its text, or a file's path), or unset it to write unsigned records",
            crate::sshsig::KEY_VAR
        );
        return 2;
    }
    let cli = Cli::parse();
    let ctx = Ctx {
        dir: cli.dir.clone().unwrap_or_else(|| PathBuf::from(".")),
        remote: cli.remote.clone(),
        workspace: std::cell::OnceCell::new(),
        now: std::cell::OnceCell::new(),
    };
    github::mask_secrets();
    let result = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Plan(a) => plan::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Record(a) => record::run(&ctx, a),
        Command::Promote(a) => promote::run(&ctx, a),
        Command::Why(a) => why::run(&ctx, a),
        Command::Log(a) => log::run(&ctx, a),
        Command::LogOf(a) => log_of::run(&ctx, a),
        Command::Hold(a) => hold::run(&ctx, a),
        Command::Release(a) => release::run(&ctx, a),
        Command::Drop(a) => drop::run(&ctx, a),
        Command::Cycle(a) => cycle::run(&ctx, a),
        Command::Poll(a) => poll::run(&ctx, a),
        Command::Store(a) => store::run(&ctx, a),
        Command::Report(a) => report::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Hook(a) => hook::run(&ctx, a),
        Command::Waive(a) => waive::run(&ctx, a),
        Command::Approve(a) => approve::run(&ctx, a),
        Command::Bisect(a) => bisect::run(&ctx, a),
        Command::Freeze(a) => freeze::run(&ctx, a),
        Command::Unfreeze(a) => unfreeze::run(&ctx, a),
        Command::Quarantine(a) => quarantine::run(&ctx, a),
        Command::Recheck(a) => recheck::run(&ctx, a),
        Command::Unquarantine(a) => unquarantine::run(&ctx, a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
    };
    for w in crate::error::take_warnings() {
        eprintln!("warning: {w}");
    }
    for (path, why) in crate::ledger::take_unreadable() {
        eprintln!("warning: skipped a ledger record this stagegate cannot read: {path}: {why}");
        eprintln!(
            "  help: it may come from a newer stagegate; the job it records counts as not run here"
        );
    }
    match result {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Print an error for people and return its exit code.
pub fn report(e: &Error) -> i32 {
    match e {
        Error::Invalid(d) => eprintln!("{d}"),
        other => {
            eprintln!("error: {}", without_os_codes(&other.to_string()));
            if let Some(h) = other.help() {
                eprintln!("  help: {h}");
            }
        }
    }
    e.exit_code()
}

/// `s` without the " (os error N)" the standard library appends to system errors: the
/// message already names the operation and the path, and the number helps nobody.
fn without_os_codes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(" (os error ") {
        let tail = &rest[at + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..at]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// Report a hold, release or drop.
pub fn print_edit(e: &crate::promote::edits::Edited, format: Format) {
    match format {
        Format::Json => print_json(e),
        Format::Text => match &e.commit {
            Some(c) => println!(
                "{} ({} on {})",
                e.message,
                crate::keys::short_commit(c, crate::keys::COMMIT_DIGITS),
                e.stage
            ),
            None => println!("{}", e.message),
        },
    }
}

/// When an override ends (`--expires` or `--for`); without either it lasts until removed.
#[derive(Debug, Clone, clap::Args)]
pub struct Expiry {
    /// It stops counting at this date (UTC midnight, `2026-12-01`) or RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// It stops counting after this long from now (`3d`, `12h`, `1week`).
    #[arg(long = "for", value_name = "DURATION")]
    pub lasting: Option<String>,
}

impl Expiry {
    /// The expiry as RFC 3339, checked (a usage error says what is expected).
    pub fn resolve(&self) -> Result<Option<String>> {
        crate::overrides::expiry(
            self.expires.as_deref(),
            self.lasting.as_deref(),
            crate::records::now_secs(),
        )
    }
}

/// The reason an override needs (`--reason`): a usage error when there is none.
pub fn reason_of(reason: Option<&str>) -> Result<&str> {
    match reason {
        Some(r) if !r.trim().is_empty() => Ok(r),
        _ => Err(Error::usage_help(
            "an override needs a reason",
            "say why with --reason TEXT; it is recorded with your name",
        )),
    }
}

/// Print an override just recorded or lifted.
pub fn print_override(verb: &str, r: &crate::overrides::OverrideRef, format: Format) {
    match format {
        Format::Json => print_json(&serde_json::json!({ "action": verb, "override": r })),
        Format::Text => println!("{verb} {}", r.line()),
    }
}

/// `waive --remove ID`, `approve --remove ID`: lift the override of `kind` whose id starts
/// with `id`, record the lifting, publish it, and say what was lifted.
pub fn lift_by_id(
    repo: &Repo,
    pipeline: &crate::manifest::Pipeline,
    kind: &str,
    id: &str,
    reason: Option<&str>,
    format: Format,
) -> Result<Code> {
    let ledger = crate::ledger::Ledger::new(repo, &pipeline.results_ref);
    let found = crate::overrides::find(&ledger.view()?, kind, id, crate::records::now_secs())?;
    crate::overrides::remove(&ledger, std::slice::from_ref(&found), &[], reason)?;
    crate::ledger::sync::publish(repo, &pipeline.results_ref)?;
    print_override("lifted", &found, format);
    Ok(0)
}

/// Print what `unfreeze`/`unquarantine` lifted: `{what: name, lifted: […]}` in JSON, or a
/// line each (`none` when there was nothing to lift).
pub fn print_lifted(
    what: &str,
    name: &str,
    lifted: &[crate::overrides::OverrideRef],
    none: &str,
    format: Format,
) {
    match format {
        Format::Json => print_json(&serde_json::json!({ what: name, "lifted": lifted })),
        Format::Text if lifted.is_empty() => println!("{none}"),
        Format::Text => {
            for l in lifted {
                println!("lifted {}", l.line());
            }
        }
    }
}

/// Print JSON to stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

/// Who decides (or bisects), for the records: `stagegate VERSION (user@host)`.
pub fn decider() -> String {
    crate::promote::publish::decider()
}

/// `n` and the noun, plural unless `n` is 1: "1 job", "2 jobs".
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn os_error_numbers_are_left_out_of_messages() {
        assert_eq!(
            super::without_os_codes(
                "reading /x: No such file or directory (os error 2); writing /y: Permission denied (os error 13)"
            ),
            "reading /x: No such file or directory; writing /y: Permission denied"
        );
        assert_eq!(
            super::without_os_codes("a (os error x) b"),
            "a (os error x) b"
        );
    }
}
