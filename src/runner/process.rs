//! Running one command: its own process group, a timeout that kills the whole group,
//! output merged into a log capped to its head and tail, and cancellation.
//!
//! Output is read on the runtime (no thread per job) into a [`JobLog`], which stays in
//! memory while it is small: a run of many short jobs writes no file for a job that
//! passed with no more output than its excerpt holds. A log that outgrows memory goes to
//! its file through a thread of its own: the runtime never waits for a disk.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{oneshot, watch};

use super::mask::{Masker, Secrets};
use crate::keys::JobKey;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    /// The run was interrupted (Ctrl-C, SIGTERM): not a result.
    Cancelled,
    /// The command could not be started at all.
    SpawnFailed(String),
}

pub struct Finished {
    pub ended: Ended,
    pub duration: Duration,
    /// The last lines of the output.
    pub excerpt: String,
    pub bytes: u64,
    /// The job's log, this try's output added.
    pub log: JobLog,
}

pub struct Spec<'a> {
    pub run: &'a str,
    pub cwd: &'a Path,
    /// The whole environment: nothing of the runner's own is inherited.
    pub env: &'a [(String, String)],
    /// Values masked in the log and the excerpt.
    pub secrets: &'a Secrets,
    pub timeout: Duration,
    /// Bytes of output kept per try: half from the start, half from the end.
    pub log_cap: u64,
}

/// The exit status by which a job says "I could not test" (a tool or emulator this runner
/// lacks, a service it cannot reach): `error`, not `fail`, so the candidate waits instead
/// of being rejected (DESIGN §4.17). 125, as `git bisect run` uses it for "cannot test
/// this commit", so the same script serves both.
pub const COULD_NOT_TEST: i32 = 125;

/// How long a process group gets between SIGTERM and SIGKILL on timeout.
const GRACE: Duration = Duration::from_secs(3);

/// How long output is still read after the job's process group is gone. Only a process
/// that left the group (`setsid`, a daemon) can hold the output open longer; reading
/// stops then, keeping everything the job wrote.
pub const DRAIN: Duration = Duration::from_millis(500);

/// Bytes of a log held in memory before it goes to its file: beyond this, output is
/// written as it arrives.
const IN_MEMORY: usize = 1024 * 1024;

/// Run `spec` once, adding its output to `log` (returned in [`Finished`]).
pub async fn run(spec: Spec<'_>, log: JobLog, mut cancel: watch::Receiver<bool>) -> Finished {
    let start = Instant::now();
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return spawn_failed(start, format!("cannot create a pipe: {e}"), log),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return spawn_failed(start, format!("cannot create a pipe: {e}"), log),
    };
    // The read end, registered with the runtime (non-blocking, read as it becomes ready).
    let reader = std::process::ChildStdout::from(OwnedFd::from(reader));
    let reader = match tokio::process::ChildStdout::from_std(reader) {
        Ok(r) => r,
        Err(e) => return spawn_failed(start, format!("cannot read a pipe: {e}"), log),
    };
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(spec.run)
        .current_dir(spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::from(OwnedFd::from(writer2)))
        .process_group(0)
        .kill_on_drop(true);
    // Not while a checkout file is open for writing: the child would hold it open until
    // its exec, and a job starting that file meanwhile would fail (ETXTBSY).
    let spawned = {
        let _spawning = crate::repo::sparse::SPAWN
            .read()
            .unwrap_or_else(|e| e.into_inner());
        cmd.spawn()
    };
    // Close our copies of the write end, so the reader sees EOF when the group is gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return spawn_failed(start, format!("cannot start /bin/sh: {e}"), log),
    };
    let pgid = child.id().map(|p| p as i32);

    let log_path = log.path.clone();
    let (stop, stopped) = oneshot::channel();
    let masker = Masker::new(spec.secrets.clone());
    let mut reading = tokio::spawn(capture(reader, log, spec.log_cap, masker, stopped));

    let ended = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(c), _) => Ended::Exited(c),
                    (None, Some(sig)) => Ended::Signaled(sig),
                    _ => Ended::Exited(-1),
                }
            }
            Err(e) => Ended::SpawnFailed(format!("waiting for the job: {e}")),
        },
        _ = tokio::time::sleep(spec.timeout) => {
            terminate(pgid, &mut child).await;
            Ended::TimedOut
        }
        _ = cancelled(&mut cancel) => {
            kill_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            Ended::Cancelled
        }
    };
    // Children that outlive the job's main process die with it.
    kill_group(pgid, libc::SIGKILL);
    let duration = start.elapsed();
    let captured = match tokio::time::timeout(DRAIN, &mut reading).await {
        Ok(c) => c.ok(),
        Err(_) => {
            // Someone outside the group holds the pipe: take what is there and stop.
            let _ = stop.send(());
            reading.await.ok()
        }
    };
    let (captured, log) = captured.unwrap_or_else(|| {
        let mut log = JobLog::new(log_path);
        let excerpt = "[stagegate: the job's output could not be read]".to_string();
        log.note("the job's output could not be read");
        (Captured { excerpt, bytes: 0 }, log)
    });
    Finished {
        ended,
        duration,
        excerpt: captured.excerpt,
        bytes: captured.bytes,
        log,
    }
}

