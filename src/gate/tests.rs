//! The gate as a table: rows of (results, baselines, facts, time) → decision, each naming
//! the state of the group, the kind and item of every reason it gives, in order. The plan
//! is built in memory: one image candidate `images/host` tested by `boot` (with a baseline
//! on T), built when a row adds its build, and more candidates when a row needs them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::ledger::{Exit, Runner};
use crate::manifest::{Diagnostic, FlakyPolicy, Gate, ItemKind, Stage};
use crate::plan::{Blocked, BlockedKind, Candidate, Group, Job};

use JobState as J;
use ReasonKind as K;
use Verdict::{Error as E, Fail as F, Flaky as FL, Pass as P};

const HOST: &str = "images/host";
const OTHER: &str = "components/xen";
const BROKEN: &str = "images/broken";
const PIPELINE: &str = "stagegate.yaml";
/// The candidate test job: `boot` with images/host from S, everything else from T.
const BOOT: &str = "1111111111111111candidate";
/// Its baseline: `boot` with everything from T.
const BOOT_T: &str = "2222222222222222baseline";
/// The build of images/host.
const BUILD: &str = "3333333333333333build";
const NOW: i64 = 1_700_000_000;

fn id(text: &str) -> CandidateId {
    CandidateId::parse(text).expect("test candidate ids parse")
}

fn content(text: &str) -> ContentKey {
    ContentKey::from(format!("content-of-{text}"))
}

fn job(key: &str, kind: JobKind, name: &str, role: Role, baseline: Option<&str>) -> Job {
    let candidates = match role {
        Role::Baseline => Vec::new(),
        _ => vec![ItemId::new(ItemKind::Image, "host")],
    };
    Job {
        key: key.into(),
        kind,
        name: name.into(),
        role,
        candidates,
        commit: gix::ObjectId::null(gix::hash::Kind::Sha1),
        run: "true".into(),
        timeout: Duration::from_secs(60),
        retries: 0,
        env: Vec::new(),
        artifact: None,
        lock: None,
        cache: None,
        cache_from: None,
        after: Vec::new(),
        baseline: baseline.map(JobKey::from),
        needs: Vec::new(),
    }
}

fn candidate(text: &str) -> Candidate {
    Candidate {
        id: id(text),
        from: Some("1".into()),
        to: Some("2".into()),
        present: true,
        new: false,
        inputs_only: false,
        content: content(text),
        paths: Vec::new(),
        invalid: Vec::new(),
    }
}

/// One attempt of `key`, as the ledger would hold it.
fn result(key: &str, verdict: Verdict, attempt: u32) -> ResultRecord {
    ResultRecord {
        key: key.into(),
        kind: "test".into(),
        name: "boot".into(),
        role: "candidate".into(),
        candidates: Vec::new(),
        verdict,
        reason: (verdict == F).then(|| "exit 1".into()),
        exit: Exit {
            code: Some(1),
            signal: None,
        },
        tries: 1,
        started: format!("2024-01-01T00:00:{attempt:02}Z"),
        finished: format!("2024-01-01T00:00:{attempt:02}Z"),
        duration_ms: 1,
        runner: Runner {
            host: "ci".into(),
            user: "ci".into(),
            pid: 1,
            ci_url: None,
            labels: Vec::new(),
        },
        commit: "0".repeat(40),
        env: Vec::new(),
        artifact: None,
        log: None,
        excerpt: String::new(),
        attempt,
    }
}

/// What a row starts from and changes: the plan, the recorded results, the facts, the time.
struct World {
    plan: MovePlan,
    latest: BTreeMap<JobKey, Recorded>,
    facts: Facts,
    now: i64,
}

impl World {
    /// images/host pending from new into staging, judged by `boot` against its baseline.
    fn new() -> World {
        let mut jobs = BTreeMap::new();
        for j in [
            job(BOOT, JobKind::Test, "boot", Role::Candidate, Some(BOOT_T)),
            job(BOOT_T, JobKind::Test, "boot", Role::Baseline, None),
        ] {
            jobs.insert(j.key.clone(), j);
        }
        let stage = |name: &str| Stage {
            name: name.into(),
            branch: name.into(),
        };
        World {
            plan: MovePlan {
                from: stage("new"),
                to: stage("staging"),
                gate: Gate {
                    baseline: true,
                    ..Gate::default()
                },
                from_head: gix::ObjectId::null(gix::hash::Kind::Sha1),
                to_head: gix::ObjectId::null(gix::hash::Kind::Sha1),
                candidates: vec![candidate(HOST)],
                groups: vec![Group {
                    members: vec![id(HOST)],
                    required: vec![BOOT.into()],
                    blocked: Vec::new(),
                }],
                jobs,
                trust: None,
            },
            latest: BTreeMap::new(),
            facts: Facts::default(),
            now: NOW,
        }
    }

    /// Attempts of `key`, oldest first: the last is its newest result.
    fn ran(mut self, key: &str, verdicts: &[Verdict]) -> World {
        let records: Vec<ResultRecord> = (1..)
            .zip(verdicts)
            .map(|(n, v)| result(key, *v, n))
            .collect();
        if let Some(latest) = records.last() {
            let errors = records
                .iter()
                .rev()
                .take_while(|r| r.verdict == E)
                .map(|r| r.attempt)
                .collect();
            self.latest.insert(
                key.into(),
                Recorded {
                    latest: latest.clone(),
                    history: History::of(&records),
                    errors,
                },
            );
        }
        self
    }

