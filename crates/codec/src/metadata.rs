//! Blob metadata: what a blob's ID commits to.
//!
//! Canonical encoding (BCS): `encoding_type: u8 enum (0 = RedStuff)`,
//! `version: u8`, `unencoded_length: u64 LE`, then a ULEB128 count `n`
//! followed by `n` pairs of 32-byte hashes `(primary, secondary)` in
//! sliver-pair order.
//!
//! The blob ID is
//! `BLAKE3-derive-key("floe 2026-11 blob id v1", encoding_type ‖ version ‖
//! unencoded_length (u64 LE) ‖ metadata_root)` where `metadata_root` is
//! `BLAKE3-derive-key("floe 2026-11 blob metadata v1", primary_0 ‖ secondary_0 ‖ …)`.
//! Because every sliver hash commits to all `n` symbols of its extended row
//! or column, the ID commits to every symbol of the extended matrix.

use serde::{Deserialize, Serialize};

use crate::{
    error::{ConfigError, MetadataError},
    Axis, BlobId, EncodingConfig, Hash32, SliverIndex, SliverPairIndex,
};

/// The current metadata format version.
pub const FORMAT_VERSION: u8 = 1;

const METADATA_CONTEXT: &str = "floe 2026-11 blob metadata v1";
const BLOB_ID_CONTEXT: &str = "floe 2026-11 blob id v1";

/// The erasure code a blob is encoded with. BCS: one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EncodingType {
    /// RedStuff: two-dimensional systematic Reed–Solomon over GF(2¹⁶)
    /// (reed-solomon-simd), BLAKE3 sliver commitments.
    RedStuff,
}

impl EncodingType {
    fn tag(self) -> u8 {
        match self {
            EncodingType::RedStuff => 0,
        }
    }
}

/// The hashes of one sliver pair: the commitments to the extended primary
/// sliver (row) and the extended secondary sliver (column) of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SliverPairHashes {
    /// Commitment to the extended row `p` (all `n` symbols).
    pub primary: Hash32,
    /// Commitment to the extended column `n − 1 − p` (all `n` symbols).
    pub secondary: Hash32,
}

#[derive(Deserialize)]
struct UncheckedMetadata {
    encoding_type: EncodingType,
    version: u8,
    unencoded_length: u64,
    hashes: Vec<SliverPairHashes>,
}

/// The metadata of a blob: its encoding, length and the hashes of all its
/// sliver pairs. Always well-formed: construction and deserialization check
/// the version, the shard count and that the length is encodable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedMetadata")]
pub struct BlobMetadata {
    encoding_type: EncodingType,
    version: u8,
    unencoded_length: u64,
    hashes: Vec<SliverPairHashes>,
    #[serde(skip)]
    config: EncodingConfig,
    #[serde(skip)]
    symbol_size: u32,
}

impl TryFrom<UncheckedMetadata> for BlobMetadata {
    type Error = ConfigError;
    fn try_from(raw: UncheckedMetadata) -> Result<Self, ConfigError> {
        if raw.version != FORMAT_VERSION {
            return Err(ConfigError::UnsupportedVersion {
                version: raw.version,
            });
        }
        match raw.encoding_type {
            EncodingType::RedStuff => BlobMetadata::new(raw.unencoded_length, raw.hashes),
        }
    }
}

impl BlobMetadata {
    /// Metadata for a RedStuff blob of `unencoded_length` bytes with one
    /// [`SliverPairHashes`] per shard.
    pub fn new(unencoded_length: u64, hashes: Vec<SliverPairHashes>) -> Result<Self, ConfigError> {
        let config = EncodingConfig::from_shard_count(hashes.len())?;
        let symbol_size = config.symbol_size(unencoded_length)?;
        Ok(Self {
            encoding_type: EncodingType::RedStuff,
            version: FORMAT_VERSION,
            unencoded_length,
            hashes,
            config,
            symbol_size,
        })
    }

    /// The encoding type.
    pub fn encoding_type(&self) -> EncodingType {
        self.encoding_type
    }

    /// The blob's length in bytes.
    pub fn unencoded_length(&self) -> u64 {
        self.unencoded_length
    }

    /// The hashes of every sliver pair, in pair order.
    pub fn hashes(&self) -> &[SliverPairHashes] {
        &self.hashes
    }

    /// The encoding configuration (`n` is the number of sliver pairs).
    pub fn config(&self) -> EncodingConfig {
        self.config
    }

    /// The symbol size in bytes.
    pub fn symbol_size(&self) -> usize {
        self.symbol_size as usize
    }

    /// The commitment to the sliver `index` on `axis` (caller checks `index < n`).
    pub(crate) fn sliver_hash(&self, axis: Axis, index: SliverIndex) -> Hash32 {
        let pair = index.to_pair_index(axis, self.config.n_shards());
        let hashes = &self.hashes[pair.as_usize()];
        match axis {
            Axis::Primary => hashes.primary,
            Axis::Secondary => hashes.secondary,
        }
    }

    /// The hashes of one pair, if `pair < n`.
    pub fn pair_hashes(&self, pair: SliverPairIndex) -> Option<&SliverPairHashes> {
        self.hashes.get(pair.as_usize())
    }

    /// The root over all sliver hashes.
    pub fn metadata_root(&self) -> Hash32 {
        let mut hasher = blake3::Hasher::new_derive_key(METADATA_CONTEXT);
        for pair in &self.hashes {
            hasher.update(&pair.primary.0);
            hasher.update(&pair.secondary.0);
        }
        hasher.finalize().into()
    }

    /// The blob ID this metadata commits to.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig};
    ///
    /// let (metadata, blob_id, _) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// assert_eq!(metadata.blob_id(), blob_id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blob_id(&self) -> BlobId {
        let mut hasher = blake3::Hasher::new_derive_key(BLOB_ID_CONTEXT);
        hasher.update(&[self.encoding_type.tag(), self.version]);
        hasher.update(&self.unencoded_length.to_le_bytes());
        hasher.update(&self.metadata_root().0);
        BlobId(*hasher.finalize().as_bytes())
    }

    /// Checks that this metadata is the metadata of `blob_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, BlobId, EncodingConfig};
    ///
    /// let (metadata, blob_id, _) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// metadata.verify(&blob_id)?;
    /// assert!(metadata.verify(&BlobId([0; 32])).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, blob_id: &BlobId) -> Result<(), MetadataError> {
        let computed = self.blob_id();
        if computed == *blob_id {
            Ok(())
        } else {
            Err(MetadataError::BlobIdMismatch {
                expected: *blob_id,
                computed,
            })
        }
    }

    /// The canonical (BCS) bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::canonical_bytes(self)
    }
}
