//! A fake GitLab on 127.0.0.1: answers the REST API v4 calls stagegate's GitLab forge makes,
//! with the response shapes GitLab documents (merge requests, approvals, diff versions,
//! notes, reviewers, users, members, commit statuses, branches), its pagination headers
//! (`Link`, `X-Page`, `X-Next-Page`, `X-Total-Pages`) and its error bodies
//! (`{"message": "404 Project Not Found"}`, OAuth's `insufficient_scope`).
//!
//! It is backed by a bare repository standing in for the project's git side: a merge
//! request's head follows its source branch there (each new head is a diff version, as
//! GitLab records one per push) and one whose head reached its target branch reads as
//! merged. It keeps time with a clock of its own, one second per event, so which came
//! first — a push or an approval — is what the test did first. Every request is recorded;
//! replies queued for a method and path are served first, in order.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{Value, json};

pub const TOKEN: &str = "glpat-fakeTokenForTests";
/// A token without the `api` scope (`read_api`): GitLab answers 403 to its writes.
pub const READ_TOKEN: &str = "glpat-readOnlyToken";
pub const PROJECT_ID: u64 = 4242;
pub const PROJECT: &str = "xen-project/state";

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path under `/api/v4`, without the query, as sent (still percent-encoded).
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    pub token: Option<String>,
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

    pub fn message(status: u16, message: &str) -> Reply {
        Reply::new(status, json!({ "message": message }))
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

struct Member {
    id: u64,
    level: Option<u64>,
}

#[derive(Default)]
struct State {
    origin: String,
    git: Option<std::path::PathBuf>,
    requests: Vec<Recorded>,
    scripted: Vec<(String, String, VecDeque<Reply>)>,
    mrs: Vec<Value>,
    next_iid: u64,
    /// Diff versions by iid, oldest first.
    versions: BTreeMap<u64, Vec<Value>>,
    /// Approvals by iid: (username, when).
    approvals: BTreeMap<u64, Vec<(String, String)>>,
    notes: BTreeMap<u64, Vec<Value>>,
    reviewers: BTreeMap<u64, Vec<(String, String)>>,
    statuses: Vec<Value>,
    /// Users by username: their id and their access level in the project (`None`: not a
    /// member).
    users: BTreeMap<String, Member>,
    /// Group members by group path: (username, access level).
    groups: BTreeMap<String, Vec<(String, u64)>>,
    /// The largest page served, whatever `per_page` asks (GitLab caps it at 100).
    page_size: usize,
    /// Whether list pages carry a `Link` header (GitLab leaves it out of some answers;
    /// `X-Next-Page` is always there).
    links: bool,
    /// Whether approvals carry `approved_at` (newer GitLab) or only the notes say when.
    approved_at: bool,
    /// Approvals the project's rules require (GitLab Premium's approval rules).
    approvals_required: u64,
    /// Seconds since 2026-12-07T10:00:00Z.
    clock: u64,
}

impl State {
    fn tick(&mut self) -> String {
        self.clock += 1;
        let (h, m, s) = (
            10 + self.clock / 3600,
            (self.clock / 60) % 60,
            self.clock % 60,
        );
        format!("2026-12-07T{h:02}:{m:02}:{s:02}.000Z")
    }

    fn user(&mut self, username: &str) -> Value {
        let next = self.users.len() as u64 + 100;
        let id = self
            .users
            .entry(username.to_string())
            .or_insert(Member {
                id: next,
                level: None,
            })
            .id;
        json!({
            "id": id,
            "username": username,
            "name": format!("{username} (test)"),
            "state": "active",
            "avatar_url": null,
            "web_url": format!("https://gitlab.example/{username}"),
        })
    }
}

pub struct FakeGitLab {
    /// The instance's URL (`http://127.0.0.1:PORT`); the API is under `/api/v4`.
    pub url: String,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGitLab {
    /// A fake backed by the bare repository `git`.
    pub fn start(git: Option<&std::path::Path>) -> FakeGitLab {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            origin: format!("http://127.0.0.1:{port}"),
            git: git.map(|g| g.to_path_buf()),
            next_iid: 7,
            page_size: 100,
            links: true,
            ..State::default()
        }));
        let (s, st) = (server.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let reply = handle(&st, &req, &body);
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
        FakeGitLab {
            url: format!("http://127.0.0.1:{port}"),
            server,
            state,
            thread: Some(thread),
        }
    }

    pub fn api(&self) -> String {
        format!("{}/api/v4", self.url)
    }

    /// Serve `replies` (in order) to the next requests `METHOD path` (path under
    /// `/api/v4`, without query, as sent), before the fake's own behaviour.
    pub fn script(&self, method: &str, path: &str, replies: Vec<Reply>) {
        self.state.lock().unwrap().scripted.push((
            method.to_string(),
            path.to_string(),
            replies.into(),
        ));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests `METHOD path` (path under `/api/v4`, without query, as sent).
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Make `username` a user with `level` (10 Guest … 50 Owner) in the project; `None`: a
    /// user who is not a member.
    pub fn set_member(&self, username: &str, level: Option<u64>) {
        let mut st = self.state.lock().unwrap();
        st.user(username);
        st.users.get_mut(username).unwrap().level = level;
    }

    /// Make `path` a group with these members (username, access level).
    pub fn set_group(&self, path: &str, members: &[(&str, u64)]) {
        let mut st = self.state.lock().unwrap();
        for (u, _) in members {
            st.user(u);
        }
        st.groups.insert(
            path.to_string(),
            members.iter().map(|(u, l)| (u.to_string(), *l)).collect(),
        );
    }

    /// Serve lists `n` to a page.
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().unwrap().page_size = n;
    }

    /// Leave the `Link` header out of list pages (only `X-Next-Page` says there is more).
    pub fn without_links(&self) {
        self.state.lock().unwrap().links = false;
    }

    /// Say `approved_at` in the approvals answer, as newer GitLab does.
    pub fn with_approved_at(&self) {
        self.state.lock().unwrap().approved_at = true;
    }

    /// Make the project's approval rules require `n` approvals.
    pub fn require_approvals(&self, n: u64) {
        self.state.lock().unwrap().approvals_required = n;
    }

    /// `username` approves merge request `iid` now (as with the Approve button): an
    /// approval and the system note "approved this merge request".
    pub fn approve(&self, iid: u64, username: &str) {
        let mut st = self.state.lock().unwrap();
        refresh(&mut st);
        let at = st.tick();
        st.approvals
            .entry(iid)
            .or_default()
            .retain(|(u, _)| u != username);
        st.approvals
            .entry(iid)
            .or_default()
            .push((username.to_string(), at.clone()));
        let author = st.user(username);
        system_note(&mut st, iid, author, "approved this merge request", &at);
    }

    /// `username` asks for changes (their reviewer state becomes `requested_changes`).
    pub fn request_changes(&self, iid: u64, username: &str) {
        let mut st = self.state.lock().unwrap();
        st.user(username);
        st.reviewers
            .entry(iid)
            .or_default()
            .push((username.to_string(), "requested_changes".to_string()));
    }

    /// A merge request as the fake holds it now.
    pub fn mr(&self, iid: u64) -> Value {
        let mut st = self.state.lock().unwrap();
        refresh(&mut st);
        st.mrs
            .iter()
            .find(|m| m["iid"] == iid)
            .cloned()
            .unwrap_or(Value::Null)
    }

    pub fn mrs(&self) -> Vec<Value> {
        self.state.lock().unwrap().mrs.clone()
    }

    pub fn notes(&self, iid: u64) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .notes
            .get(&iid)
            .cloned()
            .unwrap_or_default()
    }

    /// Every commit status set, in order.
    pub fn statuses(&self) -> Vec<Value> {
        self.state.lock().unwrap().statuses.clone()
    }
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn system_note(st: &mut State, iid: u64, author: Value, body: &str, at: &str) {
    let list = st.notes.entry(iid).or_default();
    let id = 900 + list.len() as u64;
    list.push(json!({
        "id": id,
        "type": null,
        "body": body,
        "attachment": null,
        "author": author,
        "created_at": at,
        "updated_at": at,
        "system": true,
        "noteable_id": iid * 10,
        "noteable_type": "MergeRequest",
        "noteable_iid": iid,
        "resolvable": false,
        "confidential": false,
        "internal": false,
    }));
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

/// Open merge requests follow their source branch (a new head is a new diff version); one
/// whose head is in its target branch reads as merged, as GitLab marks it on such a push.
fn refresh(st: &mut State) {
    let Some(git) = st.git.clone() else { return };
    let mut new_versions = Vec::new();
    let mut merged = Vec::new();
    for m in st.mrs.iter().filter(|m| m["state"] == "opened") {
        let iid = m["iid"].as_u64().unwrap();
        let sha = m["sha"].as_str().unwrap_or_default().to_string();
        let target = format!("refs/heads/{}", m["target_branch"].as_str().unwrap());
        if !sha.is_empty()
            && git_out(&git, &["merge-base", "--is-ancestor", &sha, &target]).is_some()
        {
            merged.push(iid);
            continue;
        }
        let source = format!("refs/heads/{}", m["source_branch"].as_str().unwrap());
        if let Some(now) = git_out(&git, &["rev-parse", "--verify", "--quiet", &source])
            && now != sha
        {
            new_versions.push((iid, now, target));
        }
    }
    for iid in merged {
        let at = st.tick();
        let m = st.mrs.iter_mut().find(|m| m["iid"] == iid).unwrap();
        m["state"] = json!("merged");
        m["merged_at"] = json!(at);
        m["merge_commit_sha"] = Value::Null;
    }
    for (iid, sha, target) in new_versions {
        let base = git_out(&git, &["rev-parse", &target]).unwrap_or_default();
        let at = st.tick();
        let m = st.mrs.iter_mut().find(|m| m["iid"] == iid).unwrap();
        m["sha"] = json!(sha);
        m["diff_refs"] = json!({"base_sha": base, "head_sha": sha, "start_sha": base});
        let list = st.versions.entry(iid).or_default();
        let id = 500 + list.len() as u64;
        list.push(json!({
            "id": id,
            "head_commit_sha": sha,
            "base_commit_sha": base,
            "start_commit_sha": base,
            "created_at": at,
            "merge_request_id": iid * 10,
            "state": "collected",
            "real_size": "1",
            "patch_id_sha": "d504412d5b6e6739647e752aff8e468dde093f2f",
        }));
    }
}

/// One page of a list as GitLab serves it: `X-Page`, `X-Per-Page`, `X-Total`,
/// `X-Total-Pages`, `X-Next-Page` (empty on the last), `X-Prev-Page`, and a `Link` header
/// with absolute URLs.
fn paged(st: &State, path: &str, query: &BTreeMap<String, String>, all: Vec<Value>) -> Reply {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20usize)
        .clamp(1, 100)
        .min(st.page_size);
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = all.len();
    let pages = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let mut reply = Reply::new(200, Value::Array(items))
        .header("x-page", &page.to_string())
        .header("x-per-page", &per_page.to_string())
        .header("x-total", &total.to_string())
        .header("x-total-pages", &pages.to_string())
        .header("x-next-page", &next)
        .header(
            "x-prev-page",
            &if page > 1 {
                (page - 1).to_string()
            } else {
                String::new()
            },
        );
    if st.links {
        let url = |n: usize| {
            let mut q: Vec<String> = query
                .iter()
                .filter(|(k, _)| *k != "page" && *k != "per_page")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            q.push(format!("page={n}"));
            q.push(format!("per_page={per_page}"));
            format!("<{}/api/v4{path}?{}>", st.origin, q.join("&"))
        };
        let mut links = Vec::new();
        if page < pages {
            links.push(format!("{}; rel=\"next\"", url(page + 1)));
        }
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"last\"", url(pages)));
        reply = reply.header("link", &links.join(", "));
    }
    reply
}

