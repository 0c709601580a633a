//! [`Forge`] over GitLab's REST API v4 (gitlab.com or a self-hosted instance), in plain
//! HTTP through `reqwest`.
//!
//! Why plain HTTP rather than a GitLab client crate (Kitware's `gitlab` is the well-kept
//! one): stagegate needs about fifteen endpoints, and the crate would bring a second HTTP
//! stack, its own retry and pagination policy and a large tree of typed endpoints to build;
//! `reqwest` is already compiled for the OCI store (same version and features), and the
//! retry, rate-limit and error policy here is the one [`super::github`] applies, so both
//! forges fail the same way. The shapes read are the documented ones (merge requests,
//! approvals, diff versions, notes, members, commit statuses, branches).
//!
//! - the token goes in `PRIVATE-TOKEN` (a project, group or personal access token with the
//!   `api` scope; a CI job token cannot open merge requests);
//! - transient failures (5xx, a dropped connection) of idempotent requests (GET, PUT,
//!   DELETE) are retried with backoff; a POST is never sent twice;
//! - a rate limit (429 with `Retry-After`, or `RateLimit-Reset`) is waited out within the
//!   configured bound;
//! - lists follow `Link: rel="next"`, or `X-Next-Page` where GitLab leaves the link out, to
//!   the last page; a next page on another host is refused (the token never leaves);
//! - any other failure names the call, the project, the HTTP status and GitLab's message
//!   (`{"message": …}` as a string, a list or a field map, or OAuth's `error_description`),
//!   with a hint: 401 the token, 403 its scope or role, 404 the project.
//!
//! GitLab has no check runs: the gate's verdict goes out as a commit status named
//! `stagegate`. Draft is the `Draft:` title prefix. Which approvals count is
//! [`GitLab::reviews`]'s rule.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};

// A project path goes into URLs percent-encoded, its `/` included (`group%2Fname`).
use super::github::{RetryPolicy, encode, next_link, truncate_chars};
use super::{
    Approval, CheckPosted, CheckRun, DraftChange, Forge, ForgeKind, Permission, PullRequest,
    StatusState,
};
use crate::error::{Error, Result, chain};
use crate::keys::{COMMIT_DIGITS, short_commit};

/// Environment variables this module reads.
pub const ENV_TOKEN: &str = "STAGEGATE_GITLAB_TOKEN";
pub const ENV_TOKEN_FALLBACK: &str = "GITLAB_TOKEN";
pub const ENV_CI: &str = "GITLAB_CI";
pub const ENV_API_URL: &str = "CI_API_V4_URL";
pub const ENV_SERVER_URL: &str = "CI_SERVER_URL";
pub const ENV_PROJECT_ID: &str = "CI_PROJECT_ID";
pub const ENV_PROJECT_PATH: &str = "CI_PROJECT_PATH";
pub const ENV_RETRY_BASE_MS: &str = "STAGEGATE_GITLAB_RETRY_BASE_MS";
pub const ENV_RETRIES: &str = "STAGEGATE_GITLAB_RETRIES";
pub const ENV_MAX_WAIT_SECS: &str = "STAGEGATE_GITLAB_MAX_WAIT_SECS";

pub const DEFAULT_URL: &str = "https://gitlab.com";

/// The name of the commit status stagegate sets (on the tested commit and the head).
pub const STATUS_NAME: &str = "stagegate";
/// The title prefix that makes a merge request a draft.
const DRAFT_PREFIX: &str = "Draft: ";
/// Merge request descriptions are limited to 1,048,576 characters; the body stagegate
/// renders stays far below, this is a guard.
const MAX_DESCRIPTION: usize = 1_000_000;
/// Commit status descriptions are kept short: GitLab shows one line.
const MAX_STATUS_DESCRIPTION: usize = 255;
/// As on GitHub: a list longer than this many pages of 100 is an error, never cut.
const MAX_PAGES: u32 = 1000;
/// Marks the notes stagegate leaves when it changes (or cannot change) the draft flag.
const DRAFT_MARKER: &str = "<!-- stagegate:draft -->";
/// GitLab's access levels.
pub const DEVELOPER: u64 = 30;
pub const OWNER: u64 = 50;

/// Where and as whom to talk to GitLab.
#[derive(Clone)]
pub struct GitLabConfig {
    /// The REST API base, `https://HOST/api/v4`.
    pub api_url: String,
    /// The project: its numeric id or its path (`group/subgroup/name`).
    pub project: String,
    pub token: String,
    /// Where the token came from (an environment variable's name), for error messages.
    pub token_source: String,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for GitLabConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabConfig")
            .field("api_url", &self.api_url)
            .field("project", &self.project)
            .field("token", &"<redacted>")
            .field("token_source", &self.token_source)
            .field("retry", &self.retry)
            .finish()
    }
}

/// What the pipeline (`forge:` in `stagegate.yaml`) and the remote say about where GitLab is.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// The instance (`https://gitlab.example.org`), from `forge.url`.
    pub url: Option<String>,
    /// The project path, from `forge.project`.
    pub project: Option<String>,
    /// The review remote's URL (`git@gitlab.com:group/state.git`, `https://…/group/state`).
    pub remote_url: Option<String>,
}

