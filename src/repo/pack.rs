//! Writing a batch of new objects as one pack, instead of one loose file each.
//!
//! A ledger commit of N results adds about 4N objects (a blob and the trees above it). As
//! loose objects that is 4N files to create — on a busy file system the most expensive part
//! of running short jobs — and 4N files to open again whenever they are read. Written as
//! one pack with its index, it is two files, and reads go through one index.
//!
//! Objects are first written into the repository's in-memory object store
//! ([`gix::Repository::with_object_memory`]), then taken out and packed here.

use std::io::Cursor;
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix_pack::data::output;

use crate::error::{Context, Error, Result};

/// Write `objects` as a pack (with its index) into `objects/pack` of the repository at
/// `git_dir`. Objects already in the repository are fine to include.
pub fn write(
    objects_dir: &std::path::Path,
    objects: &[(ObjectId, gix::objs::Kind, Vec<u8>)],
) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let mut entries = Vec::with_capacity(objects.len());
    for (id, kind, data) in objects {
        let count = output::Count::from_data(*id, None);
        let entry = output::Entry::from_data(
            &count,
            &gix::objs::Data::new(data, *kind, gix::hash::Kind::Sha1),
            gix::zlib::Compression::BEST_SPEED,
        )
        .context(|| format!("packing object {id}"))?;
        entries.push(entry);
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
    gix_pack::Bundle::write_to_directory(
        &mut Cursor::new(pack),
        Some(&dir),
        &mut gix::progress::Discard,
        &AtomicBool::new(false),
        None::<gix::objs::find::Never>,
        gix::hash::Kind::Sha1,
        gix_pack::bundle::write::Options::default(),
    )
    .context(|| format!("writing a pack into {}", dir.display()))?;
    Ok(())
}
