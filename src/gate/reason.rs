//! The kinds of reason the gate gives: one enum instead of strings, so a reader that matches
//! on a kind is checked by the compiler. The names are a format: JSON output and the
//! decision records committed in git carry them, so each variant serializes (and displays)
//! as exactly the string it always had.

use serde::Serialize;

use crate::plan::BlockedKind;

/// What a [`super::Reason`] is about. The variants are declared in the order of their names,
/// so sorting by kind sorts as the strings did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReasonKind {
    /// A changed pipeline waits for an approval.
    Approval,
    /// A job fails and its baseline has no result to compare with yet.
    BaselineMissing,
    /// What a bisect of a rejected member found.
    Bisect,
    BuildFailed,
    /// A job could not run; it is tried again.
    Error,
    /// A job could not run as often as the gate's error budget allows: it waits for a
    /// recheck.
    Errored,
    /// A job fails, and so does (or always did) its baseline: a note, not a blocker.
    FailsLikeBaseline,
    Frozen,
    /// A failing job with a flaky history; the gate's `flaky` policy says what it does.
    Heisenbug,
    Held,
    /// Blocked by the planner: see [`BlockedKind::InUse`].
    InUse,
    /// A candidate whose manifest does not parse or resolve.
    Invalid,
    InvalidDependency,
    /// A required job has no result yet.
    Missing,
    MissingArtifact,
    ParentPending,
    /// A failing test that is quarantined: a note, not a blocker.
    Quarantined,
    Regression,
    /// A rejection recorded before for this content.
    Rejected,
    Soak,
    /// A required job needs host labels no live, healthy runner offers (DESIGN §4.18):
    /// it waits, visibly, for one.
    Unserved,
    Untested,
    /// A waived failure: a note, not a blocker.
    Waived,
}

impl ReasonKind {
    /// Every kind, in order.
    pub const ALL: [ReasonKind; 23] = [
        ReasonKind::Approval,
        ReasonKind::BaselineMissing,
        ReasonKind::Bisect,
        ReasonKind::BuildFailed,
        ReasonKind::Error,
        ReasonKind::Errored,
        ReasonKind::FailsLikeBaseline,
        ReasonKind::Frozen,
        ReasonKind::Heisenbug,
        ReasonKind::Held,
        ReasonKind::InUse,
        ReasonKind::Invalid,
        ReasonKind::InvalidDependency,
        ReasonKind::Missing,
        ReasonKind::MissingArtifact,
        ReasonKind::ParentPending,
        ReasonKind::Quarantined,
        ReasonKind::Regression,
        ReasonKind::Rejected,
        ReasonKind::Soak,
        ReasonKind::Unserved,
        ReasonKind::Untested,
        ReasonKind::Waived,
    ];

    /// The name output and records carry (the same as serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Approval => "approval",
            ReasonKind::BaselineMissing => "baseline-missing",
            ReasonKind::Bisect => "bisect",
            ReasonKind::BuildFailed => "build-failed",
            ReasonKind::Error => "error",
            ReasonKind::Errored => "errored",
            ReasonKind::FailsLikeBaseline => "fails-like-baseline",
            ReasonKind::Frozen => "frozen",
            ReasonKind::Heisenbug => "heisenbug",
            ReasonKind::Held => "held",
            ReasonKind::InUse => "in-use",
            ReasonKind::Invalid => "invalid",
            ReasonKind::InvalidDependency => "invalid-dependency",
            ReasonKind::Missing => "missing",
            ReasonKind::MissingArtifact => "missing-artifact",
            ReasonKind::ParentPending => "parent-pending",
            ReasonKind::Quarantined => "quarantined",
            ReasonKind::Regression => "regression",
            ReasonKind::Rejected => "rejected",
            ReasonKind::Soak => "soak",
            ReasonKind::Unserved => "unserved",
            ReasonKind::Untested => "untested",
            ReasonKind::Waived => "waived",
        }
    }
}

impl std::fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the planner said blocks a group becomes the reason the gate gives for it.
impl From<BlockedKind> for ReasonKind {
    fn from(kind: BlockedKind) -> ReasonKind {
        match kind {
            BlockedKind::InUse => ReasonKind::InUse,
            BlockedKind::InvalidDependency => ReasonKind::InvalidDependency,
            BlockedKind::MissingArtifact => ReasonKind::MissingArtifact,
            BlockedKind::ParentPending => ReasonKind::ParentPending,
            BlockedKind::Rejected => ReasonKind::Rejected,
            BlockedKind::Untested => ReasonKind::Untested,
        }
    }
}
