//! floe-store against real RocksDB in temp dirs: what garbage collection
//! removes and keeps, and how confirmations, certificates and deletions
//! decide it.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::{my_shards, store_all};
use floe_codec::ShardIndex;
use floe_consensus::Epoch;
use floe_store::{GarbageReason, Store, StoreError};

#[test]
fn gc_removes_exactly_the_garbage_and_keeps_the_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let now_epoch = Epoch(5);
    let blob = |i: u64| common::blob(200 + i, 2_000 + i as usize);
    let (live, expired, deleted, invalid, stale, fresh, kept_by_other) = (
        blob(0),
        blob(1),
        blob(2),
        blob(3),
        blob(4),
        blob(5),
        blob(6),
    );
    for b in [&live, &expired, &deleted, &invalid, &kept_by_other] {
        store_all(&store, b);
    }
    store
        .put_metadata(&stale.blob_id, &stale.metadata, 1_000)
        .unwrap();
    store
        .put_sliver_pair(ShardIndex(1), &stale.blob_id, stale.pair_for(ShardIndex(1)))
        .unwrap();
    store
        .put_metadata(&fresh.blob_id, &fresh.metadata, 9_000)
        .unwrap();
    store
        .put_sliver_pair(ShardIndex(1), &fresh.blob_id, fresh.pair_for(ShardIndex(1)))
        .unwrap();

    let facts = [
        world.certified(live.blob_id, 9, false),
        world.certified(expired.blob_id, 5, false),
        world.certified(deleted.blob_id, 9, true),
        world.deleted(deleted.blob_id, 9),
        world.certified(invalid.blob_id, 9, false),
        world.invalid(invalid.blob_id),
        // Deleted by its owner, but also stored permanently by someone else: kept.
        world.certified(kept_by_other.blob_id, 9, true),
        world.certified(kept_by_other.blob_id, 8, false),
        world.deleted(kept_by_other.blob_id, 9),
    ];
    for fact in facts {
        store.record_fact(fact, Epoch(0)).unwrap();
    }

    let mut garbage = store.garbage(now_epoch, 5_000, 100).unwrap();
    garbage.sort();
    let mut expected = vec![
        (expired.blob_id, GarbageReason::Expired),
        (deleted.blob_id, GarbageReason::Deleted),
        (invalid.blob_id, GarbageReason::Invalid),
        (stale.blob_id, GarbageReason::StalePending),
    ];
    expected.sort();
    assert_eq!(garbage, expected);

    // Bounded batches.
    let first = store.collect_garbage(now_epoch, 5_000, 3).unwrap();
    assert_eq!((first.blobs, first.more), (3, true));
    let second = store.collect_garbage(now_epoch, 5_000, 3).unwrap();
    assert_eq!((second.blobs, second.more), (1, false));
    assert_eq!(store.gc_stats().blobs, 4);
    assert_eq!(first.slivers + second.slivers, 2 * (3 * 3 + 1));

    for b in [&expired, &deleted, &invalid, &stale] {
        assert_eq!(store.metadata(&b.blob_id).unwrap(), None);
        // Nor is it kept decoded, and a pair checked against it before
        // the collection is refused.
        assert_eq!(store.decoded_metadata(&b.blob_id), None);
        assert!(matches!(
            store.put_sliver_pair(ShardIndex(1), &b.blob_id, b.pair_for(ShardIndex(1))),
            Err(StoreError::MissingMetadata { .. })
        ));
        assert!(store.stored_shards(&b.blob_id).unwrap().is_empty());
        for &shard in &my_shards() {
            assert_eq!(store.sliver_pair(shard, &b.blob_id).unwrap(), None);
        }
    }
    for b in [&live, &kept_by_other] {
        assert!(store.holds_all_pairs(&b.blob_id).unwrap());
        assert_eq!(store.metadata(&b.blob_id).unwrap().unwrap(), b.metadata);
    }
    assert!(store
        .sliver_pair(ShardIndex(1), &fresh.blob_id)
        .unwrap()
        .is_some());
    // The states still answer truthfully, with proof.
    assert_eq!(
        store
            .state(&expired.blob_id)
            .unwrap()
            .status(now_epoch)
            .name(),
        "expired"
    );
    assert_eq!(
        store
            .state(&deleted.blob_id)
            .unwrap()
            .status(now_epoch)
            .name(),
        "deleted"
    );
    assert_eq!(
        store
            .state(&invalid.blob_id)
            .unwrap()
            .status(now_epoch)
            .name(),
        "invalid"
    );
    assert_eq!(
        store
            .state(&kept_by_other.blob_id)
            .unwrap()
            .status(now_epoch)
            .name(),
        "certified"
    );
    assert!(store.garbage(now_epoch, 5_000, 100).unwrap().is_empty());

    // Slivers of a collected blob need its metadata again; data of a blob
    // proven invalid is not taken again.
    store.set_current_epoch(now_epoch).unwrap();
    assert!(matches!(
        store.put_sliver_pair(
            ShardIndex(1),
            &expired.blob_id,
            expired.pair_for(ShardIndex(1))
        ),
        Err(StoreError::MissingMetadata { .. })
    ));
    assert!(matches!(
        store.put_metadata(&invalid.blob_id, &invalid.metadata, 9_999),
        Err(StoreError::BlobGone {
            status: "invalid",
            ..
        })
    ));
}

