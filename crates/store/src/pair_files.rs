//! Large sliver pairs live in one file per blob beside the database,
//! `pairs/<blob ID in hex>/pairs`: each pair this node keeps of the blob is
//! its primary sliver's bytes followed by its secondary's, at a
//! block-aligned offset the database records.
//!
//! A pair's place is reserved at the file's end in memory; the pair is
//! written there and synced before the database records it, so a recorded
//! pair always has complete, durable bytes, and a confirmation needs
//! nothing more than the WAL sync. Through RocksDB the same bytes were
//! copied into a write batch, then into the memtable, then into a blob file
//! at a flush the confirmation had to wait for.
//!
//! One file per blob, not per pair: a node taking a blob's pairs creates one
//! inode and syncs one directory entry, where a file per pair created,
//! renamed and synced the directory for each (on a journal-less ext4 each
//! creation also scans the inodes deleted in the last half minute: 6 % of a
//! 16 MiB store's CPU in `cargo xtask bench e2e`).
//!
//! A pair removed alone (its shard moved away, its bytes found damaged, or
//! replaced by a newer copy) has its bytes punched out of the file. What a
//! crash can leave behind (bytes written and never recorded, a file of a
//! blob with no recorded pair) is punched out or removed when the store
//! opens.
//!
//! Stores of earlier versions kept a file per pair, `pairs/<blob>/<shard>`;
//! their records say so ([`PairFile::Own`]), and such files are read,
//! removed and swept as before.
//!
//! Where the file system takes direct I/O, pairs are written with it, from
//! a page-aligned buffer and padded to whole blocks (the records say where
//! each sliver ends): on a machine whose memory is mostly page cache, a
//! buffered write first makes the kernel reclaim pages for the copy, which
//! costs more than the copy into the aligned buffer.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use floe_codec::{BlobId, ShardIndex, SliverPair};

use crate::envelope::hex;
use crate::error::StoreError;
use crate::records::PairFile;
use blob_file::{copy_summed, in_use, write_buffered, BlobFile};

/// The directory under the database holding the pair files.
const DIR: &str = "pairs";
/// Where earlier versions wrote pairs before renaming them into place;
/// cleared at open.
const TMP: &str = ".tmp";
/// The name of a blob's pair file in its directory.
pub(crate) const BLOB_FILE: &str = "pairs";
/// Direct I/O writes whole blocks of this many bytes, from buffers aligned
/// to it (a page covers every common logical block size). Every pair
/// starts on a block boundary.
pub(crate) const BLOCK: usize = 4096;
/// Aligned buffers kept for reuse between writes (four made a 16 MiB store
/// on seven nodes map and unmap 5–10 buffers: a thousand page faults).
const SPARE_BUFFERS: usize = 8;
/// The largest buffer kept for reuse: the spares hold at most 64 MiB
/// (a larger pair's buffer is mapped for it and unmapped after).
const SPARE_BUFFER_MAX: usize = 8 << 20;

/// The pair files of one store.
pub(crate) struct PairFiles {
    root: PathBuf,
    /// Bytes the pair files take on disk, for metrics.
    bytes: AtomicU64,
    /// Write with direct I/O.
    direct: bool,
    /// Page-aligned buffers for direct I/O, kept between writes.
    buffers: Mutex<Vec<memmap2::MmapMut>>,
    /// The blob files pairs are being written to. A handle is taken and
    /// dropped under this lock only, so a count of one means no writer.
    open: Mutex<HashMap<BlobId, Arc<BlobFile>>>,
    /// Given to each blob file opened, to run before its syncs.
    #[cfg(test)]
    on_sync: Mutex<Option<blob_file::SyncHook>>,
}

fn file_error(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::File { path, what, source }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes `dir`'s entries (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_error(dir, "syncing the directory"))
}

/// `len` rounded up to whole blocks.
pub(crate) fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64)
}

/// Bytes the extents `(start, end)` cover, as counted when their pairs
/// were kept.
pub(crate) fn extents_bytes(extents: &[(u64, u64)]) -> u64 {
    extents
        .iter()
        .map(|(start, end)| end.saturating_sub(*start))
        .fold(0, u64::saturating_add)
}

