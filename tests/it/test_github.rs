//! GitHub: the forge layer against a fake GitHub on 127.0.0.1 (`test_github/fake.rs`), the
//! rendered pull request body and step summary, `action.yml` and the example workflows
//! (actionlint), and the annotations `check` prints in GitHub Actions.

mod act;
mod act_images;
mod act_labels;
mod act_release;
mod actions;
mod fake;
mod install;
mod review;

use std::time::Duration;

use serde_json::json;
use stagegate::forge::summary::{render_pr_body, render_step_summary};
use stagegate::forge::{
    AnnotationLevel, BaselineRow, CandidateChange, CheckPosted, Conclusion, DecisionKind,
    DraftChange, EnvItem, Forge, GitHub, GitHubConfig, JobRow, Link, Permission, PromotionSummary,
    RetryPolicy, StatusState, Upsert, promotion_branch,
};
use stagegate::ledger::Verdict;

use crate::common::TestEnv;
use fake::{FakeGitHub, OWNER, REPO, Reply, TOKEN};

const TESTED: &str = "0123456789abcdef0123456789abcdef01234567";

fn config(fake: &FakeGitHub, token: &str) -> GitHubConfig {
    GitHubConfig {
        api_url: fake.url.clone(),
        graphql_url: None,
        repository: format!("{OWNER}/{REPO}"),
        token: token.to_string(),
        token_source: "GITHUB_TOKEN".to_string(),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_rate_limit_wait: Duration::from_secs(60),
            rate_limit_waits: 3,
        },
    }
}

fn github(fake: &FakeGitHub) -> GitHub {
    GitHub::new(config(fake, TOKEN)).unwrap()
}

fn job(name: &str, verdict: Option<Verdict>, baseline: Option<Verdict>) -> JobRow {
    JobRow {
        key: format!("{name:0<64}").replace(' ', "0").into(),
        name: format!("test {name} [xen]"),
        manifest: Some(format!("tests/{name}.yaml")),
        environment: vec![
            EnvItem {
                item: "components/xen".into(),
                version: "4.21-rc2".into(),
                candidate: true,
            },
            EnvItem {
                item: "images/host".into(),
                version: "1.0".into(),
                candidate: false,
            },
        ],
        verdict,
        log_url: Some(format!("https://ci.example/logs/{name}")),
        baseline: Some(BaselineRow {
            key: format!("b{name}").into(),
            verdict: baseline,
            log_url: Some(format!("https://ci.example/logs/{name}-baseline")),
        }),
        details: Some(format!("{name}: timed out waiting for a login prompt")),
        note: None,
    }
}

/// staging → stable, xen 4.20 → 4.21-rc2: boot regresses, disk fails like its baseline,
/// net passes.
fn summary() -> PromotionSummary {
    PromotionSummary {
        from: "staging".into(),
        to: "stable".into(),
        commit: TESTED.into(),
        subject: "xen: 4.21-rc2".into(),
        target: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
        decision: DecisionKind::Reject,
        reasons: vec!["test boot [xen] fails while its baseline passes: a regression".into()],
        bisects: vec![
            "components/xen: first bad upstream commit 0123456789ab \"sched: rework credit\" (bisected in 3 steps over 8 commits, each result reproduced 2×)".into(),
        ],
        candidates: vec![CandidateChange {
            kind: "component".into(),
            name: "xen".into(),
            path: "components/xen.yaml".into(),
            old_version: Some("4.20".into()),
            new_version: Some("4.21-rc2".into()),
            old_manifest: Some("name: xen\nversion: \"4.20\"\nsource: {git: x}\n".into()),
            new_manifest: Some("name: xen\nversion: \"4.21-rc2\"\nsource: {git: x}\n".into()),
        }],
        jobs: vec![
            job("boot", Some(Verdict::Fail), Some(Verdict::Pass)),
            job("net", Some(Verdict::Pass), Some(Verdict::Pass)),
            job("disk", Some(Verdict::Fail), Some(Verdict::Fail)),
        ],
        run_url: Some(format!("https://github.com/{OWNER}/{REPO}/actions/runs/42")),
        links: vec![Link {
            title: "All logs".into(),
            url: "https://ci.example/logs/".into(),
        }],
    }
}

// ---------------------------------------------------------------------------------------
// Rendering

#[test]
fn the_pr_body_shows_the_version_change_the_diff_the_verdicts_and_the_reasons() {
    let body = render_pr_body(&summary()).unwrap();
    assert!(
        body.starts_with("<!-- stagegate:promotion staging->stable -->"),
        "{body}"
    );
    assert!(
        body.contains("## Promote staging → stable: xen 4.20 → 4.21-rc2"),
        "{body}"
    );
    assert!(
        body.contains("| `xen` | component | 4.20 → 4.21-rc2 |"),
        "{body}"
    );
    assert!(
        body.contains(
            "```diff\n--- a/components/xen.yaml\n+++ b/components/xen.yaml\n@@ -1,3 +1,3 @@\n name: xen\n-version: \"4.20\"\n+version: \"4.21-rc2\"\n source: {git: x}\n```"
        ),
        "{body}"
    );
    assert!(
        body.contains(
            "| test boot [xen] | **components/xen@4.21-rc2**, images/host@1.0 | ❌ fail | ✅ pass ([log](https://ci.example/logs/boot-baseline)) | [log](https://ci.example/logs/boot) |"
        ),
        "{body}"
    );
    assert!(
        body.contains("| ❌ fail (like baseline) | ❌ fail"),
        "{body}"
    );
    assert!(
        body.contains("**Decision: reject** (2 fail, 1 pass)"),
        "{body}"
    );
    assert!(
        body.contains("- test boot [xen] fails while its baseline passes: a regression"),
        "{body}"
    );
    assert!(
        body.contains("### Bisected\n\n- components/xen: first bad upstream commit 0123456789ab \"sched: rework credit\""),
        "{body}"
    );
    assert!(
        body.contains("- [This run](https://github.com/octo-org/state/actions/runs/42)"),
        "{body}"
    );
    assert!(
        body.contains("- [All logs](https://ci.example/logs/)"),
        "{body}"
    );
}

#[test]
fn the_pr_body_counts_verdicts_and_marks_missing_results() {
    let mut s = summary();
    s.jobs.push(job("late", None, None));
    let body = render_pr_body(&s).unwrap();
    assert!(
        body.contains("**Decision: reject** (2 fail, 1 pass, 1 no result)"),
        "{body}"
    );
    assert!(
        body.contains(
            "| ⏳ no result | ⏳ no result ([log](https://ci.example/logs/late-baseline)) |"
        ),
        "{body}"
    );
}

#[test]
fn a_pipe_in_a_job_name_does_not_break_the_table() {
    let mut s = summary();
    s.jobs[0].name = "test a|b".into();
    let body = render_pr_body(&s).unwrap();
    assert!(body.contains("| test a\\|b |"), "{body}");
}

#[test]
fn a_local_log_path_is_shown_as_code_not_as_a_link() {
    let mut s = summary();
    s.jobs[0].log_url = Some("/var/lib/stagegate/logs/boot.log".into());
    s.jobs[0].baseline.as_mut().unwrap().log_url = None;
    let body = render_pr_body(&s).unwrap();
    assert!(
        body.contains("| ❌ fail | ✅ pass | `/var/lib/stagegate/logs/boot.log` |"),
        "{body}"
    );
}

