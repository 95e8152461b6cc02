//! Signed messages, certificate building and verification: each rejection
//! has its error.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use floe_codec::BlobId;
use floe_consensus::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

#[test]
fn builder_rejects_each_bad_signature_with_its_error() {
    let t = common::committee(10, 5, None); // weights 2 each, quorum 7
    let message = common::confirmation(0, 1, 9);
    let blob_id = BlobId([1; 32]);
    let mut builder = CertificateBuilder::new(&t.committee, message.clone());

    let outsider = KeyPair::from_seed(&[9; 32]);
    assert_eq!(
        builder.add(&Signed::sign(message.clone(), &outsider)),
        Err(BuildError::NotAMember {
            blob_id,
            signer: outsider.public()
        })
    );
    let wrong_epoch = Signed::sign(common::confirmation(1, 1, 9), &t.protocol_keys[0]);
    assert!(matches!(
        builder.add(&wrong_epoch),
        Err(BuildError::WrongEpoch { .. })
    ));
    let wrong_body = Signed::sign(common::confirmation(0, 1, 10), &t.protocol_keys[0]);
    assert!(matches!(
        builder.add(&wrong_body),
        Err(BuildError::WrongBody { .. })
    ));
    let mut forged = Signed::sign(message.clone(), &t.protocol_keys[1]);
    forged.signer = t.protocol_keys[0].public();
    assert_eq!(
        builder.add(&forged),
        Err(BuildError::BadSignature {
            blob_id,
            node_id: NodeId("node-0".into())
        })
    );

    assert_eq!(
        builder.add(&Signed::sign(message.clone(), &t.protocol_keys[0])),
        Ok(2)
    );
    assert_eq!(
        builder.add(&Signed::sign(message.clone(), &t.protocol_keys[0])),
        Err(BuildError::Duplicate {
            blob_id,
            node_id: NodeId("node-0".into())
        })
    );
    assert_eq!(builder.weight(), 2);
    assert!(matches!(
        builder.certificate(),
        Err(BuildError::InsufficientWeight {
            weight: 2,
            needed: 7,
            ..
        })
    ));
    for i in 1..4 {
        builder
            .add(&Signed::sign(message.clone(), &t.protocol_keys[i]))
            .unwrap();
    }
    assert!(builder.is_complete());
    let certificate = builder.certificate().unwrap();
    assert_eq!(certificate.verify(&t.committee), Ok(8));
    assert_eq!(
        certificate.verify_with(&t.committee, SignatureCheck::Individual),
        Ok(8)
    );
    assert_eq!(certificate.signers.0, vec![0b0000_1111]);
}

#[test]
fn certificate_verification_rejects_each_defect() {
    let t = common::committee(10, 5, None);
    let message = common::confirmation(0, 2, 9);
    let blob_id = BlobId([2; 32]);
    let good = t.certify(&message, 0..4);
    assert_eq!(good.verify(&t.committee), Ok(8));

    // Too little weight.
    let light = t.certify(&message, 0..3);
    assert_eq!(
        light.verify(&t.committee),
        Err(CertificateError::InsufficientWeight {
            blob_id,
            weight: 6,
            needed: 7
        })
    );
    // Unknown signer: a bit past the members.
    let mut unknown = good.clone();
    unknown.signers.0[0] |= 1 << 6;
    unknown.signatures.push(unknown.signatures[0]);
    assert_eq!(
        unknown.verify(&t.committee),
        Err(CertificateError::UnknownSigner { index: 6 })
    );
    // Duplicated signer.
    let sig = Signed::sign(message.clone(), &t.protocol_keys[0]).signature;
    assert_eq!(
        Certificate::from_signatures(
            &t.committee,
            message.clone(),
            [(MemberIndex(0), sig), (MemberIndex(0), sig)]
        ),
        Err(CertificateError::DuplicateSigner { index: 0 })
    );
    assert_eq!(
        Certificate::from_signatures(&t.committee, message.clone(), [(MemberIndex(5), sig)]),
        Err(CertificateError::UnknownSigner { index: 5 })
    );
    // Wrong epoch: checked against the committee of another epoch.
    let later = common::committee_in(Epoch(1), 10, 5, None);
    assert_eq!(
        good.verify(&later.committee),
        Err(CertificateError::WrongEpoch {
            blob_id,
            certificate: Epoch(0),
            committee: Epoch(1)
        })
    );
    // Tampered body: the signatures no longer match.
    let mut tampered = good.clone();
    tampered.message.body.end_epoch = Epoch(99);
    assert_eq!(
        tampered.verify(&t.committee),
        Err(CertificateError::BadSignature {
            blob_id,
            node_id: NodeId("node-0".into())
        })
    );
    // One bad signature among good ones is named.
    let mut one_bad = good.clone();
    one_bad.signatures[2] = one_bad.signatures[1];
    assert_eq!(
        one_bad.verify(&t.committee),
        Err(CertificateError::BadSignature {
            blob_id,
            node_id: NodeId("node-2".into())
        })
    );
    // Counts and bitmap shape.
    let mut short = good.clone();
    short.signatures.pop();
    assert_eq!(
        short.verify(&t.committee),
        Err(CertificateError::SignatureCount {
            signers: 4,
            signatures: 3
        })
    );
    let mut long_bitmap = good.clone();
    long_bitmap.signers.0.push(0);
    assert!(matches!(
        long_bitmap.verify(&t.committee),
        Err(CertificateError::MalformedBitmap { .. })
    ));

    // And the certificate survives its canonical encoding: 1 bitmap byte, 64 per signature.
    let bytes = canonical_bytes(&good);
    let back: BlobCertificate = floe_codec::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(back, good);
    assert_eq!(
        bytes.len(),
        8 + canonical_bytes(&good.message.body).len() + 2 + 1 + 64 * 4
    );
}

