//! Masking secret values in a job's output before any byte of it is written.
//!
//! A [`Masker`] is fed the output as it arrives, in chunks of any size, and replaces every
//! occurrence of a secret with `***`, including one split across chunks: it holds back the
//! last few bytes of each chunk (fewer than the longest secret) until the next one comes.

/// What a secret is replaced with.
pub const MASK: &[u8] = b"***";

/// Values shorter than this are not masked: masking `1` or `ab` would garble every log
/// while hiding nothing worth hiding.
pub const MIN_SECRET_LEN: usize = 4;

/// The secret values to mask (already filtered and deduplicated).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: Vec<Vec<u8>>,
}

impl Secrets {
    /// Keep the values worth masking, longest first (so a secret containing another is
    /// masked whole).
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut values: Vec<Vec<u8>> = values
            .into_iter()
            .map(String::into_bytes)
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        values.dedup();
        Secrets { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret masked.
    pub fn mask_str(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let mut m = Masker::new(self.clone());
        let mut out = m.feed(text.as_bytes());
        out.extend(m.finish());
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A streaming masker: output in, masked output out.
pub struct Masker {
    secrets: Secrets,
    /// Raw bytes held back: they may be the start of a secret the next chunk completes.
    carry: Vec<u8>,
    longest: usize,
}

impl Masker {
    pub fn new(secrets: Secrets) -> Masker {
        let longest = secrets.values.iter().map(Vec::len).max().unwrap_or(0);
        Masker {
            secrets,
            carry: Vec::new(),
            longest,
        }
    }

    /// Whether there is anything to mask (when not, output can skip the masker).
    pub fn is_active(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Masked bytes that are safe to write now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.carry.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.carry);
        // Bytes from `safe` on could begin a secret that continues in the next chunk.
        let safe = buf.len().saturating_sub(self.longest - 1);
        let (out, consumed) = self.scan(&buf, safe);
        self.carry = buf[consumed..].to_vec();
        out
    }

    /// Whatever is still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.carry);
        let (out, _) = self.scan(&buf, buf.len());
        out
    }

    /// Mask `buf`, emitting every match that starts before `limit` and every plain byte
    /// before `limit`; returns the output and how much of `buf` it covers.
    fn scan(&self, buf: &[u8], limit: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(buf.len());
        let mut pos = 0;
        while pos < limit {
            let found = self
                .secrets
                .values
                .iter()
                .filter_map(|s| memchr::memmem::find(&buf[pos..], s).map(|i| (pos + i, s.len())))
                .min_by_key(|(at, len)| (*at, std::cmp::Reverse(*len)));
            match found {
                Some((at, len)) if at < limit => {
                    out.extend_from_slice(&buf[pos..at]);
                    out.extend_from_slice(MASK);
                    pos = at + len;
                }
                _ => {
                    out.extend_from_slice(&buf[pos..limit]);
                    pos = limit;
                }
            }
        }
        (out, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(secrets: &[&str], chunks: &[&str]) -> String {
        let mut m = Masker::new(Secrets::new(secrets.iter().map(|s| s.to_string())));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(m.feed(c.as_bytes()));
        }
        out.extend(m.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn secrets_are_masked_whole_and_across_chunks() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            (&["s3cret"], &["a s3cret b"], "a *** b"),
            (&["s3cret"], &["a s3", "cr", "et b"], "a *** b"),
            (&["s3cret"], &["s3crets3cret"], "******"),
            (&["s3cret", "s3cret-long"], &["x s3cret-long y"], "x *** y"),
            (&["abc"], &["abc"], "abc"),
            (&[], &["plain ", "text"], "plain text"),
            (&["tokenvalue"], &["toke", "nva", "l", "ue", "!"], "***!"),
            (&["tokenvalue"], &["tokenval"], "tokenval"),
        ];
        for (secrets, chunks, want) in cases {
            assert_eq!(masked(secrets, chunks), *want, "{secrets:?} {chunks:?}");
        }
    }
}
