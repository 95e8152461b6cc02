//! A committee change that moves shards, on an in-process cluster: for the
//! shard-migration tests and the migration benchmark.

use std::time::Duration;

use bytes::Bytes;
use floe_client::{Client, ClientConfig, StoreOptions};
use floe_codec::BlobId;
use floe_consensus::chain::{assign_shards, CommitteeProposal};
use floe_consensus::{CommitteeFile, Epoch, Member};
use floe_node::{Limits, Tasks};

use crate::local::{Cluster, ClusterError};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why the scenario could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The cluster did not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A step failed.
    #[error("{0}")]
    Step(String),
}

/// A cluster whose next committee is certified: node-0 leaves and its
/// shards are spread over the others.
#[derive(Debug)]
pub struct Leaving {
    /// The running cluster.
    pub cluster: Cluster,
    /// The blobs stored before the change, with their bytes.
    pub blobs: Vec<(BlobId, Bytes)>,
    /// The epoch the next committee serves from.
    pub next: Epoch,
}

/// Waits until `file`'s clock reaches `epoch`.
pub async fn until_epoch(file: &CommitteeFile, epoch: Epoch) {
    while file.clock.epoch_at(now_ms()) < epoch {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `nodes` nodes over `shards` shards with epochs of `epoch_ms`,
/// stores blobs of `sizes` (for 100 epochs) early in an epoch, waits until
/// every node holds every pair, and has every node but node-0 approve the
/// next committee, in which node-0 is gone and the others share its shards
/// (moving only those). Returns once every node holds the certificate.
pub async fn node_0_leaves(
    dir: &std::path::Path,
    nodes: usize,
    shards: u16,
    epoch_ms: u64,
    sizes: &[usize],
) -> Result<Leaving, ScenarioError> {
    let step = |what: &str| {
        let what = what.to_string();
        move |e: String| ScenarioError::Step(format!("{what}: {e}"))
    };
    let cluster = Cluster::start(
        dir,
        nodes,
        shards,
        epoch_ms,
        Limits::default(),
        Tasks::brisk(),
    )
    .await?;
    let file = cluster.file().clone();
    let since = |ms: u64| ms.saturating_sub(file.clock.genesis_unix_ms) % epoch_ms;
    // Early in an epoch: storing and certifying the next committee fit in it.
    while epoch_ms - since(now_ms()) < epoch_ms * 3 / 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let epoch = file.clock.epoch_at(now_ms());
    let client =
        Client::new(&file, ClientConfig::default()).map_err(|e| step("client")(e.to_string()))?;
    let mut blobs = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data: Bytes = (0..*size)
            .map(|b| (b * 31 + i) as u8)
            .collect::<Vec<u8>>()
            .into();
        let stored = client
            .store(data.clone(), 100, StoreOptions::default())
            .await
            .map_err(|e| step("storing")(e.to_string()))?;
        blobs.push((stored.blob_id, data));
    }
    let waited = std::time::Instant::now();
    while (0..nodes).any(|i| cluster.node(i).is_some_and(|n| n.drift() > 0)) {
        if waited.elapsed() > Duration::from_secs(30) {
            return Err(ScenarioError::Step(
                "nodes still lack pairs after 30 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let genesis = file.committee.clone();
    let staying = &genesis.members()[1..];
    let share = shards / staying.len() as u16;
    let extra = shards % staying.len() as u16;
    let next: Vec<(Member, u16)> = staying
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), share + u16::from((i as u16) < extra)))
        .collect();
    let proposal = CommitteeProposal {
        epoch: Epoch(epoch.0 + 1),
        n_shards: shards,
        members: assign_shards(&genesis, &next)
            .map_err(|e| step("assigning shards")(e.to_string()))?,
    };
    for i in 1..nodes {
        if let Some(node) = cluster.node(i) {
            node.approve_next_committee(proposal.clone())
                .await
                .map_err(|e| step("approving")(e.to_string()))?;
        }
    }
    let waited = std::time::Instant::now();
    while (0..nodes).any(|i| {
        cluster
            .node(i)
            .is_some_and(|n| n.latest_committee_change() != proposal.epoch)
    }) {
        if waited.elapsed() > Duration::from_secs(10) {
            return Err(ScenarioError::Step(
                "the next committee was not certified within 10 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Leaving {
        cluster,
        blobs,
        next: proposal.epoch,
    })
}
