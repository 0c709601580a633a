//! Records that stagegate itself commits into stage trees under `.stagegate/`.
//!
//! They live apart from the manifests, so editing a manifest on one stage never conflicts
//! with a record written on another, and candidate detection (which compares manifests)
//! never sees them:
//!
//! ```text
//! .stagegate/built/<images|components>/<name>.yaml   what was built, exactly (BuiltRecord)
//! .stagegate/decisions/<stage>/<time>-<commit>.yaml   a promote or reject decision
//! .stagegate/holds/<stage>/<slug>.yaml               a candidate held on <stage>
//! ```

use serde::{Deserialize, Serialize};

use crate::keys::{Digest, JobKey};
use crate::manifest::{CandidateId, ItemId};

pub const RECORDS_DIR: &str = ".stagegate";

pub fn built_path(id: &ItemId) -> String {
    format!("{RECORDS_DIR}/built/{}/{}.yaml", id.kind.dir(), id.name)
}

/// `.stagegate/holds/<stage>/<slug>.yaml`: `images-NAME`, `components-NAME`, `tests-NAME`,
/// `pipeline`.
pub fn hold_path(stage: &str, id: &CandidateId) -> String {
    format!("{RECORDS_DIR}/holds/{stage}/{}.yaml", id.slug())
}

pub fn holds_dir(stage: &str) -> String {
    format!("{RECORDS_DIR}/holds/{stage}")
}

pub fn decisions_dir(stage: &str) -> String {
    format!("{RECORDS_DIR}/decisions/{stage}")
}

/// The exact artifact an image version was built into: "last known good".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuiltRecord {
    pub item: String,
    pub version: String,
    /// `sha256:<hex>` of the artifact.
    pub digest: Digest,
    pub size: u64,
    /// Where the store keeps it (a store URL).
    pub location: String,
    /// The lock file's content: the exact package set the image was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The build's cache (`build.cache`), stored beside the artifact: what the next build
    /// of this image is given once this record is on the stage it builds for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheRecord>,
    pub build_job: JobKey,
    pub builder: String,
    /// RFC 3339 time the build finished.
    pub built_at: String,
}

/// A build's cache in the artifact store: e.g. the exact `.deb` files an image was built
/// from, its "last-known-good package cache".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CacheRecord {
    /// `sha256:<hex>` of the cache file.
    pub digest: Digest,
    pub size: u64,
    /// Where the store keeps it (a store URL).
    pub location: String,
}

/// Who held an item on a stage, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HoldRecord {
    pub item: String,
    pub stage: String,
    pub reason: String,
    pub by: String,
    pub at: String,
}

/// Parse a record stagegate wrote; a record that does not parse is reported with its path.
pub fn parse<T: serde::de::DeserializeOwned>(path: &str, bytes: &[u8]) -> crate::error::Result<T> {
    crate::manifest::parse::from_yaml(path, bytes).map_err(|d| {
        crate::error::Error::Invalid(crate::manifest::Diagnostics(vec![
            d.with_help("this file is written by stagegate; restore it from git history"),
        ]))
    })
}

/// Serialize a record as YAML.
pub fn to_yaml<T: Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("records serialize")
}

/// The clock every recorded fact and every gate decision reads.
///
/// `STAGEGATE_NOW` (an RFC 3339 time) fixes it: for tests, and for replaying what a gate
/// would say at another time (an expiry, a soak). A value that does not parse is ignored
/// with a warning, never a crash.
pub fn now() -> std::time::SystemTime {
    match std::env::var("STAGEGATE_NOW") {
        Ok(v) if !v.trim().is_empty() => match humantime::parse_rfc3339_weak(v.trim()) {
            Ok(t) => t,
            Err(e) => {
                crate::error::warn(format!(
                    "STAGEGATE_NOW={v:?} is not an RFC 3339 time ({e}); using the real clock"
                ));
                std::time::SystemTime::now()
            }
        },
        _ => std::time::SystemTime::now(),
    }
}

/// [`now`] in seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    unix_secs(now())
}

/// A time in seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Now, as RFC 3339 in UTC with second precision.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(now()).to_string()
}

/// `secs` since the Unix epoch as RFC 3339 in UTC with second precision: how a decision
/// says when it was made, from the same clock reading the gate judged at.
pub fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
