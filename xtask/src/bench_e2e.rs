//! `cargo xtask bench e2e`: a local committee (7 nodes, 100 shards, real
//! QUIC and RocksDB) in this process: store and read throughput and latency,
//! the codec-only encode time of the same blobs, and the repair of a wiped
//! node holding 1000 blobs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use floe_client::{Client, ClientConfig, ReadOptions, StoreOptions};
use floe_node::{Limits, Node, Tasks};
use serde::Serialize;

use crate::bench::{human, median};

const MIB: f64 = (1 << 20) as f64;

/// The blob size the target speaks of, and the floor is measured for.
const FLOOR_BLOB_BYTES: usize = 16 << 20;

/// CPU milliseconds this process used since `before` (0 without a clock).
fn cpu_since(before: Option<f64>) -> f64 {
    match (before, crate::rss::cpu_ms()) {
        (Some(before), Some(after)) => after - before,
        _ => 0.0,
    }
}

#[derive(Serialize)]
struct OpRecord {
    blob_bytes: usize,
    clients: usize,
    ops_per_client: usize,
    store_mib_s: f64,
    store_p50_ms: f64,
    store_p99_ms: f64,
    read_mib_s: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
    /// Codec-only encode of the same blob (median), and the store p50 over it.
    encode_ms: f64,
    store_over_encode: f64,
    /// CPU time (client and all nodes, one process) per store.
    store_cpu_ms: f64,
}

#[derive(Serialize)]
struct RepairRecord {
    blobs: usize,
    blob_bytes: usize,
    seconds: f64,
    fetched_bytes: u64,
    rebuilt_bytes: u64,
    /// Slivers the node rebuilt (two per pair; more means repeated work).
    slivers_rebuilt: u64,
    pairs_held: u64,
}

/// The least CPU a store of one blob costs on this machine: each piece of
/// the work the protocol requires, measured alone with the parts the
/// committee runs on (no contention, no waiting on peers). The client and
/// every node share this machine's cores here, so no store can finish in
/// less than `total_cpu_ms / cores`.
#[derive(Serialize)]
struct FloorRecord {
    blob_bytes: usize,
    /// Bytes of all sliver pairs: what the client sends and the nodes keep.
    sliver_bytes: usize,
    cores: usize,
    /// The client's encode (the codec-only encode's CPU time).
    encode_cpu_ms: f64,
    /// The nodes' verification of every sliver against the metadata.
    verify_cpu_ms: f64,
    /// Every sliver over floe-net (QUIC, TLS 1.3) on loopback, both ends.
    transport_cpu_ms: f64,
    /// Every pair into floe-store (RocksDB on this disk), made durable.
    storage_cpu_ms: f64,
    total_cpu_ms: f64,
    floor_ms: f64,
    /// `floor_ms` over the codec-only encode's wall time.
    floor_over_encode: f64,
}

#[derive(Serialize)]
struct Report {
    nodes: usize,
    shards: u16,
    ops: Vec<OpRecord>,
    repair: Option<RepairRecord>,
    floor: Option<FloorRecord>,
}

fn percentile(mut xs: Vec<f64>, q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() as f64 * q) as usize).min(xs.len() - 1)]
}

/// The name `--only` selects a case by: `16MiBx1`.
fn case_name(bytes: usize, clients: usize) -> String {
    format!("{}x{clients}", human(bytes).replace(' ', ""))
}

pub fn run(quick: bool, only: &[String]) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(quick, only))
}

