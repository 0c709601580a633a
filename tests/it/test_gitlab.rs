//! GitLab as a forge: stagegate's GitLab client against a fake GitLab on 127.0.0.1 that
//! answers with GitLab's documented shapes (merge requests, approvals, members, statuses,
//! pagination, errors), and whole promotions through merge requests ([`review`]).

mod fake;
mod review;

use std::path::PathBuf;
use std::time::Duration;

use stagegate::forge::{
    CheckPosted, CheckRun, Conclusion, DraftChange, Forge, GitLab, GitLabConfig, Permission,
    RetryPolicy, StatusState,
};

use crate::common::TestEnv;
use fake::{FakeGitLab, PROJECT, PROJECT_ID, READ_TOKEN, Reply, TOKEN};

const BRANCH: &str = "stagegate/promote/staging-to-stable";

fn config(fake: &FakeGitLab, token: &str, project: &str) -> GitLabConfig {
    GitLabConfig {
        api_url: fake.api(),
        project: project.to_string(),
        token: token.to_string(),
        token_source: "STAGEGATE_GITLAB_TOKEN".to_string(),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_rate_limit_wait: Duration::from_secs(60),
            rate_limit_waits: 3,
        },
    }
}

/// A project whose git side is a bare repository with `stable` and a promotion branch one
/// commit ahead of it, and a client for it.
struct World {
    env: TestEnv,
    origin: PathBuf,
    fake: FakeGitLab,
    gl: GitLab,
}

fn world() -> World {
    let env = TestEnv::init_with(&[("a.txt", "1\n")]);
    env.git(&["checkout", "-q", "-b", BRANCH, "stable"]);
    env.commit_on(BRANCH, "Promote", &[("a.txt", "2\n")]);
    let origin = env.bare_clone("origin.git");
    let fake = FakeGitLab::start(Some(&origin));
    let gl = GitLab::new(config(&fake, TOKEN, PROJECT)).unwrap();
    World {
        env,
        origin,
        fake,
        gl,
    }
}

impl World {
    /// Push a new commit to the promotion branch (a new head of the merge request).
    fn push_new_head(&self, content: &str) -> String {
        let sha = self
            .env
            .commit_on(BRANCH, "Promote again", &[("a.txt", content)]);
        self.env.git(&[
            "push",
            "-q",
            "--force",
            self.origin.to_str().unwrap(),
            &format!("{BRANCH}:refs/heads/{BRANCH}"),
        ]);
        sha
    }

    fn head(&self) -> String {
        self.env.git_in(&self.origin, &["rev-parse", BRANCH])
    }
}

#[test]
fn a_merge_request_is_opened_once_and_found_again() {
    let w = world();
    let (mr, upsert) =
        w.gl.upsert_pr(BRANCH, "stable", "Promote a", "body", false)
            .unwrap();
    assert_eq!(upsert, stagegate::forge::Upsert::Opened);
    assert_eq!(mr.number, 7);
    assert_eq!(mr.head_sha, w.head());
    assert!(mr.url.ends_with("/-/merge_requests/7"), "{}", mr.url);
    let (again, upsert) =
        w.gl.upsert_pr(BRANCH, "stable", "Promote a", "body", false)
            .unwrap();
    assert_eq!(upsert, stagegate::forge::Upsert::Unchanged);
    assert_eq!(again.number, 7);
    let (_, upsert) =
        w.gl.upsert_pr(BRANCH, "stable", "Promote b", "new body", false)
            .unwrap();
    assert_eq!(upsert, stagegate::forge::Upsert::Updated);
    assert_eq!(w.fake.mrs().len(), 1);
    assert_eq!(w.fake.mr(7)["title"], "Promote b");
    assert_eq!(w.fake.mr(7)["description"], "new body");
    let opened = w.fake.requests_to(
        "POST",
        &format!("/projects/{}/merge_requests", enc(PROJECT)),
    );
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].body["source_branch"], BRANCH);
    assert_eq!(opened[0].body["target_branch"], "stable");
    assert_eq!(opened[0].body["remove_source_branch"], false);
    assert_eq!(opened[0].token.as_deref(), Some(TOKEN), "PRIVATE-TOKEN");
}

#[test]
fn opening_a_merge_request_someone_else_just_opened_returns_theirs() {
    let w = world();
    let first = w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    // The fake answers 409 "Another open merge request already exists", as GitLab does.
    let second = w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    assert_eq!(first.number, second.number);
    assert_eq!(w.fake.mrs().len(), 1);
}

