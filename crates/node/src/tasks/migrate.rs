//! Moving shards at a committee change: the shard set follows the chain,
//! each shard new to this node is fetched from its previous holder page by
//! page (every pair verified against its blob's metadata, the cursor kept in
//! the store), a holder that is down, lies or makes no progress leaves the
//! rest to recovery, and once every new shard is whole this node signs and
//! sends its synced notice. Pairs of shards given up are collected once the
//! change is done (see `gc`).

use super::*;
use crate::migration::{self, Phase};
use floe_api::{GetHandoff, GetShardPairs, PutShardsSynced, ShardPairsPage, ShardPairsRequest};
use floe_codec::ShardIndex;
use floe_consensus::handoff::Handoff;
use floe_consensus::Epoch;

/// Attempts in a row that bring nothing before a shard is left to recovery.
pub(super) const MAX_STALLS: u32 = 3;

/// One pass: the shard set, the intake's pages, the notice, the others'.
pub(super) async fn migrate_pass(inner: Arc<Inner>) {
    match on_blocking(&inner, migration::refresh_shards).await {
        Some(Err(e)) => warn!(error = %e, "changing this node's shards"),
        None | Some(Ok(())) => {}
    }
    fetch_intake(&inner).await;
    announce(&inner).await;
    gather_notices(&inner).await;
}

/// Why a page was not taken.
enum PageError {
    /// The page is false: the previous holder is left to recovery.
    Lie(String),
    /// This node failed; the next pass tries again.
    Local(TaskError),
}

/// Fetches every shard still in its fetching phase, page after page.
async fn fetch_intake(inner: &Arc<Inner>) {
    let Some((epoch, shards)) = inner.intake().as_ref().map(|intake| {
        let shards: Vec<(ShardIndex, migration::ShardIntake)> = intake
            .shards
            .iter()
            .filter(|(_, s)| s.phase == Phase::Fetching)
            .map(|(shard, s)| (*shard, s.clone()))
            .collect();
        (intake.epoch, shards)
    }) else {
        return;
    };
    for (shard, mut state) in shards {
        let Some(from) = state.from else { continue };
        loop {
            let request = ShardPairsRequest {
                epoch,
                shard,
                after: state.after,
            };
            let answer = inner.pool.call::<GetShardPairs>(&from, &request).await;
            let outcome = match answer {
                Ok(page) => take_page(inner, shard, state.after, page).await,
                Err(e) => {
                    state.stalls += 1;
                    debug!(%shard, %from, error = %e, stalls = state.stalls, "no page of a new shard from its previous holder");
                    if state.stalls >= MAX_STALLS {
                        warn!(%shard, %from, "the previous holder gives no pages; the shard's missing pairs are rebuilt by recovery");
                        state.phase = Phase::Recovering;
                    }
                    update(inner, epoch, shard, &state);
                    break;
                }
            };
            match outcome {
                Ok((last, done)) => {
                    if last.is_some() {
                        state.after = last;
                        state.stalls = 0;
                    } else if !done {
                        state.stalls += 1;
                    }
                    if done {
                        info!(%shard, %from, "new shard fetched from its previous holder");
                        state.phase = Phase::Recovering;
                    } else if state.stalls >= MAX_STALLS {
                        state.phase = Phase::Recovering;
                    }
                    update(inner, epoch, shard, &state);
                    if state.phase != Phase::Fetching {
                        break;
                    }
                }
                Err(PageError::Lie(reason)) => {
                    warn!(%shard, %from, %reason, "the previous holder served a false page; the shard's missing pairs are rebuilt by recovery");
                    inner.pool.report_misbehaviour(
                        &from,
                        format!("served a false page of shard {shard}: {reason}"),
                    );
                    state.phase = Phase::Recovering;
                    update(inner, epoch, shard, &state);
                    break;
                }
                Err(PageError::Local(e)) => {
                    warn!(%shard, error = %e, "storing a page of a new shard; trying again");
                    break;
                }
            }
        }
    }
}

/// Records a shard's progress in the intake, and the intake in the store.
fn update(inner: &Inner, epoch: Epoch, shard: ShardIndex, state: &migration::ShardIntake) {
    let mut intake = inner.intake();
    let Some(kept) = intake.as_mut().filter(|i| i.epoch == epoch) else {
        return;
    };
    kept.shards.insert(shard, state.clone());
    if kept.fetching().is_empty() && kept.exchanges_at_fetched.is_none() {
        kept.exchanges_at_fetched = Some(inner.metrics.full_exchanges.load(Ordering::Relaxed));
    }
    if let Err(e) = migration::save_intake(inner, kept) {
        warn!(error = %e, "keeping the shard intake");
    }
}

