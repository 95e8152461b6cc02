//! `cargo xtask bench`: figures printed as a table and written as JSON.

use std::{path::PathBuf, time::Instant};

use anyhow::{bail, Context, Result};
use floe_codec::{decode_bytes, encode, DecodeCheck, EncodingConfig, Sliver};
use serde::Serialize;

use crate::rss;

const MIB: f64 = (1 << 20) as f64;

pub fn run(name: Option<&str>, runs: usize, e2e: &crate::bench_e2e::Options) -> Result<()> {
    let quick = e2e.quick;
    if (!e2e.only.is_empty() || !e2e.nodes.is_empty() || e2e.wan.is_some()) && name != Some("e2e") {
        bail!("--only, --nodes and --wan select cases of the e2e benchmark: run `cargo xtask bench e2e ...`");
    }
    match name {
        None => {
            codec(runs, quick)?;
            crate::bench_consensus::run(quick)?;
            crate::bench_store::run(quick)?;
            crate::bench_net::run(runs, quick)?;
            crate::bench_e2e::run(e2e)?;
            crate::bench_sync::run(quick)?;
            crate::bench_migration::run(quick)?;
            summary()
        }
        Some("net") => crate::bench_net::run(runs, quick),
        Some("e2e") => crate::bench_e2e::run(e2e),
        Some("store") => crate::bench_store::run(quick),
        Some("codec") => codec(runs, quick),
        Some("consensus") => crate::bench_consensus::run(quick),
        Some("sync") => crate::bench_sync::run(quick),
        Some("migration") => crate::bench_migration::run(quick),
        Some(other) => {
            bail!("unknown benchmark {other:?}; available: codec, consensus, store, net, e2e, sync, migration")
        }
    }
}

