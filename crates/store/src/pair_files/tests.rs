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