impl GitLabConfig {
    /// From the environment and `hints`; `Ok(None)` when no token is set (no forge then).
    ///
    /// The instance is `forge.url`, else in GitLab CI (`GITLAB_CI=true`) `CI_API_V4_URL`
    /// (or `CI_SERVER_URL`), else the remote's host over https, else gitlab.com; the
    /// project is `forge.project`, else in GitLab CI `CI_PROJECT_ID` (or
    /// `CI_PROJECT_PATH`), else the remote's path. The token is `STAGEGATE_GITLAB_TOKEN`,
    /// else `GITLAB_TOKEN`.
    pub fn from_lookup(
        hints: &Hints,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<GitLabConfig>> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let (token, token_source) = match (get(ENV_TOKEN), get(ENV_TOKEN_FALLBACK)) {
            (Some(t), _) => (t, ENV_TOKEN),
            (None, Some(t)) => (t, ENV_TOKEN_FALLBACK),
            (None, None) => return Ok(None),
        };
        let in_ci = get(ENV_CI).is_some_and(|v| v.trim() == "true");
        let ci = |k: &str| if in_ci { get(k) } else { None };
        let remote = hints.remote_url.as_deref().and_then(remote_parts);
        // What the pipeline says explicitly, then what GitLab CI says, then the remote.
        let api_url = match (&hints.url, ci(ENV_API_URL), ci(ENV_SERVER_URL), &remote) {
            (Some(u), ..) => api_of(u),
            (None, Some(api), ..) => api,
            (None, None, Some(server), _) => api_of(&server),
            (None, None, None, Some((host, _))) => format!("https://{host}/api/v4"),
            (None, None, None, None) => api_of(DEFAULT_URL),
        };
        let project = match (
            &hints.project,
            ci(ENV_PROJECT_ID).or_else(|| ci(ENV_PROJECT_PATH)),
            remote,
        ) {
            (Some(p), ..) => p.clone(),
            (None, Some(p), _) => p,
            (None, None, Some((_, path))) => path,
            (None, None, None) => {
                return Err(Error::usage_help(
                    "which GitLab project? Not in GitLab CI, no `forge.project` in stagegate.yaml, and the remote's URL names none",
                    "set `forge: {kind: gitlab, project: GROUP/NAME}` in stagegate.yaml (GitLab CI sets CI_PROJECT_ID)",
                ));
            }
        };
        let mut retry = RetryPolicy::default();
        let number = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Error::usage(format!("{k}={v:?} is not a whole number")))
                })
                .transpose()
        };
        if let Some(n) = number(ENV_RETRIES)? {
            retry.attempts = n.clamp(1, 20) as u32;
        }
        if let Some(ms) = number(ENV_RETRY_BASE_MS)? {
            retry.base_delay = Duration::from_millis(ms);
            retry.max_delay = retry.max_delay.max(retry.base_delay);
        }
        if let Some(s) = number(ENV_MAX_WAIT_SECS)? {
            retry.max_rate_limit_wait = Duration::from_secs(s);
        }
        Ok(Some(GitLabConfig {
            api_url: api_url.trim_end_matches('/').to_string(),
            project,
            token,
            token_source: token_source.to_string(),
            retry,
        }))
    }
}

/// The API base of an instance URL (`https://host` → `https://host/api/v4`); a URL that
/// already ends in `/api/v4` stays.
fn api_of(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    if u.ends_with("/api/v4") {
        u.to_string()
    } else {
        format!("{u}/api/v4")
    }
}

/// The host and project path of a git remote URL: `git@host:group/name.git`,
/// `ssh://git@host[:port]/group/name.git`, `https://host/group/name(.git)`. `None` for a
/// local path or anything else.
pub fn remote_parts(url: &str) -> Option<(String, String)> {
    let url = url.trim();
    let (host, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git") {
            return None;
        }
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // ssh's port is not the web's.
        let host = if scheme == "ssh" || scheme == "git" {
            host.split_once(':').map_or(host, |(h, _)| h)
        } else {
            host
        };
        (host.to_string(), path.to_string())
    } else {
        // scp-like: [user@]host:path (a path with a '/' before any ':' is local).
        let (before, path) = url.split_once(':')?;
        if before.contains('/') || path.starts_with('/') {
            return None;
        }
        let host = before.rsplit_once('@').map_or(before, |(_, h)| h);
        (host.to_string(), path.to_string())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || !path.contains('/') {
        return None;
    }
    Some((host, path.to_string()))
}

/// Whether a remote URL's host looks like a GitLab instance (gitlab.com, or a host named
/// `gitlab.…`): the forge is then GitLab without `forge: gitlab` in the pipeline.
pub fn looks_like_gitlab(remote_url: &str) -> bool {
    remote_parts(remote_url).is_some_and(|(h, _)| {
        let h = h.to_ascii_lowercase();
        h == "gitlab.com" || h.starts_with("gitlab.")
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Delete => "DELETE",
        }
    }

    fn idempotent(self) -> bool {
        !matches!(self, Verb::Post)
    }
}

/// An HTTP answer, read whole.
struct Reply {
    status: u16,
    body: String,
    /// The next page of a list.
    next: Option<Next>,
}

/// Where a list goes on.
enum Next {
    /// `Link: rel="next"`: a URL.
    Url(String),
    /// `X-Next-Page` alone (GitLab leaves the link out of some answers): a page number.
    Page(String),
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// `path` with its `page` query parameter set to `page`.
fn with_page(path: &str, page: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_string)
        .collect();
    parts.push(format!("page={}", encode(page.trim())));
    format!("{base}?{}", parts.join("&"))
}

