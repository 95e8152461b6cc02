//! Committee change: the chain of committee certificates from genesis, and
//! shard assignment that moves as few shards as possible.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;

use floe_codec::{BlobId, ShardIndex};
use floe_consensus::chain::*;
use floe_consensus::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, SeedableRng};

/// Every key of every member ever, by node ID.
struct Keys(BTreeMap<NodeId, KeyPair>);

impl Keys {
    fn member(&mut self, i: usize) -> Member {
        let mut rng = StdRng::seed_from_u64(1000 + i as u64);
        let protocol = KeyPair::generate(&mut rng);
        let network = KeyPair::generate(&mut rng);
        let node_id = NodeId(format!("node-{i}"));
        let member = Member {
            node_id: node_id.clone(),
            protocol_key: protocol.public(),
            network_key: network.public(),
            address: format!("127.0.0.1:{}", 7000 + i),
            shards: Vec::new(),
        };
        self.0.insert(node_id, protocol);
        member
    }

    /// `message` signed by the first members of `committee` until a quorum.
    fn certify<T: MessageBody>(
        &self,
        committee: &Committee,
        message: ProtocolMessage<T>,
    ) -> Certificate<T> {
        let mut builder = CertificateBuilder::new(committee, message.clone());
        for member in committee.members() {
            if builder.is_complete() {
                break;
            }
            builder
                .add(&Signed::sign(message.clone(), &self.0[&member.node_id]))
                .unwrap();
        }
        builder.certificate().unwrap()
    }
}

/// Genesis: nodes 0..4 over 12 shards, 3 each.
fn genesis(keys: &mut Keys) -> Committee {
    let members: Vec<Member> = (0..4)
        .map(|i| Member {
            shards: (0..12)
                .filter(|s| s % 4 == i)
                .map(|s| ShardIndex(s as u16))
                .collect(),
            ..keys.member(i)
        })
        .collect();
    Committee::new(Epoch(0), 12, members).unwrap()
}

fn link(
    keys: &Keys,
    current: &Committee,
    epoch: u64,
    next: &[(Member, u16)],
) -> CommitteeCertificate {
    let members = assign_shards(current, next).unwrap();
    let proposal = CommitteeProposal {
        epoch: Epoch(epoch),
        n_shards: current.n_shards(),
        members,
    };
    keys.certify(current, ProtocolMessage::new(Epoch(epoch - 1), proposal))
}

fn member_of(committee: &Committee, i: usize) -> Member {
    committee
        .members()
        .iter()
        .find(|m| m.node_id.0 == format!("node-{i}"))
        .unwrap()
        .clone()
}

#[test]
fn a_client_that_knows_only_genesis_verifies_a_certificate_of_epoch_3() {
    let mut keys = Keys(BTreeMap::new());
    let genesis = genesis(&mut keys);
    // Epoch 1: node-4 joins (shares 3, 3, 2, 2, 2).
    let joining = keys.member(4);
    let next1: Vec<(Member, u16)> = (0..4)
        .map(|i| (member_of(&genesis, i), if i < 2 { 3 } else { 2 }))
        .chain([(joining, 2)])
        .collect();
    let link1 = link(&keys, &genesis, 1, &next1);
    let mut chain = CommitteeChain::new(genesis.clone());
    chain.extend(link1.clone()).unwrap();
    let one = chain.committee_at(Epoch(1));
    // Epoch 2 has no link: committee 1 serves it. Epoch 3: node-0 leaves.
    assert_eq!(chain.committee_at(Epoch(2)).members(), one.members());
    let next3: Vec<(Member, u16)> = (1..5).map(|i| (member_of(&one, i), 3)).collect();
    let link3 = link(&keys, &chain.committee_at(Epoch(2)), 3, &next3);
    // What a client does: it knows genesis only, and is handed the links.
    let followed = CommitteeChain::verify(genesis.clone(), [link1, link3]).unwrap();
    let three = followed.committee_at(Epoch(3));
    assert!(three.members().iter().all(|m| m.node_id.0 != "node-0"));
    assert_eq!(followed.latest_epoch(), Epoch(3));
    // A blob certified in epoch 3 by its committee.
    let message = ProtocolMessage::new(
        Epoch(3),
        StorageConfirmation {
            blob_id: BlobId([3; 32]),
            end_epoch: Epoch(9),
            deletable: false,
            owner: None,
        },
    );
    let certificate = keys.certify(&three, message);
    assert_eq!(certificate.verify(&three).unwrap(), 9);
    // Against genesis it does not verify: node-4 is no member there.
    assert!(certificate.verify(&genesis.at_epoch(Epoch(3))).is_err());
    // Later epochs without links keep committee 3.
    assert_eq!(followed.committee_at(Epoch(7)).members(), three.members());
    assert_eq!(followed.links_after(Epoch(1)).count(), 1);
}

