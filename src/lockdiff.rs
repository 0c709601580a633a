//! Package locks: what changed between two builds of an image.
//!
//! A build's lock file (`build.lock`) is recorded with its artifact; it is the exact package
//! set the image was built from. When a point release or a weekly rebuild breaks a test, the
//! first question is "which packages changed?": this module answers it by comparing two
//! locks package by package. It is pure (text in, [`LockDiff`] out) and prints nothing.
//!
//! The format is one package a line, fields separated by white space, `#` starting a
//! comment: `NAME [VERSION [ARCH [SHA256]]]`. The Debian example writes all four (the
//! sha256 of the `.deb`); a plain `NAME VERSION` list works too. A package is known by its
//! name and architecture, so `libc6 amd64` and `libc6 i386` are two packages.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

/// One package of a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Package {
    /// `name` or `name:arch`, as dpkg writes it.
    pub fn label(&self) -> String {
        match &self.arch {
            Some(a) => format!("{}:{a}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A package whose version (or, at the same version, whose `.deb`) changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    pub from: String,
    pub to: String,
}

/// A package at the same version whose `.deb` differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebuilt {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    pub version: String,
    pub from_sha256: String,
    pub to_sha256: String,
}

/// What changed from an old lock to a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockDiff {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub upgraded: Vec<Changed>,
    pub downgraded: Vec<Changed>,
    /// Same name and version, a different `.deb` (sha256): rebuilt upstream, or tampered.
    pub rebuilt: Vec<Rebuilt>,
    /// Packages in both locks, unchanged.
    pub unchanged: usize,
}

impl LockDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
            && self.rebuilt.is_empty()
    }

    /// `3 upgraded, 1 added, 0 removed (412 unchanged)`.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} upgraded", self.upgraded.len())];
        if !self.downgraded.is_empty() {
            parts.push(format!("{} downgraded", self.downgraded.len()));
        }
        parts.push(format!("{} added", self.added.len()));
        parts.push(format!("{} removed", self.removed.len()));
        if !self.rebuilt.is_empty() {
            parts.push(format!(
                "{} rebuilt at the same version",
                self.rebuilt.len()
            ));
        }
        format!("{} ({} unchanged)", parts.join(", "), self.unchanged)
    }

    /// One line per change, `+`/`-`/`^`/`v`/`!` first, for people.
    pub fn lines(&self) -> Vec<String> {
        let label = |name: &str, arch: &Option<String>| match arch {
            Some(a) => format!("{name}:{a}"),
            None => name.to_string(),
        };
        let mut out = Vec::new();
        for (mark, changed) in [("^", &self.upgraded), ("v", &self.downgraded)] {
            for c in changed {
                out.push(format!(
                    "{mark} {} {} -> {}",
                    label(&c.name, &c.arch),
                    c.from,
                    c.to
                ));
            }
        }
        for p in &self.added {
            out.push(format!("+ {} {}", p.label(), p.version));
        }
        for p in &self.removed {
            out.push(format!("- {} {}", p.label(), p.version));
        }
        for c in &self.rebuilt {
            out.push(format!(
                "! {} {}: sha256 {} -> {}",
                label(&c.name, &c.arch),
                c.version,
                short_hash(&c.from_sha256),
                short_hash(&c.to_sha256)
            ));
        }
        out
    }
}

fn short_hash(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// A line of a lock that is not `NAME [VERSION [ARCH [SHA256]]]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LockError {
    pub line: usize,
    pub message: String,
}

/// Parse a lock; packages keyed by `(name, arch)`.
pub fn parse(text: &str) -> Result<BTreeMap<(String, Option<String>), Package>, LockError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 4 {
            return Err(LockError {
                line: i + 1,
                message: format!(
                    "{} fields; a lock line is NAME [VERSION [ARCH [SHA256]]]",
                    fields.len()
                ),
            });
        }
        let p = Package {
            name: fields[0].to_string(),
            version: fields.get(1).unwrap_or(&"").to_string(),
            arch: fields.get(2).map(|s| s.to_string()),
            sha256: fields.get(3).map(|s| s.to_string()),
        };
        let key = (p.name.clone(), p.arch.clone());
        if out.insert(key, p).is_some() {
            return Err(LockError {
                line: i + 1,
                message: format!("package {} is listed twice", fields[0]),
            });
        }
    }
    Ok(out)
}

/// Compare two locks.
pub fn diff(old: &str, new: &str) -> Result<LockDiff, LockError> {
    let (a, b) = (parse(old)?, parse(new)?);
    let mut d = LockDiff::default();
    for (k, p) in &a {
        match b.get(k) {
            None => d.removed.push(p.clone()),
            Some(q) => {
                let changed = Changed {
                    name: p.name.clone(),
                    arch: p.arch.clone(),
                    from: p.version.clone(),
                    to: q.version.clone(),
                };
                match compare_versions(&p.version, &q.version) {
                    Ordering::Less => d.upgraded.push(changed),
                    Ordering::Greater => d.downgraded.push(changed),
                    Ordering::Equal => match (&p.sha256, &q.sha256) {
                        (Some(x), Some(y)) if x != y => d.rebuilt.push(Rebuilt {
                            name: changed.name,
                            arch: changed.arch,
                            version: changed.to,
                            from_sha256: x.clone(),
                            to_sha256: y.clone(),
                        }),
                        _ => d.unchanged += 1,
                    },
                }
            }
        }
    }
    d.added = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(_, p)| p.clone())
        .collect();
    Ok(d)
}

