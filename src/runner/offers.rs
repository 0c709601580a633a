//! What this runner offers (DESIGN §4.18): the host labels it detects (its architecture,
//! `kvm` when a KVM guest really starts) and those it is told (`--labels`,
//! `STAGEGATE_LABELS`), minus those whose health check fails. A run takes only the jobs
//! whose `needs` it meets.
//!
//! It never prints and knows nothing of the gate: it answers "can this host run a job that
//! needs these labels", and why not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::manifest::valid_label;

/// The labels a runner offers, and the offered labels it holds back because their health
/// check fails (label → why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offers {
    pub labels: BTreeSet<String>,
    pub unhealthy: BTreeMap<String, String>,
}

impl Offers {
    /// `declared` plus, with `detect`, what this host detects.
    pub fn new(declared: &[String], detect: bool) -> Offers {
        let mut labels: BTreeSet<String> = declared.iter().cloned().collect();
        if detect {
            labels.extend(detected());
        }
        Offers {
            labels,
            unhealthy: BTreeMap::new(),
        }
    }

    /// The labels of `needs` this runner cannot serve now: not offered, or unhealthy.
    pub fn missing(&self, needs: &[String]) -> Vec<String> {
        needs
            .iter()
            .filter(|n| !self.labels.contains(*n) || self.unhealthy.contains_key(*n))
            .cloned()
            .collect()
    }

    /// The labels a job may be given to: offered and healthy, sorted.
    pub fn serving(&self) -> Vec<String> {
        self.labels
            .iter()
            .filter(|l| !self.unhealthy.contains_key(*l))
            .cloned()
            .collect()
    }
}

/// Parse a comma- or space-separated label list (`--labels kvm,iommu`).
pub fn parse_labels(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    for l in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|l| !l.is_empty())
    {
        if !valid_label(l) {
            return Err(format!(
                "{l:?} is not a host label: use lower-case letters, digits, '.', '_' and '-'"
            ));
        }
        out.push(l.to_string());
    }
    Ok(out)
}

/// What this host offers without being told: its architecture (`x86_64`, `aarch64`), and
/// `kvm` when a KVM guest actually starts here ([`kvm_usable`]).
pub fn detected() -> Vec<String> {
    let mut out = Vec::new();
    let arch = std::env::consts::ARCH;
    if matches!(arch, "x86_64" | "aarch64") {
        out.push(arch.to_string());
    }
    if kvm_usable() {
        out.push("kvm".into());
    }
    out
}

/// Whether a KVM guest starts on this host: `/dev/kvm` can be opened, and QEMU with
/// `-accel kvm -cpu host` boots a one-sector guest that writes to QEMU's `isa-debug-exit`
/// port at once (a host whose KVM aborts QEMU, as some nested setups do, offers no `kvm`).
/// The probe takes a fraction of a second; its answer is kept for the boot (keyed by the
/// kernel's boot id) in the temporary directory. Only x86_64 hosts are probed; declare
/// `kvm` elsewhere.
pub fn kvm_usable() -> bool {
    if std::env::consts::ARCH != "x86_64" {
        return false;
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|b| b.trim().to_string())
        .unwrap_or_default();
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let cache = std::env::temp_dir().join(format!("stagegate-kvm-probe-{uid}"));
    if !boot.is_empty()
        && let Ok(text) = std::fs::read_to_string(&cache)
        && let Some((b, answer)) = text.trim().split_once(' ')
        && b == boot
    {
        return answer == "yes";
    }
    let ok = probe_kvm();
    if !boot.is_empty() {
        let _ = std::fs::write(
            &cache,
            format!("{boot} {}\n", if ok { "yes" } else { "no" }),
        );
    }
    ok
}

/// Boot a guest whose only code is `mov al, 0x10; out 0xf4, al; hlt` under KVM: QEMU exits
/// with status (0x10 << 1) | 1 = 33 when the guest ran.
fn probe_kvm() -> bool {
    let Ok(dir) = tempfile::Builder::new().prefix("stagegate-kvm-").tempdir() else {
        return false;
    };
    let image = dir.path().join("probe.img");
    let mut sector = vec![0xB0, 0x10, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];
    sector.resize(510, 0);
    sector.extend([0x55, 0xAA]);
    if std::fs::write(&image, &sector).is_err() {
        return false;
    }
    run_probe(&image, Duration::from_secs(10)) == Some(33)
}

fn run_probe(image: &Path, limit: Duration) -> Option<i32> {
    let mut child = std::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-machine",
            "pc",
            "-m",
            "16",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive",
        ])
        .arg(format!("file={},format=raw,if=ide", image.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_misses_what_it_does_not_offer_or_holds_back() {
        let mut o = Offers::new(&["kvm".into(), "iommu".into()], false);
        assert!(o.missing(&["kvm".into()]).is_empty());
        assert_eq!(o.missing(&["arm64".into(), "kvm".into()]), vec!["arm64"]);
        o.unhealthy
            .insert("kvm".into(), "health check failed".into());
        assert_eq!(o.missing(&["kvm".into()]), vec!["kvm"]);
        assert_eq!(o.serving(), vec!["iommu"]);
    }

    #[test]
    fn labels_parse_from_commas_and_spaces_and_refuse_bad_ones() {
        assert_eq!(
            parse_labels("kvm, iommu x86_64").unwrap(),
            vec!["kvm", "iommu", "x86_64"]
        );
        assert!(parse_labels("KVM").is_err());
    }
}
