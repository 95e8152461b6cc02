//! The blob-state lattice: join is commutative, associative and idempotent,
//! replicas that see the same facts in any order agree, and status answers
//! with the right proof.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use std::sync::OnceLock;

use floe_codec::BlobId;
use floe_consensus::*;
use proptest::prelude::*;

const BLOB: BlobId = BlobId([8; 32]);

struct Pool {
    committee: Committee,
    facts: Vec<VerifiedFact>,
}

/// A fixed pool of verified facts about one blob: permanent and deletable
/// certificates from two owners at several epochs, deletions, and an
/// invalid-blob certificate. Signing is slow, so it is built once.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let t = common::committee(10, 4, Some(4));
        let owners = [KeyPair::from_seed(&[21; 32]), KeyPair::from_seed(&[22; 32])];
        let mut facts = Vec::new();
        // Certificates are from epoch 0 (the committee's); deletion epochs vary.
        for end in [3u64, 5, 9] {
            let permanent = ProtocolMessage::new(
                Epoch(0),
                StorageConfirmation {
                    blob_id: BLOB,
                    end_epoch: Epoch(end),
                    deletable: false,
                    owner: None,
                },
            );
            facts.push(Fact::Certified(t.certify_enough(&permanent)));
            for owner in &owners {
                let deletable = ProtocolMessage::new(
                    Epoch(0),
                    StorageConfirmation {
                        blob_id: BLOB,
                        end_epoch: Epoch(end + 1),
                        deletable: true,
                        owner: Some(owner.public()),
                    },
                );
                facts.push(Fact::Certified(t.certify_enough(&deletable)));
            }
        }
        // Two different quorums over the same message: ties must break deterministically.
        let same = ProtocolMessage::new(
            Epoch(0),
            StorageConfirmation {
                blob_id: BLOB,
                end_epoch: Epoch(9),
                deletable: false,
                owner: None,
            },
        );
        facts.push(Fact::Certified(t.certify(&same, [1, 2, 3])));
        for (o, owner) in owners.iter().enumerate() {
            // The registration each deletion ends: this owner's, until 4.
            let certificate = match &facts[1 + o] {
                Fact::Certified(c) => c.clone(),
                _ => unreachable!(),
            };
            for epoch in [0u64, 2] {
                let deletion = ProtocolMessage::new(Epoch(epoch), BlobDeletion { blob_id: BLOB });
                facts.push(Fact::Deleted(Box::new(DeletionProof {
                    deletion: Signed::sign(deletion, owner),
                    certificate: certificate.clone(),
                })));
            }
        }
        let invalid = ProtocolMessage::new(Epoch(0), InvalidBlobAttestation { blob_id: BLOB });
        facts.push(Fact::Invalid(t.certify_enough(&invalid)));
        facts.push(Fact::Invalid(t.certify(&invalid, [2, 3])));
        let facts = facts
            .into_iter()
            .map(|f| f.verify(&t.committee).unwrap())
            .collect();
        Pool {
            committee: t.committee,
            facts,
        }
    })
}

fn state_of(indices: &[usize]) -> BlobState {
    let mut state = BlobState::unknown();
    for &i in indices {
        state.apply(pool().facts[i].clone());
    }
    state
}

