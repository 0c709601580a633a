//! The commands stagegate suggests: one typed value per kind of advice, rendered by one
//! `Display` as the exact command line a person can paste (DESIGN.md §4.17: every command
//! `why`, `status` or an error suggests works as printed).
//!
//! Gate reasons, `why`, `status` and error helps build their advice here instead of writing
//! `stagegate …` by hand, so the command line of each kind is written once and a test
//! (`tests/it/test_advice.rs`) can list every kind ([`Advice::KINDS`]) and run each as
//! printed. This module knows no other module but [`crate::keys`] (a job is named by its
//! short key): it only renders.

use std::fmt;

use crate::keys::JobKey;

/// A command stagegate suggests. A reason the command requires is rendered as the
/// placeholder `--reason …`, which the person replaces with theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advice {
    /// `stagegate run`: run the planned jobs that have no result yet.
    Run,
    /// `stagegate run --failed`: run the erroring jobs now, without waiting for the backoff.
    RunFailed,
    /// `stagegate run --job KEY`: run this one job (named by its short key).
    RunJob { key: JobKey },
    /// `stagegate recheck ITEM [--stage S] --reason …`: run its failing jobs again.
    Recheck { item: String, stage: Option<String> },
    /// `stagegate waive KEY --reason …`: a failing result that must not block.
    Waive { key: JobKey },
    /// `stagegate approve CANDIDATE --stage S --reason …`: let a pipeline change move.
    Approve { candidate: String, stage: String },
    /// `stagegate release ITEM`: lift a hold.
    Release { item: String },
    /// `stagegate unfreeze STAGE`: lift the freezes of a stage.
    Unfreeze { stage: String },
    /// `stagegate log-of KEY`: print a job's log.
    LogOf { key: JobKey },
    /// `stagegate why ITEM`: why an item is or is not promoted.
    Why { item: String },
    /// `stagegate status`: where every stage stands.
    Status,
    /// `stagegate check`: validate the manifests of the work tree.
    Check,
    /// `stagegate plan`: the jobs each move needs, with their keys.
    Plan,
    /// `stagegate log [ITEM]`: promotions, rejections, holds and drops.
    Log { item: Option<String> },
    /// `stagegate diff OLD NEW`: what a move would change.
    Diff { old: String, new: String },
    /// `stagegate bisect ITEM`: find the upstream commit behind a rejection.
    Bisect { item: String },
    /// `stagegate init [DIR]`: make DIR (the current directory) a state repository.
    Init { dir: Option<String> },
    /// `stagegate promote [--push]`: judge and move what passed.
    Promote { push: bool },
    /// `stagegate verify`: check every gated stage's head was promoted by the gate.
    Verify,
    /// `stagegate run --labels LABEL,…`: a runner on a host that has these labels
    /// (comma-separated, as `--labels` takes them).
    RunLabels { labels: String },
    /// Advice to run in another directory: `stagegate -C DIR …`. Its kind is the inner
    /// advice's.
    In { dir: String, advice: Box<Advice> },
}

impl Advice {
    /// `stagegate run`, or, for jobs that need host labels, `stagegate run --labels …`
    /// naming them: a runner on a host that has them runs such a job, whatever it detects.
    pub fn run_with(needs: &[String]) -> Advice {
        if needs.is_empty() {
            Advice::Run
        } else {
            Advice::RunLabels {
                labels: needs.join(","),
            }
        }
    }

