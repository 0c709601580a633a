//! `stagegate man`: the manual page, rendered by clap_mangen from the same clap definitions as
//! `--help`, so the two cannot disagree.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::{Cli, Code};
use crate::error::{Error, Result};

/// Print the man page, or write a page for every command into a directory.
///
/// `stagegate man | man -l -` reads it at once. `stagegate man --out DIR` writes
/// `stagegate.1` and one page per command (`stagegate-cycle.1`, `stagegate-hook-install.1`,
/// …) — what the release archives carry in `man/man1/`; put DIR on MANPATH or copy the
/// pages into /usr/local/share/man/man1.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write stagegate.1 and a page per command into DIR (made if missing) instead of
    /// printing stagegate.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<Code> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each command its full name (`stagegate-hook-install`): the page's title and file.
    cmd.build();
    let Some(dir) = args.out else {
        let page = render(&man_of(&cmd), cmd.get_name())?;
        let mut out = std::io::stdout().lock();
        out.write_all(&page)
            .and_then(|()| out.flush())
            .map_err(|source| Error::Io {
                context: "writing the man page to stdout".into(),
                source,
            })?;
        return Ok(0);
    };
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("making the directory {} for the man pages", dir.display()),
        source,
    })?;
    let mut written = Vec::new();
    write_pages(&cmd, &dir, &mut written)?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(0)
}

/// The page of `cmd`, its footer naming stagegate and its version (clap_mangen's default names
/// the command alone: "cycle 0.1.0").
fn man_of(cmd: &clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd.clone()).source(format!("stagegate {}", env!("CARGO_PKG_VERSION")))
}

/// The page as roff (`name` for the error, which a write into memory should never make).
fn render(man: &clap_mangen::Man, name: &str) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    man.render(&mut page).map_err(|source| Error::Io {
        context: format!("rendering the man page of {name}"),
        source,
    })?;
    Ok(page)
}

/// Write the page of `cmd` and of each of its visible commands, depth first, into `dir`,
/// adding each path written to `written`.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let man = man_of(cmd);
    let path = dir.join(man.get_filename());
    std::fs::write(&path, render(&man, cmd.get_name())?).map_err(|source| Error::Io {
        context: format!("writing the man page {}", path.display()),
        source,
    })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
