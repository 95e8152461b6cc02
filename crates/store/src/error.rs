//! The typed errors of floe-store.

use floe_codec::{BlobId, ShardIndex};
use thiserror::Error;

/// A storage operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// RocksDB reported an error (I/O, or corruption caught by its own checksums).
    #[error("database error in table {table}: {source}")]
    Database {
        /// The table (column family) involved.
        table: &'static str,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// A value read back from disk is damaged: it is reported, never returned as data.
    #[error("corrupt value in table {table} at key {key}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key, in hex.
        key: String,
        /// What is wrong (truncated, checksum mismatch, undecodable).
        reason: String,
    },
    /// A sliver for a shard this node does not hold.
    #[error("shard {shard} is not held by this node; refusing slivers of blob {blob_id} for it")]
    NotMyShard {
        /// The blob.
        blob_id: BlobId,
        /// The shard.
        shard: ShardIndex,
    },
    /// Pairs of a shard this node holds cannot be dropped.
    #[error("shard {shard} is held by this node; its pairs are kept")]
    ShardHeld {
        /// The shard.
        shard: ShardIndex,
    },
    /// Slivers for a blob whose metadata is not stored.
    #[error(
        "blob {blob_id}: store its metadata (verified against the blob ID) before its slivers"
    )]
    MissingMetadata {
        /// The blob.
        blob_id: BlobId,
    },
    /// Data for a blob that is expired, deleted or invalid.
    #[error("blob {blob_id} is {status}; its data is not stored again")]
    BlobGone {
        /// The blob.
        blob_id: BlobId,
        /// Its status.
        status: &'static str,
    },
    /// A confirmation was requested before every pair of this node's shards was stored.
    #[error("blob {blob_id}: pairs of shards {missing:?} are not stored yet")]
    MissingPairs {
        /// The blob.
        blob_id: BlobId,
        /// The shards whose pairs are missing.
        missing: Vec<ShardIndex>,
    },
    /// A pair file could not be written, read or removed.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What was being done.
        what: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A recorded pair's file is gone, cut short or damaged. The pair has
    /// been dropped (and the blob marked as drifting if it is certified),
    /// so repair rebuilds it from other nodes.
    #[error("blob {blob_id}: the pair file of shard {shard} {reason}; the pair was dropped for repair to rebuild")]
    PairLost {
        /// The blob.
        blob_id: BlobId,
        /// The shard.
        shard: ShardIndex,
        /// What is wrong with the file.
        reason: String,
    },
    /// A storage confirmation this node will not sign.
    #[error("blob {blob_id} cannot be confirmed: {reason}")]
    NotConfirmable {
        /// The blob.
        blob_id: BlobId,
        /// Why.
        reason: String,
    },
    /// A fact that cannot change this blob's state.
    #[error("blob {blob_id}: {reason}")]
    Fact {
        /// The blob.
        blob_id: BlobId,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn db(table: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
        move |source| StoreError::Database { table, source }
    }
}