#[test]
fn the_gates_note_on_a_job_goes_into_its_annotation() {
    let mut s = summary();
    s.jobs[0].note = Some("fails while its baseline passes".into());
    let run = s.check_run("stagegate").unwrap();
    assert!(
        run.annotations[0]
            .message
            .starts_with("test boot [xen]: fail, fails while its baseline passes\n"),
        "{}",
        run.annotations[0].message
    );
}

#[test]
fn a_huge_diff_is_shortened_to_fit_githubs_limit() {
    let mut s = summary();
    let old: String = (0..4_000).map(|i| format!("line {i}\n")).collect();
    let new: String = (0..4_000).map(|i| format!("line {}\n", i * 7)).collect();
    s.candidates[0].old_manifest = Some(old);
    s.candidates[0].new_manifest = Some(new);
    let body = render_pr_body(&s).unwrap();
    assert!(body.chars().count() < 65_536, "{}", body.len());
    assert!(
        body.contains("more lines: run `stagegate diff stable staging`"),
        "{body}"
    );
    assert!(
        body.contains("| test boot [xen] |"),
        "the verdicts survive: {body}"
    );
}

#[test]
fn a_diff_containing_backticks_gets_a_longer_fence() {
    let mut s = summary();
    s.candidates[0].new_manifest = Some("name: xen\nversion: \"```\"\n".into());
    let body = render_pr_body(&s).unwrap();
    assert!(body.contains("````diff\n"), "{body}");
}

#[test]
fn the_step_summary_is_a_table_of_verdicts_and_decisions() {
    let mut waiting = summary();
    waiting.from = "new".into();
    waiting.to = "staging".into();
    waiting.decision = DecisionKind::Wait;
    waiting.reasons = vec!["2 jobs have no result yet".into()];
    let md = render_step_summary(&[summary(), waiting]).unwrap();
    assert!(md.starts_with("## stagegate\n"), "{md}");
    assert!(md.contains("### staging → stable: reject\n"), "{md}");
    assert!(md.contains("### new → staging: wait\n"), "{md}");
    assert!(md.contains("Candidates: `xen` 4.20 → 4.21-rc2"), "{md}");
    assert!(md.contains("- 2 jobs have no result yet"), "{md}");
    assert!(
        md.contains("| job | environment | verdict | baseline | log |\n|---|---|---|---|---|\n| test boot [xen] |"),
        "{md}"
    );
    assert!(
        !md.contains("```diff"),
        "no diffs in the step summary: {md}"
    );
    assert_eq!(
        render_step_summary(&[]).unwrap().trim(),
        "## stagegate\n\nNothing to promote."
    );
}

#[test]
fn the_check_run_concludes_from_the_decision_and_annotates_failing_jobs() {
    let run = summary().check_run("stagegate").unwrap();
    assert_eq!(run.conclusion, Some(Conclusion::Failure));
    assert_eq!(run.head_sha, TESTED);
    assert_eq!(run.title, "staging->stable: reject (2 fail, 1 pass)");
    assert_eq!(run.annotations.len(), 2, "{:#?}", run.annotations);
    let boot = &run.annotations[0];
    assert_eq!(boot.path, "tests/boot.yaml");
    assert_eq!(boot.annotation_level, AnnotationLevel::Failure);
    assert!(boot.message.contains("regression"), "{}", boot.message);
    let disk = &run.annotations[1];
    assert_eq!(disk.annotation_level, AnnotationLevel::Warning);
    assert!(
        disk.message.contains("fails like its baseline"),
        "{}",
        disk.message
    );

    let mut waiting = summary();
    waiting.decision = DecisionKind::Wait;
    assert_eq!(waiting.check_run("stagegate").unwrap().conclusion, None);
}

// ---------------------------------------------------------------------------------------
// The forge against the fake GitHub

#[test]
fn opening_a_promotion_pr_posts_the_rendered_body() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let s = summary();
    let body = render_pr_body(&s).unwrap();
    let head = promotion_branch("staging", "stable");
    let (pr, what) = gh
        .upsert_pr(&head, "stable", &s.title(), &body, false)
        .unwrap();
    assert_eq!(what, Upsert::Opened);
    assert_eq!(pr.number, 1347);
    assert_eq!(
        pr.url,
        format!("https://github.com/{OWNER}/{REPO}/pull/1347")
    );
    assert_eq!(pr.head_ref, "stagegate/promote/staging-to-stable");

    let lookups = fake.requests_to("GET", &format!("/repos/{OWNER}/{REPO}/pulls"));
    assert_eq!(lookups.len(), 1);
    assert_eq!(
        lookups[0].query.get("head").map(String::as_str),
        Some("octo-org:stagegate/promote/staging-to-stable")
    );
    assert_eq!(
        lookups[0].query.get("base").map(String::as_str),
        Some("stable")
    );
    assert_eq!(
        lookups[0].query.get("state").map(String::as_str),
        Some("open")
    );

    let opens = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/pulls"));
    assert_eq!(opens.len(), 1);
    let sent = &opens[0].body;
    assert_eq!(sent["head"], json!("stagegate/promote/staging-to-stable"));
    assert_eq!(sent["base"], json!("stable"));
    assert_eq!(
        sent["title"],
        json!("Promote staging → stable: xen 4.20 → 4.21-rc2")
    );
    assert_eq!(sent["body"], json!(body));
    assert_eq!(sent["draft"], json!(false));
    assert_eq!(
        opens[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn a_second_run_updates_the_same_pr_instead_of_opening_another() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let head = promotion_branch("staging", "stable");
    let (first, _) = gh
        .upsert_pr(&head, "stable", "Promote", "old body", true)
        .unwrap();
    assert!(first.draft);
    let (second, what) = gh
        .upsert_pr(&head, "stable", "Promote", "new body", false)
        .unwrap();
    assert_eq!(what, Upsert::Updated);
    assert_eq!(second.number, first.number);
    assert_eq!(fake.pulls().len(), 1);
    assert_eq!(
        fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/pulls"))
            .len(),
        1
    );
    let patches = fake.requests_to("PATCH", &format!("/repos/{OWNER}/{REPO}/pulls/1347"));
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body,
        json!({"title": "Promote", "body": "new body"})
    );
    assert_eq!(fake.pull(1347)["body"], json!("new body"));

    // Nothing new to say: no write at all.
    let (_, what) = gh
        .upsert_pr(&head, "stable", "Promote", "new body", false)
        .unwrap();
    assert_eq!(what, Upsert::Unchanged);
    assert_eq!(
        fake.requests_to("PATCH", &format!("/repos/{OWNER}/{REPO}/pulls/1347"))
            .len(),
        1
    );
}

#[test]
fn opening_a_pr_that_someone_else_just_opened_returns_theirs() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let head = promotion_branch("new", "staging");
    let theirs = gh.open_pr(&head, "staging", "t", "b", false).unwrap();
    // Our look found nothing (it happened before theirs); our open gets a 422.
    let ours = gh.open_pr(&head, "staging", "t", "b", false).unwrap();
    assert_eq!(ours.number, theirs.number);
    assert_eq!(fake.pulls().len(), 1);
}

