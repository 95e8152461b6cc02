//! The floor's pieces composed: the least a store can take on this machine
//! when its pieces run together, as they must, rather than one at a time.
//!
//! The floor sums each piece of a store's work measured alone. A store runs
//! them at once on the same cores: the client's encode, then every member's
//! pairs over a connection of its own while each member checks and keeps
//! the pairs that arrived. Run that way, with none of the protocol (no
//! confirmations, signatures, certificate, admission or status check), the
//! pieces cost what running together costs on this machine: caches shared
//! by eight parties, threads woken across cores, cores idle while the
//! last pieces finish. What a store takes beyond this composition is what
//! Floe's protocol and node add.
//!
//! Each member's pairs are all sent at once, as a store sends them; each
//! pair is checked on the runtime thread that received it and written on
//! the blocking pool, as a node does; each member keeps its promise as
//! soon as its pairs are in. That was the quickest of the ways measured
//! (three to six runs each): checked where they arrived, 85.1–92.5 ms;
//! * checked and written on the blocking pool (the node's way before):
//!   93–105 ms;
//! * the same with a window of one or two pairs in flight per member:
//!   95.7–98.1 ms;
//! * checked and written on the runtime's own threads: 123.5–139.4 ms (a
//!   write waiting on the disk holds up the connections' I/O);
//! * at most 1, 2 or 4 pairs checked and written at once, over all
//!   members: 160–172, 133–145 and 112–128 ms (a write waiting on the disk
//!   holds a core's turn);
//! * at most 2 or 3 checks at once on the blocking pool, each write after
//!   its check with no bound: 95.3–98.5 ms;
//! * checked in place with `block_in_place` (its thread handing the
//!   runtime's work to another): 95.2–104.6 ms.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use floe_codec::{Axis, BlobId, BlobMetadata, ShardIndex, Sliver, SliverIndex, SliverPair};
use floe_consensus::{Committee, KeyPair};
use floe_net::{Access, Members, Method, NetConfig, Pool, Router, Server};
use floe_net::{Wire, WireError};
use serde::Serialize;

use crate::bench::median;
use crate::bench_floor::{cpu_since, FLOOR_BLOB_BYTES};

/// The composed floor of a 16 MiB store: medians over [`RUNS`] blobs.
#[derive(Serialize)]
pub struct ComposedRecord {
    pub blob_bytes: usize,
    pub runs: usize,
    /// From the encode's start to the last member's last pair kept.
    pub wall_ms: f64,
    /// The CPU of one run, client and members together.
    pub cpu_ms: f64,
}

/// Blobs measured, after one that warms every path and store up.
const RUNS: usize = 5;

/// One pair on the wire: its index, the primary sliver's length, then both
/// slivers' bytes, handed over as they are (no copy into one body).
struct PairBody(SliverPair);

impl Wire for PairBody {
    fn to_frame(&self) -> Result<Bytes, WireError> {
        Ok(self.to_chunks()?.concat().into())
    }

    fn to_chunks(&self) -> Result<Vec<Bytes>, WireError> {
        let pair = &self.0;
        let mut head = Vec::with_capacity(6);
        head.extend_from_slice(&pair.index.0.to_le_bytes());
        let primary = u32::try_from(pair.primary.data.len())
            .map_err(|_| WireError("a primary sliver over 4 GiB".into()))?;
        head.extend_from_slice(&primary.to_le_bytes());
        Ok(vec![
            head.into(),
            pair.primary.data.clone(),
            pair.secondary.data.clone(),
        ])
    }

    fn from_frame(mut frame: Bytes) -> Result<Self, WireError> {
        if frame.len() < 6 {
            return Err(WireError("a pair body shorter than its head".into()));
        }
        let index = frame.get_u16_le();
        let primary = frame.get_u32_le() as usize;
        if primary > frame.len() {
            return Err(WireError("a primary sliver past the body's end".into()));
        }
        let secondary = frame.split_off(primary);
        Ok(Self(SliverPair {
            index: floe_codec::SliverPairIndex(index),
            primary: Sliver {
                axis: Axis::Primary,
                index: SliverIndex(0),
                data: frame,
            },
            secondary: Sliver {
                axis: Axis::Secondary,
                index: SliverIndex(0),
                data: secondary,
            },
        }))
    }
}

/// Sends a member one pair, which it checks and keeps.
struct KeepPair;

impl Method for KeepPair {
    const KIND: u16 = 3;
    const NAME: &'static str = "keep pair";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 64 << 20;
    const MAX_RESPONSE_BYTES: u32 = 64;
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
    type Request = PairBody;
    type Response = u64;
    type Error = String;
}

/// A member: its store, and the metadata of the blob being stored.
struct Member {
    store: floe_store::Store,
    metadata: std::sync::Mutex<Option<(BlobId, Arc<BlobMetadata>)>>,
    n_shards: u16,
}

impl Member {
    /// Keeps a checked pair.
    fn put(&self, blob_id: BlobId, shard: ShardIndex, pair: &SliverPair) -> Result<u64, String> {
        self.store
            .put_sliver_pair(shard, &blob_id, pair)
            .map_err(|e| e.to_string())?;
        Ok(pair.byte_len() as u64)
    }