#[test]
fn draft_is_the_title_prefix_and_an_update_keeps_it() {
    let w = world();
    let mr =
        w.gl.open_pr(BRANCH, "stable", "Promote a", "b", true)
            .unwrap();
    assert!(mr.draft);
    assert_eq!(mr.title, "Promote a", "the prefix is not part of the title");
    assert_eq!(w.fake.mr(7)["title"], "Draft: Promote a");
    w.gl.update_pr(7, "Promote a2", "b2").unwrap();
    assert_eq!(w.fake.mr(7)["title"], "Draft: Promote a2");
    assert_eq!(
        w.gl.set_draft(7, false, None).unwrap(),
        DraftChange::Changed
    );
    assert_eq!(w.fake.mr(7)["title"], "Promote a2");
    assert_eq!(w.fake.mr(7)["draft"], false);
    assert_eq!(
        w.gl.set_draft(7, false, None).unwrap(),
        DraftChange::Unchanged
    );
    assert_eq!(
        w.gl.set_draft(7, true, Some("the gate is red")).unwrap(),
        DraftChange::Changed
    );
    assert!(w.gl.get_pr(7).unwrap().draft);
    let notes = w.fake.notes(7);
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]["body"]
            .as_str()
            .unwrap()
            .contains("stagegate marked this merge request as draft: the gate is red"),
        "{notes:?}"
    );
}

#[test]
fn labels_are_added_not_replaced() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    w.gl.add_labels(7, &["stagegate".to_string()]).unwrap();
    w.gl.add_labels(7, &["stagegate".to_string(), "xen".to_string()])
        .unwrap();
    assert_eq!(
        w.fake.mr(7)["labels"],
        serde_json::json!(["stagegate", "xen"])
    );
}

#[test]
fn access_levels_map_to_who_may_approve() {
    let w = world();
    for (user, level) in [
        ("guest", Some(10)),
        ("reporter", Some(20)),
        ("dev", Some(30)),
        ("maint", Some(40)),
        ("owner", Some(50)),
        ("outsider", None),
    ] {
        w.fake.set_member(user, level);
    }
    let p = |u: &str| w.gl.permission(u).unwrap();
    assert_eq!(p("guest"), Permission::Read);
    assert_eq!(p("reporter"), Permission::Read);
    assert_eq!(p("dev"), Permission::Write);
    assert_eq!(p("maint"), Permission::Write);
    assert_eq!(p("owner"), Permission::Admin);
    assert_eq!(p("outsider"), Permission::None);
    assert_eq!(p("nobody-at-all"), Permission::None);
    assert_eq!(
        w.gl.access_text("guest", Permission::Read),
        "guest is a Guest of the project, not at least a Developer"
    );
    assert_eq!(
        w.gl.access_text("outsider", Permission::None),
        "outsider is not a member of the project"
    );
    // Each user's membership is asked once.
    p("dev");
    let asked = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/members/all/"))
        .count();
    assert_eq!(
        asked, 6,
        "nobody-at-all is no user, so has no membership to ask"
    );
}

#[test]
fn an_approval_counts_only_when_given_after_the_head_was_pushed() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    let first = w.head();
    w.fake.approve(7, "alice");
    let a = w.gl.reviews(7, Some(&first)).unwrap();
    assert_eq!(a.approved_by, ["alice"]);
    // A new push: alice's approval stays in GitLab's list (no reset on push here), but it
    // was of the earlier head.
    let second = w.push_new_head("3\n");
    let a = w.gl.reviews(7, Some(&second)).unwrap();
    assert!(a.approved_by.is_empty(), "{a:?}");
    assert_eq!(a.ignored.len(), 1, "{a:?}");
    assert!(a.ignored[0].contains("alice") && a.ignored[0].contains("earlier head"));
    // Approving the new head counts.
    w.fake.approve(7, "alice");
    assert_eq!(
        w.gl.reviews(7, Some(&second)).unwrap().approved_by,
        ["alice"]
    );
    // Asking about another head than the merge request's: nothing counts.
    let a = w.gl.reviews(7, Some(&first)).unwrap();
    assert!(a.approved_by.is_empty(), "{a:?}");
}

