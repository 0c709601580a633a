//! [`Forge`] over GitHub's REST API (and GraphQL for the draft flag), through octocrab.
//!
//! octocrab carries the requests (TLS, authentication, the API base URL); this module owns
//! what happens around each one, because a promotion must neither stop at the first
//! hiccup nor hammer an API that asked it to wait:
//!
//! - transient failures (HTTP 5xx, a dropped connection) of idempotent requests (GET, PATCH,
//!   DELETE) are retried with exponential backoff, a bounded number of times; a POST
//!   is never sent twice, since GitHub may have acted on the first (a second pull request,
//!   a second comment);
//! - a rate limit (403/429 with `retry-after`, or `x-ratelimit-remaining: 0` and
//!   `x-ratelimit-reset`) is waited out, unless the wait is longer than the configured bound,
//!   in which case the call fails at once saying when the limit resets;
//! - any other answer that is not a success becomes a [`crate::Error::Infra`] naming the
//!   call, the repository, the HTTP status and GitHub's message, with a hint on what to
//!   check (401: the token; 403: the workflow's `permissions`; 404: the repository name).
//!
//! - lists follow GitHub's `Link: rel="next"` to the last page, however many there are;
//! - every request says which REST API version it was written against
//!   (`X-GitHub-Api-Version: 2022-11-28`).
//!
//! The methods block: each runs on a small tokio runtime owned by [`GitHub`]. Do not call
//! them from inside another tokio runtime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use octocrab::Octocrab;
use octocrab::models::pulls::{PullRequest as GhPullRequest, Review, ReviewState};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Approval, CheckPosted, CheckRun, DraftChange, Forge, Permission, PullRequest, StatusState,
};
use crate::error::{Error, Result, chain};

/// Environment variables this module reads (in [`GitHubConfig::from_env`]).
pub const ENV_TOKEN: &str = "GITHUB_TOKEN";
pub const ENV_APP_TOKEN: &str = "STAGEGATE_GITHUB_APP_TOKEN";
pub const ENV_REPOSITORY: &str = "GITHUB_REPOSITORY";
pub const ENV_API_URL: &str = "GITHUB_API_URL";
pub const ENV_GRAPHQL_URL: &str = "GITHUB_GRAPHQL_URL";
pub const ENV_RETRY_BASE_MS: &str = "STAGEGATE_GITHUB_RETRY_BASE_MS";
pub const ENV_RETRIES: &str = "STAGEGATE_GITHUB_RETRIES";
pub const ENV_MAX_WAIT_SECS: &str = "STAGEGATE_GITHUB_MAX_WAIT_SECS";

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// GitHub cuts a pull request body, a check run summary or text at 65,535 characters.
pub const MAX_BODY_CHARS: usize = 65_535;
/// Annotations per check-run request.
const ANNOTATIONS_PER_REQUEST: usize = 50;
/// Commit status descriptions are cut at 140 characters.
const MAX_STATUS_DESCRIPTION: usize = 140;
/// The REST API version these requests and their answers follow (GitHub's calendar version).
pub const API_VERSION: &str = "2022-11-28";
/// A list longer than this many pages (of 100) is an error, never silently cut: no list
/// stagegate reads (reviews, comments, collaborators) is legitimately that long, and a
/// server answering `next` for ever must not keep the promotion waiting.
const MAX_PAGES: u32 = 1000;
/// Marks the comments stagegate leaves when it cannot change the draft flag.
const DRAFT_MARKER: &str = "<!-- stagegate:draft -->";

/// How hard to try before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries of one request in all, for transient failures (5xx, connection errors).
    pub attempts: u32,
    /// The first wait between tries; it doubles after each.
    pub base_delay: Duration,
    /// No single backoff wait is longer.
    pub max_delay: Duration,
    /// The longest rate-limit wait accepted; a longer one fails at once.
    pub max_rate_limit_wait: Duration,
    /// Rate-limit waits per request at most.
    pub rate_limit_waits: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            rate_limit_waits: 3,
        }
    }
}

impl RetryPolicy {
    /// The wait after `failed_attempts` failures: the base delay, doubled each time, capped.
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1));
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Where and as whom to talk to GitHub.
#[derive(Clone)]
pub struct GitHubConfig {
    /// The REST API base: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server.
    pub api_url: String,
    /// The GraphQL endpoint; derived from `api_url` when `None`.
    pub graphql_url: Option<String>,
    /// `owner/name`.
    pub repository: String,
    pub token: String,
    /// Where the token came from (an environment variable's name), for error messages.
    pub token_source: String,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubConfig")
            .field("api_url", &self.api_url)
            .field("graphql_url", &self.graphql_url)
            .field("repository", &self.repository)
            .field("token", &"<redacted>")
            .field("token_source", &self.token_source)
            .field("retry", &self.retry)
            .finish()
    }
}

