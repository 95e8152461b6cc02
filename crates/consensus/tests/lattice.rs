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
        // Registrations of later epochs with crossing end epochs (some
        // supersede others, some do not), a deletion that ends only some of
        // them, and two proofs sharing one deletion.
        let crossing = [
            deletable_cert(&t, &owners[0], 2, 6),  // 16
            deletable_cert(&t, &owners[0], 3, 4),  // 17
            deletable_cert(&t, &owners[0], 1, 12), // 18
        ];
        for cert in &crossing {
            facts.push(Fact::Certified(cert.clone()));
        }
        let deletion = Signed::sign(
            ProtocolMessage::new(Epoch(2), BlobDeletion { blob_id: BLOB }),
            &owners[0],
        );
        for carried in [&crossing[0], &crossing[2]] {
            // 19, 20
            facts.push(Fact::Deleted(Box::new(DeletionProof {
                deletion: deletion.clone(),
                certificate: carried.clone(),
            })));
        }
        facts.push(Fact::Certified(deletable_cert(&t, &owners[1], 3, 7))); // 21
        let facts = facts
            .into_iter()
            .map(|f| {
                let committee = t.committee.at_epoch(f.epoch());
                f.verify(&committee).unwrap()
            })
            .collect();
        Pool {
            committee: t.committee,
            facts,
        }
    })
}

fn state_of(indices: &[usize]) -> BlobState {
    let mut state = BlobState::unknown(BLOB);
    for &i in indices {
        state.apply(pool().facts[i].clone()).unwrap();
    }
    state
}

