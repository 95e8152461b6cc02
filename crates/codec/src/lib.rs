//! # floe-codec
//!
//! RedStuff for Floe: two-dimensional Reed–Solomon erasure coding of blobs
//! into sliver pairs, BLAKE3 commitments that make a blob ID commit to every
//! symbol, verified decoding, and sliver recovery with proofs of a writer's
//! inconsistency. Pure and synchronous: no I/O, no async; parallel work runs
//! on the caller's rayon pool.
//!
//! ## The code
//!
//! For `n` shards, `f = ⌊(n − 1)/3⌋`. A blob, zero-padded, is laid out as a
//! matrix of `n − 2f` rows and `n − f` columns of `s`-byte symbols (`s` even,
//! the smallest that fits, see [`EncodingConfig::symbol_size`]). Every row is
//! extended to `n` symbols and every column to `n` symbols with systematic
//! Reed–Solomon over GF(2¹⁶) ([reed-solomon-simd]).
//!
//! * primary sliver `i` = row `i` restricted to the `n − f` source columns;
//!   any `n − 2f` primary slivers decode the blob (rows `0..n − 2f` with no
//!   Reed–Solomon work at all);
//! * secondary sliver `j` = column `j` restricted to the `n − 2f` source rows;
//!   any `n − f` secondary slivers decode the blob;
//! * sliver pair `p` = primary sliver `p` and secondary sliver `n − 1 − p`;
//!   pairs are rotated onto shards by the blob ID ([`ShardIndex::to_pair_index`]);
//! * a sliver's hash is the BLAKE3 root of its *extended* row or column (all
//!   `n` symbols as one byte string), so a single symbol can be proven
//!   against the metadata ([`RecoverySymbol`]); the [`BlobId`] hashes the
//!   encoding type, format version, length and all sliver hashes
//!   ([`BlobMetadata`]).
//!
//! ## Sizes
//!
//! `n` ranges over [`MIN_N_SHARDS`]`..=`[`MAX_N_SHARDS`]. Symbols are at most
//! [`MAX_SYMBOL_SIZE`] (1 MiB), so the largest blob is
//! `(n − 2f)(n − f)` MiB: about 6 MiB at `n = 4`, 2.2 GiB at `n = 100`,
//! 217 GiB at `n = 1000` ([`EncodingConfig::max_blob_size`]). Encoded size
//! is about `n² / ((n − 2f)(n − f)) ≈ 4.5×` the blob, plus `64 n` bytes of
//! metadata.
//!
//! ## Example
//!
//! ```
//! use floe_codec::{decode, encode, DecodeCheck, EncodingConfig};
//!
//! let config = EncodingConfig::new(10)?;
//! let (metadata, blob_id, pairs) = encode(&config, b"Floe keeps this")?;
//! // Any n - 2f = 4 primary slivers decode, verified against the blob ID.
//! let slivers: Vec<_> = pairs.iter().rev().take(4).map(|p| p.primary.clone()).collect();
//! let blob = decode(&blob_id, &metadata, &slivers, DecodeCheck::VerifySlivers)?;
//! assert_eq!(blob, b"Floe keeps this");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Canonical bytes
//!
//! Every public type serializes with serde; its canonical form, used on the
//! wire and under signatures, is [BCS] (little-endian fixed-width integers,
//! ULEB128 lengths and enum tags, fields in declaration order). Each type's
//! documentation states its layout; [`canonical_bytes`] produces it and
//! `tests/vectors.rs` pins the blob IDs of fixed inputs so the format cannot
//! drift silently.
//!
//! [reed-solomon-simd]: https://docs.rs/reed-solomon-simd
//! [BCS]: https://docs.rs/bcs

// The README's example is compiled and run as a test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod blob_id;
mod buffer;
mod commitment;
mod config;
mod decode;
mod encode;
mod error;
mod index;
mod line;
mod metadata;
mod recovery;
mod sliver;

pub use blob_id::{BlobId, Hash32};
pub use commitment::{SymbolProof, SLIVER_CONTEXT};
pub use config::{EncodingConfig, MAX_N_SHARDS, MAX_SYMBOL_SIZE, MIN_N_SHARDS, MIN_SYMBOL_SIZE};
pub use decode::{decode, decode_bytes, DecodeCheck};
pub use encode::encode;
pub use error::{
    BlobIdParseError, CanonicalError, ConfigError, DecodeError, InconsistencyError, MetadataError,
    ProofError, RecoveryError, SliverError, SymbolError,
};
pub use index::{Axis, ShardIndex, SliverIndex, SliverPairIndex, SymbolIndex};
pub use metadata::{BlobMetadata, EncodingType, SliverPairHashes, FORMAT_VERSION};
pub use recovery::{
    recover_sliver, symbols_needed, BareSymbol, InconsistencyProof, RecoverySymbol, Symbol,
};
pub use sliver::{Sliver, SliverPair};

/// The canonical (BCS) bytes of any floe-codec type.
///
/// # Examples
///
/// ```
/// use floe_codec::{canonical_bytes, encode, from_canonical_bytes, BlobMetadata, EncodingConfig};
///
/// let (metadata, _, _) = encode(&EncodingConfig::new(4)?, b"bytes")?;
/// let bytes = canonical_bytes(&metadata);
/// let back: BlobMetadata = from_canonical_bytes(&bytes)?;
/// assert_eq!(back, metadata);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn canonical_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // BCS fails only for sequences longer than 2^31 elements or nesting
    // deeper than 500, neither of which a floe-codec type can reach.
    bcs::to_bytes(value).unwrap_or_default()
}

/// Parses canonical (BCS) bytes, rejecting trailing bytes and, for types
/// with invariants (such as [`BlobMetadata`]), values that break them.
///
/// # Examples
///
/// ```
/// use floe_codec::{canonical_bytes, from_canonical_bytes, BlobId};
///
/// let id = BlobId([7; 32]);
/// let mut bytes = canonical_bytes(&id);
/// assert_eq!(from_canonical_bytes::<BlobId>(&bytes)?, id);
/// bytes.push(0); // trailing bytes are refused
/// assert!(from_canonical_bytes::<BlobId>(&bytes).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_canonical_bytes<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
) -> Result<T, CanonicalError> {
    bcs::from_bytes(bytes).map_err(|e| CanonicalError {
        type_name: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}
