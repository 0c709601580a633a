//! What a new user runs first: the README's first command, `examples/demo.sh`, as the README
//! gives it.

use std::path::Path;
use std::process::Command;

use crate::common::{TestEnv, base_env, require_tools, stagegate_bin};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The first command of the README: the first line of its first fenced `sh` block, without
/// its comment.
fn readme_first_command() -> String {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let block = readme
        .split_once("```sh\n")
        .expect("the README has a fenced sh block")
        .1;
    let line = block.lines().next().unwrap();
    line.split_once('#')
        .map_or(line, |(c, _)| c)
        .trim()
        .to_string()
}

#[test]
fn the_readmes_first_command_runs_the_demo_to_the_audit_trail() {
    if !require_tools(&["mke2fs", "debugfs", "e2fsck", "qemu-img", "git"]) {
        return;
    }
    let command = readme_first_command();
    assert_eq!(
        command, "examples/demo.sh",
        "the README's first command changed"
    );
    let env = TestEnv::new();
    let mut cmd = Command::new("bash");
    base_env(&mut cmd, env.home());
    // The demo's build step, reusing this test build: everything else runs as a user's would,
    // from a checkout's root, into a new temporary directory (the test's own TMPDIR).
    cmd.env("STAGEGATE_BIN", stagegate_bin())
        .current_dir(ROOT)
        .arg("-c")
        .arg(&command);
    let out = cmd.output().unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "`{command}` exited with {:?}\nstdout:\n{o}\nstderr:\n{e}",
        out.status.code()
    );
    assert!(
        o.contains("(STAGEGATE_BIN)"),
        "the demo built its own:\n{o}"
    );

    // The commit the demo pushed to hello/main: the line after its heading.
    let (_, after) = o
        .split_once("== upstream: a new commit on hello/main")
        .unwrap_or_else(|| panic!("no upstream step:\n{o}"));
    let pushed = after.lines().nth(1).unwrap();
    let short = pushed.split_once(' ').unwrap().0;
    assert!(pushed.ends_with("hello: say more"), "{pushed}");
    // The push gate fast-forwarded hello/master to it.
    let (_, master) = o.split_once("== hello/master, fast-forwarded").unwrap();
    assert_eq!(master.lines().nth(1), Some(pushed), "{o}");

    // It ends with the audit trail, newest first: the bump of the component into stable,
    // its poll, and the first cycle's builds; nothing is printed after it.
    let (_, trail) = o
        .rsplit_once("\n== stagegate log   (the audit trail)\n")
        .unwrap_or_else(|| panic!("no audit trail at the end:\n{o}"));
    for line in trail.lines() {
        assert!(
            line.starts_with("    ") || line.as_bytes().get(4) == Some(&b'-'),
            "not a line of the audit trail: {line:?}\n{trail}"
        );
    }
    let entries: Vec<&str> = trail.split("\n20").collect();
    assert!(entries.len() >= 5, "{trail}");
    let newest = entries[0];
    assert!(newest.contains("promote  staging→stable"), "{trail}");
    assert!(
        newest.contains(&format!("components/hello main-{short}")),
        "the newest entry is not the promotion of {short}:\n{trail}"
    );
    assert!(newest.contains(": 2 pass"), "{trail}");
    assert!(
        trail.contains(&format!("reason: upstream hello/main moved to {short}")),
        "{trail}"
    );
    for image in ["images/debian-host", "images/debian-guest"] {
        assert!(
            trail.contains(&format!("built {image} 12.8-1 sha256:")),
            "{trail}"
        );
    }
}
