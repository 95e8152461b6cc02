//! `cargo xtask testnet …`, `cargo xtask demo` and `cargo xtask chaos`:
//! local networks of real `floe-node` processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use floe_testkit::drill::{self, ChaosConfig};
use floe_testkit::testnet::{Hosts, Testnet};

/// What `cargo xtask testnet` does.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Write a testnet (keys, committee, node and client configs) unless DIR
    /// holds one, start its nodes and wait until all are healthy.
    Up {
        /// Nodes in a new testnet.
        #[arg(long, default_value_t = 7)]
        nodes: usize,
        /// Shards in a new testnet (spread evenly).
        #[arg(long, default_value_t = 100)]
        shards: u16,
        /// Length of an epoch in a new testnet, in seconds (committee
        /// changes take effect at the next epoch).
        #[arg(long, default_value_t = 3600)]
        epoch_secs: u64,
        /// Lab: shape every link of the nodes this starts as a wide-area
        /// link (`continent`, `planet`, `lossy`, `lan` or a spec such as
        /// `latency=40ms,jitter=10ms,loss=0.1%,bandwidth=1gbit`). Clients
        /// shape theirs with the same FLOE_LAB_WAN.
        #[arg(long, value_name = "PROFILE")]
        wan: Option<floe_net::LinkProfile>,
        /// Run each node of a new testnet in a network namespace of its
        /// own, at an address of its own (10.213.x.y), joined by a bridge,
        /// as separate hosts are (needs root and iproute2; `down` deletes
        /// the namespaces).
        #[arg(long)]
        netns: bool,
    },
    /// Stop every node (their data stays; `up` starts them again).
    Down,
    /// Write and start a new node, and have every member approve a next
    /// committee that adds it (its shards come from the others).
    AddNode,
    /// Have every member approve a next committee without node NODE (its
    /// shards go to the others; stop it once the change is done).
    RemoveNode {
        /// The node's index.
        node: usize,
    },
    /// Have every member approve a next committee: the same members, shards
    /// shared by WEIGHTS (one per member, in committee order) or evenly.
    NextEpoch {
        /// Relative weights, comma-separated (for example `2,1,1,1`).
        #[arg(long, value_delimiter = ',')]
        weights: Option<Vec<u16>>,
    },
    /// Per node: pid, reachable, epoch, drift, stored bytes.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's log (the last LINES lines).
    Logs {
        /// The node's index.
        node: usize,
        /// Lines to print.
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
    /// Kill a node abruptly (SIGKILL), as a crash would.
    Kill {
        /// The node's index.
        node: usize,
    },
    /// Stop a node cleanly and start it again.
    Restart {
        /// The node's index.
        node: usize,
    },
    /// Stop a node, delete its database, start it again: it repairs what it
    /// lost from its peers.
    Wipe {
        /// The node's index.
        node: usize,
    },
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The default testnet directory: `target/testnet` in the workspace.
pub fn default_dir() -> PathBuf {
    workspace().join("target").join("testnet")
}

/// Builds `floe-node` and `floe` and returns their paths. They are built as
/// `cargo test --workspace` builds them (`--tests` unifies the same
/// features), so the tests and the testnet share one build of RocksDB.
pub fn build_binaries() -> Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .current_dir(workspace())
        .args([
            "build",
            "--workspace",
            "--bins",
            "--tests",
            "--locked",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("building floe-node and floe failed");
    }
    let mut node = None;
    let mut floe = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(executable) = message["executable"].as_str() else {
            continue;
        };
        // The binaries themselves, not test harnesses named after them.
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if !is_bin || message["profile"]["test"] == true {
            continue;
        }
        match message["target"]["name"].as_str() {
            Some("floe-node") => node = Some(PathBuf::from(executable)),
            Some("floe") => floe = Some(PathBuf::from(executable)),
            _ => {}
        }
    }
    match (node, floe) {
        (Some(node), Some(floe)) => Ok((node, floe)),
        _ => bail!("cargo build did not report the floe-node and floe binaries"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `cargo xtask testnet ACTION --dir DIR`.
pub fn run(action: Action, dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(default_dir);
    let (node_bin, floe_bin) = build_binaries()?;
    let runtime = runtime()?;
    match action {
        Action::Up {
            nodes,
            shards,
            epoch_secs,
            wan,
            netns,
        } => {
            if let Some(wan) = &wan {
                // The nodes started below inherit it (`NodeConfig::load`).
                std::env::set_var(floe_net::LAB_ENV, wan.to_string());
                println!(
                    "links shaped as {wan}; shape the client's too: export {}='{wan}'",
                    floe_net::LAB_ENV
                );
            }
            let fresh = !dir.join("committee.toml").exists();
            std::fs::create_dir_all(&dir)?;
            let hosts = if netns {
                Hosts::Namespaces
            } else {
                // An existing testnet keeps the hosts it was made with.
                Testnet::open(&dir, &node_bin).map_or(Hosts::Loopback, |t| t.hosts())
            };
            let mut testnet = Testnet::create_or_open_on(
                &dir,
                nodes,
                shards,
                epoch_secs.max(1) * 1000,
                hosts,
                &node_bin,
            )?;
            runtime.block_on(testnet.up(Duration::from_secs(60)))?;
            let committee = &testnet.file().committee;
            let hosts = match testnet.lab() {
                Some(lab) => format!(
                    "each in its own network namespace ({} … {}), on the bridge {}",
                    lab.namespace(0),
                    lab.namespace(testnet.nodes().saturating_sub(1)),
                    lab.bridge()
                ),
                None => "on 127.0.0.1".to_owned(),
            };
            println!(
                "testnet {} in {}: {} floe-node processes {hosts}, {} shards (f = {}, a certificate needs {} shards), all healthy",
                if fresh { "created" } else { "restarted with its data" },
                testnet.dir().display(),
                testnet.nodes(),
                committee.n_shards(),
                committee.f(),
                committee.quorum_threshold()
            );
            let config = testnet.client_config();
            println!("\nUse it with the floe CLI:\n");
            println!("  export FLOE_CONFIG={}", config.display());
            println!("  {} store FILE --epochs 5", floe_bin.display());
            println!("  {} status BLOB_ID", floe_bin.display());
            println!("  {} read BLOB_ID -o copy", floe_bin.display());
            println!("  {} gateway --listen 127.0.0.1:31415", floe_bin.display());
            println!("\nBreak it and watch it heal: cargo xtask testnet kill|restart|wipe NODE, cargo xtask testnet status; stop it with cargo xtask testnet down.");
        }
        Action::Down => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            testnet.down()?;
            println!(
                "testnet in {} stopped (data kept{})",
                testnet.dir().display(),
                if testnet.lab().is_some() {
                    "; its network namespaces deleted, `up` makes them again"
                } else {
                    ""
                }
            );
        }
        Action::Status { json } => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            let rows = runtime.block_on(testnet.status())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<8} {:>8} {:>6} {:>6} {:>6} {:>14}",
                    "node", "pid", "health", "epoch", "drift", "stored bytes"
                );
                for row in rows {
                    let show = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or("-".into());
                    println!(
                        "{:<8} {:>8} {:>6} {:>6} {:>6} {:>14}",
                        row.node_id,
                        row.pid.map(|p| p.to_string()).unwrap_or("-".into()),
                        if row.reachable { "up" } else { "down" },
                        show(row.epoch),
                        show(row.drift),
                        show(row.stored_bytes)
                    );
                }
            }
        }
        Action::AddNode => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            let node = testnet.add_node()?;
            runtime.block_on(testnet.wait_healthy(node, Duration::from_secs(60)))?;
            println!("node-{node} written and started (no shards yet)");
            runtime.block_on(change(&testnet, &[node], &[], None))?;
        }
        Action::RemoveNode { node } => {
            let testnet = Testnet::open(&dir, &node_bin)?;
            runtime.block_on(change(&testnet, &[], &[node], None))?;
            println!("keep node-{node} running until the change is done (`floe info` shows it), then `cargo xtask testnet kill {node}`");
        }
        Action::NextEpoch { weights } => {
            let testnet = Testnet::open(&dir, &node_bin)?;
            runtime.block_on(change(&testnet, &[], &[], weights.as_deref()))?;
        }
        Action::Logs { node, lines } => {
            let testnet = Testnet::open(&dir, &node_bin)?;
            let path = testnet.log(node);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(lines)..] {
                println!("{line}");
            }
        }
        Action::Kill { node } => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            testnet.stop(node, true)?;
            println!("node-{node} killed (SIGKILL)");
        }
        Action::Restart { node } => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            testnet.stop(node, false)?;
            testnet.start(node)?;
            runtime.block_on(testnet.wait_healthy(node, Duration::from_secs(60)))?;
            println!("node-{node} restarted and healthy");
        }
        Action::Wipe { node } => {
            let mut testnet = Testnet::open(&dir, &node_bin)?;
            testnet.wipe(node)?;
            runtime.block_on(testnet.wait_healthy(node, Duration::from_secs(60)))?;
            println!("node-{node} wiped and restarted: it repairs its slivers from its peers (watch drift with `cargo xtask testnet status`)");
        }
    }
    Ok(())
}

