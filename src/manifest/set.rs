//! A whole state repository's manifests, loaded and checked together.
//!
//! `check` uses this to report every problem at once; checks that span files (a test using
//! a missing item, a derived image whose parent is missing, a script that does not exist)
//! live here.

use std::collections::{BTreeMap, BTreeSet};

use super::model::*;
use super::parse::{Named, ParsedTest, parse_item_named, parse_pipeline, parse_test};
use super::{FileKind, Files, PIPELINE_FILE, TESTS_DIR};
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ManifestSet {
    pub pipeline: Pipeline,
    pub items: BTreeMap<ItemId, Item>,
    pub tests: BTreeMap<String, Test>,
}

impl ManifestSet {
    /// Load and check every manifest. `Ok(Err(diags))` means the files are invalid;
    /// `Err` means they could not be read.
    pub fn load(files: &dyn Files) -> Result<Result<ManifestSet, Diagnostics>> {
        let mut diags = Diagnostics::default();
        let pipeline = match files.read(PIPELINE_FILE)? {
            None => {
                diags.push(
                    Diagnostic::new(
                        PIPELINE_FILE,
                        Pos::FILE,
                        "no stagegate.yaml: this is not a state repository",
                    )
                    .with_help(format!(
                        "run `{}` to create one, or pass -C DIR",
                        crate::advice::Advice::Init { dir: None }
                    )),
                );
                None
            }
            Some(bytes) => match parse_pipeline(PIPELINE_FILE, &bytes) {
                Ok(p) => Some(p),
                Err(d) => {
                    diags.0.extend(d.0);
                    None
                }
            },
        };

        let mut items = BTreeMap::new();
        let mut named: BTreeMap<ItemId, Vec<Named>> = BTreeMap::new();
        // Manifests already reported as invalid: a reference to one of them is not a second
        // problem ("images/base does not exist" after images/base.yaml's syntax error).
        let mut broken: BTreeSet<String> = BTreeSet::new();
        for kind in ItemKind::ALL {
            for (file, bytes) in manifests_in(files, kind.dir(), &mut diags, &mut broken)? {
                match parse_item_named(kind, &file, &bytes) {
                    Ok((item, n)) => {
                        named.insert(item.id.clone(), n);
                        items.insert(item.id.clone(), item);
                    }
                    Err(d) => {
                        broken.insert(file);
                        diags.0.extend(d.0)
                    }
                }
            }
        }
        let mut parsed_tests: Vec<ParsedTest> = Vec::new();
        for (file, bytes) in manifests_in(files, TESTS_DIR, &mut diags, &mut broken)? {
            match parse_test(&file, &bytes) {
                Ok(t) => parsed_tests.push(t),
                Err(d) => diags.0.extend(d.0),
            }
        }

        // Cross-file checks.
        for item in items.values() {
            let file = item.id.path();
            if let Some(parent) = item.parent_image() {
                if broken.contains(&parent.path()) {
                    // Reported in its own file.
                } else if !items.contains_key(&parent) {
                    diags.push(missing_item(
                        &file,
                        Pos::FILE,
                        &parent,
                        &items,
                        "`based-on` names",
                    ));
                } else if derives_from(&items, &parent, &item.id) {
                    diags.push(
                        Diagnostic::new(
                            &file,
                            Pos::FILE,
                            format!("`based-on` makes a cycle through {parent}"),
                        )
                        .with_help("an image cannot be derived from itself"),
                    );
                }
            }
            for n in named.get(&item.id).into_iter().flatten() {
                check_named(files, &file, n, &mut diags)?;
            }
        }
        let mut tests = BTreeMap::new();
        for pt in parsed_tests {
            let file = pt.test.path();
            for (id, pos) in pt.test.uses.iter().zip(&pt.uses_at) {
                if !items.contains_key(id) && !broken.contains(&id.path()) {
                    diags.push(missing_item(&file, *pos, id, &items, "`uses` names"));
                }
            }
            for n in &pt.named {
                check_named(files, &file, n, &mut diags)?;
            }
            tests.insert(pt.test.name.clone(), pt.test);
        }

        match pipeline {
            Some(pipeline) if diags.is_empty() => Ok(Ok(ManifestSet {
                pipeline,
                items,
                tests,
            })),
            _ => Ok(Err(diags.sorted())),
        }
    }
}

