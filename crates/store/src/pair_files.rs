//! Large sliver pairs live in files of their own, one per blob and shard,
//! beside the database: `pairs/<blob ID in hex>/<shard>`, the primary
//! sliver's bytes followed by the secondary's.
//!
//! A pair is written to `pairs/.tmp/`, synced, and renamed into its blob's
//! directory, which is synced too, before the database records it; so a
//! recorded pair always has its complete, durable file, and a confirmation
//! needs nothing more than the WAL sync. Through RocksDB the same bytes
//! were copied into a write batch, then into the memtable, then into a
//! blob file at a flush the confirmation had to wait for.
//!
//! What a crash can leave behind (a file in `.tmp/`, or a renamed file the
//! database never recorded) is removed when the store opens.
//!
//! Where the file system takes direct I/O, pairs are written with it, from
//! a page-aligned buffer and padded to whole blocks (the records say where
//! each sliver ends): on a machine whose memory is mostly page cache, a
//! buffered write first makes the kernel reclaim pages for the copy, which
//! costs more than the copy into the aligned buffer.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use floe_codec::{BlobId, ShardIndex, SliverPair};

use crate::envelope::hex;
use crate::error::StoreError;

/// The directory under the database holding the pair files.
const DIR: &str = "pairs";
/// Where pairs are written before they are renamed into place.
const TMP: &str = ".tmp";
/// Direct I/O writes whole blocks of this many bytes, from buffers aligned
/// to it (a page covers every common logical block size).
pub(crate) const BLOCK: usize = 4096;
/// Aligned buffers kept for reuse between writes.
const SPARE_BUFFERS: usize = 4;

/// The pair files of one store.
pub(crate) struct PairFiles {
    root: PathBuf,
    /// Names temporary files uniquely within this process.
    next_tmp: AtomicU64,
    /// Bytes in pair files, for metrics.
    bytes: AtomicU64,
    /// Write with direct I/O.
    direct: bool,
    /// Page-aligned buffers for direct I/O, kept between writes.
    buffers: Mutex<Vec<memmap2::MmapMut>>,
}

fn file_error(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::File { path, what, source }
}

/// Makes `dir`'s entries (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_error(dir, "syncing the directory"))
}