#[test]
fn a_certificate_arriving_after_garbage_was_listed_wins() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blob = common::blob(300, 4_000);
    store_all(&store, &blob); // arrived at 1 000 ms, uncertified
    assert_eq!(
        store.garbage(Epoch(0), 5_000, 10).unwrap(),
        vec![(blob.blob_id, GarbageReason::StalePending)]
    );
    // The certificate lands between the listing and the collection.
    store
        .record_fact(world.certified(blob.blob_id, 9, false), Epoch(0))
        .unwrap();
    let report = store.collect_garbage(Epoch(0), 5_000, 10).unwrap();
    assert_eq!(report.blobs, 0);
    assert!(store.holds_all_pairs(&blob.blob_id).unwrap());
    assert!(store
        .promise(common::confirmation(blob.blob_id, 100))
        .is_ok());
}

/// A confirmation the node signed keeps the pairs past the pending window,
/// so a certificate delivered late finds them; an owner's deletion
/// releases what was confirmed to that owner.
#[test]
fn a_confirmation_keeps_its_pairs_until_its_end_epoch_or_a_deletion_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let (kept, released) = (common::blob(400, 3_000), common::blob(401, 3_000));
    store_all(&store, &kept); // arrived at 1 000 ms
    store_all(&store, &released);
    store
        .promise(common::confirmation(kept.blob_id, 9))
        .unwrap();
    let mut deletable = common::confirmation(released.blob_id, 9);
    deletable.body.deletable = true;
    deletable.body.owner = Some(world.owner.public());
    store.promise(deletable.clone()).unwrap();
    // The pending window passes with no certificate: both are kept.
    assert_eq!(store.garbage(Epoch(0), 5_000, 10).unwrap(), vec![]);
    assert_eq!(store.collect_garbage(Epoch(0), 5_000, 10).unwrap().blobs, 0);
    // The certificate arrives late: readable here, no drift.
    store
        .record_fact(world.certified(kept.blob_id, 9, false), Epoch(1))
        .unwrap();
    assert!(store.holds_all_pairs(&kept.blob_id).unwrap());
    assert_eq!(store.drift_count(), 0);
    // Past its end epoch the promise no longer binds.
    assert!(store
        .garbage(Epoch(9), 5_000, 10)
        .unwrap()
        .contains(&(kept.blob_id, GarbageReason::Expired)));
    // The owner deletes what it registered: the promise made to it is released.
    store
        .record_fact(world.deleted(released.blob_id, 9), Epoch(0))
        .unwrap();
    assert_eq!(
        store.garbage(Epoch(0), 5_000, 10).unwrap(),
        vec![(released.blob_id, GarbageReason::Deleted)]
    );
    // And a registration of that owner's confirmed now would be born deleted.
    assert!(matches!(
        store.promise(deletable),
        Err(StoreError::NotConfirmable { .. })
    ));
}

