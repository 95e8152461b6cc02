//! Committee change: this node's chain of committee certificates (kept in
//! the store, verified from genesis at start), its operator's approvals of
//! the next committee, signing an approved proposal for a peer, and
//! gathering the signatures of a quorum of the current epoch's shards into
//! the next link, which every member is then given.
//!
//! Moving shards at the change is `migration`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_api::*;
use floe_consensus::chain::{CommitteeCertificate, CommitteeChain, CommitteeProposal};
use floe_consensus::quorum::{Discard, Pacing, SignatureTally};
use floe_consensus::{Committee, Epoch, ProtocolMessage, PublicKey, Signed};
use floe_net::FanOut;
use floe_store::Store;
use tracing::{info, warn};

use crate::state::Inner;

/// The store's key of the chain's links.
const CHAIN_KEY: &str = "committee_chain";
/// The store's key of the operator's approvals.
const APPROVALS_KEY: &str = "committee_approvals";

/// The proposals this node's operator approved, as the store kept them.
pub(crate) fn load_approvals(store: &Store) -> BTreeMap<[u8; 32], CommitteeProposal> {
    let approved: Vec<CommitteeProposal> = store
        .node_value(APPROVALS_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| floe_codec::from_canonical_bytes(&bytes).ok())
        .unwrap_or_default();
    approved.into_iter().map(|p| (p.digest(), p)).collect()
}

/// The chain from `genesis` through the links the store holds, each
/// verified; a link that does not verify ends it (and is logged).
pub(crate) fn load_chain(store: &Store, genesis: &Committee) -> CommitteeChain {
    let mut chain = CommitteeChain::new(genesis.clone());
    let links: Vec<CommitteeCertificate> = match store.node_value(CHAIN_KEY) {
        Ok(Some(bytes)) => floe_codec::from_canonical_bytes(&bytes).unwrap_or_else(|e| {
            warn!(error = %e, "the stored committee chain does not decode; starting from genesis");
            Vec::new()
        }),
        Ok(None) => Vec::new(),
        Err(e) => {
            warn!(error = %e, "reading the committee chain; starting from genesis");
            Vec::new()
        }
    };
    for link in links {
        let epoch = link.message.body.epoch;
        if let Err(e) = chain.extend(link) {
            warn!(%epoch, error = %e, "a stored committee certificate does not extend the chain");
            break;
        }
    }
    chain
}

/// Verifies `link` against this node's chain and keeps it; a link already
/// held is accepted again. Answers the epoch of the latest committee.
pub(crate) fn accept_link(inner: &Inner, link: CommitteeCertificate) -> Result<Epoch, ApiError> {
    let mut chain = inner
        .chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if chain.links().any(|held| *held == link) {
        return Ok(chain.latest_epoch());
    }
    let epoch = link.message.body.epoch;
    chain
        .extend(link)
        .map_err(|e| ApiError::Committee(e.to_string()))?;
    let links: Vec<&CommitteeCertificate> = chain.links().collect();
    inner
        .store
        .put_node_value(CHAIN_KEY, &floe_codec::canonical_bytes(&links))
        .map_err(crate::state::store_error)?;
    let members = chain.committee_at(epoch).members().len();
    // Members of every committee of the chain (as at start) may call
    // peer-only methods, and this node can call them.
    let every_member: Vec<floe_consensus::Member> = chain.members_ever().cloned().collect();
    drop(chain);
    inner.forget_committees();
    crate::migration::forget_handoffs(inner);
    for member in &every_member {
        if let Err(e) = inner
            .pool
            .add_peer(member.network_key, member.address.clone())
        {
            warn!(node = %member.node_id, error = %e, "adding a member of the next committee");
        }
    }
    inner
        .members
        .replace(every_member.iter().map(|m| m.network_key));
    info!(%epoch, members, "committee of the next epoch certified");
    Ok(epoch)
}

/// The links starting after `epoch`, at most [`MAX_CHAIN_LINKS`].
pub(crate) fn links_after(inner: &Inner, epoch: Epoch) -> Vec<CommitteeCertificate> {
    let chain = inner
        .chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    chain
        .links_after(epoch)
        .take(MAX_CHAIN_LINKS)
        .cloned()
        .collect()
}

/// Whether `proposal` can be signed now: it starts the next epoch, keeps the
/// shard count, is a valid committee, and follows the chain.
fn check(inner: &Inner, proposal: &CommitteeProposal) -> Result<Epoch, ApiError> {
    let refuse = |reason: String| Err(ApiError::Committee(reason));
    let current = inner.epoch();
    if current.0.checked_add(1) != Some(proposal.epoch.0) {
        return refuse(format!(
            "a proposal for epoch {} is signed only in epoch {}; this is epoch {current}",
            proposal.epoch,
            proposal.epoch.0.saturating_sub(1)
        ));
    }
    if proposal.n_shards != inner.n_shards {
        return refuse(format!(
            "a committee keeps its {} shards; the proposal has {}",
            inner.n_shards, proposal.n_shards
        ));
    }
    if let Err(e) = proposal.committee() {
        return refuse(format!("the proposed committee is invalid: {e}"));
    }
    Ok(current)
}

