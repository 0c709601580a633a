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

/// GitHub refuses a step summary over 1 MiB (and then shows none of it).
pub const SUMMARY_LIMIT: usize = 1024 * 1024;

/// A value no attacker can guess: a random 128-bit hex string, fresh each call (hashers
/// are seeded from the operating system's randomness, one seed per `RandomState`).
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

/// `markdown` cut so that, after `already` bytes, the summary stays within `limit`; a cut
/// summary ends with a note pointing at `full` (where the whole text is). `None`: it fits.
fn capped(markdown: &str, already: usize, limit: usize, full: &str) -> Option<String> {
    if already + markdown.len() < limit {
        return None;
    }
    let note = format!(
        "\n\n---\n**This summary is cut at GitHub's {} KiB limit.** The full report is in {full}.\n",
        limit / 1024
    );
    let room = limit.saturating_sub(already + note.len() + 1);
    // Cut at the last line that fits whole, so no table row or link is left half-written.
    let mut end = room.min(markdown.len());
    while !markdown.is_char_boundary(end) {
        end -= 1;
    }
    let end = markdown[..end].rfind('\n').unwrap_or(0);
    Some(format!("{}{note}", &markdown[..end]))
}

/// Append Markdown to the job's step summary, cut to GitHub's 1 MiB limit. When cut, the
/// whole text goes to the job's log (with workflow commands stopped, so nothing in it is
/// obeyed), and the summary links to that log.
pub fn summary(markdown: &str) {
    if !active() {
        return;
    }
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let already = std::fs::metadata(&path).map_or(0, |m| m.len() as usize);
    let log = match crate::ledger::identity().ci_url {
        Some(url) => format!("[the job's log]({url}) (group \"full step summary\")"),
        None => "the job's log (group \"full step summary\")".to_string(),
    };
    let text = match capped(markdown, already, SUMMARY_LIMIT, &log) {
        Some(cut) => {
            let stop = random_token();
            println!("::group::full step summary");
            println!("::stop-commands::{stop}");
            println!("{markdown}");
            println!("::{stop}::");
            println!("::endgroup::");
            cut
        }
        None => markdown.to_string(),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{text}");
    }
}

/// Set step outputs: `name=value`, or for a multi-line value `name<<DELIM` … `DELIM` with a
/// random delimiter, so a value can never end the block early and set outputs of its own.
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
        let _ = f.write_all(output_lines(pairs).as_bytes());
    }
}

fn output_lines(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if v.contains('\n') || v.contains('\r') {
            let delimiter = loop {
                let d = format!("ghadelimiter_{}", random_token());
                if !v.contains(&d) {
                    break d;
                }
            };
            out.push_str(&format!("{k}<<{delimiter}\n{v}\n{delimiter}\n"));
        } else {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

/// `::add-mask::` for every secret stagegate was given, so no log line shows it.
pub fn mask_secrets() {
    if !active() {
        return;
    }
    for var in [
        "GITHUB_TOKEN",
        "STAGEGATE_GITHUB_APP_TOKEN",
        "STAGEGATE_OCI_TOKEN",
        "STAGEGATE_OCI_PASSWORD",
    ] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            println!("::add-mask::{}", escape(&v, false));
        }
    }
}

/// A token no job can predict, for `::stop-commands::`.
fn fence_token(avoid: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    loop {
        let mut seed = [0u8; 32];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
        if random.is_err() {
            // No /dev/urandom: time, process and an address are still unknown to the job.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let local = 0u8;
            let text = format!("{}-{}-{:p}", now.as_nanos(), std::process::id(), &local);
            seed = Sha256::digest(text.as_bytes()).into();
        }
        let token = format!("stagegate-{}", hex::encode(&seed[..16]));
        if !avoid.contains(&token) {
            return token;
        }
    }
}

/// `text` (job output) made inert for the workflow-command stream: fenced between
/// `::stop-commands::TOKEN` and `::TOKEN::`, so no line of it is run as a command
/// (`::add-mask::`, `::endgroup::`, `::error …::`, `::stop-commands::` itself).
pub fn fenced(text: &str) -> String {
    let token = fence_token(text);
    format!("::stop-commands::{token}\n{text}\n::{token}::")
}

/// A failed job as an error annotation, with its log excerpt folded in a group; the
/// excerpt is fenced, so a job cannot issue workflow commands through it. Written whether
/// or not this is GitHub Actions: the caller asks [`active`].
pub fn job_failed(
    out: &mut impl Write,
    label: &str,
    reason: Option<&str>,
    excerpt: &str,
    log: Option<&str>,
) -> std::io::Result<()> {
    let mut msg = format!("{label} failed");
    if let Some(r) = reason {
        msg.push_str(&format!(": {r}"));
    }
    if let Some(l) = log {
        msg.push_str(&format!("\nlog: {l}"));
    }
    writeln!(
        out,
        "::error title={}::{}",
        escape(label, true),
        escape(&msg, false)
    )?;
    if !excerpt.is_empty() {
        writeln!(out, "::group::log of {}", escape(label, false))?;
        writeln!(out, "{}", fenced(excerpt))?;
        writeln!(out, "::endgroup::")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_that_fits_is_left_alone() {
        assert_eq!(capped("abc\n", 10, 100, "x"), None);
    }

    #[test]
    fn a_summary_over_the_limit_is_cut_at_a_line_and_links_the_full_report() {
        let md = "| row |\n".repeat(100);
        let cut = capped(&md, 100, 400, "[the log](https://x/runs/1)").unwrap();
        assert!(100 + cut.len() < 400, "{}", cut.len());
        assert!(cut.starts_with("| row |\n"), "{cut}");
        assert!(
            cut.contains("| row |\n\n---\n**This summary is cut"),
            "whole lines only: {cut}"
        );
        assert!(cut.ends_with("The full report is in [the log](https://x/runs/1).\n"));
    }

    #[test]
    fn multi_line_outputs_get_a_delimiter_the_value_cannot_guess() {
        let evil = "line\nSTAGEGATE_EOF\ninjected=1".to_string();
        let a = output_lines(&[("notes", evil.clone()), ("n", "1".into())]);
        let b = output_lines(&[("notes", evil)]);
        let delim = a.lines().next().unwrap().strip_prefix("notes<<").unwrap();
        assert!(delim.len() > 30, "{delim}");
        assert_eq!(
            a,
            format!("notes<<{delim}\nline\nSTAGEGATE_EOF\ninjected=1\n{delim}\nn=1\n")
        );
        assert_ne!(
            a.lines().next(),
            b.lines().next(),
            "a fresh delimiter each time"
        );
    }
}
