//! The evidence stays what it was (DESIGN.md §4.16 (c) and (d), issue 26): the results
//! ledger only grows — a guarded remote refuses a rewind, a deletion or a rewritten record,
//! and `verify` finds a rewound ledger with no hook at all; an edited decision verifies
//! nowhere; a ref lock left by a killed process is cleared (a live one never is); and the
//! loser of a `cycle --push` race follows the remote whatever form the refusal takes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::{TestEnv, base_env, is_result_path};

const LEDGER: &str = "refs/stagegate/results";
const BOOT_TEST: &str =
    "name: boot\nuses: [components/xen, components/linux]\nrun: ./tests/boot.sh\n";
/// Boots everything except xen 2.
const BOOT: &str = "#!/bin/sh\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" = 2 ] && exit 1\nexit 0\n";

fn component(name: &str, version: &str) -> String {
    format!("name: {name}\nversion: \"{version}\"\n")
}

/// `staging` → `stable`, xen 1 and linux 1 on both, the `boot` test. HEAD on staging.
fn repo() -> TestEnv {
    TestEnv::init_with(&[
        ("components/xen.yaml", &component("xen", "1")),
        ("components/linux.yaml", &component("linux", "1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

fn bump(env: &TestEnv, name: &str, version: &str) -> String {
    env.commit_on(
        "staging",
        &format!("Bump {name} to {version}"),
        &[(
            &format!("components/{name}.yaml"),
            &component(name, version),
        )],
    )
}

/// `git push ARGS` from the state repository: whether it was accepted, and stderr.
fn push(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("git");
    base_env(&mut cmd, env.home());
    let out = cmd
        .arg("-C")
        .arg(&env.repo)
        .arg("push")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `git ARGS` on a scratch index of the state repository; trimmed stdout.
fn git_index(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(&env.repo)
        .args(args)
        .env("GIT_INDEX_FILE", env.home().join("scratch-index"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A guarded remote holding `env`'s stages, as `origin`.
fn guarded_remote(env: &TestEnv) -> std::path::PathBuf {
    let remote = env.bare_clone("remote.git");
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    env.sg_ok(&["hook", "install", "--pre-receive", remote.to_str().unwrap()]);
    remote
}

#[test]
fn a_guarded_remote_refuses_to_rewind_delete_or_rewrite_the_ledger() {
    let env = repo();
    let remote = guarded_remote(&env);
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    env.sg_ok(&["--remote", "origin", "promote", "--push"]);
    let tip = env.git_in(&remote, &["rev-parse", LEDGER]);
    assert_eq!(env.rev(LEDGER), tip);

    // A force-push to an older ledger commit.
    let (ok, err) = push(&env, &["-f", "origin", &format!("{tip}~1:{LEDGER}")]);
    assert!(!ok, "the rewind was accepted:\n{err}");
    assert!(
        err.contains("refusing to rewind the results ledger refs/stagegate/results"),
        "{err}"
    );
    assert!(err.contains("push again without --force"), "{err}");

    // A deletion.
    let (ok, err) = push(&env, &["origin", &format!(":{LEDGER}")]);
    assert!(!ok, "the deletion was accepted:\n{err}");
    assert!(
        err.contains("refusing to delete the results ledger refs/stagegate/results"),
        "{err}"
    );

    // A fast-forward whose commit rewrites one record and removes another.
    let paths = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    let results: Vec<&str> = paths.lines().filter(|p| is_result_path(p)).collect();
    assert!(results.len() >= 2, "{paths}");
    let (rewritten, removed) = (results[0], results[1]);
    let text = env.git(&["show", &format!("{LEDGER}:{rewritten}")]);
    let forged = text.replacen("verdict: pass", "verdict: fail", 1);
    assert_ne!(forged, text);
    let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], &forged);
    git_index(&env, &["read-tree", LEDGER]);
    git_index(
        &env,
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{blob},{rewritten}"),
        ],
    );
    git_index(&env, &["update-index", "--force-remove", removed]);
    let tree = git_index(&env, &["write-tree"]);
    let commit = env.git(&["commit-tree", &tree, "-p", &tip, "-m", "tidy the ledger"]);
    let (ok, err) = push(&env, &["origin", &format!("{commit}:{LEDGER}")]);
    assert!(!ok, "the rewrite was accepted:\n{err}");
    assert!(
        err.contains(&format!("it rewrites {rewritten}"))
            && err.contains(&format!(
                "it removes {}",
                removed.split('/').next().unwrap()
            )),
        "{err}"
    );
    assert!(err.contains("on refs/stagegate/results"), "{err}");
    assert_eq!(env.git_in(&remote, &["rev-parse", LEDGER]), tip);

    // Adding a record is what the ledger is for.
    let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], "a note\n");
    git_index(&env, &["read-tree", LEDGER]);
    git_index(
        &env,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("100644,{blob},notes/one.yaml"),
        ],
    );
    let tree = git_index(&env, &["write-tree"]);
    let commit = env.git(&["commit-tree", &tree, "-p", &tip, "-m", "add a note"]);
    let (ok, err) = push(&env, &["origin", &format!("{commit}:{LEDGER}")]);
    assert!(ok, "{err}");
}

/// The decision record a promotion commit adds, with its path.
fn decision_of(env: &TestEnv, commit: &str) -> (String, String) {
    let path = env.git(&[
        "diff-tree",
        "--no-commit-id",
        "--name-only",
        "-r",
        &format!("{commit}^"),
        commit,
        "--",
        ".stagegate/decisions/",
    ]);
    let text = env.git(&["show", &format!("{commit}:{path}")]);
    (path, text)
}

#[test]
fn verify_finds_a_rewound_or_deleted_ledger_without_any_hook() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let rests_on = env.rev(LEDGER);
    let (_, text) = decision_of(&env, "stable");
    let rec: serde_json::Value = stagegate::records::parse("record", text.as_bytes()).unwrap();
    assert_eq!(rec["format"], 2, "{text}");
    assert_eq!(rec["ledger"], rests_on.as_str(), "{text}");
    let out = env.sg_ok(&["verify"]);
    assert!(out.starts_with("ok   stable "), "{out}");

    // Rewound by one commit: what the promotion rests on is no longer in the ledger.
    env.git(&["update-ref", LEDGER, &format!("{rests_on}~1")]);
    let (out, _) = env.sg_code(1, &["verify"]);
    assert!(out.starts_with("FAIL stable "), "{out}");
    assert!(
        out.contains(&format!(
            "rests on ledger commit {rests_on}, which refs/stagegate/results"
        )) && out.contains("no longer contains: the ledger was rewound or replaced"),
        "{out}"
    );
    assert!(
        out.contains(&format!("git update-ref refs/stagegate/results {rests_on}")),
        "{out}"
    );

    // Deleted.
    env.git(&["update-ref", "-d", LEDGER]);
    let (out, _) = env.sg_code(1, &["verify"]);
    assert!(
        out.contains("but refs/stagegate/results does not exist: the ledger was deleted"),
        "{out}"
    );

    // Put back, it holds again.
    env.git(&["update-ref", LEDGER, &rests_on]);
    let out = env.sg_ok(&["verify"]);
    assert!(out.starts_with("ok   stable "), "{out}");
}

/// A commit like `commit` (same parents, same message) whose tree has `path` as `text`.
fn forge(env: &TestEnv, commit: &str, path: &str, text: &str) -> String {
    let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], text);
    git_index(env, &["read-tree", commit]);
    git_index(
        env,
        &[
            "update-index",
            "--cacheinfo",
            &format!("100644,{blob},{path}"),
        ],
    );
    let tree = git_index(env, &["write-tree"]);
    let message = env.git(&["log", "-1", "--format=%B", commit]);
    let parents = env.git(&["log", "-1", "--format=%P", commit]);
    let mut args = vec!["commit-tree", tree.as_str()];
    for p in parents.split_whitespace() {
        args.extend(["-p", p]);
    }
    args.extend(["-m", message.as_str()]);
    env.git(&args)
}

