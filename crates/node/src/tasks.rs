//! Background work: pushing facts, anti-entropy, repair, garbage collection
//! and the epoch clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use floe_api::*;
use floe_codec::{
    recover_sliver, symbols_needed, Axis, BlobId, RecoveryError, RecoverySymbol, SliverIndex,
    SliverPair,
};
use floe_consensus::{
    CertificateBuilder, Fact, InvalidBlobAttestation, ItemId, ProtocolMessage, PublicKey, Signed,
};
use rand::seq::SliceRandom;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::service::{accept_fact, store_error};
use crate::{now_ms, Inner};

pub(crate) fn spawn_all(
    inner: &Arc<Inner>,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let every = |period: std::time::Duration,
                 inner: &Arc<Inner>,
                 work: fn(Arc<Inner>) -> futures_lite::BoxedWork| {
        let (inner, mut shutdown) = (Arc::clone(inner), shutdown.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.changed() => return,
                }
                // Work in progress is abandoned at shutdown: every step is
                // idempotent and resumes from the database on restart.
                tokio::select! {
                    () = work(Arc::clone(&inner)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        })
    };
    vec![
        every(inner.tasks.sync_interval(), inner, |inner| {
            Box::pin(sync_once(inner))
        }),
        every(inner.tasks.repair_interval(), inner, |inner| {
            Box::pin(repair_pass(inner))
        }),
        every(inner.tasks.gc_interval(), inner, |inner| {
            Box::pin(gc_pass(inner))
        }),
        every(std::time::Duration::from_secs(1), inner, |inner| {
            Box::pin(advance_epoch(inner))
        }),
    ]
}

mod futures_lite {
    pub(crate) type BoxedWork = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

fn peer_keys(inner: &Inner) -> Vec<PublicKey> {
    inner.peers().map(|m| m.network_key).collect()
}

/// Send a new fact to every peer, in the background.
pub(crate) fn push_fact(inner: &Inner, fact: Fact) {
    let pool = Arc::clone(&inner.pool);
    let peers = peer_keys(inner);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut calls = tokio::task::JoinSet::new();
        for peer in peers {
            let (pool, fact) = (Arc::clone(&pool), fact.clone());
            calls.spawn(async move {
                if let Err(e) = pool.call::<PutFact>(&peer, &fact).await {
                    debug!(blob = %fact.blob_id(), error = %e, "fact not pushed; anti-entropy will deliver it");
                }
            });
        }
        while calls.join_next().await.is_some() {}
    });
}

/// The facts this node holds for `items`.
pub(crate) fn facts_for(inner: &Inner, items: &[ItemId]) -> Result<Vec<Fact>, ApiError> {
    let mut by_blob: BTreeMap<BlobId, BTreeSet<[u8; 32]>> = BTreeMap::new();
    for item in items {
        by_blob.entry(item.blob_id).or_default().insert(item.fact);
    }
    let mut facts = Vec::new();
    for (blob_id, wanted) in by_blob {
        let state = inner.store.state(&blob_id).map_err(store_error)?;
        facts.extend(
            state
                .facts()
                .into_iter()
                .filter(|f| wanted.contains(&f.digest())),
        );
    }
    Ok(facts)
}

async fn on_blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    work: impl FnOnce(&Inner) -> T + Send + 'static,
) -> Option<T> {
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || work(&inner)).await.ok()
}

/// One anti-entropy exchange with a random peer.
async fn sync_once(inner: Arc<Inner>) {
    let peers = peer_keys(&inner);
    let Some(peer) = peers.choose(&mut rand::thread_rng()).copied() else {
        return;
    };
    if let Err(e) = sync_with(&inner, peer).await {
        debug!(%peer, error = %e, "anti-entropy round failed");
    }
}

