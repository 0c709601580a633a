//! A background writer that commits results to the ledger as they arrive.
//!
//! Results reach it over a channel; whatever has queued up while it was writing goes into
//! the next commit, so a fast stream of small jobs costs a handful of commits, and a slow
//! stream is recorded one by one, each as soon as it is known.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use super::{Ledger, ResultRecord};
use crate::error::Result;
use crate::repo::Repo;

pub struct Recorder {
    pub sender: Sender<ResultRecord>,
    handle: JoinHandle<Result<usize>>,
}

impl Recorder {
    /// Start a writer for `reference` in the repository at `git_dir`.
    pub fn start(git_dir: PathBuf, reference: String) -> Recorder {
        let (sender, rx) = channel();
        let handle = std::thread::spawn(move || write_loop(git_dir, reference, rx));
        Recorder { sender, handle }
    }

    /// Wait until everything sent has been committed; returns how many results were.
    pub fn finish(self) -> Result<usize> {
        drop(self.sender);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(crate::Error::infra("the ledger writer crashed")))
    }
}

fn write_loop(git_dir: PathBuf, reference: String, rx: Receiver<ResultRecord>) -> Result<usize> {
    let repo = Repo::open(&git_dir)?;
    let ledger = Ledger::new(&repo, &reference);
    let mut written = 0;
    let mut first_error = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let message = if batch.len() == 1 {
            format!("{} {}: {}", batch[0].kind, batch[0].name, batch[0].verdict)
        } else {
            format!("{} results", batch.len())
        };
        match ledger.record(&batch, &message) {
            Ok(_) => written += batch.len(),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(written),
    }
}
