//! `cargo xtask demo`: Floe's main job for now — encode a blob, decode it
//! from a minimal set of slivers, verify it, and report.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use floe_codec::{
    decode, encode, recover_sliver, symbols_needed, Axis, DecodeCheck, EncodingConfig, ShardIndex,
    Sliver,
};

pub fn run(shards: u16, bytes: usize, file: Option<PathBuf>) -> Result<()> {
    let config = EncodingConfig::new(shards)?;
    let blob = match &file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => crate::bench::sample_blob(bytes),
    };
    println!(
        "Floe demo: {} bytes{} over n = {} shards (f = {}, quorum {}, {} primary slivers decode)",
        blob.len(),
        file.as_ref()
            .map(|p| format!(" from {}", p.display()))
            .unwrap_or_default(),
        config.n_shards(),
        config.f(),
        config.quorum(),
        config.primary_source_symbols(),
    );
    let start = Instant::now();
    let (metadata, blob_id, pairs) = encode(&config, &blob)?;
    let encode_ms = start.elapsed().as_secs_f64() * 1e3;
    let stored: usize = pairs
        .iter()
        .map(|p| p.primary.data.len() + p.secondary.data.len())
        .sum();
    println!("blob ID      {blob_id}");
    println!(
        "encoded      {encode_ms:.1} ms: {} sliver pairs, symbol size {} B, {:.2}x stored",
        pairs.len(),
        metadata.symbol_size(),
        stored as f64 / blob.len().max(1) as f64
    );

    // Read as a client would after losing the systematic rows: from the
    // last n - 2f primary slivers, each verified against the blob ID.
    let rows = usize::from(config.primary_source_symbols());
    let slivers: Vec<Sliver> = pairs
        .iter()
        .rev()
        .take(rows)
        .map(|p| p.primary.clone())
        .collect();
    let start = Instant::now();
    let decoded = decode(&blob_id, &metadata, &slivers, DecodeCheck::Strict)?;
    let decode_ms = start.elapsed().as_secs_f64() * 1e3;
    if decoded != blob {
        bail!("decoded bytes differ from the blob");
    }
    println!(
        "decoded      {decode_ms:.1} ms from {rows} non-systematic primary slivers (strict: re-encoded, blob ID matches)"
    );

    let systematic: Vec<Sliver> = pairs.iter().take(rows).map(|p| p.primary.clone()).collect();
    let start = Instant::now();
    let decoded = decode(&blob_id, &metadata, &systematic, DecodeCheck::VerifySlivers)?;
    let fast_ms = start.elapsed().as_secs_f64() * 1e3;
    if decoded != blob {
        bail!("decoded bytes differ from the blob");
    }
    println!("decoded      {fast_ms:.1} ms from the {rows} systematic primary slivers (verified)");
    println!("result       byte-identical");

    // A node lost shard 0's pair: it rebuilds both slivers from recovery
    // symbols that the holders of other slivers send, each with its proof.
    let pair = &pairs[ShardIndex(0)
        .to_pair_index(config.n_shards(), &blob_id)
        .as_usize()];
    let start = Instant::now();
    let mut rebuilt = Vec::new();
    for (axis, lost) in [
        (Axis::Primary, &pair.primary),
        (Axis::Secondary, &pair.secondary),
    ] {
        let symbols = pairs
            .iter()
            .filter(|p| p.index != pair.index)
            .take(symbols_needed(&metadata, axis))
            .map(|p| match axis {
                Axis::Primary => p.secondary.recovery_symbol(&metadata, lost.index),
                Axis::Secondary => p.primary.recovery_symbol(&metadata, lost.index),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sliver = recover_sliver(&metadata, axis, lost.index, symbols)?;
        if sliver != *lost {
            bail!("recovered {axis} sliver differs");
        }
        rebuilt.push(sliver.data.len());
    }
    println!(
        "recovered    {:.1} ms: shard 0's pair ({} + {} bytes) from {} + {} proven symbols of other shards",
        start.elapsed().as_secs_f64() * 1e3,
        rebuilt[0],
        rebuilt[1],
        symbols_needed(&metadata, Axis::Primary),
        symbols_needed(&metadata, Axis::Secondary),
    );
    Ok(())
}
