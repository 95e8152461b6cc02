//! `cargo xtask bench store`: sliver ingest, random reads, open time, and
//! the raw write speed of the same disk for comparison.

use std::{io::Write, path::Path, time::Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use floe_codec::{
    Axis, BlobId, BlobMetadata, Hash32, ShardIndex, Sliver, SliverIndex, SliverPair,
    SliverPairHashes, SliverPairIndex,
};
use floe_store::Store;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;

#[derive(Serialize)]
struct Report {
    raw_disk_write_mib_s: f64,
    raw_disk_write_runs_mib_s: Vec<f64>,
    ingest: Vec<Ingest>,
    read_64k_p50_us: f64,
    read_64k_p99_us: f64,
    open_1000_shards_100k_slivers_ms: f64,
}

#[derive(Serialize)]
struct Ingest {
    value_bytes: usize,
    values: usize,
    writers: usize,
    mib_s: f64,
    ratio_to_raw_disk: f64,
}

const MIB: f64 = (1 << 20) as f64;

/// Concurrent writers in the ingest benchmark.
const WRITERS: usize = 2;

fn raw_disk_write(dir: &Path, total: usize) -> Result<f64> {
    let path = dir.join("raw-write-test");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..total / chunk.len() {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok(total as f64 / MIB / secs)
}

fn pair(rng: &mut StdRng, value_bytes: usize, index: u16) -> SliverPair {
    let mut data = |axis| {
        let mut bytes = vec![0u8; value_bytes];
        rng.fill(&mut bytes[..]);
        Sliver {
            axis,
            index: SliverIndex(index),
            data: Bytes::from(bytes),
        }
    };
    SliverPair {
        index: SliverPairIndex(index),
        primary: data(Axis::Primary),
        secondary: data(Axis::Secondary),
    }
}

/// Metadata for the synthetic slivers (the store does not re-verify it).
fn placeholder_metadata() -> Result<BlobMetadata> {
    let hashes = vec![
        SliverPairHashes {
            primary: Hash32([0; 32]),
            secondary: Hash32([0; 32])
        };
        10
    ];
    Ok(BlobMetadata::new(1 << 20, hashes)?)
}

fn ingest(dir: &Path, value_bytes: usize, total: usize) -> Result<(usize, f64)> {
    let shards: Vec<ShardIndex> = (0..10).map(ShardIndex).collect();
    let store = Store::open(dir, shards.clone())?;
    let mut rng = StdRng::seed_from_u64(value_bytes as u64);
    let pairs = (total / value_bytes / 2).max(1);
    // Pre-generate so only the store is timed.
    let work: Vec<(ShardIndex, BlobId, SliverPair)> = (0..pairs)
        .map(|i| {
            (
                shards[i % shards.len()],
                BlobId(rng.gen()),
                pair(&mut rng, value_bytes, i as u16),
            )
        })
        .collect();
    let metadata = placeholder_metadata()?;
    for (_, blob_id, _) in &work {
        store.put_metadata(blob_id, &metadata, 0)?;
    }
    // Two writers, as a node receives pairs over concurrent streams.
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let writers: Vec<_> = work
            .chunks(work.len().div_ceil(WRITERS))
            .map(|part| {
                let store = &store;
                scope.spawn(move || -> Result<()> {
                    for (shard, blob_id, pair) in part {
                        store.put_sliver_pair(*shard, blob_id, pair)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer
                .join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })?;
    // Durable, as before a confirmation: large pairs flushed, the WAL synced.
    store.sync()?;
    let secs = start.elapsed().as_secs_f64();
    Ok((pairs * 2, (pairs * 2 * value_bytes) as f64 / MIB / secs))
}

fn reads(dir: &Path) -> Result<(f64, f64)> {
    let shards: Vec<ShardIndex> = (0..10).map(ShardIndex).collect();
    let store = Store::open(dir, shards.clone())?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut keys = Vec::new();
    for i in 0..2000usize {
        let blob_id = BlobId(rng.gen());
        let shard = shards[i % shards.len()];
        store.put_metadata(&blob_id, &placeholder_metadata()?, 0)?;
        store.put_sliver_pair(shard, &blob_id, &pair(&mut rng, 64 << 10, i as u16))?;
        keys.push((shard, blob_id));
    }
    store.flush()?;
    let mut latencies: Vec<f64> = (0..5000)
        .map(|_| {
            let (shard, blob_id) = keys[rng.gen_range(0..keys.len())];
            let start = Instant::now();
            let sliver = store.sliver(shard, &blob_id, Axis::Primary);
            let us = start.elapsed().as_secs_f64() * 1e6;
            assert!(matches!(sliver, Ok(Some(_))));
            us
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok((
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    ))
}

fn open_time(dir: &Path) -> Result<f64> {
    let shards: Vec<ShardIndex> = (0..1000).map(ShardIndex).collect();
    {
        let store = Store::open(dir, shards.clone())?;
        let mut rng = StdRng::seed_from_u64(9);
        // 100 000 slivers: 50 pairs for each of 1000 shards.
        let metadata = placeholder_metadata()?;
        for i in 0..50_000usize {
            let blob_id = BlobId(rng.gen());
            store.put_metadata(&blob_id, &metadata, 0)?;
            store.put_sliver_pair(
                shards[i % 1000],
                &blob_id,
                &pair(&mut rng, 1024, (i % 1000) as u16),
            )?;
        }
        store.flush()?;
    }
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let store = Store::open(dir, shards.clone())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        drop(store);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

pub fn run(quick: bool) -> Result<()> {
    let root = crate::bench::target_dir().join("bench-tmp").join("store");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let total = if quick { 64 << 20 } else { 512 << 20 };
    // The disk is shared and its speed drifts: measure it around each
    // ingest and compare with the median.
    let mut raw_runs = vec![raw_disk_write(&root, total)?];
    let mut ingests = Vec::new();
    for value_bytes in [1 << 10, 64 << 10, 1 << 20] {
        let dir = root.join(format!("ingest-{value_bytes}"));
        let volume = if value_bytes == 1 << 10 {
            total / 8
        } else {
            total
        };
        let (values, mib_s) = ingest(&dir, value_bytes, volume)?;
        ingests.push(Ingest {
            value_bytes,
            values,
            writers: WRITERS,
            mib_s,
            ratio_to_raw_disk: 0.0,
        });
        std::fs::remove_dir_all(&dir)?;
        raw_runs.push(raw_disk_write(&root, total)?);
    }
    raw_runs.sort_by(f64::total_cmp);
    let raw = raw_runs[raw_runs.len() / 2];
    for ingest in &mut ingests {
        ingest.ratio_to_raw_disk = ingest.mib_s / raw;
    }
    let (p50, p99) = reads(&root.join("reads"))?;
    let open_ms = open_time(&root.join("open"))?;
    let report = Report {
        raw_disk_write_mib_s: raw,
        raw_disk_write_runs_mib_s: raw_runs.clone(),
        ingest: ingests,
        read_64k_p50_us: p50,
        read_64k_p99_us: p99,
        open_1000_shards_100k_slivers_ms: open_ms,
    };
    println!(
        "raw disk write (1 MiB writes + fsync): median {raw:.0} MiB/s of {} runs ({:.0}..{:.0})",
        raw_runs.len(),
        raw_runs[0],
        raw_runs[raw_runs.len() - 1]
    );
    println!(
        "{:>12} {:>10} {:>10} {:>12}",
        "value", "values", "MiB/s", "of raw disk"
    );
    for i in &report.ingest {
        println!(
            "{:>12} {:>10} {:>10.0} {:>11.0}%",
            i.value_bytes,
            i.values,
            i.mib_s,
            i.ratio_to_raw_disk * 100.0
        );
    }
    println!("random 64 KiB sliver read: p50 {p50:.1} us, p99 {p99:.1} us");
    println!("open with 1000 shards, 100 000 slivers: {open_ms:.0} ms");
    let _ = std::fs::remove_dir_all(&root);
    crate::bench::write_json("store", &report)
}
