//! Floe developer tasks, run as `cargo xtask <task>`.
//!
//! * `testnet up|down|status|logs|kill|restart|wipe`: a local network of
//!   `floe-node` processes.
//! * `demo`: a fresh testnet stores a sample file with `floe`, shows its
//!   status, reads it back, compares, and stops.
//! * `chaos`: stores and reads while nodes are killed, restarted and wiped,
//!   then checks that nothing certified was lost.
//! * `bench [codec|consensus|store|net|e2e]`: run the benchmarks, print a table, write
//!   `target/bench/<name>.json`.
//! * `dist`: `floe` and `floe-node` in release, packed as a Debian package
//!   and a tarball in `target/dist/`.
//! * `fuzz [--duration S] [TARGET]`: run the floe-fuzz targets, print
//!   executions per target, save failing inputs under `target/fuzz/crashes/`.

mod bench;
mod bench_composed;
mod bench_consensus;
mod bench_e2e;
mod bench_floor;
mod bench_migration;
mod bench_net;
mod bench_repair;
mod bench_store;
mod bench_sync;
mod dist;
mod fuzz;
mod rss;
mod testnet;

use anyhow::Result;
use clap::{Parser, Subcommand};
use floe_testkit::drill::ChaosConfig;

/// Counts allocations per thread for `fuzz` (a pass-through to the system
/// allocator for every other task).
#[global_allocator]
static ALLOC: floe_fuzz::CountingAlloc = floe_fuzz::CountingAlloc;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Floe developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// A local network of floe-node processes (default dir: target/testnet).
    Testnet {
        #[command(subcommand)]
        action: testnet::Action,
        /// The testnet's directory.
        #[arg(long, global = true)]
        dir: Option<std::path::PathBuf>,
    },
    /// Stores and reads against a fresh testnet while killing, restarting
    /// and wiping random nodes (never more than f shards down), then checks
    /// every certified blob; exits non-zero on any loss or wrong byte.
    Chaos {
        /// How long the faults run, in seconds (at most 3600).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        duration: u64,
        /// Number of nodes.
        #[arg(long, default_value_t = 7)]
        nodes: usize,
        /// Number of shards.
        #[arg(long, default_value_t = 100)]
        shards: u16,
        /// Seed of the random blobs and faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Largest blob stored, in bytes (sizes are drawn up to it). From
        /// about 12 MiB on, nodes keep pairs in files of their own.
        #[arg(long, default_value_t = 256 << 10)]
        max_blob: usize,
        /// Make this many members hostile for the whole run (together at
        /// most f shards): they answer with proofs about other blobs,
        /// flipped slivers and oversized listings.
        #[arg(long, default_value_t = 0)]
        byzantine: usize,
        /// Instead of killing and wiping nodes at random, drive N committee
        /// changes under the load (a node joins, a member leaves, shards are
        /// reassigned, ...), killing a node that gains shards mid-migration
        /// each time; epochs last 30 s. Any failed read or lost blob fails.
        #[arg(long)]
        epochs: Option<u32>,
    },
    /// Start a testnet of floe-node processes, store a sample file with the
    /// floe CLI, show its status, read it back, compare, and stop.
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
        /// Which benchmark: `codec`, `consensus`, `store`, `net`, `e2e`, `sync` or `migration` (default: all).
        name: Option<String>,
        /// Runs per case; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Only the small cases (for a quick check).
        #[arg(long)]
        quick: bool,
        /// e2e only: run just the cases named, as `SIZExCLIENTS` (`16MiBx1`,
        /// `1KiBx8`) or `repair`; repeatable.
        #[arg(long, value_name = "CASE")]
        only: Vec<String>,
        /// e2e only: committee sizes to run, one after another
        /// (`--nodes 7,25,50`; default 7).
        #[arg(long, value_delimiter = ',', value_name = "N")]
        nodes: Vec<usize>,
        /// e2e only (lab): shape every link as a wide-area link
        /// (`continent`, `planet`, `lossy`, `lan`, or a spec such as
        /// `latency=40ms,jitter=10ms,loss=0.1%,bandwidth=1gbit`).
        #[arg(long, value_name = "PROFILE")]
        wan: Option<floe_net::LinkProfile>,
    },
    /// Fuzz the parsers of untrusted bytes (all targets, the time split
    /// evenly, or one); exits non-zero on any panic, property violation or
    /// allocation beyond its bound.
    Fuzz {
        /// Total time, in seconds.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only this target.
        target: Option<String>,
    },
    /// Build `floe` and `floe-node` in release and pack them: a Debian
    /// package and a tarball in target/dist/.
    Dist {
        /// Pack the `floe` and `floe-node` found in this directory instead
        /// of building them.
        #[arg(long, value_name = "DIR")]
        binaries: Option<std::path::PathBuf>,
        /// Where to write the package and the tarball (default: target/dist).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
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
        } => testnet::demo(nodes, shards, bytes, file),
        Task::Testnet { action, dir } => testnet::run(action, dir),
        Task::Chaos {
            duration,
            nodes,
            shards,
            seed,
            max_blob,
            byzantine,
            epochs,
        } => {
            let config = ChaosConfig {
                duration: std::time::Duration::from_secs(duration),
                seed,
                max_blob,
                byzantine,
                ..ChaosConfig::default()
            };
            match epochs {
                Some(changes) => testnet::chaos_epochs(nodes, shards, changes, config),
                None => testnet::chaos(nodes, shards, config),
            }
        }
        Task::Bench {
            name,
            runs,
            quick,
            only,
            nodes,
            wan,
        } => bench::run(
            name.as_deref(),
            runs.max(1),
            &bench_e2e::Options {
                quick,
                only,
                nodes,
                wan,
            },
        ),
        Task::Fuzz {
            duration,
            seed,
            target,
        } => fuzz::run(target.as_deref(), duration, seed),
        Task::Dist { binaries, out } => dist::run(binaries, out).map(|_| ()),
        Task::BenchCodecCase {
            shards,
            bytes,
            runs,
        } => bench::codec_case(shards, bytes, runs),
    }
}
