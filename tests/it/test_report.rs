//! `stagegate report`: the static site, read as a person would — files on disk, every link
//! resolving, and the pages opened in headless Chromium.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::TestEnv;

/// The example after one good cycle, then an upstream change to `hello` that breaks it:
/// the second cycle polls it in, moves it to staging, and the gate into stable rejects it.
fn rejected_example() -> TestEnv {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    break_hello(&env);
    env.sg_code(1, &["cycle"]);
    env
}

/// Commit a `hello` that fails on its upstream branch: the next poll proposes it.
fn break_hello(env: &TestEnv) {
    // The component's history is on the state repository's branch hello/main.
    let clone = env.home().join("hello");
    env.git(&[
        "worktree",
        "add",
        "-q",
        clone.to_str().unwrap(),
        "hello/main",
    ]);
    std::fs::write(
        clone.join("hello.sh"),
        "#!/bin/sh\necho 'hello: segfault in greet()' >&2\nexit 1\n",
    )
    .unwrap();
    env.git_in(
        &clone,
        &["commit", "-q", "--no-verify", "-am", "hello: break greet"],
    );
    env.git(&["worktree", "remove", clone.to_str().unwrap()]);
}

fn report(env: &TestEnv) -> PathBuf {
    let out = env.home().join("site");
    let text = env.sg_ok(&["report", "--out", out.to_str().unwrap()]);
    assert!(text.starts_with("wrote "), "{text}");
    out
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn candidate<'a>(json: &'a serde_json::Value, to: &str, item: &str) -> &'a serde_json::Value {
    let m = json["moves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == to)
        .unwrap();
    m["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"] == item)
        .unwrap_or_else(|| panic!("no candidate {item} into {to}: {m}"))
}

