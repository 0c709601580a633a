//! The runner as a boundary (DESIGN.md §4.12, §4.13): what a job sees, what a hostile tree
//! can do, what an infrastructure failure becomes, and what reaches the Actions log.

use std::process::Stdio;

use stagegate::ledger::Verdict;

use crate::common::TestEnv;
use crate::test_run::{
    GOOD_BUILD, XEN_1, XEN_2, ledger, only_record, read_pid, repo_with_build, repo_with_test,
    repo_with_tests, scratch, test_yaml, wait_until,
};

const TOKEN: &str = "ghs_TOOLTOKEN0123456789abcdef";
const APP_TOKEN: &str = "ghs_APPTOKEN9876543210fedcba";
const DEPLOY_KEY: &str = "deploy-key-5ec7e7-value";

/// A repository whose pipeline passes `PASSED_VAR` and the secret `DEPLOY_KEY` to jobs,
/// and a test `t` (over `components/xen`, bumped on staging) that runs `script`.
fn repo_with_env_pipeline(script: &str) -> TestEnv {
    let pipeline = "version: 1\nstages: [staging, stable]\ngates:\n  stable: {require: [test]}\nenv:\n  pass: [PASSED_VAR]\n  secret: [DEPLOY_KEY]\n";
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", pipeline),
        ("components/xen.yaml", XEN_1),
        (
            "tests/t.yaml",
            &test_yaml("t", "components/xen", "t.sh", ""),
        ),
        ("tests/t.sh", script),
    ]);
    env.commit_on("staging", "Bump xen", &[("components/xen.yaml", XEN_2)]);
    env
}

/// Everything the ledger ref holds, every version of every record: `git log -p`.
fn whole_ledger_history(env: &TestEnv) -> String {
    env.git(&["log", "-p", "refs/stagegate/results"])
}

#[test]
fn a_job_running_env_sees_only_what_the_pipeline_passes_and_no_token_is_recorded() {
    // The job prints its whole environment and the secret, then fails (so the excerpt
    // is also echoed as a failure).
    let env = repo_with_env_pipeline("#!/bin/sh\nenv\necho \"key is $DEPLOY_KEY\"\nexit 1\n");
    let out = env
        .sg_cmd(&["run"])
        .env("GITHUB_TOKEN", TOKEN)
        .env("STAGEGATE_GITHUB_APP_TOKEN", APP_TOKEN)
        .env("GITHUB_OUTPUT", "/tmp/should-not-reach-the-job")
        .env("UNLISTED_VAR", "unlisted-value")
        .env("PASSED_VAR", "passed-value")
        .env("DEPLOY_KEY", DEPLOY_KEY)
        .env("LC_TIME", "C")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Fail);
    let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
    for text in [&r.excerpt, &log] {
        assert!(text.contains("PASSED_VAR=passed-value"), "{text}");
        assert!(text.contains("LC_TIME=C"), "{text}");
        assert!(text.contains("STAGEGATE_JOB="), "{text}");
        assert!(text.contains("DEPLOY_KEY=***"), "{text}");
        assert!(text.contains("key is ***"), "{text}");
        for hidden in [
            "UNLISTED_VAR",
            "GITHUB_TOKEN",
            "GITHUB_OUTPUT",
            "STAGEGATE_GITHUB_APP_TOKEN",
        ] {
            assert!(!text.contains(hidden), "{hidden} reached the job:\n{text}");
        }
    }
    let everything = format!(
        "{}{}{}{}",
        whole_ledger_history(&env),
        log,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [TOKEN, APP_TOKEN, DEPLOY_KEY] {
        assert!(
            !everything.contains(secret),
            "{secret} was written somewhere"
        );
    }
}

#[test]
fn a_token_printed_by_a_job_is_masked_even_when_split_across_writes() {
    // The job never sees the token; it prints the same characters in pieces, as a test that
    // got hold of it some other way would.
    let (a, b) = TOKEN.split_at(9);
    // More lines than an excerpt holds, so that the log is kept in a file too.
    let script =
        format!("#!/bin/sh\nseq 30\nprintf '%s' 'got {a}'\nsleep 0.2\nprintf '%s\\n' '{b} end'\n");
    let env = repo_with_test("", &script);
    let out = env
        .sg_cmd(&["run"])
        .env("GITHUB_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let (_, r) = only_record(&env);
    assert!(r.excerpt.ends_with("\n30\ngot *** end"), "{}", r.excerpt);
    let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
    assert!(log.contains("got *** end") && !log.contains(TOKEN), "{log}");
}

#[test]
fn check_refuses_passing_the_tools_own_token_or_a_bad_name_to_jobs() {
    let env = TestEnv::init_with(&[]);
    env.write(
        "stagegate.yaml",
        "version: 1\nstages: [staging, stable]\nenv:\n  pass: [GITHUB_TOKEN, 'not a name']\n  secret: [PATH]\n",
    );
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("stagegate.yaml:4:10")
            && err.contains("GITHUB_TOKEN, stagegate's own credential"),
        "{err}"
    );
    assert!(
        err.contains("\"not a name\" is not a variable name"),
        "{err}"
    );
    assert!(
        err.contains("stagegate.yaml:5:12") && err.contains("PATH, which stagegate sets"),
        "{err}"
    );
}

