//! A fake GitHub on 127.0.0.1: answers the REST (and the two GraphQL draft mutations) that
//! stagegate's forge layer uses, as GitHub documents them, with bodies made from the JSON
//! fixtures in `tests/fixtures/github/`.
//!
//! It keeps a little state (pull requests, comments, check runs, statuses, reviews) so a
//! test sees what a second call would see, records every request (method, path, query,
//! body, authorization) for assertions, and can be scripted: replies queued for a method
//! and path are served first, in order (a 502, then the real thing).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

pub const TOKEN: &str = "ghs_fakeTokenForTests";
pub const OWNER: &str = "octo-org";
pub const REPO: &str = "state";

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../fixtures/github/", $name))
    };
}

pub fn fixture(name: &str) -> Value {
    let text = match name {
        "pull-request" => fixture!("pull-request.json"),
        "review-list" => fixture!("review-list.json"),
        "check-run" => fixture!("check-run.json"),
        "commit-status" => fixture!("commit-status.json"),
        "merge-result" => fixture!("merge-result.json"),
        "issue-comment" => fixture!("issue-comment.json"),
        "label-list" => fixture!("label-list.json"),
        "error-bad-credentials" => fixture!("error-bad-credentials.json"),
        "error-not-found" => fixture!("error-not-found.json"),
        "error-validation-failed" => fixture!("error-validation-failed.json"),
        "error-resource-not-accessible" => fixture!("error-resource-not-accessible.json"),
        "error-rate-limit" => fixture!("error-rate-limit.json"),
        "error-head-modified" => fixture!("error-head-modified.json"),
        "error-not-mergeable" => fixture!("error-not-mergeable.json"),
        "error-server" => fixture!("error-server.json"),
        "graphql-forbidden" => fixture!("graphql-forbidden.json"),
        "collaborator-permission" => fixture!("collaborator-permission.json"),
        "team-members" => fixture!("team-members.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    pub authorization: Option<String>,
    /// The `X-GitHub-Api-Version` header.
    pub api_version: Option<String>,
}

/// A canned reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn fixture(status: u16, name: &str) -> Reply {
        Reply::new(status, fixture(name))
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

#[derive(Default)]
struct State {
    /// `http://127.0.0.1:PORT`, for the absolute URLs GitHub puts in `Link` headers.
    origin: String,
    /// The path prefix of the REST API (`/api/v3` for an Enterprise-style base).
    prefix: String,
    /// A bare repository standing in for the GitHub repository's git side: branch heads
    /// are read from it, and merging a pull request makes a real merge commit in it.
    git: Option<std::path::PathBuf>,
    requests: Vec<Recorded>,
    scripted: Vec<(String, String, VecDeque<Reply>)>,
    pulls: Vec<Value>,
    next_number: u64,
    branches: BTreeMap<String, String>,
    reviews: BTreeMap<u64, Vec<Value>>,
    comments: BTreeMap<u64, Vec<Value>>,
    check_runs: Vec<Value>,
    statuses: Vec<Value>,
    /// Collaborators' permissions by login (`admin`, `maintain`, `write`, `triage`, `read`);
    /// anyone else reads as `read`, as a public repository's visitors do.
    permissions: BTreeMap<String, String>,
    /// Team members by `org/slug`; a team not here answers 404, as GitHub does to a token
    /// that may not read the organization.
    teams: BTreeMap<String, Vec<String>>,
}

pub struct FakeGitHub {
    /// The API base URL to hand to stagegate.
    pub url: String,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGitHub {
    /// A fake at `http://127.0.0.1:PORT`.
    pub fn start() -> FakeGitHub {
        FakeGitHub::start_with_prefix("")
    }

    /// A fake whose REST API lives under `prefix` (e.g. `/api/v3`, as on GitHub Enterprise
    /// Server) and whose GraphQL endpoint is then `/api/graphql`.
    pub fn start_with_prefix(prefix: &str) -> FakeGitHub {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            origin: format!("http://127.0.0.1:{port}"),
            prefix: prefix.to_string(),
            next_number: 1347,
            ..State::default()
        }));
        let (s, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let reply = handle(&st, &req, &body);
                // 204 No Content has no body at all.
                let text = if reply.status == 204 {
                    String::new()
                } else {
                    reply.body.to_string()
                };
                let mut resp = tiny_http::Response::from_string(text)
                    .with_status_code(reply.status)
                    .with_header(
                        tiny_http::Header::from_bytes("content-type", "application/json").unwrap(),
                    );
                for (k, v) in &reply.headers {
                    resp.add_header(
                        tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        FakeGitHub {
            url: format!("http://127.0.0.1:{port}{prefix}"),
            server,
            state,
            thread: Some(thread),
        }
    }

    /// A fake backed by the bare repository `git`, as GitHub is by its repository: a pull
    /// request's head is its branch there, and merging one writes the merge commit there.
    pub fn start_with_git(git: &std::path::Path) -> FakeGitHub {
        let fake = FakeGitHub::start();
        fake.state.lock().unwrap().git = Some(git.to_path_buf());
        fake
    }

    /// Serve `replies` (in order) to the next requests `METHOD path` (path without query,
    /// relative to the API base), before the fake's own behaviour.
    pub fn script(&self, method: &str, path: &str, replies: Vec<Reply>) {
        self.state.lock().unwrap().scripted.push((
            method.to_string(),
            path.to_string(),
            replies.into(),
        ));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests `METHOD path` (path relative to the API base, without query).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| r.method == method && strip(&st.prefix, &r.path) == path)
            .cloned()
            .collect()
    }

    /// The commit a branch points at (what a new pull request's head is).
    pub fn set_branch(&self, branch: &str, sha: &str) {
        self.state
            .lock()
            .unwrap()
            .branches
            .insert(branch.to_string(), sha.to_string());
    }

    /// Give `login` a permission on the repository (`write`, `admin`, `read`, …).
    pub fn set_permission(&self, login: &str, permission: &str) {
        self.state
            .lock()
            .unwrap()
            .permissions
            .insert(login.to_string(), permission.to_string());
    }

    /// Make `org/slug` a team with these members.
    pub fn set_team(&self, team: &str, members: &[&str]) {
        self.state.lock().unwrap().teams.insert(
            team.to_string(),
            members.iter().map(|m| m.to_string()).collect(),
        );
    }

    /// Add a review (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, …) by `login` of `commit`.
    pub fn add_review(&self, number: u64, login: &str, state: &str, commit: &str) {
        let mut st = self.state.lock().unwrap();
        let list = st.reviews.entry(number).or_default();
        let mut r = fixture("review-list")[0].clone();
        r["id"] = json!(80 + list.len());
        r["user"]["login"] = json!(login);
        r["state"] = json!(state);
        r["commit_id"] = json!(commit);
        list.push(r);
    }

    /// A pull request as the fake holds it now.
    pub fn pull(&self, number: u64) -> Value {
        let st = self.state.lock().unwrap();
        st.pulls
            .iter()
            .find(|p| p["number"] == number)
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub fn pulls(&self) -> Vec<Value> {
        self.state.lock().unwrap().pulls.clone()
    }

    pub fn comments(&self, number: u64) -> Vec<Value> {
        let st = self.state.lock().unwrap();
        st.comments.get(&number).cloned().unwrap_or_default()
    }

    /// Press GitHub's "Squash and merge" on pull request `number` (a git-backed fake): its
    /// base branch gets one new commit with the head's tree and the title with ` (#N)`, and
    /// the pull request reads as merged by that commit. Returns the commit.
    pub fn squash_merge(&self, number: u64) -> String {
        let mut st = self.state.lock().unwrap();
        refresh_heads(&mut st);
        let git = st.git.clone().expect("a git-backed fake");
        let p = st
            .pulls
            .iter_mut()
            .find(|p| p["number"] == number)
            .expect("the pull request");
        let head = p["head"]["sha"].as_str().unwrap().to_string();
        let base = format!("refs/heads/{}", p["base"]["ref"].as_str().unwrap());
        let title = format!("{} (#{number})", p["title"].as_str().unwrap());
        let parent = git_out(&git, &["rev-parse", &base]).unwrap();
        let squashed = git_out(
            &git,
            &[
                "-c",
                "user.name=GitHub",
                "-c",
                "user.email=noreply@github.com",
                "commit-tree",
                &format!("{head}^{{tree}}"),
                "-p",
                &parent,
                "-m",
                &title,
            ],
        )
        .unwrap();
        git_out(&git, &["update-ref", &base, &squashed, &parent]).unwrap();
        p["state"] = json!("closed");
        p["merged"] = json!(true);
        p["merged_at"] = json!("2026-01-01T00:00:00Z");
        p["merge_commit_sha"] = json!(squashed);
        squashed
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn strip<'a>(prefix: &str, path: &'a str) -> &'a str {
    path.strip_prefix(prefix).unwrap_or(path)
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn handle(state: &Mutex<State>, req: &tiny_http::Request, body: &str) -> Reply {
    let method = req.method().as_str().to_string();
    let (path, query) = req.url().split_once('?').unwrap_or((req.url(), ""));
    let authorization = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("authorization"))
        .map(|h| h.value.as_str().to_string());
    let api_version = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("x-github-api-version"))
        .map(|h| h.value.as_str().to_string());
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut st = state.lock().unwrap();
    st.requests.push(Recorded {
        method: method.clone(),
        path: path.to_string(),
        query: parse_query(query),
        body: parsed.clone(),
        authorization: authorization.clone(),
        api_version,
    });
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return Reply::fixture(401, "error-bad-credentials");
    }
    let graphql_path = if st.prefix.is_empty() {
        "/graphql".to_string()
    } else {
        "/api/graphql".to_string()
    };
    let rel = if path == graphql_path {
        "/graphql".to_string()
    } else {
        match path.strip_prefix(st.prefix.as_str()) {
            Some(r) => r.to_string(),
            None => return Reply::fixture(404, "error-not-found"),
        }
    };
    if let Some((_, _, queue)) = st
        .scripted
        .iter_mut()
        .find(|(m, p, q)| *m == method && *p == rel && !q.is_empty())
    {
        return queue.pop_front().unwrap();
    }
    let query = parse_query(query);
    let repo = format!("/repos/{OWNER}/{REPO}");
    let Some(rest) = rel.strip_prefix(&repo) else {
        if rel == "/graphql" && method == "POST" {
            return graphql(&mut st, &parsed);
        }
        let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        if let ("GET", ["orgs", org, "teams", slug, "members"]) = (method.as_str(), segs.as_slice())
        {
            let Some(members) = st.teams.get(&format!("{org}/{slug}")).cloned() else {
                return Reply::fixture(404, "error-not-found");
            };
            let template = fixture("team-members")[0].clone();
            let all = members
                .iter()
                .map(|m| {
                    let mut u = template.clone();
                    u["login"] = json!(m);
                    u
                })
                .collect();
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            return paged(&st, path, all, page);
        }
        return Reply::fixture(404, "error-not-found");
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["commits", sha, "pulls"]) => {
            refresh_heads(&mut st);
            let list: Vec<Value> = st
                .pulls
                .iter()
                .filter(|p| p["merge_commit_sha"] == *sha || p["head"]["sha"] == *sha)
                .cloned()
                .collect();
            Reply::new(200, Value::Array(list))
        }
        ("GET", ["pulls"]) => {
            refresh_heads(&mut st);
            let want_head = query.get("head").cloned();
            let want_base = query.get("base").cloned();
            let state_filter = query.get("state").cloned().unwrap_or("open".into());
            let list: Vec<Value> = st
                .pulls
                .iter()
                .filter(|p| state_filter == "all" || p["state"] == state_filter.as_str())
                .filter(|p| {
                    want_head
                        .as_ref()
                        .is_none_or(|h| p["head"]["label"] == h.as_str())
                })
                .filter(|p| {
                    want_base
                        .as_ref()
                        .is_none_or(|b| p["base"]["ref"] == b.as_str())
                })
                .cloned()
                .collect();
            Reply::new(200, Value::Array(list))
        }
        ("POST", ["pulls"]) => {
            let (Some(head), Some(base)) = (parsed["head"].as_str(), parsed["base"].as_str())
            else {
                let mut e = fixture("error-validation-failed");
                e["errors"] =
                    json!([{"resource": "PullRequest", "field": "head", "code": "missing_field"}]);
                return Reply::new(422, e);
            };
            let label = format!("{OWNER}:{head}");
            if st.pulls.iter().any(|p| {
                p["state"] == "open"
                    && p["head"]["label"] == label.as_str()
                    && p["base"]["ref"] == base
            }) {
                let mut e = fixture("error-validation-failed");
                e["errors"][0]["message"] =
                    json!(format!("A pull request already exists for {label}."));
                return Reply::new(422, e);
            }
            let number = st.next_number;
            st.next_number += 1;
            let from_git = st.git.as_ref().and_then(|g| {
                git_out(
                    g,
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        &format!("refs/heads/{head}"),
                    ],
                )
            });
            let sha = from_git
                .or_else(|| st.branches.get(head).cloned())
                .unwrap_or("6dcb09b5b57875f334f61aebed695e2e4193db5e".into());
            let mut pr = fixture("pull-request");
            let api = format!("https://api.github.com/repos/{OWNER}/{REPO}/pulls/{number}");
            pr["number"] = json!(number);
            pr["id"] = json!(number * 10);
            pr["node_id"] = json!(format!("PR_node_{number}"));
            pr["url"] = json!(api);
            pr["html_url"] = json!(format!("https://github.com/{OWNER}/{REPO}/pull/{number}"));
            pr["title"] = parsed["title"].clone();
            pr["body"] = parsed["body"].clone();
            pr["draft"] = json!(parsed["draft"].as_bool().unwrap_or(false));
            pr["state"] = json!("open");
            pr["locked"] = json!(false);
            pr["labels"] = json!([]);
            pr["head"]["ref"] = json!(head);
            pr["head"]["label"] = json!(label);
            pr["head"]["sha"] = json!(sha);
            pr["base"]["ref"] = json!(base);
            pr["base"]["label"] = json!(format!("{OWNER}:{base}"));
            st.pulls.push(pr.clone());
            Reply::new(201, pr)
        }
        ("GET", ["pulls", n]) => match find_pull(&mut st, n) {
            Some(p) => Reply::new(200, p.clone()),
            None => Reply::fixture(404, "error-not-found"),
        },
        ("PATCH", ["pulls", n]) => match find_pull(&mut st, n) {
            Some(p) => {
                for k in ["title", "body", "state", "base"] {
                    if let Some(v) = parsed.get(k) {
                        if k == "base" {
                            p["base"]["ref"] = v.clone();
                        } else {
                            p[k] = v.clone();
                        }
                    }
                }
                Reply::new(200, p.clone())
            }
            None => Reply::fixture(404, "error-not-found"),
        },
        ("GET", ["collaborators", user, "permission"]) => {
            let permission = st
                .permissions
                .get(*user)
                .cloned()
                .unwrap_or_else(|| "read".to_string());
            let mut p = fixture("collaborator-permission");
            p["permission"] = json!(permission);
            p["role_name"] = json!(permission);
            p["user"]["login"] = json!(user);
            Reply::new(200, p)
        }
        ("DELETE", ["git", "refs", "heads", branch @ ..]) => {
            let branch = branch.join("/");
            let existed = match st.git.clone() {
                Some(git) => {
                    let name = format!("refs/heads/{branch}");
                    git_out(&git, &["show-ref", "--verify", "--quiet", &name]).is_some()
                        && git_out(&git, &["update-ref", "-d", &name]).is_some()
                }
                None => st.branches.remove(&branch).is_some(),
            };
            if existed {
                Reply::new(204, Value::Null)
            } else {
                let mut e = fixture("error-validation-failed");
                e["message"] = json!("Reference does not exist");
                Reply::new(422, e)
            }
        }
        ("GET", ["pulls", n, "reviews"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let all = st.reviews.get(&n).cloned().unwrap_or_default();
            paged(&st, path, all, page)
        }
        ("POST", ["issues", n, "labels"]) => {
            let mut labels = fixture("label-list");
            let names = parsed["labels"].as_array().cloned().unwrap_or_default();
            let template = labels[0].clone();
            labels = Value::Array(
                names
                    .iter()
                    .map(|name| {
                        let mut l = template.clone();
                        l["name"] = name.clone();
                        l
                    })
                    .collect(),
            );
            if let Some(p) = find_pull(&mut st, n) {
                p["labels"] = labels.clone();
            }
            Reply::new(200, labels)
        }
        ("GET", ["issues", n, "comments"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let all = st.comments.get(&n).cloned().unwrap_or_default();
            paged(&st, path, all, page)
        }
        ("POST", ["issues", n, "comments"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let mut c = fixture("issue-comment");
            let list = st.comments.entry(n).or_default();
            c["id"] = json!(list.len() + 1);
            c["body"] = parsed["body"].clone();
            list.push(c.clone());
            Reply::new(201, c)
        }
        ("POST", ["check-runs"]) => {
            let mut c = fixture("check-run");
            let id = st.check_runs.len() as u64 + 4;
            c["id"] = json!(id);
            for k in [
                "name",
                "head_sha",
                "status",
                "conclusion",
                "details_url",
                "external_id",
            ] {
                if let Some(v) = parsed.get(k) {
                    c[k] = v.clone();
                }
            }
            c["html_url"] = json!(format!("https://github.com/{OWNER}/{REPO}/runs/{id}"));
            c["output"]["title"] = parsed["output"]["title"].clone();
            c["output"]["summary"] = parsed["output"]["summary"].clone();
            c["output"]["annotations_count"] = json!(
                parsed["output"]["annotations"]
                    .as_array()
                    .map_or(0, Vec::len)
            );
            st.check_runs.push(c.clone());
            Reply::new(201, c)
        }
        ("PATCH", ["check-runs", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match st.check_runs.iter_mut().find(|c| c["id"] == id) {
                Some(c) => {
                    let added = parsed["output"]["annotations"]
                        .as_array()
                        .map_or(0, Vec::len);
                    let before = c["output"]["annotations_count"].as_u64().unwrap_or(0);
                    c["output"]["annotations_count"] = json!(before + added as u64);
                    Reply::new(200, c.clone())
                }
                None => Reply::fixture(404, "error-not-found"),
            }
        }
        ("POST", ["statuses", sha]) => {
            let mut s = fixture("commit-status");
            for k in ["state", "description", "target_url", "context"] {
                s[k] = parsed.get(k).cloned().unwrap_or(Value::Null);
            }
            s["url"] = json!(format!(
                "https://api.github.com/repos/{OWNER}/{REPO}/statuses/{sha}"
            ));
            st.statuses.push(s.clone());
            Reply::new(201, s)
        }
        _ => Reply::fixture(404, "error-not-found"),
    }
}

/// One page of 100 of a list, with GitHub's `Link` header pointing at the next and last
/// pages (absolute URLs, as GitHub gives them).
fn paged(st: &State, path: &str, all: Vec<Value>, page: usize) -> Reply {
    let pages = all.len().div_ceil(100).max(1);
    let items: Vec<Value> = all.into_iter().skip((page - 1) * 100).take(100).collect();
    let mut reply = Reply::new(200, Value::Array(items));
    if page < pages {
        let url = |n: usize| format!("<{}{path}?per_page=100&page={n}>", st.origin);
        reply = reply.header(
            "link",
            &format!(
                "{}; rel=\"next\", {}; rel=\"last\"",
                url(page + 1),
                url(pages)
            ),
        );
    }
    reply
}

/// `git -C dir ARGS`, trimmed stdout; `None` on failure.
fn git_out(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// With a git-backed fake, open pull requests follow their head branch, as on GitHub; one
/// whose head was pushed to its base branch reads as merged (GitHub does the same).
fn refresh_heads(st: &mut State) {
    let Some(git) = st.git.clone() else { return };
    for p in st.pulls.iter_mut().filter(|p| p["state"] == "open") {
        let sha = p["head"]["sha"].as_str().unwrap_or_default().to_string();
        let base = format!(
            "refs/heads/{}",
            p["base"]["ref"].as_str().unwrap_or_default()
        );
        if git_out(&git, &["merge-base", "--is-ancestor", &sha, &base]).is_some() {
            p["state"] = json!("closed");
            p["merged"] = json!(true);
            p["merged_at"] = json!("2026-01-01T00:00:00Z");
            p["merge_commit_sha"] = json!(sha);
            continue;
        }
        let head = p["head"]["ref"].as_str().unwrap_or_default().to_string();
        if let Some(sha) = git_out(
            &git,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{head}"),
            ],
        ) {
            p["head"]["sha"] = json!(sha);
        }
    }
}

fn find_pull<'a>(st: &'a mut State, n: &str) -> Option<&'a mut Value> {
    refresh_heads(st);
    let n: u64 = n.parse().ok()?;
    st.pulls.iter_mut().find(|p| p["number"] == n)
}

/// The two draft mutations, by node id.
fn graphql(st: &mut State, req: &Value) -> Reply {
    let query = req["query"].as_str().unwrap_or("");
    let id = req["variables"]["id"].as_str().unwrap_or("");
    let (field, draft) = if query.contains("convertPullRequestToDraft") {
        ("convertPullRequestToDraft", true)
    } else if query.contains("markPullRequestReadyForReview") {
        ("markPullRequestReadyForReview", false)
    } else {
        return Reply::new(
            200,
            json!({"errors": [{"message": "the fake GitHub knows only the draft mutations"}]}),
        );
    };
    match st.pulls.iter_mut().find(|p| p["node_id"] == id) {
        Some(p) => {
            p["draft"] = json!(draft);
            Reply::new(
                200,
                json!({"data": {field: {"pullRequest": {"isDraft": draft}}}}),
            )
        }
        None => Reply::new(
            200,
            json!({"data": {field: null}, "errors": [{"type": "NOT_FOUND", "path": [field],
                "message": format!("Could not resolve to a node with the global id of '{id}'")}]}),
        ),
    }
}
