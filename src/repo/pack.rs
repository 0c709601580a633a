//! Writing a batch of new objects as one pack, instead of one loose file each.
//!
//! A ledger commit of N results adds about 4N objects (a blob and the trees above it). As
//! loose objects that is 4N files to create — on a busy file system the most expensive part
//! of running short jobs — and 4N files to open again whenever they are read. Written as
//! one pack with its index, it is two files, and reads go through one index.
//!
//! Objects are first written into the repository's in-memory object store
//! ([`gix::Repository::with_object_memory`]), then taken out and packed here. The pack and
//! its index are written directly from what is known of each object (its id, kind and
//! compressed bytes), as git's `pack-objects` does: indexing the pack afterwards, as
//! `index-pack` does for a pack from elsewhere, would inflate and hash every object again
//! (a fifth of the recorder's CPU in a run of short jobs, and the whole of the fold that
//! ends it).
//!
//! A pack is written with a `.keep` file beside it, so that a `git gc` running meanwhile
//! cannot drop objects no ref reaches yet; the writer releases it ([`Written::release`])
//! once the ref is moved, or a kept pack would never be folded by `git gc --auto`. A writer
//! that writes many packs in one go (a run recording results as jobs finish) folds them
//! into one at the end ([`Fold`]): one pack per run, not one per commit.

use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::zlib::stream::deflate::{Compress, FlushCompress};
use gix_pack::data::output;

use crate::error::{Error, IoContext, Result};

/// An object to pack: its id, kind and content.
pub type Object = (ObjectId, gix::objs::Kind, Vec<u8>);

/// A pack [`write`] wrote, still kept from `git gc` until [`Written::release`].
#[derive(Debug)]
pub struct Written {
    pack: PathBuf,
    keep: Option<PathBuf>,
}

impl Written {
    /// Let `git gc` fold this pack: call once a ref reaches its objects (or once they
    /// turned out not to be needed, as after a lost compare-and-swap).
    pub fn release(&mut self) {
        if let Some(keep) = self.keep.take() {
            // Already gone is fine: nothing is kept either way.
            let _ = std::fs::remove_file(keep);
        }
    }

    /// Remove the pack, its index and its keep file: its objects are in another pack now.
    fn remove(mut self) {
        // The index first: a reader that finds no index never looks for the pack.
        let _ = std::fs::remove_file(self.pack.with_extension("idx"));
        let _ = std::fs::remove_file(&self.pack);
        self.release();
    }
}

