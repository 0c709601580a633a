//! Claims: on one machine, one run at a time per job.
//!
//! Several unsharded `run`s on one repository (cron overlapping a manual run, runners
//! sharing a host) would otherwise each run every job. Before a job starts, its run claims
//! the job key: a byte-range lock (`fcntl`) at an offset taken from the key, in one of 16
//! files, `.git/stagegate/claims.d/0` to `f`, by the key's first digit. (The kernel keeps a
//! file's locks in a list it walks on every lock: a thousand claims in one file made each
//! new claim walk hundreds.) A job another live run has claimed is left to it. A run keeps
//! its claims until it ends, after its results are committed, so a run that claims a job
//! later finds its result in the ledger (the caller checks) and does not run it again. The
//! kernel drops the locks of a process that ends, `kill -9` included, so a dead run's
//! claims are free at once. No file per job; one system call per claim.

use std::os::fd::AsRawFd;
use std::path::Path;

use crate::keys::JobKey;

/// The claims files of a repository, open for the whole run. Dropping them releases every
/// claim this process holds.
pub struct Claims {
    files: Vec<std::fs::File>,
}

/// How many files the claims are spread over: one per hex digit.
const SHARDS: usize = 16;

impl Claims {
    /// Open (creating) the claims files in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<Claims> {
        std::fs::create_dir_all(dir)?;
        let files = (0..SHARDS)
            .map(|i| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(dir.join(format!("{i:x}")))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Claims { files })
    }

    /// Claim `key` for this process: `false` when another live process holds it.
    pub fn try_claim(&self, key: &JobKey) -> std::io::Result<bool> {
        // SAFETY: a zeroed flock is a valid value; the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_len = 1;
        let (shard, offset) = place_of(key.as_str());
        fl.l_start = offset as libc::off_t;
        let file = &self.files[shard % SHARDS];
        // SAFETY: fcntl(F_SETLK) on a descriptor we own, with a valid flock.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
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

/// Where `key` is locked: the file of its first digit, at 60 bits of the key (sha256 hex),
/// so two jobs never share a byte. A key that is not hex is placed by its digest.
fn place_of(key: &str) -> (usize, i64) {
    let n = match key.get(..15).map(|d| u64::from_str_radix(d, 16)) {
        Some(Ok(n)) => n,
        _ => {
            use sha2::{Digest, Sha256};
            let d = Sha256::digest(key.as_bytes());
            u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 4
        }
    };
    // 60 bits: the top four are the first digit.
    ((n >> 56) as usize, n as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_placed_by_its_first_digit_and_two_keys_never_share_a_byte() {
        let a = "3f0000000000001aaaa";
        let b = "3f0000000000002aaaa";
        assert_eq!(place_of(a).0, 3);
        assert_ne!(place_of(a).1, place_of(b).1);
        assert_eq!(place_of("f000000000000000").0, 15);
        assert_eq!(place_of("0000000000000000").0, 0);
        let (shard, offset) = place_of("not a key");
        assert!(shard < SHARDS && offset >= 0);
    }
}