fn subset() -> impl Strategy<Value = Vec<usize>> {
    let n = pool().facts.len();
    prop::collection::vec(0..n, 0..12)
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
        prop_assert_eq!(x.join(y).unwrap(), y.join(x).unwrap());
        prop_assert_eq!(x.join(y).unwrap().join(z).unwrap(), x.join(&y.join(z).unwrap()).unwrap());
        prop_assert_eq!(x.join(x).unwrap(), x.clone());
        prop_assert_eq!(x.join(&BlobState::unknown(BLOB)).unwrap(), x.clone());
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
        let mut rebuilt = BlobState::unknown(BLOB);
        for fact in reference.facts() {
            let committee = pool().committee.at_epoch(fact.epoch());
            rebuilt.apply(fact.verify(&committee).unwrap()).unwrap();
        }
        prop_assert_eq!(&rebuilt, &reference);
        // What it stores reads back as the same state.
        prop_assert_eq!(BlobState::from_bytes(BLOB, &reference.to_bytes()).unwrap(), reference.clone());
        for epoch in 0..12 {
            let status = reference.status(Epoch(epoch));
            prop_assert_eq!(&replica.status(Epoch(epoch)), &status);
            // The shortcut the store uses agrees with the status it stands for.
            prop_assert_eq!(
                reference.is_available(Epoch(epoch)),
                matches!(status, BlobStatus::Certified { .. })
            );
            // A status's proof rebuilds a state with the same status.
            if let Some(fact) = status.fact() {
                let committee = pool().committee.at_epoch(fact.epoch());
                let proven = BlobState::from_fact(fact.verify(&committee).unwrap());
                prop_assert_eq!(proven.status(Epoch(epoch)).name(), status.name());
            }
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
    let mut state = BlobState::unknown(BLOB);
    assert_eq!(state.status(Epoch(0)), BlobStatus::Unknown);
    state.mark_pending();
    assert_eq!(state.status(Epoch(0)), BlobStatus::Pending);

    state.apply(fact(0)).unwrap(); // permanent until 3
    match state.status(Epoch(1)) {
        BlobStatus::Certified { certificate } => {
            assert_eq!(certificate.message.body.end_epoch, Epoch(3))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(state.status(Epoch(3)), BlobStatus::Expired { .. }));
    state.apply(fact(6)).unwrap(); // permanent until 9: join keeps the larger
    match state.status(Epoch(3)) {
        BlobStatus::Certified { certificate } => {
            assert_eq!(certificate.message.body.end_epoch, Epoch(9))
        }
        other => panic!("{other:?}"),
    }
    assert!(state.is_available(Epoch(8)) && !state.is_available(Epoch(9)));

    state.apply(fact(14)).unwrap();
    assert!(matches!(state.status(Epoch(1)), BlobStatus::Invalid { .. }));
}

#[test]
fn a_deletion_ends_only_its_owners_registrations() {
    // Only owner 0's deletable registration (until 4), then its deletion.
    let mut state = BlobState::from_fact(fact(1));
    assert_eq!(state.status(Epoch(1)).name(), "certified");
    state.apply(fact(10)).unwrap();
    match state.status(Epoch(1)) {
        BlobStatus::Deleted { proof } => {
            assert_eq!(
                proof.deletion.signer,
                KeyPair::from_seed(&[21; 32]).public()
            );
            assert_eq!(
                proof.certificate.message.body.owner,
                Some(proof.deletion.signer)
            );
        }
        other => panic!("{other:?}"),
    }
    // Owner 1's registration of the same blob is untouched by owner 0's deletion.
    state.apply(fact(2)).unwrap();
    assert_eq!(state.status(Epoch(1)).name(), "certified");
    // ... until owner 1 deletes too.
    state.apply(fact(12)).unwrap();
    assert_eq!(state.status(Epoch(1)).name(), "deleted");
    // A permanent registration cannot be deleted.
    state.apply(fact(3)).unwrap();
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

#[test]
fn a_state_refuses_facts_about_another_blob() {
    let t = common::committee(10, 4, Some(4));
    let other = ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id: BlobId([9; 32]),
            end_epoch: Epoch(50),
            deletable: false,
            owner: None,
        },
    );
    let foreign = Fact::Certified(t.certify_enough(&other))
        .verify(&t.committee)
        .unwrap();
    let mut state = BlobState::unknown(BLOB);
    assert_eq!(
        state.apply(foreign.clone()),
        Err(FactError::WrongBlob {
            state: BLOB,
            fact: BlobId([9; 32])
        })
    );
    assert_eq!(state, BlobState::unknown(BLOB));
    assert_eq!(state.status(Epoch(1)), BlobStatus::Unknown);
    // Nor can a whole state of another blob be joined in.
    assert!(state.join(&BlobState::from_fact(foreign)).is_err());
    // Nor read back from bytes stored under another blob's key.
    let mine = state_of(&[0]);
    assert!(matches!(
        BlobState::from_bytes(BlobId([9; 32]), &mine.to_bytes()),
        Err(StateDecodeError::WrongBlob(_))
    ));
}

/// One owner's registration certified in `epoch` until `end`.
fn deletable_cert(
    t: &common::TestCommittee,
    owner: &KeyPair,
    epoch: u64,
    end: u64,
) -> BlobCertificate {
    let message = ProtocolMessage::new(
        Epoch(epoch),
        StorageConfirmation {
            blob_id: BLOB,
            end_epoch: Epoch(end),
            deletable: true,
            owner: Some(owner.public()),
        },
    );
    t.certify_enough(&message)
}

/// The same, verified.
fn deletable(t: &common::TestCommittee, owner: &KeyPair, epoch: u64, end: u64) -> VerifiedFact {
    Fact::Certified(deletable_cert(t, owner, epoch, end))
        .verify(&t.committee.at_epoch(Epoch(epoch)))
        .unwrap()
}

#[test]
fn renewals_replace_what_they_renew_and_deletions_keep_only_their_proof() {
    let t = common::committee(10, 4, Some(4));
    let owner = KeyPair::from_seed(&[23; 32]);
    let mut state = BlobState::unknown(BLOB);
    // Forty renewals, each a later epoch and a later end: one fact remains.
    for epoch in 0..40u64 {
        state
            .apply(deletable(&t, &owner, epoch, epoch + 10))
            .unwrap();
        assert_eq!(state.facts().len(), 1, "after the renewal in epoch {epoch}");
    }
    // A shorter registration certified later is not superseded: a deletion
    // between the two would end only the older one.
    state.apply(deletable(&t, &owner, 41, 45)).unwrap();
    assert_eq!(state.facts().len(), 2);
    // An older, shorter one adds nothing.
    state.apply(deletable(&t, &owner, 3, 20)).unwrap();
    assert_eq!(state.facts().len(), 2);
    // The deletion in epoch 40 ends the renewal (certified in 39) but not
    // the registration of epoch 41; what it ended leaves the facts.
    let ended = match state.facts().first() {
        Some(Fact::Certified(c)) => c.clone(),
        other => panic!("{other:?}"),
    };
    let deletion = Fact::Deleted(Box::new(DeletionProof {
        deletion: Signed::sign(
            ProtocolMessage::new(Epoch(40), BlobDeletion { blob_id: BLOB }),
            &owner,
        ),
        certificate: ended,
    }))
    .verify(&t.committee.at_epoch(Epoch(39)))
    .unwrap();
    state.apply(deletion).unwrap();
    let facts = state.facts();
    assert_eq!(facts.len(), 2, "{facts:?}");
    assert!(matches!(&facts[0], Fact::Certified(c) if c.message.epoch == Epoch(41)));
    assert!(matches!(&facts[1], Fact::Deleted(_)));
    assert_eq!(state.available_until(), Some(Epoch(45)));
    assert_eq!(state.status(Epoch(42)).name(), "certified");
    assert_eq!(state.status(Epoch(45)).name(), "deleted");
}

/// States stored by earlier versions (live certificates by epoch, the
/// latest deletion and the best registration it ended, kept apart) read
/// back as the same state joined from their facts.
#[test]
fn legacy_states_read_back_as_their_facts_join() {
    use std::collections::BTreeMap;
    let cert = |i: usize| match fact(i).into_fact() {
        Fact::Certified(c) => c,
        other => panic!("{other:?}"),
    };
    let Fact::Deleted(proof) = fact(11).into_fact() else {
        unreachable!()
    };
    // Owner 0: deleted in epoch 2 (ending its registration until 4);
    // owner 1: live until 6; permanent until 9.
    type LegacyOwner = (
        BTreeMap<Epoch, BlobCertificate>,
        Option<Signed<BlobDeletion>>,
        Option<BlobCertificate>,
    );
    let mut owners: BTreeMap<PublicKey, LegacyOwner> = BTreeMap::new();
    owners.insert(
        proof.deletion.signer,
        (
            BTreeMap::new(),
            Some(proof.deletion.clone()),
            Some(proof.certificate.clone()),
        ),
    );
    let owner1 = cert(5);
    owners.insert(
        owner1.message.body.owner.unwrap(),
        (BTreeMap::from([(Epoch(0), owner1.clone())]), None, None),
    );
    let legacy = (false, Some(cert(6)), owners, None::<InvalidBlobCertificate>);
    let bytes = canonical_bytes(&legacy);
    let state = BlobState::from_legacy_bytes(BLOB, &bytes).unwrap();
    assert_eq!(state, state_of(&[6, 5, 11]));
    assert!(BlobState::from_legacy_bytes(BlobId([1; 32]), &bytes).is_err());
}
