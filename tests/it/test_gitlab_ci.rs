//! stagegate's GitLab CI/CD component (`templates/gitlab/template.yml`) as `stagegate init
//! --gitlab` includes it, run for real by `gitlab-ci-local` (offline, shell executor, on
//! this host), on the example with images (`init --example`) and the registry on 127.0.0.1
//! (Debian's `docker-registry`, with HTTP basic auth) as the project's container registry
//! (`artifacts.store`). Each pipeline is a pipeline on a fresh runner: a new home, a new
//! clone of `origin`; what a later pipeline tests with, it can only have from the registry
//! (the registry's own log shows the downloads).
//!
//! What gitlab-ci-local (4.65) runs as GitLab does: `include: component:` with `spec:
//! inputs` (interpolation, defaults), `extends`, `rules` (on job variables and
//! `$CI_PIPELINE_SOURCE`), `needs` (with `optional`), `environment`, artifacts between
//! jobs, the child pipeline of `trigger: include: artifact:` with `strategy: depend`,
//! `parallel: matrix` (one job per entry, its variables set), and GitLab's CI JSON schema
//! (`--json-schema-validation`, on every pipeline here, the child's included). What it
//! does not, and what stands in:
//! - Components are fetched from the GitLab instance (`git clone`/`git archive` of the
//!   component's project); offline, the component's file is put where gitlab-ci-local keeps
//!   fetched components (`.gitlab-ci-local/includes/HOST/PROJECT/REF/`), copied from this
//!   repository as it is. The project's own address is `gcl-origin` (gitlab-ci-local's
//!   override of `origin` for the project's identity), while `origin` is the bare
//!   repository the jobs fetch from and push to.
//! - The component fetches stagegate's source at `stagegate-ref` from GitHub: a git
//!   `url.insteadOf` in the runner's git config sends that fetch to a local repository
//!   holding the files the jobs read (Cargo.toml, scripts/install.sh, scripts/gitlab-ci.sh).
//!   Its ref `v0` names no release (its tags cannot be listed offline), so the install
//!   script falls back to `cargo install`, and `cargo` on PATH is a stand-in that installs
//!   the binary under test (as the act tests do).
//! - GitLab gives every job `CI_REGISTRY_USER` and `CI_REGISTRY_PASSWORD` (the job token):
//!   here the project's variables file (`.gitlab-ci-local-variables.yml`, which the child
//!   pipeline reads too) gives them, and the registry accepts only that user and token.
//!   A pipeline schedule is `--variable CI_PIPELINE_SOURCE=schedule`.
//! - Runner `tags` and `resource_group` are accepted and ignored (gitlab-ci-local has no
//!   runners to choose among, and runs a child's jobs at once): the tests check the child
//!   pipeline the plan wrote (tags, resource group) and that each job ran with the labels it
//!   was chosen for, not that GitLab would route and lock them.
//! - No GitLab API: without STAGEGATE_GITLAB_TOKEN stagegate promotes by pushing the stage
//!   branches to `origin`, as with no forge. Merge requests and statuses are tested against
//!   the fake GitLab.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::TestEnv;
use crate::registry::Registry;

/// The project's path on the (never contacted) GitLab instance.
const PROJECT: &str = "octo-org/state";
const HOST: &str = "gitlab.example.com";
const STORE_REPO: &str = "octo-org/state/artifacts";
/// The job token GitLab would give each job; the registry accepts only it.
const JOB_TOKEN: &str = "glcbt-64_test-job-token";
/// Where `init --gitlab` (a build no release made) points the component and the install.
const COMPONENT: &str = "your-org/stagegate";
const SOURCE: &str = "https://github.com/your-org/stagegate";
const REF: &str = "v0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// gitlab-ci-local, as `.ci/run` installs it (under `.ci/npm`) or on PATH; `None` (skip)
/// when it or rsync is missing outside CI, a failure under CI (`require_tool`).
fn gitlab_ci_local() -> Option<PathBuf> {
    let local = root().join(".ci/npm/node_modules/.bin/gitlab-ci-local");
    let tool = if local.is_file() {
        Some(local)
    } else {
        crate::common::require_tool("gitlab-ci-local")
    };
    // Its shell executor copies the checkout into each job's directory with rsync.
    let rsync = crate::common::require_tool("rsync");
    tool.filter(|_| rsync.is_some())
}

