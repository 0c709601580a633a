//! The pure part of bisecting: when a tested commit's results settle it, and which commit
//! to test next. Nothing here runs or reads anything; `bisect` feeds it results.

use serde::Serialize;

use crate::ledger::Verdict;

/// What the results of one job at one commit say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settled {
    /// It passes (`pass` or `flaky`, as the gate counts them) `reproduce` times, more often
    /// than it fails.
    Good,
    /// It fails `reproduce` times, more often than it passes.
    Bad,
    /// Not settled yet: this many more results are needed at least.
    Need(u32),
}

/// Settle a job from its results at one commit. `error` and `skipped` are no verdict and
/// are left out. A side is settled once it has `reproduce` results and more than the other
/// side; a commit that both passed and failed is flaky there, and the side that reaches
/// `reproduce` first (with a majority) wins, so at most `2 × reproduce − 1` results decide.
pub fn settle(results: &[Verdict], reproduce: u32) -> Settled {
    let reproduce = reproduce.max(1);
    let pass = results
        .iter()
        .filter(|v| matches!(v, Verdict::Pass | Verdict::Flaky))
        .count() as u32;
    let fail = results.iter().filter(|v| **v == Verdict::Fail).count() as u32;
    if pass >= reproduce && pass > fail {
        Settled::Good
    } else if fail >= reproduce && fail > pass {
        Settled::Bad
    } else if pass == fail && pass >= reproduce {
        // A tie: one more result breaks it.
        Settled::Need(1)
    } else {
        Settled::Need(reproduce - pass.max(fail))
    }
}

/// Whether results at one commit both passed and failed.
pub fn disagree(results: &[Verdict]) -> bool {
    results
        .iter()
        .any(|v| matches!(v, Verdict::Pass | Verdict::Flaky))
        && results.contains(&Verdict::Fail)
}

/// The index of the first bad commit of a line of `len` commits, oldest first, whose last
/// commit is bad and whose predecessor (before index 0) is good: a binary search that
/// asks `is_bad` about as few commits as possible (⌈log2 len⌉). Asks the same indexes for
/// the same answers, so a repeated bisect finds its recorded results again.
pub fn first_bad<E>(
    len: usize,
    mut is_bad: impl FnMut(usize) -> Result<bool, E>,
) -> Result<usize, E> {
    assert!(len > 0, "a line holds at least its bad commit");
    // Invariant: `good` (or the commit before the line, when None) is good; `bad` is bad.
    let mut good: Option<usize> = None;
    let mut bad = len - 1;
    loop {
        let lo = good.map_or(0, |g| g + 1);
        if lo >= bad {
            return Ok(bad);
        }
        let mid = lo + (bad - lo) / 2;
        if is_bad(mid)? {
            bad = mid;
        } else {
            good = Some(mid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    #[test]
    fn a_step_settles_when_its_verdict_reproduces() {
        let table: &[(&[Verdict], u32, Settled)] = &[
            (&[], 1, Settled::Need(1)),
            (&[], 2, Settled::Need(2)),
            (&[Pass], 1, Settled::Good),
            (&[Fail], 1, Settled::Bad),
            (&[Pass], 2, Settled::Need(1)),
            (&[Pass, Pass], 2, Settled::Good),
            (&[Flaky, Pass], 2, Settled::Good),
            (&[Fail, Fail], 2, Settled::Bad),
            // Errors are no verdict.
            (&[Error, Fail, Error], 2, Settled::Need(1)),
            (&[Skipped], 1, Settled::Need(1)),
            // Flaky commits: the side that reproduces first, with a majority.
            (&[Fail, Pass], 2, Settled::Need(1)),
            (&[Fail, Pass, Pass], 2, Settled::Good),
            (&[Pass, Fail, Fail], 2, Settled::Bad),
            (&[Fail, Pass], 1, Settled::Need(1)),
            (&[Fail, Pass, Pass], 1, Settled::Good),
            (&[Fail, Fail, Pass, Pass], 2, Settled::Need(1)),
            (&[Pass, Pass, Pass], 3, Settled::Good),
            (&[Pass, Fail], 3, Settled::Need(2)),
        ];
        for (results, n, want) in table {
            assert_eq!(settle(results, *n), *want, "{results:?} with reproduce {n}");
        }
    }

    #[test]
    fn a_disagreement_is_both_a_pass_and_a_fail() {
        assert!(disagree(&[Fail, Flaky]));
        assert!(!disagree(&[Fail, Error, Fail]));
        assert!(!disagree(&[Pass, Skipped]));
    }

    #[test]
    fn first_bad_finds_every_position_in_about_log2_steps() {
        for len in 1..=40usize {
            let bound = (usize::BITS - (len - 1).leading_zeros()) as usize; // ⌈log2 len⌉
            for first in 0..len {
                let mut asked = Vec::new();
                let found = first_bad::<()>(len, |i| {
                    asked.push(i);
                    Ok(i >= first)
                })
                .unwrap();
                assert_eq!(found, first, "len {len}");
                assert!(asked.len() <= bound, "len {len}: asked {asked:?}");
                assert!(!asked.contains(&(len - 1)), "the bad end is known");
            }
        }
    }
}
