//! What one caller can hold on a server, over real QUIC on 127.0.0.1: a
//! client that announces bodies it never sends, or never reads its answers,
//! or floods the node with connections, does not make a committee member
//! wait; abandoned work stays inside the budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use floe_net::frame::{self, codes};
use floe_net::{Method, NetConfig, Raw, RpcError};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `rounds` peer-only and public calls from a member, each of which must
/// succeed; their latencies, sorted.
async fn member_calls(
    pool: &floe_net::Pool,
    peer: &floe_consensus::PublicKey,
    rounds: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(rounds * 2);
    for i in 0..rounds {
        let started = Instant::now();
        let hello = pool.call::<PeerHello>(peer, &format!("hello {i}")).await;
        assert!(hello.is_ok(), "member call {i} failed: {hello:?}");
        latencies.push(started.elapsed());
        let started = Instant::now();
        let query = Query {
            id: i as u64,
            name: "known".into(),
        };
        assert_eq!(
            pool.call::<Lookup>(peer, &query).await.unwrap(),
            i as u64 * 2
        );
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_served_while_clients_hold_headers_and_unread_answers() {
    let member = key(9);
    let config = NetConfig {
        response_write_timeout: Duration::from_secs(3),
        ..NetConfig::default()
    };
    let server = serve(1, 0, &[&member], config);
    let peer = server.key.public();
    let members = pool(Some(&member), &server, NetConfig::default());
    let quiet = member_calls(&members, &peer, 50).await;

    // Attacker A: 48 streams announcing 65 MiB echo bodies that never come
    // (3 GiB announced, six times the whole budget).
    let announcer = pool(None, &server, NetConfig::default());
    let connection = announcer.connection(&peer).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..48 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&frame::request_header(Echo::KIND, Echo::MAX_REQUEST_BYTES))
            .await
            .unwrap();
        held.push((send, recv));
    }
    // Attacker B: 24 echoes of 4 MiB whose answers it never reads (more
    // than its connection window can take in).
    let sink = pool(None, &server, NetConfig::default());
    let connection = sink.connection(&peer).await.unwrap();
    let body = vec![7u8; 4 << 20];
    for _ in 0..24 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&frame::request_header(Echo::KIND, body.len() as u32))
            .await
            .unwrap();
        send.write_all(&body).await.unwrap();
        let _ = send.finish();
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let attacked = member_calls(&members, &peer, 50).await;
    // An honest client is served too: budget is charged as bytes arrive.
    let honest = pool(None, &server, NetConfig::default());
    let echo = vec![3u8; 1 << 20];
    let answer = honest
        .call::<Echo>(&peer, &Raw(echo.clone().into()))
        .await
        .unwrap();
    assert!(answer.0 == echo);

    eprintln!(
        "member call latency: quiet p50 {:?} p99 {:?}; under attack p50 {:?} p99 {:?}",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&attacked, 0.5),
        percentile(&attacked, 0.99),
    );
    assert!(
        percentile(&attacked, 0.99) < Duration::from_secs(2),
        "members waited behind clients: p99 {:?}",
        percentile(&attacked, 0.99)
    );
    // The unread answers are abandoned at the write deadline, and their
    // budget with them.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.server.stats().write_timeouts.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "unread answers pinned their budget"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_blocking_work_keeps_its_request_slot() {
    let config = NetConfig {
        client_requests: 1,
        budget_wait: Duration::from_millis(200),
        ..NetConfig::default()
    };
    let server = serve(1, 0, &[], config);
    let peer = server.key.public();
    let client = pool(None, &server, NetConfig::default());
    // Cancelled after 100 ms; its blocking work goes on for 1.5 s.
    let call = client.call::<Block>(&peer, &1_500);
    assert!(tokio::time::timeout(Duration::from_millis(100), call)
        .await
        .is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    match client.call::<Block>(&peer, &0).await {
        Err(RpcError::Unavailable { reason, .. }) => {
            assert!(reason.contains("requests at once"), "{reason}")
        }
        other => panic!("the abandoned work's slot was given away: {other:?}"),
    }
    assert!(server.server.stats().busy.load(Ordering::Relaxed) >= 1);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(client.call::<Block>(&peer, &0).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_cleanly_and_members_still_connect() {
    let member = key(9);
    let config = NetConfig {
        max_client_connections: 16,
        max_handshakes: 8,
        ..NetConfig::default()
    };
    let server = serve(1, 0, &[&member], config);
    let peer = server.key.public();
    let mut attempts = tokio::task::JoinSet::new();
    let flood = 120;
    for _ in 0..flood {
        let pool = pool(None, &server, NetConfig::default());
        attempts.spawn(async move {
            let started = Instant::now();
            let outcome = match pool.connection(&peer).await {
                Ok(connection) => {
                    // A connection over the cap is closed right after its
                    // handshake, with the "busy" code.
                    match tokio::time::timeout(Duration::from_secs(1), connection.closed()).await {
                        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
                            assert_eq!(close.error_code, codes::BUSY);
                            "closed busy"
                        }
                        Ok(other) => panic!("closed for another reason: {other}"),
                        Err(_) => "open",
                    }
                }
                Err(_) => "refused",
            };
            (outcome, started.elapsed(), pool)
        });
    }
    let mut open = 0;
    let mut turned_away = 0;
    let mut pools = Vec::new();
    while let Some(joined) = attempts.join_next().await {
        let (outcome, took, pool) = joined.unwrap();
        assert!(
            took < Duration::from_secs(10),
            "an attempt hung for {took:?}"
        );
        match outcome {
            "open" => open += 1,
            _ => turned_away += 1,
        }
        pools.push(pool);
    }
    let stats = server.server.stats();
    eprintln!(
        "{flood} connection attempts: {open} open, {turned_away} turned away ({} refused or closed busy, {} asked to validate their address)",
        stats.connections_refused.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
    );
    assert!(
        open <= 16,
        "{open} client connections held, over the cap of 16"
    );
    assert!(open > 0, "no client was admitted at all");
    assert_eq!(open + turned_away, flood);
    assert!(
        server
            .server
            .stats()
            .connections_refused
            .load(Ordering::Relaxed)
            > 0
    );
    // A member still connects and is served while the flood's connections
    // are held.
    let members = pool(Some(&member), &server, NetConfig::default());
    assert_eq!(
        members
            .call::<PeerHello>(&peer, &"hello".to_string())
            .await
            .unwrap(),
        format!("hello, {}", member.public())
    );
    drop(pools);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_cannot_take_the_members_budget_from_the_others() {
    let greedy = key(9);
    let other = key(10);
    // Budgets scaled down from the defaults (512 MiB for members, 288 MiB
    // for one lane) so the test moves less data; the proportions are kept.
    let config = NetConfig {
        max_inflight_bytes: 128 << 20,
        connection_inflight_bytes: 64 << 20,
        ..NetConfig::default()
    };
    let server = serve(1, 0, &[&greedy, &other], config);
    let peer = server.key.public();
    // The greedy member sends most of nine 15 MiB bodies on three
    // connections and never finishes them: 126 MiB arriving, 135 MiB
    // announced, more than the members' whole budget of 128 MiB.
    let started = Instant::now();
    let mut held = Vec::new();
    let mut pools = Vec::new();
    for _ in 0..3 {
        let pool = pool(Some(&greedy), &server, NetConfig::default());
        let connection = pool.connection(&peer).await.unwrap();
        for _ in 0..3 {
            let (mut send, recv) = connection.open_bi().await.unwrap();
            let partial = [
                frame::request_header(Echo::KIND, 15 << 20).to_vec(),
                vec![1u8; 14 << 20],
            ]
            .concat();
            // Flow control stops the writes the server does not take in.
            let _ =
                tokio::time::timeout(Duration::from_millis(300), send.write_all(&partial)).await;
            held.push((send, recv));
        }
        pools.push(pool);
    }
    eprintln!("greedy member's bodies sent in {:?}", started.elapsed());
    // Another member's calls, small and large, still find room.
    let others = pool(Some(&other), &server, NetConfig::default());
    let latencies = member_calls(&others, &peer, 20).await;
    let body = vec![5u8; 8 << 20];
    let echoed = others
        .call::<Echo>(&peer, &Raw(body.clone().into()))
        .await
        .unwrap();
    assert!(echoed.0 == body);
    eprintln!("other member served by {:?}", started.elapsed());
    eprintln!(
        "another member's calls while one member holds its lane: p50 {:?} p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    assert!(percentile(&latencies, 0.99) < Duration::from_secs(2));
    drop(held);
    drop(pools);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_is_paid_for_before_it_is_built() {
    let config = NetConfig {
        client_inflight_bytes: 48 << 20,
        budget_wait: Duration::from_millis(100),
        ..NetConfig::default()
    };
    let server = serve(1, 0, &[], config);
    let peer = server.key.public();
    let client = std::sync::Arc::new(pool(None, &server, NetConfig::default()));
    // Two answers of 32 MiB do not fit in 48 MiB at once: the second
    // handler is told so before it builds anything.
    let first = {
        let client = std::sync::Arc::clone(&client);
        tokio::spawn(async move { client.call::<Reserve>(&peer, &(32 << 20)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    match client.call::<Reserve>(&peer, &(32 << 20)).await {
        Err(RpcError::Remote { error, .. }) => {
            assert!(error.to_string().contains("clients' requests"), "{error}")
        }
        other => panic!("a second 32 MiB answer was built beside the first: {other:?}"),
    }
    assert_eq!(first.await.unwrap().unwrap().0.len(), 32 << 20);
    // Once the first is delivered, its room is free again.
    assert_eq!(
        client
            .call::<Reserve>(&peer, &(32 << 20))
            .await
            .unwrap()
            .0
            .len(),
        32 << 20
    );
}
