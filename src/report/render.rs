//! The model as a static site: HTML pages from `templates/report/` (minijinja, built into
//! the binary), a stylesheet, and `report.json`.
//!
//! Every page is bounded: history is paginated by tested commit ([`FLIGHTS_PER_PAGE`]) and
//! each test's runs by [`RUNS_PER_PAGE`]; no page needs a script.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::model::{Report, RunView, TestHistory};
use super::svg;
use crate::error::{Error, IoContext, Result};
use crate::keys::JobKey;
use crate::links::slug;

/// Tested commits (columns) per page of the history grid.
pub const FLIGHTS_PER_PAGE: usize = 20;
/// Runs per page of a test's history.
pub const RUNS_PER_PAGE: usize = 50;
/// Runs drawn in a test's charts on the tests index.
const CHART_RUNS: usize = 30;
/// Results shown in one grid cell; the rest are counted.
const CELL_RESULTS: usize = 4;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html.j2",
        include_str!("../../templates/report/base.html.j2"),
    ),
    (
        "index.html.j2",
        include_str!("../../templates/report/index.html.j2"),
    ),
    (
        "candidate.html.j2",
        include_str!("../../templates/report/candidate.html.j2"),
    ),
    (
        "history.html.j2",
        include_str!("../../templates/report/history.html.j2"),
    ),
    (
        "tests.html.j2",
        include_str!("../../templates/report/tests.html.j2"),
    ),
    (
        "test.html.j2",
        include_str!("../../templates/report/test.html.j2"),
    ),
    (
        "items.html.j2",
        include_str!("../../templates/report/items.html.j2"),
    ),
    (
        "item.html.j2",
        include_str!("../../templates/report/item.html.j2"),
    ),
];
const STYLE: &str = include_str!("../../templates/report/style.css");

/// What was written.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub dir: PathBuf,
    pub pages: usize,
    pub bytes: u64,
    /// The largest HTML page and its size, to see that pagination bounds them.
    pub largest: (String, u64),
}

/// Write the site for `report` into `out`. `out` must be missing, empty, or an earlier
/// report (it has a `report.json`), whose pages are replaced.
pub fn write(report: &Report, out: &Path) -> Result<Written> {
    prepare(out)?;
    let env = environment(report.forge.clone())?;
    // Failures' logs, copied into the site where they are files of this machine: a reader
    // of the published report cannot open a runner's path.
    let mut report = report.clone();
    copy_failure_logs(&mut report, out)?;
    let report = &report;
    let mut w = Writer {
        out,
        env: &env,
        written: Written {
            dir: out.to_path_buf(),
            pages: 0,
            bytes: 0,
            largest: (String::new(), 0),
        },
        generated_at: &report.generated_at,
    };
    w.file("style.css", STYLE.as_bytes())?;
    let json = serde_json::to_vec(report).expect("the report serializes");
    w.file("report.json", &json)?;

    let pages_of_tests = test_pages(&report.tests);
    let flight_pages = report.flights.len().div_ceil(FLIGHTS_PER_PAGE).max(1);

    w.page(
        "index.html",
        "index.html.j2",
        context! {
            stages => &report.stages,
            moves => &report.moves,
            recent => &report.recent,
            attestations => &report.attestations,
            generated_unix => report.generated_unix,
        },
    )?;
    for m in &report.moves {
        for c in &m.candidates {
            w.page(
                &c.page,
                "candidate.html.j2",
                context! { m => context!{ from => &m.from, to => &m.to, gate => &m.gate }, c => c },
            )?;
        }
    }
    for page in 0..flight_pages {
        let start = page * FLIGHTS_PER_PAGE;
        let flights = &report.flights
            [start.min(report.flights.len())..(start + FLIGHTS_PER_PAGE).min(report.flights.len())];
        let rows = grid(&report.tests, flights, &pages_of_tests);
        w.page(
            &numbered("history", page),
            "history.html.j2",
            context! {
                flights => flights,
                rows => rows,
                page => page + 1,
                pages => flight_pages,
                newer => (page > 0).then(|| numbered("history", page - 1)),
                older => (page + 1 < flight_pages).then(|| numbered("history", page + 1)),
                runs_read => report.runs_read,
                runs_limit => report.runs_limit,
            },
        )?;
    }
    let summaries: Vec<Value> = report
        .tests
        .iter()
        .map(|t| {
            let recent: Vec<&RunView> = t.runs.iter().take(CHART_RUNS).collect();
            context! {
                t => context! {
                    name => &t.name, page => &t.page, passed => t.passed, judged => t.judged,
                    pass_rate => t.pass_rate, mean_duration_ms => t.mean_duration_ms,
                    runs => t.runs.len(),
                },
                ..charts(&recent, &t.name),
            }
        })
        .collect();
    w.page(
        "tests.html",
        "tests.html.j2",
        context! { tests => summaries },
    )?;
    for t in &report.tests {
        let pages = t.runs.len().div_ceil(RUNS_PER_PAGE).max(1);
        let base = t.page.trim_end_matches(".html");
        for page in 0..pages {
            let runs =
                &t.runs[page * RUNS_PER_PAGE..((page + 1) * RUNS_PER_PAGE).min(t.runs.len())];
            let shown: Vec<&RunView> = runs.iter().collect();
            let name = |p: usize| numbered(base, p).trim_start_matches("tests/").to_string();
            w.page(
                &numbered(base, page),
                "test.html.j2",
                context! {
                    t => context! {
                        name => &t.name, kind => &t.kind, passed => t.passed, judged => t.judged,
                        pass_rate => t.pass_rate, mean_duration_ms => t.mean_duration_ms,
                        total => t.runs.len(),
                    },
                    runs => runs,
                    page => page + 1,
                    pages => pages,
                    newer => (page > 0).then(|| name(page - 1)),
                    older => (page + 1 < pages).then(|| name(page + 1)),
                    ..charts(&shown, &t.name),
                },
            )?;
        }
    }
    let stages: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
    w.page(
        "items.html",
        "items.html.j2",
        context! { items => &report.items, stages => &stages },
    )?;
    for i in &report.items {
        w.page(
            &i.page,
            "item.html.j2",
            context! { i => i, stages => &stages },
        )?;
    }
    Ok(w.written)
}