#[test]
fn an_edited_decision_is_refused_by_verify_and_by_a_guarded_remote() {
    let env = repo();
    let remote = guarded_remote(&env);
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    env.sg_ok(&["promote"]);
    let (ok, err) = push(&env, &["origin", "staging", LEDGER]);
    assert!(ok, "{err}");
    let head = env.rev("stable");
    let (path, record) = decision_of(&env, &head);
    let edits = [
        ("decided-by", edits_decided_by(&record)),
        (
            "a verdict",
            record.replacen("verdict: pass", "verdict: fail", 1),
        ),
    ];
    for (what, edited) in edits {
        assert_ne!(edited, record, "{what}");
        let forged = forge(&env, &head, &path, &format!("{edited}\n"));
        let (out, _) = env.sg_code(1, &["verify", &forged, "--stage", "stable"]);
        assert!(out.starts_with("FAIL stable "), "{what}: {out}");
        if what == "decided-by" {
            assert!(
                out.contains("Stagegate-Decided-By trailer says"),
                "the decider is named in the message too: {out}"
            );
        }
        let (ok, err) = push(&env, &["origin", &format!("{forged}:refs/heads/stable")]);
        assert!(!ok, "{what}: the forged decision was accepted:\n{err}");
        assert!(err.contains("refusing the push to stable"), "{what}: {err}");
    }
    // The real promotion goes through.
    let (ok, err) = push(&env, &["origin", "stable"]);
    assert!(ok, "{err}");
    assert_eq!(env.git_in(&remote, &["rev-parse", "stable"]), head);
}