async fn run_async(quick: bool, only: &[String]) -> Result<()> {
    let (nodes, shards) = (7usize, 100u16);
    let dir = tempfile::tempdir()?;
    let tasks = Tasks {
        sync_interval_ms: 500,
        repair_interval_ms: 200,
        repair_concurrency: 8,
        gc_interval_ms: 10_000,
    };
    let limits = Limits {
        max_blob_size: 256 << 20,
        ..Limits::default()
    };
    let local = floe_testkit::local::generate(dir.path(), nodes, shards, 3_600_000, limits, tasks)?;
    let selected =
        |name: &str| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name));
    // Before the nodes start: the CPU clock counts the whole process.
    let floor = if selected(&case_name(FLOOR_BLOB_BYTES, 1)) {
        Some(
            floor(&local.file.committee.encoding())
                .await
                .context("measuring the store floor")?,
        )
    } else {
        None
    };
    let mut running = Vec::new();
    for config in &local.configs {
        running.push(Some(
            Node::start(config.clone())
                .await
                .context("starting a node")?,
        ));
    }
    let client = Arc::new(Client::new(&local.file, ClientConfig::default())?);
    let encoding = client.committee(client.epoch()).encoding();
    let mut report = Report {
        nodes,
        shards,
        ops: Vec::new(),
        repair: None,
        floor,
    };

    println!(
        "local committee: {nodes} nodes, {shards} shards, QUIC on 127.0.0.1, RocksDB in {}",
        dir.path().display()
    );
    println!(
        "{:>8} {:>7} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9} {:>12}",
        "blob",
        "clients",
        "store MiB/s",
        "p50 ms",
        "p99 ms",
        "read MiB/s",
        "p50 ms",
        "p99 ms",
        "encode ms",
        "store/enc",
        "cpu ms/store"
    );
    let cases: &[(usize, usize, usize)] = if quick {
        &[(1 << 10, 1, 5), (1 << 20, 1, 3), (16 << 20, 1, 1)]
    } else {
        &[
            (1 << 10, 1, 30),
            (1 << 10, 8, 10),
            (1 << 20, 1, 10),
            (1 << 20, 8, 4),
            (16 << 20, 1, 5),
            (16 << 20, 8, 2),
        ]
    };
    let mut names: Vec<String> = cases.iter().map(|&(b, c, _)| case_name(b, c)).collect();
    names.push("repair".into());
    for name in only {
        anyhow::ensure!(
            names.iter().any(|n| n.eq_ignore_ascii_case(name)),
            "no e2e case {name:?}; cases: {}",
            names.join(", ")
        );
    }
    let mut seed = 0u64;
    // Every blob stored: the wiped node must rebuild all of them.
    let mut all_ids = Vec::new();
    for &(bytes, clients, ops) in cases {
        if !selected(&case_name(bytes, clients)) {
            continue;
        }
        // Distinct blobs: each client stores its own.
        let blobs: Vec<Vec<Bytes>> = (0..clients)
            .map(|_| {
                (0..ops)
                    .map(|_| {
                        seed += 1;
                        let mut blob = crate::bench::sample_blob(bytes + 8);
                        blob[..8].copy_from_slice(&seed.to_le_bytes());
                        blob.truncate(bytes);
                        Bytes::from(blob)
                    })
                    .collect()
            })
            .collect();
        let (encode_ms, _) = codec_encode(&encoding, &blobs[0]);

        let cpu_before = crate::rss::cpu_ms();
        let (store_s, store_lat, ids) = timed(&client, blobs, |client, blob| async move {
            let outcome = client.store(blob, 10, StoreOptions::default()).await?;
            Ok(outcome.blob_id)
        })
        .await?;
        let store_cpu_ms = cpu_since(cpu_before) / (clients * ops) as f64;
        let total = (bytes * clients * ops) as f64 / MIB;
        all_ids.extend(ids.iter().flatten().copied());
        let (read_s, read_lat, _) = timed(&client, ids, |client, blob_id| async move {
            client.read(blob_id, ReadOptions::default()).await?;
            Ok(blob_id)
        })
        .await?;
        let record = OpRecord {
            blob_bytes: bytes,
            clients,
            ops_per_client: ops,
            store_mib_s: total / store_s,
            store_p50_ms: percentile(store_lat.clone(), 0.5),
            store_p99_ms: percentile(store_lat, 0.99),
            read_mib_s: total / read_s,
            read_p50_ms: percentile(read_lat.clone(), 0.5),
            read_p99_ms: percentile(read_lat, 0.99),
            encode_ms,
            store_over_encode: 0.0,
            store_cpu_ms,
        };
        let record = OpRecord {
            store_over_encode: record.store_p50_ms / encode_ms.max(1e-3),
            ..record
        };
        println!(
            "{:>8} {:>7} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>8.1}x {:>12.1}",
            human(bytes),
            clients,
            record.store_mib_s,
            record.store_p50_ms,
            record.store_p99_ms,
            record.read_mib_s,
            record.read_p50_ms,
            record.read_p99_ms,
            record.encode_ms,
            record.store_over_encode,
            record.store_cpu_ms
        );
        report.ops.push(record);
    }

    if selected("repair") {
        repair(
            &mut report,
            &local,
            &mut running,
            &client,
            &mut seed,
            all_ids,
            quick,
        )
        .await?;
    }
    if let Some(floor) = &report.floor {
        println!(
            "floor for {}: encode {:.0} + verify {:.0} + QUIC {:.0} + durable write {:.0} = {:.0} ms CPU \
             (each measured alone); on {} cores no store takes under {:.0} ms = {:.1}x the encode",
            human(floor.blob_bytes),
            floor.encode_cpu_ms,
            floor.verify_cpu_ms,
            floor.transport_cpu_ms,
            floor.storage_cpu_ms,
            floor.total_cpu_ms,
            floor.cores,
            floor.floor_ms,
            floor.floor_over_encode
        );
    }
    if let Some(record) = report
        .ops
        .iter()
        .find(|r| r.blob_bytes == FLOOR_BLOB_BYTES && r.clients == 1)
    {
        println!(
            "target: a 16 MiB store with 1 client within 3x the codec-only encode time; measured {:.1}x",
            record.store_over_encode
        );
    }
    for node in running.into_iter().flatten() {
        node.shutdown(Duration::from_secs(2)).await;
    }
    // A partial run keeps its own file: `bench` summaries read `e2e.json`.
    let name = if only.is_empty() { "e2e" } else { "e2e-only" };
    crate::bench::write_json(name, &report)
}