/// Bytes a file takes on disk (its blocks, holes not counted).
fn allocated(metadata: &fs::Metadata) -> u64 {
    metadata.blocks() * 512
}

/// Frees `len` bytes at `offset` of `file`, keeping its size. Best effort:
/// a file system that cannot punch holes keeps the bytes (unrecorded, so
/// never read) until the blob's file goes.
fn punch(file: &File, offset: u64, len: u64) -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        rustix::fs::fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
        false
    }
}

/// A pair file found at open.
pub(crate) enum Listed {
    /// A blob's pair file, of `len` bytes.
    Blob { blob_id: BlobId, len: u64 },
    /// A file of one pair (earlier versions), taking `bytes` on disk.
    Own {
        blob_id: BlobId,
        shard: ShardIndex,
        bytes: u64,
    },
}

impl PairFiles {
    /// Opens (creating) the pair directory under `db_path`, clearing what
    /// an interrupted write of an earlier version left in `.tmp/`.
    /// `direct`: the file system takes direct I/O.
    pub(crate) fn open(db_path: &Path, direct: bool) -> Result<PairFiles, StoreError> {
        let root = db_path.join(DIR);
        let tmp = root.join(TMP);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(file_error(&tmp, "clearing leftovers"))?;
        }
        fs::create_dir_all(&root).map_err(file_error(&root, "creating"))?;
        sync_dir(&root)?;
        sync_dir(db_path)?;
        Ok(PairFiles {
            root,
            bytes: AtomicU64::new(0),
            direct,
            buffers: Mutex::new(Vec::new()),
            open: Mutex::new(HashMap::new()),
            #[cfg(test)]
            on_sync: Mutex::new(None),
        })
    }

    fn blob_dir(&self, blob_id: &BlobId) -> PathBuf {
        self.root.join(hex(&blob_id.0))
    }

    /// The blob's file, shared by its pairs.
    fn blob_file(&self, blob_id: &BlobId) -> PathBuf {
        self.blob_dir(blob_id).join(BLOB_FILE)
    }

    /// The file a pair of `shard` recorded in `file` is in.
    pub(crate) fn path(&self, blob_id: &BlobId, shard: ShardIndex, file: PairFile) -> PathBuf {
        match file {
            PairFile::Blob => self.blob_file(blob_id),
            PairFile::Own => self.blob_dir(blob_id).join(shard.0.to_string()),
        }
    }

    /// The blob's file, open for writing: created (its directory entry
    /// durable) if it is not there yet.
    fn acquire(&self, blob_id: &BlobId) -> Result<Arc<BlobFile>, StoreError> {
        let mut open = lock(&self.open);
        // A retired handle is never handed out (its pairs cannot be kept,
        // and writers coming one after another would keep it for good):
        // a fresh one replaces it, reserving only past its end, where none
        // of its writers still in flight writes, and keeps it (so the map
        // keeps the fresh one until those writers are gone too). Its end is
        // read under its lock, after it was retired: no writer reserves
        // from a retired handle (see `BlobFile::reserve`), so it is final.
        let (retired_end, before) = match open.get(blob_id) {
            Some(file) if !file.removed.load(Ordering::Acquire) => return Ok(Arc::clone(file)),
            Some(file) => (*lock(&file.end), Some(Arc::clone(file))),
            None => (0, None),
        };
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
        let path = self.blob_file(blob_id);
        let options = |create: bool| {
            let mut options = fs::OpenOptions::new();
            options.read(true).write(true).create_new(create);
            #[cfg(target_os = "linux")]
            if self.direct {
                use std::os::unix::fs::OpenOptionsExt;
                options.custom_flags(libc::O_DIRECT);
            }
            options
        };
        let file = match options(true).open(&path) {
            Ok(file) => {
                // The entry durable before any record points into the file.
                if let Err(e) = sync_dir(&dir) {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options(false)
                .open(&path)
                .map_err(file_error(&path, "opening a blob's pair file"))?,
            Err(e) => return Err(file_error(&path, "creating a blob's pair file")(e)),
        };
        let len = file
            .metadata()
            .map_err(file_error(&path, "measuring a blob's pair file"))?
            .len();
        let file = Arc::new(BlobFile {
            file,
            path,
            end: Mutex::new(padded(len).max(retired_end)),
            removed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            sync: Mutex::new(0),
            before,
            #[cfg(test)]
            on_sync: lock(&self.on_sync).clone(),
        });
        open.insert(*blob_id, Arc::clone(&file));
        Ok(file)
    }

    /// A writer is done with `file`: closed with its last writer. Handles
    /// are taken and dropped under the map's lock only, so a count of one
    /// there means the map holds the last.
    fn release(&self, blob_id: &BlobId, file: Arc<BlobFile>) {
        let mut open = lock(&self.open);
        drop(file);
        if open.get(blob_id).is_some_and(|open| !in_use(open)) {
            open.remove(blob_id);
        }
    }

    /// Writes `pair` at the end of its blob's file and syncs it: where is
    /// [`Staged::offset`], what its slivers sum to [`Staged::checksums`];
    /// [`PairFiles::commit`] keeps it once the database records it. Done
    /// before the caller takes the blob's lock; a blob's pairs side by side.
    pub(crate) fn stage(
        &self,
        blob_id: &BlobId,
        pair: &SliverPair,
    ) -> Result<Staged<'_>, StoreError> {
        let file = self.acquire(blob_id)?;
        let len = pair.byte_len() as u64;
        let Some(offset) = file.reserve(padded(len)) else {
            let error = retired(&file.path);
            self.release(blob_id, file);
            return Err(error);
        };
        let write = if self.direct {
            self.write_direct(&file.file, offset, pair)
        } else {
            write_buffered(&file.file, offset, pair)
        };
        let mut checksums = [0; 2];
        let written = match write {
            Ok(sums) => {
                checksums = sums;
                file.sync_through()
            }
            Err(e) => {
                file.retire();
                Err(e)
            }
        };
        let path = file.path.clone();
        // Dropped on an error, it frees what was reserved.
        let staged = Staged {
            files: self,
            blob_id: *blob_id,
            file: Some(file),
            offset,
            checksums,
            bytes: padded(len),
            kept: false,
        };
        written.map_err(file_error(&path, "writing a sliver pair"))?;
        Ok(staged)
    }

    /// Writes `pair` at `offset` with direct I/O, padded with zeros to
    /// whole blocks; returns its slivers' checksums.
    fn write_direct(&self, file: &File, offset: u64, pair: &SliverPair) -> io::Result<[u32; 2]> {
        let (primary, secondary) = (&pair.primary.data, &pair.secondary.data);
        let len = primary.len() + secondary.len();
        let whole = len.next_multiple_of(BLOCK);
        let mut buffer = self.buffer(whole)?;
        let (first, rest) = buffer.split_at_mut(primary.len());
        let checksums = [
            copy_summed(first, primary),
            copy_summed(&mut rest[..secondary.len()], secondary),
        ];
        buffer[len..whole].fill(0);
        let written = file.write_all_at(&buffer[..whole], offset);
        let mut spare = lock(&self.buffers);
        if spare.len() < SPARE_BUFFERS && buffer.len() <= SPARE_BUFFER_MAX {
            spare.push(buffer);
        }
        written.map(|()| checksums)
    }

    /// A page-aligned buffer of at least `len` bytes: the smallest spare
    /// one that fits, or a new anonymous map.
    fn buffer(&self, len: usize) -> io::Result<memmap2::MmapMut> {
        let mut spare = lock(&self.buffers);
        let fits = spare.iter().enumerate().filter(|(_, b)| b.len() >= len);
        if let Some((at, _)) = fits.min_by_key(|(_, b)| b.len()) {
            return Ok(spare.swap_remove(at));
        }
        drop(spare);
        // Rounded up so pairs of one blob size share buffers.
        memmap2::MmapMut::map_anon(len.div_ceil(1 << 20) * (1 << 20))
    }

    /// Keeps a staged pair, now that the database records it (under the
    /// blob's lock, after [`Staged::check_live`]).
    pub(crate) fn commit(&self, mut staged: Staged<'_>) {
        staged.kept = true;
        self.add_bytes(staged.bytes, 0);
    }

    /// Leaves a staged pair's bytes where they are, uncounted: the database
    /// failed to record it, and may still have (a write can fail after its
    /// WAL record is durable). The next open's sweep frees them if not.
    pub(crate) fn abandon(&self, mut staged: Staged<'_>) {
        staged.kept = true;
    }

    /// `len` bytes at `offset` of the pair file a pair of `shard` is
    /// recorded in.
    pub(crate) fn read(
        &self,
        blob_id: &BlobId,
        shard: ShardIndex,
        file: PairFile,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let path = self.path(blob_id, shard, file);
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

    /// Removes every pair file of a blob (already unrecorded; under the
    /// blob's lock, so no pair written meanwhile is recorded).
    /// `in_blob_file`: the bytes its records held in the blob's file, as
    /// counted when they were kept.
    pub(crate) fn remove_blob(
        &self,
        blob_id: &BlobId,
        in_blob_file: u64,
    ) -> Result<(), StoreError> {
        // Held until the files are gone: a writer of the same blob (stored
        // again meanwhile) then creates a fresh file rather than opening
        // the one being removed.
        let mut open = lock(&self.open);
        if let Some(file) = open.get(blob_id) {
            file.retire();
        }
        let dir = self.blob_dir(blob_id);
        let freed = in_blob_file.saturating_add(own_files_bytes(&dir));
        let removed = fs::remove_dir_all(&dir);
        let left = matches!(&removed, Err(e) if e.kind() != io::ErrorKind::NotFound);
        let writers = open.get(blob_id).is_some_and(in_use);
        // A file that may still be there keeps its retired handle until its
        // last writer is gone: no writer reopens it meanwhile with an end
        // short of what those writers reserved.
        if !(left && writers) {
            open.remove(blob_id);
        }
        match removed {
            Ok(()) => self.add_bytes(0, freed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(&dir, "removing")(e)),
        }
        Ok(())
    }

    fn add_bytes(&self, added: u64, removed: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
                Some(bytes.saturating_add(added).saturating_sub(removed))
            });
    }

    /// Every pair file: blob files with their length, files per pair with
    /// their blob, shard and size. Entries not named as the store names
    /// pair files are skipped; empty blob directories (left by a crash)
    /// are removed.
    pub(crate) fn list(&self) -> Result<Vec<Listed>, StoreError> {
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
                let metadata = file.metadata().ok();
                if name == BLOB_FILE {
                    let len = metadata.map_or(0, |m| m.len());
                    out.push(Listed::Blob { blob_id, len });
                    continue;
                }
                let Some(shard) = name.parse::<u16>().ok().filter(|s| s.to_string() == name) else {
                    continue;
                };
                let bytes = metadata.as_ref().map_or(0, allocated);
                out.push(Listed::Own {
                    blob_id,
                    shard: ShardIndex(shard),
                    bytes,
                });
            }
            if out.len() == before {
                // Only succeeds if it is empty.
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(out)
    }

    /// Punches out of a blob's file (at open) every byte outside
    /// `recorded` (block-aligned extents, sorted).
    pub(crate) fn keep_only(
        &self,
        blob_id: &BlobId,
        recorded: &[(u64, u64)],
        len: u64,
    ) -> Result<(), StoreError> {
        let path = self.blob_file(blob_id);
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(file_error(&path, "opening a blob's pair file"))?;
        let mut at = 0;
        for &(start, end) in recorded.iter().chain([&(len, len)]) {
            if start > at {
                punch(&file, at, start - at);
            }
            at = at.max(end);
        }
        Ok(())
    }

    /// Removes a blob's file, which holds no recorded pair (not counted).
    pub(crate) fn remove_orphan_blob_file(&self, blob_id: &BlobId) {
        let _ = fs::remove_file(self.blob_file(blob_id));
        // Only succeeds once the directory is empty.
        let _ = fs::remove_dir(self.blob_dir(blob_id));
    }

    /// Removes one pair's own file the database does not record (not
    /// counted).
    pub(crate) fn remove_orphan(&self, blob_id: &BlobId, shard: ShardIndex) {
        let _ = fs::remove_file(self.path(blob_id, shard, PairFile::Own));
        // Only succeeds once the directory is empty.
        let _ = fs::remove_dir(self.blob_dir(blob_id));
    }

    /// Frees one pair that is no longer recorded, if its bytes are still
    /// there: its own file is removed, its extent in the blob's file
    /// punched out. What cannot be freed now is left to the next open's
    /// sweep.
    pub(crate) fn remove(&self, blob_id: &BlobId, shard: ShardIndex, place: PairPlace) {
        match place {
            PairPlace::Own => {
                let path = self.path(blob_id, shard, PairFile::Own);
                let bytes = fs::metadata(&path).map_or(0, |m| allocated(&m));
                if fs::remove_file(&path).is_ok() {
                    self.add_bytes(0, bytes);
                }
                let _ = fs::remove_dir(self.blob_dir(blob_id));
            }
            PairPlace::Blob { offset, end } => {
                // Unrecorded, so no longer counted, freed or not.
                if let Ok(file) = fs::OpenOptions::new()
                    .write(true)
                    .open(self.blob_file(blob_id))
                {
                    punch(&file, offset, end.saturating_sub(offset));
                }
                self.add_bytes(0, end.saturating_sub(offset));
            }
        }
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

/// Where a recorded pair's bytes are, to free them once it is unrecorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PairPlace {
    /// A file of its own.
    Own,
    /// Block-aligned bytes `offset..end` of its blob's file.
    Blob { offset: u64, end: u64 },
}

