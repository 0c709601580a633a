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
    /// The signing key stagegate runs with (its text), under `trust:`.
    key: Option<String>,
}

/// A state repository whose stable gate requires review, published to a bare `origin`,
/// with one passing candidate pending on staging and its jobs run.
fn world() -> World {
    world_with(&[])
}

/// [`world`], with more files on every stage from the start.
fn world_with(extra: &[(&str, &str)]) -> World {
    world_of(PIPELINE, None, extra)
}

/// [`world`] with `pipeline`, stagegate running with signing `key` (its text) if given.
fn world_of(pipeline: &str, key: Option<String>, extra: &[(&str, &str)]) -> World {
    let mut files = vec![
        ("components/xen.yaml", "name: xen\nversion: \"1\"\n"),
        (
            "tests/boot.yaml",
            "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n",
        ),
        (
            "tests/boot.sh",
            "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" != bad ]\n",
        ),
    ];
    files.extend_from_slice(extra);
    let env = TestEnv::init_with(&files);
    env.commit_on("staging", "Require review", &[("stagegate.yaml", pipeline)]);
    env.git(&["checkout", "-q", "stable"]);
    env.git(&["merge", "-q", "--ff-only", "staging"]);
    let tested = env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    let mut run = env.sg_cmd(&["run"]);
    if let Some(k) = &key {
        run.env("STAGEGATE_SIGNING_KEY", k);
    }
    let out = run.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fake = FakeGitHub::start_with_git(&origin);
    World {
        env,
        origin,
        fake,
        tested,
        key,
    }
}

impl World {
    fn promote(&self, code: i32) -> String {
        let mut cmd = self.env.sg_cmd(&["--remote", "origin", "promote"]);
        cmd.env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}"))
            .env("GITHUB_API_URL", &self.fake.url)
            .env("STAGEGATE_GITHUB_RETRY_BASE_MS", "1");
        if let Some(k) = &self.key {
            cmd.env("STAGEGATE_SIGNING_KEY", k);
        }
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
        text.contains("Approving this pull request is the promotion")
            && text.contains("Do not merge it by hand"),
        "how it merges: {text}"
    );
    assert!(
        body["title"].as_str().unwrap().contains("xen 1 → 2"),
        "{body}"
    );
    // A check run on the tested commit says the gate is green (and one on the head).
    let checks = w
        .fake
        .requests_to("POST", "/repos/octo-org/state/check-runs");
    assert_eq!(checks.len(), 2);
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
fn an_approved_promotion_is_one_commit_on_the_stage_and_its_branch_is_deleted() {
    let w = world();
    let stable = w.env.rev("stable");
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_permission("reviewer", "write");
    w.fake.add_review(1347, "reviewer", "APPROVED", &head);
    let out = w.promote(0);
    assert!(out.contains("merged pull request #1347"), "{out}");
    // Stable, here and on the remote, is the reviewed promotion commit itself: no second
    // merge commit on top of it.
    assert_eq!(w.origin("refs/heads/stable"), head);
    assert_eq!(w.env.rev("stable"), head, "the local stage follows");
    assert_eq!(
        w.env.git(&["rev-parse", "stable^1", "stable^2"]),
        format!("{stable}\n{}", w.tested)
    );
    let message = w.env.git(&["log", "-1", "--format=%B", "stable"]);
    assert!(
        message.starts_with("Promote to stable: components/xen 1 -> 2"),
        "{message}"
    );
    assert!(message.contains("Stagegate-Decision: promote"), "{message}");
    // GitHub shows the pull request as merged; its branch is gone.
    assert_eq!(w.fake.pull(1347)["merged"], true);
    assert!(out.contains(&format!("deleted {BRANCH}")), "{out}");
    assert!(
        w.env
            .git_in(&w.origin, &["branch", "--list", BRANCH])
            .is_empty()
    );
    assert_eq!(
        w.fake
            .requests_to(
                "DELETE",
                &format!("/repos/octo-org/state/git/refs/heads/{BRANCH}")
            )
            .len(),
        1
    );
    // The review the promotion rests on is recorded beside the decision.
    let review = w.env.git(&[
        "show",
        &format!("refs/stagegate/results:reviews/stable/{head}.yaml"),
    ]);
    assert!(review.contains("pull-request: 1347"), "{review}");
    assert!(review.contains("- reviewer"), "{review}");
    // Nothing is pending any more.
    let again = w.promote(0);
    assert!(again.contains("nothing pending"), "{again}");
}

