//! The blob routes: `PUT /v1/blobs` (the publisher, [`store`]), `GET` and
//! `HEAD /v1/blobs/{blob_id}` ([`read`]) and `GET
//! /v1/blobs/{blob_id}/status` ([`status`]) of the aggregator, and what
//! they share: the blob ID in the path, the query's pairs, the body's
//! schema, and the answer to a path no route has.

pub(crate) mod read;
pub(crate) mod status;
pub(crate) mod store;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::Uri;
use floe_codec::BlobId;
use utoipa::ToSchema;

use crate::{query, GatewayError};

/// A blob's bytes, as the request or response body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BlobBytes(pub Vec<u8>);

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

pub(crate) async fn no_route(uri: Uri) -> GatewayError {
    GatewayError::NoRoute {
        path: uri.path().chars().take(200).collect(),
    }
}
