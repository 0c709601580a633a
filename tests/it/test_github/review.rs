//! Promotion through pull requests, end to end: the real binary, a real git remote, and a
//! fake GitHub backed by that remote (merging a pull request makes a real merge commit).

use std::path::PathBuf;

use super::fake::{FakeGitHub, OWNER, REPO, TOKEN};
use crate::common::TestEnv;

const PIPELINE: &str = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true, review: true}\n";
const PULLS: &str = "/repos/octo-org/state/pulls";
const BRANCH: &str = "stagegate/promote/staging-to-stable";

struct World {
    env: TestEnv,
    origin: PathBuf,
    fake: FakeGitHub,
    tested: String,
}

/// A state repository whose stable gate requires review, published to a bare `origin`,
/// with one passing candidate pending on staging and its jobs run.
fn world() -> World {
    let env = TestEnv::init_with(&[
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n",
        ),
        (
            "tests/boot.sh",
            "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" != bad ]\n",
        ),
    ]);
    env.commit_on("staging", "Require review", &[("stagegate.yaml", PIPELINE)]);
    env.git(&["checkout", "-q", "stable"]);
    env.git(&["merge", "-q", "--ff-only", "staging"]);
    let tested = env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    env.sg_ok(&["run"]);
    let fake = FakeGitHub::start_with_git(&origin);
    World {
        env,
        origin,
        fake,
        tested,
    }
}

impl World {
    fn promote(&self, code: i32) -> String {
        let mut cmd = self.env.sg_cmd(&["--remote", "origin", "promote"]);
        cmd.env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
            .env("GITHUB_API_URL", &self.fake.url)
            .env("STAGEGATE_GITHUB_RETRY_BASE_MS", "1");
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{text}");
        text
    }

    fn origin(&self, rev: &str) -> String {
        self.env.git_in(&self.origin, &["rev-parse", rev])
    }
}

#[test]
fn a_promotion_with_review_opens_a_pull_request_with_the_rendered_body() {
    let w = world();
    let stable = w.env.rev("stable");
    let out = w.promote(0);
    assert!(
        out.contains("waiting for an approving review of pull request #1347"),
        "{out}"
    );
    // The branch holds the merge a direct promotion would make; stable has not moved.
    let head = w.origin(BRANCH);
    assert_eq!(
        w.env.git_in(
            &w.origin,
            &["rev-parse", &format!("{head}^1"), &format!("{head}^2")]
        ),
        format!("{stable}\n{}", w.tested)
    );
    assert_eq!(w.env.rev("stable"), stable);
    let opened = w.fake.requests_to("POST", PULLS);
    assert_eq!(opened.len(), 1);
    let body = &opened[0].body;
    assert_eq!(body["head"], BRANCH);
    assert_eq!(body["base"], "stable");
    let text = body["body"].as_str().unwrap();
    assert!(
        text.contains("-version: \"1\"") && text.contains("+version: \"2\""),
        "the manifest diff: {text}"
    );
    assert!(
        text.contains("test  boot [components/xen]"),
        "the verdict table: {text}"
    );
    assert!(
        body["title"].as_str().unwrap().contains("xen 1 → 2"),
        "{body}"
    );
    // A check run on the tested commit says the gate is green.
    let checks = w
        .fake
        .requests_to("POST", "/repos/octo-org/state/check-runs");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].body["head_sha"], w.tested.as_str());
    assert_eq!(checks[0].body["conclusion"], "success");
}

#[test]
fn a_second_run_updates_the_same_pull_request() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    w.promote(0);
    assert_eq!(
        w.fake.requests_to("POST", PULLS).len(),
        1,
        "no duplicate pull request"
    );
    assert_eq!(w.fake.pulls().len(), 1);
    assert_eq!(
        w.origin(BRANCH),
        head,
        "the reviewed commit is kept while it promotes the same thing"
    );
}

#[test]
fn an_approved_green_pull_request_is_merged_with_a_merge_commit() {
    let w = world();
    let stable = w.env.rev("stable");
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.add_review(1347, "reviewer", "APPROVED", &head);
    let out = w.promote(0);
    assert!(out.contains("merged pull request #1347"), "{out}");
    let merges = w
        .fake
        .requests_to("PUT", "/repos/octo-org/state/pulls/1347/merge");
    assert_eq!(merges.len(), 1);
    assert_eq!(
        merges[0].body["merge_method"], "merge",
        "never squash or rebase"
    );
    assert_eq!(merges[0].body["sha"], head.as_str());
    // Stable, here and on the remote, is GitHub's merge commit: first parent the old
    // stable, second the reviewed promotion; its message carries the decision.
    let merged = w.origin("refs/heads/stable");
    assert_eq!(
        w.env.rev("stable"),
        merged,
        "the local stage follows the merge"
    );
    assert_eq!(
        w.env.git(&["rev-parse", "stable^1", "stable^2"]),
        format!("{stable}\n{head}")
    );
    let message = w.env.git(&["log", "-1", "--format=%B", "stable"]);
    assert!(
        message.starts_with("Promote to stable: components/xen 1 -> 2"),
        "{message}"
    );
    assert!(message.contains("Stagegate-Decision: promote"), "{message}");
    assert!(
        message.contains(&format!("Stagegate-Tested: {}", w.tested)),
        "{message}"
    );
    // Nothing is pending any more.
    let again = w.promote(0);
    assert!(again.contains("nothing pending"), "{again}");
}

#[test]
fn an_approval_of_an_earlier_head_does_not_merge() {
    let w = world();
    w.promote(0);
    w.fake.add_review(
        1347,
        "reviewer",
        "APPROVED",
        "0000000000000000000000000000000000000000",
    );
    let out = w.promote(0);
    assert!(out.contains("waiting for an approving review"), "{out}");
    assert!(
        w.fake
            .requests_to("PUT", "/repos/octo-org/state/pulls/1347/merge")
            .is_empty()
    );
}

#[test]
fn a_gate_that_turns_red_makes_the_pull_request_a_draft() {
    let w = world();
    w.promote(0);
    assert_eq!(w.fake.pull(1347)["draft"], false);
    w.env
        .sg_ok(&["hold", "components/xen", "--reason", "a bad week for xen"]);
    let out = w.promote(0);
    assert!(out.contains("turned into a draft"), "{out}");
    assert_eq!(w.fake.pull(1347)["draft"], true);
    let checks = w
        .fake
        .requests_to("POST", "/repos/octo-org/state/check-runs");
    assert!(
        checks.last().unwrap().body["status"] == "in_progress"
            || checks.last().unwrap().body["conclusion"].is_null(),
        "{:?}",
        checks.last().unwrap().body
    );
    // Released: green again, and ready for review.
    w.env.sg_ok(&["release", "components/xen"]);
    w.promote(0);
    assert_eq!(w.fake.pull(1347)["draft"], false);
}

#[test]
fn review_without_a_forge_is_a_clear_usage_error() {
    let w = world();
    let (_, err) = w.env.sg_code(2, &["promote"]);
    assert!(
        err.contains("goes through a pull request, and no forge is configured"),
        "{err}"
    );
    assert!(err.contains("GITHUB_TOKEN"), "{err}");
}

#[test]
fn a_bad_token_is_an_infrastructure_error() {
    let w = world();
    let mut cmd = w.env.sg_cmd(&["--remote", "origin", "promote"]);
    cmd.env("GITHUB_TOKEN", "wrong")
        .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
        .env("GITHUB_API_URL", &w.fake.url);
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("GITHUB_TOKEN"));
}
