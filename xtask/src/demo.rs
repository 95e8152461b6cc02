//! `cargo xtask demo`: Floe's main job — start a local committee (real node
//! services, QUIC on 127.0.0.1, RocksDB), store a blob, show its certified
//! status with the evidence, read it back verified, and stop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use floe_client::{Client, ClientConfig, ReadOptions, Status, StoreOptions};
use floe_node::{Limits, Node, Tasks};

pub fn run(nodes: usize, shards: u16, bytes: usize, file: Option<PathBuf>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(nodes, shards, bytes, file))
}

async fn demo(nodes: usize, shards: u16, bytes: usize, file: Option<PathBuf>) -> Result<()> {
    let blob = match &file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => crate::bench::sample_blob(bytes),
    };
    let dir = tempfile::tempdir()?;
    let local = floe_node::local::generate(
        dir.path(),
        nodes,
        shards,
        3_600_000,
        Limits::default(),
        Tasks::default(),
    )
    .context("writing the local committee")?;
    let committee = &local.file.committee;
    println!(
        "Floe demo: a committee of {nodes} nodes holding {shards} shards (f = {}, quorum {} shards), in {}",
        committee.f(),
        committee.quorum_threshold(),
        dir.path().display()
    );
    let mut running = Vec::new();
    for config in &local.configs {
        let node = Node::start(config.clone())
            .await
            .with_context(|| format!("starting {}", config.node_id))?;
        println!(
            "  {} serving on {} with {} shards",
            config.node_id,
            node.address()?,
            node.store().shards().len()
        );
        running.push(node);
    }
    let client = Client::new(&local.file, ClientConfig::default())?;

    let size = blob.len();
    let data = Bytes::from(blob);
    let start = Instant::now();
    let outcome = client
        .store(data.clone(), 5, StoreOptions::default())
        .await?;
    let certified_in = outcome.certificate.message.epoch;
    let signed = outcome.certificate.weight(&client.committee(certified_in));
    println!(
        "stored {size} bytes{} in {:.0} ms\n  blob ID {}\n  certified in epoch {} by {signed}/{shards} shards, available until epoch {}",
        file.as_ref().map(|p| format!(" from {}", p.display())).unwrap_or_default(),
        start.elapsed().as_secs_f64() * 1e3,
        outcome.blob_id,
        certified_in.0,
        outcome.end_epoch.0,
    );

    match client.status(outcome.blob_id).await? {
        Status::Certified { certificate, end_epoch, epoch } => println!(
            "status: certified (verified certificate from epoch {}, {} signers), current epoch {}, until epoch {}",
            certificate.message.epoch.0,
            certificate.signatures.len(),
            epoch.0,
            end_epoch.0
        ),
        other => bail!("expected the blob to be certified, it is {}", other.name()),
    }

    let start = Instant::now();
    let read = client
        .read(
            outcome.blob_id,
            ReadOptions {
                strict: true,
                ..ReadOptions::default()
            },
        )
        .await?;
    if read != data {
        bail!("the blob read back differs from the one stored");
    }
    println!(
        "read back {} bytes in {:.0} ms: every sliver verified against the blob ID, re-encoded and checked, identical",
        read.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    for node in running {
        node.shutdown(Duration::from_secs(2)).await;
    }
    println!("stopped the committee");
    Ok(())
}