fn not_found(what: &str) -> Reply {
    Reply::message(404, &format!("404 {what} Not Found"))
}

fn handle(state: &Mutex<State>, req: &tiny_http::Request, body: &str) -> Reply {
    let method = req.method().as_str().to_string();
    let (full, query) = req.url().split_once('?').unwrap_or((req.url(), ""));
    let token = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("private-token"))
        .map(|h| h.value.as_str().to_string());
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let query = parse_query(query);
    let mut st = state.lock().unwrap();
    let Some(path) = full.strip_prefix("/api/v4") else {
        return Reply::message(404, "404 Not Found");
    };
    st.requests.push(Recorded {
        method: method.clone(),
        path: path.to_string(),
        query: query.clone(),
        body: parsed.clone(),
        token: token.clone(),
    });
    let read_only = token.as_deref() == Some(READ_TOKEN);
    if token.as_deref() != Some(TOKEN) && !read_only {
        return Reply::message(401, "401 Unauthorized");
    }
    if let Some((_, _, queue)) = st
        .scripted
        .iter_mut()
        .find(|(m, p, q)| *m == method && *p == path && !q.is_empty())
    {
        return queue.pop_front().unwrap();
    }
    if read_only && method != "GET" {
        return Reply::new(
            403,
            json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api",
            }),
        );
    }
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["users"]) => {
            let want = query.get("username").cloned().unwrap_or_default();
            let found = st.users.contains_key(&want);
            let list = if found { vec![st.user(&want)] } else { vec![] };
            Reply::new(200, Value::Array(list))
        }
        ("GET", ["groups", group, "members", "all"]) => {
            let Some(members) = st.groups.get(*group).cloned() else {
                return not_found("Group");
            };
            let all = members
                .iter()
                .map(|(u, level)| {
                    let mut v = st.user(u);
                    v["access_level"] = json!(level);
                    v["expires_at"] = Value::Null;
                    v
                })
                .collect();
            paged(&st, path, &query, all)
        }
        (_, ["projects", id, rest @ ..]) => {
            if *id != PROJECT_ID.to_string() && *id != PROJECT {
                return not_found("Project");
            }
            project(&mut st, &method, path, rest, &query, &parsed)
        }
        _ => Reply::message(404, "404 Not Found"),
    }
}