/// `history` → `history.html`, `history~2.html`, … (`~` never occurs in a slug).
fn numbered(base: &str, page: usize) -> String {
    if page == 0 {
        format!("{base}.html")
    } else {
        format!("{base}~{}.html", page + 1)
    }
}

/// `rate_svg` and `duration_svg`: the charts of `runs` (newest first), drawn oldest left.
fn charts(runs: &[&RunView], name: &str) -> Value {
    let points: Vec<svg::Point> = runs
        .iter()
        .rev()
        .map(|r| svg::Point {
            verdict: r.verdict,
            duration_ms: r.duration_ms,
        })
        .collect();
    let safe = |svg: Option<String>| svg.map(Value::from_safe_string);
    context! {
        rate_svg => safe(svg::pass_rate(&points, &format!("pass rate of {name}"))),
        duration_svg => safe(svg::durations(&points, &format!("durations of {name}"))),
    }
}

/// Where each run is shown: (key, attempt) → its test page and anchor.
fn test_pages(tests: &[TestHistory]) -> HashMap<(&JobKey, u32), String> {
    let mut out = HashMap::new();
    for t in tests {
        let base = t.page.trim_end_matches(".html");
        for (i, r) in t.runs.iter().enumerate() {
            out.insert(
                (&r.key, r.attempt),
                format!("{}#{}", numbered(base, i / RUNS_PER_PAGE), anchor(r)),
            );
        }
    }
    out
}

/// A run's anchor on its test page.
pub fn anchor(r: &RunView) -> String {
    format!("run-{}-{}", r.key.short(), r.attempt)
}

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    page: &'a str,
    cells: Vec<Cell>,
}

#[derive(Serialize, Default)]
struct Cell {
    results: Vec<Badge>,
    more: usize,
}

#[derive(Serialize)]
struct Badge {
    verdict: &'static str,
    role: String,
    href: String,
    title: String,
}

