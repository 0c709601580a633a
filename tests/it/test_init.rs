//! `stagegate init`: adopting an existing repository or directory, and the example.

use crate::common::TestEnv;

/// A TestEnv whose state directory exists, with a git repository on `main` holding one
/// commit (a README), unless `commit` is false (an empty repository).
fn git_repo(commit: bool) -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.git(&["init", "-q", "-b", "main"]);
    if commit {
        env.write("README", "mine\n");
        env.git(&["add", "README"]);
        env.git(&["commit", "-q", "-m", "first"]);
    }
    env
}

fn branch(env: &TestEnv, name: &str) -> String {
    env.git(&["rev-parse", &format!("refs/heads/{name}")])
}

#[test]
fn init_in_an_empty_git_repository_commits_a_minimal_pipeline_and_starts_the_stages() {
    let env = git_repo(false);
    let out = env.sg_ok(&["init"]);
    assert!(out.contains("committed on main"), "{out}");
    assert!(out.contains("new -> staging -> stable"), "{out}");
    let main = branch(&env, "main");
    for s in ["new", "staging", "stable"] {
        assert_eq!(branch(&env, s), main, "{s} starts at main");
    }
    assert_eq!(
        env.git(&["ls-tree", "--name-only", "main"]),
        "stagegate.yaml"
    );
    assert_eq!(
        env.git(&["status", "--porcelain"]),
        "",
        "work tree and index follow"
    );
    assert!(
        env.sg_ok(&["check"])
            .starts_with("ok: 0 items, 0 tests, 3 stages")
    );
    env.sg_ok(&["status"]);
}

#[test]
fn init_in_a_repository_with_history_keeps_it_and_your_uncommitted_changes() {
    let env = git_repo(true);
    let first = branch(&env, "main");
    env.write("README", "mine, edited\n");
    env.write("notes.txt", "staged\n");
    env.git(&["add", "notes.txt"]);
    env.sg_ok(&["init"]);
    assert_eq!(env.git(&["rev-parse", "main~1"]), first, "history kept");
    assert_eq!(
        env.git(&["ls-tree", "--name-only", "main"]),
        "README\nstagegate.yaml"
    );
    assert_eq!(branch(&env, "new"), branch(&env, "main"));
    assert_eq!(
        env.git(&["status", "--porcelain"]),
        "M README\nA  notes.txt"
    );
    assert_eq!(env.read("README"), "mine, edited\n");
    assert!(
        env.read("stagegate.yaml")
            .contains("stages: [new, staging, stable]")
    );
}

#[test]
fn init_in_a_plain_directory_creates_the_repository_and_leaves_your_files_untracked() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.write("notes.txt", "mine\n");
    let out = env.sg_ok(&["init"]);
    assert!(out.contains("Created a git repository"), "{out}");
    assert_eq!(env.read("notes.txt"), "mine\n", "nothing is lost");
    assert_eq!(env.git(&["status", "--porcelain"]), "?? notes.txt");
    assert_eq!(
        env.git(&["ls-tree", "--name-only", "new"]),
        "stagegate.yaml"
    );
    env.sg_ok(&["status"]);
}

#[test]
fn init_on_a_stage_branch_starts_the_other_stages_there() {
    let env = git_repo(true);
    env.git(&["branch", "-m", "main", "new"]);
    let out = env.sg_ok(&["init"]);
    assert!(out.contains("branches staging, stable started"), "{out}");
    assert_eq!(branch(&env, "staging"), branch(&env, "new"));
    assert_eq!(branch(&env, "stable"), branch(&env, "new"));
}

#[test]
fn errors_that_say_run_init_work_after_init() {
    // In a plain directory, and in a git repository without a pipeline.
    for env in [
        {
            let env = TestEnv::new();
            std::fs::create_dir_all(&env.repo).unwrap();
            env
        },
        git_repo(true),
    ] {
        let (_, err) = env.sg_code(2, &["status"]);
        assert!(err.contains("run `stagegate init"), "{err}");
        env.sg_ok(&["init"]);
        env.sg_ok(&["status"]);
        env.sg_ok(&["check"]);
        env.sg_ok(&["plan"]);
    }
}

#[test]
fn init_refuses_a_repository_that_already_has_a_pipeline() {
    let env = git_repo(false);
    env.sg_ok(&["init"]);
    let before = branch(&env, "main");
    let (_, err) = env.sg_code(2, &["init"]);
    assert!(err.contains("already a state repository"), "{err}");
    assert_eq!(branch(&env, "main"), before);
}

