//! `stagegate init [DIR]`: make DIR a state repository. An existing repository (or a
//! plain directory) gets a minimal pipeline committed on its current branch and the stage
//! branches started from there; `--example` scaffolds the working example instead.
//! `--github` adds the GitHub workflows and what they need ([`github`]); `--gitlab` a
//! `.gitlab-ci.yml` with stagegate's CI/CD component ([`gitlab`]).

mod github;
mod gitlab;

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use include_dir::{Dir, DirEntry, include_dir};

use super::{Code, Ctx};
use crate::advice::Advice;
use crate::error::{Context, Error, IoContext, Result};
use crate::repo::{Cas, Repo};

static MINIMAL: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/minimal");
static EXAMPLE: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/example");
static DEBIAN: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/debian");
static XEN: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/xen");
static UPSTREAM: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/upstream-hello");
const PRE_COMMIT: &str = include_str!("../../hooks/pre-commit");

/// Make DIR a state repository: commit a minimal pipeline (`stagegate.yaml`) on its
/// current branch and start the stage branches `new`, `staging` and `stable` there. DIR may
/// be an existing git repository (empty or not), a plain directory, or absent.
/// With `--example`, DIR must be empty: an example pipeline (two images, a component on a
/// branch of the repository, two tests) is committed on `new`, pending.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The repository or directory; default: the current directory.
    pub dir: Option<PathBuf>,
    /// Scaffold a working example instead (in an empty or new directory): `quick` (the
    /// default) builds stand-in images with `mke2fs -d` and `qemu-img` in seconds; `debian`
    /// builds a real Debian host and guest with mmdebstrap, keeps their .debs as the
    /// last-known-good cache, and boots them under QEMU; `xen` builds a Debian host the
    /// same way and tests the Xen hypervisor from Debian's packages on it, booted under
    /// QEMU, with dom0 starting a guest.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "quick", value_name = "NAME")]
    pub example: Option<Example>,
    /// Also write GitHub workflows to .github/workflows/: one scheduled workflow that
    /// promotes — `cycle` (the default: poll, run and promote in one job) or `matrix`
    /// (`--github=matrix`: poll, then each job on a runner of its own, then promote) — and
    /// a read-only check of pull requests. Sets `artifacts.store` to ghcr.io for the
    /// GitHub repository of the remote `origin` (or `--store`), pins stagegate's action by
    /// the commit of the release this binary comes from, and prints what is left to set
    /// up on GitHub.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "cycle", value_name = "WORKFLOW")]
    pub github: Option<github::Workflow>,
    /// Also write a .gitlab-ci.yml that includes stagegate's GitLab CI/CD component in
    /// `cycle` mode (the default: poll, run and promote in one job) or `matrix` mode
    /// (`--gitlab=matrix`: each job on a runner of its own, in a child pipeline). Sets
    /// `artifacts.store` to the gitlab.com container registry of the project the remote
    /// `origin` points at (or `--store`), pins stagegate to the release this binary comes
    /// from, and prints what is left to set up on GitLab.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "cycle", value_name = "MODE", conflicts_with = "github")]
    pub gitlab: Option<gitlab::Mode>,
    /// The shared store for builds and full logs (`artifacts.store` in stagegate.yaml): a
    /// directory, a file:// URL or oci://HOST[:PORT]/REPOSITORY. With --github the default
    /// is oci://ghcr.io/OWNER/REPO/artifacts for the repository `origin` points at.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With --github: the action the workflows use, as OWNER/REPO@REF (a commit to pin
    /// it); default: the release this binary was built by, pinned by its commit.
    #[arg(long, value_name = "OWNER/REPO@REF", requires = "github")]
    pub github_action: Option<String>,
    /// Count signed evidence only (`trust:` in stagegate.yaml): PUBKEY (an ed25519 `.pub`
    /// file) becomes the runner's key and its holder's, entitled to every kind of record.
    /// Run stagegate with the private key in STAGEGATE_SIGNING_KEY.
    #[arg(long, value_name = "PUBKEY")]
    pub trust: Option<PathBuf>,
}