#[test]
fn set_draft_converts_through_graphql_and_is_idempotent() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    let changed = gh
        .set_draft(pr.number, true, Some("test boot [xen] regressed"))
        .unwrap();
    assert_eq!(changed, DraftChange::Changed);
    assert_eq!(fake.pull(pr.number)["draft"], json!(true));
    let calls = fake.requests_to("POST", "/graphql");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].body["query"]
            .as_str()
            .unwrap()
            .contains("convertPullRequestToDraft(input: {pullRequestId: $id})"),
        "{}",
        calls[0].body
    );
    assert_eq!(calls[0].body["variables"], json!({"id": "PR_node_1347"}));
    // The reason is left for reviewers, once.
    let comments = fake.comments(pr.number);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0]["body"]
            .as_str()
            .unwrap()
            .contains("marked this pull request as draft: test boot [xen] regressed")
    );

    assert_eq!(
        gh.set_draft(pr.number, true, Some("test boot [xen] regressed"))
            .unwrap(),
        DraftChange::Unchanged
    );
    assert_eq!(fake.requests_to("POST", "/graphql").len(), 1);

    assert_eq!(
        gh.set_draft(pr.number, false, None).unwrap(),
        DraftChange::Changed
    );
    assert_eq!(fake.pull(pr.number)["draft"], json!(false));
    let calls = fake.requests_to("POST", "/graphql");
    assert!(
        calls[1].body["query"]
            .as_str()
            .unwrap()
            .contains("markPullRequestReadyForReview")
    );
}

#[test]
fn set_draft_falls_back_to_one_comment_when_graphql_is_refused() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    fake.script(
        "POST",
        "/graphql",
        vec![
            Reply::fixture(200, "graphql-forbidden"),
            Reply::fixture(200, "graphql-forbidden"),
        ],
    );
    for _ in 0..2 {
        assert_eq!(
            gh.set_draft(pr.number, true, Some("boot regressed"))
                .unwrap(),
            DraftChange::Commented
        );
    }
    assert_eq!(fake.pull(pr.number)["draft"], json!(false));
    let comments = fake.comments(pr.number);
    assert_eq!(
        comments.len(),
        1,
        "the same note is not repeated: {comments:#?}"
    );
    let note = comments[0]["body"].as_str().unwrap();
    assert!(
        note.contains("Resource not accessible by integration"),
        "{note}"
    );
    assert!(note.contains("Reason: boot regressed"), "{note}");
    assert!(note.contains("Do not merge"), "{note}");
}

#[test]
fn a_graphql_rate_limit_is_an_error_not_a_refusal_to_comment_on() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    fake.script(
        "POST",
        "/graphql",
        vec![Reply::new(
            200,
            json!({"data": null, "errors": [{"type": "RATE_LIMITED",
                "message": "API rate limit exceeded for user ID 1."}]}),
        )],
    );
    let e = gh.set_draft(pr.number, true, None).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("GraphQL rate limit"), "{e}");
    assert!(fake.comments(pr.number).is_empty());
}

#[test]
fn the_check_run_carries_the_conclusion_and_annotations() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let mut run = summary().check_run("stagegate: staging → stable").unwrap();
    run.details_url = Some("https://github.com/octo-org/state/actions/runs/42".into());
    let posted = gh.create_check_run(&run).unwrap();
    assert_eq!(
        posted,
        CheckPosted::CheckRun {
            id: 4,
            url: Some(format!("https://github.com/{OWNER}/{REPO}/runs/4"))
        }
    );
    let sent = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/check-runs"));
    assert_eq!(sent.len(), 1);
    let b = &sent[0].body;
    assert_eq!(b["name"], json!("stagegate: staging → stable"));
    assert_eq!(b["head_sha"], json!(TESTED));
    assert_eq!(b["status"], json!("completed"));
    assert_eq!(b["conclusion"], json!("failure"));
    assert_eq!(b["external_id"], json!("staging->stable"));
    assert_eq!(
        b["output"]["title"],
        json!("staging->stable: reject (2 fail, 1 pass)")
    );
    assert!(
        b["output"]["summary"]
            .as_str()
            .unwrap()
            .contains("| test boot [xen] |")
    );
    let ann = b["output"]["annotations"].as_array().unwrap();
    assert_eq!(ann.len(), 2);
    assert_eq!(ann[0]["path"], json!("tests/boot.yaml"));
    assert_eq!(ann[0]["start_line"], json!(1));
    assert_eq!(ann[0]["annotation_level"], json!("failure"));
    assert_eq!(ann[0]["title"], json!("test boot [xen] fail"));
    assert_eq!(
        ann[0]["raw_details"],
        json!("boot: timed out waiting for a login prompt")
    );
    assert_eq!(ann[1]["annotation_level"], json!("warning"));
}

#[test]
fn more_than_fifty_annotations_go_in_batches() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let mut s = summary();
    s.jobs = (0..120)
        .map(|i| job(&format!("t{i}"), Some(Verdict::Fail), Some(Verdict::Pass)))
        .collect();
    gh.create_check_run(&s.check_run("stagegate").unwrap())
        .unwrap();
    let created = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/check-runs"));
    assert_eq!(
        created[0].body["output"]["annotations"]
            .as_array()
            .unwrap()
            .len(),
        50
    );
    let updates = fake.requests_to("PATCH", &format!("/repos/{OWNER}/{REPO}/check-runs/4"));
    let sizes: Vec<usize> = updates
        .iter()
        .map(|u| u.body["output"]["annotations"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [50, 20]);
}

#[test]
fn a_refused_check_run_falls_back_to_a_commit_status() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    fake.script(
        "POST",
        &format!("/repos/{OWNER}/{REPO}/check-runs"),
        vec![Reply::fixture(403, "error-resource-not-accessible")],
    );
    let run = summary().check_run("stagegate").unwrap();
    assert_eq!(gh.create_check_run(&run).unwrap(), CheckPosted::Status);
    let statuses = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/statuses/{TESTED}"));
    assert_eq!(statuses.len(), 1);
    assert_eq!(
        statuses[0].body,
        json!({
            "state": "failure",
            "context": "stagegate",
            "description": "staging->stable: reject (2 fail, 1 pass)",
            "target_url": "https://github.com/octo-org/state/actions/runs/42",
        })
    );
}

#[test]
fn a_commit_status_description_is_cut_to_140_characters() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    gh.create_status(
        TESTED,
        StatusState::Pending,
        "stagegate",
        &"x".repeat(300),
        None,
    )
    .unwrap();
    let sent = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/statuses/{TESTED}"));
    assert_eq!(
        sent[0].body["description"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        140
    );
    assert_eq!(sent[0].body["state"], json!("pending"));
}

#[test]
fn approval_is_each_reviewers_latest_word_on_the_tested_commit() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    assert!(
        !gh.reviews(pr.number, None).unwrap().is_approved(),
        "no reviews: not approved"
    );

    fake.add_review(pr.number, "alice", "APPROVED", TESTED);
    fake.add_review(pr.number, "alice", "COMMENTED", TESTED);
    assert!(
        gh.reviews(pr.number, Some(TESTED)).unwrap().is_approved(),
        "a comment keeps an approval"
    );

    fake.add_review(pr.number, "bob", "CHANGES_REQUESTED", TESTED);
    let a = gh.reviews(pr.number, Some(TESTED)).unwrap();
    assert_eq!(a.approved_by, ["alice"]);
    assert_eq!(a.changes_requested_by, ["bob"]);
    assert!(!a.is_approved());

    fake.add_review(pr.number, "bob", "APPROVED", TESTED);
    assert!(gh.reviews(pr.number, Some(TESTED)).unwrap().is_approved());

    // An approval of an older head does not approve this one.
    assert!(
        !gh.reviews(pr.number, Some("ffffffffffffffffffffffffffffffffffffffff"))
            .unwrap()
            .is_approved()
    );
}