/// Verifies and stores one page: blobs in order after the cursor, each the
/// pair `shard` holds, each matching its blob's metadata (fetched from the
/// members if this node lacks it). Answers the last blob taken and whether
/// the page was the last.
async fn take_page(
    inner: &Arc<Inner>,
    shard: ShardIndex,
    after: Option<BlobId>,
    page: ShardPairsPage,
) -> Result<(Option<BlobId>, bool), PageError> {
    let ShardPairsPage { pairs, done } = page;
    let mut previous = after;
    for (blob_id, _) in &pairs {
        if previous.is_some_and(|p| *blob_id <= p) {
            return Err(PageError::Lie(format!(
                "blob {blob_id} is out of order after {}",
                previous.map(|p| p.to_string()).unwrap_or_default()
            )));
        }
        previous = Some(*blob_id);
    }
    let mut last = None;
    for (blob_id, pair) in pairs {
        // A blob without metadata anywhere cannot be checked: it is left to
        // recovery (if it is ever certified).
        let Ok(metadata) = metadata_for(inner, blob_id).await else {
            last = Some(blob_id);
            continue;
        };
        if let Err(e) = check_pair(inner.n_shards, blob_id, shard, &pair, &metadata) {
            return Err(PageError::Lie(e.to_string()));
        }
        let bytes = pair.byte_len() as u64;
        let stored = on_blocking(inner, move |inner| -> Result<bool, TaskError> {
            let status = inner.store.state(&blob_id)?.status(inner.epoch());
            if matches!(
                status,
                floe_consensus::BlobStatus::Invalid { .. }
                    | floe_consensus::BlobStatus::Deleted { .. }
                    | floe_consensus::BlobStatus::Expired { .. }
            ) || inner.store.stored_shards(&blob_id)?.contains(&shard)
            {
                return Ok(false);
            }
            inner.store.put_sliver_pair(shard, &blob_id, &pair)?;
            Ok(true)
        })
        .await
        .ok_or(PageError::Local(TaskError::Interrupted(
            "storing a fetched pair",
        )))?
        .map_err(PageError::Local)?;
        if stored {
            inner
                .metrics
                .migration_bytes_fetched
                .fetch_add(bytes, Ordering::Relaxed);
            inner
                .metrics
                .migration_pairs_fetched
                .fetch_add(1, Ordering::Relaxed);
        }
        last = Some(blob_id);
    }
    Ok((last, done))
}

/// The change this node is in: the latest at or before the current epoch.
fn current_handoff(inner: &Inner) -> Handoff {
    let change = inner.latest_change(inner.epoch());
    migration::handoff(inner, change)
}

/// Whether every pair of this node's new shards is here: none is still
/// fetched, one full anti-entropy exchange has run since (so every
/// certificate is known), and no certified blob lacks a pair of them.
fn whole(inner: &Inner, change: Epoch) -> Result<bool, floe_store::StoreError> {
    let intake = inner.intake().clone();
    let Some(intake) = intake.filter(|i| i.epoch == change) else {
        // Nothing new to this node at this change.
        return Ok(true);
    };
    let exchanges = inner.metrics.full_exchanges.load(Ordering::Relaxed);
    if !intake.fetching().is_empty() || intake.exchanges_at_fetched.is_none_or(|n| exchanges <= n) {
        return Ok(false);
    }
    for blob_id in inner.store.drift(None, usize::MAX) {
        let missing = inner.store.missing_pairs(&blob_id)?;
        if missing.iter().any(|s| intake.shards.contains_key(s)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Signs and sends this node's synced notice once its new shards are whole.
async fn announce(inner: &Arc<Inner>) {
    let handoff = current_handoff(inner);
    if !handoff.moves_shards() || handoff.has_synced(&inner.network_key) {
        return;
    }
    let Some(body) = handoff.notice_of(&inner.network_key) else {
        return;
    };
    let change = handoff.epoch();
    match on_blocking(inner, move |inner| whole(inner, change)).await {
        Some(Ok(true)) => {}
        Some(Err(e)) => {
            warn!(error = %e, "checking whether the new shards are whole");
            return;
        }
        _ => return,
    }
    let notice = Signed::sign(ProtocolMessage::new(change, body), &inner.protocol_key);
    if let Err(e) = migration::accept_notice(inner, notice.clone()) {
        warn!(error = %e, "this node's own synced notice was refused");
        return;
    }
    info!(epoch = %change, "this node holds every pair of its shards of the new committee; telling the others");
    let mut everyone: Vec<PublicKey> = handoff
        .previous()
        .members()
        .iter()
        .chain(handoff.next().members())
        .map(|m| m.network_key)
        .filter(|key| *key != inner.network_key)
        .collect();
    everyone.sort();
    everyone.dedup();
    FanOut::new(everyone, Pacing::ALL)
        .run(&mut Discard, |peer| {
            let (pool, notice) = (Arc::clone(&inner.pool), notice.clone());
            async move {
                let _ = pool.call::<PutShardsSynced>(&peer, &notice).await;
            }
        })
        .await;
}

/// Until the change is done, asks the new committee's members for the
/// notices they gathered (a notice sent while this node was down is not
/// lost). A notice that does not verify is a lie of the member that
/// relayed it.
async fn gather_notices(inner: &Arc<Inner>) {
    let handoff = current_handoff(inner);
    if handoff.is_done() {
        return;
    }
    let change = handoff.epoch();
    let peers: Vec<PublicKey> = handoff
        .next()
        .members()
        .iter()
        .map(|m| m.network_key)
        .filter(|key| *key != inner.network_key && !handoff.has_synced(key))
        .collect();
    let mut answers = floe_consensus::quorum::Collect::default();
    FanOut::new(peers, Pacing::ALL)
        .run(&mut answers, |peer| {
            let pool = Arc::clone(&inner.pool);
            async move { pool.call::<GetHandoff>(&peer, &change).await.ok() }
        })
        .await;
    for (peer, notices) in answers.0 {
        for notice in notices.into_iter().flatten() {
            if let Err(e) = migration::accept_notice(inner, notice) {
                inner
                    .pool
                    .report_misbehaviour(&peer, format!("relayed a false synced notice: {e}"));
                break;
            }
        }
    }
}

/// Drops the pairs of shards this node gave up, once the change that moved
/// them is done (until then it serves reads of them).
pub(super) fn drop_given_up(inner: &Inner) -> Result<usize, floe_store::StoreError> {
    if !current_handoff(inner).is_done() {
        return Ok(0);
    }
    let mut dropped = 0;
    for shard in inner.store.shards_given_up()? {
        loop {
            let n = inner.store.drop_shard_pairs(shard, 256)?;
            dropped += n;
            if n == 0 {
                break;
            }
        }
        info!(%shard, "pairs of a shard given up at the committee change collected");
    }
    Ok(dropped)
}