#[test]
fn approved_at_is_used_where_gitlab_gives_it() {
    let w = world();
    w.fake.with_approved_at();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    w.fake.approve(7, "alice");
    let second = w.push_new_head("3\n");
    w.fake.approve(7, "bob");
    let a = w.gl.reviews(7, Some(&second)).unwrap();
    assert_eq!(a.approved_by, ["bob"]);
    assert!(a.ignored[0].contains("alice"), "{a:?}");
    let notes_read = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/notes") && r.method == "GET")
        .count();
    assert_eq!(
        notes_read, 0,
        "approved_at says when: no need for the notes"
    );
}

#[test]
fn a_reviewer_requesting_changes_blocks() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    w.fake.approve(7, "alice");
    w.fake.request_changes(7, "carol");
    let a = w.gl.reviews(7, Some(&w.head())).unwrap();
    assert_eq!(a.approved_by, ["alice"]);
    assert_eq!(a.changes_requested_by, ["carol"]);
    assert!(!a.is_approved());
}

#[test]
fn reviewer_states_are_optional_but_a_failure_to_read_them_is_not_ignored() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    w.fake.approve(7, "alice");
    let reviewers = "/projects/xen-project%2Fstate/merge_requests/7/reviewers";
    // An older GitLab without reviewer states.
    w.fake
        .script("GET", reviewers, vec![Reply::message(404, "404 Not Found")]);
    assert_eq!(
        w.gl.reviews(7, Some(&w.head())).unwrap().approved_by,
        ["alice"]
    );
    w.fake.script(
        "GET",
        reviewers,
        vec![Reply::message(500, "500 Internal Server Error"); 3],
    );
    let e = w.gl.reviews(7, Some(&w.head())).unwrap_err();
    assert!(
        said(&e).contains("reading the reviewers of merge request !7"),
        "{}",
        said(&e)
    );
}

#[test]
fn approval_notes_are_read_to_the_last_page_by_link_or_by_x_next_page() {
    for links in [true, false] {
        let w = world();
        if !links {
            w.fake.without_links();
        }
        w.fake.set_page_size(2);
        w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
        for i in 0..4 {
            w.fake.approve(7, &format!("user{i}"));
        }
        // Nine notes (four approvals, five of stagegate's) over pages of two.
        for i in 0..5 {
            w.gl.set_draft(7, i % 2 == 0, Some(&format!("reason {i}")))
                .unwrap();
        }
        let a = w.gl.reviews(7, Some(&w.head())).unwrap();
        assert_eq!(
            a.approved_by,
            ["user0", "user1", "user2", "user3"],
            "links: {links}"
        );
        let pages: Vec<String> = w
            .fake
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path == "/projects/xen-project%2Fstate/merge_requests/7/notes"
            })
            .map(|r| r.query.get("page").cloned().unwrap_or_else(|| "1".into()))
            .collect();
        assert!(
            pages.ends_with(&["1".into(), "2".into(), "3".into(), "4".into(), "5".into()]),
            "links: {links}: {pages:?}"
        );
    }
}

#[test]
fn group_members_are_listed_to_the_last_page_and_only_developers_own() {
    let w = world();
    w.fake.set_page_size(2);
    w.fake.set_group(
        "xen-project/hw",
        &[("a", 30), ("b", 10), ("c", 40), ("d", 20), ("e", 50)],
    );
    assert_eq!(
        w.gl.team_members("xen-project", "hw").unwrap(),
        Some(vec!["a".to_string(), "c".to_string(), "e".to_string()])
    );
    assert_eq!(w.gl.team_members("xen-project", "nope").unwrap(), None);
    let paths: Vec<_> = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/groups/xen-project%2Fhw/members/all")
        .map(|r| r.query.get("page").cloned())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
}

#[test]
fn the_check_is_the_stagegate_commit_status() {
    let w = world();
    let head = w.head();
    let posted =
        w.gl.create_check_run(&CheckRun {
            name: "stagegate staging -> stable".into(),
            head_sha: head.clone(),
            conclusion: Some(Conclusion::Success),
            title: "promote: 1 candidate".into(),
            summary: "s".into(),
            text: None,
            details_url: Some("https://ci.example/run/1".into()),
            external_id: None,
            annotations: Vec::new(),
        })
        .unwrap();
    assert_eq!(posted, CheckPosted::Status);
    let s = &w.fake.statuses()[0];
    assert_eq!(s["name"], "stagegate");
    assert_eq!(s["sha"], head.as_str());
    assert_eq!(s["status"], "success");
    assert_eq!(s["description"], "staging -> stable: promote: 1 candidate");
    assert_eq!(s["target_url"], "https://ci.example/run/1");
    // Failure and error read as failed; pending twice is no error.
    w.gl.create_status(&head, StatusState::Failure, "stagegate", "red", None)
        .unwrap();
    assert_eq!(w.fake.statuses()[1]["status"], "failed");
    w.gl.create_status(&head, StatusState::Pending, "stagegate", "w", None)
        .unwrap();
    w.gl.create_status(&head, StatusState::Pending, "stagegate", "w", None)
        .unwrap();
    assert_eq!(w.fake.statuses().len(), 3);
}

