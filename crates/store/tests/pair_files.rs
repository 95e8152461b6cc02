//! floe-store against real RocksDB in temp dirs: large pairs in one file
//! per blob (or, from earlier versions, a file per pair), checked,
//! collected and swept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

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

/// `shard`'s pair of `blob` reads back whole.
fn reads_back(store: &Store, blob: &common::Blob, shard: ShardIndex) {
    assert_eq!(
        &store.sliver_pair(shard, &blob.blob_id).unwrap().unwrap(),
        blob.pair_for(shard),
        "shard {shard}"
    );
}

/// Bytes a file takes on disk (holes not counted).
fn allocated(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// `path` takes `expected` bytes on disk, give or take the blocks ext4
/// counts for its extent tree: punched holes split extents, and once a
/// file has more than the inode holds the tree takes a block of its own
/// (how many extents there are depends on free space, so runs differ).
fn assert_allocated(path: &std::path::Path, expected: u64) {
    const EXTENT_TREE: u64 = 2 * 4096;
    let got = allocated(path);
    assert!(
        (expected..=expected + EXTENT_TREE).contains(&got),
        "{} takes {got} bytes on disk; {expected} expected (and at most {EXTENT_TREE} of extent tree)",
        path.display()
    );
}

/// `len` rounded up to whole 4 KiB blocks.
fn padded(len: usize) -> u64 {
    (len as u64).div_ceil(4096) * 4096
}

/// Where the pair of `shard` starts in its blob's file: the block where its
/// bytes are.
fn offset_of(file: &[u8], blob: &common::Blob, shard: ShardIndex) -> usize {
    let pair = blob.pair_for(shard);
    let whole = [pair.primary.data.as_ref(), pair.secondary.data.as_ref()].concat();
    (0..file.len())
        .step_by(4096)
        .find(|&at| file.get(at..at + whole.len()) == Some(&whole[..]))
        .expect("the pair is in its blob's file, on a block boundary")
}

#[test]
fn large_pairs_live_in_one_file_per_blob_checked_collected_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(8, 4_000_000);
    let pair_bytes = |shard| blob.pair_for(shard).byte_len();
    let file = pair_dir(dir.path(), &blob).join("pairs");
    let recorded =
        |shards: &[ShardIndex]| shards.iter().map(|&s| padded(pair_bytes(s))).sum::<u64>();
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
        // One file holds the blob's pairs, each on whole blocks.
        assert_eq!(
            std::fs::read_dir(pair_dir(dir.path(), &blob))
                .unwrap()
                .count(),
            1
        );
        assert_eq!(store.pair_file_bytes(), recorded(&my_shards()));
        assert_allocated(&file, recorded(&my_shards()));
        let bytes = std::fs::read(&file).unwrap();
        for &shard in &my_shards() {
            offset_of(&bytes, &blob, shard);
            reads_back(&store, &blob, shard);
        }
        // Stored again (a retry, a second upload): nothing to add, nothing
        // written.
        let len = std::fs::metadata(&file).unwrap().len();
        store
            .put_sliver_pair(ShardIndex(5), &blob.blob_id, blob.pair_for(ShardIndex(5)))
            .unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), len);
        assert_eq!(store.pair_file_bytes(), recorded(&my_shards()));
        assert_allocated(&file, recorded(&my_shards()));
        reads_back(&store, &blob, ShardIndex(5));
    }

    // Bytes written after the last recorded pair and never recorded (a
    // crash before the record): punched out at the next open.
    {
        use std::os::unix::fs::FileExt;
        let end = padded(std::fs::metadata(&file).unwrap().len() as usize);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .write_all_at(&[7u8; 3 * 4096], end)
            .unwrap();
        assert_allocated(&file, recorded(&my_shards()) + 3 * 4096);
        let store = Store::open(dir.path(), my_shards()).unwrap();
        assert_allocated(&file, recorded(&my_shards()));
        assert_eq!(store.pair_file_bytes(), recorded(&my_shards()));
        assert!(store.holds_all_pairs(&blob.blob_id).unwrap());
    }

    // Damage: a flipped byte in shard 1's pair; the file cut short inside
    // the last pair's.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = my_shards()
        .into_iter()
        .max_by_key(|&shard| offset_of(&bytes, &blob, shard))
        .unwrap();
    let at = offset_of(&bytes, &blob, last);
    let shard_1 = offset_of(&bytes, &blob, ShardIndex(1));
    bytes[shard_1 + 10] ^= 1;
    bytes.truncate(at + pair_bytes(last) - 1);
    std::fs::write(&file, &bytes).unwrap();
    // Leftovers of a crash: an earlier version's half-written temporary
    // file and a pair file of its own the database never recorded; a blob
    // file with no recorded pair; a blob directory whose creation was
    // never followed by a pair.
    std::fs::create_dir_all(dir.path().join("pairs/.tmp")).unwrap();
    std::fs::write(dir.path().join("pairs/.tmp/17"), b"half a pair").unwrap();
    let other = common::blob(9, 4_000_000);
    std::fs::create_dir_all(pair_dir(dir.path(), &other)).unwrap();
    std::fs::write(pair_dir(dir.path(), &other).join("9"), b"never recorded").unwrap();
    let unrecorded = common::blob(12, 4_000_000);
    std::fs::create_dir_all(pair_dir(dir.path(), &unrecorded)).unwrap();
    std::fs::write(
        pair_dir(dir.path(), &unrecorded).join("pairs"),
        b"never recorded",
    )
    .unwrap();
    let empty = common::blob(10, 1_000);
    std::fs::create_dir_all(pair_dir(dir.path(), &empty)).unwrap();

    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert!(!dir.path().join("pairs/.tmp").exists());
    assert!(!pair_dir(dir.path(), &other).exists());
    assert!(!pair_dir(dir.path(), &unrecorded).exists());
    assert!(!pair_dir(dir.path(), &empty).exists());
    // The recorded pairs count, whole blocks each.
    assert_eq!(store.pair_file_bytes(), recorded(&my_shards()));
    match store.sliver(ShardIndex(1), &blob.blob_id, Axis::Primary) {
        Err(StoreError::PairLost { shard, reason, .. }) => {
            assert_eq!(shard, ShardIndex(1));
            assert!(reason.contains("checksum"), "{reason}")
        }
        other => panic!("expected a lost pair, got {other:?}"),
    }
    match store.sliver(last, &blob.blob_id, Axis::Secondary) {
        Err(StoreError::PairLost { shard, reason, .. }) => {
            assert_eq!(shard, last);
            assert!(reason.contains(&file.display().to_string()), "{reason}")
        }
        other => panic!("expected a lost pair, got {other:?}"),
    }
    // Both damaged pairs were dropped and their bytes punched out: the
    // upload is incomplete again rather than confirmable on damaged data.
    let mut lost = vec![ShardIndex(1), last];
    lost.sort();
    lost.dedup();
    assert_eq!(lost.len(), 2, "the last pair is not shard 1's");
    assert_eq!(store.missing_pairs(&blob.blob_id).unwrap(), lost);
    let kept = my_shards().into_iter().find(|s| !lost.contains(s)).unwrap();
    assert!(store
        .promise(common::confirmation(blob.blob_id, 100))
        .is_err());
    assert_allocated(&file, recorded(&[kept]));
    assert_eq!(store.pair_file_bytes(), recorded(&[kept]));
    // The undamaged pair still reads back.
    reads_back(&store, &blob, kept);

    assert_eq!(store.drift_count(), 0, "an uncertified blob does not drift");

    // Never certified and past the pending deadline: collected, files too.
    let report = store.collect_garbage(Epoch(0), 5_000, 10).unwrap();
    assert_eq!(report.blobs, 1);
    assert!(!pair_dir(dir.path(), &blob).exists());
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
    // The blob's file disappears behind the store's back.
    std::fs::remove_file(pair_dir(dir.path(), &blob).join("pairs")).unwrap();
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
    reads_back(&store, &blob, ShardIndex(9));
}

