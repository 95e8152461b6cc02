//! A local committee of real nodes (real QUIC on 127.0.0.1, real RocksDB in
//! a temp dir), started in this process.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use floe_client::{Client, ClientConfig};
use floe_node::{Limits, Node, Tasks};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub inner: floe_testkit::local::Cluster,
}

/// The committee file, configs and keys of the running cluster.
impl std::ops::Deref for Cluster {
    type Target = floe_testkit::local::LocalCommittee;
    fn deref(&self) -> &Self::Target {
        &self.inner.local
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner.local
    }
}

impl Cluster {
    /// `nodes` nodes holding `shards` shards round-robin.
    pub async fn start(nodes: usize, shards: u16) -> Cluster {
        Self::start_with(
            nodes,
            shards,
            Limits {
                max_blob_size: 64 << 20,
                ..Limits::default()
            },
        )
        .await
    }

    /// [`Cluster::start`] with the nodes' limits.
    pub async fn start_with(nodes: usize, shards: u16, limits: Limits) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let tasks = Tasks::brisk();
        let inner = floe_testkit::local::Cluster::start(
            dir.path(),
            nodes,
            shards,
            3_600_000,
            limits,
            tasks,
        )
        .await
        .unwrap();
        Cluster { dir, inner }
    }

    pub fn client(&self) -> Client {
        let config = ClientConfig {
            read_hedge_after: Duration::from_millis(500),
            ..ClientConfig::default()
        };
        Client::new(&self.file, config).unwrap()
    }

    pub fn node(&self, i: usize) -> &Node {
        self.inner.node(i).unwrap()
    }

    pub async fn stop(&mut self, i: usize) {
        self.inner.stop(i).await;
    }

    pub async fn restart(&mut self, i: usize) {
        self.inner.restart(i).await.unwrap();
    }

    /// Restarts node `i` as a hostile member that lies as `lies` says.
    pub async fn make_hostile(&mut self, i: usize, lies: floe_node::Byzantine) {
        self.configs[i].byzantine = Some(lies);
        self.restart(i).await;
    }

    pub fn database(&self, i: usize) -> PathBuf {
        self.configs[i].database.clone()
    }

    /// Shards held by node `i`.
    pub fn shards(&self, i: usize) -> usize {
        self.file.committee.members()[i].shards.len()
    }

    /// A pool without a client certificate that knows every node.
    pub fn pool(&self) -> floe_net::Pool {
        let pool = floe_net::Pool::new(
            "127.0.0.1:0".parse().unwrap(),
            None,
            floe_net::NetConfig::default(),
        )
        .unwrap();
        for member in self.file.committee.members() {
            pool.add_peer(member.network_key, member.address.clone())
                .unwrap();
        }
        pool
    }

    pub async fn shutdown(self) {
        self.inner.shutdown().await;
    }
}

/// Poll `check` until it holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deterministic, varied bytes.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Store `data`, read it back, and check it is the same; returns the outcome.
pub async fn store_and_read_back(client: &Client, data: bytes::Bytes) -> floe_client::StoreOutcome {
    let outcome = client
        .store(data.clone(), 5, floe_client::StoreOptions::default())
        .await
        .unwrap();
    let read = client
        .read(outcome.blob_id, floe_client::ReadOptions::default())
        .await
        .unwrap();
    assert!(
        read == data,
        "blob {} read back differently",
        outcome.blob_id
    );
    outcome
}

/// Reads `blob_id` strictly (the decoded blob re-encoded and checked
/// against the blob ID's commitments); panics if the read fails.
#[allow(dead_code)]
pub async fn read_strict(client: &Client, blob_id: floe_codec::BlobId) -> bytes::Bytes {
    client
        .read(
            blob_id,
            floe_client::ReadOptions {
                strict: true,
                ..floe_client::ReadOptions::default()
            },
        )
        .await
        .unwrap()
}

/// Encodes `data`, uploads it and gathers its certificate from a quorum,
/// without delivering the certificate to the nodes.
pub async fn certify_undelivered(client: &Client, data: &[u8]) -> floe_client::StoreOutcome {
    let encoding = client.committee(client.epoch()).encoding();
    let (metadata, _, pairs) = floe_codec::encode(&encoding, data).unwrap();
    client
        .certify_encoded(metadata, pairs, 5, floe_client::StoreOptions::default())
        .await
        .unwrap()
}

/// Node `i` loses its disk (stopped, its database deleted, restarted);
/// waits until it holds every pair of `blobs` again, with no drift.
#[allow(dead_code)]
pub async fn wipe_and_await_repair(
    cluster: &mut Cluster,
    i: usize,
    blobs: &[floe_codec::BlobId],
    within: Duration,
) {
    cluster.stop(i).await;
    std::fs::remove_dir_all(cluster.database(i)).unwrap();
    cluster.restart(i).await;
    eventually(
        within,
        &format!("wiped node {i} holds every pair of its shards again"),
        async || {
            let node = cluster.node(i);
            node.drift() == 0
                && blobs
                    .iter()
                    .all(|b| node.store().holds_all_pairs(b).unwrap_or(false))
        },
    )
    .await;
}