/// What `--github` and `--store` settled before anything is written.
struct Setup {
    store: Option<String>,
    /// `--trust`: the `trust:` block to append to stagegate.yaml.
    trust: Option<String>,
    github: Option<GitHub>,
    gitlab: Option<GitLab>,
}

struct GitLab {
    mode: gitlab::Mode,
    component: gitlab::Component,
    /// `GROUP/…/PROJECT`, when the remote `origin` says (on gitlab.com).
    repository: Option<String>,
    store: String,
}

struct GitHub {
    workflow: github::Workflow,
    action: github::Action,
    /// `OWNER/REPO`, when the remote `origin` says.
    repository: Option<String>,
    store: String,
}

impl Setup {
    /// Check the options against the repository at `dir` (which may not exist yet): a
    /// store to share builds is required with --github, since a build kept on a runner
    /// that is gone is lost to every later test.
    fn new(args: &Args, dir: &Path) -> Result<Setup> {
        if let Some(s) = &args.store {
            github::check_store(s)?;
        }
        let trust = args.trust.as_deref().map(trust_block).transpose()?;
        if let Some(mode) = args.gitlab {
            let origin = github::origin_url(dir);
            let repository = origin.as_deref().and_then(gitlab::gitlab_repository);
            let store = match (&args.store, &repository) {
                (Some(s), _) => s.clone(),
                (None, Some(r)) => gitlab::registry_store(r)?,
                (None, None) => {
                    let why = match &origin {
                        Some(url) => format!("its remote origin ({url}) is not on gitlab.com"),
                        None => "it has no remote origin".into(),
                    };
                    return Err(Error::usage_help(
                        format!(
                            "init --gitlab: no shared store for builds in {}: {why}, so stagegate cannot name the container registry of its project",
                            dir.display()
                        ),
                        "name the store: --store oci://REGISTRY/GROUP/PROJECT/artifacts (the project's container registry, e.g. oci://registry.gitlab.com/GROUP/PROJECT/artifacts), or any store every runner reaches; or add the remote first (`git remote add origin https://gitlab.com/GROUP/PROJECT.git`)",
                    ));
                }
            };
            return Ok(Setup {
                store: Some(store.clone()),
                trust,
                github: None,
                gitlab: Some(GitLab {
                    mode,
                    component: gitlab::Component::of(&github::Action::this_release()),
                    repository,
                    store,
                }),
            });
        }
        let Some(workflow) = args.github else {
            return Ok(Setup {
                store: args.store.clone(),
                trust,
                github: None,
                gitlab: None,
            });
        };
        let action = match &args.github_action {
            Some(a) => github::Action::given(a)?,
            None => github::Action::this_release(),
        };
        let origin = github::origin_url(dir);
        let repository = origin.as_deref().and_then(github::github_repository);
        let store = match (&args.store, &repository) {
            (Some(s), _) => s.clone(),
            (None, Some(r)) => github::ghcr_store(r)?,
            (None, None) => {
                let why = match &origin {
                    Some(url) => format!("its remote origin ({url}) is not on github.com"),
                    None => "it has no remote origin".into(),
                };
                return Err(Error::usage_help(
                    format!(
                        "init --github: no shared store for builds in {}: {why}, so stagegate cannot name the ghcr.io package of its repository",
                        dir.display()
                    ),
                    "name the store: --store oci://ghcr.io/OWNER/REPO/artifacts (the GitHub repository this will be pushed to), or any store every runner reaches; or add the remote first (`git remote add origin https://github.com/OWNER/REPO.git`)",
                ));
            }
        };
        Ok(Setup {
            store: Some(store.clone()),
            trust,
            github: Some(GitHub {
                workflow,
                action,
                repository,
                store,
            }),
            gitlab: None,
        })
    }

