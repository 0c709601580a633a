//! What `init --github` adds to a state repository: one scheduled workflow (the cycle, or
//! the job matrix on request) beside the read-only pull-request check, a shared store in
//! `stagegate.yaml` so builds outlive the runner that made them, the action pinned by the
//! commit of the release this binary comes from, and the list of what is left to set up
//! on GitHub itself.

use std::path::Path;

use include_dir::Dir;

use super::File;
use crate::error::{Error, Result};

static TEMPLATES: Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/templates/github");

/// How the templates name stagegate's action; `init` writes the real reference instead.
const PLACEHOLDER: &str = "your-org/stagegate@v0";

/// `OWNER/REPO@COMMIT` of the release this binary was built by: set by
/// `.github/workflows/release.yml` for the release build, absent from any other build.
const RELEASE_ACTION: Option<&str> = option_env!("STAGEGATE_RELEASE_ACTION");

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The scheduled workflow `init --github` writes. Only one: two would both promote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workflow {
    /// `stagegate-cycle.yml`: poll, run and promote in one job, every hour.
    Cycle,
    /// `stagegate-matrix.yml`: poll, then each job on a runner of its own, then promote.
    Matrix,
}

impl Workflow {
    fn file(self) -> &'static str {
        match self {
            Workflow::Cycle => "stagegate-cycle.yml",
            Workflow::Matrix => "stagegate-matrix.yml",
        }
    }
}

/// The `uses:` value of stagegate's action in the workflows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// What follows `uses:`, a trailing comment included.
    pub uses: String,
    /// Whether it names a commit: a tag or branch can be moved under the workflow.
    pub pinned: bool,
}

impl Action {
    /// The release `built` names (`OWNER/REPO@COMMIT`, the build-time value), pinned by
    /// its commit with the version as a comment, as dependency bots pin (they update both).
    /// Without one (a build that no release made), the floating major tag of the
    /// placeholder, which the printed to-do list says to pin.
    pub fn of_release(built: Option<&str>, version: &str) -> Action {
        if let Some((repo, commit)) = built.and_then(|b| b.trim().split_once('@'))
            && is_repository(repo)
            && is_commit(commit)
        {
            return Action {
                uses: format!("{repo}@{commit} # v{version}"),
                pinned: true,
            };
        }
        let major = version.split('.').next().unwrap_or("0");
        Action {
            uses: format!("your-org/stagegate@v{major}"),
            pinned: false,
        }
    }

    /// The action as the user names it with `--github-action OWNER/REPO@REF`.
    pub fn given(spec: &str) -> Result<Action> {
        let bad = || {
            Error::usage_help(
                format!("--github-action {spec:?} is not OWNER/REPO@REF"),
                "name the stagegate action and the commit of the release to use, e.g. --github-action octo-org/stagegate@<40-hex commit>",
            )
        };
        let (repo, reference) = spec.split_once('@').ok_or_else(bad)?;
        if !is_repository(repo)
            || reference.is_empty()
            || reference
                .chars()
                .any(|c| c.is_whitespace() || c == '#' || c == '@')
        {
            return Err(bad());
        }
        Ok(Action {
            uses: spec.to_string(),
            pinned: is_commit(reference),
        })
    }

    /// This binary's own release, or the placeholder.
    pub fn this_release() -> Action {
        Action::of_release(RELEASE_ACTION, VERSION)
    }
}

/// `OWNER/REPO` as GitHub spells names: letters, digits, `-`, `_`, `.`.
fn is_repository(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn is_commit(s: &str) -> bool {
    s.len() == 40
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// `OWNER/REPO` of a github.com remote URL (https, ssh or scp-like), `.git` or not.
pub fn github_repository(url: &str) -> Option<String> {
    let (host, path) = crate::forge::gitlab::remote_parts(url)?;
    if !host.eq_ignore_ascii_case("github.com") && !host.eq_ignore_ascii_case("www.github.com") {
        return None;
    }
    is_repository(&path).then_some(path)
}

/// The URL of the remote `origin` of the repository at `dir`, if it has one.
pub fn origin_url(dir: &Path) -> Option<String> {
    if !dir.join(".git").exists() {
        return None;
    }
    let git = gix::open(dir).ok()?;
    git.config_snapshot()
        .string("remote.origin.url")
        .map(|u| u.to_string())
}

/// The shared store on ghcr.io for the GitHub repository `OWNER/REPO`.
pub fn ghcr_store(repository: &str) -> Result<String> {
    let store = format!(
        "oci://ghcr.io/{}/artifacts",
        repository.to_ascii_lowercase()
    );
    check_store(&store).map_err(|_| {
        Error::usage_help(
            format!("the GitHub repository {repository} has no valid ghcr.io package name ({store})"),
            "name the store with --store oci://ghcr.io/OWNER/NAME (lower-case letters, digits, `.`, `_`, `-`)",
        )
    })?;
    Ok(store)
}

/// Refuse a store `stagegate check` would refuse, before anything is written.
pub fn check_store(store: &str) -> Result<()> {
    let problem = match store.split_once("://") {
        Some(("oci" | "oci+http", _)) => crate::artifact::oci::parse_url(store).err(),
        Some(("file", _)) | None if !store.trim().is_empty() => None,
        Some(("file", _)) | None => Some("it is empty".to_string()),
        Some((scheme, _)) => Some(format!("the {scheme}:// scheme is not supported")),
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(Error::usage_help(
            format!("--store {store:?}: {why}"),
            "use a directory, a file:// URL, or oci://HOST[:PORT]/REPOSITORY (e.g. oci://ghcr.io/OWNER/REPO/artifacts)",
        )),
    }
}

/// `yaml` (a `stagegate.yaml`) with `artifacts.store` set to `store`: in place of the
/// commented-out example line the templates have, or at the end.
pub fn set_store(yaml: &str, store: &str) -> String {
    // A JSON string is a YAML double-quoted scalar: whatever the store's characters, the
    // file says exactly this store.
    let value = if store
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":/._-+@".contains(c))
    {
        store.to_string()
    } else {
        serde_json::Value::String(store.to_string()).to_string()
    };
    let block = format!(
        "# Builds and full job logs, shared by every runner (README: The artifact and log store).\nartifacts: {{store: {value}}}\n"
    );
    let mut out = String::new();
    let mut placed = false;
    for line in yaml.split_inclusive('\n') {
        if !placed && line.starts_with("# artifacts:") {
            out.push_str(&block);
            placed = true;
        } else {
            out.push_str(line);
        }
    }
    if !placed {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&block);
    }
    out
}

