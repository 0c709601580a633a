//! The content-addressed artifact store: build outputs kept by sha256.
//!
//! A store is a directory (a plain path, relative to the repository, or a `file://` URL;
//! other URL schemes can follow behind the same two calls). An artifact lives at
//! `<store>/sha256/<hex>`, written to a temporary file in the store and renamed into place,
//! so a reader never sees half an artifact and two builders of the same bytes agree.
//! Reading verifies the digest every time: a corrupted store file is an error, never a
//! silent pass.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, IoContext, Result};

pub struct Store {
    pub root: PathBuf,
    /// Digests this process has already hashed and found intact: an image used by many
    /// jobs of one run is read in full once, not once per job.
    verified: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// What `put` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
    /// `file://…` of the stored artifact.
    pub location: String,
}

impl Store {
    /// The store named by `spec` (path or `file://` URL) relative to `base`, or the default
    /// `<git-dir>/stagegate/artifacts`.
    pub fn open(spec: Option<&str>, base: &Path, git_dir: &Path) -> Result<Store> {
        let root = match spec {
            None => git_dir.join("stagegate/artifacts"),
            Some(s) => {
                let path = match s.split_once("://") {
                    None => PathBuf::from(s),
                    Some(("file", rest)) => PathBuf::from(rest),
                    Some((scheme, _)) => {
                        return Err(Error::usage_help(
                            format!(
                                "artifact store {s:?}: the {scheme}:// scheme is not supported"
                            ),
                            "use a directory path or a file:// URL in stagegate.yaml `artifacts.store`",
                        ));
                    }
                };
                if path.is_absolute() {
                    path
                } else {
                    base.join(path)
                }
            }
        };
        Ok(Store {
            root,
            verified: Default::default(),
        })
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex)
    }

    /// Copy `file` into the store under its digest.
    pub fn put(&self, file: &Path) -> Result<Stored> {
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)
            .io_context(|| format!("creating artifact store {}", dir.display()))?;
        let mut src = std::fs::File::open(file)
            .io_context(|| format!("opening artifact {}", file.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .io_context(|| format!("writing into {}", dir.display()))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = src
                .read(&mut buf)
                .io_context(|| format!("reading {}", file.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .io_context(|| format!("writing into {}", dir.display()))?;
            size += n as u64;
        }
        let hex = hex::encode(hasher.finalize());
        let dest = self.path_of(&hex);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o444))
            .io_context(|| "chmod artifact".into())?;
        tmp.persist(&dest).map_err(|e| Error::Io {
            context: format!("storing {}", dest.display()),
            source: e.error,
        })?;
        Ok(Stored {
            digest: format!("sha256:{hex}"),
            size,
            location: format!("file://{}", dest.display()),
        })
    }

    /// The local path of the artifact with `digest`, verified. `location` is where the
    /// record says it was stored; it is copied in when this store lacks it.
    pub fn get(
        &self,
        digest: &str,
        location: Option<&str>,
    ) -> std::result::Result<PathBuf, String> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
        let path = self.path_of(hex);
        if self
            .verified
            .lock()
            .map(|v| v.contains(hex))
            .unwrap_or(false)
            && path.exists()
        {
            return Ok(path);
        }
        if !path.exists() {
            let from = location
                .and_then(|l| l.strip_prefix("file://"))
                .map(PathBuf::from);
            match from {
                Some(src) if src.exists() && src != path => {
                    self.put(&src).map_err(|e| {
                        format!("fetching artifact {digest} from {}: {e}", src.display())
                    })?;
                }
                _ => {
                    return Err(format!(
                        "artifact {digest} is not in the store {}",
                        self.root.display()
                    ));
                }
            }
        }
        let actual =
            hash_file(&path).map_err(|e| format!("reading artifact {}: {e}", path.display()))?;
        if actual != hex {
            return Err(format!(
                "artifact {} is corrupt: its content hashes to sha256:{actual}, not {digest}",
                path.display()
            ));
        }
        if let Ok(mut v) = self.verified.lock() {
            v.insert(hex.to_string());
        }
        Ok(path)
    }
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