fn subset() -> impl Strategy<Value = Vec<usize>> {
    let n = pool().facts.len();
    prop::collection::vec(0..n, 0..10)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn join_is_commutative_associative_idempotent(a in subset(), b in subset(), c in subset(), pending in any::<[bool; 3]>()) {
        let mut states = [state_of(&a), state_of(&b), state_of(&c)];
        for (state, p) in states.iter_mut().zip(pending) {
            if p { state.mark_pending(); }
        }
        let [x, y, z] = &states;
        prop_assert_eq!(x.join(y), y.join(x));
        prop_assert_eq!(x.join(y).join(z), x.join(&y.join(z)));
        prop_assert_eq!(x.join(x), x.clone());
        prop_assert_eq!(x.join(&BlobState::unknown()), x.clone());
    }

    #[test]
    fn replicas_agree_whatever_the_order_and_duplication(facts in subset(), order in any::<u64>(), dup in 0usize..4) {
        let reference = state_of(&facts);
        // Another replica sees a permutation, with some facts repeated.
        let mut seen: Vec<usize> = facts.iter().copied().chain(facts.iter().copied().take(dup)).collect();
        let mut state = order | 1;
        for i in (1..seen.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            seen.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let replica = state_of(&seen);
        prop_assert_eq!(&replica, &reference);
        // And through the facts it would gossip: the states converge.
        let mut rebuilt = BlobState::unknown();
        for fact in reference.facts() {
            rebuilt.apply(fact.verify(&pool().committee).unwrap());
        }
        prop_assert_eq!(rebuilt, reference.clone());
        for epoch in 0..12 {
            prop_assert_eq!(replica.status(Epoch(epoch)), reference.status(Epoch(epoch)));
        }
    }
}

fn fact(i: usize) -> VerifiedFact {
    pool().facts[i].clone()
}

// Pool layout: for end in [3, 5, 9]: permanent(end), owner0(end+1), owner1(end+1)
// -> indices 0..9; 9: permanent(9) other quorum; 10,11: owner0 deletions
// (epoch 0, 2); 12,13: owner1 deletions; 14,15: invalid.

#[test]
fn status_walks_the_lattice_with_proofs() {
    let mut state = BlobState::unknown();
    assert_eq!(state.status(Epoch(0)), BlobStatus::Unknown);
    state.mark_pending();
    assert_eq!(state.status(Epoch(0)), BlobStatus::Pending);

    state.apply(fact(0)); // permanent until 3
    match state.status(Epoch(1)) {
        BlobStatus::Certified { certificate } => {
            assert_eq!(certificate.message.body.end_epoch, Epoch(3))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(state.status(Epoch(3)), BlobStatus::Expired { .. }));
    state.apply(fact(6)); // permanent until 9: join keeps the larger
    match state.status(Epoch(3)) {
        BlobStatus::Certified { certificate } => {
            assert_eq!(certificate.message.body.end_epoch, Epoch(9))
        }
        other => panic!("{other:?}"),
    }
    assert!(state.is_available(Epoch(8)) && !state.is_available(Epoch(9)));

    state.apply(fact(14));
    assert!(matches!(state.status(Epoch(1)), BlobStatus::Invalid { .. }));
}

#[test]
fn a_deletion_ends_only_its_owners_registrations() {
    // Only owner 0's deletable registration (until 4), then its deletion.
    let mut state = BlobState::from_fact(fact(1));
    assert_eq!(state.status(Epoch(1)).name(), "certified");
    state.apply(fact(10));
    match state.status(Epoch(1)) {
        BlobStatus::Deleted {
            deletion,
            certificate,
        } => {
            assert_eq!(deletion.signer, KeyPair::from_seed(&[21; 32]).public());
            assert_eq!(certificate.message.body.owner, Some(deletion.signer));
        }
        other => panic!("{other:?}"),
    }
    // Owner 1's registration of the same blob is untouched by owner 0's deletion.
    state.apply(fact(2));
    assert_eq!(state.status(Epoch(1)).name(), "certified");
    // ... until owner 1 deletes too.
    state.apply(fact(12));
    assert_eq!(state.status(Epoch(1)).name(), "deleted");
    // A permanent registration cannot be deleted.
    state.apply(fact(3));
    assert_eq!(state.status(Epoch(1)).name(), "certified");
}

#[test]
fn deletions_must_carry_their_owners_registration_and_forgeries_are_refused() {
    let t = common::committee(10, 4, Some(4));
    let Fact::Deleted(proof) = fact(10).into_fact() else {
        unreachable!()
    };
    // Signed by someone other than the certificate's owner.
    let intruder = KeyPair::from_seed(&[99; 32]);
    let stolen = DeletionProof {
        deletion: Signed::sign(proof.deletion.message.clone(), &intruder),
        certificate: proof.certificate.clone(),
    };
    assert!(matches!(
        Fact::Deleted(Box::new(stolen)).verify(&t.committee),
        Err(FactError::DeletionMismatch { .. })
    ));
    // Carrying a permanent registration.
    let Fact::Certified(permanent) = fact(0).into_fact() else {
        unreachable!()
    };
    let permanent = DeletionProof {
        deletion: proof.deletion.clone(),
        certificate: permanent,
    };
    assert!(matches!(
        Fact::Deleted(Box::new(permanent)).verify(&t.committee),
        Err(FactError::DeletionMismatch { .. })
    ));
    // A deletion whose signature was tampered with.
    let mut tampered = proof.clone();
    tampered.deletion.message.epoch = Epoch(7);
    assert!(matches!(
        Fact::Deleted(tampered).verify(&t.committee),
        Err(FactError::Signature(_))
    ));

    let Fact::Certified(mut forged) = fact(0).into_fact() else {
        unreachable!()
    };
    forged.message.body.end_epoch = Epoch(1000);
    assert!(matches!(
        Fact::Certified(forged).verify(&t.committee),
        Err(FactError::Certificate(
            CertificateError::BadSignature { .. }
        ))
    ));
    let orphan = ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id: BLOB,
            end_epoch: Epoch(5),
            deletable: true,
            owner: None,
        },
    );
    assert!(matches!(
        Fact::Certified(t.certify_enough(&orphan)).verify(&t.committee),
        Err(FactError::Certificate(
            CertificateError::DeletableWithoutOwner { .. }
        ))
    ));
}
