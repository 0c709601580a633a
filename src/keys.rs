//! What a string holds, said by its type: a job's key ([`JobKey`]), a candidate's content
//! key ([`ContentKey`]), an artifact's digest ([`Digest`]), each with the one short form
//! people read, and the short forms of commit ids ([`short_commit`]).
//!
//! Each is a `String` underneath and on disk: serde reads and writes the bare string, and
//! the order is the string's, so a record, a JSON document or a map keyed by one of them
//! is what it was when it held a `String`. Nothing is checked when one is read: a record
//! any version of stagegate wrote still reads. This module imports nothing from the crate.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The first `n` characters of `s`, or all of `s` when it is shorter: a short form never
/// panics on a value an older or foreign writer left shorter than usual (or not hex).
fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        /// As the string's: a message that quotes one (`{:?}`) reads as it did.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Maps and sets keyed by one are looked up with a `&str` (a key from the command
        /// line, a path component): `String`'s hash and order, so the two agree.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> $name {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> $name {
                $name(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(k: $name) -> String {
                k.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

string_newtype!(
    /// A job's key: `sha256` hex over everything that decides its result (the test or
    /// recipe, its files, its environment). The ledger keeps results by it.
    JobKey
);

string_newtype!(
    /// A candidate's content key: `sha256` hex over its manifest and the files it names on
    /// one side. A rejection, a first sighting, an approval or a bisection is remembered by
    /// it.
    ContentKey
);

string_newtype!(
    /// An artifact's digest, `sha256:<hex>`: the name the store keeps it under.
    Digest
);

impl JobKey {
    /// The first 12 hex digits: how output, advice and waiver ids name a job.
    pub fn short(&self) -> &str {
        prefix(&self.0, 12)
    }

    /// Whether `prefix` names this key: how a person gives one on the command line.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl ContentKey {
    /// The first 10 hex digits: how output names a candidate's content.
    pub fn short(&self) -> &str {
        prefix(&self.0, 10)
    }

    /// The first 12 hex digits: how overrides name the content they are about, in an
    /// approval's or a recheck's scope and as the id of an approval of the first format
    /// (which had none of its own). Scopes are recorded in decisions and ids name records,
    /// so this keeps the length they were written with: a format, not the short form
    /// people read ([`ContentKey::short`]).
    pub fn override_form(&self) -> &str {
        prefix(&self.0, 12)
    }
}

impl Digest {
    /// `sha256:` and the first 12 hex digits: how output names an artifact. A digest
    /// written without its algorithm gets the prefix too.
    pub fn short(&self) -> String {
        format!("sha256:{}", prefix(self.hex(), 12))
    }

    /// The hex digits after `sha256:` (all of it, for a digest written without one).
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

/// The hex digits most output shows of a commit: a stage's head, a promotion, a commit a
/// forge is asked about.
pub const COMMIT_DIGITS: usize = 10;

/// The hex digits the rest shows: upstream commits (a component's tracked tip, the steps
/// and findings of a bisection, the version `poll` gives a tracked commit), ledger commits,
/// pushes and diverged branches, and the forge's comments. Where a version is made of it,
/// it is part of a format and must stay.
pub const LONG_COMMIT_DIGITS: usize = 12;

/// Commit id `id` (hex) shortened to `digits` ([`COMMIT_DIGITS`] or [`LONG_COMMIT_DIGITS`]):
/// all of it when it is shorter. For a `gix::ObjectId`, `to_hex_with_len` says the same.
pub fn short_commit(id: &str, digits: usize) -> &str {
    prefix(id, digits)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const KEY: &str = "0f3a9c2be4d1778a65c0e2f1b3d4a5968778695a4b3c2d1e0f9e8d7c6b5a4938";

    #[test]
    fn each_is_the_bare_string_in_yaml_and_json() {
        let key = JobKey::from(KEY);
        assert_eq!(serde_json::to_string(&key).unwrap(), format!("\"{KEY}\""));
        assert_eq!(serde_saphyr::to_string(&key).unwrap().trim(), KEY);
        let back: JobKey = serde_json::from_str(&format!("\"{KEY}\"")).unwrap();
        assert_eq!(back, key);
        let back: JobKey = serde_saphyr::from_str(KEY).unwrap();
        assert_eq!(back, key);

        let content = ContentKey::from(KEY);
        assert_eq!(
            serde_json::to_string(&content).unwrap(),
            format!("\"{KEY}\"")
        );
        let back: ContentKey = serde_saphyr::from_str(KEY).unwrap();
        assert_eq!(back, content);

        let digest = Digest::from(format!("sha256:{KEY}"));
        assert_eq!(
            serde_json::to_string(&digest).unwrap(),
            format!("\"sha256:{KEY}\"")
        );
        assert_eq!(
            serde_saphyr::to_string(&digest).unwrap().trim(),
            format!("sha256:{KEY}")
        );
        let back: Digest = serde_saphyr::from_str(&format!("sha256:{KEY}")).unwrap();
        assert_eq!(back, digest);
    }

    /// A field that held a `String` reads and writes as before, in a record among others.
    #[test]
    fn a_record_reads_and_writes_the_same_with_either_type() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Old {
            key: String,
            content: Option<String>,
            digest: String,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct New {
            key: JobKey,
            content: Option<ContentKey>,
            digest: Digest,
        }
        let old = Old {
            key: KEY.into(),
            content: Some(KEY[..40].into()),
            digest: format!("sha256:{KEY}"),
        };
        let yaml = serde_saphyr::to_string(&old).unwrap();
        let new: New = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(serde_saphyr::to_string(&new).unwrap(), yaml);
        let back: Old = serde_saphyr::from_str(&serde_saphyr::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, old);
        let json = serde_json::to_string(&old).unwrap();
        assert_eq!(
            serde_json::to_string(&serde_json::from_str::<New>(&json).unwrap()).unwrap(),
            json
        );
    }

    /// Nothing is checked on reading: a short, odd or empty value an old record holds still
    /// reads, and its short form does not panic.
    #[test]
    fn any_string_reads_and_shortens() {
        for s in ["", "abc", "not hex at all", "é€ü"] {
            let k: JobKey = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
            assert_eq!(k.as_str(), s);
            assert!(s.starts_with(k.short()));
            let c: ContentKey = serde_saphyr::from_str(&format!("'{s}'")).unwrap();
            assert!(s.starts_with(c.short()));
            let d = Digest::from(s);
            assert!(d.short().starts_with("sha256:"));
            assert_eq!(
                short_commit(s, 2),
                s.chars().take(2).collect::<String>(),
                "characters, not bytes"
            );
        }
    }

    #[test]
    fn maps_keyed_by_them_keep_the_string_order() {
        let keys = ["b0", "a1", "ff", "0a", "A0", "a", "a10", "a9", "10", "9"];
        let strings: BTreeMap<String, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), i))
            .collect();
        let typed: BTreeMap<JobKey, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (JobKey::from(*k), i))
            .collect();
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&strings).unwrap()
        );
        assert_eq!(
            serde_saphyr::to_string(&typed).unwrap(),
            serde_saphyr::to_string(&strings).unwrap()
        );
        let contents: BTreeMap<ContentKey, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (ContentKey::from(*k), i))
            .collect();
        assert_eq!(
            serde_json::to_string(&contents).unwrap(),
            serde_json::to_string(&strings).unwrap()
        );
        // And read back into either, the same map.
        let json = serde_json::to_string(&strings).unwrap();
        let back: BTreeMap<JobKey, usize> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, typed);
        // Looked up by `&str`, as a key from the command line is: `Borrow<str>` agrees with
        // the derived order and hash.
        assert_eq!(typed.get("ff"), Some(&2));
        let hashed: std::collections::HashMap<JobKey, usize> = typed.clone().into_iter().collect();
        assert_eq!(hashed.get("a10"), Some(&6));
    }

    /// Messages quote a key or a digest with `{:?}`: the quotes are the string's.
    #[test]
    fn debug_is_the_strings() {
        assert_eq!(format!("{:?}", JobKey::from(KEY)), format!("{KEY:?}"));
        assert_eq!(format!("{:?}", ContentKey::from(KEY)), format!("{KEY:?}"));
        assert_eq!(format!("{:?}", Digest::from("sha256:ab")), "\"sha256:ab\"");
        assert_eq!(format!("{}", JobKey::from(KEY)), KEY);
    }

    #[test]
    fn short_forms_are_as_long_as_before() {
        let key = JobKey::from(KEY);
        assert_eq!(key.short(), &KEY[..12]);
        assert_eq!(ContentKey::from(KEY).short(), &KEY[..10]);
        assert_eq!(ContentKey::from(KEY).override_form(), &KEY[..12]);
        assert_eq!(
            Digest::from(format!("sha256:{KEY}")).short(),
            format!("sha256:{}", &KEY[..12])
        );
        assert_eq!(Digest::from(KEY).short(), format!("sha256:{}", &KEY[..12]));
        let commit = "8e2f1c0d9b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e";
        assert_eq!(short_commit(commit, COMMIT_DIGITS), &commit[..10]);
        assert_eq!(short_commit(commit, LONG_COMMIT_DIGITS), &commit[..12]);
        let oid = gix::ObjectId::from_hex(commit.as_bytes()).unwrap();
        assert_eq!(
            oid.to_hex_with_len(COMMIT_DIGITS).to_string(),
            short_commit(commit, COMMIT_DIGITS)
        );
    }
}
