//! stagegate: a git-native promotion pipeline for test infrastructure.
//!
//! Data flows one way: `manifest` → `plan` → `runner` → `ledger` → `gate` → `judge` →
//! `promote` (→ `forge`). `repo` is the git layer under all of them. `judge` is the one
//! place that reads the facts and asks the gate; every reader of a decision (status, why,
//! plan, run, promote, verify, poll, bisect, report) starts from its `Judgement`. `cycle`,
//! at the top, is the orchestration: judge, run what the judgement needs, judge again,
//! bisect, promote. The runner is handed jobs and never asks why. The command line (`cli`,
//! in the binary) is the only place that prints; the compiler holds the library to that.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod advice;
pub mod artifact;
pub mod bisect;
pub mod cycle;
pub mod diag;
pub mod dsse;
pub mod error;
pub mod forge;
pub mod gate;
pub mod judge;
pub mod keys;
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
pub mod runners;
pub mod sshsig;
pub mod trail;
pub mod trust;
pub mod workspace;

pub use error::{Error, Result};