    /// The gate does not compare with baselines.
    fn no_baseline(mut self) -> World {
        self.plan.gate.baseline = false;
        self
    }

    fn flaky(mut self, policy: FlakyPolicy) -> World {
        self.plan.gate.flaky = policy;
        self
    }

    /// images/host also has a build, which the gate requires first.
    fn built(mut self) -> World {
        let b = job(BUILD, JobKind::Build, HOST, Role::Build, None);
        self.plan.jobs.insert(BUILD.into(), b);
        self.plan.groups[0].required.insert(0, BUILD.into());
        self
    }

    fn blocked(mut self, kind: BlockedKind, candidate: Option<&str>) -> World {
        self.plan.groups[0].blocked.push(Blocked {
            kind,
            candidate: candidate.map(id),
            message: format!("blocked: {kind}"),
        });
        self
    }

    /// Another candidate, in a group of its own that requires no jobs.
    fn alone(mut self, text: &str) -> World {
        self.plan.candidates.push(candidate(text));
        self.plan.groups.push(Group {
            members: vec![id(text)],
            required: Vec::new(),
            blocked: Vec::new(),
        });
        self
    }

    /// A candidate whose manifest does not parse: in no group.
    fn invalid(mut self, text: &str) -> World {
        let mut c = candidate(text);
        c.invalid.push(Diagnostic {
            file: format!("{text}.yaml"),
            line: 3,
            column: 7,
            message: "unknown field `bild`".into(),
            help: Some("did you mean `build`?".into()),
        });
        self.plan.candidates.push(c);
        self
    }

    fn soak(mut self, secs: u64) -> World {
        self.plan.gate.soak = Some(Duration::from_secs(secs));
        self
    }

    /// `text` was first seen pending `ago` seconds before now.
    fn seen(mut self, text: &str, ago: i64) -> World {
        self.facts.seen.insert(content(text), self.now - ago);
        self
    }

    fn held(mut self, text: &str) -> World {
        self.facts.holds.insert(
            id(text),
            HoldRecord {
                item: text.into(),
                stage: "new".into(),
                reason: "waiting for the vendor".into(),
                by: "ann@example.com".into(),
                at: "2024-01-01T00:00:00Z".into(),
            },
        );
        self
    }

    fn waived(mut self, key: &str) -> World {
        self.facts.waived.insert(
            key.into(),
            WaiveRecord {
                id: "waive0000001".into(),
                key: key.into(),
                job: Some("test boot".into()),
                stage: None,
                reason: "known bug 12".into(),
                author: "ann@example.com".into(),
                created: "2024-01-01T00:00:00Z".into(),
                expires: None,
            },
        );
        self
    }

    fn quarantined(mut self, test: &str) -> World {
        self.facts.quarantined.insert(
            test.into(),
            QuarantineRecord {
                id: "quar00000001".into(),
                test: test.into(),
                stage: None,
                reason: "flaky on arm".into(),
                author: "bob@example.com".into(),
                created: "2024-01-01T00:00:00Z".into(),
                expires: None,
            },
        );
        self
    }

    fn approved(mut self, text: &str) -> World {
        self.facts.approved.insert(
            content(text),
            ApproveRecord {
                id: "appr00000001".into(),
                candidate: text.into(),
                content: content(text),
                stage: "staging".into(),
                reason: "reviewed".into(),
                author: "cat@example.com".into(),
                created: "2024-01-01T00:00:00Z".into(),
                expires: None,
            },
        );
        self
    }

    fn frozen(mut self) -> World {
        self.facts.frozen.push(FreezeRecord {
            id: "frz000000001".into(),
            stage: "staging".into(),
            reason: "release week".into(),
            author: "dan@example.com".into(),
            created: "2024-01-01T00:00:00Z".into(),
            expires: Some("2024-01-08T00:00:00Z".into()),
        });
        self
    }

    /// A rejection recorded for `text`'s content, resting on the failures of `failed`
    /// (each key with the test it ran).
    fn rejected(mut self, text: &str, failed: &[(&str, &str)]) -> World {
        self.facts.rejected.insert(
            content(text),
            Rejection {
                failed: failed.iter().map(|(k, _)| JobKey::from(*k)).collect(),
                reasons: vec!["test boot fails".into()],
                tests: failed
                    .iter()
                    .map(|(k, t)| (JobKey::from(*k), t.to_string()))
                    .collect(),
                by: Default::default(),
                judged: vec![(text.to_string(), Some(content(text)))],
                record: String::new(),
            },
        );
        self
    }

    /// The rejection of `text` was judged with `other` in its group, at `other`'s content then.
    fn rejected_with(mut self, text: &str, other: &str, other_content: &str) -> World {
        if let Some(r) = self.facts.rejected.get_mut(&content(text)) {
            r.judged
                .push((other.to_string(), Some(ContentKey::from(other_content))));
        }
        self
    }

