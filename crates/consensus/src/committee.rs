//! Committees: who holds which shards in an epoch, with which keys, and the
//! one place that knows quorum arithmetic.
//!
//! Invariants kept by [`Committee::new`] (and so by deserialization): every
//! shard `0..n` is held by exactly one member; node IDs, protocol keys and
//! network keys are unique across members (and a member's protocol and
//! network keys differ); `n` is within the codec's range; at most 65 535
//! members.

use std::{collections::HashMap, fmt};

use floe_codec::{EncodingConfig, ShardIndex};
use serde::{Deserialize, Serialize};

use crate::{error::CommitteeError, PublicKey};

/// An epoch number. BCS: u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A member's position in its committee's member list (the bit it owns in
/// a certificate's signer bitmap). BCS: u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberIndex(pub u16);

impl MemberIndex {
    /// As `usize`.
    pub fn as_usize(self) -> usize {
        usize::from(self.0)
    }
}

/// A node's stable, human-chosen name (unique in a committee).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A storage node of one epoch's committee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name.
    pub node_id: NodeId,
    /// The key that signs storage confirmations and attestations.
    pub protocol_key: PublicKey,
    /// The key its TLS certificate is made from (pinned by peers and clients).
    pub network_key: PublicKey,
    /// Where it listens, `host:port`.
    pub address: String,
    /// The shards it holds.
    pub shards: Vec<ShardIndex>,
}

#[derive(Deserialize)]
struct UncheckedCommittee {
    epoch: Epoch,
    n_shards: u16,
    members: Vec<Member>,
}

/// The storage nodes of one epoch and the shards each holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "UncheckedCommittee")]
pub struct Committee {
    epoch: Epoch,
    n_shards: u16,
    members: Vec<Member>,
    #[serde(skip)]
    encoding: EncodingConfig,
    #[serde(skip)]
    shard_holder: Vec<MemberIndex>,
    #[serde(skip)]
    by_protocol_key: HashMap<PublicKey, MemberIndex>,
    #[serde(skip)]
    by_network_key: HashMap<PublicKey, MemberIndex>,
}

impl PartialEq for Committee {
    fn eq(&self, other: &Self) -> bool {
        (self.epoch, self.n_shards, &self.members) == (other.epoch, other.n_shards, &other.members)
    }
}

impl Eq for Committee {}

impl TryFrom<UncheckedCommittee> for Committee {
    type Error = CommitteeError;
    fn try_from(raw: UncheckedCommittee) -> Result<Self, CommitteeError> {
        Committee::new(raw.epoch, raw.n_shards, raw.members)
    }
}

