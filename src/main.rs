//! `floe`: store, read and inspect blobs on a Floe committee, and run an
//! HTTP gateway in front of one.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{CommandFactory as _, Parser, Subcommand};
use floe::cli::config::{self, ClientFile};
use floe::cli::progress::Bars;
use floe_client::{Client, ClientConfig, ClientError, ReadOptions, Status, StoreOptions};
use floe_codec::BlobId;
use floe_gateway::model::{StatusResponse, StoreResponse};
use floe_gateway::{Gateway, GatewayConfig};
use serde_json::json;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `status`: the blob is certified)
  1  any other failure (bad config, unreadable file, refused request)
  2  usage error (bad arguments, malformed blob ID)
  3  not found: the blob is not certified, or was deleted, or expired
  4  invalid: the blob is proven inconsistently encoded and has no content
  5  network failure: too few shards answered (nodes down or unreachable)";

/// Store, read and inspect blobs on a Floe committee.
///
/// Every answer is a protocol fact with its evidence: a stored blob comes
/// back with its certificate, a read is verified against the blob ID, and
/// a status is certified, invalid, deleted, expired or unknown, with proof.
#[derive(Debug, Parser)]
#[command(name = "floe", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
struct Cli {
    /// The client config (default: $FLOE_CONFIG, then floe/client.toml in
    /// the user's config directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of sentences.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store files as blobs and print each one's certificate.
    Store {
        /// Files to store (`-` for standard input).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Epochs to store them for, from the current one.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        epochs: u64,
        /// Let the config's owner key delete them before they expire.
        #[arg(long)]
        deletable: bool,
    },
    /// Read a blob, verified against its ID, to a file or standard output.
    Read {
        /// The blob ID.
        blob_id: String,
        /// Where to write it (standard output when absent).
        #[arg(short, long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also re-encode the blob and check every commitment.
        #[arg(long)]
        strict: bool,
    },
    /// A blob's state with its proof.
    Status {
        /// The blob ID.
        blob_id: String,
    },
    /// Delete a deletable blob owned by the config's owner key.
    Delete {
        /// The blob ID.
        blob_id: String,
    },
    /// A file's blob ID, computed locally (no network).
    BlobId {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Shards in the committee (default: from the client config).
        #[arg(long)]
        shards: Option<u16>,
    },
    /// The committee: epoch, members, shards per node, quorum sizes.
    Info,
    /// Every node: reachable, epoch, drift, stored bytes.
    Health,
    /// Serve the HTTP publisher and aggregator (both unless one is named).
    Gateway {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:31415")]
        listen: SocketAddr,
        /// Serve `PUT /v1/blobs`.
        #[arg(long)]
        publisher: bool,
        /// Serve `GET`/`HEAD /v1/blobs/{blob_id}` and `/status`.
        #[arg(long)]
        aggregator: bool,
        /// Largest blob a `PUT` may carry, in bytes.
        #[arg(long, default_value_t = 256 << 20)]
        max_body_bytes: u64,
        /// Requests handled at once (stores and reads each); more are
        /// refused with 429 and `Retry-After` instead of waiting.
        #[arg(long, default_value_t = 64)]
        max_concurrent_requests: usize,
        /// Connections held at once; more are closed as accepted.
        #[arg(long, default_value_t = 1024)]
        max_connections: usize,
        /// Connections held at once from one IP address.
        #[arg(long, default_value_t = 64)]
        max_connections_per_ip: usize,
        /// Most epochs a `PUT` may store for: the nodes' `[limits]
        /// max_epochs_ahead`. More is refused with 400 before the upload.
        #[arg(long, default_value_t = 1000)]
        max_epochs_ahead: u64,
        /// Seconds a connection has to send a whole request head (idle
        /// connections are closed after it too).
        #[arg(long, default_value_t = 30)]
        header_timeout_secs: u64,
        /// Seconds a `PUT` has to send its whole body (408 after).
        #[arg(long, default_value_t = 300)]
        body_timeout_secs: u64,
        /// Longest a cache in front may keep a deletable blob's bytes, in
        /// seconds (it may serve them this long after a deletion).
        #[arg(long, default_value_t = 60)]
        deletable_max_age_secs: u64,
        /// Print the OpenAPI document and exit.
        #[arg(long)]
        openapi: bool,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// A failure and its exit code.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Client(ClientError),
    Other(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Client(e) => match e {
                ClientError::NotCertified { .. }
                | ClientError::Deleted { .. }
                | ClientError::Expired { .. } => 3,
                ClientError::Invalid { .. } => 4,
                ClientError::NotEnoughShards { .. } => 5,
                ClientError::Rejected(_) | ClientError::NotAllowed(_) => 1,
            },
            Failure::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::Client(e) => write!(f, "{e}"),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::Other(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floe: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("floe: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

/// Runs one command; `Ok` carries the exit code of a command that answers
/// with one (`status`, `health`).
async fn run(cli: Cli) -> Result<u8, Failure> {
    let bars = Bars::new(!cli.quiet && std::io::stderr().is_terminal());
    // A malformed blob ID is a usage error, whatever the config.
    if let Command::Read { blob_id, .. }
    | Command::Status { blob_id }
    | Command::Delete { blob_id } = &cli.command
    {
        parse_blob_id(blob_id)?;
    }
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "floe", &mut std::io::stdout());
            Ok(0)
        }
        Command::BlobId { file, shards } => {
            let n_shards = match shards {
                Some(n) => n,
                None => config::load(cli.config.as_deref())?
                    .committee
                    .committee
                    .n_shards(),
            };
            let encoding = floe_codec::EncodingConfig::new(n_shards)
                .map_err(|e| Failure::Usage(format!("--shards {n_shards}: {e}")))?;
            let blob = read_input(&file)?;
            let size = blob.len();
            let (metadata, _, _) = floe_codec::encode(&encoding, &blob)
                .map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
            let blob_id = metadata.blob_id();
            if cli.json {
                print_json(&json!({
                    "path": file, "blobId": blob_id.to_string(), "size": size, "shards": n_shards,
                }));
            } else {
                println!("{blob_id}");
            }
            Ok(0)
        }
        Command::Gateway { openapi: true, .. } => {
            let doc = floe_gateway::openapi()
                .to_pretty_json()
                .map_err(|e| Failure::Other(e.to_string()))?;
            println!("{doc}");
            Ok(0)
        }
        command => {
            let file = config::load(cli.config.as_deref())?;
            let client = Client::new(&file.committee, ClientConfig::default())?;
            with_client(command, &file, Arc::new(client), cli.json, bars).await
        }
    }
}

async fn with_client(
    command: Command,
    file: &ClientFile,
    client: Arc<Client>,
    json: bool,
    bars: Bars,
) -> Result<u8, Failure> {
    match command {
        Command::Store {
            files,
            epochs,
            deletable,
        } => {
            let owner = if deletable {
                Some(file.owner()?.public())
            } else {
                None
            };
            let mut results = Vec::new();
            for path in &files {
                let blob = read_input(path)?;
                let size = blob.len() as u64;
                let progress = bars.transfer(&path.display().to_string());
                let options = StoreOptions {
                    owner,
                    progress: progress.sink(),
                };
                let outcome = client.store(blob, epochs, options).await;
                progress.finish();
                let outcome = outcome?;
                let committee = client.committee(outcome.certificate.message.epoch);
                let response = StoreResponse::new(&outcome, &committee, size);
                if !json {
                    let epoch = client.epoch();
                    let status = Status::Certified {
                        certificate: outcome.certificate.clone(),
                        end_epoch: outcome.end_epoch,
                        epoch,
                    };
                    let summary =
                        StatusResponse::new(outcome.blob_id, &status, &committee, epoch.0).summary;
                    println!("{}: blob {}", path.display(), outcome.blob_id);
                    println!(
                        "  {summary}{}",
                        if outcome.newly_certified {
                            ""
                        } else {
                            " (already certified: nothing uploaded)"
                        }
                    );
                }
                results.push(json!({ "path": path, "result": response }));
            }
            if json {
                print_json(&serde_json::Value::Array(results));
            }
            Ok(0)
        }
        Command::Read {
            blob_id,
            out,
            strict,
        } => {
            if json && out.is_none() {
                return Err(Failure::Usage(
                    "--json needs -o FILE: standard output carries the blob".into(),
                ));
            }
            let blob_id = parse_blob_id(&blob_id)?;
            let progress = bars.transfer(&blob_id.to_string());
            let options = ReadOptions {
                strict,
                progress: progress.sink(),
            };
            let result = client.read(blob_id, options).await;
            progress.finish();
            let blob = result?;
            match &out {
                Some(path) => {
                    std::fs::write(path, &blob).map_err(|e| {
                        Failure::Other(format!("cannot write {}: {e}", path.display()))
                    })?;
                    if json {
                        print_json(&json!({
                            "blobId": blob_id.to_string(), "size": blob.len(), "path": path,
                        }));
                    } else {
                        println!(
                            "read blob {blob_id}: {} bytes, verified, written to {}",
                            blob.len(),
                            path.display()
                        );
                    }
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&blob)
                        .and_then(|()| stdout.flush())
                        .map_err(|e| Failure::Other(format!("cannot write the blob: {e}")))?;
                }
            }
            Ok(0)
        }
        Command::Status { blob_id } => {
            let blob_id = parse_blob_id(&blob_id)?;
            let status = client.status(blob_id).await?;
            let epoch = client.epoch();
            let response = StatusResponse::new(blob_id, &status, &client.committee(epoch), epoch.0);
            if json {
                print_json(&response);
            } else {
                println!("blob {blob_id}: {}", response.summary);
                if let Some(certificate) = &response.certificate {
                    let names: Vec<&str> = certificate
                        .signers
                        .iter()
                        .filter_map(|i| client.members().get(usize::from(*i)))
                        .map(|m| m.node_id.0.as_str())
                        .collect();
                    println!(
                        "  proof: certificate of epoch {} signed by {} ({}/{} shards, {} needed)",
                        certificate.epoch,
                        names.join(", "),
                        certificate.signed_shards,
                        certificate.total_shards,
                        certificate.needed_shards
                    );
                }
            }
            Ok(match status {
                Status::Certified { .. } => 0,
                Status::Invalid { .. } => 4,
                _ => 3,
            })
        }
        Command::Delete { blob_id } => {
            let blob_id = parse_blob_id(&blob_id)?;
            let owner = file.owner()?;
            client.delete(blob_id, &owner).await?;
            if json {
                print_json(&json!({ "blobId": blob_id.to_string(), "state": "deleted" }));
            } else {
                println!("blob {blob_id} deleted: nodes holding a quorum of shards accepted the owner's deletion");
            }
            Ok(0)
        }
        Command::Info => {
            let committee = &file.committee;
            let epoch = client.epoch();
            let current = client.committee(epoch);
            let encoding = current.encoding();
            let members: Vec<_> = current
                .members()
                .iter()
                .map(|m| {
                    json!({
                        "nodeId": m.node_id.0, "address": m.address, "shards": m.shards.len(),
                        "networkKey": m.network_key.to_string(),
                    })
                })
                .collect();
            let info = json!({
                "epoch": epoch.0,
                "epochDurationMs": committee.clock.epoch_duration_ms,
                "nShards": current.n_shards(),
                "quorumShards": current.quorum_threshold(),
                "validityShards": current.validity_threshold(),
                "maxBlobSize": encoding.max_blob_size(),
                "members": members,
            });
            if json {
                print_json(&info);
            } else {
                println!(
                    "committee of {} nodes, {} shards; epoch {} (epochs last {} s)",
                    current.members().len(),
                    current.n_shards(),
                    epoch.0,
                    committee.clock.epoch_duration_ms / 1000
                );
                println!(
                    "a certificate needs {} shards (quorum); an invalid-blob certificate {} (validity); largest blob {} bytes",
                    current.quorum_threshold(),
                    current.validity_threshold(),
                    encoding.max_blob_size()
                );
                for m in current.members() {
                    println!(
                        "  {:<12} {:<22} {:>4} shards",
                        m.node_id.0,
                        m.address,
                        m.shards.len()
                    );
                }
            }
            Ok(0)
        }
        Command::Health => {
            let mut calls = tokio::task::JoinSet::new();
            for (index, member) in client.members().iter().cloned().enumerate() {
                let client = Arc::clone(&client);
                calls.spawn(async move {
                    let answer =
                        tokio::time::timeout(Duration::from_secs(5), client.info(&member)).await;
                    (index, member, answer)
                });
            }
            let mut rows = Vec::new();
            while let Some(Ok(row)) = calls.join_next().await {
                rows.push(row);
            }
            rows.sort_by_key(|(index, _, _)| *index);
            let mut unreachable = 0;
            let mut out = Vec::new();
            for (_, member, answer) in rows {
                let row = match answer {
                    Ok(Ok(info)) => json!({
                        "nodeId": member.node_id.0, "address": member.address, "reachable": true,
                        "epoch": info.epoch.0, "drift": info.drift, "storedBytes": info.stored_bytes,
                        "shards": info.shards.len(), "factsKnown": info.facts_known,
                    }),
                    Ok(Err(e)) => {
                        unreachable += 1;
                        json!({"nodeId": member.node_id.0, "address": member.address, "reachable": false, "error": e.to_string()})
                    }
                    Err(_) => {
                        unreachable += 1;
                        json!({"nodeId": member.node_id.0, "address": member.address, "reachable": false, "error": "no answer within 5 s"})
                    }
                };
                if !json {
                    if row["reachable"] == true {
                        println!(
                            "  {:<12} up    epoch {:<4} drift {:<5} {:>12} bytes stored  {:>4} shards",
                            member.node_id.0,
                            row["epoch"],
                            row["drift"],
                            row["storedBytes"],
                            row["shards"]
                        );
                    } else {
                        println!(
                            "  {:<12} DOWN  {}",
                            member.node_id.0,
                            row["error"].as_str().unwrap_or_default()
                        );
                    }
                }
                out.push(row);
            }
            if json {
                print_json(&serde_json::Value::Array(out));
            } else {
                println!(
                    "{} of {} nodes reachable",
                    client.members().len() - unreachable,
                    client.members().len()
                );
            }
            Ok(if unreachable == 0 { 0 } else { 5 })
        }
        Command::Gateway {
            listen,
            publisher,
            aggregator,
            max_body_bytes,
            max_concurrent_requests,
            max_connections,
            max_connections_per_ip,
            max_epochs_ahead,
            header_timeout_secs,
            body_timeout_secs,
            deletable_max_age_secs,
            openapi: _,
        } => {
            let both = !publisher && !aggregator;
            let owner = match file.owner_key {
                Some(_) => Some(file.owner()?),
                None => None,
            };
            let config = GatewayConfig {
                publisher: publisher || both,
                aggregator: aggregator || both,
                max_body_bytes,
                max_concurrent_requests,
                max_connections,
                max_connections_per_ip,
                max_epochs_ahead,
                header_timeout: Duration::from_secs(header_timeout_secs.max(1)),
                body_timeout: Duration::from_secs(body_timeout_secs.max(1)),
                deletable_max_age: Duration::from_secs(deletable_max_age_secs),
                ..GatewayConfig::default()
            };
            let roles = match (config.publisher, config.aggregator) {
                (true, true) => "publisher and aggregator",
                (true, false) => "publisher",
                _ => "aggregator",
            };
            let gateway = Gateway::new(client, owner, config);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| Failure::Other(format!("cannot listen on {listen}: {e}")))?;
            let address = listener.local_addr().unwrap_or(listen);
            eprintln!("floe gateway ({roles}) listening on http://{address} (OpenAPI at /v1/api, metrics at /metrics); Ctrl-C or SIGTERM stops it");
            gateway
                .serve(listener, shutdown_signal())
                .await
                .map_err(|e| Failure::Other(format!("gateway stopped: {e}")))?;
            eprintln!("floe gateway stopped");
            Ok(0)
        }
        Command::Completions { .. } | Command::BlobId { .. } => Ok(0),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn parse_blob_id(text: &str) -> Result<BlobId, Failure> {
    text.parse().map_err(|_| {
        Failure::Usage(format!(
            "{text:?} is not a blob ID: expected 43 characters of URL-safe base64, as `floe store` and `floe blob-id` print"
        ))
    })
}

fn read_input(path: &Path) -> Result<Bytes, Failure> {
    if path == Path::new("-") {
        let mut buffer = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buffer)
            .map_err(|e| Failure::Other(format!("cannot read standard input: {e}")))?;
        return Ok(Bytes::from(buffer));
    }
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("floe: cannot format JSON: {e}"),
    }
}
