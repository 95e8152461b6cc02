//! floe-gateway: Floe over HTTP.
//!
//! A **publisher** (`PUT /v1/blobs`) stores the request body as a blob and
//! answers with its certificate; an **aggregator** (`GET`/`HEAD
//! /v1/blobs/{blob_id}`, `GET /v1/blobs/{blob_id}/status`) serves verified
//! bytes (with `Range`) and definite states with their proofs. The OpenAPI
//! document, served at `/v1/api`, is generated from the route definitions.
//!
//! Status codes say what happened, never a bare 500 for a known condition:
//!
//! | condition | code |
//! |---|---|
//! | blob unknown (a quorum answered, none holds a certificate) | 404 |
//! | deleted, or its storage expired | 410 |
//! | invalid (proven inconsistently encoded) | 422 |
//! | too few shards answered | 503 with `Retry-After` |
//! | body over the limit, or over what the committee can encode | 413 |
//! | range outside the blob | 416 |
//!
//! Invalid blobs get **422 Unprocessable Content**: the request is well
//! formed, but the blob it names provably has no content and never will.
//! 451 is reserved for legal refusals, which this is not.

pub mod model;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use floe_client::{Client, ClientError, ReadOptions, Status, StoreOptions};
use floe_codec::BlobId;
use floe_consensus::KeyPair;
use serde::Deserialize;
use tokio::net::TcpListener;
use utoipa::openapi::OpenApi;
use utoipa::{IntoParams, OpenApi as _, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use model::{ErrorDetail, ErrorResponse, StatusResponse, StoreResponse};

/// How long a client should wait before retrying when too few shards answered.
const RETRY_AFTER_SECS: u64 = 5;

/// What the gateway serves and its limits.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Serve `PUT /v1/blobs`.
    pub publisher: bool,
    /// Serve `GET`/`HEAD /v1/blobs/{blob_id}` and `/status`.
    pub aggregator: bool,
    /// Largest body a `PUT` may carry (413 beyond it).
    pub max_body_bytes: u64,
    /// Requests handled at once; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Epochs a blob is stored for when `PUT` gives no `epochs`.
    pub default_epochs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            publisher: true,
            aggregator: true,
            max_body_bytes: 256 << 20,
            max_concurrent_requests: 64,
            default_epochs: 1,
        }
    }
}

/// A gateway in front of one committee.
pub struct Gateway {
    client: Arc<Client>,
    owner: Option<KeyPair>,
    config: GatewayConfig,
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
        Arc::new(Self {
            client,
            owner,
            config,
            metrics: metrics::Metrics::default(),
        })
    }

    /// The HTTP application: the enabled roles, `/v1/api` and `/metrics`.
    pub fn router(self: &Arc<Self>) -> Router {
        let (router, api) = routes(self.config.publisher, self.config.aggregator).split_for_parts();
        let api = Arc::new(api);
        router
            .route(
                "/v1/api",
                axum::routing::get(move || {
                    let api = Arc::clone(&api);
                    async move { Json(api.as_ref().clone()) }
                }),
            )
            .route("/metrics", axum::routing::get(render_metrics))
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                record,
            ))
            .layer(tower::limit::ConcurrencyLimitLayer::new(
                self.config.max_concurrent_requests.max(1),
            ))
            .with_state(Arc::clone(self))
    }
}

/// The OpenAPI document of a gateway serving both roles (the one checked in
/// under `docs/`).
pub fn openapi() -> OpenApi {
    routes(true, true).split_for_parts().1
}

/// Serves `router` on `listener` until `shutdown` completes; requests in
/// flight then finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Floe gateway",
        description = "Store and read Floe blobs over HTTP. Every answer is a protocol fact: a stored blob comes with its certificate, a read is verified against the blob ID, a status carries its proof.",
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
    /// A request the gateway refuses before contacting the committee.
    BadRequest(String),
    /// The body exceeds the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
        /// What set it.
        by: &'static str,
    },
    /// The range lies outside the blob.
    RangeNotSatisfiable {
        /// The blob.
        blob_id: BlobId,
        /// Its length.
        length: u64,
    },
}

impl From<ClientError> for GatewayError {
    fn from(e: ClientError) -> Self {
        GatewayError::Client(e)
    }
}