impl PairFiles {
    /// Opens (creating) the pair directory under `db_path`, clearing what
    /// an interrupted write left in `.tmp/`. `direct`: the file system takes
    /// direct I/O.
    pub(crate) fn open(db_path: &Path, direct: bool) -> Result<PairFiles, StoreError> {
        let root = db_path.join(DIR);
        let tmp = root.join(TMP);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(file_error(&tmp, "clearing leftovers"))?;
        }
        fs::create_dir_all(&tmp).map_err(file_error(&tmp, "creating"))?;
        sync_dir(&root)?;
        sync_dir(db_path)?;
        Ok(PairFiles {
            root,
            next_tmp: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            direct,
            buffers: Mutex::new(Vec::new()),
        })
    }

    fn blob_dir(&self, blob_id: &BlobId) -> PathBuf {
        self.root.join(hex(&blob_id.0))
    }

    pub(crate) fn path(&self, blob_id: &BlobId, shard: ShardIndex) -> PathBuf {
        self.blob_dir(blob_id).join(shard.0.to_string())
    }

    /// Writes `pair` to a temporary file and syncs it; [`PairFiles::place`]
    /// then puts it where readers find it. The slow part, done before the
    /// caller takes the blob's lock.
    pub(crate) fn stage(&self, pair: &SliverPair) -> Result<Staged, StoreError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join(TMP).join(n.to_string());
        let written = if self.direct {
            self.write_direct(&path, pair)
        } else {
            write_buffered(&path, pair)
        }
        .and_then(|file| file.sync_data())
        .map_err(file_error(&path, "writing a sliver pair"));
        // What the file takes on disk, padding included.
        let bytes = written.and_then(|()| {
            fs::metadata(&path)
                .map(|m| m.len())
                .map_err(file_error(&path, "measuring a sliver pair"))
        });
        match bytes {
            Ok(bytes) => Ok(Staged { path, bytes }),
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Writes `pair` with direct I/O, padded with zeros to whole blocks.
    #[cfg(target_os = "linux")]
    fn write_direct(&self, path: &Path, pair: &SliverPair) -> io::Result<File> {
        let (primary, secondary) = (&pair.primary.data, &pair.secondary.data);
        let len = primary.len() + secondary.len();
        let padded = len.div_ceil(BLOCK) * BLOCK;
        let mut buffer = self.buffer(padded)?;
        buffer[..primary.len()].copy_from_slice(primary);
        buffer[primary.len()..len].copy_from_slice(secondary);
        buffer[len..padded].fill(0);
        let written = create_direct(path, &buffer[..padded]);
        let mut spare = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if spare.len() < SPARE_BUFFERS {
            spare.push(buffer);
        }
        written
    }

    #[cfg(not(target_os = "linux"))]
    fn write_direct(&self, path: &Path, pair: &SliverPair) -> io::Result<File> {
        write_buffered(path, pair)
    }

    /// A page-aligned buffer of at least `len` bytes: a spare one, or a
    /// new anonymous map.
    fn buffer(&self, len: usize) -> io::Result<memmap2::MmapMut> {
        let mut spare = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = spare.iter().position(|b| b.len() >= len) {
            return Ok(spare.swap_remove(at));
        }
        drop(spare);
        // Rounded up so pairs of one blob size share buffers.
        memmap2::MmapMut::map_anon(len.div_ceil(1 << 20) * (1 << 20))
    }

    /// Moves a staged pair into place, durably. Called under the blob's
    /// lock, so the blob's directory is created (and its creation synced)
    /// once.
    pub(crate) fn place(
        &self,
        mut staged: Staged,
        blob_id: &BlobId,
        shard: ShardIndex,
    ) -> Result<(), StoreError> {
        let dir = self.blob_dir(blob_id);
        match fs::create_dir(&dir) {
            Ok(()) => {
                if let Err(e) = sync_dir(&self.root) {
                    // Not left behind unsynced for the next pair to trust.
                    let _ = fs::remove_dir(&dir);
                    return Err(e);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(file_error(&dir, "creating")(e)),
        }
        let path = self.path(blob_id, shard);
        let replaced = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        fs::rename(&staged.path, &path).map_err(file_error(&path, "placing a sliver pair"))?;
        sync_dir(&dir)?;
        // Placed: nothing left for the drop to remove.
        staged.path = PathBuf::new();
        self.add_bytes(staged.bytes, replaced);
        Ok(())
    }

    /// `len` bytes at `offset` of a pair's file.
    pub(crate) fn read(
        &self,
        blob_id: &BlobId,
        shard: ShardIndex,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.path(blob_id, shard);
        let file = File::open(&path).map_err(file_error(&path, "reading a sliver"))?;
        let size = file
            .metadata()
            .map_err(file_error(&path, "reading a sliver"))?
            .len();
        // Checked before allocating: a file cut short is an error, not a
        // buffer of whatever size a record claims.
        if offset.saturating_add(len as u64) > size {
            return Err(file_error(&path, "reading a sliver")(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file holds {size} bytes; the sliver is recorded at {offset}..{}",
                    offset.saturating_add(len as u64)
                ),
            )));
        }
        let mut out = vec![0u8; len];
        file.read_exact_at(&mut out, offset)
            .map_err(file_error(&path, "reading a sliver"))?;
        Ok(out)
    }

    /// Removes every pair file of a blob (already unrecorded).
    pub(crate) fn remove_blob(&self, blob_id: &BlobId) -> Result<(), StoreError> {
        let dir = self.blob_dir(blob_id);
        let freed = dir_bytes(&dir);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(file_error(&dir, "removing")(e)),
        }
        self.add_bytes(0, freed);
        Ok(())
    }

    fn add_bytes(&self, added: u64, removed: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
                Some((bytes + added).saturating_sub(removed))
            });
    }

    /// Every pair file: its blob, shard and size. Entries not named as the
    /// store names pair files are skipped; empty blob directories (left by
    /// a crash) are removed.
    pub(crate) fn list(&self) -> Result<Vec<(BlobId, ShardIndex, u64)>, StoreError> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.root).map_err(file_error(&self.root, "listing"))?;
        for entry in entries.flatten() {
            let Some(blob_id) = parse_blob_dir(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let dir = entry.path();
            let files = fs::read_dir(&dir).map_err(file_error(&dir, "listing"))?;
            let before = out.len();
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Some(shard) = name.parse::<u16>().ok().filter(|s| s.to_string() == name) else {
                    continue;
                };
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((blob_id, ShardIndex(shard), len));
            }
            if out.len() == before {
                // Only succeeds if it is empty.
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(out)
    }

    /// Removes one pair file the database does not record (not counted).
    pub(crate) fn remove_orphan(&self, blob_id: &BlobId, shard: ShardIndex) {
        let _ = fs::remove_file(self.path(blob_id, shard));
        // Only succeeds once the directory is empty.
        let _ = fs::remove_dir(self.blob_dir(blob_id));
    }

    /// Removes one counted pair file, if it is still there (no longer
    /// recorded). What cannot be removed is left to the next open's sweep.
    pub(crate) fn remove(&self, blob_id: &BlobId, shard: ShardIndex) {
        let path = self.path(blob_id, shard);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(&path).is_ok() {
            self.add_bytes(0, len);
        }
        let _ = fs::remove_dir(self.blob_dir(blob_id));
    }

    /// Sets the byte count (after listing the files at open).
    pub(crate) fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Bytes in pair files.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Creates `path` and writes `aligned` to it with direct I/O: a page-aligned
/// buffer of whole blocks, as direct I/O requires.
#[cfg(target_os = "linux")]
pub(crate) fn create_direct(path: &Path, aligned: &[u8]) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    file.write_all(aligned)?;
    Ok(file)
}

