//! Filling the model from git alone: stage heads, the gate's judgement of every candidate,
//! the audit trail and the newest results of the ledger.

use std::collections::{BTreeMap, BTreeSet};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use similar::TextDiff;

use super::model::*;
use crate::error::Result;
use crate::gate::{self, GroupEval, JobState};
use crate::ledger::{Ledger, LedgerView, ResultRecord, Verdict};
use crate::links::{candidate_page, slug};
use crate::manifest::ItemId;
use crate::plan::{Candidate, MovePlan, Planner};
use crate::repo::Repo;
use crate::trail;

/// How much the report reads.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many results, newest first, for the history pages.
    pub runs: usize,
    /// At most this many audit trail entries.
    pub trail: usize,
    /// Now, in seconds since the epoch: ages and soak are counted from it.
    pub now: i64,
}

/// How far back the audit trail is read on each stage: what moved *recently*.
const TRAIL_DEPTH: usize = 2_000;

/// How many ledger commits the history walk reads at most, whatever they hold.
const MAX_LEDGER_COMMITS: usize = 20_000;

/// Read everything the report shows.
pub fn collect(repo: &Repo, planner: &Planner, opts: &Options) -> Result<Report> {
    let view = Ledger::new(repo, &planner.pipeline.results_ref).view()?;
    let stages = stages(repo, planner, opts.now)?;
    let moves = moves(repo, planner, &view, opts.now)?;
    let recent = trail::collect_within(repo, planner, None, opts.trail, TRAIL_DEPTH)?;
    let records = newest_results(repo, view.tip, opts.runs)?;
    let runs_read = records.len();
    let runs: Vec<RunView> = records.into_iter().map(|r| run_view(r, false)).collect();
    let flights = flights(repo, &runs);
    let tests = tests(runs);
    let items = items(planner, &moves, &recent)?;
    let attestations = attestations(repo, planner, &view)?;
    Ok(Report {
        version: FORMAT_VERSION,
        generated_at: rfc3339(opts.now),
        generated_unix: opts.now,
        stages,
        moves,
        recent,
        flights,
        tests,
        items,
        attestations,
        runs_read,
        runs_limit: opts.runs,
        forge: forge(repo),
    })
}

/// Where the state repository's commits can be read on the web: the workflow's repository
/// (`GITHUB_SERVER_URL`/`GITHUB_REPOSITORY`) in GitHub Actions, else its `origin`.
fn forge(repo: &Repo) -> Option<String> {
    if let (Ok(server), Ok(name)) = (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
    ) && !server.is_empty()
        && !name.is_empty()
    {
        return crate::links::forge_page(&format!("{}/{name}", server.trim_end_matches('/')));
    }
    let remote = repo.git.find_remote("origin").ok()?;
    let url = remote.url(gix::remote::Direction::Fetch)?;
    crate::links::forge_page(&url.to_bstring().to_string())
}

fn stages(repo: &Repo, planner: &Planner, now: i64) -> Result<Vec<StageView>> {
    planner
        .pipeline
        .stages
        .iter()
        .map(|s| {
            let head = planner.stage_head(s)?;
            let c = repo.commit(head)?;
            Ok(StageView {
                name: s.name.clone(),
                branch: s.branch.clone(),
                head: head.to_string(),
                subject: c.subject().to_string(),
                committed_at: rfc3339(c.time),
                age_seconds: now - c.time,
            })
        })
        .collect()
}

