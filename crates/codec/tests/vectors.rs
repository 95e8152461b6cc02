//! Known-answer vectors: fixed blobs and `n` map to fixed blob IDs, metadata
//! and sliver bytes, so the format cannot drift silently.
//!
//! The blob of length `len` has byte `i = (31·i + 7) mod 251`. To re-bless
//! after a *deliberate* format change (which must also bump
//! `FORMAT_VERSION`), run with `FLOE_BLESS_VECTORS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use floe_codec::{canonical_bytes, encode, EncodingConfig, SliverIndex};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Vector {
    n_shards: u16,
    blob_len: usize,
    symbol_size: usize,
    blob_id: String,
    metadata_root: String,
    /// BLAKE3 of the canonical metadata bytes.
    metadata_bcs_blake3: String,
    /// BLAKE3 of the canonical bytes of sliver pair 0.
    pair0_bcs_blake3: String,
    /// BLAKE3 of the canonical bytes of the recovery symbol that secondary
    /// sliver 0 gives primary sliver 1.
    recovery_symbol_bcs_blake3: String,
}

const CASES: &[(u16, usize)] = &[
    (4, 0),
    (4, 1),
    (4, 4),
    (7, 1000),
    (10, 65_537),
    (100, 100_000),
    (1000, 1),
];

fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((31 * i + 7) % 251) as u8).collect()
}

fn hex_blake3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn compute(n: u16, len: usize) -> Vector {
    let config = EncodingConfig::new(n).unwrap();
    let (metadata, blob_id, pairs) = encode(&config, &blob(len)).unwrap();
    let secondary_0 = pairs
        .iter()
        .find(|p| p.secondary.index == SliverIndex(0))
        .unwrap();
    let symbol = secondary_0
        .secondary
        .recovery_symbol(&metadata, SliverIndex(1))
        .unwrap();
    Vector {
        n_shards: n,
        blob_len: len,
        symbol_size: metadata.symbol_size(),
        blob_id: blob_id.to_string(),
        metadata_root: metadata.metadata_root().to_string(),
        metadata_bcs_blake3: hex_blake3(&canonical_bytes(&metadata)),
        pair0_bcs_blake3: hex_blake3(&canonical_bytes(&pairs[0])),
        recovery_symbol_bcs_blake3: hex_blake3(&canonical_bytes(&symbol)),
    }
}

#[test]
fn known_answers_have_not_drifted() {
    // The manifest dir of this run (cargo sets it when running tests), not
    // the one baked in at compile time: with a shared target dir a test
    // binary may have been built from another checkout.
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("tests/vectors/known_answers.json");
    let computed: Vec<Vector> = CASES.iter().map(|&(n, len)| compute(n, len)).collect();
    if std::env::var_os("FLOE_BLESS_VECTORS").is_some() {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let pinned: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(pinned.len(), CASES.len());
    for (pinned, computed) in pinned.iter().zip(&computed) {
        assert_eq!(
            pinned, computed,
            "format drift for n={} len={}",
            pinned.n_shards, pinned.blob_len
        );
    }
}

#[test]
fn canonical_layouts_are_as_documented() {
    let config = EncodingConfig::new(4).unwrap();
    let (metadata, blob_id, pairs) = encode(&config, b"Floe").unwrap();
    // BlobId: 32 raw bytes.
    assert_eq!(canonical_bytes(&blob_id), blob_id.0.to_vec());
    // Metadata: encoding type, version, u64 LE length, ULEB128 count, 64 bytes per pair.
    let bytes = canonical_bytes(&metadata);
    assert_eq!(&bytes[..11], &[0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 4]);
    assert_eq!(bytes.len(), 11 + 4 * 64);
    assert_eq!(&bytes[11..43], &metadata.hashes()[0].primary.0);
    // Sliver: axis byte, u16 LE index, ULEB128 length, data.
    let sliver = canonical_bytes(&pairs[1].secondary);
    let len = pairs[1].secondary.data.len();
    assert_eq!(&sliver[..4], &[1, 2, 0, len as u8]);
    assert_eq!(&sliver[4..], &pairs[1].secondary.data[..]);
}
