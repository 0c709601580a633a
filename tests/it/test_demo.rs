//! What a new user runs first: the README's first command, `examples/demo.sh`, as the README
//! gives it; and the shell completions and man pages, generated from the clap definitions.

use std::path::Path;
use std::process::Command;

use crate::common::{TestEnv, base_env, require_tool, require_tools, stagegate_bin};

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

/// The command names `stagegate --help` lists (without `help`).
fn commands(env: &TestEnv) -> Vec<String> {
    let help = env.sg_ok(&["--help"]);
    let list = help
        .split_once("\nCommands:\n")
        .expect("--help lists the commands")
        .1;
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    assert!(
        names.len() > 25 && names.iter().any(|n| n == "unquarantine"),
        "{names:?}"
    );
    names
}

#[test]
fn completions_for_each_shell_name_every_command_and_their_flags() {
    let env = TestEnv::new();
    let commands = commands(&env);
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.sg_ok(&["completions", shell]);
        for c in &commands {
            assert!(
                script.contains(c.as_str()),
                "the {shell} completions do not mention {c}"
            );
        }
        // A global flag and one of `cycle`'s, as the shell spells a long option.
        for flag in ["remote", "no-poll"] {
            let spelled = match shell {
                "fish" => format!("-l {flag}"),
                _ => format!("--{flag}"),
            };
            assert!(
                script.contains(&spelled),
                "the {shell} completions do not mention {spelled}"
            );
        }
    }
    let (_, err) = env.sg_code(2, &["completions", "tcsh"]);
    assert!(
        err.contains("possible values: bash, elvish, fish, powershell, zsh"),
        "{err}"
    );
}

#[test]
fn bash_completion_is_valid_bash_and_completes_commands_and_flags() {
    let env = TestEnv::new();
    let script = env.home().join("stagegate.bash");
    std::fs::write(&script, env.sg_ok(&["completions", "bash"])).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Loaded into bash and asked what follows `stagegate cyc`, `stagegate cycle --no-p` and
    // `stagegate completions `, the way bash calls it on a TAB.
    let probe = format!(
        r#"source '{}'
ask() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _stagegate stagegate "${{@: -1}}" "${{@: -2:1}}"; echo "${{COMPREPLY[*]}}"; }}
ask stagegate cyc
ask stagegate cycle --no-p
ask stagegate completions ''
"#,
        script.display()
    );
    let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "cycle", "{text}");
    assert_eq!(lines[1], "--no-poll", "{text}");
    assert!(
        lines[2].contains("bash") && lines[2].contains("zsh") && lines[2].contains("fish"),
        "{text}"
    );
}

#[test]
fn the_man_page_names_every_command_and_man_renders_it() {
    let env = TestEnv::new();
    let page = env.sg_ok(&["man"]);
    assert!(page.contains(".TH stagegate 1"), "{page}");
    for c in commands(&env) {
        assert!(
            page.contains(&format!("stagegate\\-{}(1)", c.replace('-', "\\-"))),
            "the man page does not name stagegate-{c}(1):\n{page}"
        );
    }
    // Rendered by man (`.ci/run` installs it; elsewhere the test skips only this part).
    if let Some(man) = require_tool("man") {
        let file = env.home().join("stagegate.1");
        std::fs::write(&file, &page).unwrap();
        let out = Command::new(man)
            .arg("-l")
            .arg(&file)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man -l: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("SUBCOMMANDS"), "{text}");
        assert!(text.contains("stagegate-cycle(1)"), "{text}");
    }
}

#[test]
fn man_out_writes_a_page_per_command_nested_ones_included() {
    let env = TestEnv::new();
    let dir = env.home().join("man/man1");
    let listed = env.sg_ok(&["man", "--out", dir.to_str().unwrap()]);
    let mut expected: Vec<String> = std::iter::once("stagegate.1".to_string())
        .chain(commands(&env).iter().map(|c| format!("stagegate-{c}.1")))
        .chain([
            "stagegate-hook-install.1".into(),
            "stagegate-store-get.1".into(),
        ])
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    for page in &expected {
        assert!(written.contains(page), "{page} not written: {written:?}");
        assert!(
            listed.contains(&format!("{}/{page}\n", dir.display())),
            "{listed}"
        );
    }
    // No `help` pages: `help` is clap's, not a command.
    assert!(!written.iter().any(|w| w.contains("help")), "{written:?}");
    let cycle = std::fs::read_to_string(dir.join("stagegate-cycle.1")).unwrap();
    assert!(
        cycle.contains(&format!(
            ".TH stagegate-cycle 1  \"stagegate {}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{cycle}"
    );
    assert!(cycle.contains("\\-\\-no\\-poll"), "{cycle}");
}