/// Resolves once the run is cancelled (never, if the sender is gone without cancelling).
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn spawn_failed(start: Instant, why: String, log: JobLog) -> Finished {
    Finished {
        ended: Ended::SpawnFailed(why.clone()),
        duration: start.elapsed(),
        excerpt: why,
        bytes: 0,
        log,
    }
}

fn kill_group(pgid: Option<i32>, sig: i32) {
    if let Some(p) = pgid
        && p > 0
    {
        // SAFETY: killpg only sends a signal; a group that is already gone gives ESRCH.
        unsafe {
            libc::killpg(p, sig);
        }
    }
}

async fn terminate(pgid: Option<i32>, child: &mut tokio::process::Child) {
    kill_group(pgid, libc::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
}

struct Captured {
    excerpt: String,
    bytes: u64,
}

/// A job's log: its output (masked, capped) and stagegate's notes, across its tries. It
/// stays in memory while small and goes to its file only when [`JobLog::keep`] is called
/// (the job did not pass, or its output is more than its excerpt shows) or once it
/// outgrows memory; so a passing job with little output costs no file.
pub struct JobLog {
    path: PathBuf,
    sink: Sink,
    /// Whether stagegate added a note (a retry, a cut, a pipe held open).
    noted: bool,
}

enum Sink {
    /// Nothing written to the file yet: all of it is here.
    Memory(Vec<u8>),
    File(Writer),
    /// The file could not be written: keeping the log fails with this.
    Failed(std::io::Error),
}

/// A thread writing a log to its file. Output is read on the job runtime, which also fires
/// every job's timeout; a write can block for long (a disk busy taking a large artifact
/// into the store throttles every writer), so it happens here instead.
struct Writer {
    chunks: std::sync::mpsc::Sender<Vec<u8>>,
    done: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Writer {
    /// Open the log at `path` (see [`open_log`]) on a new thread, which writes `held`, then
    /// whatever it is sent.
    fn start(path: PathBuf, held: Vec<u8>) -> std::io::Result<Writer> {
        // Unbounded: sending never blocks, and the log's cap bounds what can queue up.
        let (chunks, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let done = std::thread::Builder::new()
            .name("stagegate-log".into())
            .spawn(move || {
                let mut f = open_log(&path, &held)?;
                drop(held);
                for chunk in rx {
                    f.write_all(&chunk)?;
                }
                f.flush()
            })?;
        Ok(Writer { chunks, done })
    }

    fn send(&self, bytes: &[u8]) {
        // Refused only once the thread stopped on an error, which `finish` returns.
        let _ = self.chunks.send(bytes.to_vec());
    }

    /// Wait until everything sent is in the file; the first error, if any.
    fn finish(self) -> std::io::Result<()> {
        drop(self.chunks);
        self.done
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the log writer thread panicked")))
    }
}

impl JobLog {
    /// An empty log that, if kept, is written to `path` (its directory made as needed).
    pub fn new(path: PathBuf) -> JobLog {
        JobLog {
            path,
            sink: Sink::Memory(Vec::new()),
            noted: false,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        match &mut self.sink {
            Sink::Memory(m) => {
                m.extend_from_slice(bytes);
                if m.len() > IN_MEMORY {
                    self.spill();
                }
            }
            Sink::File(w) => w.send(bytes),
            Sink::Failed(_) => {}
        }
    }

    /// Add a line from stagegate itself (between the tries of a job, for example).
    pub fn note(&mut self, text: &str) {
        self.noted = true;
        self.write(format!("[stagegate: {text}]\n").as_bytes());
    }

    /// Hand what memory holds, and from now on every write, to a thread writing the file.
    fn spill(&mut self) {
        if let Sink::Memory(held) = &mut self.sink {
            let held = std::mem::take(held);
            self.sink = match Writer::start(self.path.clone(), held) {
                Ok(w) => Sink::File(w),
                Err(e) => Sink::Failed(e),
            };
        }
    }

    /// Whether the log must be kept in a file for anyone to see all of it: it is more than
    /// output its excerpt shows whole (at most 20 lines and 4 KiB of UTF-8), or stagegate
    /// added a note to it.
    pub fn needs_file(&self) -> bool {
        match &self.sink {
            Sink::Memory(m) => {
                self.noted
                    || m.len() > EXCERPT_BYTES
                    || std::str::from_utf8(m).map_or(true, |t| t.lines().count() > EXCERPT_LINES)
            }
            Sink::File(_) | Sink::Failed(_) => true,
        }
    }

    /// Everything the log holds, as text (read back from its file if it outgrew memory).
    pub fn text(self) -> String {
        match self.sink {
            Sink::Memory(m) => String::from_utf8_lossy(&m).into_owned(),
            Sink::File(w) => {
                let _ = w.finish();
                std::fs::read(&self.path)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            }
            Sink::Failed(_) => String::new(),
        }
    }

    /// Write the log to its file and give its path, or say why it cannot be written. This
    /// writes (or waits for the writing of) the whole log: call it off the job runtime.
    pub fn keep(self) -> std::result::Result<PathBuf, (PathBuf, std::io::Error)> {
        let written = match self.sink {
            Sink::Memory(held) => open_log(&self.path, &held).and_then(|mut f| f.flush()),
            Sink::File(w) => w.finish(),
            Sink::Failed(e) => Err(e),
        };
        match written {
            Ok(()) => Ok(self.path),
            Err(e) => Err((self.path, e)),
        }
    }
}

/// The log file at `path` (its directory made as needed), opened to append, with `held`
/// written to it.
fn open_log(path: &Path, held: &[u8]) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut f = std::io::BufWriter::with_capacity(64 * 1024, f);
    f.write_all(held)?;
    Ok(f)
}

/// Add the output to `log` (a retry adds to the log of the tries before it), keeping the
/// first and last `cap / 2` bytes and saying what was cut between them.
///
/// Every byte goes through `masker` first. Reading ends at end of file, or once `stop`
/// fires and the pipe is empty (a process outside the job's group holds it open).
async fn capture(
    mut reader: tokio::process::ChildStdout,
    mut log: JobLog,
    cap: u64,
    mut masker: Masker,
    mut stop: oneshot::Receiver<()>,
) -> (Captured, JobLog) {
    let half = (cap / 2).max(1) as usize;
    let mut written = 0usize;
    // The end of what this try wrote to the log's head: the excerpt when nothing was cut.
    let mut recent: Vec<u8> = Vec::new();
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut total = 0u64;
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut stopping = false;
    let mut held_open = false;
    // Once told to stop, read at most this much more (a daemon may write forever).
    let mut after_stop = 1024 * 1024usize;
    let mut pending;
    loop {
        buf.clear();
        let read = if stopping {
            // Only what is there already.
            match tokio::time::timeout(Duration::ZERO, reader.read_buf(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    held_open = true;
                    break;
                }
            }
        } else {
            tokio::select! {
                biased;
                r = reader.read_buf(&mut buf) => r,
                _ = &mut stop => {
                    stopping = true;
                    continue;
                }
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if stopping {
            if after_stop == 0 {
                held_open = true;
                break;
            }
            after_stop = after_stop.saturating_sub(n);
        }
        let mut chunk = if masker.is_active() {
            pending = masker.feed(&buf[..n]);
            &pending[..]
        } else {
            &buf[..n]
        };
        total += chunk.len() as u64;
        if written < half {
            let take = chunk.len().min(half - written);
            log.write(&chunk[..take]);
            remember(&mut recent, &chunk[..take]);
            written += take;
            chunk = &chunk[take..];
        }
        let chunk = &chunk[chunk.len().saturating_sub(half)..];
        tail.extend(chunk);
        if tail.len() > half {
            tail.drain(..tail.len() - half);
        }
    }
    // What the masker still held back is the very end of the output.
    let rest = masker.finish();
    total += rest.len() as u64;
    if written < half && tail.is_empty() {
        let take = rest.len().min(half - written);
        log.write(&rest[..take]);
        remember(&mut recent, &rest[..take]);
        written += take;
        tail.extend(&rest[take..]);
    } else {
        tail.extend(&rest);
    }
    if tail.len() > half {
        tail.drain(..tail.len() - half);
    }
    let tail: Vec<u8> = tail.into();
    let cut = total.saturating_sub((written + tail.len()) as u64);
    if cut > 0 {
        log.noted = true;
        log.write(
            format!(
                "\n[stagegate: {cut} bytes of output cut here; the log keeps the first and last {half} bytes]\n"
            )
            .as_bytes(),
        );
    }
    log.write(&tail);
    // The excerpt: the last lines of whatever we kept last.
    let mut excerpt = excerpt_of(if tail.is_empty() { &recent } else { &tail });
    if held_open {
        let note = format!(
            "a process outside the job's process group still held its output open; reading stopped {}ms after the job ended",
            DRAIN.as_millis()
        );
        log.write(b"\n");
        log.note(&note);
        excerpt.push_str(&format!("\n[stagegate: {note}]"));
    }
    (
        Captured {
            excerpt,
            bytes: total,
        },
        log,
    )
}

/// Keep the last [`EXCERPT_BYTES`] of what `recent` and `more` hold, in `recent`.
fn remember(recent: &mut Vec<u8>, more: &[u8]) {
    recent.extend_from_slice(more);
    if recent.len() > EXCERPT_BYTES {
        recent.drain(..recent.len() - EXCERPT_BYTES);
    }
}

/// The excerpt holds at most this many bytes and lines of the end of the output.
const EXCERPT_BYTES: usize = 4096;
const EXCERPT_LINES: usize = 20;

/// At most the last 20 lines and 4 KiB, as text.
pub fn excerpt_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(EXCERPT_LINES);
    lines[from..].join("\n")
}

/// A fresh log path for one run of a job.
pub fn log_path(dir: &Path, key: &JobKey) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // One level of fan-out: a directory per key would cost an inode per job.
    dir.join(&key.as_str()[..2]).join(format!(
        "{key}-{}-{}.log",
        now.as_millis(),
        std::process::id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past [`IN_MEMORY`] the log goes to its file through the writer thread: all of it,
    /// in order, once kept.
    #[test]
    fn a_log_that_outgrows_memory_is_written_whole_and_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = JobLog::new(tmp.path().join("ab/job.log"));
        let mut want = Vec::new();
        for i in 0..3000 {
            let line = format!("line {i} {}\n", "x".repeat(500));
            log.write(line.as_bytes());
            want.extend_from_slice(line.as_bytes());
        }
        assert!(want.len() > IN_MEMORY);
        log.note("done");
        want.extend_from_slice(b"[stagegate: done]\n");
        let path = log.keep().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), want);
    }

    /// A log that outgrew memory and cannot be written says so when kept, as one that
    /// never did.
    #[test]
    fn a_log_that_outgrows_memory_into_an_unwritable_place_cannot_be_kept() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("logs"), "not a directory").unwrap();
        let mut log = JobLog::new(tmp.path().join("logs/ab/job.log"));
        log.write(&vec![b'x'; IN_MEMORY + 1]);
        log.write(b"more after the writer failed");
        let (path, _) = log.keep().unwrap_err();
        assert_eq!(path, tmp.path().join("logs/ab/job.log"));
    }
}