#[test]
fn links_not_signed_by_the_committee_before_them_are_refused() {
    let mut keys = Keys(BTreeMap::new());
    let genesis = genesis(&mut keys);
    let outsiders: Vec<Member> = (10..14).map(|i| keys.member(i)).collect();
    let takeover: Vec<(Member, u16)> = outsiders.iter().map(|m| (m.clone(), 3)).collect();
    let proposal = CommitteeProposal {
        epoch: Epoch(1),
        n_shards: 12,
        members: assign_shards(&genesis, &takeover).unwrap(),
    };
    let new = proposal.committee().unwrap();
    // The outsiders certify themselves: no genesis member signed.
    let selfmade = keys.certify(
        &new.at_epoch(Epoch(0)),
        ProtocolMessage::new(Epoch(0), proposal.clone()),
    );
    let mut chain = CommitteeChain::new(genesis.clone());
    assert!(matches!(
        chain.extend(selfmade),
        Err(ChainError::Certificate {
            epoch: Epoch(1),
            ..
        })
    ));
    // Signed by the right committee, but in the wrong epoch.
    let late = keys.certify(
        &genesis.at_epoch(Epoch(1)),
        ProtocolMessage::new(Epoch(1), proposal.clone()),
    );
    assert!(matches!(
        chain.extend(late),
        Err(ChainError::WrongSigningEpoch { .. })
    ));
    // A change of shard count.
    let mut resharded = proposal.clone();
    resharded.n_shards = 16;
    let resharded = keys.certify(&genesis, ProtocolMessage::new(Epoch(0), resharded));
    assert!(matches!(
        chain.extend(resharded),
        Err(ChainError::ShardCount {
            expected: 12,
            got: 16,
            ..
        })
    ));
    // The honest link extends; replaying it, or an older one, does not.
    let honest = keys.certify(&genesis, ProtocolMessage::new(Epoch(0), proposal));
    chain.extend(honest.clone()).unwrap();
    assert!(matches!(
        chain.extend(honest),
        Err(ChainError::OutOfOrder { .. })
    ));
    assert_eq!(chain.links().count(), 1);
}

fn shares_for(n: u16, members: usize, seed: u64) -> Vec<u16> {
    let mut state = seed | 1;
    let mut shares = vec![1u16; members];
    for _ in 0..(usize::from(n) - members) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        shares[(state % members as u64) as usize] += 1;
    }
    shares
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn assignment_moves_only_what_shares_force(
        n in 12u16..80,
        current_members in 4usize..9,
        stay in 1usize..9,
        join in 0usize..4,
        seed in any::<u64>(),
    ) {
        let mut keys = Keys(BTreeMap::new());
        let t = common::committee(n, current_members, Some(seed));
        let current = t.committee;
        // The first `stay` members stay; `join` new ones join.
        let stay = stay.min(current_members);
        let next_members: Vec<Member> = current.members()[..stay]
            .iter()
            .cloned()
            .chain((100..100 + join).map(|i| keys.member(i)))
            .collect();
        prop_assume!(next_members.len() >= 1 && usize::from(n) >= next_members.len());
        let shares = shares_for(n, next_members.len(), seed);
        let next: Vec<(Member, u16)> = next_members.into_iter().zip(shares).collect();
        let assigned = assign_shards(&current, &next).unwrap();
        // A valid committee: every shard held once.
        let committee = Committee::new(Epoch(1), n, assigned.clone()).unwrap();
        prop_assert_eq!(committee.members().len(), next.len());
        let mut moved = 0usize;
        let mut forced = 0usize;
        for ((member, share), got) in next.iter().zip(&assigned) {
            prop_assert_eq!(got.shards.len(), usize::from(*share));
            let held: Vec<ShardIndex> = current
                .members()
                .iter()
                .find(|m| m.node_id == member.node_id)
                .map(|m| m.shards.clone())
                .unwrap_or_default();
            let kept = got.shards.iter().filter(|s| held.contains(s)).count();
            // It keeps as much of what it held as its share allows.
            prop_assert_eq!(kept, held.len().min(usize::from(*share)));
            moved += got.shards.len() - kept;
            forced += usize::from(*share).saturating_sub(held.len());
        }
        prop_assert_eq!(moved, forced);
    }
}

#[test]
fn shares_must_cover_the_shards_once() {
    let mut keys = Keys(BTreeMap::new());
    let genesis = genesis(&mut keys);
    let a = member_of(&genesis, 0);
    assert!(matches!(
        assign_shards(&genesis, &[(a.clone(), 11)]),
        Err(AssignError::Total {
            expected: 12,
            got: 11
        })
    ));
    assert!(matches!(
        assign_shards(&genesis, &[(a.clone(), 6), (a.clone(), 6)]),
        Err(AssignError::Duplicate(_))
    ));
    assert!(matches!(
        assign_shards(&genesis, &[(a.clone(), 12), (member_of(&genesis, 1), 0)]),
        Err(AssignError::Empty(_))
    ));
}

