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
/// The store's key of the shards given up, with the change that moved each.
const GIVEN_UP_KEY: &str = "shards_given_up";

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
    /// Attempts in a row the previous holder asked to wait (it is not in
    /// the new epoch yet, or busy): many count as one stall.
    pub(crate) waits: u32,
}

/// The shards new to this node, since the change into `change` (shards
/// still unfinished from an earlier change are carried along).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Intake {
    pub(crate) change: Epoch,
    pub(crate) shards: BTreeMap<ShardIndex, ShardIntake>,
    /// Full anti-entropy exchanges this process had completed when the last
    /// shard stopped fetching: the node announces only after one more, so
    /// it knows every certificate its shards must hold.
    pub(crate) exchanges_at_fetched: Option<u64>,
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

fn load<T: serde::de::DeserializeOwned>(store: &floe_store::Store, key: &str) -> Option<T> {
    let bytes = store.node_value(key).ok().flatten()?;
    match floe_codec::from_canonical_bytes(&bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            warn!(key, error = %e, "a stored migration record does not decode; missing pairs are rebuilt by recovery");
            None
        }
    }
}

/// The intake as the store kept it. The anti-entropy count restarts with
/// the process: an intake that had stopped fetching waits for one exchange
/// of this process.
pub(crate) fn load_intake(store: &floe_store::Store) -> Option<Intake> {
    let mut intake: Intake = load(store, INTAKE_KEY)?;
    if intake.exchanges_at_fetched.is_some() {
        intake.exchanges_at_fetched = Some(0);
    }
    Some(intake)
}

/// The shards given up, as the store kept them.
pub(crate) fn load_given_up(store: &floe_store::Store) -> BTreeMap<ShardIndex, Epoch> {
    load(store, GIVEN_UP_KEY).unwrap_or_default()
}

/// Keeps `intake` in the store (a restart resumes from it).
pub(crate) fn save_intake(inner: &Inner, intake: &Intake) -> Result<(), floe_store::StoreError> {
    inner
        .store
        .put_node_value(INTAKE_KEY, &floe_codec::canonical_bytes(intake))
}

