//! The ledger on disk: what a run leaves in `objects/pack`, so that git's own housekeeping
//! (`git gc --auto`) keeps a repository that records results for years in shape.

use crate::common::TestEnv;
use crate::test_run::{ledger, repo_with_tests, scratch};

/// The packs and keep files in the repository's object store.
fn pack_files(env: &TestEnv) -> (usize, usize) {
    let dir = env.repo.join(".git/objects/pack");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let count = |ext: &str| names.iter().filter(|n| n.ends_with(ext)).count();
    (count(".pack"), count(".keep"))
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