    /// `other` joins images/host's group (a candidate of the move too).
    fn grouped_with(mut self, other: &str) -> World {
        self.plan.candidates.push(candidate(other));
        self.plan.groups[0].members.push(id(other));
        self
    }

    /// The gate allows `retries` retries of an errored job, the first after `backoff` secs.
    fn errors(mut self, retries: u32, backoff: u64) -> World {
        self.plan.gate.errors = crate::manifest::ErrorPolicy {
            retries,
            backoff: Duration::from_secs(backoff),
        };
        self
    }

    /// Someone rechecked `key` when its newest attempt was `attempt`.
    fn rechecked(mut self, key: &str, attempt: u32) -> World {
        self.facts.rechecked.insert(
            key.into(),
            Rechecked {
                attempt,
                by: OverrideRef {
                    id: "rchk00000001".into(),
                    kind: "recheck".into(),
                    scope: "images/host".into(),
                    by: "eve@example.com".into(),
                    reason: "kvm fixed".into(),
                    created: "2024-01-01T00:00:00Z".into(),
                    expires: None,
                },
            },
        );
        self
    }

    /// `boot` (candidate and baseline) needs `kvm`; `runners` are the heartbeats seen, each
    /// (host, labels, seconds before now).
    fn needs_kvm(mut self, runners: &[(&str, &[&str], i64)]) -> World {
        for j in self.plan.jobs.values_mut() {
            j.needs = vec!["kvm".into()];
        }
        self.facts.runners = runners
            .iter()
            .map(|(host, labels, ago)| {
                crate::runners::Heartbeat::new(
                    host,
                    labels.iter().map(|l| l.to_string()).collect(),
                    Default::default(),
                    self.now - ago,
                )
            })
            .collect();
        self
    }

    fn bisected(mut self, text: &str) -> World {
        self.facts
            .bisected
            .insert(content(text), "first bad commit: abc123 (upstream)".into());
        self
    }

    fn evaluate(&self) -> Evaluation {
        evaluate_recorded(&self.plan, &self.latest, &self.facts, self.now)
    }
}

/// One row: what is given, and what the gate must say of the group of `of`.
struct Row {
    name: &'static str,
    given: fn(World) -> World,
    of: &'static str,
    state: State,
    /// Every reason, in order: its kind and the item it names.
    reasons: &'static [(ReasonKind, &'static str)],
    /// The state of the group's `boot` job, when the row is about it.
    boot: Option<JobState>,
    /// Words one of the reasons says (the exact text is the integration tests' business).
    says: &'static str,
    /// The kinds of the overrides the decision names.
    overrides: &'static [&'static str],
    sticky: bool,
    soak_left: u64,
}

const ROW: Row = Row {
    name: "",
    given: |w| w,
    of: HOST,
    state: State::Promote,
    reasons: &[],
    boot: None,
    says: "",
    overrides: &[],
    sticky: false,
    soak_left: 0,
};

