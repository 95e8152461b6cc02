//! The shape of a RedStuff encoding for a committee of `n_shards` shards.
//!
//! Everything that depends only on `n` lives here: the fault bound `f`, the
//! dimensions of the source matrix, quorum and validity counts, and the symbol
//! size (and so the maximum blob size) implied by a blob length.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The smallest committee RedStuff supports (`f = 1`).
pub const MIN_N_SHARDS: u16 = 4;

/// The largest committee Floe supports.
///
/// reed-solomon-simd would allow more (its limit is 65 536 shards in total per
/// code), but the extended matrix has `n²` symbols of at least 2 bytes and every
/// one is hashed twice, so even a 1-byte blob costs `4·n²` bytes of hashing:
/// 64 MiB at `n = 4096`. Beyond that the fixed cost dwarfs small blobs.
pub const MAX_N_SHARDS: u16 = 4096;

/// The largest symbol, in bytes. Symbols are even-sized because
/// Reed–Solomon works over GF(2¹⁶) (2-byte elements).
///
/// This bounds the blob size for a given `n`: see
/// [`EncodingConfig::max_blob_size`]. 1 MiB symbols keep a single recovery
/// symbol (and its proof) a reasonable unit of network transfer.
pub const MAX_SYMBOL_SIZE: u32 = 1 << 20;

/// The smallest symbol, in bytes (one GF(2¹⁶) element).
pub const MIN_SYMBOL_SIZE: u32 = 2;

/// The parameters of the RedStuff code for `n_shards` shards.
///
/// ```
/// use floe_codec::EncodingConfig;
/// let config = EncodingConfig::new(100)?;
/// assert_eq!(config.f(), 33);
/// assert_eq!(config.primary_source_symbols(), 34); // n - 2f rows
/// assert_eq!(config.secondary_source_symbols(), 67); // n - f columns
/// assert_eq!(config.quorum(), 67);
/// assert_eq!(config.validity(), 34);
/// # Ok::<(), floe_codec::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct EncodingConfig {
    n_shards: u16,
}

impl TryFrom<u16> for EncodingConfig {
    type Error = ConfigError;
    fn try_from(n_shards: u16) -> Result<Self, ConfigError> {
        Self::new(n_shards)
    }
}

impl From<EncodingConfig> for u16 {
    fn from(config: EncodingConfig) -> u16 {
        config.n_shards
    }
}

impl EncodingConfig {
    /// The configuration for `n_shards` shards, which must lie in
    /// [`MIN_N_SHARDS`]`..=`[`MAX_N_SHARDS`].
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::EncodingConfig;
    ///
    /// let config = EncodingConfig::new(10)?;
    /// assert_eq!(config.n_shards(), 10);
    /// assert_eq!(config.f(), 3);
    /// assert!(EncodingConfig::new(3).is_err()); // below MIN_N_SHARDS
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(n_shards: u16) -> Result<Self, ConfigError> {
        if !(MIN_N_SHARDS..=MAX_N_SHARDS).contains(&n_shards) {
            return Err(ConfigError::ShardCountOutOfRange {
                n_shards: usize::from(n_shards),
                min: MIN_N_SHARDS,
                max: MAX_N_SHARDS,
            });
        }
        Ok(Self { n_shards })
    }

    /// The configuration for a shard count given as `usize` (for example the
    /// number of sliver hashes in metadata received from the network).
    pub fn from_shard_count(n_shards: usize) -> Result<Self, ConfigError> {
        let n = u16::try_from(n_shards).map_err(|_| ConfigError::ShardCountOutOfRange {
            n_shards,
            min: MIN_N_SHARDS,
            max: MAX_N_SHARDS,
        })?;
        Self::new(n)
    }

    /// `n`, the number of shards (and of sliver pairs per blob).
    pub fn n_shards(&self) -> u16 {
        self.n_shards
    }

    /// `f = ⌊(n − 1) / 3⌋`, the number of shards that may be faulty.
    pub fn f(&self) -> u16 {
        (self.n_shards - 1) / 3
    }

    /// `n − 2f`: the rows of the source matrix, the source symbols of the
    /// primary (column-wise) code, the symbols in a secondary sliver, and the
    /// number of primary slivers needed to decode a blob.
    pub fn primary_source_symbols(&self) -> u16 {
        self.n_shards - 2 * self.f()
    }

    /// `n − f`: the columns of the source matrix, the source symbols of the
    /// secondary (row-wise) code, the symbols in a primary sliver, and the
    /// number of secondary slivers needed to decode a blob.
    pub fn secondary_source_symbols(&self) -> u16 {
        self.n_shards - self.f()
    }

    /// The shard weight of a quorum: `n − f`.
    pub fn quorum(&self) -> u16 {
        self.n_shards - self.f()
    }

    /// The shard weight that guarantees one honest shard: `f + 1`.
    pub fn validity(&self) -> u16 {
        self.f() + 1
    }

    /// The number of symbols in the source matrix, `(n − 2f)(n − f)`.
    pub fn source_symbols(&self) -> u64 {
        u64::from(self.primary_source_symbols()) * u64::from(self.secondary_source_symbols())
    }