#[test]
fn permissions_are_read_as_githubs_roles_say() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    for (role, want) in [
        ("admin", Permission::Admin),
        ("maintain", Permission::Write),
        ("write", Permission::Write),
        ("triage", Permission::Read),
        ("read", Permission::Read),
        ("none", Permission::None),
    ] {
        fake.set_permission("dana", role);
        assert_eq!(gh.permission("dana").unwrap(), want, "{role}");
    }
    fake.script(
        "GET",
        &format!("/repos/{OWNER}/{REPO}/collaborators/ghost/permission"),
        vec![Reply::fixture(404, "error-not-found")],
    );
    assert_eq!(gh.permission("ghost").unwrap(), Permission::None);
}

#[test]
fn team_members_are_listed_or_none_when_the_token_may_not_see_them() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    fake.set_team("octo-org/xen", &["ann", "ben"]);
    assert_eq!(
        gh.team_members("octo-org", "xen").unwrap(),
        Some(vec!["ann".to_string(), "ben".to_string()])
    );
    assert_eq!(gh.team_members("octo-org", "secret").unwrap(), None);
}

#[test]
fn deleting_a_branch_twice_says_it_was_gone() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    fake.set_branch("stagegate/promote/a-to-b", TESTED);
    assert!(gh.delete_branch("stagegate/promote/a-to-b").unwrap());
    assert!(!gh.delete_branch("stagegate/promote/a-to-b").unwrap());
    let sent = fake.requests_to(
        "DELETE",
        &format!("/repos/{OWNER}/{REPO}/git/refs/heads/stagegate/promote/a-to-b"),
    );
    assert_eq!(sent.len(), 2);
    assert!(gh.delete_branch("../main").is_err());
}

#[test]
fn labels_are_added() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    gh.add_labels(pr.number, &["stagegate".into(), "promotion".into()])
        .unwrap();
    let sent = fake.requests_to("POST", &format!("/repos/{OWNER}/{REPO}/issues/1347/labels"));
    assert_eq!(sent[0].body, json!({"labels": ["stagegate", "promotion"]}));
    gh.add_labels(pr.number, &[]).unwrap();
    assert_eq!(fake.requests().len(), 2, "no labels, no request");
}

#[test]
fn a_502_then_200_is_retried_for_a_read() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    let path = format!("/repos/{OWNER}/{REPO}/pulls/{}", pr.number);
    fake.script("GET", &path, vec![Reply::fixture(502, "error-server")]);
    assert_eq!(gh.get_pr(pr.number).unwrap().number, 1347);
    assert_eq!(fake.requests_to("GET", &path).len(), 2);
}

#[test]
fn a_post_answered_502_is_not_sent_again() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let path = format!("/repos/{OWNER}/{REPO}/pulls");
    fake.script("POST", &path, vec![Reply::fixture(502, "error-server")]);
    let e = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let text = format!("{e:#}");
    assert!(text.contains("HTTP 502"), "{text}");
    assert_eq!(
        fake.requests_to("POST", &path).len(),
        1,
        "GitHub may have opened it: a second POST could open a second pull request"
    );
    assert!(fake.pulls().is_empty());
}

#[test]
fn every_request_names_the_api_version() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    gh.get_pr(pr.number).unwrap();
    gh.reviews(pr.number, None).unwrap();
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    for r in requests {
        assert_eq!(r.api_version.as_deref(), Some("2022-11-28"), "{r:?}");
    }
}

#[test]
fn reviews_are_read_to_the_last_page() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    for i in 0..2_150 {
        fake.add_review(pr.number, &format!("user{i}"), "COMMENTED", TESTED);
    }
    // The one word that matters is on the 22nd page, past the old silent cap of 20.
    fake.add_review(pr.number, "carol", "CHANGES_REQUESTED", TESTED);
    let a = gh.reviews(pr.number, Some(TESTED)).unwrap();
    assert_eq!(a.changes_requested_by, ["carol"]);
    let path = format!("/repos/{OWNER}/{REPO}/pulls/{}/reviews", pr.number);
    let pages: Vec<String> = fake
        .requests_to("GET", &path)
        .iter()
        .map(|r| r.query.get("page").cloned().unwrap_or_default())
        .collect();
    assert_eq!(pages.len(), 22, "{pages:?}");
    assert_eq!(pages[21], "22");
}

#[test]
fn a_server_that_keeps_failing_is_given_up_after_the_configured_attempts() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let path = format!("/repos/{OWNER}/{REPO}/pulls/7");
    fake.script("GET", &path, vec![Reply::fixture(503, "error-server"); 5]);
    let e = gh.get_pr(7).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let msg = e.to_string();
    assert!(msg.contains("reading pull request #7"), "{msg}");
    assert!(msg.contains("octo-org/state"), "{msg}");
    assert!(msg.contains("HTTP 503: Server Error"), "{msg}");
    assert_eq!(fake.requests_to("GET", &path).len(), 3);
}

#[test]
fn the_retry_delay_and_attempts_come_from_the_environment() {
    let fake = FakeGitHub::start();
    let env = |k: &str| match k {
        "GITHUB_TOKEN" => Some(TOKEN.to_string()),
        "GITHUB_REPOSITORY" => Some(format!("{OWNER}/{REPO}")),
        "GITHUB_API_URL" => Some(fake.url.clone()),
        "STAGEGATE_GITHUB_RETRY_BASE_MS" => Some("1".into()),
        "STAGEGATE_GITHUB_RETRIES" => Some("4".into()),
        _ => None,
    };
    let cfg = GitHubConfig::from_lookup(None, env).unwrap();
    assert_eq!(cfg.retry.base_delay, Duration::from_millis(1));
    let gh = GitHub::new(cfg).unwrap();
    let path = format!("/repos/{OWNER}/{REPO}/pulls/7");
    fake.script("GET", &path, vec![Reply::fixture(500, "error-server"); 4]);
    assert!(gh.get_pr(7).is_err());
    assert_eq!(fake.requests_to("GET", &path).len(), 4);
}

#[test]
fn a_rate_limit_is_waited_out_then_retried() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let path = format!("/repos/{OWNER}/{REPO}/pulls");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    fake.script(
        "GET",
        &path,
        vec![
            Reply::fixture(403, "error-rate-limit")
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", &(now - 1).to_string()),
            Reply::fixture(429, "error-rate-limit").header("retry-after", "0"),
        ],
    );
    assert_eq!(gh.find_open_pr("x", "y").unwrap(), None);
    assert_eq!(fake.requests_to("GET", &path).len(), 3);
}

