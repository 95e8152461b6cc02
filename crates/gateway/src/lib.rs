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

mod cache;
mod deadline;
pub mod model;
mod query;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use floe_client::{Client, ClientError, ReadOptions, Status, StoreOptions};
use floe_codec::BlobId;
use floe_consensus::KeyPair;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use utoipa::openapi::OpenApi;
use utoipa::{IntoParams, OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use deadline::{Connection, TimedListener};
use model::{ErrorDetail, ErrorInfo, ErrorResponse, StatusResponse, StoreResponse};
use query::Epochs;

/// How long a client should wait before retrying when too few shards answered.
const RETRY_AFTER_SECS: u64 = 5;

/// How long a client should wait before retrying when every slot was busy.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// The `domain` of every [`ErrorInfo`] the gateway answers with.
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
        let (router, api) = routes(self.config.publisher, self.config.aggregator).split_for_parts();
        let api = Arc::new(api);
        router
            // Only the blob routes take a slot: metrics and the API
            // document stay reachable when the gateway is saturated.
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                admit,
            ))
            .route(
                "/v1/api",
                axum::routing::get(move || {
                    let api = Arc::clone(&api);
                    async move { Json(api.as_ref().clone()) }
                }),
            )
            .route("/metrics", axum::routing::get(render_metrics))
            .fallback(no_route)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                record,
            ))
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
    fn blob_cache_control(&self, status: &Status) -> HeaderValue {
        let lifetime = match status {
            Status::Certified { certificate, .. } => Some(cache::Lifetime {
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

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The OpenAPI document of a gateway serving both roles (the one checked in
/// under `docs/`).
pub fn openapi() -> OpenApi {
    routes(true, true).split_for_parts().1
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Floe gateway",
        description = "Store and read Floe blobs over HTTP. Every answer is a protocol fact: a stored blob comes with its certificate, a read is verified against the blob ID, a status carries its proof. The routes shared with Walrus's publisher and aggregator take Walrus's parameters and answer with Walrus's error body; see the user guide for the differences that remain by design.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "publisher", description = "Stores blobs and returns their certificates."),
        (name = "aggregator", description = "Serves verified blob bytes and definite states.")
    )
)]
struct ApiDoc;

fn routes(publisher: bool, aggregator: bool) -> OpenApiRouter<Arc<Gateway>> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    if publisher {
        router = router.routes(routes!(put_blob));
    }
    if aggregator {
        router = router
            .routes(routes!(get_blob, head_blob))
            .routes(routes!(get_status));
    }
    router
}

// ---- errors ----

/// A failure, with the status code that says what happened.
#[derive(Debug)]
pub enum GatewayError {
    /// From the client: not certified, invalid, expired, deleted, too few
    /// shards, rejected, not allowed.
    Client(ClientError),
    /// The path does not hold a blob ID.
    BadBlobId(String),
    /// A parameter's value is malformed, or contradicts another.
    BadParameter {
        /// The parameter.
        name: String,
        /// What is wrong and what to give instead.
        message: String,
    },
    /// A parameter the route does not take.
    UnknownParameter {
        /// The parameter.
        name: String,
        /// Those it takes.
        known: &'static [&'static str],
    },
    /// A parameter value Floe does not support (a Walrus feature with no
    /// counterpart in Floe).
    Unsupported {
        /// The parameter.
        name: String,
        /// Its value.
        value: String,
        /// Why, and what to do instead.
        message: String,
    },
    /// More epochs than the committee stores ahead.
    EpochsOverLimit {
        /// The epochs asked for, as given.
        requested: String,
        /// The committee's limit.
        limit: u64,
    },
    /// `deletable=true` on a gateway without an owner key.
    NoOwnerKey,
    /// The body exceeds the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
        /// What set it.
        by: &'static str,
    },
    /// The body did not arrive in time.
    BodyTimeout {
        /// The body timeout.
        timeout: Duration,
    },
    /// The body could not be read (the connection broke, or its framing is
    /// malformed).
    BadBody(String),
    /// The range lies outside the blob.
    RangeNotSatisfiable {
        /// The blob.
        blob_id: BlobId,
        /// Its length.
        length: u64,
    },
    /// Every request slot is busy.
    Overloaded {
        /// The number of slots.
        slots: usize,
    },
    /// No route has this path.
    NoRoute {
        /// The path asked for.
        path: String,
    },
    /// The gateway failed; a bug.
    Internal(String),
}

