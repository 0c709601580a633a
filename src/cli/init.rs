//! `stagegate init [DIR]`: scaffold a state repository with a working example pipeline.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use include_dir::{Dir, DirEntry, include_dir};

use super::{Code, Ctx};
use crate::error::{Context, Error, IoContext, Result};
use crate::repo::{Cas, Repo};

static EXAMPLE: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/example");
static UPSTREAM: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/upstream-hello");
static GITHUB: Dir = include_dir!("$CARGO_MANIFEST_DIR/templates/github");
const PRE_COMMIT: &str = include_str!("../../hooks/pre-commit");

/// Create a state repository in DIR: the example pipeline (two images built with
/// `mke2fs -d` and `qemu-img`, a component in a local repository, two tests), the stage
/// branches `new`, `staging` and `stable`, and the example committed on `new`, pending.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create it (must be empty or absent); default: the current directory.
    pub dir: Option<PathBuf>,
    /// Also write the example GitHub workflows to .github/workflows/ (a scheduled cycle,
    /// a job matrix, and a read-only pull-request check).
    #[arg(long)]
    pub github: bool,
}

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
    let dir = match args.dir {
        Some(d) if d.is_absolute() => d,
        Some(d) => ctx.dir.join(d),
        None => ctx.dir.clone(),
    };
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(&dir).io_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            return Err(Error::usage_help(
                format!("{} is not empty", dir.display()),
                "init creates a new state repository: name an empty or new directory",
            ));
        }
    }
    std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    let dir = std::path::absolute(&dir).io_context(|| format!("resolving {}", dir.display()))?;
    let git =
        gix::init(&dir).context(|| format!("creating a git repository in {}", dir.display()))?;
    let repo = Repo::from_git(git);

    let upstream_commit = create_component(&repo)?;
    let vars = minijinja::context! { commit => upstream_commit.to_string() };
    let mut files = Vec::new();
    collect(&EXAMPLE, &mut files, &vars)?;
    if args.github {
        let mut workflows = Vec::new();
        collect(&GITHUB, &mut workflows, &vars)?;
        files.extend(workflows.into_iter().map(|f| File {
            path: format!(".github/workflows/{}", f.path),
            ..f
        }));
    }

    // The first commit holds the pipeline alone and starts every stage; the example items
    // arrive in a second commit on the first stage, pending, as a user's change would.
    let (start, example): (Vec<File>, Vec<File>) =
        files.into_iter().partition(|f| f.path == "stagegate.yaml");
    let empty = ObjectId::empty_tree(gix::hash::Kind::Sha1);
    let tree1 = tree_of(&repo, empty, &start)?;
    let c1 = repo.write_commit(tree1, &[], "stagegate: start the pipeline\n\nStages new -> staging -> stable; gates in stagegate.yaml.\n")?;
    let stages = ["new", "staging", "stable"];
    for s in stages {
        set_branch(&repo, s, c1, "stagegate init")?;
    }
    let tree2 = tree_of(&repo, tree1, &example)?;
    let c2 = repo.write_commit(
        tree2,
        &[c1],
        "Add the example images, component and tests\n\nimages/debian-host is built with mke2fs -d and qemu-img; images/debian-guest\nis derived from it; components/hello is pinned on this repository's branch hello/main.\n",
    )?;
    match repo.cas("refs/heads/new", Some(c1), c2, "stagegate init: example")? {
        Cas::Updated => {}
        Cas::Moved { .. } => return Err(Error::infra("branch new moved while initializing")),
    }
    set_head(&repo, "new")?;

    write_files(&dir, &start)?;
    write_files(&dir, &example)?;
    let mut index = repo
        .git
        .index_from_tree(&tree2)
        .context(|| "building the index".into())?;
    index
        .write(Default::default())
        .context(|| "writing the index".into())?;

    let hook = repo.git_dir().join("hooks/pre-commit");
    if let Some(parent) = hook.parent() {
        std::fs::create_dir_all(parent).io_context(|| format!("creating {}", parent.display()))?;
    }
    write_files(
        repo.git_dir(),
        &[File {
            path: "hooks/pre-commit".into(),
            data: PRE_COMMIT.as_bytes().to_vec(),
            exec: true,
        }],
    )?;

    println!("Initialized a state repository in {}", dir.display());
    println!(
        "  stages: {} (branches; HEAD is on new)",
        stages.join(" -> ")
    );
    println!(
        "  pending on new: {} Add the example images, component and tests",
        crate::plan::short(c2)
    );
    println!("  component: branches hello/main (tracked) and hello/master (push gate)");
    println!("Next: stagegate -C {} status", dir.display());
    Ok(0)
}