/// Compare two Debian versions (`[EPOCH:]UPSTREAM[-REVISION]`) the way dpkg does, so that
/// `1:1.0` is newer than `2.0` and `1.0~rc1` older than `1.0`. Other version schemes
/// compare sensibly too (digits as numbers, the rest as text).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (u64, String, String) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) && !e.is_empty() => {
                (e.parse().unwrap_or(0), r)
            }
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u.to_string(), r.to_string()),
            None => (epoch, rest.to_string(), String::new()),
        }
    };
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| compare_part(&ua, &ub))
        .then_with(|| compare_part(&ra, &rb))
}

/// dpkg's `verrevcmp`: alternating runs of non-digits (compared by [`order`]) and digits
/// (compared as numbers).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        loop {
            let ca = a.first().filter(|c| !c.is_ascii_digit());
            let cb = b.first().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let o = order(ca.copied()).cmp(&order(cb.copied()));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[1..];
            b = &b[1..];
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (digits(a), digits(b));
        let (da, db) = (num(&a[..na]), num(&b[..nb]));
        let o = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if o != Ordering::Equal {
            return o;
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

/// Digits without their leading zeros.
fn num(s: &[u8]) -> &[u8] {
    let z = s.iter().take_while(|c| **c == b'0').count();
    &s[z..]
}

/// The weight of one non-digit character: `~` sorts before the end of the string, letters
/// before other characters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_dpkg_does() {
        use Ordering::*;
        let table = [
            ("1.0", "1.0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1:1.0", "2.0", Greater),
            ("1.0-1", "1.0-2", Less),
            ("1.0-1+deb12u1", "1.0-1", Greater),
            ("6.1.119-1", "6.1.123-1", Less),
            ("2.36-9+deb12u8", "2.36-9+deb12u10", Less),
            ("1.0a", "1.0+", Less),
            ("1.0", "1.0.0", Less),
            ("01", "1", Equal),
            ("1.0-1~bpo12+1", "1.0-1", Less),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn a_lock_diff_lists_added_removed_upgraded_downgraded_and_rebuilt_packages() {
        let old = "# debian-host\nbash 5.2.15-2+b7 amd64 aa\nlibc6 2.36-9+deb12u8 amd64 bb\nlinux-image-6.1.0-27-amd64 6.1.115-1 amd64 cc\nzlib1g 1:1.2.13 amd64 dd\ntzdata 2024a-1 all ee\nsed 4.9-1 amd64 ff\n";
        let new = "bash 5.2.15-2+b7 amd64 aa\nlibc6 2.36-9+deb12u10 amd64 b2\nlinux-image-6.1.0-28-amd64 6.1.119-1 amd64 c2\nzlib1g 1:1.2.13 amd64 d2\ntzdata 2023c-1 all e2\nsed 4.9-1 amd64 ff\n";
        let d = diff(old, new).unwrap();
        assert_eq!(d.unchanged, 2);
        assert_eq!(d.upgraded.len(), 1);
        assert_eq!(d.upgraded[0].name, "libc6");
        assert_eq!(d.downgraded[0].to, "2023c-1");
        assert_eq!(d.added[0].name, "linux-image-6.1.0-28-amd64");
        assert_eq!(d.removed[0].name, "linux-image-6.1.0-27-amd64");
        assert_eq!(d.rebuilt[0].name, "zlib1g");
        assert_eq!(
            d.summary(),
            "1 upgraded, 1 downgraded, 1 added, 1 removed, 1 rebuilt at the same version (2 unchanged)"
        );
        assert_eq!(
            d.lines(),
            [
                "^ libc6:amd64 2.36-9+deb12u8 -> 2.36-9+deb12u10",
                "v tzdata:all 2024a-1 -> 2023c-1",
                "+ linux-image-6.1.0-28-amd64:amd64 6.1.119-1",
                "- linux-image-6.1.0-27-amd64:amd64 6.1.115-1",
                "! zlib1g:amd64 1:1.2.13: sha256 dd -> d2",
            ]
        );
    }

    #[test]
    fn identical_locks_have_an_empty_diff() {
        let lock = "bash 5.2 amd64\ncoreutils 9.1\n";
        let d = diff(lock, lock).unwrap();
        assert!(d.is_empty());
        assert_eq!(d.unchanged, 2);
    }

    #[test]
    fn a_malformed_lock_names_its_line() {
        let e = diff("bash 5.2\n", "bash 5.2\na b c d e\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("NAME [VERSION"), "{e}");
        let e = parse("bash 5.2\n\nbash 5.3\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3: package bash is listed twice");
    }
}
