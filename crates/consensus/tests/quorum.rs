//! The quorum procedures, without a network: honest answers reach their
//! thresholds, hostile ones (proofs about another blob, forged or foreign
//! signatures, tampered data) are named as lies and never count.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use floe_codec::{encode, Axis, BlobId, EncodingConfig, SliverIndex, SliverPair};
use floe_consensus::quorum::*;
use floe_consensus::*;

const BLOB: BlobId = BlobId([7; 32]);
const OTHER: BlobId = BlobId([8; 32]);

/// 10 shards over 4 members (3, 3, 2, 2): f = 3, quorum 7, validity 4.
fn committee() -> common::TestCommittee {
    common::committee(10, 4, None)
}

/// Each failed member, and whether its answer was a lie.
fn judged(failures: &[(MemberIndex, Failure)]) -> Vec<(u16, bool)> {
    failures.iter().map(|(m, f)| (m.0, f.is_lie())).collect()
}

fn certified(t: &common::TestCommittee, blob: BlobId) -> BlobStatus {
    let message = ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id: blob,
            end_epoch: Epoch(5),
            deletable: false,
            owner: None,
        },
    );
    BlobStatus::Certified {
        certificate: t.certify_enough(&message),
    }
}

#[test]
fn status_needs_a_quorum_to_say_unknown_and_starts_a_grace_period_at_it() {
    let t = committee();
    let chain = floe_consensus::chain::CommitteeChain::new(t.committee.clone());
    let grace = Duration::from_millis(300);
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), grace);
    let now = Instant::now();
    // Members 0 and 1 hold 6 shards: below the quorum of 7.
    for member in [0, 1] {
        assert_eq!(
            tally.answer(MemberIndex(member), Ok(BlobStatus::Unknown), now),
            Step::CONTINUE
        );
    }
    tally.answer(MemberIndex(2), Err("timed out".into()), now);
    let shortfall = StatusTally::finish({
        let mut copy = StatusTally::new(&chain, BLOB, Epoch(1), grace);
        for member in [0, 1] {
            copy.answer(MemberIndex(member), Ok(BlobStatus::Unknown), now);
        }
        copy
    })
    .unwrap_err();
    assert_eq!((shortfall.needed, shortfall.got), (7, 6));
    // Member 3 brings the quorum: the rest get the grace period.
    assert_eq!(
        tally.answer(MemberIndex(3), Ok(BlobStatus::Pending), now),
        Step::Continue {
            deadline: Some(now + grace)
        }
    );
    let status = tally.finish().unwrap();
    assert_eq!(status.status, BlobStatus::Unknown, "pending is no proof");
    assert_eq!(status.answered, 8);
}

#[test]
fn a_proof_about_another_blob_or_a_forged_one_is_a_lie_and_does_not_count() {
    let t = committee();
    let chain = floe_consensus::chain::CommitteeChain::new(t.committee.clone());
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    let now = Instant::now();
    // A real certificate, of another blob.
    tally.answer(MemberIndex(0), Ok(certified(&t, OTHER)), now);
    // A certificate of this blob signed by one member only.
    let message = ProtocolMessage::new(
        Epoch(0),
        StorageConfirmation {
            blob_id: BLOB,
            end_epoch: Epoch(5),
            deletable: false,
            owner: None,
        },
    );
    let forged = BlobStatus::Certified {
        certificate: t.certify(&message, [1]),
    };
    tally.answer(MemberIndex(1), Ok(forged), now);
    let lies = judged(tally.failures());
    assert_eq!(lies, vec![(0, true), (1, true)]);
    assert!(tally.failures()[0].1.to_string().contains("another blob"));
    // The two honest members hold 4 shards: no status yet.
    tally.answer(MemberIndex(2), Ok(BlobStatus::Unknown), now);
    tally.answer(MemberIndex(3), Ok(BlobStatus::Unknown), now);
    let shortfall = tally.finish().unwrap_err();
    assert_eq!((shortfall.needed, shortfall.got), (7, 4));
    assert_eq!(shortfall.failures.len(), 2);
}