/// The grid of one history page: a row per job name with a result in `flights`, a column
/// per tested commit, each cell the results of that job at that commit.
fn grid<'a>(
    tests: &'a [TestHistory],
    flights: &[super::model::Flight],
    pages: &HashMap<(&JobKey, u32), String>,
) -> Vec<Row<'a>> {
    let column: BTreeMap<&str, usize> = flights
        .iter()
        .enumerate()
        .map(|(i, f)| (f.commit.as_str(), i))
        .collect();
    tests
        .iter()
        .filter_map(|t| {
            let mut cells: Vec<Cell> = (0..flights.len()).map(|_| Cell::default()).collect();
            let mut any = false;
            for r in &t.runs {
                let Some(&col) = column.get(r.commit.as_str()) else {
                    continue;
                };
                any = true;
                let cell = &mut cells[col];
                if cell.results.len() >= CELL_RESULTS {
                    cell.more += 1;
                    continue;
                }
                let env: Vec<String> = r
                    .env
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {}{}",
                            e.item,
                            e.version,
                            if e.candidate { " (candidate)" } else { "" }
                        )
                    })
                    .collect();
                cell.results.push(Badge {
                    verdict: r.verdict.as_str(),
                    role: r.role.clone(),
                    href: pages
                        .get(&(&r.key, r.attempt))
                        .cloned()
                        .unwrap_or_else(|| t.page.clone()),
                    title: format!(
                        "{} {}, {} — {}; {}",
                        t.name,
                        r.role,
                        r.verdict,
                        r.finished,
                        env.join(", ")
                    ),
                });
            }
            any.then_some(Row {
                name: &t.name,
                page: &t.page,
                cells,
            })
        })
        .collect()
}

struct Writer<'a> {
    out: &'a Path,
    env: &'a Environment<'static>,
    written: Written,
    generated_at: &'a str,
}

impl Writer<'_> {
    fn file(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, bytes).io_context(|| format!("writing {}", path.display()))?;
        self.written.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Render `template` into the page `rel`, with `root` (the way back to the report's
    /// root from the page's directory) and the generation time beside `ctx`.
    fn page(&mut self, rel: &str, template: &str, ctx: Value) -> Result<()> {
        let root = "../".repeat(rel.matches('/').count());
        let ctx = context! { root => root, generated_at => self.generated_at, ..ctx };
        let html = self
            .env
            .get_template(template)
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::Infra {
                message: format!(
                    "rendering {rel} from templates/report/{template}: {}",
                    crate::error::chain(&e)
                ),
                help: Some(
                    "this is a bug in stagegate's report templates; please report it".into(),
                ),
            })?;
        self.file(rel, html.as_bytes())?;
        self.written.pages += 1;
        if html.len() as u64 > self.written.largest.1 {
            self.written.largest = (rel.to_string(), html.len() as u64);
        }
        Ok(())
    }
}

/// Make `out` ready: create it, or clear the pages of an earlier report in it. A directory
/// with other content is refused rather than mixed with.
fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .io_context(|| format!("reading {}", out.display()))?
            .peekable();
        if entries.peek().is_some() {
            if !out.join("report.json").is_file() {
                return Err(Error::usage_help(
                    format!(
                        "{} is not empty and holds no earlier report (no report.json)",
                        out.display()
                    ),
                    "pass --out with a new or empty directory",
                ));
            }
            for e in entries {
                let e = e.io_context(|| format!("reading {}", out.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                let ours = matches!(name.as_str(), "candidates" | "tests" | "items")
                    || name.ends_with(".html")
                    || name == "style.css"
                    || name == "report.json";
                if !ours {
                    continue;
                }
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
                .io_context(|| format!("removing the earlier report's {}", path.display()))?;
            }
        }
    }
    std::fs::create_dir_all(out).io_context(|| format!("creating {}", out.display()))
}

/// The most of a log the site keeps: its end, where a failure shows.
const SITE_LOG_MAX: u64 = 1 << 20;