#[test]
fn a_branch_deleted_twice_was_gone_the_second_time() {
    let w = world();
    assert!(w.gl.delete_branch(BRANCH).unwrap());
    assert!(!w.gl.delete_branch(BRANCH).unwrap());
    assert_eq!(
        w.fake
            .requests_to(
                "DELETE",
                "/projects/xen-project%2Fstate/repository/branches/stagegate%2Fpromote%2Fstaging-to-stable"
            )
            .len(),
        2
    );
}

#[test]
fn the_project_may_be_named_by_its_id() {
    let w = world();
    let gl = GitLab::new(config(&w.fake, TOKEN, &PROJECT_ID.to_string())).unwrap();
    gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    assert_eq!(
        w.fake
            .requests_to("POST", &format!("/projects/{PROJECT_ID}/merge_requests"))
            .len(),
        1
    );
}

#[test]
fn a_bad_token_is_an_infrastructure_error_about_the_token() {
    let w = world();
    let gl = GitLab::new(config(&w.fake, "glpat-wrong", PROJECT)).unwrap();
    let e = gl.get_pr(7).unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let text = said(&e);
    assert!(text.contains("HTTP 401: 401 Unauthorized"), "{text}");
    assert!(
        text.contains("GitLab rejected the token in STAGEGATE_GITLAB_TOKEN"),
        "{text}"
    );
}

#[test]
fn a_token_without_the_api_scope_is_told_so() {
    let w = world();
    let gl = GitLab::new(config(&w.fake, READ_TOKEN, PROJECT)).unwrap();
    let e = gl
        .create_status(&w.head(), StatusState::Success, "stagegate", "d", None)
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
    let text = said(&e);
    assert!(text.contains("HTTP 403: insufficient_scope"), "{text}");
    assert!(text.contains("(needs scope api)"), "{text}");
    assert!(
        text.contains("needs the `api` scope and at least the Developer role"),
        "{text}"
    );
}

#[test]
fn a_project_the_token_cannot_see_is_a_404_naming_the_project() {
    let w = world();
    let gl = GitLab::new(config(&w.fake, TOKEN, "xen-project/other")).unwrap();
    let e = gl.find_open_pr(BRANCH, "stable").unwrap_err();
    let text = said(&e);
    assert!(text.contains("HTTP 404: 404 Project Not Found"), "{text}");
    assert!(
        text.contains("check the project \"xen-project/other\""),
        "{text}"
    );
}

#[test]
fn a_403_on_the_draft_flag_leaves_a_note_instead() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    w.fake.script(
        "PUT",
        "/projects/xen-project%2Fstate/merge_requests/7",
        vec![Reply::message(403, "403 Forbidden")],
    );
    assert_eq!(
        w.gl.set_draft(7, true, Some("red")).unwrap(),
        DraftChange::Commented
    );
    let body = w.fake.notes(7)[0]["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("GitLab refused: HTTP 403: 403 Forbidden"),
        "{body}"
    );
    assert!(body.contains("**Do not merge**"), "{body}");
}

#[test]
fn a_rate_limit_is_waited_out_then_retried() {
    let w = world();
    let path = "/projects/xen-project%2Fstate/merge_requests";
    w.fake.script(
        "GET",
        path,
        vec![
            Reply::message(429, "429 Too Many Requests").header("retry-after", "0"),
            Reply::message(429, "429 Too Many Requests").header("retry-after", "1"),
        ],
    );
    let started = std::time::Instant::now();
    assert_eq!(w.gl.find_open_pr(BRANCH, "stable").unwrap(), None);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(w.fake.requests_to("GET", path).len(), 3);
}

