//! Whose evidence counts (DESIGN §4.16 a).
//!
//! With `trust:` in T's pipeline, a record of the results ledger counts only when the
//! ledger commit that wrote it is signed (git's SSH format, [`crate::sshsig`]) by a key T
//! trusts for that kind of record:
//!
//! | path in the ledger                                | who may write it                       |
//! |---------------------------------------------------|----------------------------------------|
//! | results, `decisions/`, `seen/`, `bisect/`, `attestations/`, a rejected version | a runner   |
//! | `overrides/waive/…`, `approve/`, `freeze/`, `quarantine/`, `recheck/` | a person with that kind in `may` |
//! | `overrides/removed/<id>.yaml`                     | `unfreeze`, `unquarantine`, or `waive` / `approve` for those |
//! | `versions/…` saying `dropped`                     | a person with `drop`                   |
//!
//! Commits that are ancestors of `trust.since` (the ledger as it was when `trust:` was
//! adopted) count as they are; a key moved to `trust.retired` counts only in the history
//! of its `until` commit. Everything else is *not counted*, and says why: unsigned, a bad
//! signature, an untrusted key, or a key not entitled to that kind of record.
//! [`assess`] walks the ledger's commits once and keeps what it found in
//! `<git-dir>/stagegate/evidence/`, so a later call reads only the commits added since.
//! The ledger view leaves what is not counted out of every read ([`crate::ledger`]), so the
//! gate, `why`, `status`, the report and `verify` weigh the same evidence.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::{Deserialize, Serialize};
use ssh_key::public::KeyData;

use crate::error::{Context, Result};
use crate::manifest::{RecordKind, Trust};
use crate::repo::Repo;

/// Who signed a commit, as `trust:` sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Signer {
    /// A key `trust:` lists: as a runner's, a person's (with what they may write), or both
    /// (one maintainer's key on a small setup).
    Trusted {
        name: String,
        runner: bool,
        may: Vec<RecordKind>,
    },
    Retired(String, Option<ObjectId>),
    Untrusted(String),
    Unsigned,
    Bad(String),
}

/// Why a record does not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "why")]
pub enum Why {
    /// Its commit carries no signature.
    Unsigned,
    /// Its commit's signature does not verify.
    BadSignature { detail: String },
    /// Signed by a key `trust:` does not list.
    UntrustedKey { fingerprint: String },
    /// Signed by someone `trust:` does not allow to write this kind of record.
    NotEntitled { signer: String, kind: String },
    /// Signed by a retired key after its retirement.
    Retired { signer: String },
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Unsigned => f.write_str("unsigned"),
            Why::BadSignature { detail } => write!(f, "bad signature ({detail})"),
            Why::UntrustedKey { fingerprint } => write!(f, "untrusted key {fingerprint}"),
            Why::NotEntitled { signer, kind } => {
                write!(f, "not entitled: {signer} may not write {kind} records")
            }
            Why::Retired { signer } => {
                write!(f, "signed by {signer}'s retired key after its retirement")
            }
        }
    }
}

/// A record of the ledger that does not count, the commit that wrote it, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCounted {
    pub path: String,
    pub commit: String,
    #[serde(flatten)]
    pub why: Why,
}

/// What of the ledger does not count under one `trust:`, by path; and the records a ledger
/// commit deleted, which count as they were (the ledger only grows: stagegate never removes
/// a record, so a deletion is someone's edit, never evidence).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evidence {
    pub not_counted: BTreeMap<String, NotCounted>,
    #[serde(default)]
    pub deleted: BTreeMap<String, Deleted>,
}

/// A record a ledger commit deleted: its last content, and the commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub path: String,
    pub blob: String,
    pub commit: String,
}

impl Evidence {
    pub fn counts(&self, path: &str) -> bool {
        !self.not_counted.contains_key(path)
    }

    /// The blob of `path` if a ledger commit deleted it.
    pub fn restored(&self, path: &str) -> Option<ObjectId> {
        self.deleted
            .get(path)
            .and_then(|d| ObjectId::from_hex(d.blob.as_bytes()).ok())
    }

