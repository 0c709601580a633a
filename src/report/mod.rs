//! `stagegate report`: a static site about the pipeline, from git state alone.
//!
//! [`collect`] reads what the report shows into a [`Report`] (stage heads, the gate's
//! judgement of every candidate, the audit trail, the newest results of the ledger);
//! [`write`] turns it into HTML pages (templates under `templates/report/`), a stylesheet
//! and `report.json`. It judges nothing itself: candidates' states come from the gate,
//! exactly as `status` and `why` show them. It prints nothing and writes only under the
//! directory it is given.
//!
//! Its pages' names and URLs are in [`crate::links`], which promotion uses to link here.

mod collect;
pub mod model;
mod render;
mod svg;

pub use collect::{Options, collect, newest_results};
pub use model::*;
pub use render::{FLIGHTS_PER_PAGE, RUNS_PER_PAGE, Written, write};