/// The adapter onto the decision model: each candidate (an item, a test, the pipeline)
/// takes the state the gate gives its group, as `status` shows it; a candidate that passes
/// but does not move this time (its combination with others waits) waits, saying why.
fn moves(repo: &Repo, planner: &Planner, view: &LedgerView, now: i64) -> Result<Vec<MoveView>> {
    let mut out = Vec::new();
    for judgement in crate::judge::judge_all(planner, None, view, now)? {
        let plan = &judgement.plan;
        let subject = repo.commit(plan.from_head)?.subject().to_string();
        let judged = Judged {
            planner,
            repo,
            plan,
            view,
            holds: &judgement.facts.holds,
            subject: &subject,
        };
        let mut candidates = Vec::new();
        for c in &plan.candidates {
            let g = judgement.group(&c.id);
            let state = judgement.state(&c.id);
            let mut notes = Vec::new();
            if g.is_some_and(|g| g.state != state) {
                // Passes, but does not move this time: the combination says why.
                notes.extend(judgement.decided.notes.iter().cloned());
            }
            candidates.push(judged.candidate(c, state, g, notes)?);
        }
        out.push(MoveView {
            from: plan.from.name.clone(),
            to: plan.to.name.clone(),
            from_head: plan.from_head.to_string(),
            to_head: plan.to_head.to_string(),
            gate: plan.gate.clone(),
            candidates,
        });
    }
    Ok(out)
}

/// One move as the gate judged it.
struct Judged<'a> {
    planner: &'a Planner<'a>,
    repo: &'a Repo,
    plan: &'a MovePlan,
    view: &'a LedgerView<'a>,
    holds: &'a gate::Holds,
    subject: &'a str,
}

