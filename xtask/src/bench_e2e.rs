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

use crate::bench::human;
use crate::bench_floor::{codec_encode, cpu_since, floor, FloorRecord, FLOOR_BLOB_BYTES};
use crate::bench_repair::{repair, RepairRecord};

const MIB: f64 = (1 << 20) as f64;

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
    /// Request and answer bytes the nodes' servers carried, per byte stored.
    sent_per_stored_byte: f64,
    /// UDP bytes every shaped endpoint sent (QUIC and node-to-node
    /// traffic included), per byte stored; with `--wan` only.
    wire_bytes_per_stored_byte: Option<f64>,
    /// Requests the client made to each node per store.
    calls_per_node_per_store: f64,
    /// The least a store can take: on loopback the CPU floor (16 MiB),
    /// over shaped links the encode plus the quickest quorum's transfer
    /// and four round trips.
    floor_ms: Option<f64>,
    store_p50_over_floor: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct Report {
    nodes: usize,
    shards: u16,
    /// The link profile, if links were shaped.
    wan: Option<String>,
    /// QUIC's congestion controller (BBR over shaped links).
    congestion: String,
    ops: Vec<OpRecord>,
    pub(crate) repair: Option<RepairRecord>,
    floor: Option<FloorRecord>,
    /// The 16 MiB store's p50 over its floor (target <= 1.2).
    store_p50_over_floor: Option<f64>,
    /// The floor's CPU, client and nodes together.
    floor_total_cpu_ms: Option<f64>,
    /// The 16 MiB store's p50 over the floor in the committee's shape
    /// (see `FloorRecord::committee_floor_ms`).
    store_p50_over_committee_floor: Option<f64>,
    /// The 16 MiB store's CPU over the floor's: the ratio without the
    /// cores' scheduling in it.
    store_cpu_over_floor_cpu: Option<f64>,
    /// The same over the committee-shaped floor's CPU.
    store_cpu_over_committee_floor_cpu: Option<f64>,
    /// The floor's pieces run together without the protocol (see
    /// `bench_composed`), over the floor: what running together costs.
    composed_over_floor: Option<f64>,
    /// The 16 MiB store's p50 over that composition: what the protocol and
    /// the node add to it.
    store_p50_over_composed: Option<f64>,
    /// All repair fetched (symbols and any proofs) over bytes rebuilt
    /// (target <= 1.3).
    repair_fetched_over_rebuilt: Option<f64>,
    /// The symbols alone over bytes rebuilt.
    repair_symbols_over_rebuilt: Option<f64>,
    /// Over shaped links: a 1 KiB store's p50, less its encode, in RTTs.
    round_trips_per_store: Option<f64>,
    /// Time for a certificate told to one node to reach every node.
    convergence_ms: Option<f64>,
    /// Resident memory of the whole process after the stores, and what
    /// each node added to it.
    rss_mib: f64,
    rss_per_node_mib: f64,
    /// The client's QUIC paths to the nodes after the stores and reads.
    client_paths: Option<PathSummary>,
}

/// What the client's QUIC paths carried and lost, summed over its nodes.
#[derive(Serialize)]
struct PathSummary {
    /// The smallest and largest MTU the paths had at the end.
    mtu_min: u16,
    mtu_max: u16,
    sent_packets: u64,
    lost_packets: u64,
    congestion_events: u64,
    black_holes: u64,
    sent_probes: u64,
    lost_probes: u64,
}

impl PathSummary {
    fn of(client: &Client) -> Option<Self> {
        let paths: Vec<floe_net::PathHealth> =
            client.health().iter().filter_map(|h| h.path).collect();
        Some(Self {
            mtu_min: paths.iter().map(|p| p.mtu).min()?,
            mtu_max: paths.iter().map(|p| p.mtu).max()?,
            sent_packets: paths.iter().map(|p| p.sent_packets).sum(),
            lost_packets: paths.iter().map(|p| p.lost_packets).sum(),
            congestion_events: paths.iter().map(|p| p.congestion_events).sum(),
            black_holes: paths.iter().map(|p| p.black_holes).sum(),
            sent_probes: paths.iter().map(|p| p.sent_probes).sum(),
            lost_probes: paths.iter().map(|p| p.lost_probes).sum(),
        })
    }
}

fn percentile(mut xs: Vec<f64>, q: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[((xs.len() as f64 * q) as usize).min(xs.len() - 1)]
}

