//! The OpenAPI document, generated from the route definitions: the routes
//! of the enabled roles, each with its description.

use std::sync::Arc;

use utoipa::openapi::OpenApi;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes::{read, status, store};
use crate::Gateway;

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

pub(crate) fn routes(publisher: bool, aggregator: bool) -> OpenApiRouter<Arc<Gateway>> {
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi());
    if publisher {
        router = router.routes(routes!(store::put_blob));
    }
    if aggregator {
        router = router
            .routes(routes!(read::get_blob, read::head_blob))
            .routes(routes!(status::get_status));
    }
    router
}