impl Committee {
    /// Validates and builds a committee.
    pub fn new(epoch: Epoch, n_shards: u16, members: Vec<Member>) -> Result<Self, CommitteeError> {
        let encoding = EncodingConfig::new(n_shards)?;
        if members.is_empty() {
            return Err(CommitteeError::NoMembers);
        }
        if members.len() > usize::from(u16::MAX) {
            return Err(CommitteeError::TooManyMembers {
                count: members.len(),
            });
        }
        let mut holder: Vec<Option<MemberIndex>> = vec![None; usize::from(n_shards)];
        let mut by_id: HashMap<&NodeId, usize> = HashMap::new();
        let mut by_protocol_key = HashMap::new();
        let mut by_network_key = HashMap::new();
        for (i, member) in members.iter().enumerate() {
            let index = MemberIndex(i as u16);
            if let Some(first) = by_id.insert(&member.node_id, i) {
                return Err(CommitteeError::DuplicateNodeId {
                    node_id: member.node_id.clone(),
                    first,
                    second: i,
                });
            }
            if member.protocol_key == member.network_key {
                return Err(CommitteeError::SharedProtocolAndNetworkKey {
                    node_id: member.node_id.clone(),
                });
            }
            for (key, map) in [
                (member.protocol_key, &mut by_protocol_key),
                (member.network_key, &mut by_network_key),
            ] {
                if let Some(first) = map.insert(key, index) {
                    return Err(CommitteeError::DuplicateKey {
                        key,
                        first: members[first.as_usize()].node_id.clone(),
                        second: member.node_id.clone(),
                    });
                }
            }
            for &shard in &member.shards {
                let slot = holder.get_mut(shard.as_usize()).ok_or_else(|| {
                    CommitteeError::ShardOutOfRange {
                        node_id: member.node_id.clone(),
                        shard,
                        n_shards,
                    }
                })?;
                if let Some(first) = slot.replace(index) {
                    return Err(CommitteeError::ShardHeldTwice {
                        shard,
                        first: members[first.as_usize()].node_id.clone(),
                        second: member.node_id.clone(),
                    });
                }
            }
        }
        // Keys are unique per kind; a protocol key reused as another
        // member's network key is refused too.
        for member in &members {
            if let Some(other) = by_network_key.get(&member.protocol_key) {
                let other = &members[other.as_usize()].node_id;
                if *other != member.node_id {
                    return Err(CommitteeError::DuplicateKey {
                        key: member.protocol_key,
                        first: other.clone(),
                        second: member.node_id.clone(),
                    });
                }
            }
        }
        let shard_holder = holder
            .into_iter()
            .enumerate()
            .map(|(s, h)| {
                h.ok_or(CommitteeError::ShardUnassigned {
                    shard: ShardIndex(s as u16),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Committee {
            epoch,
            n_shards,
            members,
            encoding,
            shard_holder,
            by_protocol_key,
            by_network_key,
        })
    }

    /// The same members serving `epoch` (membership already validated).
    /// Certificates are bound to the epoch they were formed in; while the
    /// membership does not change, this is the committee to check them by.
    pub fn at_epoch(&self, epoch: Epoch) -> Committee {
        Committee {
            epoch,
            ..self.clone()
        }
    }

    /// The epoch this committee serves.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// `n`, the number of shards.
    pub fn n_shards(&self) -> u16 {
        self.n_shards
    }

    /// The members, in [`MemberIndex`] order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member at `index`.
    pub fn member(&self, index: MemberIndex) -> Option<&Member> {
        self.members.get(index.as_usize())
    }

    /// The member whose protocol (signing) key is `key`.
    pub fn member_by_protocol_key(&self, key: &PublicKey) -> Option<MemberIndex> {
        self.by_protocol_key.get(key).copied()
    }

    /// The member whose network (TLS) key is `key`.
    pub fn member_by_network_key(&self, key: &PublicKey) -> Option<MemberIndex> {
        self.by_network_key.get(key).copied()
    }

    /// The member holding `shard`.
    pub fn shard_holder(&self, shard: ShardIndex) -> Option<MemberIndex> {
        self.shard_holder.get(shard.as_usize()).copied()
    }

    /// The codec configuration for this committee's `n`.
    pub fn encoding(&self) -> EncodingConfig {
        self.encoding
    }

    /// A member's weight: the number of shards it holds.
    pub fn weight(&self, index: MemberIndex) -> u32 {
        self.member(index).map_or(0, |m| m.shards.len() as u32)
    }

    /// `f`: the shard weight that may be faulty.
    pub fn f(&self) -> u32 {
        u32::from(self.encoding().f())
    }

    /// The shard weight of a quorum, `n − f`.
    pub fn quorum_threshold(&self) -> u32 {
        u32::from(self.encoding().quorum())
    }

    /// The shard weight that contains an honest shard, `f + 1`.
    pub fn validity_threshold(&self) -> u32 {
        u32::from(self.encoding().validity())
    }

    /// Whether `weight` shards are a quorum (`≥ n − f`).
    pub fn is_quorum(&self, weight: u32) -> bool {
        weight >= self.quorum_threshold()
    }

    /// Whether `weight` shards include at least one honest one (`≥ f + 1`).
    pub fn is_validity(&self, weight: u32) -> bool {
        weight >= self.validity_threshold()
    }
}
