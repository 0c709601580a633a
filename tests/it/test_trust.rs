//! Signed evidence (DESIGN §4.16 a, b): with `trust:` in T's pipeline, only ledger records in
//! commits signed by a key T trusts for that kind of record count. Forged, unsigned,
//! wrongly-signed and not-entitled records are shown ("not counted") and change no decision;
//! adopting `trust:` on a ledger with history re-runs nothing; a retired key counts up to its
//! retirement; what stagegate signs is what `git verify-commit` accepts; and a job cannot
//! find the key.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestEnv, base_env};

const LEDGER: &str = "refs/stagegate/results";
const BOOT_TEST: &str = "name: boot\nuses: [components/xen]\nrun: ./tests/boot.sh\n";
/// Boots every xen but 2.
const BOOT: &str = "#!/bin/sh\necho \"booting xen $STAGEGATE_COMPONENT_XEN_VERSION\"\n[ \"$STAGEGATE_COMPONENT_XEN_VERSION\" = 2 ] && { echo 'xen 2: no console'; exit 1; }\necho ok\n";

/// An ed25519 key pair made by `ssh-keygen`: (private key file, public key line).
pub(crate) fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("key-{name}"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    (path, public)
}

fn pipeline(trust: &str) -> String {
    format!("version: 1\nstages: [staging, stable]\ngates:\n  stable: {{require: [test]}}\n{trust}")
}

fn component(version: &str) -> String {
    format!("name: xen\nversion: \"{version}\"\n")
}

/// `staging` → `stable` with xen 1 and the boot test, under `trust` (YAML, may be empty).
fn repo(trust: &str) -> TestEnv {
    TestEnv::init_with(&[
        ("stagegate.yaml", &pipeline(trust)),
        ("components/xen.yaml", &component("1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", BOOT),
    ])
}

/// Put the same pipeline on both stages (a pipeline change moved by an approval, in one
/// step: what the test needs is the rules of T).
fn set_pipeline(env: &TestEnv, trust: &str) {
    for b in ["stable", "staging"] {
        env.commit_on(b, "pipeline", &[("stagegate.yaml", &pipeline(trust))]);
    }
    // Staging is stable plus its own candidates: keep it a descendant.
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["merge", "-q", "--no-edit", "-s", "ours", "stable"]);
}

