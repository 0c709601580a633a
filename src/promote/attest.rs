//! A promotion's verification summary: for people who only pull the artifacts (DESIGN
//! §4.16, last sentence).
//!
//! When a promotion into T moves an item with a build record (an image, a built
//! component) and this runner holds a signing key, the artifact gets an in-toto Statement
//! v1 with the SLSA verification summary predicate (VSA v1): who verified (stagegate and
//! the key), when (the decision's time), what (the artifact's sha256), against which rules
//! (T's `stagegate.yaml` at the promotion, by commit and sha256), on which evidence (the
//! job keys and the ledger commit the decision rests on), and the stage it reached. It is
//! signed as a DSSE envelope ([`crate::dsse`]) with the key that signs the promotion,
//! recorded in the results ledger at `attestations/<stage>/<hex>.json` (a runner's record),
//! and kept beside the artifact in the store: an OCI referrer on a registry, a file next to
//! the blob in a directory.
//!
//! Everything in a statement but the verifier is derived from the promotion commit alone
//! ([`derive`]), so [`verify_artifact`] checks a summary by deriving it again and comparing,
//! field by field, after checking its signature against T's `trust:` and replaying the
//! promotion itself ([`super::verify::verify_commit`]).

use std::collections::{BTreeMap, BTreeSet};

use gix::ObjectId;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::DecisionRecord;
use crate::artifact::Store;
use crate::dsse::{self, Envelope};
use crate::error::{Error, Result};
use crate::keys::{Digest, JobKey};
use crate::ledger::Ledger;
use crate::manifest::Stage;
use crate::plan::{CandidateId, Planner, short};
use crate::records::{self, BuiltRecord};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/verification_summary/v1";
/// The file name a directory store keeps a summary under, after `<hex>.<stage>`.
pub const SUFFIX: &str = "vsa.json";
/// Where the ledger keeps the summaries: `attestations/<stage>/<hex>.json`.
pub const LEDGER_DIR: &str = "attestations";

/// An in-toto Statement v1 carrying a SLSA VSA v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<Subject>,
    pub predicate_type: String,
    pub predicate: Vsa,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

