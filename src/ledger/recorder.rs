//! A background writer that commits results to the ledger as they arrive.
//!
//! Results reach it over a channel; what arrives within a short window (or queued up while
//! it was writing) goes into the next commit, so a fast stream of small jobs costs a
//! handful of commits, and a slow stream is recorded one by one, each within the window.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Ledger, ResultRecord};
use crate::error::Result;
use crate::repo::Repo;
use gix::ObjectId;

/// How long a result may wait for others to share its commit. Each commit costs a pack,
/// its index, a lock file and a ref update (files created and renamed: on a file system
/// without a journal, creating a file after many were deleted is slow); at 50 ms a run of
/// 1,000 short jobs made ~90 commits, at 250 ms ~20, and a result still reaches the ledger
/// within a quarter of a second of its job ending.
const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// The most results in one commit.
const MAX_BATCH: usize = 512;

pub struct Recorder {
    pub sender: Sender<ResultRecord>,
    /// The commits this writer made, each with the tip it was built on.
    pub commits: OwnCommits,
    handle: JoinHandle<Result<usize>>,
}

/// Commits a [`Recorder`] made (commit → its parent): a reader that finds only these
/// between a tip it knows and the ref's tip knows that nobody else recorded meanwhile.
pub type OwnCommits = Arc<Mutex<HashMap<ObjectId, Option<ObjectId>>>>;

impl Recorder {
    /// Start a writer for `reference` in `repo`. It shares `repo`'s object store (its
    /// memory-mapped pack indices and packs): a store of its own would map a large ledger's
    /// pages a second time, doubling what a run holds in memory.
    pub fn start(repo: &Repo, reference: String) -> Recorder {
        let (sender, rx) = channel();
        let shared = repo.git.clone().into_sync();
        let commits = OwnCommits::default();
        let mine = commits.clone();
        let handle = std::thread::spawn(move || {
            // (Ledger::record reads the ledger through a handle of its own per commit,
            // with its own object cache.)
            write_loop(
                Repo::from_git(shared.to_thread_local()),
                reference,
                rx,
                mine,
            )
        });
        Recorder {
            sender,
            commits,
            handle,
        }
    }

    /// Wait until everything sent has been committed; returns how many results were.
    pub fn finish(self) -> Result<usize> {
        drop(self.sender);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(crate::Error::infra("the ledger writer crashed")))
    }
}

fn write_loop(
    repo: Repo,
    reference: String,
    rx: Receiver<ResultRecord>,
    mine: OwnCommits,
) -> Result<usize> {
    let ledger = Ledger::new(&repo, &reference);
    let mut written = 0;
    let mut first_error = None;
    let mut wrote = super::Written {
        own: Some(mine),
        ..Default::default()
    };
    while let Ok(first) = rx.recv() {
        // Gather what arrives within a short window into one commit: every commit costs a
        // root tree, a commit object and a ref update, and a stream of short jobs would
        // otherwise pay them for each result. A record waits at most BATCH_WINDOW.
        let mut batch = vec![first];
        let deadline = Instant::now() + BATCH_WINDOW;
        while batch.len() < MAX_BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let message = if batch.len() == 1 {
            format!("{} {}: {}", batch[0].kind, batch[0].name, batch[0].verdict)
        } else {
            format!("{} results", batch.len())
        };
        // Each commit is in `mine` (through `wrote.own`) before the ref points at it.
        match ledger.record(&batch, &message, &mut wrote) {
            Ok(_) => written += batch.len(),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    // One pack for the whole run, not one per commit. A failure to fold loses nothing:
    // every object is still in the packs it was written to.
    if let Err(e) = wrote.packs.finish(&repo.git.common_dir().join("objects")) {
        crate::error::warn(format!(
            "could not fold this run's ledger packs into one ({e}); nothing is lost, and `git gc` folds them"
        ));
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}