/// GitLab's error text: `{"message": "403 Forbidden"}`, `{"message": ["…"]}`,
/// `{"message": {"field": ["…"]}}`, `{"error": "…", "error_description": "…"}`.
fn error_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let flat = |m: &Value| -> String {
        match m {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("; "),
            Value::Object(o) => o
                .iter()
                .map(|(k, x)| {
                    let said = match x {
                        Value::Array(a) => a
                            .iter()
                            .map(|y| y.as_str().map_or_else(|| y.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(", "),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    format!("{k} {said}")
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    };
    if let Some(m) = v.get("message") {
        return flat(m);
    }
    if let Some(e) = v.get("error") {
        let mut t = flat(e);
        if let Some(d) = v.get("error_description").and_then(Value::as_str) {
            t.push_str(&format!(": {d}"));
        }
        if let Some(s) = v.get("scope").and_then(Value::as_str) {
            t.push_str(&format!(" (needs scope {s})"));
        }
        return t;
    }
    let t = body.trim();
    if t.is_empty() {
        "(no message)".to_string()
    } else {
        truncate_chars(t, 300)
    }
}

/// How long GitLab asked us to wait, if this answer is a rate limit (429).
fn rate_limit_wait(status: u16, header: &dyn Fn(&str) -> Option<String>) -> Option<Duration> {
    if status != 429 {
        return None;
    }
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if let Some(reset) = header("ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return Some(Duration::from_secs(reset.saturating_sub(now)));
    }
    Some(Duration::from_secs(60))
}

/// An RFC 3339 time as GitLab writes it (`2026-12-07T23:16:29.123Z`, or with an offset),
/// as milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i128> {
    let s = s.trim();
    let (base, offset_secs) = if let Some(b) = s.strip_suffix('Z') {
        (b, 0i64)
    } else if s.len() > 6 && matches!(&s[s.len() - 6..s.len() - 5], "+" | "-") {
        let (b, off) = s.split_at(s.len() - 6);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':')?;
        (
            b,
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
        )
    } else {
        (s, 0)
    };
    let t = humantime::parse_rfc3339_weak(base).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    Some(d.as_millis() as i128 - offset_secs as i128 * 1000)
}

/// A merge request as GitLab answers it.
#[derive(Deserialize)]
struct Mr {
    iid: u64,
    #[serde(default)]
    web_url: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: Option<String>,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    /// The older name of `draft`.
    #[serde(default)]
    work_in_progress: Option<bool>,
    /// `opened`, `closed`, `locked`, `merged`.
    state: String,
}

#[derive(Deserialize, Clone)]
struct User {
    id: u64,
    username: String,
}

/// The approvals of a merge request: each approver with when they approved (if known), and
/// how many more approvals GitLab's own rules want.
struct Approved {
    by: Vec<(User, Option<i128>)>,
    left: u64,
}

/// GitLab over its REST API, for one project.
pub struct GitLab {
    client: reqwest::Client,
    cfg: GitLabConfig,
    /// The project as it goes into a URL (`group%2Fname`, or the id).
    project_ref: String,
    /// Usernames to ids, learnt from the answers (approvals, notes) or looked up once.
    ids: Mutex<BTreeMap<String, u64>>,
    /// Access levels looked up, by username (for messages and to ask once).
    levels: Mutex<BTreeMap<String, Option<u64>>>,
    rt: tokio::runtime::Runtime,
}

/// A commit id, shortened for people.
fn short(sha: &str) -> &str {
    short_commit(sha, COMMIT_DIGITS)
}

/// A title without the draft prefixes GitLab recognises.
fn undrafted(title: &str) -> &str {
    let mut t = title.trim_start();
    loop {
        let lower = t.to_ascii_lowercase();
        let cut = ["draft:", "[draft]", "(draft)"]
            .iter()
            .find(|p| lower.starts_with(*p))
            .map(|p| p.len());
        match cut {
            Some(n) => t = t[n..].trim_start(),
            None => return t,
        }
    }
}

/// The name of an access level, as GitLab's members page says it.
pub fn role_name(level: u64) -> &'static str {
    match level {
        0 => "no access",
        5 => "Minimal Access",
        10 => "Guest",
        15 => "Planner",
        20 => "Reporter",
        30 => "Developer",
        40 => "Maintainer",
        50 => "Owner",
        _ => "an unknown role",
    }
}

impl GitLab {
    pub fn new(cfg: GitLabConfig) -> Result<GitLab> {
        let token = cfg.token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::usage_help(
                format!(
                    "{} is not a usable token: it has spaces or control characters",
                    cfg.token_source
                ),
                "set it to the token alone, without quotes or line breaks",
            ));
        }
        let api_url = cfg.api_url.trim_end_matches('/').to_string();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(Error::usage_help(
                format!("GitLab API URL {api_url:?} is not a URL"),
                "e.g. https://gitlab.com/api/v4 (`forge.url` takes the instance, https://HOST)",
            ));
        }
        let project = cfg.project.trim().trim_matches('/').to_string();
        let numeric = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
        let path_ok = project.contains('/')
            && project.split('/').all(|p| {
                !p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !numeric && !path_ok {
            return Err(Error::usage_help(
                format!("{project:?} is not a GitLab project"),
                "give its numeric id or its path, e.g. xen-project/state",
            ));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut headers = http::HeaderMap::new();
        let mut value = http::HeaderValue::from_str(&token)
            .map_err(|_| Error::usage(format!("{} is not a usable token", cfg.token_source)))?;
        value.set_sensitive(true);
        headers.insert("private-token", value);
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("stagegate/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| Error::infra(format!("cannot set up the GitLab client: {}", chain(&e))))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::infra(format!("cannot start the HTTP runtime: {e}")))?;
        Ok(GitLab {
            client,
            project_ref: encode(&project),
            cfg: GitLabConfig {
                api_url,
                project,
                ..cfg
            },
            ids: Mutex::default(),
            levels: Mutex::default(),
            rt,
        })
    }

    pub fn project(&self) -> &str {
        &self.cfg.project
    }

    fn project_path(&self, rest: &str) -> String {
        format!("/projects/{}{rest}", self.project_ref)
    }

    fn mr_path(&self, iid: u64, rest: &str) -> String {
        self.project_path(&format!("/merge_requests/{iid}{rest}"))
    }

    /// One request, with retries and rate-limit waits; any answer is returned.
    fn send(&self, verb: Verb, what: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let policy = &self.cfg.retry;
        let url = format!("{}{path}", self.cfg.api_url);
        self.rt.block_on(async {
            let mut failures = 0u32;
            let mut waits = 0u32;
            loop {
                let mut req = match verb {
                    Verb::Get => self.client.get(&url),
                    Verb::Post => self.client.post(&url),
                    Verb::Put => self.client.put(&url),
                    Verb::Delete => self.client.delete(&url),
                };
                if let Some(b) = body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.to_string());
                }
                let response = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        failures += 1;
                        if failures < policy.attempts && verb.idempotent() {
                            tokio::time::sleep(policy.backoff(failures)).await;
                            continue;
                        }
                        return Err(Error::infra_help(
                            format!(
                                "GitLab API: {what} for {}: could not reach {} ({failures} {}): {}",
                                self.cfg.project,
                                self.cfg.api_url,
                                if failures == 1 { "try" } else { "tries" },
                                chain(&e)
                            ),
                            if verb.idempotent() {
                                "check the network and the GitLab URL (`forge.url`, or CI_API_V4_URL in CI)".to_string()
                            } else {
                                format!(
                                    "check the network and the GitLab URL; a {} is not sent twice, so check on GitLab whether it took effect before running again",
                                    verb.as_str()
                                )
                            },
                        ));
                    }
                };
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let header = |k: &str| -> Option<String> {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let text = match response.text().await {
                    Ok(t) => t,
                    Err(e) => {
                        failures += 1;
                        if failures < policy.attempts && verb.idempotent() {
                            tokio::time::sleep(policy.backoff(failures)).await;
                            continue;
                        }
                        return Err(Error::infra(format!(
                            "GitLab API: {what} for {}: the answer could not be read: {}",
                            self.cfg.project,
                            chain(&e)
                        )));
                    }
                };
                if let Some(wait) = rate_limit_wait(status, &header) {
                    if wait > policy.max_rate_limit_wait || waits >= policy.rate_limit_waits {
                        return Err(Error::infra_help(
                            format!(
                                "GitLab API: {what} for {}: rate limited (HTTP {status}); the limit resets in {}",
                                self.cfg.project,
                                humantime::format_duration(wait)
                            ),
                            format!(
                                "run again later, or allow a longer wait with {ENV_MAX_WAIT_SECS} (now {}s)",
                                policy.max_rate_limit_wait.as_secs()
                            ),
                        ));
                    }
                    waits += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                if status >= 500 && verb.idempotent() {
                    failures += 1;
                    if failures < policy.attempts {
                        tokio::time::sleep(policy.backoff(failures)).await;
                        continue;
                    }
                }
                let next = match header("link").as_deref().and_then(next_link) {
                    Some(n) => Some(Next::Url(n)),
                    None => header("x-next-page")
                        .filter(|p| !p.trim().is_empty())
                        .map(Next::Page),
                };
                return Ok(Reply {
                    status,
                    body: text,
                    next,
                });
            }
        })
    }

    /// The error for an answer that is not a success.
    fn api_error(&self, what: &str, verb: Verb, path: &str, reply: &Reply) -> Error {
        let message = format!(
            "GitLab API: {what} for {} failed: {} {path}: HTTP {}: {}",
            self.cfg.project,
            verb.as_str(),
            reply.status,
            error_text(&reply.body)
        );
        let help = match reply.status {
            401 => format!(
                "GitLab rejected the token in {}: check that it is set, not expired or revoked, and issued on {}",
                self.cfg.token_source, self.cfg.api_url
            ),
            403 => format!(
                "the token in {} may not do this: it needs the `api` scope and at least the Developer role in {} (a project or group access token kept as a masked CI/CD variable only the promoting job sees)",
                self.cfg.token_source, self.cfg.project
            ),
            404 => format!(
                "check the project {:?} (CI_PROJECT_ID in CI, `forge.project` elsewhere) and that the token can see it (GitLab answers 404 for projects a token may not read)",
                self.cfg.project
            ),
            409 => "GitLab reports a conflict: something changed meanwhile; run again".to_string(),
            s if s >= 500 && verb.idempotent() => format!(
                "GitLab kept failing after {} tries; try again later",
                self.cfg.retry.attempts
            ),
            s if s >= 500 => format!(
                "GitLab failed; a {} is not sent twice, so check on GitLab whether it took effect, then run again",
                verb.as_str()
            ),
            _ => "see GitLab's message above".to_string(),
        };
        Error::infra_help(message, help)
    }

    /// A request that must succeed; returns its body.
    fn call(&self, verb: Verb, what: &str, path: &str, body: Option<&Value>) -> Result<String> {
        let reply = self.send(verb, what, path, body)?;
        if reply.ok() {
            Ok(reply.body)
        } else {
            Err(self.api_error(what, verb, path, &reply))
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| {
            Error::infra(format!(
                "GitLab API: {what} for {}: unexpected answer: {e}",
                self.cfg.project
            ))
        })
    }

    /// Every page of a list, 100 a page.
    fn list<T: serde::de::DeserializeOwned>(&self, what: &str, path: &str) -> Result<Vec<T>> {
        match self.try_list(what, path)? {
            Ok(items) => Ok(items),
            Err((page, reply)) => Err(self.api_error(what, Verb::Get, &page, &reply)),
        }
    }

    /// [`GitLab::list`], with a page GitLab refused returned as `Err((path, reply))`.
    fn try_list<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<std::result::Result<Vec<T>, (String, Reply)>> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut next = Some(format!("{path}{sep}per_page=100"));
        let mut pages = 0u32;
        while let Some(page) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::infra(format!(
                    "GitLab API: {what} for {}: still more after {MAX_PAGES} pages of 100; stagegate does not act on a partial list",
                    self.cfg.project
                )));
            }
            let reply = self.send(Verb::Get, what, &page, None)?;
            if !reply.ok() {
                return Ok(Err((page, reply)));
            }
            let items: Vec<T> = self.parse(what, &reply.body)?;
            out.extend(items);
            next = match &reply.next {
                Some(Next::Url(url)) => Some(self.relative(what, url)?),
                // The same request, on that page.
                Some(Next::Page(p)) => Some(with_page(&page, p)),
                None => None,
            };
        }
        Ok(Ok(out))
    }

    /// A URL GitLab handed back (a `next` page) as a path under the API base; a URL on
    /// another host is refused, so the token never goes there.
    fn relative(&self, what: &str, url: &str) -> Result<String> {
        match url.strip_prefix(&self.cfg.api_url) {
            Some(rest) if rest.starts_with('/') => Ok(rest.to_string()),
            _ => Err(Error::infra(format!(
                "GitLab API: {what} for {}: the next page is at {url:?}, outside {}",
                self.cfg.project, self.cfg.api_url
            ))),
        }
    }

    fn convert(&self, mr: Mr) -> PullRequest {
        let draft = mr.draft.or(mr.work_in_progress).unwrap_or(false)
            || undrafted(&mr.title) != mr.title.trim_start();
        PullRequest {
            number: mr.iid,
            url: mr.web_url.unwrap_or_default(),
            title: undrafted(&mr.title).to_string(),
            body: mr.description.unwrap_or_default(),
            head_ref: mr.source_branch,
            head_sha: mr.sha.unwrap_or_default(),
            base_ref: mr.target_branch,
            draft,
            open: mr.state == "opened",
            merged: mr.state == "merged",
            node_id: None,
        }
    }

    fn remember(&self, u: &User) {
        self.ids
            .lock()
            .unwrap()
            .insert(u.username.to_ascii_lowercase(), u.id);
    }

    /// The id of `username`, or `None` when GitLab knows no such user.
    fn user_id(&self, username: &str) -> Result<Option<u64>> {
        if let Some(id) = self.ids.lock().unwrap().get(&username.to_ascii_lowercase()) {
            return Ok(Some(*id));
        }
        let what = format!("looking up user {username}");
        let users: Vec<User> = self.parse(
            &what,
            &self.call(
                Verb::Get,
                &what,
                &format!("/users?username={}", encode(username)),
                None,
            )?,
        )?;
        let found = users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(username));
        if let Some(u) = &found {
            self.remember(u);
        }
        Ok(found.map(|u| u.id))
    }

    /// `username`'s access level in the project (inherited from groups included), `None`
    /// when not a member.
    pub fn access_level(&self, username: &str) -> Result<Option<u64>> {
        let key = username.to_ascii_lowercase();
        if let Some(l) = self.levels.lock().unwrap().get(&key) {
            return Ok(*l);
        }
        let level = match self.user_id(username)? {
            None => None,
            Some(id) => {
                let what = format!("reading the membership of {username}");
                let path = self.project_path(&format!("/members/all/{id}"));
                let reply = self.send(Verb::Get, &what, &path, None)?;
                if reply.status == 404 {
                    None
                } else if !reply.ok() {
                    return Err(self.api_error(&what, Verb::Get, &path, &reply));
                } else {
                    #[derive(Deserialize)]
                    struct Member {
                        access_level: u64,
                    }
                    Some(self.parse::<Member>(&what, &reply.body)?.access_level)
                }
            }
        };
        self.levels.lock().unwrap().insert(key, level);
        Ok(level)
    }

    /// Leave `body` as a note on the merge request, unless stagegate's latest draft note
    /// already says the same.
    fn draft_note(&self, iid: u64, body: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Note {
            body: Option<String>,
            #[serde(default)]
            system: bool,
        }
        let what = format!("listing the notes of merge request !{iid}");
        let notes: Vec<Note> = self.list(
            &what,
            &self.mr_path(iid, "/notes?sort=asc&order_by=created_at"),
        )?;
        let last = notes
            .iter()
            .rev()
            .filter(|n| !n.system)
            .filter_map(|n| n.body.as_deref())
            .find(|b| b.contains(DRAFT_MARKER));
        if last.is_some_and(|b| b.trim_end() == body.trim_end()) {
            return Ok(false);
        }
        self.call(
            Verb::Post,
            &format!("commenting on merge request !{iid}"),
            &self.mr_path(iid, "/notes"),
            Some(&json!({ "body": body })),
        )?;
        Ok(true)
    }

    /// The approvals of merge request `iid` with the time each was given: `approved_at` where
    /// GitLab says it, else the user's latest "approved this merge request" system note
    /// (GitLab writes one on every approval and "unapproved …" on every withdrawal).
    /// Also how many approvals GitLab's own rules still want (`approvals_left`, where the
    /// project has rules).
    fn approvals(&self, iid: u64) -> Result<Approved> {
        #[derive(Deserialize)]
        struct Approver {
            user: User,
            #[serde(default)]
            approved_at: Option<String>,
        }
        #[derive(Deserialize)]
        struct Approvals {
            #[serde(default)]
            approved_by: Vec<Approver>,
            #[serde(default)]
            approvals_left: Option<u64>,
        }
        let what = format!("reading the approvals of merge request !{iid}");
        let a: Approvals = self.parse(
            &what,
            &self.call(Verb::Get, &what, &self.mr_path(iid, "/approvals"), None)?,
        )?;
        let mut out = Vec::new();
        let mut notes: Option<BTreeMap<String, i128>> = None;
        let left = a.approvals_left.unwrap_or(0);
        for ap in a.approved_by {
            self.remember(&ap.user);
            let mut at = ap.approved_at.as_deref().and_then(parse_time);
            if at.is_none() {
                if notes.is_none() {
                    notes = Some(self.approval_notes(iid)?);
                }
                at = notes
                    .as_ref()
                    .and_then(|n| n.get(&ap.user.username.to_ascii_lowercase()).copied());
            }
            out.push((ap.user, at));
        }
        Ok(Approved { by: out, left })
    }

    /// When each user last approved, from the system notes.
    fn approval_notes(&self, iid: u64) -> Result<BTreeMap<String, i128>> {
        #[derive(Deserialize)]
        struct Note {
            #[serde(default)]
            body: String,
            #[serde(default)]
            system: bool,
            author: User,
            created_at: String,
        }
        let what = format!("reading the notes of merge request !{iid}");
        let notes: Vec<Note> = self.list(
            &what,
            &self.mr_path(iid, "/notes?sort=asc&order_by=created_at"),
        )?;
        let mut out = BTreeMap::new();
        for n in notes {
            if !n.system || !n.body.trim().starts_with("approved this merge request") {
                continue;
            }
            if let Some(t) = parse_time(&n.created_at) {
                let e = out
                    .entry(n.author.username.to_ascii_lowercase())
                    .or_insert(t);
                *e = (*e).max(t);
            }
        }
        Ok(out)
    }

    /// The merge request's diff versions (one per push GitLab saw): head and time, oldest
    /// first.
    fn versions(&self, iid: u64) -> Result<Vec<(String, i128)>> {
        #[derive(Deserialize)]
        struct Version {
            head_commit_sha: String,
            created_at: String,
        }
        let what = format!("reading the versions of merge request !{iid}");
        let versions: Vec<Version> = self.list(&what, &self.mr_path(iid, "/versions"))?;
        let mut out: Vec<(String, i128)> = versions
            .into_iter()
            .filter_map(|v| parse_time(&v.created_at).map(|t| (v.head_commit_sha, t)))
            .collect();
        out.sort_by_key(|(_, t)| *t);
        Ok(out)
    }
}

