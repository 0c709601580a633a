//! Signed verification summaries (DESIGN §4.16, last sentence): a promotion of a built
//! artifact under `trust:` publishes a SLSA VSA, signed as a DSSE envelope, in the ledger
//! and beside the artifact (an OCI referrer on a registry, a file in a directory store);
//! `verify --artifact` holds for it and refuses one whose subject, policy, results or
//! signature was altered, or that a key T does not trust signed.

use std::path::{Path, PathBuf};
use std::process::Command;

use stagegate::dsse::Envelope;
use stagegate::promote::attest::Statement;

use crate::common::TestEnv;
use crate::registry::Registry;
use crate::test_trust::keypair;

const LEDGER: &str = "refs/stagegate/results";

/// The quick example under `trust:` (`init --example --trust`), with `store` as its
/// artifact store on every stage (empty: the default directory).
fn example(store: &str) -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    let (key, _) = keypair(env.home(), "runner");
    env.sg_ok(&[
        "init",
        env.repo.to_str().unwrap(),
        "--example",
        "--trust",
        key.with_extension("pub").to_str().unwrap(),
    ]);
    if !store.is_empty() {
        let yaml = env.git(&["show", "stable:stagegate.yaml"]).replace(
            "# artifacts: {store: /srv/stagegate/artifacts}",
            &format!("artifacts: {{store: \"{store}\"}}"),
        );
        for b in ["stable", "staging", "new"] {
            env.commit_on(b, "Use a shared store", &[("stagegate.yaml", &yaml)]);
        }
        env.git(&["checkout", "-q", "staging"]);
        env.git(&["merge", "-q", "--no-edit", "-s", "ours", "stable"]);
        env.git(&["checkout", "-q", "new"]);
        env.git(&["merge", "-q", "--no-edit", "-s", "ours", "staging"]);
    }
    (env, key)
}

