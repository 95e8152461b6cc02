//! The floor of `cargo xtask bench e2e`: the least CPU a store costs on
//! this machine, each piece of the work measured alone.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::bench::median;

/// The blob size the target speaks of, and the floor is measured for.
pub const FLOOR_BLOB_BYTES: usize = 16 << 20;

/// CPU milliseconds this process used since `before` (0 without a clock).
pub fn cpu_since(before: Option<f64>) -> f64 {
    match (before, crate::rss::cpu_ms()) {
        (Some(before), Some(after)) => after - before,
        _ => 0.0,
    }
}

/// The least CPU a store of one blob costs on this machine: each piece of
/// the work the protocol requires, measured alone with the parts the
/// committee runs on (no contention, no waiting on peers). The client and
/// every node share this machine's cores here, so no store can finish in
/// less than `total_cpu_ms / cores`.
#[derive(Serialize)]
pub struct FloorRecord {
    pub blob_bytes: usize,
    /// Bytes of all sliver pairs: what the client sends and the nodes keep.
    pub sliver_bytes: usize,
    pub cores: usize,
    /// The client's encode (the codec-only encode's CPU time).
    pub encode_cpu_ms: f64,
    /// The nodes' verification of every sliver against the metadata.
    pub verify_cpu_ms: f64,
    /// Every sliver over floe-net (QUIC, TLS 1.3) on loopback, both ends.
    pub transport_cpu_ms: f64,
    /// Every pair into floe-store (RocksDB on this disk), made durable.
    pub storage_cpu_ms: f64,
    pub total_cpu_ms: f64,
    pub floor_ms: f64,
    /// `floor_ms` over the codec-only encode's wall time.
    pub floor_over_encode: f64,
    /// The committee's members. The `committee_*` figures measure the
    /// transport and storage pieces again in the committee's shape: each
    /// member's pairs over a connection of its own (one client endpoint, a
    /// server per member, two streams each, all members at once) and into
    /// a store of its own; so a committee of `members` nodes on one
    /// machine shows what its connections, blob files and directory
    /// entries per member cost, beside the floor, not in it.
    pub members: usize,
    /// Every member's slivers over its own connection, both ends.
    pub committee_transport_cpu_ms: f64,
    /// Every member's pairs into its own store, made durable.
    pub committee_storage_cpu_ms: f64,
    /// The encode and verify pieces above plus the two committee-shaped
    /// pieces.
    pub committee_total_cpu_ms: f64,
    /// `committee_total_cpu_ms` over the cores.
    pub committee_floor_ms: f64,
    /// The pieces run together in the committee's shape, as a store runs
    /// them, without the protocol (see `bench_composed`).
    pub composed: crate::bench_composed::ComposedRecord,
}

/// The codec-only encode of `blobs` (cycled, 5 encodes): median wall time
/// and median CPU time, in milliseconds. (The mean CPU time counted the
/// first encode's warm-up, fresh pages and the thread pool's start, and
/// moved the floor's encode piece between 82 and 131 ms from run to run.)
pub fn codec_encode(encoding: &floe_codec::EncodingConfig, blobs: &[Bytes]) -> (f64, f64) {
    let encodes = 5;
    let (wall, cpu): (Vec<f64>, Vec<f64>) = blobs
        .iter()
        .cycle()
        .take(encodes)
        .map(|blob| {
            let (start, before) = (Instant::now(), crate::rss::cpu_ms());
            let _ = floe_codec::encode(encoding, blob);
            (start.elapsed().as_secs_f64() * 1e3, cpu_since(before))
        })
        .unzip();
    (median(wall), median(cpu))
}

/// Each piece of the floor is measured this many times and the median
/// kept: on a machine whose speed swings between runs, one sample of each
/// made the floor itself move by a quarter from run to run.
const SAMPLES: usize = 5;

/// The median CPU milliseconds of [`SAMPLES`] runs of `work`.
fn median_cpu(mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let before = crate::rss::cpu_ms();
        work()?;
        samples.push(cpu_since(before));
    }
    Ok(median(samples))
}

/// Measures the floor (see [`FloorRecord`]) for a blob of
/// [`FLOOR_BLOB_BYTES`], one piece at a time, each the median of
/// [`SAMPLES`] runs.
pub async fn floor(committee: &floe_consensus::Committee) -> Result<FloorRecord> {
    // First: the pieces measured alone leave hundreds of MiB of deleted
    // stores behind, whose trimming could slow the composition's syncs.
    let composed = crate::bench_composed::composed(committee).await?;
    let encoding = &committee.encoding();
    let blob = Bytes::from(crate::bench::sample_blob(FLOOR_BLOB_BYTES));
    let (encode_ms, encode_cpu_ms) = codec_encode(encoding, std::slice::from_ref(&blob));
    let (metadata, blob_id, pairs) = floe_codec::encode(encoding, &blob)?;
    let slivers: Vec<Bytes> = pairs
        .iter()
        .flat_map(|pair| [pair.primary.data.clone(), pair.secondary.data.clone()])
        .collect();
    let sliver_bytes = slivers.iter().map(Bytes::len).sum();

    // One pair at a time, as a node checks each pair a request brings on a
    // blocking thread of its own.
    let verify_cpu_ms = median_cpu(|| {
        pairs
            .iter()
            .try_for_each(|pair| pair.verify(&metadata))
            .context("verifying the slivers")
    })?;

    // The handshake and a first upload happen before the clock starts, as
    // a committee's connections are up before a store.
    let transport = crate::bench_net::Transport::quic(floe_net::NetConfig::default()).await?;
    transport.settle_path(slivers[0].clone(), 20).await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let before = crate::rss::cpu_ms();
        transport.upload_all(slivers.clone(), 8).await?;
        samples.push(cpu_since(before));
    }
    let transport_cpu_ms = median(samples);
    drop(transport);

    // Every pair into one store that holds every shard.
    let all: Vec<_> = (0..pairs.len() as u16)
        .map(floe_codec::ShardIndex)
        .zip(&pairs)
        .collect();
    let storage_cpu_ms = storage_cpu(std::slice::from_ref(&all), &metadata, &blob_id)?;

    // The same pairs, each with the member that holds its shard.
    let members = committee.members().len();
    let mut held: Vec<Vec<(floe_codec::ShardIndex, &floe_codec::SliverPair)>> =
        vec![Vec::new(); members];
    for pair in &pairs {
        let shard = pair.index.to_shard_index(committee.n_shards(), &blob_id);
        let member = committee
            .shard_holder(shard)
            .context("a shard without a holder")?;
        held[member.as_usize()].push((shard, pair));
    }
    let committee_transport_cpu_ms = committee_transport(&held).await?;
    let committee_storage_cpu_ms = storage_cpu(&held, &metadata, &blob_id)?;

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let total_cpu_ms = encode_cpu_ms + verify_cpu_ms + transport_cpu_ms + storage_cpu_ms;
    let floor_ms = total_cpu_ms / cores as f64;
    let committee_total_cpu_ms =
        encode_cpu_ms + verify_cpu_ms + committee_transport_cpu_ms + committee_storage_cpu_ms;
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
        members,
        committee_transport_cpu_ms,
        committee_storage_cpu_ms,
        committee_total_cpu_ms,
        committee_floor_ms: committee_total_cpu_ms / cores as f64,
        composed,
    })
}

