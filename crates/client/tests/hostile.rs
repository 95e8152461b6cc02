//! A hostile member (a real node with its real key and real QUIC, told to
//! lie) cannot bend a blob's state: answers are bound to the blob asked
//! about, and a confirmation is a promise to keep the data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use floe_client::{ClientError, ReadOptions, StoreOptions};
use floe_codec::BlobId;
use floe_consensus::{
    BlobStatus, CertificateBuilder, Fact, InvalidBlobAttestation, KeyPair, ProtocolMessage, Signed,
};
use floe_node::{Byzantine, Limits};

const LIAR: usize = 3;

/// Waits until node `i` knows `blob_id` as `status`.
async fn until_node_knows(cluster: &Cluster, i: usize, blob_id: BlobId, status: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("node {i} knows {blob_id} as {status}"),
        async || {
            let epoch = cluster.file.clock.epoch_at(now_ms());
            cluster
                .node(i)
                .store()
                .state(&blob_id)
                .is_ok_and(|s| s.status(epoch).name() == status)
        },
    )
    .await;
}

/// Makes member [`LIAR`] answer with proofs about other blobs, once it
/// knows one certified blob (stored here, of `seed`) it can show.
async fn make_foreign_liar(cluster: &mut Cluster, seed: u64) {
    let shown = store_and_read_back(&cluster.client(), Bytes::from(blob(10_000, seed))).await;
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                foreign_proofs: true,
                ..Byzantine::default()
            },
        )
        .await;
    until_node_knows(cluster, LIAR, shown.blob_id, "certified").await;
}

/// Stores `data` for 5 epochs as deletable by `owner`.
async fn store_deletable(
    client: &floe_client::Client,
    data: Bytes,
    owner: &KeyPair,
) -> floe_client::StoreOutcome {
    let options = StoreOptions {
        owner: Some(owner.public()),
        ..StoreOptions::default()
    };
    client.store(data, 5, options).await.unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_certificate_does_not_stop_an_upload_and_its_sender_is_named() {
    let mut cluster = Cluster::start(7, 100).await;
    make_foreign_liar(&mut cluster, 1).await;

    let client = cluster.client();
    let data = Bytes::from(blob(30_000, 2));
    let outcome = client
        .store(data.clone(), 5, StoreOptions::default())
        .await
        .unwrap();
    assert!(
        outcome.newly_certified,
        "the upload was skipped on a certificate of another blob"
    );
    assert_eq!(outcome.certificate.message.body.blob_id, outcome.blob_id);
    let read = client
        .read(outcome.blob_id, ReadOptions::default())
        .await
        .unwrap();
    assert!(read == data);
    // The liar is ranked last.
    let liar_key = cluster.file.committee.members()[LIAR].network_key;
    let health = client.health();
    let liar = health.iter().find(|h| h.peer.key == liar_key).unwrap();
    assert!(liar.misbehaviours > 0 && liar.penalized, "{liar:?}");

    // With too few honest shards to answer, the failure names the liar.
    for i in [5, 6] {
        cluster.stop(i).await;
    }
    match cluster.client().status(BlobId([0xab; 32])).await {
        Err(ClientError::NotEnoughShards { failures, .. }) => {
            let liar_id = &cluster.file.committee.members()[LIAR].node_id.0;
            assert!(
                failures
                    .iter()
                    .any(|(node, why)| node == liar_id && why.contains("another blob")),
                "{failures:?}"
            );
        }
        other => panic!("expected too few shards, naming the liar: {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_invalid_blob_certificate_does_not_fail_a_read() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    // An invalid-blob certificate of some other blob, as anyone could get
    // by uploading an inconsistent encoding, known to every node.
    let epoch = client.epoch();
    let committee = client.committee(epoch);
    let other = BlobId([0x77; 32]);
    let message = ProtocolMessage::new(epoch, InvalidBlobAttestation { blob_id: other });
    let mut builder = CertificateBuilder::new(&committee, message.clone());
    for key in &cluster.protocol_keys {
        if builder.is_complete() {
            break;
        }
        builder.add(&Signed::sign(message.clone(), key)).unwrap();
    }
    client
        .deliver(Fact::Invalid(builder.certificate().unwrap()))
        .await;
    let data = Bytes::from(blob(50_000, 3));
    let stored = store_and_read_back(&client, data.clone()).await;

    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                foreign_invalid: true,
                flip_slivers: true,
                ..Byzantine::default()
            },
        )
        .await;
    until_node_knows(&cluster, LIAR, other, "invalid").await;
    let client = cluster.client();
    match client.status(stored.blob_id).await.unwrap().status {
        BlobStatus::Certified { certificate } => {
            assert_eq!(certificate.message.body.blob_id, stored.blob_id)
        }
        other => panic!("a foreign invalid-blob certificate changed the status: {other:?}"),
    }
    let read = client
        .read(stored.blob_id, ReadOptions::default())
        .await
        .unwrap();
    assert!(read == data);
    cluster.shutdown().await;
}

/// Every node confirms, the pending window passes with no certificate, and
/// the certificate is delivered late: the data is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_delivered_late_finds_the_data_it_vouches_for() {
    let cluster = Cluster::start_with(
        7,
        100,
        Limits {
            pending_upload_secs: 1,
            ..Limits::default()
        },
    )
    .await;
    let client = cluster.client();
    let data = blob(200_000, 4);
    let outcome = certify_undelivered(&client, &data).await;
    let blob_id = outcome.blob_id;
    // The nodes that confirmed (at least a quorum's worth; the tail may
    // have cut the others short).
    let confirmed: Vec<usize> = (0..7)
        .filter(|&i| {
            cluster
                .node(i)
                .store()
                .promised(&blob_id)
                .unwrap()
                .is_some()
        })
        .collect();
    let weight: usize = confirmed.iter().map(|&i| cluster.shards(i)).sum();
    assert!(weight >= 67, "only nodes {confirmed:?} confirmed");
    // Twice the pending window, and garbage collection (every second) runs.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for &i in &confirmed {
        assert!(
            cluster.node(i).store().holds_all_pairs(&blob_id).unwrap(),
            "node {i} collected data it had confirmed"
        );
    }
    client.deliver(Fact::Certified(outcome.certificate)).await;
    eventually(
        Duration::from_secs(20),
        "every node holds the certificate",
        async || {
            (0..7).all(|i| {
                cluster
                    .node(i)
                    .store()
                    .state(&blob_id)
                    .is_ok_and(|s| s.has_certificate())
            })
        },
    )
    .await;
    for &i in &confirmed {
        assert_eq!(cluster.node(i).drift(), 0, "node {i} confirmed, yet drifts");
    }
    eventually(Duration::from_secs(30), "no node drifts", async || {
        (0..7).all(|i| cluster.node(i).drift() == 0)
    })
    .await;
    let read = client.read(blob_id, ReadOptions::default()).await.unwrap();
    assert!(read == data);
    cluster.shutdown().await;
}

