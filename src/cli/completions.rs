//! `stagegate completions SHELL`: the shell's completion script, generated from the same clap
//! definitions as `--help`, so it names every command and flag this binary has.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, Code};
use crate::error::{Error, Result};

/// Print the completion script for a shell.
///
/// Save it where the shell looks for completions (the release archives carry these three in
/// `completions/`):
///
/// bash: `stagegate completions bash > ~/.local/share/bash-completion/completions/stagegate`
///
/// zsh: `stagegate completions zsh > ~/.zfunc/_stagegate`, with `fpath+=~/.zfunc` before
/// `compinit` in ~/.zshrc
///
/// fish: `stagegate completions fish > ~/.config/fish/completions/stagegate.fish`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> Result<Code> {
    // Into a buffer first: clap_complete panics on a failed write, and a full disk under
    // `> file` is an error to report, not a bug.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "stagegate", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            context: format!("writing the {} completion script to stdout", args.shell),
            source,
        })?;
    Ok(0)
}
