//! A lazy, cached view of the manifests in one commit's tree.
//!
//! Planning must cost about what `git diff` plus `git cat-file` of the changed manifests
//! cost, however many items the repository holds, so nothing here walks every manifest:
//! items are parsed on demand, and every parse is cached by blob id in a [`ParseCache`]
//! shared by all snapshots of one run (most commits share most blobs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use gix::ObjectId;
use gix::objs::tree::EntryKind;

use crate::error::{Error, Result};
use crate::manifest::parse::{parse_item, parse_pipeline, parse_test};
use crate::manifest::{Item, model::script_of};
use crate::manifest::{ItemId, ItemKind, PIPELINE_FILE, Pipeline, TESTS_DIR, Test};
use crate::records::{self, BuiltRecord};
use crate::repo::{Entry, Repo};

/// Parsed manifests by blob id, shared across snapshots.
#[derive(Default)]
pub struct ParseCache {
    items: RefCell<HashMap<ObjectId, Rc<Item>>>,
    tests: RefCell<HashMap<ObjectId, Rc<Test>>>,
    built: RefCell<HashMap<ObjectId, Rc<BuiltRecord>>>,
    dirs: RefCell<HashMap<ObjectId, Rc<Vec<Entry>>>>,
    /// A directory's entries by name (item directories hold thousands of manifests).
    index: RefCell<HashMap<ObjectId, Rc<HashMap<String, ObjectId>>>>,
    /// A tree's tests ([`Snapshot::tests`]) and where each name first appears in them, by
    /// the tree id of its `tests/`: a snapshot lives for one lookup, and a run of a
    /// thousand tests looks each of them up.
    test_lists: RefCell<HashMap<ObjectId, (TestList, TestIndex)>>,
}

/// A commit's tests with their manifest blob ids, in name order.
pub type TestList = Rc<Vec<(ObjectId, Rc<Test>)>>;

/// Where each test name first appears in a [`TestList`].
type TestIndex = Rc<HashMap<String, usize>>;

/// One commit's manifests.
pub struct Snapshot<'r> {
    pub repo: &'r Repo,
    pub commit: ObjectId,
    pub tree: ObjectId,
    cache: Rc<ParseCache>,
}

