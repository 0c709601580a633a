//! The README's walk through the example, run as written: its fenced `sh` blocks, in
//! order, in one shell. The README is the script, so the two cannot drift apart.

use std::process::Command;

use crate::common::{TestEnv, base_env, require_tool};

/// The commands of the README section that starts with `heading`, in order: the lines of
/// its fenced `sh` blocks.
fn walk_commands(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("the README has no section {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, l) if !l.trim().is_empty() => commands.push(l.to_string()),
            _ => {}
        }
    }
    commands
}

#[test]
fn the_readme_walk_runs_as_written() {
    for tool in ["mke2fs", "debugfs", "e2fsck", "qemu-img", "git"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = walk_commands(&readme, "## A walk through the example");
    assert!(commands.len() >= 8, "{commands:?}");
    let env = TestEnv::new();
    let tmp = env.home().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let bin = env.sg_cmd(&[]).get_program().to_owned();
    let bin_dir = std::path::Path::new(&bin).parent().unwrap().to_owned();
    let mut script = String::from("set -e\n");
    for c in &commands {
        // The build is this test's own; everything else runs as written, in a private /tmp.
        let c = if c.starts_with("cargo build") {
            format!("export PATH='{}':$PATH", bin_dir.display())
        } else {
            c.replace("/tmp/", &format!("{}/", tmp.display()))
        };
        // Each command is echoed first, so a failure shows where the walk stopped.
        let quoted = format!("'{}'", c.replace('\'', r"'\''"));
        // A failure anywhere in the line (`a && b` included) stops the walk.
        script.push_str(&format!(
            "printf '+ %s\\n' {quoted} >&2\n{{\n{c}\n}} || exit $?\n"
        ));
    }
    let mut cmd = Command::new("bash");
    base_env(&mut cmd, env.home());
    let out = cmd
        .arg("-c")
        .arg(&script)
        .current_dir(env.home())
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "the walk stopped at the last `+` line below (exit {:?})\nstdout:\n{o}\nstderr:\n{e}",
        out.status.code()
    );
}
