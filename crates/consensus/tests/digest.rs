//! Anti-entropy: the digest exchange finds exactly the missing items, with
//! traffic that grows with the differences, not the set sizes.
#![allow(clippy::unwrap_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;

use floe_codec::BlobId;
use floe_consensus::*;
use proptest::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random_items(rng: &mut StdRng, count: usize) -> Vec<ItemId> {
    (0..count)
        .map(|_| {
            // Some blobs carry several facts.
            let blob_id = BlobId(rng.gen());
            ItemId {
                blob_id,
                fact: rng.gen(),
            }
        })
        .collect()
}

fn check(common: &[ItemId], only_a: &[ItemId], only_b: &[ItemId]) -> Reconciliation {
    let a = DigestIndex::from_items(common.iter().chain(only_a).copied());
    let b = DigestIndex::from_items(common.iter().chain(only_b).copied());
    let outcome = reconcile(&a, &b);
    let expect_missing_in_a: BTreeSet<ItemId> = only_b.iter().copied().collect();
    let expect_missing_in_b: BTreeSet<ItemId> = only_a.iter().copied().collect();
    assert_eq!(outcome.missing_in_a, expect_missing_in_a);
    assert_eq!(outcome.missing_in_b, expect_missing_in_b);
    outcome
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn exchange_finds_exactly_the_missing_items(
        seed in any::<u64>(),
        common in prop_oneof![Just(0usize), 1usize..50, 500usize..3000],
        only_a in prop_oneof![Just(0usize), 1usize..5, 5usize..300],
        only_b in prop_oneof![Just(0usize), 1usize..5, 5usize..300],
        shared_blob in any::<bool>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let common = random_items(&mut rng, common);
        let mut a = random_items(&mut rng, only_a);
        let b = random_items(&mut rng, only_b);
        if shared_blob && !common.is_empty() && !a.is_empty() {
            // A different fact about a blob both already know of.
            a[0].blob_id = common[0].blob_id;
        }
        check(&common, &a, &b);
    }
}

#[test]
fn empty_and_identical_sets() {
    let mut rng = StdRng::seed_from_u64(1);
    let items = random_items(&mut rng, 1000);
    let none = check(&[], &[], &[]);
    assert_eq!(none.messages, 1);
    let same = check(&items, &[], &[]);
    assert_eq!(
        (same.messages, same.rounds),
        (1, 1),
        "identical sets end after the root"
    );
    check(&[], &items, &[]);
    check(&[], &[], &items);
}

#[test]
fn traffic_grows_with_differences_not_with_the_set() {
    let mut rng = StdRng::seed_from_u64(2);
    let common = random_items(&mut rng, 100_000);
    let whole_set_bytes = common.len() * 64;
    let few = random_items(&mut rng, 3);
    let outcome = check(&common, &few, &[]);
    // 3 differences in 100 000 items: a few summaries per trie level.
    assert!(outcome.bytes < 40_000, "{} bytes exchanged", outcome.bytes);
    assert!(outcome.bytes * 100 < whole_set_bytes);
    let more = random_items(&mut rng, 30);
    let outcome_30 = check(&common, &more, &[]);
    assert!(
        outcome_30.bytes < 12 * outcome.bytes,
        "{} vs {}",
        outcome_30.bytes,
        outcome.bytes
    );
}

#[test]
fn index_updates_keep_summaries_consistent() {
    let mut rng = StdRng::seed_from_u64(3);
    let items = random_items(&mut rng, 500);
    let mut index = DigestIndex::from_items(items.iter().copied());
    let fresh = DigestIndex::from_items(items[..250].iter().copied());
    for item in &items[250..] {
        assert!(index.remove(item));
        assert!(!index.remove(item));
    }
    assert_eq!(index.summary(&Prefix::ROOT), fresh.summary(&Prefix::ROOT));
    assert_eq!(index.len(), 250);
    assert!(!index.insert(items[0]));
    let prefix = Prefix::of(&items[0].blob_id, 10);
    assert!(prefix.contains(&items[0].blob_id));
    assert!(index.items_in(&prefix).contains(&items[0]));
}

/// A hostile peer's messages cannot make a node list or diff much of what
/// it holds: listings beyond a few items, and prefixes with bits set past
/// their depth, are not answered.
#[test]
fn hostile_ranges_and_listings_are_not_answered() {
    let mut rng = StdRng::seed_from_u64(17);
    let held = DigestIndex::from_items(random_items(&mut rng, 5_000));
    // Depth 0 with a stray bit: looks empty here, but covers everything.
    let mut stray = Prefix::ROOT;
    stray.prefix[31] = 1;
    assert!(!stray.is_canonical() && Prefix::ROOT.is_canonical());
    let reply = held.respond(&[
        ReconcileMessage::Summaries(vec![RangeSummary {
            prefix: stray,
            count: 0,
            digest: [0; 32],
        }]),
        ReconcileMessage::Listing {
            prefix: stray,
            items: Vec::new(),
        },
    ]);
    assert_eq!(reply, Reply::default());
    // A listing of the whole set at the root, made up or not.
    let made_up = random_items(&mut rng, 1_000);
    let reply = held.respond(&[ReconcileMessage::Listing {
        prefix: Prefix::ROOT,
        items: made_up,
    }]);
    assert!(reply.missing_here.is_empty() && reply.missing_there.is_empty());
}
