//! Committee change without a chain: the committee of epoch `e` certifies
//! the committee of `e + 1`. Members holding a quorum of `e`'s shards sign a
//! [`CommitteeProposal`]; the resulting [`CommitteeCertificate`] is a link,
//! and the links from genesis ([`CommitteeChain`]) tell anyone who knows
//! only genesis (or a later committee it trusts) the committee of any epoch,
//! so a certificate formed in any epoch can be verified. An epoch without a
//! link is served by the committee before it, unchanged.
//!
//! [`assign_shards`] gives the next committee its shards moving as few as
//! possible: a member whose share is unchanged keeps its shards, one that
//! shrinks gives up its extras, one that grows takes from that pool.

use std::collections::{BTreeMap, BTreeSet};

use floe_codec::{BlobId, ShardIndex};
use serde::{Deserialize, Serialize};

use crate::{
    Certificate, CertificateError, Committee, CommitteeError, Epoch, IntentKind, Member,
    MessageBody, NodeId, Threshold,
};

/// The committee proposed to serve `epoch`, signed by the members of the
/// epoch before it.
///
/// BCS: `epoch u64 ‖ n_shards u16 ‖ members vec<Member>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeProposal {
    /// The epoch the proposed committee serves from.
    pub epoch: Epoch,
    /// Shards (unchanged across epochs: a blob's encoding depends on it).
    pub n_shards: u16,
    /// The members and their shards.
    pub members: Vec<Member>,
}

impl CommitteeProposal {
    /// The proposal of `committee` to serve `epoch`.
    pub fn of(committee: &Committee, epoch: Epoch) -> Self {
        Self {
            epoch,
            n_shards: committee.n_shards(),
            members: committee.members().to_vec(),
        }
    }

    /// The committee it proposes, if it is a valid one.
    pub fn committee(&self) -> Result<Committee, CommitteeError> {
        Committee::new(self.epoch, self.n_shards, self.members.clone())
    }

    /// Its digest: what names a proposal (in approvals, errors and logs).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&crate::canonical_bytes(self)).as_bytes()
    }
}

impl MessageBody for CommitteeProposal {
    const KIND: IntentKind = IntentKind::CommitteeHandover;
    const THRESHOLD: Threshold = Threshold::Quorum;
    /// A proposal is about no blob: its digest stands in, so errors name it.
    fn blob_id(&self) -> BlobId {
        BlobId(self.digest())
    }
}

/// The committee of an epoch, certified by the committee of the epoch before.
pub type CommitteeCertificate = Certificate<CommitteeProposal>;

/// Why a link does not extend a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// Links must name strictly later epochs than the chain's last.
    #[error("a link for epoch {got} cannot follow the chain's epoch {last}")]
    OutOfOrder {
        /// The chain's latest committee epoch.
        last: Epoch,
        /// The link's epoch.
        got: Epoch,
    },
    /// A link must be signed in the epoch just before the one it starts.
    #[error("the committee of epoch {proposed} must be signed in epoch {}, not {signed}", proposed.0 - 1)]
    WrongSigningEpoch {
        /// The proposed committee's epoch.
        proposed: Epoch,
        /// The epoch the certificate was signed in.
        signed: Epoch,
    },
    /// The certificate does not verify against the committee that must sign it.
    #[error(
        "the committee of epoch {epoch} is not certified by the committee before it: {source}"
    )]
    Certificate {
        /// The proposed committee's epoch.
        epoch: Epoch,
        /// Why.
        source: CertificateError,
    },
    /// The proposed committee is not a valid committee.
    #[error("the committee proposed for epoch {epoch} is invalid: {source}")]
    Committee {
        /// The proposed committee's epoch.
        epoch: Epoch,
        /// Why.
        source: CommitteeError,
    },
    /// A committee cannot change its shard count (blobs are encoded for it).
    #[error("the committee proposed for epoch {epoch} has {got} shards, not {expected}")]
    ShardCount {
        /// The proposed committee's epoch.
        epoch: Epoch,
        /// The chain's shard count.
        expected: u16,
        /// The proposal's.
        got: u16,
    },
}

/// The verified committees from a trusted start (genesis, or a checkpoint).
#[derive(Debug, Clone)]
pub struct CommitteeChain {
    genesis: Committee,
    links: Vec<(CommitteeCertificate, Committee)>,
}

impl CommitteeChain {
    /// A chain that starts at a committee trusted as is.
    pub fn new(genesis: Committee) -> Self {
        Self {
            genesis,
            links: Vec::new(),
        }
    }

    /// The chain from `genesis` through `links`, each verified.
    pub fn verify(
        genesis: Committee,
        links: impl IntoIterator<Item = CommitteeCertificate>,
    ) -> Result<Self, ChainError> {
        let mut chain = Self::new(genesis);
        for link in links {
            chain.extend(link)?;
        }
        Ok(chain)
    }

