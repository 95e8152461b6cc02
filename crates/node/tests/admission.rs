//! Admission in `grants` mode, on a real committee (4 nodes, real QUIC on
//! 127.0.0.1, real RocksDB): who may write, how much, and what a refusal
//! says. The hostile clients here hold real keys and real grants, just not
//! the right ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_api::{Admission as Refusal, GrantUsage};
use floe_client::{Client, ClientConfig, ClientError, StoreOptions};
use floe_consensus::grant::StorageGrant;
use floe_consensus::{Epoch, KeyPair, ProtocolMessage, Signed};
use floe_node::config::{Admission, AdmissionMode};
use floe_node::{Limits, Tasks};
use floe_testkit::local::{generate, Cluster};

/// Epochs short enough to watch a blob expire.
const EPOCH_MS: u64 = 6_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn grant(
    issuer: &KeyPair,
    client: &KeyPair,
    bytes: u64,
    until: Epoch,
    expires_ms: u64,
) -> Signed<StorageGrant> {
    Signed::sign(
        ProtocolMessage::new(
            Epoch(0),
            StorageGrant {
                client: client.public(),
                bytes,
                until_epoch: until,
                max_blob_size: 20_000,
                expires_ms,
            },
        ),
        issuer,
    )
}

fn client(cluster: &Cluster, key: Option<KeyPair>, grant: Option<Signed<StorageGrant>>) -> Client {
    let config = ClientConfig {
        identity: key.map(Arc::new),
        grant,
        ..ClientConfig::default()
    };
    Client::new(cluster.file(), config).unwrap()
}

fn blob(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect::<Vec<_>>()
        .into()
}

/// A store, tried again when it straddled an epoch boundary (epochs here
/// are seconds long).
async fn store(
    client: &Client,
    data: Bytes,
    epochs: u64,
    options: StoreOptions,
) -> Result<floe_client::StoreOutcome, ClientError> {
    for _ in 0..3 {
        match client.store(data.clone(), epochs, options.clone()).await {
            Err(ClientError::EpochChanged { .. }) => continue,
            other => return other,
        }
    }
    client.store(data, epochs, options).await
}

async fn refusal(result: Result<floe_client::StoreOutcome, ClientError>) -> Refusal {
    match result {
        Err(ClientError::NotAdmitted { refusal, .. }) => refusal,
        other => panic!("expected an admission refusal, got {other:?}"),
    }
}

