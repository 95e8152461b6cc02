//! What the gateway's test binaries share: a real local committee (7 nodes,
//! 100 shards, QUIC on 127.0.0.1), gateways started on it, and the checks
//! of Walrus's error body.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use floe_client::{Client, ClientConfig};
use floe_consensus::KeyPair;
use floe_gateway::{Gateway, GatewayConfig};
use floe_node::{Limits, Tasks};
use floe_testkit::local::Cluster;
use serde_json::Value;

/// Far longer than any answer here takes; only a hang reaches it.
pub const BOUND: Duration = Duration::from_secs(60);

/// Epoch length of the test committee: one hour.
pub const EPOCH_SECS: u64 = 3600;

pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub cluster: Cluster,
    pub client: Arc<Client>,
    pub http: reqwest::Client,
    pub stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

pub async fn cluster() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        7,
        100,
        EPOCH_SECS * 1000,
        Limits::default(),
        Tasks::brisk(),
    )
    .await
    .unwrap();
    let config = ClientConfig {
        read_hedge_after: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = Arc::new(Client::new(cluster.file(), config).unwrap());
    Setup {
        _dir: dir,
        cluster,
        client,
        http: reqwest::Client::builder().timeout(BOUND).build().unwrap(),
        stops: Vec::new(),
    }
}

impl Setup {
    /// Starts a gateway with `config` (and `owner`) on the cluster; returns
    /// its address.
    pub async fn gateway(&mut self, config: GatewayConfig, owner: Option<KeyPair>) -> SocketAddr {
        let gateway = Gateway::new(Arc::clone(&self.client), owner, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
        });
        self.stops.push(stop);
        address
    }

    pub async fn shutdown(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        self.cluster.shutdown().await;
    }
}

pub fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(17).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

pub fn blob_id_of(cluster: &Cluster, data: &[u8]) -> String {
    let encoding = cluster.file().committee.encoding();
    let (metadata, _, _) = floe_codec::encode(&encoding, data).unwrap();
    metadata.blob_id().to_string()
}

/// The JSON error body, checked to be Walrus's `Status` shape: `code`,
/// `status`, `message` and `details` holding one `ErrorInfo`. Returns the
/// `error` object.
pub async fn walrus_error(response: reqwest::Response, code: u16, status: &str) -> Value {
    assert_eq!(response.status().as_u16(), code);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    assert_eq!(
        response.headers()["cache-control"],
        "no-store",
        "an error is never cached"
    );
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["status"], status, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    let info = &error["details"][0];
    assert_eq!(info["@type"], "ErrorInfo", "{body}");
    assert_eq!(info["domain"], "gateway.floe", "{body}");
    assert!(info["reason"].is_string(), "{body}");
    assert!(info["metadata"].is_object(), "{body}");
    error.clone()
}