/// The change into epoch 1 in which node-0 leaves and node-4 joins with 3
/// shards (node-0's), the others keeping theirs.
fn changed(keys: &mut Keys) -> (CommitteeChain, Committee) {
    let genesis = genesis(keys);
    let joining = keys.member(4);
    let next: Vec<(Member, u16)> = genesis.members()[1..]
        .iter()
        .cloned()
        .map(|m| (m, 3))
        .chain([(joining, 3)])
        .collect();
    let mut chain = CommitteeChain::new(genesis.clone());
    chain.extend(link(keys, &genesis, 1, &next)).unwrap();
    (chain, genesis)
}

#[test]
fn a_handoff_moves_only_the_shards_whose_holder_changed() {
    use floe_consensus::handoff::Handoff;
    let mut keys = Keys(BTreeMap::new());
    let (chain, genesis) = changed(&mut keys);
    let handoff = Handoff::new(&chain, Epoch(1));
    let moves = handoff.moves();
    let leaving = &genesis.members()[0];
    assert_eq!(moves.len(), 3, "{moves:?}");
    assert!(moves.iter().all(|m| m.from.node_id == leaving.node_id));
    assert!(moves.iter().all(|m| m.to.node_id.0 == "node-4"));
    assert!(!handoff.is_done());
    // An epoch without a change moves nothing and is done.
    let quiet = Handoff::new(&chain, Epoch(2));
    assert!(quiet.moves().is_empty() && quiet.is_done());
}

#[test]
fn synced_notices_are_bound_to_their_change_and_signer_and_reads_follow_them() {
    use floe_consensus::handoff::{Handoff, HandoffError, ShardsSynced};
    let mut keys = Keys(BTreeMap::new());
    let (chain, genesis) = changed(&mut keys);
    let mut handoff = Handoff::new(&chain, Epoch(1));
    let next = handoff.next().clone();
    let joining = next
        .members()
        .iter()
        .find(|m| m.node_id.0 == "node-4")
        .unwrap()
        .clone();
    let moved = handoff.moves()[0].shard;
    let leaving = &genesis.members()[0];
    // Before node-4 synced, its new shard is read from node-0.
    assert_eq!(handoff.read_holder(moved).unwrap().node_id, leaving.node_id);
    let notice_of = |member: &Member, epoch: u64, shards: Vec<ShardIndex>| {
        Signed::sign(
            ProtocolMessage::new(Epoch(epoch), ShardsSynced { shards }),
            &keys.0[&member.node_id],
        )
    };
    let mut own = joining.shards.clone();
    own.sort();
    // Another change's notice, another member's shards, a stranger, a forgery.
    assert!(matches!(
        handoff.add(notice_of(&joining, 2, own.clone())),
        Err(HandoffError::WrongEpoch { .. })
    ));
    assert!(matches!(
        handoff.add(notice_of(&joining, 1, vec![ShardIndex(1)])),
        Err(HandoffError::WrongShards { .. })
    ));
    assert!(matches!(
        handoff.add(notice_of(leaving, 1, own.clone())),
        Err(HandoffError::NotMember { .. })
    ));
    let mut forged = notice_of(&joining, 1, own.clone());
    forged.signer = next.members()[0].protocol_key;
    assert!(handoff.add(forged).is_err());
    assert_eq!(handoff.synced_weight(), 0);
    // node-4's own notice: its shard is read from it now.
    assert!(handoff.add(notice_of(&joining, 1, own.clone())).unwrap());
    assert!(!handoff.add(notice_of(&joining, 1, own)).unwrap());
    assert_eq!(handoff.read_holder(moved).unwrap().node_id, joining.node_id);
    assert!(!handoff.is_done(), "3 of 12 shards synced");
    // Two more members (9 of 12 shards): the change is done.
    for member in &next.members()[..2] {
        let mut shards = member.shards.clone();
        shards.sort();
        handoff.add(notice_of(member, 1, shards)).unwrap();
    }
    assert_eq!(handoff.synced_weight(), 9);
    assert!(handoff.is_done());
}

#[test]
fn a_moved_shard_is_read_from_its_previous_holder_until_its_new_holder_synced() {
    use floe_consensus::handoff::{Handoff, ShardsSynced};
    let mut keys = Keys(BTreeMap::new());
    let (chain, genesis) = changed(&mut keys);
    let mut handoff = Handoff::new(&chain, Epoch(1));
    let next = handoff.next().clone();
    // The three members that kept their shards say so: a quorum, the change
    // is done, but node-4 has not synced, so its shards stay with node-0.
    for member in next.members().iter().filter(|m| m.node_id.0 != "node-4") {
        let mut shards = member.shards.clone();
        shards.sort();
        let notice = Signed::sign(
            ProtocolMessage::new(Epoch(1), ShardsSynced { shards }),
            &keys.0[&member.node_id],
        );
        handoff.add(notice).unwrap();
    }
    assert!(handoff.is_done());
    assert!(!handoff.settled());
    for moved in handoff.moves() {
        assert!(!handoff.released(moved.shard));
        assert_eq!(
            handoff.read_holder(moved.shard).unwrap().node_id,
            genesis.members()[0].node_id
        );
    }
}
