//! stagegate: a git-native promotion pipeline for test infrastructure.
//!
//! Data flows one way: `manifest` → `plan` → `runner` → `ledger` → `gate` → `promote`
//! (→ `forge`). `repo` is the git layer under all of them. The command line (`cli`, in the
//! binary) is the only place that prints; the compiler holds the library to that.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod artifact;
pub mod bisect;
pub mod diag;
pub mod error;
pub mod forge;
pub mod gate;
pub mod ledger;
pub mod links;
pub mod lockdiff;
pub mod manifest;
pub mod overrides;
pub mod plan;
pub mod poll;
pub mod promote;
pub mod records;
pub mod repo;
pub mod report;
pub mod runner;
pub mod trail;
pub mod workspace;

pub use error::{Error, Result};
