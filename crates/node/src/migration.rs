//! Moving shards at a committee change, this node's side: which shards it
//! holds in the current epoch (from the chain), the intake of shards new to
//! it (where each is fetched from, and how far), the synced notices it
//! gathered, and the pages of a shard it serves to the shard's new holder.
//!
//! The fetching itself, the announcement and the collection of shards given
//! up are background work (`tasks::migrate`).

use std::collections::BTreeMap;

use floe_api::*;
use floe_codec::{BlobId, ShardIndex};
use floe_consensus::handoff::{Handoff, ShardsSynced};
use floe_consensus::{Epoch, PublicKey, Signed};
use floe_net::Caller;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::state::{store_error, Inner};

/// The store's key of the intake.
const INTAKE_KEY: &str = "shard_intake";

/// How a shard new to this node is being filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// Pairs are fetched from the previous holder, page by page; repair
    /// leaves the shard alone meanwhile.
    Fetching,
    /// The previous holder gave all it had (or could not or would not):
    /// whatever is still missing is rebuilt by recovery, as any drift.
    Recovering,
}

/// One shard new to this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardIntake {
    /// The previous holder's network key (`None`: there is none to ask).
    pub(crate) from: Option<PublicKey>,
    /// The last blob stored from its pages: where fetching resumes.
    pub(crate) after: Option<BlobId>,
    pub(crate) phase: Phase,
    /// Attempts in a row that brought nothing.
    pub(crate) stalls: u32,
}

/// The shards new to this node at the change into `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intake {
    pub(crate) epoch: Epoch,
    pub(crate) shards: BTreeMap<ShardIndex, ShardIntake>,
    /// Full anti-entropy exchanges this node had completed when the last
    /// shard stopped fetching: it announces only after one more, so it
    /// knows every certificate its shards must hold.
    pub(crate) exchanges_at_fetched: Option<u64>,
    /// This node signed and sent its synced notice.
    pub(crate) announced: bool,
}

impl Intake {
    /// Shards still fetched from their previous holder.
    pub(crate) fn fetching(&self) -> Vec<ShardIndex> {
        self.shards
            .iter()
            .filter(|(_, s)| s.phase == Phase::Fetching)
            .map(|(shard, _)| *shard)
            .collect()
    }
}

/// The intake as the store kept it.
pub(crate) fn load_intake(store: &floe_store::Store) -> Option<Intake> {
    store
        .node_value(INTAKE_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| floe_codec::from_canonical_bytes(&bytes).ok())
}

/// Keeps `intake` in the store (a restart resumes from it).
pub(crate) fn save_intake(inner: &Inner, intake: &Intake) -> Result<(), floe_store::StoreError> {
    inner
        .store
        .put_node_value(INTAKE_KEY, &floe_codec::canonical_bytes(intake))
}

/// This node's shards in `epoch`'s committee (none if it is no member).
pub(crate) fn shards_in(inner: &Inner, epoch: Epoch) -> Vec<ShardIndex> {
    let committee = inner.committee(epoch);
    let mut shards = inner
        .me_in(&committee)
        .and_then(|key| committee.member_by_network_key(&key))
        .and_then(|i| committee.member(i))
        .map(|m| m.shards.clone())
        .unwrap_or_default();
    shards.sort_unstable();
    shards
}

/// Makes the store hold this node's shards of the current epoch. Shards new
/// to it join the intake, each to be fetched from its holder in the epoch
/// before (resuming an intake of the same epoch); shards given up stay
/// readable until the change is done. Run at start and on every epoch tick.
pub(crate) fn refresh_shards(inner: &Inner) -> Result<(), floe_store::StoreError> {
    let epoch = inner.epoch();
    let wanted = shards_in(inner, epoch);
    let held = inner.store.shards();
    if wanted == held {
        return Ok(());
    }
    let previous = inner.committee(Epoch(epoch.0.saturating_sub(1)));
    let me = inner.network_key;
    let mut intake = inner.intake();
    let mut next = match intake.take() {
        Some(kept) if kept.epoch == epoch => kept,
        _ => Intake {
            epoch,
            shards: BTreeMap::new(),
            exchanges_at_fetched: None,
            announced: false,
        },
    };
    for shard in wanted.iter().filter(|s| held.binary_search(s).is_err()) {
        let from = previous
            .shard_holder(*shard)
            .and_then(|i| previous.member(i))
            .map(|m| m.network_key)
            .filter(|key| *key != me);
        next.shards.entry(*shard).or_insert(ShardIntake {
            from,
            after: None,
            phase: if from.is_some() {
                Phase::Fetching
            } else {
                Phase::Recovering
            },
            stalls: 0,
        });
    }
    next.shards
        .retain(|shard, _| wanted.binary_search(shard).is_ok());
    // The intake first: a crash between the two writes resumes it.
    save_intake(inner, &next)?;
    let gained = next.shards.len();
    *intake = Some(next);
    drop(intake);
    inner.store.set_shards(wanted.clone())?;
    info!(%epoch, shards = wanted.len(), gained, "this node's shards changed with the committee");
    Ok(())
}

