//! Who holds the sliver a bare recovery symbol was made from: only its
//! holder's word counts for it.

use std::sync::Arc;

use floe_codec::{Axis, BlobId, ShardIndex, SliverIndex};
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
}
