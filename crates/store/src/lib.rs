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
//! | `slivers` | shard (u16 BE) ‖ blob ID ‖ axis (u8) | sliver index (u16 LE) ‖ symbols; for a pair kept in a file (format 2): index ‖ offset (u64 LE) ‖ length (u64 LE) ‖ CRC-32C of the sliver (u32 LE), or in records of earlier versions a 16-byte BLAKE3 checksum |
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
//! * Sliver pairs of 512 KiB and more are kept in one file per blob (see
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

mod decoded;
pub mod envelope;
mod error;
mod gc;
mod moves;
mod pair_files;
pub mod records;
mod slivers;
mod states;
mod usage;

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
    BlobState, BlobStatus, Epoch, ProtocolMessage, PublicKey, StorageConfirmation, VerifiedFact,
};
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

pub use error::StoreError;
use pair_files::PairPlace;
use records::{decode, decode_state, file_place};
pub use usage::Charge;
use usage::{usage_key, USAGE};

/// The tables, in a fixed order.
pub const TABLES: [&str; 11] = [
    "metadata", "slivers", "pairs", "states", "pending", "expiry", "garbage", "drift", "node",
    "promises", "usage",
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
/// synced, and that the store recorded the promise to keep them. Only
/// [`Store::promise`] makes one; the node signs the confirmation it carries,
/// so no confirmation is signed before its promise is durable. (The store
/// holds no keys: signing is the node's.)
#[derive(Debug)]
pub struct DurableBlob {
    message: ProtocolMessage<StorageConfirmation>,
}

impl DurableBlob {
    /// The blob.
    pub fn blob_id(&self) -> BlobId {
        self.message.body.blob_id
    }

    /// The storage confirmation that was promised, to be signed.
    pub fn message(&self) -> &ProtocolMessage<StorageConfirmation> {
        &self.message
    }

    /// The storage confirmation that was promised, to be signed.
    pub fn into_message(self) -> ProtocolMessage<StorageConfirmation> {
        self.message
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
    /// The shards this node holds now (sorted); a committee change moves them.
    shards: std::sync::RwLock<Vec<ShardIndex>>,
    /// Serializes read-modify-write per blob (striped by the ID's first byte).
    locks: Vec<Mutex<()>>,
    /// The drift set, mirrored from the `drift` table so counting is free.
    drift: Mutex<BTreeSet<BlobId>>,
    /// Large sliver pairs, in files of their own.
    files: pair_files::PairFiles,
    /// Flushes and compactions use direct I/O.
    direct_io: bool,
    gc: [AtomicU64; 3],
    /// The last few blobs' metadata, decoded.
    decoded: decoded::DecodedMetadata,
}

/// The `node` table's key of the shard set the drift index was built for.
const HELD_SHARDS: &str = "held_shards";

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
        let store = Self::open_held(path)?;
        store.set_shards(shards)?;
        Ok(store)
    }

    /// Opens (creating if needed) the database at `path` holding the shards
    /// it held when it was last open (none for a new one): for a node whose
    /// shards follow its committee, which calls [`Store::set_shards`] once it
    /// knows the current one.
    pub fn open_held(path: impl AsRef<Path>) -> Result<Store, StoreError> {
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
        let files = pair_files::PairFiles::open(&path, direct)?;
        let store = Store {
            db,
            path,
            shards: std::sync::RwLock::new(Vec::new()),
            locks: (0..64).map(|_| Mutex::new(())).collect(),
            drift: Mutex::new(BTreeSet::new()),
            files,
            direct_io: direct,
            gc: Default::default(),
            decoded: Default::default(),
        };
        let drift = store.scan_blob_ids(DRIFT, None, usize::MAX)?;
        *store.drift_set() = drift.into_iter().collect();
        store.remove_unrecorded_pair_files()?;
        if let Some(bytes) = store.node_value(HELD_SHARDS)? {
            let held: Vec<ShardIndex> =
                floe_codec::from_canonical_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                    table: NODE,
                    key: HELD_SHARDS.into(),
                    reason: e.to_string(),
                })?;
            *store
                .shards
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = held;
        }
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shards this node holds (sorted).
    pub fn shards(&self) -> Vec<ShardIndex> {
        self.shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether this node holds `shard`.
    pub fn holds_shard(&self, shard: ShardIndex) -> bool {
        self.shards
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .binary_search(&shard)
            .is_ok()
    }

    /// Makes `shards` the shards this node holds (at open, and when a
    /// committee change moves shards). If they differ from the set held
    /// before (as the database remembers it), every certified blob is
    /// checked again: one that lacks a pair of the new shards drifts, one
    /// that lacks only pairs of shards given up no longer does. Pairs of
    /// shards given up stay until [`Store::drop_shard_pairs`]. Answers
    /// whether the set changed.
    pub fn set_shards(&self, shards: Vec<ShardIndex>) -> Result<bool, StoreError> {
        let mut shards = shards;
        shards.sort_unstable();
        shards.dedup();
        let encoded = floe_codec::canonical_bytes(&shards);
        let remembered = self.node_value(HELD_SHARDS)?;
        *self
            .shards
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = shards;
        if remembered.as_deref() == Some(&encoded[..]) {
            return Ok(false);
        }
        self.recompute_drift()?;
        // Remembered only once the drift index matches it: a crash before
        // this recomputes it at the next open.
        self.put_node_value(HELD_SHARDS, &encoded)?;
        Ok(true)
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
