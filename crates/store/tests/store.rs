//! floe-store against real RocksDB in temp dirs.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use floe_codec::{Axis, ShardIndex};
use floe_consensus::{BlobStatus, Epoch};
use floe_store::{GarbageReason, Store, StoreError};

fn my_shards() -> Vec<ShardIndex> {
    vec![ShardIndex(1), ShardIndex(5), ShardIndex(9)] // node-1's shards in common::world()
}

fn store_all(store: &Store, blob: &common::Blob) {
    store
        .put_metadata(&blob.blob_id, &blob.metadata, 1_000)
        .unwrap();
    for &shard in store.shards() {
        store
            .put_sliver_pair(shard, &blob.blob_id, blob.pair_for(shard))
            .unwrap();
    }
}

/// Stores every pair of `blob` and a certificate for it up to `end_epoch`.
fn store_certified(store: &Store, world: &common::World, blob: &common::Blob, end_epoch: u64) {
    store_all(store, blob);
    store
        .record_fact(world.certified(blob.blob_id, end_epoch, false), Epoch(0))
        .unwrap();
}

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
    let world = common::world();
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
    let signed = durable.sign_confirmation(&world.keys[1]);
    signed.verify().unwrap();
    assert_eq!(signed.message, common::confirmation(blob.blob_id, 4));
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
        let mut options = rocksdb::Options::default();
        options.create_if_missing(false);
        let db = rocksdb::DB::open_cf(&options, dir.path(), floe_store::TABLES).unwrap();
        let slivers = db.cf_handle("slivers").unwrap();
        let mut key = ShardIndex(5).0.to_be_bytes().to_vec();
        key.extend_from_slice(&blob.blob_id.0);
        key.push(0);
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

/// Large pairs go to files of their own, synced before they are recorded;
/// confirmed, they survive a reopen, on disk and on tmpfs (where direct
/// I/O for the database's flushes is probed separately).
#[test]
fn confirmed_large_pairs_survive_reopen_with_or_without_direct_io() {
    let shm = std::path::Path::new("/dev/shm");
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    if shm.is_dir() {
        dirs.push(tempfile::tempdir_in(shm).unwrap());
    }
    // Pairs of about 1 MiB each: kept in files.
    let blob = common::blob(7, 4_000_000);
    let pair = blob.pair_for(my_shards()[0]);
    assert!(pair.byte_len() >= floe_store::FILE_MIN_PAIR_BYTES);
    for dir in dirs {
        let direct = {
            let store = Store::open(dir.path(), my_shards()).unwrap();
            store_all(&store, &blob);
            store
                .promise(common::confirmation(blob.blob_id, 100))
                .unwrap();
            store.direct_io()
        };
        let store = Store::open(dir.path(), my_shards()).unwrap();
        let context = format!("{} (direct I/O: {direct})", dir.path().display());
        assert!(store.holds_all_pairs(&blob.blob_id).unwrap(), "{context}");
        for &shard in &my_shards() {
            let pair = store.sliver_pair(shard, &blob.blob_id).unwrap().unwrap();
            assert_eq!(&pair, blob.pair_for(shard), "{context}");
        }
    }
}

/// Where the pair files of `blob` live under a store opened at `dir`.
fn pair_dir(dir: &std::path::Path, blob: &common::Blob) -> std::path::PathBuf {
    let hex: String = blob.blob_id.0.iter().map(|b| format!("{b:02x}")).collect();
    dir.join("pairs").join(hex)
}