/// stagegate with `key` as its signing key (None: none).
fn sg(env: &TestEnv, key: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = env.sg_cmd(args);
    cmd.env_remove("STAGEGATE_SIGNING_KEY");
    if let Some(k) = key {
        cmd.env("STAGEGATE_SIGNING_KEY", std::fs::read_to_string(k).unwrap());
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sg_ok(env: &TestEnv, key: Option<&Path>, args: &[&str]) -> String {
    let (code, out, err) = sg(env, key, args);
    assert_eq!(
        code, 0,
        "stagegate {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// The key of the one job planned for `stable`.
fn job_key(env: &TestEnv, key: Option<&Path>) -> String {
    let out = sg_ok(env, key, &["plan", "--stage", "stable", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let jobs = v[0]["jobs"].as_array().expect("the planned jobs");
    let job = jobs
        .iter()
        .find(|j| j["kind"] == "test")
        .unwrap_or_else(|| panic!("a planned test job: {out}"));
    job["key"].as_str().unwrap().to_string()
}

/// Commit `files` on top of the ledger with git plumbing (no job ran), signed with
/// `sign` when given (`git commit-tree -S`, SSH format), as someone who can push would.
fn forge(env: &TestEnv, files: &[(String, String)], sign: Option<&Path>) {
    let index = env.home().join("forge-index");
    let _ = std::fs::remove_file(&index);
    let git = |args: &[&str], input: Option<&str>| -> String {
        let mut cmd = Command::new("git");
        base_env(&mut cmd, env.home());
        cmd.current_dir(&env.repo)
            .env("GIT_INDEX_FILE", &index)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(i) = input {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let tip = git(&["for-each-ref", "--format=%(objectname)", LEDGER], None);
    if tip.is_empty() {
        git(&["read-tree", "--empty"], None);
    } else {
        git(&["read-tree", &tip], None);
    }
    for (path, text) in files {
        let blob = git(&["hash-object", "-w", "--stdin"], Some(text));
        git(
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            None,
        );
    }
    let tree = git(&["write-tree"], None);
    let mut args = vec!["commit-tree".to_string(), tree];
    if !tip.is_empty() {
        args.extend(["-p".into(), tip.clone()]);
    }
    let signing;
    if let Some(k) = sign {
        signing = format!("-S{}", k.display());
        args.insert(0, "gpg.format=ssh".into());
        args.insert(0, "-c".into());
        args.push(signing);
    }
    args.extend(["-m".into(), "results".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let commit = git(&args, None);
    git(&["update-ref", LEDGER, &commit, &tip], None);
}

/// A pass record for `key`, shaped as a runner writes one, that no job produced.
fn forged_pass(key: &str) -> (String, String) {
    let text = format!(
        "key: {key}\nkind: test\nname: boot\nrole: candidate\ncandidates: [components/xen]\nverdict: pass\nexit: {{code: 0}}\ntries: 1\nstarted: 2026-12-07T10:00:00Z\nfinished: 2026-12-07T10:00:01Z\nduration-ms: 1000\nrunner: {{host: ci, user: ci, pid: 1}}\ncommit: 0000000000000000000000000000000000000000\nenv: []\n"
    );
    (
        format!("{}/{}/{key}/0009-0badc0de-pass.yaml", &key[..2], &key[2..4]),
        text,
    )
}

fn trust_yaml(runner: &str, people: &[(&str, &str, &str)]) -> String {
    let mut y = format!("trust:\n  runners:\n    - name: ci\n      key: {runner}\n");
    if !people.is_empty() {
        y.push_str("  people:\n");
        for (name, key, may) in people {
            y.push_str(&format!(
                "    - name: {name}\n      key: {key}\n      may: [{may}]\n"
            ));
        }
    }
    y
}

#[test]
fn forged_unsigned_results_change_no_decision() {
    // Without trust: the forgery works (what the issue saw) — the control.
    let open = repo("");
    open.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    let key = job_key(&open, None);
    forge(&open, &[forged_pass(&key)], None);
    sg_ok(&open, None, &["promote", "--stage", "stable"]);
    assert!(
        open.git(&["show", "stable:components/xen.yaml"])
            .contains("\"2\"")
    );

    // With trust: the same forgery counts for nothing; the job runs, fails, and xen 2 stays.
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    let key_file = runner.as_path();
    env.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    let key = job_key(&env, Some(key_file));
    forge(&env, &[forged_pass(&key)], None);

    let why = sg_ok(&env, Some(key_file), &["why", "components/xen"]);
    assert!(why.contains("not counted"), "{why}");
    assert!(why.contains("0009-0badc0de-pass.yaml — unsigned"), "{why}");
    let status = sg_ok(&env, None, &["status", "--format", "json"]);
    assert!(status.contains("\"why\": \"unsigned\""), "{status}");

    // A runner without a key is refused before it writes evidence that would not count.
    let (code, _, err) = sg(&env, None, &["run"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("STAGEGATE_SIGNING_KEY"), "{err}");

    let (code, out, err) = sg(&env, Some(key_file), &["run"]);
    assert!(code == 0 || code == 1, "run: {code}\n{out}\n{err}");
    assert!(
        out.contains("xen 2: no console") || out.contains("fail"),
        "{out}"
    );
    sg(&env, Some(key_file), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"1\""),
        "a forged pass took xen 2 into stable"
    );
    let why = sg_ok(&env, Some(key_file), &["why", "components/xen"]);
    assert!(why.contains("rejected"), "{why}");
}

#[test]
fn untrusted_and_not_entitled_signatures_do_not_count() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, runner_pub) = keypair(keys.path(), "ci");
    let (stranger, _) = keypair(keys.path(), "stranger");
    let (alice, alice_pub) = keypair(keys.path(), "alice");
    let (bob, bob_pub) = keypair(keys.path(), "bob");
    let trust = trust_yaml(
        &runner_pub,
        &[("alice", &alice_pub, "approve"), ("bob", &bob_pub, "waive")],
    );
    let env = repo(&trust);
    env.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    let key = job_key(&env, Some(&runner));

    // A pass signed by a key nobody trusts.
    forge(&env, &[forged_pass(&key)], Some(&stranger));
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("untrusted key SHA256:"), "{why}");
    assert!(
        why.contains("waiting") || why.contains("no result"),
        "{why}"
    );

    // The real run: xen 2 fails and is rejected.
    sg(&env, Some(&runner), &["run"]);
    sg(&env, Some(&runner), &["promote", "--stage", "stable"]);
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("rejected"), "{why}");

    // A waiver signed by the runner's key is not entitled: xen 2 stays rejected.
    sg_ok(
        &env,
        Some(&runner),
        &[
            "waive",
            &key,
            "--reason",
            "known console bug",
            "--stage",
            "stable",
        ],
    );
    // Alice may approve, not freeze: her freeze of stable does not count.
    sg_ok(
        &env,
        Some(&alice),
        &["freeze", "stable", "--reason", "release week"],
    );
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(
        why.contains("not entitled: ci may not write waive records"),
        "{why}"
    );
    let status = sg_ok(&env, Some(&runner), &["status"]);
    assert!(
        status.contains("not entitled: alice may not write freeze records"),
        "{status}"
    );
    assert!(!status.contains("FROZEN"), "{status}");
    sg(&env, Some(&runner), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"1\"")
    );

    // Bob may waive: his waiver counts, and xen 2 moves.
    sg_ok(
        &env,
        Some(&bob),
        &[
            "waive",
            &key,
            "--reason",
            "known console bug",
            "--stage",
            "stable",
        ],
    );
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("waived") || why.contains("ok~"), "{why}");
    sg_ok(&env, Some(&runner), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"2\"")
    );
}

#[test]
fn adopting_trust_keeps_the_history_and_a_retired_key_counts_until_its_retirement() {
    let keys = tempfile::tempdir().unwrap();
    let (old, old_pub) = keypair(keys.path(), "old");
    let (new, new_pub) = keypair(keys.path(), "new");
    let env = repo("");
    // History before trust: an unsigned result for xen 3.
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, None, &["run"]);
    let before = env.git(&["rev-parse", LEDGER]);
    set_pipeline(
        &env,
        &format!("trust:\n  since: {before}\n  runners:\n    - name: old\n      key: {old_pub}\n"),
    );
    // Nothing is re-run: the unsigned results up to `since` count.
    let ran = sg_ok(&env, Some(&old), &["run"]);
    assert!(!ran.contains("ran 1 job"), "{ran}");
    let why = sg_ok(&env, Some(&old), &["why", "components/xen"]);
    assert!(why.contains("ready to promote"), "{why}");
    assert!(!why.contains("not counted"), "{why}");

    // The old key signs a result; then it is retired (counting up to now) and a new key
    // takes over.
    env.commit_on(
        "staging",
        "xen 4",
        &[("components/xen.yaml", &component("4"))],
    );
    sg_ok(&env, Some(&old), &["run"]);
    let retired_at = env.git(&["rev-parse", LEDGER]);
    set_pipeline(
        &env,
        &format!(
            "trust:\n  since: {before}\n  runners:\n    - name: new\n      key: {new_pub}\n  retired:\n    - name: old\n      key: {old_pub}\n      until: {retired_at}\n"
        ),
    );
    let why = sg_ok(&env, Some(&new), &["why", "components/xen"]);
    assert!(!why.contains("not counted"), "{why}");
    assert!(why.contains("ready to promote"), "{why}");

    // After its retirement the old key's records do not count.
    env.commit_on(
        "staging",
        "xen 5",
        &[("components/xen.yaml", &component("5"))],
    );
    let key = job_key(&env, Some(&new));
    forge(&env, &[forged_pass(&key)], Some(&old));
    let why = sg_ok(&env, Some(&new), &["why", "components/xen"]);
    assert!(why.contains("retired key after its retirement"), "{why}");
    // The new key's own run counts.
    sg_ok(&env, Some(&new), &["run"]);
    let why = sg_ok(&env, Some(&new), &["why", "components/xen"]);
    assert!(why.contains("ready to promote"), "{why}");
    // And the old key can no longer run for this gate.
    let (code, _, err) = sg(&env, Some(&old), &["run", "--rerun", &key[..12]]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a runner key"), "{err}");
}

#[test]
fn git_verify_commit_accepts_what_stagegate_signs() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, Some(&runner), &["run"]);
    sg_ok(&env, Some(&runner), &["promote", "--stage", "stable"]);
    let allowed = env.home().join("allowed_signers");
    std::fs::write(&allowed, format!("ci {public}\n")).unwrap();
    let allowed = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    for rev in [LEDGER, "stable"] {
        let mut cmd = Command::new("git");
        base_env(&mut cmd, env.home());
        let out = cmd
            .current_dir(&env.repo)
            .args(["-c", &allowed, "verify-commit", "-v", rev])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{rev}: {err}");
        assert!(
            err.contains("Good \"git\" signature for ci"),
            "{rev}: {err}"
        );
    }
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"3\"")
    );
}

