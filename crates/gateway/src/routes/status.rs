//! `GET /v1/blobs/{blob_id}/status`: the aggregator answers with a blob's
//! definite state and its proof.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::parse_blob_id;
use crate::cache;
use crate::model::{ErrorResponse, StatusResponse};
use crate::{Gateway, GatewayError};

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
pub(crate) async fn get_status(
    State(gateway): State<Arc<Gateway>>,
    Path(blob_id): Path<String>,
) -> Result<Response, GatewayError> {
    let blob_id = parse_blob_id(&blob_id)?;
    let status = gateway.client.status(blob_id).await?;
    let epoch = gateway.client.epoch();
    let body = Json(StatusResponse::new(
        blob_id,
        &status,
        &gateway.client.committee(epoch),
        epoch.0,
    ));
    Ok(([(header::CACHE_CONTROL, cache::no_store())], body).into_response())
}