/// The workflows to commit, at their place in the repository: `which` and the
/// pull-request check, with `action` as stagegate's action.
pub fn workflows(which: Workflow, action: &Action) -> Result<Vec<File>> {
    let mut out = Vec::new();
    for name in [which.file(), "stagegate-pull-request.yml"] {
        let file = TEMPLATES.get_file(name).ok_or_else(|| {
            Error::infra(format!(
                "templates/github/{name} is not built into this stagegate"
            ))
        })?;
        let text = std::str::from_utf8(file.contents())
            .map_err(|e| Error::infra(format!("templates/github/{name} is not UTF-8: {e}")))?;
        out.push(File {
            path: format!(".github/workflows/{name}"),
            data: render(text, action).into_bytes(),
            exec: false,
        });
    }
    Ok(out)
}

/// A template as `init` writes it: the instructions for copying it by hand (a comment
/// paragraph starting `# By hand:`) dropped, and the placeholder action replaced.
fn render(template: &str, action: &Action) -> String {
    let mut out = String::new();
    let mut by_hand = false;
    for line in template.split_inclusive('\n') {
        if line.starts_with("# By hand:") {
            by_hand = true;
            continue;
        }
        if by_hand {
            if line.trim_end() == "#" {
                by_hand = false;
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            by_hand = false;
        }
        out.push_str(&line.replace(
            &format!("uses: {PLACEHOLDER}"),
            &format!("uses: {}", action.uses),
        ));
    }
    out
}

/// What the repository needs before the workflows work: what `init` wrote cannot do it.
pub struct Todo<'a> {
    pub dir: &'a Path,
    /// The branches to push, the default branch first.
    pub branches: Vec<String>,
    pub repository: Option<&'a str>,
    pub action: &'a Action,
    pub store: &'a str,
    pub workflow: Workflow,
    /// The stages, in order: rulesets protect every one after the first.
    pub stages: &'a [&'a str],
}

