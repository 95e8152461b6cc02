//! Crash safety with a real process: a child writes slivers and
//! certificates in a loop and is killed with SIGKILL at random moments.
//! After each kill the database must hold every certificate the child
//! reported durable, every pair of each upload it confirmed, no
//! half-written pair, and a drift set that matches what is stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use floe_codec::{BlobId, ShardIndex};
use floe_consensus::{BlobStatus, Epoch};
use floe_store::Store;
use rand::Rng;

const CHILD_ENV: &str = "FLOE_STORE_CRASH_CHILD_DIR";

fn shards() -> Vec<ShardIndex> {
    vec![ShardIndex(1), ShardIndex(5), ShardIndex(9)]
}

/// The child's body: a no-op unless the parent set the environment variable.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let world = common::world();
    let store = Store::open(Path::new(&dir), shards()).unwrap();
    let mut next = store
        .node_value("crash-child-next")
        .unwrap()
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .unwrap_or(0);
    loop {
        // Sizes on both sides of the 4 KiB blob-file threshold, and every
        // fifth blob large enough for its pairs to go to files of their own.
        let len = if next % 5 == 4 {
            3_000_000
        } else {
            500 + (next as usize % 7) * 9_000
        };
        let blob = common::blob(next, len);
        // As on a node: a blob's pairs arrive at once, while syncs for
        // other blobs' confirmations and certificates run.
        let store_pairs = |store: &Store| {
            store
                .put_metadata(&blob.blob_id, &blob.metadata, next)
                .unwrap();
            std::thread::scope(|scope| {
                for &shard in &store.shards() {
                    let blob = &blob;
                    scope.spawn(move || {
                        store
                            .put_sliver_pair(shard, &blob.blob_id, blob.pair_for(shard))
                            .unwrap();
                    });
                }
                scope.spawn(|| store.sync().unwrap());
            });
        };
        if next % 3 == 0 {
            // A certificate before the data (a missed upload): drift until the pairs land.
            store
                .record_fact(world.certified(blob.blob_id, 100, false), Epoch(0))
                .unwrap();
            println!("DURABLE {}", blob.blob_id);
            store_pairs(&store);
        } else {
            store_pairs(&store);
            // What a storage confirmation is signed on.
            store
                .promise(common::confirmation(blob.blob_id, 100))
                .unwrap();
            println!("CONFIRMED {}", blob.blob_id);
            // Some confirmed uploads never get their certificate.
            if next % 3 == 1 {
                store
                    .record_fact(world.certified(blob.blob_id, 100, false), Epoch(0))
                    .unwrap();
                println!("DURABLE {}", blob.blob_id);
            }
        }
        next += 1;
        store
            .put_node_value("crash-child-next", &next.to_le_bytes())
            .unwrap();
    }
}

fn check(dir: &Path, durable: &BTreeSet<BlobId>, confirmed: &BTreeSet<BlobId>) -> usize {
    let store = Store::open(dir, shards()).unwrap();
    // A confirmation promises every pair of this node's shards survives.
    for id in confirmed {
        assert!(
            store.holds_all_pairs(id).unwrap(),
            "{id} was confirmed durable but lost pairs"
        );
    }
    let states = store.states(None, usize::MAX).unwrap();
    let certified: BTreeSet<BlobId> = states
        .iter()
        .filter(|(_, s)| matches!(s.status(Epoch(0)), BlobStatus::Certified { .. }))
        .map(|(id, _)| *id)
        .collect();
    for id in durable {
        assert!(
            certified.contains(id),
            "certificate of {id} was reported durable but is gone"
        );
    }
    // No half-written pair: every stored pair is whole and verifies.
    for &shard in &store.shards() {
        for (blob_id, pair) in store.scan_shard(shard, None, usize::MAX).unwrap() {
            let metadata = store
                .metadata(&blob_id)
                .unwrap()
                .expect("pairs imply metadata");
            pair.verify(&metadata).unwrap();
            assert!(store.stored_shards(&blob_id).unwrap().contains(&shard));
        }
    }
    for (blob_id, _) in &states {
        for shard in store.stored_shards(blob_id).unwrap() {
            assert!(
                store.sliver_pair(shard, blob_id).unwrap().is_some(),
                "pair index without slivers"
            );
        }
    }
    // What a crash left of pair files is gone: every blob file belongs to
    // a blob with a pair recorded in it, and holds no more than its
    // recorded pairs (bytes written and never recorded are punched out).
    let pairs = dir.join("pairs");
    for blob_dir in std::fs::read_dir(&pairs).unwrap() {
        let blob_dir = blob_dir.unwrap();
        let name = blob_dir.file_name().into_string().unwrap();
        let id: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&name[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let blob_id = BlobId(id.try_into().unwrap());
        let stored = store.stored_shards(&blob_id).unwrap();
        let files: Vec<String> = std::fs::read_dir(blob_dir.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, ["pairs"], "{name}");
        let recorded: u64 = stored
            .iter()
            .map(|&shard| {
                let pair = store.sliver_pair(shard, &blob_id).unwrap().unwrap();
                (pair.byte_len() as u64).div_ceil(4096) * 4096
            })
            .sum();
        assert!(recorded > 0, "a pair file in {name} without a record");
        let on_disk = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(blob_dir.path().join("pairs"))
                .unwrap()
                .blocks()
                * 512
        };
        assert!(
            on_disk <= recorded,
            "{name}: {on_disk} bytes on disk for {recorded} recorded"
        );
    }
    // Drift is exactly the certified blobs with missing pairs.
    let drifting: BTreeSet<BlobId> = certified
        .iter()
        .filter(|id| !store.holds_all_pairs(id).unwrap())
        .copied()
        .collect();
    let recorded: BTreeSet<BlobId> = store.drift(None, usize::MAX).into_iter().collect();
    assert_eq!(recorded, drifting);
    assert_eq!(store.drift_count(), drifting.len());
    certified.len()
}

#[test]
fn sigkill_at_random_moments_loses_nothing_reported_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut durable = BTreeSet::new();
    let mut confirmed = BTreeSet::new();
    let mut rng = rand::thread_rng();
    let exe = std::env::current_exe().unwrap();
    for round in 0..6 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let (confirmed_tx, confirmed_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("DURABLE ") {
                    let _ = tx.send(id.parse::<BlobId>().unwrap());
                } else if let Some(id) = line.strip_prefix("CONFIRMED ") {
                    let _ = confirmed_tx.send(id.parse::<BlobId>().unwrap());
                }
            }
        });
        // Let it make progress, then kill it mid-write.
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child made no progress");
        durable.insert(first);
        let deadline = Instant::now() + Duration::from_millis(rng.gen_range(50..400));
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if let Ok(id) = rx.recv_timeout(left) {
                durable.insert(id);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        durable.extend(rx.try_iter());
        confirmed.extend(confirmed_rx.try_iter());
        let certified = check(dir.path(), &durable, &confirmed);
        assert!(certified >= durable.len(), "round {round}");
    }
    assert!(durable.len() >= 6, "the child must have made progress");
    assert!(
        !confirmed.is_empty(),
        "the child must have confirmed uploads"
    );
}