#[test]
fn init_refuses_an_existing_branch_named_like_a_stage() {
    let env = git_repo(true);
    env.git(&["branch", "stable"]);
    let (_, err) = env.sg_code(2, &["init"]);
    assert!(err.contains("already has a branch stable"), "{err}");
    assert!(err.contains("git branch -m stable"), "{err}");
    assert_eq!(
        env.git(&["rev-list", "--count", "main"]),
        "1",
        "nothing committed"
    );
}

#[test]
fn init_refuses_a_detached_head() {
    let env = git_repo(true);
    env.git(&["checkout", "-q", "--detach"]);
    let (_, err) = env.sg_code(2, &["init"]);
    assert!(err.contains("HEAD is detached"), "{err}");
    assert!(err.contains("git switch"), "{err}");
}

#[test]
fn init_refuses_to_overwrite_an_uncommitted_stagegate_yaml() {
    let env = git_repo(true);
    env.write("stagegate.yaml", "mine\n");
    let (_, err) = env.sg_code(2, &["init"]);
    assert!(err.contains("already has stagegate.yaml"), "{err}");
    assert_eq!(env.read("stagegate.yaml"), "mine\n");
}

#[test]
fn init_github_in_an_existing_repository_commits_the_workflows() {
    let env = git_repo(true);
    env.git(&[
        "remote",
        "add",
        "origin",
        "git@github.com:Octo-Org/State.git",
    ]);
    env.sg_ok(&["init", "--github"]);
    let files = env.git(&["ls-tree", "-r", "--name-only", "new"]);
    for f in [
        ".github/workflows/stagegate-cycle.yml",
        ".github/workflows/stagegate-pull-request.yml",
        "stagegate.yaml",
    ] {
        assert!(files.contains(f), "{f} in {files}");
        assert!(env.repo.join(f).exists(), "{f} in the work tree");
    }
    assert!(
        !files.contains("stagegate-matrix.yml"),
        "one scheduled workflow, not two: {files}"
    );
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    // Builds outlive the runner: the store is ghcr.io, named after the repository.
    assert!(
        env.read("stagegate.yaml")
            .contains("\nartifacts: {store: oci://ghcr.io/octo-org/state/artifacts}\n"),
        "{}",
        env.read("stagegate.yaml")
    );
    env.sg_ok(&["check"]);
}

#[test]
fn init_github_matrix_writes_the_matrix_instead_of_the_cycle() {
    let env = git_repo(true);
    env.sg_ok(&[
        "init",
        "--github=matrix",
        "--store",
        "oci://registry.lan:5000/ci/artifacts",
    ]);
    assert_eq!(
        env.git(&["ls-tree", "-r", "--name-only", "new", ".github/workflows"]),
        ".github/workflows/stagegate-matrix.yml\n.github/workflows/stagegate-pull-request.yml"
    );
    assert!(
        env.read("stagegate.yaml")
            .contains("\nartifacts: {store: oci://registry.lan:5000/ci/artifacts}\n")
    );
}

#[test]
fn init_github_without_a_github_remote_or_a_store_refuses_and_writes_nothing() {
    let env = git_repo(true);
    env.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example/octo/state.git",
    ]);
    let (_, err) = env.sg_code(2, &["init", "--github"]);
    assert!(err.contains("no shared store for builds"), "{err}");
    assert!(err.contains("gitlab.example"), "{err}");
    assert!(
        err.contains("--store oci://ghcr.io/OWNER/REPO/artifacts"),
        "{err}"
    );
    assert!(!env.repo.join("stagegate.yaml").exists());
    assert_eq!(env.git(&["branch", "--list", "new"]), "");

    // A store the pipeline could not use is refused the same way, before anything is written.
    let (_, err) = env.sg_code(2, &["init", "--github", "--store", "s3://bucket/x"]);
    assert!(err.contains("s3:// scheme is not supported"), "{err}");
    assert!(!env.repo.join("stagegate.yaml").exists());
}

