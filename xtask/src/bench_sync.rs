//! `cargo xtask bench sync`: anti-entropy catch-up at scale. Seven nodes
//! (one process, real QUIC and RocksDB) hold 50 000 certified facts (10 000
//! with `--quick`); an eighth view, node 6, starts wiped. Prints how long it
//! takes to learn every fact, the bytes the servers moved meanwhile, and the
//! requests it took.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use floe_node::{Limits, Tasks};
use floe_testkit::local;
use serde::Serialize;

#[derive(Serialize)]
struct SyncRecord {
    facts: usize,
    fact_bytes: usize,
    nodes: usize,
    converge_s: f64,
    bytes_exchanged: u64,
    bytes_per_fact_byte: f64,
    requests: u64,
    largest_request_limit_bytes: u32,
}

pub fn run(quick: bool) -> Result<()> {
    let facts = if quick { 10_000 } else { 50_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let record = runtime.block_on(catch_up(facts))?;
    println!(
        "{:>8} {:>10} {:>6} {:>11} {:>14} {:>10} {:>9}",
        "facts", "fact MiB", "nodes", "converge s", "exchanged MiB", "×facts", "requests"
    );
    println!(
        "{:>8} {:>10.1} {:>6} {:>11.1} {:>14.1} {:>10.2} {:>9}",
        record.facts,
        record.fact_bytes as f64 / f64::from(1 << 20),
        record.nodes,
        record.converge_s,
        record.bytes_exchanged as f64 / f64::from(1 << 20),
        record.bytes_per_fact_byte,
        record.requests
    );
    crate::bench::write_json("sync", &[record])
}

async fn catch_up(count: usize) -> Result<SyncRecord> {
    let dir = tempfile::tempdir()?;
    let tasks = Tasks {
        // No data exists for these facts: repair has nothing to fetch.
        repair_interval_ms: 3_600_000,
        ..Tasks::brisk()
    };
    let committee = local::generate(dir.path(), 7, 100, 3_600_000, Limits::default(), tasks)?;
    let facts = local::certified_facts(&committee, count, 10)?;
    let fact_bytes: usize = facts
        .iter()
        .map(|f| floe_consensus::canonical_bytes(f.fact()).len())
        .sum();
    for i in 0..6 {
        local::seed_facts(&committee, i, &facts)?;
    }
    let cluster = local::Cluster::start_local(committee).await?;
    let Some(reference) = cluster.node(0).map(floe_node::Node::digest_root) else {
        bail!("node 0 did not start");
    };
    let served = |cluster: &local::Cluster| crate::bench_e2e::served(&cluster.nodes);
    let (bytes_before, requests_before) = served(&cluster);
    let started = Instant::now();
    loop {
        let Some(wiped) = cluster.node(6) else {
            bail!("node 6 did not start");
        };
        if wiped.digest_root() == reference {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "node 6 knows {} of {count} facts after 600 s",
                wiped.digest_root().0
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converge_s = started.elapsed().as_secs_f64();
    let (bytes_after, requests_after) = served(&cluster);
    let drift = cluster.node(6).map_or(0, floe_node::Node::drift);
    if drift != count {
        bail!("node 6 counts {drift} drifting blobs; every one of the {count} facts is a blob it lacks");
    }
    cluster.shutdown().await;
    let bytes_exchanged = bytes_after - bytes_before;
    Ok(SyncRecord {
        facts: count,
        fact_bytes,
        nodes: 7,
        converge_s,
        bytes_exchanged,
        bytes_per_fact_byte: bytes_exchanged as f64 / fact_bytes as f64,
        requests: requests_after - requests_before,
        largest_request_limit_bytes: floe_api::MAX_FACTS_FRAME,
    })
}