/// The change into `epoch`, with the notices gathered for it.
pub(crate) fn handoff(inner: &Inner, epoch: Epoch) -> Handoff {
    let mut handoffs = inner
        .handoffs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(handoff) = handoffs.get(&epoch) {
        return handoff.clone();
    }
    let chain = inner
        .chain
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let handoff = Handoff::new(&chain, epoch);
    drop(chain);
    // The current change and the one before are all that is asked about.
    while handoffs.len() >= 4 {
        handoffs.pop_first();
    }
    handoffs.insert(epoch, handoff.clone());
    handoff
}

/// Forgets the handoffs worked out so far (the chain grew).
pub(crate) fn forget_handoffs(inner: &Inner) {
    inner
        .handoffs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// Verifies `notice` against the committee of its epoch and keeps it.
/// Answers whether it was new.
pub(crate) fn accept_notice(inner: &Inner, notice: Signed<ShardsSynced>) -> Result<bool, ApiError> {
    let epoch = notice.message.epoch;
    if epoch > inner.epoch() {
        return Err(ApiError::Committee(format!(
            "a synced notice for epoch {epoch} arrived in epoch {}",
            inner.epoch()
        )));
    }
    let mut handoff = handoff(inner, epoch);
    let signer = notice.signer;
    let new = handoff
        .add(notice)
        .map_err(|e| ApiError::Committee(e.to_string()))?;
    if new {
        let done = handoff.is_done();
        inner
            .handoffs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(epoch, handoff);
        info!(%epoch, %signer, done, "a member synced its shards of the new committee");
    }
    Ok(new)
}

/// The notices gathered for the change into `epoch`.
pub(crate) fn notices(inner: &Inner, epoch: Epoch) -> Vec<Signed<ShardsSynced>> {
    handoff(inner, epoch).notices().cloned().collect()
}

/// Pairs of a shard this node gave up are served only to the shard's new
/// holder, and only once this node is in the change's epoch itself: it then
/// takes no more writes to the shard, so its pages are final.
pub(crate) fn shard_page(
    inner: &Inner,
    caller: &Caller,
    request: ShardPairsRequest,
) -> Result<ShardPairsPage, ApiError> {
    let ShardPairsRequest {
        epoch,
        shard,
        after,
    } = request;
    let refuse = |reason: String| Err(ApiError::Committee(reason));
    let current = inner.store.current_epoch().map_err(store_error)?;
    if current < epoch || inner.epoch() < epoch {
        return refuse(format!(
            "this node is in epoch {current}, not yet in epoch {epoch}; ask again shortly"
        ));
    }
    if shard.0 >= inner.n_shards {
        return refuse(format!("there is no shard {shard}"));
    }
    let committee = inner.committee(epoch);
    let holder = committee
        .shard_holder(shard)
        .and_then(|i| committee.member(i))
        .map(|m| m.network_key);
    let Caller::Member { key, .. } = caller else {
        return refuse("only members fetch a shard's pairs".into());
    };
    if holder != Some(*key) {
        return refuse(format!(
            "shard {shard}'s pairs go only to its holder in epoch {epoch}"
        ));
    }
    floe_net::reserve_answer(SHARD_PAGE_BYTES).map_err(ApiError::Busy)?;
    let (pairs, done) = inner
        .store
        .shard_page(shard, after.as_ref(), 4096, SHARD_PAGE_BYTES)
        .map_err(store_error)?;
    Ok(ShardPairsPage { pairs, done })
}

impl Inner {
    pub(crate) fn intake(&self) -> std::sync::MutexGuard<'_, Option<Intake>> {
        self.intake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shards whose pairs are still fetched from their previous holder:
    /// repair leaves them alone.
    pub(crate) fn shards_fetching(&self) -> Vec<ShardIndex> {
        self.intake()
            .as_ref()
            .map(Intake::fetching)
            .unwrap_or_default()
    }
}

/// Warns once when a stored intake does not decode.
pub(crate) fn warn_undecodable(store: &floe_store::Store) {
    if matches!(store.node_value(INTAKE_KEY), Ok(Some(_))) && load_intake(store).is_none() {
        warn!("the stored shard intake does not decode; missing pairs are rebuilt by recovery");
    }
}