/// Content someone registered as deletable (twice: the second store is
/// certified anew) and deleted can be stored again by anyone, permanently,
/// and is then readable on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_content_can_be_stored_again() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let squatter = KeyPair::from_seed(&[42; 32]);
    let data = Bytes::from(blob(40_000, 5));
    let first = store_deletable(&client, data.clone(), &squatter).await;
    // A deletable store is never answered by a registration already there
    // (its owner may have deleted that one, unknown yet to the quorum
    // asked): it certifies its own.
    let renewed = store_deletable(&client, data.clone(), &squatter).await;
    assert!(
        renewed.newly_certified,
        "a deletable store answered by an earlier registration"
    );
    client.delete(first.blob_id, &squatter).await.unwrap();
    for i in 0..7 {
        until_node_knows(&cluster, i, first.blob_id, "deleted").await;
    }
    // Garbage collection (every second) removes the deleted data.
    eventually(
        Duration::from_secs(20),
        "the deleted data is collected",
        async || {
            (0..7).all(|i| {
                cluster
                    .node(i)
                    .store()
                    .metadata(&first.blob_id)
                    .unwrap()
                    .is_none()
            })
        },
    )
    .await;

    let again = client
        .store(data.clone(), 5, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(again.blob_id, first.blob_id);
    assert!(again.newly_certified && !again.certificate.message.body.deletable);
    match client.status(again.blob_id).await.unwrap().status {
        BlobStatus::Certified { .. } => {}
        other => panic!("stored again, the blob is {other:?}"),
    }
    eventually(
        Duration::from_secs(30),
        "every node holds its pairs again",
        async || {
            (0..7).all(|i| {
                cluster
                    .node(i)
                    .store()
                    .holds_all_pairs(&again.blob_id)
                    .unwrap()
                    && cluster.node(i).drift() == 0
            })
        },
    )
    .await;
    let read = client
        .read(again.blob_id, ReadOptions::default())
        .await
        .unwrap();
    assert!(read == data);
    cluster.shutdown().await;
}