#[test]
fn one_honest_proof_is_enough_whatever_the_others_say() {
    let t = committee();
    let chain = floe_consensus::chain::CommitteeChain::new(t.committee.clone());
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    let now = Instant::now();
    tally.answer(MemberIndex(3), Ok(certified(&t, BLOB)), now);
    tally.answer(MemberIndex(0), Ok(BlobStatus::Unknown), now);
    let status = tally.finish().unwrap();
    assert_eq!(status.status.name(), "certified");
    // The same proof judged after its end epoch says expired.
    let mut later = StatusTally::new(&chain, BLOB, Epoch(5), Duration::ZERO);
    later.answer(MemberIndex(3), Ok(certified(&t, BLOB)), now);
    assert_eq!(later.finish().unwrap().status.name(), "expired");
}

/// A proof signed in the epoch after the one judged in, by a committee
/// change the client's chain does not hold yet, is not judged: an honest
/// member a tick ahead is not called a liar. Two ticks ahead, or about
/// another blob, it stays a lie; signed by the committee the chain holds,
/// it counts.
#[test]
fn a_proof_a_tick_ahead_from_a_committee_not_followed_yet_is_no_answer_not_a_lie() {
    let t = committee();
    let chain = floe_consensus::chain::CommitteeChain::new(t.committee.clone());
    // The committee that took over in epoch 2, unknown to `chain`.
    let next = |epoch| common::committee_in(Epoch(epoch), 10, 4, Some(9));
    let proof = |signers: &common::TestCommittee, epoch, blob| BlobStatus::Certified {
        certificate: signers.certify_enough(&common::confirmation(epoch, blob, 6)),
    };
    let now = Instant::now();
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    tally.answer(MemberIndex(0), Ok(proof(&next(2), 2, 7)), now);
    tally.answer(MemberIndex(1), Ok(proof(&next(3), 3, 7)), now);
    tally.answer(MemberIndex(2), Ok(proof(&next(2), 2, 8)), now);
    let failed = judged(tally.failures());
    assert_eq!(failed, vec![(0, false), (1, true), (2, true)]);
    assert!(tally.failures()[0].1.to_string().contains("not judged"));
    assert!(tally.failures()[2].1.to_string().contains("another blob"));
    assert!(tally.finish().is_err(), "none of them counts");

    // A deletion of this blob a tick ahead that carries another blob's
    // registration, or one not owned by its signer, is false whoever
    // signed the registration: a lie.
    let owner = KeyPair::from_seed(&[5; 32]);
    let deletion = |blob, signer: &KeyPair, registration_owner: &KeyPair| {
        let registration = ProtocolMessage::new(
            Epoch(2),
            StorageConfirmation {
                blob_id: BlobId([blob; 32]),
                end_epoch: Epoch(6),
                deletable: true,
                owner: Some(registration_owner.public()),
            },
        );
        BlobStatus::Deleted {
            proof: Box::new(DeletionProof {
                deletion: Signed::sign(
                    ProtocolMessage::new(Epoch(2), BlobDeletion { blob_id: BLOB }),
                    signer,
                ),
                certificate: next(2).certify_enough(&registration),
            }),
        }
    };
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    let stranger = KeyPair::from_seed(&[6; 32]);
    tally.answer(MemberIndex(0), Ok(deletion(8, &owner, &owner)), now);
    tally.answer(MemberIndex(1), Ok(deletion(7, &stranger, &owner)), now);
    tally.answer(MemberIndex(2), Ok(deletion(7, &owner, &owner)), now);
    let failed = judged(tally.failures());
    assert_eq!(failed, vec![(0, true), (1, true), (2, false)]);

    // A proof of the epoch judged in, with the chain behind it, is judged
    // by the chain: signed by a committee it does not hold, a lie.
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(2), Duration::ZERO);
    tally.answer(MemberIndex(0), Ok(proof(&next(2), 2, 7)), now);
    assert!(tally.failures()[0].1.is_lie());

    // Once the chain holds the change of epoch 2, a proof of epoch 2 is
    // judged by that committee: by the old one's keys, a lie; by the new
    // one's, it counts.
    let mut followed = chain.clone();
    let change = ProtocolMessage::new(
        Epoch(1),
        floe_consensus::chain::CommitteeProposal::of(&next(2).committee, Epoch(2)),
    );
    followed.extend(t.certify_enough(&change)).unwrap();
    let old = common::committee_in(Epoch(2), 10, 4, None);
    let mut tally = StatusTally::new(&followed, BLOB, Epoch(1), Duration::ZERO);
    tally.answer(MemberIndex(0), Ok(proof(&old, 2, 7)), now);
    assert!(tally.failures()[0].1.is_lie());
    tally.answer(MemberIndex(1), Ok(proof(&next(2), 2, 7)), now);
    assert_eq!(tally.failures().len(), 1);
    assert_eq!(tally.finish().unwrap().status.name(), "certified");

    // Without a committee change, a proof a tick ahead verifies and counts.
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    tally.answer(MemberIndex(3), Ok(proof(&old, 2, 7)), now);
    assert!(tally.failures().is_empty());
    assert_eq!(tally.finish().unwrap().status.name(), "certified");

    // Judged in the last epoch there is, no epoch is a tick ahead.
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(u64::MAX), Duration::ZERO);
    let last = common::committee_in(Epoch(u64::MAX), 10, 4, Some(9));
    tally.answer(MemberIndex(0), Ok(proof(&last, u64::MAX, 7)), now);
    assert!(tally.failures()[0].1.is_lie());
}