#[test]
fn a_job_cannot_find_the_signing_key() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let secret = std::fs::read_to_string(&runner).unwrap();
    // A line of the key's base64 that only the private key holds.
    let needle = secret.lines().nth(3).unwrap().to_string();
    // Searches its environment, $HOME, every ancestor's environment and the agent socket.
    // The needle travels in two halves: the script itself lies in $HOME (the checkout).
    let (a, b) = needle.split_at(needle.len() / 2);
    let search = format!(
        r#"#!/bin/sh
needle='{a}''{b}'
found=""
env | grep -qF "$needle" && found="$found env"
grep -rqsF "$needle" "$HOME" 2>/dev/null && found="$found home"
pid=$$
while [ "$pid" -gt 1 ]; do
    pid=$(awk '/^PPid:/ {{ print $2 }}' /proc/$pid/status)
    [ -z "$pid" ] && break
    tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qF "$needle" && found="$found parent-env:$pid"
    tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -q '^STAGEGATE_SIGNING_KEY=-----' && found="$found parent-var:$pid"
done
[ -n "$SSH_AUTH_SOCK" ] && found="$found agent"
if [ -n "$found" ]; then echo "FOUND THE KEY:$found"; exit 1; fi
echo "no key in reach"
"#
    );
    let env = TestEnv::init_with(&[
        ("stagegate.yaml", &pipeline(&trust_yaml(&public, &[]))),
        ("components/xen.yaml", &component("1")),
        ("tests/boot.yaml", BOOT_TEST),
        ("tests/boot.sh", &search),
    ]);
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    let mut cmd = env.sg_cmd(&["run"]);
    cmd.env("STAGEGATE_SIGNING_KEY", &secret)
        .env("SSH_AUTH_SOCK", env.home().join("agent.sock"));
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let key = stdout
        .split_whitespace()
        .find(|w| w.len() == 12 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .expect("the job's key in the run's table");
    let log = sg_ok(&env, Some(&runner), &["log-of", key]);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{log}");
    assert!(log.contains("no key in reach"), "{log}");
    assert!(!log.contains("FOUND THE KEY"), "{log}");
}

