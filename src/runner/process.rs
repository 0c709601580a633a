//! Running one command: its own process group, a timeout that kills the whole group,
//! output merged into a log capped to its head and tail, and cancellation.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::mask::{Masker, Secrets};

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
}

pub struct Spec<'a> {
    pub run: &'a str,
    pub cwd: &'a Path,
    /// The whole environment: nothing of the runner's own is inherited.
    pub env: &'a [(String, String)],
    /// Values masked in the log and the excerpt.
    pub secrets: &'a Secrets,
    pub timeout: Duration,
    pub log: &'a Path,
    /// Bytes of output kept per try: half from the start, half from the end.
    pub log_cap: u64,
}

/// How long a process group gets between SIGTERM and SIGKILL on timeout.
const GRACE: Duration = Duration::from_secs(3);

/// How long output is still read after the job's process group is gone. Only a process
/// that left the group (`setsid`, a daemon) can hold the output open longer; reading
/// stops then, keeping everything the job wrote.
pub const DRAIN: Duration = Duration::from_millis(500);

pub async fn run(spec: Spec<'_>, mut cancel: watch::Receiver<bool>) -> Finished {
    let start = Instant::now();
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return spawn_failed(start, format!("cannot create a pipe: {e}")),
    };
    let writer2 = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return spawn_failed(start, format!("cannot create a pipe: {e}")),
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
    let spawned = cmd.spawn();
    // Close our copies of the write end, so the reader sees EOF when the group is gone.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return spawn_failed(start, format!("cannot start /bin/sh: {e}")),
    };
    let pgid = child.id().map(|p| p as i32);

    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let log_path = spec.log.to_path_buf();
    let cap = spec.log_cap;
    let masker = Masker::new(spec.secrets.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let stop_reading = stop.clone();
    std::thread::spawn(move || {
        let _ = tx.send(capture(reader, &log_path, cap, masker, &stop_reading));
    });

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
    let captured = match tokio::time::timeout(DRAIN, &mut rx).await {
        Ok(c) => c.ok(),
        Err(_) => {
            // Someone outside the group holds the pipe: take what is there and stop.
            stop.store(true, Ordering::Relaxed);
            rx.await.ok()
        }
    };
    let captured = captured.unwrap_or(Captured {
        excerpt: "[stagegate: the job's output could not be read]".into(),
        bytes: 0,
    });
    Finished {
        ended,
        duration,
        excerpt: captured.excerpt,
        bytes: captured.bytes,
    }
}

/// Resolves once the run is cancelled (never, if the sender is gone without cancelling).
pub async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn spawn_failed(start: Instant, why: String) -> Finished {
    Finished {
        ended: Ended::SpawnFailed(why.clone()),
        duration: start.elapsed(),
        excerpt: why,
        bytes: 0,
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

/// Append a line from stagegate itself to a job's log (between the tries of a job).
pub fn note(log: &Path, text: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "[stagegate: {text}]");
    }
}

/// Append the output to `log` (a retry adds to the log of the tries before it), keeping
/// the first and last `cap / 2` bytes and saying what was cut between them.
///
/// Every byte goes through `masker` first. Reading ends at end of file, or once `stop` is
/// set and the pipe is empty (a process outside the job's group holds it open).
fn capture(
    mut reader: std::io::PipeReader,
    log: &Path,
    cap: u64,
    mut masker: Masker,
    stop: &AtomicBool,
) -> Captured {
    let half = (cap / 2).max(1) as usize;
    let fd = reader.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; O_NONBLOCK only changes how read waits.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ok();
    // Where this try's output starts in the log.
    let start = file
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map_or(0, |m| m.len());
    let mut file = file.map(std::io::BufWriter::new);
    let mut written = 0usize;
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut held_open = false;
    // Once told to stop, read at most this much more (a daemon may write forever).
    let mut after_stop = 1024 * 1024usize;
    let mut pending;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, if stopping { 0 } else { 100 }) };
        if ready == 0 {
            if stopping {
                held_open = true;
                break;
            }
            continue;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
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
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(&chunk[..take]);
            }
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
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(&rest[..take]);
        }
        written += take;
        tail.extend(&rest[take..]);
    } else {
        tail.extend(&rest);
    }
    if tail.len() > half {
        tail.drain(..tail.len() - half);
    }
    let tail_ordered: Vec<u8> = tail.into();
    let cut = total.saturating_sub((written + tail_ordered.len()) as u64);
    if let Some(f) = file.as_mut() {
        if cut > 0 {
            let _ = write!(
                f,
                "\n[stagegate: {cut} bytes of output cut here; the log keeps the first and last {half} bytes]\n"
            );
        }
        let _ = f.write_all(&tail_ordered);
        let _ = f.flush();
    }
    // The excerpt: the last lines of whatever we kept last.
    let last: &[u8] = if tail_ordered.is_empty() {
        &[]
    } else {
        &tail_ordered
    };
    let source = if last.is_empty() {
        read_head(log, start, written)
    } else {
        last.to_vec()
    };
    let mut excerpt = excerpt_of(&source);
    if held_open {
        let note = format!(
            "[stagegate: a process outside the job's process group still held its output open; reading stopped {}ms after the job ended]",
            DRAIN.as_millis()
        );
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "\n{note}");
            let _ = f.flush();
        }
        excerpt.push('\n');
        excerpt.push_str(&note);
    }
    Captured {
        excerpt,
        bytes: total,
    }
}

/// The `len` bytes of `log` from `start`: the output of one try, when it was all kept.
fn read_head(log: &Path, start: u64, len: usize) -> Vec<u8> {
    use std::io::{Seek, SeekFrom};
    let mut v = Vec::new();
    if let Ok(mut f) = std::fs::File::open(log)
        && f.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = f.take(len as u64).read_to_end(&mut v);
    }
    v
}

/// At most the last 20 lines and 4 KiB, as text.
pub fn excerpt_of(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(4096);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    lines[from..].join("\n")
}

/// A fresh log path for one run of a job.
pub fn log_path(dir: &Path, key: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // One level of fan-out: a directory per key would cost an inode per job.
    dir.join(&key[..2]).join(format!(
        "{key}-{}-{}.log",
        now.as_millis(),
        std::process::id()
    ))
}