/// Creates `path` and writes `aligned` to it with direct I/O: a page-aligned
/// buffer of whole blocks, as direct I/O requires.
#[cfg(target_os = "linux")]
pub(crate) fn create_direct(path: &Path, aligned: &[u8]) -> io::Result<File> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    file.write_all(aligned)?;
    Ok(file)
}

/// A pair written and synced to its blob's file, not yet recorded. Dropped
/// without being kept, its bytes are punched out again.
pub(crate) struct Staged<'a> {
    files: &'a PairFiles,
    blob_id: BlobId,
    /// `Some` until dropped.
    file: Option<Arc<BlobFile>>,
    offset: u64,
    /// The CRC-32C of the primary's bytes and of the secondary's.
    checksums: [u32; 2],
    /// The bytes reserved: the pair, padded to whole blocks.
    bytes: u64,
    kept: bool,
}

impl Staged<'_> {
    /// Where the pair starts in its blob's file.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The CRC-32C of the primary's bytes and of the secondary's, as written.
    pub(crate) fn checksums(&self) -> [u32; 2] {
        self.checksums
    }

    /// Checked under the blob's lock before the pair is recorded: the file
    /// written is still the blob's (its files were not removed meanwhile).
    pub(crate) fn check_live(&self) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !file.removed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(retired(&file.path))
    }
}

/// Why a pair written (or about to be) through a retired handle is not kept.
fn retired(path: &Path) -> StoreError {
    StoreError::File {
        path: path.to_path_buf(),
        what: "recording a sliver pair",
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "the blob's pair file was removed, or failed a write, while the pair was \
             written; store it again",
        ),
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        if !self.kept {
            punch(&file.file, self.offset, self.bytes);
        }
        self.files.release(&self.blob_id, file);
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

/// Bytes the files of single pairs (earlier versions) in `dir` take on
/// disk.
fn own_files_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name() != BLOB_FILE)
                .filter_map(|e| e.metadata().ok())
                .map(|m| allocated(&m))
                .sum()
        })
        .unwrap_or(0)
}

mod blob_file;
#[cfg(test)]
mod tests;
