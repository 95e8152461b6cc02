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
    /// Require a JWT on publisher routes, verified with the secret (HS256)
    /// in this file, or with the PEM public key in it for `--jwt-algorithm`
    /// EdDSA, ES256 or RS256. Tokens must carry `exp`; `max_size`, `size`,
    /// `max_epochs` and `epochs` limit what they allow.
    #[arg(long, value_name = "FILE")]
    pub jwt_key_file: Option<std::path::PathBuf>,
    /// The algorithm tokens are signed with.
    #[arg(long, default_value = "HS256", value_parser = parse_algorithm)]
    pub jwt_algorithm: jsonwebtoken::Algorithm,
    /// Accept a token more than once (by default each token's `jti` is
    /// accepted once while the token is valid, and tokens need one).
    #[arg(long)]
    pub jwt_allow_replay: bool,
    /// An origin browsers may call the gateway from (CORS), for both
    /// roles; repeatable; `*` for any.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    pub openapi: bool,
}

fn parse_algorithm(text: &str) -> Result<jsonwebtoken::Algorithm, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a JWT algorithm (HS256, EdDSA, ES256, RS256, ...)"))
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
        jwt_key_file,
        jwt_algorithm,
        jwt_allow_replay,
        cors_origins,
        openapi: _,
    } = args;
    let auth = match jwt_key_file {
        Some(path) => {
            let key = std::fs::read(&path).map_err(|e| {
                Failure::Usage(format!(
                    "cannot read --jwt-key-file {}: {e}",
                    path.display()
                ))
            })?;
            let key = if matches!(
                jwt_algorithm,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ) {
                // A secret file's trailing newline is not part of the secret.
                key.trim_ascii_end().to_vec()
            } else {
                key
            };
            let auth = floe_gateway::auth::JwtAuth::new(jwt_algorithm, &key, !jwt_allow_replay)
                .map_err(|e| Failure::Usage(format!("--jwt-key-file {}: {e}", path.display())))?;
            Some(Arc::new(auth))
        }
        None => None,
    };
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
        auth,
        cors_origins,
        ..GatewayConfig::default()
    };
    let roles = match (config.publisher, config.aggregator) {
        (true, true) => "publisher and aggregator",
        (true, false) => "publisher",
        _ => "aggregator",
    };
    let gateway_auth = config.auth.is_some();
    if config.publisher && !gateway_auth {
        eprintln!("floe gateway: the publisher takes stores from anyone who can reach it; give --jwt-key-file to require tokens");
    }
    let gateway = Gateway::new(client, owner, config);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Other(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr().unwrap_or(listen);
    let guarded = if gateway_auth {
        "; publisher routes need a JWT"
    } else {
        ""
    };
    eprintln!("floe gateway ({roles}) listening on http://{address} (OpenAPI at /v1/api, metrics at /metrics{guarded}); Ctrl-C or SIGTERM stops it");
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
