//! The ledger on disk: what a run leaves in `objects/pack`, so that git's own housekeeping
//! (`git gc --auto`) keeps a repository that records results for years in shape.

use crate::common::TestEnv;
use crate::test_run::{key_of, ledger, repo_with_tests, scratch};

/// The packs and keep files in the repository's object store.
fn pack_files(env: &TestEnv) -> (usize, usize) {
    let dir = env.repo.join(".git/objects/pack");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // A cruft pack (git gc's pack of unreachable objects, waiting for their expiry: its
    // `.mtimes` beside it) holds nothing the ledger reaches; a run whose ref update lost a
    // race on a loaded machine leaves such objects, and gc puts them there.
    let cruft = |n: &&String| {
        n.strip_suffix(".pack")
            .is_some_and(|stem| names.contains(&format!("{stem}.mtimes")))
    };
    let packs = names
        .iter()
        .filter(|n| n.ends_with(".pack"))
        .filter(|n| !cruft(n))
        .count();
    (packs, names.iter().filter(|n| n.ends_with(".keep")).count())
}

#[test]
fn a_run_recording_in_several_commits_leaves_one_pack_and_no_keep_file() {
    let dir = scratch();
    let d = dir.path().display();
    // Each job waits until the results of the jobs before it are committed, so that every
    // result lands in a commit (and a pack) of its own.
    let script = format!(
        "#!/bin/sh\nn=$(cat {d}/done 2>/dev/null || echo 0)\n\
         until [ \"$(git -C \"$(cat {d}/repo)\" ls-tree -r --name-only refs/stagegate/results 2>/dev/null | wc -l)\" -ge \"$n\" ]; do sleep 0.01; done\n\
         echo $((n + 1)) > {d}/done\n"
    );
    let env = repo_with_tests(&[("a", "", &script), ("b", "", &script), ("c", "", &script)]);
    std::fs::write(dir.path().join("repo"), env.repo.display().to_string()).unwrap();
    let (packs_before, _) = pack_files(&env);
    env.sg_ok(&["run", "-j", "1"]);
    let commits = env.git(&["rev-list", "--count", "refs/stagegate/results"]);
    assert_eq!(commits.trim(), "3", "each result in a commit of its own");
    let (packs, keeps) = pack_files(&env);
    assert_eq!(
        packs - packs_before,
        1,
        "one pack for the run's three commits"
    );
    assert_eq!(keeps, 0, "a kept pack is one `git gc` never folds");
    // Every result is still there, and the repository is whole.
    assert_eq!(ledger(&env).len(), 3);
    env.git(&["fsck", "--no-dangling"]);
}

/// A `git` first on PATH that notes each `gc` it is asked for, then runs git.
fn git_noting_gc(dir: &std::path::Path) -> String {
    let real = crate::common::which("git").expect("git on PATH");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = gc ] && echo gc >> {}/gc-log; done\nexec {} \"$@\"\n",
            dir.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn git_gc_is_started_only_when_it_has_packs_to_fold() {
    let dir = scratch();
    let path = git_noting_gc(dir.path());
    let env = repo_with_tests(&[("a", "", "#!/bin/sh\nexit 0\n")]);
    let log = dir.path().join("gc-log");
    // A few packs, far below gc.autoPackLimit: nothing for git to do, and it is not asked.
    let out = env.sg_cmd(&["run"]).env("PATH", &path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!log.exists(), "git gc was started with nothing to fold");
    // More packs than the limit: git folds them.
    env.git(&["config", "gc.autoPackLimit", "1"]);
    env.git(&["repack", "-q"]);
    let (packs, _) = pack_files(&env);
    assert!(packs >= 1);
    let key = key_of(&env, "a");
    let out = env
        .sg_cmd(&["run", "--rerun", &key])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "gc\n");
    let (packs, keeps) = pack_files(&env);
    assert_eq!((packs, keeps), (1, 0), "git gc folded the packs into one");
    assert_eq!(ledger(&env).len(), 2);
}
