//! A committee of 7 nodes holding 100 shards, on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use floe_client::{BlobStatus, ReadOptions, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_reads_blobs_of_every_size() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    for (len, seed) in [(0usize, 1u64), (1, 2), (1 << 20, 3), (32 << 20, 4)] {
        let data = Bytes::from(blob(len, seed));
        let outcome = client
            .store(data.clone(), 5, StoreOptions::default())
            .await
            .unwrap();
        assert!(outcome.newly_certified);
        let committee = client.committee(outcome.certificate.message.epoch);
        outcome.certificate.verify(&committee).unwrap();
        match client.status(outcome.blob_id).await.unwrap().status {
            BlobStatus::Certified { certificate } => {
                assert_eq!(certificate.message.body.blob_id, outcome.blob_id)
            }
            other => panic!("{len} bytes: expected certified, got {}", other.name()),
        }
        let read = client
            .read(outcome.blob_id, ReadOptions::default())
            .await
            .unwrap();
        assert!(read == data, "{len} bytes read back differently");
        // Storing it again returns the existing certificate, whichever of
        // the status check and the upload beside it finishes first. A
        // 32 MiB blob's pairs (100 requests of 1.4 MB) take far longer
        // than one status round trip: its upload is cut short, long before
        // the nodes take a third of the pairs again (a certification needs
        // two thirds).
        let pairs_taken = || {
            (0..7)
                .map(|i| cluster.node(i).metrics().requests("PutPairs", "ok"))
                .sum::<u64>()
        };
        let taken_before = pairs_taken();
        assert!(taken_before > 0, "the nodes count the pairs they take");
        let again = client
            .store(data, 5, StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(again.blob_id, outcome.blob_id);
        assert!(!again.newly_certified, "{len} bytes certified again");
        assert_eq!(again.certificate, outcome.certificate, "{len} bytes");
        if len >= 32 << 20 {
            let again_taken = pairs_taken() - taken_before;
            assert!(
                again_taken < 33,
                "{len} bytes: {again_taken} pairs taken again"
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_reads_with_f_shards_stopped() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let before = Bytes::from(blob(300_000, 7));
    let stored_before = client
        .store(before.clone(), 5, StoreOptions::default())
        .await
        .unwrap();
    // Nodes 5 and 6 hold 28 of 100 shards; f = 33.
    assert!(cluster.shards(5) + cluster.shards(6) <= 33);
    cluster.stop(5).await;
    cluster.stop(6).await;
    let data = Bytes::from(blob(500_000, 8));
    let outcome = store_and_read_back(&client, data).await;
    assert_eq!(read_strict(&client, stored_before.blob_id).await, before);
    assert!(matches!(
        client.status(outcome.blob_id).await.unwrap().status,
        BlobStatus::Certified { .. }
    ));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_given_to_one_node_reaches_all() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let data = blob(100_000, 9);
    let outcome = certify_undelivered(&client, &data).await;
    let blob_id = outcome.blob_id;
    let pool = cluster.pool();
    let first = client.members()[0].network_key;
    let answer = pool
        .call::<floe_api::PutFact>(
            &first,
            &floe_consensus::Fact::Certified(outcome.certificate),
        )
        .await
        .unwrap();
    assert!(matches!(
        answer.status,
        floe_api::BlobStatus::Certified { .. }
    ));
    for member in client.members() {
        let key = member.network_key;
        eventually(
            Duration::from_secs(20),
            &format!("{} knows the certificate", member.node_id.0),
            async || {
                matches!(
                    pool.call::<floe_api::GetStatus>(&key, &blob_id)
                        .await
                        .map(|a| a.status),
                    Ok(floe_api::BlobStatus::Certified { .. })
                )
            },
        )
        .await;
    }
    cluster.shutdown().await;
}

async fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_serves_metrics_and_health() {
    let mut cluster = Cluster::start(7, 100).await;
    let admin: std::net::SocketAddr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    cluster.configs[0].admin_listen = Some(admin);
    cluster.restart(0).await;
    let client = cluster.client();
    let outcome = client
        .store(Bytes::from(blob(10_000, 61)), 5, StoreOptions::default())
        .await
        .unwrap();
    client
        .read(outcome.blob_id, ReadOptions::default())
        .await
        .unwrap();

    let health = http_get(admin, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health.contains("\"node_id\":\"node-0\"") && health.contains("\"drift\":0"),
        "{health}"
    );
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "floe_drift_blobs 0",
        "floe_facts_known 1",
        "floe_requests_total{kind=\"PutPairs\",outcome=\"ok\"}",
        "floe_requests_total{kind=\"GetConfirmation\",outcome=\"ok\"} 1",
        "floe_net_requests_total{outcome=\"ok\"}",
        "floe_peer_up{peer=",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_deletes_its_deletable_blob_and_nobody_else_can() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let owner = floe_consensus::KeyPair::from_seed(&[9; 32]);
    let options = StoreOptions {
        owner: Some(owner.public()),
        ..StoreOptions::default()
    };
    let outcome = client
        .store(Bytes::from(blob(20_000, 71)), 5, options)
        .await
        .unwrap();
    let stranger = floe_consensus::KeyPair::from_seed(&[10; 32]);
    match client.delete(outcome.blob_id, &stranger).await {
        Err(floe_client::ClientError::NotAllowed(text)) => {
            assert!(text.contains("another key's"), "{text}")
        }
        other => panic!("a stranger deleted the blob: {other:?}"),
    }
    client.delete(outcome.blob_id, &owner).await.unwrap();
    assert!(matches!(
        client.status(outcome.blob_id).await.unwrap().status,
        BlobStatus::Deleted { .. }
    ));
    match client.read(outcome.blob_id, ReadOptions::default()).await {
        Err(floe_client::ClientError::Deleted { blob_id, .. }) => {
            assert_eq!(blob_id, outcome.blob_id)
        }
        other => panic!("expected the deleted error, got {other:?}"),
    }
    cluster.shutdown().await;
}