/// Pairs by member, with the shard each is of.
type Held<'a> = [Vec<(floe_codec::ShardIndex, &'a floe_codec::SliverPair)>];

/// CPU milliseconds (median of [`SAMPLES`]) of sending every member its
/// slivers over floe-net, all members at once: one client pool, a server
/// and a connection per member, each path settled before the clock starts.
async fn committee_transport(held: &Held<'_>) -> Result<f64> {
    let config = floe_net::NetConfig::default();
    let pool = Arc::new(floe_net::Pool::new(
        "127.0.0.1:0".parse()?,
        None,
        config.clone(),
    )?);
    let mut servers = Vec::with_capacity(held.len());
    let mut peers = Vec::with_capacity(held.len());
    for member in 0..held.len() {
        let key = floe_consensus::KeyPair::from_seed(&[member as u8 + 1; 32]);
        let server = crate::bench_net::upload_server(&key, config.clone())?;
        pool.add_peer(key.public(), server.local_addr()?.to_string())?;
        servers.push(server);
        peers.push(key.public());
    }
    let slivers: Vec<Vec<Bytes>> = held
        .iter()
        .map(|pairs| {
            pairs
                .iter()
                .flat_map(|(_, pair)| [pair.primary.data.clone(), pair.secondary.data.clone()])
                .collect()
        })
        .collect();
    for (peer, slivers) in peers.iter().zip(&slivers) {
        if let Some(first) = slivers.first() {
            crate::bench_net::settle_path(&pool, *peer, first.clone(), 20).await?;
        }
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let before = crate::rss::cpu_ms();
        let mut uploads = tokio::task::JoinSet::new();
        for (peer, slivers) in peers.iter().zip(&slivers) {
            let (pool, peer, slivers) = (Arc::clone(&pool), *peer, slivers.clone());
            uploads
                .spawn(async move { crate::bench_net::upload_to(&pool, peer, slivers, 2).await });
        }
        while let Some(done) = uploads.join_next().await {
            done??;
        }
        samples.push(cpu_since(before));
    }
    drop(servers);
    Ok(median(samples))
}

/// CPU milliseconds (median of [`SAMPLES`]) of every holder in `held`
/// keeping its pairs durably in a store of its own, each sample in fresh
/// stores opened before the clock starts: the metadata, the pairs, the
/// promise of a confirmation.
fn storage_cpu(
    held: &Held<'_>,
    metadata: &floe_codec::BlobMetadata,
    blob_id: &floe_codec::BlobId,
) -> Result<f64> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let dirs = held
            .iter()
            .map(|_| tempfile::tempdir())
            .collect::<std::io::Result<Vec<_>>>()?;
        let stores = held
            .iter()
            .zip(&dirs)
            .map(|(pairs, dir)| {
                floe_store::Store::open(dir.path(), pairs.iter().map(|(s, _)| *s).collect())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let before = crate::rss::cpu_ms();
        for (store, pairs) in stores.iter().zip(held) {
            keep(store, blob_id, metadata, pairs)?;
        }
        samples.push(cpu_since(before));
    }
    Ok(median(samples))
}

/// What a node keeps of a blob it stores: the metadata, its pairs, the
/// promise of a confirmation.
fn keep(
    store: &floe_store::Store,
    blob_id: &floe_codec::BlobId,
    metadata: &floe_codec::BlobMetadata,
    pairs: &[(floe_codec::ShardIndex, &floe_codec::SliverPair)],
) -> Result<()> {
    store.put_metadata(blob_id, metadata, 0)?;
    for (shard, pair) in pairs {
        store.put_sliver_pair(*shard, blob_id, pair)?;
    }
    store.promise(promise(*blob_id))?;
    Ok(())
}

/// The promise of a confirmation a holder keeps for `blob_id`.
pub fn promise(
    blob_id: floe_codec::BlobId,
) -> floe_consensus::ProtocolMessage<floe_consensus::StorageConfirmation> {
    floe_consensus::ProtocolMessage::new(
        floe_consensus::Epoch(0),
        floe_consensus::StorageConfirmation {
            blob_id,
            end_epoch: floe_consensus::Epoch(1),
            deletable: false,
            owner: None,
        },
    )
}