fn project(
    st: &mut State,
    method: &str,
    path: &str,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Reply {
    refresh(st);
    match (method, rest) {
        ("GET", ["repository", "commits", sha, "merge_requests"]) => {
            let list = st
                .mrs
                .iter()
                .filter(|m| {
                    ["sha", "merge_commit_sha", "squash_commit_sha"]
                        .iter()
                        .any(|k| m[*k] == *sha)
                })
                .cloned()
                .collect();
            paged(st, path, query, list)
        }
        ("GET", ["merge_requests"]) => {
            let list = st
                .mrs
                .iter()
                .filter(|m| {
                    query
                        .get("state")
                        .is_none_or(|s| s == "all" || m["state"] == s.as_str())
                })
                .filter(|m| {
                    query
                        .get("source_branch")
                        .is_none_or(|b| m["source_branch"] == b.as_str())
                })
                .filter(|m| {
                    query
                        .get("target_branch")
                        .is_none_or(|b| m["target_branch"] == b.as_str())
                })
                .cloned()
                .collect();
            paged(st, path, query, list)
        }
        ("POST", ["merge_requests"]) => {
            let (Some(source), Some(target), Some(title)) = (
                body["source_branch"].as_str(),
                body["target_branch"].as_str(),
                body["title"].as_str(),
            ) else {
                return Reply::message(400, "400 Bad request - source_branch is missing");
            };
            if let Some(m) = st.mrs.iter().find(|m| {
                m["state"] == "opened"
                    && m["source_branch"] == source
                    && m["target_branch"] == target
            }) {
                return Reply::new(
                    409,
                    json!({"message": [format!(
                        "Another open merge request already exists for this source branch: !{}",
                        m["iid"]
                    )]}),
                );
            }
            let Some(git) = st.git.clone() else {
                return Reply::message(500, "the fake needs a repository");
            };
            if git_out(
                &git,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/heads/{source}"),
                ],
            )
            .is_none()
            {
                return Reply::new(422, json!({"message": ["Source branch does not exist"]}));
            };
            let iid = st.next_iid;
            st.next_iid += 1;
            let at = st.tick();
            let author = st.user("stagegate-bot");
            let draft = {
                let t = title.to_ascii_lowercase();
                t.starts_with("draft:") || t.starts_with("[draft]") || t.starts_with("(draft)")
            };
            let mr = json!({
                "id": iid * 10,
                "iid": iid,
                "project_id": PROJECT_ID,
                "title": title,
                "description": body["description"].clone(),
                "state": "opened",
                "created_at": at,
                "updated_at": at,
                "merged_by": null,
                "merged_at": null,
                "closed_at": null,
                "target_branch": target,
                "source_branch": source,
                "author": author,
                "source_project_id": PROJECT_ID,
                "target_project_id": PROJECT_ID,
                "labels": [],
                "draft": draft,
                "work_in_progress": draft,
                "merge_when_pipeline_succeeds": false,
                "merge_status": "can_be_merged",
                "detailed_merge_status": "mergeable",
                "sha": "",
                "merge_commit_sha": null,
                "squash_commit_sha": null,
                "squash": false,
                "force_remove_source_branch": body["remove_source_branch"].as_bool().unwrap_or(false),
                "references": {"short": format!("!{iid}"), "relative": format!("!{iid}"), "full": format!("{PROJECT}!{iid}")},
                "web_url": format!("https://gitlab.example/{PROJECT}/-/merge_requests/{iid}"),
            });
            st.mrs.push(mr);
            refresh(st);
            let mr = st.mrs.iter().find(|m| m["iid"] == iid).cloned().unwrap();
            Reply::new(201, mr)
        }
        (_, ["merge_requests", iid, more @ ..]) => {
            let Ok(iid) = iid.parse::<u64>() else {
                return not_found("Merge Request");
            };
            if !st.mrs.iter().any(|m| m["iid"] == iid) {
                return not_found("Merge Request");
            }
            merge_request(st, method, path, iid, more, query, body)
        }
        ("GET", ["members", "all", user_id]) => {
            let id: u64 = user_id.parse().unwrap_or(0);
            let found = st
                .users
                .iter()
                .find(|(_, m)| m.id == id)
                .and_then(|(u, m)| m.level.map(|l| (u.clone(), l)));
            match found {
                Some((u, level)) => {
                    let mut v = st.user(&u);
                    v["access_level"] = json!(level);
                    v["expires_at"] = Value::Null;
                    v["membership_state"] = json!("active");
                    Reply::new(200, v)
                }
                None => not_found(""),
            }
        }
        ("DELETE", ["repository", "branches", branch]) => {
            let Some(git) = st.git.clone() else {
                return not_found("Branch");
            };
            let name = format!("refs/heads/{branch}");
            if git_out(&git, &["show-ref", "--verify", "--quiet", &name]).is_some()
                && git_out(&git, &["update-ref", "-d", &name]).is_some()
            {
                Reply::new(204, Value::Null)
            } else {
                not_found("Branch")
            }
        }
        ("POST", ["statuses", sha]) => {
            let name = body["name"].as_str().unwrap_or("default").to_string();
            let state = body["state"].as_str().unwrap_or("").to_string();
            if ![
                "pending", "running", "success", "failed", "canceled", "skipped",
            ]
            .contains(&state.as_str())
            {
                return Reply::message(400, "400 Bad request - state does not have a valid value");
            }
            let last = st
                .statuses
                .iter()
                .rev()
                .find(|s| s["sha"] == *sha && s["name"] == name.as_str());
            if state == "pending" && last.is_some_and(|s| s["status"] == "pending") {
                return Reply::message(
                    400,
                    "Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\".)",
                );
            }
            let at = st.tick();
            let author = st.user("stagegate-bot");
            let id = 7000 + st.statuses.len() as u64;
            let s = json!({
                "id": id,
                "sha": sha,
                "ref": body["ref"].clone(),
                "status": state,
                "name": name,
                "target_url": body["target_url"].clone(),
                "description": body["description"].clone(),
                "created_at": at,
                "started_at": null,
                "finished_at": null,
                "allow_failure": false,
                "coverage": null,
                "pipeline_id": 9001,
                "author": author,
            });
            st.statuses.push(s.clone());
            Reply::new(201, s)
        }
        _ => Reply::message(404, "404 Not Found"),
    }
}

