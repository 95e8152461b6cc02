//! Floe developer tasks, run as `cargo xtask <task>`.
//!
//! * `demo`: a local committee stores a blob, certifies it and reads it back.
//! * `bench [codec|consensus|store|net|e2e]`: run the benchmarks, print a table, write
//!   `target/bench/<name>.json`.

mod bench;
mod bench_consensus;
mod bench_e2e;
mod bench_net;
mod bench_store;
mod demo;
mod rss;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Floe developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Start a local committee, store a blob, show its certificate, read it
    /// back verified, and stop.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 7)]
        nodes: usize,
        /// Number of shards.
        #[arg(long, default_value_t = 100)]
        shards: u16,
        /// Blob size in bytes (a deterministic sample is generated).
        #[arg(long, default_value_t = 8 << 20)]
        bytes: usize,
        /// Store this file instead of a generated sample.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Run benchmarks and write target/bench/<name>.json.
    Bench {
        /// Which benchmark: `codec`, `consensus`, `store`, `net` or `e2e` (default: all).
        name: Option<String>,
        /// Runs per case; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Only the small cases (for a quick check).
        #[arg(long)]
        quick: bool,
    },
    /// One codec case, measured in a fresh process so its peak memory is
    /// its own (run by `bench codec`).
    #[command(hide = true)]
    BenchCodecCase {
        #[arg(long)]
        shards: u16,
        #[arg(long)]
        bytes: usize,
        #[arg(long)]
        runs: usize,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Demo {
            nodes,
            shards,
            bytes,
            file,
        } => demo::run(nodes, shards, bytes, file),
        Task::Bench { name, runs, quick } => bench::run(name.as_deref(), runs.max(1), quick),
        Task::BenchCodecCase {
            shards,
            bytes,
            runs,
        } => bench::codec_case(shards, bytes, runs),
    }
}