fn rows() -> Vec<Row> {
    vec![
        // Job verdicts against baselines.
        Row {
            name: "a pass where the baseline passes promotes",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]),
            boot: Some(J::Passed),
            ..ROW
        },
        Row {
            name: "a flaky pass (failed, then passed on retry) promotes",
            given: |w| w.ran(BOOT, &[FL]).ran(BOOT_T, &[P]),
            boot: Some(J::Flaky),
            ..ROW
        },
        Row {
            name: "no result yet waits",
            state: State::Wait,
            reasons: &[(K::Missing, HOST)],
            boot: Some(J::Missing),
            says: "has no result yet (run `stagegate run`)",
            ..ROW
        },
        Row {
            name: "a job that needs a label no runner ever offered waits, saying so",
            given: |w| w.needs_kvm(&[("box", &["x86_64"], 60)]),
            state: State::Wait,
            reasons: &[(K::Unserved, HOST)],
            boot: Some(J::Missing),
            says: "needs `kvm`: no runner offering it has ever been seen; it runs when a runner offering it runs `stagegate run --labels kvm`",
            ..ROW
        },
        Row {
            name: "a job whose label's runner was last seen long ago waits, saying since when",
            given: |w| w.needs_kvm(&[("kvm-box", &["kvm"], 3 * 24 * 3600)]),
            state: State::Wait,
            reasons: &[(K::Unserved, HOST)],
            boot: Some(J::Missing),
            says: "no runner offering it has been seen since 2023-11-11T22:13:20Z",
            ..ROW
        },
        Row {
            name: "a job a live runner can serve simply has no result yet",
            given: |w| w.needs_kvm(&[("kvm-box", &["kvm"], 60)]),
            state: State::Wait,
            reasons: &[(K::Missing, HOST)],
            boot: Some(J::Missing),
            says: "has no result yet (run `stagegate run --labels kvm` on a host that has it)",
            ..ROW
        },
        Row {
            name: "a job that could not run waits",
            given: |w| {
                let mut w = w.ran(BOOT, &[E]).ran(BOOT_T, &[P]);
                // An hour after the error: the default backoff (5 minutes) has passed.
                w.now = 1_704_067_201 + 3600;
                w
            },
            state: State::Wait,
            reasons: &[(K::Error, HOST)],
            boot: Some(J::Error),
            says: "(error 1 of 4); the next `stagegate run` tries it again",
            ..ROW
        },
        // The error budget: retries with backoff, then a wait for a recheck; never a rejection.
        Row {
            name: "an error within its backoff waits for it",
            given: |w| {
                let mut w = w.errors(3, 600).ran(BOOT, &[E]).ran(BOOT_T, &[P]);
                // The attempt finished at 2024-01-01T00:00:01Z; ten minutes later it is due.
                w.now = 1_704_067_201 + 300;
                w
            },
            state: State::Wait,
            reasons: &[(K::Error, HOST)],
            boot: Some(J::ErrorWaiting),
            says: "(error 1 of 4); it is tried again after 2024-01-01T00:10:01Z (`stagegate run --failed` tries it now)",
            ..ROW
        },
        Row {
            name: "the backoff grows with each error in a row",
            given: |w| {
                let mut w = w.errors(3, 600).ran(BOOT, &[E, E]).ran(BOOT_T, &[P]);
                // The second attempt finished at 00:00:02; 2 × 10 minutes later it is due.
                w.now = 1_704_067_202 + 900;
                w
            },
            state: State::Wait,
            reasons: &[(K::Error, HOST)],
            boot: Some(J::ErrorWaiting),
            says: "(error 2 of 4); it is tried again after 2024-01-01T00:20:02Z",
            ..ROW
        },
        Row {
            name: "errors past the budget wait for a recheck, never reject",
            given: |w| w.errors(2, 0).ran(BOOT, &[F, E, E, E]).ran(BOOT_T, &[P]),
            state: State::Wait,
            reasons: &[(K::Errored, HOST)],
            boot: Some(J::Errored),
            says: "it errored 3 times in a row; fix the environment, then `stagegate recheck images/host --stage staging --reason …`",
            ..ROW
        },
        Row {
            name: "a recheck starts the error budget again",
            given: |w| {
                w.errors(1, 0)
                    .ran(BOOT, &[E, E, E])
                    .ran(BOOT_T, &[P])
                    .rechecked(BOOT, 2)
            },
            state: State::Wait,
            reasons: &[(K::Error, HOST)],
            boot: Some(J::Error),
            says: "(error 1 of 2)",
            overrides: &["recheck"],
            ..ROW
        },
        Row {
            name: "a rechecked failure waits for its new attempt",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).rechecked(BOOT, 1),
            state: State::Wait,
            reasons: &[(K::Missing, HOST)],
            boot: Some(J::Missing),
            says: "was rechecked by eve@example.com (rchk00000001): kvm fixed; its new attempt runs at the next `stagegate run`",
            overrides: &["recheck"],
            ..ROW
        },
        Row {
            name: "a rechecked failure that passes on its new attempt promotes",
            given: |w| w.ran(BOOT, &[F, P]).ran(BOOT_T, &[P]).rechecked(BOOT, 1),
            boot: Some(J::Passed),
            overrides: &["recheck"],
            ..ROW
        },
        Row {
            name: "a rechecked failure that fails again is a regression",
            given: |w| w.ran(BOOT, &[F, F]).ran(BOOT_T, &[P]).rechecked(BOOT, 1),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST)],
            boot: Some(J::Regression),
            overrides: &["recheck"],
            ..ROW
        },
        Row {
            name: "a failure where the baseline passes is a regression",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST)],
            boot: Some(J::Regression),
            says: "fails where staging passes: a regression",
            ..ROW
        },
        Row {
            name: "a failure without a baseline to compare with is a regression",
            given: |w| w.no_baseline().ran(BOOT, &[F]),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST)],
            boot: Some(J::Regression),
            says: "test  boot [images/host] fails (exit 1)",
            ..ROW
        },
        Row {
            name: "a failure where the baseline fails too does not block",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[F]),
            reasons: &[(K::FailsLikeBaseline, HOST)],
            boot: Some(J::FailsLikeBaseline),
            says: "and so does its baseline on staging: not a regression",
            ..ROW
        },
        Row {
            name: "a failure whose baseline never passed does not block",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[F, E]),
            reasons: &[(K::FailsLikeBaseline, HOST)],
            boot: Some(J::FailsLikeBaseline),
            says: "its baseline never passed on staging (",
            ..ROW
        },
        Row {
            name: "a failure whose baseline has no result waits for it",
            given: |w| w.ran(BOOT, &[F]),
            state: State::Wait,
            reasons: &[(K::BaselineMissing, HOST)],
            boot: Some(J::FailedBaselineMissing),
            says: "its baseline on staging has no result yet to compare with",
            ..ROW
        },
        Row {
            name: "a failure whose baseline could not run waits for it",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[E]),
            state: State::Wait,
            reasons: &[(K::BaselineMissing, HOST)],
            boot: Some(J::FailedBaselineMissing),
            ..ROW
        },
        Row {
            name: "a failed build rejects",
            given: |w| w.built().ran(BUILD, &[F]).ran(BOOT, &[P]).ran(BOOT_T, &[P]),
            state: State::Rejected,
            reasons: &[(K::BuildFailed, HOST)],
            boot: Some(J::Passed),
            says: "build images/host failed: exit 1",
            ..ROW
        },
        // Flaky policies.
        Row {
            name: "a failure that passed before is a heisenbug the default policy blocks",
            given: |w| w.ran(BOOT, &[P, F]).ran(BOOT_T, &[P]),
            state: State::Rejected,
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::Heisenbug),
            says: "it passed before for the same key: 2 runs",
            ..ROW
        },
        Row {
            name: "a failure whose baseline is flaky is a heisenbug",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P, F]),
            state: State::Rejected,
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::Heisenbug),
            says: "its baseline on staging is flaky",
            ..ROW
        },
        Row {
            name: "flaky: wait with tries left waits",
            given: |w| {
                w.flaky(FlakyPolicy::Wait { tries: 2 })
                    .ran(BOOT, &[P, F])
                    .ran(BOOT_T, &[P])
            },
            state: State::Wait,
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::HeisenbugWaiting),
            says: "the gate waits for 2 more tries (each `stagegate run` tries it again)",
            ..ROW
        },
        Row {
            name: "flaky: wait with one try left says try",
            given: |w| {
                w.flaky(FlakyPolicy::Wait { tries: 2 })
                    .ran(BOOT, &[P, F, F])
                    .ran(BOOT_T, &[P])
            },
            state: State::Wait,
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::HeisenbugWaiting),
            says: "the gate waits for 1 more try (",
            ..ROW
        },
        Row {
            name: "flaky: wait with the tries used up blocks",
            given: |w| {
                w.flaky(FlakyPolicy::Wait { tries: 2 })
                    .ran(BOOT, &[P, F, F, F])
                    .ran(BOOT_T, &[P])
            },
            state: State::Rejected,
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::Heisenbug),
            says: "the gate blocks flaky failures",
            ..ROW
        },
        Row {
            name: "flaky: a newest pass after tries promotes",
            given: |w| {
                w.flaky(FlakyPolicy::Wait { tries: 2 })
                    .ran(BOOT, &[P, F, P])
                    .ran(BOOT_T, &[P])
            },
            boot: Some(J::Passed),
            ..ROW
        },
        Row {
            name: "flaky: allow notes the heisenbug and promotes",
            given: |w| {
                w.flaky(FlakyPolicy::Allow)
                    .ran(BOOT, &[P, F])
                    .ran(BOOT_T, &[P])
            },
            reasons: &[(K::Heisenbug, HOST)],
            boot: Some(J::HeisenbugAllowed),
            says: "the gate allows flaky failures",
            ..ROW
        },
        // Waivers and quarantines.
        Row {
            name: "a waived failure promotes, naming the waiver",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).waived(BOOT),
            reasons: &[(K::Waived, HOST)],
            boot: Some(J::Waived),
            says: "the failure is waived by ann@example.com (waive0000001): known bug 12",
            overrides: &["waive"],
            ..ROW
        },
        Row {
            name: "a waiver takes precedence over the flaky policy",
            given: |w| w.ran(BOOT, &[P, F]).ran(BOOT_T, &[P]).waived(BOOT),
            reasons: &[(K::Waived, HOST)],
            boot: Some(J::Waived),
            overrides: &["waive"],
            ..ROW
        },
        Row {
            name: "a quarantined test's failure does not gate",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).quarantined("boot"),
            reasons: &[(K::Quarantined, HOST)],
            boot: Some(J::Quarantined),
            says: "fails; tests/boot is quarantined by bob@example.com (quar00000001): flaky on arm; it does not gate",
            overrides: &["quarantine"],
            ..ROW
        },
        Row {
            name: "a quarantined test without a result does not wait",
            given: |w| w.quarantined("boot"),
            reasons: &[(K::Quarantined, HOST)],
            boot: Some(J::Quarantined),
            says: "has no result yet; tests/boot is quarantined",
            overrides: &["quarantine"],
            ..ROW
        },
        Row {
            name: "a quarantine leaves a passing test alone and is not named",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).quarantined("boot"),
            boot: Some(J::Passed),
            ..ROW
        },
        Row {
            name: "a quarantine does not cover a build of the same name",
            given: |w| {
                w.built()
                    .ran(BUILD, &[F])
                    .ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .quarantined(HOST)
            },
            state: State::Rejected,
            reasons: &[(K::BuildFailed, HOST)],
            ..ROW
        },
        // Sticky rejections.
        Row {
            name: "a recorded rejection stands without judging again",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
            },
            state: State::Rejected,
            reasons: &[(K::Rejected, HOST)],
            boot: Some(J::Passed),
            says: "images/host at this content was rejected for staging (test boot fails); it stays on new until a new version arrives; once an environment it failed in is fixed, `stagegate recheck images/host --stage staging --reason …` runs its failing jobs again, or `stagegate waive 111111111111 --reason …` waives it",
            sticky: true,
            ..ROW
        },
        Row {
            name: "a group rejection stands while every member it judged is as it was",
            given: |w| {
                w.grouped_with(OTHER)
                    .ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
                    .rejected_with(HOST, OTHER, content(OTHER).as_str())
            },
            state: State::Rejected,
            reasons: &[(K::Rejected, HOST)],
            sticky: true,
            ..ROW
        },
        Row {
            name: "a group rejection is judged again when another member changed",
            given: |w| {
                w.grouped_with(OTHER)
                    .ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
                    .rejected_with(HOST, OTHER, "content-of-the-old-xen")
            },
            boot: Some(J::Passed),
            ..ROW
        },
        Row {
            name: "a rejection is judged again when a new member joins the group",
            given: |w| {
                w.grouped_with(OTHER)
                    .ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
            },
            boot: Some(J::Passed),
            ..ROW
        },
        Row {
            name: "a recorded rejection outweighs a hold and names nothing else",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .held(HOST)
                    .frozen()
                    .rejected(HOST, &[(BOOT, "boot")])
            },
            state: State::Rejected,
            reasons: &[(K::Rejected, HOST)],
            sticky: true,
            ..ROW
        },
        Row {
            name: "a waiver of every failure lifts a recorded rejection",
            given: |w| {
                w.ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
                    .waived(BOOT)
            },
            reasons: &[(K::Waived, HOST)],
            boot: Some(J::Waived),
            overrides: &["waive"],
            ..ROW
        },
        Row {
            name: "a waiver of some failures leaves a recorded rejection standing",
            given: |w| {
                w.ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot"), (BUILD, "")])
                    .waived(BOOT)
            },
            state: State::Rejected,
            reasons: &[(K::Rejected, HOST)],
            says: "`stagegate waive 111111111111 --reason …`, `stagegate waive 333333333333 --reason …` waive them",
            sticky: true,
            ..ROW
        },
        Row {
            name: "a quarantine of the failed test lifts a recorded rejection",
            given: |w| {
                w.ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BOOT, "boot")])
                    .quarantined("boot")
            },
            reasons: &[(K::Quarantined, HOST)],
            boot: Some(J::Quarantined),
            overrides: &["quarantine"],
            ..ROW
        },
        Row {
            name: "a lifted rejection is judged again and can reject again",
            given: |w| {
                w.ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .rejected(HOST, &[(BUILD, "")])
                    .waived(BUILD)
            },
            state: State::Rejected,
            reasons: &[(K::Regression, HOST)],
            overrides: &["waive"],
            ..ROW
        },
        Row {
            name: "a rejection of another content does not stand",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .rejected(OTHER, &[(BOOT, "boot")])
            },
            boot: Some(J::Passed),
            ..ROW
        },
        // Bisects.
        Row {
            name: "a rejected group names what a bisect found",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).bisected(HOST),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST), (K::Bisect, HOST)],
            says: "first bad commit: abc123 (upstream)",
            ..ROW
        },
        Row {
            name: "a sticky rejection names what a bisect found",
            given: |w| w.rejected(HOST, &[(BOOT, "boot")]).bisected(HOST),
            state: State::Rejected,
            reasons: &[(K::Rejected, HOST), (K::Bisect, HOST)],
            sticky: true,
            ..ROW
        },
        Row {
            name: "a bisect is not named for a group that is not rejected",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).bisected(HOST),
            boot: Some(J::Passed),
            ..ROW
        },
        // What the planner found blocking.
        Row {
            name: "an untested item waits",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::Untested, Some(OTHER))
            },
            state: State::Wait,
            reasons: &[(K::Untested, OTHER)],
            says: "blocked: untested",
            ..ROW
        },
        Row {
            name: "a missing artifact of no candidate names the group",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::MissingArtifact, None)
            },
            state: State::Wait,
            reasons: &[(K::MissingArtifact, HOST)],
            says: "blocked: missing-artifact",
            ..ROW
        },
        Row {
            name: "a removed item a test uses waits",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::InUse, Some(OTHER))
            },
            state: State::Wait,
            reasons: &[(K::InUse, OTHER)],
            ..ROW
        },
        Row {
            name: "an invalid dependency waits",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::InvalidDependency, Some(HOST))
            },
            state: State::Wait,
            reasons: &[(K::InvalidDependency, HOST)],
            ..ROW
        },
        Row {
            name: "a pending parent waits",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::ParentPending, Some(HOST))
            },
            state: State::Wait,
            reasons: &[(K::ParentPending, HOST)],
            ..ROW
        },
        Row {
            name: "a group whose jobs are not run again waits as rejected before",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::Rejected, None)
            },
            state: State::Wait,
            reasons: &[(K::Rejected, HOST)],
            ..ROW
        },
        // Holds, approvals, soak.
        Row {
            name: "a held candidate is held",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).held(HOST),
            state: State::Held,
            reasons: &[(K::Held, HOST)],
            says: "images/host is held on new by ann@example.com since 2024-01-01T00:00:00Z: waiting for the vendor (release with `stagegate release images/host`)",
            ..ROW
        },
        Row {
            name: "a pipeline change without an approval waits",
            given: |w| w.alone(PIPELINE),
            of: PIPELINE,
            state: State::Wait,
            reasons: &[(K::Approval, PIPELINE)],
            says: "`stagegate approve stagegate.yaml --stage staging --reason …`",
            ..ROW
        },
        Row {
            name: "a pipeline change with an approval promotes, naming it",
            given: |w| w.alone(PIPELINE).approved(PIPELINE),
            of: PIPELINE,
            overrides: &["approve"],
            ..ROW
        },
        Row {
            name: "an approval of another content does not count",
            given: |w| w.alone(PIPELINE).approved(HOST),
            of: PIPELINE,
            state: State::Wait,
            reasons: &[(K::Approval, PIPELINE)],
            ..ROW
        },
        Row {
            name: "an item needs no approval",
            given: |w| w.alone(OTHER),
            of: OTHER,
            ..ROW
        },
        Row {
            name: "soak in progress waits with the time left",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .soak(3600)
                    .seen(HOST, 600)
            },
            state: State::Wait,
            reasons: &[(K::Soak, HOST)],
            says: "images/host pending on new for 10m of the 1h soak; 50m left",
            soak_left: 3000,
            ..ROW
        },
        Row {
            name: "soak starts when a candidate is first seen",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).soak(3600),
            state: State::Wait,
            reasons: &[(K::Soak, HOST)],
            says: "for 0s (first seen now) of the 1h soak; 1h left",
            soak_left: 3600,
            ..ROW
        },
        Row {
            name: "soak done promotes",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .soak(3600)
                    .seen(HOST, 3600)
            },
            ..ROW
        },
        Row {
            name: "a sighting in the future counts as none of the soak",
            given: |w| {
                w.ran(BOOT, &[P])
                    .ran(BOOT_T, &[P])
                    .soak(60)
                    .seen(HOST, -600)
            },
            state: State::Wait,
            reasons: &[(K::Soak, HOST)],
            soak_left: 60,
            ..ROW
        },
        // Freezes.
        Row {
            name: "a frozen stage holds everything",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).frozen(),
            state: State::Held,
            reasons: &[(K::Frozen, HOST)],
            says: "staging is frozen by dan@example.com since 2024-01-01T00:00:00Z: release week; until 2024-01-08T00:00:00Z (lift with `stagegate unfreeze staging`)",
            overrides: &["freeze"],
            ..ROW
        },
        Row {
            name: "a frozen stage holds a pipeline change too",
            given: |w| w.alone(PIPELINE).approved(PIPELINE).frozen(),
            of: PIPELINE,
            state: State::Held,
            reasons: &[(K::Frozen, PIPELINE)],
            overrides: &["approve", "freeze"],
            ..ROW
        },
        // Invalid candidates.
        Row {
            name: "an invalid candidate is a group of its own",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).invalid(BROKEN),
            of: BROKEN,
            state: State::Invalid,
            reasons: &[(K::Invalid, BROKEN)],
            says: "images/broken.yaml:3:7: unknown field `bild` (help: did you mean `build`?)",
            ..ROW
        },
        Row {
            name: "an invalid candidate does not stop a valid one",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).invalid(BROKEN),
            boot: Some(J::Passed),
            ..ROW
        },
        // Combinations: the heaviest state wins, every reason is named in phase order.
        Row {
            name: "held and a regression is rejected",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).held(HOST),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST), (K::Held, HOST)],
            ..ROW
        },
        Row {
            name: "held and a missing result is held",
            given: |w| w.held(HOST),
            state: State::Held,
            reasons: &[(K::Missing, HOST), (K::Held, HOST)],
            ..ROW
        },
        Row {
            name: "frozen and soaking is held",
            given: |w| w.ran(BOOT, &[P]).ran(BOOT_T, &[P]).soak(3600).frozen(),
            state: State::Held,
            reasons: &[(K::Soak, HOST), (K::Frozen, HOST)],
            overrides: &["freeze"],
            soak_left: 3600,
            ..ROW
        },
        Row {
            name: "frozen and a regression is rejected",
            given: |w| w.ran(BOOT, &[F]).ran(BOOT_T, &[P]).frozen(),
            state: State::Rejected,
            reasons: &[(K::Regression, HOST), (K::Frozen, HOST)],
            overrides: &["freeze"],
            ..ROW
        },
        Row {
            name: "blocked, held, soaking and frozen, in phase order",
            given: |w| {
                w.ran(BOOT, &[E])
                    .ran(BOOT_T, &[P])
                    .blocked(BlockedKind::Untested, Some(OTHER))
                    .held(HOST)
                    .soak(60)
                    .frozen()
            },
            state: State::Held,
            reasons: &[
                (K::Error, HOST),
                (K::Untested, OTHER),
                (K::Held, HOST),
                (K::Soak, HOST),
                (K::Frozen, HOST),
            ],
            overrides: &["freeze"],
            soak_left: 60,
            ..ROW
        },
        Row {
            name: "a waived failure and a failed build is rejected, naming the waiver",
            given: |w| {
                w.built()
                    .ran(BUILD, &[F])
                    .ran(BOOT, &[F])
                    .ran(BOOT_T, &[P])
                    .waived(BOOT)
            },
            state: State::Rejected,
            reasons: &[(K::BuildFailed, HOST), (K::Waived, HOST)],
            boot: Some(J::Waived),
            overrides: &["waive"],
            ..ROW
        },
        Row {
            name: "a heisenbug waiting and a failure like the baseline waits",
            given: |w| {
                w.flaky(FlakyPolicy::Wait { tries: 3 })
                    .built()
                    .ran(BUILD, &[P, F])
                    .ran(BOOT, &[F])
                    .ran(BOOT_T, &[F])
            },
            state: State::Wait,
            reasons: &[(K::Heisenbug, HOST), (K::FailsLikeBaseline, HOST)],
            boot: Some(J::FailsLikeBaseline),
            ..ROW
        },
    ]
}

