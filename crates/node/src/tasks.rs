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

use crate::service::{accept_fact, accept_facts, store_error};
use crate::{now_ms, Inner};

/// Why one step of a background task failed. Logged; the task tries again
/// on its next pass.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskError {
    /// The local store failed.
    #[error("the store failed: {0}")]
    Store(#[from] floe_store::StoreError),
    /// A request could not be made, or a peer's answer was refused.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A peer did not answer usefully.
    #[error("peer {peer}: {reason}")]
    Peer {
        /// The peer.
        peer: PublicKey,
        /// What failed.
        reason: String,
    },
    /// No peer served metadata that matches the blob ID.
    #[error("blob {0}: no peer served valid metadata")]
    NoMetadata(BlobId),
    /// Too few valid recovery symbols came back.
    #[error("blob {0}: not enough peers answered with valid recovery symbols")]
    NotEnoughSymbols(BlobId),
    /// A sliver could not be rebuilt.
    #[error("blob {blob_id}: {source}")]
    Recovery {
        /// The blob.
        blob_id: BlobId,
        /// Why.
        source: RecoveryError,
    },
    /// No invalid-blob certificate could be formed.
    #[error("blob {blob_id}: no invalid-blob certificate: {source}")]
    Certificate {
        /// The blob.
        blob_id: BlobId,
        /// Why.
        source: floe_consensus::BuildError,
    },
    /// Work on the blocking pool stopped before it finished (the node is
    /// shutting down, or the work panicked).
    #[error("{0} stopped before it finished")]
    Interrupted(&'static str),
}

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

/// The facts this node holds for `items`, in item order, within `budget`
/// bytes (at least one, so a single large fact still travels) and at most
/// `max_facts` of them, and the items left out for a later round. Items
/// this node does not hold (any more: a newer fact superseded them) are
/// skipped.
pub(crate) fn facts_within(
    inner: &Inner,
    items: &[ItemId],
    budget: usize,
    max_facts: usize,
) -> Result<(Vec<Fact>, Vec<ItemId>), ApiError> {
    let mut by_blob: BTreeMap<BlobId, BTreeSet<[u8; 32]>> = BTreeMap::new();
    for item in items {
        by_blob.entry(item.blob_id).or_default().insert(item.fact);
    }
    let (mut facts, mut left, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for (blob_id, wanted) in by_blob {
        if bytes >= budget || facts.len() >= max_facts {
            left.extend(wanted.into_iter().map(|fact| ItemId { blob_id, fact }));
            continue;
        }
        let state = inner.store.state(&blob_id).map_err(store_error)?;
        for fact in state.facts() {
            let digest = fact.digest();
            if !wanted.contains(&digest) {
                continue;
            }
            let size = floe_consensus::canonical_bytes(&fact).len();
            if (bytes > 0 && bytes + size > budget) || facts.len() >= max_facts {
                left.push(ItemId {
                    blob_id,
                    fact: digest,
                });
                continue;
            }
            bytes += size;
            facts.push(fact);
        }
    }
    Ok((facts, left))
}

async fn on_blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    work: impl FnOnce(&Inner) -> T + Send + 'static,
) -> Option<T> {
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || work(&inner)).await.ok()
}

/// One anti-entropy exchange with a random peer, one not ranked last for
/// lying or slowness if there is any; the exchange gets [`SYNC_DEADLINE`].
async fn sync_once(inner: Arc<Inner>) {
    let peers = peer_keys(&inner);
    let trusted: Vec<PublicKey> = peers
        .iter()
        .copied()
        .filter(|peer| !inner.pool.is_penalized(peer))
        .collect();
    let choice = if trusted.is_empty() { &peers } else { &trusted };
    let Some(peer) = choice.choose(&mut rand::thread_rng()).copied() else {
        return;
    };
    match tokio::time::timeout(SYNC_DEADLINE, sync_with(&inner, peer)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(%peer, error = %e, "anti-entropy round failed"),
        // A single request that timed out has ranked the peer down already.
        Err(_) => debug!(%peer, "anti-entropy exchange cut off at its deadline; the next resumes"),
    }
}

/// How long one anti-entropy exchange may run; a request of it waits
/// [`SYNC_REQUEST_TIMEOUT`] at most.
const SYNC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
const SYNC_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Requests one anti-entropy exchange makes at most; what is left is found
/// again by the next exchange.
const MAX_SYNC_REQUESTS: usize = 4096;