impl From<ClientError> for GatewayError {
    fn from(e: ClientError) -> Self {
        GatewayError::Client(e)
    }
}

impl GatewayError {
    /// The HTTP code, its general class (Walrus's name where Walrus has
    /// one) and the specific reason.
    fn code(&self) -> (StatusCode, &'static str, &'static str) {
        const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
        match self {
            GatewayError::Client(e) => match e {
                ClientError::NotCertified { .. } => {
                    (StatusCode::NOT_FOUND, "NOT_FOUND", "BLOB_NOT_CERTIFIED")
                }
                ClientError::Expired { .. } => (StatusCode::GONE, "GONE", "BLOB_EXPIRED"),
                ClientError::Deleted { .. } => (StatusCode::GONE, "GONE", "BLOB_DELETED"),
                ClientError::Invalid { .. } => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "INVALID_BLOB",
                    "BLOB_INVALID",
                ),
                ClientError::NotEnoughShards { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "NOT_ENOUGH_SHARDS",
                ),
                ClientError::Rejected(_) => (StatusCode::BAD_REQUEST, INVALID_ARGUMENT, "REJECTED"),
                ClientError::NotAllowed(_) => {
                    (StatusCode::FORBIDDEN, "PERMISSION_DENIED", "NOT_ALLOWED")
                }
            },
            GatewayError::BadBlobId(_) => {
                (StatusCode::BAD_REQUEST, INVALID_ARGUMENT, "BAD_BLOB_ID")
            }
            GatewayError::BadParameter { .. } => {
                (StatusCode::BAD_REQUEST, INVALID_ARGUMENT, "BAD_PARAMETER")
            }
            GatewayError::UnknownParameter { .. } => (
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                "UNKNOWN_PARAMETER",
            ),
            GatewayError::Unsupported { .. } => (
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                "UNSUPPORTED_PARAMETER",
            ),
            GatewayError::EpochsOverLimit { .. } => (
                StatusCode::BAD_REQUEST,
                INVALID_ARGUMENT,
                "EPOCHS_OVER_LIMIT",
            ),
            GatewayError::NoOwnerKey => (
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                "NO_OWNER_KEY",
            ),
            GatewayError::TooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "BODY_TOO_LARGE",
            ),
            GatewayError::BodyTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "BODY_TIMEOUT",
            ),
            GatewayError::BadBody(_) => (StatusCode::BAD_REQUEST, INVALID_ARGUMENT, "BAD_BODY"),
            GatewayError::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_NOT_SATISFIABLE",
                "RANGE_OUTSIDE_BLOB",
            ),
            GatewayError::Overloaded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "OVERLOADED",
            ),
            GatewayError::NoRoute { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND", "NO_ROUTE"),
            GatewayError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "INTERNAL")
            }
        }
    }

    fn message(&self) -> String {
        match self {
            GatewayError::Client(e @ ClientError::NotEnoughShards { .. }) => {
                format!("{e}; retry in {RETRY_AFTER_SECS} seconds (Retry-After)")
            }
            GatewayError::Client(e) => e.to_string(),
            GatewayError::BadBlobId(text) => format!(
                "{text:?} is not a blob ID: expected 43 characters of URL-safe base64 (as `floe blob-id FILE` prints)"
            ),
            GatewayError::BadParameter { message, .. } => message.clone(),
            GatewayError::UnknownParameter { name, known } => format!(
                "this route takes no parameter {name:?}; it takes {}",
                known.join(", ")
            ),
            GatewayError::Unsupported { name, value, message } => {
                format!("{name}={value:?} is not supported: {message}")
            }
            GatewayError::EpochsOverLimit { requested, limit } => format!(
                "epochs={requested} is more than this committee stores ahead: nodes confirm storage for at most {limit} epochs from the current one; store with epochs={limit} or fewer"
            ),
            GatewayError::NoOwnerKey => "this gateway has no owner key, so it cannot store deletable blobs; store a permanent blob (omit deletable, or permanent=true), or give the gateway an owner_key in its client config".into(),
            GatewayError::TooLarge { limit, by } => {
                format!("the body exceeds the {limit}-byte limit set by {by}; store larger blobs with the `floe` CLI or raise the limit")
            }
            GatewayError::BodyTimeout { timeout } => format!(
                "the request body did not arrive within {} seconds; send it faster, or store large blobs with the `floe` CLI",
                timeout.as_secs_f64()
            ),
            GatewayError::BadBody(e) => format!("the request body could not be read: {e}"),
            GatewayError::RangeNotSatisfiable { blob_id, length } => format!(
                "the range lies outside blob {blob_id}, which has {length} bytes"
            ),
            GatewayError::Overloaded { slots } => format!(
                "the gateway is handling {slots} requests, its limit; retry in {OVERLOADED_RETRY_AFTER_SECS} second (Retry-After)"
            ),
            GatewayError::NoRoute { path } => format!(
                "no route {path:?}; the routes are PUT /v1/blobs, GET and HEAD /v1/blobs/{{blob_id}}, GET /v1/blobs/{{blob_id}}/status (see /v1/api)"
            ),
            GatewayError::Internal(e) => format!("the gateway failed: {e}; please report it"),
        }
    }

    /// The values the message mentions, for programs.
    fn metadata(&self) -> serde_json::Map<String, serde_json::Value> {
        let value = match self {
            GatewayError::Client(e) => match e {
                ClientError::NotCertified {
                    blob_id,
                    answered,
                    n_shards,
                } => {
                    json!({"blobId": blob_id.to_string(), "answeredShards": answered, "totalShards": n_shards})
                }
                ClientError::Expired { blob_id, end_epoch } => {
                    json!({"blobId": blob_id.to_string(), "endEpoch": end_epoch.0})
                }
                ClientError::Deleted { blob_id, .. } | ClientError::Invalid { blob_id, .. } => {
                    json!({"blobId": blob_id.to_string()})
                }
                ClientError::NotEnoughShards {
                    blob_id,
                    needed,
                    got,
                    ..
                } => {
                    json!({"blobId": blob_id.to_string(), "neededShards": needed, "answeredShards": got, "retryAfterSecs": RETRY_AFTER_SECS})
                }
                ClientError::Rejected(_) | ClientError::NotAllowed(_) => json!({}),
            },
            GatewayError::BadBlobId(text) => json!({"blobId": text}),
            GatewayError::BadParameter { name, .. } => json!({"parameter": name}),
            GatewayError::UnknownParameter { name, known } => {
                json!({"parameter": name, "known": known})
            }
            GatewayError::Unsupported { name, value, .. } => {
                json!({"parameter": name, "value": value})
            }
            GatewayError::EpochsOverLimit { requested, limit } => {
                json!({"parameter": "epochs", "value": requested, "limit": limit})
            }
            GatewayError::TooLarge { limit, by } => json!({"limit": limit, "setBy": by}),
            GatewayError::BodyTimeout { timeout } => {
                json!({"timeoutSecs": timeout.as_secs_f64()})
            }
            GatewayError::RangeNotSatisfiable { blob_id, length } => {
                json!({"blobId": blob_id.to_string(), "length": length})
            }
            GatewayError::Overloaded { slots } => {
                json!({"slots": slots, "retryAfterSecs": OVERLOADED_RETRY_AFTER_SECS})
            }
            GatewayError::NoRoute { path } => json!({"path": path}),
            GatewayError::NoOwnerKey | GatewayError::BadBody(_) | GatewayError::Internal(_) => {
                json!({})
            }
        };
        match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (code, status, reason) = self.code();
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.as_u16(),
                status: status.into(),
                message: self.message(),
                details: vec![ErrorInfo {
                    kind: "ErrorInfo".into(),
                    reason: reason.into(),
                    domain: ERROR_DOMAIN.into(),
                    metadata: self.metadata(),
                }],
                blob_status: None,
            },
        };
        let mut response = (code, Json(body)).into_response();
        let headers = response.headers_mut();
        // Not a certified blob's bytes: nothing may keep it.
        headers.insert(header::CACHE_CONTROL, cache::no_store());
        match &self {
            GatewayError::Client(ClientError::NotEnoughShards { .. }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            GatewayError::Overloaded { .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(OVERLOADED_RETRY_AFTER_SECS),
                );
            }
            // The rest of the body may still be on its way: this
            // connection cannot carry another request.
            GatewayError::BodyTimeout { .. } | GatewayError::BadBody(_) => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            GatewayError::RangeNotSatisfiable { length, .. } => {
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{length}")) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// Parses a blob ID from a path segment (public for the fuzz targets).
pub fn parse_blob_id(text: &str) -> Result<BlobId, GatewayError> {
    text.parse()
        .map_err(|_| GatewayError::BadBlobId(text.chars().take(64).collect()))
}

/// The query's pairs, percent-decoded; a query that does not decode is a
/// bad parameter.
fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, GatewayError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| GatewayError::BadParameter {
            name: "query".into(),
            message: format!("the query string does not decode: {}", e.body_text()),
        })
}