/// The name `--only` selects a case by: `16MiBx1`.
fn case_name(bytes: usize, clients: usize) -> String {
    format!("{}x{clients}", human(bytes).replace(' ', ""))
}

/// What `cargo xtask bench e2e` runs.
pub struct Options {
    /// Only the small cases.
    pub quick: bool,
    /// Only these cases (`16MiBx1`, `repair`).
    pub only: Vec<String>,
    /// Committee sizes, one run each (default: 7).
    pub nodes: Vec<usize>,
    /// Lab: every link shaped as a wide-area link.
    pub wan: Option<floe_net::LinkProfile>,
}

/// A run over several committee sizes or shaped links (`e2e-wan.json`, or
/// `e2e-scale.json` on loopback).
#[derive(Serialize)]
struct ScaleReport {
    wan: Option<String>,
    runs: Vec<Report>,
}

pub fn run(options: &Options) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sizes = if options.nodes.is_empty() {
        vec![7]
    } else {
        options.nodes.clone()
    };
    anyhow::ensure!(
        sizes.iter().all(|&n| (4..=100).contains(&n)),
        "--nodes takes committee sizes from 4 to 100 (100 shards)"
    );
    let scale = options.wan.is_some() || sizes != [7];
    let mut reports = Vec::new();
    for &nodes in &sizes {
        reports.push(runtime.block_on(committee_run(nodes, options, scale))?);
    }
    if scale {
        let name = if options.wan.is_some() {
            "e2e-wan"
        } else {
            "e2e-scale"
        };
        return crate::bench::write_json(
            name,
            &ScaleReport {
                wan: options.wan.as_ref().map(ToString::to_string),
                runs: reports,
            },
        );
    }
    // A partial run keeps its own file: `bench` summaries read `e2e.json`.
    let name = if options.only.is_empty() {
        "e2e"
    } else {
        "e2e-only"
    };
    crate::bench::write_json(name, &reports[0])
}

/// Per-node sliver bytes of a blob of `len` bytes, and the floor a store of
/// it has over shaped links: the encode, then the slowest member of the
/// quickest quorum, each member's time being its pairs at its link's
/// bandwidth plus the protocol's four round trips (metadata, pairs,
/// confirmation, certificate).
fn wan_floor_ms(
    committee: &floe_consensus::Committee,
    profile: &floe_net::LinkProfile,
    len: usize,
    encode_ms: f64,
) -> Result<f64> {
    let encoding = committee.encoding();
    let pair_symbols =
        usize::from(encoding.primary_source_symbols() + encoding.secondary_source_symbols());
    let pair_bytes = encoding.symbol_size(len as u64)? as usize * pair_symbols;
    // The client's address is not known before it binds: each link's
    // latency is taken as the profile's middle.
    let latency = (profile.latency_min + profile.latency_max) / 2;
    let mut members: Vec<(f64, u32)> = committee
        .members()
        .iter()
        .enumerate()
        .map(|(i, member)| {
            let transfer = profile.transmit_time(pair_bytes * member.shards.len());
            let ms = (transfer + latency * 8).as_secs_f64() * 1e3;
            (ms, committee.weight(floe_consensus::MemberIndex(i as u16)))
        })
        .collect();
    members.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut weight = 0;
    for (ms, w) in members {
        weight += w;
        if committee.is_quorum(weight) {
            return Ok(encode_ms + ms);
        }
    }
    anyhow::bail!("the committee has no quorum")
}

