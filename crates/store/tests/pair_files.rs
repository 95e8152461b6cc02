//! floe-store against real RocksDB in temp dirs: large pairs in files of
//! their own, checked, collected and swept.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

mod common;

use common::{my_shards, store_all, store_certified};
use floe_codec::{Axis, ShardIndex};
use floe_consensus::Epoch;
use floe_store::{Store, StoreError};

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
