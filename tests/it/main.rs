//! Integration tests: the real binary on real repositories in temp dirs.

mod common;
mod registry;
mod test_bench;
mod test_bisect;
mod test_boundary;
mod test_cache;
mod test_check;
mod test_debian;
mod test_decision;
mod test_fuzz;
mod test_github;
mod test_help;
mod test_images;
mod test_init;
mod test_messages;
mod test_plan;
mod test_progress;
mod test_promote;
mod test_publish;
mod test_report;
mod test_resolve;
mod test_run;
mod test_store;
mod test_sync;
mod test_triage;
mod test_walk;