impl GitHubConfig {
    /// From the environment a GitHub Actions job has: the token from
    /// `STAGEGATE_GITHUB_APP_TOKEN` (a GitHub App installation token, used exactly like a
    /// token) or else `GITHUB_TOKEN`; the repository from `repository` or else
    /// `GITHUB_REPOSITORY`; the API from `GITHUB_API_URL` (default `https://api.github.com`)
    /// and `GITHUB_GRAPHQL_URL`; retries from `STAGEGATE_GITHUB_RETRIES`,
    /// `STAGEGATE_GITHUB_RETRY_BASE_MS` and `STAGEGATE_GITHUB_MAX_WAIT_SECS`.
    pub fn from_env(repository: Option<&str>) -> Result<GitHubConfig> {
        Self::from_lookup(repository, |k| std::env::var(k).ok())
    }

    /// [`GitHubConfig::from_env`] with the variables looked up by `env`.
    pub fn from_lookup(
        repository: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<GitHubConfig> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let (token, token_source) = match (get(ENV_APP_TOKEN), get(ENV_TOKEN)) {
            (Some(t), _) => (t, ENV_APP_TOKEN),
            (None, Some(t)) => (t, ENV_TOKEN),
            (None, None) => {
                return Err(Error::usage_help(
                    format!("no GitHub token: neither {ENV_TOKEN} nor {ENV_APP_TOKEN} is set"),
                    format!(
                        "in a workflow, pass `env: {ENV_TOKEN}: ${{{{ secrets.GITHUB_TOKEN }}}}` \
                         (or an app installation token as {ENV_APP_TOKEN})"
                    ),
                ));
            }
        };
        let repository = match repository {
            Some(r) => r.to_string(),
            None => get(ENV_REPOSITORY).ok_or_else(|| {
                Error::usage_help(
                    format!("which GitHub repository? {ENV_REPOSITORY} is not set"),
                    format!("set {ENV_REPOSITORY}=owner/name (GitHub Actions sets it)"),
                )
            })?,
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
        Ok(GitHubConfig {
            api_url: get(ENV_API_URL).unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            graphql_url: get(ENV_GRAPHQL_URL),
            repository,
            token,
            token_source: token_source.to_string(),
            retry,
        })
    }

    /// The GraphQL endpoint: explicit, or `…/api/graphql` beside GitHub Enterprise's
    /// `…/api/v3`, or `…/graphql` under the API base.
    pub fn graphql_endpoint(&self) -> String {
        if let Some(u) = &self.graphql_url {
            return u.trim_end_matches('/').to_string();
        }
        let base = self.api_url.trim_end_matches('/');
        match base.strip_suffix("/api/v3") {
            Some(host) => format!("{host}/api/graphql"),
            None => format!("{base}/graphql"),
        }
    }
}

/// `owner/name`, checked so it can go into a URL path as it is.
fn parse_repository(s: &str) -> Result<(String, String)> {
    let bad = || {
        Error::usage_help(
            format!("{s:?} is not a GitHub repository name"),
            "write it as owner/name, e.g. octo-org/state",
        )
    };
    let (owner, name) = s.trim().split_once('/').ok_or_else(bad)?;
    let ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if !ok(owner) || !ok(name) {
        return Err(bad());
    }
    Ok((owner.to_string(), name.to_string()))
}

/// `scheme://authority` and the path of an absolute URL.
fn split_url(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    Some((format!("{scheme}://{authority}"), path.to_string()))
}

/// Percent-encode a query value or a path segment.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Cut `s` to at most `max` characters, marking the cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let marker = "…";
    let keep: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{keep}{marker}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// Sending it twice does what sending it once does, so a failure may be retried. A
    /// POST may have been acted on before the connection dropped or the 5xx came back.
    fn idempotent(self) -> bool {
        !matches!(self, Verb::Post)
    }
}

/// An HTTP answer, read whole.
struct Reply {
    status: u16,
    body: String,
    /// The `Link` header's `rel="next"` URL, on a page of a list that has more.
    next: Option<String>,
}

/// The `rel="next"` URL of a `Link` header (`<https://…?page=2>; rel="next", <…>; rel="last"`).
pub(super) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// GitHub's error body: `{"message": …, "documentation_url": …, "errors": […]}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    message: Option<String>,
    documentation_url: Option<String>,
    #[serde(default)]
    errors: Vec<Value>,
}

