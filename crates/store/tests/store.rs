//! floe-store against real RocksDB in temp dirs: every table, shard
//! scans, drift, and damage found as typed errors.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::{my_shards, store_all, store_certified};
use floe_codec::{Axis, ShardIndex};
use floe_consensus::{BlobStatus, Epoch};
use floe_store::{Store, StoreError};

#[test]
fn every_table_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let blob = common::blob(1, 20_000);
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_certified(&store, &world, &blob, 5);
        store.set_current_epoch(Epoch(3)).unwrap();
        store
            .put_node_value("sync-cursor/peer-2", b"cursor")
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert_eq!(
        store.metadata(&blob.blob_id).unwrap().unwrap(),
        blob.metadata
    );
    for &shard in &my_shards() {
        let pair = store.sliver_pair(shard, &blob.blob_id).unwrap().unwrap();
        assert_eq!(&pair, blob.pair_for(shard));
        pair.verify(&blob.metadata).unwrap();
        assert_eq!(
            store
                .sliver(shard, &blob.blob_id, Axis::Secondary)
                .unwrap()
                .unwrap(),
            pair.secondary
        );
    }
    assert_eq!(
        store.sliver_pair(ShardIndex(2), &blob.blob_id).unwrap(),
        None
    );
    assert!(store.holds_all_pairs(&blob.blob_id).unwrap());
    assert!(matches!(
        store.state(&blob.blob_id).unwrap().status(Epoch(1)),
        BlobStatus::Certified { .. }
    ));
    assert_eq!(store.current_epoch().unwrap(), Epoch(3));
    assert_eq!(
        store.node_value("sync-cursor/peer-2").unwrap().unwrap(),
        b"cursor"
    );
    let stats = store.table_stats().unwrap();
    assert!(stats
        .iter()
        .any(|t| t.table == "slivers" && t.sst_bytes + t.blob_file_bytes > 0));
}

#[test]
fn refuses_foreign_shards_and_confirms_only_when_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blob = common::blob(2, 5_000);
    let err = store
        .put_sliver_pair(ShardIndex(0), &blob.blob_id, blob.pair_for(ShardIndex(0)))
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::NotMyShard {
            shard: ShardIndex(0),
            ..
        }
    ));

    store
        .put_metadata(&blob.blob_id, &blob.metadata, 0)
        .unwrap();
    store
        .put_sliver_pair(ShardIndex(1), &blob.blob_id, blob.pair_for(ShardIndex(1)))
        .unwrap();
    match store.promise(common::confirmation(blob.blob_id, 100)) {
        Err(StoreError::MissingPairs { missing, .. }) => {
            assert_eq!(missing, vec![ShardIndex(5), ShardIndex(9)])
        }
        other => panic!("{other:?}"),
    }
    for shard in [ShardIndex(5), ShardIndex(9)] {
        store
            .put_sliver_pair(shard, &blob.blob_id, blob.pair_for(shard))
            .unwrap();
    }
    let durable = store
        .promise(common::confirmation(blob.blob_id, 4))
        .unwrap();
    assert_eq!(durable.blob_id(), blob.blob_id);
    assert_eq!(durable.message(), &common::confirmation(blob.blob_id, 4));
    assert_eq!(
        store.promised(&blob.blob_id).unwrap().unwrap().permanent,
        Some(Epoch(4))
    );
}

#[test]
fn shard_scans_are_ordered_and_resume_from_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blobs: Vec<_> = (0..60)
        .map(|i| common::blob(100 + i, 300 + i as usize))
        .collect();
    for blob in &blobs {
        store_all(&store, blob);
    }
    store.flush().unwrap();
    let mut expected: Vec<_> = blobs.iter().map(|b| b.blob_id).collect();
    expected.sort();
    for &shard in &my_shards() {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = store.scan_shard(shard, cursor.as_ref(), 7).unwrap();
            if page.is_empty() {
                break;
            }
            for (blob_id, pair) in &page {
                let blob = blobs.iter().find(|b| b.blob_id == *blob_id).unwrap();
                assert_eq!(pair, blob.pair_for(shard));
            }
            cursor = page.last().map(|(id, _)| *id);
            seen.extend(page.into_iter().map(|(id, _)| id));
        }
        assert_eq!(seen, expected, "shard {shard}");
    }
    // A shard with nothing stored scans empty.
    assert!(store
        .scan_shard(ShardIndex(2), None, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn drift_tracks_certified_blobs_missing_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let blob = common::blob(4, 9_000);
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        // Certificate first (a missed upload): drift.
        store
            .record_fact(world.certified(blob.blob_id, 10, false), Epoch(0))
            .unwrap();
        assert_eq!(store.drift_count(), 1);
        assert_eq!(store.drift(None, 10), vec![blob.blob_id]);
        store
            .put_metadata(&blob.blob_id, &blob.metadata, 0)
            .unwrap();
        store
            .put_sliver_pair(ShardIndex(1), &blob.blob_id, blob.pair_for(ShardIndex(1)))
            .unwrap();
        assert_eq!(store.drift_count(), 1);
    }
    // Drift survives a restart, then goes to zero once the pairs are in.
    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert_eq!(store.drift_count(), 1);
    for shard in [ShardIndex(5), ShardIndex(9)] {
        store
            .put_sliver_pair(shard, &blob.blob_id, blob.pair_for(shard))
            .unwrap();
    }
    assert_eq!(store.drift_count(), 0);
    // An invalid blob is not drift, whatever is missing.
    let bad = common::blob(5, 100);
    store
        .record_fact(world.certified(bad.blob_id, 10, false), Epoch(0))
        .unwrap();
    assert_eq!(store.drift_count(), 1);
    store
        .record_fact(world.invalid(bad.blob_id), Epoch(0))
        .unwrap();
    assert_eq!(store.drift_count(), 0);
}

