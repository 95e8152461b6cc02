//! The gateway's limits, caching and Walrus-compatible answers, against a
//! real local committee (7 nodes, 100 shards, QUIC on 127.0.0.1) over real
//! HTTP: refusals that come before the upload, deadlines on slow clients,
//! 429 when saturated, bounded metrics labels, and `Cache-Control` that
//! ends with the blob's storage.
//!
//! Times here are generous bounds that keep a broken gateway from hanging
//! the test; none is what a test proves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use floe_consensus::KeyPair;
use floe_gateway::GatewayConfig;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::*;

/// Sends `head` (and `body`) on a raw connection and returns everything the
/// server answers until it closes the connection, or `None` if it never
/// does within [`BOUND`].
async fn raw_exchange(address: SocketAddr, head: &str, body: &[u8]) -> Option<String> {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

fn max_age(cache_control: &str) -> u64 {
    cache_control
        .split(',')
        .find_map(|part| part.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"))
        .parse()
        .unwrap()
}

/// `epochs` beyond the committee's limit is a 400 naming the limit, given
/// before the body is read; parameters Walrus documents are honoured or
/// refused, never ignored; errors have Walrus's shape; metrics labels stay
/// bounded whatever methods clients make up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_first_and_speak_walrus() {
    let mut setup = cluster().await;
    let address = setup
        .gateway(
            GatewayConfig {
                max_body_bytes: 8 << 20,
                ..GatewayConfig::default()
            },
            None,
        )
        .await;
    let url = format!("http://{address}");

    // epochs=5000: refused before the upload. The client announces 8 MB and
    // sends none of it: the answer comes anyway, and names the limit.
    let answer = raw_exchange(
        address,
        &format!(
            "PUT /v1/blobs?epochs=5000 HTTP/1.1\r\nHost: {address}\r\nContent-Length: 8000000\r\nConnection: close\r\n\r\n"
        ),
        b"",
    )
    .await
    .expect("the gateway answers without waiting for the body");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("EPOCHS_OVER_LIMIT"), "{answer}");
    assert!(answer.contains("1000"), "{answer}");

    // With a body: 400 naming the limit, not 503 "retry" after uploading.
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=5000"))
        .body(blob(20_000, 1))
        .send()
        .await
        .unwrap();
    assert!(!response.headers().contains_key("retry-after"));
    let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
    assert_eq!(error["details"][0]["reason"], "EPOCHS_OVER_LIMIT");
    assert_eq!(error["details"][0]["metadata"]["limit"], 1000);
    assert!(error["message"].as_str().unwrap().contains("1000"));

    // Epoch counts that overflow: refused the same way, never a panic.
    for epochs in [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999999",
    ] {
        let response = setup
            .http
            .put(format!("{url}/v1/blobs?epochs={epochs}"))
            .body(blob(100, 2))
            .send()
            .await
            .unwrap();
        let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
        assert_eq!(
            error["details"][0]["reason"], "EPOCHS_OVER_LIMIT",
            "{epochs}"
        );
    }
    // Not a number, or zero: 400 in the same JSON shape.
    for query in ["epochs=abc", "epochs=-3", "epochs=0", "epochs=1&epochs=2"] {
        let response = setup
            .http
            .put(format!("{url}/v1/blobs?{query}"))
            .body(blob(100, 3))
            .send()
            .await
            .unwrap();
        let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
        assert_eq!(error["details"][0]["reason"], "BAD_PARAMETER", "{query}");
    }
    // At the limit: stored.
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=1000"))
        .body(blob(100, 4))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Walrus's parameters: an encoding Floe does not write, chain objects,
    // contradictions and misspellings are refused, saying what to do.
    for (query, reason) in [
        ("encoding_type=RS2", "UNSUPPORTED_PARAMETER"),
        ("send_object_to=0x2a", "UNSUPPORTED_PARAMETER"),
        ("share=true", "UNSUPPORTED_PARAMETER"),
        ("quilt_version=v9", "UNSUPPORTED_PARAMETER"),
        ("deletable=true&permanent=true", "BAD_PARAMETER"),
        ("force=maybe", "BAD_PARAMETER"),
        ("epoch=3", "UNKNOWN_PARAMETER"),
    ] {
        let response = setup
            .http
            .put(format!("{url}/v1/blobs?{query}"))
            .body(blob(100, 5))
            .send()
            .await
            .unwrap();
        let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
        assert_eq!(error["details"][0]["reason"], reason, "{query}");
    }
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?encoding_type=RS2"))
        .body(blob(100, 5))
        .send()
        .await
        .unwrap();
    let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
    assert!(error["message"].as_str().unwrap().contains("RedStuff"));
    // Deletable without an owner key: Walrus's FAILED_PRECONDITION.
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?permanent=false"))
        .body(blob(100, 6))
        .send()
        .await
        .unwrap();
    let error = walrus_error(response, 400, "FAILED_PRECONDITION").await;
    assert_eq!(error["details"][0]["reason"], "NO_OWNER_KEY");

    // Values Floe supports are honoured.
    let data = blob(30_000, 7);
    let id = blob_id_of(&setup.cluster, &data);
    let response = setup
        .http
        .put(format!(
            "{url}/v1/blobs?epochs=2&encoding_type=RedStuff&permanent=true&share=false&quilt_version=v1"
        ))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["newlyCreated"]["blobObject"]["blobId"], id.as_str());
    assert_eq!(stored["newlyCreated"]["blobObject"]["deletable"], false);
    // `force=true` certifies again although it is certified for as long.
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=1&force=true"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let forced: Value = response.json().await.unwrap();
    assert_eq!(forced["newlyCreated"]["blobObject"]["blobId"], id.as_str());
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=1"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["alreadyCertified"]["blobId"], id.as_str());

    // Reads: Walrus's consistency options.
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{id}?strict_consistency_check=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &data[..]);
    for (query, reason) in [
        ("skip_consistency_check=true", "UNSUPPORTED_PARAMETER"),
        ("strict_consistency_check=yes", "BAD_PARAMETER"),
        (
            "strict_consistency_check=true&skip_consistency_check=true",
            "BAD_PARAMETER",
        ),
    ] {
        let response = setup
            .http
            .get(format!("{url}/v1/blobs/{id}?{query}"))
            .send()
            .await
            .unwrap();
        let error = walrus_error(response, 400, "INVALID_ARGUMENT").await;
        assert_eq!(error["details"][0]["reason"], reason, "{query}");
    }

    // Error bodies: Walrus's status names with their codes.
    let unknown = blob_id_of(&setup.cluster, b"never stored here");
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{unknown}"))
        .send()
        .await
        .unwrap();
    let error = walrus_error(response, 404, "NOT_FOUND").await;
    assert_eq!(error["details"][0]["reason"], "BLOB_NOT_CERTIFIED");
    assert_eq!(error["details"][0]["metadata"]["blobId"], unknown.as_str());
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/not-a-blob-id"))
        .send()
        .await
        .unwrap();
    walrus_error(response, 400, "INVALID_ARGUMENT").await;
    let response = setup
        .http
        .get(format!("{url}/no/such/route"))
        .send()
        .await
        .unwrap();
    walrus_error(response, 404, "NOT_FOUND").await;

    // Metrics: made-up methods on real and unknown routes add no series.
    for method in ["FROBNICATE", "XYZZY", "PLUGH"] {
        for path in ["/v1/blobs", "/nowhere/at/all"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = setup
                .http
                .request(method, format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            assert!(response.status().is_client_error());
        }
    }
    let metrics = setup
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for made_up in ["FROBNICATE", "XYZZY", "PLUGH", "/nowhere"] {
        assert!(
            !metrics.contains(made_up),
            "{made_up} labels a series:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("route=\"/v1/blobs\",method=\"OTHER\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"unmatched\",method=\"OTHER\""),
        "{metrics}"
    );
    for line in metrics.lines().filter(|l| l.contains("method=\"")) {
        let method = line
            .split("method=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            [
                "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
                "OTHER"
            ]
            .contains(&method),
            "{line}"
        );
    }

    setup.shutdown().await;
}