/// A store written by an earlier version (a file per pair, records with
/// format byte 2) opens and reads; a pair stored again writes nothing; a
/// damaged one's file goes; an unrecorded one is swept.
#[test]
fn pairs_in_files_of_their_own_from_earlier_versions_still_read_and_are_freed() {
    use floe_store::records::{FileChecksum, FilePlace, PairFile, SliverRecord};
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(13, 4_000_000);
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
    }
    // Rewritten as an earlier version kept it, through RocksDB itself.
    let blob_dir = pair_dir(dir.path(), &blob);
    {
        let db = common::raw_db(dir.path());
        let slivers = db.cf_handle("slivers").unwrap();
        for &shard in &my_shards() {
            let pair = blob.pair_for(shard);
            let own = [pair.primary.data.as_ref(), pair.secondary.data.as_ref()].concat();
            std::fs::write(blob_dir.join(shard.0.to_string()), own).unwrap();
            let at = pair.primary.data.len() as u64;
            for (axis, sliver, offset) in [(0u8, &pair.primary, 0), (1, &pair.secondary, at)] {
                let key = common::sliver_key(shard, &blob.blob_id, axis);
                let record = SliverRecord::InFile(FilePlace {
                    file: PairFile::Own,
                    index: sliver.index,
                    offset,
                    length: sliver.data.len() as u64,
                    checksum: FileChecksum::of(&sliver.data),
                });
                db.put_cf(slivers, &key, record.to_bytes()).unwrap();
            }
        }
    }
    std::fs::remove_file(blob_dir.join("pairs")).unwrap();
    std::fs::write(blob_dir.join("3"), b"a pair never recorded").unwrap();

    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert!(!blob_dir.join("3").exists());
    let own_bytes = |shards: &[ShardIndex]| -> u64 {
        shards
            .iter()
            .map(|s| allocated(&blob_dir.join(s.0.to_string())))
            .sum()
    };
    assert_eq!(store.pair_file_bytes(), own_bytes(&my_shards()));
    for &shard in &my_shards() {
        reads_back(&store, &blob, shard);
    }
    // Stored again: nothing written.
    store
        .put_sliver_pair(ShardIndex(5), &blob.blob_id, blob.pair_for(ShardIndex(5)))
        .unwrap();
    assert!(blob_dir.join("5").exists());
    assert!(!blob_dir.join("pairs").exists());
    reads_back(&store, &blob, ShardIndex(5));
    // Damaged: lost, and its file goes.
    let damaged = blob_dir.join("1");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    assert!(matches!(
        store.sliver(ShardIndex(1), &blob.blob_id, Axis::Primary),
        Err(StoreError::PairLost {
            shard: ShardIndex(1),
            ..
        })
    ));
    assert!(!damaged.exists());
    assert_eq!(
        store.pair_file_bytes(),
        own_bytes(&[ShardIndex(5), ShardIndex(9)])
    );
    // Collected: every file of the blob goes.
    let report = store.collect_garbage(Epoch(0), 5_000, 10).unwrap();
    assert_eq!(report.blobs, 1);
    assert!(!blob_dir.exists());
    assert_eq!(store.pair_file_bytes(), 0);
}