#[test]
fn under_trust_an_approval_counts_only_from_a_person_entitled_to_approve() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("ci");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let pipeline = format!(
        "{PIPELINE}trust:\n  runners:\n    - name: ci\n      key: {}\n  people:\n    - name: Alice\n      github: alice\n      may: [approve]\n    - name: Carol\n      github: carol\n      may: [waive]\n",
        public.trim()
    );
    let w = world_of(
        &pipeline,
        Some(std::fs::read_to_string(&path).unwrap()),
        &[],
    );
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_permission("carol", "write");
    w.fake.set_permission("alice", "write");
    w.fake.add_review(1347, "carol", "APPROVED", &head);
    let out = w.promote(0);
    assert!(
        out.contains("the approval by carol does not count: no person in the trust:"),
        "{out}"
    );
    assert!(out.contains("waiting for an approving review"), "{out}");
    assert_ne!(w.origin("refs/heads/stable"), head);
    w.fake.add_review(1347, "alice", "APPROVED", &head);
    let out = w.promote(0);
    assert!(out.contains("merged pull request #1347"), "{out}");
    let review = w.env.git(&[
        "show",
        &format!("refs/stagegate/results:reviews/stable/{head}.yaml"),
    ]);
    assert!(review.contains("- alice"), "{review}");
    assert!(!review.contains("carol"), "{review}");
}

#[test]
fn an_approval_without_write_access_does_not_count() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_permission("drive-by", "read");
    w.fake.add_review(1347, "drive-by", "APPROVED", &head);
    let out = w.promote(0);
    assert!(
        out.contains("the approval by drive-by does not count: drive-by has read access to the repository, not write"),
        "{out}"
    );
    assert!(out.contains("waiting for an approving review"), "{out}");
    assert_ne!(w.origin("refs/heads/stable"), head);
    assert_eq!(
        w.fake
            .requests_to(
                "GET",
                "/repos/octo-org/state/collaborators/drive-by/permission"
            )
            .len(),
        1
    );
}

#[test]
fn a_change_request_from_a_writer_blocks_an_approval() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_permission("ann", "write");
    w.fake.set_permission("ben", "maintain");
    w.fake.add_review(1347, "ann", "APPROVED", &head);
    w.fake.add_review(1347, "ben", "CHANGES_REQUESTED", &head);
    let out = w.promote(0);
    assert!(out.contains("changes requested by ben"), "{out}");
    assert_ne!(w.origin("refs/heads/stable"), head);
}

#[test]
fn the_gates_check_is_on_the_pull_requests_head_as_well_as_the_tested_commit() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    let checks = w
        .fake
        .requests_to("POST", "/repos/octo-org/state/check-runs");
    let on: Vec<&str> = checks
        .iter()
        .map(|c| c.body["head_sha"].as_str().unwrap())
        .collect();
    assert_eq!(on, [w.tested.as_str(), head.as_str()]);
    for c in &checks {
        assert_eq!(c.body["name"], "stagegate staging -> stable");
        assert_eq!(c.body["conclusion"], "success");
    }
    // A second run checks both again (the head's check is what branch protection reads).
    w.promote(0);
    let checks = w
        .fake
        .requests_to("POST", "/repos/octo-org/state/check-runs");
    assert_eq!(checks.len(), 4);
    assert_eq!(checks[3].body["head_sha"], head.as_str());
}

#[test]
fn a_promotion_branch_with_other_content_is_replaced_not_reused() {
    let w = world();
    let stable = w.env.rev("stable");
    w.promote(0);
    let honest = w.origin(BRANCH);
    // Someone with push access puts a commit with the same parents but another tree on
    // the branch, and approves it.
    let evil = {
        // The honest tree with one manifest changed.
        let tmp = w.env.home().join("evil");
        w.env.git(&[
            "worktree",
            "add",
            "-q",
            "--detach",
            tmp.to_str().unwrap(),
            &honest,
        ]);
        std::fs::write(
            tmp.join("components/xen.yaml"),
            "name: xen\nversion: \"evil\"\n",
        )
        .unwrap();
        w.env.git_in(&tmp, &["add", "-A"]);
        let tree = w.env.git_in(&tmp, &["write-tree"]);
        let message = w.env.git(&["log", "-1", "--format=%B", &honest]);
        w.env.git(&[
            "commit-tree",
            &tree,
            "-p",
            &stable,
            "-p",
            &w.tested,
            "-m",
            &message,
        ])
    };
    w.env.git(&[
        "push",
        "-q",
        "--force",
        "origin",
        &format!("{evil}:refs/heads/{BRANCH}"),
    ]);
    w.fake.set_permission("insider", "write");
    w.fake.add_review(1347, "insider", "APPROVED", &evil);
    let out = w.promote(0);
    assert!(
        out.contains("which does not promote what the gate decided now: replaced"),
        "{out}"
    );
    assert_ne!(w.origin(BRANCH), evil);
    assert_eq!(w.origin("refs/heads/stable"), stable, "nothing merged");
    assert!(out.contains("waiting for an approving review"), "{out}");
}

