//! Facts are state, not history: after renewals, deletions and restarts,
//! every node's anti-entropy digest holds exactly the facts its states
//! keep, and the digests of all nodes agree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use floe_client::StoreOptions;
use floe_consensus::KeyPair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_converge_on_the_facts_states_keep() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    // A renewal supersedes the registration it renews.
    let renewed = Bytes::from(blob(20_000, 11));
    let first = client
        .store(renewed.clone(), 2, StoreOptions::default())
        .await
        .unwrap();
    let second = client
        .store(renewed, 6, StoreOptions::default())
        .await
        .unwrap();
    assert!(second.newly_certified && second.end_epoch > first.end_epoch);
    // A deletion ends the registration it carries: one fact remains.
    let owner = KeyPair::from_seed(&[7; 32]);
    let deleted = client
        .store(
            Bytes::from(blob(20_000, 12)),
            3,
            StoreOptions {
                owner: Some(owner.public()),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
    client.delete(deleted.blob_id, &owner).await.unwrap();
    // A node restarts and rebuilds its digest from its states.
    cluster.restart(2).await;

    eventually(
        Duration::from_secs(30),
        "every digest holds the 2 facts kept",
        async || {
            let roots: Vec<_> = (0..7).map(|i| cluster.node(i).digest_root()).collect();
            roots.iter().all(|root| *root == roots[0]) && roots[0].0 == 2
        },
    )
    .await;
    cluster.shutdown().await;
}
