//! # floe-store
//!
//! Every byte a Floe node keeps on disk: blob metadata, sliver pairs, blob
//! states with their proofs, pending uploads, and node state, in one
//! RocksDB database.
//!
//! ## Layout
//!
//! A fixed set of column families ("tables"), whatever the number of shards:
//! a node with 1000 shards opens as fast as one with 1 (a column family per
//! shard makes opening and compaction scale with the shard count).
//!
//! | table | key | value |
//! |---|---|---|
//! | `metadata` | blob ID | BCS `BlobMetadata` |
//! | `slivers` | shard (u16 BE) ‖ blob ID ‖ axis (u8) | sliver index (u16 LE) ‖ symbols; for a pair kept in a file (format 2): index ‖ offset (u64 LE) ‖ length (u64 LE) ‖ checksum |
//! | `pairs` | blob ID ‖ shard (u16 BE) | — (the pair of that shard is stored) |
//! | `states` | blob ID | the blob's proofs (`BlobState::to_bytes`) |
//! | `promises` | blob ID | BCS `Promise`: what this node's signed confirmations promise to keep |
//! | `pending` | blob ID | first arrival, Unix ms (u64 LE) (uncertified upload) |
//! | `expiry` | end epoch (u64 BE) ‖ blob ID | — (certified, by latest end epoch) |
//! | `garbage` | blob ID | — (deleted or invalid, awaiting collection) |
//! | `drift` | blob ID | — (certified, available, pairs missing here) |
//! | `node` | name | node state (epoch, sync cursors) |
//!
//! Big-endian shard and epoch prefixes make "all blobs of shard `s` in blob-ID
//! order from a cursor" and "everything expired by epoch `e`" one ordered scan.
//! Every value sits in a checksummed envelope (see `envelope`).
//!
//! ## Options, and why
//!
//! * Sliver pairs of 512 KiB and more are kept in files of their own (see
//!   `pair_files`), not in RocksDB: the memtable copy, the flush and its
//!   checksum pass would all be spent on bytes that are written once and
//!   read whole.
//! * `slivers` uses RocksDB blob files (BlobDB) for values of 4 KiB and more:
//!   smaller slivers then stay out of the LSM tree, so compaction moves keys,
//!   not data. Blob files are not compressed (erasure-coded data is mostly
//!   high-entropy; compressing costs CPU for little gain) and blob garbage
//!   collection reclaims space after deletions.
//! * The small tables are LZ4-compressed (cheap; certificates and metadata
//!   hashes compress poorly, but keys and envelopes do).
//! * Writes that belong together are one `WriteBatch`: a sliver pair and its
//!   `pairs` entry; a state, its indexes and drift marker.
//! * Durability is explicit. Ordinary writes go to the WAL without `fsync`;
//!   a pair file is synced (file and directory) before its record is
//!   written. [`Store::promise`] syncs the WAL only once every pair of
//!   this node's shards is stored, and returns the [`DurableBlob`] token
//!   that is the only way to sign a storage confirmation here;
//!   [`Store::record_fact`] syncs the state before it returns.
//! * Flushes and compactions use direct I/O where the file system allows it
//!   (probed at open): each sliver byte is written once, straight to the
//!   device, instead of being copied into the page cache and written back.

pub mod envelope;
mod error;
mod pair_files;
pub mod records;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use floe_codec::{Axis, BlobId, BlobMetadata, ShardIndex, Sliver, SliverPair};
use floe_consensus::{
    BlobState, BlobStatus, Epoch, KeyPair, ProtocolMessage, Signed, StorageConfirmation,
    VerifiedFact,
};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

pub use error::StoreError;
use records::{decode, decode_state, file_place};

/// The tables, in a fixed order.
pub const TABLES: [&str; 10] = [
    "metadata", "slivers", "pairs", "states", "pending", "expiry", "garbage", "drift", "node",
    "promises",
];

const METADATA: &str = "metadata";
const SLIVERS: &str = "slivers";
const PAIRS: &str = "pairs";
const STATES: &str = "states";
const PENDING: &str = "pending";
const EXPIRY: &str = "expiry";
const GARBAGE: &str = "garbage";
const DRIFT: &str = "drift";
const NODE: &str = "node";
const PROMISES: &str = "promises";

/// Owners whose deletable registrations of one blob a node keeps apart in
/// its promise; past this (anyone may ask for confirmations naming any
/// owner) they are folded into one promise that ignores deletions, so no
/// owner is locked out and no promise is cut short.
pub const MAX_PROMISED_OWNERS: usize = 16;

/// Sliver values at least this large go to blob files.
pub const MIN_BLOB_FILE_VALUE: u64 = 4096;

/// Sliver pairs at least this large are kept in files of their own (see
/// [`Store::put_sliver_pair`]).
pub const FILE_MIN_PAIR_BYTES: usize = 512 << 10;

/// Room in a sliver pair's write batch beyond the sliver values: the batch
/// header, three records' tags, keys and lengths, and a drift deletion.
const BATCH_OVERHEAD_BYTES: usize = 256;

/// Why a blob's data may be collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GarbageReason {
    /// Certified, but its last end epoch has passed.
    Expired,
    /// Its owner deleted every registration.
    Deleted,
    /// Proven inconsistently encoded.
    Invalid,
    /// Uploaded but never certified, and older than the pending deadline.
    StalePending,
}

/// What one garbage-collection pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs whose data was removed.
    pub blobs: u64,
    /// Slivers removed.
    pub slivers: u64,
    /// Whether more garbage remains (run again).
    pub more: bool,
}

/// Per-table size figures, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// The table.
    pub table: &'static str,
    /// RocksDB's estimate of its keys.
    pub estimated_keys: u64,
    /// Bytes in SST files.
    pub sst_bytes: u64,
    /// Bytes in blob files (slivers only).
    pub blob_file_bytes: u64,
}