/// `record` with another decider.
fn edits_decided_by(record: &str) -> String {
    record
        .lines()
        .map(|l| {
            if l.starts_with("decided-by: ") {
                "decided-by: mallory@elsewhere"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An empty lock file for ref `name` in `git_dir`, last written `age` ago.
fn lock_file(git_dir: &Path, name: &str, age: Duration) -> std::path::PathBuf {
    let path = git_dir.join(format!("{name}.lock"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
    path
}

#[test]
fn a_stale_ref_lock_left_by_a_killed_promote_is_cleared_and_said() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    let git_dir = env.repo.join(".git");
    let old = Duration::from_secs(20 * 60);
    let locks = [
        lock_file(&git_dir, "refs/heads/stable", old),
        lock_file(&git_dir, LEDGER, old),
    ];
    let (out, err) = env.sg_code(0, &["promote"]);
    assert!(
        out.contains("promoted components/linux as "),
        "{out}\n{err}"
    );
    for lock in &locks {
        assert!(!lock.exists(), "{} is still there", lock.display());
        assert!(
            err.contains(&format!("cleared the stale lock {}", lock.display())),
            "{err}"
        );
    }
    assert!(
        err.contains("left by a process killed while updating"),
        "{err}"
    );
    env.sg_ok(&["verify"]);
}

#[test]
fn a_fresh_ref_lock_is_left_alone_and_named() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    let before = env.rev("stable");
    let lock = lock_file(&env.repo.join(".git"), "refs/heads/stable", Duration::ZERO);
    let (_, err) = env.sg_code(3, &["promote"]);
    assert!(lock.exists(), "a live lock was removed");
    assert!(
        err.contains(&format!(
            "cannot update refs/heads/stable: it is locked by {}",
            lock.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("run the command again when it is done"),
        "{err}"
    );
    assert_eq!(env.rev("stable"), before);
    std::fs::remove_file(&lock).unwrap();
    env.sg_ok(&["promote"]);
}

#[test]
fn an_update_waits_for_a_lock_its_holder_lets_go_of() {
    let env = repo();
    bump(&env, "linux", "2");
    env.sg_ok(&["run"]);
    let lock = lock_file(&env.repo.join(".git"), "refs/heads/stable", Duration::ZERO);
    // The holder lets go 1.5 s on: promote meets the lock well before (it reaches the
    // update in a fraction of that) and must wait for it rather than give up.
    let child = env
        .sg_cmd(&["promote"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock_path = lock.clone();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::remove_file(&lock_path).unwrap();
    });
    holder.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("cannot update"), "{err}");
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", "stable"]),
        "Promote to stable: components/linux 1 -> 2"
    );
}

/// A runner's bare clone of `origin`, sharing `env`'s home.
fn runner(env: &TestEnv, origin: &Path, name: &str) -> TestEnv {
    let dir = env.home().join(name);
    env.git(&[
        "clone",
        "-q",
        "--bare",
        origin.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    TestEnv {
        tmp: tempfile::tempdir().unwrap(),
        repo: dir,
    }
}

#[test]
fn the_loser_of_a_cycle_push_race_follows_the_remote_when_the_refusal_is_a_held_lock() {
    let env = repo();
    bump(&env, "linux", "2");
    let origin = env.bare_clone("origin.git");
    let a = runner(&env, &origin, "a.git");
    let b = runner(&env, &origin, "b.git");
    a.sg_ok(&["--remote", "origin", "run", "--push"]);
    b.sg_ok(&["--remote", "origin", "run", "--push"]);
    // A promotes first; its push of `stable` is still being written on the remote when B's
    // arrives: the remote's ref is locked (B is told "failed to update ref" / "cannot lock
    // ref", and the remote has not moved yet), and a moment later it holds A's promotion.
    a.sg_ok(&["promote"]);
    a.git(&["push", "-q", "origin", "stable:refs/pending/stable"]);
    env.write_hook(
        &origin,
        "pre-receive",
        "#!/bin/sh\nunset GIT_QUARANTINE_PATH\ngrep -q ' refs/heads/stable$' || exit 0\n\
         p=$(git rev-parse -q --verify refs/pending/stable) || exit 0\n\
         git update-ref -d refs/pending/stable\n\
         echo \"$p\" > refs/heads/stable.lock\n\
         (sleep 1; mv refs/heads/stable.lock refs/heads/stable) >/dev/null 2>&1 </dev/null &\n\
         exit 0\n",
    );
    let out = b
        .sg_cmd(&["--remote", "origin", "cycle", "--push"])
        .env("GIT_COMMITTER_NAME", "Runner B")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        err.contains("stable on origin moved") && err.contains("planning again"),
        "{err}"
    );
    let on_origin = env.git_in(&origin, &["rev-parse", "stable"]);
    assert_eq!(on_origin, a.rev("stable"), "A's promotion is on the remote");
    assert_eq!(b.rev("stable"), on_origin, "B's stable follows the remote");
    assert!(!origin.join("refs/heads/stable.lock").exists());
}