    /// One name per kind, in declaration order: what a test must see printed and run.
    pub const KINDS: &'static [&'static str] = &[
        "run",
        "run-failed",
        "run-job",
        "recheck",
        "waive",
        "approve",
        "release",
        "unfreeze",
        "log-of",
        "why",
        "status",
        "check",
        "plan",
        "log",
        "diff",
        "bisect",
        "init",
        "promote",
        "verify",
        "run-labels",
    ];

    /// The name of this advice's kind, one of [`Advice::KINDS`]. The match is exhaustive,
    /// so a new kind does not compile until it has a name (and the test sees it missing).
    pub fn kind(&self) -> &'static str {
        match self {
            Advice::Run => "run",
            Advice::RunFailed => "run-failed",
            Advice::RunJob { .. } => "run-job",
            Advice::Recheck { .. } => "recheck",
            Advice::Waive { .. } => "waive",
            Advice::Approve { .. } => "approve",
            Advice::Release { .. } => "release",
            Advice::Unfreeze { .. } => "unfreeze",
            Advice::LogOf { .. } => "log-of",
            Advice::Why { .. } => "why",
            Advice::Status => "status",
            Advice::Check => "check",
            Advice::Plan => "plan",
            Advice::Log { .. } => "log",
            Advice::Diff { .. } => "diff",
            Advice::Bisect { .. } => "bisect",
            Advice::Init { .. } => "init",
            Advice::Promote { .. } => "promote",
            Advice::Verify => "verify",
            Advice::RunLabels { .. } => "run-labels",
            Advice::In { advice, .. } => advice.kind(),
        }
    }

    /// The kind of the command line `words` (without `stagegate`), when it is advice this
    /// module renders: how a test tells which kind it ran.
    pub fn kind_of(words: &[&str]) -> Option<&'static str> {
        Some(match words {
            ["run"] => "run",
            ["run", "--failed"] => "run-failed",
            ["run", "--job", _] => "run-job",
            ["recheck", ..] => "recheck",
            ["waive", ..] => "waive",
            ["approve", ..] => "approve",
            ["release", _] => "release",
            ["unfreeze", _] => "unfreeze",
            ["log-of", _] => "log-of",
            ["why", _] => "why",
            ["status"] => "status",
            ["check"] => "check",
            ["plan"] => "plan",
            ["log"] | ["log", _] => "log",
            ["diff", _, _] => "diff",
            ["bisect", _] => "bisect",
            ["init"] | ["init", _] => "init",
            ["promote"] | ["promote", "--push"] => "promote",
            ["verify"] => "verify",
            ["run", "--labels", _] => "run-labels",
            ["-C", _, rest @ ..] => return Advice::kind_of(rest),
            _ => return None,
        })
    }

    /// The words after `stagegate`, each as it must reach the program.
    fn words(&self) -> Vec<&str> {
        match self {
            Advice::Run => vec!["run"],
            Advice::RunFailed => vec!["run", "--failed"],
            Advice::RunJob { key } => vec!["run", "--job", key.short()],
            Advice::Recheck { item, stage } => {
                let mut w = vec!["recheck", item.as_str()];
                if let Some(s) = stage {
                    w.extend(["--stage", s.as_str()]);
                }
                w
            }
            Advice::Waive { key } => vec!["waive", key.short()],
            Advice::Approve { candidate, stage } => vec!["approve", candidate, "--stage", stage],
            Advice::Release { item } => vec!["release", item],
            Advice::Unfreeze { stage } => vec!["unfreeze", stage],
            Advice::LogOf { key } => vec!["log-of", key.short()],
            Advice::Why { item } => vec!["why", item],
            Advice::Status => vec!["status"],
            Advice::Check => vec!["check"],
            Advice::Plan => vec!["plan"],
            Advice::Log { item } => {
                let mut w = vec!["log"];
                w.extend(item.as_deref());
                w
            }
            Advice::Diff { old, new } => vec!["diff", old, new],
            Advice::Bisect { item } => vec!["bisect", item],
            Advice::Init { dir } => {
                let mut w = vec!["init"];
                w.extend(dir.as_deref());
                w
            }
            Advice::Promote { push } => {
                let mut w = vec!["promote"];
                if *push {
                    w.push("--push");
                }
                w
            }
            Advice::Verify => vec!["verify"],
            Advice::RunLabels { labels } => vec!["run", "--labels", labels],
            Advice::In { dir, advice } => {
                let mut w = vec!["-C", dir.as_str()];
                w.extend(advice.words());
                w
            }
        }
    }

    /// Whether the command refuses to run without `--reason`.
    fn needs_reason(&self) -> bool {
        match self {
            Advice::In { advice, .. } => advice.needs_reason(),
            a => matches!(
                a,
                Advice::Recheck { .. } | Advice::Waive { .. } | Advice::Approve { .. }
            ),
        }
    }
}

/// `word` as a POSIX shell reads it back: as is when it holds only characters no shell
/// treats specially, else in single quotes.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._,:=@+-%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stagegate")?;
        for w in self.words() {
            write!(f, " {}", quote(w))?;
        }
        if self.needs_reason() {
            f.write_str(" --reason …")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_name_and_renders_a_command_line() {
        let all = [
            Advice::Run,
            Advice::RunFailed,
            Advice::RunJob {
                key: "0123456789ab".into(),
            },
            Advice::Recheck {
                item: "images/host".into(),
                stage: Some("stable".into()),
            },
            Advice::Waive {
                key: "0123456789ab".into(),
            },
            Advice::Approve {
                candidate: "stagegate.yaml".into(),
                stage: "stable".into(),
            },
            Advice::Release {
                item: "components/xen".into(),
            },
            Advice::Unfreeze {
                stage: "stable".into(),
            },
            Advice::LogOf {
                key: "0123456789ab".into(),
            },
            Advice::Why {
                item: "tests/boot".into(),
            },
            Advice::Status,
            Advice::Check,
            Advice::Plan,
            Advice::Log {
                item: Some("images/host".into()),
            },
            Advice::Diff {
                old: "stable".into(),
                new: "staging".into(),
            },
            Advice::Bisect {
                item: "components/xen".into(),
            },
            Advice::Init { dir: None },
            Advice::Promote { push: true },
            Advice::Verify,
            Advice::RunLabels {
                labels: "kvm,big".into(),
            },
        ];
        let kinds: Vec<_> = all.iter().map(Advice::kind).collect();
        assert_eq!(kinds, Advice::KINDS);
        for a in &all {
            let s = a.to_string();
            let words: Vec<&str> = s.split(' ').skip(1).collect();
            assert_eq!(Advice::kind_of(&words), Some(a.kind()), "{s}");
        }
        assert_eq!(
            all[3].to_string(),
            "stagegate recheck images/host --stage stable --reason …"
        );
    }

    #[test]
    fn advice_for_another_directory_keeps_its_kind() {
        let a = Advice::In {
            dir: "/tmp/my state".into(),
            advice: Box::new(Advice::Status),
        };
        assert_eq!(a.to_string(), "stagegate -C '/tmp/my state' status");
        assert_eq!(a.kind(), "status");
        assert_eq!(
            Advice::kind_of(&["-C", "/tmp/my state", "status"]),
            Some("status")
        );
    }

    #[test]
    fn words_a_shell_would_split_are_quoted() {
        let a = Advice::Release {
            item: "it's here".into(),
        };
        assert_eq!(a.to_string(), r"stagegate release 'it'\''s here'");
    }
}
