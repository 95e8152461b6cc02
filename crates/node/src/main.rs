//! `floe-node`: run a Floe storage node, or make its keys.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
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
    /// Storage grants: who may write to nodes in `grants` admission mode.
    Grant {
        #[command(subcommand)]
        action: GrantAction,
    },
    /// Print the manual page (roff), as packages install it.
    #[command(hide = true)]
    Man,
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

#[derive(Subcommand)]
enum GrantAction {
    /// Write a new issuer key (a file readable by its owner only) and print
    /// its public key: put that in the nodes' `[admission] issuers`.
    Keygen {
        /// The key file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a grant for a client key and print it (one line, for the
    /// client config's `grant` file). Revoke by expiry: issue short grants
    /// and renew them.
    Issue {
        /// The issuer key file (`floe-node grant keygen`).
        #[arg(long)]
        issuer: PathBuf,
        /// The client's public key (hex; `floe` prints it when it creates
        /// the key named by `key` in its config).
        #[arg(long)]
        client: floe_consensus::PublicKey,
        /// Bytes the client may keep stored at once (each blob counts until
        /// it expires or is deleted): `10GiB`, `500MiB`, `1000000`.
        #[arg(long, value_parser = parse_bytes)]
        bytes: u64,
        /// The furthest end epoch the client may store blobs until.
        #[arg(long)]
        until_epoch: u64,
        /// The largest blob the client may store (default: `--bytes`).
        #[arg(long, value_parser = parse_bytes)]
        max_blob_size: Option<u64>,
        /// How long the grant admits writes, from now: `30d`, `12h`, `90m`, `45s`.
        #[arg(long, value_parser = parse_duration)]
        expires: Duration,
        /// Write the grant to this file as well as printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A command-line value that does not parse, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadArgument(String);

/// `10GiB`, `500MiB`, `4KiB`, `1000` (bytes); also `GB`, `MB`, `KB` (powers of 1000).
fn parse_bytes(text: &str) -> Result<u64, BadArgument> {
    let text = text.trim();
    let bad = || {
        BadArgument(format!(
            "`{text}` is not a size: a number, then B, KiB, MiB, GiB or TiB"
        ))
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| BadArgument(format!("`{text}` is too large")))
}

/// `30d`, `12h`, `90m`, `45s`.
fn parse_duration(text: &str) -> Result<Duration, BadArgument> {
    let text = text.trim();
    let bad = || {
        BadArgument(format!(
            "`{text}` is not a duration: a number, then d, h, m or s"
        ))
    };
    let unit_at = text.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| BadArgument(format!("`{text}` is too long")))
}

/// Writes a new key to `path` (never over an existing one) and prints its
/// public key.
fn new_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    let key = KeyPair::generate(&mut rand::rngs::OsRng);
    config::write_key(path, &key).map_err(|e| {
        anyhow::anyhow!(
            "cannot write {}: {e} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    println!("{}: {}", path.display(), key.public());
    Ok(())
}

fn grant(action: GrantAction) -> anyhow::Result<()> {
    match action {
        GrantAction::Keygen { out } => new_key_file(&out),
        GrantAction::Issue {
            issuer,
            client,
            bytes,
            until_epoch,
            max_blob_size,
            expires,
            out,
        } => {
            let key = config::read_key(&issuer, "issuer")?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let body = floe_consensus::grant::StorageGrant {
                client,
                bytes,
                until_epoch: floe_consensus::Epoch(until_epoch),
                max_blob_size: max_blob_size.unwrap_or(bytes),
                expires_ms: now_ms.saturating_add(expires.as_millis() as u64),
            };
            let grant = floe_consensus::Signed::sign(
                floe_consensus::ProtocolMessage::new(floe_consensus::Epoch(0), body),
                &key,
            );
            let text = grant.to_text();
            if let Some(out) = out {
                std::fs::write(&out, format!("{text}\n"))
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            }
            eprintln!(
                "grant for {client}: {bytes} bytes, until epoch {until_epoch}, blobs up to {} bytes, expires in {}s; issued by {}",
                max_blob_size.unwrap_or(bytes),
                expires.as_secs(),
                key.public()
            );
            println!("{text}");
            Ok(())
        }
    }
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
        Command::Grant { action } => grant(action),
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Keygen { dir } => {
            std::fs::create_dir_all(&dir)?;
            for name in ["protocol.key", "network.key"] {
                new_key_file(&dir.join(name))?;
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