async fn committee_run(nodes: usize, options: &Options, scale: bool) -> Result<Report> {
    let (quick, only) = (options.quick, &options.only[..]);
    let shards = 100u16;
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
    let mut local =
        floe_testkit::local::generate(dir.path(), nodes, shards, 3_600_000, limits, tasks)?;
    // Over shaped links the committee runs as a spread-out one should be
    // configured: with BBR (see `floe_net::Congestion`).
    let congestion = if options.wan.is_some() {
        floe_net::Congestion::Bbr
    } else {
        floe_net::Congestion::Cubic
    };
    for config in &mut local.configs {
        config.server.congestion = congestion;
        config.lab = options
            .wan
            .clone()
            .map(|wan| floe_node::Lab { wan: Some(wan) });
    }
    let selected =
        |name: &str| only.is_empty() || only.iter().any(|o| o.eq_ignore_ascii_case(name));
    // Before the nodes start: the CPU clock counts the whole process.
    let floor = if !scale && selected(&case_name(FLOOR_BLOB_BYTES, 1)) {
        Some(
            floor(&local.file.committee)
                .await
                .context("measuring the store floor")?,
        )
    } else {
        None
    };
    let rss_before = crate::rss::current_mib().unwrap_or(0.0);
    let mut running = Vec::new();
    for config in &local.configs {
        running.push(Some(
            Node::start(config.clone())
                .await
                .context("starting a node")?,
        ));
    }
    let client_config = ClientConfig {
        net: floe_net::NetConfig {
            link_shape: options.wan.clone(),
            congestion,
            ..floe_net::NetConfig::default()
        },
        ..ClientConfig::default()
    };
    let client = Arc::new(Client::new(&local.file, client_config)?);
    let committee = client.committee(client.epoch());
    let encoding = committee.encoding();
    let mut report = Report {
        nodes,
        shards,
        wan: options.wan.as_ref().map(ToString::to_string),
        congestion: format!("{congestion:?}"),
        ops: Vec::new(),
        repair: None,
        floor,
        store_p50_over_floor: None,
        floor_total_cpu_ms: None,
        store_p50_over_committee_floor: None,
        store_cpu_over_floor_cpu: None,
        store_cpu_over_committee_floor_cpu: None,
        composed_over_floor: None,
        store_p50_over_composed: None,
        repair_fetched_over_rebuilt: None,
        repair_symbols_over_rebuilt: None,
        round_trips_per_store: None,
        convergence_ms: None,
        rss_mib: 0.0,
        rss_per_node_mib: 0.0,
        client_paths: None,
    };

    println!(
        "committee: {nodes} nodes, {shards} shards, QUIC ({congestion:?}) on 127.0.0.1 ({}), RocksDB in {}",
        options
            .wan
            .as_ref()
            .map_or_else(|| "loopback".to_string(), |w| format!("shaped: {w}")),
        dir.path().display()
    );
    println!(
        "{:>8} {:>7} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>10} {:>9} {:>12} {:>10}",
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
        "cpu ms/store",
        "sent/byte"
    );
    let cases: &[(usize, usize, usize)] = match (scale, quick) {
        (true, true) => &[(1 << 10, 1, 3), (1 << 20, 1, 2), (16 << 20, 1, 1)],
        (true, false) => &[(1 << 10, 1, 10), (1 << 20, 1, 5), (16 << 20, 1, 3)],
        (false, true) => &[(1 << 10, 1, 5), (1 << 20, 1, 3), (16 << 20, 1, 1)],
        (false, false) => &[
            (1 << 10, 1, 30),
            (1 << 10, 8, 10),
            (1 << 20, 1, 10),
            (1 << 20, 8, 4),
            (16 << 20, 1, 15),
            (16 << 20, 8, 2),
        ],
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
    let calls = |client: &Client| -> u64 { client.health().iter().map(|h| h.calls).sum() };
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

        if std::env::var_os("FLOE_BENCH_IDLE").is_some() {
            let before = crate::rss::cpu_ms();
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            println!(
                "idle committee: {:.1} ms CPU per second",
                cpu_since(before) / 3.0
            );
        }
        let cpu_before = crate::rss::cpu_ms();
        let (served_before, _) = served(&running);
        let wire_before = floe_net::shaper::totals()
            .sent_bytes
            .load(Ordering::Relaxed);
        let calls_before = calls(&client);
        let (store_s, store_lat, ids) = timed(&client, blobs, |client, blob| async move {
            let outcome = client.store(blob, 10, StoreOptions::default()).await?;
            Ok(outcome.blob_id)
        })
        .await?;
        let stores = (clients * ops) as f64;
        let store_cpu_ms = cpu_since(cpu_before) / stores;
        let stored = (bytes * clients * ops) as f64;
        let sent_per_byte = (served(&running).0 - served_before) as f64 / stored;
        let wire_per_byte = options.wan.as_ref().map(|_| {
            let wire = floe_net::shaper::totals()
                .sent_bytes
                .load(Ordering::Relaxed);
            (wire - wire_before) as f64 / stored
        });
        let calls_per_node = (calls(&client) - calls_before) as f64 / stores / nodes as f64;
        let total = stored / MIB;
        all_ids.extend(ids.iter().flatten().copied());
        let (read_s, read_lat, _) = timed(&client, ids, |client, blob_id| async move {
            client.read(blob_id, ReadOptions::default()).await?;
            Ok(blob_id)
        })
        .await?;
        let store_p50_ms = percentile(store_lat.clone(), 0.5);
        let floor_ms = match (&options.wan, &report.floor) {
            (Some(wan), _) => Some(wan_floor_ms(&committee, wan, bytes, encode_ms)?),
            (None, Some(floor)) if bytes == FLOOR_BLOB_BYTES => Some(floor.floor_ms),
            _ => None,
        };
        let record = OpRecord {
            blob_bytes: bytes,
            clients,
            ops_per_client: ops,
            store_mib_s: total / store_s,
            store_p50_ms,
            store_p99_ms: percentile(store_lat, 0.99),
            read_mib_s: total / read_s,
            read_p50_ms: percentile(read_lat.clone(), 0.5),
            read_p99_ms: percentile(read_lat, 0.99),
            encode_ms,
            store_over_encode: store_p50_ms / encode_ms.max(1e-3),
            store_cpu_ms,
            sent_per_stored_byte: sent_per_byte,
            wire_bytes_per_stored_byte: wire_per_byte,
            calls_per_node_per_store: calls_per_node,
            floor_ms,
            store_p50_over_floor: floor_ms.map(|f| store_p50_ms / f.max(1e-3)),
        };
        println!(
            "{:>8} {:>7} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>10.1} {:>8.1}x {:>12.1} {:>10.2}",
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
            record.store_cpu_ms,
            record.sent_per_stored_byte
        );
        report.ops.push(record);
    }
    report.rss_mib = crate::rss::current_mib().unwrap_or(0.0);
    report.client_paths = PathSummary::of(&client);
    if let Some(p) = &report.client_paths {
        println!(
            "client's QUIC paths: MTU {}-{} bytes, {} lost of {} packets sent, {} congestion events, {} black holes suspected, {} lost of {} MTU probes",
            p.mtu_min, p.mtu_max, p.lost_packets, p.sent_packets, p.congestion_events, p.black_holes, p.lost_probes, p.sent_probes
        );
    }
    report.rss_per_node_mib = (report.rss_mib - rss_before) / nodes as f64;
    if let (Some(wan), Some(small)) = (
        &options.wan,
        report.ops.iter().find(|r| r.blob_bytes == 1 << 10),
    ) {
        let rtt_ms = ((wan.latency_min + wan.latency_max) / 2 * 2).as_secs_f64() * 1e3;
        report.round_trips_per_store = Some((small.store_p50_ms - small.encode_ms) / rtt_ms);
    }
    if selected("repair") {
        repair(
            &mut report,
            &local,
            &mut running,
            &client,
            &mut seed,
            all_ids,
            quick || scale,
        )
        .await?;
    }
    // After the repair: the certificate is of a blob no node holds data of,
    // which would count as drift the repair could never mend.
    if scale {
        report.convergence_ms = Some(convergence(&local, &running).await?);
    }
    if let Some((symbols, with_proofs)) = report.repair.as_ref().map(RepairRecord::ratios) {
        report.repair_fetched_over_rebuilt = Some(with_proofs);
        report.repair_symbols_over_rebuilt = Some(symbols);
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
        println!(
            "the same floor in the committee's shape ({} members, a connection and a store each): \
             QUIC {:.0} + durable write {:.0}, with the encode and verify above {:.0} ms CPU, \
             no store under {:.0} ms",
            floor.members,
            floor.committee_transport_cpu_ms,
            floor.committee_storage_cpu_ms,
            floor.committee_total_cpu_ms,
            floor.committee_floor_ms
        );
        let composed = &floor.composed;
        let composed_over_floor = composed.wall_ms / floor.floor_ms.max(1e-3);
        println!(
            "the floor's pieces run together in the committee's shape, without the protocol \
             (encode, then every member's pairs at once, each checked and kept as it arrives): \
             {:.1} ms = {composed_over_floor:.2}x the floor ({:.2}x the committee-shaped one), \
             {:.0} ms CPU = {:.2}x the floor's, the cores busy {:.0} % of the time",
            composed.wall_ms,
            composed.wall_ms / floor.committee_floor_ms.max(1e-3),
            composed.cpu_ms,
            composed.cpu_ms / floor.total_cpu_ms.max(1e-3),
            100.0 * composed.cpu_ms / floor.cores as f64 / composed.wall_ms.max(1e-3)
        );
        report.composed_over_floor = Some(composed_over_floor);
        report.floor_total_cpu_ms = Some(floor.total_cpu_ms);
    }
    if let Some(record) = report
        .ops
        .iter()
        .find(|r| r.blob_bytes == FLOOR_BLOB_BYTES && r.clients == 1)
    {
        report.store_p50_over_floor = record.store_p50_over_floor;
        if let Some(ratio) = record.store_p50_over_floor {
            println!(
                "store_p50_over_floor: a 16 MiB store's p50 is {ratio:.2}x its floor (target <= 1.2)"
            );
        }
        if let Some(floor) = &report.floor {
            let p50_over = record.store_p50_ms / floor.committee_floor_ms.max(1e-3);
            let cpu_over = |total_cpu_ms: f64| record.store_cpu_ms / total_cpu_ms.max(1e-3);
            let (cpu_over_floor, cpu_over_committee) = (
                cpu_over(floor.total_cpu_ms),
                cpu_over(floor.committee_total_cpu_ms),
            );
            report.store_p50_over_committee_floor = Some(p50_over);
            report.store_cpu_over_floor_cpu = Some(cpu_over_floor);
            report.store_cpu_over_committee_floor_cpu = Some(cpu_over_committee);
            let over_composed = record.store_p50_ms / floor.composed.wall_ms.max(1e-3);
            report.store_p50_over_composed = Some(over_composed);
            println!(
                "store_p50_over_composed: a 16 MiB store's p50 is {over_composed:.2}x the floor's \
                 pieces run together: what the protocol and the node add"
            );
            println!(
                "a 16 MiB store's p50 is {p50_over:.2}x the committee-shaped floor; its CPU \
                 ({:.0} ms) is {cpu_over_floor:.2}x the floor's and {cpu_over_committee:.2}x \
                 the committee-shaped floor's",
                record.store_cpu_ms
            );
        }
    }
    if let (Some(ratio), Some(symbols)) = (
        report.repair_fetched_over_rebuilt,
        report.repair_symbols_over_rebuilt,
    ) {
        println!("repair_fetched_over_rebuilt: {ratio:.2} (target <= 1.3; proofs included); the symbols alone {symbols:.2}");
    }
    if let Some(rt) = report.round_trips_per_store {
        println!(
            "round trips per store (1 KiB store p50 less its encode, over the link's RTT): {rt:.1}"
        );
    }
    if let Some(ms) = report.convergence_ms {
        println!(
            "a new certificate told to one node reached all {nodes} by anti-entropy in {ms:.0} ms"
        );
    }
    println!(
        "resident memory: {:.0} MiB for the process, {:.1} MiB per node\n",
        report.rss_mib, report.rss_per_node_mib
    );
    for node in running.into_iter().flatten() {
        node.shutdown(Duration::from_secs(2)).await;
    }
    Ok(report)
}

