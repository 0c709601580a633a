//! The example workflow, run for real by `act` (offline, on this host), against the fake
//! GitHub backed by a bare `origin`: a scheduled cycle opens the promotion pull request,
//! an approval arrives, and the `pull_request_review` run merges it: the stage moves.
//!
//! The workflow is `templates/github/stagegate-cycle.yml` as shipped. What act cannot
//! reach offline is replaced by local stand-ins, named with `--local-repository`:
//! `your-org/stagegate@v0` is this repository (so action.yml and scripts/install.sh run
//! as they are; `v0` finds no release, since its repository's tags cannot be listed
//! offline, so the install falls back to `cargo install`, and `cargo` on PATH is a
//! stand-in that installs the binary under test), `actions/checkout`
//! clones `origin`, `actions/upload-artifact` and `actions/download-artifact` keep a run's
//! artifacts in a directory of its own, and `actions/create-github-app-token` is never
//! reached (no App is configured, so its step is skipped).
//!
//! [`act_images`](super::act_images) runs the example with images on fresh runners;
//! [`act_labels`](super::act_labels) routes matrix jobs to runners by their host labels.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fake::{FakeGitHub, OWNER, REPO, TOKEN};
use crate::common::TestEnv;

const PIPELINE: &str = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test], baseline: true, review: true}\n";
const BRANCH: &str = "stagegate/promote/staging-to-stable";
const CHECKOUT: &str = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1";
const APP_TOKEN: &str = "actions/create-github-app-token@1b10c78c7865c340bc4f6099eb2f838309f1e8c3";
const UPLOAD_PAGES: &str = "actions/upload-pages-artifact@56afc609e74202658d3ffba0e8f6dda462b719fa";
const DEPLOY_PAGES: &str = "actions/deploy-pages@d6db90164ac5ed86f2b6aed7e0febac5b3c0c03e";
const UPLOAD_ARTIFACT: &str = "actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f";
const DOWNLOAD_ARTIFACT: &str =
    "actions/download-artifact@3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a runner checks out of the action: the files its steps read (`action.yml`, the
/// install script, the version in `Cargo.toml`). act copies a local repository whole, for
/// every step that uses it; this checkout's `target/` (gigabytes of builds) made each act
/// process hold over 10 GiB, and two of them exhausted a 24 GiB machine.
fn action_checkout(home: &Path) -> PathBuf {
    let dir = home.join("action");
    for file in ["action.yml", "Cargo.toml", "scripts/install.sh"] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join(file), &to).unwrap();
    }
    dir
}

pub(super) struct Act {
    pub env: TestEnv,
    /// The bare repository the runners clone and push to (GitHub's copy).
    pub origin: PathBuf,
    pub fake: FakeGitHub,
    act: PathBuf,
    tools: PathBuf,
}

impl Act {
    fn new(act: PathBuf) -> Act {
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
        env.commit_on(
            "staging",
            "Bump xen to 2",
            &[("components/xen.yaml", "name: xen\nversion: \"2\"\n")],
        );
        Act::on(act, env)
    }

    /// The harness around the state repository `env`: its bare clone `origin.git` (the
    /// remote `origin`), the fake GitHub serving it, and the stand-ins.
    pub(super) fn on(act: PathBuf, env: TestEnv) -> Act {
        let origin = env.bare_clone("origin.git");
        env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
        let fake = FakeGitHub::start_with_git(&origin);
        let tools = env.home().join("act-tools");
        stand_ins(&tools);
        Act {
            env,
            origin,
            fake,
            act,
            tools,
        }
    }

    /// `act EVENT` on the shipped cycle workflow; returns act's output.
    fn run(&self, event: &str, payload: Option<&serde_json::Value>) -> String {
        self.run_workflow("stagegate-cycle.yml", event, payload)
    }

    /// `act EVENT` on the shipped workflow `file` (in templates/github/).
    fn run_workflow(&self, file: &str, event: &str, payload: Option<&serde_json::Value>) -> String {
        self.act(file, event, payload, self.env.home(), false, &[])
    }