#[test]
fn a_rate_limit_longer_than_allowed_fails_at_once_saying_when() {
    let w = world();
    let path = "/projects/xen-project%2Fstate/merge_requests";
    w.fake.script(
        "GET",
        path,
        vec![Reply::message(429, "429 Too Many Requests").header("retry-after", "3600")],
    );
    let e = w.gl.find_open_pr(BRANCH, "stable").unwrap_err();
    let text = said(&e);
    assert!(
        text.contains("rate limited (HTTP 429); the limit resets in 1h"),
        "{text}"
    );
    assert!(text.contains("STAGEGATE_GITLAB_MAX_WAIT_SECS"), "{text}");
    assert_eq!(w.fake.requests_to("GET", path).len(), 1);
}

#[test]
fn a_502_is_retried_for_a_read_but_a_post_is_never_sent_twice() {
    let w = world();
    w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    let mr = "/projects/xen-project%2Fstate/merge_requests/7";
    w.fake
        .script("GET", mr, vec![Reply::message(502, "502 Bad Gateway")]);
    assert_eq!(w.gl.get_pr(7).unwrap().number, 7);
    assert_eq!(w.fake.requests_to("GET", mr).len(), 2);
    let statuses = format!("/projects/xen-project%2Fstate/statuses/{}", w.head());
    w.fake.script(
        "POST",
        &statuses,
        vec![Reply::message(502, "502 Bad Gateway")],
    );
    let e =
        w.gl.create_status(&w.head(), StatusState::Success, "stagegate", "d", None)
            .unwrap_err();
    assert!(said(&e).contains("a POST is not sent twice"), "{e}");
    assert_eq!(w.fake.requests_to("POST", &statuses).len(), 1);
}

#[test]
fn a_next_page_on_another_host_is_refused() {
    let w = world();
    let path = "/projects/xen-project%2Fstate/merge_requests";
    w.fake.script(
        "GET",
        path,
        vec![Reply::new(200, serde_json::json!([])).header(
            "link",
            "<https://evil.example/api/v4/projects/1/merge_requests?page=2>; rel=\"next\"",
        )],
    );
    let e = w.gl.find_open_pr(BRANCH, "stable").unwrap_err();
    assert!(said(&e).contains("outside"), "{e}");
}

/// An error's message and its help, as people read them.
fn said(e: &stagegate::Error) -> String {
    format!("{e}\n{}", e.help().unwrap_or_default())
}

/// `group/name` as it goes in a GitLab URL.
fn enc(project: &str) -> String {
    project.replace('/', "%2F")
}

#[test]
fn the_forge_key_of_the_pipeline_is_checked() {
    for (forge, said) in [
        (
            "forge: gitea\n",
            "`forge` names \"gitea\", which is not a forge",
        ),
        (
            "forge: {kind: gitlab, url: gitlab.example.org}\n",
            "`forge.url` \"gitlab.example.org\" is not an http(s) URL",
        ),
        (
            "forge: {kind: gitlab, project: state}\n",
            "`forge.project` \"state\" is not a project path",
        ),
    ] {
        let env = TestEnv::init_with(&[]);
        let pipeline = format!("version: 1\nstages: [staging, stable]\n{forge}");
        env.commit_on("staging", "forge", &[("stagegate.yaml", &pipeline)]);
        let (_, err) = env.sg_code(1, &["check"]);
        assert!(err.contains(said), "{forge}: {err}");
    }
    let env = TestEnv::init_with(&[]);
    env.commit_on(
        "staging",
        "forge",
        &[(
            "stagegate.yaml",
            "version: 1\nstages: [staging, stable]\nforge: {kind: gitlab, url: https://gitlab.example.org, project: xen-project/state}\n",
        )],
    );
    env.sg_ok(&["check"]);
}

#[test]
fn a_commit_is_traced_to_its_merge_request_and_a_comment_is_left_once() {
    let w = world();
    let mr = w.gl.open_pr(BRANCH, "stable", "t", "b", false).unwrap();
    let head = w.head();
    let found = w.gl.requests_of_commit(&head).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].number, mr.number);
    assert_eq!(found[0].head_ref, BRANCH);
    assert!(w.gl.requests_of_commit(&"0".repeat(40)).unwrap().is_empty());
    let marker = "<!-- stagegate:test -->";
    assert!(w.gl.comment_once(mr.number, marker, "said").unwrap());
    assert!(!w.gl.comment_once(mr.number, marker, "said again").unwrap());
    let notes: Vec<String> = w
        .fake
        .notes(mr.number)
        .iter()
        .filter_map(|n| n["body"].as_str().map(String::from))
        .filter(|b| b.contains(marker))
        .collect();
    assert_eq!(notes, [format!("{marker}\nsaid")]);
}