/// Content whose registration expired or was deleted can be stored again
/// as a new registration; proven-invalid content cannot.
#[test]
fn deleted_content_is_stored_again_and_invalid_content_is_not_confirmed() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blob = common::blob(402, 5_000);
    store_all(&store, &blob);
    store
        .record_fact(world.certified(blob.blob_id, 9, true), Epoch(0))
        .unwrap();
    store
        .record_fact(world.deleted(blob.blob_id, 9), Epoch(0))
        .unwrap();
    assert_eq!(store.collect_garbage(Epoch(1), 0, 10).unwrap().blobs, 1);
    assert_eq!(store.metadata(&blob.blob_id).unwrap(), None);
    // Stored again, permanently, by anyone: the upload (arriving at 1 000
    // ms) is taken and kept while it waits for its certificate.
    store_all(&store, &blob);
    assert_eq!(store.garbage(Epoch(1), 500, 10).unwrap(), vec![]);
    store
        .promise(common::confirmation(blob.blob_id, 20))
        .unwrap();
    let (_, after) = store
        .record_fact(world.certified(blob.blob_id, 20, false), Epoch(1))
        .unwrap();
    assert_eq!(after.status(Epoch(1)).name(), "certified");
    assert_eq!(store.garbage(Epoch(1), u64::MAX, 10).unwrap(), vec![]);
    assert!(store.holds_all_pairs(&blob.blob_id).unwrap());

    // Invalid: neither stored again nor confirmed.
    let bad = common::blob(403, 500);
    store_all(&store, &bad);
    store
        .record_fact(world.invalid(bad.blob_id), Epoch(0))
        .unwrap();
    assert!(matches!(
        store.promise(common::confirmation(bad.blob_id, 9)),
        Err(StoreError::NotConfirmable { .. })
    ));
    assert!(matches!(
        store.put_metadata(&bad.blob_id, &bad.metadata, 9_000),
        Err(StoreError::BlobGone { .. })
    ));
}

/// Anyone may ask for confirmations naming any owner: past
/// `MAX_PROMISED_OWNERS` owners the deletable promises fold into one that
/// no deletion releases, so nobody is refused and no promise is cut short.
#[test]
fn confirmations_naming_many_owners_fold_into_one_promise() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blob = common::blob(404, 3_000);
    store_all(&store, &blob);
    for i in 0..=floe_store::MAX_PROMISED_OWNERS {
        let mut message = common::confirmation(blob.blob_id, 10 + i as u64);
        message.body.deletable = true;
        message.body.owner = Some(floe_consensus::KeyPair::from_seed(&[i as u8 + 1; 32]).public());
        store.promise(message).unwrap();
    }
    let promise = store.promised(&blob.blob_id).unwrap().unwrap();
    assert!(promise.deletable.is_empty(), "{promise:?}");
    assert_eq!(
        promise.permanent,
        Some(Epoch(10 + floe_store::MAX_PROMISED_OWNERS as u64))
    );
    // No deletion releases it now: the data stays until the latest end.
    store
        .record_fact(world.deleted(blob.blob_id, 9), Epoch(0))
        .unwrap();
    assert_eq!(store.garbage(Epoch(20), 5_000, 10).unwrap(), vec![]);
    assert_eq!(
        store.garbage(Epoch(26), 5_000, 10).unwrap(),
        vec![(blob.blob_id, GarbageReason::Deleted)]
    );
}