    /// The deleted records directly under `dir/`: (file name, blob).
    pub fn restored_in(&self, dir: &str) -> Vec<(String, ObjectId)> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.deleted
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !p[prefix.len()..].contains('/'))
            .filter_map(|(p, d)| {
                let blob = ObjectId::from_hex(d.blob.as_bytes()).ok()?;
                Some((p[prefix.len()..].to_string(), blob))
            })
            .collect()
    }
}

/// `trust:` with its keys parsed.
pub struct Policy {
    runners: Vec<(String, KeyData)>,
    people: Vec<(String, KeyData, Vec<RecordKind>)>,
    retired: Vec<(String, KeyData, Option<ObjectId>)>,
    since: Option<ObjectId>,
    /// Names this policy in the cache.
    id: String,
}

impl Policy {
    pub fn new(trust: &Trust) -> Policy {
        let key = |k: &str| {
            crate::sshsig::parse_public_key(k)
                .ok()
                .map(|p| p.key_data().clone())
        };
        let oid = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| ObjectId::from_hex(s.as_bytes()).ok())
        };
        let id = {
            use sha2::Digest;
            let yaml = serde_json::to_string(trust).unwrap_or_default();
            hex::encode(&sha2::Sha256::digest(yaml.as_bytes())[..10])
        };
        Policy {
            runners: trust
                .runners
                .iter()
                .filter_map(|r| Some((r.name.clone(), key(&r.key)?)))
                .collect(),
            people: trust
                .people
                .iter()
                .filter_map(|p| Some((p.name.clone(), key(p.key.as_deref()?)?, p.may.clone())))
                .collect(),
            retired: trust
                .retired
                .iter()
                .filter_map(|r| {
                    Some((
                        r.name.clone().unwrap_or_else(|| "a retired key".into()),
                        key(&r.key)?,
                        oid(&r.until),
                    ))
                })
                .collect(),
            since: oid(&trust.since),
            id,
        }
    }

    /// Names this policy: two `trust:` blocks alike have the same id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn signer_of(&self, data: &[u8]) -> Signer {
        let Ok(Some((sig, signed))) =
            gix::objs::CommitRefIter::signature(data, gix::hash::Kind::Sha1)
        else {
            return Signer::Unsigned;
        };
        let key = match crate::sshsig::verify(sig.as_ref(), &signed.to_bstring()) {
            Ok(k) => k,
            Err(e) => return Signer::Bad(e),
        };
        let kd = key.key_data();
        let runner = self.runners.iter().find(|(_, k)| k == kd);
        let person = self.people.iter().find(|(_, k, _)| k == kd);
        if runner.is_some() || person.is_some() {
            return Signer::Trusted {
                name: person
                    .map(|(n, _, _)| n)
                    .or(runner.map(|(n, _)| n))
                    .cloned()
                    .unwrap_or_default(),
                runner: runner.is_some(),
                may: person.map(|(_, _, may)| may.clone()).unwrap_or_default(),
            };
        }
        if let Some((n, _, until)) = self.retired.iter().find(|(_, k, _)| k == kd) {
            return Signer::Retired(n.clone(), *until);
        }
        Signer::Untrusted(crate::sshsig::fingerprint(&key))
    }
}

/// Whether `signer` may write a record for `w`, or why not.
fn allowed(signer: &Signer, w: Writer) -> std::result::Result<(), Why> {
    match (signer, w) {
        (Signer::Trusted { runner: true, .. }, Writer::Runner) => Ok(()),
        (Signer::Trusted { may, .. }, Writer::Person(k)) if may.contains(&k) => Ok(()),
        (Signer::Trusted { name, .. }, w) => Err(Why::NotEntitled {
            signer: name.clone(),
            kind: w.name().into(),
        }),
        (Signer::Retired(n, _), _) => Err(Why::Retired { signer: n.clone() }),
        (Signer::Untrusted(fp), _) => Err(Why::UntrustedKey {
            fingerprint: fp.clone(),
        }),
        (Signer::Unsigned, _) => Err(Why::Unsigned),
        (Signer::Bad(e), _) => Err(Why::BadSignature { detail: e.clone() }),
    }
}

impl Policy {
    /// Whether commit `id` is signed by someone `trust:` entitles to write a record of
    /// `kind` (a hold, a release on a stage branch), or why not.
    pub fn entitled(
        &self,
        repo: &Repo,
        id: ObjectId,
        kind: RecordKind,
    ) -> Result<std::result::Result<(), Why>> {
        let object = repo
            .git
            .find_object(id)
            .context(|| format!("reading commit {id}"))?;
        Ok(allowed(&self.signer_of(&object.data), Writer::Person(kind)))
    }

