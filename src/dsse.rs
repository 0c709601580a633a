//! DSSE envelopes (Dead Simple Signing Envelope, the signature wrapper in-toto and SLSA
//! attestations travel in), signed with the same ed25519 key that signs stagegate's commits.
//!
//! An envelope is `{"payloadType", "payload" (base64), "signatures": [{"keyid", "sig"}]}`;
//! each signature is a raw ed25519 signature over the pre-authentication encoding
//! `DSSEv1 <len(type)> <type> <len(body)> <body>` ([`pae`]), so the payload type is signed
//! too. `keyid` is the key's SHA256 fingerprint as `ssh-keygen -l` prints it: a hint for
//! the verifier, never trusted by itself ([`Envelope::verify`] checks against the keys it
//! is given).
//!
//! Like [`crate::sshsig`], this module is a leaf: it knows keys and bytes, not stages.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use ssh_key::PublicKey;

/// The payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The media type of a DSSE envelope (as a file or an OCI layer).
pub const MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default)]
    pub keyid: String,
    /// The raw ed25519 signature over [`pae`], base64.
    pub sig: String,
}

/// Why an envelope does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsseError {
    #[error("not a DSSE envelope: {0}")]
    Malformed(String),
    #[error("the envelope carries no signature")]
    Unsigned,
    /// A key whose fingerprint the envelope names, but whose signature does not match.
    #[error("the signature by {keyid} does not match the payload (altered after signing)")]
    BadSignature { keyid: String },
    /// No key given verifies any signature.
    #[error("signed by {keyids}, which no trusted key matches")]
    Untrusted { keyids: String },
}

/// The pre-authentication encoding DSSE signs: `DSSEv1 SP LEN(type) SP type SP LEN(body) SP
/// body`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// `payload` of `payload_type`, signed by `signer`.
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        signer: &crate::sshsig::Signer,
    ) -> Result<Envelope, String> {
        let sig = signer.sign_raw(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload: STANDARD.encode(payload),
            signatures: vec![Signature {
                keyid: signer.fingerprint(),
                sig: STANDARD.encode(sig),
            }],
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Envelope, DsseError> {
        serde_json::from_slice(bytes).map_err(|e| DsseError::Malformed(e.to_string()))
    }

    /// The envelope as stored: compact JSON and a newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("an envelope serializes");
        out.push(b'\n');
        out
    }

    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, DsseError> {
        STANDARD
            .decode(self.payload.trim())
            .map_err(|e| DsseError::Malformed(format!("payload is not base64: {e}")))
    }

    /// The first of `keys` (name, key) that made one of the envelope's signatures.
    pub fn verify<'k>(&self, keys: &'k [(String, PublicKey)]) -> Result<&'k str, DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::Unsigned);
        }
        let payload = self.payload_bytes()?;
        let signed = pae(&self.payload_type, &payload);
        let mut named_but_bad = None;
        for s in &self.signatures {
            let Ok(raw) = STANDARD.decode(s.sig.trim()) else {
                continue;
            };
            for (name, key) in keys {
                let fp = crate::sshsig::fingerprint(key);
                match crate::sshsig::verify_raw(key, &signed, &raw) {
                    Ok(()) => return Ok(name),
                    Err(_) if fp == s.keyid => named_but_bad = Some(s.keyid.clone()),
                    Err(_) => {}
                }
            }
        }
        match named_but_bad {
            Some(keyid) => Err(DsseError::BadSignature { keyid }),
            None => Err(DsseError::Untrusted {
                keyids: self
                    .signatures
                    .iter()
                    .map(|s| s.keyid.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_specification_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }
}