#[test]
fn where_t_has_codeowners_an_approval_must_come_from_the_owners() {
    // Components belong to the xen team; the secret team's members cannot be read.
    let w = world_with(&[(
        ".github/CODEOWNERS",
        "/components/ @octo-org/xen @octo-org/secret\n",
    )]);
    w.fake.set_team("octo-org/xen", &["xena"]);
    w.fake.set_permission("walt", "write");
    w.fake.set_permission("xena", "write");
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.add_review(1347, "walt", "APPROVED", &head);
    let out = w.promote(0);
    assert!(
        out.contains(".github/CODEOWNERS asks for an approval from the code owners of components/xen.yaml (@octo-org/xen @octo-org/secret)"),
        "{out}"
    );
    assert!(
        out.contains("the members of @octo-org/secret cannot be read"),
        "an unreadable team is said, not an error: {out}"
    );
    assert_ne!(w.origin("refs/heads/stable"), head);
    w.fake.add_review(1347, "xena", "APPROVED", &head);
    let out = w.promote(0);
    assert!(out.contains("merged pull request #1347"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), head);
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
    w.env.sg_ok(&[
        "--remote",
        "origin",
        "hold",
        "components/xen",
        "--reason",
        "a bad week for xen",
    ]);
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
    w.env
        .sg_ok(&["--remote", "origin", "release", "components/xen"]);
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

#[test]
fn an_approved_promotion_is_not_pushed_over_a_stage_that_moved_on_the_remote() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_permission("reviewer", "admin");
    w.fake.add_review(1347, "reviewer", "APPROVED", &head);
    // Someone else moves stable on the remote (only there), without the candidates.
    let other = w.env.git(&[
        "commit-tree",
        &format!("{head}^1^{{tree}}"),
        "-p",
        &format!("{head}^1"),
        "-m",
        "elsewhere",
    ]);
    w.env.git(&[
        "push",
        "-q",
        "origin",
        &format!("{other}:refs/heads/stable"),
    ]);
    // promote reads stable from the remote first: the approved promotion was made on a
    // stable that is gone, so it is rebuilt on the new one and needs a new approval.
    let out = w.promote(0);
    assert!(out.contains("replaced"), "{out}");
    assert!(out.contains("waiting for an approving review"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), other, "never clobbered");
    assert_eq!(w.fake.pull(1347)["state"], "open");
    assert_ne!(
        w.origin(BRANCH),
        head,
        "the promotion is rebuilt on the new stable"
    );
    assert_eq!(
        w.env.git_in(
            &w.origin,
            &["rev-parse", &format!("{}^1", w.origin(BRANCH))]
        ),
        other
    );
}

#[test]
fn a_squash_merged_promotion_is_said_on_its_pull_request_once() {
    let w = world();
    w.promote(0);
    // Someone presses "Squash and merge": stable gets the promotion's tree in a commit of
    // GitHub's, not the promotion commit the decision was attached to.
    let squashed = w.fake.squash_merge(1347);
    w.env.git(&["fetch", "-q", "origin", "+stable:stable"]);
    assert_eq!(w.env.rev("stable"), squashed);
    let out = w.promote(0);
    assert!(
        out.contains("squash- or rebase-merged by the forge"),
        "{out}"
    );
    assert!(out.contains("said so on pull request #1347"), "{out}");
    let comments = w.fake.comments(1347);
    let said: Vec<&str> = comments
        .iter()
        .filter_map(|c| c["body"].as_str())
        .filter(|b| b.contains("squash- or rebase-merged by the forge"))
        .collect();
    assert_eq!(said.len(), 1, "{comments:?}");
    assert!(
        said[0].starts_with(&format!("<!-- stagegate:rewritten {squashed} -->")),
        "{}",
        said[0]
    );
    assert!(
        said[0].contains("merged with a button that rewrites commits"),
        "{}",
        said[0]
    );
    // Every run says it in its notes; the pull request hears it once.
    let again = w.promote(0);
    assert!(
        again.contains("squash- or rebase-merged by the forge"),
        "{again}"
    );
    assert!(!again.contains("said so on"), "{again}");
    assert_eq!(
        w.fake
            .comments(1347)
            .iter()
            .filter(|c| c["body"]
                .as_str()
                .is_some_and(|b| b.contains("stagegate:rewritten")))
            .count(),
        1
    );
}