fn merge_request(
    st: &mut State,
    method: &str,
    path: &str,
    iid: u64,
    more: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Reply {
    let idx = st.mrs.iter().position(|m| m["iid"] == iid).unwrap();
    match (method, more) {
        ("GET", []) => Reply::new(200, st.mrs[idx].clone()),
        ("PUT", []) => {
            let at = st.tick();
            let m = &mut st.mrs[idx];
            if let Some(t) = body["title"].as_str() {
                let lower = t.to_ascii_lowercase();
                let draft = lower.starts_with("draft:")
                    || lower.starts_with("[draft]")
                    || lower.starts_with("(draft)");
                m["title"] = json!(t);
                m["draft"] = json!(draft);
                m["work_in_progress"] = json!(draft);
            }
            if let Some(d) = body.get("description") {
                m["description"] = d.clone();
            }
            if let Some(l) = body["add_labels"].as_str() {
                let mut labels: Vec<Value> = m["labels"].as_array().cloned().unwrap_or_default();
                for l in l.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    if !labels.iter().any(|x| x == l) {
                        labels.push(json!(l));
                    }
                }
                m["labels"] = Value::Array(labels);
            }
            m["updated_at"] = json!(at);
            Reply::new(200, m.clone())
        }
        ("GET", ["approvals"]) => {
            let with_at = st.approved_at;
            let list = st.approvals.get(&iid).cloned().unwrap_or_default();
            let approved_by: Vec<Value> = list
                .iter()
                .map(|(u, at)| {
                    let mut a = json!({ "user": st.user(u) });
                    if with_at {
                        a["approved_at"] = json!(at);
                    }
                    a
                })
                .collect();
            let m = &st.mrs[idx];
            let required = st.approvals_required;
            let left = required.saturating_sub(approved_by.len() as u64);
            Reply::new(
                200,
                json!({
                    "id": m["id"],
                    "iid": iid,
                    "project_id": PROJECT_ID,
                    "title": m["title"],
                    "description": m["description"],
                    "state": m["state"],
                    "created_at": m["created_at"],
                    "updated_at": m["updated_at"],
                    "merge_status": "can_be_merged",
                    "approved": !approved_by.is_empty(),
                    "approvals_required": required,
                    "approvals_left": left,
                    "require_password_to_approve": false,
                    "approved_by": approved_by,
                    "suggested_approvers": [],
                    "approvers": [],
                    "approver_groups": [],
                    "user_has_approved": false,
                    "user_can_approve": false,
                    "approval_rules_left": [],
                    "has_approval_rules": false,
                    "merge_request_approvers_available": false,
                    "multiple_approval_rules_available": false,
                    "invalid_approvers_rules": [],
                }),
            )
        }
        ("GET", ["versions"]) => {
            // Newest first, as GitLab lists them.
            let mut list = st.versions.get(&iid).cloned().unwrap_or_default();
            list.reverse();
            paged(st, path, query, list)
        }
        ("GET", ["notes"]) => {
            let mut list = st.notes.get(&iid).cloned().unwrap_or_default();
            if query.get("sort").map(String::as_str) != Some("asc") {
                list.reverse();
            }
            paged(st, path, query, list)
        }
        ("POST", ["notes"]) => {
            let at = st.tick();
            let author = st.user("stagegate-bot");
            let list = st.notes.entry(iid).or_default();
            let note = json!({
                "id": 900 + list.len() as u64,
                "type": null,
                "body": body["body"].clone(),
                "author": author,
                "created_at": at,
                "updated_at": at,
                "system": false,
                "noteable_id": iid * 10,
                "noteable_type": "MergeRequest",
                "noteable_iid": iid,
                "resolvable": false,
                "confidential": false,
                "internal": false,
            });
            list.push(note.clone());
            Reply::new(201, note)
        }
        ("GET", ["reviewers"]) => {
            let list = st.reviewers.get(&iid).cloned().unwrap_or_default();
            let all = list
                .iter()
                .map(|(u, state)| json!({"user": st.user(u), "state": state, "created_at": "2026-12-07T10:00:00.000Z"}))
                .collect();
            paged(st, path, query, all)
        }
        _ => Reply::message(404, "404 Not Found"),
    }
}