    /// Add what the options ask for to `files`: the store in stagegate.yaml, the workflows.
    fn apply(&self, files: &mut Vec<File>) -> Result<()> {
        if let Some(trust) = &self.trust {
            let yaml = files
                .iter_mut()
                .find(|f| f.path == "stagegate.yaml")
                .ok_or_else(|| Error::infra("the template has no stagegate.yaml"))?;
            let mut text = String::from_utf8_lossy(&yaml.data).into_owned();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(trust);
            yaml.data = text.into_bytes();
        }
        if let Some(store) = &self.store {
            let yaml = files
                .iter_mut()
                .find(|f| f.path == "stagegate.yaml")
                .ok_or_else(|| Error::infra("the template has no stagegate.yaml"))?;
            let text = String::from_utf8_lossy(&yaml.data).into_owned();
            yaml.data = github::set_store(&text, store).into_bytes();
        }
        if let Some(g) = &self.github {
            files.extend(github::workflows(g.workflow, &g.action)?);
        }
        if let Some(g) = &self.gitlab {
            files.push(gitlab::pipeline_file(g.mode, &g.component));
        }
        Ok(())
    }

    /// The to-do list, for --github.
    fn print_todo(&self, dir: &Path, branches: Vec<String>) {
        if let Some(g) = &self.github {
            github::Todo {
                dir,
                branches: branches.clone(),
                repository: g.repository.as_deref(),
                action: &g.action,
                store: &g.store,
                workflow: g.workflow,
                stages: &STAGES,
            }
            .print();
        }
        if let Some(g) = &self.gitlab {
            gitlab::Todo {
                dir,
                branches,
                repository: g.repository.as_deref(),
                component: &g.component,
                store: &g.store,
                stages: &STAGES,
            }
            .print();
        }
    }
}

/// The `trust:` block for `init --trust PUBKEY`: the key is the runner's and its holder's,
/// who may write every kind of record.
fn trust_block(path: &Path) -> Result<String> {
    let line = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("--trust {}: {e}", path.display())))?;
    let line = line.trim();
    crate::sshsig::parse_public_key(line).map_err(|why| {
        Error::usage_help(
            format!("--trust {}: not an ed25519 public key: {why}", path.display()),
            "make one with `ssh-keygen -t ed25519 -f ~/.ssh/stagegate` and pass ~/.ssh/stagegate.pub",
        )
    })?;
    let kinds: Vec<&str> = crate::manifest::RecordKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    Ok(format!(
        "# Only evidence signed by these keys counts (README: Signed evidence); run stagegate\n# with the private key in STAGEGATE_SIGNING_KEY.\ntrust:\n  runners:\n    - name: runner\n      key: {line}\n  people:\n    - name: maintainer\n      key: {line}\n      may: [{}]\n",
        kinds.join(", ")
    ))
}

/// The examples `init --example` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Example {
    /// Stand-in images made with `mke2fs -d` and `qemu-img`: the whole pipeline in seconds.
    Quick,
    /// A Debian host and guest from real packages (mmdebstrap), booted under QEMU.
    Debian,
    /// Xen from Debian's packages (a component with a build) on a Debian host image,
    /// booted under QEMU; dom0 starts a PV guest.
    Xen,
}

impl Example {
    fn templates(self) -> &'static Dir<'static> {
        match self {
            Example::Quick => &EXAMPLE,
            Example::Debian => &DEBIAN,
            Example::Xen => &XEN,
        }
    }

