//! The typed errors of floe-codec: each says what went wrong and with which
//! blob, sliver or symbol, and none is ever a panic.

use thiserror::Error;

use crate::{Axis, BlobId, SliverIndex, SymbolIndex};

/// An encoding parameter outside what Floe supports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `n_shards` is outside the supported range.
    #[error("n_shards = {n_shards} is out of range: Floe supports {min} to {max} shards")]
    ShardCountOutOfRange {
        /// The rejected shard count.
        n_shards: usize,
        /// The smallest supported count.
        min: u16,
        /// The largest supported count.
        max: u16,
    },
    /// The blob is larger than `n` shards can encode.
    #[error(
        "a blob of {unencoded_length} bytes is larger than the {max} bytes {n_shards} shards can encode"
    )]
    BlobTooLarge {
        /// The blob's length.
        unencoded_length: u64,
        /// The largest encodable length for this `n`.
        max: u64,
        /// The shard count.
        n_shards: u16,
    },
    /// Metadata of a format version this build does not know.
    #[error("metadata format version {version} is not supported (this build knows version 1)")]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
}

/// Text that is not a blob ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{input:?} is not a blob ID (expected 43 characters of URL-safe base64)")]
pub struct BlobIdParseError {
    /// The text that failed to parse.
    pub input: String,
}

/// A symbol proof that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The claimed byte range does not fit the committed sliver.
    #[error("symbol bytes {start}..{end} do not fit an extended sliver of {total} bytes")]
    RangeOutOfBounds {
        /// Range start.
        start: usize,
        /// Range end.
        end: usize,
        /// Committed length.
        total: usize,
    },
    /// The proof's chunk bytes have the wrong length for the symbol's position.
    #[error("proof carries {prefix}+{suffix} chunk bytes around the symbol, expected {want_prefix}+{want_suffix}")]
    MalformedChunkBytes {
        /// Prefix bytes given.
        prefix: usize,
        /// Suffix bytes given.
        suffix: usize,
        /// Prefix bytes expected.
        want_prefix: usize,
        /// Suffix bytes expected.
        want_suffix: usize,
    },
    /// The proof has too few or too many sibling chaining values.
    #[error("proof has the wrong number of sibling hashes")]
    SiblingCount,
    /// The recomputed root is not the committed one.
    #[error("symbol does not hash to the committed sliver root")]
    RootMismatch,
}

/// Metadata that is malformed or does not belong to the blob ID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// The metadata hashes to another blob ID.
    #[error("metadata does not match blob {expected}: it hashes to {computed}")]
    BlobIdMismatch {
        /// The blob ID the metadata was checked against.
        expected: BlobId,
        /// The blob ID the metadata actually commits to.
        computed: BlobId,
    },
}

/// A sliver that does not match its blob's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SliverError {
    /// The sliver index is not below `n`.
    #[error("{axis} sliver {index} of blob {blob_id} is out of range for {n_shards} shards")]
    IndexOutOfRange {
        /// The blob.
        blob_id: BlobId,
        /// The sliver's axis.
        axis: Axis,
        /// The sliver's index.
        index: SliverIndex,
        /// The shard count.
        n_shards: u16,
    },
    /// The sliver's length disagrees with the blob's length and shard count.
    #[error("{axis} sliver {index} of blob {blob_id} has {actual} bytes, the metadata implies {expected}")]
    WrongLength {
        /// The blob.
        blob_id: BlobId,
        /// The sliver's axis.
        axis: Axis,
        /// The sliver's index.
        index: SliverIndex,
        /// Bytes expected from the metadata.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The same recovery target was asked for twice.
    #[error("recovery symbols for {axis} sliver {index} of blob {blob_id} were requested twice")]
    DuplicateTarget {
        /// The blob.
        blob_id: BlobId,
        /// The axis of the target sliver.
        axis: Axis,
        /// The target sliver.
        index: SliverIndex,
    },
    /// The sliver is not the one this pair holds on its axis.
    #[error("{axis} sliver {index} of blob {blob_id} does not belong to sliver pair {pair}")]
    NotInPair {
        /// The blob.
        blob_id: BlobId,
        /// The sliver's axis.
        axis: Axis,
        /// The sliver's index.
        index: SliverIndex,
        /// The pair that claimed it.
        pair: crate::SliverPairIndex,
    },
    /// The sliver's data does not hash to the metadata's sliver hash.
    #[error("{axis} sliver {index} of blob {blob_id} does not match its hash in the metadata")]
    HashMismatch {
        /// The blob.
        blob_id: BlobId,
        /// The sliver's axis.
        axis: Axis,
        /// The sliver's index.
        index: SliverIndex,
    },
}

/// A recovery symbol that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SymbolError {
    /// The symbol's source sliver or position is out of range.
    #[error("recovery symbol from {axis} sliver {source_index} at position {symbol_index} of blob {blob_id} is out of range")]
    IndexOutOfRange {
        /// The blob.
        blob_id: BlobId,
        /// The axis of the sliver the symbol came from.
        axis: Axis,
        /// The sliver the symbol came from.
        source_index: SliverIndex,
        /// Its position in the extended source sliver.
        symbol_index: SymbolIndex,
    },
    /// The symbol's size disagrees with the metadata.
    #[error("recovery symbol from {axis} sliver {source_index} of blob {blob_id} has {actual} bytes, expected {expected}")]
    WrongSize {
        /// The blob.
        blob_id: BlobId,
        /// The axis of the sliver the symbol came from.
        axis: Axis,
        /// The sliver the symbol came from.
        source_index: SliverIndex,
        /// Bytes expected.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The symbol's proof does not verify against the metadata.
    #[error("recovery symbol from {axis} sliver {source_index} at position {symbol_index} of blob {blob_id} fails its proof: {source}")]
    BadProof {
        /// The blob.
        blob_id: BlobId,
        /// The axis of the sliver the symbol came from.
        axis: Axis,
        /// The sliver the symbol came from.
        source_index: SliverIndex,
        /// Its position in the extended source sliver.
        symbol_index: SymbolIndex,
        /// Why the proof failed.
        source: ProofError,
    },
}

