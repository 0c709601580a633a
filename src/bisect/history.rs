//! A component's upstream history, as bisect needs it: the commits between the version T
//! holds and the candidate's, on the first-parent line, and the side a merge brought in.
//!
//! The history is read with gix from a bare cache of the upstream repository kept in the
//! state repository's git directory (`stagegate/upstream/<hash of the URL>.git`), so the
//! state repository never holds upstream objects. Filling the cache is a `git fetch` (gix
//! cannot fetch here yet): the tracked branch first, then the two commits by id.

use gix::ObjectId;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::repo::Repo;
use crate::repo::remote::git;

/// The most commits a bisect reads between two versions of a component.
pub const MAX_LINE: usize = 100_000;

/// The upstream repository of a component, opened from its local cache.
pub struct Upstream {
    pub repo: Repo,
    /// The URL as git reaches it.
    pub url: String,
}

/// Where the cache of `url` lives.
fn cache_dir(state: &Repo, url: &str) -> std::path::PathBuf {
    let hash = hex::encode(&Sha256::digest(url.as_bytes())[..8]);
    state
        .git_dir()
        .join("stagegate/upstream")
        .join(format!("{hash}.git"))
}

/// Open the cache of `url` with `want` (commit ids, full or abbreviated) present, fetching
/// `track` (a branch of the upstream) and then the ids themselves when they are missing.
/// Returns the cache and each wanted id resolved to a full commit id.
pub fn open(
    state: &Repo,
    url: &str,
    track: Option<&str>,
    want: &[&str],
) -> Result<(Upstream, Vec<ObjectId>)> {
    let dir = cache_dir(state, url);
    if !dir.join("HEAD").is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::infra(format!(
                "cannot create the upstream cache {}: {e}",
                dir.display()
            ))
        })?;
        git(&dir, &["init", "--quiet", "--bare"])?;
    }
    let fetchable = |dir: &std::path::Path| -> Result<Option<Vec<ObjectId>>> {
        let repo = Repo::open(dir)?;
        let mut out = Vec::new();
        for w in want {
            match repo.resolve(w) {
                Ok(id) => out.push(id),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(out))
    };
    if let Some(ids) = fetchable(&dir)? {
        return Ok((Upstream::at(&dir, url)?, ids));
    }
    let mut tried = Vec::new();
    if let Some(t) = track {
        let spec = format!("+refs/heads/{t}:refs/stagegate/track");
        match git(&dir, &["fetch", "--quiet", "--no-tags", "--", url, &spec]) {
            Ok(_) => {}
            Err(e) => tried.push(e.to_string()),
        }
        if let Some(ids) = fetchable(&dir)? {
            return Ok((Upstream::at(&dir, url)?, ids));
        }
    }
    // A commit no branch holds any more (the upstream was rewritten): ask for it by id,
    // which servers that allow it (and every local repository) answer.
    let mut args = vec!["fetch", "--quiet", "--no-tags", "--", url];
    args.extend(want.iter().copied());
    if let Err(e) = git(&dir, &args) {
        tried.push(e.to_string());
    }
    match fetchable(&dir)? {
        Some(ids) => Ok((Upstream::at(&dir, url)?, ids)),
        None => Err(Error::infra_help(
            format!(
                "cannot fetch commits {} from {url}{}",
                want.join(", "),
                if tried.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tried.join("; "))
                }
            ),
            "check source.git and source.commit (and the network); bisect reads the upstream history from there",
        )),
    }
}

impl Upstream {
    fn at(dir: &std::path::Path, url: &str) -> Result<Upstream> {
        Ok(Upstream {
            repo: Repo::open(dir)?,
            url: url.to_string(),
        })
    }

    /// The commits on `bad`'s first-parent line that `good` does not have, oldest first
    /// (`bad` last), and the commit the line starts from (the newest first-parent
    /// ancestor of `bad` that `good` has: usually `good` itself). Like `git bisect
    /// --first-parent`, merged side branches are one commit each: their merge.
    pub fn first_parent_line(
        &self,
        good: ObjectId,
        bad: ObjectId,
    ) -> Result<(Vec<ObjectId>, Option<ObjectId>)> {
        let mut line = Vec::new();
        let mut cur = Some(bad);
        while let Some(id) = cur {
            if id == good || self.repo.is_ancestor(id, good)? {
                line.reverse();
                return Ok((line, Some(id)));
            }
            if line.len() >= MAX_LINE {
                return Err(Error::usage(format!(
                    "more than {MAX_LINE} upstream commits separate {} from {}: too many to bisect",
                    short(good),
                    short(bad)
                )));
            }
            line.push(id);
            cur = self.repo.commit(id)?.parents.first().copied();
        }
        // `good` shares no history with `bad` (a rewritten upstream): every commit of the
        // line is new.
        line.reverse();
        Ok((line, None))
    }

    /// For a merge commit: the commits its second parent brought in, oldest first, on that
    /// side's first-parent line (what `merge^1` lacks). Empty for a commit that is not a
    /// merge.
    pub fn merged_side(&self, merge: ObjectId) -> Result<Vec<ObjectId>> {
        let parents = self.repo.commit(merge)?.parents;
        let (Some(first), Some(side)) = (parents.first(), parents.get(1)) else {
            return Ok(Vec::new());
        };
        Ok(self.first_parent_line(*first, *side)?.0)
    }

    /// The subject line and author of `id`.
    pub fn describe(&self, id: ObjectId) -> Result<(String, String)> {
        let c = self.repo.commit(id)?;
        Ok((c.subject().to_string(), c.author))
    }
}

/// The first 12 hex digits of a commit id.
pub fn short(id: ObjectId) -> String {
    id.to_hex_with_len(crate::keys::LONG_COMMIT_DIGITS)
        .to_string()
}