#[test]
fn signatures_of_another_message_are_lies_and_a_certificate_forms_at_the_quorum() {
    let t = committee();
    let message = common::confirmation(0, 7, 5);
    let other = common::confirmation(0, 8, 5);
    let mut tally = SignatureTally::new(&t.committee, message.clone());
    let now = Instant::now();
    let signed = |m: &ProtocolMessage<StorageConfirmation>, i: usize| {
        Ok::<_, String>(Signed::sign(m.clone(), &t.protocol_keys[i]))
    };
    // Member 0 signs another message: a lie.
    assert_eq!(
        tally.answer(MemberIndex(0), signed(&other, 0), now),
        Step::CONTINUE
    );
    assert_eq!(
        tally.answer(MemberIndex(1), signed(&message, 1), now),
        Step::CONTINUE
    );
    assert_eq!(
        tally.answer(MemberIndex(3), Err("refused".into()), now),
        Step::CONTINUE
    );
    assert_eq!(tally.weight(), 3);
    let kinds = judged(tally.failures());
    assert_eq!(kinds, vec![(0, true), (3, false)]);
    // Signed in another epoch (a clock a tick ahead): no answer, not a lie.
    let ahead = common::confirmation(1, 7, 5);
    tally.answer(MemberIndex(2), signed(&ahead, 2), now);
    assert!(!tally.failures()[2].1.is_lie());
    assert_eq!(
        tally.answer(MemberIndex(2), signed(&message, 2), now),
        Step::CONTINUE
    );
    assert_eq!(
        tally.answer(MemberIndex(0), signed(&message, 0), now),
        Step::Done
    );
    let certificate = tally.finish().unwrap();
    assert_eq!(certificate.verify(&t.committee).unwrap(), 8);
}

#[test]
fn a_relayed_signature_is_its_relayers_lie_and_its_signer_still_counts() {
    let t = committee();
    let message = common::confirmation(0, 7, 5);
    let mut tally = SignatureTally::new(&t.committee, message.clone());
    let now = Instant::now();
    // Member 3 answers first, with member 1's signature taken from it.
    let taken = Signed::sign(message.clone(), &t.protocol_keys[1]);
    tally.answer(MemberIndex(3), Ok(taken.clone()), now);
    assert_eq!(tally.weight(), 0);
    assert_eq!(tally.failures().len(), 1);
    assert_eq!(tally.failures()[0].0, MemberIndex(3));
    assert!(tally.failures()[0].1.to_string().contains("not its own"));
    // Member 1's own answer counts; it is not blamed.
    tally.answer(MemberIndex(1), Ok(taken), now);
    assert_eq!(tally.weight(), 3);
    assert_eq!(tally.failures().len(), 1);
    // Called at a network key, the answer is bound to that member too.
    let mut by_key = SignatureTally::new(&t.committee, message.clone());
    let key = t.committee.members()[2].network_key;
    by_key.answer(
        key,
        Ok(Signed::sign(message.clone(), &t.protocol_keys[0])),
        now,
    );
    assert!(by_key.failures()[0].1.is_lie());
    by_key.answer(key, Ok(Signed::sign(message, &t.protocol_keys[2])), now);
    assert_eq!(by_key.weight(), 2);
}

