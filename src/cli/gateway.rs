//! `floe gateway`: serve the HTTP publisher and aggregator in front of the
//! committee, or print their OpenAPI document.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use floe_client::Client;
use floe_gateway::{Gateway, GatewayConfig};

use super::config::ClientFile;
use super::Failure;

/// The arguments of `floe gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:31415")]
    pub listen: SocketAddr,
    /// Serve `PUT /v1/blobs`.
    #[arg(long)]
    pub publisher: bool,
    /// Serve `GET`/`HEAD /v1/blobs/{blob_id}` and `/status`.
    #[arg(long)]
    pub aggregator: bool,
    /// Largest blob a `PUT` may carry, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_body_bytes: u64,
    /// Requests handled at once (stores and reads each); more are
    /// refused with 429 and `Retry-After` instead of waiting.
    #[arg(long, default_value_t = 64)]
    pub max_concurrent_requests: usize,
    /// Connections held at once; more are closed as accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections held at once from one IP address.
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_ip: usize,
    /// Most epochs a `PUT` may store for: the nodes' `[limits]
    /// max_epochs_ahead`. More is refused with 400 before the upload.
    #[arg(long, default_value_t = 1000)]
    pub max_epochs_ahead: u64,
    /// Seconds a connection has to send a whole request head (idle
    /// connections are closed after it too).
    #[arg(long, default_value_t = 30)]
    pub header_timeout_secs: u64,
    /// Seconds a `PUT` has to send its whole body (408 after).
    #[arg(long, default_value_t = 300)]
    pub body_timeout_secs: u64,
    /// Longest a cache in front may keep a deletable blob's bytes, in
    /// seconds (it may serve them this long after a deletion).
    #[arg(long, default_value_t = 60)]
    pub deletable_max_age_secs: u64,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    pub openapi: bool,
}

/// `floe gateway --openapi`: prints the OpenAPI document (no config
/// needed).
pub fn print_openapi() -> Result<u8, Failure> {
    let doc = floe_gateway::openapi()
        .to_pretty_json()
        .map_err(|e| Failure::Other(e.to_string()))?;
    println!("{doc}");
    Ok(0)
}

/// Serves the gateway until Ctrl-C or SIGTERM; requests in flight then
/// finish.
pub async fn run(args: GatewayArgs, file: &ClientFile, client: Arc<Client>) -> Result<u8, Failure> {
    let GatewayArgs {
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
    } = args;
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