/// Request and answer bytes every running node's server has carried, and
/// the requests it answered.
pub(crate) fn served(running: &[Option<Node>]) -> (u64, u64) {
    running
        .iter()
        .flatten()
        .fold((0, 0), |(bytes, requests), node| {
            let stats = node.server_stats();
            (
                bytes
                    + stats.bytes_in.load(Ordering::Relaxed)
                    + stats.bytes_out.load(Ordering::Relaxed),
                requests + stats.ok.load(Ordering::Relaxed),
            )
        })
}

/// A certificate of a new blob, told to one node only: the time until
/// every node knows it, by anti-entropy alone.
async fn convergence(
    local: &floe_testkit::local::LocalCommittee,
    running: &[Option<Node>],
) -> Result<f64> {
    let facts = floe_testkit::local::certified_facts(local, 1, 10)?;
    let fact = facts
        .into_iter()
        .next()
        .context("no fact made")?
        .into_fact();
    let blob_id = fact.blob_id();
    let pool = floe_net::Pool::new("127.0.0.1:0".parse()?, None, floe_net::NetConfig::default())?;
    let first = &local.file.committee.members()[0];
    pool.add_peer(first.network_key, first.address.clone())?;
    let start = Instant::now();
    pool.call::<floe_api::PutFact>(&first.network_key, &fact)
        .await
        .context("telling node 0 a certificate")?;
    loop {
        let mut every = true;
        for node in running.iter().flatten() {
            if !node.store().state(&blob_id)?.has_certificate() {
                every = false;
                break;
            }
        }
        if every {
            return Ok(start.elapsed().as_secs_f64() * 1e3);
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(300),
            "a certificate told to one node had not reached every node after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Run `op` over each client's items, the clients concurrently; returns the
/// wall time, every op's latency (ms) and every op's output, per client.
pub(crate) async fn timed<T, U, F, Fut>(
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