/// Totals of garbage collection since open, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Passes run.
    pub passes: u64,
    /// Blobs collected.
    pub blobs: u64,
    /// Slivers removed.
    pub slivers: u64,
}

/// Proof that every pair of this node's shards for a blob is on disk and
/// synced, and that the store recorded the promise to keep them: the only
/// way this crate signs a storage confirmation.
#[derive(Debug)]
pub struct DurableBlob {
    message: ProtocolMessage<StorageConfirmation>,
}

impl DurableBlob {
    /// The blob.
    pub fn blob_id(&self) -> BlobId {
        self.message.body.blob_id
    }

    /// Signs the storage confirmation that was promised.
    pub fn sign_confirmation(&self, key: &KeyPair) -> Signed<StorageConfirmation> {
        Signed::sign(self.message.clone(), key)
    }
}

/// What this node's signed storage confirmations of one blob promise: to
/// keep its pairs until an end epoch, or until the owner of a deletable
/// registration deletes it. Garbage collection honours it whatever the
/// blob's certificates say, so a certificate formed (or delivered) late
/// still finds the data it vouches for.
///
/// BCS: `permanent: option<u64> ‖ deletable: map<owner, vec<(confirmed in u64, until u64)>>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Promise {
    /// The latest end epoch confirmed for a permanent registration (or for
    /// deletable ones folded in, see [`MAX_PROMISED_OWNERS`]).
    pub permanent: Option<Epoch>,
    /// Per owner of deletable registrations: the confirmations no other
    /// supersedes (one confirmed no earlier and ending no earlier), as
    /// (epoch confirmed in, end epoch), in increasing epoch.
    pub deletable: std::collections::BTreeMap<floe_consensus::PublicKey, Vec<(Epoch, Epoch)>>,
}

impl Promise {
    /// Adds a confirmation signed in `epoch`. Past [`MAX_PROMISED_OWNERS`]
    /// owners, deletable promises are folded into the permanent one: the
    /// data is then kept until the latest end epoch whatever the deletions
    /// say (never shorter than promised), and no owner is ever refused.
    fn add(&mut self, epoch: Epoch, confirmation: &StorageConfirmation) {
        let end = confirmation.end_epoch;
        match confirmation.owner.filter(|_| confirmation.deletable) {
            Some(owner) => {
                let kept = self.deletable.entry(owner).or_default();
                if !kept.iter().any(|&(e, u)| e >= epoch && u >= end) {
                    kept.retain(|&(e, u)| !(epoch >= e && end >= u));
                    let at = kept.partition_point(|&(e, _)| e < epoch);
                    kept.insert(at, (epoch, end));
                }
            }
            None => self.permanent = self.permanent.max(Some(end)),
        }
        if self.deletable.len() > MAX_PROMISED_OWNERS {
            let latest = self
                .deletable
                .values()
                .flatten()
                .map(|&(_, until)| until)
                .max();
            self.permanent = self.permanent.max(latest);
            self.deletable.clear();
        }
    }

    /// Whether the promise still binds in epoch `current`, given what is
    /// known of the blob: a deletion by an owner releases what was
    /// confirmed to that owner up to the deletion's epoch.
    pub fn binds(&self, state: &BlobState, current: Epoch) -> bool {
        if self.permanent.is_some_and(|end| end > current) {
            return true;
        }
        self.deletable.iter().any(|(owner, kept)| {
            let deleted_in = state.deletion_by(owner);
            kept.iter().any(|&(confirmed, until)| {
                until > current && deleted_in.is_none_or(|deleted| deleted < confirmed)
            })
        })
    }
}

/// A node's database.
pub struct Store {
    db: DB,
    path: PathBuf,
    shards: Vec<ShardIndex>,
    /// Serializes read-modify-write per blob (striped by the ID's first byte).
    locks: Vec<Mutex<()>>,
    /// The drift set, mirrored from the `drift` table so counting is free.
    drift: Mutex<BTreeSet<BlobId>>,
    /// Large sliver pairs, in files of their own.
    files: pair_files::PairFiles,
    /// Flushes and compactions use direct I/O.
    direct_io: bool,
    gc: [AtomicU64; 3],
}

fn sliver_key(shard: ShardIndex, blob_id: &BlobId, axis: Axis) -> [u8; 35] {
    let mut key = [0u8; 35];
    key[..2].copy_from_slice(&shard.0.to_be_bytes());
    key[2..34].copy_from_slice(&blob_id.0);
    key[34] = axis as u8;
    key
}

fn pair_key(blob_id: &BlobId, shard: ShardIndex) -> [u8; 34] {
    let mut key = [0u8; 34];
    key[..32].copy_from_slice(&blob_id.0);
    key[32..].copy_from_slice(&shard.0.to_be_bytes());
    key
}

fn time_key(prefix: u64, blob_id: &BlobId) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..8].copy_from_slice(&prefix.to_be_bytes());
    key[8..].copy_from_slice(&blob_id.0);
    key
}

fn blob_id_from(key: &[u8], table: &'static str) -> Result<BlobId, StoreError> {
    <[u8; 32]>::try_from(key)
        .map(BlobId)
        .map_err(|_| StoreError::Corrupt {
            table,
            key: envelope::hex(key),
            reason: "key is not a blob ID".into(),
        })
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    envelope::seal(&floe_codec::canonical_bytes(value))
}