#[test]
fn without_trust_verify_and_hook_install_say_the_evidence_is_unsigned() {
    let env = repo("");
    sg_ok(&env, None, &["run"]);
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, None, &["run"]);
    sg_ok(&env, None, &["promote", "--stage", "stable"]);
    let out = sg_ok(&env, None, &["verify"]);
    assert!(out.contains("evidence into stable is unsigned"), "{out}");
    let bare = env.bare_clone("remote.git");
    let mut cmd = Command::new(crate::common::stagegate_bin());
    base_env(&mut cmd, env.home());
    let out = cmd
        .args(["hook", "install", "--pre-receive"])
        .arg(&bare)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("cannot tell forged results"), "{text}");
    assert!(text.contains("trust:"), "{text}");
}

#[test]
fn check_explains_a_bad_trust_entry() {
    let env = repo(
        "trust:\n  runners:\n    - name: ci\n      key: ssh-rsa AAAAnot-a-key\n  people:\n    - name: al\n      key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ZBZL0TzpZph6gyd2KBnOv2LWTeLpVhdHXt8g8ZB9m\n      may: [waive, launch]\n",
    );
    let (code, out, err) = sg(&env, None, &["check"]);
    let all = format!("{out}{err}");
    assert_eq!(code, 1, "{all}");
    assert!(all.contains("stagegate.yaml:8:"), "{all}");
    assert!(all.contains("not a usable public key"), "{all}");
    assert!(all.contains("\"launch\" is not a kind of record"), "{all}");
}