impl Judged<'_> {
    fn candidate(
        &self,
        c: &Candidate,
        state: gate::State,
        group: Option<&GroupEval>,
        notes: Vec<String>,
    ) -> Result<CandidateView> {
        let plan = self.plan;
        let mut reasons: Vec<ReasonView> = group
            .map(|g| {
                g.reasons
                    .iter()
                    .map(|r| ReasonView {
                        kind: r.kind.to_string(),
                        message: r.message.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        reasons.extend(notes.into_iter().map(|message| ReasonView {
            kind: "combination".into(),
            message,
        }));
        let state = match state {
            gate::State::Promote => State::Promote,
            gate::State::Wait => State::Wait,
            gate::State::Held => State::Held,
            gate::State::Rejected => State::Rejected,
            gate::State::Invalid => State::Invalid,
        };
        let jobs: Vec<JobView> = group
            .map(|g| g.jobs.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|j| {
                Ok(JobView {
                    key: j.key.clone(),
                    label: j.label.clone(),
                    kind: j.kind,
                    role: j.role,
                    state: j.state,
                    result: self.view.latest(&j.key)?.map(|r| run_view(r, true)),
                    baseline_key: j.baseline_key.clone(),
                    baseline: match &j.baseline_key {
                        Some(b) => self.view.latest(b)?.map(|r| run_view(r, true)),
                        None => None,
                    },
                    history: j.history.clone(),
                    baseline_history: j.baseline_history.clone(),
                })
            })
            .collect::<Result<_>>()?;
        let blocking = |r: &ReasonView| {
            !matches!(
                r.kind.as_str(),
                "fails-like-baseline" | "waived" | "quarantined"
            )
        };
        let reason = match state {
            State::Promote if jobs.is_empty() => {
                format!("no jobs are required by the gate into {}", plan.to.name)
            }
            State::Promote => {
                let ok = jobs
                    .iter()
                    .filter(|j| matches!(j.state, JobState::Passed | JobState::Flaky))
                    .count();
                format!("{ok} of {} jobs pass", jobs.len())
            }
            _ => reasons
                .iter()
                .find(|r| {
                    blocking(r)
                        && match state {
                            // Held by a hold on S, or by a freeze of T.
                            State::Held => matches!(r.kind.as_str(), "held" | "frozen"),
                            State::Rejected => matches!(
                                r.kind.as_str(),
                                "regression" | "build-failed" | "rejected" | "heisenbug"
                            ),
                            _ => true,
                        }
                })
                .map(|r| r.message.clone())
                .unwrap_or_default(),
        };
        let mut waivers = Vec::new();
        for j in &jobs {
            waivers.extend(crate::overrides::waiver(self.view, &j.key)?);
        }
        let name = c.id.to_string();
        let diff = self.manifest_diff(&c.id.path())?;
        let change = match (c.present, c.new, c.inputs_only) {
            (false, _, _) => "removed",
            (true, true, _) => "new",
            (true, false, true) => "inputs",
            _ => "changed",
        };
        let page = candidate_page(&plan.from.name, &plan.to.name, &name);
        let (upstream, upstream_more) = self.upstream(c);
        Ok(CandidateView {
            item: name,
            from_version: c.from.clone(),
            to_version: c.to.clone(),
            change,
            state,
            reason,
            reasons,
            commit: plan.from_head.to_string(),
            subject: self.subject.to_string(),
            jobs,
            holds: self.holds.get(&c.id).cloned().into_iter().collect(),
            waivers,
            diff,
            page,
            upstream,
            upstream_more,
        })
    }

    /// The upstream commits a component bump brings in: T's pinned commit to S's, on the
    /// upstream's first-parent line, newest first. Read from the upstream cache `bisect`
    /// keeps (fetched when missing); a history that cannot be read lists nothing.
    fn upstream(&self, c: &Candidate) -> (Vec<super::model::UpstreamCommit>, usize) {
        let read = || -> Result<(Vec<super::model::UpstreamCommit>, usize)> {
            let Some(id) = c.id.item() else {
                return Ok(Default::default());
            };
            let pinned = |head: ObjectId| -> Result<Option<crate::manifest::Source>> {
                Ok(self
                    .planner
                    .snapshot(head)?
                    .item(id)
                    .ok()
                    .flatten()
                    .and_then(|(_, i)| i.source.clone()))
            };
            let (Some(new), Some(old)) = (pinned(self.plan.from_head)?, pinned(self.plan.to_head)?)
            else {
                return Ok(Default::default());
            };
            let (Some(to), Some(from)) = (new.commit.as_deref(), old.commit.as_deref()) else {
                return Ok(Default::default());
            };
            if to == from {
                return Ok(Default::default());
            }
            // A component that lives in this repository (`git: .`) and whose commits are
            // here is read from here, not from wherever its remote is.
            let here = new.git == "."
                && [from, to].iter().all(|c| {
                    self.repo
                        .resolve(c)
                        .is_ok_and(|id| self.repo.commit(id).is_ok())
                });
            let url = if here {
                self.repo.root_dir().display().to_string()
            } else {
                crate::manifest::resolve_git(&new.git, self.repo.root_dir(), &self.repo.self_url())
            };
            let (up, ids) =
                crate::bisect::history::open(self.repo, &url, new.track.as_deref(), &[from, to])?;
            let (line, _) = up.first_parent_line(ids[0], ids[1])?;
            let more = line.len().saturating_sub(super::model::UPSTREAM_SHOWN);
            let mut out = Vec::new();
            for commit in line.iter().rev().take(super::model::UPSTREAM_SHOWN) {
                let (subject, author) = up.describe(*commit)?;
                out.push(super::model::UpstreamCommit {
                    commit: commit.to_string(),
                    subject,
                    author,
                });
            }
            Ok((out, more))
        };
        read().unwrap_or_default()
    }

    /// The manifest at `path` as a unified diff from T's head to S's.
    fn manifest_diff(&self, path: &str) -> Result<String> {
        let text = |commit: ObjectId| -> Result<String> {
            let tree = self.repo.tree_of(commit)?;
            Ok(self
                .repo
                .read(tree, path)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default())
        };
        let (old, new) = (text(self.plan.to_head)?, text(self.plan.from_head)?);
        if old == new {
            return Ok(String::new());
        }
        Ok(TextDiff::from_lines(&old, &new)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{}:{path}", self.plan.to.name),
                &format!("{}:{path}", self.plan.from.name),
            )
            .to_string())
    }
}

/// A result as the report shows it; `excerpt` only where a reviewer reads it (a
/// candidate's jobs), to keep history pages small.
fn run_view(r: ResultRecord, excerpt: bool) -> RunView {
    let log_url = r.log.as_deref().and_then(log_url);
    RunView {
        key: r.key,
        attempt: r.attempt,
        name: r.name,
        kind: r.kind,
        role: r.role,
        candidates: r.candidates,
        verdict: r.verdict,
        reason: r.reason,
        duration_ms: r.duration_ms,
        tries: r.tries,
        finished: r.finished,
        commit: r.commit,
        env: r.env,
        log: r.log,
        log_url,
        site_log: None,
        excerpt: if excerpt { r.excerpt } else { String::new() },
        runner: r.runner.host,
    }
}

/// A link a browser can open to a recorded log location: a web URL or a `file://` URL as
/// it is, a local path as a `file://` URL. A registry's blob (`oci://…`) needs a token and
/// `stagegate log-of KEY` to read, so it gets no link.
fn log_url(location: &str) -> Option<String> {
    if ["http://", "https://", "file://"]
        .iter()
        .any(|p| location.starts_with(p))
    {
        Some(location.to_string())
    } else if location.starts_with('/') {
        Some(format!("file://{location}"))
    } else {
        None
    }
}

/// The newest `limit` results of the ledger: walks its commits from the tip and reads
/// what each added (a tree diff against its first parent, identical subtrees skipped), so
/// the cost follows `limit`, not the ledger's size.
pub fn newest_results(
    repo: &Repo,
    tip: Option<ObjectId>,
    limit: usize,
) -> Result<Vec<ResultRecord>> {
    let mut out = Vec::new();
    let mut cur = tip;
    for _ in 0..MAX_LEDGER_COMMITS {
        let Some(id) = cur else { break };
        if out.len() >= limit {
            break;
        }
        let c = repo.commit(id)?;
        let parent = c.parents.first().copied();
        let old = parent.map(|p| repo.tree_of(p)).transpose()?;
        let mut added = Vec::new();
        added_records(repo, c.tree, old, "", 0, limit - out.len(), &mut added)?;
        // A commit's records are equally new; newest finish first within it.
        added.sort_by(|a: &ResultRecord, b| b.finished.cmp(&a.finished));
        out.extend(added);
        cur = parent;
    }
    out.sort_by(|a, b| b.finished.cmp(&a.finished));
    Ok(out)
}

/// Records in `new` that `old` lacks (ledger layout: `K[0:2]/K[2:4]/K/NNNN-NONCE-VERDICT.yaml`,
/// or `NNNN-NONCE.yaml` in ledgers written before the verdict was named).
fn added_records(
    repo: &Repo,
    new: ObjectId,
    old: Option<ObjectId>,
    prefix: &str,
    depth: usize,
    limit: usize,
    out: &mut Vec<ResultRecord>,
) -> Result<()> {
    if Some(new) == old {
        return Ok(());
    }
    let old: BTreeMap<String, ObjectId> = match old {
        Some(o) => repo
            .tree_entries(o)?
            .into_iter()
            .map(|e| (e.name, e.id))
            .collect(),
        None => BTreeMap::new(),
    };
    for e in repo.tree_entries(new)? {
        if out.len() >= limit {
            break;
        }
        let before = old.get(&e.name).copied();
        if before == Some(e.id) {
            continue;
        }
        let path = format!("{prefix}{}", e.name);
        let hex = e.name.bytes().all(|b| b.is_ascii_hexdigit());
        let layout = match depth {
            0 | 1 => hex && e.name.len() == 2,
            2 => hex && e.name.len() >= 8,
            _ => true,
        };
        if !layout {
            // Not a result: the ledger also holds decisions and other records.
            continue;
        }
        match (e.kind, depth) {
            (EntryKind::Tree, 0..=2) => added_records(
                repo,
                e.id,
                before,
                &format!("{path}/"),
                depth + 1,
                limit,
                out,
            )?,
            (EntryKind::Blob | EntryKind::BlobExecutable, 3) if e.name.ends_with(".yaml") => {
                out.push(crate::ledger::read_record(repo, &path, e.id)?);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The tested commits of `runs`, newest first; of two finished in the same second, the one
/// recorded later (`runs` is in ledger order, newest first, among equal times).
fn flights(repo: &Repo, runs: &[RunView]) -> Vec<Flight> {
    let mut by_commit: BTreeMap<&str, (usize, String, usize)> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        let f = by_commit
            .entry(&r.commit)
            .or_insert_with(|| (i, r.finished.clone(), 0));
        if r.finished > f.1 {
            f.1 = r.finished.clone();
        }
        f.2 += 1;
    }
    // The candidates each commit's results tested, with their versions.
    let mut tested: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in runs {
        let set = tested.entry(&r.commit).or_default();
        for e in r.env.iter().filter(|e| e.candidate) {
            set.insert(format!("{} {}", e.item, e.version));
        }
    }
    let mut order: Vec<(&str, (usize, String, usize))> = by_commit.into_iter().collect();
    order.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.1.0.cmp(&b.1.0)));
    order
        .into_iter()
        .map(|(commit, (_, finished, results))| Flight {
            tested: tested
                .get(commit)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            commit: commit.to_string(),
            // Results may name commits this repository does not have (another runner's).
            subject: ObjectId::from_hex(commit.as_bytes())
                .ok()
                .and_then(|id| repo.commit(id).ok())
                .map(|c| c.subject().to_string()),
            finished,
            results,
        })
        .collect()
}

/// The name a result is listed under: the test, or `build <item>`.
pub fn job_name(kind: &str, name: &str) -> String {
    if kind == "build" {
        format!("build {name}")
    } else {
        name.to_string()
    }
}

fn tests(runs: Vec<RunView>) -> Vec<TestHistory> {
    let mut by_name: BTreeMap<String, Vec<RunView>> = BTreeMap::new();
    for r in runs {
        by_name
            .entry(job_name(&r.kind, &r.name))
            .or_default()
            .push(r);
    }
    by_name
        .into_iter()
        .map(|(name, runs)| {
            let judged = runs.iter().filter(|r| r.verdict.is_final()).count();
            let passed = runs
                .iter()
                .filter(|r| matches!(r.verdict, Verdict::Pass | Verdict::Flaky))
                .count();
            let total_ms: u64 = runs.iter().map(|r| r.duration_ms).sum();
            TestHistory {
                kind: runs[0].kind.clone(),
                page: format!("tests/{}.html", slug(&name)),
                name,
                passed,
                judged,
                pass_rate: (judged > 0).then(|| passed as f64 / judged as f64),
                mean_duration_ms: (!runs.is_empty()).then(|| total_ms / runs.len() as u64),
                runs,
            }
        })
        .collect()
}

/// Items that are candidates or named by the recent trail, with their version on each
/// stage and the trail entries naming them.
fn items(
    planner: &Planner,
    moves: &[MoveView],
    recent: &[trail::Entry],
) -> Result<Vec<ItemHistory>> {
    let mut ids: BTreeSet<ItemId> = BTreeSet::new();
    for m in moves {
        ids.extend(m.candidates.iter().filter_map(|c| ItemId::parse(&c.item)));
    }
    for e in recent {
        ids.extend(
            e.items
                .iter()
                .filter_map(|i| ItemId::parse(split_item(i).0)),
        );
    }
    let snaps = planner
        .pipeline
        .stages
        .iter()
        .map(|s| Ok((s.name.clone(), planner.snapshot(planner.stage_head(s)?)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let name = id.to_string();
            let versions = snaps
                .iter()
                .map(|(stage, snap)| StageVersion {
                    stage: stage.clone(),
                    // An item whose manifest does not parse on a stage shows no version.
                    version: snap
                        .item(&id)
                        .ok()
                        .flatten()
                        .map(|(_, i)| i.version.clone()),
                })
                .collect();
            let events = recent
                .iter()
                .filter_map(|e| {
                    let (_, version) = e
                        .items
                        .iter()
                        .map(|i| split_item(i))
                        .find(|(i, _)| *i == name)?;
                    Some(ItemEvent {
                        when: e.when.clone(),
                        kind: e.kind.clone(),
                        stage: e.stage.clone(),
                        version: version.map(String::from),
                        commit: e.commit.clone(),
                        reason: e.reason.clone(),
                    })
                })
                .collect();
            ItemHistory {
                page: format!("items/{}.html", slug(&name)),
                item: name,
                versions,
                events,
            }
        })
        .collect())
}

/// `images/x 1.2` → (`images/x`, Some(`1.2`)).
fn split_item(text: &str) -> (&str, Option<&str>) {
    match text.split_once(' ') {
        Some((i, v)) => (i, Some(v)),
        None => (text, None),
    }
}

pub fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
    )
    .to_string()
}

/// The signed verification summaries of the artifacts each stage holds: one per build
/// record on the stage's head whose artifact has a summary for that stage in the ledger.
fn attestations(repo: &Repo, planner: &Planner, view: &LedgerView) -> Result<Vec<AttestationView>> {
    let mut out = Vec::new();
    for stage in &planner.pipeline.stages {
        // The stage's summaries, read once: a stage without any (most) costs one lookup,
        // not a parse of every build record it holds.
        let attested = view.files(&format!("attestations/{}", stage.name))?;
        if attested.is_empty() {
            continue;
        }
        let tree = repo.tree_of(planner.stage_head(stage)?)?;
        for kind in ["images", "components"] {
            let dir = format!("{}/built/{kind}", crate::records::RECORDS_DIR);
            for e in repo.list(tree, &dir)? {
                let path = format!("{dir}/{}", e.name);
                let Ok(built) =
                    crate::records::parse::<crate::records::BuiltRecord>(&path, &repo.blob(e.id)?)
                else {
                    continue;
                };
                let Some(hex) = built.digest.as_str().strip_prefix("sha256:") else {
                    continue;
                };
                let ledger = format!("attestations/{}/{hex}.json", stage.name);
                let Some(blob) = attested.get(&format!("{hex}.json")) else {
                    continue;
                };
                let bytes = view.blob(*blob)?;
                let Ok(env) = crate::dsse::Envelope::parse(&bytes) else {
                    continue;
                };
                let statement: serde_json::Value = env
                    .payload_bytes()
                    .ok()
                    .and_then(|p| serde_json::from_slice(&p).ok())
                    .unwrap_or_default();
                out.push(AttestationView {
                    stage: stage.name.clone(),
                    item: built.item.clone(),
                    version: built.version.clone(),
                    digest: built.digest.clone(),
                    promotion: statement["predicate"]["stagegate"]["promotion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    keyid: env
                        .signatures
                        .first()
                        .map(|s| s.keyid.clone())
                        .unwrap_or_default(),
                    ledger: format!("{}:{ledger}", planner.pipeline.results_ref),
                    location: built.location.clone(),
                    check: format!(
                        "stagegate verify --artifact {} --stage {}",
                        built.digest, stage.name
                    ),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_links_are_what_a_browser_can_open() {
        assert_eq!(
            log_url("/var/log/x.log").as_deref(),
            Some("file:///var/log/x.log")
        );
        assert_eq!(log_url("file:///s/log").as_deref(), Some("file:///s/log"));
        assert_eq!(log_url("https://h/l").as_deref(), Some("https://h/l"));
        assert_eq!(log_url("oci://ghcr.io/o/r@sha256:ab"), None);
    }
}
