//! Flake history: what the ledger says of one job key (one test in one environment) over
//! every attempt recorded for it, not only the newest.
//!
//! A re-run adds an attempt; it never replaces one, so four failures and a pass read as
//! "5 runs: 1 pass, 4 fail". The counts come from the attempts' file names, which carry the
//! verdict (`NNNN-XXXXXXXX-VERDICT.yaml`, see the module above): the gate reads one listing
//! of a planned key's directory, the records of its newest attempt, and at most two more
//! (when the newest passing and the oldest failing attempt finished), however often the job
//! was re-run.

use serde::{Deserialize, Serialize};

use super::{LedgerView, ResultRecord, Verdict, attempt_of, verdict_of};
use crate::error::Result;
use crate::keys::JobKey;
use crate::repo::Entry;
use gix::objs::tree::EntryKind;

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
        History::tally(
            records
                .iter()
                .map(|r| (r.verdict, Some(r.finished.as_str()))),
        )
    }

    /// The history of attempts given oldest first as (verdict, when it finished). Only the
    /// times of the newest passing and the oldest failing attempt are used: the others may
    /// be `None` (not read).
    fn tally<'a>(attempts: impl IntoIterator<Item = (Verdict, Option<&'a str>)>) -> History {
        let mut h = History::default();
        let mut failed = false;
        for (verdict, finished) in attempts {
            h.runs += 1;
            if failed {
                h.tries_since_first_fail += 1;
            }
            match verdict {
                Verdict::Pass => h.passes += 1,
                Verdict::Fail => h.fails += 1,
                Verdict::Flaky => h.flaky += 1,
                Verdict::Error | Verdict::Skipped => h.errors += 1,
            }
            if passes(verdict) {
                h.last_pass = finished.map(String::from);
            }
            if fails(verdict) && !failed {
                failed = true;
                h.first_fail = finished.map(String::from);
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

/// A verdict that counts as a pass in the history (`last_pass`).
fn passes(v: Verdict) -> bool {
    matches!(v, Verdict::Pass | Verdict::Flaky)
}

/// A verdict that counts as a failure in the history (`first_fail`).
fn fails(v: Verdict) -> bool {
    matches!(v, Verdict::Fail | Verdict::Flaky)
}

/// The newest result and history of each key asked for, as a view found them.
pub(super) type Memo = std::collections::HashMap<JobKey, Option<(ResultRecord, History)>>;

/// One file of a key's directory, as far as it is known.
struct Attempt {
    number: u32,
    entry: Entry,
    /// The verdict: the record's once read, until then the file name's.
    verdict: Option<Verdict>,
    record: Option<ResultRecord>,
}

impl LedgerView<'_> {
    /// The result that counts for `key` (as [`LedgerView::latest`] gives it) and the history
    /// of all its attempts (as `History::of(&self.results(key)?)` gives it), from one
    /// listing of the key's directory and as few records as the names allow: those of the
    /// newest attempt, of the newest passing and of the oldest failing attempt (none more
    /// when the newest attempt is also the last pass), and of every name without a verdict
    /// (a ledger written before names carried it). A view replaying a decision (`as_of`)
    /// reads every record: only they say when each attempt finished. The answer is kept
    /// for the life of the view (which never changes): the gate asks again for every key
    /// when it judges a combination of candidates.
    ///
    /// Attempts are ordered by number, and within one number (two runners' ledgers merged)
    /// by file name, where [`LedgerView::results`] orders them by when they finished: the
    /// counts are the same, `first_fail`, `last_pass` and `tries_since_first_fail` may
    /// differ in that case only.
    ///
    /// A record that is read and cannot be, is skipped and noted, as everywhere: it does not
    /// count, and the next attempt back takes its place. A record that is not read counts
    /// by its name: one in the middle of the history whose content would not parse counts
    /// (a full read would skip it and note it), and one whose content contradicts its name
    /// counts as the name says.
    pub fn latest_with_history(&self, key: &JobKey) -> Result<Option<(ResultRecord, History)>> {
        if let Some(known) = self.histories.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(known);
        }
        let found = self.read_latest_with_history(key)?;
        if let Ok(mut m) = self.histories.lock() {
            m.insert(key.clone(), found.clone());
        }
        Ok(found)
    }

    fn read_latest_with_history(&self, key: &JobKey) -> Result<Option<(ResultRecord, History)>> {
        if self.as_of.is_some() {
            let all = self.results(key)?;
            let history = History::of(&all);
            return Ok(all.into_iter().last().map(|r| (r, history)));
        }
        let mut attempts: Vec<Attempt> = self
            .key_entries(key)?
            .into_iter()
            .map(|entry| Attempt {
                number: attempt_of(&entry.name),
                // Only a file is a record; anything else is read, to be skipped and noted.
                verdict: matches!(entry.kind, EntryKind::Blob | EntryKind::BlobExecutable)
                    .then(|| verdict_of(&entry.name))
                    .flatten(),
                record: None,
                entry,
            })
            .collect();
        attempts.sort_by(|a, b| (a.number, &a.entry.name).cmp(&(b.number, &b.entry.name)));
        loop {
            let wanted = wanted(&attempts);
            if wanted.is_empty() {
                break;
            }
            // The last first, so that dropping one leaves the indices before it valid.
            for i in wanted.into_iter().rev() {
                match self.counted(key, &attempts[i].entry)? {
                    Some(r) => {
                        attempts[i].verdict = Some(r.verdict);
                        attempts[i].record = Some(r);
                    }
                    None => {
                        attempts.remove(i);
                    }
                }
            }
        }
        let Some(newest) = attempts.last().map(|a| a.number) else {
            return Ok(None);
        };
        // Every verdict is known now: `wanted` read each name that gave none.
        let history =
            History::tally(attempts.iter().filter_map(|a| {
                Some((a.verdict?, a.record.as_ref().map(|r| r.finished.as_str())))
            }));
        // Ties go to the later entry, as `latest` and `results` order them.
        let latest = attempts
            .into_iter()
            .filter(|a| a.number == newest)
            .filter_map(|a| a.record)
            .reduce(|best, r| if r.finished >= best.finished { r } else { best });
        Ok(latest.map(|r| (r, history)))
    }
}

impl LedgerView<'_> {
    /// The attempt numbers of `key`'s newest attempts that ended in `error` (or were
    /// skipped), newest first, up to the first that did not: what a gate's error budget
    /// counts. Read from the file names, which carry the verdict; a name without one is
    /// read (as is every record of a view replaying a decision).
    pub fn trailing_errors(&self, key: &JobKey) -> Result<Vec<u32>> {
        let errored = |v: Verdict| matches!(v, Verdict::Error | Verdict::Skipped);
        if self.as_of.is_some() {
            return Ok(self
                .results(key)?
                .iter()
                .rev()
                .take_while(|r| errored(r.verdict))
                .map(|r| r.attempt)
                .collect());
        }
        let Some(tree) = self.key_tree(key)? else {
            return Ok(Vec::new());
        };
        let mut entries = self.repo.tree_entries(tree)?;
        entries.sort_by(|a, b| (attempt_of(&b.name), &b.name).cmp(&(attempt_of(&a.name), &a.name)));
        let mut out = Vec::new();
        for e in &entries {
            let verdict = match verdict_of(&e.name) {
                Some(v) => v,
                None => match self.counted(key, e)? {
                    Some(r) => r.verdict,
                    None => continue,
                },
            };
            if !errored(verdict) {
                break;
            }
            out.push(attempt_of(&e.name));
        }
        Ok(out)
    }
}