fn save_given_up(
    inner: &Inner,
    given_up: &BTreeMap<ShardIndex, Epoch>,
) -> Result<(), floe_store::StoreError> {
    inner
        .store
        .put_node_value(GIVEN_UP_KEY, &floe_codec::canonical_bytes(given_up))
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
/// to it join the intake, each to be fetched from its holder before the
/// change that gave it (an unfinished shard keeps its cursor); shards given
/// up are recorded with that change and stay readable until their new
/// holder synced. Run at start and on every epoch tick.
pub(crate) fn refresh_shards(inner: &Inner) -> Result<(), floe_store::StoreError> {
    let epoch = inner.epoch();
    let wanted = shards_in(inner, epoch);
    let held = inner.store.shards();
    if wanted == held {
        return Ok(());
    }
    let change = inner.latest_change(epoch);
    let previous = inner.committee(Epoch(change.0.saturating_sub(1)));
    let me = inner.network_key;
    let mut intake = inner.intake();
    let mut next = Intake {
        change,
        shards: BTreeMap::new(),
        exchanges_at_fetched: None,
    };
    if let Some(kept) = intake.take() {
        next.shards = kept
            .shards
            .into_iter()
            .filter(|(shard, _)| wanted.binary_search(shard).is_ok())
            .collect();
        if kept.change == change {
            next.exchanges_at_fetched = kept.exchanges_at_fetched;
        }
    }
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
            waits: 0,
        });
    }
    if next.fetching().is_empty() && next.exchanges_at_fetched.is_none() {
        next.exchanges_at_fetched = Some(
            inner
                .metrics
                .full_exchanges
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    let mut given_up = inner.given_up();
    for shard in held.iter().filter(|s| wanted.binary_search(s).is_err()) {
        given_up.insert(*shard, change);
    }
    given_up.retain(|shard, _| wanted.binary_search(shard).is_err());
    // The records first: a crash between these writes and the store's
    // shard set redoes them from the same chain.
    save_intake(inner, &next)?;
    save_given_up(inner, &given_up)?;
    let (gained, gave) = (next.shards.len(), given_up.len());
    *intake = Some(next);
    drop(intake);
    drop(given_up);
    inner.store.set_shards(wanted.clone())?;
    info!(%epoch, %change, shards = wanted.len(), gained, given_up = gave, "this node's shards changed with the committee");
    Ok(())
}

/// Runs `f` on the change into `epoch` with the notices gathered for it,
/// under the lock (so concurrent notices all count). Only real changes (a
/// link of the chain starts `epoch`) are kept; for any other epoch `f` sees
/// a change that moves nothing.
pub(crate) fn with_handoff<T>(inner: &Inner, epoch: Epoch, f: impl FnOnce(&mut Handoff) -> T) -> T {
    let real = epoch.0 > 0 && inner.latest_change(epoch) == epoch && epoch <= inner.epoch();
    let build = || {
        let chain = inner
            .chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Handoff::new(&chain, epoch)
    };
    if !real {
        return f(&mut build());
    }
    let mut handoffs = inner
        .handoffs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !handoffs.contains_key(&epoch) {
        // A handful of changes are ever asked about; the oldest go first.
        while handoffs.len() >= 16 {
            handoffs.pop_first();
        }
        handoffs.insert(epoch, build());
    }
    match handoffs.get_mut(&epoch) {
        Some(handoff) => f(handoff),
        None => f(&mut build()),
    }
}

/// The change into `epoch`, with the notices gathered for it.
pub(crate) fn handoff(inner: &Inner, epoch: Epoch) -> Handoff {
    with_handoff(inner, epoch, |h| h.clone())
}

/// Forgets the handoffs worked out so far (the chain grew).
pub(crate) fn forget_handoffs(inner: &Inner) {
    inner
        .handoffs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}

/// Verifies `notice` against the committee of its change and keeps it.
/// Answers whether it was new.
pub(crate) fn accept_notice(inner: &Inner, notice: Signed<ShardsSynced>) -> Result<bool, ApiError> {
    let epoch = notice.message.epoch;
    if epoch > inner.epoch() || epoch.0 == 0 || inner.latest_change(epoch) != epoch {
        return Err(ApiError::Committee(format!(
            "a synced notice for epoch {epoch}, where no committee change this node knows of starts"
        )));
    }
    let signer = notice.signer;
    let (new, done) = with_handoff(inner, epoch, |handoff| {
        handoff.add(notice).map(|new| (new, handoff.is_done()))
    })
    .map_err(|e| ApiError::Committee(e.to_string()))?;
    if new {
        info!(%epoch, %signer, done, "a member synced its shards of the new committee");
    }
    Ok(new)
}

/// The notices gathered for the change into `epoch` (none for an epoch no
/// change starts).
pub(crate) fn notices(inner: &Inner, epoch: Epoch) -> Vec<Signed<ShardsSynced>> {
    inner
        .handoffs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&epoch)
        .map(|h| h.notices().cloned().collect())
        .unwrap_or_default()
}

/// Pairs of a shard this node gave up are served only to the shard's new
/// holder, and only once this node no longer holds the shard (it is in the
/// change's epoch and takes no more writes to it), so its pages are final.
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
    if current < epoch || inner.epoch() < epoch || inner.store.holds_shard(shard) {
        return refuse(format!(
            "this node has not moved to epoch {epoch}'s shards yet (it is in epoch {current}); ask again shortly"
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

    pub(crate) fn given_up(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardIndex, Epoch>> {
        self.given_up
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

/// Drops pairs of shards this node gave up whose new holder has synced, at
/// most `budget` pairs a call; answers how many went.
pub(crate) fn drop_released(inner: &Inner, budget: usize) -> Result<usize, floe_store::StoreError> {
    let given: Vec<(ShardIndex, Epoch)> = inner.given_up().iter().map(|(s, e)| (*s, *e)).collect();
    let mut dropped = 0;
    for (shard, change) in given {
        if dropped >= budget {
            break;
        }
        // Still held: the new shard set is not applied yet, or the shard
        // came back (then `refresh_shards` takes it off the list).
        if inner.store.holds_shard(shard) {
            continue;
        }
        if !handoff(inner, change).released(shard) {
            tracing::debug!(%shard, %change, "a shard given up is kept: its new holder has not synced");
            continue;
        }
        let n = inner.store.drop_shard_pairs(shard, budget - dropped)?;
        dropped += n;
        if n == 0 {
            let mut given_up = inner.given_up();
            given_up.remove(&shard);
            save_given_up(inner, &given_up)?;
            info!(%shard, "the pairs of a shard given up are collected: its new holder synced");
        }
    }
    Ok(dropped)
}