#[test]
fn check_refuses_retries_and_timeouts_past_their_limits_and_names_the_limit() {
    let env = TestEnv::init_with(&[
        ("components/xen.yaml", XEN_1),
        (
            "tests/t.yaml",
            &test_yaml(
                "t",
                "components/xen",
                "t.sh",
                "retries: 4294967295\ntimeout: 30d\n",
            ),
        ),
        ("tests/t.sh", "#!/bin/sh\n"),
        (
            "images/disk.yaml",
            "name: disk\nversion: \"1\"\nbuild: {run: ./b.sh, artifact: d, timeout: 8d}\n",
        ),
    ]);
    let (_, err) = env.sg_code(1, &["check"]);
    assert!(
        err.contains("tests/t.yaml:4:10")
            && err.contains("`retries` is 4294967295; a test may retry at most 10 times"),
        "{err}"
    );
    assert!(
        err.contains("tests/t.yaml:5:10")
            && err.contains("`timeout` is 30days; a job may run for at most 7days"),
        "{err}"
    );
    assert!(
        err.contains("images/disk.yaml:3") && err.contains("`build.timeout` is 8days"),
        "{err}"
    );
}

/// A tree holding a symlink `zz-x` to a path outside, and a regular file `zz-x`: git fsck
/// calls it duplicateEntries, `git mktree` makes it, and a default bare remote accepts it.
#[test]
fn a_tree_with_a_duplicate_entry_is_an_error_naming_it_and_writes_nothing_outside() {
    let outside = scratch();
    let target = outside.path().join("pwned");
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    let link = env.git_stdin(&["hash-object", "-w", "--stdin"], target.to_str().unwrap());
    let file = env.git_stdin(
        &["hash-object", "-w", "--stdin"],
        "written through the link\n",
    );
    // On the target stage: a job whose test did not change runs in T's tree.
    let mut listing = env.git(&["ls-tree", "stable"]);
    listing.push_str(&format!(
        "\n120000 blob {link}\tzz-x\n100644 blob {file}\tzz-x\n"
    ));
    let tree = env.git_stdin(&["mktree"], &listing);
    let commit = env.git(&["commit-tree", &tree, "-p", "stable", "-m", "Crafted tree"]);
    // A default bare remote takes it: nothing upstream stops such a tree.
    let remote = env.bare_clone("remote.git");
    env.git(&[
        "push",
        "-q",
        remote.to_str().unwrap(),
        &format!("{commit}:refs/heads/stable"),
    ]);
    env.git(&["update-ref", "refs/heads/stable", &commit]);

    let (out, _) = env.sg_code(3, &["run"]);
    assert!(!target.exists(), "the checkout wrote through the symlink");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Error);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("\"zz-x\"") && reason.contains("appears twice"),
        "{reason}"
    );
    assert!(out.contains("zz-x"), "{out}");
}

#[test]
fn a_tree_entry_named_dot_dot_or_dot_git_is_refused() {
    for name in ["..", ".git", ".GIT"] {
        let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
        let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], "x\n");
        // `git mktree` refuses these names; write the tree object byte by byte.
        let mut raw = Vec::new();
        for line in env.git(&["ls-tree", "stable"]).lines() {
            let (meta, n) = line.split_once('\t').unwrap();
            let parts: Vec<&str> = meta.split(' ').collect();
            let mode = parts[0].trim_start_matches('0');
            raw.extend_from_slice(format!("{mode} {n}\0").as_bytes());
            raw.extend(hex::decode(parts[2]).unwrap());
        }
        raw.extend_from_slice(format!("100644 {name}\0").as_bytes());
        raw.extend(hex::decode(&blob).unwrap());
        let tree = env.git_stdin_bytes(
            &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
            &raw,
        );
        let commit = env.git(&["commit-tree", &tree, "-p", "stable", "-m", "Crafted"]);
        env.git(&["update-ref", "refs/heads/stable", &commit]);
        env.sg_code(3, &["run"]);
        let (_, r) = only_record(&env);
        assert_eq!(r.verdict, Verdict::Error, "{name}");
        assert!(
            r.reason.as_deref().unwrap().contains(&format!("{name:?}")),
            "{name}: {:?}",
            r.reason
        );
    }
}