/// A resource descriptor: a URI and the digests that pin it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Vsa {
    pub verifier: Verifier,
    pub time_verified: String,
    pub resource_uri: String,
    pub policy: Resource,
    pub input_attestations: Vec<Resource>,
    pub verification_result: String,
    pub verified_levels: Vec<String>,
    pub slsa_version: String,
    /// What the summary is about in stagegate's words (an extension of the predicate).
    pub stagegate: Promoted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verifier {
    /// `stagegate:SHA256:…`: stagegate, as the key with that fingerprint.
    pub id: String,
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promoted {
    pub item: String,
    pub version: String,
    pub from: String,
    pub stage: String,
    /// The promotion commit on the stage's branch.
    pub promotion: String,
    /// The ledger commit the decision rests on (absent when the ledger was empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    /// The keys of the jobs the decision weighed.
    pub jobs: Vec<JobKey>,
}

/// The verifier id of a summary signed by the key with `fingerprint`.
pub fn verifier_id(fingerprint: &str) -> String {
    format!("stagegate:{fingerprint}")
}

/// The decision record a promotion commit on `stage` adds, with its path.
fn decision_of(
    planner: &Planner,
    stage: &str,
    commit: ObjectId,
    parent: ObjectId,
) -> Result<Option<(String, DecisionRecord)>> {
    let repo = planner.repo;
    let dir = records::decisions_dir(stage);
    let before: BTreeSet<String> = repo
        .list(repo.tree_of(parent)?, &dir)?
        .into_iter()
        .map(|e| e.name)
        .collect();
    let added: Vec<_> = repo
        .list(repo.tree_of(commit)?, &dir)?
        .into_iter()
        .filter(|e| !before.contains(&e.name))
        .collect();
    let [entry] = added.as_slice() else {
        return Ok(None);
    };
    let path = format!("{dir}/{}", entry.name);
    let rec = records::parse(&path, &repo.blob(entry.id)?)?;
    Ok(Some((path, rec)))
}

/// The summaries promotion `commit` on `stage` earns, one per moved item with a build
/// record, as signed by the key with `fingerprint`: (statement, the artifact's location).
pub fn derive(
    planner: &Planner,
    stage: &Stage,
    commit: ObjectId,
    fingerprint: &str,
) -> Result<Vec<Statement>> {
    let repo = planner.repo;
    let info = repo.commit(commit)?;
    let Some(parent) = info.parents.first().copied() else {
        return Ok(Vec::new());
    };
    let Some((path, rec)) = decision_of(planner, &stage.name, commit, parent)? else {
        return Ok(Vec::new());
    };
    let pipeline = repo
        .read(repo.tree_of(parent)?, "stagegate.yaml")?
        .unwrap_or_default();
    let policy = Resource {
        uri: format!("git+{}@{parent}#stagegate.yaml", stage.ref_name()),
        digest: BTreeMap::from([
            ("gitCommit".into(), parent.to_string()),
            ("sha256".into(), hex::encode(Sha256::digest(&pipeline))),
        ]),
    };
    let ledger_ref = &planner.pipeline.results_ref;
    let mut inputs = vec![Resource {
        uri: format!("git+{}@{commit}#{path}", stage.ref_name()),
        digest: BTreeMap::from([("gitCommit".into(), commit.to_string())]),
    }];
    let ledger_digest: BTreeMap<String, String> = rec
        .ledger
        .iter()
        .map(|l| ("gitCommit".to_string(), l.clone()))
        .collect();
    let at = rec.ledger.as_deref().unwrap_or("(empty)");
    let jobs: Vec<JobKey> = rec.jobs.iter().map(|j| j.key.clone()).collect();
    for key in &jobs {
        inputs.push(Resource {
            uri: format!("git+{ledger_ref}@{at}#{}", crate::ledger::key_dir(key)),
            digest: ledger_digest.clone(),
        });
    }
    let tree = repo.tree_of(commit)?;
    let mut out = Vec::new();
    for c in &rec.candidates {
        let Some(item) = CandidateId::parse(&c.item).and_then(|id| id.item().cloned()) else {
            continue;
        };
        let built_path = records::built_path(&item);
        let Some(bytes) = repo.read(tree, &built_path)? else {
            continue;
        };
        let built: BuiltRecord = records::parse(&built_path, &bytes)?;
        let Some(hex) = built.digest.as_str().strip_prefix("sha256:") else {
            continue;
        };
        out.push(Statement {
            type_: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: item.to_string(),
                digest: BTreeMap::from([("sha256".into(), hex.to_string())]),
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: Vsa {
                verifier: Verifier {
                    id: verifier_id(fingerprint),
                    version: BTreeMap::from([(
                        "stagegate".into(),
                        env!("CARGO_PKG_VERSION").into(),
                    )]),
                },
                time_verified: rec.decided_at.clone(),
                resource_uri: built.location.clone(),
                policy: policy.clone(),
                input_attestations: inputs.clone(),
                verification_result: "PASSED".into(),
                verified_levels: vec![format!("STAGEGATE_STAGE_{}", stage.name)],
                slsa_version: "1.0".into(),
                stagegate: Promoted {
                    item: item.to_string(),
                    version: built.version.clone(),
                    from: rec.from.clone(),
                    stage: stage.name.clone(),
                    promotion: commit.to_string(),
                    ledger: rec.ledger.clone(),
                    jobs: jobs.clone(),
                },
            },
        });
    }
    Ok(out)
}

/// The ledger path of the summary of `hex` reaching `stage`.
pub fn ledger_path(stage: &str, hex: &str) -> String {
    format!("{LEDGER_DIR}/{stage}/{hex}.json")
}

/// One summary published for a promotion.
#[derive(Debug, Clone, Serialize)]
pub struct Attested {
    pub item: String,
    pub digest: Digest,
    pub stage: String,
    /// Its path in the results ledger.
    pub ledger: String,
    /// Where the store keeps it, or why it could not.
    pub location: std::result::Result<String, String>,
}

/// Sign and publish the summaries promotion `commit` on `stage` earns: into the ledger,
/// then beside each artifact in the store. Without a signing key there is nothing to sign
/// with, and nothing is published. A store that cannot be written is reported (the
/// ledger's copy stands), never a reason to take the promotion back.
pub fn publish(planner: &Planner, stage: &Stage, commit: ObjectId) -> Result<Vec<Attested>> {
    let Some(signer) = crate::sshsig::signer() else {
        return Ok(Vec::new());
    };
    let statements = derive(planner, stage, commit, &signer.fingerprint())?;
    if statements.is_empty() {
        return Ok(Vec::new());
    }
    let mut signed = Vec::new();
    for st in statements {
        let payload = serde_json::to_vec(&st).expect("a statement serializes");
        let env = Envelope::sign(dsse::IN_TOTO, &payload, signer).map_err(Error::infra)?;
        signed.push((st, env.to_bytes()));
    }
    let files: Vec<(String, String)> = signed
        .iter()
        .map(|(st, bytes)| {
            (
                ledger_path(&stage.name, &st.subject[0].digest["sha256"]),
                String::from_utf8_lossy(bytes).into_owned(),
            )
        })
        .collect();
    let ledger = Ledger::new(planner.repo, &planner.pipeline.results_ref);
    let names: Vec<String> = signed
        .iter()
        .map(|(st, _)| {
            format!(
                "{} {}",
                st.predicate.stagegate.item, st.predicate.stagegate.version
            )
        })
        .collect();
    ledger.put_new(
        &files,
        &format!(
            "Attest {} reached {}\n\nSLSA verification summaries of promotion {commit}, signed by {}.\n",
            names.join(", "),
            stage.name,
            signer.fingerprint()
        ),
    )?;
    let store = Store::open(
        planner.pipeline.artifact_store.as_deref(),
        planner.repo.root_dir(),
        planner.repo.git_dir(),
    )?;
    let mut out = Vec::new();
    for ((st, bytes), (path, _)) in signed.into_iter().zip(files) {
        let p = &st.predicate.stagegate;
        let digest = Digest::from(format!("sha256:{}", st.subject[0].digest["sha256"]));
        let notes = BTreeMap::from([
            (
                "in-toto.io/predicate-type".to_string(),
                PREDICATE_TYPE.to_string(),
            ),
            ("dev.stagegate.item".to_string(), p.item.clone()),
            ("dev.stagegate.version".to_string(), p.version.clone()),
            ("dev.stagegate.stage".to_string(), p.stage.clone()),
            ("dev.stagegate.promotion".to_string(), p.promotion.clone()),
        ]);
        let location = store
            .attach(
                &digest,
                &format!("{}.{SUFFIX}", stage.name),
                &bytes,
                dsse::MEDIA_TYPE,
                notes,
            )
            .map_err(|e| e.to_string());
        out.push(Attested {
            item: p.item.clone(),
            digest,
            stage: stage.name.clone(),
            ledger: path,
            location,
        });
    }
    Ok(out)
}

/// What checking one summary found.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub digest: Digest,
    /// The stage the summary says the artifact reached (as it says, checked or not).
    pub stage: String,
    pub item: String,
    pub version: String,
    pub promotion: String,
    /// Who signed it, when a key T trusts did.
    pub signer: Option<String>,
    /// Where this very summary was found: the ledger path, store locations.
    pub sources: Vec<String>,
    pub holds: bool,
    pub problems: Vec<String>,
}

