//! `GET` and `HEAD /v1/blobs/{blob_id}`: the aggregator serves a blob's
//! bytes, verified against its ID, whole or one range of them.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use floe_client::ReadOptions;
use floe_codec::BlobId;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{parse_blob_id, query_pairs, BlobBytes};
use crate::model::ErrorResponse;
use crate::query;
use crate::{Gateway, GatewayError};

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
pub(crate) async fn get_blob(
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
pub(crate) async fn head_blob(
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
