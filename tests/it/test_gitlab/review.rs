//! Promotion through merge requests, end to end: the real binary, a real git remote, and a
//! fake GitLab backed by that remote (a merge request's head is its branch there; one whose
//! head reached its target branch reads as merged).

use std::path::PathBuf;

use super::fake::{FakeGitLab, PROJECT, PROJECT_ID, READ_TOKEN, TOKEN};
use crate::common::TestEnv;

const BRANCH: &str = "stagegate/promote/staging-to-stable";
const MR: &str = "/projects/xen-project%2Fstate/merge_requests";

struct World {
    env: TestEnv,
    origin: PathBuf,
    fake: FakeGitLab,
    tested: String,
    /// The signing key stagegate runs with (its text), under `trust:`.
    key: Option<String>,
}

/// A state repository whose stable gate requires review and whose pipeline names the
/// fake GitLab (`forge: {kind: gitlab, url, project}`, as outside GitLab CI), published to
/// a bare `origin`, with one passing candidate pending on staging and its jobs run.
fn world() -> World {
    world_with(PROJECT, "", None, &[])
}

/// [`world`] for `project`, with `extra` appended to the pipeline, stagegate signing with
/// `key`, and `files` on every stage from the start.
fn world_with(project: &str, extra: &str, key: Option<String>, files: &[(&str, &str)]) -> World {
    let mut all = vec![
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
    all.extend_from_slice(files);
    let env = TestEnv::init_with(&all);
    let origin = env.home().join("origin.git");
    let fake = FakeGitLab::start(Some(&origin));
    let pipeline = format!(
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [test], baseline: true, review: true}}\nforge:\n  kind: gitlab\n  url: {}\n  project: {project}\n{extra}",
        fake.url
    );
    env.commit_on(
        "staging",
        "Require review",
        &[("stagegate.yaml", &pipeline)],
    );
    env.git(&["checkout", "-q", "stable"]);
    env.git(&["merge", "-q", "--ff-only", "staging"]);
    let tested = env.commit_on(
        "staging",
        "Bump xen to 2",
        &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
    );
    assert_eq!(env.bare_clone("origin.git"), origin);
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
    World {
        env,
        origin,
        fake,
        tested,
        key,
    }
}