fn error_text(body: &str) -> String {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let mut text = parsed.message.unwrap_or_else(|| {
        let t = body.trim();
        if t.is_empty() {
            "(no message)".to_string()
        } else {
            truncate_chars(t, 300)
        }
    });
    let details: Vec<String> = parsed
        .errors
        .iter()
        .map(|e| match e {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                if let Some(m) = o.get("message").and_then(Value::as_str) {
                    m.to_string()
                } else {
                    let field = o.get("field").and_then(Value::as_str).unwrap_or("?");
                    let code = o.get("code").and_then(Value::as_str).unwrap_or("invalid");
                    format!("{field}: {code}")
                }
            }
            other => other.to_string(),
        })
        .collect();
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join("; ")));
    }
    if let Some(d) = parsed.documentation_url {
        text.push_str(&format!(" [{d}]"));
    }
    text
}

/// How long the server asked us to wait, if this answer is a rate limit.
fn rate_limit_wait(
    status: u16,
    header: &dyn Fn(&str) -> Option<String>,
    body: &str,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining").as_deref().map(str::trim) == Some("0") {
        let reset = header("x-ratelimit-reset").and_then(|v| v.trim().parse::<u64>().ok());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        return Some(Duration::from_secs(
            reset.map_or(60, |r| r.saturating_sub(now)),
        ));
    }
    // A secondary rate limit without headers: GitHub asks for at least a minute.
    if status == 429 || body.to_ascii_lowercase().contains("secondary rate limit") {
        return Some(Duration::from_secs(60));
    }
    None
}

/// GitHub through octocrab, for one repository.
pub struct GitHub {
    // Dropped before the runtime their background tasks run on.
    rest: Octocrab,
    graphql: Octocrab,
    graphql_path: String,
    cfg: GitHubConfig,
    owner: String,
    name: String,
    rt: tokio::runtime::Runtime,
}

impl GitHub {
    /// From the environment; see [`GitHubConfig::from_env`].
    pub fn from_env(repository: Option<&str>) -> Result<GitHub> {
        GitHub::new(GitHubConfig::from_env(repository)?)
    }

    pub fn new(cfg: GitHubConfig) -> Result<GitHub> {
        let (owner, name) = parse_repository(&cfg.repository)?;
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
        if split_url(&api_url).is_none() {
            return Err(Error::usage_help(
                format!("{ENV_API_URL}={api_url:?} is not a URL"),
                format!("e.g. {DEFAULT_API_URL}, or https://HOST/api/v3 for GitHub Enterprise"),
            ));
        }
        let graphql_url = cfg.graphql_endpoint();
        let (graphql_base, graphql_path) = split_url(&graphql_url).ok_or_else(|| {
            Error::usage(format!("{ENV_GRAPHQL_URL}={graphql_url:?} is not a URL"))
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::infra(format!("cannot start the HTTP runtime: {e}")))?;
        // octocrab spawns its request buffer on the current runtime.
        let _entered = rt.enter();
        let build = |base: &str| -> Result<Octocrab> {
            let b = Octocrab::builder()
                .base_uri(base)
                .map_err(|e| Error::usage(format!("GitHub API URL {base:?}: {}", chain(&e))))?;
            b.personal_token(token.clone())
                .add_header(
                    http::header::HeaderName::from_static("x-github-api-version"),
                    API_VERSION.to_string(),
                )
                .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
                .set_connect_timeout(Some(Duration::from_secs(15)))
                .set_read_timeout(Some(Duration::from_secs(90)))
                .build()
                .map_err(|e| {
                    Error::infra(format!("cannot set up the GitHub client: {}", chain(&e)))
                })
        };
        let rest = build(&api_url)?;
        let graphql = build(&graphql_base)?;
        drop(_entered);
        Ok(GitHub {
            rest,
            graphql,
            graphql_path,
            cfg: GitHubConfig { api_url, ..cfg },
            owner,
            name,
            rt,
        })
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}/{}{rest}", self.owner, self.name)
    }

    /// One request, with retries and rate-limit waits; any answer is returned, success or not.
    fn send(&self, verb: Verb, what: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        self.send_to(&self.rest, verb, what, path, body)
    }