impl<'r> Snapshot<'r> {
    pub fn new(repo: &'r Repo, commit: ObjectId, cache: Rc<ParseCache>) -> Result<Snapshot<'r>> {
        let tree = repo.tree_of(commit)?;
        Ok(Snapshot {
            repo,
            commit,
            tree,
            cache,
        })
    }

    pub fn pipeline(&self) -> Result<Pipeline> {
        let bytes = self.repo.read(self.tree, PIPELINE_FILE)?.ok_or_else(|| {
            Error::usage_help(
                format!(
                    "commit {} has no {PIPELINE_FILE}: this is not a state repository",
                    short(self.commit)
                ),
                format!(
                    "run `{}` to create one, or pass -C DIR",
                    crate::advice::Advice::Init { dir: None }
                ),
            )
        })?;
        parse_pipeline(PIPELINE_FILE, &bytes).map_err(Error::Invalid)
    }

    /// The entries of a directory, cached by the directory's tree id.
    pub fn dir(&self, dir: &str) -> Result<Rc<Vec<Entry>>> {
        let Some(e) = self.repo.entry(self.tree, dir)? else {
            return Ok(Rc::new(Vec::new()));
        };
        if e.kind != EntryKind::Tree {
            return Ok(Rc::new(Vec::new()));
        }
        if let Some(v) = self.cache.dirs.borrow().get(&e.id) {
            return Ok(v.clone());
        }
        let v = Rc::new(self.repo.tree_entries(e.id)?);
        self.cache.dirs.borrow_mut().insert(e.id, v.clone());
        Ok(v)
    }

    /// The entries of tree `id`, read once for every snapshot of this planner.
    pub fn tree_entries(&self, id: ObjectId) -> Result<Rc<Vec<Entry>>> {
        if let Some(v) = self.cache.dirs.borrow().get(&id) {
            return Ok(v.clone());
        }
        let v = Rc::new(self.repo.tree_entries(id)?);
        self.cache.dirs.borrow_mut().insert(id, v.clone());
        Ok(v)
    }

    /// The blob id of `path`, if it exists (a tree id for directories). The directory
    /// holding it is read once per tree and looked up by name after that.
    pub fn oid(&self, path: &str) -> Result<Option<ObjectId>> {
        let path = path.trim_end_matches('/');
        match path.rsplit_once('/') {
            Some((dir, name)) => Ok(self.dir_index(dir)?.get(name).copied()),
            None => Ok(self.repo.entry(self.tree, path)?.map(|e| e.id)),
        }
    }

    /// The entries of `dir` by name, cached by the directory's tree id.
    fn dir_index(&self, dir: &str) -> Result<Rc<HashMap<String, ObjectId>>> {
        let Some(e) = self.repo.entry(self.tree, dir)? else {
            return Ok(Rc::default());
        };
        if e.kind != EntryKind::Tree {
            return Ok(Rc::default());
        }
        if let Some(m) = self.cache.index.borrow().get(&e.id) {
            return Ok(m.clone());
        }
        let m: Rc<HashMap<String, ObjectId>> = Rc::new(
            self.dir(dir)?
                .iter()
                .map(|x| (x.name.clone(), x.id))
                .collect(),
        );
        self.cache.index.borrow_mut().insert(e.id, m.clone());
        Ok(m)
    }

    /// The blob id of an item's manifest.
    pub fn item_oid(&self, id: &ItemId) -> Result<Option<ObjectId>> {
        Ok(self
            .dir_index(id.kind.dir())?
            .get(&format!("{}.yaml", id.name))
            .copied())
    }

    pub fn item(&self, id: &ItemId) -> Result<Option<(ObjectId, Rc<Item>)>> {
        let Some(oid) = self.item_oid(id)? else {
            return Ok(None);
        };
        if let Some(item) = self.cache.items.borrow().get(&oid) {
            return Ok(Some((oid, item.clone())));
        }
        let bytes = self.repo.blob(oid)?;
        let item = Rc::new(parse_item(id.kind, &id.path(), &bytes).map_err(|d| self.invalid(d))?);
        self.cache.items.borrow_mut().insert(oid, item.clone());
        Ok(Some((oid, item)))
    }

    /// Every item id present (from directory listings only, nothing parsed).
    pub fn item_ids(&self, kind: ItemKind) -> Result<Vec<ItemId>> {
        Ok(self
            .dir(kind.dir())?
            .iter()
            .filter_map(|e| e.name.strip_suffix(".yaml").map(|n| ItemId::new(kind, n)))
            .collect())
    }

    /// All tests that parse (cached by blob id), in name order. A test whose manifest does
    /// not parse is left out here: it is an `invalid` candidate, reported by the planner.
    pub fn tests(&self) -> Result<TestList> {
        Ok(self.test_list()?.0)
    }

    /// [`Snapshot::tests`] and its index by name, read once per tree.
    fn test_list(&self) -> Result<(TestList, TestIndex)> {
        // By the tests directory's tree: the candidates of a move are hundreds of trees
        // that mostly share one `tests/`, and one list (and index) serves them all.
        let key = match self.repo.entry(self.tree, TESTS_DIR)? {
            Some(e) if e.kind == EntryKind::Tree => e.id,
            _ => ObjectId::empty_tree(gix::hash::Kind::Sha1),
        };
        if let Some(t) = self.cache.test_lists.borrow().get(&key) {
            return Ok(t.clone());
        }
        let dir = self.dir(TESTS_DIR)?;
        let manifests: Vec<&Entry> = dir
            .iter()
            .filter(|e| e.name.ends_with(".yaml") && e.kind != EntryKind::Tree)
            .collect();
        // What is not cached yet is read here and parsed on every core.
        let mut todo = Vec::new();
        for e in &manifests {
            if self.cached_test(e.id, &e.name).is_none() {
                todo.push((
                    e.id,
                    format!("{TESTS_DIR}/{}", e.name),
                    self.repo.blob(e.id)?,
                ));
            }
        }
        for (id, parsed) in parse_tests(todo) {
            if let Some(t) = parsed {
                self.cache.tests.borrow_mut().insert(id, Rc::new(t));
            }
        }
        let mut out = Vec::with_capacity(manifests.len());
        for e in manifests {
            // A manifest that does not parse is not a test here (`check` names its errors).
            if let Some(t) = self.cached_test(e.id, &e.name) {
                out.push((e.id, t));
            }
        }
        let mut index = HashMap::with_capacity(out.len());
        for (n, (_, t)) in out.iter().enumerate() {
            index.entry(t.name.clone()).or_insert(n);
        }
        let list = (Rc::new(out), Rc::new(index));
        self.cache.test_lists.borrow_mut().insert(key, list.clone());
        Ok(list)
    }

    /// The test parsed from blob `id`, if it was and if it is the test of a manifest
    /// named `file` in `tests/`: a test's name is its file's, so the same bytes under
    /// another name are not a test (parsing them there fails), whatever the cache holds.
    fn cached_test(&self, id: ObjectId, file: &str) -> Option<Rc<Test>> {
        let t = self.cache.tests.borrow().get(&id).cloned()?;
        (file.strip_suffix(".yaml") == Some(t.name.as_str())).then_some(t)
    }

    /// The first test (in [`Snapshot::tests`] order) named `name`.
    pub fn test(&self, name: &str) -> Result<Option<(ObjectId, Rc<Test>)>> {
        let (tests, index) = self.test_list()?;
        Ok(index.get(name).map(|n| tests[*n].clone()))
    }

    /// The test whose manifest is `tests/NAME.yaml`, parsed; an error when it does not parse.
    pub fn test_manifest(&self, name: &str) -> Result<Option<(ObjectId, Rc<Test>)>> {
        let path = format!("{TESTS_DIR}/{name}.yaml");
        let Some(oid) = self.oid(&path)? else {
            return Ok(None);
        };
        if let Some(t) = self.cached_test(oid, &format!("{name}.yaml")) {
            return Ok(Some((oid, t)));
        }
        let bytes = self.repo.blob(oid)?;
        let t = Rc::new(parse_test(&path, &bytes).map_err(|d| self.invalid(d))?.test);
        self.cache.tests.borrow_mut().insert(oid, t.clone());
        Ok(Some((oid, t)))
    }

    /// The built record of an item in this tree.
    pub fn built(&self, id: &ItemId) -> Result<Option<Rc<BuiltRecord>>> {
        let path = records::built_path(id);
        let Some(oid) = self.oid(&path)? else {
            return Ok(None);
        };
        if let Some(b) = self.cache.built.borrow().get(&oid) {
            return Ok(Some(b.clone()));
        }
        let rec: BuiltRecord = records::parse(&path, &self.repo.blob(oid)?)?;
        let rec = Rc::new(rec);
        self.cache.built.borrow_mut().insert(oid, rec.clone());
        Ok(Some(rec))
    }

    /// The blob ids of the repository files a test names (its script and `files:`), sorted.
    pub fn test_files(&self, test: &Test) -> Result<Vec<(String, Option<ObjectId>)>> {
        self.named_files(&test.run, &test.files)
    }

    /// The blob ids of an item's build inputs (its recipe and `build.files`), sorted.
    pub fn build_files(&self, item: &Item) -> Result<Vec<(String, Option<ObjectId>)>> {
        match &item.build {
            Some(b) => self.named_files(&b.run, &b.files),
            None => Ok(Vec::new()),
        }
    }

    /// The script a `run` line starts with, plus `files`: each path with its id, sorted.
    fn named_files(&self, run: &str, files: &[String]) -> Result<Vec<(String, Option<ObjectId>)>> {
        let mut paths: Vec<&str> = script_of(run)
            .into_iter()
            .chain(files.iter().map(String::as_str))
            .collect();
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .map(|p| Ok((p.to_string(), self.oid(p)?)))
            .collect()
    }

    fn invalid(&self, mut d: crate::manifest::Diagnostics) -> Error {
        for diag in &mut d.0 {
            if diag.help.is_none() {
                diag.help = Some(format!(
                    "in commit {}; fix it on that branch, then run `{}`",
                    short(self.commit),
                    crate::advice::Advice::Check
                ));
            }
        }
        Error::Invalid(d)
    }
}

pub fn short(id: ObjectId) -> String {
    id.to_hex_with_len(crate::keys::COMMIT_DIGITS).to_string()
}

/// `(id, path, bytes)` of test manifests, each parsed (`None`: it does not parse), in
/// order. Many are split between threads: a run of a thousand tests spent 15 ms parsing
/// them, one after another, before its first job could start.
fn parse_tests(todo: Vec<(ObjectId, String, Vec<u8>)>) -> Vec<(ObjectId, Option<Test>)> {
    let parse = |(id, path, bytes): &(ObjectId, String, Vec<u8>)| {
        (*id, parse_test(path, bytes).ok().map(|p| p.test))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    // Below this, starting a thread costs more than it saves.
    const PER_THREAD: usize = 64;
    let threads = threads.min(todo.len() / PER_THREAD).max(1);
    if threads == 1 {
        return todo.iter().map(parse).collect();
    }
    let chunk = todo.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = todo
            .chunks(chunk)
            .skip(1)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<_> = todo[..chunk].iter().map(parse).collect();
        for part in parts {
            out.extend(part.join().expect("parsing a test manifest does not panic"));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_manifests_parse_on_threads_in_order_and_one_that_does_not_parse_is_none() {
        let todo: Vec<(ObjectId, String, Vec<u8>)> = (0..300u32)
            .map(|i| {
                let name = format!("t-{i}");
                let body = if i % 97 == 5 {
                    "name: [not, a, name\n".to_string()
                } else {
                    format!("name: {name}\nuses: [components/c-0]\nrun: ./t.sh {i}\n")
                };
                let id = gix::objs::compute_hash(
                    gix::hash::Kind::Sha1,
                    gix::objs::Kind::Blob,
                    body.as_bytes(),
                )
                .unwrap();
                (id, format!("{TESTS_DIR}/{name}.yaml"), body.into_bytes())
            })
            .collect();
        let ids: Vec<ObjectId> = todo.iter().map(|(id, ..)| *id).collect();
        let parsed = parse_tests(todo);
        assert_eq!(parsed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        for (i, (_, t)) in parsed.iter().enumerate() {
            match t {
                None => assert_eq!(i % 97, 5, "t-{i} did not parse"),
                Some(t) => {
                    assert_ne!(i % 97, 5, "t-{i} parsed");
                    assert_eq!(t.name, format!("t-{i}"));
                    assert_eq!(t.run, format!("./t.sh {i}"));
                }
            }
        }
    }
}
