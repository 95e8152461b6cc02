//! Stores and reads over shaped links: every datagram the nodes and the
//! client send crosses floe-net's lab link shaper (latency, jitter, 2 %
//! loss, a bandwidth cap), under real QUIC.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use common::*;
use floe_client::{BlobStatus, Client, ClientConfig, ReadOptions, StoreOptions};
use floe_net::{LinkProfile, NetConfig};
use floe_node::{Lab, Limits, Tasks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_reads_over_a_lossy_shaped_link() {
    let lossy = LinkProfile::named("lossy").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut local = floe_testkit::local::generate(
        dir.path(),
        4,
        16,
        3_600_000,
        Limits::default(),
        Tasks::brisk(),
    )
    .unwrap();
    for config in &mut local.configs {
        config.lab = Some(Lab {
            wan: Some(lossy.clone()),
        });
    }
    let cluster = floe_testkit::local::Cluster::start_local(local)
        .await
        .unwrap();
    let client = Client::new(
        cluster.file(),
        ClientConfig {
            net: NetConfig {
                link_shape: Some(lossy.clone()),
                ..NetConfig::default()
            },
            ..ClientConfig::default()
        },
    )
    .unwrap();

    let totals = floe_net::shaper::totals();
    let lost_before = totals.lost.load(Ordering::Relaxed);
    for (len, seed) in [(1usize << 10, 1u64), (3 << 20, 2)] {
        let data = Bytes::from(blob(len, seed));
        let outcome = client
            .store(data.clone(), 3, StoreOptions::default())
            .await
            .unwrap();
        assert!(outcome.newly_certified, "{len} bytes");
        let read = client
            .read(outcome.blob_id, ReadOptions::default())
            .await
            .unwrap();
        assert!(read == data, "{len} bytes read back differently");
    }
    // The shaper really stood between them: it dropped datagrams (QUIC
    // recovered them) and every round trip took at least two one-way
    // latencies of the link.
    let lost = totals.lost.load(Ordering::Relaxed) - lost_before;
    assert!(lost > 0, "2 % loss dropped no datagram over a 3 MiB store");
    assert!(totals.sent.load(Ordering::Relaxed) > 1000);
    // Path MTU discovery found the link's 1500 bytes (loopback alone
    // carries 64 KiB): no path settled above what the link carries.
    let paths: Vec<_> = client.health().iter().filter_map(|h| h.path).collect();
    assert!(!paths.is_empty());
    for path in &paths {
        assert!(
            (1200..=1472).contains(&path.mtu),
            "a path over a 1500-byte link settled at {} bytes",
            path.mtu
        );
    }
    let (_, blob_id, _) =
        floe_codec::encode(&cluster.file().committee.encoding(), b"never stored").unwrap();
    let start = Instant::now();
    let status = client.status(blob_id).await.unwrap();
    assert!(
        matches!(status.status, BlobStatus::Unknown),
        "{}",
        status.status.name()
    );
    let round_trip = lossy.latency_min * 2 - lossy.jitter * 2;
    assert!(
        start.elapsed() >= round_trip,
        "a status round trip took {:?}, under the link's {round_trip:?}",
        start.elapsed()
    );
    cluster.shutdown().await;
}
