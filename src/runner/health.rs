//! Health tests of host labels (`labels: {kvm: {health: ./tests/kvm-health.sh, every: 1h}}`,
//! DESIGN §4.18): before a runner takes jobs that need a label it offers, it runs the
//! label's health test — at most once per `every`, the answer kept in the git directory —
//! and holds back a label whose test fails ([`Offers::unhealthy`]). A failing health test is
//! a fact about the runner, recorded with its heartbeat (`crate::runners`): never a job
//! result, never an `error` or a `fail` of any candidate.
//!
//! The test is the one the last stage's pipeline names, read from that stage's commit (the
//! rules come from T), and runs in a temporary directory holding its script. It never
//! prints.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::offers::Offers;
use crate::manifest::{Pipeline, script_of};
use crate::repo::Repo;

/// The longest a health test may take; longer is a failure.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The last answer of one label's health test on this runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    run: String,
    at: i64,
    ok: bool,
    #[serde(default)]
    why: String,
}

fn kept_path(repo: &Repo, label: &str) -> std::path::PathBuf {
    repo.git_dir()
        .join("stagegate/health")
        .join(format!("{label}.yaml"))
}

/// Run (or reuse, within its interval) the health test of every label `offers` has and
/// `pipeline` gives one, marking those that fail unhealthy. `commit` is where the test's
/// script is read from (the last stage's head).
pub fn check(
    repo: &Repo,
    pipeline: &Pipeline,
    commit: Option<gix::ObjectId>,
    offers: &mut Offers,
    now: i64,
) {
    for (label, policy) in &pipeline.labels {
        let Some(run) = &policy.health else { continue };
        if !offers.labels.contains(label) {
            continue;
        }
        let path = kept_path(repo, label);
        let kept: Option<Kept> = std::fs::read(&path)
            .ok()
            .and_then(|b| crate::records::parse(&path.display().to_string(), &b).ok());
        let fresh = kept
            .as_ref()
            .filter(|k| &k.run == run && now >= k.at && now - k.at < policy.every.as_secs() as i64);
        let answer = match fresh {
            Some(k) => k.clone(),
            None => {
                let (ok, why) = match run_test(repo, commit, run) {
                    Ok(()) => (true, String::new()),
                    Err(why) => (false, why),
                };
                let k = Kept {
                    run: run.clone(),
                    at: now,
                    ok,
                    why,
                };
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = std::fs::write(&path, crate::records::to_yaml(&k));
                k
            }
        };
        if !answer.ok {
            offers.unhealthy.insert(
                label.clone(),
                format!(
                    "health test `{run}` failed at {}: {}",
                    crate::records::rfc3339(answer.at),
                    answer.why
                ),
            );
        }
    }
}

/// Run `run` with its script from `commit` in a temporary directory: `Err` says why it
/// failed (its exit status and the last line it printed).
fn run_test(repo: &Repo, commit: Option<gix::ObjectId>, run: &str) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("stagegate-health-")
        .tempdir()
        .map_err(|e| format!("cannot make a directory to run it in: {e}"))?;
    if let Some(script) = script_of(run) {
        let bytes = commit
            .and_then(|c| repo.tree_of(c).ok())
            .and_then(|t| repo.read(t, script).ok().flatten())
            .ok_or_else(|| format!("{script} is not in the last stage's commit"))?;
        write_script(dir.path(), script, &bytes)
            .map_err(|e| format!("cannot write {script}: {e}"))?;
    }
    // Output goes to a file, not a pipe: a chatty test must not block on a full pipe.
    let log_path = dir.path().join(".health.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot log it: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("cannot log it: {e}"))?;
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(run)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start it: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < HEALTH_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it took longer than {}",
                    humantime::format_duration(HEALTH_TIMEOUT)
                ));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()).into_owned();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect::<String>();
    let code = status
        .code()
        .map_or("was killed by a signal".to_string(), |c| {
            format!("exited {c}")
        });
    Err(if last.is_empty() {
        code
    } else {
        format!("{code}: {last}")
    })
}

fn write_script(dir: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, bytes)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
}
