//! Every kind of bad input is rejected with its own typed error, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use bytes::Bytes;
use floe_codec::{
    canonical_bytes, decode, from_canonical_bytes, Axis, BlobId, BlobMetadata, ConfigError,
    DecodeCheck, DecodeError, EncodingConfig, MetadataError, ProofError, RecoveryError, Sliver,
    SliverError, SliverIndex, SymbolError, SymbolIndex,
};

fn flip(data: &Bytes, at: usize) -> Bytes {
    let mut v = data.to_vec();
    v[at] ^= 0x01;
    Bytes::from(v)
}

#[test]
fn tampered_sliver_is_a_hash_mismatch() {
    let (config, metadata, blob_id, pairs) = common::encoded(10, &common::blob(5000, 1));
    for (axis, mut sliver) in [
        (Axis::Primary, pairs[2].primary.clone()),
        (Axis::Secondary, pairs[2].secondary.clone()),
    ] {
        sliver.data = flip(&sliver.data, sliver.data.len() / 2);
        assert_eq!(
            sliver.verify(&metadata),
            Err(SliverError::HashMismatch {
                blob_id,
                axis,
                index: sliver.index
            })
        );
    }
    // decode refuses it too and names it.
    let rows = usize::from(config.primary_source_symbols());
    let mut slivers: Vec<Sliver> = pairs[..rows].iter().map(|p| p.primary.clone()).collect();
    slivers[1].data = flip(&slivers[1].data, 0);
    assert_eq!(
        decode(&blob_id, &metadata, &slivers, DecodeCheck::VerifySlivers),
        Err(DecodeError::InvalidSliver(SliverError::HashMismatch {
            blob_id,
            axis: Axis::Primary,
            index: SliverIndex(1)
        }))
    );
    // With a spare good sliver (or a good duplicate of the bad one) the read succeeds.
    let mut with_spare = slivers.clone();
    with_spare.push(pairs[rows].primary.clone());
    assert_eq!(
        decode(&blob_id, &metadata, &with_spare, DecodeCheck::VerifySlivers).unwrap(),
        common::blob(5000, 1)
    );
    let mut with_duplicate = slivers;
    with_duplicate.push(pairs[1].primary.clone());
    assert_eq!(
        decode(
            &blob_id,
            &metadata,
            &with_duplicate,
            DecodeCheck::VerifySlivers
        )
        .unwrap(),
        common::blob(5000, 1)
    );
}

#[test]
fn hostile_indices_never_panic() {
    let (_, metadata, _, pairs) = common::encoded(7, b"index games");
    let mut pair = pairs[0].clone();
    pair.secondary.index = SliverIndex(u16::MAX);
    assert!(pair.verify(&metadata).is_err());
    assert_eq!(
        floe_codec::SliverPairIndex(3).sliver_index(Axis::Secondary, 0),
        SliverIndex(u16::MAX - 3)
    );
    let id = metadata.blob_id();
    assert_eq!(
        floe_codec::ShardIndex(5).to_pair_index(0, &id),
        floe_codec::SliverPairIndex(0)
    );
    assert_eq!(
        floe_codec::SliverPairIndex(5).to_shard_index(0, &id),
        floe_codec::ShardIndex(0)
    );
}

#[test]
fn tampered_symbol_and_misplaced_proof_fail_their_proof() {
    let (_, metadata, blob_id, pairs) = common::encoded(13, &common::blob(20_000, 2));
    let source = &pairs[4].secondary;
    let good = source.recovery_symbol(&metadata, SliverIndex(6)).unwrap();
    good.verify(&metadata).unwrap();

    let mut tampered = good.clone();
    tampered.data = flip(&tampered.data, 0);
    assert_eq!(
        tampered.verify(&metadata),
        Err(SymbolError::BadProof {
            blob_id,
            axis: Axis::Secondary,
            source_index: source.index,
            symbol_index: SymbolIndex(6),
            source: ProofError::RootMismatch,
        })
    );

    // The right bytes and proof, claimed for another position.
    let mut misplaced = good.clone();
    misplaced.symbol_index = SymbolIndex(7);
    assert!(matches!(
        misplaced.verify(&metadata),
        Err(SymbolError::BadProof { .. })
    ));

    // Claimed to come from another sliver.
    let mut wrong_source = good.clone();
    wrong_source.source_index = SliverIndex(source.index.0 + 1);
    assert!(matches!(
        wrong_source.verify(&metadata),
        Err(SymbolError::BadProof { .. })
    ));

    let mut short = good.clone();
    short.data = good.data.slice(1..);
    assert!(matches!(
        short.verify(&metadata),
        Err(SymbolError::WrongSize { .. })
    ));

    let mut far = good;
    far.symbol_index = SymbolIndex(13);
    assert!(matches!(
        far.verify(&metadata),
        Err(SymbolError::IndexOutOfRange { .. })
    ));
}

