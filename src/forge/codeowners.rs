//! CODEOWNERS, read as GitHub reads it: who owns each path of the repository.
//!
//! GitHub takes the first of `.github/CODEOWNERS`, `CODEOWNERS`, `docs/CODEOWNERS` on the
//! pull request's base branch; each line is a gitignore-like pattern followed by owners
//! (`@user`, `@org/team`, or an e-mail address), and the *last* matching line decides a
//! path's owners (a pattern with no owners means "nobody in particular"). Lines GitHub
//! would skip as invalid are skipped here too. Pure: no git, no network.

/// Where GitHub looks, in order.
pub const LOCATIONS: [&str; 3] = [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];
/// Where GitLab looks, in order. GitLab's `[Section]` headers are read as lines without
/// owners, so a file with sections is read as one section (the last matching line decides).
pub const GITLAB_LOCATIONS: [&str; 3] = ["CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS"];

/// One owner named on a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `@login`
    User(String),
    /// `@org/slug`
    Team { org: String, slug: String },
    /// An e-mail address: GitHub maps it to an account stagegate cannot see, so it is
    /// shown but never satisfied.
    Email(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::User(u) => write!(f, "@{u}"),
            Owner::Team { org, slug } => write!(f, "@{org}/{slug}"),
            Owner::Email(e) => f.write_str(e),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// The pattern without a leading or trailing `/`.
    glob: String,
    /// Matched against the whole path from the root (a `/` at the start or in the middle).
    anchored: bool,
    /// A trailing `/`: matches a directory (so everything under it), never a file.
    dir_only: bool,
    owners: Vec<Owner>,
}

/// A parsed CODEOWNERS file.
#[derive(Debug, Clone, Default)]
pub struct CodeOwners {
    rules: Vec<Rule>,
}

impl CodeOwners {
    pub fn parse(text: &str) -> CodeOwners {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.split_once(" #").map_or(line, |(l, _)| l).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(pattern) = words.next() else {
                continue;
            };
            // GitHub ignores lines with `!` negation or `[ ]` ranges (unsupported syntax).
            if pattern.starts_with('!') || pattern.contains('[') || pattern.starts_with("\\#") {
                continue;
            }
            let owners: Option<Vec<Owner>> = words.map(owner).collect();
            let Some(owners) = owners else { continue };
            let dir_only = pattern.ends_with('/') && pattern != "/";
            let trimmed = pattern.trim_end_matches('/');
            let anchored = trimmed.starts_with('/') || trimmed.contains('/');
            let glob = trimmed.trim_start_matches('/').to_string();
            if glob.is_empty() {
                continue;
            }
            rules.push(Rule {
                glob,
                anchored,
                dir_only,
                owners,
            });
        }
        CodeOwners { rules }
    }

    /// The owners of the file at `path` (relative to the root, `/`-separated): the last
    /// matching line's, or none.
    pub fn owners(&self, path: &str) -> &[Owner] {
        self.rules
            .iter()
            .rev()
            .find(|r| r.matches(path))
            .map_or(&[], |r| r.owners.as_slice())
    }
}

fn owner(word: &str) -> Option<Owner> {
    match word.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((org, slug)) if !org.is_empty() && !slug.is_empty() && !slug.contains('/') => {
                Some(Owner::Team {
                    org: org.to_string(),
                    slug: slug.to_string(),
                })
            }
            None if !rest.is_empty() => Some(Owner::User(rest.to_string())),
            _ => None,
        },
        None if word.contains('@') => Some(Owner::Email(word.to_string())),
        None => None,
    }
}

impl Rule {
    fn matches(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').collect();
        // `dir/*` matches the files directly in dir, not deeper ones (GitHub's exception
        // to gitignore).
        let shallow = self.glob.ends_with("/*");
        let starts: Vec<usize> = if self.anchored {
            vec![0]
        } else {
            (0..segs.len()).collect()
        };
        for start in starts {
            for end in start + 1..=segs.len() {
                let is_file = end == segs.len();
                if (is_file && self.dir_only) || (!is_file && shallow) {
                    continue;
                }
                if glob(self.glob.as_bytes(), segs[start..end].join("/").as_bytes()) {
                    return true;
                }
            }
        }
        false
    }
}

/// `*` any run of characters but `/`, `**` any run at all, `?` one character but `/`.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'*', b'*', rest @ ..] => {
            let rest = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=s.len())
                .any(|i| (i == 0 || s[i - 1] == b'/' || rest.is_empty()) && glob(rest, &s[i..]))
        }
        [b'*', rest @ ..] => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob(rest, &s[i..])),
        [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && glob(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners_of(file: &str, path: &str) -> Vec<String> {
        CodeOwners::parse(file)
            .owners(path)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_last_matching_line_decides() {
        let file = "# owners\n* @everyone\n*.yaml @yaml-people\ncomponents/ @org/components\n/components/xen.yaml @xen-dev dev@example.org\n";
        let table: &[(&str, &[&str])] = &[
            ("README.md", &["@everyone"]),
            ("tests/boot.yaml", &["@yaml-people"]),
            ("components/linux.yaml", &["@org/components"]),
            ("components/xen.yaml", &["@xen-dev", "dev@example.org"]),
            ("nested/components/x.yaml", &["@org/components"]),
        ];
        for (path, want) in table {
            assert_eq!(owners_of(file, path), *want, "{path}");
        }
    }

    #[test]
    fn patterns_follow_githubs_rules() {
        let table: &[(&str, &str, bool)] = &[
            ("/docs/", "docs/a/b.md", true),
            ("/docs/", "x/docs/a.md", false),
            ("docs/*", "docs/a.md", true),
            ("docs/*", "docs/build/a.md", false),
            ("apps/", "x/apps/y.rs", true),
            ("apps/", "apps", false),
            ("**/logs", "a/b/logs/x.txt", true),
            ("/build/logs/", "build/logs/x/y", true),
            ("*.js", "a/b/c.js", true),
            ("*.js", "a/b/c.jsx", false),
            ("images/**/*.yaml", "images/a/b/c.yaml", true),
            ("images/**/*.yaml", "images/c.yaml", true),
            ("stagegate.yaml", "stagegate.yaml", true),
            ("stagegate.yaml", "sub/stagegate.yaml", true),
            ("/stagegate.yaml", "sub/stagegate.yaml", false),
            ("im?ges/", "images/a", true),
        ];
        for (pattern, path, want) in table {
            let file = format!("{pattern} @o\n");
            assert_eq!(
                !owners_of(&file, path).is_empty(),
                *want,
                "{pattern} vs {path}"
            );
        }
    }

    #[test]
    fn a_pattern_without_owners_clears_them_and_bad_lines_are_skipped() {
        let file = "* @a\n/generated/\n!negated @b\n[ab].txt @c\nx.txt @\n";
        assert!(owners_of(file, "generated/x").is_empty());
        assert_eq!(owners_of(file, "a.txt"), ["@a"]);
        assert_eq!(
            owners_of(file, "x.txt"),
            ["@a"],
            "an invalid owner skips the line"
        );
    }
}
