//! The error envelope: every refusal's status code, Walrus's status name
//! and reason, its message and metadata, and the headers that go with it
//! (`Retry-After`, `Content-Range`, `Connection: close`).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use floe_client::ClientError;
use floe_codec::BlobId;
use serde_json::json;

use crate::cache;
use crate::model::{ErrorDetail, ErrorInfo, ErrorResponse};
use crate::ERROR_DOMAIN;

/// How long a client should wait before retrying when too few shards answered.
const RETRY_AFTER_SECS: u64 = 5;

/// How long a client should wait before retrying when every slot was busy.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

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
    /// The publisher needs a valid token and got none (missing, malformed,
    /// bad signature, expired, replayed).
    Unauthorized {
        /// Why.
        reason: String,
    },
    /// The token does not allow what the request asks.
    TokenLimit {
        /// The claim that limits it.
        claim: &'static str,
        /// The claim's value.
        limit: u64,
        /// What the request asked.
        requested: u64,
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
                ClientError::EpochChanged { .. } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "EPOCH_CHANGED",
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
                ClientError::NotAdmitted { .. } => {
                    (StatusCode::FORBIDDEN, "PERMISSION_DENIED", "NOT_ADMITTED")
                }
            },
            GatewayError::Unauthorized { .. } => {
                (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "BAD_TOKEN")
            }
            GatewayError::TokenLimit { .. } => {
                (StatusCode::FORBIDDEN, "PERMISSION_DENIED", "TOKEN_LIMIT")
            }
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
            GatewayError::Unauthorized { reason } => reason.clone(),
            GatewayError::TokenLimit { claim, limit, requested } => format!(
                "the token's `{claim}` claim allows {limit}, and this request asks {requested}; get a token that allows it"
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
                ClientError::EpochChanged { blob_id, from, to } => {
                    json!({"blobId": blob_id.to_string(), "fromEpoch": from.0, "epoch": to.0, "retryAfterSecs": RETRY_AFTER_SECS})
                }
                ClientError::NotAdmitted { blob_id, refusal } => {
                    json!({"blobId": blob_id.to_string(), "refusal": refusal.to_string()})
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
            GatewayError::TokenLimit {
                claim,
                limit,
                requested,
            } => {
                json!({"claim": claim, "limit": limit, "requested": requested})
            }
            GatewayError::Unauthorized { .. } => json!({}),
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
            GatewayError::Unauthorized { .. } => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