#[test]
fn metadata_for_another_blob_is_a_blob_id_mismatch() {
    let (_, metadata, blob_id, pairs) = common::encoded(7, b"the real blob");
    let (_, other_metadata, other_id, _) = common::encoded(7, b"another blob");
    assert_eq!(
        other_metadata.verify(&blob_id),
        Err(MetadataError::BlobIdMismatch {
            expected: blob_id,
            computed: other_id
        })
    );
    let slivers: Vec<Sliver> = pairs.iter().map(|p| p.primary.clone()).collect();
    assert!(matches!(
        decode(
            &blob_id,
            &other_metadata,
            &slivers,
            DecodeCheck::VerifySlivers
        ),
        Err(DecodeError::Metadata(MetadataError::BlobIdMismatch { .. }))
    ));
    metadata.verify(&blob_id).unwrap();
}

#[test]
fn wrong_unencoded_length_is_caught() {
    let data = common::blob(1000, 3);
    let (config, metadata, blob_id, pairs) = common::encoded(10, &data);

    // A length changed in the metadata changes what it hashes to.
    let lied = BlobMetadata::new(999, metadata.hashes().to_vec()).unwrap();
    assert!(matches!(
        lied.verify(&blob_id),
        Err(MetadataError::BlobIdMismatch { .. })
    ));

    // A length that implies another symbol size makes every sliver the wrong length.
    let longer = BlobMetadata::new(100_000, metadata.hashes().to_vec()).unwrap();
    let expected = Sliver::expected_len(&longer, Axis::Primary);
    assert_eq!(
        pairs[0].primary.verify(&longer),
        Err(SliverError::WrongLength {
            blob_id: longer.blob_id(),
            axis: Axis::Primary,
            index: SliverIndex(0),
            expected,
            actual: pairs[0].primary.data.len(),
        })
    );

    // A length no symbol size can hold is refused at construction and on the wire.
    let too_long = config.max_blob_size() + 1;
    assert!(matches!(
        BlobMetadata::new(too_long, metadata.hashes().to_vec()),
        Err(ConfigError::BlobTooLarge { .. })
    ));
    let mut bytes = canonical_bytes(&metadata);
    bytes[2..10].copy_from_slice(&too_long.to_le_bytes());
    let err = from_canonical_bytes::<BlobMetadata>(&bytes).unwrap_err();
    assert!(err.reason.contains("larger than"), "{err}");
}

#[test]
fn malformed_wire_bytes_are_errors() {
    let (_, metadata, _, pairs) = common::encoded(4, b"x");
    let bytes = canonical_bytes(&metadata);
    // Truncated, trailing garbage, unknown version, shard count out of range.
    assert!(from_canonical_bytes::<BlobMetadata>(&bytes[..bytes.len() - 1]).is_err());
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(from_canonical_bytes::<BlobMetadata>(&trailing).is_err());
    let mut version = bytes.clone();
    version[1] = 9;
    let err = from_canonical_bytes::<BlobMetadata>(&version).unwrap_err();
    assert!(err.reason.contains("version 9"), "{err}");
    let mut three = canonical_bytes(&metadata);
    three[10] = 3; // ULEB128 count of sliver pairs
    three.truncate(11 + 3 * 64);
    assert!(from_canonical_bytes::<BlobMetadata>(&three).is_err());
    let sliver_bytes = canonical_bytes(&pairs[0].primary);
    assert!(from_canonical_bytes::<Sliver>(&sliver_bytes[..3]).is_err());
    assert!("not-a-blob-id".parse::<BlobId>().is_err());
    assert!(EncodingConfig::new(3).is_err());
}

#[test]
fn slivers_of_the_wrong_shape_are_refused() {
    let (_, metadata, blob_id, pairs) = common::encoded(7, &common::blob(500, 4));
    let mut far = pairs[0].primary.clone();
    far.index = SliverIndex(7);
    assert_eq!(
        far.verify(&metadata),
        Err(SliverError::IndexOutOfRange {
            blob_id,
            axis: Axis::Primary,
            index: SliverIndex(7),
            n_shards: 7
        })
    );
    let mut swapped = pairs[1].clone();
    std::mem::swap(&mut swapped.primary, &mut swapped.secondary);
    assert!(matches!(
        swapped.verify(&metadata),
        Err(SliverError::NotInPair { .. })
    ));
    let mut other_pair = pairs[1].clone();
    other_pair.primary = pairs[2].primary.clone();
    assert!(matches!(
        other_pair.verify(&metadata),
        Err(SliverError::NotInPair { .. })
    ));
    // Recovery symbols for a target that does not exist.
    assert!(matches!(
        pairs[0]
            .primary
            .recovery_symbols(&metadata, &[SliverIndex(9)]),
        Err(SliverError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        floe_codec::recover_sliver(
            &metadata,
            Axis::Primary,
            SliverIndex(70),
            Vec::<floe_codec::RecoverySymbol>::new()
        ),
        Err(RecoveryError::Target(SliverError::IndexOutOfRange { .. }))
    ));
}
