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

/// Attempts in a row that bring nothing before a shard is left to recovery.
pub(super) const MAX_STALLS: u32 = 5;
/// Answers of "not yet" or "busy" in a row that count as one stall.
pub(super) const WAITS_PER_STALL: u32 = 30;

/// One pass: the intake's pages, the notice, the others' notices. (The
/// shard set itself follows the chain on the epoch tick.)
pub(super) async fn migrate_pass(inner: Arc<Inner>) {
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
    let Some((change, shards)) = inner.intake().as_ref().map(|intake| {
        let shards: Vec<(ShardIndex, migration::ShardIntake)> = intake
            .shards
            .iter()
            .filter(|(_, s)| s.phase == Phase::Fetching)
            .map(|(shard, s)| (*shard, s.clone()))
            .collect();
        (intake.change, shards)
    }) else {
        return;
    };
    for (shard, mut state) in shards {
        let Some(from) = state.from else { continue };
        loop {
            let request = ShardPairsRequest {
                epoch: change,
                shard,
                after: state.after,
            };
            let answer = inner.pool.call::<GetShardPairs>(&from, &request).await;
            let outcome = match answer {
                Ok(page) => take_page(inner, shard, state.after, page).await,
                Err(e) => {
                    // "Not yet in the epoch" or "busy": the holder is there,
                    // only early or loaded; many such answers make a stall.
                    let waiting = matches!(
                        &e,
                        floe_net::RpcError::Remote {
                            error: ApiError::Committee(_) | ApiError::Busy(_),
                            ..
                        }
                    );
                    if waiting {
                        state.waits += 1;
                    }
                    if !waiting || state.waits >= WAITS_PER_STALL {
                        state.waits = 0;
                        state.stalls += 1;
                    }
                    debug!(%shard, %from, error = %e, stalls = state.stalls, "no page of a new shard from its previous holder");
                    if state.stalls >= MAX_STALLS {
                        warn!(%shard, %from, "the previous holder gives no pages; the shard's missing pairs are rebuilt by recovery");
                        state.phase = Phase::Recovering;
                    }
                    update(inner, shard, &state);
                    break;
                }
            };
            match outcome {
                Ok(taken) => {
                    if taken.last.is_some() {
                        state.after = taken.last;
                    }
                    if taken.stored > 0 || taken.done {
                        state.stalls = 0;
                        state.waits = 0;
                    } else {
                        // A page that stores nothing (pairs of blobs no
                        // member has metadata for, or nothing at all) is
                        // no progress.
                        state.stalls += 1;
                    }
                    if taken.done {
                        info!(%shard, %from, "new shard fetched from its previous holder");
                        state.phase = Phase::Recovering;
                    } else if state.stalls >= MAX_STALLS {
                        warn!(%shard, %from, "pages of a new shard bring nothing; its missing pairs are rebuilt by recovery");
                        state.phase = Phase::Recovering;
                    }
                    update(inner, shard, &state);
                    if state.phase != Phase::Fetching || taken.stored == 0 {
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
                    update(inner, shard, &state);
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

/// Records a shard's progress in the intake, and the intake in the store
/// (unless the shard left the intake meanwhile: the shard set changed).
fn update(inner: &Inner, shard: ShardIndex, state: &migration::ShardIntake) {
    let mut intake = inner.intake();
    let Some(kept) = intake.as_mut().filter(|i| i.shards.contains_key(&shard)) else {
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

/// What one page brought.
struct Taken {
    /// The last blob whose pair was taken (stored, held already, or of a
    /// blob gone here): where the next page starts.
    last: Option<BlobId>,
    /// Pairs stored.
    stored: usize,
    /// The holder said no pair follows (and every pair was taken).
    done: bool,
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
) -> Result<Taken, PageError> {
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
    let mut taken = Taken {
        last: None,
        stored: 0,
        done: false,
    };
    for (blob_id, pair) in pairs {
        // Metadata no member serves: the pair cannot be checked, and the
        // page ends here (a holder that serves only such pairs stalls).
        let Ok(metadata) = metadata_for(inner, blob_id).await else {
            return Ok(taken);
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
            taken.stored += 1;
            inner
                .metrics
                .migration_bytes_fetched
                .fetch_add(bytes, Ordering::Relaxed);
            inner
                .metrics
                .migration_pairs_fetched
                .fetch_add(1, Ordering::Relaxed);
        }
        taken.last = Some(blob_id);
    }
    taken.done = done;
    Ok(taken)
}

/// The change this node is in: the latest at or before the current epoch.
fn current_handoff(inner: &Inner) -> Handoff {
    let change = inner.latest_change(inner.epoch());
    migration::handoff(inner, change)
}

/// Drifting blobs checked at most for the shards new to this node; beyond,
/// the node waits for repair before saying it synced.
const WHOLE_SCAN: usize = 10_000;

/// Whether every pair of this node's new shards is here: none is still
/// fetched, one full anti-entropy exchange has run since (so every
/// certificate is known), and no certified blob lacks a pair of them.
fn whole(inner: &Inner) -> Result<bool, floe_store::StoreError> {
    // The epoch tick has not taken up this epoch's shards yet.
    if inner.store.shards() != migration::shards_in(inner, inner.epoch()) {
        return Ok(false);
    }
    let intake = inner.intake().clone();
    let Some(intake) = intake else {
        // Nothing new to this node.
        return Ok(true);
    };
    let exchanges = inner.metrics.full_exchanges.load(Ordering::Relaxed);
    if !intake.fetching().is_empty() || intake.exchanges_at_fetched.is_none_or(|n| exchanges <= n) {
        return Ok(false);
    }
    if inner.store.drift_count() > WHOLE_SCAN {
        return Ok(false);
    }
    for blob_id in inner.store.drift(None, WHOLE_SCAN) {
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
    match on_blocking(inner, whole).await {
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

/// Until every new holder synced, asks the new committee's members for the
/// notices they gathered (a notice sent while this node was down is not
/// lost). A notice that does not verify is a lie of the member that
/// relayed it.
async fn gather_notices(inner: &Arc<Inner>) {
    let handoff = current_handoff(inner);
    // Until every new holder synced: a previous holder lets go of a shard
    // only on its new holder's word.
    if handoff.settled() {
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
