//! Promotion through pull requests — merge requests on GitLab — (gates with `review: true`,
//! or `--review`), check runs (commit statuses on GitLab) and the summary of a move for
//! people.
//!
//! The pull request comes from one branch per stage move, `stagegate/promote/<S>-to-<T>`,
//! holding the very promotion commit a direct promotion would put on T (the decision YAML
//! in its tree, trailers in its message). Re-running reuses that commit while it promotes
//! exactly what the gate decides now — same parents, same tree but for the new decision
//! record's time and runner — so reviews stay valid; anything else on the branch is
//! replaced. The one open pull request is updated (title, body, labels), never duplicated.
//!
//! The gate's check goes on the tested commit and on the pull request's head, where branch
//! protection looks. An approval counts when it is of that very head, by someone with
//! write access, and — where T has a CODEOWNERS file — covers every changed file's owners.
//! Then T is moved to the approved commit itself (a fast-forward push, leased on the T the
//! decision saw): the forge shows the pull request as merged, T gains one commit per
//! promotion, and the branch is deleted. A gate that turns red again makes the pull
//! request a draft, with the reason.

use gix::ObjectId;

use super::Decided;
use crate::error::{Error, Result};
use crate::forge::codeowners::Owner;
use crate::forge::summary::{
    BaselineRow, CandidateChange, DecisionKind, EnvItem, JobRow, Link, PromotionSummary,
};
use crate::forge::{CheckRun, Forge, promotion_branch};
use crate::gate::{JobState, State};
use crate::plan::{CandidateId, JobKind, MovePlan, Planner, short};
use crate::repo::Cas;
use crate::repo::remote::git;

/// What a forge-backed promotion needs.
#[derive(Clone)]
pub struct Review<'a> {
    pub forge: &'a dyn Forge,
    /// The remote the promotion branch and T are pushed to.
    pub remote: String,
    /// The first wait, doubled each time, for the forge to show a pushed promotion as a
    /// merged pull request (before its branch is deleted).
    pub merge_poll_ms: u64,
}

