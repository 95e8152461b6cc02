//! Criterion benches for floe-codec. The headline figures (n ∈ {100, 1000},
//! up to 64 MiB, with peak memory) come from `cargo xtask bench codec`;
//! these cover the pieces at sizes criterion can iterate quickly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use floe_codec::{
    decode, encode, recover_sliver, Axis, DecodeCheck, EncodingConfig, Sliver, SliverIndex,
};

fn blob(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn bench_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.sample_size(10);
    for (n, len) in [(100u16, 1usize << 20), (1000, 1), (1000, 4 << 20)] {
        let config = EncodingConfig::new(n).unwrap();
        let data = blob(len);
        let id = format!("n={n}/{len}B");
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("encode", &id), |b| {
            b.iter(|| encode(&config, &data).unwrap())
        });

        let (metadata, blob_id, pairs) = encode(&config, &data).unwrap();
        let rows = usize::from(config.primary_source_symbols());
        let primaries: Vec<Sliver> = pairs.iter().map(|p| p.primary.clone()).collect();
        group.bench_function(BenchmarkId::new("decode_verify_systematic", &id), |b| {
            b.iter(|| {
                decode(
                    &blob_id,
                    &metadata,
                    &primaries[..rows],
                    DecodeCheck::VerifySlivers,
                )
                .unwrap()
            })
        });

        let target = SliverIndex(0);
        let needed = usize::from(config.quorum());
        let symbols: Vec<_> = pairs[..needed]
            .iter()
            .map(|p| p.secondary.recovery_symbol(&metadata, target).unwrap())
            .collect();
        group.bench_function(BenchmarkId::new("recover_primary_sliver", &id), |b| {
            b.iter(|| recover_sliver(&metadata, Axis::Primary, target, symbols.clone()).unwrap())
        });
        group.bench_function(BenchmarkId::new("recovery_symbol", &id), |b| {
            b.iter(|| {
                pairs[1]
                    .secondary
                    .recovery_symbol(&metadata, target)
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