impl Forge for GitLab {
    fn kind(&self) -> ForgeKind {
        ForgeKind::GitLab
    }

    fn describe(&self) -> String {
        format!("GitLab {} ({})", self.cfg.project, self.cfg.api_url)
    }

    fn find_open_pr(&self, head_branch: &str, base: &str) -> Result<Option<PullRequest>> {
        let what = format!("finding the merge request {head_branch} → {base}");
        let path = self.project_path(&format!(
            "/merge_requests?state=opened&source_branch={}&target_branch={}",
            encode(head_branch),
            encode(base)
        ));
        let mrs: Vec<Mr> = self.list(&what, &path)?;
        Ok(mrs
            .into_iter()
            .map(|m| self.convert(m))
            .find(|p| p.open && p.head_ref == head_branch && p.base_ref == base))
    }

    fn open_pr(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<PullRequest> {
        let what = format!("opening a merge request {head} → {base}");
        let path = self.project_path("/merge_requests");
        let request = json!({
            "source_branch": head,
            "target_branch": base,
            "title": if draft { format!("{DRAFT_PREFIX}{title}") } else { title.to_string() },
            "description": truncate_chars(body, MAX_DESCRIPTION),
            // stagegate deletes the branch itself once the promotion is merged.
            "remove_source_branch": false,
        });
        let reply = self.send(Verb::Post, &what, &path, Some(&request))?;
        if reply.status == 409 {
            // "Another open merge request already exists for this source branch": one opened
            // between our look and our open.
            if let Some(pr) = self.find_open_pr(head, base)? {
                return Ok(pr);
            }
        }
        if !reply.ok() {
            return Err(self.api_error(&what, Verb::Post, &path, &reply));
        }
        let mr: Mr = self.parse(&what, &reply.body)?;
        Ok(self.convert(mr))
    }

    fn get_pr(&self, number: u64) -> Result<PullRequest> {
        let what = format!("reading merge request !{number}");
        let text = self.call(Verb::Get, &what, &self.mr_path(number, ""), None)?;
        let mr: Mr = self.parse(&what, &text)?;
        Ok(self.convert(mr))
    }

    fn update_pr(&self, number: u64, title: &str, body: &str) -> Result<()> {
        // The draft flag is the title's prefix: keep it as it is.
        let draft = self.get_pr(number)?.draft;
        let title = if draft {
            format!("{DRAFT_PREFIX}{title}")
        } else {
            title.to_string()
        };
        self.call(
            Verb::Put,
            &format!("updating merge request !{number}"),
            &self.mr_path(number, ""),
            Some(&json!({ "title": title, "description": truncate_chars(body, MAX_DESCRIPTION) })),
        )?;
        Ok(())
    }

    fn set_draft(&self, number: u64, draft: bool, reason: Option<&str>) -> Result<DraftChange> {
        let pr = self.get_pr(number)?;
        if pr.draft == draft {
            return Ok(DraftChange::Unchanged);
        }
        let verb = if draft { "draft" } else { "ready" };
        let title = if draft {
            format!("{DRAFT_PREFIX}{}", pr.title)
        } else {
            pr.title.clone()
        };
        let what = format!("marking merge request !{number} as {verb}");
        let path = self.mr_path(number, "");
        let reply = self.send(Verb::Put, &what, &path, Some(&json!({ "title": title })))?;
        if reply.ok() {
            if let Some(r) = reason {
                self.draft_note(
                    number,
                    &format!("{DRAFT_MARKER}\nstagegate marked this merge request as {verb}: {r}"),
                )?;
            }
            return Ok(DraftChange::Changed);
        }
        if reply.status != 403 {
            return Err(self.api_error(&what, Verb::Put, &path, &reply));
        }
        let mut note = format!(
            "{DRAFT_MARKER}\nstagegate would mark this merge request as {verb}, but GitLab refused: HTTP 403: {}",
            error_text(&reply.body)
        );
        if let Some(r) = reason {
            note.push_str(&format!("\n\nReason: {r}"));
        }
        if draft {
            note.push_str("\n\n**Do not merge** until stagegate marks it ready.");
        }
        self.draft_note(number, &note)?;
        Ok(DraftChange::Commented)
    }

    fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        self.call(
            Verb::Put,
            &format!("labelling merge request !{number}"),
            &self.mr_path(number, ""),
            Some(&json!({ "add_labels": labels.join(",") })),
        )?;
        Ok(())
    }

