//! A committee of 7 nodes holding 100 shards, on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use floe_client::{ReadOptions, Status, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_reads_blobs_of_every_size() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    for (len, seed) in [(0usize, 1u64), (1, 2), (1 << 20, 3), (32 << 20, 4)] {
        let data = Bytes::from(blob(len, seed));
        let outcome = client.store(data.clone(), 5, StoreOptions::default()).await.unwrap();
        assert!(outcome.newly_certified);
        let committee = client.committee(outcome.certificate.message.epoch).unwrap();
        outcome.certificate.verify(&committee).unwrap();
        match client.status(outcome.blob_id).await.unwrap() {
            Status::Certified { certificate, .. } => assert_eq!(certificate.message.body.blob_id, outcome.blob_id),
            other => panic!("{len} bytes: expected certified, got {}", other.name()),
        }
        let read = client.read(outcome.blob_id, ReadOptions::default()).await.unwrap();
        assert!(read == data, "{len} bytes read back differently");
        // Storing it again returns the existing certificate without uploading.
        let again = client.store(data, 5, StoreOptions::default()).await.unwrap();
        assert!(!again.newly_certified);
        assert_eq!(again.blob_id, outcome.blob_id);
    }
    cluster.shutdown().await;
}