#[test]
fn an_unwritable_artifact_store_is_an_error_retried_by_the_next_run() {
    let env = repo_with_build(GOOD_BUILD, &[]);
    // Running as root, permissions stop nothing: a file where the store's directory
    // should be does.
    let store = env.repo.join(".git/stagegate/artifacts");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::write(&store, "not a directory").unwrap();
    let (out, _) = env.sg_code(3, &["run"]);
    let build = ledger(&env)
        .into_values()
        .find(|r| r.kind == "build")
        .unwrap();
    assert_eq!(build.verdict, Verdict::Error);
    let reason = build.reason.unwrap();
    assert!(
        reason.contains("storing its artifact failed") && reason.contains("fix the artifact store"),
        "{reason}"
    );
    assert!(out.contains("storing its artifact failed"), "{out}");

    std::fs::remove_file(&store).unwrap();
    // The next run after the error's backoff (5 minutes by default) retries it.
    let later = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .to_string();
    let out = env
        .sg_cmd(&["run"])
        .env("STAGEGATE_NOW", &later)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(!out.contains("nothing to run"), "{out}");
    let builds: Vec<Verdict> = ledger(&env)
        .into_values()
        .filter(|r| r.kind == "build")
        .map(|r| r.verdict)
        .collect();
    assert!(builds.contains(&Verdict::Pass), "{builds:?}");
}

#[test]
fn an_unwritable_log_directory_is_an_error_saying_what_to_fix() {
    // Output the excerpt cannot hold whole, so the log must be written.
    let env = repo_with_test("", "#!/bin/sh\nseq 100\nexit 0\n");
    let logs = env.repo.join(".git/stagegate/logs");
    std::fs::create_dir_all(logs.parent().unwrap()).unwrap();
    std::fs::write(&logs, "not a directory").unwrap();
    env.sg_code(3, &["run"]);
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Error);
    let reason = r.reason.unwrap();
    assert!(
        reason.contains("cannot write the job's log") && reason.contains("writable"),
        "{reason}"
    );
    std::fs::remove_file(&logs).unwrap();
    env.sg_ok(&["run"]);
}