#[test]
fn a_certificate_short_of_its_threshold_is_a_shortfall() {
    let t = committee();
    let message = common::confirmation(0, 7, 5);
    let mut tally: SignatureTally<'_, _, MemberIndex> =
        SignatureTally::new(&t.committee, message.clone());
    tally
        .add_own(&Signed::sign(message.clone(), &t.protocol_keys[0]))
        .unwrap();
    let shortfall = tally.finish().unwrap_err();
    assert_eq!((shortfall.needed, shortfall.got), (7, 3));
}

#[test]
fn delivery_is_done_when_shards_forming_a_quorum_accepted() {
    let t = committee();
    let mut tally = DeliveryTally::new(&t.committee, Epoch(0));
    let now = Instant::now();
    assert_eq!(tally.answer(MemberIndex(0), true, now), Step::CONTINUE);
    assert_eq!(tally.answer(MemberIndex(1), false, now), Step::CONTINUE);
    assert_eq!(tally.answer(MemberIndex(2), true, now), Step::CONTINUE);
    assert_eq!(tally.answer(MemberIndex(3), true, now), Step::Done);
    assert_eq!((tally.accepted(), tally.weight()), (3, 7));
}

fn encoded(blob: &[u8]) -> (floe_codec::BlobMetadata, BlobId, Vec<SliverPair>) {
    encode(&EncodingConfig::new(10).unwrap(), blob).unwrap()
}

#[test]
fn metadata_of_another_blob_is_a_lie_and_the_first_match_ends_the_search() {
    let (metadata, blob_id, _) = encoded(&[1; 1000]);
    let (foreign, _, _) = encoded(&[2; 1000]);
    let mut tally = MetadataTally::new(blob_id);
    let now = Instant::now();
    assert_eq!(tally.answer("a", Ok(foreign), now), Step::CONTINUE);
    assert_eq!(tally.answer("b", Err("busy".into()), now), Step::CONTINUE);
    assert!(tally.failures()[0].1.is_lie() && !tally.failures()[1].1.is_lie());
    assert_eq!(tally.answer("c", Ok(metadata.clone()), now), Step::Done);
    assert_eq!(tally.finish().unwrap(), metadata);
    let empty: MetadataTally<&str> = MetadataTally::new(blob_id);
    assert_eq!(empty.finish().unwrap_err().needed, 1);
}

#[test]
fn the_read_plan_asks_only_for_what_it_lacks_and_refuses_swapped_or_tampered_slivers() {
    let (metadata, _, pairs) = encoded(&[3; 5000]);
    let needed = usize::from(metadata.config().primary_source_symbols());
    let mut tally = SliverTally::new(needed);
    assert_eq!(tally.wanted(0), needed);
    assert_eq!(tally.wanted(needed - 1), 1);
    let primary = |i: usize| {
        pairs
            .iter()
            .find(|p| p.primary.index.as_usize() == i)
            .unwrap()
            .primary
            .clone()
    };
    // Another index than asked, and a tampered sliver: lies.
    let swapped = SliverTally::check(&metadata, SliverIndex(0), primary(1));
    assert!(swapped.as_ref().is_err_and(Failure::is_lie));
    let mut tampered = primary(0);
    let mut data = tampered.data.to_vec();
    data[0] ^= 1;
    tampered.data = data.into();
    let tampered = SliverTally::check(&metadata, SliverIndex(0), tampered);
    assert!(tampered
        .as_ref()
        .is_err_and(|f| f.to_string().contains("fails verification")));
    let now = Instant::now();
    tally.answer(SliverIndex(0), tampered, now);
    assert_eq!(tally.progress().0, 0);
    // The same good sliver twice counts once.
    for _ in 0..2 {
        let checked = SliverTally::check(&metadata, SliverIndex(1), primary(1));
        tally.answer(SliverIndex(1), checked, now);
    }
    assert_eq!(tally.progress().0, 1);
    let mut step = Step::CONTINUE;
    for i in 2..needed + 1 {
        step = tally.answer(
            SliverIndex(i as u16),
            SliverTally::check(&metadata, SliverIndex(i as u16), primary(i)),
            now,
        );
    }
    assert_eq!(step, Step::Done);
    assert_eq!(tally.wanted(0), 0);
    assert_eq!(tally.finish().unwrap().len(), needed);
    // Short of slivers: a shortfall naming each failure.
    let mut short = SliverTally::new(needed);
    short.answer(SliverIndex(4), Err(Failure::Unanswered("gone".into())), now);
    let shortfall = short.finish().unwrap_err();
    assert_eq!((shortfall.got, shortfall.failures.len()), (0, 1));
}