#[test]
fn gate_table() {
    let mut failed = Vec::new();
    for row in rows() {
        let world = (row.given)(World::new());
        let eval = world.evaluate();
        let Some(g) = eval.of(&id(row.of)) else {
            failed.push(format!("{}: no group has {}", row.name, row.of));
            continue;
        };
        let reasons: Vec<(ReasonKind, &str)> = g
            .reasons
            .iter()
            .map(|r| (r.kind, r.item.as_deref().unwrap_or("-")))
            .collect();
        let boot = g.jobs.iter().find(|j| j.key == BOOT).map(|j| j.state);
        let overrides: Vec<&str> = g.overrides.iter().map(|o| o.kind.as_str()).collect();
        let says = g.reasons.iter().any(|r| r.message.contains(row.says));
        let mut wrong = Vec::new();
        if g.state != row.state {
            wrong.push(format!("state {} (want {})", g.state, row.state));
        }
        if reasons != row.reasons {
            wrong.push(format!("reasons {reasons:?} (want {:?})", row.reasons));
        }
        if row.boot.is_some() && boot != row.boot {
            wrong.push(format!("boot {boot:?} (want {:?})", row.boot));
        }
        if !row.says.is_empty() && !says {
            let all: Vec<&str> = g.reasons.iter().map(|r| r.message.as_str()).collect();
            wrong.push(format!("no reason says {:?}: {all:?}", row.says));
        }
        if overrides != row.overrides {
            wrong.push(format!(
                "overrides {overrides:?} (want {:?})",
                row.overrides
            ));
        }
        if g.sticky != row.sticky {
            wrong.push(format!("sticky {} (want {})", g.sticky, row.sticky));
        }
        if g.soak_left != row.soak_left {
            wrong.push(format!(
                "soak_left {} (want {})",
                g.soak_left, row.soak_left
            ));
        }
        if !wrong.is_empty() {
            failed.push(format!("{}:\n    {}", row.name, wrong.join("\n    ")));
        }
    }
    assert!(failed.is_empty(), "rows that fail:\n{}", failed.join("\n"));
}

