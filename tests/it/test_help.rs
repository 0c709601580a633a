//! `--help` is the first documentation: every command is listed, and every flag of every
//! command has a line saying what it does.

use crate::common::TestEnv;

const COMMANDS: [&str; 20] = [
    "init",
    "check",
    "status",
    "plan",
    "diff",
    "run",
    "promote",
    "why",
    "log",
    "hold",
    "release",
    "drop",
    "cycle",
    "poll",
    "waive",
    "approve",
    "freeze",
    "unfreeze",
    "quarantine",
    "unquarantine",
];

#[test]
fn help_lists_every_command() {
    let env = TestEnv::new();
    let out = env.sg_ok(&["--help"]);
    for c in COMMANDS {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "{c} missing from --help:\n{out}"
        );
    }
}

#[test]
fn every_flag_of_every_command_is_described() {
    let env = TestEnv::new();
    for c in COMMANDS {
        let out = env.sg_ok(&[c, "--help"]);
        let lines: Vec<&str> = out.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            if t.starts_with("--")
                || (t.starts_with('-') && t.len() > 1 && t.as_bytes()[1].is_ascii_alphabetic())
            {
                // The description follows on the same line after a gap, or (long help) on
                // the next line.
                let inline = t.split_once("  ").is_some_and(|(_, d)| described(d));
                let next = lines.get(i + 1).map(|n| n.trim()).unwrap_or_default();
                assert!(
                    inline || described(next),
                    "`stagegate {c}`: flag {t:?} has no description:\n{out}"
                );
            }
        }
    }
}

/// Text that says something: not empty, and not clap's own `[default: …]` or
/// `Possible values:` notes.
fn described(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && !t.starts_with('[') && !t.starts_with("Possible values")
}