/// Reconcile facts with `peer` until both sides hold the same set.
pub(crate) async fn sync_with(inner: &Arc<Inner>, peer: PublicKey) -> Result<(), String> {
    let mut messages = vec![inner.digest.lock().map_err(|e| e.to_string())?.open()];
    let (mut push, mut want) = (Vec::new(), Vec::new());
    for _ in 0..64 {
        if messages.is_empty() && push.is_empty() && want.is_empty() {
            break;
        }
        let request = ReconcileRequest {
            messages,
            facts: push,
            want,
        };
        let response = inner
            .pool
            .call::<Reconcile>(&peer, &request)
            .await
            .map_err(|e| e.to_string())?;
        inner.metrics.sync_rounds.fetch_add(1, Ordering::Relaxed);
        let ReconcileResponse {
            messages: theirs,
            facts,
            want: they_want,
        } = response;
        let outcome = on_blocking(inner, move |inner| -> Result<_, ApiError> {
            for fact in facts {
                if accept_fact(inner, fact)? {
                    inner.metrics.facts_received.fetch_add(1, Ordering::Relaxed);
                }
            }
            let reply = inner
                .digest
                .lock()
                .map(|d| d.respond(&theirs))
                .unwrap_or_default();
            let mut to_push = they_want;
            to_push.extend(reply.missing_there);
            Ok((
                reply.messages,
                facts_for(inner, &to_push)?,
                reply.missing_here,
            ))
        })
        .await
        .ok_or("anti-entropy task failed")?
        .map_err(|e| e.to_string())?;
        (messages, push, want) = outcome;
    }
    Ok(())
}

async fn advance_epoch(inner: Arc<Inner>) {
    let epoch = inner.epoch();
    on_blocking(&inner, move |inner| {
        if inner
            .store
            .current_epoch()
            .map(|current| current != epoch)
            .unwrap_or(true)
        {
            if let Err(e) = inner.store.set_current_epoch(epoch) {
                warn!(error = %e, "recording the epoch");
            } else {
                info!(%epoch, "epoch advanced");
            }
        }
    })
    .await;
}

async fn gc_pass(inner: Arc<Inner>) {
    let epoch = inner.epoch();
    let deadline = now_ms().saturating_sub(inner.limits.pending_upload_secs.saturating_mul(1000));
    on_blocking(&inner, move |inner| loop {
        match inner.store.collect_garbage(epoch, deadline, 256) {
            Ok(report) => {
                if report.blobs > 0 {
                    info!(
                        blobs = report.blobs,
                        slivers = report.slivers,
                        "garbage collected"
                    );
                }
                if !report.more {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "garbage collection");
                return;
            }
        }
    })
    .await;
}

/// Repair every drifting blob, a bounded number at a time. A blob whose
/// repair failed (peers not answering, or lacking the slivers themselves)
/// waits before it is tried again, doubling up to [`REPAIR_BACKOFF_MAX`].
async fn repair_pass(inner: Arc<Inner>) {
    let now = std::time::Instant::now();
    let blobs: Vec<BlobId> = {
        let backoff = inner
            .repair_backoff
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner
            .store
            .drift(None, inner.tasks.repair_concurrency * 16)
            .into_iter()
            .filter(|blob_id| backoff.get(blob_id).is_none_or(|(next, _)| *next <= now))
            .take(inner.tasks.repair_concurrency * 4)
            .collect()
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(inner.tasks.repair_concurrency));
    let mut work = tokio::task::JoinSet::new();
    for blob_id in blobs {
        let (inner, limit) = (Arc::clone(&inner), Arc::clone(&limit));
        work.spawn(async move {
            let Ok(_permit) = limit.acquire_owned().await else { return };
            let outcome = repair_blob(&inner, blob_id).await;
            let mut backoff = inner.repair_backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(()) => {
                    backoff.remove(&blob_id);
                }
                Err(e) => {
                    let failures = backoff.get(&blob_id).map_or(0, |(_, n)| *n) + 1;
                    let delay = inner
                        .tasks
                        .repair_interval()
                        .saturating_mul(1 << failures.min(16))
                        .min(REPAIR_BACKOFF_MAX);
                    backoff.insert(blob_id, (std::time::Instant::now() + delay, failures));
                    debug!(blob = %blob_id, error = %e, failures, ?delay, "repair incomplete; will retry");
                }
            }
        });
    }
    while work.join_next().await.is_some() {}
}