/// Items one exchange keeps to push, and to ask for, at most (64 MiB each):
/// beyond, a later exchange finds them.
const MAX_EXCHANGE_ITEMS: usize = 1 << 20;

/// Ranges one exchange keeps to send at most (about 5 MiB): an honest
/// exchange of a million facts needs a few tens of thousands at once.
const MAX_EXCHANGE_RANGES: usize = 1 << 16;

/// The ranges a message covers.
fn ranges_in(message: &floe_consensus::ReconcileMessage) -> usize {
    match message {
        floe_consensus::ReconcileMessage::Summaries(summaries) => summaries.len(),
        floe_consensus::ReconcileMessage::Listing { .. } => 1,
    }
}

/// The caller's side of one anti-entropy exchange: what it still has to
/// send, push and ask for. Each request takes a bounded page of each
/// ([`RECONCILE_MAX_RANGES`], [`RECONCILE_FACT_BYTES`],
/// [`RECONCILE_MAX_ITEMS`]) and the next resumes where it stopped, so an
/// exchange of any size goes through in messages of bounded size.
#[derive(Debug, Default)]
struct Exchange {
    messages: std::collections::VecDeque<floe_consensus::ReconcileMessage>,
    push: BTreeSet<ItemId>,
    want: BTreeSet<ItemId>,
}

impl Exchange {
    fn is_done(&self) -> bool {
        self.messages.is_empty() && self.push.is_empty() && self.want.is_empty()
    }

    /// The next request: the first page of everything still to do.
    fn next_request(&mut self, inner: &Inner) -> Result<ReconcileRequest, ApiError> {
        let messages = take_ranges(&mut self.messages, RECONCILE_MAX_RANGES);
        let push = take_first(&mut self.push, RECONCILE_MAX_ITEMS);
        let (facts, left) = facts_within(inner, &push, RECONCILE_FACT_BYTES, RECONCILE_MAX_ITEMS)?;
        self.push.extend(left);
        let want = take_first(&mut self.want, RECONCILE_MAX_ITEMS);
        Ok(ReconcileRequest {
            messages,
            facts,
            want,
        })
    }

    /// Takes in the peer's answer: its facts are verified and recorded, its
    /// messages answered in turn.
    fn absorb(&mut self, inner: &Inner, response: ReconcileResponse) -> Result<(), ApiError> {
        let ReconcileResponse {
            messages,
            facts,
            mut want,
            mut unsent,
        } = response;
        // An honest peer answers a page with at most 16 ranges per range
        // asked about and pages of items: anything beyond is dropped, so a
        // lying peer cannot make this side hold or compute more.
        let messages = distinct_ranges(cap_ranges(messages, RECONCILE_MAX_REPLY_RANGES));
        want.truncate(RECONCILE_MAX_ITEMS);
        unsent.truncate(RECONCILE_MAX_ITEMS);
        let learned = accept_facts(inner, facts)?;
        inner
            .metrics
            .facts_received
            .fetch_add(learned as u64, Ordering::Relaxed);
        let reply = inner
            .digest
            .lock()
            .map(|d| d.respond(&messages))
            .unwrap_or_default();
        let queued: usize = self.messages.iter().map(ranges_in).sum();
        self.messages.extend(
            cap_ranges(reply.messages, MAX_EXCHANGE_RANGES.saturating_sub(queued))
                .into_iter()
                .filter(is_sendable),
        );
        let room = MAX_EXCHANGE_ITEMS.saturating_sub(self.push.len());
        self.push
            .extend(reply.missing_there.into_iter().chain(want).take(room));
        let digest = inner
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = MAX_EXCHANGE_ITEMS.saturating_sub(self.want.len());
        self.want.extend(
            reply
                .missing_here
                .into_iter()
                .chain(unsent)
                .filter(|item| !digest.contains(item))
                .take(room),
        );
        Ok(())
    }
}

/// The first messages of `messages` holding at most `max` ranges
/// (summaries and listings), a summaries message cut short if need be.
pub(crate) fn cap_ranges(
    messages: Vec<floe_consensus::ReconcileMessage>,
    max: usize,
) -> Vec<floe_consensus::ReconcileMessage> {
    take_ranges(&mut messages.into(), max)
}

