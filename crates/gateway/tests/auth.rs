//! The publisher's tokens (JWT) and CORS, against a real local committee
//! over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use floe_gateway::GatewayConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

mod common;
use common::*;

fn token(secret: &[u8], claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The publisher with `--jwt-key-file`: a token is needed, must verify,
/// must not have expired and is accepted once; its claims bound epochs and
/// size. The aggregator stays open, and CORS answers for both roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_tokens_are_checked_and_cors_answers() {
    let mut setup = cluster().await;
    let secret = b"a secret of at least thirty-two bytes, for HS256";
    let auth =
        floe_gateway::auth::JwtAuth::new(jsonwebtoken::Algorithm::HS256, secret, true).unwrap();
    let address = setup
        .gateway(
            GatewayConfig {
                auth: Some(Arc::new(auth)),
                cors_origins: vec!["https://app.example".into()],
                ..GatewayConfig::default()
            },
            None,
        )
        .await;
    let url = format!("http://{address}");
    let put = |query: &str, bearer: Option<String>, body: Vec<u8>| {
        let mut request = setup.http.put(format!("{url}/v1/blobs{query}")).body(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    let later = unix_now() + 600;

    // Missing, malformed, badly signed, expired, without `exp`: 401.
    let missing = put("", None, blob(1_000, 1)).await.unwrap();
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let error = walrus_error(missing, 401, "UNAUTHENTICATED").await;
    assert_eq!(error["details"][0]["reason"], "BAD_TOKEN");
    let malformed = put("", Some("not.a.token".into()), blob(1_000, 1))
        .await
        .unwrap();
    walrus_error(malformed, 401, "UNAUTHENTICATED").await;
    let forged = token(
        b"another secret of at least thirty-two bytes!!",
        json!({"exp": later, "jti": "f"}),
    );
    let error = walrus_error(
        put("", Some(forged), blob(1_000, 1)).await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert!(
        error["message"].as_str().unwrap().contains("signature"),
        "{error}"
    );
    let expired = token(secret, json!({"exp": unix_now() - 10, "jti": "e"}));
    let error = walrus_error(
        put("", Some(expired), blob(1_000, 1)).await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert!(
        error["message"].as_str().unwrap().contains("expired"),
        "{error}"
    );
    let endless = token(secret, json!({"jti": "n"}));
    walrus_error(
        put("", Some(endless), blob(1_000, 1)).await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;

    // A good token stores once; the same token again is a replay.
    let good = token(
        secret,
        json!({"exp": later, "jti": "one", "max_epochs": 3, "max_size": 10_000}),
    );
    let stored = put("?epochs=2", Some(good.clone()), blob(5_000, 2))
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::OK, "{:?}", stored.text().await);
    let error = walrus_error(
        put("?epochs=2", Some(good), blob(5_000, 3)).await.unwrap(),
        401,
        "UNAUTHENTICATED",
    )
    .await;
    assert!(
        error["message"].as_str().unwrap().contains("used already"),
        "{error}"
    );

    // Over the token's limits: 403 for epochs, 413 for size (from the
    // announced length, before the upload).
    let epochs = token(secret, json!({"exp": later, "jti": "two", "max_epochs": 3}));
    let error = walrus_error(
        put("?epochs=4", Some(epochs), blob(1_000, 4))
            .await
            .unwrap(),
        403,
        "PERMISSION_DENIED",
    )
    .await;
    assert_eq!(error["details"][0]["reason"], "TOKEN_LIMIT");
    assert_eq!(error["details"][0]["metadata"]["claim"], "max_epochs");
    let size = token(
        secret,
        json!({"exp": later, "jti": "three", "max_size": 10_000}),
    );
    let error = walrus_error(
        put("", Some(size), blob(10_001, 5)).await.unwrap(),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    assert_eq!(error["details"][0]["metadata"]["limit"], 10_000);

    // The aggregator needs no token.
    let blob_id = blob_id_of(&setup.cluster, &blob(5_000, 2));
    let read = setup
        .http
        .get(format!("{url}/v1/blobs/{blob_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(
        read.bytes().await.unwrap().as_ref(),
        blob(5_000, 2).as_slice()
    );

    // CORS: a preflight from the allowed origin is answered for the
    // publisher (with the Authorization header allowed); another origin
    // gets no CORS grant.
    let preflight = setup
        .http
        .request(reqwest::Method::OPTIONS, format!("{url}/v1/blobs"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let other = setup
        .http
        .get(format!("{url}/v1/blobs/{blob_id}"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    setup.shutdown().await;
}
