//! Committee validation, quorum arithmetic and the committee file.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use floe_codec::ShardIndex;
use floe_consensus::*;

fn members(n: u16, count: usize) -> Vec<Member> {
    common::committee(n, count, None)
        .committee
        .members()
        .to_vec()
}

#[test]
fn quorum_arithmetic_is_in_shards() {
    let c = common::committee(100, 7, None).committee;
    assert_eq!(
        (c.f(), c.quorum_threshold(), c.validity_threshold()),
        (33, 67, 34)
    );
    assert!(c.is_quorum(67) && !c.is_quorum(66));
    assert!(c.is_validity(34) && !c.is_validity(33));
    let weights: u32 = (0..7).map(|i| c.weight(MemberIndex(i))).sum();
    assert_eq!(weights, 100);
}

#[test]
fn every_invariant_violation_names_its_culprit() {
    let good = members(10, 4);
    assert!(Committee::new(Epoch(0), 10, good.clone()).is_ok());

    assert!(matches!(
        Committee::new(Epoch(0), 3, members(4, 4)),
        Err(CommitteeError::ShardCount(_))
    ));
    assert_eq!(
        Committee::new(Epoch(0), 10, vec![]),
        Err(CommitteeError::NoMembers)
    );

    let mut twice = good.clone();
    twice[1].shards.push(ShardIndex(0));
    assert_eq!(
        Committee::new(Epoch(0), 10, twice),
        Err(CommitteeError::ShardHeldTwice {
            shard: ShardIndex(0),
            first: NodeId("node-0".into()),
            second: NodeId("node-1".into())
        })
    );

    let mut unassigned = good.clone();
    unassigned[3].shards.retain(|s| s.0 != 7);
    assert_eq!(
        Committee::new(Epoch(0), 10, unassigned),
        Err(CommitteeError::ShardUnassigned {
            shard: ShardIndex(7)
        })
    );

    let mut out_of_range = good.clone();
    out_of_range[2].shards.push(ShardIndex(10));
    assert!(matches!(
        Committee::new(Epoch(0), 10, out_of_range),
        Err(CommitteeError::ShardOutOfRange {
            shard: ShardIndex(10),
            n_shards: 10,
            ..
        })
    ));

    let mut same_id = good.clone();
    same_id[2].node_id = NodeId("node-0".into());
    assert!(matches!(
        Committee::new(Epoch(0), 10, same_id),
        Err(CommitteeError::DuplicateNodeId {
            first: 0,
            second: 2,
            ..
        })
    ));

    let mut same_key = good.clone();
    same_key[3].protocol_key = same_key[1].protocol_key;
    assert!(matches!(
        Committee::new(Epoch(0), 10, same_key),
        Err(CommitteeError::DuplicateKey { .. })
    ));

    let mut same_net_key = good.clone();
    same_net_key[3].network_key = same_net_key[0].network_key;
    assert!(matches!(
        Committee::new(Epoch(0), 10, same_net_key),
        Err(CommitteeError::DuplicateKey { .. })
    ));

    let mut crossed = good.clone();
    crossed[3].network_key = crossed[0].protocol_key;
    assert!(matches!(
        Committee::new(Epoch(0), 10, crossed),
        Err(CommitteeError::DuplicateKey { .. })
    ));

    let mut shared = good;
    shared[0].network_key = shared[0].protocol_key;
    assert!(matches!(
        Committee::new(Epoch(0), 10, shared),
        Err(CommitteeError::SharedProtocolAndNetworkKey { .. })
    ));
}

#[test]
fn committee_file_round_trips_and_errors_name_the_field() {
    let committee = common::committee(20, 4, Some(3)).committee;
    let file = CommitteeFile {
        committee,
        clock: EpochClock {
            genesis_unix_ms: 1_764_028_800_000,
            epoch_duration_ms: 60_000,
        },
    };
    let text = file.to_toml();
    assert_eq!(CommitteeFile::from_toml(&text).unwrap(), file);

    let err = CommitteeFile::from_toml(&text.replace("n_shards = 20", "n_shards = \"twenty\""))
        .unwrap_err();
    assert!(err.to_string().contains("n_shards"), "{err}");
    let key = file.committee.members()[0].protocol_key.to_string();
    let err = CommitteeFile::from_toml(&text.replace(&key, "abc")).unwrap_err();
    assert!(
        err.to_string().contains("protocol_key") || err.to_string().contains("\"abc\""),
        "{err}"
    );
    let err = CommitteeFile::from_toml(
        &text.replace("epoch_duration_ms = 60000", "epoch_duration_ms = 0"),
    )
    .unwrap_err();
    assert_eq!(err, CommitteeFileError::ZeroEpochDuration);
    let err =
        CommitteeFile::from_toml(&text.replace("n_shards = 20", "n_shards = 21")).unwrap_err();
    assert_eq!(
        err,
        CommitteeFileError::Invalid(Box::new(CommitteeError::ShardUnassigned {
            shard: ShardIndex(20)
        }))
    );
}

#[test]
fn epoch_clock() {
    let clock = EpochClock {
        genesis_unix_ms: 1000,
        epoch_duration_ms: 100,
    };
    assert_eq!(clock.epoch_at(0), Epoch(0));
    assert_eq!(clock.epoch_at(1099), Epoch(0));
    assert_eq!(clock.epoch_at(1100), Epoch(1));
    assert_eq!(clock.epoch_start(Epoch(3)), 1300);
}

#[test]
fn committees_survive_bcs_and_lookups_work() {
    let t = common::committee(30, 5, Some(9));
    let bytes = canonical_bytes(&t.committee);
    let back: Committee = floe_codec::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(back, t.committee);
    let member = &t.committee.members()[2];
    assert_eq!(
        t.committee.member_by_protocol_key(&member.protocol_key),
        Some(MemberIndex(2))
    );
    assert_eq!(
        t.committee.member_by_network_key(&member.network_key),
        Some(MemberIndex(2))
    );
    assert_eq!(
        t.committee.member_by_network_key(&member.protocol_key),
        None
    );
    for shard in &member.shards {
        assert_eq!(t.committee.shard_holder(*shard), Some(MemberIndex(2)));
    }
    assert!("zz".parse::<PublicKey>().is_err());
    assert!(matches!(
        PublicKey::from_bytes(&[0; 32]),
        Err(KeyError::Weak { .. })
    ));
}

#[test]
fn the_same_members_serve_a_later_epoch() {
    let at_three = common::committee_in(Epoch(3), 100, 7, Some(4));
    let base = common::committee_in(Epoch(0), 100, 7, Some(4)).committee;
    let moved = base.at_epoch(Epoch(3));
    assert_eq!(moved, at_three.committee);
    assert_eq!(
        moved.shard_holder(ShardIndex(42)),
        base.shard_holder(ShardIndex(42))
    );
    // A certificate formed in epoch 3 verifies against the moved committee
    // and not against the original one.
    let certificate = at_three.certify_enough(&common::confirmation(3, 1, 10));
    assert!(certificate.verify(&moved).is_ok());
    assert!(certificate.verify(&base).is_err());
}
