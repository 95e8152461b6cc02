//! `floe-node`: run a Floe storage node, or make its keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use floe_consensus::KeyPair;
use floe_node::{config, Node, NodeConfig};

#[derive(Parser)]
#[command(name = "floe-node", version, about = "A Floe storage node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new protocol key and network key (files readable by their owner only).
    Keygen {
        /// Directory to write `protocol.key` and `network.key` into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Write a whole committee for named hosts: keys, `committee.toml` and
    /// each node's `node-<i>/node.toml` (for containers or a lab; a real
    /// committee's members make their own keys).
    Committee {
        /// Directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// Node `i` is reached at this host, with `{i}` replaced.
        #[arg(long, default_value = "node-{i}")]
        host: String,
        /// The port every node listens on.
        #[arg(long, default_value_t = 9100)]
        port: u16,
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Number of shards (spread evenly).
        #[arg(long, default_value_t = 100)]
        shards: u16,
        /// Epoch length, in seconds.
        #[arg(long, default_value_t = 3600)]
        epoch_secs: u64,
        /// Admin port (`/metrics`, `/health`) of every node.
        #[arg(long, default_value_t = 9184)]
        admin_port: u16,
    },
    /// Run the node described by a configuration file.
    Run {
        /// The node's configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Seconds requests in flight get to finish at shutdown.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floe-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { dir } => {
            std::fs::create_dir_all(&dir)?;
            let mut rng = rand::rngs::OsRng;
            for name in ["protocol.key", "network.key"] {
                let path = dir.join(name);
                let key = KeyPair::generate(&mut rng);
                config::write_key(&path, &key).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot write {}: {e} (an existing key is never overwritten)",
                        path.display()
                    )
                })?;
                println!("{}: {}", path.display(), key.public());
            }
            Ok(())
        }
        Command::Committee {
            dir,
            host,
            port,
            nodes,
            shards,
            epoch_secs,
            admin_port,
        } => {
            let addresses: Vec<_> = (0..nodes)
                .map(|i| {
                    (
                        format!("{}:{port}", host.replace("{i}", &i.to_string())),
                        std::net::SocketAddr::from(([0, 0, 0, 0], port)),
                    )
                })
                .collect();
            let written = floe_node::committee::write_committee(
                &dir,
                shards,
                epoch_secs.saturating_mul(1000),
                config::Limits::default(),
                config::Tasks::default(),
                &addresses,
            )?;
            let admin = std::net::SocketAddr::from(([0, 0, 0, 0], admin_port));
            let paths = written.write_configs(&dir, |_| Ok(Some(admin)))?;
            for (path, (address, _)) in paths.iter().zip(&addresses) {
                println!("{}: {address}", path.display());
            }
            let client = dir.join("client.toml");
            println!("{}", dir.join("committee.toml").display());
            println!("{}", client.display());
            Ok(())
        }
        Command::Run { config, grace } => {
            let config = NodeConfig::load(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let node = Node::start(config).await?;
                shutdown_signal().await;
                tracing::info!("shutting down");
                node.shutdown(Duration::from_secs(grace)).await;
                Ok(())
            })
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