    /// Which approvals count. GitLab's approvals list names who approves but not which
    /// commit they saw, so an approval counts for `head_sha` only when both hold:
    ///
    /// - the merge request's current head (`sha`) is `head_sha`, so GitLab's approval
    ///   state is about that very commit;
    /// - the approval was given (`approved_at`, or the user's latest "approved this merge
    ///   request" system note) at or after GitLab recorded `head_sha` as the merge
    ///   request's head (the diff version whose head it is; the latest version made
    ///   before the approval must have `head_sha` as its head).
    ///
    /// So an approval of an earlier head never carries over to a new push, whether or not
    /// the project resets approvals on push (a setting not every tier has). Someone with
    /// `requested_changes` as their reviewer state blocks, as a change request does on
    /// GitHub, and so do the project's own approval rules while they want more approvals
    /// (`approvals_left`): stagegate's rule comes on top of GitLab's, never instead.
    fn reviews(&self, number: u64, head_sha: Option<&str>) -> Result<Approval> {
        let mut out = Approval::default();
        let Approved {
            by: approvals,
            left,
        } = self.approvals(number)?;
        if left > 0 {
            out.wanting.push(format!(
                "GitLab's approval rules for merge request !{number} want {left} more approval{}",
                if left == 1 { "" } else { "s" }
            ));
        }
        if let Some(head) = head_sha {
            let current = self.get_pr(number)?.head_sha;
            if current != head {
                if !approvals.is_empty() {
                    out.ignored.push(format!(
                        "merge request !{number} is at {}, not {}: its approvals are not of the head stagegate pushed",
                        short(&current),
                        short(head)
                    ));
                }
                return Ok(out);
            }
            let versions = if approvals.is_empty() {
                Vec::new()
            } else {
                self.versions(number)?
            };
            for (user, at) in approvals {
                let Some(at) = at else {
                    out.ignored.push(format!(
                        "the approval by {} does not count: GitLab does not say when it was given",
                        user.username
                    ));
                    continue;
                };
                let seen = versions
                    .iter()
                    .rev()
                    .find(|(_, t)| *t <= at)
                    .map(|(sha, _)| sha.as_str());
                if seen == Some(head) {
                    out.approved_by.push(user.username);
                } else {
                    out.ignored.push(format!(
                        "the approval by {} does not count: it was given before {} was pushed (of an earlier head)",
                        user.username,
                        short(head)
                    ));
                }
            }
        } else {
            out.approved_by = approvals.into_iter().map(|(u, _)| u.username).collect();
        }
        #[derive(Deserialize)]
        struct Reviewer {
            user: User,
            #[serde(default)]
            state: Option<String>,
        }
        let what = format!("reading the reviewers of merge request !{number}");
        // Reviewer states are newer than the approvals API: where GitLab has none (404),
        // nobody asks for changes. Any other failure fails: a change request must not be
        // missed because its list could not be read.
        match self.try_list::<Reviewer>(&what, &self.mr_path(number, "/reviewers"))? {
            Ok(reviewers) => {
                for r in reviewers {
                    if r.state.as_deref() == Some("requested_changes") {
                        self.remember(&r.user);
                        out.changes_requested_by.push(r.user.username);
                    }
                }
            }
            Err((_, reply)) if reply.status == 404 => {}
            Err((page, reply)) => return Err(self.api_error(&what, Verb::Get, &page, &reply)),
        }
        out.approved_by.sort();
        out.approved_by.dedup();
        out.changes_requested_by.sort();
        out.changes_requested_by.dedup();
        Ok(out)
    }