/// What `verify --artifact` found: each summary checked, and what could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactReport {
    pub digest: Digest,
    pub checked: Vec<Checked>,
    /// The store could not be read (the ledger's copies were still checked).
    pub notes: Vec<String>,
}

/// `sha256:<hex>` from `sha256:<hex>` or `<hex>` (as a person gives it on the command
/// line), or a usage error.
pub fn parse_digest(s: &str) -> Result<Digest> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Digest::from(format!("sha256:{hex}")))
    } else {
        Err(Error::usage_help(
            format!("{s:?} is not an artifact digest"),
            "give the sha256 digest of the artifact, as `sha256:<64 hex digits>` (the `digest:` of its build record)",
        ))
    }
}

/// Find the summaries of the artifact `digest` (in the ledger and the store), for `stage`
/// only when given, and check each against the `trust:` of its stage.
pub fn verify_artifact(
    planner: &Planner,
    digest: &Digest,
    stage: Option<&Stage>,
) -> Result<ArtifactReport> {
    let repo = planner.repo;
    let hex = digest.hex();
    let mut found: Vec<(Vec<u8>, Vec<String>)> = Vec::new();
    let mut add = |bytes: Vec<u8>, source: String| match found.iter_mut().find(|(b, _)| *b == bytes)
    {
        Some((_, sources)) => sources.push(source),
        None => found.push((bytes, vec![source])),
    };
    let ledger = Ledger::new(repo, &planner.pipeline.results_ref);
    let view = ledger.view()?;
    let stages: Vec<&Stage> = match stage {
        Some(s) => vec![s],
        None => planner.pipeline.stages.iter().collect(),
    };
    for s in &stages {
        let path = ledger_path(&s.name, hex);
        if let Some(bytes) = view.read(&path)? {
            add(bytes, format!("{}:{path}", planner.pipeline.results_ref));
        }
    }
    let mut notes = Vec::new();
    let store = Store::open(
        planner.pipeline.artifact_store.as_deref(),
        repo.root_dir(),
        repo.git_dir(),
    )?;
    match store.attached(digest, SUFFIX, dsse::MEDIA_TYPE) {
        Ok(list) => {
            for (location, bytes) in list {
                add(bytes, location);
            }
        }
        Err(e) => notes.push(format!(
            "the store {} could not be read: {e}",
            store.describe()
        )),
    }
    let mut checked = Vec::new();
    for (bytes, sources) in found {
        let c = check(planner, hex, &bytes, sources)?;
        if stage.is_none_or(|s| s.name == c.stage) {
            checked.push(c);
        }
    }
    Ok(ArtifactReport {
        digest: digest.clone(),
        checked,
        notes,
    })
}