/// Every node's usage for the client, once all of them agree on `bytes`
/// (the uploads after the quorum may still be arriving).
async fn usage_everywhere(client: &Client, bytes: u64) -> Vec<GrantUsage> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answers = client.present_grant().await.unwrap();
        let usages: Vec<GrantUsage> = answers.iter().filter_map(|(_, a)| a.clone().ok()).collect();
        if usages.len() == answers.len() && usages.iter().all(|u| u.usage == bytes) {
            return usages;
        }
        assert!(
            Instant::now() < deadline,
            "usage never settled at {bytes} bytes: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_admit_only_what_they_allow_and_usage_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = KeyPair::from_seed(&[201; 32]);
    let mut local = generate(
        dir.path(),
        4,
        12,
        EPOCH_MS,
        Limits::default(),
        Tasks::brisk(),
    )
    .unwrap();
    for config in &mut local.configs {
        config.admission = Admission {
            mode: AdmissionMode::Grants,
            issuers: vec![issuer.public()],
            closed_reads: false,
        };
    }
    let mut cluster = Cluster::start_local(local).await.unwrap();
    let epoch = cluster.file().clock.epoch_at(now_ms());
    let until = Epoch(epoch.0 + 20);
    let later = now_ms() + 3_600_000;

    // Anonymous, and a key without a grant: refused, naming the key.
    let anonymous = client(&cluster, None, None);
    let refused = refusal(store(&anonymous, blob(500, 1), 2, StoreOptions::default()).await).await;
    assert_eq!(refused, Refusal::NoGrant { client: None });
    let alice = KeyPair::from_seed(&[1; 32]);
    let bare = client(&cluster, Some(KeyPair::from_seed(&[1; 32])), None);
    let refused = refusal(store(&bare, blob(500, 2), 2, StoreOptions::default()).await).await;
    assert_eq!(
        refused,
        Refusal::NoGrant {
            client: Some(alice.public())
        }
    );
    assert!(
        refused.to_string().contains("floe-node grant issue"),
        "{refused}"
    );

    // Grants that admit nothing: an untrusted issuer, another key's grant,
    // an expired one. Each is refused when presented, and nothing stores.
    let mallory = KeyPair::from_seed(&[66; 32]);
    let bob = KeyPair::from_seed(&[2; 32]);
    for (grant, says) in [
        (
            grant(&mallory, &alice, 10_000, until, later),
            "does not trust",
        ),
        (grant(&issuer, &bob, 10_000, until, later), "names"),
        (
            grant(&issuer, &alice, 10_000, until, now_ms() - 1),
            "expired",
        ),
    ] {
        let hostile = client(&cluster, Some(KeyPair::from_seed(&[1; 32])), Some(grant));
        match refusal(store(&hostile, blob(500, 3), 2, StoreOptions::default()).await).await {
            Refusal::BadGrant { client, reason } => {
                assert_eq!(client, Some(alice.public()));
                assert!(reason.contains(says), "{reason} should say {says:?}");
            }
            other => panic!("expected a refused grant ({says}), got {other:?}"),
        }
    }

    // A real grant: 30 000 bytes, blobs up to 20 000, until `until` (a
    // blob counts at least 4 KiB: these are larger).
    let granted = client(
        &cluster,
        Some(KeyPair::from_seed(&[1; 32])),
        Some(grant(&issuer, &alice, 30_000, until, later)),
    );
    let owner = KeyPair::from_seed(&[3; 32]);
    let first = store(&granted, blob(10_000, 4), 2, StoreOptions::default())
        .await
        .unwrap();
    let deletable = store(
        &granted,
        blob(15_000, 5),
        10,
        StoreOptions {
            owner: Some(owner.public()),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    usage_everywhere(&granted, 25_000).await;

    // Over the limits: refused before anything is stored, and nothing is
    // charged for the refused blobs.
    match refusal(store(&granted, blob(10_000, 6), 2, StoreOptions::default()).await).await {
        Refusal::OverBudget {
            client,
            blob_bytes,
            limit,
            usage,
            ..
        } => {
            assert_eq!(
                (client, blob_bytes, limit, usage),
                (alice.public(), 10_000, 30_000, 25_000)
            );
        }
        other => panic!("expected over budget, got {other:?}"),
    }
    match refusal(store(&granted, blob(20_001, 7), 2, StoreOptions::default()).await).await {
        Refusal::TooLarge {
            blob_bytes, limit, ..
        } => assert_eq!((blob_bytes, limit), (20_001, 20_000)),
        other => panic!("expected too large, got {other:?}"),
    }
    match refusal(store(&granted, blob(100, 8), 25, StoreOptions::default()).await).await {
        Refusal::PastEpochLimit { limit, .. } => assert_eq!(limit, until),
        other => panic!("expected past the epoch limit, got {other:?}"),
    }
    usage_everywhere(&granted, 25_000).await;

    // Usage is durable: a restarted node still counts it.
    cluster.restart(0).await.unwrap();
    usage_everywhere(&granted, 25_000).await;

    // Deleting frees the deletable blob's bytes; expiry frees the first.
    granted.delete(deletable.blob_id, &owner).await.unwrap();
    usage_everywhere(&granted, 10_000).await;
    assert!(first.end_epoch.0 <= epoch.0 + 3);
    let deadline = Instant::now() + Duration::from_millis(4 * EPOCH_MS) + Duration::from_secs(30);
    loop {
        let answers = granted.present_grant().await.unwrap();
        if answers
            .iter()
            .all(|(_, a)| a.as_ref().is_ok_and(|u| u.usage == 0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expiry never freed the usage: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // With the bytes free again, the key stores again.
    store(&granted, blob(10_000, 9), 2, StoreOptions::default())
        .await
        .unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_admits_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        4,
        12,
        3_600_000,
        Limits::default(),
        Tasks::brisk(),
    )
    .await
    .unwrap();
    let anonymous = client(&cluster, None, None);
    let stored = store(&anonymous, blob(5_000, 1), 2, StoreOptions::default())
        .await
        .unwrap();
    let read = anonymous
        .read(stored.blob_id, Default::default())
        .await
        .unwrap();
    assert_eq!(read, blob(5_000, 1));
    cluster.shutdown().await;
}