/// The attempts whose records must be read next (indices, ascending): first those of the
/// newest attempt and every one whose name gives no verdict; once they are known, the
/// newest passing and the oldest failing attempt, whose times the history holds.
fn wanted(attempts: &[Attempt]) -> Vec<usize> {
    let unread = |i: &usize| attempts[*i].record.is_none();
    let newest = attempts.last().map(|a| a.number);
    let first: Vec<usize> = (0..attempts.len())
        .filter(|&i| attempts[i].verdict.is_none() || Some(attempts[i].number) == newest)
        .filter(unread)
        .collect();
    if !first.is_empty() {
        return first;
    }
    let first_fail = attempts.iter().position(|a| a.verdict.is_some_and(fails));
    let last_pass = attempts.iter().rposition(|a| a.verdict.is_some_and(passes));
    let mut out: Vec<usize> = [first_fail, last_pass]
        .into_iter()
        .flatten()
        .filter(unread)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Exit, Runner};

    fn rec(v: Verdict, at: &str) -> ResultRecord {
        ResultRecord {
            key: "k".repeat(64).into(),
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
                labels: Vec::new(),
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

    const KEY: &str = "ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01ab01";
    const REF: &str = "refs/stagegate/results";

    /// One file of a test ledger's key directory.
    struct File {
        attempt: u32,
        verdict: Verdict,
        /// Named with its verdict (`NNNN-XXXXXXXX-VERDICT.yaml`), or in the older form.
        named: bool,
        /// Holds a record, or bytes that do not parse as one.
        readable: bool,
    }

    fn file(attempt: u32, verdict: Verdict, named: bool, readable: bool) -> File {
        File {
            attempt,
            verdict,
            named,
            readable,
        }
    }

    /// A real repository whose ledger holds `files` under `KEY`, the i-th finishing at
    /// minute i (and named so that the name order within an attempt is the same).
    fn ledger(files: &[File]) -> (tempfile::TempDir, crate::repo::Repo) {
        let dir = tempfile::tempdir().unwrap();
        gix::init_bare(dir.path()).unwrap();
        let repo = crate::repo::Repo::open(dir.path()).unwrap();
        let edits: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut r = rec(f.verdict, &format!("2026-11-20T10:{i:02}:00Z"));
                r.key = KEY.into();
                let text = if f.readable {
                    crate::records::to_yaml(&r)
                } else {
                    "verdict: [not a record\n".into()
                };
                let nonce = format!("{:08x}", 0xa0 + i);
                let name = if f.named {
                    super::super::record_name(f.attempt, &nonce, f.verdict)
                } else {
                    format!("{:04}-{nonce}.yaml", f.attempt)
                };
                let blob = repo.write_blob(text.as_bytes()).unwrap();
                (
                    format!("{}/{name}", super::super::key_dir(&KEY.into())),
                    Some((EntryKind::Blob, blob)),
                )
            })
            .collect();
        let empty = gix::ObjectId::empty_tree(gix::hash::Kind::Sha1);
        let tree = repo.edit_tree(empty, &edits).unwrap();
        let commit = repo.write_commit(tree, &[], "test ledger").unwrap();
        repo.cas(REF, None, commit, "test").unwrap();
        (dir, repo)
    }

    #[test]
    fn history_from_names_equals_history_of_every_record() {
        use Verdict::*;
        let f = |n, v| file(n, v, true, true);
        let old = |n, v| file(n, v, false, true);
        let broken = |n, v| file(n, v, true, false);
        let table: Vec<(&str, Vec<File>)> = vec![
            (
                "every verdict, old names mixed in",
                vec![
                    old(1, Pass),
                    f(2, Fail),
                    old(3, Error),
                    f(4, Flaky),
                    f(5, Fail),
                    old(6, Skipped),
                    f(7, Error),
                    f(8, Pass),
                ],
            ),
            (
                "the newest in the old form",
                vec![f(1, Fail), f(2, Pass), old(3, Fail)],
            ),
            ("never passed", vec![f(1, Error), f(2, Fail), f(3, Fail)]),
            ("flaky only", vec![f(1, Flaky), f(2, Flaky)]),
            (
                "the oldest failure does not parse",
                vec![f(1, Pass), broken(2, Fail), f(3, Fail), f(4, Pass)],
            ),
            (
                "the last pass does not parse",
                vec![f(1, Pass), broken(2, Pass), f(3, Fail), f(4, Fail)],
            ),
            (
                "the newest does not parse",
                vec![f(1, Pass), f(2, Fail), broken(3, Pass)],
            ),
            ("nothing parses", vec![broken(1, Pass), broken(2, Fail)]),
            (
                "two runners recorded the same attempt",
                vec![f(1, Fail), f(2, Pass), f(2, Fail), f(3, Error)],
            ),
            (
                "two runners recorded the newest attempt",
                vec![f(1, Fail), f(2, Pass), f(2, Fail)],
            ),
        ];
        for (what, files) in table {
            let (_dir, repo) = ledger(&files);
            let ledger = super::super::Ledger::new(&repo, REF);
            let view = ledger.view().unwrap();
            let all = view.results(&KEY.into()).unwrap();
            let want = all.last().cloned().map(|r| (r, History::of(&all)));
            let got = view.latest_with_history(&KEY.into()).unwrap();
            assert_eq!(got, want, "{what}");
            assert_eq!(
                got.map(|(r, _)| r),
                view.latest(&KEY.into()).unwrap(),
                "{what}: the newest result"
            );
            // Replaying a decision counts only what had finished by then.
            let view = ledger.view().unwrap().as_of("2026-11-20T10:01:30Z");
            let all = view.results(&KEY.into()).unwrap();
            let want = all.last().cloned().map(|r| (r, History::of(&all)));
            assert_eq!(
                view.latest_with_history(&KEY.into()).unwrap(),
                want,
                "{what}, as of"
            );
            let other = KEY.replace("ab", "cd");
            assert_eq!(
                view.latest_with_history(&other.into()).unwrap(),
                None,
                "{what}"
            );
        }
    }

    #[test]
    fn a_record_the_history_does_not_need_counts_by_its_name_unread() {
        use Verdict::*;
        // Attempt 3 is neither the newest, nor the last pass, nor the first failure.
        let (_dir, repo) = ledger(&[
            file(1, Pass, true, true),
            file(2, Fail, true, true),
            file(3, Fail, true, false),
            file(4, Pass, true, true),
        ]);
        let view = super::super::Ledger::new(&repo, REF).view().unwrap();
        let (latest, h) = view.latest_with_history(&KEY.into()).unwrap().unwrap();
        assert_eq!((latest.attempt, latest.verdict), (4, Pass));
        assert_eq!(
            h.line(),
            "4 runs: 2 pass, 2 fail; last pass 2026-11-20T10:03:00Z; first fail 2026-11-20T10:01:00Z"
        );
        assert_eq!(h.tries_since_first_fail, 2);
        // Reading every record skips it instead.
        assert_eq!(History::of(&view.results(&KEY.into()).unwrap()).runs, 3);
    }
}