/// Longest wait before retrying a blob whose repair failed.
const REPAIR_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Targets rebuilt per round of requests: bounds the symbols held at once.
const PAIRS_PER_ROUND: usize = 8;

async fn metadata_for(
    inner: &Arc<Inner>,
    blob_id: BlobId,
) -> Result<floe_codec::BlobMetadata, String> {
    if let Some(metadata) = inner.store.metadata(&blob_id).map_err(|e| e.to_string())? {
        return Ok(metadata);
    }
    for peer in inner.pool.rank(&peer_keys(inner)) {
        match inner.pool.call::<GetMetadata>(&peer, &blob_id).await {
            Ok(metadata) if metadata.verify(&blob_id).is_ok() => {
                let stored = metadata.clone();
                on_blocking(inner, move |inner| {
                    inner.store.put_metadata(&blob_id, &stored, now_ms())
                })
                .await
                .ok_or("storing metadata failed")?
                .map_err(|e| e.to_string())?;
                return Ok(metadata);
            }
            Ok(_) => {
                warn!(blob = %blob_id, %peer, "peer served metadata that does not match the blob ID")
            }
            Err(e) => debug!(blob = %blob_id, %peer, error = %e, "no metadata from peer"),
        }
    }
    Err("no peer served valid metadata".into())
}