#[test]
fn init_store_without_github_sets_the_store_alone() {
    let env = git_repo(true);
    env.sg_ok(&["init", "--store", "/srv/stagegate/artifacts"]);
    let yaml = env.read("stagegate.yaml");
    assert!(
        yaml.contains("\nartifacts: {store: /srv/stagegate/artifacts}\n"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("# artifacts:"),
        "the example line is replaced: {yaml}"
    );
    assert!(!env.repo.join(".github").exists());
    env.sg_ok(&["check"]);
}

#[test]
fn init_github_prints_what_is_left_to_set_up_on_github() {
    let env = git_repo(true);
    env.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/octo-org/state.git",
    ]);
    let out = env.sg_ok(&["init", "--github"]);
    let todo = out
        .split_once("To do on GitHub (stagegate cannot do these for you):\n")
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no to-do list: {out}"));
    let items: Vec<&str> = todo.lines().collect();
    let item = |n: usize, needles: &[&str]| {
        let line = items
            .get(n - 1)
            .unwrap_or_else(|| panic!("no item {n}: {todo}"));
        assert!(line.starts_with(&format!("  {n}. ")), "{line}");
        for needle in needles {
            assert!(line.contains(needle), "item {n} lacks {needle:?}: {line}");
        }
    };
    item(
        1,
        &[
            "push -u origin main new staging stable",
            "make stable the default branch",
        ],
    );
    // The tests' binary is not a release: the floating tag, and the reminder to pin it.
    item(
        2,
        &[
            "Pin the action",
            "`your-org/stagegate@v0`",
            &format!(
                "`OWNER/stagegate@<commit> # v{}`",
                env!("CARGO_PKG_VERSION")
            ),
        ],
    );
    item(
        3,
        &[
            "GitHub App",
            "STAGEGATE_APP_CLIENT_ID",
            "STAGEGATE_APP_PRIVATE_KEY",
            "Allow GitHub Actions to create and approve pull requests",
        ],
    );
    item(4, &["Pages", "Source: GitHub Actions"]);
    item(
        5,
        &[
            "Rulesets",
            "staging (check `stagegate new -> staging`)",
            "stable (check `stagegate staging -> stable`)",
            "review: true",
        ],
    );
    assert_eq!(items.len(), 5, "{todo}");
    // ghcr.io needs nothing more: the workflow's token writes to it.
    assert!(!todo.contains("reachable from every runner"), "{todo}");

    // Pinned by the user, nothing to pin; another store, how to reach it.
    let env = git_repo(true);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let out = env.sg_ok(&[
        "init",
        "--github",
        "--store",
        "oci://registry.lan/ci",
        "--github-action",
        &format!("octo-org/stagegate@{commit}"),
    ]);
    assert!(!out.contains("Pin the action"), "{out}");
    assert!(
        out.contains(&format!(
            "`git -C {0} remote add origin https://github.com/OWNER/REPO.git && git -C {0} push",
            env.repo.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("Make the store oci://registry.lan/ci reachable from every runner"),
        "{out}"
    );
    assert!(
        env.read(".github/workflows/stagegate-cycle.yml")
            .contains(&format!("uses: octo-org/stagegate@{commit}\n"))
    );
}

#[test]
fn init_example_with_github_pushes_the_component_branches_too() {
    let env = TestEnv::new();
    let out = env.sg_ok(&[
        "init",
        "--example",
        "--github",
        "--store",
        "oci://ghcr.io/octo-org/state/artifacts",
        env.repo.to_str().unwrap(),
    ]);
    assert!(
        out.contains("push -u origin new staging stable hello/main hello/master`, and make stable the default branch"),
        "{out}"
    );
    // The store is in the first commit, so every stage has it.
    let stable = env.git(&["show", "stable:stagegate.yaml"]);
    assert!(
        stable.contains("artifacts: {store: oci://ghcr.io/octo-org/state/artifacts}"),
        "{stable}"
    );
    env.sg_ok(&["check"]);
}

#[test]
fn init_example_refuses_a_directory_that_is_not_empty() {
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    env.write("notes.txt", "mine\n");
    let (_, err) = env.sg_code(2, &["init", "--example", "quick"]);
    assert!(err.contains("is not empty"), "{err}");
    assert!(err.contains("without --example"), "{err}");
    assert_eq!(env.read("notes.txt"), "mine\n", "nothing is lost");
    assert!(!env.repo.join(".git").exists());
}

#[test]
fn init_example_works_in_an_empty_git_repository() {
    let env = git_repo(false);
    env.sg_ok(&["init", "--example"]);
    assert_eq!(env.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "new");
    assert!(
        env.sg_ok(&["check"])
            .starts_with("ok: 3 items, 2 tests, 3 stages")
    );
}

#[test]
fn the_pre_commit_hook_finds_stagegate_by_its_recorded_path_when_not_on_path() {
    let env = git_repo(true);
    env.sg_ok(&["init"]);
    env.git(&["switch", "-q", "new"]);
    env.write("images/bad.yaml", "name: bad\nversion: [\n");
    env.git(&["add", "images/bad.yaml"]);
    let mut cmd = std::process::Command::new("git");
    crate::common::base_env(&mut cmd, env.home());
    // A PATH with git but without stagegate.
    let out = cmd
        .env("PATH", "/usr/bin:/bin")
        .arg("-C")
        .arg(&env.repo)
        .args(["commit", "-q", "-m", "bad"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the hook refused the commit: {err}");
    assert!(err.contains("images/bad.yaml"), "{err}");
    assert!(!err.contains("not on PATH"), "{err}");
}

#[test]
fn init_in_a_subdirectory_adopts_the_repository_around_it() {
    let env = git_repo(true);
    std::fs::create_dir_all(env.repo.join("docs")).unwrap();
    let mut cmd = std::process::Command::new(env.sg_cmd(&[]).get_program());
    crate::common::base_env(&mut cmd, env.home());
    let out = cmd
        .arg("-C")
        .arg(env.repo.join("docs"))
        .arg("init")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!env.repo.join("docs/.git").exists(), "no nested repository");
    assert_eq!(
        env.git(&["ls-tree", "--name-only", "new"]),
        "README\nstagegate.yaml"
    );
}

#[test]
fn init_gitlab_in_an_existing_repository_includes_the_component_and_uses_the_registry() {
    let env = git_repo(true);
    env.git(&[
        "remote",
        "add",
        "origin",
        "git@gitlab.com:Xen-Project/CI/State.git",
    ]);
    let out = env.sg_ok(&["init", "--gitlab"]);
    let files = env.git(&["ls-tree", "-r", "--name-only", "new"]);
    assert!(files.contains(".gitlab-ci.yml"), "{files}");
    assert!(!files.contains(".github"), "{files}");
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    let ci = env.read(".gitlab-ci.yml");
    assert!(
        ci.contains("  - component: $CI_SERVER_FQDN/your-org/stagegate/gitlab@v0\n"),
        "{ci}"
    );
    assert!(ci.contains("      mode: cycle\n"), "{ci}");
    // The project's own container registry holds the builds.
    assert!(
        env.read("stagegate.yaml").contains(
            "\nartifacts: {store: oci://registry.gitlab.com/xen-project/ci/state/artifacts}\n"
        ),
        "{}",
        env.read("stagegate.yaml")
    );
    env.sg_ok(&["check"]);
    assert!(out.contains("To do on GitLab"), "{out}");
    assert!(out.contains("STAGEGATE_GITLAB_TOKEN"), "{out}");
    assert!(out.contains("Pin stagegate"), "{out}");
    assert!(
        !out.contains("Make the store"),
        "the job token reaches the project's registry: {out}"
    );
}

#[test]
fn init_gitlab_without_a_gitlab_remote_or_a_store_refuses_and_writes_nothing() {
    let env = git_repo(true);
    env.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.lab.example/xen/state.git",
    ]);
    let (_, err) = env.sg_code(2, &["init", "--gitlab"]);
    assert!(err.contains("no shared store for builds"), "{err}");
    assert!(err.contains("gitlab.lab.example"), "{err}");
    assert!(
        err.contains("--store oci://REGISTRY/GROUP/PROJECT/artifacts"),
        "{err}"
    );
    assert!(!env.repo.join(".gitlab-ci.yml").exists());
    assert_eq!(env.git(&["branch", "--list", "new"]), "");
    // A self-hosted instance names its registry.
    let out = env.sg_ok(&[
        "init",
        "--gitlab=matrix",
        "--store",
        "oci://registry.lab.example/xen/state/artifacts",
    ]);
    assert!(env.read(".gitlab-ci.yml").contains("      mode: matrix\n"));
    assert!(
        out.contains("Make the store oci://registry.lab.example/"),
        "{out}"
    );
    // One CI system's files at a time.
    let (_, err) = env.sg_code(2, &["init", "--gitlab", "--github"]);
    assert!(err.contains("cannot be used with"), "{err}");
}