/// Someone who stored content as deletable cannot take another owner's
/// store of the same content along when deleting: the second store is not
/// answered with the first one's certificate (deletable by someone else)
/// but certified anew, permanently, and the blob stays readable after the
/// deletion and the garbage collection that follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletable_certificate_does_not_answer_another_owners_store() {
    let mut cluster = Cluster::start(7, 100).await;
    // Lying only about registrations: a liar reported is one the
    // registration tally caught.
    let shown = store_and_read_back(&cluster.client(), Bytes::from(blob(10_000, 8))).await;
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                foreign_registrations: true,
                ..Byzantine::default()
            },
        )
        .await;
    until_node_knows(&cluster, LIAR, shown.blob_id, "certified").await;
    let client = cluster.client();
    let attacker = KeyPair::from_seed(&[43; 32]);
    let data = Bytes::from(blob(40_000, 9));
    let bait = store_deletable(&client, data.clone(), &attacker).await;
    // Lasting longer, the permanent registration is the one statuses show.
    let victim = client
        .store(data.clone(), 6, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(victim.blob_id, bait.blob_id);
    assert!(
        victim.newly_certified && !victim.certificate.message.body.deletable,
        "another owner's deletable certificate answered a permanent store"
    );
    // A key with no registration has nothing to delete; the liar's answer
    // to the question (another blob's certificate) is reported, not used.
    let stranger = KeyPair::from_seed(&[44; 32]);
    let liar_key = cluster.file.committee.members()[LIAR].network_key;
    let misbehaviours = || {
        let health = client.health();
        let liar = health.iter().find(|h| h.peer.key == liar_key).unwrap();
        liar.misbehaviours
    };
    assert_eq!(misbehaviours(), 0, "the liar lies only about registrations");
    match client.delete(bait.blob_id, &stranger).await {
        Err(ClientError::NotAllowed(text)) => assert!(text.contains("permanent"), "{text}"),
        other => panic!("a key without a registration deleted: {other:?}"),
    }
    assert!(
        misbehaviours() > 0,
        "the registration tally took the liar's answer"
    );
    // The attacker deletes its own registration, though the status shows
    // the victim's.
    let proof = client.delete(bait.blob_id, &attacker).await.unwrap();
    assert!(proof.certificate == bait.certificate);
    eventually(
        Duration::from_secs(20),
        "every node holds the attacker's deletion",
        async || {
            (0..7).all(|i| {
                cluster
                    .node(i)
                    .store()
                    .state(&bait.blob_id)
                    .is_ok_and(|s| s.deletion_by(&attacker.public()).is_some())
            })
        },
    )
    .await;
    for i in 0..7 {
        until_node_knows(&cluster, i, bait.blob_id, "certified").await;
    }
    // Garbage collection runs every second: give it a few rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    match client.status(victim.blob_id).await.unwrap().status {
        BlobStatus::Certified { certificate } => {
            assert!(!certificate.message.body.deletable);
        }
        other => panic!("after the attacker's deletion, the blob is {other:?}"),
    }
    let read = client
        .read(victim.blob_id, ReadOptions::default())
        .await
        .unwrap();
    assert!(read == data);
    cluster.shutdown().await;
}

/// A member that holds every answer back for far longer than a repair
/// takes: a wiped node repairs around it, and the slow member is ranked
/// last rather than waited on again. Nor does it turn a second store of
/// the blob into a new certification: the store's status check ends with
/// a quorum's answers, not the slow member's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_trickles_cannot_hold_repair_back() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let stored = store_and_read_back(&client, Bytes::from(blob(300_000, 6))).await;
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                delay_ms: 45_000,
                ..Byzantine::default()
            },
        )
        .await;
    let again = client
        .store(Bytes::from(blob(300_000, 6)), 1, StoreOptions::default())
        .await
        .unwrap();
    assert!(!again.newly_certified, "stored anew beside a slow member");
    assert_eq!(again.certificate, stored.certificate);
    let wiped = 0;
    cluster.stop(wiped).await;
    std::fs::remove_dir_all(cluster.database(wiped)).unwrap();
    cluster.restart(wiped).await;
    // Well under the slow member's delay: waiting on it even once fails.
    eventually(
        Duration::from_secs(30),
        "the wiped node is repaired",
        async || {
            let node = cluster.node(wiped);
            node.store()
                .holds_all_pairs(&stored.blob_id)
                .unwrap_or(false)
                && node.drift() == 0
        },
    )
    .await;
    cluster.shutdown().await;
}

/// A member that flips a byte of every recovery symbol it sends: a wiped
/// node's repair still rebuilds exactly the pairs it lost. (Bare symbols
/// that rebuild a sliver failing its hash are asked for again with proofs,
/// which expose the liar; each rebuilt sliver is checked against its hash.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_recovery_symbols_cannot_corrupt_a_repair() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let mut blobs = Vec::new();
    for seed in 0..4 {
        let data = Bytes::from(blob(120_000, 60 + seed));
        blobs.push(store_and_read_back(&client, data).await.blob_id);
    }
    let wiped = 0;
    let pairs_of = |cluster: &Cluster| {
        let node = cluster.node(wiped);
        let mut pairs = Vec::new();
        for blob_id in &blobs {
            for shard in node.store().shards() {
                pairs.push(node.store().sliver_pair(shard, blob_id).unwrap());
            }
        }
        pairs
    };
    let before = pairs_of(&cluster);
    assert!(before.iter().all(Option::is_some));
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                flip_slivers: true,
                ..Byzantine::default()
            },
        )
        .await;
    wipe_and_await_repair(&mut cluster, wiped, &blobs, Duration::from_secs(60)).await;
    assert!(
        pairs_of(&cluster) == before,
        "a repaired pair differs from the one lost"
    );
    cluster.shutdown().await;
}