#[test]
fn a_rate_limit_longer_than_the_bound_fails_at_once() {
    let fake = FakeGitHub::start();
    let gh = github(&fake);
    let path = format!("/repos/{OWNER}/{REPO}/pulls");
    fake.script(
        "GET",
        &path,
        vec![Reply::fixture(403, "error-rate-limit").header("retry-after", "3600")],
    );
    let e = gh.find_open_pr("x", "y").unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("rate limited (HTTP 403)"), "{e}");
    assert!(e.to_string().contains("resets in 1h"), "{e}");
    assert!(
        e.help().unwrap().contains("STAGEGATE_GITHUB_MAX_WAIT_SECS"),
        "{:?}",
        e.help()
    );
    assert_eq!(fake.requests_to("GET", &path).len(), 1);
}

#[test]
fn a_401_is_an_infrastructure_error_that_names_the_token() {
    let fake = FakeGitHub::start();
    let gh = GitHub::new(config(&fake, "ghs_expired")).unwrap();
    let e = gh.find_open_pr("x", "y").unwrap_err();
    assert!(matches!(e, stagegate::Error::Infra { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 3);
    let msg = e.to_string();
    assert!(msg.contains("HTTP 401: Bad credentials"), "{msg}");
    assert!(msg.contains("octo-org/state"), "{msg}");
    let help = e.help().unwrap();
    assert!(help.contains("GITHUB_TOKEN"), "{help}");
    assert!(help.contains(&fake.url), "{help}");
    assert_eq!(fake.requests().len(), 1, "a 401 is not retried");
}

#[test]
fn a_404_points_at_the_repository_name() {
    let fake = FakeGitHub::start();
    let mut cfg = config(&fake, TOKEN);
    cfg.repository = "octo-org/typo".into();
    let e = GitHub::new(cfg).unwrap().get_pr(1).unwrap_err();
    assert!(e.to_string().contains("HTTP 404: Not Found"), "{e}");
    assert!(
        e.help()
            .unwrap()
            .contains("GITHUB_REPOSITORY=octo-org/typo")
    );
}

#[test]
fn an_unreachable_api_is_an_infrastructure_error() {
    let url = {
        let fake = FakeGitHub::start();
        fake.url.clone()
    };
    let mut cfg = config(&FakeGitHub::start(), TOKEN);
    cfg.api_url = url.clone();
    let e = GitHub::new(cfg).unwrap().get_pr(1).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains(&format!("could not reach {url} (3 tries)")),
        "{e}"
    );
}

#[test]
fn an_enterprise_server_base_url_is_honoured_for_rest_and_graphql() {
    let fake = FakeGitHub::start_with_prefix("/api/v3");
    let gh = github(&fake);
    let pr = gh
        .open_pr("stagegate/promote/a-to-b", "b", "t", "b", false)
        .unwrap();
    gh.set_draft(pr.number, true, None).unwrap();
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/v3/repos/octo-org/state/pulls",
            "/api/v3/repos/octo-org/state/pulls/1347",
            "/api/graphql",
        ]
    );
    assert_eq!(fake.pull(pr.number)["draft"], json!(true));
}

#[test]
fn a_token_with_a_line_break_is_refused_before_any_request() {
    let fake = FakeGitHub::start();
    let e = GitHub::new(config(&fake, "abc\ndef")).err().unwrap();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("GITHUB_TOKEN"), "{e}");
    // Surrounding whitespace (a token read from a file) is fine.
    assert!(GitHub::new(config(&fake, &format!("{TOKEN}\n"))).is_ok());
}