    /// The files of the Debian example another example uses as they are.
    fn shared(self) -> &'static [&'static str] {
        match self {
            Example::Quick | Example::Debian => &[],
            Example::Xen => &[
                "recipes/debian.sh",
                "recipes/debian-host.sh",
                "recipes/stagegate-init",
                "tests/qemu.sh",
                "watch/debian-point-release.sh",
            ],
        }
    }

    /// Whether the example's component is `hello`, on branches of the repository.
    fn hello(self) -> bool {
        self != Example::Xen
    }

    /// The second commit's message: what the example adds.
    fn message(self) -> &'static str {
        match self {
            Example::Quick => {
                "Add the example images, component and tests\n\nimages/debian-host is built with mke2fs -d and qemu-img; images/debian-guest\nis derived from it; components/hello is pinned on this repository's branch hello/main.\n"
            }
            Example::Debian => {
                "Add the example images, component and tests\n\nimages/debian-host is built from real packages with mmdebstrap, its .debs kept\nas the last-known-good cache; images/debian-guest is derived from it; the tests\nboot both under QEMU and run components/hello, pinned on this repository's\nbranch hello/main.\n"
            }
            Example::Xen => {
                "Add the Xen example: host and guest images, the Xen component, two tests\n\nimages/xen-host is built from real packages with mmdebstrap, its .debs kept as\nthe last-known-good cache; images/xen-guest is made from it; components/xen is\nbuilt by fetching Debian's Xen packages at its version; the tests boot Xen on the\nhost under QEMU and start a guest from dom0.\n"
            }
        }
    }
}

/// The stage branches `init` creates (the order of the minimal pipeline's `stages`).
const STAGES: [&str; 3] = ["new", "staging", "stable"];

/// A file to commit: path, content, executable.
struct File {
    path: String,
    data: Vec<u8>,
    exec: bool,
}

fn collect(dir: &Dir, out: &mut Vec<File>, vars: &minijinja::Value) -> Result<()> {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(d) => collect(d, out, vars)?,
            DirEntry::File(f) => {
                let mut path = f.path().to_string_lossy().into_owned();
                let mut data = f.contents().to_vec();
                if let Some(stem) = path.strip_suffix(".j2") {
                    let env = minijinja::Environment::new();
                    let text = String::from_utf8_lossy(&data).into_owned();
                    data = env
                        .render_str(&text, vars.clone())
                        .map_err(|e| Error::infra(format!("rendering template {path}: {e}")))?
                        .into_bytes();
                    path = stem.to_string();
                }
                let exec = path.ends_with(".sh");
                out.push(File { path, data, exec });
            }
        }
    }
    Ok(())
}

/// Write `files` as a tree on top of `base`.
fn tree_of(repo: &Repo, base: ObjectId, files: &[File]) -> Result<ObjectId> {
    let mut edits = Vec::new();
    for f in files {
        let id = repo.write_blob(&f.data)?;
        let kind = if f.exec {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        edits.push((f.path.clone(), Some((kind, id))));
    }
    repo.edit_tree(base, &edits)
}

fn write_files(root: &Path, files: &[File]) -> Result<()> {
    for f in files {
        let path = root.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .io_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &f.data).io_context(|| format!("writing {}", path.display()))?;
        if f.exec {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .io_context(|| format!("chmod {}", path.display()))?;
        }
    }
    Ok(())
}

fn set_branch(repo: &Repo, branch: &str, to: ObjectId, why: &str) -> Result<()> {
    match repo.cas(&format!("refs/heads/{branch}"), None, to, why)? {
        Cas::Updated => Ok(()),
        Cas::Moved { .. } => Err(Error::infra(format!(
            "branch {branch} appeared while initializing"
        ))),
    }
}

/// Point HEAD at `branch` (a symbolic ref).
fn set_head(repo: &Repo, branch: &str) -> Result<()> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit};
    let target: gix::refs::FullName = format!("refs/heads/{branch}")
        .try_into()
        .context(|| "branch name".into())?;
    repo.git
        .edit_reference(RefEdit {
            change: Change::Update {
                log: LogChange::default(),
                expected: PreviousValue::Any,
                new: gix::refs::Target::Symbolic(target),
            },
            name: "HEAD".try_into().context(|| "HEAD".into())?,
            deref: false,
        })
        .context(|| format!("pointing HEAD at {branch}"))?;
    Ok(())
}