    /// Whether commit `id` is signed by a runner `trust:` lists, or why not.
    pub fn by_runner(&self, repo: &Repo, id: ObjectId) -> Result<std::result::Result<(), Why>> {
        let object = repo
            .git
            .find_object(id)
            .context(|| format!("reading commit {id}"))?;
        Ok(allowed(&self.signer_of(&object.data), Writer::Runner))
    }
}

/// Who may write a ledger path: a runner, or a person entitled to `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Runner,
    Person(RecordKind),
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Runner => "result",
            Writer::Person(k) => k.as_str(),
        }
    }
}

/// The kind of record at `path` (reading it only where the path does not say).
fn writer_of(repo: &Repo, path: &str, blob: ObjectId) -> Writer {
    let mut parts = path.split('/');
    match (parts.next(), parts.next()) {
        (Some("overrides"), Some(kind)) => match kind {
            "waive" => Writer::Person(RecordKind::Waive),
            "approve" => Writer::Person(RecordKind::Approve),
            "freeze" => Writer::Person(RecordKind::Freeze),
            "quarantine" => Writer::Person(RecordKind::Quarantine),
            "recheck" => Writer::Person(RecordKind::Recheck),
            "removed" => {
                #[derive(Deserialize)]
                struct Removal {
                    kind: String,
                }
                let kind = repo
                    .blob(blob)
                    .ok()
                    .and_then(|b| serde_saphyr::from_slice::<Removal>(&b).ok())
                    .map(|r| r.kind)
                    .unwrap_or_default();
                Writer::Person(match kind.as_str() {
                    "freeze" => RecordKind::Unfreeze,
                    "quarantine" => RecordKind::Unquarantine,
                    "approve" => RecordKind::Approve,
                    _ => RecordKind::Waive,
                })
            }
            // A kind this version does not know: only a person trusted for everything.
            _ => Writer::Person(RecordKind::Drop),
        },
        (Some("versions"), _) => {
            let dropped = repo
                .blob(blob)
                .ok()
                .is_some_and(|b| String::from_utf8_lossy(&b).contains("why: dropped"));
            if dropped {
                Writer::Person(RecordKind::Drop)
            } else {
                Writer::Runner
            }
        }
        _ => Writer::Runner,
    }
}

/// The cache of one policy's assessment: up to which ledger commit it was made.
#[derive(Serialize, Deserialize)]
struct Cached {
    tip: String,
    #[serde(default)]
    not_counted: Vec<NotCounted>,
    #[serde(default)]
    deleted: Vec<Deleted>,
}