    /// `act EVENT` on the shipped workflow `file`, as a run on fresh runners: `home` is new
    /// (HOME, TMPDIR, act's cache, the jobs' workspaces and the run's artifacts under it),
    /// and every job's checkout is a new clone of `origin`, never a copy of the test's
    /// repository (act's shortcut for a checkout of the workflow's own repository).
    pub(super) fn run_fresh(&self, home: &Path, file: &str, event: &str) -> String {
        self.run_fresh_with(home, file, event, &[])
    }

    /// [`run_fresh`](Act::run_fresh) with more arguments for act (`-P LABEL=…`: the runners
    /// it has besides `ubuntu-latest`).
    pub(super) fn run_fresh_with(
        &self,
        home: &Path,
        file: &str,
        event: &str,
        extra: &[&str],
    ) -> String {
        std::fs::create_dir_all(home).unwrap();
        std::fs::copy(self.env.home().join("gitconfig"), home.join("gitconfig")).unwrap();
        self.act(file, event, None, home, true, extra)
    }

    fn act(
        &self,
        file: &str,
        event: &str,
        payload: Option<&serde_json::Value>,
        home: &Path,
        fresh: bool,
        extra: &[&str],
    ) -> String {
        let mut cmd = Command::new(&self.act);
        crate::common::base_env(&mut cmd, home);
        if fresh {
            cmd.arg("--no-skip-checkout");
        }
        cmd.current_dir(&self.env.repo)
            .env(
                "PATH",
                // Debian keeps mke2fs and e2fsck (the example's recipes) in /usr/sbin.
                format!(
                    "{}:{}:/usr/sbin:/sbin",
                    self.tools.join("bin").display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env("STAGEGATE_TEST_BINARY", env!("CARGO_BIN_EXE_stagegate"))
            .arg(event)
            .arg("-W")
            .arg(root().join("templates/github").join(file))
            .args(["-P", "ubuntu-latest=-self-hosted", "--action-offline-mode"])
            .arg("--action-cache-path")
            .arg(home.join("act-cache"))
            .arg("--local-repository")
            .arg(format!(
                "your-org/stagegate@v0={}",
                action_checkout(home).display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{CHECKOUT}={}",
                self.tools.join("checkout").display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{APP_TOKEN}={}",
                self.tools.join("app-token").display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{UPLOAD_PAGES}={}",
                self.tools.join("upload-pages").display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{DEPLOY_PAGES}={}",
                self.tools.join("deploy-pages").display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{UPLOAD_ARTIFACT}={}",
                self.tools.join("upload-artifact").display()
            ))
            .arg("--local-repository")
            .arg(format!(
                "{DOWNLOAD_ARTIFACT}={}",
                self.tools.join("download-artifact").display()
            ))
            .args(["-s", &format!("GITHUB_TOKEN={TOKEN}")])
            .args(["--env", &format!("GITHUB_API_URL={}", self.fake.url)])
            .args(["--env", &format!("GITHUB_REPOSITORY={OWNER}/{REPO}")])
            .args(["--env", &format!("TEST_ORIGIN={}", self.origin.display())])
            .args([
                "--env",
                &format!("TEST_SITE={}", home.join("site").display()),
            ])
            .args([
                "--env",
                &format!("TEST_ARTIFACTS={}", home.join("artifacts").display()),
            ])
            .args(["--env", "STAGEGATE_GITHUB_RETRY_BASE_MS=1"])
            .args(extra);
        if let Some(p) = payload {
            let path = home.join(format!("{event}.json"));
            std::fs::write(&path, p.to_string()).unwrap();
            cmd.arg("-e").arg(path);
        }
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "act {event} failed:\n{text}");
        text
    }

    pub(super) fn origin(&self, rev: &str) -> String {
        self.env.git_in(&self.origin, &["rev-parse", rev])
    }
}

/// The stand-ins: `bin/cargo` installs the binary under test where `cargo install --root`
/// would; `checkout/` clones `$TEST_ORIGIN` (at `ref`); `app-token/` fails if ever run;
/// `upload-pages/` copies the site it is given to `$TEST_SITE`; `deploy-pages/` says so;
/// `upload-artifact/` keeps an artifact as `$TEST_ARTIFACTS/NAME` (the run's artifacts) and
/// `download-artifact/` copies those matching `pattern` to `path/NAME`, as the real one does
/// for several artifacts.
fn stand_ins(dir: &Path) {
    let write = |path: &str, text: &str| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write(
        "bin/cargo",
        "#!/bin/sh\n# cargo install --path P --locked --root ROOT --quiet\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\ncp \"$STAGEGATE_TEST_BINARY\" \"$2/bin/stagegate\"\n",
    );
    write(
        "checkout/action.yml",
        "name: stand-in for actions/checkout\ndescription: clones the test's origin\ninputs:\n  fetch-depth: {description: ignored, required: false}\n  persist-credentials: {description: ignored, required: false}\n  ref: {description: the branch to check out, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        REF: ${{ inputs.ref }}\n      run: |\n        git clone -q \"$TEST_ORIGIN\" .\n        if [ -n \"$REF\" ]; then git checkout -q \"$REF\"; fi\n",
    );
    write(
        "app-token/action.yml",
        "name: stand-in for actions/create-github-app-token\ndescription: never runs (no App is configured)\ninputs:\n  client-id: {description: x, required: false}\n  private-key: {description: x, required: false}\n  permission-contents: {description: x, required: false}\n  permission-pull-requests: {description: x, required: false}\n  permission-checks: {description: x, required: false}\n  permission-statuses: {description: x, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      run: exit 1\n",
    );
    write(
        "upload-pages/action.yml",
        "name: stand-in for actions/upload-pages-artifact\ndescription: keeps the site for the test\ninputs:\n  path: {description: the site, required: true}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        SITE: ${{ inputs.path }}\n      run: cp -r \"$SITE\" \"$TEST_SITE\"\n",
    );
    write(
        "upload-artifact/action.yml",
        "name: stand-in for actions/upload-artifact\ndescription: keeps the artifact for the run's other jobs\ninputs:\n  name: {description: the artifact, required: true}\n  path: {description: what it holds, required: true}\n  if-no-files-found: {description: ignored, required: false}\n  retention-days: {description: ignored, required: false}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        NAME: ${{ inputs.name }}\n        FROM: ${{ inputs.path }}\n      run: |\n        if [ -e \"$FROM\" ]; then mkdir -p \"$TEST_ARTIFACTS\" && cp -r \"$FROM\" \"$TEST_ARTIFACTS/$NAME\"; fi\n",
    );
    write(
        "download-artifact/action.yml",
        "name: stand-in for actions/download-artifact\ndescription: fetches the run's artifacts\ninputs:\n  pattern: {description: which artifacts, required: true}\n  path: {description: where each goes (a directory per artifact), required: true}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      env:\n        PATTERN: ${{ inputs.pattern }}\n        TO: ${{ inputs.path }}\n      run: |\n        mkdir -p \"$TO\"\n        for a in \"$TEST_ARTIFACTS\"/$PATTERN; do\n          if [ -d \"$a\" ]; then cp -r \"$a\" \"$TO/\"; fi\n        done\n",
    );
    write(
        "deploy-pages/action.yml",
        "name: stand-in for actions/deploy-pages\ndescription: says it deployed\noutputs:\n  page_url: {description: x, value: \"https://octo-org.github.io/state/\"}\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      run: echo 'deploy-pages stand-in deployed the site'\n",
    );
}

#[test]
fn under_act_a_schedule_opens_the_pull_request_and_an_approval_moves_the_stage() {
    let Some(act) = crate::common::require_tool("act") else {
        return;
    };
    let w = Act::new(act);
    let stable = w.origin("refs/heads/stable");

    // The hourly run: poll, run the jobs, promote through a pull request.
    let out = w.run("schedule", None);
    assert!(out.contains("Job succeeded"), "{out}");
    let pulls = w.fake.pulls();
    assert_eq!(pulls.len(), 1, "{out}");
    assert_eq!(pulls[0]["head"]["ref"], BRANCH);
    assert_eq!(pulls[0]["base"]["ref"], "stable");
    let head = w.origin(BRANCH);
    assert_eq!(
        w.origin("refs/heads/stable"),
        stable,
        "not before an approval"
    );
    // The check went on the pull request's head.
    assert!(
        w.fake
            .requests_to("POST", "/repos/octo-org/state/check-runs")
            .iter()
            .any(|c| c.body["head_sha"] == head.as_str()),
        "{out}"
    );
    // The report was made from what the run left, and the pages job deployed it.
    let site = w.env.home().join("site");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("<h2>staging → stable</h2>"), "{index}");
    assert!(site.join("report.json").is_file());
    assert!(
        out.contains("deploy-pages stand-in deployed the site"),
        "{out}"
    );
    // The results were pushed for other runners.
    w.env
        .git_in(&w.origin, &["rev-parse", "refs/stagegate/results"]);