/// Copy the log of every failing or erroring run whose log is a file here into
/// `out/logs/`, and point the run at the copy.
fn copy_failure_logs(report: &mut Report, out: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let copy = |r: &mut RunView| -> Result<()> {
        if !matches!(
            r.verdict,
            crate::ledger::Verdict::Fail | crate::ledger::Verdict::Error
        ) {
            return Ok(());
        }
        let Some(path) = r
            .log
            .as_deref()
            .map(|l| l.strip_prefix("file://").unwrap_or(l))
        else {
            return Ok(());
        };
        if !path.starts_with('/') {
            return Ok(());
        }
        let Ok(mut f) = std::fs::File::open(path) else {
            return Ok(());
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > SITE_LOG_MAX {
            let _ = f.seek(SeekFrom::Start(len - SITE_LOG_MAX));
        }
        let mut bytes = Vec::new();
        let _ = f.take(SITE_LOG_MAX).read_to_end(&mut bytes);
        let rel = format!("logs/{}-{}.log", r.key, r.attempt);
        let dest = out.join(&rel);
        std::fs::create_dir_all(out.join("logs"))
            .io_context(|| format!("creating {}", out.join("logs").display()))?;
        std::fs::write(&dest, &bytes).io_context(|| format!("writing {}", dest.display()))?;
        r.site_log = Some(rel);
        Ok(())
    };
    for m in &mut report.moves {
        for c in &mut m.candidates {
            for j in &mut c.jobs {
                if let Some(r) = j.result.as_mut() {
                    copy(r)?;
                }
                if let Some(r) = j.baseline.as_mut() {
                    copy(r)?;
                }
            }
        }
    }
    for t in &mut report.tests {
        for r in &mut t.runs {
            copy(r)?;
        }
    }
    Ok(())
}

fn environment(forge: Option<String>) -> Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    // minijinja's HTML escaping also turns `/` into `&#x2f;`, which makes every link
    // unreadable in the page source; `/` is safe in text and in quoted attributes.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(s) if !value.is_safe() && state.auto_escape() == minijinja::AutoEscape::Html => {
            Ok(out.write_str(&html_escape(s))?)
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Commit ids, and job keys as these pages have always named them (their anchors
    // included): 10 characters, where the rest of the output names a job by 12
    // (`JobKey::short`). Kept, so that no page or link changes.
    env.add_filter("short", |s: String| s.chars().take(10).collect::<String>());
    // A commit: its short id, linked to the forge's page of it when there is one.
    env.add_filter("commit", move |s: String| {
        let short = crate::keys::short_commit(&s, crate::keys::COMMIT_DIGITS);
        let hex = !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        Value::from_safe_string(match (&forge, hex) {
            (Some(f), true) => format!("<a href=\"{f}/commit/{s}\"><code>{short}</code></a>"),
            _ => format!("<code>{}</code>", html_escape(short)),
        })
    });
    env.add_filter("age", age);
    env.add_filter("ms", ms);
    env.add_filter("pct", |r: f64| format!("{:.0}%", r * 100.0));
    env.add_filter("slug", |s: String| slug(&s));
    env.add_filter("when", |s: String| {
        s.replace('T', " ").trim_end_matches('Z').to_string()
    });
    env.add_filter("difflines", |s: String| {
        s.lines()
            .map(|l| {
                let class = match l.chars().next() {
                    _ if l.starts_with("+++") || l.starts_with("---") => "head",
                    Some('+') => "add",
                    Some('-') => "del",
                    Some('@') => "hunk",
                    _ => "ctx",
                };
                vec![class.to_string(), l.to_string()]
            })
            .collect::<Vec<_>>()
    });
    // Templates see keys as strings: typed again here, to name a run as `anchor` does.
    env.add_filter("anchor", |key: String, attempt: u32| {
        format!("run-{}-{attempt}", JobKey::from(key).short())
    });
    for (name, text) in TEMPLATES {
        env.add_template(name, text).map_err(|e| Error::Infra {
            message: format!("templates/report/{name}: {}", crate::error::chain(&e)),
            help: None,
        })?;
    }
    Ok(env)
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds as the two largest units: `3d 4h`, `12m`, `40s`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match () {
        _ if d > 0 => format!("{d}d {h}h"),
        _ if h > 0 => format!("{h}h {m}m"),
        _ if m > 0 => format!("{m}m"),
        _ => format!("{s}s"),
    }
}

/// Milliseconds for people: `850ms`, `4.2s`, `3m 05s`.
pub fn ms(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_durations_read_in_two_units_at_most() {
        assert_eq!(age(40), "40s");
        assert_eq!(age(12 * 60 + 5), "12m");
        assert_eq!(age(3 * 3600 + 120), "3h 2m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(age(-5), "0s");
        assert_eq!(ms(850), "850ms");
        assert_eq!(ms(4200), "4.2s");
        assert_eq!(ms(185_000), "3m 05s");
    }

    #[test]
    fn html_escaping_keeps_slashes_readable() {
        let env = environment(None).unwrap();
        let t = env
            .template_from_str(r#"<a href="{{ p }}" title="{{ t }}">{{ t }}</a>"#)
            .unwrap();
        let html = t
            .render(context! { p => "tests/a.html#run-1", t => "<b> & \"x\" 'y'" })
            .unwrap();
        assert_eq!(
            html,
            r#"<a href="tests/a.html#run-1" title="&lt;b&gt; &amp; &quot;x&quot; &#39;y&#39;">&lt;b&gt; &amp; &quot;x&quot; &#39;y&#39;</a>"#
        );
    }

    #[test]
    fn later_pages_are_numbered_with_a_character_no_slug_has() {
        assert_eq!(numbered("history", 0), "history.html");
        assert_eq!(numbered("tests/boot", 2), "tests/boot~3.html");
        assert!(!slug("boot~3").contains('~'));
    }
}