/// Check one summary of the artifact `hex`.
fn check(planner: &Planner, hex: &str, bytes: &[u8], sources: Vec<String>) -> Result<Checked> {
    let repo = planner.repo;
    let mut c = Checked {
        digest: Digest::from(format!("sha256:{hex}")),
        stage: String::new(),
        item: String::new(),
        version: String::new(),
        promotion: String::new(),
        signer: None,
        sources,
        holds: false,
        problems: Vec::new(),
    };
    let env = match Envelope::parse(bytes) {
        Ok(e) => e,
        Err(e) => {
            c.problems.push(e.to_string());
            return Ok(c);
        }
    };
    if env.payload_type != dsse::IN_TOTO {
        c.problems.push(format!(
            "the envelope's payload is {:?}, not an in-toto statement",
            env.payload_type
        ));
    }
    let st: Statement = match env
        .payload_bytes()
        .map_err(|e| e.to_string())
        .and_then(|p| serde_json::from_slice(&p).map_err(|e| e.to_string()))
    {
        Ok(st) => st,
        Err(e) => {
            c.problems
                .push(format!("the payload is not a verification summary: {e}"));
            return Ok(c);
        }
    };
    let p = &st.predicate.stagegate;
    c.stage = p.stage.clone();
    c.item = p.item.clone();
    c.version = p.version.clone();
    c.promotion = p.promotion.clone();
    if st.type_ != STATEMENT_TYPE || st.predicate_type != PREDICATE_TYPE {
        c.problems.push(format!(
            "a statement of {:?} with a {:?} predicate, not a SLSA verification summary",
            st.type_, st.predicate_type
        ));
    }
    let subject: Vec<&str> = st
        .subject
        .iter()
        .filter_map(|s| s.digest.get("sha256").map(String::as_str))
        .collect();
    if subject != [hex] {
        c.problems.push(format!(
            "subject: the summary is about sha256:{}, not the artifact sha256:{hex}",
            subject.join(", sha256:")
        ));
    }
    let Ok(stage) = planner.stage(&p.stage) else {
        c.problems.push(format!(
            "it names stage {:?}, which the pipeline does not have",
            p.stage
        ));
        return Ok(c);
    };
    let stage = stage.clone();
    let promotion = match ObjectId::from_hex(p.promotion.as_bytes())
        .ok()
        .filter(|id| repo.commit(*id).is_ok())
    {
        Some(id) => id,
        None => {
            c.problems.push(format!(
                "it names promotion {:?}, which is not a commit of this repository (fetch {} first)",
                p.promotion, stage.branch
            ));
            return Ok(c);
        }
    };
    let head = planner.stage_head(&stage)?;
    if !repo.is_ancestor(promotion, head)? {
        c.problems.push(format!(
            "its promotion {} is not in the history of {}",
            short(promotion),
            stage.branch
        ));
    }
    let info = repo.commit(promotion)?;
    let Some(parent) = info.parents.first().copied() else {
        c.problems.push(format!(
            "its promotion {} is a root commit",
            short(promotion)
        ));
        return Ok(c);
    };
    // The signature: by a runner key the trust: of T (as the promotion was judged) lists.
    let keys: Vec<(String, ssh_key::PublicKey)> = planner
        .trust_of(parent)?
        .map(|t| {
            t.runners
                .iter()
                .filter_map(|r| {
                    Some((
                        r.name.clone(),
                        crate::sshsig::parse_public_key(&r.key).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut fingerprint = None;
    if keys.is_empty() {
        c.problems.push(format!(
            "the pipeline of {} at the promotion has no trust.runners: nothing to check the signature against",
            stage.name
        ));
    } else {
        match env.verify(&keys) {
            Ok(name) => {
                let key = &keys
                    .iter()
                    .find(|(n, _)| n == name)
                    .expect("a listed key")
                    .1;
                let fp = crate::sshsig::fingerprint(key);
                c.signer = Some(format!("{name} ({fp})"));
                fingerprint = Some(fp);
            }
            Err(e) => c.problems.push(format!(
                "signature: {e}; the trust: of {} lists {}",
                stage.name,
                keys.iter()
                    .map(|(n, k)| format!("{n} ({})", crate::sshsig::fingerprint(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    // Everything else is the promotion's: derive it again and compare.
    let fp = fingerprint.clone().unwrap_or_default();
    let want = derive(planner, &stage, promotion, &fp)?;
    let Some(want) = want
        .iter()
        .find(|w| w.predicate.stagegate.item == p.item)
        .or_else(|| want.first())
    else {
        c.problems.push(format!(
            "its promotion {} moved no built artifact into {}",
            short(promotion),
            stage.name
        ));
        return Ok(c);
    };
    let (got, exp) = (&st.predicate, &want.predicate);
    if st.subject != want.subject {
        c.problems.push(format!(
            "subject: the promotion moved {} sha256:{}, the summary says {}",
            exp.stagegate.item,
            want.subject[0].digest["sha256"],
            st.subject
                .iter()
                .map(|s| format!("{} {:?}", s.name, s.digest))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if got.policy != exp.policy {
        c.problems.push(format!(
            "policy: the summary names {} {:?}, the pipeline at the promotion is {} {:?}",
            got.policy.uri, got.policy.digest, exp.policy.uri, exp.policy.digest
        ));
    }
    if got.input_attestations != exp.input_attestations
        || got.stagegate.jobs != exp.stagegate.jobs
        || got.stagegate.ledger != exp.stagegate.ledger
    {
        c.problems.push(format!(
            "results: the summary rests on jobs {} at ledger {}, the promotion on jobs {} at ledger {}",
            got.stagegate.jobs.join(", "),
            got.stagegate.ledger.as_deref().unwrap_or("(none)"),
            exp.stagegate.jobs.join(", "),
            exp.stagegate.ledger.as_deref().unwrap_or("(none)"),
        ));
    }
    if fingerprint.is_some() && got.verifier.id != exp.verifier.id {
        c.problems.push(format!(
            "verifier: the summary says {}, but it is signed by {}",
            got.verifier.id, exp.verifier.id
        ));
    }
    // Anything else (time, stage, levels, result, location): the promotion's, exactly.
    let mut rest = st.clone();
    rest.subject = want.subject.clone();
    rest.predicate.policy = exp.policy.clone();
    rest.predicate.input_attestations = exp.input_attestations.clone();
    rest.predicate.stagegate.jobs = exp.stagegate.jobs.clone();
    rest.predicate.stagegate.ledger = exp.stagegate.ledger.clone();
    rest.predicate.verifier = exp.verifier.clone();
    if &rest != want {
        c.problems.push(format!(
            "the summary is not the one promotion {} earns: expected {}",
            short(promotion),
            serde_json::to_string(&want.predicate).unwrap_or_default()
        ));
    }
    // The promotion itself: replayed from git, on the ledger it rests on.
    let v = super::verify::verify_commit(planner, &stage, promotion, None)?;
    for problem in v.problems {
        c.problems.push(format!(
            "its promotion {} does not hold: {problem}",
            short(promotion)
        ));
    }
    c.holds = c.problems.is_empty();
    Ok(c)
}