/// `messages` with each range summarized, and each range listed, once: the
/// first of each is kept (an honest side never repeats one; a hostile one
/// would make this side answer it again and again).
pub(crate) fn distinct_ranges(
    messages: Vec<floe_consensus::ReconcileMessage>,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let (mut summarized, mut listed) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    messages
        .into_iter()
        .filter_map(|message| match message {
            ReconcileMessage::Summaries(summaries) => {
                let summaries: Vec<_> = summaries
                    .into_iter()
                    .filter(|s| summarized.insert(s.prefix))
                    .collect();
                (!summaries.is_empty()).then_some(ReconcileMessage::Summaries(summaries))
            }
            ReconcileMessage::Listing { prefix, items } => listed
                .insert(prefix)
                .then_some(ReconcileMessage::Listing { prefix, items }),
        })
        .collect()
}

/// Whether a peer's decoder takes `message`: a listing of more than
/// [`RECONCILE_MAX_ITEMS`] items (a blob with thousands of facts) is not
/// sent; that range is not reconciled by listing.
fn is_sendable(message: &floe_consensus::ReconcileMessage) -> bool {
    match message {
        floe_consensus::ReconcileMessage::Summaries(_) => true,
        floe_consensus::ReconcileMessage::Listing { items, .. } => {
            items.len() <= RECONCILE_MAX_ITEMS
        }
    }
}

/// Bytes of a summary on the wire: prefix (33), count (8), digest (32).
const SUMMARY_BYTES: usize = 33 + 8 + 32;
/// Bytes of an item ID on the wire.
const ITEM_BYTES: usize = 64;

/// Bytes of `message` on the wire, at most (lengths counted as 5 bytes).
fn wire_bytes(message: &floe_consensus::ReconcileMessage) -> usize {
    match message {
        floe_consensus::ReconcileMessage::Summaries(summaries) => {
            1 + 5 + SUMMARY_BYTES * summaries.len()
        }
        floe_consensus::ReconcileMessage::Listing { items, .. } => {
            1 + 33 + 5 + ITEM_BYTES * items.len()
        }
    }
}

/// The digest messages of an answer, capped as a caller's decoder takes
/// them: at most [`RECONCILE_MAX_REPLY_RANGES`] ranges and
/// [`RECONCILE_MESSAGE_BYTES`] bytes (summaries cut short, listings left
/// out past it), no listing of more than [`RECONCILE_MAX_ITEMS`] items.
/// What is left out is found again by a later exchange.
pub(crate) fn cap_reply(
    messages: Vec<floe_consensus::ReconcileMessage>,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    for message in cap_ranges(messages, RECONCILE_MAX_REPLY_RANGES) {
        if !is_sendable(&message) {
            continue;
        }
        let room = RECONCILE_MESSAGE_BYTES.saturating_sub(bytes);
        let message = match message {
            message if wire_bytes(&message) <= room => message,
            ReconcileMessage::Summaries(mut summaries) => {
                summaries.truncate(
                    room.saturating_sub(wire_bytes(&ReconcileMessage::Summaries(Vec::new())))
                        / SUMMARY_BYTES,
                );
                if summaries.is_empty() {
                    continue;
                }
                ReconcileMessage::Summaries(summaries)
            }
            ReconcileMessage::Listing { .. } => continue,
        };
        bytes += wire_bytes(&message);
        kept.push(message);
    }
    kept
}

/// Takes from the front of `queue` messages holding at most `max` ranges,
/// splitting a summaries message if need be (its rest stays in front).
fn take_ranges(
    queue: &mut std::collections::VecDeque<floe_consensus::ReconcileMessage>,
    max: usize,
) -> Vec<floe_consensus::ReconcileMessage> {
    use floe_consensus::ReconcileMessage;
    let mut taken = Vec::new();
    let mut ranges = 0;
    while ranges < max {
        let Some(message) = queue.pop_front() else {
            break;
        };
        let message = match message {
            ReconcileMessage::Summaries(mut summaries) if summaries.len() > max - ranges => {
                let rest = summaries.split_off(max - ranges);
                queue.push_front(ReconcileMessage::Summaries(rest));
                ReconcileMessage::Summaries(summaries)
            }
            message => message,
        };
        ranges += ranges_in(&message);
        taken.push(message);
    }
    taken
}