/// The people's view of a move: the candidates that move (or, when none does, every
/// candidate) with their jobs.
pub fn summary(planner: &Planner, plan: &MovePlan, decided: &Decided) -> Result<PromotionSummary> {
    let repo = planner.repo;
    let moved = decided.moved(plan);
    let shown: Vec<&crate::plan::Candidate> = plan
        .candidates
        .iter()
        .filter(|c| moved.is_empty() || moved.contains(&c.id))
        .collect();
    let (c_tree, t_tree) = (repo.tree_of(plan.from_head)?, repo.tree_of(plan.to_head)?);
    let text = |tree: ObjectId, path: &str| -> Result<Option<String>> {
        Ok(repo
            .read(tree, path)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let mut candidates = Vec::new();
    let mut jobs_seen: Vec<&crate::gate::JobVerdict> = Vec::new();
    let mut reasons = Vec::new();
    let mut decision = DecisionKind::Wait;
    for c in &shown {
        let path = c.id.path();
        let (kind, name) = match &c.id {
            CandidateId::Item(i) => (format!("{:?}", i.kind).to_lowercase(), i.name.clone()),
            CandidateId::Test(t) => ("test".to_string(), t.clone()),
            CandidateId::Pipeline => ("pipeline".to_string(), "stagegate.yaml".to_string()),
            CandidateId::Files => ("files".to_string(), c.paths.join(", ")),
        };
        candidates.push(CandidateChange {
            kind,
            name,
            path: path.clone(),
            old_version: c.from.clone(),
            new_version: c.to.clone(),
            old_manifest: text(t_tree, &path)?,
            new_manifest: text(c_tree, &path)?,
        });
        if let Some(g) = decided.evaluation.of(&c.id) {
            for j in &g.jobs {
                if !jobs_seen.iter().any(|x| x.key == j.key) {
                    jobs_seen.push(j);
                }
            }
            for r in g
                .reasons
                .iter()
                .filter(|r| r.kind != crate::gate::ReasonKind::Bisect)
            {
                let m = format!("{}: {}", c.id, r.message);
                if !reasons.contains(&m) {
                    reasons.push(m);
                }
            }
            decision = match (decision, g.state) {
                (_, State::Promote) if !moved.is_empty() => DecisionKind::Promote,
                (DecisionKind::Promote, _) => DecisionKind::Promote,
                (_, State::Rejected) => DecisionKind::Reject,
                (d, _) => d,
            };
        }
    }
    if !moved.is_empty() {
        decision = DecisionKind::Promote;
    }
    let jobs = jobs_seen
        .iter()
        .map(|j| {
            let job = &plan.jobs.get(&j.key);
            JobRow {
                key: j.key.clone(),
                name: j.label.clone(),
                manifest: job.map(|job| match job.kind {
                    JobKind::Test => format!("tests/{}.yaml", job.name),
                    JobKind::Build => job.candidates.first().map(|c| c.path()).unwrap_or_default(),
                }),
                environment: job
                    .map(|job| {
                        job.env
                            .iter()
                            .map(|x| EnvItem {
                                item: x.item.to_string(),
                                version: x.version.clone(),
                                candidate: x.candidate,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                verdict: j.verdict,
                log_url: j.log.clone(),
                baseline: j.baseline_key.clone().map(|key| BaselineRow {
                    key,
                    verdict: j.baseline,
                    log_url: None,
                }),
                details: j.excerpt.clone(),
                note: match j.state {
                    JobState::FailsLikeBaseline => {
                        Some("fails like its baseline: not a regression".into())
                    }
                    JobState::Regression => Some("a regression".into()),
                    _ => j.reason.clone(),
                },
            }
        })
        .collect();
    Ok(PromotionSummary {
        from: plan.from.name.clone(),
        to: plan.to.name.clone(),
        commit: plan.from_head.to_string(),
        subject: repo.commit(plan.from_head)?.subject().to_string(),
        target: Some(plan.to_head.to_string()),
        decision,
        reasons,
        bisects: bisects(&decided.evaluation),
        candidates,
        jobs,
        run_url: crate::ledger::identity().ci_url,
        links: crate::links::published_links(
            &plan.from.name,
            &plan.to.name,
            &shown.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|(title, url)| Link { title, url })
        .collect(),
    })
}

/// The first bad upstream commits bisects found for the move's rejected candidates: the
/// pull request names them even when the candidate stays behind.
fn bisects(e: &crate::gate::Evaluation) -> Vec<String> {
    e.groups
        .iter()
        .flat_map(|g| &g.reasons)
        .filter(|r| r.kind == crate::gate::ReasonKind::Bisect)
        .map(|r| format!("{}: {}", r.item.as_deref().unwrap_or("?"), r.message))
        .collect()
}

/// What reviewing did for the chosen commit.
pub struct Reviewed {
    /// T's new head when the promotion was merged.
    pub promoted: Option<ObjectId>,
    pub notes: Vec<String>,
}

/// The name of the gate's check, on the tested commit and on the pull request's head.
pub fn check_name(plan: &MovePlan) -> String {
    format!("stagegate {} -> {}", plan.from.name, plan.to.name)
}

/// Post the gate's check on the tested commit and, for a reviewed move with an open
/// promotion pull request, on that pull request's head too: GitHub evaluates the checks
/// branch protection requires on the head, which is the promotion commit, not the tested
/// one.
pub fn post_check(
    plan: &MovePlan,
    summary: &PromotionSummary,
    review: &Review,
    reviewed: bool,
) -> Result<()> {
    let run = summary.check_run(&check_name(plan))?;
    review.forge.create_check_run(&run)?;
    if reviewed {
        let branch = promotion_branch(&plan.from.name, &plan.to.name);
        if let Some(pr) = review.forge.find_open_pr(&branch, &plan.to.branch)?
            && pr.head_sha != run.head_sha
        {
            review.forge.create_check_run(&CheckRun {
                head_sha: pr.head_sha,
                ..run
            })?;
        }
    }
    Ok(())
}

/// The approving review a promotion through a pull request rests on
/// (`reviews/<T>/<promotion commit>.yaml` in the results ledger).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReviewRecord {
    pub pull_request: u64,
    pub url: String,
    /// The promotion commit the review approved (what T became).
    pub head: String,
    pub into: String,
    /// The forge logins whose approvals counted.
    pub approved_by: Vec<String>,
    pub merged_at: String,
    /// The forge, when not GitHub (`pull-request` is then a merge request's iid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<crate::forge::ForgeKind>,
}

/// Put the promotion up for review, or merge it when it is approved.
///
/// The promotion branch holds the promotion commit itself (what a direct promotion would
/// put on T); merging is pushing that very commit to T as a fast-forward, which GitHub
/// records as the pull request being merged. So a promotion is one commit on T, not the
/// promotion commit plus a merge of it, and what was approved is exactly what lands.
pub fn via_pull_request(
    planner: &Planner,
    plan: &MovePlan,
    summary: &PromotionSummary,
    review: &Review,
    promotion_commit: impl FnOnce() -> Result<ObjectId>,
) -> Result<Reviewed> {
    let repo = planner.repo;
    let git_dir = repo.git_dir();
    let branch = promotion_branch(&plan.from.name, &plan.to.name);
    let mut notes = Vec::new();

    // Reuse the published commit while it promotes exactly what we would promote now, so
    // reviews of it stay valid; anything else on the branch is replaced.
    let fresh = promotion_commit()?;
    let published = fetch_branch(repo, &review.remote, &branch)?;
    let (head, pushed) = match published {
        Some(p) if same_promotion(repo, plan, p, fresh)? => (p, false),
        other => {
            if let Some(p) = other {
                notes.push(format!(
                    "{branch} held {}, which does not promote what the gate decided now: replaced",
                    short(p)
                ));
            }
            // The branch belongs to stagegate: it is replaced whenever what it promotes changes.
            git(
                git_dir,
                &[
                    "push",
                    "--quiet",
                    "--force",
                    &review.remote,
                    &format!("{fresh}:refs/heads/{branch}"),
                ],
            )?;
            notes.push(format!("pushed {branch} ({})", short(fresh)));
            (fresh, true)
        }
    };
    let head_hex = head.to_string();
    let kind = review.forge.kind();
    let request = kind.request();
    let (pr, upsert) = review.forge.upsert_pr(
        &branch,
        &plan.to.branch,
        &summary.title(),
        &crate::forge::summary::render_request_body(summary, kind)?,
        false,
    )?;
    let number = kind.reference(pr.number);
    let what = match upsert {
        crate::forge::Upsert::Opened => "opened",
        crate::forge::Upsert::Updated => "updated",
        crate::forge::Upsert::Unchanged => "unchanged:",
    };
    notes.push(format!("{what} {request} {number} ({})", pr.url));
    review
        .forge
        .add_labels(pr.number, &["stagegate".to_string()])?;
    if pr.draft {
        review.forge.set_draft(pr.number, false, None)?;
        notes.push(format!("{request} {number} is ready for review again"));
    }
    // The check on a new head, before anything is merged: branch protection reads it
    // there. (An unchanged head got it from [`post_check`].)
    let run = summary.check_run(&check_name(plan))?;
    if (pushed || upsert == crate::forge::Upsert::Opened) && run.head_sha != head_hex {
        review.forge.create_check_run(&CheckRun {
            head_sha: head_hex.clone(),
            ..run
        })?;
    }
    let (approved, why) = approval(
        repo,
        review.forge,
        pr.number,
        head,
        plan.to_head,
        plan.trust.as_ref().map(|t| (t, plan.to.name.as_str())),
    )?;
    notes.extend(why);
    let Some(approvers) = approved else {
        notes.push(format!(
            "waiting for an approving review of {request} {number} at {} ({})",
            short(head),
            pr.url
        ));
        return Ok(Reviewed {
            promoted: None,
            notes,
        });
    };
    // Merge: T moves to the approved commit, only from the head the decision was made on.
    let lease = format!(
        "--force-with-lease=refs/heads/{}:{}",
        plan.to.branch, plan.to_head
    );
    if let Err(e) = git(
        git_dir,
        &[
            "push",
            "--quiet",
            &lease,
            &review.remote,
            &format!("{head}:refs/heads/{}", plan.to.branch),
        ],
    ) {
        notes.push(format!(
            "{request} {number} is approved, but {} on {} could not be moved to it ({e}); waiting",
            plan.to.branch, review.remote
        ));
        return Ok(Reviewed {
            promoted: None,
            notes,
        });
    }
    notes.push(format!(
        "merged {request} {number}: {} is {}",
        plan.to.branch,
        short(head)
    ));
    // The review the promotion rests on, beside the decision it approved: a forge's word,
    // recorded by the runner that read it.
    let record = ReviewRecord {
        pull_request: pr.number,
        url: pr.url.clone(),
        head: head.to_string(),
        into: plan.to.name.clone(),
        approved_by: approvers,
        merged_at: crate::records::now_rfc3339(),
        forge: (kind != crate::forge::ForgeKind::GitHub).then_some(kind),
    };
    crate::ledger::Ledger::new(repo, &planner.pipeline.results_ref).put_new(
        &[(
            format!("reviews/{}/{head}.yaml", plan.to.name),
            crate::records::to_yaml(&record),
        )],
        &format!(
            "Review: {request} {number} approved by {}\n",
            record.approved_by.join(", ")
        ),
    )?;
    let reflog = format!("stagegate: merge {request} {number}");
    if repo.cas(&plan.to.ref_name(), Some(plan.to_head), head, &reflog)? == Cas::Updated {
        crate::repo::remote::sync_worktree(repo, &plan.to.branch, plan.to_head, head);
    }
    notes.extend(delete_when_merged(review, pr.number, &branch)?);
    Ok(Reviewed {
        promoted: Some(head),
        notes,
    })
}

/// The remote's promotion branch, fetched (so its objects are here to inspect), or `None`.
fn fetch_branch(repo: &crate::repo::Repo, remote: &str, branch: &str) -> Result<Option<ObjectId>> {
    let Some(sha) = crate::repo::remote::ls_remote(repo.git_dir(), remote, branch)? else {
        return Ok(None);
    };
    let tracking = format!("refs/stagegate-remotes/{remote}/{branch}");
    git(
        repo.git_dir(),
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            remote,
            &format!("+refs/heads/{branch}:{tracking}"),
        ],
    )?;
    ObjectId::from_hex(sha.as_bytes())
        .map(Some)
        .map_err(|_| Error::infra(format!("{remote} answered a malformed id for {branch}")))
}

/// Once the forge has seen the push, the pull request reads as merged; then its branch goes.
/// GitHub and GitLab notice a pushed head within seconds, so this asks a few times before leaving
/// the branch for the next run.
fn delete_when_merged(review: &Review, number: u64, branch: &str) -> Result<Vec<String>> {
    let mut wait = std::time::Duration::from_millis(review.merge_poll_ms);
    for _ in 0..5 {
        if review.forge.get_pr(number)?.merged {
            return Ok(if review.forge.delete_branch(branch)? {
                vec![format!("deleted {branch}")]
            } else {
                Vec::new()
            });
        }
        std::thread::sleep(wait);
        wait *= 2;
    }
    let kind = review.forge.kind();
    Ok(vec![format!(
        "{} does not show {} {} as merged yet, so {branch} is kept; delete it once it does (the next promotion replaces it anyway)",
        kind.name(),
        kind.request(),
        kind.reference(number)
    )])
}

/// `published` promotes what `fresh` does: the same parents, the same tree but for the new
/// decision record (whose time, runner and run link differ), the same record otherwise and
/// the same message but for who decided. Anything else — a substituted manifest, an extra
/// file, an edited record — and the branch is not reused.
fn same_promotion(
    repo: &crate::repo::Repo,
    plan: &MovePlan,
    published: ObjectId,
    fresh: ObjectId,
) -> Result<bool> {
    let (p, f) = (repo.commit(published)?, repo.commit(fresh)?);
    if p.parents != f.parents || without_volatile(&p.message) != without_volatile(&f.message) {
        return Ok(false);
    }
    let changed = changed_paths(repo, repo.tree_of(published)?, repo.tree_of(fresh)?)?;
    let decisions = format!("{}/", crate::records::decisions_dir(&plan.to.name));
    let t_tree = repo.tree_of(plan.to_head)?;
    let mut records = (None, None);
    for c in &changed {
        let new_record = c.path.starts_with(&decisions) && repo.entry(t_tree, &c.path)?.is_none();
        match (new_record, c.old, c.new) {
            (true, Some(id), None) if records.0.is_none() => records.0 = Some(id),
            (true, None, Some(id)) if records.1.is_none() => records.1 = Some(id),
            _ => return Ok(false),
        }
    }
    Ok(match records {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let text = |id| -> Result<String> {
                Ok(without_volatile(&String::from_utf8_lossy(&repo.blob(id)?)))
            };
            text(a)? == text(b)?
        }
        _ => false,
    })
}

/// A decision record or message without what differs between two runs deciding the same.
fn without_volatile(text: &str) -> String {
    text.lines()
        .filter(|l| {
            ![
                "decided-at:",
                "decided-by:",
                "ci-url:",
                "ledger:",
                "Stagegate-Decided-By:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A path that differs between two trees.
struct Changed {
    path: String,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
}

/// The files that differ between `a` and `b` (subtrees with the same id are skipped).
fn changed_paths(repo: &crate::repo::Repo, a: ObjectId, b: ObjectId) -> Result<Vec<Changed>> {
    use gix::objs::tree::EntryKind;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), Some(a), Some(b))];
    while let Some((prefix, a, b)) = stack.pop() {
        if a == b {
            continue;
        }
        let list = |t: Option<ObjectId>| -> Result<Vec<crate::repo::Entry>> {
            t.map_or(Ok(Vec::new()), |t| repo.tree_entries(t))
        };
        let (la, lb) = (list(a)?, list(b)?);
        let mut names: Vec<&str> = la.iter().chain(&lb).map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let ea = la.iter().find(|e| e.name == name);
            let eb = lb.iter().find(|e| e.name == name);
            if ea.map(|e| (e.id, e.kind)) == eb.map(|e| (e.id, e.kind)) {
                continue;
            }
            let path = format!("{prefix}{name}");
            let tree = |e: Option<&crate::repo::Entry>| {
                e.filter(|e| e.kind == EntryKind::Tree).map(|e| e.id)
            };
            let file = |e: Option<&crate::repo::Entry>| {
                e.filter(|e| e.kind != EntryKind::Tree).map(|e| e.id)
            };
            if tree(ea).is_some() || tree(eb).is_some() {
                stack.push((format!("{path}/"), tree(ea), tree(eb)));
            }
            if file(ea).is_some() || file(eb).is_some() {
                out.push(Changed {
                    path,
                    old: file(ea),
                    new: file(eb),
                });
            }
        }
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    Ok(out)
}

/// Whether the reviews of pull request `number` approve `head` (a promotion onto `base`),
/// and notes on every review that does not count. An approval counts only from someone
/// with write access, and only of `head` itself; a change request from such a person
/// blocks. Where T has a CODEOWNERS file, every changed file with owners needs an approval
/// from one of its owners, as GitHub's "require review from Code Owners" does. Under
/// `trust:`, an approval counts only from a forge login a person entry names
/// (`github: LOGIN`, or `gitlab: USERNAME` on GitLab) who may `approve`.
fn approval(
    repo: &crate::repo::Repo,
    forge: &dyn Forge,
    number: u64,
    head: ObjectId,
    base: ObjectId,
    trust: Option<(&crate::manifest::Trust, &str)>,
) -> Result<(Option<Vec<String>>, Vec<String>)> {
    let mut notes = Vec::new();
    let kind = forge.kind();
    let reviews = forge.reviews(number, Some(&head.to_string()))?;
    notes.extend(reviews.ignored);
    let mut approvers = Vec::new();
    for user in reviews.approved_by {
        if let Some((t, to)) = trust {
            let entitled = t.people.iter().any(|p| {
                kind.login_of(p)
                    .is_some_and(|g| g.eq_ignore_ascii_case(&user))
                    && p.may.contains(&crate::manifest::RecordKind::Approve)
            });
            if !entitled {
                notes.push(format!(
                    "the approval by {user} does not count: no person in the trust: of {to} is {user} on {} with `approve` in `may` (add `{}: {user}` to their entry in stagegate.yaml)",
                    kind.name(),
                    kind.person_key()
                ));
                continue;
            }
        }
        let p = forge.permission(&user)?;
        if p.can_write() {
            approvers.push(user);
        } else {
            notes.push(format!(
                "the approval by {user} does not count: {}",
                forge.access_text(&user, p)
            ));
        }
    }
    let mut blockers = Vec::new();
    for user in reviews.changes_requested_by {
        if forge.permission(&user)?.can_write() {
            blockers.push(user);
        }
    }
    if !blockers.is_empty() {
        notes.push(format!("changes requested by {}", blockers.join(", ")));
        return Ok((None, notes));
    }
    if !reviews.wanting.is_empty() {
        notes.extend(reviews.wanting);
        return Ok((None, notes));
    }
    if approvers.is_empty() {
        return Ok((None, notes));
    }
    let base_tree = repo.tree_of(base)?;
    let mut file = None;
    for path in kind.codeowners_locations() {
        if let Some(bytes) = repo.read(base_tree, path)? {
            file = Some((path, String::from_utf8_lossy(&bytes).into_owned()));
            break;
        }
    }
    let Some((where_, text)) = file else {
        return Ok((Some(approvers), notes));
    };
    let owners = crate::forge::codeowners::CodeOwners::parse(&text);
    let mut teams: std::collections::BTreeMap<String, Option<Vec<String>>> = Default::default();
    let mut missing = Vec::new();
    for c in changed_paths(repo, base_tree, repo.tree_of(head)?)? {
        let wanted = owners.owners(&c.path);
        if wanted.is_empty() {
            continue;
        }
        let mut covered = false;
        for o in wanted {
            covered |= match o {
                Owner::User(u) => approvers.iter().any(|a| a.eq_ignore_ascii_case(u)),
                Owner::Team { org, slug } => {
                    let key = format!("{org}/{slug}");
                    if !teams.contains_key(&key) {
                        let members = forge.team_members(org, slug)?;
                        if members.is_none() {
                            notes.push(format!(
                                "the members of @{key} cannot be read with this token ({}); approvals as that team do not count",
                                match kind {
                                    crate::forge::ForgeKind::GitHub => "it needs the organization's members: read",
                                    crate::forge::ForgeKind::GitLab => "GitLab answered 403 or 404 for the group",
                                }
                            ));
                        }
                        teams.insert(key.clone(), members);
                    }
                    teams[&key].as_ref().is_some_and(|m| {
                        m.iter()
                            .any(|m| approvers.iter().any(|a| a.eq_ignore_ascii_case(m)))
                    })
                }
                Owner::Email(_) => false,
            };
        }
        if !covered {
            let names: Vec<String> = wanted.iter().map(ToString::to_string).collect();
            missing.push(format!("{} ({})", c.path, names.join(" ")));
        }
    }
    if missing.is_empty() {
        return Ok((Some(approvers), notes));
    }
    notes.push(format!(
        "{where_} asks for an approval from the code owners of {}",
        missing.join(", ")
    ));
    Ok((None, notes))
}

/// The gate is red for this move: an open promotion pull request becomes a draft, saying why.
pub fn redden(plan: &MovePlan, decided: &Decided, review: &Review) -> Result<Option<String>> {
    let branch = promotion_branch(&plan.from.name, &plan.to.name);
    let Some(pr) = review.forge.find_open_pr(&branch, &plan.to.branch)? else {
        return Ok(None);
    };
    if pr.draft {
        return Ok(None);
    }
    let reasons: Vec<&str> = decided
        .evaluation
        .groups
        .iter()
        .flat_map(|g| g.reasons.iter().map(|r| r.message.as_str()))
        .collect();
    let state = if decided
        .evaluation
        .groups
        .iter()
        .any(|g| g.state == State::Rejected)
    {
        "reject"
    } else {
        "wait"
    };
    let why = format!(
        "stagegate: the gate into {} is no longer green ({state}): {}",
        plan.to.name,
        reasons.join("; ")
    );
    review.forge.set_draft(pr.number, true, Some(&why))?;
    let kind = review.forge.kind();
    Ok(Some(format!(
        "{} {} turned into a draft: the gate is {state}",
        kind.request(),
        kind.reference(pr.number)
    )))
}