/// The codec-only encode of `blobs` (cycled, 5 encodes): median wall time
/// and mean CPU time, in milliseconds.
fn codec_encode(encoding: &floe_codec::EncodingConfig, blobs: &[Bytes]) -> (f64, f64) {
    let encodes = 5;
    let before = crate::rss::cpu_ms();
    let wall = median(
        blobs
            .iter()
            .cycle()
            .take(encodes)
            .map(|blob| {
                let start = Instant::now();
                let _ = floe_codec::encode(encoding, blob);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    (wall, cpu_since(before) / encodes as f64)
}

/// Measures the floor (see [`FloorRecord`]) for a blob of
/// [`FLOOR_BLOB_BYTES`], one piece at a time.
async fn floor(encoding: &floe_codec::EncodingConfig) -> Result<FloorRecord> {
    use rayon::prelude::*;
    let blob = Bytes::from(crate::bench::sample_blob(FLOOR_BLOB_BYTES));
    let (encode_ms, encode_cpu_ms) = codec_encode(encoding, std::slice::from_ref(&blob));
    let (metadata, blob_id, pairs) = floe_codec::encode(encoding, &blob)?;
    let slivers: Vec<Bytes> = pairs
        .iter()
        .flat_map(|pair| [pair.primary.data.clone(), pair.secondary.data.clone()])
        .collect();
    let sliver_bytes = slivers.iter().map(Bytes::len).sum();

    let before = crate::rss::cpu_ms();
    pairs
        .par_iter()
        .try_for_each(|pair| pair.verify(&metadata))
        .context("verifying the slivers")?;
    let verify_cpu_ms = cpu_since(before);

    // The handshake and a first upload happen before the clock starts, as
    // a committee's connections are up before a store.
    let transport = crate::bench_net::Transport::quic(floe_net::NetConfig::default()).await?;
    transport.upload_all(slivers[..1].to_vec(), 1).await?;
    let before = crate::rss::cpu_ms();
    transport.upload_all(slivers, 8).await?;
    let transport_cpu_ms = cpu_since(before);
    drop(transport);

    let dir = tempfile::tempdir()?;
    let shards: Vec<floe_codec::ShardIndex> = (0..pairs.len() as u16)
        .map(floe_codec::ShardIndex)
        .collect();
    let store = floe_store::Store::open(dir.path(), shards.clone())?;
    let before = crate::rss::cpu_ms();
    store.put_metadata(&blob_id, &metadata, 0)?;
    for (shard, pair) in shards.into_iter().zip(&pairs) {
        store.put_sliver_pair(shard, &blob_id, pair)?;
    }
    store.promise(floe_consensus::ProtocolMessage::new(
        floe_consensus::Epoch(0),
        floe_consensus::StorageConfirmation {
            blob_id,
            end_epoch: floe_consensus::Epoch(1),
            deletable: false,
            owner: None,
        },
    ))?;
    let storage_cpu_ms = cpu_since(before);

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let total_cpu_ms = encode_cpu_ms + verify_cpu_ms + transport_cpu_ms + storage_cpu_ms;
    let floor_ms = total_cpu_ms / cores as f64;
    Ok(FloorRecord {
        blob_bytes: blob.len(),
        sliver_bytes,
        cores,
        encode_cpu_ms,
        verify_cpu_ms,
        transport_cpu_ms,
        storage_cpu_ms,
        total_cpu_ms,
        floor_ms,
        floor_over_encode: floor_ms / encode_ms.max(1e-3),
    })
}

/// A node holding every blob stored so far plus 1000 small ones (100 if
/// `quick`) loses its disk; measure how long and how many bytes it takes to
/// rebuild.
async fn repair(
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
    let slivers_rebuilt = node.metrics().slivers_repaired.load(Ordering::Relaxed);
    println!(
        "\nrepair of a wiped node holding {} blobs ({small} of {} and the {} above): {seconds:.1} s (learning the certificates included), fetched {} KiB of symbols to rebuild {} KiB ({:.2}x)",
        ids.len(),
        human(repair_bytes),
        ids.len() - small,
        fetched >> 10,
        rebuilt >> 10,
        fetched as f64 / rebuilt.max(1) as f64
    );
    report.repair = Some(RepairRecord {
        blobs: ids.len(),
        blob_bytes: repair_bytes,
        seconds,
        fetched_bytes: fetched,
        rebuilt_bytes: rebuilt,
        slivers_rebuilt,
        pairs_held,
    });
    running[wiped] = Some(node);
    Ok(())
}

/// Run `op` over each client's items, the clients concurrently; returns the
/// wall time, every op's latency (ms) and every op's output, per client.
async fn timed<T, U, F, Fut>(
    client: &Arc<Client>,
    items: Vec<Vec<T>>,
    op: F,
) -> Result<(f64, Vec<f64>, Vec<Vec<U>>)>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(Arc<Client>, T) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<U>> + Send,
{
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, list) in items.into_iter().enumerate() {
        let client = Arc::clone(client);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut outputs = Vec::new();
            for item in list {
                let t = Instant::now();
                outputs.push(op(Arc::clone(&client), item).await?);
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>((index, latencies, outputs))
        });
    }
    let mut all_latencies = Vec::new();
    let mut outputs = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (index, latencies, out) = done??;
        all_latencies.extend(latencies);
        outputs.push((index, out));
    }
    outputs.sort_by_key(|(index, _)| *index);
    Ok((
        start.elapsed().as_secs_f64(),
        all_latencies,
        outputs.into_iter().map(|(_, out)| out).collect(),
    ))
}