/// The first `n` items of a set, removed from it.
fn take_first(set: &mut BTreeSet<ItemId>, n: usize) -> Vec<ItemId> {
    let mut taken = Vec::with_capacity(n.min(set.len()));
    while taken.len() < n {
        let Some(item) = set.pop_first() else { break };
        taken.push(item);
    }
    taken
}

/// Reconcile facts with `peer` until both sides hold the same set, in
/// requests of bounded size.
pub(crate) async fn sync_with(inner: &Arc<Inner>, peer: PublicKey) -> Result<(), TaskError> {
    // The digest's lock may be held across a database read (see
    // `Inner::refresh_digest`): taken on the blocking pool.
    let open = on_blocking(inner, |inner| {
        inner
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .open()
    })
    .await
    .ok_or(TaskError::Interrupted("anti-entropy"))?;
    let mut exchange = Exchange::default();
    exchange.messages.push_back(open);
    for _ in 0..MAX_SYNC_REQUESTS {
        if exchange.is_done() {
            break;
        }
        let (request, back) = on_blocking(inner, move |inner| {
            let request = exchange.next_request(inner);
            (request, exchange)
        })
        .await
        .ok_or(TaskError::Interrupted("anti-entropy"))?;
        exchange = back;
        let request = request?;
        let response = inner
            .pool
            .call_with_timeout::<Reconcile>(&peer, &request, SYNC_REQUEST_TIMEOUT)
            .await
            .map_err(|e| TaskError::Peer {
                peer,
                reason: e.to_string(),
            })?;
        inner.metrics.sync_rounds.fetch_add(1, Ordering::Relaxed);
        let (absorbed, back) = on_blocking(inner, move |inner| {
            let absorbed = exchange.absorb(inner, response);
            (absorbed, exchange)
        })
        .await
        .ok_or(TaskError::Interrupted("anti-entropy"))?;
        exchange = back;
        if let Err(e) = absorbed {
            if matches!(e, ApiError::BadCertificate { .. }) {
                inner
                    .pool
                    .report_misbehaviour(&peer, format!("sent a fact that does not verify: {e}"));
            }
            return Err(e.into());
        }
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

/// The blob's metadata: stored here, or from the first peer whose answer
/// matches the blob ID (healthiest first; without an answer for
/// [`REPAIR_HEDGE`], one more peer is asked, so a slow peer holds nothing
/// back). A peer serving metadata of another blob is reported.
async fn metadata_for(
    inner: &Arc<Inner>,
    blob_id: BlobId,
) -> Result<floe_codec::BlobMetadata, TaskError> {
    if let Some(metadata) = inner.store.metadata(&blob_id)? {
        return Ok(metadata);
    }
    let mut peers = inner.pool.rank(&peer_keys(inner)).into_iter();
    let mut calls = tokio::task::JoinSet::new();
    let ask = |calls: &mut tokio::task::JoinSet<_>, peer: PublicKey| {
        let pool = Arc::clone(&inner.pool);
        calls.spawn(async move { (peer, pool.call::<GetMetadata>(&peer, &blob_id).await) });
    };
    if let Some(peer) = peers.next() {
        ask(&mut calls, peer);
    }
    let metadata = loop {
        let joined = tokio::select! {
            joined = calls.join_next() => joined,
            () = tokio::time::sleep(REPAIR_HEDGE) => {
                if let Some(peer) = peers.next() {
                    ask(&mut calls, peer);
                }
                continue;
            }
        };
        let Some(joined) = joined else {
            match peers.next() {
                Some(peer) => {
                    ask(&mut calls, peer);
                    continue;
                }
                None => return Err(TaskError::NoMetadata(blob_id)),
            }
        };
        let Ok((peer, answer)) = joined else { continue };
        match answer {
            Ok(metadata) if metadata.verify(&blob_id).is_ok() => break metadata,
            Ok(_) => inner.pool.report_misbehaviour(
                &peer,
                format!("served metadata that does not match blob {blob_id}"),
            ),
            Err(e) => debug!(blob = %blob_id, %peer, error = %e, "no metadata from peer"),
        }
    };
    drop(calls);
    let stored = metadata.clone();
    on_blocking(inner, move |inner| {
        inner.store.put_metadata(&blob_id, &stored, now_ms())
    })
    .await
    .ok_or(TaskError::Interrupted("storing metadata"))??;
    Ok(metadata)
}

/// Rebuild this node's missing pairs of `blob_id` from peers' recovery symbols.
pub(crate) async fn repair_blob(inner: &Arc<Inner>, blob_id: BlobId) -> Result<(), TaskError> {
    let metadata = metadata_for(inner, blob_id).await?;
    let n = inner.n_shards;
    let missing = inner.store.missing_pairs(&blob_id)?;
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
                    .map_err(|_| TaskError::Interrupted("rebuilding a sliver"))?
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
                Err(source) => return Err(TaskError::Recovery { blob_id, source }),
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
            .ok_or(TaskError::Interrupted("storing a repaired pair"))??;
            inner
                .metrics
                .slivers_repaired
                .fetch_add(2, Ordering::Relaxed);
        }
    }
    info!(blob = %blob_id, pairs = missing.len(), "repaired");
    Ok(())
}