/// Parses `uri`'s query string as `PUT /v1/blobs` does (`store`) or as
/// the read routes do, without a client; public for the fuzz targets.
pub fn check_query(uri: &Uri, store: bool) -> Result<(), GatewayError> {
    let pairs = query_pairs(Query::try_from_uri(uri))?;
    if store {
        query::store_params(&pairs).map(drop)
    } else {
        query::read_params(&pairs).map(drop)
    }
}

async fn no_route(uri: Uri) -> GatewayError {
    GatewayError::NoRoute {
        path: uri.path().chars().take(200).collect(),
    }
}

// ---- publisher ----

/// Query parameters of a store: Walrus's publisher parameters, with what
/// Floe does with each.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoreQuery {
    /// Epochs to store the blob for, from the current one (default 1); at
    /// most the committee's limit (`max_epochs_ahead`, 1000 unless the
    /// operators changed it). More is refused with 400 before the body is
    /// read.
    #[param(minimum = 1)]
    pub epochs: Option<u64>,
    /// Whether the gateway's owner key may delete the blob before it
    /// expires. Default false: unlike Walrus (deletable by default since
    /// v1.33), Floe stores permanent blobs unless asked, because deletable
    /// ones need the gateway's owner key.
    pub deletable: Option<bool>,
    /// The opposite of `deletable`; giving both with the same value is
    /// refused with 400, as Walrus does.
    pub permanent: Option<bool>,
    /// Upload and certify even if the blob is already certified for long
    /// enough (the answer is then `newlyCreated` with a new certificate).
    pub force: Option<bool>,
    /// The encoding: only `RedStuff` (Floe's own; Walrus's `RS2` gives
    /// different blob IDs and is refused with 400).
    pub encoding_type: Option<String>,
    /// Accepted for Walrus compatibility when `v1`, `V1` or `1` (Floe has no
    /// quilts, and Walrus ignores it on this route too); anything else is
    /// refused with 400.
    pub quilt_version: Option<String>,
    /// Refused with 400: Floe has no chain objects to send.
    pub send_object_to: Option<String>,
    /// `share=true` is refused with 400: Floe has no chain objects to share.
    pub share: Option<bool>,
}

