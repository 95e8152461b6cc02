//! floe-gateway: Floe over HTTP.
//!
//! A **publisher** (`PUT /v1/blobs`) stores the request body as a blob and
//! answers with its certificate; an **aggregator** (`GET`/`HEAD
//! /v1/blobs/{blob_id}`, `GET /v1/blobs/{blob_id}/status`) serves verified
//! bytes (with `Range`) and definite states with their proofs. The OpenAPI
//! document, served at `/v1/api`, is generated from the route definitions.
//!
//! The routes Floe shares with Walrus's publisher and aggregator answer as
//! Walrus's OpenAPI documents say: the same parameters (a value Floe cannot
//! honour is refused with 400, never ignored), the same error body
//! (`{"error": {"code", "status", "message", "details": [ErrorInfo]}}`)
//! with Walrus's status names wherever Walrus has one. The differences that
//! remain are by design and listed in `docs/user-guide.md` (no chain
//! objects in store results, permanent by default, and the codes below that
//! say more than Walrus's 404 and 500).
//!
//! Status codes say what happened, never a bare 500 for a known condition:
//!
//! | condition | code |
//! |---|---|
//! | a bad parameter, or one Floe does not support; more epochs than nodes store ahead | 400 |
//! | the request body did not arrive within the body timeout | 408 |
//! | blob unknown (a quorum answered, none holds a certificate) | 404 |
//! | deleted, or its storage expired | 410 |
//! | invalid (proven inconsistently encoded) | 422 |
//! | body over the limit, or over what the committee can encode | 413 |
//! | range outside the blob | 416 |
//! | every request slot is busy | 429 with `Retry-After` |
//! | too few shards answered | 503 with `Retry-After` |
//!
//! Invalid blobs get **422 Unprocessable Content**: the request is well
//! formed, but the blob it names provably has no content and never will.
//! 451 is reserved for legal refusals, which this is not.
//!
//! A refusal that retrying cannot cure is a 4xx that says what to change;
//! 429 and 503 carry `Retry-After` because time heals them.
//!
//! Caches in front of the gateway never outlive the protocol: a blob's
//! `max-age` ends when its storage does (its certificate's end epoch), a
//! deletable blob is never `immutable` and is kept at most
//! [`GatewayConfig::deletable_max_age`], and every other answer is
//! `no-store`.

mod api;
pub mod auth;
mod cache;
mod deadline;
mod error;
mod metrics;
mod middleware;
pub mod model;
mod query;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderValue;
use axum::{Json, Router};
use floe_client::{BlobStatus, Client, QuorumStatus};
use floe_consensus::KeyPair;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use deadline::{Connection, TimedListener};

pub use api::openapi;
pub use error::GatewayError;
pub use routes::read::{requested_range, ReadQuery};
pub use routes::store::StoreQuery;
pub use routes::{check_query, parse_blob_id, BlobBytes};

/// The `domain` of every [`ErrorInfo`](model::ErrorInfo) the gateway answers with.
pub const ERROR_DOMAIN: &str = "gateway.floe";

/// What the gateway serves and its limits.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Serve `PUT /v1/blobs`.
    pub publisher: bool,
    /// Serve `GET`/`HEAD /v1/blobs/{blob_id}` and `/status`.
    pub aggregator: bool,
    /// Largest body a `PUT` may carry (413 beyond it).
    pub max_body_bytes: u64,
    /// Requests on the blob routes handled at once, counted apart for
    /// stores (`PUT`, `DELETE`) and for reads, so that slow uploads cannot
    /// starve reads; more are refused with 429 and `Retry-After` instead of
    /// waiting. A request holds its slot until its answer's last byte is
    /// sent. `/metrics` and `/v1/api` are not counted.
    pub max_concurrent_requests: usize,
    /// Connections held at once, and from one IP address; more are closed
    /// as soon as they are accepted.
    pub max_connections: usize,
    /// See [`GatewayConfig::max_connections`].
    pub max_connections_per_ip: usize,
    /// Epochs a blob is stored for when `PUT` gives no `epochs`.
    pub default_epochs: u64,
    /// Most epochs ahead a `PUT` may store for: the committee's limit, the
    /// nodes' `[limits] max_epochs_ahead` (1000 unless the operators changed
    /// it). More is refused with 400 before the body is read.
    pub max_epochs_ahead: u64,
    /// Time a connection has to send a whole request head, from when it
    /// opened or its last answer was written; idle connections are closed
    /// after it too.
    pub header_timeout: Duration,
    /// Time a `PUT` has to send its whole body (408 after it).
    pub body_timeout: Duration,
    /// Longest `max-age` of a deletable blob's bytes: a cache in front may
    /// serve it this long after its owner deleted it.
    pub deletable_max_age: Duration,
    /// The publisher's token check; `None`: stores are open to anyone who
    /// can reach the gateway.
    pub auth: Option<Arc<auth::JwtAuth>>,
    /// Origins browsers may call the gateway from (CORS), both roles; `*`
    /// for any. Empty: no CORS headers.
    pub cors_origins: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            publisher: true,
            aggregator: true,
            max_body_bytes: 256 << 20,
            max_concurrent_requests: 64,
            max_connections: 1024,
            max_connections_per_ip: 64,
            default_epochs: 1,
            max_epochs_ahead: 1000,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(300),
            deletable_max_age: Duration::from_secs(60),
            auth: None,
            cors_origins: Vec::new(),
        }
    }
}

