//! `PUT /v1/blobs`: the publisher stores the request body as a blob and
//! answers with its certificate.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use floe_client::{ClientError, StoreOptions};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{query_pairs, BlobBytes};
use crate::deadline;
use crate::model::{ErrorResponse, StoreResponse};
use crate::query::{self, Epochs};
use crate::{Gateway, GatewayError};

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
        (status = 401, description = "The publisher requires a token (`Authorization: Bearer <JWT>`) and none was sent, or it is malformed, does not verify, has expired, or was used before (`UNAUTHENTICATED`).", body = ErrorResponse),
        (status = 403, description = "The token does not allow these epochs or this exact size (`TOKEN_LIMIT`, naming the claim), or the committee's nodes do not admit this gateway's key to write (`NOT_ADMITTED`).", body = ErrorResponse),
        (status = 400, description = "A bad or unsupported parameter (`INVALID_ARGUMENT`), more epochs than the committee stores ahead (reason `EPOCHS_OVER_LIMIT`, naming the limit), or `deletable=true` on a gateway without an owner key (`FAILED_PRECONDITION`). Retrying the same request cannot succeed.", body = ErrorResponse),
        (status = 408, description = "The body did not arrive within the gateway's body timeout.", body = ErrorResponse),
        (status = 413, description = "The body exceeds the gateway's limit or what the committee can encode.", body = ErrorResponse),
        (status = 429, description = "Every request slot is busy; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
        (status = 503, description = "Too few shards confirmed storage; retry after `Retry-After` seconds.", body = ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))
    )
)]
pub(crate) async fn put_blob(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<StoreResponse>, GatewayError> {
    // The token first: an unauthenticated caller learns nothing else.
    let claims = match &gateway.config.auth {
        Some(auth) => Some(auth.authorize(&headers, crate::now_unix_ms() / 1000)?),
        None => None,
    };
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
    if let Some(claims) = &claims {
        claims.check_epochs(epochs)?;
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
    // A token's size limit is checked from the announced length first, then
    // bounds the body as it is read.
    let (limit, by) = match claims.as_ref().and_then(|c| c.size_limit()) {
        Some(max) if max < limit => (max, "the token's max_size claim"),
        _ => (limit, by),
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
    if let (Some(claims), Some(length)) = (&claims, announced) {
        claims.check_size(length)?;
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
    if let (Some(claims), Some(auth)) = (&claims, &gateway.config.auth) {
        claims.check_size(size)?;
        // Every check passed: the token is spent now, not before.
        auth.consume(claims, crate::now_unix_ms() / 1000)?;
    }
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
