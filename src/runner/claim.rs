//! Claims: on one machine, one run at a time per job.
//!
//! Several unsharded `run`s on one repository (cron overlapping a manual run, runners
//! sharing a host) would otherwise each run every job. Before a job starts, its run claims
//! the job key: a byte-range lock (`fcntl`) at an offset taken from the key, in one file,
//! `.git/stagegate/claims`. A job another live run has claimed is left to it. A run keeps
//! its claims until it ends, after its results are committed, so a run that claims a job
//! later finds its result in the ledger (the caller checks) and does not run it again. The
//! kernel drops the locks of a process that ends, `kill -9` included, so a dead run's
//! claims are free at once. No file per job; one system call per claim.

use std::os::fd::AsRawFd;
use std::path::Path;

/// The claims file of a repository, open for the whole run. Dropping it releases every
/// claim this process holds.
pub struct Claims {
    file: std::fs::File,
}

impl Claims {
    /// Open (creating) the claims file at `path`.
    pub fn open(path: &Path) -> std::io::Result<Claims> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Claims { file })
    }

    /// Claim `key` for this process: `false` when another live process holds it.
    pub fn try_claim(&self, key: &str) -> std::io::Result<bool> {
        // SAFETY: a zeroed flock is a valid value; the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = offset_of(key) as libc::off_t;
        fl.l_len = 1;
        // SAFETY: fcntl(F_SETLK) on a descriptor we own, with a valid flock.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_SETLK, &fl) };
        if rc == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
            _ => Err(e),
        }
    }
}

/// Where in the claims file `key` is locked: 60 bits of the key (sha256 hex), so two
/// jobs never share a byte.
fn offset_of(key: &str) -> i64 {
    match key.get(..15).map(|d| u64::from_str_radix(d, 16)) {
        Some(Ok(n)) => n as i64,
        _ => {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(key.as_bytes());
            (u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 4) as i64
        }
    }
}
