//! Typed indices, so that a shard is never mistaken for a sliver pair or a
//! row for a column.
//!
//! * [`ShardIndex`]: one of the `n` slots of the network.
//! * [`SliverPairIndex`]: which pair of a blob (0..n). Pair `p` holds primary
//!   sliver `p` and secondary sliver `n − 1 − p`.
//! * [`SliverIndex`]: a sliver's position on its own axis (row index for a
//!   primary sliver, column index for a secondary sliver).
//! * [`SymbolIndex`]: a symbol's position within an extended row or column.
//!
//! Pairs are rotated onto shards by the blob ID, so the systematic (cheap to
//! read) slivers of different blobs land on different nodes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::BlobId;

macro_rules! index_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub u16);

        impl $name {
            /// The index as `usize`, for addressing arrays.
            pub fn as_usize(self) -> usize {
                usize::from(self.0)
            }
        }

        impl From<u16> for $name {
            fn from(value: u16) -> Self {
                Self(value)
            }
        }

        impl From<$name> for u16 {
            fn from(value: $name) -> u16 {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

index_type!(
    /// One of the `n` shards of the network (`0..n`). BCS: `u16` little-endian.
    ShardIndex
);
index_type!(
    /// The index of a sliver pair within a blob (`0..n`). BCS: `u16` little-endian.
    SliverPairIndex
);
index_type!(
    /// A sliver's index on its own axis: the row of a primary sliver or the
    /// column of a secondary sliver (`0..n`). BCS: `u16` little-endian.
    SliverIndex
);
index_type!(
    /// A symbol's position within an extended row or column (`0..n`).
    /// BCS: `u16` little-endian.
    SymbolIndex
);

/// Which of the two codes a sliver belongs to.
///
/// BCS: one byte, `0` for primary, `1` for secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Axis {
    /// A row of the matrix: `n − f` symbols; `n − 2f` primary slivers decode a blob.
    Primary,
    /// A column of the matrix: `n − 2f` symbols; `n − f` secondary slivers decode a blob.
    Secondary,
}

impl Axis {
    /// The other axis: recovery symbols for a primary sliver come from
    /// secondary slivers and vice versa.
    pub fn orthogonal(self) -> Axis {
        match self {
            Axis::Primary => Axis::Secondary,
            Axis::Secondary => Axis::Primary,
        }
    }
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Axis::Primary => "primary",
            Axis::Secondary => "secondary",
        })
    }
}

impl SliverPairIndex {
    /// The sliver of this pair on `axis`: primary sliver `p`, secondary
    /// sliver `n − 1 − p` (meaningful for `p < n`; never panics).
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{Axis, SliverIndex, SliverPairIndex};
    ///
    /// // With n = 10, pair 2 holds primary sliver 2 and secondary sliver 7.
    /// assert_eq!(SliverPairIndex(2).sliver_index(Axis::Primary, 10), SliverIndex(2));
    /// assert_eq!(SliverPairIndex(2).sliver_index(Axis::Secondary, 10), SliverIndex(7));
    /// ```
    pub fn sliver_index(self, axis: Axis, n_shards: u16) -> SliverIndex {
        match axis {
            Axis::Primary => SliverIndex(self.0),
            Axis::Secondary => SliverIndex(n_shards.wrapping_sub(1).wrapping_sub(self.0)),
        }
    }

    /// The shard that holds this pair of the blob `blob_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{BlobId, ShardIndex, SliverPairIndex};
    ///
    /// // The rotation is the ID's first 8 bytes, little-endian, modulo n: 3 here.
    /// let blob_id = BlobId([1; 32]);
    /// let shard = SliverPairIndex(0).to_shard_index(10, &blob_id);
    /// assert_eq!(shard, ShardIndex(7));
    /// assert_eq!(shard.to_pair_index(10, &blob_id), SliverPairIndex(0));
    /// ```
    pub fn to_shard_index(self, n_shards: u16, blob_id: &BlobId) -> ShardIndex {
        let n = u32::from(n_shards.max(1));
        let rotation = blob_id.rotation(n_shards);
        ShardIndex(((u32::from(self.0) % n + n - rotation) % n) as u16)
    }
}

impl SliverIndex {
    /// The pair that holds this sliver on `axis`.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{Axis, SliverIndex, SliverPairIndex};
    ///
    /// // With n = 10, primary sliver 2 and secondary sliver 7 are both in pair 2.
    /// assert_eq!(SliverIndex(2).to_pair_index(Axis::Primary, 10), SliverPairIndex(2));
    /// assert_eq!(SliverIndex(7).to_pair_index(Axis::Secondary, 10), SliverPairIndex(2));
    /// ```
    pub fn to_pair_index(self, axis: Axis, n_shards: u16) -> SliverPairIndex {
        match axis {
            Axis::Primary => SliverPairIndex(self.0),
            Axis::Secondary => SliverPairIndex(n_shards.wrapping_sub(1).wrapping_sub(self.0)),
        }
    }
}

impl ShardIndex {
    /// The pair of blob `blob_id` that this shard holds.
    ///
    /// # Examples
    ///
    /// ```
    /// use floe_codec::{encode, EncodingConfig, ShardIndex};
    ///
    /// let config = EncodingConfig::new(10)?;
    /// let (_, blob_id, pairs) = encode(&config, b"hello")?;
    /// let pair = ShardIndex(3).to_pair_index(config.n_shards(), &blob_id);
    /// let stored = &pairs[pair.as_usize()]; // what shard 3 keeps of this blob
    /// assert_eq!(stored.index, pair);
    /// assert_eq!(pair.to_shard_index(config.n_shards(), &blob_id), ShardIndex(3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_pair_index(self, n_shards: u16, blob_id: &BlobId) -> SliverPairIndex {
        let n = u32::from(n_shards.max(1));
        SliverPairIndex(((u32::from(self.0) + blob_id.rotation(n_shards)) % n) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_a_bijection_and_round_trips() {
        for (n, id_byte) in [(4u16, 0u8), (7, 3), (100, 0xfe), (1000, 0x5a)] {
            let blob_id = BlobId([id_byte; 32]);
            let mut seen = vec![false; usize::from(n)];
            for s in 0..n {
                let pair = ShardIndex(s).to_pair_index(n, &blob_id);
                assert!(pair.0 < n);
                assert!(!seen[pair.as_usize()]);
                seen[pair.as_usize()] = true;
                assert_eq!(pair.to_shard_index(n, &blob_id), ShardIndex(s));
            }
        }
    }

    #[test]
    fn pair_slivers_round_trip() {
        let n = 10;
        for p in 0..n {
            let pair = SliverPairIndex(p);
            for axis in [Axis::Primary, Axis::Secondary] {
                assert_eq!(pair.sliver_index(axis, n).to_pair_index(axis, n), pair);
            }
        }
        assert_eq!(
            SliverPairIndex(0).sliver_index(Axis::Secondary, n),
            SliverIndex(9)
        );
    }
}