/// A gateway in front of one committee.
pub struct Gateway {
    client: Arc<Client>,
    owner: Option<KeyPair>,
    config: GatewayConfig,
    store_slots: Arc<Semaphore>,
    read_slots: Arc<Semaphore>,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway storing and reading through `client`. `owner` owns the
    /// blobs stored with `deletable=true` (without it those are refused).
    pub fn new(client: Arc<Client>, owner: Option<KeyPair>, config: GatewayConfig) -> Arc<Self> {
        let slots = || Arc::new(Semaphore::new(config.max_concurrent_requests.max(1)));
        Arc::new(Self {
            client,
            owner,
            store_slots: slots(),
            read_slots: slots(),
            config,
            metrics: metrics::Metrics::default(),
        })
    }

    /// The HTTP application: the enabled roles, `/v1/api` and `/metrics`.
    ///
    /// Served by [`Gateway::serve`], it also enforces the header timeout;
    /// served otherwise, only the body timeout and the request slots.
    pub fn router(self: &Arc<Self>) -> Router {
        let (router, api) =
            api::routes(self.config.publisher, self.config.aggregator).split_for_parts();
        let api = Arc::new(api);
        router
            // Only the blob routes take a slot: metrics and the API
            // document stay reachable when the gateway is saturated.
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                middleware::admit,
            ))
            .route(
                "/v1/api",
                axum::routing::get(move || {
                    let api = Arc::clone(&api);
                    async move { Json(api.as_ref().clone()) }
                }),
            )
            .route("/metrics", axum::routing::get(metrics::render_metrics))
            .fallback(routes::no_route)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                middleware::record,
            ))
            .layer(cors(&self.config.cors_origins))
            .with_state(Arc::clone(self))
    }

    /// Serves the gateway on `listener` until `shutdown` completes; requests
    /// in flight then finish. Connections that do not send a request head
    /// within [`GatewayConfig::header_timeout`] are closed.
    pub async fn serve(
        self: &Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = TimedListener::new(
            listener,
            self.config.header_timeout,
            self.config.max_connections,
            self.config.max_connections_per_ip,
        );
        axum::serve(
            listener,
            self.router()
                .into_make_service_with_connect_info::<Connection>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
    }

    /// The `Cache-Control` of a blob's bytes given its status, now.
    fn blob_cache_control(&self, status: &QuorumStatus) -> HeaderValue {
        let lifetime = match &status.status {
            BlobStatus::Certified { certificate } => Some(cache::Lifetime {
                ends_unix_ms: self
                    .client
                    .clock()
                    .epoch_start(certificate.message.body.end_epoch),
                deletable: certificate.message.body.deletable,
            }),
            _ => None,
        };
        cache::for_blob(lifetime, now_unix_ms(), self.config.deletable_max_age)
    }
}

/// The CORS layer for `origins` (none: no CORS headers; `*`: any origin).
/// Blob bytes and statuses carry no credentials, so none are allowed.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return CorsLayer::new();
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::PUT, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::RANGE,
            header::IF_NONE_MATCH,
        ])
        .expose_headers([
            header::CONTENT_RANGE,
            header::ETAG,
            header::CACHE_CONTROL,
            header::RETRY_AFTER,
            header::CONTENT_LENGTH,
        ])
        .max_age(Duration::from_secs(3600))
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
