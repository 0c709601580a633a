//! Job keys: a content hash of everything that can change a job's outcome.
//!
//! A key is `sha256` (lower-case hex) over a canonical JSON document (`serde_json` of
//! structs and `BTreeMap`s: fixed field order, sorted maps, no whitespace):
//!
//! ```text
//! {"v":1,
//!  "kind":"test" | "build",
//!  "name":  test name, or the item id being built,
//!  "manifest": git blob id of the test's (or built item's) manifest,
//!  "files": {path: git blob/tree id or null} for every repository file the job names
//!           (the script its `run` starts with, `files:`, for builds `build.files`),
//!  "items": {item id: {"manifest": blob id, "artifact": "sha256:…" | "build:<key>" | null}}
//!           for every item in the job's environment,
//!  "cache": "sha256:…"   only for a build given a cache (`$STAGEGATE_CACHE`): the digest of
//!           the cache in the item's build record on T}
//! ```
//!
//! Git blob ids are themselves content hashes, so the key changes exactly when a byte of a
//! manifest or a named file changes, or when an image's built artifact changes; it does not
//! depend on the commit, the stage or anything the job does not use. Results are recorded
//! by key, so an unchanged job never runs twice.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::keys::JobKey;

#[derive(Serialize)]
pub struct KeyInput<'a> {
    pub v: u32,
    pub kind: &'a str,
    pub name: &'a str,
    pub manifest: String,
    pub files: BTreeMap<String, Option<String>>,
    pub items: BTreeMap<String, KeyItem>,
    /// A build's input cache (its digest): left out when there is none, so the keys of
    /// jobs without one are what they always were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'a str>,
}

#[derive(Serialize)]
pub struct KeyItem {
    pub manifest: String,
    pub artifact: Option<String>,
}

impl KeyInput<'_> {
    pub fn key(&self) -> JobKey {
        let canonical = serde_json::to_vec(self).expect("key input serializes");
        JobKey::from(hex::encode(Sha256::digest(&canonical)))
    }
}
