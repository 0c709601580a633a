//! Candidates: what differs between S's head tree and T's head tree, item by item.
//!
//! A candidate is an image, a component, a test or the pipeline file whose *content* — its
//! manifest, and the repository files it names (build recipe and `build.files` for an
//! image, script and `files:` for a test) — differs between the two trees. It is computed
//! from the trees alone, never from ancestry, so a commit history that went back and forth
//! changes nothing. Each candidate carries a content key (a hash of S's side) by which a
//! rejection, a first sighting or an approval is remembered, and the paths that move with it.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::keys::ContentKey;
use crate::manifest::{CandidateId, Diagnostic, ItemId, ItemKind, PIPELINE_FILE, Pos, TESTS_DIR};
use crate::records::RECORDS_DIR;
use crate::repo::Repo;

use super::Snapshot;

/// One side's content of a candidate: its manifest and the files it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    pub manifest: Option<ObjectId>,
    pub files: Vec<(String, Option<ObjectId>)>,
}

impl Content {
    /// `sha256` hex over the candidate and its content: how a version is remembered.
    pub fn key(&self, id: &CandidateId) -> ContentKey {
        let mut h = Sha256::new();
        h.update(format!("v1\0{id}\0"));
        match self.manifest {
            Some(m) => h.update(m.to_string()),
            None => h.update("absent"),
        }
        for (p, o) in &self.files {
            h.update(format!("\0{p}="));
            if let Some(o) = o {
                h.update(o.to_string());
            }
        }
        ContentKey::from(hex::encode(h.finalize()))
    }
}

/// An item, test or pipeline whose content differs between S and T.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Candidate {
    #[serde(rename = "item")]
    pub id: CandidateId,
    /// T's version (`None`: new on S; tests and the pipeline have no version).
    pub from: Option<String>,
    /// S's version (`None`: removed on S).
    pub to: Option<String>,
    /// Present on S (false: a removal).
    pub present: bool,
    /// New on S (T does not have it).
    pub new: bool,
    /// Only the files it names changed, not its manifest.
    pub inputs_only: bool,
    /// The content key of S's side.
    pub content: ContentKey,
    /// Paths taken from S when it moves: the manifest and the files it names.
    #[serde(skip)]
    pub paths: Vec<String>,
    /// Why S's version cannot be judged: the manifest does not parse or does not resolve.
    /// Non-empty means the candidate is `invalid`.
    pub invalid: Vec<Diagnostic>,
}

impl Candidate {
    pub fn is_invalid(&self) -> bool {
        !self.invalid.is_empty()
    }
}

/// The candidates of S → T, sorted by id.
pub fn candidates(s: &Snapshot, t: &Snapshot) -> Result<Vec<Candidate>> {
    let mut ids: BTreeSet<CandidateId> = BTreeSet::new();
    // Manifests that differ.
    for (dir, make) in [
        (
            ItemKind::Image.dir(),
            (|n: &str| CandidateId::Item(ItemId::new(ItemKind::Image, n)))
                as fn(&str) -> CandidateId,
        ),
        (ItemKind::Component.dir(), |n: &str| {
            CandidateId::Item(ItemId::new(ItemKind::Component, n))
        }),
        (TESTS_DIR, |n: &str| CandidateId::Test(n.to_string())),
    ] {
        let (a, b) = (s.dir(dir)?, t.dir(dir)?);
        if a == b {
            continue;
        }
        let manifests = |es: &[crate::repo::Entry]| -> BTreeMap<String, ObjectId> {
            es.iter()
                .filter(|e| e.kind != EntryKind::Tree)
                .filter_map(|e| e.name.strip_suffix(".yaml").map(|n| (n.to_string(), e.id)))
                .collect()
        };
        let (ma, mb) = (manifests(&a), manifests(&b));
        for name in ma.keys().chain(mb.keys()) {
            if ma.get(name) != mb.get(name) {
                ids.insert(make(name));
            }
        }
    }
    if s.oid(PIPELINE_FILE)? != t.oid(PIPELINE_FILE)? {
        ids.insert(CandidateId::Pipeline);
    }
    // Every path that differs, read once for the named files here and the repository
    // files below.
    let differ = changed_paths(s, t)?;
    // Named files that differ (outside the manifest directories, compared above): every
    // item or test naming one (on either side) is a candidate.
    let changed: BTreeSet<&str> = differ
        .iter()
        .filter(|p| ItemKind::from_dir(p.split('/').next().unwrap_or_default()).is_none())
        .map(String::as_str)
        .collect();
    if !changed.is_empty() {
        for snap in [s, t] {
            for (id, content) in named_contents(snap)? {
                if ids.contains(&id) {
                    continue;
                }
                if content.files.iter().any(|(p, _)| touches(&changed, p)) {
                    ids.insert(id);
                }
            }
        }
    }
    let mut out = Vec::new();
    for id in ids {
        out.push(candidate(s, t, id)?);
    }
    if let Some(files) = files_candidate(s, t, differ)? {
        out.push(files);
    }
    Ok(out)
}

