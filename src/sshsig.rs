//! SSH signatures in git's own format (`gpg.format=ssh`): what `git verify-commit` checks
//! with an allowed-signers file, written and checked in process.
//!
//! A signed commit carries a `gpgsig` header holding an armored sshsig (namespace `git`,
//! SHA-512) over the commit object without that header. gix writes commits but signs them
//! only by running the program git's configuration names (`ssh-keygen -Y sign` with the key
//! in a file); stagegate builds the header itself with the `ssh-key` crate instead, so the
//! key is read once, stays in this process's memory, and is never handed to a program or
//! left in a file a job could read (DESIGN §4.16 b).
//!
//! The key comes from `STAGEGATE_SIGNING_KEY`: the private key's text (an OpenSSH
//! `-----BEGIN OPENSSH PRIVATE KEY-----` block, as a CI secret holds it) or the path of a
//! file holding it. [`install_from_env`] reads it before any thread or job starts, removes
//! the variable, overwrites its bytes in the block the process was started with (what
//! `/proc/PID/environ` shows a job looking at its parent), and marks the process
//! non-dumpable (its memory and environment are then closed to other processes of the
//! same user). Only ed25519 keys are read: the one kind `ssh-keygen` recommends and the one
//! every signature here can be checked with.
//!
//! This module is a leaf: it knows keys and bytes, not stages or ledgers.

use std::sync::OnceLock;

use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The variable the signing key comes from.
pub const KEY_VAR: &str = "STAGEGATE_SIGNING_KEY";
/// The namespace git signs commits in.
pub const NAMESPACE: &str = "git";

/// The key this process signs with.
pub struct Signer {
    key: PrivateKey,
    /// Where the key came from, for messages: `STAGEGATE_SIGNING_KEY` or a path.
    pub source: String,
    /// The key was read from a file (which a job of the same user could read too).
    pub from_file: bool,
}

static SIGNER: OnceLock<Option<Signer>> = OnceLock::new();

/// The key of this process, if [`install_from_env`] found one.
pub fn signer() -> Option<&'static Signer> {
    SIGNER.get().and_then(|s| s.as_ref())
}

/// Read the signing key from [`KEY_VAR`], if set, and keep it for [`signer`]; then take it
/// out of the environment (see the module's comment). Call once, first thing, before any
/// thread starts. An unset or empty variable is no key, not an error.
pub fn install_from_env() -> Result<(), String> {
    let Some(value) = std::env::var_os(KEY_VAR) else {
        let _ = SIGNER.set(None);
        return Ok(());
    };
    let value = value.to_string_lossy().into_owned();
    scrub(KEY_VAR);
    if value.trim().is_empty() {
        let _ = SIGNER.set(None);
        return Ok(());
    }
    let signer = load(&value)?;
    // Other processes of this user (the jobs) can no longer read this one's memory or
    // `/proc/PID/environ`; the children it starts are dumpable again once they exec.
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let _ = SIGNER.set(Some(signer));
    Ok(())
}

/// The signer for `value`: the key's text, or the path of a file holding it.
pub fn load(value: &str) -> Result<Signer, String> {
    let (text, source, from_file) = if value.trim_start().starts_with("-----BEGIN") {
        (value.to_string(), KEY_VAR.to_string(), false)
    } else {
        let text = std::fs::read_to_string(value)
            .map_err(|e| format!("{KEY_VAR} names {value}, which cannot be read: {e}"))?;
        (text, value.to_string(), true)
    };
    let key = PrivateKey::from_openssh(text.trim().as_bytes())
        .map_err(|e| format!("{KEY_VAR} ({source}) is not an OpenSSH private key: {e}"))?;
    if key.is_encrypted() {
        return Err(format!(
            "the signing key in {source} is protected by a passphrase, which stagegate cannot ask for; keep an unprotected copy in a secret store and pass its text in {KEY_VAR}"
        ));
    }
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(format!(
            "the signing key in {source} is {}; stagegate signs with ed25519 keys (`ssh-keygen -t ed25519`)",
            key.algorithm()
        ));
    }
    Ok(Signer {
        key,
        source,
        from_file,
    })
}