/// Whether `git gc --auto` would do anything in `repo`: git's own test (`need_to_gc`),
/// more packs without a `.keep` than `gc.autoPackLimit` (50), or more loose objects in
/// `objects/17` than `gc.auto` (6,700) / 256. Starting git to find out that nothing is due
/// costs a run a few milliseconds at its end; when in doubt (a directory that cannot be
/// read), it is due and git decides.
pub fn gc_due(repo: &super::Repo) -> bool {
    let config = repo.git.config_snapshot();
    let auto = config.integer("gc.auto").unwrap_or(6700);
    if auto <= 0 {
        return false;
    }
    let pack_limit = config.integer("gc.autoPackLimit").unwrap_or(50);
    let objects = repo.git.common_dir().join("objects");
    if pack_limit > 0 {
        let Ok(dir) = std::fs::read_dir(objects.join("pack")) else {
            return true;
        };
        let names: std::collections::HashSet<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let packs = names
            .iter()
            .filter_map(|n| n.strip_suffix(".pack"))
            .filter(|stem| !names.contains(&format!("{stem}.keep")))
            .count();
        if packs as i64 > pack_limit {
            return true;
        }
    }
    let threshold = (auto + 255) / 256;
    let loose = match std::fs::read_dir(objects.join("17")) {
        Ok(dir) => dir
            .flatten()
            .filter(|e| {
                let n = e.file_name();
                n.len() == 38
                    && n.as_encoded_bytes()
                        .iter()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(_) => return true,
    };
    loose as i64 > threshold
}

/// `objects` compressed as pack entries.
pub fn compress(objects: &[Object]) -> Result<Vec<output::Entry>> {
    // One compressor for every object: a compressor's tables are a few hundred KiB to
    // allocate and zero, and one per object cost a run of 1,000 jobs ~1 GiB of memset and
    // 400 MiB of fragmented heap.
    let mut compressor = Compress::new(gix::zlib::Compression::BEST_SPEED);
    // Likewise one output buffer: zeroing 16 KiB for each object was half of compressing.
    let mut buf = vec![0u8; 16 * 1024];
    let mut entries = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        entries.push(output::Entry {
            id: *id,
            kind: output::entry::Kind::Base(*kind),
            decompressed_size: data.len(),
            compressed_data: deflate(&mut compressor, &mut buf, data)
                .map_err(|e| Error::infra(format!("compressing object {id} for a pack: {e}")))?,
        });
    }
    Ok(entries)
}

/// Write `entries` ([`compress`]) as a pack (with its index) into `objects_dir/pack`.
/// Objects already in the repository are fine to include; an object listed twice is
/// packed once. `None` when there was nothing to write, or when a pack with exactly these
/// objects was already there.
pub fn write(objects_dir: &Path, entries: Vec<output::Entry>) -> Result<Option<Written>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let (pack, index, hash) = encode(&entries)?;
    let dir = objects_dir.join("pack");
    std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    let stem = dir.join(format!("pack-{hash}"));
    let (pack_path, index_path, keep) = (
        stem.with_extension("pack"),
        stem.with_extension("idx"),
        stem.with_extension("keep"),
    );
    if index_path.exists() && pack_path.exists() {
        return Ok(None);
    }
    // Kept before it can be seen: a `git gc` running meanwhile must not drop objects no
    // ref reaches yet. Then the pack, then its index: a reader looks for a pack only once
    // it found its index.
    std::fs::write(&keep, "stagegate: objects a ref does not reach yet\n")
        .io_context(|| format!("writing {}", keep.display()))?;
    let written = Written {
        pack: pack_path,
        keep: Some(keep),
    };
    let persist = |bytes: &[u8], path: &Path| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = tempfile::Builder::new()
            .prefix(".tmp-pack-")
            .tempfile_in(&dir)?;
        f.write_all(bytes)?;
        // Read-only, as git leaves its packs.
        std::fs::set_permissions(
            f.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o444),
        )?;
        f.persist(path).map(drop).map_err(|e| e.error)
    };
    if let Err(e) = persist(&pack, &written.pack).and_then(|()| persist(&index, &index_path)) {
        written.remove();
        return Err(e).io_context(|| format!("writing {}", stem.display()));
    }
    Ok(Some(written))
}

