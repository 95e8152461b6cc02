//! Who holds the sliver a bare recovery symbol was made from: only its
//! holder's word counts for it.

use std::sync::Arc;
use std::time::Instant;

use floe_codec::{Axis, BlobId, ShardIndex, SliverIndex, Symbol};
use floe_consensus::quorum::{Step, Tally};
use floe_consensus::PublicKey;

/// Who holds each sliver of a blob: its holder in this epoch's committee
/// and in the one before, which keeps serving a moved shard until the new
/// holder has it (see `Inner::peers`).
pub(crate) struct SourceHolders {
    n_shards: u16,
    blob_id: BlobId,
    /// Each committee's holder of each shard, by shard index.
    holders: Vec<Vec<Option<PublicKey>>>,
}

impl SourceHolders {
    pub(crate) fn new(committees: &[Arc<floe_consensus::Committee>], blob_id: BlobId) -> Self {
        let n_shards = committees.first().map_or(0, |c| c.n_shards());
        let holders = committees
            .iter()
            .filter(|c| c.n_shards() == n_shards)
            .map(|committee| {
                (0..n_shards)
                    .map(|shard| {
                        committee
                            .shard_holder(ShardIndex(shard))
                            .and_then(|member| committee.member(member))
                            .map(|member| member.network_key)
                    })
                    .collect()
            })
            .collect();
        SourceHolders {
            n_shards,
            blob_id,
            holders,
        }
    }

    /// Whether `peer` holds (or held in the epoch before) the sliver a
    /// symbol was made from.
    pub(crate) fn holds(&self, peer: &PublicKey, axis: Axis, index: SliverIndex) -> bool {
        if index.0 >= self.n_shards {
            return false;
        }
        let shard = index
            .to_pair_index(axis, self.n_shards)
            .to_shard_index(self.n_shards, &self.blob_id);
        self.holders
            .iter()
            .any(|holders| holders.get(usize::from(shard.0)) == Some(&Some(*peer)))
    }
}

/// A symbol tally that takes bare symbols only from their source sliver's
/// holder: the others are dropped unread (from their sender they vouch for
/// nothing) and their bytes counted. Counted as answers are folded, so only
/// answers the tally took are counted, each once.
pub(crate) struct HeldOnly<T> {
    pub(crate) tally: T,
    /// `None`: every symbol counts (proven symbols vouch for themselves).
    holders: Option<SourceHolders>,
    /// Bytes of symbols dropped so far.
    pub(crate) dropped: u64,
}

impl<T> HeldOnly<T> {
    pub(crate) fn new(tally: T, holders: Option<SourceHolders>) -> Self {
        HeldOnly {
            tally,
            holders,
            dropped: 0,
        }
    }
}