#[test]
fn large_pairs_live_in_files_that_are_checked_collected_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(8, 4_000_000);
    let pair_bytes = |shard| {
        let pair = blob.pair_for(shard);
        pair.byte_len() as u64
    };
    let files = pair_dir(dir.path(), &blob);
    let file_bytes = |shard: ShardIndex| {
        std::fs::metadata(files.join(shard.0.to_string()))
            .unwrap()
            .len()
    };
    let all_bytes = || my_shards().into_iter().map(file_bytes).sum::<u64>();
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
        assert_eq!(store.pair_file_bytes(), all_bytes());
        for &shard in &my_shards() {
            // The pair, padded to whole blocks where direct I/O wrote it.
            let padding = file_bytes(shard) - pair_bytes(shard);
            assert!(padding < 4096, "{padding}");
            assert_eq!(
                &store.sliver_pair(shard, &blob.blob_id).unwrap().unwrap(),
                blob.pair_for(shard)
            );
        }
        // Stored again (a retry, a repair): replaced, counted once.
        store
            .put_sliver_pair(ShardIndex(5), &blob.blob_id, blob.pair_for(ShardIndex(5)))
            .unwrap();
        assert_eq!(store.pair_file_bytes(), all_bytes());
    }

    // Damage: a flipped byte in one file, another file cut short. Both are
    // errors naming what is wrong, never data.
    let flipped = files.join("1");
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&flipped, bytes).unwrap();
    let cut = files.join("5");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(pair_bytes(ShardIndex(5)) - 1)
        .unwrap();
    // Leftovers of a crash: a half-written temporary file, and a placed
    // file the database never recorded.
    std::fs::write(dir.path().join("pairs/.tmp/17"), b"half a pair").unwrap();
    let other = common::blob(9, 4_000_000);
    std::fs::create_dir_all(pair_dir(dir.path(), &other)).unwrap();
    std::fs::write(pair_dir(dir.path(), &other).join("9"), b"never recorded").unwrap();
    // And a blob directory whose creation was never followed by a pair.
    let empty = common::blob(10, 1_000);
    std::fs::create_dir_all(pair_dir(dir.path(), &empty)).unwrap();

    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert!(!dir.path().join("pairs/.tmp/17").exists());
    assert!(!pair_dir(dir.path(), &other).exists());
    assert!(!pair_dir(dir.path(), &empty).exists());
    assert_eq!(store.pair_file_bytes(), all_bytes());
    match store.sliver(ShardIndex(1), &blob.blob_id, Axis::Primary) {
        Err(StoreError::PairLost { shard, reason, .. }) => {
            assert_eq!(shard, ShardIndex(1));
            assert!(reason.contains("checksum"), "{reason}")
        }
        other => panic!("expected a lost pair, got {other:?}"),
    }
    match store.sliver(ShardIndex(5), &blob.blob_id, Axis::Secondary) {
        Err(StoreError::PairLost { shard, reason, .. }) => {
            assert_eq!(shard, ShardIndex(5));
            assert!(reason.contains(&cut.display().to_string()), "{reason}")
        }
        other => panic!("expected a lost pair, got {other:?}"),
    }
    // Both damaged pairs were dropped, files and all: the upload is
    // incomplete again rather than confirmable on damaged data.
    assert_eq!(
        store.missing_pairs(&blob.blob_id).unwrap(),
        [ShardIndex(1), ShardIndex(5)]
    );
    assert!(store
        .promise(common::confirmation(blob.blob_id, 100))
        .is_err());
    assert!(!flipped.exists() && !cut.exists());
    assert_eq!(store.pair_file_bytes(), file_bytes(ShardIndex(9)));
    // The undamaged pair still reads back.
    assert_eq!(
        &store
            .sliver_pair(ShardIndex(9), &blob.blob_id)
            .unwrap()
            .unwrap(),
        blob.pair_for(ShardIndex(9))
    );

    assert_eq!(store.drift_count(), 0, "an uncertified blob does not drift");

    // Never certified and past the pending deadline: collected, files too.
    let report = store.collect_garbage(Epoch(0), 5_000, 10).unwrap();
    assert_eq!(report.blobs, 1);
    assert!(!files.exists());
    assert_eq!(store.pair_file_bytes(), 0);
}

#[test]
fn a_certified_pair_whose_file_is_lost_drifts_until_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let world = common::world();
    let blob = common::blob(11, 4_000_000);
    let store = Store::open(dir.path(), my_shards()).unwrap();
    store_certified(&store, &world, &blob, 9);
    assert_eq!(store.drift_count(), 0);
    // The file disappears behind the store's back.
    std::fs::remove_file(pair_dir(dir.path(), &blob).join("9")).unwrap();
    assert!(matches!(
        store.sliver_pair(ShardIndex(9), &blob.blob_id),
        Err(StoreError::PairLost {
            shard: ShardIndex(9),
            ..
        })
    ));
    // Dropped and drifting: repair's work list now has it.
    assert_eq!(
        store.sliver_pair(ShardIndex(9), &blob.blob_id).unwrap(),
        None
    );
    assert_eq!(store.missing_pairs(&blob.blob_id).unwrap(), [ShardIndex(9)]);
    assert_eq!(store.drift(None, 10), vec![blob.blob_id]);
    // Rebuilt (as repair stores it): whole again, no drift.
    store
        .put_sliver_pair(ShardIndex(9), &blob.blob_id, blob.pair_for(ShardIndex(9)))
        .unwrap();
    assert_eq!(store.drift_count(), 0);
    assert_eq!(
        &store
            .sliver_pair(ShardIndex(9), &blob.blob_id)
            .unwrap()
            .unwrap(),
        blob.pair_for(ShardIndex(9))
    );
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
