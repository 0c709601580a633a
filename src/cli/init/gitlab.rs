//! What `init --gitlab` adds to a state repository: a `.gitlab-ci.yml` that includes
//! stagegate's CI/CD component (`templates/gitlab/template.yml`) pinned like the GitHub
//! action, the project's container registry as the shared store in `stagegate.yaml`, and
//! the list of what is left to set up on GitLab itself.

use std::path::Path;

use super::File;
use super::github::Action;
use crate::error::{Error, Result};

/// The scheduled pipeline the component runs (its `mode` input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One job: poll, run and promote.
    Cycle,
    /// Poll, then each job on a runner of its own (a child pipeline), then promote.
    Matrix,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Cycle => "cycle",
            Mode::Matrix => "matrix",
        }
    }
}

/// Where the component and stagegate's source are, from the release this binary comes from
/// (`OWNER/REPO@REF` of the GitHub action): the component in the project of the same path on
/// the GitLab instance (a mirror of stagegate), the source on GitHub.
pub struct Component {
    /// `OWNER/REPO`
    repo: String,
    /// A commit (pinned) or a tag.
    reference: String,
    /// The version, for the comment beside a commit.
    version: Option<String>,
    pub pinned: bool,
}

impl Component {
    pub fn of(action: &Action) -> Component {
        let (spec, comment) = match action.uses.split_once(" # ") {
            Some((s, c)) => (s, Some(c.to_string())),
            None => (action.uses.as_str(), None),
        };
        let (repo, reference) = spec.split_once('@').unwrap_or((spec, "v0"));
        Component {
            repo: repo.to_string(),
            reference: reference.to_string(),
            version: comment,
            pinned: action.pinned,
        }
    }
}

/// `GROUP/…/PROJECT` of a gitlab.com remote URL (https, ssh or scp-like), `.git` or not.
pub fn gitlab_repository(url: &str) -> Option<String> {
    let (host, path) = crate::forge::gitlab::remote_parts(url)?;
    if !host.eq_ignore_ascii_case("gitlab.com") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let ok = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    ok.then_some(path)
}

/// The shared store in gitlab.com's container registry for the project `path`.
pub fn registry_store(path: &str) -> Result<String> {
    let store = format!(
        "oci://registry.gitlab.com/{}/artifacts",
        path.to_ascii_lowercase()
    );
    super::github::check_store(&store).map_err(|_| {
        Error::usage_help(
            format!("the GitLab project {path} has no valid container registry name ({store})"),
            "name the store with --store oci://REGISTRY/GROUP/PROJECT/artifacts",
        )
    })?;
    Ok(store)
}

/// The `.gitlab-ci.yml` to commit.
pub fn pipeline_file(mode: Mode, component: &Component) -> File {
    let comment = component
        .version
        .as_deref()
        .map(|v| format!("  # {v}"))
        .unwrap_or_default();
    let text = format!(
        "# stagegate's CI/CD component (README: GitLab): on a pipeline schedule, poll for new\n\
         # upstream versions, run the jobs without a result, and promote what passed; the report\n\
         # goes to GitLab Pages. The component is stagegate's templates/gitlab/template.yml, in\n\
         # the project {repo} of this GitLab instance (a mirror of stagegate's repository).\n\
         include:\n  \
           - component: $CI_SERVER_FQDN/{repo}/gitlab@{reference}{comment}\n    \
             inputs:\n      \
               mode: {mode}\n      \
               stagegate-source: https://github.com/{repo}.git\n      \
               stagegate-ref: {reference}\n",
        repo = component.repo,
        reference = component.reference,
        mode = mode.as_str(),
    );
    File {
        path: ".gitlab-ci.yml".into(),
        data: text.into_bytes(),
        exec: false,
    }
}

/// What the project needs before the pipeline works: what `init` wrote cannot do it.
pub struct Todo<'a> {
    pub dir: &'a Path,
    /// The branches to push.
    pub branches: Vec<String>,
    pub repository: Option<&'a str>,
    pub component: &'a Component,
    pub store: &'a str,
    /// The stages, in order.
    pub stages: &'a [&'a str],
}