// ---------------------------------------------------------------------------------------
// action.yml and the example workflows

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workflows() -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(root().join("templates/github"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    out.sort();
    assert!(out.len() >= 3, "{out:?}");
    out
}

/// `inputs.NAME` references in `text`.
fn input_refs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("inputs.") {
        let name: String = rest[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        out.push(name);
        rest = &rest[i + 7..];
    }
    out
}

#[test]
fn action_yml_is_a_composite_action_whose_steps_all_name_a_shell() {
    let action = yaml(&root().join("action.yml"));
    assert_eq!(action["runs"]["using"], json!("composite"));
    for key in ["name", "description"] {
        assert!(action[key].is_string(), "action.yml needs a {key}");
    }
    let inputs = action["inputs"].as_object().unwrap();
    for wanted in ["command", "stage", "jobs", "job", "push", "review", "token"] {
        assert!(inputs.contains_key(wanted), "no input {wanted}");
    }
    assert_eq!(inputs["command"]["default"], json!("cycle"));
    for (name, input) in inputs {
        assert!(
            input["description"].is_string(),
            "input {name} has no description"
        );
    }
    let steps = action["runs"]["steps"].as_array().unwrap();
    for (i, step) in steps.iter().enumerate() {
        if step.get("run").is_some() {
            assert_eq!(
                step["shell"],
                json!("bash"),
                "step {i} runs without a shell"
            );
            let script = step["run"].as_str().unwrap();
            assert!(
                !script.contains("${{"),
                "step {i} splices an expression into its script (use env): {script}"
            );
        } else {
            assert!(step["uses"].is_string(), "step {i} neither runs nor uses");
        }
    }
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    for name in input_refs(&text) {
        assert!(
            inputs.contains_key(&name),
            "action.yml uses inputs.{name}, which it does not declare"
        );
    }
    // Installing is the script tested in test_github::install, called with the action's
    // own path and ref.
    assert_eq!(
        steps[0]["run"],
        json!("bash \"$STAGEGATE_ACTION_PATH/scripts/install.sh\"")
    );
    assert_eq!(
        steps[0]["env"]["STAGEGATE_REF"],
        json!("${{ github.action_ref }}")
    );
    // Every output GitHub gives a caller is declared, and comes from the run step, which
    // writes each of them (cli/promote.rs `publish`).
    let outputs = action["outputs"].as_object().unwrap();
    let run = steps.iter().find(|s| s["id"] == json!("run")).unwrap();
    assert!(run["env"]["STAGEGATE_GITHUB_APP_TOKEN"].is_string());
    for name in [
        "decision", "promoted", "pass", "fail", "flaky", "error", "missing",
    ] {
        assert_eq!(
            outputs[name]["value"],
            json!(format!("${{{{ steps.run.outputs.{name} }}}}")),
            "output {name}"
        );
        assert!(outputs[name]["description"].is_string(), "output {name}");
    }
}

#[test]
fn the_example_workflows_check_out_everything_and_use_only_declared_inputs() {
    let action = yaml(&root().join("action.yml"));
    let inputs = action["inputs"].as_object().unwrap();
    for path in workflows() {
        let wf = yaml(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("pull_request_target:"), "{}", path.display());
        for (job_name, job) in wf["jobs"].as_object().unwrap() {
            for step in job["steps"].as_array().unwrap() {
                let uses = step["uses"].as_str().unwrap_or("");
                if uses.starts_with("actions/checkout@") {
                    assert_eq!(
                        step["with"]["fetch-depth"],
                        json!(0),
                        "{} {job_name}",
                        path.display()
                    );
                }
                if uses.starts_with("your-org/stagegate@") {
                    for key in step["with"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        assert!(
                            inputs.contains_key(key),
                            "{} passes unknown input {key}",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    let pr = yaml(&root().join("templates/github/stagegate-pull-request.yml"));
    assert!(pr["on"]["pull_request"].is_null() || pr["on"]["pull_request"].is_object());
    assert!(pr["on"].get("pull_request").is_some());
    assert_eq!(pr["permissions"], json!({"contents": "read"}));
    let commands: Vec<&str> = pr["jobs"]["check"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["with"]["command"].as_str())
        .collect();
    assert_eq!(commands, ["check", "plan"]);
}

/// The first step of `steps` that uses an action whose reference starts with `prefix`.
fn step_using<'a>(steps: &'a [serde_json::Value], prefix: &str) -> &'a serde_json::Value {
    steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no step uses {prefix}"))
}

/// Every workflow this repository ships: the examples and its own release workflow.
fn all_workflows() -> Vec<std::path::PathBuf> {
    let mut out = workflows();
    out.push(root().join(".github/workflows/release.yml"));
    out
}

#[test]
fn workflows_pin_actions_by_sha_and_grant_write_only_to_jobs_that_push() {
    for path in all_workflows() {
        let wf = yaml(&path);
        let name = path.display();
        // Nothing by default: each job says what it needs.
        let top = &wf["permissions"];
        assert!(
            top == &json!({}) || top == &json!({"contents": "read"}),
            "{name}: workflow-level permissions {top}"
        );
        for (job_name, job) in wf["jobs"].as_object().unwrap() {
            let writes = job["permissions"]
                .as_object()
                .is_some_and(|p| p.values().any(|v| v == "write"));
            for step in job["steps"].as_array().unwrap() {
                let Some(uses) = step["uses"].as_str() else {
                    continue;
                };
                if uses.starts_with("your-org/stagegate@") {
                    continue;
                }
                let (_, sha) = uses.split_once('@').unwrap();
                assert!(
                    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{name} {job_name}: {uses} is not pinned by a commit SHA"
                );
                if uses.starts_with("actions/checkout@") {
                    assert_eq!(
                        step["with"]["persist-credentials"],
                        json!(false),
                        "{name} {job_name}: the checkout keeps a token in .git/config"
                    );
                }
                if uses.starts_with("actions/create-github-app-token@") {
                    assert!(writes, "{name} {job_name}");
                    assert!(
                        step["with"]["permission-contents"].is_string(),
                        "{name} {job_name}: the App token asks for what it needs only"
                    );
                }
            }
        }
    }
}

#[test]
fn every_workflow_that_promotes_shares_one_concurrency_group() {
    let mut promoting = 0;
    for path in workflows() {
        let wf = yaml(&path);
        for (job_name, job) in wf["jobs"].as_object().unwrap() {
            let promotes = job["steps"].as_array().unwrap().iter().any(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("your-org/stagegate@"))
                    && s["with"]["command"]
                        .as_str()
                        .is_some_and(|c| c.contains("promote") || c.contains("cycle"))
            });
            if !promotes {
                continue;
            }
            promoting += 1;
            let group = job["concurrency"]["group"]
                .as_str()
                .or(wf["concurrency"]["group"].as_str());
            assert_eq!(
                group,
                Some("stagegate-promote"),
                "{} {job_name}",
                path.display()
            );
        }
    }
    assert_eq!(promoting, 2, "the cycle and the matrix's promote job");
}

#[test]
fn an_approval_of_a_promotion_pull_request_promotes_at_once() {
    let wf = yaml(&root().join("templates/github/stagegate-cycle.yml"));
    assert_eq!(
        wf["on"]["pull_request_review"]["types"],
        json!(["submitted"])
    );
    let job = &wf["jobs"]["cycle"];
    let cond = job["if"].as_str().unwrap();
    for part in [
        "github.event.review.state == 'approved'",
        "startsWith(github.event.pull_request.head.ref, 'stagegate/promote/')",
        "github.event.pull_request.head.repo.full_name == github.repository",
    ] {
        assert!(cond.contains(part), "{cond}");
    }
    let steps = job["steps"].as_array().unwrap();
    let checkout = step_using(steps, "actions/checkout@");
    assert_eq!(
        checkout["with"]["ref"],
        json!("${{ github.event.pull_request.base.ref }}"),
        "the stage, never the pull request's code"
    );
    let action = step_using(steps, "your-org/stagegate@");
    assert_eq!(
        action["with"]["github-app-token"],
        json!("${{ steps.app.outputs.token }}")
    );
    assert!(
        action["with"]["command"]
            .as_str()
            .unwrap()
            .contains("'promote'")
    );
}

#[test]
fn the_fake_answers_in_the_shapes_githubs_openapi_description_gives() {
    let Some(node) = crate::common::require_tool("node") else {
        return;
    };
    // `.ci/run` installs the npm package @octokit/openapi there.
    let spec =
        root().join(".ci/npm/node_modules/@octokit/openapi/generated/api.github.com.deref.json");
    if !spec.is_file() {
        assert!(
            !crate::common::in_ci(),
            "{} is missing, and CI is set: `.ci/run` installs it",
            spec.display()
        );
        eprintln!("NOTICE: @octokit/openapi is not installed; skipping (`.ci/run` installs it)");
        return;
    }
    let dir = root().join("tests/fixtures/github");
    let out = std::process::Command::new(node)
        .arg(dir.join("validate.js"))
        .arg(&spec)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fixtures that GitHub's schemas refuse:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn zizmor_finds_nothing_in_the_workflows_or_the_action() {
    let Some(zizmor) = crate::common::require_tool("zizmor") else {
        return;
    };
    let mut cmd = std::process::Command::new(zizmor);
    cmd.current_dir(root())
        .args(["--offline", "--no-progress", "--format", "plain"])
        .args(["--config", ".github/zizmor.yml", "action.yml"]);
    for p in all_workflows() {
        cmd.arg(p);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "zizmor:\n{text}");
    assert!(text.contains("No findings to report"), "{text}");
}

/// The commit `init --github-action` pins in the generated repositories below.
const PIN: &str = "0123456789abcdef0123456789abcdef01234567";

/// A repository made by `init` with `flags` (`--github` or `--github=matrix`), its action
/// given (`Some`) or left to the binary (`None`: the tests' binary is not a release), with
/// its remote on github.com; the environment and the workflows it wrote (path, text).
fn generated(flag: &str, action: Option<&str>) -> (TestEnv, Vec<(String, String)>) {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "main"]);
    env.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/octo-org/state.git",
    ]);
    let mut args = vec!["init", flag];
    if let Some(a) = action {
        args.extend(["--github-action", a]);
    }
    env.sg_ok(&args);
    let dir = env.repo.join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    (env, files)
}