#[test]
fn a_signature_over_one_kind_never_verifies_as_another() {
    let key = KeyPair::from_seed(&[3; 32]);
    let blob_id = BlobId([4; 32]);
    let attestation = Signed::sign(
        ProtocolMessage::new(Epoch(2), InvalidBlobAttestation { blob_id }),
        &key,
    );
    attestation.verify().unwrap();
    // Same signer, same epoch, byte-identical body — different kind.
    let as_deletion = Signed {
        message: ProtocolMessage::new(Epoch(2), BlobDeletion { blob_id }),
        signer: attestation.signer,
        signature: attestation.signature,
    };
    assert_eq!(
        as_deletion.verify(),
        Err(SignatureError {
            signer: key.public(),
            blob_id
        })
    );
    // The intent prefix is what differs.
    let a = ProtocolMessage::new(Epoch(2), InvalidBlobAttestation { blob_id }).signing_bytes();
    let d = ProtocolMessage::new(Epoch(2), BlobDeletion { blob_id }).signing_bytes();
    assert_eq!(a[1..], d[1..]);
    assert_ne!(a[0], d[0]);
    assert_eq!(&a[..3], &[2, 1, APP_FLOE]);
    assert_eq!(&a[3..11], &2u64.to_le_bytes());
}

#[test]
fn invalid_blob_certificates_need_validity_weight() {
    let t = common::committee(10, 5, None); // validity = f + 1 = 4
    let message = ProtocolMessage::new(
        Epoch(0),
        InvalidBlobAttestation {
            blob_id: BlobId([5; 32]),
        },
    );
    assert!(matches!(
        t.certify(&message, 0..1).verify(&t.committee),
        Err(CertificateError::InsufficientWeight {
            weight: 2,
            needed: 4,
            ..
        })
    ));
    assert_eq!(t.certify(&message, 0..2).verify(&t.committee), Ok(4));
    assert_eq!(t.certify_enough(&message).signers.count(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Two certificates for conflicting facts cannot both verify unless the
    /// members that signed both hold more than f shards.
    #[test]
    fn quorum_intersection(
        n in prop_oneof![4u16..60, Just(100u16), Just(1000u16)],
        members in 4usize..100,
        seed in any::<u64>(),
    ) {
        let members = members.min(usize::from(n));
        let t = common::committee(n, members, Some(seed));
        let c = &t.committee;
        let mut rng = StdRng::seed_from_u64(seed);
        // Random first signer set; the second is everyone else plus some
        // double signers holding at most f shards.
        let first: Vec<usize> = (0..members).filter(|_| rng.gen_bool(0.7)).collect();
        let mut double = Vec::new();
        let mut double_weight = 0;
        for &m in &first {
            let w = c.weight(MemberIndex(m as u16));
            if double_weight + w <= c.f() && rng.gen_bool(0.5) {
                double.push(m);
                double_weight += w;
            }
        }
        let second: Vec<usize> =
            (0..members).filter(|m| !first.contains(m) || double.contains(m)).collect();
        let owner_a = ProtocolMessage::new(Epoch(0), StorageConfirmation {
            blob_id: BlobId([6; 32]), end_epoch: Epoch(3), deletable: true, owner: Some(t.protocol_keys[0].public()) });
        let owner_b = ProtocolMessage::new(Epoch(0), StorageConfirmation {
            blob_id: BlobId([6; 32]), end_epoch: Epoch(3), deletable: true, owner: Some(t.protocol_keys[1].public()) });
        let a = t.certify(&owner_a, first.iter().copied()).verify(c);
        let b = t.certify(&owner_b, second.iter().copied()).verify(c);
        prop_assert!(!(a.is_ok() && b.is_ok()), "both verified with overlap weight {double_weight} <= f = {}", c.f());

        // Conversely, any two quorums overlap in more than f shards.
        if let (Ok(wa), Ok(wb)) = (t.certify(&owner_a, first.iter().copied()).verify_with(c, SignatureCheck::Individual), Ok::<u32, ()>(0)) {
            let _ = wb;
            let rest: u32 = (0..members).filter(|m| !first.contains(m)).map(|m| c.weight(MemberIndex(m as u16))).sum();
            // A second quorum must take at least quorum - rest shards from the first set.
            let overlap_at_least = c.quorum_threshold().saturating_sub(rest);
            prop_assert!(wa >= c.quorum_threshold());
            prop_assert!(overlap_at_least > c.f());
        }
    }
}