impl Todo<'_> {
    /// The to-do list, one item a line.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let last = self.stages.last().copied().unwrap_or("stable");
        let git = format!("git -C {}", self.dir.display());
        let remote = match self.repository {
            Some(_) => String::new(),
            None => format!("{git} remote add origin https://gitlab.com/GROUP/PROJECT.git && "),
        };
        out.push(format!(
            "Push the branches: `{remote}{git} push -u origin {}`, make {last} the default branch, and add a pipeline schedule on {last} (Build → Pipeline schedules, e.g. hourly): {last}'s .gitlab-ci.yml changes only by approved promotions.",
            self.branches.join(" ")
        ));
        out.push(format!(
            "The component: .gitlab-ci.yml includes it from the project {} of your GitLab instance; mirror stagegate's repository there (or change the include to where it is).",
            self.component.repo
        ));
        if !self.component.pinned {
            out.push(format!(
                "Pin stagegate: this stagegate was not built by a release, so .gitlab-ci.yml uses `{}`, a tag that can move. Use the commit of the release you use for the component and for `stagegate-ref` (the release's SOURCE_COMMIT file names it).",
                self.component.reference
            ));
        }
        if !self.store.starts_with("oci://registry.gitlab.com/") {
            out.push(format!(
                "Make the store {} reachable from every runner: jobs log in to the project's own container registry with their job token; for any other store set STAGEGATE_OCI_TOKEN, or STAGEGATE_OCI_USERNAME and STAGEGATE_OCI_PASSWORD, as CI/CD variables (README: The artifact and log store).",
                self.store
            ));
        }
        out.push(
            "Pushes and merge requests: create a project access token (role Maintainer, scope `api`) and add it as the masked CI/CD variable STAGEGATE_GITLAB_TOKEN, scoped to the environment `stagegate`, which only the jobs that run no candidate code have.".into(),
        );
        out.push(
            "The report on GitLab Pages: the component's pages job publishes it after each scheduled pipeline (Deploy → Pages shows where).".into(),
        );
        let protect: Vec<&str> = self.stages.iter().skip(1).copied().collect();
        out.push(format!(
            "Protect {} (Settings → Repository → Protected branches): no force pushes, and pushes only by the token's role; for hosts that take one job at a time (`exclusive: true` labels), set the process mode of their resource groups (stagegate/LABEL) to oldest_first.",
            protect.join(", ")
        ));
        out
    }

    /// Print the list under a heading.
    pub fn print(&self) {
        println!("To do on GitLab (stagegate cannot do these for you):");
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
    fn the_gitlab_project_is_read_from_every_form_of_remote_url() {
        for url in [
            "https://gitlab.com/Xen-Project/ci/State.git",
            "https://oauth2:tok@gitlab.com/Xen-Project/ci/State",
            "git@gitlab.com:Xen-Project/ci/State.git",
            "ssh://git@gitlab.com:22/Xen-Project/ci/State.git",
        ] {
            assert_eq!(
                gitlab_repository(url).as_deref(),
                Some("Xen-Project/ci/State"),
                "{url}"
            );
        }
        for url in [
            "https://github.com/octo/state.git",
            "https://gitlab.com/octo",
            "/srv/git/state.git",
        ] {
            assert_eq!(gitlab_repository(url), None, "{url}");
        }
        assert_eq!(
            registry_store("Xen-Project/ci/State").unwrap(),
            "oci://registry.gitlab.com/xen-project/ci/state/artifacts"
        );
    }

    #[test]
    fn the_pipeline_file_pins_the_component_and_the_install_to_one_release() {
        let action = Action::of_release(Some(&format!("o/stagegate@{COMMIT}")), "0.3.1");
        let c = Component::of(&action);
        let text = String::from_utf8(pipeline_file(Mode::Matrix, &c).data).unwrap();
        assert!(
            text.contains(&format!(
                "  - component: $CI_SERVER_FQDN/o/stagegate/gitlab@{COMMIT}  # v0.3.1\n"
            )),
            "{text}"
        );
        assert!(text.contains("      mode: matrix\n"), "{text}");
        assert!(text.contains(&format!("      stagegate-ref: {COMMIT}\n")));
        assert!(text.contains("      stagegate-source: https://github.com/o/stagegate.git\n"));
        let unpinned = Component::of(&Action::of_release(None, "0.3.1"));
        assert!(!unpinned.pinned);
        let text = String::from_utf8(pipeline_file(Mode::Cycle, &unpinned).data).unwrap();
        assert!(
            text.contains("component: $CI_SERVER_FQDN/your-org/stagegate/gitlab@v0\n"),
            "{text}"
        );
    }
}