/// What of the ledger at `tip` does not count under `policy`.
pub fn assess(repo: &Repo, tip: Option<ObjectId>, policy: &Policy) -> Result<Arc<Evidence>> {
    let Some(tip) = tip else {
        return Ok(Arc::default());
    };
    let dir = repo.git.common_dir().join("stagegate/evidence");
    let file = dir.join(format!("{}.json", policy.id));
    let mut evidence = Evidence::default();
    let mut hidden: Vec<ObjectId> = Vec::new();
    // The verdicts kept for the tip of an earlier call: read once.
    let cached = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
        .and_then(|c| {
            let at = ObjectId::from_hex(c.tip.as_bytes()).ok()?;
            repo.git.has_object(at).then_some((at, c))
        });
    let mut older = None;
    if let Some((at, c)) = cached {
        if at == tip || repo.is_ancestor(at, tip)? {
            evidence.not_counted = c
                .not_counted
                .into_iter()
                .map(|n| (n.path.clone(), n))
                .collect();
            evidence.deleted = c.deleted.into_iter().map(|d| (d.path.clone(), d)).collect();
            if at == tip {
                return Ok(Arc::new(evidence));
            }
            hidden.push(at);
        } else if repo.is_ancestor(tip, at)? {
            older = Some(c);
        }
    }
    if let Some(c) = older {
        // An older ledger than the one assessed last (`verify` replaying a decision): what
        // did not count then is what does not count now, written by a commit it holds.
        for n in c.not_counted {
            if let Ok(commit) = ObjectId::from_hex(n.commit.as_bytes())
                && repo.is_ancestor(commit, tip)?
            {
                evidence.not_counted.insert(n.path.clone(), n);
            }
        }
        let tree = repo.tree_of(tip)?;
        for d in c.deleted {
            if let Ok(commit) = ObjectId::from_hex(d.commit.as_bytes())
                && repo.is_ancestor(commit, tip)?
                && repo.entry(tree, &d.path)?.is_none()
            {
                evidence.deleted.insert(d.path.clone(), d);
            }
        }
        return Ok(Arc::new(evidence));
    }
    if let Some(s) = policy.since.filter(|s| repo.git.has_object(*s)) {
        hidden.push(s);
    }
    let walk = repo
        .git
        .rev_walk([tip])
        .with_hidden(hidden)
        .all()
        .context(|| "walking the results ledger".into())?;
    // The history of each retired key's `until`, read once when a commit it signed is met.
    let mut before_retirement: BTreeMap<ObjectId, HashSet<ObjectId>> = BTreeMap::new();
    for info in walk {
        let info = info.context(|| "walking the results ledger".into())?;
        let id = info.id;
        let object = repo
            .git
            .find_object(id)
            .context(|| format!("reading ledger commit {id}"))?;
        let signer = policy.signer_of(&object.data);
        let c = repo.commit(id)?;
        let allowed = |w: Writer| allowed(&signer, w);
        // A retired key's signature still counts in the history of its `until`, for what
        // it was entitled to then: a runner's records.
        let retired_ok = match &signer {
            Signer::Retired(_, Some(until)) if repo.git.has_object(*until) => {
                let set = match before_retirement.entry(*until) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        let mut set = HashSet::new();
                        for i in repo
                            .git
                            .rev_walk([*until])
                            .all()
                            .context(|| "walking the results ledger".into())?
                        {
                            set.insert(i.context(|| "walking the results ledger".into())?.id);
                        }
                        v.insert(set)
                    }
                };
                set.contains(&id)
            }
            _ => false,
        };
        // A runner's signature (or a retired key's within its history) makes every record a
        // runner may write count: only a person's kinds of record can still not count, so
        // only their directories are compared for what it added, never the results (a
        // ledger's first commit may hold a million of them). What it removed is compared
        // whoever signed: stagegate never removes a record.
        let (added, removed) =
            changed_paths(repo, &c, retired_ok || allowed(Writer::Runner).is_ok())?;
        for (path, blob) in removed {
            evidence.deleted.entry(path.clone()).or_insert(Deleted {
                path,
                blob: blob.to_string(),
                commit: id.to_string(),
            });
        }
        if retired_ok {
            continue;
        }
        for (path, blob) in added {
            if let Err(why) = allowed(writer_of(repo, &path, blob)) {
                evidence
                    .not_counted
                    .entry(path.clone())
                    .or_insert(NotCounted {
                        path,
                        commit: id.to_string(),
                        why,
                    });
            }
        }
    }
    // A deleted record written again since is there to read.
    let tip_tree = repo.tree_of(tip)?;
    let mut back = Vec::new();
    for p in evidence.deleted.keys() {
        if repo.entry(tip_tree, p)?.is_some() {
            back.push(p.clone());
        }
    }
    for p in back {
        evidence.deleted.remove(&p);
    }
    let cached = Cached {
        tip: tip.to_string(),
        not_counted: evidence.not_counted.values().cloned().collect(),
        deleted: evidence.deleted.values().cloned().collect(),
    };
    // A cache is a convenience: one that cannot be written is computed again next time.
    if std::fs::create_dir_all(&dir).is_ok()
        && let Ok(json) = serde_json::to_vec(&cached)
    {
        let tmp = dir.join(format!(".{}.{}", policy.id, std::process::id()));
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
    Ok(Arc::new(evidence))
}

/// Paths with their blobs.
type Paths = Vec<(String, ObjectId)>;

/// The top-level directories of the ledger holding the records a person writes
/// ([`writer_of`]): everything outside them is a runner's to write.
const PERSON_DIRS: [&str; 2] = ["overrides", "versions"];

