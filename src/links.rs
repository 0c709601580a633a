//! Where things about a move are published: the report's URLs, for the report that writes
//! those pages and for promotion, which links to them from summaries and pull requests.
//!
//! A leaf: it uses nothing of the crate, so promotion links into the report without
//! depending on `report` (which reads promotion's facts).

/// The environment variable that says where the report is published (the action's
/// `report-url`), so that summaries and pull requests can link to it.
pub const URL_ENV: &str = "STAGEGATE_REPORT_URL";

/// At most this many candidates get a link of their own in one move's summary.
const MAX_CANDIDATE_LINKS: usize = 20;

/// The anchor of the move `from` → `to` on the overview.
pub fn move_anchor(from: &str, to: &str) -> String {
    format!("move-{}-{}", slug(from), slug(to))
}

/// The page of a candidate of the move `from` → `to`, relative to the report's root.
pub fn candidate_page(from: &str, to: &str, item: &str) -> String {
    format!("candidates/{}-{}/{}.html", slug(from), slug(to), slug(item))
}

/// Links into the report published at [`URL_ENV`] for the move `from` → `to`: its section
/// of the overview, then each candidate's page, as (title, URL). None when it is unset.
pub fn published_links(from: &str, to: &str, candidates: &[String]) -> Vec<(String, String)> {
    match std::env::var(URL_ENV) {
        Ok(base) => links_at(&base, from, to, candidates),
        Err(_) => Vec::new(),
    }
}

/// [`published_links`] for a report published at `base`.
pub fn links_at(base: &str, from: &str, to: &str, candidates: &[String]) -> Vec<(String, String)> {
    let base = base.trim();
    if base.is_empty() {
        return Vec::new();
    }
    let base = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    let mut out = vec![(
        format!("report: {from} → {to}"),
        format!("{base}index.html#{}", move_anchor(from, to)),
    )];
    out.extend(
        candidates
            .iter()
            .take(MAX_CANDIDATE_LINKS)
            .map(|c| (c.clone(), format!("{base}{}", candidate_page(from, to, c)))),
    );
    out
}

/// The web page of a repository whose git remote is `url`, on a forge that shows commits at
/// `<page>/commit/<sha>` (GitHub, GitLab and their self-hosted kin): `https://host/owner/repo`
/// from `https://host/owner/repo(.git)` or `git@host:owner/repo(.git)`. None for anything
/// else (a path, a `file://` URL).
pub fn forge_page(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix(".git").unwrap_or(url);
    let (host, path) = if let Some(rest) = url.strip_prefix("https://") {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        rest.split_once('/')?
    } else if let Some(rest) = url.strip_prefix("git@") {
        rest.split_once(':')?
    } else if let Some(rest) = url.strip_prefix("ssh://git@") {
        rest.split_once('/')?
    } else {
        return None;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | ':'))
    };
    (ok(host) && ok(path) && path.contains('/')).then(|| format!("https://{host}/{path}"))
}

/// A file name for `text`: `/` and anything but letters, digits, `.`, `_`, `-` become `-`.
/// The report names its pages with it, and the links above must name the same pages.
pub fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Never a name that means a directory.
    if s.chars().all(|c| c == '.') {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_point_at_the_moves_section_and_each_candidates_page() {
        let links = links_at(
            "https://o.github.io/state",
            "staging",
            "stable",
            &["components/hello".into()],
        );
        assert_eq!(
            links,
            [
                (
                    "report: staging → stable".to_string(),
                    "https://o.github.io/state/index.html#move-staging-stable".to_string()
                ),
                (
                    "components/hello".to_string(),
                    "https://o.github.io/state/candidates/staging-stable/components-hello.html"
                        .to_string()
                )
            ]
        );
        assert!(links_at(" ", "a", "b", &[]).is_empty());
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("images/debian-host"), "images-debian-host");
        assert_eq!(slug("build images/a b"), "build-images-a-b");
        assert_eq!(slug(".."), "_..");
    }
}

#[cfg(test)]
mod forge_tests {
    use super::forge_page;

    #[test]
    fn a_forge_page_from_every_common_form_of_remote() {
        for url in [
            "https://github.com/octo-org/state.git",
            "https://github.com/octo-org/state",
            "https://x-access-token:abc@github.com/octo-org/state.git",
            "git@github.com:octo-org/state.git",
            "ssh://git@github.com/octo-org/state.git",
        ] {
            assert_eq!(
                forge_page(url).as_deref(),
                Some("https://github.com/octo-org/state"),
                "{url}"
            );
        }
        assert_eq!(
            forge_page("https://gitlab.example.org/xen/ci/state.git").as_deref(),
            Some("https://gitlab.example.org/xen/ci/state")
        );
        for url in [
            "/srv/state.git",
            "file:///srv/state.git",
            "https://host",
            "weird",
        ] {
            assert_eq!(forge_page(url), None, "{url}");
        }
    }
}