/// A pair record that does not read (damaged in the database) neither
/// stops the store from opening nor loses the blob's file: the read is a
/// typed error, the pair can be stored over it, and its old bytes are freed
/// at the next open.
#[test]
fn a_damaged_pair_record_keeps_its_file_and_is_stored_over() {
    let dir = tempfile::tempdir().unwrap();
    let blob = common::blob(14, 4_000_000);
    let file = pair_dir(dir.path(), &blob).join("pairs");
    let all = |shards: &[ShardIndex]| -> u64 {
        shards
            .iter()
            .map(|&s| padded(blob.pair_for(s).byte_len()))
            .sum()
    };
    {
        let store = Store::open(dir.path(), my_shards()).unwrap();
        store_all(&store, &blob);
    }
    {
        let db = common::raw_db(dir.path());
        let slivers = db.cf_handle("slivers").unwrap();
        let key = common::sliver_key(ShardIndex(5), &blob.blob_id, 0);
        let value = db.get_cf(slivers, &key).unwrap().unwrap();
        db.put_cf(slivers, &key, &value[..value.len() / 2]).unwrap();
    }
    let store = Store::open(dir.path(), my_shards()).unwrap();
    // Nobody can say where the damaged record's pair is: the file is kept
    // whole.
    assert_allocated(&file, all(&my_shards()));
    assert!(matches!(
        store.sliver(ShardIndex(5), &blob.blob_id, Axis::Primary),
        Err(StoreError::Corrupt {
            table: "slivers",
            ..
        })
    ));
    reads_back(&store, &blob, ShardIndex(1));
    store
        .put_sliver_pair(ShardIndex(5), &blob.blob_id, blob.pair_for(ShardIndex(5)))
        .unwrap();
    reads_back(&store, &blob, ShardIndex(5));
    drop(store);
    // Reopened: the old copy's bytes are unrecorded, and punched out.
    let store = Store::open(dir.path(), my_shards()).unwrap();
    assert_allocated(&file, all(&my_shards()));
    assert_eq!(store.pair_file_bytes(), all(&my_shards()));
    for &shard in &my_shards() {
        reads_back(&store, &blob, shard);
    }
}