/// Query parameters of a read: Walrus's aggregator parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// Re-encode the blob and check it against the blob ID before answering
    /// (catches an inconsistent encoding before its invalidity is proven).
    pub strict_consistency_check: Option<bool>,
    /// Only `false` is accepted: Floe checks every read against the blob ID
    /// and cannot skip it (`true` is refused with 400).
    pub skip_consistency_check: Option<bool>,
}

/// A blob's bytes, as the request or response body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BlobBytes(pub Vec<u8>);

/// Store the body as a blob for `epochs` epochs.
///
/// Every parameter is checked before the body is read: a refusal comes
/// before the upload, not after it.
#[utoipa::path(
    put,
    path = "/v1/blobs",
    tag = "publisher",
    params(StoreQuery),
    request_body(content = BlobBytes, content_type = "application/octet-stream", description = "The blob."),
    responses(
        (status = 200, description = "The blob is certified: newly by this request (`newlyCreated`) or already, for at least as long (`alreadyCertified`).", body = StoreResponse),
        (status = 400, description = "A bad or unsupported parameter (`INVALID_ARGUMENT`), more epochs than the committee stores ahead (reason `EPOCHS_OVER_LIMIT`, naming the limit), or `deletable=true` on a gateway without an owner key (`FAILED_PRECONDITION`). Retrying the same request cannot succeed.", body = ErrorResponse),
        (status = 408, description = "The body did not arrive within the gateway's body timeout.", body = ErrorResponse),
        (status = 413, description = "The body exceeds the gateway's limit or what the committee can encode.", body = ErrorResponse),
        (status = 429, description = "Every request slot is busy; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "Too few shards confirmed storage; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn put_blob(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StoreResponse>, GatewayError> {
    let params = query::store_params(&query_pairs(query)?)?;
    let limit = gateway.config.max_epochs_ahead;
    let epochs = match params.epochs {
        None => gateway.config.default_epochs,
        Some(Epochs::Count(n)) => n,
        Some(Epochs::Huge(text)) => {
            return Err(GatewayError::EpochsOverLimit {
                requested: text,
                limit,
            })
        }
    };
    if epochs == 0 {
        return Err(GatewayError::BadParameter {
            name: "epochs".into(),
            message: "epochs=0 stores nothing: give at least 1".into(),
        });
    }
    // The end epoch is the current one plus `epochs`: bounded by the limit,
    // and computed without overflow whatever the limit is set to.
    let epoch = gateway.client.epoch();
    if epochs > limit || epoch.0.checked_add(epochs).is_none() {
        return Err(GatewayError::EpochsOverLimit {
            requested: epochs.to_string(),
            limit,
        });
    }
    let owner = if params.deletable {
        match &gateway.owner {
            Some(key) => Some(key.public()),
            None => return Err(GatewayError::NoOwnerKey),
        }
    } else {
        None
    };
    let committee = gateway.client.committee(epoch);
    let encoding = committee.encoding();
    let (limit, by) = if gateway.config.max_body_bytes <= encoding.max_blob_size() {
        (gateway.config.max_body_bytes, "this gateway")
    } else {
        (encoding.max_blob_size(), "the committee's encoding")
    };
    let too_large = GatewayError::TooLarge { limit, by };
    // Refuse from the header when the client announced the size.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let blob = deadline::read_body(
        body,
        limit,
        announced,
        gateway.config.body_timeout,
        too_large,
    )
    .await?;
    let size = blob.len() as u64;
    let options = StoreOptions {
        owner,
        ..StoreOptions::default()
    };
    let outcome = if params.force {
        // `Client::store` skips the upload of a blob already certified for
        // long enough; `force` asks for a new certificate regardless.
        let (metadata, _, pairs) =
            tokio::task::spawn_blocking(move || floe_codec::encode(&encoding, &blob))
                .await
                .map_err(|e| GatewayError::Internal(format!("encoding stopped: {e}")))?
                .map_err(|e| ClientError::Rejected(format!("encoding failed: {e}")))?;
        gateway
            .client
            .store_encoded(metadata, pairs, epochs, options)
            .await?
    } else {
        gateway.client.store(blob, epochs, options).await?
    };
    Ok(Json(StoreResponse::new(&outcome, &committee, size)))
}

// ---- aggregator ----

/// Read a blob: its bytes, verified against the blob ID. Honours `Range`
/// (one range; several are answered with the whole blob).
///
/// `Cache-Control` ends with the blob's storage: `max-age` reaches at most
/// the start of its end epoch, and only permanent blobs are `immutable`; a
/// deletable blob is kept briefly, since its owner may delete it.
#[utoipa::path(
    get,
    path = "/v1/blobs/{blob_id}",
    tag = "aggregator",
    params(
        ("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64)."),
        ReadQuery,
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`.")
    ),
    responses(
        (status = 200, description = "The blob.", body = BlobBytes, content_type = "application/octet-stream",
            headers(("ETag" = String, description = "The blob ID, quoted."),
                    ("Cache-Control" = String, description = "`public, max-age=S` with S the seconds until its storage ends (at most a year), plus `immutable` for permanent blobs; deletable blobs get at most the gateway's deletable max-age. `no-store` when the certificate could not be confirmed."))),
        (status = 206, description = "The requested range.", body = BlobBytes, content_type = "application/octet-stream",
            headers(("Content-Range" = String, description = "`bytes first-last/length`."),
                    ("Cache-Control" = String, description = "As for 200."))),
        (status = 400, description = "Not a blob ID, or a bad or unsupported parameter.", body = ErrorResponse),
        (status = 404, description = "No certificate: shards forming a quorum answered and none knows the blob.", body = ErrorResponse),
        (status = 410, description = "Deleted by its owner, or its storage expired.", body = ErrorResponse),
        (status = 416, description = "The range lies outside the blob.", body = ErrorResponse),
        (status = 422, description = "The blob is proven invalid (inconsistently encoded): it has no content.", body = ErrorResponse),
        (status = 429, description = "Every request slot is busy; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "Too few shards answered; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn get_blob(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let params = query::read_params(&query_pairs(query)?)?;
    let options = ReadOptions {
        strict: params.strict,
        ..ReadOptions::default()
    };
    // The status that let the blob be read names its certificate, whose
    // end epoch bounds caching.
    let (blob, status) = gateway.client.read_with_status(blob_id, options).await?;
    let cache_control = gateway.blob_cache_control(&status);
    let length = blob.len() as u64;
    match requested_range(&headers, blob_id, length)? {
        Some(range) => {
            let (first, last) = (*range.start(), *range.end());
            // Bounds were validated against the length.
            let part = blob.slice(first as usize..=last as usize);
            let mut response =
                blob_response(StatusCode::PARTIAL_CONTENT, blob_id, part, cache_control);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{length}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Ok(response)
        }
        None => Ok(blob_response(StatusCode::OK, blob_id, blob, cache_control)),
    }
}

/// A blob's headers without its bytes: `Content-Length`, `ETag`,
/// `Accept-Ranges`, `Cache-Control`. Only the metadata is fetched.
#[utoipa::path(
    head,
    path = "/v1/blobs/{blob_id}",
    tag = "aggregator",
    params(
        ("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64)."),
        ReadQuery
    ),
    responses(
        (status = 200, description = "The blob is certified; `Content-Length` is its size.",
            headers(("Content-Length" = u64, description = "The blob's size."), ("ETag" = String, description = "The blob ID, quoted."),
                    ("Cache-Control" = String, description = "As for GET."))),
        (status = 400, description = "Not a blob ID, or a bad or unsupported parameter."),
        (status = 404, description = "No certificate."),
        (status = 410, description = "Deleted or expired."),
        (status = 422, description = "Proven invalid."),
        (status = 429, description = "Every request slot is busy."),
        (status = 503, description = "Too few shards answered.")
    )
)]
async fn head_blob(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    query::read_params(&query_pairs(query)?)?;
    let (length, status) = gateway.client.length_with_status(blob_id).await?;
    let cache_control = gateway.blob_cache_control(&status);
    let mut response = blob_response(StatusCode::OK, blob_id, Bytes::new(), cache_control);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

fn blob_response(
    status: StatusCode,
    blob_id: BlobId,
    bytes: Bytes,
    cache_control: HeaderValue,
) -> Response {
    let mut response = (status, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A blob's bytes never change: the ID is a strong validator.
    if let Ok(value) = HeaderValue::from_str(&format!("\"{blob_id}\"")) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, cache_control);
    response
}

/// The one range asked for, validated against `length`; `None` for the
/// whole blob (no `Range`, a malformed one, or several ranges). Public for
/// the fuzz targets.
pub fn requested_range(
    headers: &HeaderMap,
    blob_id: BlobId,
    length: u64,
) -> Result<Option<std::ops::RangeInclusive<u64>>, GatewayError> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    // One range is served; a list of them is ignored before it is parsed
    // (checking a list for overlaps costs the square of its length).
    if value.contains(',') || value.len() > 64 {
        return Ok(None);
    }
    // A header that does not parse is ignored (RFC 9110 §14.2).
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(None);
    };
    // An empty blob has no byte to range over (RFC 9110 §14.1.2).
    if length == 0 {
        return Err(GatewayError::RangeNotSatisfiable { blob_id, length });
    }
    let ranges = parsed
        .validate(length)
        .map_err(|_| GatewayError::RangeNotSatisfiable { blob_id, length })?;
    Ok(match ranges.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// A blob's definite state with its proof. Never cached: a state changes
/// (a deletion, an expiry).
#[utoipa::path(
    get,
    path = "/v1/blobs/{blob_id}/status",
    tag = "aggregator",
    params(("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64).")),
    responses(
        (status = 200, description = "A definite state with its proof, including `unknown` when shards forming a quorum answered and none knows the blob.", body = StatusResponse),
        (status = 400, description = "Not a blob ID.", body = ErrorResponse),
        (status = 429, description = "Every request slot is busy; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "Too few shards answered to say; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn get_status(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let status: Status = gateway.client.status(blob_id).await?;
    let epoch = gateway.client.epoch();
    let body = Json(StatusResponse::new(
        blob_id,
        &status,
        &gateway.client.committee(epoch),
        epoch.0,
    ));
    Ok(([(header::CACHE_CONTROL, cache::no_store())], body).into_response())
}

// ---- slots, deadlines and metrics ----

/// Takes a request slot for the request, or refuses it with 429 when all
/// are busy: a saturated gateway answers at once instead of queueing. The
/// slot goes with the answer's body, so a blob's bytes count until they are
/// sent, and stores and reads have slots of their own.
async fn admit(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let slots = match *request.method() {
        axum::http::Method::PUT | axum::http::Method::POST | axum::http::Method::DELETE => {
            &gateway.store_slots
        }
        _ => &gateway.read_slots,
    };
    let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
        return GatewayError::Overloaded {
            slots: gateway.config.max_concurrent_requests.max(1),
        }
        .into_response();
    };
    next.run(request)
        .await
        .map(|body| axum::body::Body::new(SlotBody { body, _slot: slot }))
}

/// An answer's body with the request slot it holds until it is sent.
struct SlotBody {
    body: axum::body::Body,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl axum::body::HttpBody for SlotBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

// ---- metrics ----

/// Tells the connection a request is being handled (no head deadline
/// meanwhile), records the answer in the metrics, and marks every answer
/// that is not a blob's bytes `no-store` unless it says otherwise.
async fn record(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let connection = request
        .extensions()
        .get::<ConnectInfo<Connection>>()
        .map(|ConnectInfo(connection)| connection.clone());
    if let Some(connection) = &connection {
        connection.request_started();
    }
    // Routes are the registered templates, methods the standard ones:
    // neither a path nor a made-up method can add a series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = metrics::method_label(request.method());
    let start = Instant::now();
    let mut response = next.run(request).await;
    if !response.status().is_success() {
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert_with(cache::no_store);
    }
    gateway
        .metrics
        .observe(&route, method, response.status().as_u16(), start.elapsed());
    if let Some(connection) = &connection {
        connection.request_answered();
    }
    response
}

async fn render_metrics(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gateway.metrics.render(),
    )
}

mod metrics {
    use std::collections::BTreeMap;
    use std::fmt::Write as _;
    use std::sync::Mutex;
    use std::time::Duration;

    use axum::http::Method;

    /// Latency bucket bounds, in seconds.
    const BUCKETS: [f64; 12] = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];

    #[derive(Default)]
    struct Series {
        /// Requests by status code.
        by_status: BTreeMap<u16, u64>,
        /// Cumulative counts per bucket, then the sum of seconds.
        buckets: [u64; BUCKETS.len()],
        count: u64,
        sum: f64,
    }

    /// The metrics label of `method`: the standard methods by name, any
    /// other as `OTHER`.
    pub(crate) fn method_label(method: &Method) -> &'static str {
        match *method {
            Method::GET => "GET",
            Method::HEAD => "HEAD",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::DELETE => "DELETE",
            Method::OPTIONS => "OPTIONS",
            Method::PATCH => "PATCH",
            Method::TRACE => "TRACE",
            Method::CONNECT => "CONNECT",
            _ => "OTHER",
        }
    }

    /// Request counts and latencies by route and method.
    #[derive(Default)]
    pub(crate) struct Metrics {
        series: Mutex<BTreeMap<(String, String), Series>>,
    }

    impl Metrics {
        pub(crate) fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
            let Ok(mut series) = self.series.lock() else {
                return;
            };
            let entry = series
                .entry((route.to_owned(), method.to_owned()))
                .or_default();
            *entry.by_status.entry(status).or_default() += 1;
            let seconds = elapsed.as_secs_f64();
            for (bound, count) in BUCKETS.iter().zip(entry.buckets.iter_mut()) {
                if seconds <= *bound {
                    *count += 1;
                }
            }
            entry.count += 1;
            entry.sum += seconds;
        }

        pub(crate) fn render(&self) -> String {
            let mut out = String::new();
            let Ok(series) = self.series.lock() else {
                return out;
            };
            let _ = writeln!(
                out,
                "# HELP floe_gateway_requests_total HTTP requests by route, method and status code.\n# TYPE floe_gateway_requests_total counter"
            );
            for ((route, method), s) in series.iter() {
                for (status, count) in &s.by_status {
                    let _ = writeln!(
                        out,
                        "floe_gateway_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP floe_gateway_request_seconds HTTP request latency by route and method.\n# TYPE floe_gateway_request_seconds histogram"
            );
            for ((route, method), s) in series.iter() {
                let labels = format!("route=\"{route}\",method=\"{method}\"");
                for (bound, count) in BUCKETS.iter().zip(s.buckets.iter()) {
                    let _ = writeln!(
                        out,
                        "floe_gateway_request_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "floe_gateway_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}\nfloe_gateway_request_seconds_sum{{{labels}}} {}\nfloe_gateway_request_seconds_count{{{labels}}} {}",
                    s.count, s.sum, s.count
                );
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn range(
        value: &str,
        length: u64,
    ) -> Result<Option<std::ops::RangeInclusive<u64>>, GatewayError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        requested_range(&headers, BlobId([7; 32]), length)
    }

    /// One range is served; a list, however long, is ignored before the
    /// parser would check every pair of it for overlaps; an empty blob has
    /// no byte to range over.
    #[test]
    fn only_one_range_is_parsed() {
        assert_eq!(range("bytes=2-5", 10).unwrap(), Some(2..=5));
        let list = (0..40_000)
            .map(|i| format!("{}-{}", 2 * i, 2 * i))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(range(&format!("bytes={list}"), 1 << 20).unwrap(), None);
        assert_eq!(range("bytes=0-1,4-5", 10).unwrap(), None);
        assert!(matches!(
            range("bytes=0-", 0),
            Err(GatewayError::RangeNotSatisfiable { length: 0, .. })
        ));
        assert!(matches!(
            range("bytes=20-30", 10),
            Err(GatewayError::RangeNotSatisfiable { length: 10, .. })
        ));
    }
}
