//! Helpers shared by the integration tests.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use floe_codec::{encode, BlobId, BlobMetadata, EncodingConfig, SliverPair};

/// Deterministic, varied bytes.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub fn encoded(n: u16, data: &[u8]) -> (EncodingConfig, BlobMetadata, BlobId, Vec<SliverPair>) {
    let config = EncodingConfig::new(n).unwrap();
    let (metadata, blob_id, pairs) = encode(&config, data).unwrap();
    (config, metadata, blob_id, pairs)
}
