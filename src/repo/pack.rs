//! Writing a batch of new objects as one pack, instead of one loose file each.
//!
//! A ledger commit of N results adds about 4N objects (a blob and the trees above it). As
//! loose objects that is 4N files to create — on a busy file system the most expensive part
//! of running short jobs — and 4N files to open again whenever they are read. Written as
//! one pack with its index, it is two files, and reads go through one index.
//!
//! Objects are first written into the repository's in-memory object store
//! ([`gix::Repository::with_object_memory`]), then taken out and packed here.
//!
//! A pack is written with a `.keep` file beside it, so that a `git gc` running meanwhile
//! cannot drop objects no ref reaches yet; the writer releases it ([`Written::release`])
//! once the ref is moved, or a kept pack would never be folded by `git gc --auto`. A writer
//! that writes many packs in one go (a run recording results as jobs finish) folds them
//! into one at the end ([`Fold`]): one pack per run, not one per commit.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::zlib::stream::deflate::{Compress, FlushCompress};
use gix_pack::data::output;

use crate::error::{Context, Error, Result};

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
    let mut entries = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        entries.push(output::Entry {
            id: *id,
            kind: output::entry::Kind::Base(*kind),
            decompressed_size: data.len(),
            compressed_data: deflate(&mut compressor, data)
                .map_err(|e| Error::infra(format!("compressing object {id} for a pack: {e}")))?,
        });
    }
    Ok(entries)
}

/// Write `entries` ([`compress`]) as a pack (with its index) into `objects_dir/pack`.
/// Objects already in the repository are fine to include. `None` when there was nothing to
/// write, or when a pack with exactly these objects was already there.
pub fn write(objects_dir: &Path, entries: Vec<output::Entry>) -> Result<Option<Written>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let mut pack = Vec::new();
    let n = entries.len() as u32;
    let writer = output::bytes::FromEntriesIter::new(
        std::iter::once(Ok(entries)),
        &mut pack,
        n,
        gix_pack::data::Version::V2,
        gix::hash::Kind::Sha1,
    );
    for r in writer {
        r.context(|| "writing a pack".into())?;
    }
    let dir = objects_dir.join("pack");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        context: format!("creating {}", dir.display()),
        source: e,
    })?;
    let outcome = gix_pack::Bundle::write_to_directory(
        &mut Cursor::new(pack),
        Some(&dir),
        &mut gix::progress::Discard,
        &AtomicBool::new(false),
        None::<gix::objs::find::Never>,
        gix::hash::Kind::Sha1,
        gix_pack::bundle::write::Options {
            // Indexing a ledger commit's few objects on every core spawned a thread per core
            // per commit (and read the cgroup's CPU quota each time to count them): a run of
            // 1,000 short jobs started ~360 threads. One is plenty for packs this size.
            thread_limit: Some(1),
            ..Default::default()
        },
    )
    .context(|| format!("writing a pack into {}", dir.display()))?;
    Ok(outcome.data_path.map(|pack| Written {
        pack,
        keep: outcome.keep_path,
    }))
}

/// `data` as one zlib stream, compressed with `compressor` (reset first).
fn deflate(compressor: &mut Compress, data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    compressor.reset();
    let (in0, out0) = (compressor.total_in(), compressor.total_out());
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let consumed = (compressor.total_in() - in0) as usize;
        let before = compressor.total_out();
        let status = compressor
            .compress(&data[consumed..], &mut buf, FlushCompress::Finish)
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