/// stagegate with `key` as its signing key; (exit code, stdout, stderr).
fn sg(env: &TestEnv, key: &Path, args: &[&str]) -> (i32, String, String) {
    let out = env
        .sg_cmd(args)
        .env(
            "STAGEGATE_SIGNING_KEY",
            std::fs::read_to_string(key).unwrap(),
        )
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sg_ok(env: &TestEnv, key: &Path, args: &[&str]) -> String {
    let (code, out, err) = sg(env, key, args);
    assert_eq!(
        code, 0,
        "stagegate {args:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Build, promote into staging, test, promote into stable: the host image reaches stable.
fn promote_to_stable(env: &TestEnv, key: &Path) -> String {
    sg_ok(env, key, &["run"]);
    sg_ok(env, key, &["promote"]);
    sg_ok(env, key, &["run"]);
    let out = sg_ok(env, key, &["promote"]);
    assert!(out.contains("attested images/debian-host"), "{out}");
    crate::test_images::built(env, "stable", "debian-host")
        .digest
        .into_string()
}

/// `verify --artifact DIGEST --stage stable`: (exit code, stdout).
fn verify(env: &TestEnv, digest: &str) -> (i32, String) {
    let out = env.sg(&["verify", "--artifact", digest, "--stage", "stable"]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The statement inside an envelope.
fn statement(env: &Envelope) -> Statement {
    serde_json::from_slice(&env.payload_bytes().unwrap()).unwrap()
}

/// `st` signed as a DSSE envelope by the key in `key`.
fn sign(st: &Statement, key: &Path) -> Vec<u8> {
    let signer = stagegate::sshsig::load(key.to_str().unwrap()).unwrap();
    Envelope::sign(
        stagegate::dsse::IN_TOTO,
        &serde_json::to_vec(st).unwrap(),
        &signer,
    )
    .unwrap()
    .to_bytes()
}

fn curl_json(url: &str, accept: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sSf", "-H", &format!("Accept: {accept}"), url])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The digest of the manifest at `reference` (a tag or digest).
fn manifest_digest(registry: &Registry, repo: &str, reference: &str) -> Option<String> {
    let out = Command::new("curl")
        .args([
            "-sSf",
            "-I",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "http://{}/v2/{repo}/manifests/{reference}",
            registry.addr
        ))
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("docker-content-digest")
            .then(|| v.trim().to_string())
    })
}

/// Turn the store's manifest of `hex` into what a store written before 0.2 holds: the same
/// manifest tagged `sha256-<hex>` only.
fn retag_as_before(registry: &Registry, repo: &str, hex: &str) {
    let base = format!("http://{}/v2/{repo}/manifests", registry.addr);
    let accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    let body = Command::new("curl")
        .args(["-sSf", "-H", accept, &format!("{base}/sg-{hex}")])
        .output()
        .unwrap()
        .stdout;
    let digest = manifest_digest(registry, repo, &format!("sg-{hex}")).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("curl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-sSf", "-X", "DELETE", &format!("{base}/{digest}")]);
    let file = std::env::temp_dir().join(format!("manifest-{hex}.json"));
    std::fs::write(&file, body).unwrap();
    run(&[
        "-sSf",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/sha256-{hex}"),
    ]);
    assert!(manifest_digest(registry, repo, &format!("sg-{hex}")).is_none());
}

#[test]
fn a_promotion_to_stable_pushes_a_vsa_referrer_that_verify_checks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(dir.path()) else {
        return;
    };
    if crate::common::require_tool("curl").is_none() {
        return;
    }
    let repo = "team/pipeline";
    let (env, key) = example(&registry.store(repo));

    // The builds push the host image; make its manifest look as a store written before
    // 0.2 keeps it (tagged sha256-<hex>), which the promotion still finds and re-tags.
    sg_ok(&env, &key, &["run"]);
    let host = crate::test_images::results_of(&env, "images/debian-host")[0]
        .artifact
        .clone()
        .expect("the build stored an artifact")
        .digest;
    let hex = host.as_str().trim_start_matches("sha256:").to_string();
    retag_as_before(&registry, repo, &hex);
    sg_ok(&env, &key, &["promote"]);
    assert!(
        manifest_digest(&registry, repo, &format!("sg-{hex}")).is_some(),
        "the artifact is tagged sg-<hex> again"
    );
    sg_ok(&env, &key, &["run"]);
    let out = sg_ok(&env, &key, &["promote"]);
    assert!(out.contains("attested images/debian-host"), "{out}");
    let digest = crate::test_images::built(&env, "stable", "debian-host")
        .digest
        .into_string();
    assert_eq!(digest, host);

    // In the registry: a referrer of the artifact's manifest, listed in the referrers tag
    // schema's index (docker-registry has no referrers API).
    let subject = manifest_digest(&registry, repo, &format!("sg-{hex}")).unwrap();
    let index = curl_json(
        &format!(
            "http://{}/v2/{repo}/manifests/{}",
            registry.addr,
            subject.replace(':', "-")
        ),
        "application/vnd.oci.image.index.v1+json",
    );
    let entries = index["manifests"].as_array().unwrap();
    let stable: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["annotations"]["dev.stagegate.stage"] == "stable")
        .collect();
    assert_eq!(stable.len(), 1, "{index:#}");
    assert_eq!(
        stable[0]["artifactType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        stable[0]["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/verification_summary/v1"
    );
    let referrer = curl_json(
        &format!(
            "http://{}/v2/{repo}/manifests/{}",
            registry.addr,
            stable[0]["digest"].as_str().unwrap()
        ),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(
        referrer["subject"]["digest"],
        subject.as_str(),
        "{referrer:#}"
    );

    // The summary itself, as the ledger records it.
    let text = env.git(&["show", &format!("{LEDGER}:attestations/stable/{hex}.json")]);
    let envelope = Envelope::parse(text.as_bytes()).unwrap();
    assert_eq!(envelope.payload_type, "application/vnd.in-toto+json");
    let st = statement(&envelope);
    assert_eq!(
        st.predicate_type,
        "https://slsa.dev/verification_summary/v1"
    );
    assert_eq!(st.subject[0].digest["sha256"], hex);
    assert_eq!(st.predicate.verification_result, "PASSED");
    assert_eq!(st.predicate.stagegate.stage, "stable");
    assert_eq!(st.predicate.stagegate.promotion, env.rev("stable"));
    assert_eq!(st.predicate.verified_levels, ["STAGEGATE_STAGE_stable"]);
    let signer = stagegate::sshsig::load(key.to_str().unwrap()).unwrap();
    assert_eq!(envelope.signatures[0].keyid, signer.fingerprint());
    assert_eq!(
        st.predicate.verifier.id,
        format!("stagegate:{}", signer.fingerprint())
    );

    let (code, out) = verify(&env, &digest);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok   images/debian-host"), "{out}");
    assert!(
        out.contains(&format!("oci://{}/{repo}@sha256:", registry.addr)),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one line: {out}");

    // A consumer without stagegate checks it with a standard DSSE verifier.
    let public = key.with_extension("pub");
    let consumer = [
        "--key",
        public.to_str().unwrap(),
        "--digest",
        &digest,
        "--stage",
        "stable",
        "--registry",
        &format!("http://{}", registry.addr),
        "--repository",
        repo,
    ];
    if let Some((code, out)) = check_vsa(&consumer) {
        assert_eq!(code, 0, "{out}");
        assert!(out.starts_with("ok   sha256:"), "{out}");
    }

    // A summary signed by a key the trust: of stable does not list, pushed beside it.
    let (other, _) = keypair(env.home(), "intruder");
    let forged = sign(&st, &other);
    let store = stagegate::artifact::oci::Registry::open(&registry.store(repo)).unwrap();
    store
        .push_referrer(
            &stagegate::keys::Digest::from(digest.as_str()),
            forged,
            stagegate::dsse::MEDIA_TYPE,
            Default::default(),
        )
        .unwrap();
    let (code, out) = verify(&env, &digest);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL images/debian-host"), "{out}");
    assert!(out.contains("no trusted key matches"), "{out}");
}

/// `scripts/check-vsa.py ARGS` (securesystemslib's DSSE verifier, no stagegate), or `None`
/// when securesystemslib is not installed (a failure under CI, where `.ci/run` installs it).
fn check_vsa(args: &[&str]) -> Option<(i32, String)> {
    let python = crate::common::require_tool("python3")?;
    let have = Command::new(&python)
        .args(["-c", "import securesystemslib.dsse, cryptography"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            !crate::common::in_ci(),
            "securesystemslib is not installed, and CI is set: `.ci/run` must install it"
        );
        eprintln!("NOTICE: securesystemslib is not installed; skipping (`.ci/run` installs it)");
        return None;
    }
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-vsa.py"))
        .args(args)
        .output()
        .unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    ))
}

/// The copy of the summary a directory store keeps beside the blob.
fn beside_blob(env: &TestEnv, digest: &str) -> PathBuf {
    env.repo.join(format!(
        ".git/stagegate/artifacts/sha256/{}.stable.vsa.json",
        digest.trim_start_matches("sha256:")
    ))
}

/// Replace the directory store's copy with `bytes`, verify, restore; (code, output).
fn verify_with(env: &TestEnv, digest: &str, bytes: &[u8]) -> (i32, String) {
    let path = beside_blob(env, digest);
    let original = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let found = verify(env, digest);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, original).unwrap();
    found
}

#[test]
fn verify_refuses_an_altered_or_untrusted_summary() {
    let (env, key) = example("");
    let digest = promote_to_stable(&env, &key);
    let path = beside_blob(&env, &digest);
    let envelope = Envelope::parse(&std::fs::read(&path).unwrap()).unwrap();
    let st = statement(&envelope);
    let (code, out) = verify(&env, &digest);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{LEDGER}:attestations/stable/")),
        "{out}"
    );
    assert!(out.contains(".stable.vsa.json"), "both copies: {out}");

    let mut subject = st.clone();
    subject.subject[0]
        .digest
        .insert("sha256".into(), "ab".repeat(32));
    let mut policy = st.clone();
    policy
        .predicate
        .policy
        .digest
        .insert("sha256".into(), "cd".repeat(32));
    let mut results = st.clone();
    results
        .predicate
        .stagegate
        .jobs
        .push("ef".repeat(32).into());
    let mut ledger = st.clone();
    // The ledger's tip: the commit that recorded the summary, after the decision.
    ledger.predicate.stagegate.ledger = Some(env.rev(LEDGER));
    for (what, altered, says) in [
        ("subject", &subject, "subject:"),
        ("policy", &policy, "policy:"),
        ("results (a job)", &results, "results:"),
        ("results (the ledger commit)", &ledger, "results:"),
    ] {
        let (code, out) = verify_with(&env, &digest, &sign(altered, &key));
        assert_eq!(code, 1, "{what}: {out}");
        assert!(out.contains(says), "{what}: {out}");
    }

    // The signature: a payload changed after signing, and a key T does not trust.
    let mut tampered = envelope.clone();
    let mut passed = st.clone();
    passed.predicate.stagegate.version = "99".into();
    tampered.payload = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&passed).unwrap())
    };
    let (code, out) = verify_with(&env, &digest, &tampered.to_bytes());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("does not match the payload"), "{out}");
    let (other, _) = keypair(env.home(), "intruder");
    let (code, out) = verify_with(&env, &digest, &sign(&st, &other));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no trusted key matches"), "{out}");

    // The standard verifier agrees on the signatures.
    let public = key.with_extension("pub");
    let consumer = |file: &Path| {
        check_vsa(&[
            "--key",
            public.to_str().unwrap(),
            "--digest",
            &digest,
            "--envelope",
            file.to_str().unwrap(),
        ])
    };
    if let Some((code, out)) = consumer(&path) {
        assert_eq!(code, 0, "{out}");
        let forged = env.home().join("forged.json");
        for bytes in [tampered.to_bytes(), sign(&st, &other)] {
            std::fs::write(&forged, bytes).unwrap();
            let (code, out) = consumer(&forged).unwrap();
            assert_eq!(code, 1, "{out}");
            assert!(out.starts_with("FAIL signature"), "{out}");
        }
    }

    // The report lists it, with the command that checks it.
    let out = env.home().join("report");
    env.sg_ok(&["report", "--out", out.to_str().unwrap()]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let listed: Vec<&serde_json::Value> = report["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["stage"] == "stable" && a["item"] == "images/debian-host")
        .collect();
    assert_eq!(listed.len(), 1, "{:#}", report["attestations"]);
    let check = format!("stagegate verify --artifact {digest} --stage stable");
    assert_eq!(listed[0]["check"], check.as_str());
    assert_eq!(listed[0]["keyid"], envelope.signatures[0].keyid.as_str());
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("Verification summaries"), "{index}");
    assert!(index.contains(&check), "{index}");

    // Untouched, it holds again; a digest nothing vouches for does not.
    assert_eq!(verify(&env, &digest).0, 0);
    let (code, out) = verify(&env, &format!("sha256:{}", "0".repeat(64)));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no verification summary"), "{out}");
}
