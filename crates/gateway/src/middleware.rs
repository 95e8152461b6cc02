//! The middleware around the routes: request slots ([`admit`]), and the
//! record of every answer ([`record`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::deadline::Connection;
use crate::{cache, metrics, Gateway, GatewayError};

/// Takes a request slot for the request, or refuses it with 429 when all
/// are busy: a saturated gateway answers at once instead of queueing. The
/// slot goes with the answer's body, so a blob's bytes count until they are
/// sent, and stores and reads have slots of their own.
pub(crate) async fn admit(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: Next,
) -> Response {
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

/// Tells the connection a request is being handled (no head deadline
/// meanwhile), records the answer in the metrics, and marks every answer
/// that is not a blob's bytes `no-store` unless it says otherwise.
pub(crate) async fn record(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: Next,
) -> Response {
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
