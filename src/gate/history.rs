//! Flake history: what the ledger says of one job key (one test in one environment) over
//! every attempt recorded for it, not only the newest.
//!
//! It is computed from the attempts the gate reads anyway (the records of a planned key),
//! so knowing the history costs no extra ledger reads. A re-run adds an attempt; it never
//! replaces one, so four failures and a pass read as "5 runs: 1 pass, 4 fail".

use serde::{Deserialize, Serialize};

use crate::ledger::{ResultRecord, Verdict};

/// Every recorded attempt of one job key, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct History {
    pub runs: u32,
    pub passes: u32,
    pub fails: u32,
    /// Failed, then passed on retry within one run.
    pub flaky: u32,
    /// Could not run, or skipped.
    pub errors: u32,
    /// When the newest passing attempt finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<String>,
    /// When the oldest failing attempt finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_fail: Option<String>,
    /// Attempts recorded after the first failing one: the "more tries" a `wait` policy
    /// counts.
    pub tries_since_first_fail: u32,
}

impl History {
    /// The history of `records`, oldest first (as [`crate::ledger::LedgerView::results`]
    /// returns them).
    pub fn of(records: &[ResultRecord]) -> History {
        let mut h = History::default();
        for r in records {
            h.runs += 1;
            if h.first_fail.is_some() {
                h.tries_since_first_fail += 1;
            }
            match r.verdict {
                Verdict::Pass => h.passes += 1,
                Verdict::Fail => h.fails += 1,
                Verdict::Flaky => h.flaky += 1,
                Verdict::Error | Verdict::Skipped => h.errors += 1,
            }
            if matches!(r.verdict, Verdict::Pass | Verdict::Flaky) {
                h.last_pass = Some(r.finished.clone());
            }
            if matches!(r.verdict, Verdict::Fail | Verdict::Flaky) && h.first_fail.is_none() {
                h.first_fail = Some(r.finished.clone());
            }
        }
        h
    }

    pub fn has_passed(&self) -> bool {
        self.passes + self.flaky > 0
    }

    pub fn has_failed(&self) -> bool {
        self.fails + self.flaky > 0
    }

    /// Passed and failed for the same key: a heisenbug, not a regression.
    pub fn is_flaky(&self) -> bool {
        self.has_passed() && self.has_failed()
    }

    /// Failed, and never passed.
    pub fn never_passed(&self) -> bool {
        self.has_failed() && !self.has_passed()
    }

    /// For people: `5 runs: 1 pass, 4 fail; last pass …; first fail …`.
    pub fn line(&self) -> String {
        let mut parts = vec![
            format!("{} pass", self.passes),
            format!("{} fail", self.fails),
        ];
        if self.flaky > 0 {
            parts.push(format!("{} flaky", self.flaky));
        }
        if self.errors > 0 {
            parts.push(format!("{} error", self.errors));
        }
        let mut out = format!(
            "{} run{}: {}",
            self.runs,
            if self.runs == 1 { "" } else { "s" },
            parts.join(", ")
        );
        if let Some(t) = &self.last_pass {
            out.push_str(&format!("; last pass {t}"));
        }
        if let Some(t) = &self.first_fail {
            out.push_str(&format!("; first fail {t}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Exit, Runner};

    fn rec(v: Verdict, at: &str) -> ResultRecord {
        ResultRecord {
            key: "k".repeat(64),
            kind: "test".into(),
            name: "t".into(),
            role: "candidate".into(),
            candidates: Vec::new(),
            verdict: v,
            reason: None,
            exit: Exit {
                code: Some(0),
                signal: None,
            },
            tries: 1,
            started: at.into(),
            finished: at.into(),
            duration_ms: 1,
            runner: Runner {
                host: "h".into(),
                user: "u".into(),
                pid: 1,
                ci_url: None,
            },
            commit: "c".into(),
            env: Vec::new(),
            artifact: None,
            log: None,
            excerpt: String::new(),
            attempt: 0,
        }
    }

    /// (runs, passes, fails, flaky?, never passed?, tries since first fail)
    type Want = (u32, u32, u32, bool, bool, u32);

    #[test]
    fn history_counts_every_attempt_and_knows_a_heisenbug() {
        use Verdict::*;
        let table: &[(&[Verdict], Want)] = &[
            // verdicts → (runs, passes, fails, flaky?, never passed?, tries since first fail)
            (&[], (0, 0, 0, false, false, 0)),
            (&[Pass], (1, 1, 0, false, false, 0)),
            (&[Fail], (1, 0, 1, false, true, 0)),
            (&[Fail, Fail, Fail, Fail, Pass], (5, 1, 4, true, false, 4)),
            (&[Pass, Fail], (2, 1, 1, true, false, 0)),
            (&[Pass, Fail, Fail], (3, 1, 2, true, false, 1)),
            (&[Flaky], (1, 0, 0, true, false, 0)),
            (&[Error, Fail], (2, 0, 1, false, true, 0)),
        ];
        for (verdicts, want) in table {
            let recs: Vec<ResultRecord> = verdicts
                .iter()
                .enumerate()
                .map(|(i, v)| rec(*v, &format!("2026-11-2{i}T00:00:00Z")))
                .collect();
            let h = History::of(&recs);
            assert_eq!(
                (
                    h.runs,
                    h.passes,
                    h.fails,
                    h.is_flaky(),
                    h.never_passed(),
                    h.tries_since_first_fail
                ),
                *want,
                "{verdicts:?}"
            );
        }
        let h = History::of(&[
            rec(Fail, "2026-11-20T00:00:00Z"),
            rec(Pass, "2026-11-21T00:00:00Z"),
        ]);
        assert_eq!(
            h.line(),
            "2 runs: 1 pass, 1 fail; last pass 2026-11-21T00:00:00Z; first fail 2026-11-20T00:00:00Z"
        );
    }
}