struct Glci {
    env: TestEnv,
    /// The bare repository the runners clone and push to (GitLab's copy).
    origin: PathBuf,
    tool: PathBuf,
    /// stagegate's source as the component fetches it (the stand-in for GitHub's).
    source: PathBuf,
    /// `bin/cargo`, the stand-in build.
    tools: PathBuf,
}

impl Glci {
    fn on(tool: PathBuf, env: TestEnv) -> Glci {
        let origin = env.bare_clone("origin.git");
        env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
        let source = env.home().join("stagegate-source");
        for file in [
            "Cargo.toml",
            "scripts/install.sh",
            "scripts/gitlab-ci.sh",
            "templates/gitlab/template.yml",
        ] {
            let to = source.join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(root().join(file), &to).unwrap();
        }
        env.git_in(&source, &["init", "-q"]);
        env.git_in(&source, &["add", "-A"]);
        env.git_in(&source, &["commit", "-q", "-m", "stagegate"]);
        env.git_in(&source, &["tag", REF]);
        let tools = env.home().join("glci-tools");
        let cargo = tools.join("bin/cargo");
        std::fs::create_dir_all(cargo.parent().unwrap()).unwrap();
        std::fs::write(
            &cargo,
            "#!/bin/sh\n# cargo install --path P --locked --root ROOT --quiet\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\ncp \"$STAGEGATE_TEST_BINARY\" \"$2/bin/stagegate\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
        Glci {
            env,
            origin,
            tool,
            source,
            tools,
        }
    }

    /// A pipeline of `source` (`schedule`, `push`) on a fresh runner `name`: a new home and
    /// a new clone of `origin`, running the `.gitlab-ci.yml` of the branch `origin` has
    /// checked out (the default branch). Returns the checkout and gitlab-ci-local's output;
    /// `ok` says whether the pipeline must pass.
    fn pipeline(&self, name: &str, source: &str, ok: bool) -> (PathBuf, String) {
        let home = self.env.home().join(name);
        assert!(!home.exists(), "a fresh runner");
        std::fs::create_dir_all(&home).unwrap();
        let gitconfig = std::fs::read_to_string(self.env.home().join("gitconfig")).unwrap();
        let local = self.source.display();
        std::fs::write(
            home.join("gitconfig"),
            format!(
                "{gitconfig}[url \"{local}\"]\n\tinsteadOf = {SOURCE}.git\n\tinsteadOf = {SOURCE}\n"
            ),
        )
        .unwrap();
        let checkout = home.join("state");
        self.env.git(&[
            "clone",
            "-q",
            self.origin.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ]);
        self.env.git_in(
            &checkout,
            &[
                "remote",
                "add",
                "gcl-origin",
                &format!("https://{HOST}/{PROJECT}.git"),
            ],
        );
        let fetched = checkout.join(format!(
            ".gitlab-ci-local/includes/{HOST}/{COMPONENT}/{REF}/templates/gitlab"
        ));
        std::fs::create_dir_all(&fetched).unwrap();
        std::fs::copy(
            root().join("templates/gitlab/template.yml"),
            fetched.join("template.yml"),
        )
        .unwrap();
        std::fs::write(
            checkout.join(".gitlab-ci-local-variables.yml"),
            format!(
                "CI_REGISTRY: {HOST}:5050\nCI_REGISTRY_USER: gitlab-ci-token\nCI_REGISTRY_PASSWORD: {JOB_TOKEN}\nCI_JOB_TOKEN: {JOB_TOKEN}\n"
            ),
        )
        .unwrap();
        let mut cmd = Command::new(&self.tool);
        crate::common::base_env(&mut cmd, &home);
        let out = cmd
            .current_dir(&checkout)
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
            .args(["--variable", &format!("CI_PIPELINE_SOURCE={source}")])
            .args(["--ignore-predefined-vars", "CI_PIPELINE_SOURCE"])
            .args(["--json-schema-validation", "--no-color"])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.success(),
            ok,
            "gitlab-ci-local ({source}) on {name}:\n{text}"
        );
        (checkout, text)
    }

