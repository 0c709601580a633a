//! Output for GitHub Actions: workflow commands, step summary and outputs.
//!
//! Active only when `GITHUB_ACTIONS=true`; elsewhere every function does nothing.

use std::io::Write;

use crate::manifest::Diagnostic;

pub fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escape a workflow-command message (`%`, CR, LF) or property (also `:` and `,`).
fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// `::error file=…,line=…,col=…::message` for each diagnostic.
pub fn annotate(diags: &[Diagnostic]) {
    if !active() {
        return;
    }
    for d in diags {
        let mut msg = d.message.clone();
        if let Some(h) = &d.help {
            msg.push_str(&format!("\nhelp: {h}"));
        }
        println!(
            "::error file={},line={},col={},title={}::{}",
            escape(&d.file, true),
            d.line,
            d.column,
            escape("stagegate check", true),
            escape(&msg, false)
        );
    }
}

/// Append Markdown to the job's step summary.
pub fn summary(markdown: &str) {
    if !active() {
        return;
    }
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{markdown}");
    }
}

/// Set step outputs (`name=value` lines, multi-line values with a delimiter).
pub fn outputs(pairs: &[(&str, String)]) {
    if !active() {
        return;
    }
    if let Ok(path) = std::env::var("GITHUB_OUTPUT")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        for (k, v) in pairs {
            if v.contains('\n') {
                let _ = writeln!(f, "{k}<<STAGEGATE_EOF\n{v}\nSTAGEGATE_EOF");
            } else {
                let _ = writeln!(f, "{k}={v}");
            }
        }
    }
}

/// `::add-mask::` for every secret stagegate was given, so no log line shows it.
pub fn mask_secrets() {
    if !active() {
        return;
    }
    for var in ["GITHUB_TOKEN", "STAGEGATE_GITHUB_APP_TOKEN"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            println!("::add-mask::{}", escape(&v, false));
        }
    }
}

/// A failed job as an error annotation, with its log excerpt folded in a group.
pub fn job_failed(label: &str, reason: Option<&str>, excerpt: &str, log: Option<&str>) {
    if !active() {
        return;
    }
    let mut msg = format!("{label} failed");
    if let Some(r) = reason {
        msg.push_str(&format!(": {r}"));
    }
    if let Some(l) = log {
        msg.push_str(&format!("\nlog: {l}"));
    }
    println!(
        "::error title={}::{}",
        escape(label, true),
        escape(&msg, false)
    );
    if !excerpt.is_empty() {
        println!("::group::log of {label}");
        println!("{excerpt}");
        println!("::endgroup::");
    }
}