/// Peers asked at once for recovery symbols.
const REPAIR_FANOUT: usize = 2;
/// Without an answer for this long, one more peer is asked (a peer that
/// trickles its answer holds no repair back).
const REPAIR_HEDGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ask peers, healthiest first and a few at a time, until every target has
/// enough valid symbols from distinct sources; stops waiting for the others
/// the moment it has. A peer whose symbols fail their proofs is reported
/// (ranked last for a while); one that times out is ranked down by the pool.
async fn gather_symbols(
    inner: &Arc<Inner>,
    metadata: &floe_codec::BlobMetadata,
    targets: &[(Axis, SliverIndex)],
) -> Result<BTreeMap<(Axis, SliverIndex), Vec<RecoverySymbol>>, TaskError> {
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
    let mut peers = inner.pool.rank(&peer_keys(inner)).into_iter();
    let mut calls = tokio::task::JoinSet::new();
    let ask = |calls: &mut tokio::task::JoinSet<_>, peer: PublicKey| {
        let (pool, request) = (Arc::clone(&inner.pool), request.clone());
        calls.spawn(async move { (peer, pool.call::<GetRecoverySymbols>(&peer, &request).await) });
    };
    // When each peer still answering was asked.
    let mut waiting: BTreeMap<PublicKey, std::time::Instant> = BTreeMap::new();
    for peer in peers.by_ref().take(REPAIR_FANOUT) {
        ask(&mut calls, peer);
        waiting.insert(peer, std::time::Instant::now());
    }
    while !enough(&have) {
        let joined = tokio::select! {
            joined = calls.join_next() => joined,
            () = tokio::time::sleep(REPAIR_HEDGE) => {
                if let Some(peer) = peers.next() {
                    ask(&mut calls, peer);
                    waiting.insert(peer, std::time::Instant::now());
                }
                continue;
            }
        };
        let Some(joined) = joined else {
            // Every call so far has answered: ask the next peer, if any.
            match peers.next() {
                Some(peer) => {
                    ask(&mut calls, peer);
                    waiting.insert(peer, std::time::Instant::now());
                    continue;
                }
                None => break,
            }
        };
        if calls.len() < REPAIR_FANOUT {
            if let Some(peer) = peers.next() {
                ask(&mut calls, peer);
                waiting.insert(peer, std::time::Instant::now());
            }
        }
        let Ok((peer, answer)) = joined else { continue };
        waiting.remove(&peer);
        match answer {
            Ok(symbols) => {
                let mut bad = 0usize;
                for symbol in symbols {
                    let target = (symbol.target_axis(), symbol.target_index());
                    if !targets.contains(&target) || symbol.verify(metadata).is_err() {
                        bad += 1;
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
                if bad > 0 {
                    inner.pool.report_misbehaviour(
                        &peer,
                        format!("{bad} recovery symbols of blob {blob_id} not asked for or failing their proofs"),
                    );
                }
            }
            Err(e) => {
                debug!(blob = %blob_id, %peer, error = %e, "no recovery symbols from peer")
            }
        }
    }
    // Calls still running are cancelled here: they are no longer needed. A
    // peer that held its answer back for several hedges while others
    // answered is ranked down, as if it had timed out: cancelling it must
    // not leave its record clean.
    drop(calls);
    for (peer, asked) in &waiting {
        if asked.elapsed() >= 4 * REPAIR_HEDGE {
            inner.pool.report_slow(peer);
        }
    }
    if !enough(&have) {
        return Err(TaskError::NotEnoughSymbols(blob_id));
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
) -> Result<(), TaskError> {
    let blob_id = proof.blob_id;
    let epoch = inner.epoch();
    let committee = inner.committee(epoch);
    let message = ProtocolMessage::new(epoch, InvalidBlobAttestation { blob_id });
    let mut builder = CertificateBuilder::new(&committee, message.clone());
    let certificate_error = |source| TaskError::Certificate { blob_id, source };
    builder
        .add(&Signed::sign(message, &inner.protocol_key))
        .map_err(certificate_error)?;
    let mut calls = tokio::task::JoinSet::new();
    for peer in peer_keys(inner) {
        let pool = Arc::clone(&inner.pool);
        let request = SubmitInconsistencyRequest {
            proof: proof.clone(),
        };
        calls.spawn(async move { pool.call::<SubmitInconsistency>(&peer, &request).await });
    }
    while let Some(joined) = calls.join_next().await {
        if let Ok(Ok(attestation)) = joined {
            let _ = builder.add(&attestation);
        }
        if builder.is_complete() {
            break;
        }
    }
    let certificate = builder.certificate().map_err(certificate_error)?;
    let fact = Fact::Invalid(certificate);
    let accepted = {
        let fact = fact.clone();
        on_blocking(inner, move |inner| accept_fact(inner, fact))
            .await
            .ok_or(TaskError::Interrupted(
                "recording the invalid-blob certificate",
            ))?
    };
    accepted?;
    info!(blob = %blob_id, "blob certified invalid");
    push_fact(inner, fact);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use floe_codec::BlobId;
    use floe_consensus::{Prefix, RangeSummary, ReconcileMessage};

    use super::*;

    fn listing(i: u32, items: usize) -> ReconcileMessage {
        let blob_id = BlobId(*blake3::hash(&i.to_le_bytes()).as_bytes());
        ReconcileMessage::Listing {
            prefix: Prefix::of(&blob_id, 64),
            items: vec![
                ItemId {
                    blob_id,
                    fact: [0; 32]
                };
                items
            ],
        }
    }

    #[test]
    fn an_answer_is_capped_in_ranges_bytes_and_listing_size() {
        let summary = RangeSummary {
            prefix: Prefix::ROOT,
            count: 1,
            digest: [0; 32],
        };
        let ranges =
            |messages: &[ReconcileMessage]| -> usize { messages.iter().map(ranges_in).sum() };
        let many = vec![ReconcileMessage::Summaries(vec![summary; 40_000])];
        assert_eq!(ranges(&cap_reply(many)), RECONCILE_MAX_REPLY_RANGES);
        // A listing the caller's decoder would refuse is left out.
        let kept = cap_reply(vec![listing(0, RECONCILE_MAX_ITEMS + 1), listing(1, 3)]);
        assert_eq!(kept, vec![listing(1, 3)]);
        // 2048 listings of 100 items (13 MiB) are cut at the byte budget.
        let kept = cap_reply((0..2048).map(|i| listing(i, 100)).collect());
        let bytes: usize = kept.iter().map(wire_bytes).sum();
        assert!(
            bytes <= RECONCILE_MESSAGE_BYTES && kept.len() < 2048,
            "{bytes}"
        );
        assert!(kept.iter().map(|m| canonical_len(m)).sum::<usize>() <= bytes);
    }

    fn canonical_len(message: &ReconcileMessage) -> usize {
        floe_consensus::canonical_bytes(message).len()
    }

    #[test]
    fn repeated_ranges_are_answered_once() {
        let summary = |depth| RangeSummary {
            prefix: Prefix::of(&BlobId([7; 32]), depth),
            count: 1,
            digest: [0; 32],
        };
        let messages = vec![
            ReconcileMessage::Summaries(vec![summary(1), summary(2), summary(1)]),
            listing(5, 2),
            ReconcileMessage::Summaries(vec![summary(2)]),
            listing(5, 9),
        ];
        assert_eq!(
            distinct_ranges(messages),
            vec![
                ReconcileMessage::Summaries(vec![summary(1), summary(2)]),
                listing(5, 2),
            ]
        );
    }
}