    fn origin(&self, rev: &str) -> String {
        self.env.git_in(&self.origin, &["rev-parse", rev])
    }
}

/// The example pending on `new`, with `.gitlab-ci.yml` from `init --gitlab=MODE` and the
/// registry (basic auth: the job token) as its store; `origin`'s default branch is stable,
/// where GitLab runs schedules.
fn example(mode: &str) -> Option<(Glci, Registry)> {
    let tool = gitlab_ci_local()?;
    if !crate::common::require_tools(&["mke2fs", "debugfs", "e2fsck", "qemu-img"]) {
        return None;
    }
    let env = TestEnv::new();
    let dir = env.home().join("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let registry = Registry::start_with_users(&dir, &[("gitlab-ci-token", JOB_TOKEN)])?;
    let store = format!("oci+http://{}/{STORE_REPO}", registry.addr);
    let out = env.sg_ok(&[
        "init",
        env.repo.to_str().unwrap(),
        "--example",
        &format!("--gitlab={mode}"),
        "--store",
        &store,
    ]);
    assert!(out.contains("To do on GitLab"), "{out}");
    let w = Glci::on(tool, env);
    w.env
        .git_in(&w.origin, &["symbolic-ref", "HEAD", "refs/heads/stable"]);
    Some((w, registry))
}

/// The lines gitlab-ci-local printed for jobs whose name starts with `prefix`.
fn job_lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines()
        .filter(|l| l.trim_start().starts_with(prefix) || l.contains(&format!("-> {prefix}")))
        .collect()
}

/// The digest of the artifact that the build record of `image` on `stage` (in `origin`)
/// names, after checking that the record says it is in the registry.
fn built(w: &Glci, stage: &str, image: &str) -> String {
    let text = w.env.git_in(
        &w.origin,
        &[
            "show",
            &format!("{stage}:.stagegate/built/images/{image}.yaml"),
        ],
    );
    let record: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let digest = record["digest"].as_str().unwrap().to_string();
    assert!(
        record["location"]
            .as_str()
            .unwrap()
            .starts_with("oci+http://127.0.0.1:"),
        "{text}"
    );
    digest
}

/// The results in `origin`'s ledger of test or build `name`.
fn results(w: &Glci, name: &str) -> Vec<serde_json::Value> {
    let files = w.env.git_in(
        &w.origin,
        &["ls-tree", "-r", "--name-only", "refs/stagegate/results"],
    );
    files
        .lines()
        .filter(|p| crate::common::is_result_path(p))
        .map(|p| {
            let text = w
                .env
                .git_in(&w.origin, &["show", &format!("refs/stagegate/results:{p}")]);
            serde_saphyr::from_str::<serde_json::Value>(&text).unwrap()
        })
        .filter(|r| r["name"] == name)
        .collect()
}