impl GatewayError {
    fn code(&self) -> (StatusCode, &'static str) {
        match self {
            GatewayError::Client(e) => match e {
                ClientError::NotCertified { .. } => (StatusCode::NOT_FOUND, "NOT_FOUND"),
                ClientError::Expired { .. } | ClientError::Deleted { .. } => {
                    (StatusCode::GONE, "GONE")
                }
                ClientError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_BLOB"),
                ClientError::NotEnoughShards { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
                }
                ClientError::Rejected(_) => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
                ClientError::NotAllowed(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            },
            GatewayError::BadBlobId(_) | GatewayError::BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "BAD_REQUEST")
            }
            GatewayError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            GatewayError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_NOT_SATISFIABLE")
            }
        }
    }

    fn message(&self) -> String {
        match self {
            GatewayError::Client(e @ ClientError::NotEnoughShards { .. }) => {
                format!("{e}; retry in a few seconds")
            }
            GatewayError::Client(e) => e.to_string(),
            GatewayError::BadBlobId(text) => format!(
                "{text:?} is not a blob ID: expected 43 characters of URL-safe base64 (as `floe blob-id FILE` prints)"
            ),
            GatewayError::BadRequest(text) => text.clone(),
            GatewayError::TooLarge { limit, by } => {
                format!("the body exceeds the {limit}-byte limit set by {by}; store larger blobs with the `floe` CLI or raise the limit")
            }
            GatewayError::RangeNotSatisfiable { blob_id, length } => format!(
                "the range lies outside blob {blob_id}, which has {length} bytes"
            ),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let (code, name) = self.code();
        let body = ErrorResponse {
            error: ErrorDetail {
                code: code.as_u16(),
                status: name.into(),
                message: self.message(),
                blob_status: None,
            },
        };
        let mut response = (code, Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            GatewayError::Client(ClientError::NotEnoughShards { .. }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
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

fn parse_blob_id(text: &str) -> Result<BlobId, GatewayError> {
    text.parse()
        .map_err(|_| GatewayError::BadBlobId(text.chars().take(64).collect()))
}

// ---- publisher ----

/// Query parameters of a store.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoreQuery {
    /// Epochs to store the blob for, from the current one (default 1).
    #[param(minimum = 1)]
    pub epochs: Option<u64>,
    /// Whether the gateway's owner key may delete the blob before it expires
    /// (default false: permanent).
    pub deletable: Option<bool>,
}

/// A blob's bytes, as the request or response body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BlobBytes(pub Vec<u8>);

/// Store the body as a blob for `epochs` epochs.
#[utoipa::path(
    put,
    path = "/v1/blobs",
    tag = "publisher",
    params(StoreQuery),
    request_body(content = BlobBytes, content_type = "application/octet-stream", description = "The blob."),
    responses(
        (status = 200, description = "The blob is certified: newly by this request (`newlyCreated`) or already, for at least as long (`alreadyCertified`).", body = StoreResponse),
        (status = 400, description = "A bad parameter, or `deletable=true` on a gateway without an owner key.", body = ErrorResponse),
        (status = 413, description = "The body exceeds the gateway's limit or what the committee can encode.", body = ErrorResponse),
        (status = 503, description = "Too few shards confirmed storage; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn put_blob(
    State(gateway): State<Arc<Gateway>>,
    Query(query): Query<StoreQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StoreResponse>, GatewayError> {
    let epochs = query.epochs.unwrap_or(gateway.config.default_epochs);
    if epochs == 0 {
        return Err(GatewayError::BadRequest("epochs must be at least 1".into()));
    }
    let owner = if query.deletable.unwrap_or(false) {
        match &gateway.owner {
            Some(key) => Some(key.public()),
            None => {
                return Err(GatewayError::BadRequest(
                    "this gateway has no owner key, so it cannot store deletable blobs; store with deletable=false, or give the gateway an owner_key in its client config".into(),
                ))
            }
        }
    } else {
        None
    };
    let committee = gateway.client.committee(gateway.client.epoch());
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
    let blob = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .await
        .map_err(|_| too_large)?;
    let size = blob.len() as u64;
    let options = StoreOptions {
        owner,
        ..StoreOptions::default()
    };
    let outcome = gateway.client.store(blob, epochs, options).await?;
    Ok(Json(StoreResponse::new(&outcome, &committee, size)))
}

// ---- aggregator ----

/// Read a blob: its bytes, verified against the blob ID. Honours `Range`
/// (one range; several are answered with the whole blob).
#[utoipa::path(
    get,
    path = "/v1/blobs/{blob_id}",
    tag = "aggregator",
    params(
        ("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64)."),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`.")
    ),
    responses(
        (status = 200, description = "The blob.", body = BlobBytes, content_type = "application/octet-stream",
            headers(("ETag" = String, description = "The blob ID, quoted."))),
        (status = 206, description = "The requested range.", body = BlobBytes, content_type = "application/octet-stream",
            headers(("Content-Range" = String, description = "`bytes first-last/length`."))),
        (status = 400, description = "Not a blob ID.", body = ErrorResponse),
        (status = 404, description = "No certificate: shards forming a quorum answered and none knows the blob.", body = ErrorResponse),
        (status = 410, description = "Deleted by its owner, or its storage expired.", body = ErrorResponse),
        (status = 416, description = "The range lies outside the blob.", body = ErrorResponse),
        (status = 422, description = "The blob is proven invalid (inconsistently encoded): it has no content.", body = ErrorResponse),
        (status = 503, description = "Too few shards answered; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn get_blob(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let blob = gateway.client.read(blob_id, ReadOptions::default()).await?;
    let length = blob.len() as u64;
    match requested_range(&headers, blob_id, length)? {
        Some(range) => {
            let (first, last) = (*range.start(), *range.end());
            // Bounds were validated against the length.
            let part = blob.slice(first as usize..=last as usize);
            let mut response = blob_response(StatusCode::PARTIAL_CONTENT, blob_id, part);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {first}-{last}/{length}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            Ok(response)
        }
        None => Ok(blob_response(StatusCode::OK, blob_id, blob)),
    }
}

/// A blob's headers without its bytes: `Content-Length`, `ETag`,
/// `Accept-Ranges`. Only the metadata is fetched.
#[utoipa::path(
    head,
    path = "/v1/blobs/{blob_id}",
    tag = "aggregator",
    params(("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64).")),
    responses(
        (status = 200, description = "The blob is certified; `Content-Length` is its size.",
            headers(("Content-Length" = u64, description = "The blob's size."), ("ETag" = String, description = "The blob ID, quoted."))),
        (status = 400, description = "Not a blob ID."),
        (status = 404, description = "No certificate."),
        (status = 410, description = "Deleted or expired."),
        (status = 422, description = "Proven invalid."),
        (status = 503, description = "Too few shards answered.")
    )
)]
async fn head_blob(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let length = gateway.client.length(blob_id).await?;
    let mut response = blob_response(StatusCode::OK, blob_id, Bytes::new());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

fn blob_response(status: StatusCode, blob_id: BlobId, bytes: Bytes) -> Response {
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
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// The one range asked for, validated against `length`; `None` for the
/// whole blob (no `Range`, a malformed one, or several ranges).
fn requested_range(
    headers: &HeaderMap,
    blob_id: BlobId,
    length: u64,
) -> Result<Option<std::ops::RangeInclusive<u64>>, GatewayError> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    // A header that does not parse is ignored (RFC 9110 §14.2).
    let Ok(parsed) = http_range_header::parse_range_header(value) else {
        return Ok(None);
    };
    let ranges = parsed
        .validate(length)
        .map_err(|_| GatewayError::RangeNotSatisfiable { blob_id, length })?;
    Ok(match ranges.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// A blob's definite state with its proof.
#[utoipa::path(
    get,
    path = "/v1/blobs/{blob_id}/status",
    tag = "aggregator",
    params(("blob_id" = String, Path, description = "The blob ID (43 characters of URL-safe base64).")),
    responses(
        (status = 200, description = "A definite state with its proof, including `unknown` when shards forming a quorum answered and none knows the blob.", body = StatusResponse),
        (status = 400, description = "Not a blob ID.", body = ErrorResponse),
        (status = 503, description = "Too few shards answered to say; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
async fn get_status(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
) -> Result<Json<StatusResponse>, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let status: Status = gateway.client.status(blob_id).await?;
    let epoch = gateway.client.epoch();
    Ok(Json(StatusResponse::new(
        blob_id,
        &status,
        &gateway.client.committee(epoch),
        epoch.0,
    )))
}

// ---- metrics ----

async fn record(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    gateway
        .metrics
        .observe(&route, &method, response.status().as_u16(), start.elapsed());
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