#[test]
fn recovery_symbols_not_asked_for_or_tampered_are_lies_and_good_ones_still_count() {
    let (metadata, _, pairs) = encoded(&[5; 5000]);
    let target = (Axis::Primary, SliverIndex(2));
    let needed = floe_codec::symbols_needed(&metadata, Axis::Primary);
    let symbols_from = |range: std::ops::Range<usize>, index: SliverIndex| {
        pairs[range]
            .iter()
            .map(|p| p.secondary.recovery_symbol(&metadata, index).unwrap())
            .collect::<Vec<_>>()
    };
    let mut tally = SymbolTally::new(&metadata, &[target]);
    let now = Instant::now();
    // A peer sends symbols for another target, and one tampered symbol.
    let mut hostile = symbols_from(0..2, SliverIndex(3));
    let mut tampered = symbols_from(2..3, SliverIndex(2));
    let mut data = tampered[0].data.to_vec();
    data[0] ^= 1;
    tampered[0].data = data.into();
    hostile.append(&mut tampered);
    hostile.extend(symbols_from(3..4, SliverIndex(2)));
    assert_eq!(tally.answer("liar", Ok(hostile), now), Step::CONTINUE);
    assert!(tally.failures()[0]
        .1
        .to_string()
        .starts_with("3 recovery symbols"));
    // Its one good symbol counts; honest peers bring the rest.
    let rest = symbols_from(4..4 + needed - 1, SliverIndex(2));
    assert_eq!(tally.answer("honest", Ok(rest), now), Step::Done);
    let symbols = tally.finish().unwrap();
    assert_eq!(symbols[&target].len(), needed);
    let lacking: SymbolTally<'_, &str> = SymbolTally::new(&metadata, &[target]);
    assert_eq!(lacking.finish().unwrap_err().needed as usize, needed);
}

/// Bare symbols are checked for place and size only: a misplaced or
/// short one is a lie; a source already held is never replaced (a peer
/// resending another's source cannot displace it); every byte received
/// counts as fetched; each symbol kept names its sender.
#[test]
fn bare_symbols_count_once_per_source_and_are_checked_for_shape() {
    let (metadata, _, pairs) = encoded(&[6; 5000]);
    let target = (Axis::Secondary, SliverIndex(1));
    let needed = floe_codec::symbols_needed(&metadata, Axis::Secondary);
    let bare = |p: usize| {
        pairs[p]
            .primary
            .bare_symbols(&metadata, &[target.1])
            .unwrap()
            .remove(0)
    };
    let mut tally: SymbolTally<'_, &str, floe_codec::BareSymbol> =
        SymbolTally::new(&metadata, &[target]);
    let now = Instant::now();
    let first = bare(0);
    let size = first.data.len() as u64;
    assert_eq!(
        tally.answer("honest", Ok(vec![first.clone()]), now),
        Step::CONTINUE
    );
    // The same source again, altered, and a short symbol: the first stays.
    let mut again = first.clone();
    again.data = vec![0u8; first.data.len()].into();
    let mut short = bare(1);
    short.data = short.data.slice(1..);
    assert_eq!(
        tally.answer("liar", Ok(vec![again, short]), now),
        Step::CONTINUE
    );
    assert_eq!(tally.bytes(), 3 * size - 1);
    assert_eq!(tally.proof_bytes(), 0);
    assert!(tally.failures()[0]
        .1
        .to_string()
        .starts_with("1 recovery symbols"));
    let rest: Vec<_> = (1..needed).map(bare).collect();
    assert_eq!(tally.answer("honest", Ok(rest), now), Step::Done);
    let symbols = tally.finish_with_senders().unwrap();
    assert_eq!(symbols[&target][0], ("honest", first));
    assert!(symbols[&target].iter().all(|(from, _)| *from == "honest"));
    let symbols: std::collections::BTreeMap<_, Vec<_>> = symbols
        .into_iter()
        .map(|(t, s)| (t, s.into_iter().map(|(_, s)| s).collect()))
        .collect();
    assert_eq!(symbols[&target].len(), needed);
    assert_eq!(
        floe_codec::recover_sliver(&metadata, target.0, target.1, symbols[&target].clone())
            .unwrap(),
        pairs
            .iter()
            .find(|p| p.secondary.index == target.1)
            .unwrap()
            .secondary
    );
}