#[test]
fn the_example_switches_to_signed_evidence_with_one_command() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "me");
    let env = TestEnv::new();
    // As the README gives it: `stagegate init --example --trust ~/.ssh/stagegate.pub`.
    let mut cmd = Command::new(crate::common::stagegate_bin());
    base_env(&mut cmd, env.home());
    let out = cmd
        .arg("init")
        .arg(&env.repo)
        .arg("--example")
        .arg("--trust")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pipeline = env.git(&["show", "stable:stagegate.yaml"]);
    assert!(pipeline.contains(&public), "{pipeline}");
    sg_ok(&env, None, &["check", "stable"]);

    // Without the key, nothing runs; with it, the example goes through and is signed.
    let (code, _, err) = sg(&env, None, &["cycle"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("STAGEGATE_SIGNING_KEY"), "{err}");
    sg_ok(&env, Some(&key), &["cycle"]);
    let status = sg_ok(&env, Some(&key), &["status", "--format", "json"]);
    assert!(status.contains("\"signed_evidence\": true"), "{status}");
    assert!(!status.contains("not_counted"), "{status}");
    let commits = env.git(&["rev-list", LEDGER]);
    assert!(!commits.is_empty());
    for c in commits.lines() {
        let raw = env.git(&["cat-file", "commit", c]);
        assert!(
            raw.contains("gpgsig -----BEGIN SSH SIGNATURE-----"),
            "{raw}"
        );
    }
}