    /// Developer and above may approve (Maintainer reads as write, Owner as admin);
    /// Reporter, Guest and Planner read; a non-member has none.
    fn permission(&self, user: &str) -> Result<Permission> {
        Ok(match self.access_level(user)? {
            Some(l) if l >= OWNER => Permission::Admin,
            Some(l) if l >= DEVELOPER => Permission::Write,
            Some(l) if l >= 10 => Permission::Read,
            _ => Permission::None,
        })
    }

    fn access_text(&self, user: &str, p: Permission) -> String {
        match self.levels.lock().unwrap().get(&user.to_ascii_lowercase()) {
            Some(Some(l)) => format!(
                "{user} is a {} of the project, not at least a Developer",
                role_name(*l)
            ),
            Some(None) => format!("{user} is not a member of the project"),
            None => format!("{user} has {} access to the project", p.as_str()),
        }
    }

    /// The members (inherited included) of group `org/slug` with at least Developer
    /// access, as GitLab requires of code owners; `None` when the token may not see it.
    fn team_members(&self, org: &str, slug: &str) -> Result<Option<Vec<String>>> {
        let group = format!("{org}/{slug}");
        let what = format!("listing the members of group @{group}");
        let path = format!("/groups/{}/members/all", encode(&group));
        #[derive(Deserialize)]
        struct Member {
            username: String,
            access_level: u64,
        }
        match self.try_list::<Member>(&what, &path)? {
            Ok(m) => Ok(Some(
                m.into_iter()
                    .filter(|m| m.access_level >= DEVELOPER)
                    .map(|m| m.username)
                    .collect(),
            )),
            Err((_, reply)) if matches!(reply.status, 403 | 404) => Ok(None),
            Err((page, reply)) => Err(self.api_error(&what, Verb::Get, &page, &reply)),
        }
    }

