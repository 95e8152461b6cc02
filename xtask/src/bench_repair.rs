//! The repair case of `cargo xtask bench e2e`: a node loses its disk and
//! rebuilds every pair it held from its peers' recovery symbols.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use floe_client::{Client, StoreOptions};
use floe_node::Node;
use serde::Serialize;

use crate::bench::human;
use crate::bench_e2e::{timed, Report};

#[derive(Serialize)]
pub(crate) struct RepairRecord {
    blobs: usize,
    blob_bytes: usize,
    seconds: f64,
    /// Bytes of recovery symbols fetched (their proofs apart).
    fetched_bytes: u64,
    /// Bytes of those symbols' proofs.
    fetched_proof_bytes: u64,
    /// Repair rounds that fell back to proven symbols.
    proven_rounds: u64,
    rebuilt_bytes: u64,
    /// Slivers the node rebuilt (two per pair; more means repeated work).
    slivers_rebuilt: u64,
    pairs_held: u64,
}

impl RepairRecord {
    /// Symbol bytes fetched over bytes rebuilt, and the same with the
    /// symbols' proofs counted.
    pub(crate) fn ratios(&self) -> (f64, f64) {
        let rebuilt = self.rebuilt_bytes.max(1) as f64;
        (
            self.fetched_bytes as f64 / rebuilt,
            (self.fetched_bytes + self.fetched_proof_bytes) as f64 / rebuilt,
        )
    }
}

/// A node holding every blob stored so far plus 1000 small ones (100 if
/// `quick`) loses its disk; measure how long and how many bytes it takes to
/// rebuild.
pub(crate) async fn repair(
    report: &mut Report,
    local: &floe_testkit::local::LocalCommittee,
    running: &mut [Option<Node>],
    client: &Arc<Client>,
    seed: &mut u64,
    mut all_ids: Vec<floe_codec::BlobId>,
    quick: bool,
) -> Result<()> {
    let (repair_blobs, repair_bytes) = if quick {
        (100, 1 << 10)
    } else {
        (1000, 1 << 10)
    };
    let mut blobs = Vec::new();
    for i in 0..8 {
        blobs.push(
            (0..repair_blobs / 8 + usize::from(i < repair_blobs % 8))
                .map(|_| {
                    *seed += 1;
                    let mut blob = crate::bench::sample_blob(repair_bytes);
                    blob[..8].copy_from_slice(&seed.to_le_bytes());
                    Bytes::from(blob)
                })
                .collect::<Vec<_>>(),
        );
    }
    let (_, _, ids) = timed(client, blobs, |client, blob| async move {
        Ok(client
            .store(blob, 10, StoreOptions::default())
            .await?
            .blob_id)
    })
    .await?;
    let repair_ids: Vec<_> = ids.into_iter().flatten().collect();
    let small = repair_ids.len();
    all_ids.extend(repair_ids);
    let ids = all_ids;
    let wiped = 1;
    if let Some(node) = running[wiped].take() {
        node.shutdown(Duration::from_secs(2)).await;
    }
    std::fs::remove_dir_all(&local.configs[wiped].database)?;
    let start = Instant::now();
    let node = loop {
        match Node::start(local.configs[wiped].clone()).await {
            Ok(node) => break node,
            Err(floe_node::StartError::Net(_)) if start.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let restarted = Instant::now();
    loop {
        let complete = node.drift() == 0
            && ids
                .iter()
                .all(|id| node.store().holds_all_pairs(id).unwrap_or(false));
        if complete {
            break;
        }
        anyhow::ensure!(
            restarted.elapsed() < Duration::from_secs(600),
            "repair did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = restarted.elapsed().as_secs_f64();
    let mut rebuilt = 0u64;
    let mut pairs_held = 0u64;
    for id in &ids {
        for shard in node.store().shards() {
            if let Some(pair) = node.store().sliver_pair(shard, id)? {
                rebuilt += pair.byte_len() as u64;
                pairs_held += 1;
            }
        }
    }
    let fetched = node.metrics().repair_bytes_fetched.load(Ordering::Relaxed);
    let proofs = node
        .metrics()
        .repair_proof_bytes_fetched
        .load(Ordering::Relaxed);
    let slivers_rebuilt = node.metrics().slivers_repaired.load(Ordering::Relaxed);
    let proven_rounds = node.metrics().repair_proven_rounds.load(Ordering::Relaxed);
    println!(
        "\nrepair of a wiped node holding {} blobs ({small} of {} and the {} above): {seconds:.1} s (learning the certificates included), fetched {} KiB of symbols to rebuild {} KiB ({:.2}x), and {} KiB of proofs in {proven_rounds} rounds that fell back to proven symbols (with them {:.2}x)",
        ids.len(),
        human(repair_bytes),
        ids.len() - small,
        fetched >> 10,
        rebuilt >> 10,
        fetched as f64 / rebuilt.max(1) as f64,
        proofs >> 10,
        (fetched + proofs) as f64 / rebuilt.max(1) as f64
    );
    report.repair = Some(RepairRecord {
        blobs: ids.len(),
        blob_bytes: repair_bytes,
        seconds,
        fetched_bytes: fetched,
        fetched_proof_bytes: proofs,
        proven_rounds,
        rebuilt_bytes: rebuilt,
        slivers_rebuilt,
        pairs_held,
    });
    running[wiped] = Some(node);
    Ok(())
}