/// `entries` as a pack (version 2, its checksum at the end) and that pack's index
/// (version 2), the bytes git writes for them, with the pack's checksum.
fn encode(entries: &[output::Entry]) -> Result<(Vec<u8>, Vec<u8>, ObjectId)> {
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    let entries: Vec<&output::Entry> = entries.iter().filter(|e| seen.insert(e.id)).collect();
    let size: usize = entries.iter().map(|e| e.compressed_data.len() + 10).sum();
    let mut pack = Vec::with_capacity(12 + size + 20);
    pack.extend_from_slice(b"PACK");
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    // Each object's id, the CRC-32 of its bytes in the pack, and where they start.
    let mut located: Vec<(ObjectId, u32, u64)> = Vec::with_capacity(entries.len());
    for e in entries {
        let output::entry::Kind::Base(_) = e.kind else {
            return Err(Error::infra(format!(
                "object {} is a delta; only whole objects are packed here",
                e.id
            )));
        };
        let start = pack.len();
        e.to_entry_header(gix_pack::data::Version::V2, |_| 0)
            .write_to(e.decompressed_size as u64, &mut pack)
            .map_err(|err| Error::infra(format!("packing object {}: {err}", e.id)))?;
        pack.extend_from_slice(&e.compressed_data);
        located.push((e.id, crc32fast::hash(&pack[start..]), start as u64));
    }
    let hash = sha1(&pack)?;
    pack.extend_from_slice(hash.as_slice());

    located.sort_unstable_by_key(|&(id, ..)| id);
    let mut index = Vec::with_capacity(8 + 256 * 4 + located.len() * 28 + 40);
    index.extend_from_slice(b"\xfftOc");
    index.extend_from_slice(&2u32.to_be_bytes());
    let mut fan_out = [0u32; 256];
    for (id, ..) in &located {
        fan_out[usize::from(id.first_byte())] += 1;
    }
    let mut below = 0u32;
    for n in fan_out {
        below += n;
        index.extend_from_slice(&below.to_be_bytes());
    }
    for (id, ..) in &located {
        index.extend_from_slice(id.as_slice());
    }
    for (_, crc, _) in &located {
        index.extend_from_slice(&crc.to_be_bytes());
    }
    let (small, large) = index_offsets(located.iter().map(|&(.., offset)| offset));
    for o in small {
        index.extend_from_slice(&o.to_be_bytes());
    }
    for o in large {
        index.extend_from_slice(&o.to_be_bytes());
    }
    index.extend_from_slice(hash.as_slice());
    let own = sha1(&index)?;
    index.extend_from_slice(own.as_slice());
    Ok((pack, index, hash))
}

/// A version 2 index's offsets: one 32-bit entry per object, and the table of 64-bit
/// offsets that entries past 2 GiB name by their place in it (high bit set).
fn index_offsets(offsets: impl Iterator<Item = u64>) -> (Vec<u32>, Vec<u64>) {
    let mut large = Vec::new();
    let small = offsets
        .map(|offset| match u32::try_from(offset) {
            Ok(o) if o < 0x8000_0000 => o,
            _ => {
                large.push(offset);
                0x8000_0000 | (large.len() - 1) as u32
            }
        })
        .collect();
    (small, large)
}

fn sha1(bytes: &[u8]) -> Result<ObjectId> {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(bytes);
    h.try_finalize()
        .map_err(|e| Error::infra(format!("hashing a pack: {e}")))
}

/// `data` as one zlib stream, compressed with `compressor` (reset first) through `buf`.
fn deflate(
    compressor: &mut Compress,
    buf: &mut [u8],
    data: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    compressor.reset();
    let (in0, out0) = (compressor.total_in(), compressor.total_out());
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = (compressor.total_in() - in0) as usize;
        let before = compressor.total_out();
        let status = compressor
            .compress(&data[consumed..], buf, FlushCompress::Finish)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&buf[..(compressor.total_out() - before) as usize]);
        if status == gix::zlib::Status::StreamEnd {
            debug_assert_eq!(compressor.total_out() - out0, out.len() as u64);
            return Ok(out);
        }
    }
}

/// The packs one writer wrote one after another, and their objects (compressed, as they
/// were written), to be folded into one pack when it is done: folding copies each object's
/// compressed bytes rather than compressing it again. Objects are kept in memory up to
/// [`Fold::LIMIT`] bytes; past that the packs stay as they are (released, so `git gc
/// --auto` folds them).
#[derive(Default)]
pub struct Fold {
    entries: Vec<output::Entry>,
    seen: std::collections::HashSet<ObjectId>,
    bytes: usize,
    packs: Vec<Written>,
    overflow: bool,
}

impl Fold {
    /// The most compressed object bytes held for folding (a run of 1,000 jobs holds about
    /// one MiB).
    pub const LIMIT: usize = 32 << 20;

    /// Note a pack written (and released) with `entries`.
    pub fn add(&mut self, pack: Written, entries: Vec<output::Entry>) {
        self.packs.push(pack);
        if self.overflow {
            return;
        }
        for e in entries {
            // A batch rebuilt after a lost race writes some objects again: pack each once.
            if self.seen.insert(e.id) {
                self.bytes += e.compressed_data.len();
                self.entries.push(e);
            }
        }
        if self.bytes > Self::LIMIT {
            self.overflow = true;
            self.entries = Vec::new();
            self.seen = Default::default();
        }
    }

