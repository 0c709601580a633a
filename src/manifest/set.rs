//! A whole state repository's manifests, loaded and checked together.
//!
//! `check` uses this to report every problem at once; checks that span files (a test using
//! a missing item, a derived image whose parent is missing, a script that does not exist)
//! live here.

use std::collections::BTreeMap;

use super::model::*;
use super::parse::{ParsedTest, parse_item, parse_pipeline, parse_test};
use super::{Files, PIPELINE_FILE, TESTS_DIR};
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
                    .with_help("run `stagegate init` to create one, or pass -C DIR"),
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
        for kind in ItemKind::ALL {
            for (file, bytes) in manifests_in(files, kind.dir(), &mut diags)? {
                match parse_item(kind, &file, &bytes) {
                    Ok(item) => {
                        items.insert(item.id.clone(), item);
                    }
                    Err(d) => diags.0.extend(d.0),
                }
            }
        }
        let mut parsed_tests: Vec<ParsedTest> = Vec::new();
        for (file, bytes) in manifests_in(files, TESTS_DIR, &mut diags)? {
            match parse_test(&file, &bytes) {
                Ok(t) => parsed_tests.push(t),
                Err(d) => diags.0.extend(d.0),
            }
        }

        // Cross-file checks.
        for item in items.values() {
            let file = item.id.path();
            if let Some(parent) = item.parent_image() {
                if !items.contains_key(&parent) {
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
            if let Some(b) = &item.build {
                check_files(
                    files,
                    &file,
                    script_of(&b.run)
                        .into_iter()
                        .chain(b.files.iter().map(String::as_str)),
                    &mut diags,
                )?;
            }
            if let Some(w) = &item.watch {
                check_files(files, &file, script_of(&w.run), &mut diags)?;
            }
        }
        let mut tests = BTreeMap::new();
        for pt in parsed_tests {
            let file = pt.test.path();
            for (id, pos) in pt.test.uses.iter().zip(&pt.uses_at) {
                if !items.contains_key(id) {
                    diags.push(missing_item(&file, *pos, id, &items, "`uses` names"));
                }
            }
            check_files(
                files,
                &file,
                script_of(&pt.test.run)
                    .into_iter()
                    .chain(pt.test.files.iter().map(String::as_str)),
                &mut diags,
            )?;
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
fn manifests_in(
    files: &dyn Files,
    dir: &str,
    diags: &mut Diagnostics,
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

fn check_files<'a>(
    files: &dyn Files,
    file: &str,
    paths: impl IntoIterator<Item = &'a str>,
    diags: &mut Diagnostics,
) -> Result<()> {
    for p in paths {
        if super::parse::check_rel_path(p).is_ok() && !files.exists(p)? {
            diags.push(
                Diagnostic::new(
                    file,
                    Pos::FILE,
                    format!("{p:?} does not exist in the repository"),
                )
                .with_help(
                    "commit the file, or fix the path (paths are relative to the repository root)",
                ),
            );
        }
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