#[test]
fn records_deleted_by_a_ledger_commit_count_as_they_were() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    env.commit_on(
        "staging",
        "xen 2",
        &[("components/xen.yaml", &component("2"))],
    );
    sg(&env, Some(&runner), &["run"]);
    sg(&env, Some(&runner), &["promote", "--stage", "stable"]);
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("rejected"), "{why}");

    // Someone who can push deletes the failing result and the rejection (plumbing, no
    // signature): a fast-forward a hosted forge accepts.
    let files = env.git(&["ls-tree", "-r", "--name-only", LEDGER]);
    let gone: Vec<&str> = files
        .lines()
        .filter(|p| p.ends_with("-fail.yaml") || p.starts_with("decisions/"))
        .collect();
    assert_eq!(gone.len(), 2, "{files}");
    let index = env.home().join("delete-index");
    let git = |args: &[&str]| -> String {
        let mut cmd = Command::new("git");
        base_env(&mut cmd, env.home());
        let out = cmd
            .current_dir(&env.repo)
            .env("GIT_INDEX_FILE", &index)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let tip = git(&["rev-parse", LEDGER]);
    git(&["read-tree", &tip]);
    for p in &gone {
        git(&["update-index", "--force-remove", p]);
    }
    let tree = git(&["write-tree"]);
    let commit = git(&["commit-tree", &tree, "-p", &tip, "-m", "tidy up"]);
    git(&["update-ref", LEDGER, &commit, &tip]);

    // The rejection stands: the records count as they were, and why says so.
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("rejected"), "{why}");
    assert!(why.contains("restored (2 record(s)"), "{why}");
    assert!(
        why.contains(&format!("deleted by commit {}", &commit[..12])),
        "{why}"
    );
    let ran = sg_ok(&env, Some(&runner), &["run"]);
    assert!(!ran.contains("ran 1 job"), "nothing runs again: {ran}");
    sg(&env, Some(&runner), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"1\"")
    );
}

#[test]
fn a_job_without_the_key_exports_its_result_and_a_signing_job_records_it() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    env.commit_on("stable", "noop", &[]);
    env.git(&["checkout", "-q", "staging"]);
    let origin = env.bare_clone("origin.git");
    env.git(&["remote", "add", "origin", origin.to_str().unwrap()]);
    let job = job_key(&env, None);

    // The matrix job: runs candidate code, holds no key, exports, publishes nothing.
    let runner = env.clone_of(&origin, "runner");
    let artifact = env.home().join(format!("result-{job}"));
    let dir = artifact.to_str().unwrap();
    let out = sg_ok(
        &runner,
        None,
        &[
            "--remote",
            "origin",
            "run",
            "--job",
            &job[..12],
            "--export",
            dir,
        ],
    );
    assert!(out.contains("ran 1 job"), "{out}");
    assert!(
        env.git_in(&origin, &["for-each-ref", LEDGER]).is_empty(),
        "an exporting run publishes nothing"
    );
    let exported: Vec<_> = std::fs::read_dir(&artifact).unwrap().collect();
    assert_eq!(exported.len(), 1);

    // A job's export may speak only for that job.
    let other = env.home().join("result-0123456789ab0123456789ab");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&artifact).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, other.join(f.file_name().unwrap())).unwrap();
    }
    let (code, _, err) = sg(&env, Some(&key), &["record", other.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("a job's export speaks for that job only"),
        "{err}"
    );
    assert!(err.contains("nothing was recorded"), "{err}");

    // The signing job: no candidate code, the key; records and pushes.
    let out = sg_ok(
        &env,
        Some(&key),
        &["--remote", "origin", "record", "--push", dir],
    );
    assert!(out.contains("signed by SHA256:"), "{out}");
    assert!(!env.git_in(&origin, &["for-each-ref", LEDGER]).is_empty());
    let why = sg_ok(&env, Some(&key), &["why", "components/xen"]);
    assert!(why.contains("ready to promote"), "{why}");
    assert!(!why.contains("not counted"), "{why}");
}