impl<S: Symbol, E, T: Tally<PublicKey, Result<Vec<S>, E>>> Tally<PublicKey, Result<Vec<S>, E>>
    for HeldOnly<T>
{
    fn answer(&mut self, from: PublicKey, answer: Result<Vec<S>, E>, now: Instant) -> Step {
        let answer = answer.map(|mut symbols| {
            if let Some(holders) = &self.holders {
                symbols.retain(|symbol| {
                    let held = holders.holds(&from, symbol.source_axis(), symbol.source_index());
                    if !held {
                        self.dropped += symbol.data().len() as u64;
                    }
                    held
                });
            }
            symbols
        });
        self.tally.answer(from, answer, now)
    }

    fn wanted(&self, in_flight: usize) -> usize {
        self.tally.wanted(in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_consensus::{Committee, Epoch, KeyPair, Member, NodeId};

    fn committee(epoch: u64, shards_of: &[Vec<u16>]) -> Arc<Committee> {
        let members = shards_of
            .iter()
            .enumerate()
            .map(|(i, shards)| Member {
                node_id: NodeId(format!("node-{i}")),
                protocol_key: KeyPair::from_seed(&[i as u8; 32]).public(),
                network_key: KeyPair::from_seed(&[100 + i as u8; 32]).public(),
                address: format!("127.0.0.1:{}", 7000 + i),
                shards: shards.iter().copied().map(ShardIndex).collect(),
            })
            .collect();
        Arc::new(Committee::new(Epoch(epoch), 4, members).unwrap())
    }

    #[test]
    fn a_moved_shard_is_held_by_its_new_and_its_previous_holder_only() {
        let key = |i: u8| KeyPair::from_seed(&[100 + i; 32]).public();
        // Shard 3 moves from member 2 to member 0 at epoch 5.
        let before = committee(4, &[vec![0], vec![1], vec![2, 3]]);
        let after = committee(5, &[vec![0, 3], vec![1], vec![2]]);
        let blob_id = BlobId([9; 32]);
        let holders = SourceHolders::new(&[after, before], blob_id);
        let n = 4;
        for axis in [Axis::Primary, Axis::Secondary] {
            let index = ShardIndex(3)
                .to_pair_index(n, &blob_id)
                .sliver_index(axis, n);
            assert!(holders.holds(&key(0), axis, index));
            assert!(holders.holds(&key(2), axis, index));
            assert!(!holders.holds(&key(1), axis, index));
            let other = ShardIndex(1)
                .to_pair_index(n, &blob_id)
                .sliver_index(axis, n);
            assert!(holders.holds(&key(1), axis, other));
            assert!(!holders.holds(&key(0), axis, other));
            assert!(!holders.holds(&key(2), axis, other));
            // A sliver index beyond the committee's shards is no one's.
            assert!(!holders.holds(&key(0), axis, SliverIndex(n)));
        }
    }

    #[test]
    fn a_peer_s_bare_symbols_of_slivers_it_does_not_hold_are_dropped_and_counted() {
        use floe_codec::{BareSymbol, EncodingConfig};
        use floe_consensus::quorum::Collect;
        let key = |i: u8| KeyPair::from_seed(&[100 + i; 32]).public();
        let committee = committee(4, &[vec![0], vec![1], vec![2, 3]]);
        let n = 4;
        let blob = vec![7u8; 10_000];
        let (metadata, blob_id, pairs) =
            floe_codec::encode(&EncodingConfig::new(n).unwrap(), &blob).unwrap();
        let holders = SourceHolders::new(&[committee], blob_id);
        let sliver = &pairs[0].primary;
        let symbols =
            BareSymbol::of_sliver(sliver, &metadata, &[SliverIndex(0), SliverIndex(1)]).unwrap();
        let bytes: u64 = symbols.iter().map(|s| s.data().len() as u64).sum();
        assert!(bytes > 0);
        let holds: Vec<u8> = (0..3)
            .filter(|&i| holders.holds(&key(i), sliver.axis, sliver.index))
            .collect();
        assert_eq!(holds.len(), 1, "one member holds the source sliver");
        let (holder, other) = (holds[0], (holds[0] + 1) % 3);
        let mut tally = HeldOnly::new(Collect::default(), Some(holders));
        let now = Instant::now();
        tally.answer(key(other), Ok(symbols.clone()), now);
        tally.answer(key(holder), Ok(symbols.clone()), now);
        tally.answer(key(other), Err("unreachable"), now);
        assert_eq!(tally.dropped, bytes);
        let answers = &tally.tally.0;
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0].1.as_ref().unwrap().len(), 0);
        assert_eq!(answers[1].1.as_ref().unwrap().len(), symbols.len());
        assert!(answers[2].1.is_err());
        // Without holders (proven symbols) nothing is dropped.
        let mut tally = HeldOnly::new(Collect::default(), None);
        tally.answer(key(other), Ok::<_, &str>(symbols.clone()), now);
        assert_eq!(tally.dropped, 0);
        assert_eq!(tally.tally.0[0].1.as_ref().unwrap().len(), symbols.len());
    }
}
