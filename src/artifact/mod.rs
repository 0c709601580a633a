//! The content-addressed store: build outputs and full job logs, kept by sha256.
//!
//! A store is a directory (a plain path, relative to the repository, or a `file://` URL)
//! or an OCI registry (`oci://HOST[:PORT]/REPO`, see [`oci`]). A file lives at
//! `<dir>/sha256/<hex>`, read-only, put there by a rename, so a reader never sees half a
//! file and two writers of the same bytes agree. With a registry, that directory
//! (`<git-dir>/stagegate/artifacts`) is the local cache: what a build stored is kept there
//! too, and what another runner pushed is pulled into it on first use.
//!
//! Storing never copies what it can move: a build's output (the runner's own scratch file)
//! is hashed in one read pass and renamed into the store when both are on one file system,
//! else reflinked, else copied; a file someone else keeps (`store put FILE`) is reflinked or
//! copied, never moved or hard-linked, and a registry push uploads from that file itself
//! instead of first copying it into the cache. A job gets the stored file's own path
//! (read-only), so using an image costs no copy either.
//! Reading verifies the digest every time: a corrupted file is an error, never a silent
//! pass.

pub mod oci;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::keys::Digest;

pub struct Store {
    /// The store's directory, or a registry's local cache.
    pub root: PathBuf,
    /// The registry, when the store is one.
    remote: Option<oci::Registry>,
    /// Whether other runners reach this store (a configured directory or a registry),
    /// so logs belong in it; the default directory inside `.git` is this machine's alone.
    shared: bool,
    /// Digests this process has already hashed and found intact: an image used by many
    /// jobs of one run is read in full once, not once per job.
    verified: std::sync::Mutex<std::collections::HashSet<String>>,
    /// One lock per digest being read: jobs start on threads of their own (off the job
    /// runtime), and those that start together with the same image wait for the one reading
    /// it instead of each reading (or fetching) it in full.
    reading: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<()>>>>,
}

/// What is being stored: it decides the registry's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Artifact,
    Log,
}

fn media_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Artifact => oci::ARTIFACT_TYPE,
        Kind::Log => oci::LOG_TYPE,
    }
}

/// Whether `put_local` may take the file away from where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// The caller's own scratch file: rename it.
    Move,
    /// Someone's file that stays: reflink or copy it.
    Copy,
}

/// What `put` stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `sha256:<hex>`
    pub digest: Digest,
    pub size: u64,
    /// `file://…` or `oci://HOST/REPO@sha256:…`: where any runner finds it.
    pub location: String,
}

impl Store {
    /// The store named by `spec` (path, `file://` or `oci://` URL) relative to `base`, or
    /// the default `<git-dir>/stagegate/artifacts`.
    pub fn open(spec: Option<&str>, base: &Path, git_dir: &Path) -> Result<Store> {
        let cache = git_dir.join("stagegate/artifacts");
        let (root, remote) = match spec {
            None => (cache, None),
            Some(s) if oci::is_oci(s) => (cache, Some(open_registry(s)?)),
            Some(s) => {
                let path = match s.split_once("://") {
                    None => PathBuf::from(s),
                    Some(("file", rest)) => PathBuf::from(rest),
                    Some((scheme, _)) => {
                        return Err(Error::usage_help(
                            format!(
                                "artifact store {s:?}: the {scheme}:// scheme is not supported"
                            ),
                            "use a directory path, a file:// URL or oci://HOST[:PORT]/REPOSITORY in stagegate.yaml `artifacts.store`",
                        ));
                    }
                };
                (
                    if path.is_absolute() {
                        path
                    } else {
                        base.join(path)
                    },
                    None,
                )
            }
        };
        Ok(Store {
            root,
            remote,
            shared: spec.is_some(),
            verified: Default::default(),
            reading: Default::default(),
        })
    }

    /// Where this store is, for messages: its URL or directory.
    pub fn describe(&self) -> String {
        match &self.remote {
            Some(r) => r.url(),
            None => self.root.display().to_string(),
        }
    }