#[test]
fn report_shows_a_rejected_candidate_with_its_reason_jobs_and_baselines() {
    let env = rejected_example();
    let out = report(&env);
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    assert_eq!(json["version"], 1);
    let names: Vec<&str> = json["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["new", "staging", "stable"]);
    assert_eq!(json["stages"][2]["head"], env.rev("stable"));

    let c = candidate(&json, "stable", "components/hello");
    assert_eq!(c["state"], "rejected");
    assert_eq!(c["from_version"], "1.0");
    let reason = c["reason"].as_str().unwrap();
    assert!(
        reason.contains("[components/hello] fails where stable passes: a regression"),
        "{reason}"
    );
    let jobs = c["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for j in jobs {
        assert_eq!(j["result"]["verdict"], "fail", "{j}");
        assert_eq!(j["baseline"]["verdict"], "pass", "{j}");
        assert!(
            j["result"]["excerpt"]
                .as_str()
                .unwrap()
                .contains("segfault in greet()")
        );
        let log = j["result"]["log"].as_str().unwrap();
        assert!(Path::new(log).is_file(), "{log}");
        assert_eq!(j["result"]["log_url"], format!("file://{log}"));
    }
    assert!(
        c["diff"].as_str().unwrap().contains("-version: \"1.0\""),
        "{c}"
    );

    // The overview names it, its state and why; its page carries the jobs and the diff.
    let index = read(&out, "index.html");
    assert!(
        index.contains(
            r#"<a href="candidates/staging-stable/components-hello.html">components/hello</a>"#
        ),
        "{index}"
    );
    assert!(index.contains(r#"<span class="state rejected">rejected</span>"#));
    assert!(index.contains("fails where stable passes: a regression"));
    let page = read(&out, c["page"].as_str().unwrap());
    assert!(page.contains("hello: segfault in greet()"), "{page}");
    assert!(
        page.contains(r#"<span class="v pass">pass</span>"#),
        "{page}"
    );
    assert!(
        page.contains(r#"<span class="del">-version: &quot;1.0&quot;</span>"#),
        "{page}"
    );
    // Recent moves: the rejection is among them (its order within one second is log's).
    assert!(
        json["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "reject"
                && e["items"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("components/hello ")),
        "{}",
        json["recent"]
    );
}

#[test]
fn a_candidates_page_shows_who_waived_a_failure_and_why() {
    let env = rejected_example();
    let out = report(&env);
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    let c = candidate(&json, "stable", "components/hello");
    assert_eq!(c["waivers"], serde_json::json!([]));
    let key = c["jobs"][0]["key"].as_str().unwrap().to_string();
    env.sg_ok(&[
        "waive",
        &key,
        "--reason",
        "greet() crashes on this runner only",
    ]);

    let out = report(&env);
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    let c = candidate(&json, "stable", "components/hello");
    let waivers = c["waivers"].as_array().unwrap();
    assert_eq!(waivers.len(), 1, "{c}");
    assert_eq!(waivers[0]["key"], key.as_str());
    assert_eq!(waivers[0]["reason"], "greet() crashes on this runner only");
    let job = c["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["key"] == key.as_str())
        .unwrap();
    assert_eq!(job["state"], "waived", "{job}");
    let page = read(&out, c["page"].as_str().unwrap());
    assert!(
        page.contains(&format!(
            "<code>{}</code></a> waived by {}",
            &key[..10],
            waivers[0]["author"].as_str().unwrap()
        )),
        "{page}"
    );
    assert!(
        page.contains(": greet() crashes on this runner only</li>"),
        "{page}"
    );
}

#[test]
fn report_history_has_a_cell_per_job_and_tested_commit() {
    let env = rejected_example();
    let out = report(&env);
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    // The failing tests (stable's, run in stable's checkout), the tests with the images at
    // staging's first promotion, the builds at the first commit: newest first.
    let flights: Vec<&str> = json["flights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["commit"].as_str().unwrap())
        .collect();
    assert_eq!(flights.len(), 3, "{flights:?}");
    assert_eq!(flights[0], env.rev("stable"));
    assert_eq!(flights[1], env.rev("staging~1"));
    // Each column says what it tested: the broken hello at the newest.
    let tested = json["flights"][0]["tested"].as_array().unwrap();
    assert!(
        tested
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("components/hello ")),
        "{tested:?}"
    );
    let tests: BTreeSet<&str> = json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tests,
        BTreeSet::from([
            "build images/debian-guest",
            "build images/debian-host",
            "guest-boots",
            "host-boots"
        ])
    );
    let host = json["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "host-boots")
        .unwrap();
    assert_eq!(
        (host["passed"].as_u64(), host["judged"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(host["pass_rate"], 0.5);

    let history = read(&out, "history.html");
    assert!(
        history.contains(r#"<small class="tested">components/hello "#),
        "{history}"
    );
    let row = history
        .split("<tr>")
        .find(|r| r.contains(">host-boots</a>"))
        .unwrap();
    // Newest column first: the failure at the broken commit, the pass at staging's first
    // promotion, nothing at the builds' commit (recorded in the same second, but earlier).
    let cells: Vec<&str> = row.split("<td>").skip(1).collect();
    assert_eq!(cells.len(), 3, "{row}");
    assert!(
        cells[0].starts_with(r#"<a class="v fail" href="tests/host-boots.html#run-"#),
        "{row}"
    );
    assert!(cells[1].starts_with(r#"<a class="v pass""#), "{row}");
    assert!(cells[2].starts_with("</td>"), "{row}");
    let tests_page = read(&out, "tests.html");
    assert!(
        tests_page.contains("50% <small>(1/2)</small>"),
        "{tests_page}"
    );
    assert!(tests_page.contains(r#"<svg class="chart""#), "{tests_page}");
    let item = read(&out, "items/components-hello.html");
    assert!(
        item.contains(r#"<span class="event reject">reject</span>"#),
        "{item}"
    );
}

#[test]
fn report_links_all_resolve() {
    let env = rejected_example();
    let out = report(&env);
    let mut pages = Vec::new();
    collect_html(&out, &mut pages);
    assert!(pages.len() >= 12, "{pages:?}");
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        for link in links(&html) {
            if let Some(path) = link.strip_prefix("file://") {
                assert!(Path::new(path).is_file(), "{}: {link}", page.display());
                continue;
            }
            // A commit's page on the forge: outside the site by design.
            if link.starts_with("https://") && link.contains("/commit/") {
                continue;
            }
            assert!(
                !link.contains("://"),
                "{}: external link {link}",
                page.display()
            );
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            assert!(target.is_file(), "{}: broken link {link}", page.display());
            if !anchor.is_empty() {
                let text = std::fs::read_to_string(&target).unwrap();
                assert!(
                    text.contains(&format!(r#"id="{anchor}""#)),
                    "{}: no anchor {link}",
                    page.display()
                );
            }
        }
    }
}

fn collect_html(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_html(&p, out);
        } else if p.extension().is_some_and(|x| x == "html") {
            out.push(p);
        }
    }
}

fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].replace("&amp;", "&"))
        .collect()
}

#[test]
fn the_step_summary_links_each_candidate_to_its_page_in_the_published_report() {
    let env = TestEnv::init_example();
    env.sg_ok(&["cycle"]);
    break_hello(&env);
    let summary = env.home().join("step_summary");
    let out = env
        .sg_cmd(&["cycle"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", env.home().join("github_output"))
        .env("STAGEGATE_REPORT_URL", "https://octo.github.io/state")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "the gate rejects hello");
    let text = std::fs::read_to_string(&summary).unwrap();
    let base = "https://octo.github.io/state/";
    let move_link = format!("[report: staging → stable]({base}index.html#move-staging-stable)");
    let page = "candidates/staging-stable/components-hello.html";
    let hello_link = format!("[components/hello]({base}{page})");
    assert!(text.contains(&move_link), "{text}");
    assert!(text.contains(&hello_link), "{text}");
    // The report made from the same state has those pages and that anchor.
    let site = report(&env);
    assert!(read(&site, page).contains("<span class=\"state rejected\">rejected</span>"));
    assert!(read(&site, "index.html").contains("id=\"move-staging-stable\""));
}

#[test]
fn report_refuses_a_directory_that_holds_something_else() {
    let env = TestEnv::init_example();
    let out = env.home().join("docs");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (_, err) = env.sg_code(2, &["report", "--out", out.to_str().unwrap()]);
    assert!(
        err.contains("is not empty and holds no earlier report (no report.json)"),
        "{err}"
    );
    assert!(
        err.contains("help: pass --out with a new or empty directory"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn report_replaces_an_earlier_report_and_keeps_other_files() {
    let env = TestEnv::init_example();
    let out = report(&env);
    std::fs::create_dir_all(out.join("candidates/gone")).unwrap();
    std::fs::write(out.join("candidates/gone/old.html"), "stale").unwrap();
    std::fs::write(out.join("CNAME"), "report.example.org").unwrap();
    report(&env);
    assert!(!out.join("candidates/gone").exists());
    assert_eq!(read(&out, "CNAME"), "report.example.org");
    // Before any cycle the example is pending on new, its images waiting for builds.
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    let c = candidate(&json, "staging", "images/debian-host");
    assert_eq!(c["state"], "wait");
    assert!(
        c["reason"].as_str().unwrap().contains("has no result yet"),
        "{c}"
    );
}

#[test]
fn report_pages_are_bounded_on_a_large_ledger() {
    let env = TestEnv::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/gen.py");
    let mut cmd = Command::new("python3");
    crate::common::base_env(&mut cmd, env.home());
    let generated = cmd
        .arg(script)
        .args(["--small", "--out"])
        .arg(&env.repo)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let out = env.home().join("site");
    let written: serde_json::Value = serde_json::from_str(&env.sg_ok(&[
        "report",
        "--out",
        out.to_str().unwrap(),
        "--runs",
        "5000",
        "--format",
        "json",
    ]))
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    // Every one of the 2,000 results, over 20 tests: about 100 runs each, 50 to a page.
    assert_eq!(json["runs_read"], 2000);
    let t = &json["tests"][0];
    let runs = t["runs"].as_array().unwrap().len();
    assert!(runs > 50, "{runs}");
    let base = t["page"]
        .as_str()
        .unwrap()
        .trim_end_matches(".html")
        .to_string();
    let pages = runs.div_ceil(50);
    for p in 0..pages {
        let rel = if p == 0 {
            format!("{base}.html")
        } else {
            format!("{base}~{}.html", p + 1)
        };
        let rows = read(&out, &rel).matches("<tr id=\"run-").count();
        assert_eq!(rows, (runs - p * 50).min(50), "{rel}");
    }
    assert!(!out.join(format!("{base}~{}.html", pages + 1)).exists());
    // The largest page is the history grid: 20 tests by one tested commit.
    let largest = written["largest"][1].as_u64().unwrap();
    assert!(largest < 256 * 1024, "{written}");
}

fn browse(browser: &Path, home: &Path, args: &[&str], url: &str) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1280,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.join("chromium").display()
        ))
        .args(args)
        .arg(url)
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn report_opens_in_a_browser_with_the_rejection_and_the_history_grid() {
    // Debian's `chromium`, which `.ci/run` installs.
    let Some(browser) = crate::common::require_tool("chromium") else {
        return;
    };
    let env = rejected_example();
    let out = report(&env);
    let url = |rel: &str| format!("file://{}", out.join(rel).display());
    let home = env.home();

    let dom = browse(&browser, home, &["--dump-dom"], &url("index.html"));
    assert!(dom.contains("<h1>Pipeline</h1>"), "{dom}");
    assert!(
        dom.contains(r#"<span class="state rejected">rejected</span>"#),
        "{dom}"
    );
    assert!(dom.contains("[components/hello] fails where stable passes: a regression"));

    let dom = browse(
        &browser,
        home,
        &["--dump-dom"],
        &url("candidates/staging-stable/components-hello.html"),
    );
    assert!(dom.contains("hello: segfault in greet()"), "{dom}");

    let dom = browse(&browser, home, &["--dump-dom"], &url("history.html"));
    assert!(
        dom.contains(r#"<a class="v fail" href="tests/host-boots.html#run-"#),
        "{dom}"
    );

    // The browser draws the charts (inline SVG) into the DOM it built.
    let dom = browse(&browser, home, &["--dump-dom"], &url("tests.html"));
    assert!(dom.contains(r#"<path class="c-fail""#), "{dom}");

    let shot = home.join("overview.png");
    browse(
        &browser,
        home,
        &[&format!("--screenshot={}", shot.display())],
        &url("index.html"),
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "{} bytes", png.len());
}

#[test]
fn a_published_report_carries_its_failures_logs_and_links_commits_to_the_forge() {
    let env = rejected_example();
    env.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/octo-org/state.git",
    ]);
    let out = report(&env);
    // The failing job's log is in the site, and its candidate page links there (a runner's
    // path is no use to a reader of the published site).
    let json: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    let c = candidate(&json, "stable", "components/hello");
    let failed = c["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["result"]["verdict"] == "fail")
        .unwrap_or_else(|| panic!("a failing job: {c}"));
    let key = failed["result"]["key"].as_str().unwrap();
    let logs: Vec<String> = std::fs::read_dir(out.join("logs"))
        .expect("a logs/ directory in the site")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let copy = logs
        .iter()
        .find(|n| n.starts_with(key))
        .unwrap_or_else(|| panic!("no copy of {key}'s log: {logs:?}"));
    assert!(read(&out, &format!("logs/{copy}")).contains("segfault in greet()"));
    let page = read(&out, c["page"].as_str().unwrap());
    assert!(
        page.contains(&format!("href=\"../../logs/{copy}\"")),
        "{page}"
    );
    // The bump lists the upstream commit it brings in.
    assert_eq!(c["upstream"][0]["subject"], "hello: break greet", "{c}");
    assert!(page.contains("Upstream commits it brings in"), "{page}");
    assert!(page.contains("hello: break greet"), "{page}");
    // Commits link to the forge's page of them.
    let head = env.rev("stable");
    let index = read(&out, "index.html");
    assert!(
        index.contains(&format!(
            "<a href=\"https://github.com/octo-org/state/commit/{head}\"><code>{}</code></a>",
            &head[..10]
        )),
        "{index}"
    );
}