/// The example component's history, kept in the state repository itself on branches of
/// its own: `hello/main` (tracked) and `hello/master` (the push gate's). Its manifest says
/// `source.git: .`, so wherever the state repository is cloned (a CI checkout, another
/// runner) the component comes along: from the remote the clone came from.
fn create_component(repo: &Repo) -> Result<ObjectId> {
    let mut files = Vec::new();
    collect(&UPSTREAM, &mut files, &minijinja::Value::UNDEFINED)?;
    let tree = tree_of(repo, ObjectId::empty_tree(gix::hash::Kind::Sha1), &files)?;
    let commit = repo.write_commit(tree, &[], "hello: first release\n")?;
    set_branch(
        repo,
        "hello/main",
        commit,
        "stagegate init: example component",
    )?;
    set_branch(
        repo,
        "hello/master",
        commit,
        "stagegate init: example component",
    )?;
    Ok(commit)
}

pub fn run(ctx: &Ctx, args: Args) -> Result<Code> {
    let dir = match &args.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => ctx.dir.join(d),
        None => ctx.dir.clone(),
    };
    let mut dir =
        std::path::absolute(&dir).io_context(|| format!("resolving {}", dir.display()))?;
    // Without DIR, in a subdirectory of a repository: that repository, as git would.
    if args.dir.is_none()
        && args.example.is_none()
        && !dir.join(".git").exists()
        && let Some(root) = gix::discover(&dir)
            .ok()
            .and_then(|g| g.workdir().map(Path::to_path_buf))
    {
        dir = root;
    }
    let setup = Setup::new(&args, &dir)?;
    match args.example {
        Some(which) => example(&dir, which, &setup),
        None => adopt(&dir, &setup),
    }
}

/// Whether `dir` is absent, empty, or holds only a git repository without a commit.
fn is_blank(dir: &Path) -> Result<bool> {
    if !dir.exists() {
        return Ok(true);
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .io_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    match entries.as_slice() {
        [] => Ok(true),
        [only] if only == ".git" => Ok(gix::open(dir).is_ok_and(|g| g.head_id().is_err())),
        _ => Ok(false),
    }
}

/// The repository at `dir` exactly, or a new one there (creating `dir` if needed).
/// `stagegate init DIR`, as advice.
fn init_in(dir: &Path) -> Advice {
    Advice::Init {
        dir: Some(dir.display().to_string()),
    }
}

/// `stagegate -C DIR …`, as advice.
fn in_dir(dir: &Path, advice: Advice) -> Advice {
    Advice::In {
        dir: dir.display().to_string(),
        advice: Box::new(advice),
    }
}

fn open_or_init(dir: &Path) -> Result<(Repo, bool)> {
    if dir.join(".git").exists() {
        return Ok((Repo::open(dir)?, false));
    }
    // A file where the directory should be is the user's input, not our infrastructure.
    if dir.exists() && !dir.is_dir() {
        return Err(Error::usage_help(
            format!("{} is a file, not a directory", dir.display()),
            "name a new or existing directory instead",
        ));
    }
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let git =
        gix::init(dir).context(|| format!("creating a git repository in {}", dir.display()))?;
    Ok((Repo::from_git(git), true))
}

/// The absolute path of the running binary, so the hook finds it when it is not on PATH.
fn this_binary() -> String {
    std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "stagegate".into())
}

/// `s` as one single-quoted word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Install the pre-commit hook that checks manifests, unless the repository has one of its
/// own. Returns what was done, for the summary.
fn install_hook(repo: &Repo) -> Result<String> {
    let hook = repo.git_dir().join("hooks/pre-commit");
    if hook.exists() {
        let text = std::fs::read_to_string(&hook).unwrap_or_default();
        if !text.contains("Installed by `stagegate init`") {
            return Ok(format!(
                "kept your own {}; add `{}` to it to check manifests before each commit",
                hook.display(),
                Advice::Check
            ));
        }
    }
    write_files(
        repo.git_dir(),
        &[File {
            path: "hooks/pre-commit".into(),
            data: PRE_COMMIT
                .replace("@STAGEGATE@", &shell_quote(&this_binary()))
                .into_bytes(),
            exec: true,
        }],
    )?;
    Ok(format!(
        "installed .git/hooks/pre-commit: `{}` before each commit",
        Advice::Check
    ))
}