    fn send_to(
        &self,
        client: &Octocrab,
        verb: Verb,
        what: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let policy = &self.cfg.retry;
        self.rt.block_on(async {
            let mut failures = 0u32;
            let mut waits = 0u32;
            loop {
                let sent = match verb {
                    Verb::Get => client._get(path).await,
                    Verb::Post => client._post(path, body).await,
                    Verb::Patch => client._patch(path, body).await,
                    Verb::Delete => client._delete(path, body).await,
                };
                let response = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        failures += 1;
                        if failures < policy.attempts && verb.idempotent() {
                            tokio::time::sleep(policy.backoff(failures)).await;
                            continue;
                        }
                        return Err(Error::infra_help(
                            format!(
                                "GitHub API: {what} for {}: could not reach {} ({failures} {}): {}",
                                self.repository(),
                                self.cfg.api_url,
                                if failures == 1 { "try" } else { "tries" },
                                chain(&e)
                            ),
                            if verb.idempotent() {
                                format!("check the network and {ENV_API_URL}")
                            } else {
                                format!(
                                    "check the network and {ENV_API_URL}; a {} is not sent \
                                     twice, so check on GitHub whether it took effect before \
                                     running again",
                                    verb.as_str()
                                )
                            },
                        ));
                    }
                };
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let header = |k: &str| -> Option<String> {
                    headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string)
                };
                let text = match client.body_to_string(response).await {
                    Ok(t) => t,
                    Err(e) => {
                        failures += 1;
                        if failures < policy.attempts && verb.idempotent() {
                            tokio::time::sleep(policy.backoff(failures)).await;
                            continue;
                        }
                        return Err(Error::infra(format!(
                            "GitHub API: {what} for {}: the answer could not be read: {}",
                            self.repository(),
                            chain(&e)
                        )));
                    }
                };
                if let Some(wait) = rate_limit_wait(status, &header, &text) {
                    if wait > policy.max_rate_limit_wait || waits >= policy.rate_limit_waits {
                        return Err(Error::infra_help(
                            format!(
                                "GitHub API: {what} for {}: rate limited (HTTP {status}); the limit resets in {}",
                                self.repository(),
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
                let next = header("link").as_deref().and_then(next_link);
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
            "GitHub API: {what} for {} failed: {} {path}: HTTP {}: {}",
            self.repository(),
            verb.as_str(),
            reply.status,
            error_text(&reply.body)
        );
        let help = match reply.status {
            401 => format!(
                "GitHub rejected the token in {}: check that it is set, not expired or revoked, \
                 and issued for {}",
                self.cfg.token_source, self.cfg.api_url
            ),
            403 => "the token lacks a permission: give the workflow `permissions:` \
                    contents: write, pull-requests: write, checks: write, statuses: write \
                    (and allow GitHub Actions to create pull requests in the repository settings)"
                .to_string(),
            404 => format!(
                "check {ENV_REPOSITORY}={} and that the token can read that repository \
                 (GitHub answers 404 for repositories a token may not see)",
                self.repository()
            ),
            s if s >= 500 && verb.idempotent() => format!(
                "GitHub kept failing after {} tries; try again later",
                self.cfg.retry.attempts
            ),
            s if s >= 500 => format!(
                "GitHub failed; a {} is not sent twice, so check on GitHub whether it took \
                 effect, then run again",
                verb.as_str()
            ),
            _ => "see GitHub's message above".to_string(),
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
                "GitHub API: {what} for {}: unexpected answer: {e}",
                self.repository()
            ))
        })
    }

    fn convert(pr: GhPullRequest) -> PullRequest {
        let open = pr
            .state
            .as_ref()
            .is_none_or(|s| matches!(s, octocrab::models::IssueState::Open));
        PullRequest {
            number: pr.number,
            url: pr.html_url.map_or(pr.url.clone(), |u| u.to_string()),
            title: pr.title.unwrap_or_default(),
            body: pr.body.unwrap_or_default(),
            head_ref: pr.head.ref_field.clone(),
            head_sha: pr.head.sha.clone(),
            base_ref: pr.base.ref_field.clone(),
            draft: pr.draft.unwrap_or(false),
            open,
            merged: pr.merged.unwrap_or(false) || pr.merged_at.is_some(),
            node_id: pr.node_id,
        }
    }

    /// Every page of a list, 100 a page, following GitHub's `Link: rel="next"` to the end.
    fn list<T: serde::de::DeserializeOwned>(&self, what: &str, path: &str) -> Result<Vec<T>> {
        match self.try_list(what, path)? {
            Ok(items) => Ok(items),
            Err((page, reply)) => Err(self.api_error(what, Verb::Get, &page, &reply)),
        }
    }

    /// [`GitHub::list`], with a page GitHub refused returned as `Err((path, reply))`.
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
                    "GitHub API: {what} for {}: still more after {MAX_PAGES} pages of 100; \
                     stagegate does not act on a partial list",
                    self.repository()
                )));
            }
            let reply = self.send(Verb::Get, what, &page, None)?;
            if !reply.ok() {
                return Ok(Err((page, reply)));
            }
            let items: Vec<T> = self.parse(what, &reply.body)?;
            out.extend(items);
            next = match reply.next {
                Some(url) => Some(self.relative(what, &url)?),
                None => None,
            };
        }
        Ok(Ok(out))
    }

    /// A URL GitHub handed back (a `next` page) as a path under the API base. A URL
    /// elsewhere is refused: the token is never sent to another host.
    fn relative(&self, what: &str, url: &str) -> Result<String> {
        match url.strip_prefix(&self.cfg.api_url) {
            Some(rest) if rest.starts_with('/') => Ok(rest.to_string()),
            _ => Err(Error::infra(format!(
                "GitHub API: {what} for {}: the next page is at {url:?}, outside {}",
                self.repository(),
                self.cfg.api_url
            ))),
        }
    }

    /// A GraphQL mutation; `Ok(Err(message))` when GitHub answered with GraphQL errors.
    fn graphql(&self, what: &str, query: &str, variables: Value) -> Result<Result<Value, String>> {
        let body = json!({ "query": query, "variables": variables });
        let reply = self.send_to(
            &self.graphql,
            Verb::Post,
            what,
            &self.graphql_path,
            Some(&body),
        )?;
        if reply.status == 401 || reply.status >= 500 {
            return Err(self.api_error(what, Verb::Post, &self.graphql_path, &reply));
        }
        if !reply.ok() {
            return Ok(Err(format!(
                "HTTP {}: {}",
                reply.status,
                error_text(&reply.body)
            )));
        }
        let v: Value = self.parse(what, &reply.body)?;
        let errors = v.get("errors").and_then(Value::as_array);
        // GraphQL says "rate limited" with a 200; that is no refusal to comment about.
        if errors.is_some_and(|es| es.iter().any(|e| e["type"] == "RATE_LIMITED")) {
            return Err(Error::infra_help(
                format!(
                    "GitHub API: {what} for {}: GraphQL rate limit exceeded",
                    self.repository()
                ),
                "run again after the hourly limit resets",
            ));
        }
        match errors {
            Some(errs) if !errs.is_empty() => Ok(Err(errs
                .iter()
                .map(|e| {
                    e.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("GraphQL error")
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("; "))),
            _ => Ok(Ok(v.get("data").cloned().unwrap_or(Value::Null))),
        }
    }

    /// Leave `body` (marked as stagegate's draft note) unless the latest such note says the same.
    fn draft_note(&self, number: u64, body: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Comment {
            body: Option<String>,
        }
        let what = format!("listing comments of pull request #{number}");
        let comments: Vec<Comment> = self.list(
            &what,
            &self.repo_path(&format!("/issues/{number}/comments")),
        )?;
        let last = comments
            .iter()
            .rev()
            .filter_map(|c| c.body.as_deref())
            .find(|b| b.contains(DRAFT_MARKER));
        if last.is_some_and(|b| b.trim_end() == body.trim_end()) {
            return Ok(false);
        }
        self.call(
            Verb::Post,
            &format!("commenting on pull request #{number}"),
            &self.repo_path(&format!("/issues/{number}/comments")),
            Some(&json!({ "body": body })),
        )?;
        Ok(true)
    }
}

impl Forge for GitHub {
    fn kind(&self) -> super::ForgeKind {
        super::ForgeKind::GitHub
    }

    fn describe(&self) -> String {
        format!("GitHub {} ({})", self.repository(), self.cfg.api_url)
    }

    fn find_open_pr(&self, head_branch: &str, base: &str) -> Result<Option<PullRequest>> {
        let what = format!("finding the pull request {head_branch} → {base}");
        let path = self.repo_path(&format!(
            "/pulls?state=open&head={}&base={}&per_page=100",
            encode(&format!("{}:{head_branch}", self.owner)),
            encode(base)
        ));
        let text = self.call(Verb::Get, &what, &path, None)?;
        let prs: Vec<GhPullRequest> = self.parse(&what, &text)?;
        Ok(prs
            .into_iter()
            .map(Self::convert)
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
        let what = format!("opening a pull request {head} → {base}");
        let path = self.repo_path("/pulls");
        let request = json!({
            "title": title,
            "head": head,
            "base": base,
            "body": truncate_chars(body, MAX_BODY_CHARS),
            "draft": draft,
            "maintainer_can_modify": false,
        });
        let reply = self.send(Verb::Post, &what, &path, Some(&request))?;
        if reply.status == 422 && reply.body.contains("already exists") {
            // Another runner opened it between our look and our open: use that one.
            if let Some(pr) = self.find_open_pr(head, base)? {
                return Ok(pr);
            }
        }
        if !reply.ok() {
            return Err(self.api_error(&what, Verb::Post, &path, &reply));
        }
        Ok(Self::convert(self.parse(&what, &reply.body)?))
    }

    fn get_pr(&self, number: u64) -> Result<PullRequest> {
        let what = format!("reading pull request #{number}");
        let text = self.call(
            Verb::Get,
            &what,
            &self.repo_path(&format!("/pulls/{number}")),
            None,
        )?;
        Ok(Self::convert(self.parse(&what, &text)?))
    }

    fn update_pr(&self, number: u64, title: &str, body: &str) -> Result<()> {
        self.call(
            Verb::Patch,
            &format!("updating pull request #{number}"),
            &self.repo_path(&format!("/pulls/{number}")),
            Some(&json!({ "title": title, "body": truncate_chars(body, MAX_BODY_CHARS) })),
        )?;
        Ok(())
    }

    fn set_draft(&self, number: u64, draft: bool, reason: Option<&str>) -> Result<DraftChange> {
        let pr = self.get_pr(number)?;
        if pr.draft == draft {
            return Ok(DraftChange::Unchanged);
        }
        let (mutation, field, verb) = if draft {
            (
                "convertPullRequestToDraft",
                "convertPullRequestToDraft",
                "draft",
            )
        } else {
            (
                "markPullRequestReadyForReview",
                "markPullRequestReadyForReview",
                "ready for review",
            )
        };
        let outcome = match &pr.node_id {
            Some(id) => self.graphql(
                &format!("GraphQL {mutation} on pull request #{number}"),
                &format!(
                    "mutation($id: ID!) {{ {field}(input: {{pullRequestId: $id}}) {{ pullRequest {{ isDraft }} }} }}"
                ),
                json!({ "id": id }),
            )?,
            None => Err("the pull request has no node id".to_string()),
        };
        match outcome {
            Ok(_) => {
                if let Some(r) = reason {
                    self.draft_note(
                        number,
                        &format!(
                            "{DRAFT_MARKER}\nstagegate marked this pull request as {verb}: {r}"
                        ),
                    )?;
                }
                Ok(DraftChange::Changed)
            }
            Err(why) => {
                let mut note = format!(
                    "{DRAFT_MARKER}\nstagegate would mark this pull request as {verb}, but GitHub refused: {why}"
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
        }
    }

    fn add_labels(&self, number: u64, labels: &[String]) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        self.call(
            Verb::Post,
            &format!("labelling pull request #{number}"),
            &self.repo_path(&format!("/issues/{number}/labels")),
            Some(&json!({ "labels": labels })),
        )?;
        Ok(())
    }

    fn reviews(&self, number: u64, head_sha: Option<&str>) -> Result<Approval> {
        let what = format!("reading the reviews of pull request #{number}");
        let reviews: Vec<Review> =
            self.list(&what, &self.repo_path(&format!("/pulls/{number}/reviews")))?;
        // Reviews come oldest first; a user's later approval, change request or dismissal
        // replaces the earlier one, a comment does not.
        let mut latest: std::collections::BTreeMap<String, ReviewState> = Default::default();
        for r in reviews {
            let (Some(user), Some(state)) = (r.user, r.state) else {
                continue;
            };
            if head_sha.is_some_and(|h| r.commit_id.as_deref() != Some(h)) {
                continue;
            }
            match state {
                ReviewState::Approved | ReviewState::ChangesRequested | ReviewState::Dismissed => {
                    latest.insert(user.login, state);
                }
                _ => {}
            }
        }
        let mut out = Approval::default();
        for (user, state) in latest {
            match state {
                ReviewState::Approved => out.approved_by.push(user),
                ReviewState::ChangesRequested => out.changes_requested_by.push(user),
                _ => {}
            }
        }
        Ok(out)
    }

    fn permission(&self, user: &str) -> Result<Permission> {
        let what = format!("reading the permission of {user}");
        let path = self.repo_path(&format!("/collaborators/{}/permission", encode(user)));
        let reply = self.send(Verb::Get, &what, &path, None)?;
        if reply.status == 404 {
            // Not a user (any more), or not one this repository knows.
            return Ok(Permission::None);
        }
        if !reply.ok() {
            return Err(self.api_error(&what, Verb::Get, &path, &reply));
        }
        #[derive(Deserialize)]
        struct Answer {
            permission: String,
        }
        let a: Answer = self.parse(&what, &reply.body)?;
        Ok(match a.permission.as_str() {
            "admin" => Permission::Admin,
            "write" | "maintain" => Permission::Write,
            "read" | "triage" | "pull" => Permission::Read,
            _ => Permission::None,
        })
    }

    fn team_members(&self, org: &str, slug: &str) -> Result<Option<Vec<String>>> {
        let what = format!("listing the members of team @{org}/{slug}");
        let path = format!("/orgs/{}/teams/{}/members", encode(org), encode(slug));
        #[derive(Deserialize)]
        struct Member {
            login: String,
        }
        match self.try_list::<Member>(&what, &path)? {
            Ok(m) => Ok(Some(m.into_iter().map(|m| m.login).collect())),
            // A workflow's own token cannot read an organization's teams: the caller says
            // so, rather than failing the promotion.
            Err((_, reply)) if matches!(reply.status, 403 | 404) => Ok(None),
            Err((page, reply)) => Err(self.api_error(&what, Verb::Get, &page, &reply)),
        }
    }

    fn requests_of_commit(&self, sha: &str) -> Result<Vec<PullRequest>> {
        let what = format!(
            "listing the pull requests of commit {}",
            crate::keys::short_commit(sha, crate::keys::COMMIT_DIGITS)
        );
        let prs: Vec<GhPullRequest> =
            self.list(&what, &self.repo_path(&format!("/commits/{sha}/pulls")))?;
        Ok(prs.into_iter().map(Self::convert).collect())
    }

    fn comment_once(&self, number: u64, marker: &str, body: &str) -> Result<bool> {
        #[derive(Deserialize)]
        struct Comment {
            body: Option<String>,
        }
        let comments: Vec<Comment> = self.list(
            &format!("listing comments of pull request #{number}"),
            &self.repo_path(&format!("/issues/{number}/comments")),
        )?;
        if comments
            .iter()
            .any(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
        {
            return Ok(false);
        }
        self.call(
            Verb::Post,
            &format!("commenting on pull request #{number}"),
            &self.repo_path(&format!("/issues/{number}/comments")),
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
        let path = self.repo_path(&format!("/git/refs/heads/{branch}"));
        let reply = self.send(Verb::Delete, &what, &path, None)?;
        match reply.status {
            204 | 200 => Ok(true),
            // "Reference does not exist"
            404 | 422 => Ok(false),
            _ => Err(self.api_error(&what, Verb::Delete, &path, &reply)),
        }
    }

    fn create_check_run(&self, run: &CheckRun) -> Result<CheckPosted> {
        let what = format!("creating check run {:?} on {}", run.name, run.head_sha);
        let path = self.repo_path("/check-runs");
        let output = |annotations: &[super::Annotation]| {
            let mut o = json!({
                "title": truncate_chars(&run.title, 1000),
                "summary": truncate_chars(&run.summary, MAX_BODY_CHARS),
                "annotations": annotations,
            });
            if let Some(t) = &run.text {
                o["text"] = json!(truncate_chars(t, MAX_BODY_CHARS));
            }
            o
        };
        let mut batches = run.annotations.chunks(ANNOTATIONS_PER_REQUEST);
        let mut request = json!({
            "name": run.name,
            "head_sha": run.head_sha,
            "output": output(batches.next().unwrap_or(&[])),
        });
        match run.conclusion {
            Some(c) => {
                request["status"] = json!("completed");
                request["conclusion"] = json!(c);
            }
            None => request["status"] = json!("in_progress"),
        }
        if let Some(u) = &run.details_url {
            request["details_url"] = json!(u);
        }
        if let Some(x) = &run.external_id {
            request["external_id"] = json!(x);
        }
        let reply = self.send(Verb::Post, &what, &path, Some(&request))?;
        if reply.status == 403 {
            // Check runs need a GitHub App token with `checks: write`; say it as a status.
            let state = run
                .conclusion
                .map_or(StatusState::Pending, |c| c.status_state());
            self.create_status(
                &run.head_sha,
                state,
                &run.name,
                &run.title,
                run.details_url.as_deref(),
            )?;
            return Ok(CheckPosted::Status);
        }
        if !reply.ok() {
            return Err(self.api_error(&what, Verb::Post, &path, &reply));
        }
        #[derive(Deserialize)]
        struct Created {
            id: u64,
            html_url: Option<String>,
        }
        let created: Created = self.parse(&what, &reply.body)?;
        // More than 50 annotations: GitHub takes the rest in further updates.
        for batch in batches {
            self.call(
                Verb::Patch,
                &format!("adding annotations to check run {}", created.id),
                &self.repo_path(&format!("/check-runs/{}", created.id)),
                Some(&json!({ "output": output(batch) })),
            )?;
        }
        Ok(CheckPosted::CheckRun {
            id: created.id,
            url: created.html_url,
        })
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
        let mut request = json!({
            "state": state.as_str(),
            "context": context,
            "description": truncate_chars(description, MAX_STATUS_DESCRIPTION),
        });
        if let Some(u) = url {
            request["target_url"] = json!(u);
        }
        self.call(
            Verb::Post,
            &format!("setting commit status {context:?} on {sha}"),
            &self.repo_path(&format!("/statuses/{sha}")),
            Some(&request),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_app_token_wins_over_the_workflow_token() {
        let cfg = GitHubConfig::from_lookup(
            None,
            env(&[
                ("GITHUB_TOKEN", "t1"),
                ("STAGEGATE_GITHUB_APP_TOKEN", "t2"),
                ("GITHUB_REPOSITORY", "o/r"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.token, "t2");
        assert_eq!(cfg.token_source, "STAGEGATE_GITHUB_APP_TOKEN");
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.graphql_endpoint(), "https://api.github.com/graphql");
    }

    #[test]
    fn a_missing_token_is_a_usage_error_naming_the_variable() {
        let e = GitHubConfig::from_lookup(Some("o/r"), env(&[])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("GITHUB_TOKEN"), "{e}");
    }

    #[test]
    fn enterprise_graphql_sits_beside_the_rest_api() {
        let cfg = GitHubConfig::from_lookup(
            Some("o/r"),
            env(&[
                ("GITHUB_TOKEN", "t"),
                ("GITHUB_API_URL", "https://ghe.example/api/v3/"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.graphql_endpoint(), "https://ghe.example/api/graphql");
    }

    #[test]
    fn a_client_for_github_com_builds_without_touching_the_network() {
        let cfg = GitHubConfig::from_lookup(
            None,
            env(&[("GITHUB_TOKEN", "t"), ("GITHUB_REPOSITORY", "octo/state")]),
        )
        .unwrap();
        let gh = GitHub::new(cfg).unwrap();
        assert_eq!(gh.describe(), "GitHub octo/state (https://api.github.com)");
        assert_eq!(gh.graphql_path, "/graphql");
    }

    #[test]
    fn repository_names_are_checked() {
        assert!(parse_repository("octo/state").is_ok());
        for bad in ["octo", "octo/", "/x", "a/b/c", "a/..", "a b/c", "a/b?x"] {
            assert!(parse_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        let waits: Vec<u128> = (1..=4).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }

    #[test]
    fn rate_limits_are_recognised_from_headers() {
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            rate_limit_wait(429, &h(&[("retry-after", "7")]), ""),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(
                403,
                &h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "0")]),
                ""
            ),
            Some(Duration::ZERO)
        );
        assert_eq!(
            rate_limit_wait(403, &h(&[]), "Resource not accessible"),
            None
        );
        assert_eq!(rate_limit_wait(500, &h(&[("retry-after", "7")]), ""), None);
    }

    #[test]
    fn encoding_keeps_branch_names_in_one_query_value() {
        assert_eq!(
            encode("o:stagegate/promote/a-to-b"),
            "o%3Astagegate%2Fpromote%2Fa-to-b"
        );
        assert_eq!(encode("a&b=c"), "a%26b%3Dc");
    }

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let link = r#"<https://api.github.com/repos/o/r/pulls/1/reviews?per_page=100&page=2>; rel="next", <https://api.github.com/repos/o/r/pulls/1/reviews?per_page=100&page=5>; rel="last""#;
        assert_eq!(
            next_link(link).as_deref(),
            Some("https://api.github.com/repos/o/r/pulls/1/reviews?per_page=100&page=2")
        );
        assert_eq!(
            next_link(r#"<https://x/a?page=1>; rel="prev", <https://x/a?page=1>; rel="first""#),
            None
        );
    }

    #[test]
    fn only_posts_are_never_retried() {
        assert!(!Verb::Post.idempotent());
        for v in [Verb::Get, Verb::Patch, Verb::Delete] {
            assert!(v.idempotent(), "{v:?}");
        }
    }

    #[test]
    fn error_text_carries_message_details_and_docs() {
        let t = error_text(
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}],"documentation_url":"https://docs.github.com/rest"}"#,
        );
        assert_eq!(
            t,
            "Validation Failed (head: invalid) [https://docs.github.com/rest]"
        );
        assert_eq!(error_text(""), "(no message)");
    }
}