fn zizmor_in(zizmor: &std::path::Path, repo: &std::path::Path) -> (bool, String) {
    // No configuration and no ignore comments: the files as written, nothing exempted.
    let out = std::process::Command::new(zizmor)
        .current_dir(repo)
        .args(["--offline", "--no-progress", "--format", "plain"])
        .args(["--no-config", "--no-ignores", ".github/workflows"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_repository_made_by_init_github_is_clean_under_zizmor_and_actionlint_as_written() {
    let zizmor = crate::common::require_tool("zizmor");
    let actionlint = crate::common::require_tool("actionlint");
    let (Some(zizmor), Some(actionlint)) = (zizmor, actionlint) else {
        return;
    };
    let action = format!("octo-org/stagegate@{PIN}");
    for flag in ["--github", "--github=matrix"] {
        let (env, files) = generated(flag, Some(&action));
        assert_eq!(files.len(), 2, "{flag}: {files:?}");
        for (name, text) in &files {
            assert!(!text.contains("your-org"), "{flag} {name}:\n{text}");
            assert!(!text.contains("By hand"), "{flag} {name}:\n{text}");
        }
        assert!(
            !env.repo.join(".github/zizmor.yml").exists() && !env.repo.join("zizmor.yml").exists()
        );
        let (ok, text) = zizmor_in(&zizmor, &env.repo);
        assert!(ok, "{flag}: zizmor:\n{text}");
        assert!(text.contains("No findings to report"), "{flag}: {text}");
        let out = std::process::Command::new(&actionlint)
            .current_dir(&env.repo)
            .arg("-no-color")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{flag}: actionlint:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The same audit does see an action that is not pinned: what a binary that no release
    // built writes, and says to pin (test_init).
    let (env, files) = generated("--github", None);
    assert!(
        files
            .iter()
            .all(|(_, t)| t.contains("uses: your-org/stagegate@v0\n")),
        "{files:?}"
    );
    let (ok, text) = zizmor_in(&zizmor, &env.repo);
    assert!(!ok, "{text}");
    assert!(text.contains("unpinned-uses"), "{text}");
}

#[test]
fn init_github_pins_stagegates_action_by_commit_in_every_step() {
    let action = format!("octo-org/stagegate@{PIN}");
    for flag in ["--github", "--github=matrix"] {
        let (_, files) = generated(flag, Some(&action));
        for (name, text) in &files {
            let wf: serde_json::Value = serde_saphyr::from_str(text).unwrap();
            let mut ours = 0;
            for job in wf["jobs"].as_object().unwrap().values() {
                for step in job["steps"].as_array().unwrap() {
                    let uses = step["uses"].as_str().unwrap_or("");
                    if uses.contains("stagegate") {
                        assert_eq!(uses, action, "{flag} {name}");
                        ours += 1;
                    }
                }
            }
            assert!(ours > 0, "{flag} {name} uses the action");
        }
    }
}

#[test]
fn init_github_writes_one_scheduled_promoter_with_the_store_permission_and_no_forced_review() {
    for (flag, promoter) in [
        ("--github", "stagegate-cycle.yml"),
        ("--github=matrix", "stagegate-matrix.yml"),
    ] {
        let (env, files) = generated(flag, None);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, [promoter, "stagegate-pull-request.yml"], "{flag}");
        let mut scheduled = Vec::new();
        let mut commands = Vec::new();
        for (name, text) in &files {
            let wf: serde_json::Value = serde_saphyr::from_str(text).unwrap();
            if wf["on"].get("schedule").is_some() {
                scheduled.push(name.as_str());
            }
            for (job_name, job) in wf["jobs"].as_object().unwrap() {
                for step in job["steps"].as_array().unwrap() {
                    if !step["uses"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("your-org/stagegate@"))
                    {
                        continue;
                    }
                    // Review is the pipeline's: `review: true` on a gate, nowhere else.
                    assert!(
                        step["with"].get("review").is_none(),
                        "{flag} {name} {job_name} forces review"
                    );
                    let command = step["with"]["command"].as_str().unwrap_or("cycle");
                    commands.push(command.to_string());
                    // The signing key reaches no step that runs candidate code, and a
                    // matrix job that runs it cannot push: its result leaves as an artifact
                    // that the `record` job signs (README: Signed evidence).
                    let key = step["env"].get("STAGEGATE_SIGNING_KEY").is_some();
                    if command == "run" {
                        assert!(!key, "{flag} {name} {job_name}: the key reaches a job");
                        assert_eq!(job["permissions"]["contents"], json!("read"));
                        assert!(
                            step["with"]["args"]
                                .as_str()
                                .is_some_and(|a| a.starts_with("--export result-")),
                            "{flag} {name} {job_name}"
                        );
                    }
                    if command == "record" {
                        assert!(key, "{flag} {name} {job_name} signs");
                    }
                    // Builds and tests reach the ghcr.io store with the workflow's token.
                    if command == "run" || command.contains("cycle") {
                        assert_eq!(
                            job["permissions"]["packages"],
                            json!("write"),
                            "{flag} {name} {job_name}"
                        );
                    }
                }
            }
        }
        assert_eq!(scheduled, [promoter], "{flag}: one scheduled workflow");
        // Nothing upstream is lost: the matrix polls too (the cycle does by itself).
        if flag == "--github=matrix" {
            assert!(commands.iter().any(|c| c == "poll"), "{commands:?}");
            assert!(commands.iter().any(|c| c == "record"), "{commands:?}");
        }
        let yaml = env.read("stagegate.yaml");
        assert!(
            yaml.contains("artifacts: {store: oci://ghcr.io/octo-org/state/artifacts}"),
            "{yaml}"
        );
    }
}

#[test]
fn actionlint_accepts_the_example_workflows_against_our_action_yml() {
    let Some(actionlint) = crate::common::require_tool("actionlint") else {
        return;
    };
    // A repository with our action at its root and the examples as its workflows, each
    // using the action as `./`, so actionlint also checks every `with:` against action.yml.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::copy(root().join("action.yml"), repo.join("action.yml")).unwrap();
    std::fs::copy(
        root().join(".github/workflows/release.yml"),
        repo.join(".github/workflows/release.yml"),
    )
    .unwrap();
    for path in workflows() {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("your-org/stagegate@v0"), "{}", path.display());
        std::fs::write(
            repo.join(".github/workflows")
                .join(path.file_name().unwrap()),
            text.replace("your-org/stagegate@v0", "./"),
        )
        .unwrap();
    }
    let out = std::process::Command::new(&actionlint)
        .current_dir(repo)
        .arg("-no-color")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // And it does catch a mistake: an input the action does not have.
    std::fs::write(
        repo.join(".github/workflows/broken.yml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: ./\n        with:\n          comand: cycle\n",
    )
    .unwrap();
    let out = std::process::Command::new(&actionlint)
        .current_dir(repo)
        .arg("-no-color")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("comand"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The action's last two steps, run with bash: the remote's stage branches become local
/// ones, and inputs become arguments.
/// Run `script` (a step of action.yml) as GitHub would, with `stagegate` on PATH a stand-in
/// that prints `fake`'s output, the inputs at their defaults but for `vars`; its stdout.
fn action_step(env: &TestEnv, script: &str, fake: &str, vars: &[(&str, &str)]) -> String {
    let bin = env.home().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("stagegate"), fake).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("stagegate"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("bash");
    crate::common::base_env(&mut cmd, env.home());
    cmd.arg("-c").arg(script).current_dir(env.home());
    cmd.env(
        "PATH",
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    for (k, v) in [
        ("GITHUB_TOKEN", "tok"),
        ("SG_COMMAND", "cycle"),
        ("SG_STAGE", ""),
        ("SG_JOBS", ""),
        ("SG_JOB", ""),
        ("SG_PUSH", "false"),
        ("SG_REVIEW", "false"),
        ("SG_ARGS", ""),
        ("SG_DIRECTORY", "."),
        ("SG_REMOTE", "origin"),
        ("SG_GIT_NAME", "github-actions[bot]"),
        ("SG_GIT_EMAIL", "bot@example.com"),
    ] {
        cmd.env(k, v);
    }
    cmd.env_remove("GIT_AUTHOR_NAME");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_action_run_step_turns_inputs_into_arguments_and_mirrors_stage_branches() {
    let action = yaml(&root().join("action.yml"));
    let steps = action["runs"]["steps"].as_array().unwrap();
    // The branch mirroring step, then the command step.
    let script = steps[steps.len() - 2..]
        .iter()
        .map(|s| s["run"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");

    let env = TestEnv::init_with(&[]);
    let clone = env.home().join("clone");
    env.git_in(
        env.home(),
        &[
            "clone",
            "-q",
            env.repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert!(
        env.git_in(&clone, &["branch", "--list", "stable"])
            .is_empty()
    );

    let fake = "#!/bin/sh\nfor a in \"$@\"; do printf '<%s>' \"$a\"; done; echo; echo \"$GITHUB_TOKEN $GIT_AUTHOR_NAME\"\n";
    let dir = clone.to_str().unwrap();
    let run = |vars: &[(&str, &str)]| {
        let mut all = vec![("SG_DIRECTORY", dir)];
        all.extend_from_slice(vars);
        action_step(&env, &script, fake, &all)
    };

    let out = run(&[]);
    assert!(
        out.contains(&format!(
            "<-C><{dir}><--remote><origin><cycle>\ntok github-actions[bot]"
        )),
        "{out}"
    );
    assert_eq!(
        env.git_in(&clone, &["rev-parse", "stable"]),
        env.rev("stable"),
        "the remote's stable is now a local branch"
    );

    let out = run(&[
        ("SG_COMMAND", "run"),
        ("SG_STAGE", "stable"),
        ("SG_JOBS", "4"),
        ("SG_JOB", "abc123"),
        ("SG_PUSH", "true"),
        ("SG_REVIEW", "true"),
        ("SG_ARGS", "--dry-run  --format json"),
        ("SG_REMOTE", ""),
    ]);
    assert!(
        out.contains(&format!(
            "<-C><{dir}><run><--stage><stable><-j><4><--job><abc123><--push><--review><--dry-run><--format><json>"
        )),
        "{out}"
    );

    // A stage name is data, not shell.
    let out = run(&[("SG_STAGE", "$(touch pwned); x")]);
    assert!(out.contains("<--stage><$(touch pwned); x>"), "{out}");
    assert!(!env.home().join("pwned").exists());
}

#[test]
fn git_in_the_action_authenticates_with_the_app_token_when_given() {
    let action = yaml(&root().join("action.yml"));
    let steps = action["runs"]["steps"].as_array().unwrap();
    let script = steps.last().unwrap()["run"].as_str().unwrap().to_string();
    // A git server on 127.0.0.1 that records the Authorization header it is sent.
    let server = std::sync::Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (s, r) = (server.clone(), seen.clone());
    let thread = std::thread::spawn(move || {
        for req in s.incoming_requests() {
            let auth = req
                .headers()
                .iter()
                .filter(|h| h.field.equiv("authorization"))
                .map(|h| h.value.as_str().to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            r.lock().unwrap().push(auth);
            let _ = req.respond(tiny_http::Response::from_string("no").with_status_code(403));
        }
    });
    let env = TestEnv::new();
    // "stagegate" here just talks to the remote as stagegate's pushes do.
    let fake = format!(
        "#!/bin/sh\ngit ls-remote http://127.0.0.1:{port}/octo-org/state.git >/dev/null 2>&1\nexit 0\n"
    );
    // A checkout that persisted the workflow token's header, as actions/checkout does.
    std::fs::write(
        env.home().join("gitconfig"),
        format!("[http \"http://127.0.0.1:{port}/\"]\n\textraheader = AUTHORIZATION: basic d29ya2Zsb3c=\n"),
    )
    .unwrap();
    let server_url = format!("http://127.0.0.1:{port}");
    let run = |app_token: &str| {
        let vars = [
            ("GITHUB_TOKEN", "workflow-token"),
            ("STAGEGATE_GITHUB_APP_TOKEN", app_token),
            ("GITHUB_SERVER_URL", server_url.as_str()),
            ("SG_COMMAND", "promote"),
            ("SG_PUSH", "true"),
            ("SG_REMOTE", ""),
        ];
        action_step(&env, &script, &fake, &vars)
    };
    let basic = |t: &str| {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf 'x-access-token:%s' '{t}' | base64 | tr -d '\\n'"),
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run("ghs_app_installation_token");
    assert!(
        out.contains(&format!(
            "::add-mask::{}",
            basic("ghs_app_installation_token")
        )),
        "{out}"
    );
    run("");
    server.unblock();
    thread.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            format!("basic {}", basic("ghs_app_installation_token")),
            format!("basic {}", basic("workflow-token")),
        ],
        "one Authorization header each time: the app's, else the workflow token's, never the checkout's"
    );
}

// ---------------------------------------------------------------------------------------
// `check` in GitHub Actions

#[test]
fn check_prints_error_annotations_in_github_actions() {
    let env = TestEnv::init_with(&[
        (
            "images/host.yaml",
            "name: host\nversion: \"1.0\"\nbuidl: {}\n",
        ),
        ("components/xen.yaml", "name: xen\nversion: \"4.20\"\n"),
    ]);
    let out = env
        .sg_cmd(&["check"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no annotation in:\n{stdout}"));
    assert!(
        line.starts_with("::error file=images/host.yaml,line=3,col=1,title=stagegate check::unknown field `buidl`"),
        "{line}"
    );

    // Outside GitHub Actions: no workflow commands.
    let (stdout, _) = env.sg_code(1, &["check"]);
    assert!(!stdout.contains("::error"), "{stdout}");
}

#[test]
fn check_annotations_escape_newlines_so_the_help_stays_in_one_command() {
    let env = TestEnv::init_with(&[
        ("images/host.yaml", "name: host\nversion: \"1.0\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [images/hots]\nrun: ./tests/boot.sh\n",
        ),
        ("tests/boot.sh", "#!/bin/sh\nexit 0\n"),
    ]);
    let out = env
        .sg_cmd(&["check"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error file=tests/boot.yaml"))
        .unwrap_or_else(|| panic!("no annotation in:\n{stdout}"));
    assert!(line.contains("line=2,"), "{line}");
    assert!(
        line.contains("%0Ahelp: did you mean images/host?"),
        "{line}"
    );
}

#[test]
fn the_release_attests_what_the_install_script_verifies() {
    let wf = yaml(&root().join(".github/workflows/release.yml"));
    let publish = &wf["jobs"]["publish"];
    let perms = &publish["permissions"];
    assert_eq!(perms["id-token"], json!("write"), "{perms}");
    assert_eq!(perms["attestations"], json!("write"), "{perms}");
    let steps = publish["steps"].as_array().unwrap();
    let attest = step_using(steps, "actions/attest-build-provenance@");
    assert_eq!(
        attest["with"]["subject-path"],
        json!("dist/stagegate-*.tar.gz")
    );
    let id = attest["id"].as_str().unwrap();
    let text: String = steps
        .iter()
        .filter_map(|s| s["run"].as_str().map(|r| format!("{r}\n{}", s["env"])))
        .collect();
    assert!(
        text.contains(&format!("steps.{id}.outputs.bundle-path")),
        "the bundle is taken from the attest step"
    );
    // The asset name and signer the install script asks gh for.
    let install = std::fs::read_to_string(root().join("scripts/install.sh")).unwrap();
    for needle in ["provenance.sigstore.json", "/.github/workflows/release.yml"] {
        assert!(install.contains(needle), "install.sh: {needle}");
    }
    assert!(text.contains("dist/provenance.sigstore.json"), "published");
}