/// This node's signature of `proposal`, if its operator approved it.
pub(crate) fn sign(
    inner: &Inner,
    proposal: CommitteeProposal,
) -> Result<Signed<CommitteeProposal>, ApiError> {
    let current = check(inner, &proposal)?;
    let digest = proposal.digest();
    let approved = inner
        .approved
        .lock()
        .map(|a| a.get(&digest) == Some(&proposal))
        .unwrap_or(false);
    if !approved {
        return Err(ApiError::Committee(format!(
            "this node's operator has not approved proposal {}",
            hex::encode(digest)
        )));
    }
    Ok(Signed::sign(
        ProtocolMessage::new(current, proposal),
        &inner.protocol_key,
    ))
}

/// Records the operator's approval of `proposal` (checked first).
pub(crate) fn approve(inner: &Inner, proposal: CommitteeProposal) -> Result<[u8; 32], ApiError> {
    check(inner, &proposal)?;
    let digest = proposal.digest();
    let mut approved = inner
        .approved
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Approvals of past epochs are of no use any more.
    let current = inner.epoch();
    approved.retain(|_, p| p.epoch > current);
    approved.insert(digest, proposal);
    // Kept across a restart: an approval given late in an epoch still counts.
    let kept: Vec<&CommitteeProposal> = approved.values().collect();
    inner
        .store
        .put_node_value(APPROVALS_KEY, &floe_codec::canonical_bytes(&kept))
        .map_err(crate::state::store_error)?;
    info!(proposal = %hex::encode(digest), "next committee approved by this node's operator");
    Ok(digest)
}

/// Tries to certify each approved proposal not yet in the chain: asks the
/// current committee's members to sign it, and with a quorum of shards
/// keeps the link and gives it to every member of both committees.
pub(crate) async fn certify_approved(inner: &Arc<Inner>) {
    let pending: Vec<CommitteeProposal> = {
        let latest = inner
            .chain
            .lock()
            .map(|c| c.latest_epoch())
            .unwrap_or(Epoch(0));
        let approved = inner
            .approved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        approved
            .values()
            .filter(|p| p.epoch > latest)
            .cloned()
            .collect()
    };
    for proposal in pending {
        if let Err(e) = certify(inner, proposal).await {
            tracing::debug!(error = %e, "next committee not certified yet");
        }
    }
}

/// Learns the committee certificates this node missed (it was down, or it
/// is joining): asks one member for the links after its latest, and keeps
/// those that extend its chain. A member serving a link that does not is
/// reported.
pub(crate) async fn follow_chain(inner: &Arc<Inner>) {
    use rand::seq::SliceRandom as _;
    let after = inner
        .chain
        .lock()
        .map(|c| c.latest_epoch())
        .unwrap_or(Epoch(0));
    let peers = crate::state::peer_keys(inner);
    let Some(peer) = peers.choose(&mut rand::thread_rng()).copied() else {
        return;
    };
    let Ok(links) = inner.pool.call::<GetCommitteeChain>(&peer, &after).await else {
        return;
    };
    for link in links {
        if let Err(e) = accept_link(inner, link) {
            inner.pool.report_misbehaviour(
                &peer,
                format!("served a committee certificate that does not extend the chain: {e}"),
            );
            return;
        }
    }
}

async fn certify(inner: &Arc<Inner>, proposal: CommitteeProposal) -> Result<Epoch, ApiError> {
    let own = sign(inner, proposal.clone())?;
    let signers = inner.committee(own.message.epoch);
    let mut tally = SignatureTally::new(&signers, own.message.clone());
    tally
        .add_own(&own)
        .map_err(|e| ApiError::Committee(e.to_string()))?;
    let me = inner.me_in(&signers);
    let peers: Vec<PublicKey> = signers
        .members()
        .iter()
        .filter(|m| Some(m.network_key) != me)
        .map(|m| m.network_key)
        .collect();
    FanOut::new(peers, Pacing::ALL)
        .run(&mut tally, |peer| {
            let (pool, proposal) = (Arc::clone(&inner.pool), proposal.clone());
            async move {
                let answer = pool.call::<SignCommitteeProposal>(&peer, &proposal).await;
                answer.map_err(|e| e.to_string())
            }
        })
        .await;
    let link = tally.finish().map_err(|shortfall| {
        ApiError::Committee(format!(
            "members holding {} of the {} shards needed signed proposal {}",
            shortfall.got,
            shortfall.needed,
            hex::encode(proposal.digest())
        ))
    })?;
    let epoch = accept_link(inner, link.clone())?;
    let next = inner.committee(link.message.body.epoch);
    let mut everyone: Vec<PublicKey> = signers.members().iter().map(|m| m.network_key).collect();
    everyone.extend(next.members().iter().map(|m| m.network_key));
    everyone.sort();
    everyone.dedup();
    everyone.retain(|key| Some(*key) != me);
    FanOut::new(everyone, Pacing::ALL)
        .run(&mut Discard, |peer| {
            let (pool, link) = (Arc::clone(&inner.pool), link.clone());
            async move {
                let _ = pool.call::<PutCommitteeLink>(&peer, &link).await;
            }
        })
        .await;
    Ok(epoch)
}