    /// Checks `pair` against the metadata: the blob and shard it is of.
    fn check(&self, mut pair: SliverPair) -> Result<(BlobId, ShardIndex, SliverPair), String> {
        let (blob_id, metadata) = self
            .metadata
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .clone()
            .ok_or("no metadata")?;
        let n = self.n_shards;
        if pair.index.0 >= n {
            return Err(format!("pair {} of {n} shards", pair.index.0));
        }
        pair.primary.index = SliverIndex(pair.index.0);
        pair.secondary.index = SliverIndex(n - 1 - pair.index.0);
        pair.verify(&metadata).map_err(|e| e.to_string())?;
        let shard = pair.index.to_shard_index(n, &blob_id);
        Ok((blob_id, shard, pair))
    }
}

/// Measures [`ComposedRecord`] for `committee`'s shape: a server and a
/// store per member, one client pool, each member's pairs all sent at once.
pub async fn composed(committee: &Committee) -> Result<ComposedRecord> {
    let encoding = committee.encoding();
    let n_shards = committee.n_shards();
    let config = NetConfig::default();
    let pool = Arc::new(Pool::new("127.0.0.1:0".parse()?, None, config.clone())?);
    let dirs = (0..committee.members().len())
        .map(|_| tempfile::tempdir())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut members = Vec::new();
    let mut servers = Vec::new();
    let mut peers = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let shards: Vec<ShardIndex> = (0..n_shards)
            .map(ShardIndex)
            .filter(|&s| committee.shard_holder(s).map(|m| m.as_usize()) == Some(i))
            .collect();
        let member = Arc::new(Member {
            store: floe_store::Store::open(dir.path(), shards)?,
            metadata: std::sync::Mutex::new(None),
            n_shards,
        });
        let key = KeyPair::from_seed(&[(i as u8).wrapping_add(101); 32]);
        let identity = floe_net::tls::TlsIdentity::new(&key)?;
        let serving = Arc::clone(&member);
        let router = Router::new().route::<KeepPair, _, _>(move |_, body: PairBody| {
            let member = Arc::clone(&serving);
            async move {
                let (blob_id, shard, pair) = member.check(body.0)?;
                floe_net::spawn_blocking(move || member.put(blob_id, shard, &pair))
                    .await
                    .map_err(|e| e.to_string())?
            }
        });
        let server = Server::bind(
            "127.0.0.1:0".parse()?,
            &identity,
            Members::default(),
            router,
            config.clone(),
        )?;
        pool.add_peer(key.public(), server.local_addr()?.to_string())?;
        servers.push(server);
        peers.push(key.public());
        members.push(member);
    }
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for run in 0..=RUNS {
        let mut blob = crate::bench::sample_blob(FLOOR_BLOB_BYTES + 8);
        blob[..8].copy_from_slice(&(0xF100_u64 + run as u64).to_le_bytes());
        blob.truncate(FLOOR_BLOB_BYTES);
        let blob = Bytes::from(blob);
        let (start, before) = (Instant::now(), crate::rss::cpu_ms());
        let (metadata, blob_id, pairs) = floe_codec::encode(&encoding, &blob)?;
        let metadata = Arc::new(metadata);
        let mut held: Vec<Vec<SliverPair>> = vec![Vec::new(); members.len()];
        for pair in pairs {
            let shard = pair.index.to_shard_index(n_shards, &blob_id);
            let holder = committee
                .shard_holder(shard)
                .context("a shard without a holder")?;
            held[holder.as_usize()].push(pair);
        }
        // Each member's pairs all at once, and its promise as soon as they
        // are kept, while the other members' pairs still arrive.
        let mut uploads = tokio::task::JoinSet::new();
        for ((member, peer), pairs) in members.iter().zip(&peers).zip(held) {
            member.store.put_metadata(&blob_id, &metadata, 0)?;
            *member
                .metadata
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))? = Some((blob_id, Arc::clone(&metadata)));
            let (pool, peer, member) = (Arc::clone(&pool), *peer, Arc::clone(member));
            uploads.spawn(async move {
                let mut calls = tokio::task::JoinSet::new();
                for pair in pairs {
                    let pool = Arc::clone(&pool);
                    calls.spawn(async move { pool.call::<KeepPair>(&peer, &PairBody(pair)).await });
                }
                while let Some(call) = calls.join_next().await {
                    call?.map_err(|e| anyhow::anyhow!("a pair not kept: {e}"))?;
                }
                let promise = crate::bench_floor::promise(blob_id);
                tokio::task::spawn_blocking(move || member.store.promise(promise)).await??;
                anyhow::Ok(())
            });
        }
        while let Some(upload) = uploads.join_next().await {
            upload??;
        }
        // The first run warms paths (MTU discovery), stores and pools up.
        if run > 0 {
            walls.push(start.elapsed().as_secs_f64() * 1e3);
            cpus.push(cpu_since(before));
        }
    }
    // The stores close before their directories go.
    drop(servers);
    drop(members);
    drop(dirs);
    Ok(ComposedRecord {
        blob_bytes: FLOOR_BLOB_BYTES,
        runs: RUNS,
        wall_ms: median(walls),
        cpu_ms: median(cpus),
    })
}