/// Job output in GitHub Actions: every workflow command in it stays inert.
#[test]
fn job_output_echoed_to_the_actions_log_is_fenced_from_workflow_commands() {
    let script = "#!/bin/sh\necho '::add-mask::hello'\necho '::endgroup::'\necho '::error title=forged::pwned'\necho '::stop-commands::guess'\nexit 1\n";
    let env = repo_with_test("", script);
    let out = env
        .sg_cmd(&["run"])
        .env("GITHUB_ACTIONS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Walk the log as the Actions runner does: commands stop between `::stop-commands::T`
    // and `::T::`.
    let mut fence: Option<String> = None;
    let mut fenced_lines = Vec::new();
    for line in stdout.lines() {
        match &fence {
            Some(t) if line == format!("::{t}::") => fence = None,
            Some(_) => fenced_lines.push(line.to_string()),
            None => {
                if let Some(t) = line.strip_prefix("::stop-commands::") {
                    assert!(t.len() >= 32, "a guessable token {t:?}");
                    assert_ne!(t, "guess");
                    fence = Some(t.to_string());
                    continue;
                }
                for forged in [
                    "::add-mask::hello",
                    "::error title=forged",
                    "::stop-commands::guess",
                ] {
                    assert!(
                        !line.starts_with(forged),
                        "{forged} reached the command stream:\n{stdout}"
                    );
                }
            }
        }
    }
    assert!(fence.is_none(), "the fence is never closed:\n{stdout}");
    assert!(
        fenced_lines
            .iter()
            .any(|l| l == "::error title=forged::pwned"),
        "{stdout}"
    );
    // Exactly one `::endgroup::` outside the fence: ours.
    let groups = stdout.lines().filter(|l| *l == "::endgroup::").count();
    assert_eq!(groups, 2, "ours and the job's (fenced):\n{stdout}");
}

#[test]
fn plan_into_a_closed_pipe_ends_quietly() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    for args in [
        &["plan"][..],
        &["diff", "stable", "staging"][..],
        &["status"][..],
    ] {
        let mut child = env
            .sg_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the read end before the command writes: every write gets EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.code() == Some(0) || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

#[test]
fn a_daemon_holding_stdout_neither_stalls_the_run_nor_loses_the_output() {
    let dir = scratch();
    let d = dir.path().display();
    // The daemon leaves the job's process group and keeps its stdout open for a while.
    let script = format!(
        "#!/bin/sh\nsetsid sh -c 'echo $$ > {d}/daemon.pid.tmp; mv {d}/daemon.pid.tmp {d}/daemon.pid; exec sleep 20' &\nwhile [ ! -e {d}/daemon.pid ]; do sleep 0.01; done\necho the real output\nexit 0\n"
    );
    let env = repo_with_test("", &script);
    let started = std::time::Instant::now();
    env.sg_ok(&["run"]);
    let elapsed = started.elapsed();
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass);
    assert!(r.excerpt.starts_with("the real output"), "{}", r.excerpt);
    assert!(
        r.excerpt.contains("still held its output open"),
        "{}",
        r.excerpt
    );
    let log = std::fs::read_to_string(r.log.as_ref().unwrap()).unwrap();
    assert!(log.contains("the real output"), "{log}");
    assert!(
        elapsed < std::time::Duration::from_secs(15),
        "the run waited {elapsed:?}"
    );
    if let Ok(pid) = std::fs::read_to_string(dir.path().join("daemon.pid")) {
        // SAFETY: signalling the daemon this test started.
        unsafe {
            libc::kill(pid.trim().parse().unwrap(), libc::SIGKILL);
        }
    }
}

/// Replace the ledger record at `path` by `content`, as a newer stagegate (or a broken
/// writer) would have committed it.
pub(crate) fn rewrite_record(env: &TestEnv, path: &str, content: &str) {
    edit_ledger(env, &[(path, Some(content))]);
}

/// Commit `edits` to the ledger, each writing `content` at a path (`Some`) or removing the
/// path (`None`), as another writer (an older or newer stagegate) would have.
pub(crate) fn edit_ledger(env: &TestEnv, edits: &[(&str, Option<&str>)]) {
    let index = env.home().join("ledger-index");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        crate::common::base_env(&mut cmd, env.home());
        let out = cmd
            .arg("-C")
            .arg(&env.repo)
            .args(args)
            .env("GIT_INDEX_FILE", &index)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    run(&["read-tree", "refs/stagegate/results"]);
    for (path, content) in edits {
        match content {
            Some(content) => {
                let blob = env.git_stdin(&["hash-object", "-w", "--stdin"], content);
                run(&[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("100644,{blob},{path}"),
                ]);
            }
            None => {
                run(&["update-index", "--force-remove", path]);
            }
        }
    }
    let tree = run(&["write-tree"]);
    let commit = run(&[
        "commit-tree",
        &tree,
        "-p",
        "refs/stagegate/results",
        "-m",
        "rewrite",
    ]);
    env.git(&["update-ref", "refs/stagegate/results", &commit]);
}

#[test]
fn a_record_with_fields_from_a_newer_version_is_read_and_the_fields_ignored() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    env.sg_ok(&["run"]);
    let (path, _) = only_record(&env);
    let text = env.git(&["show", &format!("refs/stagegate/results:{path}")]);
    rewrite_record(
        &env,
        &path,
        &format!("{text}\nfuture-field: {{nested: [1, 2]}}\n"),
    );
    for args in [
        &["status"][..],
        &["plan"][..],
        &["promote", "--dry-run"][..],
    ] {
        let out = env.sg(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code() != Some(2) && !err.contains("future-field"),
            "{args:?}: {err}"
        );
    }
    let out = env.sg_ok(&["run"]);
    assert!(out.contains("nothing to run"), "{out}");
}