/// Every path that differs between S and T, but stagegate's records and the pipeline,
/// read through the snapshots' cache (the manifest directories were read for the
/// candidates already).
fn changed_paths(s: &Snapshot, t: &Snapshot) -> Result<Vec<String>> {
    let skip = |name: &str| name == RECORDS_DIR || name == PIPELINE_FILE;
    let mut changed = Vec::new();
    let read = |id: ObjectId| s.tree_entries(id);
    changed_files_in(&read, Some(s.tree), Some(t.tree), "", &skip, &mut changed)?;
    Ok(changed)
}

/// The repository files that differ between S and T, as one candidate: every differing
/// path that is not the pipeline, stagegate's records, a manifest, or a file an item or a
/// test names on either side.
pub fn repository_files(s: &Snapshot, t: &Snapshot) -> Result<Option<Candidate>> {
    files_candidate(s, t, changed_paths(s, t)?)
}

/// [`repository_files`], from `changed` ([`changed_paths`]).
fn files_candidate(
    s: &Snapshot,
    t: &Snapshot,
    mut changed: Vec<String>,
) -> Result<Option<Candidate>> {
    let manifest = |p: &str| {
        p.split_once('/').is_some_and(|(dir, rest)| {
            (ItemKind::from_dir(dir).is_some() || dir == TESTS_DIR)
                && !rest.contains('/')
                && rest.ends_with(".yaml")
        })
    };
    changed.retain(|p| !manifest(p));
    if changed.is_empty() {
        return Ok(None);
    }
    let mut named: Vec<String> = Vec::new();
    for snap in [s, t] {
        for (_, content) in named_contents(snap)? {
            named.extend(content.files.into_iter().map(|(p, _)| p));
        }
    }
    let named: BTreeSet<&str> = named.iter().map(String::as_str).collect();
    changed.retain(|p| {
        !named.contains(p.as_str())
            && !named
                .iter()
                .any(|n| p.starts_with(&format!("{}/", n.trim_end_matches('/'))))
    });
    if changed.is_empty() {
        return Ok(None);
    }
    let id = CandidateId::Files;
    let mut files = Vec::new();
    for p in &changed {
        files.push((p.clone(), s.oid(p)?));
    }
    let content = Content {
        manifest: None,
        files,
    };
    let present = content.files.iter().any(|(_, o)| o.is_some());
    Ok(Some(Candidate {
        from: None,
        to: None,
        present,
        new: false,
        inputs_only: true,
        content: content.key(&id),
        paths: changed,
        invalid: Vec::new(),
        id,
    }))
}

fn touches(changed: &BTreeSet<&str>, path: &str) -> bool {
    changed.contains(path) || {
        let dir = format!("{path}/");
        changed.iter().any(|c| c.starts_with(&dir))
    }
}

/// The content of every item (image or component) with a build and every test of `snap`
/// that parses.
fn named_contents(snap: &Snapshot) -> Result<Vec<(CandidateId, Content)>> {
    let mut out = Vec::new();
    for id in ItemKind::ALL
        .into_iter()
        .map(|k| snap.item_ids(k))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        if let Ok(Some((oid, item))) = snap.item(&id)
            && item.build.is_some()
        {
            out.push((
                CandidateId::Item(id),
                Content {
                    manifest: Some(oid),
                    files: snap.build_files(&item)?,
                },
            ));
        }
    }
    if let Ok(tests) = snap.tests() {
        for (oid, test) in tests.iter() {
            out.push((
                CandidateId::Test(test.name.clone()),
                Content {
                    manifest: Some(*oid),
                    files: snap.test_files(test)?,
                },
            ));
        }
    }
    Ok(out)
}

