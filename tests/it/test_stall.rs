//! A build storing its artifact never stalls the other jobs (DESIGN §7): while the store is
//! busy, their output is captured and their timeouts fire on time.
//!
//! The store is a real registry behind a relay that answers nothing until the other job's
//! timeout has ended it (its shell is gone), or until a limit far past that timeout. So the
//! store is busy at the other job's deadline however fast or loaded the machine is, and a
//! runner that stores on its job runtime fires that timeout only at the limit.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use stagegate::ledger::{ResultRecord, Verdict};

use crate::common::TestEnv;
use crate::registry::Registry;
use crate::test_run::{XEN_1, XEN_2, ledger, scratch};

/// The other job's timeout.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the relay holds the store at most: what a stalled timeout would last.
const HOLD: Duration = Duration::from_secs(30);
/// How late the timeout may end the job: its process group gets SIGTERM and exits, which
/// takes well under this even on a loaded machine, and far less than `HOLD`.
const LATE: Duration = Duration::from_secs(2);

#[test]
fn a_slow_store_never_delays_another_jobs_timeout_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else {
        return;
    };
    let evidence = scratch();
    let d = evidence.path().display();
    let pid = evidence.path().join("pid");
    let hangs_ended = move || {
        std::fs::read_to_string(&pid)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    let relay = gated_relay(&registry.addr, hangs_ended, HOLD);
    let pipeline = format!(
        "version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [build, test]}}\nartifacts: {{store: \"oci://{relay}/stall\"}}\n"
    );
    let disk = |v: &str| {
        format!(
            "name: disk\nversion: \"{v}\"\nbuild:\n  run: ./build.sh\n  artifact: disk.img\n  lock: disk.lock\n"
        )
    };
    // The build ends once the other job runs, so that its store starts within that job's
    // timeout.
    let build = format!(
        "#!/bin/sh\necho \"disk $STAGEGATE_VERSION\" > \"$STAGEGATE_OUT/disk.img\"\necho 'pkg 1' > \"$STAGEGATE_OUT/disk.lock\"\nuntil [ -e {d}/started ]; do sleep 0.05; done\n"
    );
    let test = format!(
        "name: hangs\nuses: [components/xen]\nrun: ./hangs.sh\ntimeout: {}s\n",
        TIMEOUT.as_secs()
    );
    // Its shell's pid tells the relay when the timeout has ended it. (Not a TERM trap:
    // dash, reading a script, can end on SIGTERM without running its trap.)
    let hangs = format!(
        "#!/bin/sh\necho output-before-hanging\necho $$ > {d}/pid\ntouch {d}/started\nsleep 300 &\nwait\n"
    );
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", pipeline.as_str()),
        ("images/disk.yaml", disk("1").as_str()),
        ("build.sh", build.as_str()),
        ("components/xen.yaml", XEN_1),
        ("tests/hangs.yaml", test.as_str()),
        ("hangs.sh", hangs.as_str()),
    ]);
    env.commit_on(
        "staging",
        "Bump disk and xen",
        &[
            ("images/disk.yaml", disk("2").as_str()),
            ("components/xen.yaml", XEN_2),
        ],
    );

    // The timeout is an `error`: exit 3.
    let started = Instant::now();
    env.sg_code(3, &["run", "--jobs", "2"]);
    let run_took = started.elapsed();

    let records = ledger(&env);
    let find = |name: &str| -> &ResultRecord {
        records
            .values()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("a result for {name} in {records:#?}"))
    };
    let hangs = find("hangs");
    assert_eq!(hangs.verdict, Verdict::Error, "{hangs:#?}");
    let reason = hangs.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("timed out after 2s"), "{reason}");
    assert!(
        hangs.excerpt.contains("output-before-hanging"),
        "its output was captured: {hangs:#?}"
    );
    let took = Duration::from_millis(hangs.duration_ms);
    assert!(
        took >= TIMEOUT && took < TIMEOUT + LATE,
        "the timeout of {TIMEOUT:?} ended the job after {took:?}: it waited for the store of the build"
    );
    // The relay let the store through once the job had ended, not at its limit: the store
    // really was busy until the job's timeout.
    assert!(
        run_took < HOLD / 2,
        "the run took {run_took:?}: the relay held the store to its limit"
    );

    // The build's result is what storing it says, and the registry has the blob.
    let build = find("images/disk");
    assert_eq!(build.verdict, Verdict::Pass, "{build:#?}");
    let artifact = build.artifact.as_ref().expect("the build's artifact");
    let hex = hex::encode(Sha256::digest(b"disk 2\n"));
    assert_eq!(artifact.digest, format!("sha256:{hex}"));
    assert_eq!(artifact.size, 7);
    assert_eq!(
        artifact.location,
        format!("oci://{relay}/stall@sha256:{hex}")
    );
    assert_eq!(artifact.lock.as_deref(), Some("pkg 1\n"));
    let blob = blob_path(&dir.path().join("data"), &hex);
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        b"disk 2\n",
        "{}",
        blob.display()
    );
    // The job's log went to the store too, once the relay let it through.
    let log = hangs.log.as_deref().unwrap_or_default();
    assert!(
        log.starts_with(&format!("oci://{relay}/stall@sha256:")),
        "{log}"
    );
}

/// Where Debian's `docker-registry`, storing under `data`, keeps the blob `hex`.
fn blob_path(data: &Path, hex: &str) -> PathBuf {
    data.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// A TCP relay to `upstream` on a port of its own (returned as `127.0.0.1:PORT`) that holds
/// every connection until `open()` says so, or `limit` has passed since it started: a
/// registry that is slow to answer.
fn gated_relay(
    upstream: &str,
    open: impl Fn() -> bool + Clone + Send + 'static,
    limit: Duration,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let until = Instant::now() + limit;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let (upstream, open) = (upstream.clone(), open.clone());
            std::thread::spawn(move || {
                // Polls for an event, bounded: not a guess at how long anything takes.
                while !open() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Ok(server) = TcpStream::connect(&upstream) {
                    relay(client, server);
                }
            });
        }
    });
    addr
}

/// Copy bytes both ways between `a` and `b` until each side has closed.
fn relay(a: TcpStream, b: TcpStream) {
    let (mut a_in, mut b_out) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let there = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a_in, &mut b_out);
        let _ = b_out.shutdown(Shutdown::Write);
    });
    let (mut b_in, mut a_out) = (b, a);
    let _ = std::io::copy(&mut b_in, &mut a_out);
    let _ = a_out.flush();
    let _ = a_out.shutdown(Shutdown::Write);
    let _ = there.join();
}
