//! `stagegate store put|get`: the artifact store by hand.

use std::path::PathBuf;

use super::{Code, Ctx, Format, print_json};
use crate::artifact::{Kind, Store};
use crate::error::{Error, IoContext, Result};
use crate::keys::Digest;

/// Put a file into the pipeline's artifact store (`artifacts.store`), or get one out of it
/// by digest: what the runner does with build outputs, by hand — to seed a store, to fetch
/// a built image for a look, or to check that a registry accepts this runner's credentials.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub op: Op,
}

#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Store FILE under its sha256 digest; print the digest, size and location.
    Put {
        file: PathBuf,
        /// How to print: text for people, json for programs (stable, documented in the README).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Fetch the file with DIGEST (sha256:HEX) into the local cache, verified; print its path.
    Get {
        digest: String,
        /// Also copy it to this path.
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let planner = ctx.workspace()?.planner()?;
    let repo = planner.repo;
    let store = Store::open(
        planner.pipeline.artifact_store.as_deref(),
        repo.root_dir(),
        repo.git_dir(),
    )?;
    match args.op {
        Op::Put { file, format } => {
            if !file.is_file() {
                return Err(Error::usage(format!("{} is not a file", file.display())));
            }
            let stored = store.put(&file, Kind::Artifact, Default::default())?;
            match format {
                Format::Json => print_json(&serde_json::json!({
                    "digest": stored.digest, "size": stored.size, "location": stored.location,
                })),
                Format::Text => println!("{} {} {}", stored.digest, stored.size, stored.location),
            }
        }
        Op::Get { digest, output } => {
            let well_formed = digest
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !well_formed {
                return Err(Error::usage_help(
                    format!("{digest:?} is not a digest"),
                    "write sha256: and 64 hex digits, as `store put` and build records print them",
                ));
            }
            let path = store.get(&Digest::from(digest), None).map_err(|why| {
                Error::infra_help(why, format!("the store is {}", store.describe()))
            })?;
            if let Some(out) = &output {
                std::fs::copy(&path, out)
                    .io_context(|| format!("copying {} to {}", path.display(), out.display()))?;
            }
            println!("{}", output.unwrap_or(path).display());
        }
    }
    Ok(0)
}