#[test]
fn holds_and_releases_count_only_when_someone_entitled_signed_them() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, runner_pub) = keypair(keys.path(), "ci");
    let (alice, alice_pub) = keypair(keys.path(), "alice");
    let env = repo(&trust_yaml(
        &runner_pub,
        &[("alice", &alice_pub, "hold, release")],
    ));
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, Some(&runner), &["run"]);
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("ready to promote"), "{why}");

    // Alice holds xen (signed, entitled): it is held.
    sg_ok(
        &env,
        Some(&alice),
        &[
            "hold",
            "components/xen",
            "--reason",
            "wait for the release notes",
        ],
    );
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("held"), "{why}");
    let holds = env.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        "staging",
        ".stagegate/holds",
    ]);
    let hold_path = holds.lines().next().expect("a hold file").to_string();
    let hold_text = env.git(&["show", &format!("staging:{hold_path}")]);

    // Someone deletes the hold file with a plain, unsigned commit: the hold stands.
    env.git(&["checkout", "-q", "staging"]);
    env.git(&["rm", "-q", &hold_path]);
    env.git(&["commit", "-q", "--no-verify", "-m", "tidy"]);
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("held"), "{why}");
    assert!(
        why.contains(&format!("{hold_path} — deleted by commit")),
        "{why}"
    );
    sg(&env, Some(&runner), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"1\"")
    );

    // Put back, then released by alice (signed): xen moves.
    env.write(&hold_path, &hold_text);
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "--no-verify", "-m", "put it back"]);
    // The hold is now an unsigned commit's: it does not count.
    let why = sg_ok(&env, Some(&runner), &["why", "components/xen"]);
    assert!(why.contains("not counted"), "{why}");
    assert!(why.contains("ready to promote"), "{why}");
    sg_ok(&env, Some(&alice), &["release", "components/xen"]);
    sg_ok(&env, Some(&runner), &["promote", "--stage", "stable"]);
    assert!(
        env.git(&["show", "stable:components/xen.yaml"])
            .contains("\"3\"")
    );
}

#[test]
fn under_trust_verify_refuses_a_promotion_no_trusted_runner_signed() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, Some(&runner), &["run"]);
    sg_ok(&env, Some(&runner), &["promote", "--stage", "stable"]);
    let out = sg_ok(&env, None, &["verify", "stable", "--stage", "stable"]);
    assert!(out.starts_with("ok"), "{out}");
    // The same commit, unsigned: same tree, parents and message.
    let tree = env.git(&["rev-parse", "stable^{tree}"]);
    let parents = env.git(&["log", "-1", "--format=%P", "stable"]);
    let message = env.git(&["log", "-1", "--format=%B", "stable"]);
    let mut args = vec!["commit-tree".to_string(), tree];
    for p in parents.split_whitespace() {
        args.extend(["-p".to_string(), p.to_string()]);
    }
    args.extend(["-m".to_string(), message]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let copy = env.git(&args);
    let (code, out, _) = sg(&env, None, &["verify", &copy, "--stage", "stable"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the promotion commit is not signed by a runner the trust: of stable lists (unsigned)"
        ),
        "{out}"
    );
}

#[test]
fn under_trust_a_squash_merged_promotion_is_refused_with_the_way_out() {
    let keys = tempfile::tempdir().unwrap();
    let (runner, public) = keypair(keys.path(), "ci");
    let env = repo(&trust_yaml(&public, &[]));
    env.commit_on(
        "staging",
        "xen 3",
        &[("components/xen.yaml", &component("3"))],
    );
    sg_ok(&env, Some(&runner), &["run"]);
    sg_ok(&env, Some(&runner), &["promote", "--stage", "stable"]);
    let promotion = env.rev("stable");
    let before = env.rev("stable^");
    // The merge button keeps the signed promotion as the merge's second parent: it holds.
    let merged = env.git(&[
        "commit-tree",
        &format!("{promotion}^{{tree}}"),
        "-p",
        &before,
        "-p",
        &promotion,
        "-m",
        "Merge pull request #7",
    ]);
    let out = sg_ok(&env, None, &["verify", &merged, "--stage", "stable"]);
    assert!(out.starts_with("ok"), "{out}");
    // The squash button makes a commit of the forge's own: no runner signed it.
    let squashed = env.git(&[
        "commit-tree",
        &format!("{promotion}^{{tree}}"),
        "-p",
        &before,
        "-m",
        "Promote to stable (#7)",
    ]);
    let (code, out, _) = sg(&env, None, &["verify", &squashed, "--stage", "stable"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("squash- or rebase-merged by the forge"),
        "{out}"
    );
    assert!(out.contains("merge button"), "{out}");
}
