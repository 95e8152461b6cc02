//! A blob's pair file while pairs are written to it, and the ways a pair
//! is written: buffered, or copied (and summed) into a direct-I/O buffer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use floe_codec::SliverPair;

use super::lock;

/// A blob's pair file, open while pairs are written to it.
pub(super) struct BlobFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// The next free block-aligned offset.
    pub(super) end: Mutex<u64>,
    /// Set when the blob's files are removed (under the blob's lock: a pair
    /// written through this handle went to an unlinked file) or a write or
    /// sync through it failed: a pair written through it must not be
    /// recorded.
    pub(super) removed: AtomicBool,
    /// Writes through this handle that have completed, counted as each
    /// completes: a sync begun after the count reached `n` covers the
    /// first `n`.
    pub(super) written: AtomicU64,
    /// Held across each sync, with the count of completed writes the last
    /// successful sync covered: a writer covered by it skips its own sync
    /// (pairs of a blob arrive at once; each synced alone). A sync that
    /// reports an error (perhaps another writer's lost write) retires the
    /// handle before any later sync can succeed for that writer.
    pub(super) sync: Mutex<u64>,
    /// The retired handle this one replaced, kept while this one is in the
    /// map: writers may still write through it below this one's end.
    pub(super) before: Option<Arc<BlobFile>>,
    /// Runs before each sync in tests, and fails it with its error.
    #[cfg(test)]
    pub(super) on_sync: Option<SyncHook>,
}

/// What tests run before each sync of a pair file: to count syncs, hold
/// one while others write, or fail one.
#[cfg(test)]
pub(super) type SyncHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

impl BlobFile {
    /// No pair written through this handle may be recorded any more: the blob's
    /// files were removed, or a write or sync through it failed (a sync can
    /// report another writer's lost write once, and then succeed for that
    /// writer). A retired handle in the map stays there until its last
    /// writer is gone, unless a new writer first replaces it with a fresh
    /// handle that reserves past its end.
    pub(super) fn retire(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// Reserves `bytes` at the end, unless the handle is retired: checked
    /// under the end's lock, so once a handle is retired no writer reserves
    /// from it, and a fresh handle reserving past its end overlaps none of
    /// its pairs.
    pub(super) fn reserve(&self, bytes: u64) -> Option<u64> {
        let mut end = lock(&self.end);
        if self.removed.load(Ordering::Acquire) {
            return None;
        }
        let at = *end;
        *end += bytes;
        Some(at)
    }

    /// Makes the write that just completed through this handle durable: by a
    /// sync of its own, or by one that began after it completed.
    pub(super) fn sync_through(&self) -> io::Result<()> {
        let mine = self.written.fetch_add(1, Ordering::AcqRel) + 1;
        let mut synced = lock(&self.sync);
        if *synced >= mine {
            return Ok(());
        }
        let covers = self.written.load(Ordering::Acquire);
        // A failed sync retires the handle before the lock goes.
        self.before_sync()
            .and_then(|()| self.file.sync_data())
            .inspect_err(|_| self.retire())?;
        *synced = covers;
        Ok(())
    }

    #[cfg(test)]
    fn before_sync(&self) -> io::Result<()> {
        self.on_sync.as_ref().map_or(Ok(()), |hook| hook())
    }

    #[cfg(not(test))]
    fn before_sync(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a writer holds `file` (held in the map), or a handle it
/// replaced: while one does, the map keeps `file`, whose end is past every
/// reservation of theirs (a handle opened afresh takes its end from the
/// file's length, which a write still in flight has not reached).
pub(super) fn in_use(file: &Arc<BlobFile>) -> bool {
    // Each is held once already: by the map, or by its successor.
    std::iter::successors(Some(file), |f| f.before.as_ref()).any(|f| Arc::strong_count(f) > 1)
}

/// Writes `pair` at `offset` through the page cache; returns its slivers'
/// checksums.
pub(super) fn write_buffered(file: &File, offset: u64, pair: &SliverPair) -> io::Result<[u32; 2]> {
    file.write_all_at(&pair.primary.data, offset)?;
    file.write_all_at(
        &pair.secondary.data,
        offset + pair.primary.data.len() as u64,
    )?;
    Ok([&pair.primary.data, &pair.secondary.data].map(|data| crc32c::crc32c(data)))
}

/// Copies `from` into `to` (as long) and returns the bytes' CRC-32C, each
/// piece summed while in cache: a pass of its own read every sliver from
/// memory again, on a busy node from cold memory.
pub(super) fn copy_summed(to: &mut [u8], from: &[u8]) -> u32 {
    assert_eq!(to.len(), from.len(), "a sliver copied whole");
    let pieces = to.chunks_mut(32 << 10).zip(from.chunks(32 << 10));
    pieces.fold(0, |crc, (to, from)| {
        to.copy_from_slice(from);
        crc32c::crc32c_append(crc, to)
    })
}