impl Signer {
    /// The armored signature of `data`, as a commit's `gpgsig` header holds it (no
    /// trailing newline: the header's line end is git's).
    pub fn sign(&self, data: &[u8]) -> Result<String, String> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, data)
            .map_err(|e| format!("signing with {}: {e}", self.source))?;
        let pem = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| format!("encoding a signature: {e}"))?;
        Ok(pem.trim_end().to_string())
    }

    /// The public half, as one `.pub` line.
    pub fn public_line(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// A raw ed25519 signature of `data` (64 bytes), as DSSE envelopes carry it
    /// ([`crate::dsse`]): no namespace, no SSH framing.
    pub fn sign_raw(&self, data: &[u8]) -> Result<[u8; 64], String> {
        use ed25519_dalek::Signer as _;
        let pair = self
            .key
            .key_data()
            .ed25519()
            .ok_or_else(|| format!("the signing key in {} is not ed25519", self.source))?;
        let key = ed25519_dalek::SigningKey::try_from(pair)
            .map_err(|e| format!("the signing key in {}: {e}", self.source))?;
        Ok(key.sign(data).to_bytes())
    }
}

/// Whether `sig` is `key`'s raw ed25519 signature of `data` (see [`Signer::sign_raw`]).
pub fn verify_raw(key: &PublicKey, data: &[u8], sig: &[u8]) -> Result<(), String> {
    use ed25519_dalek::Verifier as _;
    let public = key
        .key_data()
        .ed25519()
        .ok_or_else(|| format!("{} keys are not read; use ed25519", key.algorithm()))?;
    let key = ed25519_dalek::VerifyingKey::try_from(public).map_err(|e| e.to_string())?;
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|e| e.to_string())?;
    key.verify(data, &sig).map_err(|e| e.to_string())
}

/// An ed25519 OpenSSH public key line, or why it is not one.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    let key = PublicKey::from_openssh(line.trim()).map_err(|e| e.to_string())?;
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(format!(
            "{} keys are not read; use ed25519",
            key.algorithm()
        ));
    }
    Ok(key)
}

/// The key that made `armored` over `data`, when the signature is good. The key is the
/// signature's own: whether it is trusted is the caller's question.
pub fn verify(armored: &[u8], data: &[u8]) -> Result<PublicKey, String> {
    let sig = SshSig::from_pem(armored).map_err(|e| format!("not an SSH signature: {e}"))?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "signed in namespace {:?}, not git's",
            sig.namespace()
        ));
    }
    let key = PublicKey::from(sig.public_key().clone());
    key.verify(NAMESPACE, data, &sig)
        .map_err(|e| format!("the signature does not match: {e}"))?;
    Ok(key)
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Remove `name` from the environment and overwrite its bytes where the process's initial
/// environment block holds them (`/proc/PID/environ` reads that block, whatever the
/// process unset since).
fn scrub(name: &str) {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    let prefix = format!("{name}=");
    // SAFETY: called before any thread starts (see `install_from_env`); the strings
    // `environ` points at stay allocated after `unsetenv` drops them from the array.
    unsafe {
        let mut found: Vec<(*mut libc::c_char, usize)> = Vec::new();
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            let s = std::ffi::CStr::from_ptr(*p).to_bytes();
            if s.starts_with(prefix.as_bytes()) {
                found.push((*p, s.len()));
            }
            p = p.add(1);
        }
        std::env::remove_var(name);
        for (s, len) in found {
            // Keep the name (a reader sees the variable was there), wipe the value.
            std::ptr::write_bytes(s.add(prefix.len()), b'x', len - prefix.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDdmQWS9E86WaYeoMndigZzr9i1k3i6VYXR17fIPGQfZgAAAJhJdtuESXbb
hAAAAAtzc2gtZWQyNTUxOQAAACDdmQWS9E86WaYeoMndigZzr9i1k3i6VYXR17fIPGQfZg
AAAEB2zMciai9ThAnmzrx11Kywuz7VxbcLX0BXnt5EfudV492ZBZL0TzpZph6gyd2KBnOv
2LWTeLpVhdHXt8g8ZB9mAAAADnRlc3RAc3RhZ2VnYXRlAQIDBAUGBw==
-----END OPENSSH PRIVATE KEY-----";

    #[test]
    fn a_signature_verifies_and_names_its_key_and_an_edit_breaks_it() {
        let s = load(KEY).unwrap();
        let sig = s.sign(b"tree 123\n\nmessage\n").unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"));
        let key = verify(sig.as_bytes(), b"tree 123\n\nmessage\n").unwrap();
        assert_eq!(fingerprint(&key), s.fingerprint());
        assert!(verify(sig.as_bytes(), b"tree 124\n\nmessage\n").is_err());
        assert_eq!(
            parse_public_key(&s.public_line()).unwrap().key_data(),
            key.key_data()
        );
    }
}