/// A member that lies in bare recovery symbols only, serving proven ones
/// honestly: repair still rebuilds exactly the pairs lost, and the proven
/// symbols asked of it show its bare ones false, so it is named a liar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lying_only_in_bare_symbols_is_named() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let mut blobs = Vec::new();
    for seed in 0..3 {
        let data = Bytes::from(blob(80_000, 70 + seed));
        blobs.push(store_and_read_back(&client, data).await.blob_id);
    }
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                flip_bare_symbols: true,
                ..Byzantine::default()
            },
        )
        .await;
    let wiped = 0;
    wipe_and_await_repair(&mut cluster, wiped, &blobs, Duration::from_secs(60)).await;
    let liar = cluster.file.committee.members()[LIAR].network_key;
    let node = cluster.node(wiped);
    let proven_rounds = node
        .metrics()
        .repair_proven_rounds
        .load(std::sync::atomic::Ordering::Relaxed);
    let health = node.peer_health();
    let named: Vec<_> = health
        .iter()
        .filter(|h| h.misbehaviours > 0)
        .map(|h| (h.peer.key, h.last_misbehaviour.clone()))
        .collect();
    if proven_rounds > 0 {
        assert_eq!(named.len(), 1, "only the liar is named: {named:?}");
        assert_eq!(named[0].0, liar);
        let what = named[0].1.clone().unwrap_or_default();
        assert!(what.contains("bare recovery symbol"), "{what}");
    } else {
        // Its sources were never needed: then no one may be named.
        assert!(named.is_empty(), "{named:?}");
    }
    let read = read_strict(&client, blobs[1]).await;
    assert_eq!(read, Bytes::from(blob(80_000, 71)));
    cluster.shutdown().await;
}

/// A member that labels its bare symbols as made from slivers it does not
/// hold: the repair drops them unread (only a sliver's holder vouches for
/// it), counts their bytes as fetched and dropped, and rebuilds every pair
/// from the others. Another member is down, so the liar is among the few
/// the repair may ask; it is not always asked (the pool ranks peers by
/// round trip), so the filter itself is pinned by the unit test in
/// `floe-node`'s `tasks::holders`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_symbols_of_slivers_a_peer_does_not_hold_are_dropped_and_counted() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let mut blobs = Vec::new();
    for seed in 0..6 {
        let data = Bytes::from(blob(80_000, 90 + seed));
        blobs.push(store_and_read_back(&client, data).await.blob_id);
    }
    let (wiped, down) = (0, 1);
    assert!(cluster.shards(wiped) + cluster.shards(down) <= 33);
    cluster
        .make_hostile(
            LIAR,
            Byzantine {
                foreign_bare_symbols: true,
                ..Byzantine::default()
            },
        )
        .await;
    cluster.stop(down).await;
    wipe_and_await_repair(&mut cluster, wiped, &blobs, Duration::from_secs(60)).await;
    let served = cluster
        .node(LIAR)
        .metrics()
        .requests("GetBareSymbols", "ok");
    let metrics = cluster.node(wiped).metrics();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    let (dropped, fetched, proven) = (
        load(&metrics.repair_bytes_dropped),
        load(&metrics.repair_bytes_fetched),
        load(&metrics.repair_proven_rounds),
    );
    // Had the relabelled symbols counted, their pairs would have failed
    // their check and gone to proven symbols.
    assert_eq!(
        proven, 0,
        "the liar's symbols sent repairs to proven rounds"
    );
    eprintln!("the liar answered {served} times; {dropped} of {fetched} fetched bytes dropped");
    // Each of the wiped node's gathers (two per blob) may cancel one of
    // the liar's answers after it was sent (the tally finished first), and
    // `served` counts every caller: past that many, one was taken.
    if served > 2 * blobs.len() as u64 {
        assert!(
            dropped > 0,
            "the liar answered {served} times; nothing was dropped"
        );
    }
    assert!(
        dropped < fetched,
        "dropped {dropped} of {fetched} fetched bytes"
    );
    let read = read_strict(&client, blobs[2]).await;
    assert_eq!(read, Bytes::from(blob(80_000, 92)));
    cluster.shutdown().await;
}