/// `init` without `--example`: commit the minimal pipeline on the current branch of the
/// repository at `dir` (created when there is none) and start every stage branch there.
fn adopt(dir: &Path, setup: &Setup) -> Result<Code> {
    let (repo, created) = open_or_init(dir)?;
    let head_ref = repo
        .git
        .head_name()
        .context(|| "reading HEAD".into())?
        .ok_or_else(|| {
            Error::usage_help(
                format!("HEAD is detached in {}", dir.display()),
                format!(
                    "switch to the branch the stages should start from (`git switch BRANCH`), then run `{}` again",
                    init_in(dir)
                ),
            )
        })?;
    let branch = head_ref
        .as_bstr()
        .to_string()
        .trim_start_matches("refs/heads/")
        .to_string();
    let head = repo.ref_target(&format!("refs/heads/{branch}"))?;
    let base = match head {
        Some(c) => repo.tree_of(c)?,
        None => ObjectId::empty_tree(gix::hash::Kind::Sha1),
    };
    if repo.entry(base, "stagegate.yaml")?.is_some() {
        return Err(Error::usage_help(
            format!(
                "{} is already a state repository: {branch} has a stagegate.yaml",
                dir.display()
            ),
            format!("`{}` shows its stages", in_dir(dir, Advice::Status)),
        ));
    }
    for s in STAGES {
        if s != branch && repo.ref_target(&format!("refs/heads/{s}"))?.is_some() {
            return Err(Error::usage_help(
                format!(
                    "{} already has a branch {s}, and init creates the stage branches {}",
                    dir.display(),
                    STAGES.join(", ")
                ),
                format!(
                    "rename it (`git branch -m {s} OTHER`) and run `{}` again, or write stagegate.yaml yourself with other stage names",
                    init_in(dir)
                ),
            ));
        }
    }
    let mut files = Vec::new();
    collect(&MINIMAL, &mut files, &minijinja::Value::UNDEFINED)?;
    setup.apply(&mut files)?;
    for f in &files {
        let on_disk = repo.work_dir().is_some_and(|w| w.join(&f.path).exists());
        if on_disk || repo.entry(base, &f.path)?.is_some() {
            return Err(Error::usage_help(
                format!("{} already has {}", dir.display(), f.path),
                format!(
                    "move it aside (or commit it elsewhere) and run `{}` again",
                    init_in(dir)
                ),
            ));
        }
    }

    let tree = tree_of(&repo, base, &files)?;
    let parents: Vec<ObjectId> = head.into_iter().collect();
    let commit = repo.write_commit(
        tree,
        &parents,
        "stagegate: start the pipeline\n\nStages new -> staging -> stable; gates in stagegate.yaml.\n",
    )?;
    match repo.cas(
        &format!("refs/heads/{branch}"),
        head,
        commit,
        "stagegate init",
    )? {
        Cas::Updated => {}
        Cas::Moved { .. } => {
            return Err(Error::infra(format!(
                "branch {branch} moved while initializing; run `{}` again",
                init_in(dir)
            )));
        }
    }
    // The work tree and index follow the branch, keeping any changes of yours.
    crate::repo::remote::sync_worktree(&repo, &branch, head.unwrap_or(base), commit);
    let mut started = Vec::new();
    for s in STAGES {
        if s != branch {
            set_branch(&repo, s, commit, "stagegate init")?;
            started.push(s);
        }
    }
    let hook = install_hook(&repo)?;

    if created {
        println!("Created a git repository in {}", dir.display());
    }
    println!("Initialized a state repository in {}", dir.display());
    println!(
        "  committed on {branch}: {} stagegate: start the pipeline ({})",
        crate::plan::short(commit),
        files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if started.len() == STAGES.len() {
        println!(
            "  stages: {} (new branches at that commit)",
            STAGES.join(" -> ")
        );
    } else {
        println!(
            "  stages: {} (branches {} started at that commit; {branch} is the first)",
            STAGES.join(" -> "),
            started.join(", ")
        );
    }
    println!("  {hook}");
    println!(
        "Next: add images/, components/ and tests/ manifests on new (`git switch new`), then `{}`",
        in_dir(dir, Advice::Status)
    );
    let mut branches = vec![branch.clone()];
    branches.extend(started.iter().map(|s| s.to_string()));
    setup.print_todo(dir, branches);
    Ok(0)
}

/// `init --example`: a new state repository in an empty directory, with the example
/// pending on `new`.
fn example(dir: &Path, which: Example, setup: &Setup) -> Result<Code> {
    if !is_blank(dir)? {
        return Err(Error::usage_help(
            format!("{} is not empty", dir.display()),
            format!(
                "the example needs an empty or new directory: name one, or run `{}` (without --example) to add a pipeline to this one",
                init_in(dir)
            ),
        ));
    }
    let (repo, _) = open_or_init(dir)?;

    let vars = if which.hello() {
        let upstream_commit = create_component(&repo)?;
        minijinja::context! { commit => upstream_commit.to_string() }
    } else {
        minijinja::context! {}
    };
    let mut files = Vec::new();
    collect(which.templates(), &mut files, &vars)?;
    for path in which.shared() {
        let f = DEBIAN
            .get_file(path)
            .ok_or_else(|| Error::infra(format!("the Debian example has no {path}")))?;
        files.push(File {
            path: path.to_string(),
            data: f.contents().to_vec(),
            exec: path.ends_with(".sh"),
        });
    }
    setup.apply(&mut files)?;

    // The first commit holds the pipeline alone and starts every stage; the example items
    // arrive in a second commit on the first stage, pending, as a user's change would.
    let (start, example): (Vec<File>, Vec<File>) = files.into_iter().partition(|f| {
        f.path == "stagegate.yaml" || f.path.starts_with(".github/") || f.path == ".gitlab-ci.yml"
    });
    let empty = ObjectId::empty_tree(gix::hash::Kind::Sha1);
    let tree1 = tree_of(&repo, empty, &start)?;
    let c1 = repo.write_commit(tree1, &[], "stagegate: start the pipeline\n\nStages new -> staging -> stable; gates in stagegate.yaml.\n")?;
    for s in STAGES {
        set_branch(&repo, s, c1, "stagegate init")?;
    }
    let tree2 = tree_of(&repo, tree1, &example)?;
    let c2 = repo.write_commit(tree2, &[c1], which.message())?;
    match repo.cas("refs/heads/new", Some(c1), c2, "stagegate init: example")? {
        Cas::Updated => {}
        Cas::Moved { .. } => return Err(Error::infra("branch new moved while initializing")),
    }
    set_head(&repo, "new")?;

    write_files(dir, &start)?;
    write_files(dir, &example)?;
    let mut index = repo
        .git
        .index_from_tree(&tree2)
        .context(|| "building the index".into())?;
    index
        .write(Default::default())
        .context(|| "writing the index".into())?;
    install_hook(&repo)?;

    println!("Initialized a state repository in {}", dir.display());
    println!(
        "  stages: {} (branches; HEAD is on new)",
        STAGES.join(" -> ")
    );
    println!(
        "  pending on new: {} Add the example images, component and tests",
        crate::plan::short(c2)
    );
    if which.hello() {
        println!("  component: branches hello/main (tracked) and hello/master (push gate)");
    }
    println!("Next: stagegate -C {} status", dir.display());
    let mut branches: Vec<String> = STAGES.iter().map(|s| s.to_string()).collect();
    if which.hello() {
        branches.extend(["hello/main".into(), "hello/master".into()]);
    }
    setup.print_todo(dir, branches);
    Ok(0)
}