#[derive(Serialize, serde::Deserialize)]
struct CodecRecord {
    n_shards: u16,
    blob_bytes: usize,
    encode_ms: f64,
    decode_ms: f64,
    encode_mib_s: f64,
    decode_mib_s: f64,
    /// Peak RSS while encoding, above the process's RSS before the input
    /// blob was created: the input blob plus everything the encode holds.
    peak_rss_mib: f64,
    /// The same peak including the harness process itself (code, runtime).
    process_peak_rss_mib: f64,
    /// Decode-and-verify from the last n-2f primary slivers (Reed–Solomon
    /// decoding of every column), not only the systematic ones.
    decode_nonsystematic_ms: f64,
    /// Decode from the systematic slivers with [`DecodeCheck::Consistent`]:
    /// slivers verified on arrival, rows the code rebuilt verified here.
    /// The same work as Walrus's `decode_and_verify` (Default check).
    decode_consistent_ms: f64,
    /// The same from the last n-2f slivers (every row rebuilt and checked).
    decode_consistent_nonsystematic_ms: f64,
    /// Fastest and slowest encode of the runs (after a warm-up run).
    encode_min_ms: f64,
    encode_max_ms: f64,
    /// One thread (`RAYON_NUM_THREADS=1`): per-core figures, to set beside
    /// single-threaded Walrus.
    encode_1t_ms: Option<f64>,
    decode_consistent_1t_ms: Option<f64>,
    runs: usize,
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn sample_blob(len: usize) -> Vec<u8> {
    // Deterministic, incompressible-looking bytes (xorshift).
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn codec(runs: usize, quick: bool) -> Result<()> {
    let sizes: &[usize] = if quick {
        &[1, 1 << 20]
    } else {
        &[1, 1 << 20, 64 << 20]
    };
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut records = Vec::new();
    println!(
        "{:>6} {:>8} {:>10} {:>12} {:>10} {:>12} {:>13} {:>14} {:>10} {:>13} {:>17}",
        "n",
        "blob",
        "encode ms",
        "encode MiB/s",
        "decode ms",
        "decode MiB/s",
        "peak RSS MiB",
        "decode RS ms",
        "consist ms",
        "encode 1t ms",
        "encode min-max"
    );
    for &n in &[100u16, 1000] {
        for &len in sizes {
            let case = |threads: Option<&str>| -> Result<CodecRecord> {
                let mut command = std::process::Command::new(&exe);
                command
                    .args([
                        "bench-codec-case",
                        "--shards",
                        &n.to_string(),
                        "--bytes",
                        &len.to_string(),
                    ])
                    .args(["--runs", &runs.to_string()]);
                if let Some(threads) = threads {
                    command.env("RAYON_NUM_THREADS", threads);
                }
                let output = command.output().context("running a codec bench case")?;
                if !output.status.success() {
                    bail!(
                        "codec case n={n} {len} B failed:\n{}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                serde_json::from_slice(&output.stdout)
                    .context("parsing a codec bench case's output")
            };
            let mut record = case(None)?;
            let single = case(Some("1"))?;
            record.encode_1t_ms = Some(single.encode_ms);
            record.decode_consistent_1t_ms = Some(single.decode_consistent_ms);
            println!(
                "{:>6} {:>8} {:>10.2} {:>12.1} {:>10.2} {:>12.1} {:>13.1} {:>14.2} {:>10.2} {:>13.2} {:>17}",
                n,
                human(len),
                record.encode_ms,
                record.encode_mib_s,
                record.decode_ms,
                record.decode_mib_s,
                record.peak_rss_mib,
                record.decode_nonsystematic_ms,
                record.decode_consistent_ms,
                single.encode_ms,
                format!("{:.1}-{:.1}", record.encode_min_ms, record.encode_max_ms)
            );
            records.push(record);
        }
    }
    println!("decode = decode verifying every sliver given, from the n-2f systematic primary slivers; decode RS = the same from the last n-2f (Reed-Solomon on every column); consist = decode from the systematic slivers checking what the code rebuilt (slivers verified on arrival): Walrus's decode_and_verify. Medians of {runs} runs after a warm-up; 1t = one thread (RAYON_NUM_THREADS=1); min-max = the spread of the encodes. Peak RSS while encoding: input blob plus encoder, above the process baseline (process totals in the JSON).");
    write_json("codec", &records)?;
    println!();
    commitment_alternatives()
}

/// Measures one case and prints its record as JSON.
pub fn codec_case(n: u16, len: usize, runs: usize) -> Result<()> {
    let config = EncodingConfig::new(n)?;
    let baseline = rss::current_mib().unwrap_or(0.0);
    let blob = sample_blob(len);
    let (mut enc, mut dec, mut dec_any, mut peak) = (vec![], vec![], vec![], 0f64);
    let (mut consistent, mut consistent_any) = (vec![], vec![]);
    // A warm-up: the thread pool and the per-thread coders start once.
    drop(encode(&config, &blob)?);
    // All encodes first, so the peak of each is not inflated by memory the
    // allocator keeps from an earlier decode.
    let mut encoded = None;
    for _ in 0..runs.max(1) {
        drop(encoded.take());
        rss::reset_peak();
        let start = Instant::now();
        encoded = Some(encode(&config, &blob)?);
        enc.push(ms_since(start));
        peak = peak.max(rss::peak_mib().unwrap_or(0.0));
    }
    let (metadata, blob_id, pairs) = encoded.context("no encode ran")?;
    let rows = usize::from(config.primary_source_symbols());
    let primaries: Vec<Sliver> = pairs.into_iter().map(|p| p.primary).collect();
    for _ in 0..runs.max(1) {
        let systematic = &primaries[..rows];
        let last = &primaries[primaries.len() - rows..];
        for (slivers, check, times) in [
            (systematic, DecodeCheck::VerifySlivers, &mut dec),
            (last, DecodeCheck::VerifySlivers, &mut dec_any),
            (systematic, DecodeCheck::Consistent, &mut consistent),
            (last, DecodeCheck::Consistent, &mut consistent_any),
        ] {
            let start = Instant::now();
            let out = decode_bytes(&blob_id, &metadata, slivers, check)?;
            times.push(ms_since(start));
            if out != blob {
                bail!("n={n} {len} B: decoded bytes differ from the blob");
            }
        }
    }
    let encode_min_ms = enc.iter().copied().fold(f64::INFINITY, f64::min);
    let encode_max_ms = enc.iter().copied().fold(0.0, f64::max);
    let (encode_ms, decode_ms) = (median(enc), median(dec));
    let record = CodecRecord {
        n_shards: n,
        blob_bytes: len,
        encode_ms,
        decode_ms,
        encode_mib_s: len as f64 / MIB / (encode_ms / 1e3),
        decode_mib_s: len as f64 / MIB / (decode_ms / 1e3),
        peak_rss_mib: peak - baseline,
        process_peak_rss_mib: peak,
        decode_nonsystematic_ms: median(dec_any),
        decode_consistent_ms: median(consistent),
        decode_consistent_nonsystematic_ms: median(consistent_any),
        encode_min_ms,
        encode_max_ms,
        encode_1t_ms: None,
        decode_consistent_1t_ms: None,
        runs,
    };
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

pub fn human(len: usize) -> String {
    match len {
        l if l >= 1 << 20 => format!("{} MiB", l >> 20),
        l if l >= 1 << 10 => format!("{} KiB", l >> 10),
        l => format!("{l} B"),
    }
}

pub fn write_json<T: Serialize>(name: &str, records: &T) -> Result<()> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(records)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The workspace's `target/` directory (honouring `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(|p| p.join("target"))
                .unwrap_or_default()
        })
}

#[derive(Serialize)]
struct CommitmentRecord {
    n_shards: u16,
    symbol_size: usize,
    scheme: &'static str,
    /// Committing to all 2n extended lines of one blob.
    ms_per_blob: f64,
}

/// Measures the alternatives for committing to every symbol of the
/// extended matrix (2n lines of n symbols): BLAKE3 over each contiguous line
/// (what floe-codec does) versus a per-symbol Merkle tree (one BLAKE3 call
/// per symbol, one per inner node).
pub fn commitment_alternatives() -> Result<()> {
    let mut records = Vec::new();
    println!(
        "{:>6} {:>12} {:<34} {:>12}",
        "n", "symbol bytes", "commitment scheme", "ms per blob"
    );
    for (n, s) in [(1000usize, 2usize), (1000, 302), (100, 29_460)] {
        let line = sample_blob(n * s);
        let lines = 2 * n;
        let contiguous = {
            let start = Instant::now();
            for _ in 0..lines {
                std::hint::black_box(blake3::derive_key("bench", std::hint::black_box(&line)));
            }
            ms_since(start)
        };
        let per_symbol = {
            let start = Instant::now();
            for _ in 0..lines {
                let mut level: Vec<[u8; 32]> = line
                    .chunks_exact(s)
                    .map(|symbol| *blake3::hash(symbol).as_bytes())
                    .collect();
                while level.len() > 1 {
                    level = level
                        .chunks(2)
                        .map(|pair| {
                            let mut hasher = blake3::Hasher::new();
                            for node in pair {
                                hasher.update(node);
                            }
                            *hasher.finalize().as_bytes()
                        })
                        .collect();
                }
                std::hint::black_box(level);
            }
            ms_since(start)
        };
        for (scheme, ms) in [
            ("BLAKE3 over each line (chosen)", contiguous),
            ("per-symbol Merkle tree", per_symbol),
        ] {
            println!("{n:>6} {s:>12} {scheme:<34} {ms:>12.1}");
            records.push(CommitmentRecord {
                n_shards: n as u16,
                symbol_size: s,
                scheme,
                ms_per_blob: ms,
            });
        }
    }
    println!("single thread; 2n lines of n symbols each, the hashing an encode does");
    write_json("codec_commitment", &records)
}

/// One line per headline figure of the JSON files the benches wrote.
fn summary() -> Result<()> {
    let dir = target_dir().join("bench");
    let read = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
        serde_json::from_str(&text).ok()
    };
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |bench: &str, what: String, value: String| {
        rows.push((bench.to_owned(), what, value));
    };
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    if let Some(serde_json::Value::Array(records)) = read("codec") {
        for r in records {
            row(
                "codec",
                format!("encode / decode, n={} {} B", r["n_shards"], r["blob_bytes"]),
                format!(
                    "{:.0} / {:.0} MiB/s",
                    num(&r["encode_mib_s"]),
                    num(&r["decode_mib_s"])
                ),
            );
        }
    }
    if let Some(serde_json::Value::Array(records)) = read("consensus") {
        for r in records {
            row(
                "consensus",
                r["case"].as_str().unwrap_or("?").to_owned(),
                format!("{:.3} ms", num(&r["median_ms"])),
            );
        }
    }
    if let Some(r) = read("store") {
        row(
            "store",
            "raw disk write".into(),
            format!("{:.0} MiB/s", num(&r["raw_disk_write_mib_s"])),
        );
        if let Some(ingest) = r["ingest"].as_array() {
            for i in ingest {
                row(
                    "store",
                    format!("ingest {} B x{} writers", i["value_bytes"], i["writers"]),
                    format!(
                        "{:.0} MiB/s ({:.0}% of raw)",
                        num(&i["mib_s"]),
                        100.0 * num(&i["ratio_to_raw_disk"])
                    ),
                );
            }
        }
        row(
            "store",
            "read 64 KiB p50".into(),
            format!("{:.0} us", num(&r["read_64k_p50_us"])),
        );
    }
    if let Some(r) = read("net") {
        if let Some(latency) = r["latency"].as_array() {
            for l in latency {
                row(
                    "net",
                    format!(
                        "{} request p50 / p99",
                        l["transport"].as_str().unwrap_or("?")
                    ),
                    format!("{:.0} / {:.0} us", num(&l["p50_us"]), num(&l["p99_us"])),
                );
            }
        }
        if let Some(ratios) = r["quic_over_tcp"].as_array() {
            for pair in ratios {
                row(
                    "net",
                    format!("QUIC / TCP bulk, {}", pair[0].as_str().unwrap_or("?")),
                    format!("{:.0}%", 100.0 * num(&pair[1])),
                );
            }
        }
    }
    if let Some(r) = read("e2e") {
        if let Some(ops) = r["ops"].as_array() {
            for o in ops {
                row(
                    "e2e",
                    format!(
                        "store / read p50, {} B x{} clients",
                        o["blob_bytes"], o["clients"]
                    ),
                    format!(
                        "{:.1} / {:.1} ms (store {:.1}x encode)",
                        num(&o["store_p50_ms"]),
                        num(&o["read_p50_ms"]),
                        num(&o["store_over_encode"])
                    ),
                );
            }
        }
        let repair = &r["repair"];
        if repair.is_object() {
            row(
                "e2e",
                format!("repair of a wiped node, {} blobs", repair["blobs"]),
                format!(
                    "{:.1} s, fetched {:.2}x rebuilt",
                    num(&repair["seconds"]),
                    num(&repair["fetched_bytes"]) / num(&repair["rebuilt_bytes"])
                ),
            );
        }
    }
    println!("\nsummary ({}):", dir.display());
    let width = rows
        .iter()
        .map(|(_, what, _)| what.len())
        .max()
        .unwrap_or(0);
    for (bench, what, value) in rows {
        println!("  {bench:<10} {what:<width$}  {value}");
    }
    Ok(())
}
