//! A node keeps serving its committee while an anonymous client announces
//! request bodies it never sends: real nodes, real QUIC on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use floe_api::{GetInfo, PutFact, MAX_SLIVER_FRAME};
use floe_net::frame;
use floe_net::{Method, NetConfig, Pool};
use floe_node::{Limits, Tasks};
use floe_testkit::local;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A member's PutFact and GetInfo calls to `node`, `rounds` of each; every
/// one must succeed. Their latencies, sorted.
async fn member_calls(
    pool: &Pool,
    node: &floe_consensus::PublicKey,
    facts: &[floe_consensus::VerifiedFact],
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for (i, fact) in facts.iter().enumerate() {
        let started = Instant::now();
        let answer = pool.call::<PutFact>(node, fact.fact()).await;
        assert!(answer.is_ok(), "member PutFact {i} failed: {answer:?}");
        latencies.push(started.elapsed());
        let started = Instant::now();
        let info = pool.call::<GetInfo>(node, &()).await;
        assert!(info.is_ok(), "member GetInfo {i} failed: {info:?}");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_put_facts_while_a_client_announces_bodies_it_never_sends() {
    let dir = tempfile::tempdir().unwrap();
    let committee = local::generate(
        dir.path(),
        4,
        8,
        3_600_000,
        Limits::default(),
        Tasks::default(),
    )
    .unwrap();
    let facts = local::certified_facts(&committee, 100, 10).unwrap();
    let cluster = local::Cluster::start_local(committee).await.unwrap();
    let target = cluster.node(0).unwrap();
    let node_key = cluster.local.network_keys[0].public();
    let address = target.address().unwrap().to_string();

    let member_key = &cluster.local.network_keys[1];
    let member = Pool::new(
        "127.0.0.1:0".parse().unwrap(),
        Some(member_key),
        NetConfig::default(),
    )
    .unwrap();
    member.add_peer(node_key, address.clone()).unwrap();
    let quiet = member_calls(&member, &node_key, &facts[..50]).await;

    // 60 PutPairs streams announcing the largest frame (15 GiB in all, 30
    // times the node's whole budget) whose bodies never come.
    let attacker = Pool::new("127.0.0.1:0".parse().unwrap(), None, NetConfig::default()).unwrap();
    attacker.add_peer(node_key, address).unwrap();
    let connection = attacker.connection(&node_key).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..60 {
        let Ok((mut send, recv)) = connection.open_bi().await else {
            break;
        };
        let header = frame::request_header(floe_api::PutPairs::KIND, MAX_SLIVER_FRAME);
        if send.write_all(&header).await.is_err() {
            break;
        }
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let attacked = member_calls(&member, &node_key, &facts[50..]).await;
    eprintln!(
        "member PutFact/GetInfo latency: quiet p50 {:?} p99 {:?}; with {} announced bodies p50 {:?} p99 {:?}",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        held.len(),
        percentile(&attacked, 0.5),
        percentile(&attacked, 0.99),
    );
    assert!(held.len() >= 32, "the attack did not get its streams open");
    assert!(
        percentile(&attacked, 0.99) < Duration::from_secs(3),
        "members waited behind a client's announced bodies: p99 {:?}",
        percentile(&attacked, 0.99)
    );
    drop(held);
    cluster.shutdown().await;
}