/// `Cache-Control` never outlives the protocol: `max-age` ends with the
/// blob's storage, deletable blobs are never `immutable`, and nothing but a
/// certified blob's bytes is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_never_outlives_the_protocol() {
    let mut setup = cluster().await;
    let owner = KeyPair::from_seed(&[9; 32]);
    let address = setup
        .gateway(GatewayConfig::default(), Some(KeyPair::from_seed(&[9; 32])))
        .await;
    let url = format!("http://{address}");

    // A permanent blob stored for 2 epochs of an hour: cached at most until
    // its storage ends, two hours from now at the most.
    let permanent = blob(40_000, 11);
    let id = blob_id_of(&setup.cluster, &permanent);
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=2"))
        .body(permanent.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for range in [None, Some("bytes=0-99")] {
        let mut request = setup.http.get(format!("{url}/v1/blobs/{id}"));
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success());
        let cache_control = response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cache_control.contains("public"), "{cache_control}");
        assert!(cache_control.contains("immutable"), "{cache_control}");
        let age = max_age(&cache_control);
        assert!(
            (1..=2 * EPOCH_SECS).contains(&age),
            "max-age {age} outlives the blob's 2 epochs: {cache_control}"
        );
    }
    let head = setup
        .http
        .head(format!("{url}/v1/blobs/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let cache_control = head.headers()["cache-control"].to_str().unwrap();
    assert!(max_age(cache_control) <= 2 * EPOCH_SECS, "{cache_control}");

    // A deletable blob stored for 50 epochs: never immutable, and kept only
    // briefly (its owner may delete it at any moment).
    let deletable = blob(40_000, 12);
    let deletable_id = blob_id_of(&setup.cluster, &deletable);
    let response = setup
        .http
        .put(format!("{url}/v1/blobs?epochs=50&deletable=true"))
        .body(deletable.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{deletable_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache_control = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!cache_control.contains("immutable"), "{cache_control}");
    assert!(
        max_age(&cache_control) <= GatewayConfig::default().deletable_max_age.as_secs(),
        "{cache_control}"
    );

    // Once deleted: 410, not cached.
    let deletable_blob_id: floe_codec::BlobId = deletable_id.parse().unwrap();
    setup
        .client
        .delete(deletable_blob_id, &owner)
        .await
        .unwrap();
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{deletable_id}"))
        .send()
        .await
        .unwrap();
    let error = walrus_error(response, 410, "GONE").await;
    assert_eq!(error["details"][0]["reason"], "BLOB_DELETED");

    // Unknown blob, range outside it, bad blob ID: not cached.
    let unknown = blob_id_of(&setup.cluster, b"not stored");
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{unknown}"))
        .send()
        .await
        .unwrap();
    walrus_error(response, 404, "NOT_FOUND").await;
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{id}"))
        .header("Range", "bytes=50000-")
        .send()
        .await
        .unwrap();
    walrus_error(response, 416, "RANGE_NOT_SATISFIABLE").await;
    let response = setup
        .http
        .head(format!("{url}/v1/blobs/{unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["cache-control"], "no-store");
    // A status changes (deletion, expiry): never cached.
    let response = setup
        .http
        .get(format!("{url}/v1/blobs/{id}/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");

    setup.shutdown().await;
}

/// A slow client cannot hold the gateway: a request head must arrive within
/// the header timeout, a body within the body timeout (408), and a
/// saturated gateway answers 429 with `Retry-After` at once instead of
/// queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_time_out_and_saturation_is_429() {
    let mut setup = cluster().await;
    let address = setup
        .gateway(
            GatewayConfig {
                max_concurrent_requests: 1,
                header_timeout: Duration::from_secs(2),
                body_timeout: Duration::from_secs(10),
                ..GatewayConfig::default()
            },
            None,
        )
        .await;
    let url = format!("http://{address}");
    let unknown = blob_id_of(&setup.cluster, b"status of nothing");
    let status_url = format!("{url}/v1/blobs/{unknown}/status");

    // A head that never ends: the connection is closed, and it never takes
    // the one request slot meanwhile.
    let trickle = tokio::spawn(raw_exchange(
        address,
        "GET /v1/blobs/abc HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        b"still typing",
    ));
    let response = setup.http.get(&status_url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        trickle.await.unwrap().is_some(),
        "a connection that never finishes its head stays open"
    );

    // An idle keep-alive connection is closed too.
    let idle = raw_exchange(
        address,
        &format!("GET /v1/blobs/{unknown}/status HTTP/1.1\r\nHost: x\r\n\r\n"),
        b"",
    )
    .await
    .expect("an idle connection stays open");
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");

    // A body that stalls holds the only store slot: other stores get 429
    // at once, with Retry-After, and the stalled one gets 408; reads have
    // slots of their own and are still served.
    let stalled = tokio::spawn(raw_exchange(
        address,
        "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        &[7u8; 1000],
    ));
    // Its head arrives first and takes the slot.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = None;
    for _ in 0..200 {
        let response = setup
            .http
            .put(format!("{url}/v1/blobs"))
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = setup.http.get(&status_url).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a stalled upload starved the reads"
    );
    let refused = refused.expect("a saturated gateway answers 429");
    assert!(refused.headers().contains_key("retry-after"));
    let error = walrus_error(refused, 429, "RESOURCE_EXHAUSTED").await;
    assert_eq!(error["details"][0]["reason"], "OVERLOADED");
    // Metrics and the API document stay reachable when saturated.
    let metrics = setup
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);

    let answer = stalled
        .await
        .unwrap()
        .expect("a stalled body is answered and its connection closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("BODY_TIMEOUT"), "{answer}");

    // The slot is free again.
    let response = setup.http.get(&status_url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = setup
        .http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("status=\"429\""), "{metrics}");
    assert!(metrics.contains("status=\"408\""), "{metrics}");

    setup.shutdown().await;
}