/// The files commit `c` wrote: new or changed against its first parent and not taken from
/// another parent (a merge of two runners' ledgers writes nothing of its own), only those
/// under [`PERSON_DIRS`] with `person_only`; and the files of its first parent it removed,
/// with their blobs.
fn changed_paths(
    repo: &Repo,
    c: &crate::repo::CommitInfo,
    person_only: bool,
) -> Result<(Paths, Paths)> {
    let base = match c.parents.first() {
        Some(p) => Some(repo.tree_of(*p)?),
        None => None,
    };
    let mut out = Vec::new();
    let only: &[&str] = if person_only { &PERSON_DIRS } else { &[] };
    diff(repo, base, c.tree, "", only, &mut out)?;
    let mut removed = Vec::new();
    if let Some(b) = base {
        let mut differ = Vec::new();
        diff(repo, Some(c.tree), b, "", &[], &mut differ)?;
        // What the base holds differently is a change, not a removal.
        for (path, blob) in differ {
            if repo.entry(c.tree, &path)?.is_none() {
                removed.push((path, blob));
            }
        }
    }
    if c.parents.len() > 1 {
        let others: Vec<ObjectId> = c.parents[1..]
            .iter()
            .map(|p| repo.tree_of(*p))
            .collect::<Result<_>>()?;
        let mut mine = Vec::new();
        for (path, blob) in out {
            let mut theirs = false;
            for t in &others {
                if repo.entry(*t, &path)?.is_some_and(|e| e.id == blob) {
                    theirs = true;
                    break;
                }
            }
            if !theirs {
                mine.push((path, blob));
            }
        }
        out = mine;
    }
    Ok((out, removed))
}

/// The blobs of `new` that `old` lacks or holds differently, with their paths; when `only`
/// is not empty, only in the entries of `new` it names.
fn diff(
    repo: &Repo,
    old: Option<ObjectId>,
    new: ObjectId,
    prefix: &str,
    only: &[&str],
    out: &mut Vec<(String, ObjectId)>,
) -> Result<()> {
    if old == Some(new) {
        return Ok(());
    }
    let before: BTreeMap<String, (EntryKind, ObjectId)> = match old {
        Some(o) => repo
            .tree_entries(o)?
            .into_iter()
            .map(|e| (e.name, (e.kind, e.id)))
            .collect(),
        None => BTreeMap::new(),
    };
    for e in repo.tree_entries(new)? {
        if !only.is_empty() && !only.contains(&e.name.as_str()) {
            continue;
        }
        let path = format!("{prefix}{}", e.name);
        let was = before.get(&e.name);
        if was.is_some_and(|(_, id)| *id == e.id) {
            continue;
        }
        if e.kind == EntryKind::Tree {
            let old_tree = was
                .filter(|(k, _)| *k == EntryKind::Tree)
                .map(|(_, id)| *id);
            diff(repo, old_tree, e.id, &format!("{path}/"), &[], out)?;
        } else {
            out.push((path, e.id));
        }
    }
    Ok(())
}

/// With `trust:` in T's pipeline, what this process writes for the move into T counts only
/// when signed: refuse to run or decide without a key rather than write evidence that
/// would not count.
pub fn require_signer(to: &str, trust: Option<&Trust>) -> Result<()> {
    let Some(trust) = trust else {
        return Ok(());
    };
    let Some(signer) = crate::sshsig::signer() else {
        return Err(crate::Error::usage_help(
            format!(
                "the gate into {to} counts signed evidence only (`trust:` in stagegate.yaml), and this runner has no signing key"
            ),
            format!(
                "set {} to the private key of a runner listed in trust.runners (its text, or a file's path)",
                crate::sshsig::KEY_VAR
            ),
        ));
    };
    let mine = crate::sshsig::parse_public_key(&signer.public_line())
        .ok()
        .map(|k| k.key_data().clone());
    let listed = trust.runners.iter().any(|r| {
        crate::sshsig::parse_public_key(&r.key)
            .ok()
            .is_some_and(|k| Some(k.key_data()) == mine.as_ref())
    });
    if !listed {
        return Err(crate::Error::usage_help(
            format!(
                "the signing key {} ({}) is not a runner key the gate into {to} trusts: what it signs would not count",
                signer.fingerprint(),
                signer.source
            ),
            format!(
                "add it to trust.runners in stagegate.yaml (`{}`), or use a listed runner's key",
                signer.public_line()
            ),
        ));
    }
    Ok(())
}
