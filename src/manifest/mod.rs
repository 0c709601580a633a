//! Manifests: the YAML files of a state repository, parsed strictly into a typed model.
//!
//! This module owns the file formats and every check on them. It reads files through the
//! [`Files`] trait, so the same code validates a work tree and a commit's tree (the git
//! implementation lives in `repo`). It never touches git directly and never prints.

mod doc;
pub mod model;
pub mod parse;
pub mod set;

pub use crate::diag::{Diagnostic, Diagnostics, Pos};
pub use model::*;
pub use set::ManifestSet;

use crate::error::{IoContext, Result};

/// The pipeline file at the root of every state repository.
pub const PIPELINE_FILE: &str = "stagegate.yaml";
/// The directory of test manifests.
pub const TESTS_DIR: &str = "tests";

/// Read access to a tree of files: a work tree, or a commit's tree.
pub trait Files {
    /// The names (not paths) of the files directly inside `dir`; empty when `dir` is absent.
    fn list(&self, dir: &str) -> Result<Vec<String>>;
    /// The content of the file at `path`, or `None` when there is no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;
    /// Whether `path` names a file or a directory.
    fn exists(&self, path: &str) -> Result<bool>;
    /// What `path` is, as git would commit it: links are not followed, and a path under a
    /// symbolic link is that link. `None` when there is nothing at `path`.
    fn kind(&self, path: &str) -> Result<Option<FileKind>>;
}

/// What a path of a tree is, as git records it (a mode, not a file's content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (mode 100644).
    File,
    /// An executable file (mode 100755).
    Executable,
    /// A symbolic link (mode 120000), or a path under one.
    Symlink,
    Dir,
    /// A submodule, a socket, …
    Other,
}

/// A directory on disk, such as a repository's work tree.
pub struct WorkTree {
    pub root: std::path::PathBuf,
}

impl Files for WorkTree {
    fn list(&self, dir: &str) -> Result<Vec<String>> {
        let path = self.root.join(dir);
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).io_context(|| format!("listing {}", path.display())),
        };
        let mut names = Vec::new();
        for entry in rd {
            let entry = entry.io_context(|| format!("listing {}", path.display()))?;
            // Links are listed too, so `check` refuses a linked manifest here as it does in
            // a commit, where git stores the link itself.
            if entry
                .file_type()
                .is_ok_and(|t| t.is_file() || t.is_symlink())
            {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let full = self.root.join(path);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).io_context(|| format!("reading {}", full.display())),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.root.join(path).exists())
    }

    fn kind(&self, path: &str) -> Result<Option<FileKind>> {
        use std::os::unix::fs::PermissionsExt;
        let mut full = self.root.clone();
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        for (i, part) in parts.iter().enumerate() {
            full.push(part);
            let meta = match std::fs::symlink_metadata(&full) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
                Err(e) => return Err(e).io_context(|| format!("reading {}", full.display())),
            };
            let t = meta.file_type();
            if t.is_symlink() {
                return Ok(Some(FileKind::Symlink));
            }
            if i + 1 < parts.len() {
                if !t.is_dir() {
                    return Ok(None);
                }
                continue;
            }
            return Ok(Some(if t.is_dir() {
                FileKind::Dir
            } else if !t.is_file() {
                FileKind::Other
            } else if meta.permissions().mode() & 0o111 != 0 {
                FileKind::Executable
            } else {
                FileKind::File
            }));
        }
        Ok(Some(FileKind::Dir))
    }
}