#[test]
fn all_succeed_stops_at_the_first_failure() {
    let mut tally = AllSucceed::default();
    let now = Instant::now();
    assert_eq!(tally.answer(1, Ok(()), now), Step::CONTINUE);
    assert_eq!(tally.answer(2, Err("disk full".into()), now), Step::Done);
    assert_eq!(tally.finish(), Err((2, "disk full".to_string())));
    assert_eq!(Pacing::window(0, None).window, 1);
}

/// What is false whoever signed it stays a lie a tick ahead, by a
/// committee the chain does not hold: a deletion whose owner's signature
/// fails, or signed before the registration it ends; a deletable
/// registration naming no owner; a certificate whose signatures and
/// signers disagree in number. A proof a tick behind is judged by the chain.
#[test]
fn what_is_false_whoever_signed_it_stays_a_lie_a_tick_ahead() {
    let t = committee();
    let chain = floe_consensus::chain::CommitteeChain::new(t.committee.clone());
    let next = |epoch| common::committee_in(Epoch(epoch), 10, 4, Some(9));
    let now = Instant::now();
    let owner = KeyPair::from_seed(&[5; 32]);
    let registration = |owner: Option<PublicKey>| {
        ProtocolMessage::new(
            Epoch(2),
            StorageConfirmation {
                blob_id: BLOB,
                end_epoch: Epoch(6),
                deletable: true,
                owner,
            },
        )
    };
    let deleted = |signed_in: u64, stamped: u64| {
        let mut deletion = Signed::sign(
            ProtocolMessage::new(Epoch(signed_in), BlobDeletion { blob_id: BLOB }),
            &owner,
        );
        deletion.message.epoch = Epoch(stamped);
        BlobStatus::Deleted {
            proof: Box::new(DeletionProof {
                deletion,
                certificate: next(2).certify_enough(&registration(Some(owner.public()))),
            }),
        }
    };
    let mut miscounted = next(2).certify_enough(&common::confirmation(2, 7, 6));
    miscounted.signatures.pop();
    let answers = [
        deleted(2, 3),
        deleted(1, 1),
        BlobStatus::Certified {
            certificate: next(2).certify_enough(&registration(None)),
        },
        BlobStatus::Certified {
            certificate: miscounted,
        },
    ];
    let mut tally = StatusTally::new(&chain, BLOB, Epoch(1), Duration::ZERO);
    for (member, answer) in answers.into_iter().enumerate() {
        tally.answer(MemberIndex(member as u16 % 4), Ok(answer), now);
    }
    let lies = judged(tally.failures());
    assert_eq!(
        lies,
        [0, 1, 2, 3].map(|m| (m, true)),
        "{:?}",
        tally.failures()
    );

    let mut tally = StatusTally::new(&chain, BLOB, Epoch(3), Duration::ZERO);
    let behind = next(2).certify_enough(&common::confirmation(2, 7, 6));
    tally.answer(
        MemberIndex(0),
        Ok(BlobStatus::Certified {
            certificate: behind,
        }),
        now,
    );
    assert!(tally.failures()[0].1.is_lie(), "a tick behind is judged");
}
