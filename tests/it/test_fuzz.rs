//! Property tests, run briefly as normal tests (a bounded number of cases each): manifest
//! parsing and tree checkout never panic, whatever the input, and a checkout never writes
//! outside its directory.

use std::path::Path;

use gix::objs::Write as _;
use proptest::prelude::*;
use stagegate::manifest::ItemKind;
use stagegate::manifest::parse::{parse_item, parse_pipeline, parse_test};
use stagegate::repo::Repo;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// YAML-shaped text built from the words manifests use, so cases reach past the parser
/// into the checks, plus raw bytes.
fn manifest_text() -> impl Strategy<Value = Vec<u8>> {
    let word = prop::sample::select(vec![
        "version",
        "stages",
        "gates",
        "require",
        "soak",
        "env",
        "pass",
        "secret",
        "name",
        "uses",
        "run",
        "timeout",
        "retries",
        "build",
        "artifact",
        "files",
        "source",
        "git",
        "commit",
        "based-on",
        "image",
        "component",
        "1",
        "-1",
        "4294967296",
        "[",
        "]",
        "{",
        "}",
        ":",
        ": ",
        ",",
        "- ",
        "\n",
        "  ",
        "&a ",
        "*a",
        "!!str ",
        "'",
        "\"",
        "..",
        "/",
        "./x.sh",
        "30d",
        "1h",
        "images/x",
        "GITHUB_TOKEN",
        "~",
        "null",
        "#",
    ]);
    prop_oneof![
        prop::collection::vec(word, 0..60).prop_map(|w| w.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..300),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_any_manifest_never_panics(bytes in manifest_text()) {
        let _ = parse_pipeline("stagegate.yaml", &bytes);
        let _ = parse_item(ItemKind::Image, "images/x.yaml", &bytes);
        let _ = parse_item(ItemKind::Component, "components/x.yaml", &bytes);
        let _ = parse_test("tests/x.yaml", &bytes);
    }
}

/// One tree entry to craft: a name, and what it is.
#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, bool),
    Link(String),
    Dir(Vec<(Vec<u8>, Node)>),
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "a", "b", "zz-x", ".", "..", ".git", ".GIT", "", "a/b", "../up", "x\0y", "\u{e9}",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 1..6),
    ]
}

fn node(outside: String) -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..20), any::<bool>())
            .prop_map(|(c, x)| Node::File(c, x)),
        prop::sample::select(vec![
            outside.clone(),
            "../../..".into(),
            "a".into(),
            "/".into()
        ])
        .prop_map(Node::Link),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec((name(), inner), 0..6).prop_map(Node::Dir)
    })
}

/// Write `node` (a directory) as a raw tree object, entries in the order given, names as
/// given: what `git mktree` or `hash-object --literally` can make.
fn write(repo: &Repo, node: &Node) -> gix::ObjectId {
    let odb = &repo.git.objects;
    match node {
        Node::File(content, _) => odb.write_buf(gix::objs::Kind::Blob, content).unwrap(),
        Node::Link(target) => odb
            .write_buf(gix::objs::Kind::Blob, target.as_bytes())
            .unwrap(),
        Node::Dir(entries) => {
            let mut raw = Vec::new();
            for (n, child) in entries {
                let mode: &[u8] = match child {
                    Node::File(_, false) => b"100644",
                    Node::File(_, true) => b"100755",
                    Node::Link(_) => b"120000",
                    Node::Dir(_) => b"40000",
                };
                let id = write(repo, child);
                raw.extend_from_slice(mode);
                raw.push(b' ');
                raw.extend_from_slice(n);
                raw.push(0);
                raw.extend_from_slice(id.as_bytes());
            }
            odb.write_buf(gix::objs::Kind::Tree, &raw).unwrap()
        }
    }
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(files_under(&e.path()));
            }
        }
    }
    out
}

#[test]
fn checking_out_any_tree_never_writes_outside_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let git_dir = tmp.path().join("repo.git");
    gix::init_bare(&git_dir).unwrap();
    let repo = Repo::open(&git_dir).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let strategy = prop::collection::vec((name(), node(outside.display().to_string())), 0..8)
        .prop_map(Node::Dir);
    runner
        .run(&strategy, |root| {
            let tree = write(&repo, &root);
            let dir = tempfile::tempdir_in(tmp.path()).unwrap();
            // Refusing is fine (an unsafe tree, or an error from writing it); panicking or
            // writing outside is not.
            let _ = repo.checkout(tree, dir.path());
            let escaped = files_under(&outside);
            prop_assert!(escaped.is_empty(), "wrote outside: {escaped:?}");
            Ok(())
        })
        .unwrap();
}
