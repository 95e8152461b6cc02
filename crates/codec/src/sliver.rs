//! Slivers and sliver pairs: what one shard keeps of one blob.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{
    error::SliverError, line::LineCoder, Axis, BlobMetadata, Hash32, SliverIndex, SliverPairIndex,
};

/// One sliver: the source part of a row (primary, `n − f` symbols) or of a
/// column (secondary, `n − 2f` symbols) of the matrix.
///
/// BCS: `axis: u8 enum, index: u16 LE, data: ULEB128 length ‖ bytes`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sliver {
    /// Row (primary) or column (secondary).
    pub axis: Axis,
    /// Its row or column index.
    pub index: SliverIndex,
    /// The symbols, concatenated.
    pub data: Bytes,
}

impl fmt::Debug for Sliver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sliver({} {}, {} bytes)",
            self.axis,
            self.index,
            self.data.len()
        )
    }
}

/// The shape of the lines on one axis of a blob's matrix.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineShape {
    /// Source symbols per line.
    pub k: usize,
    /// Repair symbols per line (`n − k`).
    pub m: usize,
    /// Symbol size in bytes.
    pub s: usize,
}

impl LineShape {
    /// The shape of the slivers on `axis` of the blob described by `metadata`.
    pub(crate) fn of(metadata: &BlobMetadata, axis: Axis) -> LineShape {
        let config = metadata.config();
        let k = match axis {
            Axis::Primary => config.cols(),
            Axis::Secondary => config.rows(),
        };
        LineShape {
            k,
            m: config.n() - k,
            s: metadata.symbol_size(),
        }
    }

    pub(crate) fn n(&self) -> usize {
        self.k + self.m
    }

    pub(crate) fn source_bytes(&self) -> usize {
        self.k * self.s
    }
}

impl Sliver {
    /// The number of bytes a sliver on `axis` of this blob must have.
    pub fn expected_len(metadata: &BlobMetadata, axis: Axis) -> usize {
        LineShape::of(metadata, axis).source_bytes()
    }

    /// Checks index and length against the metadata, without hashing.
    pub fn check_shape(&self, metadata: &BlobMetadata) -> Result<(), SliverError> {
        let n_shards = metadata.config().n_shards();
        if self.index.0 >= n_shards {
            return Err(SliverError::IndexOutOfRange {
                blob_id: metadata.blob_id(),
                axis: self.axis,
                index: self.index,
                n_shards,
            });
        }
        let expected = Self::expected_len(metadata, self.axis);
        if self.data.len() != expected {
            return Err(SliverError::WrongLength {
                blob_id: metadata.blob_id(),
                axis: self.axis,
                index: self.index,
                expected,
                actual: self.data.len(),
            });
        }
        Ok(())
    }

    /// Checks that this sliver is the one the metadata commits to: extends
    /// it to all `n` symbols and compares its commitment.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig};
    ///
    /// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// let sliver = &pairs[2].secondary;
    /// sliver.verify(&metadata)?;
    /// let mut altered = sliver.clone();
    /// altered.data = vec![0xffu8; altered.data.len()].into();
    /// assert!(altered.verify(&metadata).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, metadata: &BlobMetadata) -> Result<(), SliverError> {
        crate::line::with_coder(|coder| self.verify_with(metadata, coder))
    }

    pub(crate) fn verify_with(
        &self,
        metadata: &BlobMetadata,
        coder: &mut LineCoder,
    ) -> Result<(), SliverError> {
        self.check_shape(metadata)?;
        if self.commitment_with(metadata, coder) == metadata.sliver_hash(self.axis, self.index) {
            Ok(())
        } else {
            Err(SliverError::HashMismatch {
                blob_id: metadata.blob_id(),
                axis: self.axis,
                index: self.index,
            })
        }
    }

    /// The commitment to this sliver's extended line: the hash that
    /// metadata holds for it. Only the metadata's shard count and length are
    /// used, so this also serves a writer building metadata by hand.
    pub fn commitment(&self, metadata: &BlobMetadata) -> Result<Hash32, SliverError> {
        self.check_shape(metadata)?;
        Ok(crate::line::with_coder(|coder| {
            self.commitment_with(metadata, coder)
        }))
    }

    /// [`Sliver::commitment`] for a sliver whose shape is already checked.
    pub(crate) fn commitment_with(&self, metadata: &BlobMetadata, coder: &mut LineCoder) -> Hash32 {
        let shape = LineShape::of(metadata, self.axis);
        coder.extend_and_commit(&self.data, shape.k, shape.m, shape.s)
    }
}

/// What one shard stores of one blob: primary sliver `p` and secondary
/// sliver `n − 1 − p`.
///
/// BCS: `index: u16 LE, primary: Sliver, secondary: Sliver`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliverPair {
    /// The pair's index within the blob.
    pub index: SliverPairIndex,
    /// Row `index`.
    pub primary: Sliver,
    /// Column `n − 1 − index`.
    pub secondary: Sliver,
}

impl SliverPair {
    /// Bytes of both slivers' symbols: what the pair takes to send or keep.
    pub fn byte_len(&self) -> usize {
        self.primary.data.len() + self.secondary.data.len()
    }

    /// Verifies both slivers, and that they are the slivers of this pair.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig};
    ///
    /// let (metadata, _, pairs) = encode(&EncodingConfig::new(4)?, b"hello")?;
    /// pairs[0].verify(&metadata)?;
    /// let mut mixed = pairs[0].clone();
    /// mixed.secondary = pairs[1].secondary.clone(); // a valid sliver of another pair
    /// assert!(mixed.verify(&metadata).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, metadata: &BlobMetadata) -> Result<(), SliverError> {
        let n = metadata.config().n_shards();
        for (sliver, axis) in [
            (&self.primary, Axis::Primary),
            (&self.secondary, Axis::Secondary),
        ] {
            if sliver.axis != axis || sliver.index.to_pair_index(axis, n) != self.index {
                return Err(SliverError::NotInPair {
                    blob_id: metadata.blob_id(),
                    axis: sliver.axis,
                    index: sliver.index,
                    pair: self.index,
                });
            }
            sliver.verify(metadata)?;
        }
        Ok(())
    }
}