/// One side's content of `id`, and its diagnostics when its manifest does not parse.
pub fn content_of(snap: &Snapshot, id: &CandidateId) -> Result<(Content, Vec<Diagnostic>)> {
    let manifest = snap.oid(&id.path())?;
    let mut c = Content {
        manifest,
        files: Vec::new(),
    };
    if manifest.is_none() {
        return Ok((c, Vec::new()));
    }
    match id {
        CandidateId::Item(item) => match snap.item(item) {
            Ok(Some((_, it))) => c.files = snap.build_files(&it)?,
            Ok(None) => {}
            Err(crate::error::Error::Invalid(d)) => return Ok((c, d.0)),
            Err(e) => return Err(e),
        },
        CandidateId::Test(name) => match snap.test_manifest(name) {
            Ok(Some((_, t))) => c.files = snap.test_files(&t)?,
            Ok(None) => {}
            Err(crate::error::Error::Invalid(d)) => return Ok((c, d.0)),
            Err(e) => return Err(e),
        },
        CandidateId::Pipeline => {
            if let Err(crate::error::Error::Invalid(d)) = snap.pipeline() {
                return Ok((c, d.0));
            }
        }
        // Made by `candidates`, which alone knows which files are the repository's.
        CandidateId::Files => {}
    }
    Ok((c, Vec::new()))
}