#[test]
fn an_unreadable_record_is_reported_once_and_skipped() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    env.sg_ok(&["run"]);
    let (path, _) = only_record(&env);
    rewrite_record(&env, &path, "verdict: [this is not a record\n");
    let out = env.sg(&["status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.matches("skipped a ledger record").count(), 1, "{err}");
    assert!(err.contains(&path), "{err}");
    // The job counts as not run: the next run runs it again.
    let out = env.sg(&["run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("nothing to run"));
}

#[test]
fn four_concurrent_unsharded_runs_run_each_job_once() {
    let dir = scratch();
    let d = dir.path().display();
    let names: Vec<String> = (0..8).map(|i| format!("t{i}")).collect();
    let scripts: Vec<String> = names
        .iter()
        .map(|n| format!("#!/bin/sh\necho {n} >> {d}/ran\nsleep 0.3\n"))
        .collect();
    let tests: Vec<(&str, &str, &str)> = names
        .iter()
        .zip(&scripts)
        .map(|(n, s)| (n.as_str(), "", s.as_str()))
        .collect();
    let env = repo_with_tests(&tests);
    let runs: Vec<std::process::Child> = (0..4)
        .map(|_| {
            env.sg_cmd(&["run", "-j", "2"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines.sort();
    assert_eq!(lines, names, "each job must run exactly once");
    assert_eq!(ledger(&env).len(), 8);
}

#[test]
fn a_claim_held_by_a_killed_run_is_taken_over() {
    let dir = scratch();
    let d = dir.path().display();
    // The first try blocks (its run is killed meanwhile); the next passes.
    let script = format!(
        "#!/bin/sh\nif [ -e {d}/tried ]; then exit 0; fi\ntouch {d}/tried\necho $$ > {d}/job.pid.tmp\nmv {d}/job.pid.tmp {d}/job.pid\nsleep 1000\n"
    );
    let env = repo_with_test("", &script);
    let mut first = env
        .sg_cmd(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("job.pid");
    wait_until("the first run's job to start", || pid_file.exists());
    first.kill().unwrap();
    first.wait().unwrap();
    // The job's group outlives its killed runner; end it, as its reaper would.
    let job = read_pid(&pid_file);
    // SAFETY: signalling the process group this test's job started.
    unsafe {
        // `$$` is the script's shell, started by `sh -c` that leads the group: kill the group
        // the shell is in, or its `sleep 1000` outlives the test.
        let group = libc::getpgid(job);
        assert!(
            group > 0,
            "the job {job} is gone before its run was replaced"
        );
        libc::killpg(group, libc::SIGKILL);
    }
    let out = env.sg_ok(&["run"]);
    assert!(!out.contains("elsewhere"), "{out}");
    let (_, r) = only_record(&env);
    assert_eq!(r.verdict, Verdict::Pass);
}

/// A TestEnv over a bare clone of `origin` (a runner's), sharing `env`'s home.
fn bare_clone_of(env: &TestEnv, origin: &std::path::Path, name: &str) -> TestEnv {
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
fn the_loser_of_a_promotion_race_follows_the_remote_and_its_next_promotion_works() {
    let env = repo_with_test("", "#!/bin/sh\nexit 0\n");
    let origin = env.bare_clone("origin.git");
    let a = bare_clone_of(&env, &origin, "a.git");
    let b = bare_clone_of(&env, &origin, "b.git");
    a.sg_ok(&["--remote", "origin", "run", "--push"]);
    b.sg_ok(&["--remote", "origin", "run", "--push"]);
    // A promotes first, its promotion reaching the remote while B's push is on the wire: a
    // hook on the remote moves `stable` to A's promotion just before taking B's push.
    a.sg_ok(&["promote"]);
    a.git(&["push", "-q", "origin", "stable:refs/pending/stable"]);
    // (git forbids ref updates from a hook while the pushed objects are quarantined.)
    env.write_hook(
        &origin,
        "pre-receive",
        "#!/bin/sh\nunset GIT_QUARANTINE_PATH\nif p=$(git rev-parse -q --verify refs/pending/stable); then\n  git update-ref refs/heads/stable \"$p\" && git update-ref -d refs/pending/stable\nfi\nexit 0\n",
    );
    let out = b
        .sg_cmd(&["--remote", "origin", "promote", "--push"])
        .env("GIT_COMMITTER_NAME", "Runner B")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        err.contains("stable on origin moved") && err.contains("planning again"),
        "{err}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let on_origin = env.git_in(&origin, &["rev-parse", "stable"]);
    assert_eq!(
        b.git(&["rev-parse", "stable"]),
        on_origin,
        "B's stable follows the remote"
    );
    // B's results are all still there.
    assert_eq!(ledger(&b).len(), ledger(&a).len());

    // B's next promotion is an ordinary fast-forward on the remote.
    env.commit_on(
        "staging",
        "Bump xen to 3",
        &[("components/xen.yaml", "name: xen\nversion: \"3\"\n")],
    );
    env.git(&["push", "-q", origin.to_str().unwrap(), "staging"]);
    b.git(&[
        "fetch",
        "-q",
        "origin",
        "+refs/heads/staging:refs/heads/staging",
    ]);
    b.sg_ok(&["--remote", "origin", "run"]);
    b.sg_ok(&["--remote", "origin", "promote", "--push"]);
    let xen = env.git_in(&origin, &["show", "stable:components/xen.yaml"]);
    assert!(xen.contains("version: \"3\""), "{xen}");
}