    /// Verifies `link` against the committee it must be signed by (that of
    /// the epoch before the one it starts) and appends it.
    pub fn extend(&mut self, link: CommitteeCertificate) -> Result<(), ChainError> {
        let proposal = &link.message.body;
        let last = self.latest_epoch();
        if proposal.epoch <= last {
            return Err(ChainError::OutOfOrder {
                last,
                got: proposal.epoch,
            });
        }
        if link.message.epoch.0.checked_add(1) != Some(proposal.epoch.0) {
            return Err(ChainError::WrongSigningEpoch {
                proposed: proposal.epoch,
                signed: link.message.epoch,
            });
        }
        if proposal.n_shards != self.genesis.n_shards() {
            return Err(ChainError::ShardCount {
                epoch: proposal.epoch,
                expected: self.genesis.n_shards(),
                got: proposal.n_shards,
            });
        }
        let signers = self.committee_at(link.message.epoch);
        link.verify(&signers)
            .map_err(|source| ChainError::Certificate {
                epoch: proposal.epoch,
                source,
            })?;
        let committee = proposal
            .committee()
            .map_err(|source| ChainError::Committee {
                epoch: proposal.epoch,
                source,
            })?;
        self.links.push((link, committee));
        Ok(())
    }

    /// The committee that serves `epoch`: that of the latest link starting
    /// at or before it (genesis before any).
    pub fn committee_at(&self, epoch: Epoch) -> Committee {
        self.links
            .iter()
            .rev()
            .find(|(link, _)| link.message.body.epoch <= epoch)
            .map_or(&self.genesis, |(_, committee)| committee)
            .at_epoch(epoch)
    }

    /// The epoch of the latest committee change (genesis's epoch if none).
    pub fn latest_epoch(&self) -> Epoch {
        self.links
            .last()
            .map_or(self.genesis.epoch(), |(link, _)| link.message.body.epoch)
    }

    /// Every member of every committee of the chain, genesis first (a
    /// member of several committees appears once per committee).
    pub fn members_ever(&self) -> impl Iterator<Item = &Member> {
        self.genesis
            .members()
            .iter()
            .chain(self.links.iter().flat_map(|(_, c)| c.members().iter()))
    }

    /// The links, oldest first.
    pub fn links(&self) -> impl Iterator<Item = &CommitteeCertificate> {
        self.links.iter().map(|(link, _)| link)
    }

    /// The links starting after `epoch` (what a follower at `epoch` lacks).
    pub fn links_after(&self, epoch: Epoch) -> impl Iterator<Item = &CommitteeCertificate> {
        self.links()
            .filter(move |link| link.message.body.epoch > epoch)
    }
}

/// Why shares cannot be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// The shares do not add up to the committee's shards.
    #[error("the shares add up to {got} shards, not the committee's {expected}")]
    Total {
        /// The committee's shards.
        expected: u16,
        /// The shares' sum.
        got: u32,
    },
    /// A member would hold no shard.
    #[error("member {0} has a share of 0 shards")]
    Empty(NodeId),
    /// A node is listed twice.
    #[error("member {0} is listed twice")]
    Duplicate(NodeId),
}

/// The next committee's members with their shards, from `current` and each
/// next member's share (its `shards` field is ignored), moving as few shards
/// as possible: a member keeps up to its share of the shards it holds (the
/// lowest first), and the shards given up by leaving and shrinking members
/// go, lowest first, to the growing ones in the order they are listed.
pub fn assign_shards(
    current: &Committee,
    next: &[(Member, u16)],
) -> Result<Vec<Member>, AssignError> {
    let total: u32 = next.iter().map(|(_, share)| u32::from(*share)).sum();
    if total != u32::from(current.n_shards()) {
        return Err(AssignError::Total {
            expected: current.n_shards(),
            got: total,
        });
    }
    let mut seen = BTreeSet::new();
    for (member, share) in next {
        if !seen.insert(&member.node_id) {
            return Err(AssignError::Duplicate(member.node_id.clone()));
        }
        if *share == 0 {
            return Err(AssignError::Empty(member.node_id.clone()));
        }
    }
    let held: BTreeMap<&NodeId, Vec<ShardIndex>> = current
        .members()
        .iter()
        .map(|m| {
            let mut shards = m.shards.clone();
            shards.sort();
            (&m.node_id, shards)
        })
        .collect();
    let mut assigned: Vec<Vec<ShardIndex>> = next
        .iter()
        .map(|(member, share)| {
            let mut kept = held.get(&member.node_id).cloned().unwrap_or_default();
            kept.truncate(usize::from(*share));
            kept
        })
        .collect();
    let kept: BTreeSet<ShardIndex> = assigned.iter().flatten().copied().collect();
    let mut pool = (0..current.n_shards())
        .map(ShardIndex)
        .filter(|s| !kept.contains(s));
    for (shards, (_, share)) in assigned.iter_mut().zip(next) {
        while shards.len() < usize::from(*share) {
            // The shares add up to n, so the pool holds exactly what is missing.
            let Some(shard) = pool.next() else { break };
            shards.push(shard);
        }
        shards.sort();
    }
    Ok(next
        .iter()
        .zip(assigned)
        .map(|((member, _), shards)| Member {
            shards,
            ..member.clone()
        })
        .collect())
}