fn candidate(s: &Snapshot, t: &Snapshot, id: CandidateId) -> Result<Candidate> {
    let (sc, mut invalid) = content_of(s, &id)?;
    let version = |snap: &Snapshot| -> Option<String> {
        id.item()
            .and_then(|i| snap.item(i).ok().flatten())
            .map(|(_, it)| it.version.clone())
    };
    let present = sc.manifest.is_some();
    let t_manifest = t.oid(&id.path())?;
    if present && invalid.is_empty() {
        invalid = resolve(s, &id)?;
    }
    let mut paths = vec![id.path()];
    paths.extend(sc.files.iter().map(|(p, _)| p.clone()));
    if !present {
        // A removal takes the files T's version named with it (S's copy wins where S
        // still has one), so none is left behind on T as an orphan.
        let (tc, _) = content_of(t, &id)?;
        for (p, _) in tc.files {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    Ok(Candidate {
        from: version(t),
        to: if present { version(s) } else { None },
        present,
        new: t_manifest.is_none(),
        inputs_only: present && t_manifest == sc.manifest,
        content: sc.key(&id),
        paths,
        invalid,
        id,
    })
}

/// What makes S's (parsed) version of `id` unusable: names that do not resolve on S.
fn resolve(s: &Snapshot, id: &CandidateId) -> Result<Vec<Diagnostic>> {
    let mut out = Vec::new();
    let file = id.path();
    let missing_file = |p: &str| {
        Diagnostic::new(
            &file,
            Pos::FILE,
            format!("{p:?} does not exist in the repository"),
        )
        .with_help("commit the file, or fix the path (paths are relative to the repository root)")
    };
    // A script or input that is a symbolic link: its blob is the link's text, so the job's
    // key would not cover what runs. Refused as `check` refuses it.
    let files = crate::repo::TreeFiles::new(s.repo, s.tree);
    let linked = |p: &str| -> Result<Option<Diagnostic>> {
        use crate::manifest::{FileKind, Files};
        Ok((files.kind(p)? == Some(FileKind::Symlink)).then(|| {
            Diagnostic::new(
                &file,
                Pos::FILE,
                format!("{p:?} is (or is under) a symbolic link"),
            )
            .with_help("a job's key covers the link, not what it points to: commit the file itself in place of the link")
        }))
    };
    match id {
        CandidateId::Item(item) => {
            let Some((_, it)) = s.item(item)? else {
                return Ok(out);
            };
            for (p, oid) in s.build_files(&it)? {
                if oid.is_none() {
                    out.push(missing_file(&p));
                } else if let Some(d) = linked(&p)? {
                    out.push(d);
                }
            }
            // `based-on` must reach a base image without looping.
            let mut seen = BTreeSet::from([item.clone()]);
            let mut cur = it.parent_image();
            while let Some(p) = cur {
                if !seen.insert(p.clone()) {
                    out.push(
                        Diagnostic::new(
                            &file,
                            Pos::FILE,
                            format!("`based-on` makes a cycle through {p}"),
                        )
                        .with_help("an image cannot be derived from itself"),
                    );
                    break;
                }
                match s.item(&p) {
                    Ok(Some((_, parent))) => cur = parent.parent_image(),
                    Ok(None) => {
                        out.push(
                            Diagnostic::new(
                                &file,
                                Pos::FILE,
                                format!("`based-on` names {p}, which does not exist"),
                            )
                            .with_help(format!("create {} or remove the reference", p.path())),
                        );
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        CandidateId::Test(name) => {
            let Some((_, test)) = s.test_manifest(name)? else {
                return Ok(out);
            };
            for u in &test.uses {
                if s.item_oid(u)?.is_none() {
                    out.push(
                        Diagnostic::new(
                            &file,
                            Pos::FILE,
                            format!("`uses` names {u}, which does not exist"),
                        )
                        .with_help(format!("create {} or remove the reference", u.path())),
                    );
                }
            }
            for (p, oid) in s.test_files(&test)? {
                if oid.is_none() {
                    out.push(missing_file(&p));
                } else if let Some(d) = linked(&p)? {
                    out.push(d);
                }
            }
        }
        CandidateId::Pipeline | CandidateId::Files => {}
    }
    Ok(out)
}

/// Paths of files that differ between two trees (top-level names `skip_top` says to skip
/// are left out). Identical subtrees are skipped by id.
pub fn changed_files(
    repo: &Repo,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
    prefix: &str,
    skip_top: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) -> Result<()> {
    let read = |id: ObjectId| repo.tree_entries(id).map(Rc::new);
    changed_files_in(&read, a, b, prefix, skip_top, out)
}

/// [`changed_files`], reading trees through `read` (a snapshot's cache of the trees it
/// already read).
pub fn changed_files_in(
    read: &dyn Fn(ObjectId) -> Result<Rc<Vec<crate::repo::Entry>>>,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
    prefix: &str,
    skip_top: &dyn Fn(&str) -> bool,
    out: &mut Vec<String>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ea = a.map(read).transpose()?.unwrap_or_default();
    let eb = b.map(read).transpose()?.unwrap_or_default();
    for (name, (x, y)) in differing(&ea, &eb) {
        if prefix.is_empty() && skip_top(name) {
            continue;
        }
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let tree =
            |e: Option<&crate::repo::Entry>| e.filter(|e| e.kind == EntryKind::Tree).map(|e| e.id);
        let (tx, ty) = (tree(x), tree(y));
        if tx.is_some() || ty.is_some() {
            changed_files_in(read, tx, ty, &path, skip_top, out)?;
        }
        if x.is_some_and(|e| e.kind != EntryKind::Tree)
            || y.is_some_and(|e| e.kind != EntryKind::Tree)
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The names whose entry differs (in id or kind, or present on one side only) between two
/// directories, in name order, with each side's entry. Both are walked at once in git's
/// order (a tree's name sorts as if it ended in `/`), as trees are written: a directory of
/// thousands of manifests where two changed costs one pass, not two maps. A tree whose
/// entries are out of that order (hostile or broken) is compared through maps instead.
type Sides<'e> = (
    Option<&'e crate::repo::Entry>,
    Option<&'e crate::repo::Entry>,
);
fn differing<'e>(
    ea: &'e [crate::repo::Entry],
    eb: &'e [crate::repo::Entry],
) -> BTreeMap<&'e str, Sides<'e>> {
    use std::cmp::Ordering;
    let git_cmp = |x: &crate::repo::Entry, y: &crate::repo::Entry| {
        let (nx, tx) = (x.name.as_bytes(), x.kind == EntryKind::Tree);
        let (ny, ty) = (y.name.as_bytes(), y.kind == EntryKind::Tree);
        let n = nx.len().min(ny.len());
        nx[..n].cmp(&ny[..n]).then_with(|| {
            let end = |name: &[u8], tree: bool| name.get(n).copied().or(tree.then_some(b'/'));
            end(nx, tx).cmp(&end(ny, ty))
        })
    };
    let sorted = |v: &[crate::repo::Entry]| {
        v.windows(2)
            .all(|w| git_cmp(&w[0], &w[1]) == Ordering::Less)
    };
    let mut out: BTreeMap<&str, Sides> = BTreeMap::new();
    if !sorted(ea) || !sorted(eb) {
        let ma: BTreeMap<&str, &crate::repo::Entry> =
            ea.iter().map(|e| (e.name.as_str(), e)).collect();
        let mb: BTreeMap<&str, &crate::repo::Entry> =
            eb.iter().map(|e| (e.name.as_str(), e)).collect();
        for name in ma.keys().chain(mb.keys()) {
            let (x, y) = (ma.get(name).copied(), mb.get(name).copied());
            if x.map(|e| (e.id, e.kind)) != y.map(|e| (e.id, e.kind)) {
                out.insert(name, (x, y));
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    loop {
        match (ea.get(i), eb.get(j)) {
            (None, None) => break,
            (Some(x), Some(y)) if git_cmp(x, y) == Ordering::Equal => {
                if (x.id, x.kind) != (y.id, y.kind) {
                    out.insert(&x.name, (Some(x), Some(y)));
                }
                i += 1;
                j += 1;
            }
            (Some(x), y) if y.is_none_or(|y| git_cmp(x, y) == Ordering::Less) => {
                out.entry(&x.name).or_default().0 = Some(x);
                i += 1;
            }
            (_, Some(y)) => {
                out.entry(&y.name).or_default().1 = Some(y);
                j += 1;
            }
            (Some(_), None) => unreachable!("handled by the arm above"),
        }
    }
    out
}

#[cfg(test)]
mod differing_tests {
    use super::*;
    use crate::repo::Entry;

    fn e(name: &str, kind: EntryKind, id: u8) -> Entry {
        let mut bytes = [0u8; 20];
        bytes[0] = id;
        Entry {
            name: name.to_string(),
            id: ObjectId::from_bytes_or_panic(&bytes),
            kind,
        }
    }

    /// What the directories' maps say: every name whose (id, kind) differs, by name.
    fn by_maps(a: &[Entry], b: &[Entry]) -> Vec<(String, Option<u8>, Option<u8>)> {
        let ma: BTreeMap<&str, &Entry> = a.iter().map(|e| (e.name.as_str(), e)).collect();
        let mb: BTreeMap<&str, &Entry> = b.iter().map(|e| (e.name.as_str(), e)).collect();
        let names: BTreeSet<&str> = ma.keys().chain(mb.keys()).copied().collect();
        names
            .into_iter()
            .filter(|n| ma.get(n).map(|e| (e.id, e.kind)) != mb.get(n).map(|e| (e.id, e.kind)))
            .map(|n| {
                let id = |m: &BTreeMap<&str, &Entry>| m.get(n).map(|e| e.id.as_bytes()[0]);
                (n.to_string(), id(&ma), id(&mb))
            })
            .collect()
    }

    fn walked(a: &[Entry], b: &[Entry]) -> Vec<(String, Option<u8>, Option<u8>)> {
        differing(a, b)
            .into_iter()
            .map(|(n, (x, y))| {
                let id = |e: Option<&Entry>| e.map(|e| e.id.as_bytes()[0]);
                (n.to_string(), id(x), id(y))
            })
            .collect()
    }

    #[test]
    fn walking_two_trees_in_git_order_finds_what_their_maps_find() {
        use EntryKind::{Blob, BlobExecutable, Tree};
        // In git's order: "foo" (blob) < "foo-bar" < "foo.c" < "foo" (tree, as "foo/").
        let a = vec![
            e("a.yaml", Blob, 1),
            e("foo", Blob, 2),
            e("foo-bar", Blob, 3),
            e("foo.c", Blob, 4),
            e("same", Tree, 5),
            e("x.yaml", Blob, 6),
        ];
        let b = vec![
            e("a.yaml", Blob, 1),
            e("foo-bar", Blob, 3),
            e("foo.c", BlobExecutable, 4),
            e("foo", Tree, 7),
            e("new.yaml", Blob, 8),
            e("same", Tree, 5),
            e("x.yaml", Blob, 9),
        ];
        let found = walked(&a, &b);
        assert_eq!(found, by_maps(&a, &b));
        assert_eq!(
            found.iter().map(|(n, ..)| n.as_str()).collect::<Vec<_>>(),
            ["foo", "foo.c", "new.yaml", "x.yaml"],
            "a blob that became a tree, a mode change, an added and a changed file"
        );
        assert_eq!(walked(&a, &a), []);
        assert_eq!(walked(&a, &[]), by_maps(&a, &[]));
        assert_eq!(walked(&[], &b), by_maps(&[], &b));
        // Out of git's order (a hostile tree): compared through maps, the same answer.
        let mut shuffled = b.clone();
        shuffled.reverse();
        assert_eq!(walked(&a, &shuffled), by_maps(&a, &shuffled));
    }
}
