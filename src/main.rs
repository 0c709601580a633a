//! The `stagegate` binary: parse arguments, run the command, map errors to exit codes.
//!
//! The command line lives here, not in the library: the library does the work and returns
//! what happened (it is denied printing), and `cli` parses arguments and prints.

mod cli;

// The library's modules at this crate's root, so the command line names them as it always
// has (`crate::plan`, `crate::error::Result`).
use stagegate::*;

// musl's allocator would make the static release build far slower than the glibc one
// (Cargo.toml); glibc builds keep the system allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