impl Todo<'_> {
    /// The to-do list, one item a line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        // The last stage: its workflows changed only by approved promotions (a workflow
        // edit starts on the first stage and moves as the repository-files candidate), and
        // GitHub runs scheduled workflows from the default branch's copy.
        let default = self.stages.last().copied().unwrap_or("stable");
        let git = format!("git -C {}", self.dir.display());
        let remote = match self.repository {
            Some(_) => String::new(),
            None => format!("{git} remote add origin https://github.com/OWNER/REPO.git && "),
        };
        out.push(format!(
            "Push the branches: `{remote}{git} push -u origin {}`, and make {default} the default branch (Settings → General): GitHub runs scheduled workflows from the default branch, and {default}'s workflows change only by approved promotions.",
            self.branches.join(" ")
        ));
        if !self.action.pinned {
            out.push(format!(
                "Pin the action: this stagegate ({VERSION}) was not built by a release, so the workflows use `{}`, a tag that can move. Replace it in .github/workflows/ with the release you use, pinned by its commit: `OWNER/stagegate@<commit> # v{VERSION}` (the release's SOURCE_COMMIT file names the commit).",
                self.action.uses
            ));
        }
        let ghcr = self.store.starts_with("oci://ghcr.io/");
        if !ghcr {
            out.push(format!(
                "Make the store {} reachable from every runner with the credentials it needs (STAGEGATE_OCI_TOKEN, or STAGEGATE_OCI_USERNAME and STAGEGATE_OCI_PASSWORD, in the stagegate steps' `env:` from secrets; README: The artifact and log store).",
                self.store
            ));
        }
        let promoter = match self.workflow {
            Workflow::Cycle => "stagegate-cycle.yml",
            Workflow::Matrix => "the promote job of stagegate-matrix.yml",
        };
        out.push(format!(
            "Promotion pull requests that start your other workflows (and so their required checks): create a GitHub App with contents, pull requests, checks and statuses: read and write; install it on this repository; set the Actions variable STAGEGATE_APP_CLIENT_ID and the secret STAGEGATE_APP_PRIVATE_KEY ({promoter} then uses its token). Without an App, allow the workflow's token to open them: Settings → Actions → General → Allow GitHub Actions to create and approve pull requests."
        ));
        out.push(
            "The report on GitHub Pages: Settings → Pages → Source: GitHub Actions (the workflow's pages job publishes it after each run).".into(),
        );
        let checks: Vec<String> = self
            .stages
            .windows(2)
            .map(|w| format!("{} (check `stagegate {} -> {}`)", w[1], w[0], w[1]))
            .collect();
        out.push(format!(
            "Rulesets (Settings → Rules → Rulesets) on {}: require that check, block force pushes and deletions, and where a gate says `review: true` require a pull request with an approval; let the App (or GitHub Actions) bypass them so promotions can be pushed.",
            checks.join(", ")
        ));
        out
    }

    /// Print the list under a heading.
    pub fn print(&self) {
        println!("To do on GitHub (stagegate cannot do these for you):");
        for (i, line) in self.lines().iter().enumerate() {
            println!("  {}. {line}", i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn a_release_build_pins_its_own_commit_with_the_version_as_a_comment() {
        let a = Action::of_release(Some(&format!("octo-org/stagegate@{COMMIT}")), "0.3.1");
        assert_eq!(a.uses, format!("octo-org/stagegate@{COMMIT} # v0.3.1"));
        assert!(a.pinned);
    }

    #[test]
    fn any_other_build_falls_back_to_the_floating_major_tag() {
        for built in [
            None,
            Some(""),
            Some("octo-org/stagegate@v0.3.1"),
            Some("octo-org/stagegate@0123"),
            Some("stagegate@0123456789abcdef0123456789abcdef01234567"),
        ] {
            let a = Action::of_release(built, "1.4.0");
            assert_eq!(a.uses, "your-org/stagegate@v1", "{built:?}");
            assert!(!a.pinned, "{built:?}");
        }
    }

    #[test]
    fn a_given_action_is_pinned_only_by_a_commit() {
        let a = Action::given(&format!("me/stagegate@{COMMIT}")).unwrap();
        assert!(a.pinned);
        assert!(!Action::given("me/stagegate@v1").unwrap().pinned);
        for bad in [
            "me/stagegate",
            "stagegate@v1",
            "me/stagegate@",
            "me/sg@v1 # x",
        ] {
            assert!(Action::given(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_github_repository_is_read_from_every_form_of_remote_url() {
        for url in [
            "https://github.com/Octo-Org/State.git",
            "https://github.com/Octo-Org/State",
            "https://token@github.com/Octo-Org/State/",
            "git@github.com:Octo-Org/State.git",
            "ssh://git@github.com:22/Octo-Org/State.git",
        ] {
            assert_eq!(
                github_repository(url).as_deref(),
                Some("Octo-Org/State"),
                "{url}"
            );
        }
        for url in [
            "https://gitlab.com/octo/state.git",
            "/srv/git/state.git",
            "https://github.com/octo",
            "https://github.com/octo/state/tree/main",
        ] {
            assert_eq!(github_repository(url), None, "{url}");
        }
        assert_eq!(
            ghcr_store("Octo-Org/State").unwrap(),
            "oci://ghcr.io/octo-org/state/artifacts"
        );
    }

    #[test]
    fn the_store_replaces_the_commented_example_or_is_appended() {
        let yaml = "version: 1\n# artifacts: {store: /srv}   # default\nenv: {}\n";
        assert_eq!(
            set_store(yaml, "oci://ghcr.io/o/r/artifacts"),
            "version: 1\n# Builds and full job logs, shared by every runner (README: The artifact and log store).\nartifacts: {store: oci://ghcr.io/o/r/artifacts}\nenv: {}\n"
        );
        let out = set_store("version: 1", "/srv/a store, shared");
        assert!(
            out.ends_with("artifacts: {store: \"/srv/a store, shared\"}\n"),
            "{out}"
        );
    }

    #[test]
    fn rendering_drops_the_by_hand_paragraph_and_names_the_action() {
        let a = Action::of_release(Some(&format!("o/stagegate@{COMMIT}")), "0.1.0");
        let t = "# What it does.\n#\n# By hand: copy it and\n# replace the action.\n#\n# Tokens.\nname: x\n    steps:\n      - uses: your-org/stagegate@v0\n";
        assert_eq!(
            render(t, &a),
            format!(
                "# What it does.\n#\n# Tokens.\nname: x\n    steps:\n      - uses: o/stagegate@{COMMIT} # v0.1.0\n"
            )
        );
    }
}
