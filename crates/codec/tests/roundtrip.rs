//! Decode returns exactly the input, for random committees, sizes and
//! subsets of slivers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use floe_codec::{decode, Axis, DecodeCheck, DecodeError, ShardIndex, Sliver, SliverIndex};
use proptest::prelude::*;

fn shard_count() -> impl Strategy<Value = u16> {
    prop_oneof![
        12 => 4u16..=40,
        3 => 41u16..=150,
        1 => Just(1000u16),
    ]
}

fn blob_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1usize),
        2usize..100,
        100usize..5000,
        Just(65_537usize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn decode_from_any_sufficient_subset_returns_the_blob(
        n in shard_count(),
        len in blob_len(),
        seed in any::<u64>(),
        shuffle_seed in any::<u64>(),
    ) {
        let data = common::blob(len, seed);
        let (config, metadata, blob_id, pairs) = common::encoded(n, &data);
        prop_assert_eq!(pairs.len(), usize::from(n));
        prop_assert_eq!(metadata.blob_id(), blob_id);

        // Random subsets: a seeded permutation of the indices, cut at the needed count.
        let mut order: Vec<usize> = (0..usize::from(n)).collect();
        let mut state = shuffle_seed | 1;
        for i in (1..order.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let rows = usize::from(config.primary_source_symbols());
        let cols = usize::from(config.secondary_source_symbols());

        let primaries: Vec<Sliver> = order[..rows].iter().map(|&p| pairs[p].primary.clone()).collect();
        let decoded = decode(&blob_id, &metadata, &primaries, DecodeCheck::VerifySlivers).unwrap();
        prop_assert_eq!(&decoded, &data);

        // Secondary slivers: pair p holds column n - 1 - p.
        let secondaries: Vec<Sliver> = order[..cols].iter().map(|&p| pairs[p].secondary.clone()).collect();
        let decoded = decode(&blob_id, &metadata, &secondaries, DecodeCheck::Strict).unwrap();
        prop_assert_eq!(&decoded, &data);

        // One short is an error that says how many were given and needed.
        let err = decode(&blob_id, &metadata, &primaries[..rows - 1], DecodeCheck::VerifySlivers).unwrap_err();
        prop_assert_eq!(err, DecodeError::NotEnoughSlivers { blob_id, axis: Axis::Primary, given: rows - 1, needed: rows });
        let err = decode(&blob_id, &metadata, &secondaries[..cols - 1], DecodeCheck::VerifySlivers).unwrap_err();
        prop_assert_eq!(err, DecodeError::NotEnoughSlivers { blob_id, axis: Axis::Secondary, given: cols - 1, needed: cols });
    }
}

#[test]
fn systematic_fast_path_and_every_pair_verifies() {
    for (n, len) in [(4u16, 0usize), (4, 1), (7, 3), (10, 1000), (100, 1 << 20)] {
        let data = common::blob(len, n.into());
        let (config, metadata, blob_id, pairs) = common::encoded(n, &data);
        for pair in &pairs {
            pair.verify(&metadata).unwrap();
        }
        let rows = usize::from(config.primary_source_symbols());
        let systematic: Vec<Sliver> = pairs[..rows].iter().map(|p| p.primary.clone()).collect();
        assert!(systematic
            .iter()
            .enumerate()
            .all(|(i, s)| s.index == SliverIndex(i as u16)));
        let decoded = decode(
            &blob_id,
            &metadata,
            &systematic,
            DecodeCheck::AlreadyVerified,
        )
        .unwrap();
        assert_eq!(decoded, data, "n={n} len={len}");
    }
}

#[test]
fn duplicates_count_once_and_extra_slivers_are_fine() {
    let data = common::blob(3000, 7);
    let (config, metadata, blob_id, pairs) = common::encoded(10, &data);
    let rows = usize::from(config.primary_source_symbols());
    let mut slivers: Vec<Sliver> = pairs.iter().map(|p| p.primary.clone()).collect();
    assert_eq!(
        decode(&blob_id, &metadata, &slivers, DecodeCheck::VerifySlivers).unwrap(),
        data
    );
    // n - 2f copies of one sliver are one sliver.
    slivers = vec![pairs[5].primary.clone(); rows];
    assert_eq!(
        decode(&blob_id, &metadata, &slivers, DecodeCheck::VerifySlivers).unwrap_err(),
        DecodeError::NotEnoughSlivers {
            blob_id,
            axis: Axis::Primary,
            given: 1,
            needed: rows
        }
    );
    let mixed = vec![pairs[0].primary.clone(), pairs[0].secondary.clone()];
    assert_eq!(
        decode(&blob_id, &metadata, &mixed, DecodeCheck::VerifySlivers).unwrap_err(),
        DecodeError::MixedAxes { blob_id }
    );
}

#[test]
fn shards_hold_distinct_pairs_rotated_by_blob_id() {
    let n = 50u16;
    let (_, _, id_a, _) = common::encoded(n, b"a");
    let (_, _, id_b, _) = common::encoded(n, b"b");
    let pairs_a: Vec<u16> = (0..n)
        .map(|s| ShardIndex(s).to_pair_index(n, &id_a).0)
        .collect();
    let pairs_b: Vec<u16> = (0..n)
        .map(|s| ShardIndex(s).to_pair_index(n, &id_b).0)
        .collect();
    let mut sorted = pairs_a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    // Different blobs put their systematic pair 0 on different shards (for these two IDs).
    assert_ne!(pairs_a, pairs_b);
}

#[test]
fn encoding_does_not_depend_on_the_thread_count() {
    let data = common::blob(300_000, 11);
    let config = floe_codec::EncodingConfig::new(20).unwrap();
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (m1, id1, p1) = single
        .install(|| floe_codec::encode(&config, &data))
        .unwrap();
    let many = rayon::ThreadPoolBuilder::new()
        .num_threads(5)
        .build()
        .unwrap();
    let (m2, id2, p2) = many.install(|| floe_codec::encode(&config, &data)).unwrap();
    assert_eq!((m1, id1), (m2, id2));
    assert_eq!(p1, p2);
}

/// Large blobs (both sliver buffers mapped and recycled between encodes —
/// 6 MiB at n=10 makes each at least 8 MiB — and symbols split into several
/// Reed–Solomon stripes): an encode into buffers
/// that still hold another blob's slivers gives the same blob ID, and the
/// blob decodes back from its repair slivers with every rebuilt line checked
/// against its commitment.
#[test]
fn large_blobs_encode_the_same_into_recycled_buffers() {
    let config = floe_codec::EncodingConfig::new(10).unwrap();
    let len = 6 << 20;
    let blob: Vec<u8> = (0..len - 1000).map(|i| (i * 7 + i / 4093) as u8).collect();
    let other = vec![0xA5u8; len];
    let (_, first_id, first_pairs) = floe_codec::encode(&config, &blob).unwrap();
    for _ in 0..2 {
        drop(floe_codec::encode(&config, &other).unwrap());
        let (metadata, blob_id, pairs) = floe_codec::encode(&config, &blob).unwrap();
        assert_eq!(blob_id, first_id);
        assert_eq!(pairs, first_pairs);
        let rows = usize::from(config.primary_source_symbols());
        let repair: Vec<Sliver> = pairs[pairs.len() - rows..]
            .iter()
            .map(|p| p.primary.clone())
            .collect();
        let decoded = decode(&blob_id, &metadata, &repair, DecodeCheck::Strict).unwrap();
        assert_eq!(decoded, blob);
    }
}

/// A large blob decoded as bytes (the matrix mapped and recycled between
/// decodes, so each decode writes into memory holding another blob's
/// bytes; debug builds poison it first) is the blob, on either axis, from
/// the systematic slivers and from the others, however it is checked: a
/// byte of the matrix left unwritten would show another blob's.
#[test]
fn large_blobs_decode_the_same_into_recycled_buffers() {
    let config = floe_codec::EncodingConfig::new(10).unwrap();
    let len = 9 << 20;
    let blob: Vec<u8> = (0..len - 333).map(|i| (i * 13 + i / 4091) as u8).collect();
    let other = vec![0x5Au8; len];
    let (metadata, blob_id, pairs) = floe_codec::encode(&config, &blob).unwrap();
    let (other_metadata, other_id, other_pairs) = floe_codec::encode(&config, &other).unwrap();
    let rows = usize::from(config.primary_source_symbols());
    let cols = usize::from(config.secondary_source_symbols());
    let of = |pairs: &[floe_codec::SliverPair], axis: Axis| -> Vec<Sliver> {
        let mut slivers: Vec<Sliver> = pairs
            .iter()
            .map(|p| match axis {
                Axis::Primary => p.primary.clone(),
                Axis::Secondary => p.secondary.clone(),
            })
            .collect();
        slivers.sort_by_key(|s| s.index);
        slivers
    };
    for (axis, needed) in [(Axis::Primary, rows), (Axis::Secondary, cols)] {
        let slivers = of(&pairs, axis);
        let others = of(&other_pairs, axis);
        // Some systematic slivers and some not: a reader's usual case,
        // part copied and part rebuilt.
        let half = needed / 2;
        let mixed: Vec<Sliver> = slivers[..half]
            .iter()
            .chain(&slivers[slivers.len() - (needed - half)..])
            .cloned()
            .collect();
        for chosen in [
            &slivers[..needed],
            &mixed[..],
            &slivers[slivers.len() - needed..],
        ] {
            for check in [DecodeCheck::Consistent, DecodeCheck::Strict] {
                let decoy = floe_codec::decode_bytes(&other_id, &other_metadata, &others, check);
                drop(decoy.unwrap());
                let decoded = floe_codec::decode_bytes(&blob_id, &metadata, chosen, check).unwrap();
                assert_eq!(decoded.len(), blob.len());
                assert!(
                    decoded[..] == blob[..],
                    "{axis:?} {check:?}: decoded bytes differ"
                );
            }
        }
    }
}
