//! Anti-entropy at scale: a wiped node learns every fact of a committee
//! whose nodes hold many, in messages of bounded size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use floe_node::{Limits, Tasks};
use floe_testkit::local;

/// More facts than one anti-entropy message may carry, in bytes and in
/// items, and more than the largest message of the method: the exchange
/// must page (in one message, the facts would be refused as too large).
const FACTS: usize = 48_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_learns_every_fact_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = Tasks {
        // No data exists for these facts: repair has nothing to fetch.
        repair_interval_ms: 3_600_000,
        ..Tasks::brisk()
    };
    let committee =
        local::generate(dir.path(), 7, 100, 3_600_000, Limits::default(), tasks).unwrap();
    let facts = local::certified_facts(&committee, FACTS, 10).unwrap();
    let fact_bytes: usize = facts
        .iter()
        .map(|f| floe_consensus::canonical_bytes(f.fact()).len())
        .sum();
    assert!(
        fact_bytes > floe_api::MAX_FACTS_FRAME as usize && FACTS > floe_api::RECONCILE_MAX_ITEMS,
        "{fact_bytes} bytes of facts fit in one message: the test would not page"
    );
    // Node 6 is the wiped one: its database starts empty.
    for i in 0..6 {
        local::seed_facts(&committee, i, &facts).unwrap();
    }
    let cluster = local::Cluster::start_local(committee).await.unwrap();
    let reference = cluster.node(0).unwrap().digest_root();
    assert_eq!(reference.0, FACTS as u64);
    let started = Instant::now();
    let wiped = cluster.node(6).unwrap();
    while wiped.digest_root() != reference {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the wiped node knows {} of {FACTS} facts after {:?}",
            wiped.digest_root().0,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every fact is a certified blob it lacks the data of: each drifts.
    assert_eq!(wiped.drift(), FACTS);
    println!(
        "learned {FACTS} facts ({fact_bytes} bytes) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    cluster.shutdown().await;
}
