//! The pair files of one store, against a real file system.
#![allow(clippy::unwrap_used)]
use floe_codec::{encode, EncodingConfig};

use super::*;

/// Both ways of writing (direct I/O is only taken where the file system
/// allows it, so the buffered way would otherwise go untested here):
/// pairs of one blob side by side in one file, block-aligned; a pair
/// staged and never kept is punched out again.
#[test]
fn pairs_of_a_blob_share_its_file_written_either_way() {
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 31 + 7) as u8).collect();
    let (_, blob_id, pairs) = encode(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
    let len = |pair: &SliverPair| pair.byte_len() as u64;
    for direct in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let files = PairFiles::open(dir.path(), direct).unwrap();
        let first = files.stage(&blob_id, &pairs[3]).unwrap();
        let second = files.stage(&blob_id, &pairs[4]).unwrap();
        assert_eq!(first.offset(), 0);
        assert_eq!(second.offset(), padded(len(&pairs[3])));
        // Pairs being written share one open file.
        assert_eq!(lock(&files.open).len(), 1);
        first.check_live().unwrap();
        // Summed as written, piece by piece: what a separate pass sums.
        for (staged, pair) in [(&first, &pairs[3]), (&second, &pairs[4])] {
            let whole = [&pair.primary.data, &pair.secondary.data].map(|d| crc32c::crc32c(d));
            assert_eq!(staged.checksums(), whole, "direct: {direct}");
        }
        files.commit(first);
        files.commit(second);
        // Closed with its last writer.
        assert!(lock(&files.open).is_empty());
        let path = files.path(&blob_id, ShardIndex(3), PairFile::Blob);
        let on_disk = fs::metadata(&path).unwrap();
        let expected_len = if direct {
            padded(len(&pairs[3])) + padded(len(&pairs[4]))
        } else {
            padded(len(&pairs[3])) + len(&pairs[4])
        };
        assert_eq!(on_disk.len(), expected_len, "direct: {direct}");
        assert_eq!(
            files.bytes(),
            padded(len(&pairs[3])) + padded(len(&pairs[4]))
        );
        for (pair, offset) in [(&pairs[3], 0), (&pairs[4], padded(len(&pairs[3])))] {
            let primary = pair.primary.data.len();
            let read = files
                .read(&blob_id, ShardIndex(3), PairFile::Blob, offset, primary)
                .unwrap();
            assert_eq!(read, pair.primary.data.as_ref());
            let read = files
                .read(
                    &blob_id,
                    ShardIndex(3),
                    PairFile::Blob,
                    offset + primary as u64,
                    pair.secondary.data.len(),
                )
                .unwrap();
            assert_eq!(read, pair.secondary.data.as_ref());
        }
        // Reopened for a third pair: it goes after the others, and is
        // punched out again when dropped unkept.
        let before = allocated(&fs::metadata(&path).unwrap());
        let third = files.stage(&blob_id, &pairs[5]).unwrap();
        assert_eq!(third.offset(), padded(expected_len));
        assert!(allocated(&fs::metadata(&path).unwrap()) > before);
        drop(third);
        assert_eq!(allocated(&fs::metadata(&path).unwrap()), before);
        // Removed while a pair is written: that pair cannot be kept.
        let fourth = files.stage(&blob_id, &pairs[6]).unwrap();
        files
            .remove_blob(&blob_id, padded(len(&pairs[3])) + padded(len(&pairs[4])))
            .unwrap();
        assert!(fourth.check_live().is_err());
        drop(fourth);
        assert_eq!(files.bytes(), 0);
        assert!(!path.exists());
        assert!(lock(&files.open).is_empty());
    }
}