    /// Whether other runners reach this store: full logs are kept in it only then.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    fn path_of(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex)
    }

    /// Keep `file` in the store under its digest, leaving `file` as it is (with a registry:
    /// hashed, then pushed from `file` itself with `annotations` unless the registry has it
    /// already, and kept in the cache only when the file system can reflink it there). The
    /// user's file is never moved or linked: a reflink, else a copy, is hashed in one pass.
    pub fn put(
        &self,
        file: &Path,
        kind: Kind,
        annotations: BTreeMap<String, String>,
    ) -> Result<Stored> {
        let Some(remote) = &self.remote else {
            return self.put_local(file, Take::Copy);
        };
        // One pass to learn the digest the push needs up front; the upload reads `file`
        // again, and nothing is written here unless a reflink makes it free.
        let (hex, size) =
            hash_and_size(file).io_context(|| format!("reading {}", file.display()))?;
        let digest = Digest::from(format!("sha256:{hex}"));
        remote
            .push_file(file, &digest, size, media_of(kind), annotations)
            .map_err(store_error)?;
        self.cache_by_reflink(file, &hex);
        Ok(Stored {
            location: remote.location(&digest),
            digest,
            size,
        })
    }

    /// Keep `file`, which the caller owns and gives up (a build's output in the runner's
    /// own scratch directory), in the store: hashed in one read pass and renamed into place
    /// when the store is on the same file system; else reflinked, else copied (hashed as
    /// it is copied). With a registry, it is then pushed from the store's copy. `file` is
    /// gone (or left to the caller to remove) afterwards.
    pub fn put_moving(
        &self,
        file: &Path,
        kind: Kind,
        annotations: BTreeMap<String, String>,
    ) -> Result<Stored> {
        let local = self.put_local(file, Take::Move)?;
        let Some(remote) = &self.remote else {
            return Ok(local);
        };
        let hex = local.digest.hex();
        remote
            .push_file(
                &self.path_of(hex),
                &local.digest,
                local.size,
                media_of(kind),
                annotations,
            )
            .map_err(store_error)?;
        Ok(Stored {
            location: remote.location(&local.digest),
            ..local
        })
    }

    /// After a push from `file`: keep it in the cache too when a reflink costs nothing;
    /// otherwise the first use pulls it. Failing here loses nothing.
    fn cache_by_reflink(&self, file: &Path, hex: &str) {
        let dest = self.path_of(hex);
        if dest.exists() {
            return;
        }
        let dir = self.root.join("sha256");
        let cloned = std::fs::create_dir_all(&dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(&dir))
            .and_then(|tmp| {
                let src = std::fs::File::open(file)?;
                reflink(&src, tmp.as_file())?;
                Ok(tmp)
            });
        // The clone is a snapshot: hash it, so a file changed since the push is not
        // cached under the old digest.
        if let Ok(tmp) = cloned
            && hash_and_size(tmp.path()).is_ok_and(|(h, _)| h == hex)
        {
            let _ = persist_read_only(tmp, &dest);
        }
    }

    fn put_local(&self, file: &Path, take: Take) -> Result<Stored> {
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)
            .io_context(|| format!("creating artifact store {}", dir.display()))?;
        let (tmp, hex, size) = match take {
            Take::Move => match self.move_in(file, &dir)? {
                Some(moved) => moved,
                None => self.copy_in(file, &dir)?,
            },
            Take::Copy => self.copy_in(file, &dir)?,
        };
        let dest = self.path_of(&hex);
        persist_read_only(tmp, &dest)?;
        if let Ok(mut v) = self.verified.lock() {
            v.insert(hex.clone());
        }
        Ok(Stored {
            digest: Digest::from(format!("sha256:{hex}")),
            size,
            location: format!("file://{}", dest.display()),
        })
    }

    /// Rename `file` into `dir` under a temporary name, then hash it there: no byte is
    /// copied. `None` when `dir` is on another file system.
    fn move_in(
        &self,
        file: &Path,
        dir: &Path,
    ) -> Result<Option<(tempfile::NamedTempFile, String, u64)>> {
        // A placeholder name of our own in the store, replaced by the rename: the temp
        // file's guard then removes what was moved if anything below fails.
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .io_context(|| format!("writing into {}", dir.display()))?;
        match std::fs::rename(file, tmp.path()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("moving {} into {}", file.display(), dir.display()),
                    source: e,
                });
            }
        }
        let (hex, size) =
            hash_and_size(tmp.path()).io_context(|| format!("reading {}", file.display()))?;
        Ok(Some((tmp, hex, size)))
    }

    /// A reflink of `file` in `dir`, hashed; or, where the file system cannot, a copy
    /// hashed as it is written: one read pass of `file` either way.
    fn copy_in(&self, file: &Path, dir: &Path) -> Result<(tempfile::NamedTempFile, String, u64)> {
        let mut src =
            std::fs::File::open(file).io_context(|| format!("opening {}", file.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .io_context(|| format!("writing into {}", dir.display()))?;
        if reflink(&src, tmp.as_file()).is_ok() {
            let (hex, size) =
                hash_and_size(tmp.path()).io_context(|| format!("reading {}", file.display()))?;
            return Ok((tmp, hex, size));
        }
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
        Ok((tmp, hex::encode(hasher.finalize()), size))
    }

    /// The local path of the file with `digest`, verified. `location` is where the record
    /// says it was stored; it is copied or pulled in when this store lacks it.
    pub fn get(
        &self,
        digest: &Digest,
        location: Option<&str>,
    ) -> std::result::Result<PathBuf, String> {
        let hex = digest
            .as_str()
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("unsupported digest {digest:?}"))?;
        let path = self.path_of(hex);
        if self.is_verified(hex) && path.exists() {
            return Ok(path);
        }
        // A poisoned lock only means another reader panicked: the checks below still hold.
        let lock = self
            .reading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(hex.to_string())
            .or_default()
            .clone();
        let _reading = lock.lock().unwrap_or_else(|e| e.into_inner());
        // Whoever held the lock may have just verified (or fetched) it.
        if self.is_verified(hex) && path.exists() {
            return Ok(path);
        }
        if !path.exists() {
            // A pull checks the digest as the bytes arrive; a copy from a directory is
            // hashed as it is copied: either way, what lands here is verified.
            self.fetch(digest, location)?;
            if let Ok(mut v) = self.verified.lock() {
                v.insert(hex.to_string());
            }
            return Ok(path);
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

    fn is_verified(&self, hex: &str) -> bool {
        self.verified
            .lock()
            .map(|v| v.contains(hex))
            .unwrap_or(false)
    }

    /// Bring the file `digest` into the store's directory from `location` (a registry, or
    /// another directory), or from this store's registry.
    fn fetch(&self, digest: &Digest, location: Option<&str>) -> std::result::Result<(), String> {
        let from_registry = location
            .filter(|l| oci::is_oci(l))
            .and_then(|l| l.rsplit_once('@').map(|(url, _)| url));
        let other;
        let registry = match (from_registry, &self.remote) {
            (Some(url), Some(r)) if url == r.url() => Some(r),
            (Some(url), _) => {
                other = oci::Registry::open(url).map_err(|e| e.to_string())?;
                Some(&other)
            }
            (None, Some(r)) => Some(r),
            (None, None) => None,
        };
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating artifact store {}: {e}", dir.display()))?;
        if let Some(registry) = registry {
            let tmp = tempfile::NamedTempFile::new_in(&dir)
                .map_err(|e| format!("writing into {}: {e}", dir.display()))?;
            registry
                .pull_to(digest, tmp.path())
                .map_err(|e| format!("fetching {digest}: {e}"))?;
            return persist_read_only(tmp, &self.path_of(digest.hex())).map_err(|e| e.to_string());
        }
        let src = location
            .and_then(|l| l.strip_prefix("file://"))
            .map(PathBuf::from)
            .filter(|src| src.exists());
        match src {
            Some(src) => {
                let stored = self
                    .put_local(&src, Take::Copy)
                    .map_err(|e| format!("fetching {digest} from {}: {e}", src.display()))?;
                if stored.digest != *digest {
                    return Err(format!(
                        "artifact {} is corrupt: its content hashes to {}, not {digest}",
                        src.display(),
                        stored.digest
                    ));
                }
                Ok(())
            }
            None => Err(format!(
                "artifact {digest} is not in the store {}",
                self.root.display()
            )),
        }
    }

    /// Copy the log at `location` (as a ledger record names it: a store location or a
    /// plain path) to `out`, fetching it from its store when it is not here.
    pub fn copy_log(&self, location: &str, out: &mut dyn Write) -> Result<()> {
        let path = match digest_in(location) {
            Some(d) => self
                .get(&d, Some(location))
                .map_err(|why| Error::infra(format!("the log at {location}: {why}")))?,
            None => PathBuf::from(location.trim_start_matches("file://")),
        };
        let mut f = std::fs::File::open(&path).map_err(|e| {
            Error::infra_help(
                format!("cannot read the log {}: {e}", path.display()),
                "the log was kept on the machine that ran the job; configure a shared `artifacts.store` to keep logs where every runner reaches them",
            )
        })?;
        match std::io::copy(&mut f, out) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
                context: format!("copying the log {}", path.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Keep `content` beside the artifact `digest`: on a registry as an OCI referrer of the
    /// artifact's manifest (artifactType `media_type`, with `annotations`), in a directory
    /// as `sha256/<hex>.<suffix>` next to the blob. Writing the same again changes nothing.
    /// Returns where it is.
    pub fn attach(
        &self,
        digest: &Digest,
        suffix: &str,
        content: &[u8],
        media_type: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<String> {
        let hex = digest.hex();
        if let Some(remote) = &self.remote {
            return remote
                .push_referrer(digest, content.to_vec(), media_type, annotations)
                .map_err(store_error);
        }
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)
            .io_context(|| format!("creating artifact store {}", dir.display()))?;
        let dest = dir.join(format!("{hex}.{suffix}"));
        let mut tmp = tempfile::NamedTempFile::new_in(&dir)
            .io_context(|| format!("writing into {}", dir.display()))?;
        tmp.write_all(content)
            .io_context(|| format!("writing {}", dest.display()))?;
        persist_read_only(tmp, &dest)?;
        Ok(format!("file://{}", dest.display()))
    }

    /// What [`Store::attach`] kept beside the artifact `digest` with a name ending in
    /// `suffix` (a directory) or of `media_type` (a registry): (location, content).
    pub fn attached(
        &self,
        digest: &Digest,
        suffix: &str,
        media_type: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let hex = digest.hex();
        if let Some(remote) = &self.remote {
            return Ok(remote
                .referrers(digest, media_type)
                .map_err(store_error)?
                .into_iter()
                .map(|a| (a.location, a.content))
                .collect());
        }
        let dir = self.root.join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{hex}.")) && name.ends_with(suffix) {
                let path = e.path();
                let content =
                    std::fs::read(&path).io_context(|| format!("reading {}", path.display()))?;
                out.push((format!("file://{}", path.display()), content));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The digest a store location names: `oci://…@sha256:<hex>`, or `file://…/sha256/<hex>`.
fn digest_in(location: &str) -> Option<Digest> {
    let hex = if oci::is_oci(location) {
        location.rsplit_once("@sha256:")?.1
    } else {
        let (dir, hex) = location.strip_prefix("file://")?.rsplit_once('/')?;
        dir.ends_with("/sha256").then_some(hex)?
    };
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Digest::from(format!("sha256:{hex}")))
}

fn open_registry(url: &str) -> Result<oci::Registry> {
    oci::Registry::open(url).map_err(|e| match e {
        oci::OciError::BadUrl { .. } => Error::usage_help(
            e.to_string(),
            "write the store as oci://HOST[:PORT]/REPOSITORY, e.g. oci://ghcr.io/OWNER/stagegate-artifacts",
        ),
        other => store_error(other),
    })
}

fn store_error(e: oci::OciError) -> Error {
    Error::infra_help(
        e.to_string(),
        "check that the registry is reachable and that STAGEGATE_OCI_TOKEN, STAGEGATE_OCI_USERNAME/STAGEGATE_OCI_PASSWORD or GITHUB_TOKEN grant access",
    )
}

/// Make `tmp` read-only and rename it to `dest`.
fn persist_read_only(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o444))
        .io_context(|| "chmod artifact".into())?;
    tmp.persist(dest).map_err(|e| Error::Io {
        context: format!("storing {}", dest.display()),
        source: e.error,
    })?;
    Ok(())
}

pub fn hash_file(path: &Path) -> std::io::Result<String> {
    hash_and_size(path).map(|(hex, _)| hex)
}

/// The sha256 (hex) of the file at `path` and its size, in one read pass.
fn hash_and_size(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Make `dest` share `src`'s blocks (the `FICLONE` ioctl: btrfs, XFS, bcachefs…): a copy
/// that costs no bytes and no time. Fails (`EOPNOTSUPP`, `EXDEV`, `EINVAL`) where the file
/// system cannot, and the caller copies.
fn reflink(src: &std::fs::File, dest: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source descriptor as its argument and reads no memory; both
    // descriptors are open files borrowed for the duration of the call.
    let r = unsafe { libc::ioctl(dest.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
