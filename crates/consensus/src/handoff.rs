//! Moving shards at a committee change, as pure rules.
//!
//! When the committee of epoch `e` differs from the one of `e − 1`, each
//! shard whose holder changed moves: its new holder fetches the shard's
//! pairs from the previous one (or rebuilds them by recovery) and then
//! signs [`ShardsSynced`]. A [`Handoff`] gathers those notices, each
//! verified against the committee of `e`; the change is done once members
//! holding a quorum of `e`'s shards have synced. Until then a read of a
//! moved shard goes to its previous holder unless the new one has synced
//! ([`Handoff::read_holder`]), and previous holders keep the moved pairs.

use std::collections::BTreeMap;

use floe_codec::{BlobId, ShardIndex};
use serde::{Deserialize, Serialize};

use crate::chain::CommitteeChain;
use crate::{
    Committee, Epoch, IntentKind, Member, MemberIndex, MessageBody, PublicKey, Signed, Threshold,
};

/// A member's word that it holds every pair of `shards` (its shards in the
/// message's epoch) for every blob certified before that epoch began.
///
/// BCS: `shards vec<u16>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsSynced {
    /// The signer's shards in the new committee, ascending.
    pub shards: Vec<ShardIndex>,
}

impl MessageBody for ShardsSynced {
    const KIND: IntentKind = IntentKind::ShardsSynced;
    const THRESHOLD: Threshold = Threshold::Quorum;
    /// A notice is about no blob: the digest of its shards stands in.
    fn blob_id(&self) -> BlobId {
        BlobId(*blake3::hash(&crate::canonical_bytes(self)).as_bytes())
    }
}

/// A shard whose holder changes at the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMove {
    /// The shard.
    pub shard: ShardIndex,
    /// Its holder in the epoch before.
    pub from: Member,
    /// Its holder from the epoch on.
    pub to: Member,
}

/// Why a synced notice is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// The notice is about another committee change.
    #[error("a notice signed in epoch {got} says nothing of the change into epoch {epoch}")]
    WrongEpoch {
        /// The change.
        epoch: Epoch,
        /// The notice's epoch.
        got: Epoch,
    },
    /// The signer is no member of the new committee.
    #[error("{signer} is not a member of the committee of epoch {epoch}")]
    NotMember {
        /// The signer.
        signer: PublicKey,
        /// The change.
        epoch: Epoch,
    },
    /// The notice names other shards than the signer holds.
    #[error("{node} holds shards {held:?} from epoch {epoch}, but its notice names {named:?}")]
    WrongShards {
        /// The member.
        node: String,
        /// The change.
        epoch: Epoch,
        /// Its shards in the new committee.
        held: Vec<ShardIndex>,
        /// The shards the notice names.
        named: Vec<ShardIndex>,
    },
    /// The signature does not verify.
    #[error("the notice's signature does not verify")]
    Signature,
}

/// The change into one epoch: the committees on both sides, the shards
/// that move, and the synced notices gathered so far.
#[derive(Debug, Clone)]
pub struct Handoff {
    previous: Committee,
    next: Committee,
    moves: Vec<ShardMove>,
    synced: BTreeMap<MemberIndex, Signed<ShardsSynced>>,
}

impl Handoff {
    /// The change into `epoch`, as `chain` says (an epoch without a
    /// certified change moves nothing).
    pub fn new(chain: &CommitteeChain, epoch: Epoch) -> Self {
        let previous = chain.committee_at(Epoch(epoch.0.saturating_sub(1)));
        let next = chain.committee_at(epoch);
        let moves = (0..next.n_shards())
            .map(ShardIndex)
            .filter_map(|shard| {
                let from = previous.member(previous.shard_holder(shard)?)?;
                let to = next.member(next.shard_holder(shard)?)?;
                (from.network_key != to.network_key).then(|| ShardMove {
                    shard,
                    from: from.clone(),
                    to: to.clone(),
                })
            })
            .collect();
        Self {
            previous,
            next,
            moves,
            synced: BTreeMap::new(),
        }
    }

    /// The epoch the change starts.
    pub fn epoch(&self) -> Epoch {
        self.next.epoch()
    }

    /// The committee of the epoch before.
    pub fn previous(&self) -> &Committee {
        &self.previous
    }

    /// The committee from the epoch on.
    pub fn next(&self) -> &Committee {
        &self.next
    }