#[test]
fn corrupted_values_are_typed_errors_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(6, 50_000); // slivers above the blob-file threshold
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
        store.flush().unwrap();
    }
    // Damage values behind the store's back, through RocksDB itself: a
    // truncated sliver and a bit-flipped metadata value.
    {
        let db = common::raw_db(dir.path());
        let slivers = db.cf_handle("slivers").unwrap();
        let key = common::sliver_key(ShardIndex(5), &blob.blob_id, 0);
        let value = db.get_cf(slivers, &key).unwrap().unwrap();
        db.put_cf(slivers, &key, &value[..value.len() / 2]).unwrap();
        let metadata = db.cf_handle("metadata").unwrap();
        let mut value = db.get_cf(metadata, blob.blob_id.0).unwrap().unwrap();
        let last = value.len() - 1;
        value[last] ^= 0x40;
        db.put_cf(metadata, blob.blob_id.0, &value).unwrap();
    }
    let store = Store::open(dir.path(), my_shards()).unwrap();
    match store.sliver(ShardIndex(5), &blob.blob_id, Axis::Primary) {
        Err(StoreError::Corrupt {
            table: "slivers",
            reason,
            ..
        }) => assert!(reason.contains("checksum"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.metadata(&blob.blob_id),
        Err(StoreError::Corrupt {
            table: "metadata",
            ..
        })
    ));
    // The undamaged pair is still served.
    assert_eq!(
        store
            .sliver_pair(ShardIndex(1), &blob.blob_id)
            .unwrap()
            .unwrap(),
        *blob.pair_for(ShardIndex(1))
    );
    // Another blob's intact metadata, under this blob's key, is no
    // metadata of this blob: its pairs would be checked against it.
    let other = common::blob(7, 50_000);
    store
        .put_metadata(&blob.blob_id, &other.metadata, 0)
        .unwrap();
    match store.metadata(&blob.blob_id) {
        Err(StoreError::Corrupt {
            table: "metadata",
            reason,
            ..
        }) => assert!(reason.contains("does not match blob"), "{reason}"),
        other => panic!("another blob's metadata answered: {other:?}"),
    }
    // Nor is it kept decoded as this blob's, for the pairs checked
    // without a read.
    assert_eq!(store.decoded_metadata(&blob.blob_id), None);
}

#[test]
fn metadata_stored_is_kept_decoded_for_the_pairs_that_follow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let blob = common::blob(8, 20_000);
    assert_eq!(store.decoded_metadata(&blob.blob_id), None);
    store
        .put_metadata(&blob.blob_id, &blob.metadata, 0)
        .unwrap();
    assert_eq!(
        store.decoded_metadata(&blob.blob_id),
        Some(blob.metadata.clone())
    );
    // Another blob's metadata stored under this blob's ID is not kept as
    // this blob's, and what was kept stays this blob's own.
    let other = common::blob(9, 20_000);
    store
        .put_metadata(&blob.blob_id, &other.metadata, 0)
        .unwrap();
    assert_eq!(store.decoded_metadata(&blob.blob_id), Some(blob.metadata));
    assert_eq!(store.decoded_metadata(&other.blob_id), None);
}

#[test]
fn damaged_blob_files_on_disk_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(7, 200_000);
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
        store.flush().unwrap();
    }
    // Flip bytes in the middle of every blob file.
    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "blob") {
            let mut bytes = std::fs::read(&path).unwrap();
            let middle = bytes.len() / 2;
            for b in &mut bytes[middle..middle + 64] {
                *b ^= 0xff;
            }
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0, "slivers above 4 KiB live in blob files");
    let store = Store::open(dir.path(), my_shards()).unwrap();
    let mut errors = 0;
    for &shard in &my_shards() {
        for axis in [Axis::Primary, Axis::Secondary] {
            match store.sliver(shard, &blob.blob_id, axis) {
                Ok(Some(sliver)) => assert_eq!(
                    sliver,
                    if axis == Axis::Primary {
                        blob.pair_for(shard).primary.clone()
                    } else {
                        blob.pair_for(shard).secondary.clone()
                    }
                ),
                Err(StoreError::Database { .. } | StoreError::Corrupt { .. }) => errors += 1,
                Ok(None) => panic!("sliver vanished"),
                Err(other) => panic!("{other:?}"),
            }
        }
    }
    assert!(errors > 0, "some damaged sliver must be reported");
}