/// Writes `pair` through the page cache.
fn write_buffered(path: &Path, pair: &SliverPair) -> io::Result<File> {
    let mut file = File::create(path)?;
    file.write_all(&pair.primary.data)?;
    file.write_all(&pair.secondary.data)?;
    Ok(file)
}

/// A pair written and synced to a temporary file, not yet in place. Dropped
/// without being placed, the file is removed.
pub(crate) struct Staged {
    path: PathBuf,
    bytes: u64,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The blob whose directory is named `name`, if the store names it so
/// (lowercase hex).
fn parse_blob_dir(name: &str) -> Option<BlobId> {
    if name.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (hex(&id) == name).then_some(BlobId(id))
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use floe_codec::{encode, EncodingConfig};

    use super::*;

    /// Both ways of writing (direct I/O is only taken where the file system
    /// allows it, so the buffered way would otherwise go untested here).
    #[test]
    fn pairs_round_trip_written_either_way() {
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + 7) as u8).collect();
        let (_, blob_id, pairs) = encode(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
        let pair = &pairs[3];
        let (primary, secondary) = (pair.primary.data.len(), pair.secondary.data.len());
        for direct in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let files = PairFiles::open(dir.path(), direct).unwrap();
            let staged = files.stage(pair).unwrap();
            files.place(staged, &blob_id, ShardIndex(3)).unwrap();
            let on_disk = fs::metadata(files.path(&blob_id, ShardIndex(3)))
                .unwrap()
                .len();
            let expected = if direct {
                (primary + secondary).div_ceil(BLOCK) * BLOCK
            } else {
                primary + secondary
            };
            assert_eq!(on_disk, expected as u64, "direct: {direct}");
            assert_eq!(files.bytes(), on_disk);
            let read = files.read(&blob_id, ShardIndex(3), 0, primary).unwrap();
            assert_eq!(read, pair.primary.data.as_ref());
            let read = files
                .read(&blob_id, ShardIndex(3), primary as u64, secondary)
                .unwrap();
            assert_eq!(read, pair.secondary.data.as_ref());
            // Nothing is left in the staging directory.
            assert_eq!(
                fs::read_dir(dir.path().join(DIR).join(TMP))
                    .unwrap()
                    .count(),
                0
            );
            files.remove_blob(&blob_id).unwrap();
            assert_eq!(files.bytes(), 0);
        }
    }
}