    /// The shards whose holder (by network key) changes, in shard order.
    pub fn moves(&self) -> &[ShardMove] {
        &self.moves
    }

    /// The shards moving to the member with network key `key`.
    pub fn moves_to(&self, key: &PublicKey) -> Vec<ShardMove> {
        self.moves
            .iter()
            .filter(|m| m.to.network_key == *key)
            .cloned()
            .collect()
    }

    /// Whether any shard changes holder.
    pub fn moves_shards(&self) -> bool {
        !self.moves.is_empty()
    }

    /// The move of `shard` at this change, if it moves.
    pub fn move_of(&self, shard: ShardIndex) -> Option<&ShardMove> {
        self.moves
            .binary_search_by_key(&shard, |m| m.shard)
            .ok()
            .map(|i| &self.moves[i])
    }

    /// Verifies `notice` against the new committee and keeps it. Answers
    /// whether it was new.
    pub fn add(&mut self, notice: Signed<ShardsSynced>) -> Result<bool, HandoffError> {
        let epoch = self.epoch();
        if notice.message.epoch != epoch {
            return Err(HandoffError::WrongEpoch {
                epoch,
                got: notice.message.epoch,
            });
        }
        let index =
            self.next
                .member_by_protocol_key(&notice.signer)
                .ok_or(HandoffError::NotMember {
                    signer: notice.signer,
                    epoch,
                })?;
        let member = self.next.member(index).ok_or(HandoffError::NotMember {
            signer: notice.signer,
            epoch,
        })?;
        let mut held = member.shards.clone();
        held.sort_unstable();
        if notice.message.body.shards != held {
            return Err(HandoffError::WrongShards {
                node: member.node_id.0.clone(),
                epoch,
                held,
                named: notice.message.body.shards.clone(),
            });
        }
        notice.verify().map_err(|_| HandoffError::Signature)?;
        Ok(self.synced.insert(index, notice).is_none())
    }

    /// The notice a member signs once it holds its shards of the new
    /// committee, if it is a member.
    pub fn notice_of(&self, network_key: &PublicKey) -> Option<ShardsSynced> {
        let member = self
            .next
            .member(self.next.member_by_network_key(network_key)?)?;
        let mut shards = member.shards.clone();
        shards.sort_unstable();
        Some(ShardsSynced { shards })
    }

    /// Shards held by members that have synced.
    pub fn synced_weight(&self) -> u32 {
        self.synced.keys().map(|i| self.next.weight(*i)).sum()
    }

    /// Whether the change is done: no shard moves, or members holding a
    /// quorum of the new committee's shards have synced. Previous holders
    /// keep moved pairs until then.
    pub fn is_done(&self) -> bool {
        !self.moves_shards() || self.next.is_quorum(self.synced_weight())
    }

    /// Whether every moved shard's new holder has synced: no read goes to a
    /// previous holder any more.
    pub fn settled(&self) -> bool {
        self.moves
            .iter()
            .all(|m| self.has_synced(&m.to.network_key))
    }

    /// The members of the new committee that have synced.
    pub fn synced_members(&self) -> impl Iterator<Item = &Member> {
        self.synced.keys().filter_map(|i| self.next.member(*i))
    }

    /// Whether the member with network key `key` has synced.
    pub fn has_synced(&self, key: &PublicKey) -> bool {
        self.next
            .member_by_network_key(key)
            .is_some_and(|i| self.synced.contains_key(&i))
    }

    /// Who serves reads of `shard`: its new holder once that holder said it
    /// synced (or if the shard did not move); until then the previous
    /// holder, which keeps a moved shard's pairs until its new holder has
    /// synced.
    pub fn read_holder(&self, shard: ShardIndex) -> Option<&Member> {
        match self.move_of(shard) {
            Some(moved) if !self.has_synced(&moved.to.network_key) => Some(&moved.from),
            _ => self.next.member(self.next.shard_holder(shard)?),
        }
    }

    /// Whether the previous holder of `shard` may let go of its pairs: the
    /// shard moved and its new holder said it synced.
    pub fn released(&self, shard: ShardIndex) -> bool {
        self.move_of(shard)
            .is_some_and(|moved| self.has_synced(&moved.to.network_key))
    }

    /// The notices gathered so far.
    pub fn notices(&self) -> impl Iterator<Item = &Signed<ShardsSynced>> {
        self.synced.values()
    }
}