/// Rebuild this node's missing pairs of `blob_id` from peers' recovery symbols.
pub(crate) async fn repair_blob(inner: &Arc<Inner>, blob_id: BlobId) -> Result<(), String> {
    let metadata = metadata_for(inner, blob_id).await?;
    let n = inner.n_shards;
    let missing = inner
        .store
        .missing_pairs(&blob_id)
        .map_err(|e| e.to_string())?;
    for shards in missing.chunks(PAIRS_PER_ROUND) {
        let mut targets = Vec::new();
        for shard in shards {
            let pair = shard.to_pair_index(n, &blob_id);
            targets.push((Axis::Primary, pair.sliver_index(Axis::Primary, n)));
            targets.push((Axis::Secondary, pair.sliver_index(Axis::Secondary, n)));
        }
        let symbols = gather_symbols(inner, &metadata, &targets).await?;
        let mut rebuilt = BTreeMap::new();
        for (axis, index) in &targets {
            let theirs = symbols.get(&(*axis, *index)).cloned().unwrap_or_default();
            let recovered = {
                let metadata = metadata.clone();
                let (axis, index) = (*axis, *index);
                tokio::task::spawn_blocking(move || recover_sliver(&metadata, axis, index, theirs))
                    .await
                    .map_err(|e| e.to_string())?
            };
            match recovered {
                Ok(sliver) => {
                    rebuilt.insert((*axis, *index), sliver);
                }
                Err(RecoveryError::Inconsistent(proof)) => {
                    inner
                        .metrics
                        .inconsistencies_found
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(blob = %blob_id, "repair proved the blob inconsistently encoded");
                    return certify_invalid(inner, *proof).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        for shard in shards {
            let pair = shard.to_pair_index(n, &blob_id);
            let (Some(primary), Some(secondary)) = (
                rebuilt.remove(&(Axis::Primary, pair.sliver_index(Axis::Primary, n))),
                rebuilt.remove(&(Axis::Secondary, pair.sliver_index(Axis::Secondary, n))),
            ) else {
                continue;
            };
            let pair = SliverPair {
                index: pair,
                primary,
                secondary,
            };
            let shard = *shard;
            on_blocking(inner, move |inner| {
                inner.store.put_sliver_pair(shard, &blob_id, &pair)
            })
            .await
            .ok_or("storing a repaired pair failed")?
            .map_err(|e| e.to_string())?;
            inner
                .metrics
                .slivers_repaired
                .fetch_add(2, Ordering::Relaxed);
        }
    }
    info!(blob = %blob_id, pairs = missing.len(), "repaired");
    Ok(())
}

/// Ask peers, healthiest first and a few at a time, until every target has
/// enough valid symbols from distinct sources.
async fn gather_symbols(
    inner: &Arc<Inner>,
    metadata: &floe_codec::BlobMetadata,
    targets: &[(Axis, SliverIndex)],
) -> Result<BTreeMap<(Axis, SliverIndex), Vec<RecoverySymbol>>, String> {
    let blob_id = metadata.blob_id();
    let mut have: BTreeMap<(Axis, SliverIndex), BTreeMap<SliverIndex, RecoverySymbol>> =
        BTreeMap::new();
    let enough = |have: &BTreeMap<(Axis, SliverIndex), BTreeMap<SliverIndex, RecoverySymbol>>| {
        targets
            .iter()
            .all(|t| have.get(t).map_or(0, BTreeMap::len) >= symbols_needed(metadata, t.0))
    };
    let request = RecoveryRequest {
        blob_id,
        targets: targets.to_vec(),
    };
    let peers = inner.pool.rank(&peer_keys(inner));
    for wave in peers.chunks(2) {
        if enough(&have) {
            break;
        }
        let mut calls = tokio::task::JoinSet::new();
        for peer in wave {
            let (pool, request, peer) = (Arc::clone(&inner.pool), request.clone(), *peer);
            calls.spawn(
                async move { (peer, pool.call::<GetRecoverySymbols>(&peer, &request).await) },
            );
        }
        while let Some(joined) = calls.join_next().await {
            let Ok((peer, answer)) = joined else { continue };
            match answer {
                Ok(symbols) => {
                    for symbol in symbols {
                        let target = (symbol.target_axis(), symbol.target_index());
                        if !targets.contains(&target) || symbol.verify(metadata).is_err() {
                            continue;
                        }
                        inner
                            .metrics
                            .repair_bytes_fetched
                            .fetch_add(symbol.data.len() as u64, Ordering::Relaxed);
                        have.entry(target)
                            .or_default()
                            .insert(symbol.source_index, symbol);
                    }
                }
                Err(e) => {
                    debug!(blob = %blob_id, %peer, error = %e, "no recovery symbols from peer")
                }
            }
        }
    }
    if !enough(&have) {
        return Err("not enough peers answered with valid recovery symbols".into());
    }
    Ok(have
        .into_iter()
        .map(|(target, symbols)| (target, symbols.into_values().collect()))
        .collect())
}

/// Attest an inconsistency, gather attestations from `f + 1` shards, and
/// spread the resulting invalid-blob certificate.
async fn certify_invalid(
    inner: &Arc<Inner>,
    proof: floe_codec::InconsistencyProof,
) -> Result<(), String> {
    let blob_id = proof.blob_id;
    let epoch = inner.epoch();
    let committee = inner.committee(epoch);
    let message = ProtocolMessage::new(epoch, InvalidBlobAttestation { blob_id });
    let mut builder = CertificateBuilder::new(&committee, message.clone());
    builder
        .add(&Signed::sign(message, &inner.protocol_key))
        .map_err(|e| e.to_string())?;
    let mut calls = tokio::task::JoinSet::new();
    for peer in peer_keys(inner) {
        let (pool, proof) = (Arc::clone(&inner.pool), proof.clone());
        calls.spawn(async move { pool.call::<SubmitInconsistency>(&peer, &proof).await });
    }
    while let Some(joined) = calls.join_next().await {
        if let Ok(Ok(attestation)) = joined {
            let _ = builder.add(&attestation);
        }
        if builder.is_complete() {
            break;
        }
    }
    let certificate = builder.certificate().map_err(|e| e.to_string())?;
    let fact = Fact::Invalid(certificate);
    let accepted = {
        let fact = fact.clone();
        on_blocking(inner, move |inner| accept_fact(inner, fact))
            .await
            .ok_or("recording failed")?
    };
    accepted.map_err(|e| e.to_string())?;
    info!(blob = %blob_id, "blob certified invalid");
    push_fact(inner, fact);
    Ok(())
}
