//! floe-net over real QUIC on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use floe_net::frame::{self, Status, RESPONSE_HEADER_LEN};
use floe_net::{NetConfig, Raw, Refusal, RpcError};
use rand::RngCore;

fn payload(len: usize) -> Bytes {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_from_zero_bytes_to_64_mib() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    for len in [0, 1, 1200, 65_536, 1 << 20, 64 << 20] {
        let body = payload(len);
        let answer = pool
            .call::<Echo>(&server.key.public(), &Raw(body.clone()))
            .await
            .unwrap();
        assert_eq!(answer.0.len(), len);
        assert!(answer.0 == body, "echo of {len} bytes came back different");
    }
    assert_eq!(
        server.server.stats().connections.load(Ordering::Relaxed),
        1,
        "the connection is reused"
    );
    assert_eq!(server.server.stats().ok.load(Ordering::Relaxed), 6);
}

/// A body sent in pieces of every size (each written after a pause, so
/// each tends to arrive as a chunk of its own) comes back whole and in
/// order, however the server gathers the chunks into one body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_pieces_of_every_size_comes_back_whole() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let connection = pool.connection(&server.key.public()).await.unwrap();
    let sizes = [
        1,
        700,
        40 << 10,
        3,
        70 << 10,
        20 << 10,
        20 << 10,
        20 << 10,
        64 << 10,
        1,
        33 << 10,
        5_000,
    ];
    let body = payload(sizes.iter().sum());
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&frame::request_header(1, body.len() as u32))
        .await
        .unwrap();
    let mut at = 0;
    for size in sizes {
        send.write_all(&body[at..at + size]).await.unwrap();
        at += size;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send.finish().unwrap();
    let header = frame::read_header::<RESPONSE_HEADER_LEN>(&mut recv)
        .await
        .unwrap();
    let (status, length) = frame::parse_response_header(&header);
    assert_eq!(Status::from_byte(status), Some(Status::Ok));
    let echoed = frame::read_body(&mut recv, length as usize).await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the body came back different");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_share_one_connection() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = std::sync::Arc::new(pool(None, &server, NetConfig::default()));
    let peer = server.key.public();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let pool = std::sync::Arc::clone(&pool);
        calls.spawn(async move {
            let query = common::Query {
                id: i,
                name: "known".into(),
            };
            (i, pool.call::<Lookup>(&peer, &query).await)
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (i, answer) = joined.unwrap();
        assert_eq!(answer.unwrap(), i * 2);
    }
    assert_eq!(server.server.stats().connections.load(Ordering::Relaxed), 1);
    let health = pool.health();
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].calls, 300);
    assert_eq!(health[0].consecutive_failures, 0);
    assert!(health[0].connected && health[0].rtt.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_remote_errors_come_back_typed() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let query = common::Query {
        id: 1,
        name: "nobody".into(),
    };
    match pool.call::<Lookup>(&server.key.public(), &query).await {
        Err(RpcError::Remote {
            error: TestError::NotFound(name),
            ..
        }) => assert_eq!(name, "nobody"),
        other => panic!("expected the remote's typed error, got {other:?}"),
    }
    // A typed error is an answer: the peer stays healthy.
    assert_eq!(pool.health()[0].consecutive_failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_key_is_refused() {
    let server = serve(1, 0, &[], NetConfig::default());
    let impostor_pin = key(99).public();
    let pool =
        floe_net::Pool::new("127.0.0.1:0".parse().unwrap(), None, NetConfig::default()).unwrap();
    pool.add_peer(impostor_pin, server.address.to_string())
        .unwrap();
    match pool.call::<Echo>(&impostor_pin, &Raw::default()).await {
        Err(RpcError::Refused {
            refusal: Refusal::Identity(reason),
            ..
        }) => {
            assert!(
                reason.contains(&server.key.public().to_string()),
                "names the presented key: {reason}"
            );
            assert!(
                reason.contains(&impostor_pin.to_string()),
                "names the pinned key: {reason}"
            );
        }
        other => panic!("expected an identity refusal, got {other:?}"),
    }
    assert_eq!(
        server.server.stats().ok.load(Ordering::Relaxed),
        0,
        "nothing was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_only_requests_need_a_member_certificate() {
    let member = key(10);
    let outsider = key(11);
    let server = serve(1, 0, &[&member], NetConfig::default());
    let peer = server.key.public();

    let as_member = pool(Some(&member), &server, NetConfig::default());
    let greeting = as_member
        .call::<PeerHello>(&peer, &"hello".to_string())
        .await
        .unwrap();
    assert_eq!(
        greeting,
        format!("hello, {}", member.public()),
        "the server learned which member called"
    );

    for (who, pool) in [
        (
            "outsider",
            pool(Some(&outsider), &server, NetConfig::default()),
        ),
        ("anonymous", pool(None, &server, NetConfig::default())),
    ] {
        match pool.call::<PeerHello>(&peer, &"hello".to_string()).await {
            Err(RpcError::Refused {
                refusal: Refusal::Request(reason),
                ..
            }) => {
                assert!(reason.contains("committee members only"), "{who}: {reason}")
            }
            other => panic!("{who}: expected a refusal, got {other:?}"),
        }
        // Public requests still work for them, on the same connection.
        let echo = pool
            .call::<Echo>(&peer, &Raw(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        assert_eq!(echo.0.as_ref(), b"hi", "{who}");
    }
    assert_eq!(server.server.stats().refused.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_protocol_version_is_refused() {
    let server = serve(1, 0, &[], NetConfig::default());
    let config = NetConfig {
        alpn: b"floe/2".to_vec(),
        ..NetConfig::default()
    };
    let pool = pool(None, &server, config);
    match pool
        .call::<Echo>(&server.key.public(), &Raw::default())
        .await
    {
        Err(RpcError::Refused {
            refusal: Refusal::Version { ours },
            ..
        }) => assert_eq!(ours, "floe/2"),
        other => panic!("expected a version refusal, got {other:?}"),
    }
}

/// Send raw bytes as one request on its own stream of `connection`; return
/// the response status and body text.
async fn raw_exchange(connection: &quinn::Connection, bytes: &[u8]) -> (Status, String) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let header = frame::read_header::<RESPONSE_HEADER_LEN>(&mut recv)
        .await
        .unwrap();
    let (status, length) = frame::parse_response_header(&header);
    let body = frame::read_body(&mut recv, length as usize).await.unwrap();
    (
        Status::from_byte(status).unwrap(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_frames_fail_their_stream_only() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let peer = server.key.public();
    let connection = pool.connection(&peer).await.unwrap();

    // A long-running request stays in flight on the same connection throughout.
    let slow = pool.call::<Slow>(&peer, &400);

    let mut lookup = frame::request_header(3, 0).to_vec();
    lookup[2..6].copy_from_slice(&100u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown kind",
            frame::request_header(999, 0).to_vec(),
            "unknown request kind 999",
        ),
        // 4 GiB announced: refused from the header alone, nothing reserved.
        (
            "oversize length",
            frame::request_header(3, u32::MAX).to_vec(),
            "exceeds the limit of 1024",
        ),
        (
            "truncated body",
            [lookup.clone(), vec![1; 10]].concat(),
            "ended after 10 of 100",
        ),
        ("truncated header", vec![3, 0, 1], "ended after 3 of 6"),
        (
            "garbage body",
            [frame::request_header(3, 4).to_vec(), vec![0xff; 4]].concat(),
            "malformed `lookup` request",
        ),
        (
            "trailing bytes",
            [frame::request_header(5, 4).to_vec(), vec![1, 0, 0, 0, 9, 9]].concat(),
            "unexpected bytes after",
        ),
    ];
    for (case, bytes, expected) in cases {
        let (status, text) = raw_exchange(&connection, &bytes).await;
        assert_eq!(status, Status::BadRequest, "{case}: {text}");
        assert!(text.contains(expected), "{case}: {text}");
        // The connection and its other streams are unaffected.
        let query = common::Query {
            id: 21,
            name: "known".into(),
        };
        assert_eq!(
            pool.call::<Lookup>(&peer, &query).await.unwrap(),
            42,
            "after {case}"
        );
    }
    assert_eq!(slow.await.unwrap(), 400);
    assert!(connection.close_reason().is_none());
    assert_eq!(server.server.stats().connections.load(Ordering::Relaxed), 1);
    assert_eq!(server.server.stats().bad_request.load(Ordering::Relaxed), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_response_is_withheld_by_the_server() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let peer = server.key.public();
    assert_eq!(pool.call::<Fill>(&peer, &4096).await.unwrap().0.len(), 4096);
    // The server holds its answers to the method's limit, as the caller
    // would: it says so instead of sending what the caller must refuse.
    match pool.call::<Fill>(&peer, &4097).await {
        Err(RpcError::Unavailable { reason, .. }) => assert!(
            reason.contains("answer of 4097 bytes exceeds the method's limit of 4096"),
            "{reason}"
        ),
        other => panic!("expected the server to withhold the answer, got {other:?}"),
    }
    // An oversize request is refused before it is sent.
    match pool
        .call::<Lookup>(
            &peer,
            &common::Query {
                id: 0,
                name: "x".repeat(2000),
            },
        )
        .await
    {
        Err(RpcError::TooLarge {
            size, limit: 1024, ..
        }) => assert!(size > 2000),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_trips_the_timeout_and_the_call_is_cancelled() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let peer = server.key.public();
    let started = Instant::now();
    match pool.call::<Stall>(&peer, &()).await {
        Err(RpcError::TimedOut {
            after,
            method: "stall",
            ..
        }) => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The abandoned request is cancelled on the server too: its handler is dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.counters.stalls_dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the server kept running the abandoned handler"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.server.stats().cancelled.load(Ordering::Relaxed), 1);
    // Dropping a call future cancels it the same way.
    let call = pool.call_with_timeout::<Stall>(&peer, &(), Duration::from_secs(60));
    let _ = tokio::time::timeout(Duration::from_millis(100), call).await;
    while server.counters.stalls_dropped.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < deadline,
            "a dropped call was not cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        pool.health()[0].consecutive_failures,
        1,
        "only the timeout counts against the peer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_reconnected_to() {
    let first = serve(1, 0, &[], NetConfig::default());
    let port = first.address.port();
    let quick_dial = NetConfig {
        connect_timeout: Duration::from_millis(500),
        ..NetConfig::default()
    };
    let pool = pool(None, &first, quick_dial);
    let peer = first.key.public();
    assert_eq!(pool.call::<Slow>(&peer, &1).await.unwrap(), 1);
    first.server.shutdown(Duration::from_secs(1)).await;

    // While it is down: unreachable, then backing off without dialing.
    let down = pool.call::<Slow>(&peer, &2).await;
    assert!(
        matches!(down, Err(RpcError::Unreachable { .. })),
        "{down:?}"
    );
    let backing_off = pool.call::<Slow>(&peer, &2).await;
    match backing_off {
        Err(RpcError::Unreachable { reason, .. }) => {
            assert!(reason.contains("next attempt in"), "{reason}")
        }
        other => panic!("expected backoff, got {other:?}"),
    }
    assert!(pool.health()[0].consecutive_failures >= 2);

    let second = serve(1, port, &[], NetConfig::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pool.call::<Slow>(&peer, &3).await {
            Ok(3) => break,
            other => {
                assert!(Instant::now() < deadline, "never reconnected: {other:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let health = &pool.health()[0];
    assert_eq!(health.consecutive_failures, 0);
    assert!(health.connected);
    assert_eq!(second.server.stats().ok.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish_and_turns_new_ones_away() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = std::sync::Arc::new(pool(None, &server, NetConfig::default()));
    let peer = server.key.public();
    let in_flight = {
        let pool = std::sync::Arc::clone(&pool);
        tokio::spawn(async move { pool.call::<Slow>(&peer, &500).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.server.inflight() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shutdown = tokio::spawn(server.server.shutdown(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    match pool.call::<Slow>(&peer, &1).await {
        Err(RpcError::Unavailable { reason, .. }) => {
            assert!(reason.contains("shutting down"), "{reason}")
        }
        other => panic!("expected unavailable while shutting down, got {other:?}"),
    }
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        500,
        "the request in flight finished"
    );
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ranks_answering_peers_first() {
    let up = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &up, NetConfig::default());
    let down_key = key(2).public();
    // Nothing listens on this port: the UDP socket is bound and then dropped.
    let unused = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    pool.add_peer(down_key, unused.to_string()).unwrap();
    let config_timeout = Duration::from_millis(500);
    assert!(pool
        .call_with_timeout::<Slow>(&down_key, &1, config_timeout)
        .await
        .is_err());
    assert!(pool.call::<Slow>(&up.key.public(), &1).await.is_ok());
    let unknown = key(3).public();
    assert_eq!(
        pool.rank(&[unknown, down_key, up.key.public()]),
        vec![up.key.public(), down_key, unknown]
    );
}
