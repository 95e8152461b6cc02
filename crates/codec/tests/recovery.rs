//! Lost slivers are rebuilt from recovery symbols; an inconsistently
//! encoded blob is caught and yields a proof anyone can check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use bytes::Bytes;
use floe_codec::{
    recover_sliver, symbols_needed, Axis, BareSymbol, BlobMetadata, InconsistencyError,
    InconsistencyProof, RecoveryError, RecoverySymbol, SliverIndex, SliverPair, SliverPairHashes,
};
use proptest::prelude::*;

/// The symbols the holders of `sources` send to rebuild `target` on `axis`.
fn symbols_for(
    metadata: &BlobMetadata,
    pairs: &[SliverPair],
    axis: Axis,
    target: SliverIndex,
    sources: impl IntoIterator<Item = usize>,
) -> Vec<RecoverySymbol> {
    sources
        .into_iter()
        .map(|p| {
            let source = match axis {
                Axis::Primary => &pairs[p].secondary,
                Axis::Secondary => &pairs[p].primary,
            };
            source.recovery_symbol(metadata, target).unwrap()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_needed_symbols_rebuild_any_sliver(
        n in prop_oneof![8 => 4u16..40, 1 => Just(100u16)],
        len in 0usize..20_000,
        target_pick in any::<prop::sample::Index>(),
        offset in any::<prop::sample::Index>(),
    ) {
        let data = common::blob(len, len as u64);
        let (_, metadata, _, pairs) = common::encoded(n, &data);
        let n = usize::from(n);
        let pair = target_pick.index(n);
        for (axis, lost) in [(Axis::Primary, &pairs[pair].primary), (Axis::Secondary, &pairs[pair].secondary)] {
            let needed = symbols_needed(&metadata, axis);
            let start = offset.index(n);
            let sources: Vec<usize> = (0..needed).map(|i| (start + i) % n).collect();
            let symbols = symbols_for(&metadata, &pairs, axis, lost.index, sources.clone());
            let rebuilt = recover_sliver(&metadata, axis, lost.index, symbols.clone()).unwrap();
            prop_assert_eq!(&rebuilt, lost);

            let err = recover_sliver(&metadata, axis, lost.index, symbols[1..].to_vec()).unwrap_err();
            let is_not_enough = matches!(err, RecoveryError::NotEnoughSymbols { given, needed: want, .. } if given == needed - 1 && want == needed);
            prop_assert!(is_not_enough);
        }
    }
}

#[test]
fn needed_counts_are_n_minus_f_and_n_minus_2f() {
    let (config, metadata, _, _) = common::encoded(100, b"x");
    assert_eq!(
        symbols_needed(&metadata, Axis::Primary),
        usize::from(config.quorum())
    );
    assert_eq!(
        symbols_needed(&metadata, Axis::Secondary),
        usize::from(config.validity())
    );
}

#[test]
fn bad_symbols_are_skipped_and_named_only_when_too_few_remain() {
    let (_, metadata, blob_id, pairs) = common::encoded(10, &common::blob(3000, 9));
    let target = SliverIndex(3);
    let lost = pairs[3].primary.clone();
    let good = symbols_for(&metadata, &pairs, Axis::Primary, target, 0..8); // 7 needed
    let stray = pairs[9]
        .secondary
        .recovery_symbol(&metadata, SliverIndex(4))
        .unwrap();

    // A symbol for another target, with too few good ones: named.
    let mut with_stray: Vec<_> = vec![stray.clone()];
    with_stray.extend(good[..6].iter().cloned());
    assert!(matches!(
        recover_sliver(&metadata, Axis::Primary, target, with_stray.clone()),
        Err(RecoveryError::WrongTarget { .. })
    ));
    // ... with enough good ones: skipped.
    with_stray.push(good[6].clone());
    assert_eq!(
        recover_sliver(&metadata, Axis::Primary, target, with_stray).unwrap(),
        lost
    );

    // A corrupted symbol, with too few good ones: named.
    let mut corrupted = good.clone();
    corrupted[2].data = Bytes::from(vec![0u8; corrupted[2].data.len()]);
    assert!(matches!(
        recover_sliver(&metadata, Axis::Primary, target, corrupted[..7].to_vec()),
        Err(RecoveryError::Symbol(floe_codec::SymbolError::BadProof { blob_id: b, .. })) if b == blob_id
    ));
    // ... with a spare good one: skipped.
    assert_eq!(
        recover_sliver(&metadata, Axis::Primary, target, corrupted).unwrap(),
        lost
    );

    // Providers refuse duplicate targets (a request must not multiply work).
    assert!(matches!(
        pairs[0]
            .secondary
            .recovery_symbols(&metadata, &[SliverIndex(1), SliverIndex(1)]),
        Err(floe_codec::SliverError::DuplicateTarget { .. })
    ));
    let many = pairs[0]
        .secondary
        .recovery_symbols(&metadata, &[SliverIndex(1), SliverIndex(2)])
        .unwrap();
    assert_eq!(many.len(), 2);
    for symbol in &many {
        symbol.verify(&metadata).unwrap();
    }
}

/// Bare symbols rebuild the same sliver as proven ones; a lie among them
/// rebuilds a sliver that fails its hash, which they cannot prove
/// (`Unproven`, never `Inconsistent`); one of the wrong size or place is
/// refused before decoding.
#[test]
fn bare_symbols_rebuild_or_fail_the_slivers_hash() {
    let (_, metadata, blob_id, pairs) = common::encoded(10, &common::blob(3000, 9));
    for (axis, lost) in [
        (Axis::Primary, pairs[3].primary.clone()),
        (Axis::Secondary, pairs[3].secondary.clone()),
    ] {
        let target = lost.index;
        let needed = symbols_needed(&metadata, axis);
        let bare: Vec<BareSymbol> = (0..needed)
            .map(|p| {
                let source = match axis {
                    Axis::Primary => &pairs[(p + 4) % 10].secondary,
                    Axis::Secondary => &pairs[(p + 4) % 10].primary,
                };
                let mut one = source.bare_symbols(&metadata, &[target]).unwrap();
                let proven = source.recovery_symbol(&metadata, target).unwrap();
                assert_eq!(one[0].data, proven.data);
                one.remove(0)
            })
            .collect();
        assert_eq!(
            recover_sliver(&metadata, axis, target, bare.clone()).unwrap(),
            lost
        );

        let mut lie = bare.clone();
        let mut data = lie[1].data.to_vec();
        data[0] ^= 0x5a;
        lie[1].data = data.into();
        assert_eq!(
            recover_sliver(&metadata, axis, target, lie),
            Err(RecoveryError::Unproven {
                blob_id,
                target_axis: axis,
                target
            })
        );

        let mut short = bare.clone();
        short[0].data = short[0].data.slice(1..);
        assert!(matches!(
            recover_sliver(&metadata, axis, target, short),
            Err(RecoveryError::Symbol(floe_codec::SymbolError::WrongSize { blob_id: b, .. })) if b == blob_id
        ));
        let mut astray = bare.clone();
        astray[0].source_index = SliverIndex(10);
        assert!(matches!(
            recover_sliver(&metadata, axis, target, astray),
            Err(RecoveryError::Symbol(
                floe_codec::SymbolError::IndexOutOfRange { .. }
            ))
        ));
    }
}

/// A writer that alters one primary sliver after encoding and commits to
/// the altered sliver in the metadata.
fn inconsistent_blob(n: u16, altered_row: usize) -> (BlobMetadata, Vec<SliverPair>) {
    let (_, metadata, _, mut pairs) = common::encoded(n, &common::blob(4000, 5));
    let mut data = pairs[altered_row].primary.data.to_vec();
    data[0] ^= 0xff;
    pairs[altered_row].primary.data = Bytes::from(data);
    let mut hashes: Vec<SliverPairHashes> = metadata.hashes().to_vec();
    hashes[altered_row].primary = pairs[altered_row].primary.commitment(&metadata).unwrap();
    let lying = BlobMetadata::new(metadata.unencoded_length(), hashes).unwrap();
    // Every sliver, including the altered one, verifies against the lying metadata.
    for pair in &pairs {
        pair.verify(&lying).unwrap();
    }
    (lying, pairs)
}

#[test]
fn inconsistent_encoding_is_caught_at_recovery_with_a_verifiable_proof() {
    let n = 10;
    let (metadata, pairs) = inconsistent_blob(n, 1);
    // Rebuild column 0 from rows that include the altered row 1.
    let target = SliverIndex(0);
    let needed = symbols_needed(&metadata, Axis::Secondary);
    let symbols = symbols_for(&metadata, &pairs, Axis::Secondary, target, 0..needed);
    let proof = match recover_sliver(&metadata, Axis::Secondary, target, symbols) {
        Err(RecoveryError::Inconsistent(proof)) => *proof,
        other => panic!("expected an inconsistency, got {other:?}"),
    };
    assert_eq!(proof.blob_id, metadata.blob_id());
    proof.verify(&metadata).unwrap();

    // The proof survives the wire.
    let bytes = floe_codec::canonical_bytes(&proof);
    let back: InconsistencyProof = floe_codec::from_canonical_bytes(&bytes).unwrap();
    back.verify(&metadata).unwrap();

    // Padding or reordering is refused: a proof has one canonical form.
    let mut padded = proof.clone();
    padded.symbols.push(padded.symbols[0].clone());
    assert!(matches!(
        padded.verify(&metadata),
        Err(InconsistencyError::NotCanonical { .. })
    ));
    let mut reordered = proof.clone();
    reordered.symbols.swap(0, 1);
    assert!(matches!(
        reordered.verify(&metadata),
        Err(InconsistencyError::NotCanonical { .. })
    ));

    // A proof with a forged symbol does not verify.
    let mut forged = proof.clone();
    forged.symbols[0].data = Bytes::from(vec![7u8; forged.symbols[0].data.len()]);
    assert!(matches!(
        forged.verify(&metadata),
        Err(InconsistencyError::Recovery(_))
    ));

    // Nor against another blob's metadata.
    let (_, honest, _, _) = common::encoded(n, b"honest");
    assert!(matches!(
        proof.verify(&honest),
        Err(InconsistencyError::Metadata(_))
    ));
}

#[test]
fn a_proof_built_from_a_consistent_blob_does_not_verify() {
    let (_, metadata, blob_id, pairs) = common::encoded(10, &common::blob(4000, 6));
    for (axis, target) in [
        (Axis::Secondary, SliverIndex(0)),
        (Axis::Primary, SliverIndex(9)),
    ] {
        let needed = symbols_needed(&metadata, axis);
        let mut symbols = symbols_for(&metadata, &pairs, axis, target, 0..needed);
        symbols.sort_by_key(|s| s.source_index);
        let proof = InconsistencyProof {
            blob_id,
            target_axis: axis,
            target,
            symbols,
        };
        assert_eq!(
            proof.verify(&metadata),
            Err(InconsistencyError::Consistent {
                blob_id,
                target_axis: axis,
                target
            })
        );
    }
}

#[test]
fn a_consistent_decode_refuses_rows_the_code_rebuilt_wrong() {
    use floe_codec::{decode, DecodeCheck, DecodeError};
    let n = 10;
    let (metadata, pairs) = inconsistent_blob(n, 1);
    let blob_id = metadata.blob_id();
    let rows = usize::from(metadata.config().primary_source_symbols());
    let primaries: Vec<_> = pairs.iter().map(|p| p.primary.clone()).collect();
    // The systematic rows rebuild nothing: every check passes them.
    decode(
        &blob_id,
        &metadata,
        &primaries[..rows],
        DecodeCheck::Consistent,
    )
    .unwrap();
    // Without row 1 the code rebuilds it, and it is not the row the writer
    // committed to: a reader that trusted it would get other bytes.
    let without_row_1: Vec<_> = primaries
        .iter()
        .skip(2)
        .cloned()
        .chain([primaries[0].clone()])
        .collect();
    let trusting = decode(
        &blob_id,
        &metadata,
        &without_row_1,
        DecodeCheck::AlreadyVerified,
    )
    .unwrap();
    let systematic = decode(
        &blob_id,
        &metadata,
        &primaries[..rows],
        DecodeCheck::AlreadyVerified,
    )
    .unwrap();
    assert_ne!(trusting, systematic, "the inconsistency shows in the bytes");
    match decode(&blob_id, &metadata, &without_row_1, DecodeCheck::Consistent) {
        Err(DecodeError::InconsistentEncoding { row, .. }) => assert_eq!(row, SliverIndex(1)),
        other => panic!(
            "expected an inconsistent encoding, got {:?}",
            other.map(|b| b.len())
        ),
    }
    // From columns every row is rebuilt, so the altered one is caught too.
    // (Without column 0, which holds the altered byte.)
    let secondaries: Vec<_> = pairs
        .iter()
        .map(|p| p.secondary.clone())
        .filter(|sliver| sliver.index != SliverIndex(0))
        .collect();
    match decode(&blob_id, &metadata, &secondaries, DecodeCheck::Consistent) {
        Err(DecodeError::InconsistentEncoding { row, .. }) => assert_eq!(row, SliverIndex(1)),
        other => panic!(
            "expected an inconsistent encoding, got {:?}",
            other.map(|b| b.len())
        ),
    }
}