    fn requests_of_commit(&self, sha: &str) -> Result<Vec<PullRequest>> {
        let what = format!("listing the merge requests of commit {}", short(sha));
        let mrs: Vec<Mr> = self.list(
            &what,
            &self.project_path(&format!("/repository/commits/{sha}/merge_requests")),
        )?;
        Ok(mrs.into_iter().map(|m| self.convert(m)).collect())
    }

    fn comment_once(&self, number: u64, marker: &str, body: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Note {
            body: Option<String>,
        }
        let notes: Vec<Note> = self.list(
            &format!("listing the notes of merge request !{number}"),
            &self.mr_path(number, "/notes?sort=asc&order_by=created_at"),
        )?;
        if notes
            .iter()
            .any(|n| n.body.as_deref().is_some_and(|b| b.contains(marker)))
        {
            return Ok(false);
        }
        self.call(
            Verb::Post,
            &format!("commenting on merge request !{number}"),
            &self.mr_path(number, "/notes"),
            Some(&json!({ "body": format!("{marker}\n{body}") })),
        )?;
        Ok(true)
    }

    fn delete_branch(&self, branch: &str) -> Result<bool> {
        let what = format!("deleting branch {branch}");
        if branch
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
            || branch.contains(['?', '#', '%', ' '])
        {
            return Err(Error::usage(format!("{branch:?} is not a branch name")));
        }
        let path = self.project_path(&format!("/repository/branches/{}", encode(branch)));
        let reply = self.send(Verb::Delete, &what, &path, None)?;
        match reply.status {
            200 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(self.api_error(&what, Verb::Delete, &path, &reply)),
        }
    }

    /// GitLab has no check runs: the verdict is the `stagegate` commit status, the move
    /// and the title in its description.
    fn create_check_run(&self, run: &CheckRun) -> Result<CheckPosted> {
        let state = run
            .conclusion
            .map_or(StatusState::Pending, |c| c.status_state());
        let moved = run.name.strip_prefix("stagegate ").unwrap_or(&run.name);
        self.create_status(
            &run.head_sha,
            state,
            STATUS_NAME,
            &format!("{moved}: {}", run.title),
            run.details_url.as_deref(),
        )?;
        Ok(CheckPosted::Status)
    }