/// Pairs of one blob staged at once from many threads, either way of
/// writing: each lands whole at its own offset with its own checksums,
/// whether its write was made durable by its own sync or by another
/// writer's that began after it completed; and every write is counted.
#[test]
fn pairs_staged_at_once_are_each_written_and_synced() {
    let blob: Vec<u8> = (0..600_000u32).map(|i| (i * 17 + 3) as u8).collect();
    let (_, blob_id, pairs) = encode(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
    for direct in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let files = PairFiles::open(dir.path(), direct).unwrap();
        let staged: Vec<(Staged<'_>, &SliverPair)> = std::thread::scope(|scope| {
            let writers: Vec<_> = pairs
                .iter()
                .map(|pair| {
                    let (files, blob_id) = (&files, &blob_id);
                    scope.spawn(move || (files.stage(blob_id, pair).unwrap(), pair))
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let file = Arc::clone(&lock(&files.open)[&blob_id]);
        assert_eq!(
            file.written.load(Ordering::Acquire),
            pairs.len() as u64,
            "direct: {direct}"
        );
        // The last sync covered every write.
        assert_eq!(*lock(&file.sync), pairs.len() as u64, "direct: {direct}");
        drop(file);
        for (staged, pair) in staged {
            staged.check_live().unwrap();
            let sums = [&pair.primary.data, &pair.secondary.data].map(|d| crc32c::crc32c(d));
            assert_eq!(staged.checksums(), sums);
            let offset = staged.offset();
            files.commit(staged);
            let primary = pair.primary.data.len();
            let read = files
                .read(&blob_id, ShardIndex(0), PairFile::Blob, offset, primary)
                .unwrap();
            assert_eq!(read, pair.primary.data.as_ref(), "direct: {direct}");
            let read = files
                .read(
                    &blob_id,
                    ShardIndex(0),
                    PairFile::Blob,
                    offset + primary as u64,
                    pair.secondary.data.len(),
                )
                .unwrap();
            assert_eq!(read, pair.secondary.data.as_ref(), "direct: {direct}");
        }
    }
}

/// A blob's ID and pairs (of 300 KB, seeded by `seed`) on ten shards.
fn sample_pairs(seed: u32) -> (BlobId, Vec<SliverPair>) {
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * seed + 5) as u8).collect();
    let (_, blob_id, pairs) = encode(&EncodingConfig::new(10).unwrap(), &blob).unwrap();
    (blob_id, pairs)
}

/// A store's pair files whose syncs are counted and the first held until
/// the test lets it go with the result it gives; later syncs pass.
fn with_held_first_sync(
    dir: &Path,
) -> (
    PairFiles,
    Arc<std::sync::atomic::AtomicUsize>,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<io::Result<()>>,
) {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    let files = PairFiles::open(dir, false).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (entered, on_entered) = mpsc::channel();
    let (release, on_release) = mpsc::channel::<io::Result<()>>();
    let (entered, on_release) = (Mutex::new(entered), Mutex::new(on_release));
    let counted = Arc::clone(&calls);
    *lock(&files.on_sync) = Some(Arc::new(move || {
        if counted.fetch_add(1, Ordering::AcqRel) > 0 {
            return Ok(());
        }
        lock(&entered).send(()).unwrap();
        lock(&on_release)
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap()
    }));
    (files, calls, on_entered, release)
}

/// Waits until `n` writes through the blob's open file have completed.
fn until_written(files: &PairFiles, blob_id: &BlobId, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while lock(&files.open)[blob_id].written.load(Ordering::Acquire) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} writes never completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Group commit, step by step: a sync covers only the writes completed
/// before it began. A write completed while a sync runs gets a sync of its
/// own, which covers a third write completed by then, and that third write
/// skips its own: three pairs, two syncs.
#[test]
fn a_sync_covers_the_writes_completed_before_it_began() {
    let (blob_id, pairs) = sample_pairs(13);
    let dir = tempfile::tempdir().unwrap();
    let (files, calls, entered, release) = with_held_first_sync(dir.path());
    std::thread::scope(|scope| {
        let (files, blob_id, pairs) = (&files, &blob_id, &pairs);
        let first = scope.spawn(move || files.stage(blob_id, &pairs[0]).unwrap());
        entered.recv().unwrap();
        let later: Vec<_> = [&pairs[1], &pairs[2]]
            .map(|pair| scope.spawn(move || files.stage(blob_id, pair).unwrap()))
            .into();
        until_written(files, blob_id, 3);
        release.send(Ok(())).unwrap();
        for staged in later
            .into_iter()
            .map(|w| w.join().unwrap())
            .chain([first.join().unwrap()])
        {
            staged.check_live().unwrap();
            files.commit(staged);
        }
    });
    assert_eq!(calls.load(Ordering::Acquire), 2);
}

/// A failed sync may have been another writer's lost write: once one
/// fails, no pair written through that handle is kept, though a later sync
/// through it succeeds. The next writer, while a writer still holds the
/// failed handle, opens the file afresh and reserves past that writer's
/// pair: its own pair is kept.
#[test]
fn after_a_failed_sync_no_pair_written_through_the_handle_is_kept() {
    let (blob_id, pairs) = sample_pairs(11);
    let dir = tempfile::tempdir().unwrap();
    let (files, calls, entered, release) = with_held_first_sync(dir.path());
    std::thread::scope(|scope| {
        let (files, blob_id, pairs) = (&files, &blob_id, &pairs);
        let first = scope.spawn(move || files.stage(blob_id, &pairs[0]).map(drop));
        entered.recv().unwrap();
        let second = scope.spawn(move || files.stage(blob_id, &pairs[1]).unwrap());
        until_written(files, blob_id, 2);
        release.send(Err(io::Error::other("injected"))).unwrap();
        assert!(
            first.join().unwrap().is_err(),
            "the failed sync is reported"
        );
        let second = second.join().unwrap();
        assert_eq!(calls.load(Ordering::Acquire), 2, "the second write synced");
        assert!(
            second.check_live().is_err(),
            "a pair written through a failed handle was kept"
        );
        let third = files.stage(blob_id, &pairs[2]).unwrap();
        third.check_live().unwrap();
        let second_end = second.offset() + padded(pairs[1].byte_len() as u64);
        assert!(
            third.offset() >= second_end,
            "reserved over a pair in flight"
        );
        files.commit(third);
        drop(second);
    });
    assert!(lock(&files.open).is_empty());
}

/// Once a handle is retired no writer reserves from it, and the next
/// writer's fresh handle reserves past everything reserved from it (a
/// writer that took the handle before it was retired is refused, not
/// placed where the fresh handle places another pair).
#[test]
fn a_retired_handle_reserves_nothing_and_its_successor_reserves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = PairFiles::open(dir.path(), false).unwrap();
    let blob_id = BlobId([9; 32]);
    let old = files.acquire(&blob_id).unwrap();
    assert_eq!(old.reserve(3 * BLOCK as u64), Some(0));
    old.retire();
    assert_eq!(old.reserve(BLOCK as u64), None);
    let fresh = files.acquire(&blob_id).unwrap();
    assert!(!Arc::ptr_eq(&old, &fresh));
    assert_eq!(fresh.reserve(BLOCK as u64), Some(3 * BLOCK as u64));
    // The fresh handle fails too and its writer goes, while the old one's
    // writer still writes (the file is still short of its pair): the next
    // handle still reserves past that pair.
    fresh.retire();
    files.release(&blob_id, fresh);
    let next = files.acquire(&blob_id).unwrap();
    assert_eq!(next.reserve(BLOCK as u64), Some(4 * BLOCK as u64));
    files.release(&blob_id, next);
    assert_eq!(
        lock(&files.open).len(),
        1,
        "forgotten while a writer writes"
    );
    files.release(&blob_id, old);
    assert!(lock(&files.open).is_empty());
}