    // A maintainer approves: GitHub sends pull_request_review.
    w.fake.set_permission("maintainer", "write");
    w.fake.add_review(1347, "maintainer", "APPROVED", &head);
    let event = serde_json::json!({
        "action": "submitted",
        "review": {"state": "approved", "commit_id": head, "user": {"login": "maintainer"}},
        "pull_request": {
            "number": 1347,
            "head": {"ref": BRANCH, "sha": head, "repo": {"full_name": format!("{OWNER}/{REPO}")}},
            "base": {"ref": "stable", "repo": {"full_name": format!("{OWNER}/{REPO}")}}
        },
        "repository": {"full_name": format!("{OWNER}/{REPO}"), "name": REPO, "owner": {"login": OWNER}}
    });
    let out = w.run("pull_request_review", Some(&event));
    assert!(out.contains("merged pull request #1347"), "{out}");
    assert_eq!(
        w.origin("refs/heads/stable"),
        head,
        "the stage moved to the approved promotion"
    );
    assert_eq!(w.fake.pull(1347)["merged"], true);
    assert!(
        w.env
            .git_in(&w.origin, &["branch", "--list", BRANCH])
            .is_empty(),
        "the promotion branch is deleted"
    );
}

#[test]
fn under_act_the_pull_request_workflow_checks_and_plans_the_pull_requests_head() {
    let Some(act) = crate::common::require_tool("act") else {
        return;
    };
    let w = Act::new(act);
    // A pull request into staging that adds a test, from a branch of the repository.
    w.env.git(&["checkout", "-q", "-b", "add-smoke", "staging"]);
    let head = w.env.commit_on(
        "add-smoke",
        "Add a smoke test",
        &[(
            "tests/smoke.yaml",
            "name: smoke\nuses: [components/xen]\nrun: ./tests/boot.sh\n",
        )],
    );
    w.env.git(&["push", "-q", "origin", "add-smoke"]);
    let event = serde_json::json!({
        "action": "opened",
        "number": 7,
        "pull_request": {
            "number": 7,
            "head": {"ref": "add-smoke", "sha": head, "repo": {"full_name": format!("{OWNER}/{REPO}")}},
            "base": {"ref": "staging", "repo": {"full_name": format!("{OWNER}/{REPO}")}}
        },
        "repository": {"full_name": format!("{OWNER}/{REPO}"), "name": REPO, "owner": {"login": OWNER}}
    });
    let out = w.run_workflow("stagegate-pull-request.yml", "pull_request", Some(&event));
    assert!(out.contains("Job succeeded"), "{out}");
    assert!(
        out.contains(&format!(
            "stagegate -C . --remote origin plan --stage staging --rev {head}"
        )),
        "{out}"
    );
    // The plan is the pull request's: its new test is a candidate of staging -> stable,
    // run with stable's items.
    assert!(out.contains("tests/smoke new"), "{out}");
    assert!(out.contains("test  smoke [changed test]"), "{out}");
    assert!(
        w.fake.requests().is_empty(),
        "read-only: no GitHub API call"
    );
}
