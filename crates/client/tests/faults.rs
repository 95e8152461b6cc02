//! Faults on a committee of 7 nodes holding 100 shards: lying nodes, a
//! wiped node, an inconsistently encoded blob, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use floe_api::{
    ApiError, BlobStatus, GetInfo, GetSliver, GetSliverRequest, GetStatus, PutMetadata,
    PutMetadataRequest, PutPairs, PutPairsRequest,
};
use floe_client::{ClientError, ReadOptions, StoreOptions};
use floe_codec::{Axis, BlobMetadata, ShardIndex, SliverPairHashes, SliverPairIndex};
use floe_net::{Members, NetConfig, Router, RpcError, Server, TlsIdentity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serving_corrupted_slivers_cannot_corrupt_a_read() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let data = blob(400_000, 21);
    let outcome = client
        .store(Bytes::from(data.clone()), 5, StoreOptions::default())
        .await
        .unwrap();
    let encoding = client.committee(client.epoch()).encoding();
    let (_, blob_id, pairs) = floe_codec::encode(&encoding, &data).unwrap();
    assert_eq!(blob_id, outcome.blob_id);

    // Node 3 is replaced by a liar with its key and address: it serves
    // every sliver of its shards with one byte flipped.
    let liar = 3;
    cluster.stop(liar).await;
    let served = Arc::new(AtomicU64::new(0));
    let make_router = || {
        let served = Arc::clone(&served);
        let pairs = pairs.clone();
        Router::new()
            .route::<GetSliver, _, _>(move |_, request: GetSliverRequest| {
                let pair =
                    &pairs[usize::from(request.shard.to_pair_index(100, &request.blob_id).0)];
                let mut sliver = if request.axis == Axis::Primary {
                    pair.primary.clone()
                } else {
                    pair.secondary.clone()
                };
                let mut bytes = sliver.data.to_vec();
                bytes[0] ^= 1;
                sliver.data = Bytes::from(bytes);
                served.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, ApiError>(sliver) }
            })
            .route::<GetStatus, _, _>(|_, _| async {
                Ok::<_, ApiError>(floe_api::BlobStatusAnswer {
                    epoch: floe_consensus::Epoch(0),
                    status: BlobStatus::Unknown,
                })
            })
    };
    let impostor = impostor(&cluster, liar, make_router).await;

    let read = client.read(blob_id, ReadOptions::default()).await.unwrap();
    assert!(read == data, "the read returned other bytes than stored");
    assert!(
        served.load(Ordering::SeqCst) > 0,
        "the liar was never asked, so the test proved nothing"
    );
    impostor.shutdown(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rebuilds_its_slivers_from_recovery_symbols() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let mut blobs = Vec::new();
    for (len, seed) in [(100_000usize, 31u64), (250_000, 32), (1 << 20, 33)] {
        blobs.push(
            client
                .store(Bytes::from(blob(len, seed)), 5, StoreOptions::default())
                .await
                .unwrap()
                .blob_id,
        );
    }
    let wiped = 1;
    wipe_and_await_repair(&mut cluster, wiped, &blobs, Duration::from_secs(90)).await;
    let node = cluster.node(wiped);
    let mut stored = 0u64;
    for blob_id in &blobs {
        for shard in node.store().shards() {
            let pair = node
                .store()
                .sliver_pair(shard, blob_id)
                .unwrap()
                .expect("pair rebuilt");
            stored += pair.byte_len() as u64;
        }
    }
    let fetched = node.metrics().repair_bytes_fetched.load(Ordering::Relaxed);
    assert!(fetched > 0);
    // Honest peers: bare symbols rebuilt every sliver, no proof was fetched.
    let proven_rounds = node.metrics().repair_proven_rounds.load(Ordering::Relaxed);
    let proof_bytes = node
        .metrics()
        .repair_proof_bytes_fetched
        .load(Ordering::Relaxed);
    assert_eq!((proven_rounds, proof_bytes), (0, 0));
    assert!(
        fetched <= 3 * stored,
        "fetched {fetched} bytes of symbols to rebuild {stored} bytes"
    );
    // And the data reads back from the committee.
    let read = read_strict(&client, blobs[2]).await;
    assert_eq!(read, Bytes::from(blob(1 << 20, 33)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconsistently_encoded_blob_becomes_invalid_everywhere() {
    let mut cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let encoding = client.committee(client.epoch()).encoding();
    let (metadata, _, mut pairs) = floe_codec::encode(&encoding, &blob(60_000, 41)).unwrap();
    // The writer alters one primary sliver and commits to the altered bytes.
    let row = 1;
    let mut bytes = pairs[row].primary.data.to_vec();
    bytes[0] ^= 0xff;
    pairs[row].primary.data = Bytes::from(bytes);
    let mut hashes: Vec<SliverPairHashes> = metadata.hashes().to_vec();
    hashes[row].primary = pairs[row].primary.commitment(&metadata).unwrap();
    let lying = BlobMetadata::new(metadata.unencoded_length(), hashes).unwrap();
    let blob_id = lying.blob_id();
    let outcome = client
        .store_encoded(lying, pairs, 5, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.blob_id, blob_id);

    // The node holding the altered pair loses its disk; repairing that pair
    // proves the inconsistency.
    let shard = SliverPairIndex(row as u16).to_shard_index(100, &blob_id);
    let holder = cluster
        .file
        .committee
        .shard_holder(shard)
        .unwrap()
        .as_usize();
    cluster.stop(holder).await;
    std::fs::remove_dir_all(cluster.database(holder)).unwrap();
    cluster.restart(holder).await;

    let pool = cluster.pool();
    let committee = client.committee(client.epoch());
    for member in cluster.file.committee.members() {
        let key = member.network_key;
        eventually(
            Duration::from_secs(90),
            &format!("{} reports the blob invalid", member.node_id.0),
            async || match pool
                .call::<GetStatus>(&key, &blob_id)
                .await
                .map(|a| a.status)
            {
                Ok(BlobStatus::Invalid { certificate }) => {
                    let committee = client.committee(certificate.message.epoch);
                    certificate.verify(&committee).is_ok()
                }
                _ => false,
            },
        )
        .await;
    }
    let _ = committee;
    // The holder's bare symbols rebuilt a sliver failing its hash, which
    // they cannot prove: it asked again for proven ones, which did.
    let metrics = cluster.node(holder).metrics();
    assert!(metrics.repair_proven_rounds.load(Ordering::Relaxed) >= 1);
    assert!(metrics.inconsistencies_found.load(Ordering::Relaxed) >= 1);
    match client.read(blob_id, ReadOptions::default()).await {
        Err(ClientError::Invalid { certificate, .. }) => {
            let committee = client.committee(certificate.message.epoch);
            certificate.verify(&committee).unwrap();
        }
        other => panic!("expected the invalid error, got {other:?}"),
    }
    // No node serves slivers of it any more.
    let other = cluster.file.committee.members()[(holder + 1) % 7].clone();
    let request = GetSliverRequest {
        blob_id,
        shard: other.shards[0],
        axis: Axis::Primary,
    };
    match pool.call::<GetSliver>(&other.network_key, &request).await {
        Err(RpcError::Remote {
            error: ApiError::Gone { status, .. },
            ..
        }) => assert_eq!(status, "invalid"),
        other => panic!("expected the blob to be gone, got {other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_typed_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::start(7, 100).await;
    let client = cluster.client();
    let pool = cluster.pool();
    let node = cluster.file.committee.members()[0].clone();
    let key = node.network_key;
    let encoding = client.committee(client.epoch()).encoding();
    let (metadata, blob_id, pairs) = floe_codec::encode(&encoding, &blob(50_000, 51)).unwrap();

    // A blob over the node's size limit (64 MiB in these tests).
    let huge = BlobMetadata::new(100 << 20, metadata.hashes().to_vec()).unwrap();
    let request = PutMetadataRequest {
        blob_id: huge.blob_id(),
        metadata: huge,
    };
    match pool.call::<PutMetadata>(&key, &request).await {
        Err(RpcError::Remote {
            error: ApiError::Limit(text),
            ..
        }) => assert!(text.contains("up to 67108864 bytes"), "{text}"),
        other => panic!("expected a limit error, got {other:?}"),
    }
    // Metadata that does not belong to the blob ID it is sent under.
    let request = PutMetadataRequest {
        blob_id: floe_codec::BlobId([7; 32]),
        metadata: metadata.clone(),
    };
    assert!(matches!(
        pool.call::<PutMetadata>(&key, &request).await,
        Err(RpcError::Remote {
            error: ApiError::Rejected { .. },
            ..
        })
    ));
    pool.call::<PutMetadata>(&key, &PutMetadataRequest { blob_id, metadata })
        .await
        .unwrap();

    // A pair for a shard node 0 does not hold.
    let foreign = ShardIndex(1);
    assert!(!node.shards.contains(&foreign));
    let pair_of =
        |shard: ShardIndex| pairs[usize::from(shard.to_pair_index(100, &blob_id).0)].clone();
    let mine = node.shards[0];
    // Alone, and after a good pair in the same request: refused, and the
    // good pair is not stored either.
    for request in [
        vec![(foreign, pair_of(foreign))],
        vec![(mine, pair_of(mine)), (foreign, pair_of(foreign))],
    ] {
        match pool
            .call::<PutPairs>(
                &key,
                &PutPairsRequest {
                    blob_id,
                    pairs: request,
                },
            )
            .await
        {
            Err(RpcError::Remote {
                error: ApiError::NotMyShard { shard, .. },
                ..
            }) => assert_eq!(shard, foreign),
            other => panic!("expected NotMyShard, got {other:?}"),
        }
        assert!(node_has_no_pair(&cluster, mine, &blob_id));
    }
    // A request without pairs.
    assert!(matches!(
        pool.call::<PutPairs>(
            &key,
            &PutPairsRequest {
                blob_id,
                pairs: Vec::new()
            }
        )
        .await,
        Err(RpcError::Remote {
            error: ApiError::Rejected { .. },
            ..
        })
    ));
    // A pair that fails verification, after a good one: the rejection names
    // the shard, and neither pair is stored.
    let other = node.shards[1];
    let mut pair = pair_of(mine);
    let mut bytes = pair.secondary.data.to_vec();
    bytes[0] ^= 1;
    pair.secondary.data = Bytes::from(bytes);
    match pool
        .call::<PutPairs>(
            &key,
            &PutPairsRequest {
                blob_id,
                pairs: vec![(other, pair_of(other)), (mine, pair)],
            },
        )
        .await
    {
        Err(RpcError::Remote {
            error:
                ApiError::Rejected {
                    blob_id: named,
                    reason,
                },
            ..
        }) => {
            assert_eq!(named, blob_id);
            assert!(reason.contains(&format!("shard {mine}")), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(node_has_no_pair(&cluster, mine, &blob_id));
    assert!(node_has_no_pair(&cluster, other, &blob_id));
    // The same in a request too much work to check on a runtime thread
    // (three pairs of a 16 MiB blob, checked on the blocking pool): the
    // rejection names the shard, and none of the pairs is stored.
    let (metadata, big_id, big_pairs) = floe_codec::encode(&encoding, &blob(16 << 20, 52)).unwrap();
    pool.call::<PutMetadata>(
        &key,
        &PutMetadataRequest {
            blob_id: big_id,
            metadata,
        },
    )
    .await
    .unwrap();
    let shards = &node.shards[..3];
    let mut request: Vec<_> = shards
        .iter()
        .map(|&shard| {
            let pair = &big_pairs[usize::from(shard.to_pair_index(100, &big_id).0)];
            (shard, pair.clone())
        })
        .collect();
    let mut bytes = request[2].1.primary.data.to_vec();
    bytes[0] ^= 1;
    request[2].1.primary.data = Bytes::from(bytes);
    match pool
        .call::<PutPairs>(
            &key,
            &PutPairsRequest {
                blob_id: big_id,
                pairs: request,
            },
        )
        .await
    {
        Err(RpcError::Remote {
            error: ApiError::Rejected { blob_id, reason },
            ..
        }) => {
            assert_eq!(blob_id, big_id);
            assert!(
                reason.starts_with(&format!("shard {}:", shards[2])),
                "{reason}"
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    for &shard in shards {
        assert!(node_has_no_pair(&cluster, shard, &big_id));
    }

    // Garbage on a stream.
    let connection = pool.connection(&key).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"\x02\x00\xff\xff\x00\x00garbage")
        .await
        .unwrap();
    send.finish().unwrap();
    let header =
        floe_net::frame::read_header::<{ floe_net::frame::RESPONSE_HEADER_LEN }>(&mut recv)
            .await
            .unwrap();
    assert_eq!(
        floe_net::frame::Status::from_byte(header[0]),
        Some(floe_net::frame::Status::BadRequest)
    );

    // The node serves everyone as before.
    assert_eq!(
        pool.call::<GetInfo>(&key, &()).await.unwrap().node_id,
        "node-0"
    );
    let data = Bytes::from(blob(80_000, 52));
    store_and_read_back(&client, data).await;
    cluster.shutdown().await;
}

fn node_has_no_pair(cluster: &Cluster, shard: ShardIndex, blob_id: &floe_codec::BlobId) -> bool {
    cluster
        .node(0)
        .store()
        .sliver_pair(shard, blob_id)
        .unwrap()
        .is_none()
}

/// Binds a server answering with a router `make` builds at node `i`'s address and key,
/// once the stopped node's socket is free: it lingers in this process while
/// its connections drain (a separate process would not wait).
async fn impostor(cluster: &Cluster, i: usize, make: impl Fn() -> Router) -> Server {
    let identity = TlsIdentity::new(&cluster.network_keys[i]).unwrap();
    let address = cluster.configs[i].listen;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match Server::bind(
            address,
            &identity,
            Members::default(),
            make(),
            NetConfig::default(),
        ) {
            Ok(server) => return server,
            Err(floe_net::NetError::Bind { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("binding the impostor of node {i}: {e}"),
        }
    }
}

/// Members that lie about the committee chain: one serves a link signed by
/// keys that are not its committee's, one more links than an answer may
/// carry, one holds its answer back. The lookup ends within its bound per
/// member, keeps the chain it had, reports the two liars (not the silent
/// member, whose call merely fails, nor the honest one) and still counts
/// as a lookup for requests to go out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_lying_about_the_committee_chain_are_reported_and_hold_nothing_up() {
    use floe_api::{GetCommitteeChain, MAX_CHAIN_LINKS};
    use floe_consensus::chain::CommitteeProposal;
    use floe_consensus::{
        CertificateBuilder, Committee, Epoch, KeyPair, Member, ProtocolMessage, Signed,
    };

    let mut cluster = Cluster::start(4, 8).await;
    let client = cluster.client();
    let genesis = client.committee(Epoch(0));
    // The next committee, certified by keys that are not genesis's.
    let forgers: Vec<KeyPair> = (0..4u8)
        .map(|i| KeyPair::from_seed(&[i + 77; 32]))
        .collect();
    let impostors_committee = Committee::new(
        Epoch(0),
        genesis.n_shards(),
        genesis
            .members()
            .iter()
            .zip(&forgers)
            .map(|(member, key)| Member {
                protocol_key: key.public(),
                ..member.clone()
            })
            .collect(),
    )
    .unwrap();
    let message = ProtocolMessage::new(Epoch(0), CommitteeProposal::of(&genesis, Epoch(1)));
    let mut builder = CertificateBuilder::new(&impostors_committee, message.clone());
    for key in &forgers {
        if !builder.is_complete() {
            builder.add(&Signed::sign(message.clone(), key)).unwrap();
        }
    }
    let forged = builder.certificate().unwrap();

    let answers = [
        vec![forged.clone()],
        vec![forged.clone(); MAX_CHAIN_LINKS + 1],
    ];
    // All three stopped first: their sockets are freed meanwhile.
    let silent = 3;
    for i in 1..=silent {
        cluster.stop(i).await;
    }
    let mut servers = Vec::new();
    for (i, links) in (1..).zip(answers) {
        let make = || {
            let links = links.clone();
            Router::new().route::<GetCommitteeChain, _, _>(move |_, _after: Epoch| {
                let links = links.clone();
                async move { Ok::<_, ApiError>(links) }
            })
        };
        servers.push(impostor(&cluster, i, make).await);
    }
    servers.push(
        impostor(&cluster, silent, || {
            Router::new().route::<GetCommitteeChain, _, _>(|_, _after: Epoch| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, ApiError>(Vec::new())
            })
        })
        .await,
    );

    let started = std::time::Instant::now();
    assert_eq!(client.follow_chain().await.unwrap(), Epoch(0));
    assert!(
        // Each call is bounded at 3 s, well within the method's own 10 s.
        started.elapsed() < Duration::from_secs(8),
        "a member holding its answer back held the lookup for {:?}",
        started.elapsed()
    );
    assert_eq!(client.chain().latest_epoch(), Epoch(0));
    // Each member's lies counted, and the last one named.
    let reported = |i: usize| {
        let key = cluster.network_keys[i].public();
        client
            .health()
            .into_iter()
            .find(|h| h.peer.key == key)
            .map_or((0, String::new()), |h| {
                (h.misbehaviours, h.last_misbehaviour.unwrap_or_default())
            })
    };
    let (count, last) = reported(1);
    assert!(
        count > 0 && last.contains("does not verify"),
        "the forged link: {count} reports, last {last:?}"
    );
    let (count, last) = reported(2);
    assert!(
        count > 0 && last.contains("more than the"),
        "the oversized answer: {count} reports, last {last:?}"
    );
    assert_eq!(reported(silent).0, 0, "a silent member is no liar");
    assert_eq!(reported(0).0, 0, "the honest member was reported");
    for server in servers {
        server.shutdown(Duration::from_secs(1)).await;
    }
    cluster.shutdown().await;
}