impl Store {
    /// Opens (creating if needed) the database at `path` for a node holding `shards`.
    ///
    /// Flushes and compactions use direct I/O where the file system allows
    /// it; [`Store::direct_io`] tells which.
    pub fn open(path: impl AsRef<Path>, shards: Vec<ShardIndex>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.increase_parallelism(2);
        db_options.set_max_background_jobs(2);
        // Flushes, compactions and pair files write each sliver once,
        // straight to the device: through the page cache the copy and the
        // later writeback cost more CPU than the Reed–Solomon verification
        // of the same slivers.
        let direct = direct_io_supported(&path);
        db_options.set_use_direct_io_for_flush_and_compaction(direct);
        let descriptors = TABLES.iter().map(|name| {
            let mut options = Options::default();
            let mut block = BlockBasedOptions::default();
            block.set_bloom_filter(10.0, false);
            options.set_block_based_table_factory(&block);
            if *name == SLIVERS {
                options.set_enable_blob_files(true);
                options.set_min_blob_size(MIN_BLOB_FILE_VALUE);
                options.set_blob_file_size(256 << 20);
                options.set_blob_compression_type(DBCompressionType::None);
                options.set_enable_blob_gc(true);
                options.set_blob_gc_age_cutoff(0.25);
                options.set_write_buffer_size(128 << 20);
                options.set_compression_type(DBCompressionType::Lz4);
            } else {
                options.set_compression_type(DBCompressionType::Lz4);
            }
            ColumnFamilyDescriptor::new(*name, options)
        });
        let db = DB::open_cf_descriptors(&db_options, &path, descriptors)
            .map_err(StoreError::db("(open)"))?;
        let mut shards = shards;
        shards.sort_unstable();
        shards.dedup();
        let files = pair_files::PairFiles::open(&path, direct)?;
        let store = Store {
            db,
            path,
            shards,
            locks: (0..64).map(|_| Mutex::new(())).collect(),
            drift: Mutex::new(BTreeSet::new()),
            files,
            direct_io: direct,
            gc: Default::default(),
        };
        let drift = store.scan_blob_ids(DRIFT, None, usize::MAX)?;
        *store.drift_set() = drift.into_iter().collect();
        store.remove_unrecorded_pair_files()?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shards this node holds (sorted).
    pub fn shards(&self) -> &[ShardIndex] {
        &self.shards
    }

    fn cf(&self, table: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(table).ok_or(StoreError::Corrupt {
            table,
            key: String::new(),
            reason: "column family missing".into(),
        })
    }

    fn lock(&self, blob_id: &BlobId) -> MutexGuard<'_, ()> {
        let stripe = usize::from(blob_id.0[0]) % self.locks.len();
        self.locks[stripe]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn drift_set(&self) -> MutexGuard<'_, BTreeSet<BlobId>> {
        self.drift
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(table)?, key)
            .map_err(StoreError::db(table))
    }

    /// Whether flushes and compactions bypass the page cache (direct I/O).
    pub fn direct_io(&self) -> bool {
        self.direct_io
    }

    fn write(&self, table: &'static str, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db
            .write_opt(batch, &options)
            .map_err(StoreError::db(table))
    }

    // ---- metadata and pending uploads ----

    /// Stores a blob's metadata (already verified against its ID) and, if the
    /// blob has no certificate yet, records it as a pending upload that
    /// arrived at `now_unix_ms`.
    pub fn put_metadata(
        &self,
        blob_id: &BlobId,
        metadata: &BlobMetadata,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        let _guard = self.lock(blob_id);
        let state = self.stored_state(blob_id)?;
        let status = state.status(self.current_epoch()?);
        if matches!(status, BlobStatus::Invalid { .. }) {
            // Proven inconsistently encoded: no registration can make it
            // readable.
            return Err(StoreError::BlobGone {
                blob_id: *blob_id,
                status: status.name(),
            });
        }
        // An expired or deleted blob may be stored again: that is a new
        // registration, pending until its own certificate.
        // Live in the next epoch too: the recorded epoch may trail the clock.
        let current = self.current_epoch()?;
        let live = matches!(
            state.status(Epoch(current.0.saturating_add(1))),
            BlobStatus::Certified { .. }
        );
        let arrived = self.get(METADATA, &blob_id.0)?.is_none();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(METADATA)?, blob_id.0, encode(metadata));
        if !live && (arrived || self.get(PENDING, &blob_id.0)?.is_none()) {
            // Data that arrives counts from now (it may be a new
            // registration of content that expired or was deleted); re-sent
            // metadata does not extend the deadline.
            batch.put_cf(
                self.cf(PENDING)?,
                blob_id.0,
                envelope::seal(&now_unix_ms.to_le_bytes()),
            );
        }
        self.write(METADATA, batch, false)
    }

    /// A blob's metadata.
    pub fn metadata(&self, blob_id: &BlobId) -> Result<Option<BlobMetadata>, StoreError> {
        self.get(METADATA, &blob_id.0)?
            .map(|v| decode(METADATA, &blob_id.0, &v))
            .transpose()
    }

    // ---- slivers ----

    /// Stores the sliver pair of `shard` (already verified against the
    /// metadata). Refuses shards this node does not hold.
    ///
    /// A pair of [`FILE_MIN_PAIR_BYTES`] or more goes to a file of its own,
    /// written and synced before the database records where it is (see
    /// `pair_files`); smaller ones go into the database with the WAL. Either
    /// way, a recorded pair is complete once the WAL is synced.
    pub fn put_sliver_pair(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
        pair: &SliverPair,
    ) -> Result<(), StoreError> {
        if self.shards.binary_search(&shard).is_err() {
            return Err(StoreError::NotMyShard {
                blob_id: *blob_id,
                shard,
            });
        }
        let slivers = [&pair.primary, &pair.secondary];
        let in_file = pair.byte_len() >= FILE_MIN_PAIR_BYTES;
        // The slow part, before the blob's lock: the file written and synced.
        let staged = in_file.then(|| self.files.stage(pair)).transpose()?;
        let values: Vec<Vec<u8>> = if in_file {
            let mut offset = 0u64;
            slivers
                .iter()
                .map(|sliver| {
                    let place = file_place(sliver, offset);
                    offset += sliver.data.len() as u64;
                    place
                })
                .collect()
        } else {
            slivers
                .iter()
                .map(|sliver| envelope::seal_parts(&[&sliver.index.0.to_le_bytes(), &sliver.data]))
                .collect()
        };
        let _guard = self.lock(blob_id);
        if self.get(METADATA, &blob_id.0)?.is_none() {
            return Err(StoreError::MissingMetadata { blob_id: *blob_id });
        }
        if let Some(staged) = staged {
            self.files.place(staged, blob_id, shard)?;
        }
        // Sized up front: a batch grows by doubling, and each doubling
        // copies every sliver byte already in it again.
        let mut batch = WriteBatch::with_capacity_bytes(
            values.iter().map(Vec::len).sum::<usize>() + BATCH_OVERHEAD_BYTES,
        );
        let cf = self.cf(SLIVERS)?;
        for (sliver, value) in slivers.iter().zip(values) {
            batch.put_cf(cf, sliver_key(shard, blob_id, sliver.axis), value);
        }
        batch.put_cf(self.cf(PAIRS)?, pair_key(blob_id, shard), []);
        let resolves_drift =
            self.drift_set().contains(blob_id) && self.missing_pairs(blob_id)? == [shard];
        if resolves_drift {
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
        }
        self.write(SLIVERS, batch, false)?;
        if resolves_drift {
            self.drift_set().remove(blob_id);
        }
        Ok(())
    }

    /// One sliver of `shard`'s pair for a blob.
    pub fn sliver(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
        axis: Axis,
    ) -> Result<Option<Sliver>, StoreError> {
        let key = sliver_key(shard, blob_id, axis);
        match self.get(SLIVERS, &key)? {
            Some(stored) => self.load_recorded(&key, axis, &stored),
            None => Ok(None),
        }
    }

    /// `shard`'s sliver pair for a blob.
    pub fn sliver_pair(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
    ) -> Result<Option<SliverPair>, StoreError> {
        let (Some(primary), Some(secondary)) = (
            self.sliver(shard, blob_id, Axis::Primary)?,
            self.sliver(shard, blob_id, Axis::Secondary)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(SliverPair {
            index: primary.index.to_pair_index(Axis::Primary, 0),
            primary,
            secondary,
        }))
    }

    /// The shards whose pair of this blob is stored.
    pub fn stored_shards(&self, blob_id: &BlobId) -> Result<Vec<ShardIndex>, StoreError> {
        let cf = self.cf(PAIRS)?;
        let mut shards = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&blob_id.0, Direction::Forward))
        {
            let (key, _) = item.map_err(StoreError::db(PAIRS))?;
            if key.len() != 34 || key[..32] != blob_id.0 {
                break;
            }
            shards.push(ShardIndex(u16::from_be_bytes([key[32], key[33]])));
        }
        Ok(shards)
    }

    /// This node's shards whose pair of this blob is not stored.
    pub fn missing_pairs(&self, blob_id: &BlobId) -> Result<Vec<ShardIndex>, StoreError> {
        let stored = self.stored_shards(blob_id)?;
        Ok(self
            .shards
            .iter()
            .copied()
            .filter(|s| stored.binary_search(s).is_err())
            .collect())
    }

    /// Whether every pair of this node's shards for the blob is stored.
    pub fn holds_all_pairs(&self, blob_id: &BlobId) -> Result<bool, StoreError> {
        Ok(self.missing_pairs(blob_id)?.is_empty())
    }

    /// Up to `limit` pairs of `shard`, in blob-ID order, after `after`.
    pub fn scan_shard(
        &self,
        shard: ShardIndex,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<(BlobId, SliverPair)>, StoreError> {
        let cf = self.cf(SLIVERS)?;
        let start = match after {
            Some(blob_id) => sliver_key(shard, blob_id, Axis::Secondary).to_vec(),
            None => shard.0.to_be_bytes().to_vec(),
        };
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound((u32::from(shard.0) + 1).to_be_bytes()[2..].to_vec());
        let mut out: Vec<(BlobId, SliverPair)> = Vec::new();
        let mut primary: Option<(BlobId, Sliver)> = None;
        for item in
            self.db
                .iterator_cf_opt(cf, options, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(StoreError::db(SLIVERS))?;
            if key.len() != 35 || key[..2] != shard.0.to_be_bytes() {
                break;
            }
            let blob_id = blob_id_from(&key[2..34], SLIVERS)?;
            if after == Some(&blob_id) {
                continue;
            }
            match key[34] {
                0 => {
                    primary = self
                        .load_recorded(&key, Axis::Primary, &value)?
                        .map(|sliver| (blob_id, sliver))
                }
                _ => {
                    let Some(secondary) = self.load_recorded(&key, Axis::Secondary, &value)? else {
                        continue;
                    };
                    if let Some((id, primary)) = primary.take().filter(|(id, _)| *id == blob_id) {
                        let index = primary.index.to_pair_index(Axis::Primary, 0);
                        out.push((
                            id,
                            SliverPair {
                                index,
                                primary,
                                secondary,
                            },
                        ));
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Records the promise a storage confirmation makes and syncs it with
    /// the blob's pairs, if every pair of this node's shards is stored and
    /// the blob may be confirmed; returns the token that lets the node sign
    /// exactly that confirmation.
    ///
    /// Refused: a blob proven invalid, and a deletable registration whose
    /// owner already deleted it in this epoch or later (it would be born
    /// deleted). An expired or deleted blob whose data was stored again is
    /// confirmed: that is a new registration.
    pub fn promise(
        &self,
        message: ProtocolMessage<StorageConfirmation>,
    ) -> Result<DurableBlob, StoreError> {
        let blob_id = message.body.blob_id;
        // Under the blob's lock, so garbage collection cannot remove the
        // pairs between the check and the promise.
        let _guard = self.lock(&blob_id);
        let state = self.stored_state(&blob_id)?;
        let refuse = |reason: String| StoreError::NotConfirmable { blob_id, reason };
        if let BlobStatus::Invalid { certificate } = state.status(message.epoch) {
            return Err(refuse(format!(
                "it was proven invalid (certificate of epoch {})",
                certificate.message.epoch
            )));
        }
        if let Some(owner) = message.body.owner.filter(|_| message.body.deletable) {
            if let Some(deleted_in) = state.deletion_by(&owner).filter(|d| *d >= message.epoch) {
                return Err(refuse(format!(
                    "its owner {owner} deleted it in epoch {deleted_in}; a registration confirmed in epoch {} would be born deleted",
                    message.epoch
                )));
            }
        }
        let missing = self.missing_pairs(&blob_id)?;
        if !missing.is_empty() {
            return Err(StoreError::MissingPairs { blob_id, missing });
        }
        if matches!(
            state.status(message.epoch),
            BlobStatus::Expired { .. } | BlobStatus::Deleted { .. }
        ) && self.get(PENDING, &blob_id.0)?.is_none()
        {
            // Data of an ended registration, still here only until garbage
            // collection: a new registration needs the data sent again.
            return Err(refuse(format!(
                "it is {}; store its data again to register it anew",
                state.status(message.epoch).name()
            )));
        }
        let mut promise = self.promised(&blob_id)?.unwrap_or_default();
        let before = promise.clone();
        promise.add(message.epoch, &message.body);
        if promise != before {
            let mut batch = WriteBatch::default();
            batch.put_cf(self.cf(PROMISES)?, blob_id.0, encode(&promise));
            self.write(PROMISES, batch, false)?;
        }
        // Pair files were synced before they were recorded; the records,
        // the small pairs and the promise are in the WAL, which this syncs.
        self.db.flush_wal(true).map_err(StoreError::db(SLIVERS))?;
        Ok(DurableBlob { message })
    }

    /// What this node's confirmations of a blob promise, if it signed any.
    pub fn promised(&self, blob_id: &BlobId) -> Result<Option<Promise>, StoreError> {
        self.get(PROMISES, &blob_id.0)?
            .map(|v| decode(PROMISES, &blob_id.0, &v))
            .transpose()
    }

    // ---- states ----

    /// The stored proofs of a blob (unknown if none).
    fn stored_state(&self, blob_id: &BlobId) -> Result<BlobState, StoreError> {
        match self.get(STATES, &blob_id.0)? {
            Some(stored) => decode_state(blob_id, &stored),
            None => Ok(BlobState::unknown(*blob_id)),
        }
    }

    /// What this node knows of a blob: its stored proofs, and `pending` if
    /// it holds the metadata.
    pub fn state(&self, blob_id: &BlobId) -> Result<BlobState, StoreError> {
        let mut state = self.stored_state(blob_id)?;
        if self.get(METADATA, &blob_id.0)?.is_some() {
            state.mark_pending();
        }
        Ok(state)
    }

    /// Up to `limit` stored blob states after `after`, in blob-ID order (for
    /// rebuilding the anti-entropy index and for audits).
    pub fn states(
        &self,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        self.scan_by_blob_id(STATES, after, limit, |blob_id, value| {
            Ok((blob_id, decode_state(&blob_id, value)?))
        })
    }

    /// Joins a verified fact into the blob's state and syncs it to disk
    /// before returning; maintains the expiry, garbage and drift indexes.
    /// Returns the stored state before and after (equal if the fact added
    /// nothing): a fact can also make others redundant, which leave it.
    pub fn record_fact(
        &self,
        fact: VerifiedFact,
        current: Epoch,
    ) -> Result<(BlobState, BlobState), StoreError> {
        self.record(fact, current, true)
    }

    /// [`Store::record_fact`] for many facts, synced to disk once at the
    /// end (a page of anti-entropy): what it returns is durable, what it
    /// had written before an error may not be.
    pub fn record_facts(
        &self,
        facts: impl IntoIterator<Item = VerifiedFact>,
        current: Epoch,
    ) -> Result<Vec<(BlobState, BlobState)>, StoreError> {
        let recorded = facts
            .into_iter()
            .map(|fact| self.record(fact, current, false))
            .collect::<Result<Vec<_>, _>>()?;
        self.sync()?;
        Ok(recorded)
    }

    fn record(
        &self,
        fact: VerifiedFact,
        current: Epoch,
        sync: bool,
    ) -> Result<(BlobState, BlobState), StoreError> {
        let blob_id = fact.fact().blob_id();
        let _guard = self.lock(&blob_id);
        let before = self.stored_state(&blob_id)?;
        let mut after = before.clone();
        after.apply(fact).map_err(|e| StoreError::Fact {
            blob_id,
            reason: e.to_string(),
        })?;
        if after == before {
            return Ok((before, after));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(STATES)?,
            blob_id.0,
            envelope::seal_parts_as(envelope::FORMAT_STATE, &[&after.to_bytes()]),
        );
        let (old_end, new_end) = (before.available_until(), after.available_until());
        if old_end != new_end {
            if let Some(end) = old_end {
                batch.delete_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id));
            }
            if let Some(end) = new_end {
                batch.put_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id), []);
            }
        }
        let status = after.status(current);
        if matches!(status, BlobStatus::Certified { .. }) {
            // Certified and live: no longer a pending upload (an upload of
            // an expired or deleted blob stays pending until its own
            // certificate).
            batch.delete_cf(self.cf(PENDING)?, blob_id.0);
        }
        if matches!(
            status,
            BlobStatus::Deleted { .. } | BlobStatus::Invalid { .. }
        ) {
            batch.put_cf(self.cf(GARBAGE)?, blob_id.0, []);
        } else {
            // Stored again and certified anew after a deletion.
            batch.delete_cf(self.cf(GARBAGE)?, blob_id.0);
        }
        let drifting =
            matches!(status, BlobStatus::Certified { .. }) && !self.holds_all_pairs(&blob_id)?;
        if drifting {
            batch.put_cf(self.cf(DRIFT)?, blob_id.0, []);
        } else {
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
        }
        self.write(STATES, batch, sync)?;
        let mut drift = self.drift_set();
        if drifting {
            drift.insert(blob_id);
        } else {
            drift.remove(&blob_id);
        }
        Ok((before, after))
    }

    // ---- drift ----

    /// How many certified, available blobs lack pairs of this node's shards.
    pub fn drift_count(&self) -> usize {
        self.drift_set().len()
    }

    /// Up to `limit` drifting blobs after `after`, in blob-ID order.
    pub fn drift(&self, after: Option<&BlobId>, limit: usize) -> Vec<BlobId> {
        let drift = self.drift_set();
        let iter: Box<dyn Iterator<Item = &BlobId>> = match after {
            Some(after) => Box::new(drift.range((
                std::ops::Bound::Excluded(*after),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(drift.iter()),
        };
        iter.take(limit).copied().collect()
    }

    fn scan_blob_ids(
        &self,
        table: &'static str,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, StoreError> {
        self.scan_by_blob_id(table, after, limit, |blob_id, _| Ok(blob_id))
    }

    /// Up to `limit` entries of a table keyed by blob ID, after `after`.
    fn scan_by_blob_id<T>(
        &self,
        table: &'static str,
        after: Option<&BlobId>,
        limit: usize,
        mut entry: impl FnMut(BlobId, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let cf = self.cf(table)?;
        let mode = match after {
            Some(id) => IteratorMode::From(&id.0, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(StoreError::db(table))?;
            let blob_id = blob_id_from(&key, table)?;
            if Some(&blob_id) == after {
                continue;
            }
            out.push(entry(blob_id, &value)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    // ---- garbage ----

    /// Why a blob's data may be collected now, if it may. Never while a
    /// confirmation this node signed still binds, nor while an upload that
    /// arrived after `pending_deadline_ms` waits for its certificate (also
    /// for a blob stored again after it expired or was deleted).
    fn garbage_reason(
        &self,
        blob_id: &BlobId,
        current: Epoch,
        pending_deadline_ms: u64,
    ) -> Result<Option<GarbageReason>, StoreError> {
        let state = self.stored_state(blob_id)?;
        let status = state.status(current);
        match status {
            BlobStatus::Invalid { .. } => return Ok(Some(GarbageReason::Invalid)),
            BlobStatus::Certified { .. } => return Ok(None),
            _ => {}
        }
        if self
            .promised(blob_id)?
            .is_some_and(|promise| promise.binds(&state, current))
        {
            return Ok(None);
        }
        let stale_upload = match self.get(PENDING, &blob_id.0)? {
            Some(value) => {
                if self.arrival(blob_id, &value)? >= pending_deadline_ms {
                    return Ok(None);
                }
                true
            }
            None => false,
        };
        Ok(match status {
            BlobStatus::Expired { .. } => Some(GarbageReason::Expired),
            BlobStatus::Deleted { .. } => Some(GarbageReason::Deleted),
            _ => stale_upload.then_some(GarbageReason::StalePending),
        })
    }

    fn arrival(&self, blob_id: &BlobId, value: &[u8]) -> Result<u64, StoreError> {
        records::decode_arrival(blob_id, value)
    }

    /// Up to `limit` blobs whose data may be collected in epoch `current`:
    /// expired, deleted, invalid, or uploads still uncertified that arrived
    /// before `pending_deadline_ms`. Stops reading once `limit` are found.
    pub fn garbage(
        &self,
        current: Epoch,
        pending_deadline_ms: u64,
        limit: usize,
    ) -> Result<Vec<(BlobId, GarbageReason)>, StoreError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut consider = |store: &Store, blob_id: BlobId| -> Result<bool, StoreError> {
            if seen.insert(blob_id) {
                if let Some(reason) =
                    store.garbage_reason(&blob_id, current, pending_deadline_ms)?
                {
                    out.push((blob_id, reason));
                }
            }
            Ok(out.len() >= limit)
        };
        // Expired: the expiry index in end-epoch order, up to the current epoch.
        for item in self.db.iterator_cf(self.cf(EXPIRY)?, IteratorMode::Start) {
            let (key, _) = item.map_err(StoreError::db(EXPIRY))?;
            let (end, blob_id) = key.split_at_checked(8).ok_or_else(|| StoreError::Corrupt {
                table: EXPIRY,
                key: envelope::hex(&key),
                reason: "key shorter than an epoch".into(),
            })?;
            if u64::from_be_bytes(end.try_into().unwrap_or([0xff; 8])) > current.0 {
                break;
            }
            if consider(self, blob_id_from(blob_id, EXPIRY)?)? {
                return Ok(out);
            }
        }
        // Deleted and invalid, then uncertified uploads (bounded in number by
        // the node's limits).
        for table in [GARBAGE, PENDING] {
            for item in self.db.iterator_cf(self.cf(table)?, IteratorMode::Start) {
                let (key, _) = item.map_err(StoreError::db(table))?;
                if consider(self, blob_id_from(&key, table)?)? {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Removes the slivers and metadata of up to `batch_size` garbage blobs,
    /// keeping their state records (so "deleted", "expired" and "invalid"
    /// are still answered with proof). Each blob is re-checked and removed
    /// in one write under its lock, so a certificate that arrives meanwhile
    /// wins and writes to other blobs are never blocked. Call repeatedly
    /// while [`GcReport::more`].
    pub fn collect_garbage(
        &self,
        current: Epoch,
        pending_deadline_ms: u64,
        batch_size: usize,
    ) -> Result<GcReport, StoreError> {
        let batch_size = batch_size.max(1);
        let found = self.garbage(current, pending_deadline_ms, batch_size + 1)?;
        let mut report = GcReport {
            more: found.len() > batch_size,
            ..GcReport::default()
        };
        for (blob_id, _) in found.into_iter().take(batch_size) {
            let _guard = self.lock(&blob_id);
            if self
                .garbage_reason(&blob_id, current, pending_deadline_ms)?
                .is_none()
            {
                continue;
            }
            let mut batch = WriteBatch::default();
            for shard in self.stored_shards(&blob_id)? {
                self.unrecord_pair(&mut batch, shard, &blob_id)?;
                report.slivers += 2;
            }
            batch.delete_cf(self.cf(METADATA)?, blob_id.0);
            batch.delete_cf(self.cf(GARBAGE)?, blob_id.0);
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
            batch.delete_cf(self.cf(PENDING)?, blob_id.0);
            batch.delete_cf(self.cf(PROMISES)?, blob_id.0);
            if let Some(end) = self.stored_state(&blob_id)?.available_until() {
                batch.delete_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id));
            }
            // Synced before the files go: a crash (or power loss) then leaves
            // at worst files without records, which the next open removes,
            // never records without their files.
            self.write(SLIVERS, batch, true)?;
            self.drift_set().remove(&blob_id);
            // A file that cannot be removed now is unrecorded: the next open
            // removes it.
            let _ = self.files.remove_blob(&blob_id);
            report.blobs += 1;
        }
        self.gc[0].fetch_add(1, Ordering::Relaxed);
        self.gc[1].fetch_add(report.blobs, Ordering::Relaxed);
        self.gc[2].fetch_add(report.slivers, Ordering::Relaxed);
        Ok(report)
    }

    // ---- node state ----

    /// Stores a node-state value (current epoch, sync cursors, counters).
    pub fn put_node_value(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(NODE)?, name.as_bytes(), envelope::seal(value));
        self.write(NODE, batch, true)
    }

    /// A node-state value.
    pub fn node_value(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(NODE, name.as_bytes())?
            .map(|v| envelope::open(NODE, name.as_bytes(), &v).map(<[u8]>::to_vec))
            .transpose()
    }

    /// Records the current epoch.
    pub fn set_current_epoch(&self, epoch: Epoch) -> Result<(), StoreError> {
        self.put_node_value("current_epoch", &epoch.0.to_le_bytes())
    }

    /// The recorded current epoch (0 if never set).
    pub fn current_epoch(&self) -> Result<Epoch, StoreError> {
        Ok(match self.node_value("current_epoch")? {
            Some(bytes) => Epoch(u64::from_le_bytes(bytes.try_into().map_err(|_| {
                StoreError::Corrupt {
                    table: NODE,
                    key: "current_epoch".into(),
                    reason: "not 8 bytes".into(),
                }
            })?)),
            None => Epoch(0),
        })
    }

    // ---- metrics ----

    /// Size figures per table.
    pub fn table_stats(&self) -> Result<Vec<TableStats>, StoreError> {
        TABLES
            .iter()
            .map(|table| {
                let cf = self.cf(table)?;
                let int = |name: &str| -> Result<u64, StoreError> {
                    Ok(self
                        .db
                        .property_int_value_cf(cf, name)
                        .map_err(StoreError::db(table))?
                        .unwrap_or(0))
                };
                Ok(TableStats {
                    table,
                    estimated_keys: int("rocksdb.estimate-num-keys")?,
                    sst_bytes: int("rocksdb.total-sst-files-size")?,
                    blob_file_bytes: int("rocksdb.total-blob-file-size")?,
                })
            })
            .collect()
    }

    /// Garbage-collection totals since open.
    pub fn gc_stats(&self) -> GcStats {
        GcStats {
            passes: self.gc[0].load(Ordering::Relaxed),
            blobs: self.gc[1].load(Ordering::Relaxed),
            slivers: self.gc[2].load(Ordering::Relaxed),
        }
    }

    /// Makes every write so far durable: syncs the write-ahead log.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true).map_err(StoreError::db("(wal)"))
    }

    /// Flushes memtables to disk (tests and benchmarks use it to exercise
    /// the on-disk path).
    pub fn flush(&self) -> Result<(), StoreError> {
        for table in TABLES {
            self.db
                .flush_cf(self.cf(table)?)
                .map_err(StoreError::db(table))?;
        }
        Ok(())
    }
}

impl Store {
    /// [`Store::load_sliver`], or `None` if the blob was collected between
    /// reading its record and reading its file. A pair whose file is gone
    /// or damaged is dropped (see [`StoreError::PairLost`]).
    fn load_recorded(
        &self,
        key: &[u8],
        axis: Axis,
        stored: &[u8],
    ) -> Result<Option<Sliver>, StoreError> {
        match self.load_sliver(key, axis, stored) {
            Err(StoreError::PairLost { .. }) if self.get(SLIVERS, key)?.is_none() => Ok(None),
            Err(lost @ StoreError::PairLost { blob_id, shard, .. }) => {
                self.drop_lost_pair(shard, &blob_id)?;
                Err(lost)
            }
            loaded => loaded.map(Some),
        }
    }

    /// Adds to `batch` the deletion of `shard`'s pair of a blob: both
    /// slivers' records and the pair entry.
    fn unrecord_pair(
        &self,
        batch: &mut WriteBatch,
        shard: ShardIndex,
        blob_id: &BlobId,
    ) -> Result<(), StoreError> {
        for axis in [Axis::Primary, Axis::Secondary] {
            batch.delete_cf(self.cf(SLIVERS)?, sliver_key(shard, blob_id, axis));
        }
        batch.delete_cf(self.cf(PAIRS)?, pair_key(blob_id, shard));
        Ok(())
    }

    /// Unrecords a pair whose file is gone or damaged, removes what is left
    /// of the file, and marks a certified blob as drifting: repair then
    /// rebuilds the pair as it does for any missing one.
    fn drop_lost_pair(&self, shard: ShardIndex, blob_id: &BlobId) -> Result<(), StoreError> {
        let _guard = self.lock(blob_id);
        let mut batch = WriteBatch::default();
        self.unrecord_pair(&mut batch, shard, blob_id)?;
        let state = self.stored_state(blob_id)?;
        let drifting = matches!(
            state.status(self.current_epoch()?),
            BlobStatus::Certified { .. }
        );
        if drifting {
            batch.put_cf(self.cf(DRIFT)?, blob_id.0, []);
        }
        // Synced before the file goes, as in garbage collection.
        self.write(SLIVERS, batch, true)?;
        if drifting {
            self.drift_set().insert(*blob_id);
        }
        self.files.remove(blob_id, shard);
        Ok(())
    }

    /// A sliver from its record: the bytes themselves, or where they are in
    /// a pair file (read and checked against the recorded checksum).
    fn load_sliver(&self, key: &[u8], axis: Axis, stored: &[u8]) -> Result<Sliver, StoreError> {
        let (index, data) = match records::decode_sliver_record(key, stored)? {
            records::SliverRecord::Inline { index, data } => {
                (index, bytes::Bytes::copy_from_slice(data))
            }
            records::SliverRecord::InFile(place) => {
                let corrupt = |reason: String| StoreError::Corrupt {
                    table: SLIVERS,
                    key: envelope::hex(key),
                    reason,
                };
                let (offset, len) = (place.offset, place.length);
                let len = usize::try_from(len).map_err(|e| corrupt(e.to_string()))?;
                let (shard, blob_id) = match key {
                    [s0, s1, blob_id @ ..] if blob_id.len() >= 32 => (
                        ShardIndex(u16::from_be_bytes([*s0, *s1])),
                        blob_id_from(&blob_id[..32], SLIVERS)?,
                    ),
                    _ => return Err(corrupt("key is not a sliver key".into())),
                };
                let lost = |reason: String| StoreError::PairLost {
                    blob_id,
                    shard,
                    reason,
                };
                let data = match self.files.read(&blob_id, shard, offset, len) {
                    Err(StoreError::File { source, path, .. })
                        if matches!(
                            source.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        return Err(lost(format!("{}: {source}", path.display())))
                    }
                    read => read?,
                };
                if envelope::checksum(&data) != place.checksum {
                    return Err(lost(format!(
                        "fails its checksum over {len} bytes at offset {offset} of {}",
                        self.files.path(&blob_id, shard).display()
                    )));
                }
                (place.index, bytes::Bytes::from(data))
            }
        };
        Ok(Sliver { axis, index, data })
    }

    /// Removes pair files the database does not record (a crash between
    /// placing a file and recording it, or between unrecording a blob and
    /// removing its files), and counts the bytes of the others.
    fn remove_unrecorded_pair_files(&self) -> Result<(), StoreError> {
        let mut bytes = 0;
        for (blob_id, shard, len) in self.files.list()? {
            let key = sliver_key(shard, &blob_id, Axis::Primary);
            let recorded = self
                .get(SLIVERS, &key)?
                .is_some_and(|stored| stored.first() == Some(&envelope::FORMAT_IN_FILE));
            if recorded {
                bytes += len;
            } else {
                self.files.remove_orphan(&blob_id, shard);
            }
        }
        self.files.set_bytes(bytes);
        Ok(())
    }

    /// Bytes of sliver pairs kept in files of their own.
    pub fn pair_file_bytes(&self) -> u64 {
        self.files.bytes()
    }

    /// Bytes on disk: every table's files and the pair files.
    pub fn stored_bytes(&self) -> Result<u64, StoreError> {
        let tables = self.table_stats()?;
        let in_tables: u64 = tables.iter().map(|t| t.sst_bytes + t.blob_file_bytes).sum();
        Ok(in_tables + self.pair_file_bytes())
    }
}

/// Whether files in `dir` (created if missing) take direct I/O. Some file
/// systems refuse `O_DIRECT` (tmpfs before Linux 6.6, several network and
/// FUSE file systems), some accept the open but fail the writes, and RocksDB
/// would then fail every flush: so one aligned block is written and synced
/// rather than the support assumed.
fn direct_io_supported(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        if std::fs::create_dir_all(dir).is_err() {
            return false;
        }
        // An anonymous map is page-aligned.
        let Ok(block) = memmap2::MmapMut::map_anon(pair_files::BLOCK) else {
            return false;
        };
        let probe = dir.join(".direct-io-probe");
        // Left over if a probe was interrupted.
        let _ = std::fs::remove_file(&probe);
        let written = pair_files::create_direct(&probe, &block).and_then(|file| file.sync_all());
        let _ = std::fs::remove_file(&probe);
        written.is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}