    /// Write every object noted as one pack and remove the packs they came in; nothing to
    /// do for fewer than two. The new pack is complete on disk before any old one goes, so
    /// a reader finds every object throughout.
    pub fn finish(self, objects_dir: &Path) -> Result<()> {
        if self.packs.len() < 2 || self.overflow {
            return Ok(());
        }
        if let Some(mut folded) = write(objects_dir, self.entries)? {
            folded.release();
        }
        for p in self.packs {
            p.remove();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::objs::Kind;

    fn object(kind: Kind, data: &[u8]) -> Object {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, data).unwrap();
        (id, kind, data.to_vec())
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        crate::repo::remote::git(dir, args).unwrap()
    }

    #[test]
    fn a_written_pack_and_index_are_the_bytes_git_and_gix_make_of_it() {
        let t = tempfile::tempdir().unwrap();
        git(t.path(), &["init", "-q", "--bare", "repo.git"]);
        let repo = t.path().join("repo.git");
        let blob = object(Kind::Blob, b"verdict: pass\n");
        // Larger than one compression buffer, and not very compressible.
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        let big = object(Kind::Blob, &big);
        let mut tree = Vec::new();
        for (name, id) in [("a.yaml", blob.0), ("b.bin", big.0)] {
            tree.extend_from_slice(format!("100644 {name}\0").as_bytes());
            tree.extend_from_slice(id.as_slice());
        }
        let tree = object(Kind::Tree, &tree);
        // The blob twice, as a batch rebuilt after a lost race may list it.
        let objects = vec![blob.clone(), tree.clone(), big.clone(), blob.clone()];
        let written = write(&repo.join("objects"), compress(&objects).unwrap())
            .unwrap()
            .expect("a new pack");
        let index = written.pack.with_extension("idx");
        assert!(
            written.keep.as_ref().unwrap().exists(),
            "kept until released"
        );

        // git reads it: the pack verifies, and every object is there once.
        let verified = git(&repo, &["verify-pack", "-v", index.to_str().unwrap()]);
        assert!(verified.contains("non delta: 3 objects"), "{verified}");
        assert_eq!(
            git(&repo, &["cat-file", "-p", &blob.0.to_string()]),
            "verdict: pass\n"
        );
        assert_eq!(
            git(&repo, &["ls-tree", "--name-only", &tree.0.to_string()]),
            "a.yaml\nb.bin\n"
        );
        assert_eq!(
            git(&repo, &["cat-file", "-s", &big.0.to_string()]).trim(),
            "800000"
        );
        // The index is the one gix makes when it indexes the same pack itself.
        let pack = std::fs::read(&written.pack).unwrap();
        let other = t.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let indexed = gix_pack::Bundle::write_to_directory(
            &mut std::io::Cursor::new(pack),
            Some(&other),
            &mut gix::progress::Discard,
            &std::sync::atomic::AtomicBool::new(false),
            None::<gix::objs::find::Never>,
            gix::hash::Kind::Sha1,
            Default::default(),
        )
        .unwrap();
        assert_eq!(
            indexed.index_path.as_ref().and_then(|p| p.file_name()),
            index.file_name(),
            "same pack checksum"
        );
        assert!(
            std::fs::read(indexed.index_path.unwrap()).unwrap() == std::fs::read(&index).unwrap(),
            "the index differs from gix's"
        );

        // The same objects again: that pack is there already.
        assert!(
            write(&repo.join("objects"), compress(&objects).unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn offsets_past_two_gib_go_to_the_table_of_large_offsets() {
        let (small, large) = index_offsets([12, 0x7fff_ffff, 0x8000_0000, 5 << 32].into_iter());
        assert_eq!(small, vec![12, 0x7fff_ffff, 0x8000_0000, 0x8000_0001]);
        assert_eq!(large, vec![0x8000_0000, 5 << 32]);
    }
}
