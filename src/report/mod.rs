//! `stagegate report`: a static site about the pipeline, from git state alone.
//!
//! [`collect`] reads what the report shows into a [`Report`] (stage heads, the gate's
//! judgement of every candidate, the audit trail, the newest results of the ledger);
//! [`write`] turns it into HTML pages (templates under `templates/report/`), a stylesheet
//! and `report.json`. It judges nothing itself: candidates' states come from the gate,
//! exactly as `status` and `why` show them. It prints nothing and writes only under the
//! directory it is given.

mod collect;
pub mod model;
mod render;
mod svg;

pub use collect::{Options, collect, newest_results};
pub use model::*;
pub use render::{FLIGHTS_PER_PAGE, RUNS_PER_PAGE, Written, write};

use collect::slug;

/// The environment variable that says where the report is published (the action's
/// `report-url`), so that summaries and pull requests can link to it.
pub const URL_ENV: &str = "STAGEGATE_REPORT_URL";

/// At most this many candidates get a link of their own in one move's summary.
const MAX_CANDIDATE_LINKS: usize = 20;

/// The anchor of the move `from` → `to` on the overview.
pub fn move_anchor(from: &str, to: &str) -> String {
    format!("move-{}-{}", slug(from), slug(to))
}

/// The page of a candidate of the move `from` → `to`, relative to the report's root.
pub fn candidate_page(from: &str, to: &str, item: &str) -> String {
    format!("candidates/{}-{}/{}.html", slug(from), slug(to), slug(item))
}

/// Links into the report published at [`URL_ENV`] for the move `from` → `to`: its section
/// of the overview, then each candidate's page, as (title, URL). None when it is unset.
pub fn published_links(from: &str, to: &str, candidates: &[String]) -> Vec<(String, String)> {
    match std::env::var(URL_ENV) {
        Ok(base) => links_at(&base, from, to, candidates),
        Err(_) => Vec::new(),
    }
}

/// [`published_links`] for a report published at `base`.
pub fn links_at(base: &str, from: &str, to: &str, candidates: &[String]) -> Vec<(String, String)> {
    let base = base.trim();
    if base.is_empty() {
        return Vec::new();
    }
    let base = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    let mut out = vec![(
        format!("report: {from} → {to}"),
        format!("{base}index.html#{}", move_anchor(from, to)),
    )];
    out.extend(
        candidates
            .iter()
            .take(MAX_CANDIDATE_LINKS)
            .map(|c| (c.clone(), format!("{base}{}", candidate_page(from, to, c)))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_the_moves_section_and_each_candidates_page() {
        let links = links_at(
            "https://o.github.io/state",
            "staging",
            "stable",
            &["components/hello".into()],
        );
        assert_eq!(
            links,
            [
                (
                    "report: staging → stable".to_string(),
                    "https://o.github.io/state/index.html#move-staging-stable".to_string()
                ),
                (
                    "components/hello".to_string(),
                    "https://o.github.io/state/candidates/staging-stable/components-hello.html"
                        .to_string()
                )
            ]
        );
        assert!(links_at(" ", "a", "b", &[]).is_empty());
    }
}