/// The `.yaml` files of one manifest directory, with a diagnostic for anything else there.
/// A manifest that is a symbolic link is refused (and added to `broken`): git stores the
/// link, not the file it points to, so a commit's tree and the work tree would disagree.
fn manifests_in(
    files: &dyn Files,
    dir: &str,
    diags: &mut Diagnostics,
    broken: &mut BTreeSet<String>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in files.list(dir)? {
        let path = format!("{dir}/{name}");
        if !name.ends_with(".yaml") {
            // Test scripts may sit beside test manifests; item directories hold manifests only.
            let stray = name.ends_with(".yml")
                || (dir != TESTS_DIR && !name.starts_with('.') && name != "README.md");
            if stray {
                diags.push(
                    Diagnostic::new(
                        &path,
                        Pos::FILE,
                        format!("{dir}/ holds manifests, but {name:?} does not end in .yaml"),
                    )
                    .with_help("rename it to NAME.yaml, or move it out of the manifest directory"),
                );
            }
            continue;
        }
        if files.kind(&path)? == Some(FileKind::Symlink) {
            diags.push(
                Diagnostic::new(
                    &path,
                    Pos::FILE,
                    format!("{path} is a symbolic link; a manifest must be a file"),
                )
                .with_help(format!(
                    "git stores the link, not what it points to: replace it with the file \
                     (`cp --remove-destination \"$(readlink -f {path})\" {path}`)"
                )),
            );
            broken.insert(path);
            continue;
        }
        if let Some(bytes) = files.read(&path)? {
            out.push((path, bytes));
        }
    }
    Ok(out)
}

fn derives_from(items: &BTreeMap<ItemId, Item>, start: &ItemId, target: &ItemId) -> bool {
    let mut cur = Some(start.clone());
    let mut steps = 0;
    while let Some(id) = cur {
        if &id == target {
            return true;
        }
        steps += 1;
        if steps > items.len() {
            return true;
        }
        cur = items.get(&id).and_then(Item::parent_image);
    }
    false
}

/// What is wrong with a path a manifest names, at the line that names it: a file that
/// does not exist, a `run` script that is a symbolic link or not executable, a `run` line
/// that names a repository file without `./`.
fn check_named(files: &dyn Files, file: &str, n: &Named, diags: &mut Diagnostics) -> Result<()> {
    let field = &n.field;
    let (path, is_script) = if n.run {
        let first = n.text.split_whitespace().next().unwrap_or_default();
        match script_of(&n.text) {
            Some(p) => (p, true),
            None => {
                // `run: ci/smoke.sh` is looked up as a command, not taken from the checkout:
                // the job would not get the file and its key would not cover it.
                if !first.starts_with('/')
                    && super::parse::check_rel_path(first).is_ok()
                    && matches!(
                        files.kind(first)?,
                        Some(FileKind::File | FileKind::Executable | FileKind::Symlink)
                    )
                {
                    let fixed = format!("./{}", n.text.trim_start());
                    diags.push(
                        Diagnostic::new(
                            file,
                            n.pos,
                            format!(
                                "`{field}` starts with {first:?}, a repository file, without `./`: \
                                 the shell would look it up as a command and the job would not get it"
                            ),
                        )
                        .with_help(format!("write `{field}: {fixed}`")),
                    );
                }
                return Ok(());
            }
        }
    } else {
        (n.text.as_str(), false)
    };
    if super::parse::check_rel_path(path).is_err() {
        // Reported by the parser.
        return Ok(());
    }
    let problem = match files.kind(path)? {
        None => Some((
            format!("{path:?} does not exist in the repository"),
            "commit the file, or fix the path (paths are relative to the repository root)"
                .to_string(),
        )),
        Some(FileKind::Symlink) => Some((
            format!("`{field}` names {path:?}, which is (or is under) a symbolic link"),
            format!(
                "a job's key covers the link, not what it points to: commit the file itself \
                 in place of the link (`cp --remove-destination \"$(readlink -f {path})\" {path}`)"
            ),
        )),
        Some(FileKind::File) if is_script => Some((
            format!("`{field}` runs {path:?}, which is not executable (mode 100644 in git)"),
            format!(
                "run `git update-index --chmod=+x {path}` (and `chmod +x {path}`), then commit"
            ),
        )),
        Some(FileKind::Dir) if is_script => Some((
            format!("`{field}` runs {path:?}, which is a directory"),
            "name the script in it, e.g. ./DIR/run.sh".to_string(),
        )),
        _ => None,
    };
    if let Some((message, help)) = problem {
        diags.push(Diagnostic::new(file, n.pos, message).with_help(help));
    }
    Ok(())
}

/// A diagnostic for a reference to an item that does not exist, with the nearest name.
pub fn missing_item(
    file: &str,
    pos: Pos,
    id: &ItemId,
    items: &BTreeMap<ItemId, Item>,
    what: &str,
) -> Diagnostic {
    let d = Diagnostic::new(file, pos, format!("{what} {id}, which does not exist"));
    let wanted = id.to_string();
    let best = items
        .keys()
        .map(|k| (strsim::levenshtein(&wanted, &k.to_string()), k))
        .filter(|(dist, _)| *dist <= 3.max(wanted.len() / 3))
        .min();
    match best {
        Some((_, k)) => d.with_help(format!("did you mean {k}?")),
        None => d.with_help(format!("create {} or remove the reference", id.path())),
    }
}
