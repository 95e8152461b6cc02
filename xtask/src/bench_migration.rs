//! `cargo xtask bench migration`: moving shards at a committee change. Seven
//! nodes (one process, real QUIC and RocksDB) over 100 shards hold certified
//! blobs; node-0 leaves at the next epoch and its shards go to the others.
//! Measured twice: with node-0 up (its pairs are fetched from it) and with
//! node-0 down (they are rebuilt by recovery). Prints the bytes the servers
//! sent per byte of moved pairs and the time from the epoch's start until
//! the change is done.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use floe_testkit::local::Cluster;
use floe_testkit::migration::{node_0_leaves, until_epoch};
use serde::Serialize;

#[derive(Serialize)]
struct MigrationRecord {
    case: &'static str,
    nodes: usize,
    shards: u16,
    blobs: usize,
    blob_bytes: usize,
    moved_shards: usize,
    /// Bytes of the pairs of the moved shards, as the previous holder stored them.
    moved_pair_bytes: u64,
    /// Response bytes every server sent from the epoch's start until the change was done.
    bytes_sent: u64,
    bytes_sent_over_moved: f64,
    /// From the start of the epoch until members holding a quorum of shards synced.
    done_s: f64,
}

pub fn run(quick: bool) -> Result<()> {
    let (blobs, size) = if quick { (8, 256 << 10) } else { (32, 1 << 20) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut records = Vec::new();
    for holder_up in [true, false] {
        records.push(runtime.block_on(change(holder_up, blobs, size))?);
    }
    println!(
        "{:<22} {:>6} {:>6} {:>6} {:>7} {:>11} {:>11} {:>8} {:>8}",
        "case", "nodes", "shards", "blobs", "moved", "pairs MiB", "sent MiB", "×pairs", "done s"
    );
    for r in &records {
        println!(
            "{:<22} {:>6} {:>6} {:>6} {:>7} {:>11.1} {:>11.1} {:>8.2} {:>8.1}",
            r.case,
            r.nodes,
            r.shards,
            r.blobs,
            r.moved_shards,
            r.moved_pair_bytes as f64 / f64::from(1 << 20),
            r.bytes_sent as f64 / f64::from(1 << 20),
            r.bytes_sent_over_moved,
            r.done_s
        );
    }
    crate::bench::write_json("migration", &records)
}

fn bytes_sent(cluster: &Cluster) -> u64 {
    cluster
        .nodes
        .iter()
        .flatten()
        .map(|node| node.server_stats().bytes_out.load(Ordering::Relaxed))
        .sum()
}

async fn change(holder_up: bool, blobs: usize, size: usize) -> Result<MigrationRecord> {
    const NODES: usize = 7;
    const SHARDS: u16 = 100;
    const EPOCH_MS: u64 = 40_000;
    let dir = tempfile::tempdir()?;
    let sizes = vec![size; blobs];
    let mut leaving = node_0_leaves(dir.path(), NODES, SHARDS, EPOCH_MS, &sizes).await?;
    let cluster = &mut leaving.cluster;
    let Some(node0) = cluster.node(0) else {
        bail!("node-0 did not start");
    };
    let moved = node0.store().shards();
    let mut moved_pair_bytes = 0u64;
    for (blob_id, _) in &leaving.blobs {
        for shard in &moved {
            if let Some(pair) = node0.store().sliver_pair(*shard, blob_id)? {
                moved_pair_bytes += pair.byte_len() as u64;
            }
        }
    }
    if !holder_up {
        cluster.stop(0).await;
    }
    until_epoch(cluster.file(), leaving.next).await;
    let started = Instant::now();
    let sent_before = bytes_sent(cluster);
    loop {
        let done = cluster
            .nodes
            .iter()
            .flatten()
            .all(|node| node.committee_change_done() && node.drift() == 0);
        if done {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the change was not done within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done_s = started.elapsed().as_secs_f64();
    let bytes_sent = bytes_sent(cluster) - sent_before;
    let record = MigrationRecord {
        case: if holder_up {
            "previous holder up"
        } else {
            "previous holder down"
        },
        nodes: NODES,
        shards: SHARDS,
        blobs,
        blob_bytes: size,
        moved_shards: moved.len(),
        moved_pair_bytes,
        bytes_sent,
        bytes_sent_over_moved: bytes_sent as f64 / moved_pair_bytes.max(1) as f64,
        done_s,
    };
    leaving.cluster.shutdown().await;
    Ok(record)
}