impl World {
    fn promote_with(&self, token: &str, code: i32) -> String {
        let mut cmd = self.env.sg_cmd(&["--remote", "origin", "promote"]);
        cmd.env("STAGEGATE_GITLAB_TOKEN", token)
            .env("STAGEGATE_GITLAB_RETRY_BASE_MS", "1");
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

    fn promote(&self, code: i32) -> String {
        self.promote_with(TOKEN, code)
    }

    fn origin(&self, rev: &str) -> String {
        self.env.git_in(&self.origin, &["rev-parse", rev])
    }

    /// The `stagegate` statuses set on `sha`.
    fn statuses_on(&self, sha: &str) -> Vec<serde_json::Value> {
        self.fake
            .statuses()
            .into_iter()
            .filter(|s| s["sha"] == sha && s["name"] == "stagegate")
            .collect()
    }
}

#[test]
fn a_developers_approval_of_the_pushed_head_merges_the_merge_request_a_guests_does_not() {
    let w = world();
    let stable = w.env.rev("stable");
    let out = w.promote(0);
    assert!(out.contains("opened merge request !7"), "{out}");
    assert!(
        out.contains("waiting for an approving review of merge request !7"),
        "{out}"
    );
    assert!(!out.contains("pull request"), "GitLab's words: {out}");
    let head = w.origin(BRANCH);
    assert_eq!(w.env.rev("stable"), stable);
    // The merge request: from the promotion branch into stable, the rendered body in
    // GitLab's words, labelled.
    let opened = w.fake.requests_to("POST", MR);
    assert_eq!(opened.len(), 1);
    let body = &opened[0].body;
    assert_eq!(body["source_branch"], BRANCH);
    assert_eq!(body["target_branch"], "stable");
    let text = body["description"].as_str().unwrap();
    assert!(
        text.contains("-version: \"1\"") && text.contains("+version: \"2\""),
        "{text}"
    );
    assert!(
        text.contains("Approving this merge request is the promotion")
            && text.contains("a member with at least the Developer role")
            && text.contains("GitLab shows the merge request as merged"),
        "{text}"
    );
    assert!(
        body["title"].as_str().unwrap().contains("xen 1 → 2"),
        "{body}"
    );
    assert_eq!(w.fake.mr(7)["labels"], serde_json::json!(["stagegate"]));
    // The gate's verdict: a `stagegate` status on the tested commit and on the head.
    let on_tested = w.statuses_on(&w.tested);
    assert_eq!(on_tested.len(), 1, "{:?}", w.fake.statuses());
    assert_eq!(on_tested[0]["status"], "success");
    assert!(
        on_tested[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("staging -> stable: "),
        "{on_tested:?}"
    );
    assert_eq!(w.statuses_on(&head).len(), 1, "{:?}", w.fake.statuses());

    // A Guest's approval does not count.
    w.fake.set_member("guest", Some(10));
    w.fake.approve(7, "guest");
    let out = w.promote(0);
    assert!(
        out.contains("the approval by guest does not count: guest is a Guest of the project, not at least a Developer"),
        "{out}"
    );
    assert!(out.contains("waiting for an approving review"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), stable);

    // A Developer's does.
    w.fake.set_member("dev", Some(30));
    w.fake.approve(7, "dev");
    let out = w.promote(0);
    assert!(out.contains("merged merge request !7: stable is"), "{out}");
    assert_eq!(
        w.origin("refs/heads/stable"),
        head,
        "stable is the approved head"
    );
    assert_eq!(w.env.rev("stable"), head);
    assert_eq!(w.fake.mr(7)["state"], "merged");
    assert!(out.contains(&format!("deleted {BRANCH}")), "{out}");
    assert!(
        w.env
            .git_in(&w.origin, &["branch", "--list", BRANCH])
            .is_empty()
    );
    let review = w.env.git(&[
        "show",
        &format!("refs/stagegate/results:reviews/stable/{head}.yaml"),
    ]);
    assert!(review.contains("pull-request: 7"), "{review}");
    assert!(review.contains("- dev"), "{review}");
    assert!(!review.contains("guest"), "{review}");
    assert!(review.contains("forge: gitlab"), "{review}");
    let again = w.promote(0);
    assert!(again.contains("nothing pending"), "{again}");
}

#[test]
fn an_approval_of_an_older_head_does_not_count() {
    let w = world();
    w.promote(0);
    // Someone pushes to the promotion branch; a Developer approves what they pushed.
    let other = w.env.git(&[
        "commit-tree",
        "stable^{tree}",
        "-p",
        "stable",
        "-m",
        "Something else",
    ]);
    let other = other.trim().to_string();
    w.env.git(&[
        "push",
        "-q",
        "--force",
        "origin",
        &format!("{other}:refs/heads/{BRANCH}"),
    ]);
    assert_eq!(w.fake.mr(7)["sha"], other.as_str());
    w.fake.set_member("dev", Some(30));
    w.fake.approve(7, "dev");
    // stagegate puts its promotion back; the approval was of the other head.
    let out = w.promote(0);
    assert!(
        out.contains("does not promote what the gate decided now: replaced"),
        "{out}"
    );
    assert!(
        out.contains("the approval by dev does not count: it was given before"),
        "{out}"
    );
    assert!(out.contains("waiting for an approving review"), "{out}");
    let head = w.origin(BRANCH);
    assert_ne!(w.origin("refs/heads/stable"), head);
    assert_ne!(head, other);
    // Approving stagegate's head counts.
    w.fake.approve(7, "dev");
    let out = w.promote(0);
    assert!(out.contains("merged merge request !7"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), head);
}

#[test]
fn where_t_has_gitlabs_codeowners_an_approval_must_come_from_an_owning_groups_developer() {
    let w = world_with(
        PROJECT,
        "",
        None,
        &[(".gitlab/CODEOWNERS", "/components/ @xen-project/hw\n")],
    );
    w.promote(0);
    w.fake.set_member("dev", Some(30));
    w.fake.set_member("owner", Some(30));
    // A Guest of the owning group does not own.
    w.fake
        .set_group("xen-project/hw", &[("owner", 30), ("dev", 10)]);
    w.fake.approve(7, "dev");
    let out = w.promote(0);
    assert!(
        out.contains(".gitlab/CODEOWNERS asks for an approval from the code owners of components/xen.yaml (@xen-project/hw)"),
        "{out}"
    );
    assert_ne!(w.origin("refs/heads/stable"), w.origin(BRANCH));
    w.fake.approve(7, "owner");
    let out = w.promote(0);
    assert!(out.contains("merged merge request !7"), "{out}");
}

#[test]
fn gitlabs_own_approval_rules_come_on_top() {
    let w = world();
    w.fake.require_approvals(2);
    w.promote(0);
    w.fake.set_member("dev", Some(30));
    w.fake.approve(7, "dev");
    let out = w.promote(0);
    assert!(
        out.contains("GitLab's approval rules for merge request !7 want 1 more approval"),
        "{out}"
    );
    assert_ne!(w.origin("refs/heads/stable"), w.origin(BRANCH));
    w.fake.set_member("maint", Some(40));
    w.fake.approve(7, "maint");
    let out = w.promote(0);
    assert!(out.contains("merged merge request !7"), "{out}");
}

#[test]
fn cycle_opens_and_merges_the_merge_request_too() {
    let w = world();
    let cycle = || {
        let out = w
            .env
            .sg_cmd(&["--remote", "origin", "cycle", "--no-poll"])
            .env("GITLAB_TOKEN", TOKEN)
            .env("STAGEGATE_GITLAB_RETRY_BASE_MS", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{text}");
        text
    };
    let out = cycle();
    assert!(out.contains("opened merge request !7"), "{out}");
    w.fake.set_member("dev", Some(30));
    w.fake.approve(7, "dev");
    let out = cycle();
    assert!(out.contains("merged merge request !7"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), w.env.rev("stable"));
    // GITLAB_TOKEN served as the fallback for STAGEGATE_GITLAB_TOKEN.
    assert!(
        w.fake
            .requests()
            .iter()
            .all(|r| r.token.as_deref() == Some(TOKEN))
    );
}

#[test]
fn a_gate_that_turns_red_makes_the_merge_request_a_draft() {
    let w = world();
    w.promote(0);
    assert_eq!(w.fake.mr(7)["draft"], false);
    w.env.sg_ok(&[
        "--remote",
        "origin",
        "hold",
        "components/xen",
        "--reason",
        "a bad week for xen",
    ]);
    let out = w.promote(0);
    assert!(
        out.contains("merge request !7 turned into a draft"),
        "{out}"
    );
    assert_eq!(w.fake.mr(7)["draft"], true);
    assert!(
        w.fake.mr(7)["title"]
            .as_str()
            .unwrap()
            .starts_with("Draft: "),
        "{}",
        w.fake.mr(7)
    );
    w.env
        .sg_ok(&["--remote", "origin", "release", "components/xen"]);
    let out = w.promote(0);
    assert!(
        out.contains("merge request !7 is ready for review again"),
        "{out}"
    );
    assert_eq!(w.fake.mr(7)["draft"], false);
}

#[test]
fn under_trust_an_approval_counts_only_from_a_gitlab_user_entitled_to_approve() {
    let keys = tempfile::tempdir().unwrap();
    let path = keys.path().join("ci");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let trust = format!(
        "trust:\n  runners:\n    - name: ci\n      key: {}\n  people:\n    - name: Alice\n      gitlab: alice\n      may: [approve]\n    - name: Carol\n      github: carol\n      may: [approve]\n",
        public.trim()
    );
    let w = world_with(
        PROJECT,
        &trust,
        Some(std::fs::read_to_string(&path).unwrap()),
        &[],
    );
    w.promote(0);
    let head = w.origin(BRANCH);
    w.fake.set_member("carol", Some(40));
    w.fake.set_member("alice", Some(30));
    // Carol is named on GitHub only: on GitLab her approval is nobody's in trust:.
    w.fake.approve(7, "carol");
    let out = w.promote(0);
    assert!(
        out.contains("the approval by carol does not count: no person in the trust: of stable is carol on GitLab with `approve` in `may` (add `gitlab: carol`"),
        "{out}"
    );
    assert_ne!(w.origin("refs/heads/stable"), head);
    w.fake.approve(7, "alice");
    let out = w.promote(0);
    assert!(out.contains("merged merge request !7"), "{out}");
    let review = w.env.git(&[
        "show",
        &format!("refs/stagegate/results:reviews/stable/{head}.yaml"),
    ]);
    assert!(
        review.contains("- alice") && !review.contains("carol"),
        "{review}"
    );
}

/// What each of GitLab's merge methods makes of the promotion merge request, as `verify`
/// and every run read it: the promotion, or refused with a reason — never a silent
/// divergence (DESIGN §6, §6b).
#[test]
fn gitlabs_merge_methods_are_each_the_promotion_or_said_to_be_a_rewrite() {
    let w = world();
    w.promote(0);
    let head = w.origin(BRANCH);
    let before = w.env.rev("stable");
    let tree = format!("{head}^{{tree}}");
    let git = |args: &[&str]| w.env.git(args).trim().to_string();
    let verify = |commit: &str| w.env.sg_ok(&["verify", commit, "--stage", "stable"]);
    // Fast-forward merge: stable becomes the promotion itself.
    let out = verify(&head);
    assert!(
        out.starts_with("ok   stable ") && out.contains("promotion"),
        "{out}"
    );
    // Merge commit (and semi-linear: the branch is already on stable): a merge whose
    // second parent is the promotion.
    let message = format!(
        "Merge branch '{BRANCH}' into 'stable'\n\nPromote to stable\n\nSee merge request {PROJECT}!7"
    );
    let merged = git(&[
        "commit-tree",
        &tree,
        "-p",
        &before,
        "-p",
        &head,
        "-m",
        &message,
    ]);
    let out = verify(&merged);
    assert!(out.starts_with("ok   stable "), "{out}");
    assert!(out.contains("promotion merged by the forge"), "{out}");
    // Squash with the fast-forward method: one commit of the promotion's tree.
    let squash = git(&[
        "commit-tree",
        &tree,
        "-p",
        &before,
        "-m",
        "Promote to stable",
    ]);
    let out = verify(&squash);
    assert!(
        out.contains("promotion squash-merged by the forge"),
        "{out}"
    );
    // Squash with the merge-commit method: that squash, merged.
    let squash_merged = git(&[
        "commit-tree",
        &tree,
        "-p",
        &before,
        "-p",
        &squash,
        "-m",
        &message,
    ]);
    let out = verify(&squash_merged);
    assert!(out.starts_with("ok   stable "), "{out}");
    assert!(
        out.contains("promotion squash-merged by the forge"),
        "{out}"
    );
    // A merge of a squash that carries something else is refused.
    let other_tree = format!("{before}^{{tree}}");
    let sneaky = git(&["commit-tree", &other_tree, "-p", &before, "-m", "Promote"]);
    let sneaky_merged = git(&[
        "commit-tree",
        &other_tree,
        "-p",
        &before,
        "-p",
        &sneaky,
        "-m",
        &message,
    ]);
    let (out, _) = w
        .env
        .sg_code(1, &["verify", &sneaky_merged, "--stage", "stable"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
    // Every run says when stable's head is such a squash (GitLab's button wrote it on the
    // remote), and how to avoid it.
    git(&[
        "push",
        "-q",
        "origin",
        &format!("{squash_merged}:refs/heads/stable"),
    ]);
    let out = w.promote(0);
    assert!(
        out.contains(&format!(
            "stable's head {} is a promotion squash- or rebase-merged by the forge",
            &squash_merged[..10]
        )),
        "{out}"
    );
    assert!(out.contains("merge button"), "{out}");
}

#[test]
fn a_token_without_the_api_scope_fails_the_promotion_clearly() {
    let w = world();
    let out = w.promote_with(READ_TOKEN, 3);
    assert!(out.contains("GitLab API: "), "{out}");
    assert!(out.contains("HTTP 403: insufficient_scope"), "{out}");
    assert!(out.contains("needs the `api` scope"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), w.env.rev("stable"));
}

#[test]
fn a_project_that_is_not_there_is_a_404_naming_it() {
    let w = world_with("xen-project/gone", "", None, &[]);
    let out = w.promote_with(TOKEN, 3);
    assert!(out.contains("HTTP 404: 404 Project Not Found"), "{out}");
    assert!(
        out.contains("check the project \"xen-project/gone\""),
        "{out}"
    );
}

#[test]
fn review_without_a_gitlab_token_is_a_clear_usage_error() {
    let w = world();
    let (_, err) = w.env.sg_code(2, &["--remote", "origin", "promote"]);
    assert!(
        err.contains("goes through a merge request, and no forge is configured"),
        "{err}"
    );
    assert!(err.contains("STAGEGATE_GITLAB_TOKEN"), "{err}");
}

/// The example (`init --example`) goes new → staging → stable through merge requests on
/// the fake GitLab, configured as GitLab CI configures a job (`GITLAB_CI`, `CI_API_V4_URL`,
/// `CI_PROJECT_ID`), every gate reviewed (`--review`).
#[test]
fn the_example_goes_new_to_staging_to_stable_through_approved_merge_requests_in_gitlab_ci() {
    if !crate::common::require_tools(&["mke2fs", "debugfs", "e2fsck", "qemu-img"]) {
        return;
    }
    let env = TestEnv::init_example();
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    let fake = FakeGitLab::start(Some(&origin));
    fake.set_member("guest", Some(10));
    fake.set_member("dev", Some(30));
    let sg = |args: &[&str], code: i32| -> String {
        let mut cmd = env.sg_cmd(&[&["--remote", "origin"], args].concat());
        cmd.env("GITLAB_CI", "true")
            .env("CI_API_V4_URL", fake.api())
            .env("CI_PROJECT_ID", PROJECT_ID.to_string())
            .env("CI_PROJECT_PATH", PROJECT)
            .env("CI_SERVER_URL", &fake.url)
            .env("STAGEGATE_GITLAB_TOKEN", TOKEN)
            .env("STAGEGATE_GITLAB_RETRY_BASE_MS", "1");
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{args:?}: {text}");
        text
    };
    let moves = [("new", "staging", 7u64), ("staging", "stable", 8u64)];
    for (from, to, iid) in moves {
        let branch = format!("stagegate/promote/{from}-to-{to}");
        let tested = env.git_in(&origin, &["rev-parse", &format!("refs/heads/{from}")]);
        sg(&["run"], 0);
        let out = sg(&["promote", "--review", "--stage", to], 0);
        assert!(
            out.contains(&format!("opened merge request !{iid}")),
            "{out}"
        );
        let head = env.git_in(&origin, &["rev-parse", &branch]);
        let mr = fake.mr(iid);
        assert_eq!(mr["target_branch"], to);
        assert_eq!(mr["sha"], head.as_str());
        for sha in [&tested, &head] {
            let st: Vec<_> = fake
                .statuses()
                .into_iter()
                .filter(|s| s["sha"] == sha.as_str() && s["name"] == "stagegate")
                .collect();
            assert!(
                st.last().is_some_and(|s| s["status"] == "success"),
                "{from} -> {to}: {sha}: {:?}",
                fake.statuses()
            );
        }
        fake.approve(iid, "guest");
        let out = sg(&["promote", "--review", "--stage", to], 0);
        assert!(
            out.contains("the approval by guest does not count"),
            "{out}"
        );
        assert_ne!(env.git_in(&origin, &["rev-parse", to]), head);
        fake.approve(iid, "dev");
        let out = sg(&["promote", "--review", "--stage", to], 0);
        assert!(
            out.contains(&format!("merged merge request !{iid}")),
            "{out}"
        );
        assert_eq!(
            env.git_in(&origin, &["rev-parse", to]),
            head,
            "{to} is the approved head"
        );
        assert_eq!(fake.mr(iid)["state"], "merged");
    }
    // Every request went to the project CI named, by id.
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.path.starts_with("/projects/"))
            .all(|r| r.path.starts_with(&format!("/projects/{PROJECT_ID}/"))),
        "{:?}",
        fake.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    let stable = env.git(&["log", "-1", "--format=%B", "stable"]);
    assert!(stable.contains("Stagegate-Decision: promote"), "{stable}");
}
