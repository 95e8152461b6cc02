//! Committee change, the moving half: at the epoch change the new holder of
//! each moved shard fetches its pairs from the previous holder (every byte
//! of them, verified), says it synced, and the previous holder lets go of
//! the shard once the change is done; a previous holder that is down is
//! replaced by recovery. Every blob certified before the change reads the
//! same after it, from a client that knows only genesis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_client::{Client, ClientConfig, ReadOptions};
use floe_codec::BlobId;
use floe_consensus::Epoch;
use floe_testkit::local::Cluster;
use floe_testkit::migration::{node_0_leaves, until_epoch};

async fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const EPOCH_MS: u64 = 12_000;

/// With FLOE_TEST_LOG set, the nodes' logs go to the test's output.
fn log() {
    if std::env::var("FLOE_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("FLOE_TEST_LOG").unwrap_or_default())
            .try_init();
    }
}

/// 4 nodes over 12 shards holding blobs of `sizes`; node-0 leaves at the
/// next epoch and its 3 shards go one each to the others.
async fn leaving_node_0(
    dir: &std::path::Path,
    sizes: &[usize],
) -> (Cluster, Vec<(BlobId, Bytes)>, Epoch) {
    let leaving = node_0_leaves(dir, 4, 12, EPOCH_MS, sizes).await.unwrap();
    (leaving.cluster, leaving.blobs, leaving.next)
}

/// Reads every blob with a client that knows only genesis, and checks that
/// every member of the new committee tells the same status.
async fn all_read(cluster: &Cluster, blobs: &[(BlobId, Bytes)]) {
    let client = Client::new(cluster.file(), ClientConfig::default()).unwrap();
    for (blob_id, data) in blobs {
        let read = client.read(*blob_id, ReadOptions::default()).await.unwrap();
        assert_eq!(&read, data, "blob {blob_id} reads back changed");
        let status = client.status(*blob_id).await.unwrap();
        assert_eq!(status.status.name(), "certified");
        for member in client.members() {
            let answer = client.node_status(&member, *blob_id).await.unwrap();
            assert_eq!(
                answer.status.name(),
                "certified",
                "{} says {blob_id} is {}",
                member.node_id,
                answer.status.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_shards_are_fetched_from_their_previous_holder_which_lets_go_once_done() {
    log();
    let dir = tempfile::tempdir().unwrap();
    // Small pairs in the database, large ones (3 MiB blob) in files.
    let (mut cluster, blobs, next) = leaving_node_0(dir.path(), &[1, 5_000, 3 << 20]).await;
    let leaving = cluster.node(0).unwrap();
    let given_up = leaving.store().shards();
    assert_eq!(given_up.len(), 3);
    let mut held_bytes = 0u64;
    for (blob_id, _) in &blobs {
        for shard in &given_up {
            held_bytes += leaving
                .store()
                .sliver_pair(*shard, blob_id)
                .unwrap()
                .expect("node-0 holds its pairs")
                .byte_len() as u64;
        }
    }
    until_epoch(cluster.file(), next).await;
    // Reads go on through the change.
    all_read(&cluster, &blobs).await;
    eventually(
        "the change is done on every node",
        Duration::from_secs(40),
        || (0..4).all(|i| cluster.node(i).unwrap().committee_change_done()),
    )
    .await;
    for i in 1..4 {
        let node = cluster.node(i).unwrap();
        assert_eq!(node.store().shards().len(), 4, "node-{i} holds 4 shards");
        assert!(node.shards_fetching().is_empty());
        assert_eq!(node.drift(), 0, "node-{i} lacks pairs");
    }
    // Every moved pair came from node-0, none by recovery: as many bytes
    // moved as node-0 held.
    let (mut fetched, mut pairs, mut repaired) = (0, 0, 0);
    for i in 1..4 {
        let m = cluster.node(i).unwrap().metrics();
        fetched += m.migration_bytes_fetched.load(Ordering::Relaxed);
        pairs += m.migration_pairs_fetched.load(Ordering::Relaxed);
        repaired += m.slivers_repaired.load(Ordering::Relaxed);
    }
    assert_eq!(pairs, (blobs.len() * 3) as u64);
    assert_eq!(fetched, held_bytes);
    assert_eq!(repaired, 0);
    // A client sees every new holder's signed word: reads go to them.
    let client = Client::new(cluster.file(), ClientConfig::default()).unwrap();
    client.follow_chain().await.unwrap();
    let handoff = client.handoff().await;
    assert_eq!(handoff.moves().len(), 3);
    assert!(handoff.settled(), "{} notices", handoff.notices().count());
    // node-0 gives its shards up and collects their pairs.
    eventually(
        "node-0 collects the pairs of the shards it gave up",
        Duration::from_secs(10),
        || {
            let store = cluster.node(0).unwrap().store();
            store.shards().is_empty() && store.shards_given_up().unwrap().is_empty()
        },
    )
    .await;
    // node-0 can go: the new committee serves every blob.
    cluster.stop(0).await;
    all_read(&cluster, &blobs).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_a_previous_holder_that_is_down_are_rebuilt_by_recovery() {
    log();
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, blobs, next) = leaving_node_0(dir.path(), &[2_000, 70_000]).await;
    // node-0 is gone before the change: its shards come from recovery.
    cluster.stop(0).await;
    until_epoch(cluster.file(), next).await;
    eventually(
        "the change is done without node-0",
        Duration::from_secs(60),
        || (1..4).all(|i| cluster.node(i).unwrap().committee_change_done()),
    )
    .await;
    let mut repaired = 0;
    for i in 1..4 {
        let node = cluster.node(i).unwrap();
        assert_eq!(node.drift(), 0, "node-{i} lacks pairs");
        assert_eq!(
            node.metrics()
                .migration_pairs_fetched
                .load(Ordering::Relaxed),
            0
        );
        repaired += node.metrics().slivers_repaired.load(Ordering::Relaxed);
    }
    assert_eq!(repaired, (blobs.len() * 3 * 2) as u64);
    all_read(&cluster, &blobs).await;
    cluster.shutdown().await;
}