/// Decoding a blob failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The metadata does not belong to the blob ID.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Too few distinct slivers were given.
    #[error("blob {blob_id}: {given} distinct {axis} slivers given, {needed} needed to decode")]
    NotEnoughSlivers {
        /// The blob.
        blob_id: BlobId,
        /// The axis of the given slivers.
        axis: Axis,
        /// Distinct slivers given.
        given: usize,
        /// Slivers needed.
        needed: usize,
    },
    /// Slivers of both axes were given to one decode.
    #[error("blob {blob_id}: decode takes slivers of one axis, got both primary and secondary")]
    MixedAxes {
        /// The blob.
        blob_id: BlobId,
    },
    /// A sliver failed verification.
    #[error(transparent)]
    InvalidSliver(#[from] SliverError),
    /// A row the decode rebuilt does not match its commitment in the
    /// metadata: the writer encoded the blob inconsistently, and readers
    /// decoding from other slivers would get other bytes.
    #[error("blob {blob_id}: source row {row} rebuilt from the slivers given does not match its commitment; the blob was not encoded consistently by its writer")]
    InconsistentEncoding {
        /// The blob.
        blob_id: BlobId,
        /// The rebuilt row that does not match.
        row: SliverIndex,
    },
    /// The strict check re-encoded the decoded blob and got another blob ID:
    /// the blob was not encoded consistently by its writer.
    #[error(
        "strict check failed: the decoded bytes of blob {expected} re-encode to blob {computed}"
    )]
    StrictCheckFailed {
        /// The requested blob.
        expected: BlobId,
        /// The blob ID of the re-encoded bytes.
        computed: BlobId,
    },
}

/// Recovering a lost sliver from recovery symbols failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecoveryError {
    /// The target sliver index is out of range.
    #[error(transparent)]
    Target(#[from] SliverError),
    /// A symbol is unusable.
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    /// A symbol is for another sliver, or from the same axis as the target.
    #[error("recovery symbol from {axis} sliver {source_index} does not belong to {target_axis} sliver {target} of blob {blob_id}")]
    WrongTarget {
        /// The blob.
        blob_id: BlobId,
        /// Axis of the symbol's source sliver.
        axis: Axis,
        /// The symbol's source sliver.
        source_index: SliverIndex,
        /// The sliver being recovered.
        target_axis: Axis,
        /// Its index.
        target: SliverIndex,
    },
    /// Too few distinct valid symbols.
    #[error("blob {blob_id}: {given} distinct recovery symbols for {target_axis} sliver {target}, {needed} needed")]
    NotEnoughSymbols {
        /// The blob.
        blob_id: BlobId,
        /// The sliver being recovered.
        target_axis: Axis,
        /// Its index.
        target: SliverIndex,
        /// Distinct symbols given.
        given: usize,
        /// Symbols needed.
        needed: usize,
    },
    /// The symbols decode to a sliver that does not match the metadata:
    /// the blob was encoded inconsistently, and here is the proof.
    #[error("blob {} is inconsistently encoded: recovered {} sliver {} does not match its hash", .0.blob_id, .0.target_axis, .0.target)]
    Inconsistent(Box<crate::InconsistencyProof>),
    /// Bare symbols (no proofs) decode to a sliver that does not match the
    /// metadata: a sender lied, or the blob is inconsistently encoded. The
    /// symbols prove neither; proven ones tell which.
    #[error("blob {blob_id}: bare recovery symbols rebuild {target_axis} sliver {target} not matching its hash (a sender lied or the blob is inconsistent; ask for proven symbols)")]
    Unproven {
        /// The blob.
        blob_id: BlobId,
        /// The sliver that failed to rebuild.
        target_axis: Axis,
        /// Its index.
        target: SliverIndex,
    },
}

/// Why an [`crate::InconsistencyProof`] does not prove inconsistency.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InconsistencyError {
    /// The proof's metadata does not belong to its blob ID.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The proof's symbols are unusable.
    #[error(transparent)]
    Recovery(RecoveryError),
    /// Not exactly the needed number of symbols, in increasing source order.
    #[error("an inconsistency proof carries exactly {needed} symbols in increasing source order; this one has {symbols}")]
    NotCanonical {
        /// Symbols given.
        symbols: usize,
        /// Symbols a proof carries.
        needed: usize,
    },
    /// The symbols decode to the sliver the metadata commits to: the blob is
    /// consistent and the proof proves nothing.
    #[error("blob {blob_id}: the symbols recover {target_axis} sliver {target} correctly; the encoding is consistent")]
    Consistent {
        /// The blob.
        blob_id: BlobId,
        /// The sliver the proof is about.
        target_axis: Axis,
        /// Its index.
        target: SliverIndex,
    },
}

/// Bytes that are not the canonical encoding of the expected type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a canonical {type_name}: {reason}")]
pub struct CanonicalError {
    /// The type that was expected.
    pub type_name: &'static str,
    /// What the decoder found.
    pub reason: String,
}
