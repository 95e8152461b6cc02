//! The gateway against a real local committee (7 nodes, 100 shards, QUIC on
//! 127.0.0.1, RocksDB in a temp dir), over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use floe_client::{Client, ClientConfig};
use floe_consensus::BlobCertificate;
use floe_gateway::model::{StatusResponse, StoreResponse};
use floe_gateway::{Gateway, GatewayConfig};
use floe_node::{Limits, Tasks};
use floe_testkit::local::Cluster;
use reqwest::StatusCode;

struct Setup {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    url: String,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn setup(max_body_bytes: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks::brisk();
    let cluster = Cluster::start(dir.path(), 7, 100, 3_600_000, Limits::default(), tasks)
        .await
        .unwrap();
    let config = ClientConfig {
        read_hedge_after: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = Arc::new(Client::new(cluster.file(), config).unwrap());
    let gateway = Gateway::new(
        client,
        None,
        GatewayConfig {
            max_body_bytes,
            ..GatewayConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        gateway
            .serve(listener, async move {
                let _ = stopped.await;
            })
            .await
    });
    Setup {
        _dir: dir,
        cluster,
        url: format!("http://{address}"),
        http: reqwest::Client::new(),
        stop,
    }
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn blob_id_of(cluster: &Cluster, data: &[u8]) -> String {
    let encoding = cluster.file().committee.encoding();
    let (metadata, _, _) = floe_codec::encode(&encoding, data).unwrap();
    metadata.blob_id().to_string()
}

async fn put(setup: &Setup, data: Vec<u8>, query: &str) -> reqwest::Response {
    setup
        .http
        .put(format!("{}/v1/blobs{query}", setup.url))
        .body(data)
        .send()
        .await
        .unwrap()
}

async fn get_json<T: serde::de::DeserializeOwned>(setup: &Setup, path: &str) -> T {
    setup
        .http
        .get(format!("{}{path}", setup.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get_range(setup: &Setup, blob_id: &str, range: &str) -> reqwest::Response {
    setup
        .http
        .get(format!("{}/v1/blobs/{blob_id}", setup.url))
        .header("Range", range)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_then_get_with_ranges_head_status_and_errors() {
    let setup = setup(1 << 20).await;
    let data = blob(100_000, 7);
    let expected_id = blob_id_of(&setup.cluster, &data);

    // PUT: newly created, with a certificate from a quorum.
    let response = put(&setup, data.clone(), "?epochs=3").await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: StoreResponse = response.json().await.unwrap();
    let StoreResponse::NewlyCreated {
        blob_object,
        certificate,
    } = &stored
    else {
        panic!("expected newlyCreated, got {stored:?}");
    };
    assert_eq!(blob_object.blob_id, expected_id);
    assert_eq!(blob_object.size, data.len() as u64);
    assert!(!blob_object.deletable);
    assert_eq!(
        blob_object.storage.end_epoch,
        blob_object.certified_epoch + 3
    );
    assert!(certificate.signed_shards >= certificate.needed_shards);

    // Walrus-style clients read `newlyCreated.blobObject.blobId`.
    let again = put(&setup, data.clone(), "?epochs=2").await;
    let raw: serde_json::Value = again.json().await.unwrap();
    assert_eq!(raw["alreadyCertified"]["blobId"], expected_id.as_str());
    assert_eq!(
        raw["alreadyCertified"]["endEpoch"],
        blob_object.storage.end_epoch
    );

    // GET: the bytes, with length and ETag.
    let response = setup
        .http
        .get(format!("{}/v1/blobs/{expected_id}", setup.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        data.len().to_string().as_str()
    );
    assert_eq!(
        response.headers()["etag"],
        format!("\"{expected_id}\"").as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[..]);

    // Ranges: first byte, middle, suffix, out of range.
    let first = get_range(&setup, &expected_id, "bytes=0-0").await;
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(first.headers()["content-range"], "bytes 0-0/100000");
    assert_eq!(first.bytes().await.unwrap().as_ref(), &data[..1]);

    let middle = get_range(&setup, &expected_id, "bytes=40000-40999").await;
    assert_eq!(middle.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        middle.headers()["content-range"],
        "bytes 40000-40999/100000"
    );
    assert_eq!(
        middle.bytes().await.unwrap().as_ref(),
        &data[40_000..41_000]
    );

    let suffix = get_range(&setup, &expected_id, "bytes=-500").await;
    assert_eq!(suffix.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        suffix.headers()["content-range"],
        "bytes 99500-99999/100000"
    );
    assert_eq!(suffix.bytes().await.unwrap().as_ref(), &data[99_500..]);

    let outside = get_range(&setup, &expected_id, "bytes=100000-").await;
    assert_eq!(outside.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(outside.headers()["content-range"], "bytes */100000");

    // HEAD: headers only.
    let head = setup
        .http
        .head(format!("{}/v1/blobs/{expected_id}", setup.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert!(head.bytes().await.unwrap().is_empty());

    // Status: certified, with a certificate that verifies.
    let status: StatusResponse = get_json(&setup, &format!("/v1/blobs/{expected_id}/status")).await;
    assert_eq!(status.state, floe_gateway::model::BlobState::Certified);
    assert_eq!(status.end_epoch, Some(blob_object.storage.end_epoch));
    let summary = status.certificate.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&summary.bytes)
        .unwrap();
    let certificate: BlobCertificate = floe_codec::from_canonical_bytes(&bytes).unwrap();
    assert_eq!(certificate.message.body.blob_id.to_string(), expected_id);
    let committee = setup
        .cluster
        .file()
        .committee
        .at_epoch(certificate.message.epoch);
    assert_eq!(
        certificate.verify(&committee).unwrap(),
        summary.signed_shards
    );

    // Unknown blob: 404 for its bytes, a definite "unknown" for its status.
    let unknown = blob_id_of(&setup.cluster, b"never stored");
    let response = setup
        .http
        .get(format!("{}/v1/blobs/{unknown}", setup.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "NOT_FOUND");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&unknown));
    let status: StatusResponse = get_json(&setup, &format!("/v1/blobs/{unknown}/status")).await;
    assert_eq!(status.state, floe_gateway::model::BlobState::Unknown);
    assert!(status.answered_shards.unwrap() >= setup.cluster.file().committee.quorum_threshold());

    // Not a blob ID: 400.
    let response = setup
        .http
        .get(format!("{}/v1/blobs/not-a-blob-id", setup.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Oversize: 413, whether announced or not.
    let response = put(&setup, vec![1; (1 << 20) + 1], "").await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "PAYLOAD_TOO_LARGE");
    // Chunked, so the size is not announced: refused once the limit passes.
    assert_eq!(put_chunked(&setup, 5, 300_000).await, 413);

    // Deletable without an owner key: refused, saying why.
    let response = put(&setup, blob(10, 1), "?deletable=true").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Concurrent PUTs of the same content: one blob ID.
    let same = blob(50_000, 99);
    let puts: Vec<_> = (0..4)
        .map(|_| {
            let request = setup
                .http
                .put(format!("{}/v1/blobs", setup.url))
                .body(same.clone());
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for put in puts {
        let response = put.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let stored: StoreResponse = response.json().await.unwrap();
        ids.insert(stored.blob_id().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(
        ids.into_iter().next().unwrap(),
        blob_id_of(&setup.cluster, &same)
    );

    // The OpenAPI document and the metrics.
    let api: serde_json::Value = get_json(&setup, "/v1/api").await;
    assert!(api["paths"]["/v1/blobs/{blob_id}"]["head"].is_object());
    let metrics = setup
        .http
        .get(format!("{}/metrics", setup.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "floe_gateway_requests_total{route=\"/v1/blobs/{blob_id}\",method=\"GET\",status=\"206\"} 3"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("floe_gateway_request_seconds_count{route=\"/v1/blobs\",method=\"PUT\"}")
    );

    let _ = setup.stop.send(());
    setup.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_nodes_up_is_503_with_retry_after() {
    let mut setup = setup(1 << 20).await;
    // 5 of 7 nodes hold about 71 of 100 shards: far more than f = 33.
    for i in 0..5 {
        setup.cluster.stop(i).await;
    }
    let response = put(&setup, blob(1000, 3), "").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "UNAVAILABLE");

    let id = blob_id_of(&setup.cluster, b"anything");
    let response = setup
        .http
        .get(format!("{}/v1/blobs/{id}/status", setup.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let _ = setup.stop.send(());
    setup.cluster.shutdown().await;
}

/// The checked-in document is the one the routes generate, and it is a
/// valid OpenAPI document by a schema validator.
#[test]
fn openapi_document_is_current_and_valid() {
    let generated = floe_gateway::openapi().to_pretty_json().unwrap();
    // The manifest dir of this run (cargo sets it when running tests), not
    // the one baked in at compile time: with a shared target dir a test
    // binary may have been built from another checkout.
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../../docs/openapi.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    assert_eq!(
        parse(&checked_in),
        parse(&generated),
        "docs/openapi.json is stale: regenerate it with `cargo run --bin floe -- gateway --openapi > docs/openapi.json`"
    );
    // openapi-spec-validator checks the document against the OpenAPI 3.1
    // JSON Schema (scripts/setup.sh installs it).
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&path)
        .output()
        .expect("python3 runs (scripts/setup.sh installs openapi-spec-validator)");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused docs/openapi.json:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PUT of `chunks` chunks of `size` bytes with `Transfer-Encoding:
/// chunked`, over a raw connection; returns the status code.
async fn put_chunked(setup: &Setup, chunks: usize, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = setup.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "PUT /v1/blobs HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let chunk = format!("{size:x}\r\n");
        // The server may answer and close before every chunk is sent.
        if stream.write_all(chunk.as_bytes()).await.is_err()
            || stream.write_all(&vec![5u8; size]).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}