/// Proposes the next committee (adding and removing nodes, sharing shards
/// by `weights`), has every current member approve it on its admin port,
/// and waits until it is certified.
async fn change(
    testnet: &Testnet,
    add: &[usize],
    remove: &[usize],
    weights: Option<&[u16]>,
) -> Result<()> {
    let (epoch, current) = testnet.current_committee().await?;
    let proposal = testnet.propose_next(add, remove, weights).await?;
    for member in current.members() {
        let node: usize = member
            .node_id
            .0
            .strip_prefix("node-")
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("{} is not a testnet node", member.node_id))?;
        testnet.approve(node, &proposal)?;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while testnet.latest_change().await? < proposal.epoch {
        if std::time::Instant::now() > deadline {
            bail!("the committee of epoch {} was not certified within 30 s of approving it on every member", proposal.epoch);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let clock = testnet.file().clock;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let starts_in = clock.epoch_start(proposal.epoch).saturating_sub(now);
    println!(
        "committee of epoch {} certified in epoch {epoch}: {} members, shards {}; it takes over in {} s, and moved shards migrate then (watch `floe info`)",
        proposal.epoch,
        proposal.members.len(),
        proposal
            .members
            .iter()
            .map(|m| format!("{}={}", m.node_id, m.shards.len()))
            .collect::<Vec<_>>()
            .join(" "),
        starts_in / 1000
    );
    Ok(())
}

/// `cargo xtask demo`: a fresh testnet, store, status, read back, compare, down.
pub fn demo(nodes: usize, shards: u16, bytes: usize, file: Option<PathBuf>) -> Result<()> {
    let (node_bin, floe_bin) = build_binaries()?;
    let dir = tempfile::tempdir()?;
    let sample = match file {
        Some(path) => path,
        None => {
            let path = dir.path().join("sample.bin");
            std::fs::write(&path, crate::bench::sample_blob(bytes))?;
            path
        }
    };
    let mut testnet =
        Testnet::create_or_open(&dir.path().join("net"), nodes, shards, &node_bin)?.down_on_drop();
    let blob_id = runtime()?.block_on(drill::demo(&mut testnet, &floe_bin, &sample))?;
    println!("demo done: blob {blob_id} stored, certified and read back verified");
    Ok(())
}

/// `cargo xtask chaos`: a fresh testnet, a workload under faults, a check.
pub fn chaos(nodes: usize, shards: u16, config: ChaosConfig) -> Result<()> {
    let (node_bin, _) = build_binaries()?;
    let dir = tempfile::tempdir()?;
    let mut testnet = Testnet::create_or_open(dir.path(), nodes, shards, &node_bin)?.down_on_drop();
    println!(
        "chaos: {nodes} floe-node processes, {shards} shards, {} s of stores and reads of blobs up to {} while nodes are killed, restarted and wiped (seed {})",
        config.duration.as_secs(),
        crate::bench::human(config.max_blob),
        config.seed
    );
    let result = runtime()?.block_on(drill::chaos(&mut testnet, &config));
    testnet.down()?;
    let tally = result?;
    println!("{}", serde_json::to_string_pretty(&tally)?);
    if !tally.passed() {
        bail!(
            "chaos lost {} blobs and returned wrong bytes {} times",
            tally.blobs_lost,
            tally.wrong_bytes
        );
    }
    println!(
        "chaos passed: {} blobs verified on every node, none lost",
        tally.blobs_verified
    );
    Ok(())
}

/// `cargo xtask chaos --epochs N`: a fresh testnet with 30 s epochs, a load
/// across N committee changes, a check.
pub fn chaos_epochs(nodes: usize, shards: u16, changes: u32, config: ChaosConfig) -> Result<()> {
    const EPOCH_MS: u64 = 30_000;
    let (node_bin, _) = build_binaries()?;
    let dir = tempfile::tempdir()?;
    let mut testnet = Testnet::create_or_open_with(dir.path(), nodes, shards, EPOCH_MS, &node_bin)?
        .down_on_drop();
    println!(
        "chaos --epochs {changes}: {nodes} floe-node processes, {shards} shards, epochs of {} s; stores and reads of blobs up to {} across {changes} committee changes (seed {})",
        EPOCH_MS / 1000,
        crate::bench::human(config.max_blob),
        config.seed
    );
    let config = ChaosConfig {
        // Blobs outlive the run: an expired blob would read as lost.
        store_epochs: 1000,
        settle: std::time::Duration::from_secs(120),
        ..config
    };
    let result = runtime()?.block_on(floe_testkit::epochs::epochs(&mut testnet, &config, changes));
    testnet.down()?;
    let tally = result?;
    println!("{}", serde_json::to_string_pretty(&tally)?);
    if !tally.passed() || tally.read_errors > 0 || tally.epoch_changes < u64::from(changes) {
        bail!(
            "chaos --epochs: {} blobs lost, {} wrong reads, {} failed reads of certified blobs, {} of {changes} changes settled",
            tally.blobs_lost,
            tally.wrong_bytes,
            tally.read_errors,
            tally.epoch_changes
        );
    }
    println!(
        "chaos --epochs passed: {} committee changes, {} blobs verified on every member, {} reads, none failed, none lost",
        tally.epoch_changes, tally.blobs_verified, tally.reads
    );
    Ok(())
}
