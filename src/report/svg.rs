//! Small inline SVG charts, drawn by hand: no script, no external file, a few hundred bytes.
//!
//! Colours come from the page's stylesheet (`.c-pass`, `.c-fail`, …), so a chart is one
//! `<path>` per verdict rather than one element per run.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ledger::Verdict;

/// One run as a chart sees it.
pub struct Point {
    pub verdict: Verdict,
    pub duration_ms: u64,
}

const BAR: usize = 5;
const GAP: usize = 1;
const HEIGHT: usize = 28;

/// Pass rate over the runs, oldest left: a line of the rate over the last five runs, above
/// one tick per run coloured by its verdict. `None` for no runs.
pub fn pass_rate(points: &[Point], label: &str) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let width = points.len() * (BAR + GAP);
    let top = HEIGHT - 8;
    let mut line = String::new();
    for i in 0..points.len() {
        let window = &points[i.saturating_sub(4)..=i];
        let judged = window.iter().filter(|p| p.verdict.is_final()).count();
        let passed = window
            .iter()
            .filter(|p| matches!(p.verdict, Verdict::Pass | Verdict::Flaky))
            .count();
        let rate = if judged == 0 {
            1.0
        } else {
            passed as f64 / judged as f64
        };
        let x = i * (BAR + GAP) + BAR / 2;
        let y = 1.0 + (1.0 - rate) * (top - 2) as f64;
        let _ = write!(line, "{}{x} {y:.0}", if i == 0 { "M" } else { "L" });
    }
    let mut ticks: BTreeMap<&str, String> = BTreeMap::new();
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            ticks.entry(p.verdict.as_str()).or_default(),
            "M{} {}h{BAR}v6h-{BAR}z",
            i * (BAR + GAP),
            HEIGHT - 6
        );
    }
    let mut svg = open(width, label);
    let _ = write!(
        svg,
        r#"<path class="rate" d="{line}" fill="none" stroke-width="1.5"/>"#
    );
    for (verdict, d) in ticks {
        let _ = write!(svg, r#"<path class="c-{verdict}" d="{d}"/>"#);
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// Durations, oldest left: one bar per run, as tall as its share of the longest, coloured
/// by its verdict. `None` for no runs.
pub fn durations(points: &[Point], label: &str) -> Option<String> {
    if points.is_empty() {
        return None;
    }
    let width = points.len() * (BAR + GAP);
    let max = points
        .iter()
        .map(|p| p.duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bars: BTreeMap<&str, String> = BTreeMap::new();
    for (i, p) in points.iter().enumerate() {
        let h = ((p.duration_ms as f64 / max as f64) * (HEIGHT - 1) as f64).round() as usize;
        let h = h.max(1);
        let _ = write!(
            bars.entry(p.verdict.as_str()).or_default(),
            "M{} {}h{BAR}v{h}h-{BAR}z",
            i * (BAR + GAP),
            HEIGHT - h
        );
    }
    let mut svg = open(width, label);
    for (verdict, d) in bars {
        let _ = write!(svg, r#"<path class="c-{verdict}" d="{d}"/>"#);
    }
    svg.push_str("</svg>");
    Some(svg)
}

fn open(width: usize, label: &str) -> String {
    format!(
        r#"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(label),
        escape(label)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(Verdict, u64)]) -> Vec<Point> {
        v.iter()
            .map(|&(verdict, duration_ms)| Point {
                verdict,
                duration_ms,
            })
            .collect()
    }

    #[test]
    fn pass_rate_draws_a_tick_per_run_in_its_verdict_colour() {
        let svg = pass_rate(
            &pts(&[(Verdict::Pass, 1), (Verdict::Fail, 1), (Verdict::Pass, 1)]),
            "a <test>",
        )
        .unwrap();
        assert!(
            svg.contains(r#"<path class="c-pass" d="M0 22h5v6h-5zM12 22h5v6h-5z"/>"#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<path class="c-fail" d="M6 22h5v6h-5z"/>"#),
            "{svg}"
        );
        // All pass, then one of two, then two of three: the line goes down, then up.
        assert!(svg.contains(r#"d="M2 1L8 10L14 7""#), "{svg}");
        assert!(svg.contains("<title>a &lt;test&gt;</title>"), "{svg}");
    }

    #[test]
    fn durations_scale_bars_to_the_longest_run() {
        let svg = durations(&pts(&[(Verdict::Pass, 100), (Verdict::Pass, 50)]), "d").unwrap();
        assert!(svg.contains(r#"d="M0 1h5v27h-5zM6 14h5v14h-5z""#), "{svg}");
    }

    #[test]
    fn no_runs_no_chart() {
        assert!(pass_rate(&[], "x").is_none());
        assert!(durations(&[], "x").is_none());
    }
}