/// Every kind the gate can give is given by some row of the table.
#[test]
fn gate_table_covers_every_reason_kind() {
    let given: Vec<ReasonKind> = rows()
        .iter()
        .flat_map(|r| r.reasons.iter().map(|(k, _)| *k))
        .collect();
    let missing: Vec<ReasonKind> = ReasonKind::ALL
        .into_iter()
        .filter(|k| !given.contains(k))
        .collect();
    assert!(missing.is_empty(), "no row gives {missing:?}");
}

#[test]
fn gate_table_row_names_are_unique() {
    let rows = rows();
    let mut names: Vec<&str> = rows.iter().map(|r| r.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "two rows share a name");
}

#[test]
fn gate_states_fold_by_weight() {
    assert!(State::Promote < State::Wait);
    assert!(State::Wait < State::Held);
    assert!(State::Held < State::Rejected);
    assert!(State::Rejected < State::Invalid);
}

/// Output and decision records carry the kinds as strings: serde, `Display` and `as_str`
/// agree, and sorting the enum sorts as the strings did.
#[test]
fn gate_reason_kinds_keep_their_names_and_order() {
    for k in ReasonKind::ALL {
        let json = serde_json::to_string(&k).expect("a kind serializes");
        assert_eq!(json, format!("\"{}\"", k.as_str()));
        assert_eq!(k.to_string(), k.as_str());
    }
    let mut by_name = ReasonKind::ALL;
    by_name.sort_by_key(|k| k.as_str());
    assert_eq!(by_name, ReasonKind::ALL, "declare the kinds in name order");
    let mut by_enum = ReasonKind::ALL;
    by_enum.sort();
    assert_eq!(by_enum, ReasonKind::ALL);
}

#[test]
fn gate_blocked_kinds_keep_their_names_as_reasons() {
    for b in [
        BlockedKind::InUse,
        BlockedKind::InvalidDependency,
        BlockedKind::MissingArtifact,
        BlockedKind::ParentPending,
        BlockedKind::Rejected,
        BlockedKind::Untested,
    ] {
        let json = serde_json::to_string(&b).expect("a kind serializes");
        assert_eq!(json, format!("\"{}\"", b.as_str()));
        assert_eq!(ReasonKind::from(b).as_str(), b.as_str());
    }
}

#[test]
fn gate_groups_come_in_plan_order_then_invalid_candidates() {
    let w = World::new().alone(OTHER).invalid(BROKEN).alone(PIPELINE);
    let members: Vec<String> = w
        .evaluate()
        .groups
        .iter()
        .map(|g| g.members[0].to_string())
        .collect();
    assert_eq!(members, [HOST, OTHER, PIPELINE, BROKEN]);
}