/// The child pipeline the plan job wrote (its artifact).
fn child(checkout: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(
        checkout.join(".gitlab-ci-local/artifacts/stagegate-plan/stagegate-jobs.yml"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The `SG_NAME`s of the matrix entries of the child's run jobs.
fn matrix_names(child: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for (name, job) in child.as_object().unwrap() {
        if name.starts_with("stagegate run") {
            for e in job["parallel"]["matrix"].as_array().unwrap() {
                out.push(e["SG_NAME"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

#[test]
fn gitlab_ci_local_runs_the_matrix_on_fresh_runners_with_images_from_the_registry() {
    let Some((w, registry)) = example("matrix") else {
        return;
    };
    let stable = w.origin("refs/heads/stable");

    // Pipeline 1: the child holds only what can start, the host's build (the guest is built
    // on the host's artifact, which has no result yet); `record` records it, pushed.
    let (checkout, out) = w.pipeline("runner-a", "schedule", true);
    assert!(out.contains("json schema validated"), "{out}");
    let plan = child(&checkout);
    assert_eq!(
        matrix_names(&plan),
        ["build images/debian-host"],
        "{plan:#}"
    );
    let run = job_lines(&out, "stagegate run: [");
    assert!(
        run.iter()
            .any(|l| l.contains("pass    build images/debian-host")),
        "{out}"
    );
    assert!(
        !run.iter().any(|l| l.contains("stagegate-plan")),
        "run jobs are the child's"
    );
    let host_key = plan["stagegate run"]["parallel"]["matrix"][0]["SG_JOB"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.contains(&format!(
            "recorded {} build images/debian-host: pass",
            &host_key[..12]
        )),
        "{out}"
    );
    assert!(out.contains("new → staging: nothing to promote"), "{out}");
    assert_eq!(registry.tags(STORE_REPO).len(), 1, "the host image");
    // The report, published by the pages job.
    assert!(
        checkout
            .join(".gitlab-ci-local/artifacts/pages/public/index.html")
            .is_file(),
        "{out}"
    );

    // Pipeline 2, on another runner: the guest's build, on the host image from the registry.
    let (checkout, out) = w.pipeline("runner-b", "schedule", true);
    assert_eq!(
        matrix_names(&child(&checkout)),
        ["build images/debian-guest"]
    );
    assert!(out.contains("new → staging: promoted"), "{out}");
    let host = built(&w, "staging", "debian-host");
    let guest = built(&w, "staging", "debian-guest");
    // (At least once: the registry also logs the request it answered with an
    // authentication challenge.)
    assert!(
        registry.pulls(&host, 1) >= 1,
        "the guest's build downloaded the host"
    );

    // Pipeline 3, on a third runner: each test a job of its own, with both images from the
    // registry; the stage moves on.
    let (checkout, out) = w.pipeline("runner-c", "schedule", true);
    let mut names = matrix_names(&child(&checkout));
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("test  guest-boots"), "{names:?}");
    assert!(names[1].starts_with("test  host-boots"), "{names:?}");
    assert!(out.contains("staging → stable: promoted"), "{out}");
    assert!(
        registry.pulls(&host, 3) >= 3,
        "each test job downloaded the host"
    );
    assert!(registry.pulls(&guest, 1) >= 1);
    for test in ["host-boots", "guest-boots"] {
        let found = results(&w, test);
        assert!(!found.is_empty(), "{test}");
        for r in &found {
            assert_eq!(r["verdict"], "pass", "{r:#}");
        }
    }
    assert_eq!(built(&w, "stable", "debian-guest"), guest);
    assert_ne!(w.origin("refs/heads/stable"), stable, "stable moved");
}

#[test]
fn gitlab_ci_local_runs_the_cycle_on_a_schedule_and_nothing_on_a_push() {
    let Some((w, registry)) = example("cycle") else {
        return;
    };
    let stable = w.origin("refs/heads/stable");

    // A push pipeline: the component's jobs run on schedules (and by hand) only.
    let (_, out) = w.pipeline("runner-push", "push", true);
    assert!(!out.contains("stagegate-cycle"), "{out}");
    assert_eq!(w.origin("refs/heads/stable"), stable);

    // The schedule: one job polls, builds both images into the registry, tests and
    // promotes both moves; the pages job publishes the report.
    let (checkout, out) = w.pipeline("runner-a", "schedule", true);
    assert!(out.contains("json schema validated"), "{out}");
    let cycle = job_lines(&out, "stagegate-cycle");
    assert!(
        cycle
            .iter()
            .any(|l| l.contains("$ stagegate --remote origin cycle -j \"2\" --push")),
        "{out}"
    );
    assert!(out.contains("staging → stable: promoted"), "{out}");
    let host = built(&w, "stable", "debian-host");
    assert_eq!(registry.tags(STORE_REPO).len(), 2, "both images");
    let index = std::fs::read_to_string(
        checkout.join(".gitlab-ci-local/artifacts/pages/public/index.html"),
    )
    .unwrap();
    assert!(index.contains("staging → stable"), "{index}");
    assert_ne!(w.origin("refs/heads/stable"), stable);

    // Runner B, with nothing of A's: the tests of a new upstream version run on A's images,
    // downloaded from the registry; nothing is rebuilt.
    let hello = w.env.home().join("hello");
    w.env.git(&[
        "clone",
        "-q",
        "-b",
        "hello/main",
        w.origin.to_str().unwrap(),
        hello.to_str().unwrap(),
    ]);
    let script = hello.join("hello.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(&script, text + "echo \"hello, now with a second line\"\n").unwrap();
    w.env
        .git_in(&hello, &["commit", "-q", "-am", "hello: say more"]);
    w.env
        .git_in(&hello, &["push", "-q", "origin", "hello/main"]);
    let (_, out) = w.pipeline("runner-b", "schedule", true);
    assert!(out.contains("poll: components/hello 1.0 → main-"), "{out}");
    assert!(!out.contains("build images/"), "nothing is rebuilt:\n{out}");
    assert!(
        out.contains("staging → stable: promoted components/hello"),
        "{out}"
    );
    assert!(registry.pulls(&host, 1) >= 1, "B downloaded the host image");
}

const PASS: &str = "#!/bin/sh\nexit 0\n";

#[test]
fn gitlab_ci_local_sends_a_job_to_the_tags_of_its_labels_and_locks_an_exclusive_host() {
    let Some(tool) = gitlab_ci_local() else {
        return;
    };
    let env = crate::test_run::repo_with_tests(&[
        ("plain", "", PASS),
        ("arm", "needs: [arm64]\n", PASS),
        ("big", "needs: [box]\n", PASS),
        ("io", "needs: [iommu]\n", PASS),
    ]);
    // The .gitlab-ci.yml `init --gitlab=matrix` writes, and tags for two of the labels.
    let scratch = env.home().join("scratch");
    env.sg_ok(&[
        "init",
        scratch.to_str().unwrap(),
        "--gitlab=matrix",
        "--store",
        "/srv/store",
    ]);
    let ci = std::fs::read_to_string(scratch.join(".gitlab-ci.yml")).unwrap();
    let pipeline = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\nlabels:\n  arm64: {tags: [arm64]}\n  box: {tags: [lab-box-1], exclusive: true}\n";
    for stage in ["stable", "staging"] {
        env.commit_on(
            stage,
            "Run on GitLab",
            &[("stagegate.yaml", pipeline), (".gitlab-ci.yml", &ci)],
        );
    }
    let w = Glci::on(tool, env);
    w.env
        .git_in(&w.origin, &["symbolic-ref", "HEAD", "refs/heads/stable"]);

    let (checkout, out) = w.pipeline("runner-a", "schedule", true);
    let plan = child(&checkout);
    let jobs: Vec<&String> = plan.as_object().unwrap().keys().collect();
    assert_eq!(
        jobs,
        [
            ".stagegate",
            "stagegate record",
            "stagegate run",
            "stagegate run on arm64",
            "stagegate run on lab-box-1 one at a time",
            "stages",
        ],
        "{plan:#}"
    );
    // A job that needs nothing goes to any runner; the others to the tags of their labels.
    assert!(plan["stagegate run"].get("tags").is_none(), "{plan:#}");
    assert!(plan["stagegate run"].get("resource_group").is_none());
    assert_eq!(
        plan["stagegate run on arm64"]["tags"],
        serde_json::json!(["arm64"])
    );
    let exclusive = &plan["stagegate run on lab-box-1 one at a time"];
    assert_eq!(exclusive["tags"], serde_json::json!(["lab-box-1"]));
    assert_eq!(exclusive["resource_group"], "stagegate/box");
    // The unmapped label: left out, with the reason in the plan job's log.
    assert!(
        out.contains("left out of the matrix: test  io [components/xen]")
            && out.contains("needs `iommu`, which `labels:` in stagegate.yaml maps to no runner (add e.g. `labels: {iommu: {tags: [iommu]}}`)"),
        "{out}"
    );
    // Each job ran, told the labels it was chosen for; its record says so.
    for (test, label) in [
        ("arm", Some("arm64")),
        ("big", Some("box")),
        ("plain", None),
    ] {
        let found = results(&w, test);
        assert!(!found.is_empty(), "{test}:\n{out}");
        for r in &found {
            assert_eq!(r["verdict"], "pass", "{r:#}");
            let labels = r["runner"]["labels"].to_string();
            match label {
                Some(l) => assert!(labels.contains(&format!("\"{l}\"")), "{test}: {labels}"),
                None => assert!(
                    !labels.contains("arm64") && !labels.contains("\"box\""),
                    "{labels}"
                ),
            }
        }
    }
    assert!(results(&w, "io").is_empty());
    // The iommu job has no result: the move waits for it.
    assert!(out.contains("components/xen 1 → 2: wait"), "{out}");
}

/// What each role's job holds after `scripts/gitlab-ci.sh`: `env` printed by bash after
/// sourcing it as ROLE in a checkout of `origin`, with every secret the project could set.
fn job_env(role: &str) -> String {
    let env = TestEnv::init_with(&[]);
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    let tools = env.home().join("bin");
    std::fs::create_dir_all(&tools).unwrap();
    let cargo = tools.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\nwhile [ \"$1\" != --root ]; do shift; done\nmkdir -p \"$2/bin\"\ncp \"$STAGEGATE_TEST_BINARY\" \"$2/bin/stagegate\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The script installs into its own checkout: a copy of the files it reads.
    let source = env.home().join("stagegate-source");
    for file in ["Cargo.toml", "scripts/install.sh", "scripts/gitlab-ci.sh"] {
        let to = source.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join(file), &to).unwrap();
    }
    let mut cmd = Command::new("bash");
    crate::common::base_env(&mut cmd, env.home());
    let out = cmd
        .current_dir(&env.repo)
        .env(
            "PATH",
            format!("{}:{}", tools.display(), std::env::var("PATH").unwrap()),
        )
        .env("STAGEGATE_TEST_BINARY", env!("CARGO_BIN_EXE_stagegate"))
        .env("STAGEGATE_GITLAB_TOKEN", "glpat-project-token")
        .env(
            "STAGEGATE_SIGNING_KEY",
            crate::test_trust::keypair(env.home(), "runner").0,
        )
        .env("CI_SERVER_URL", format!("https://{HOST}"))
        .env("CI_REGISTRY_USER", "gitlab-ci-token")
        .env("CI_REGISTRY_PASSWORD", JOB_TOKEN)
        .args([
            "-c",
            &format!(
                "set -eo pipefail; . {}/scripts/gitlab-ci.sh {role} >/dev/null; env",
                source.display()
            ),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("STAGEGATE_OCI_PASSWORD={JOB_TOKEN}\n"))
            && text.contains("STAGEGATE_OCI_USERNAME=gitlab-ci-token\n"),
        "the job's registry credentials are the store's:\n{text}"
    );
    text
}

#[test]
fn a_job_that_runs_candidate_code_holds_no_token_and_no_key() {
    let run = job_env("run");
    assert!(!run.contains("STAGEGATE_GITLAB_TOKEN"), "{run}");
    assert!(!run.contains("STAGEGATE_SIGNING_KEY"), "{run}");
    assert!(!run.contains("glpat-project-token"), "{run}");
    assert!(!run.contains("extraheader"), "{run}");

    // `record` pushes with the token (as a git header for this job only) and signs; it
    // does not keep the token for the API.
    let record = job_env("record");
    assert!(!record.contains("STAGEGATE_GITLAB_TOKEN="), "{record}");
    assert!(record.contains("STAGEGATE_SIGNING_KEY="), "{record}");
    assert!(
        record.contains(&format!(
            "GIT_CONFIG_KEY_1=http.https://{HOST}/.extraheader"
        )),
        "{record}"
    );

    // `promote` keeps it for GitLab's API.
    let promote = job_env("promote");
    assert!(
        promote.contains("STAGEGATE_GITLAB_TOKEN=glpat-project-token\n"),
        "{promote}"
    );
    assert!(promote.contains("STAGEGATE_SIGNING_KEY="), "{promote}");

    // The cycle's one job runs candidate code and promotes: the token, never the key.
    let cycle = job_env("cycle");
    assert!(
        cycle.contains("STAGEGATE_GITLAB_TOKEN=glpat-project-token\n"),
        "{cycle}"
    );
    assert!(!cycle.contains("STAGEGATE_SIGNING_KEY"), "{cycle}");
}