    fn create_status(
        &self,
        sha: &str,
        state: StatusState,
        context: &str,
        description: &str,
        url: Option<&str>,
    ) -> Result<()> {
        if !sha.bytes().all(|b| b.is_ascii_hexdigit()) || sha.is_empty() {
            return Err(Error::usage(format!("{sha:?} is not a commit id")));
        }
        let state = match state {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure | StatusState::Error => "failed",
        };
        let mut request = json!({
            "state": state,
            "name": context,
            "description": truncate_chars(description, MAX_STATUS_DESCRIPTION),
        });
        if let Some(u) = url {
            request["target_url"] = json!(u);
        }
        let what = format!("setting commit status {context:?} on {sha}");
        let path = self.project_path(&format!("/statuses/{sha}"));
        let reply = self.send(Verb::Post, &what, &path, Some(&request))?;
        // Setting a status to the state it is in ("Cannot transition status via :enqueue
        // from :pending"): it already says this.
        if reply.status == 400 && error_text(&reply.body).contains("Cannot transition status") {
            return Ok(());
        }
        if !reply.ok() {
            return Err(self.api_error(&what, Verb::Post, &path, &reply));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn in_gitlab_ci_the_predefined_variables_say_where() {
        let cfg = GitLabConfig::from_lookup(
            &Hints::default(),
            env(&[
                ("GITLAB_CI", "true"),
                ("CI_API_V4_URL", "https://gitlab.example.org/api/v4"),
                ("CI_PROJECT_ID", "42"),
                ("CI_PROJECT_PATH", "xen/state"),
                ("GITLAB_TOKEN", "t1"),
                ("STAGEGATE_GITLAB_TOKEN", "t2"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.api_url, "https://gitlab.example.org/api/v4");
        assert_eq!(cfg.project, "42");
        assert_eq!(cfg.token, "t2");
        assert_eq!(cfg.token_source, ENV_TOKEN);
    }

    #[test]
    fn what_the_pipeline_names_wins_over_ci_and_ci_over_the_remote() {
        let vars = [
            ("GITLAB_CI", "true"),
            ("CI_API_V4_URL", "https://ci.example/api/v4"),
            ("CI_PROJECT_ID", "42"),
            ("GITLAB_TOKEN", "t"),
        ];
        let remote = Hints {
            remote_url: Some("git@gitlab.com:g/s.git".into()),
            ..Hints::default()
        };
        let cfg = GitLabConfig::from_lookup(&remote, env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(
            (cfg.api_url.as_str(), cfg.project.as_str()),
            ("https://ci.example/api/v4", "42")
        );
        let named = Hints {
            url: Some("https://state.example".into()),
            project: Some("lab/state".into()),
            ..remote
        };
        let cfg = GitLabConfig::from_lookup(&named, env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(
            (cfg.api_url.as_str(), cfg.project.as_str()),
            ("https://state.example/api/v4", "lab/state")
        );
        // CI's variables count only in CI.
        let cfg = GitLabConfig::from_lookup(&Hints::default(), env(&vars[1..]))
            .err()
            .unwrap();
        assert_eq!(cfg.exit_code(), 2);
    }

    #[test]
    fn outside_ci_the_remote_names_the_instance_and_the_project() {
        let hints = Hints {
            remote_url: Some("git@gitlab.example.org:xen-project/hw/state.git".into()),
            ..Hints::default()
        };
        let cfg = GitLabConfig::from_lookup(&hints, env(&[("GITLAB_TOKEN", "t")]))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.api_url, "https://gitlab.example.org/api/v4");
        assert_eq!(cfg.project, "xen-project/hw/state");
        let pinned = Hints {
            url: Some("http://127.0.0.1:8080/".into()),
            project: Some("g/s".into()),
            ..hints
        };
        let cfg = GitLabConfig::from_lookup(&pinned, env(&[("GITLAB_TOKEN", "t")]))
            .unwrap()
            .unwrap();
        assert_eq!(cfg.api_url, "http://127.0.0.1:8080/api/v4");
        assert_eq!(cfg.project, "g/s");
    }

    #[test]
    fn without_a_token_there_is_no_gitlab() {
        assert!(
            GitLabConfig::from_lookup(&Hints::default(), env(&[("GITLAB_CI", "true")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn remote_urls_are_read_in_every_form() {
        for (url, want) in [
            ("git@gitlab.com:g/s.git", Some(("gitlab.com", "g/s"))),
            (
                "https://gitlab.com/g/sub/s",
                Some(("gitlab.com", "g/sub/s")),
            ),
            (
                "ssh://git@gitlab.example.org:2222/g/s.git",
                Some(("gitlab.example.org", "g/s")),
            ),
            (
                "https://oauth2:tok@gitlab.com/g/s.git",
                Some(("gitlab.com", "g/s")),
            ),
            ("/srv/git/state.git", None),
            ("../origin.git", None),
            ("file:///srv/git/g/s.git", None),
        ] {
            assert_eq!(
                remote_parts(url),
                want.map(|(h, p)| (h.to_string(), p.to_string())),
                "{url}"
            );
        }
        assert!(looks_like_gitlab("git@gitlab.com:g/s.git"));
        assert!(looks_like_gitlab("https://gitlab.freedesktop.org/g/s"));
        assert!(!looks_like_gitlab("https://github.com/g/s"));
    }

    #[test]
    fn gitlab_error_bodies_read_as_one_line() {
        assert_eq!(
            error_text(r#"{"message":"403 Forbidden"}"#),
            "403 Forbidden"
        );
        assert_eq!(
            error_text(r#"{"message":["Another open merge request already exists"]}"#),
            "Another open merge request already exists"
        );
        assert_eq!(
            error_text(r#"{"message":{"title":["can't be blank"]}}"#),
            "title can't be blank"
        );
        assert_eq!(
            error_text(
                r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token.","scope":"api"}"#
            ),
            "insufficient_scope: The request requires higher privileges than provided by the access token. (needs scope api)"
        );
        assert_eq!(error_text(""), "(no message)");
    }

    #[test]
    fn draft_prefixes_come_off_the_title() {
        assert_eq!(undrafted("Draft: Promote x"), "Promote x");
        assert_eq!(undrafted("[Draft] Promote x"), "Promote x");
        assert_eq!(undrafted("draft:Promote x"), "Promote x");
        assert_eq!(undrafted("Promote draft: x"), "Promote draft: x");
    }

    #[test]
    fn times_with_offsets_are_the_same_instant() {
        let z = parse_time("2026-12-07T10:00:00.500Z").unwrap();
        assert_eq!(parse_time("2026-12-07T12:00:00.500+02:00"), Some(z));
        assert_eq!(parse_time("2026-12-07T10:00:01Z"), Some(z + 500));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn a_page_number_replaces_the_one_in_the_query() {
        assert_eq!(
            with_page("/projects/1/members?per_page=100&page=2", "3"),
            "/projects/1/members?per_page=100&page=3"
        );
        assert_eq!(with_page("/x", "2"), "/x?page=2");
    }

    #[test]
    fn only_429_is_a_rate_limit() {
        let h = |_: &str| None;
        assert_eq!(rate_limit_wait(403, &h), None);
        let r = |k: &str| (k == "retry-after").then(|| "3".to_string());
        assert_eq!(rate_limit_wait(429, &r), Some(Duration::from_secs(3)));
    }
}
