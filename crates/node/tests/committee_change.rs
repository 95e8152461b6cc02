//! Committee change, the certification half: the next committee is
//! certified once members holding a quorum of shards approved it, every
//! node learns the link and keeps it across a restart, a client that knows
//! only genesis follows the chain and stores and reads under the new
//! committee, and a member refuses to sign what its operator did not
//! approve or what does not start the next epoch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use floe_api::{ApiError, PutCommitteeLink, SignCommitteeProposal};
use floe_client::{Client, ClientConfig};
use floe_consensus::chain::{assign_shards, CommitteeProposal};
use floe_consensus::{Epoch, KeyPair, Member, NodeId};
use floe_net::{NetConfig, Pool, RpcError};
use floe_node::{Limits, Tasks};
use floe_testkit::local::Cluster;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_certifies_the_next_committee_and_a_genesis_client_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    // Epochs of 30 s: the whole test fits in one (it waits for a fresh one).
    let epoch_ms = 30_000;
    let mut cluster = Cluster::start(
        dir.path(),
        4,
        12,
        epoch_ms,
        Limits::default(),
        Tasks::brisk(),
    )
    .await
    .unwrap();
    let file = cluster.file().clone();
    while epoch_ms - (now_ms() - file.clock.genesis_unix_ms) % epoch_ms < 20_000 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let epoch = file.clock.epoch_at(now_ms());
    let genesis = file.committee.clone();
    // node-4 joins with 2 shards; node-2 and node-3 give up one each.
    let joining_key = KeyPair::from_seed(&[44; 32]);
    let joining = Member {
        node_id: NodeId("node-4".into()),
        protocol_key: joining_key.public(),
        network_key: KeyPair::from_seed(&[45; 32]).public(),
        address: "127.0.0.1:9".into(),
        shards: Vec::new(),
    };
    let shares = [3, 3, 2, 2];
    let next: Vec<(Member, u16)> = genesis
        .members()
        .iter()
        .cloned()
        .zip(shares)
        .chain([(joining, 2)])
        .collect();
    let proposal = CommitteeProposal {
        epoch: Epoch(epoch.0 + 1),
        n_shards: 12,
        members: assign_shards(&genesis, &next).unwrap(),
    };

    // Operators exchange proposals as TOML (admin POST /committee/approve).
    let text = toml::to_string(&proposal).unwrap();
    assert_eq!(
        toml::from_str::<CommitteeProposal>(&text).unwrap(),
        proposal
    );

    // A member (node-3's network key) asks node-0 to sign before node-0's
    // operator approved: refused.
    let local = &cluster.local;
    let member_pool = Pool::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(&local.network_keys[3]),
        NetConfig::default(),
    )
    .unwrap();
    let node0 = &genesis.members()[0];
    member_pool
        .add_peer(node0.network_key, node0.address.clone())
        .unwrap();
    match member_pool
        .call::<SignCommitteeProposal>(&node0.network_key, &proposal)
        .await
    {
        Err(RpcError::Remote {
            error: ApiError::Committee(reason),
            ..
        }) => {
            assert!(reason.contains("not approved"), "{reason}")
        }
        other => panic!("an unapproved proposal was answered with {other:?}"),
    }

    // Approved by node-0 and node-1 (6 of 12 shards): below the quorum of 9.
    for i in [0, 1] {
        cluster
            .node(i)
            .unwrap()
            .approve_next_committee(proposal.clone())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..4 {
        assert_eq!(cluster.node(i).unwrap().latest_committee_change(), Epoch(0));
    }
    // A third approval makes a quorum: every node learns the link.
    cluster
        .node(2)
        .unwrap()
        .approve_next_committee(proposal.clone())
        .await
        .unwrap();
    eventually("every node holds the committee certificate", || {
        (0..4).all(|i| cluster.node(i).unwrap().latest_committee_change() == proposal.epoch)
    })
    .await;

    // Anyone may hand a node a committee certificate: one that does not
    // extend its chain (here signed by genesis, two epochs early) is refused.
    let skipping = CommitteeProposal {
        epoch: Epoch(epoch.0 + 2),
        ..proposal.clone()
    };
    let message = floe_consensus::ProtocolMessage::new(epoch, skipping);
    let mut builder = floe_consensus::CertificateBuilder::new(&genesis, message.clone());
    for key in &local.protocol_keys {
        builder
            .add(&floe_consensus::Signed::sign(message.clone(), key))
            .unwrap();
    }
    let forged = builder.certificate().unwrap();
    let stranger = Pool::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
        NetConfig::default(),
    )
    .unwrap();
    stranger
        .add_peer(node0.network_key, node0.address.clone())
        .unwrap();
    match stranger
        .call::<PutCommitteeLink>(&node0.network_key, &forged)
        .await
    {
        Err(RpcError::Remote {
            error: ApiError::Committee(reason),
            ..
        }) => assert!(reason.contains("must be signed in epoch"), "{reason}"),
        other => panic!("a link out of turn was answered with {other:?}"),
    }
    assert_eq!(
        cluster.node(0).unwrap().latest_committee_change(),
        proposal.epoch
    );

    // A proposal that does not start the next epoch is refused.
    let later = CommitteeProposal {
        epoch: Epoch(epoch.0 + 3),
        ..proposal.clone()
    };
    match cluster.node(3).unwrap().approve_next_committee(later).await {
        Err(ApiError::Committee(reason)) => assert!(reason.contains("signed only in epoch")),
        other => panic!("a proposal for a later epoch was approved: {other:?}"),
    }

    // A client that knows only genesis follows the chain.
    let client = Client::new(&file, ClientConfig::default()).unwrap();
    assert_eq!(client.follow_chain().await.unwrap(), proposal.epoch);
    let followed = client.committee(proposal.epoch);
    assert_eq!(followed.members().len(), 5);
    let shards_of = |name: &str| {
        followed
            .members()
            .iter()
            .find(|m| m.node_id.0 == name)
            .map(|m| m.shards.len())
    };
    assert_eq!(shards_of("node-4"), Some(2));
    assert_eq!(shards_of("node-0"), Some(3));
    assert_eq!(client.committee(epoch).members().len(), 4);

    // The chain survives a restart.
    cluster.restart(1).await.unwrap();
    assert_eq!(
        cluster.node(1).unwrap().latest_committee_change(),
        proposal.epoch
    );

    // Into the next epoch: the certified committee serves it. node-4 runs
    // nowhere, yet the members holding data hold 10 of its 12 shards, more
    // than its quorum of 9: a store is certified by the new committee, and
    // the status asked of its five members is definite.
    while file.clock.epoch_at(now_ms()) < proposal.epoch {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let blob = bytes::Bytes::from(vec![7u8; 10_000]);
    let stored = client
        .store(blob.clone(), 2, floe_client::StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(stored.certificate.message.epoch, proposal.epoch);
    let weight = stored
        .certificate
        .verify(&client.committee(proposal.epoch))
        .unwrap();
    assert!(
        weight >= 9,
        "certified by {weight} shards of the new committee"
    );
    let status = client.status(stored.blob_id).await.unwrap();
    assert_eq!(status.status.name(), "certified");
    // A client that knows only genesis and asks nothing but the status
    // follows the chain first: it asks the new committee, judges its proof
    // by that committee, and calls no honest member a liar.
    let fresh = Client::new(&file, ClientConfig::default()).unwrap();
    let status = fresh.status(stored.blob_id).await.unwrap();
    assert_eq!(status.status.name(), "certified");
    assert_eq!(fresh.chain().latest_epoch(), proposal.epoch);
    let reported: u64 = fresh.health().iter().map(|h| h.misbehaviours).sum();
    assert_eq!(reported, 0, "{:?}", fresh.health());
    let read = client
        .read(stored.blob_id, floe_client::ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(read, blob);
    cluster.shutdown().await;
}