    /// The largest blob this configuration can encode:
    /// `(n − 2f)(n − f) ·` [`MAX_SYMBOL_SIZE`] bytes (about 6 MiB at `n = 4`,
    /// 2.2 GiB at `n = 100`, 217 GiB at `n = 1000`).
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::EncodingConfig;
    ///
    /// let config = EncodingConfig::new(4)?; // 2 × 3 source symbols of at most 1 MiB
    /// assert_eq!(config.max_blob_size(), 6 * 1024 * 1024);
    /// assert!(config.symbol_size(config.max_blob_size() + 1).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_blob_size(&self) -> u64 {
        self.source_symbols() * u64::from(MAX_SYMBOL_SIZE)
    }

    /// The symbol size for a blob of `unencoded_length` bytes: the smallest
    /// even number of bytes such that the source matrix holds the blob, and at
    /// least [`MIN_SYMBOL_SIZE`].
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::EncodingConfig;
    ///
    /// let config = EncodingConfig::new(10)?; // 4 × 7 = 28 source symbols
    /// assert_eq!(config.symbol_size(0)?, 2);
    /// assert_eq!(config.symbol_size(56)?, 2);
    /// assert_eq!(config.symbol_size(57)?, 4); // 3 bytes, rounded up to even
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn symbol_size(&self, unencoded_length: u64) -> Result<u32, ConfigError> {
        if unencoded_length > self.max_blob_size() {
            return Err(ConfigError::BlobTooLarge {
                unencoded_length,
                max: self.max_blob_size(),
                n_shards: self.n_shards,
            });
        }
        let per_symbol = unencoded_length.div_ceil(self.source_symbols());
        let even = per_symbol.div_ceil(2) * 2;
        // Bounded by MAX_SYMBOL_SIZE through the max_blob_size check above.
        Ok(u32::try_from(even.max(u64::from(MIN_SYMBOL_SIZE))).unwrap_or(MAX_SYMBOL_SIZE))
    }

    /// Bytes of sliver pairs across all shards for a blob of
    /// `unencoded_length` bytes: each of the `n` pairs holds a row of
    /// `n − f` symbols and a column of `n − 2f`.
    pub fn encoded_length(&self, unencoded_length: u64) -> Result<u64, ConfigError> {
        let symbol = u64::from(self.symbol_size(unencoded_length)?);
        let per_pair =
            u64::from(self.primary_source_symbols()) + u64::from(self.secondary_source_symbols());
        Ok(u64::from(self.n_shards) * per_pair * symbol)
    }

    /// The number of shards as `usize`, for indexing.
    pub(crate) fn n(&self) -> usize {
        usize::from(self.n_shards)
    }

    /// `n − 2f` as `usize`.
    pub(crate) fn rows(&self) -> usize {
        usize::from(self.primary_source_symbols())
    }

    /// `n − f` as `usize`.
    pub(crate) fn cols(&self) -> usize {
        usize::from(self.secondary_source_symbols())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_shard_counts() {
        for n in [0u16, 1, 2, 3, MAX_N_SHARDS + 1, u16::MAX] {
            assert!(matches!(
                EncodingConfig::new(n),
                Err(ConfigError::ShardCountOutOfRange { .. })
            ));
        }
        assert!(EncodingConfig::from_shard_count(70_000).is_err());
    }

    #[test]
    fn every_supported_shard_count_is_supported_by_reed_solomon() {
        for n in MIN_N_SHARDS..=MAX_N_SHARDS {
            let c = EncodingConfig::new(n).unwrap();
            let (rows, cols, f) = (c.rows(), c.cols(), usize::from(c.f()));
            assert!(3 * f < c.n() && c.n() <= 3 * f + 3);
            assert!(
                reed_solomon_simd::ReedSolomonEncoder::supports(cols, f),
                "n={n}"
            );
            assert!(
                reed_solomon_simd::ReedSolomonEncoder::supports(rows, 2 * f),
                "n={n}"
            );
            assert!(
                reed_solomon_simd::ReedSolomonDecoder::supports(cols, f),
                "n={n}"
            );
            assert!(
                reed_solomon_simd::ReedSolomonDecoder::supports(rows, 2 * f),
                "n={n}"
            );
        }
    }

    #[test]
    fn encoded_length_is_the_bytes_of_all_sliver_pairs() {
        let c = EncodingConfig::new(10).unwrap();
        for len in [0usize, 1, 27, 1000, 4097] {
            let blob: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (_, _, pairs) = crate::encode(&c, &blob).unwrap();
            let actual: usize = pairs.iter().map(crate::SliverPair::byte_len).sum();
            assert_eq!(
                c.encoded_length(len as u64).unwrap(),
                actual as u64,
                "len {len}"
            );
        }
    }

    #[test]
    fn symbol_size_is_even_minimal_and_bounded() {
        let c = EncodingConfig::new(10).unwrap(); // f = 3, 4 x 7 = 28 source symbols
        assert_eq!(c.symbol_size(0).unwrap(), 2);
        assert_eq!(c.symbol_size(1).unwrap(), 2);
        assert_eq!(c.symbol_size(56).unwrap(), 2);
        assert_eq!(c.symbol_size(57).unwrap(), 4);
        assert_eq!(c.symbol_size(28 * 7).unwrap(), 8);
        assert_eq!(c.symbol_size(c.max_blob_size()).unwrap(), MAX_SYMBOL_SIZE);
        assert!(matches!(
            c.symbol_size(c.max_blob_size() + 1),
            Err(ConfigError::BlobTooLarge { .. })
        ));
    }
}
