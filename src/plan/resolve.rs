//! Naming an item on the command line. Every command that takes an item (`why`, `log`,
//! `hold`, `release`, `drop`, …) resolves it here, so they all accept the same names:
//! `components/hello`, `hello` when only one item has that name, `tests/NAME`, and
//! `stagegate.yaml` (or `pipeline`) for the pipeline. A name no stage has is refused, with
//! the nearest existing name when there is one close enough to be a typo.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::manifest::{ItemKind, PIPELINE_FILE, TESTS_DIR};

use super::Planner;

/// The canonical name (`images/NAME`, `components/NAME`, `tests/NAME` or `stagegate.yaml`)
/// of what `text` names on some stage of the pipeline.
pub fn resolve(planner: &Planner, text: &str) -> Result<String> {
    let known = known(planner)?;
    resolve_in(&known, text)
}

/// Every item, test and the pipeline, as found on any stage's head.
fn known(planner: &Planner) -> Result<BTreeSet<String>> {
    let repo = &planner.repo;
    let mut known = BTreeSet::from([
        PIPELINE_FILE.to_string(),
        crate::manifest::FILES_CANDIDATE.to_string(),
    ]);
    let dirs: Vec<&str> = ItemKind::ALL
        .iter()
        .map(|k| k.dir())
        .chain([TESTS_DIR])
        .collect();
    let mut trees = BTreeSet::new();
    for stage in &planner.pipeline.stages {
        trees.insert(repo.tree_of(planner.stage_head(stage)?)?);
    }
    for tree in trees {
        for dir in &dirs {
            for e in repo.list(tree, dir)? {
                if let Some(stem) = e.name.strip_suffix(".yaml") {
                    known.insert(format!("{dir}/{stem}"));
                }
            }
        }
    }
    Ok(known)
}

/// `text` as one of `known`: exact, or an unambiguous bare name; else a usage error.
fn resolve_in(known: &BTreeSet<String>, text: &str) -> Result<String> {
    let text = text.trim().trim_start_matches("./");
    let wanted = if text == "pipeline" {
        PIPELINE_FILE.to_string()
    } else if text.contains('/') {
        text.strip_suffix(".yaml").unwrap_or(text).to_string()
    } else {
        text.to_string()
    };
    if known.contains(&wanted) {
        return Ok(wanted);
    }
    if !wanted.contains('/') {
        let named: Vec<&String> = known
            .iter()
            .filter(|k| k.rsplit_once('/').is_some_and(|(_, n)| n == wanted))
            .collect();
        match named.as_slice() {
            [one] => return Ok((*one).clone()),
            [] => {}
            many => {
                return Err(Error::usage_help(
                    format!(
                        "{text:?} names more than one item: {}",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "write the full name",
                ));
            }
        }
    }
    let help = match nearest(known, &wanted) {
        Some(n) => format!("did you mean {n}?"),
        None => format!(
            "`{}` shows the candidates; items are images/NAME, components/NAME, tests/NAME, stagegate.yaml or repository-files",
            crate::advice::Advice::Status
        ),
    };
    Err(Error::usage_help(
        format!("{text:?} exists on no stage"),
        help,
    ))
}

/// The known name closest to `wanted` (compared in full, or by its last part for a bare
/// name), when it is close enough to be a typo.
fn nearest<'k>(known: &'k BTreeSet<String>, wanted: &str) -> Option<&'k String> {
    known
        .iter()
        .map(|k| {
            let name = k.rsplit_once('/').map_or(k.as_str(), |(_, n)| n);
            let d = if wanted.contains('/') {
                strsim::levenshtein(k, wanted)
            } else {
                strsim::levenshtein(name, wanted)
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= 2.max(wanted.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::resolve_in;

    fn known() -> BTreeSet<String> {
        [
            "components/hello",
            "images/debian-host",
            "images/debian-guest",
            "components/xen",
            "images/xen",
            "tests/guest-boots",
            "stagegate.yaml",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    fn ok(text: &str) -> String {
        resolve_in(&known(), text).unwrap()
    }

    fn err(text: &str) -> (String, String) {
        let e = resolve_in(&known(), text).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        (e.to_string(), e.help().unwrap_or_default().to_string())
    }

    #[test]
    fn names_resolve_in_full_short_and_as_files() {
        assert_eq!(ok("components/hello"), "components/hello");
        assert_eq!(ok("hello"), "components/hello");
        assert_eq!(ok("components/hello.yaml"), "components/hello");
        assert_eq!(ok("./tests/guest-boots.yaml"), "tests/guest-boots");
        assert_eq!(ok("guest-boots"), "tests/guest-boots");
        assert_eq!(ok("pipeline"), "stagegate.yaml");
        assert_eq!(ok("stagegate.yaml"), "stagegate.yaml");
    }

    #[test]
    fn an_ambiguous_short_name_lists_the_candidates() {
        let (msg, help) = err("xen");
        assert!(msg.contains("components/xen, images/xen"), "{msg}");
        assert_eq!(help, "write the full name");
    }

    #[test]
    fn a_typo_gets_the_nearest_name_and_nothing_close_gets_none() {
        assert_eq!(err("helo").1, "did you mean components/hello?");
        assert_eq!(err("components/helo").1, "did you mean components/hello?");
        assert_eq!(
            err("images/debian-hots").1,
            "did you mean images/debian-host?"
        );
        let (msg, help) = err("components/nothing-like-it");
        assert!(msg.contains("exists on no stage"), "{msg}");
        assert!(!help.contains("did you mean"), "{help}");
    }
}
