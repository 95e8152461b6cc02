//! The request handlers: every input is verified before it is stored or
//! acted on, and every failure is a typed `ApiError`.

use std::sync::{Arc, OnceLock};

use floe_api::*;
use floe_codec::BlobId;
use floe_consensus::{
    BlobStatus, Fact, InvalidBlobAttestation, ItemId, ProtocolMessage, Signed, StorageConfirmation,
};
use floe_net::{Caller, Router};
use tracing::info;

use crate::reconcile::{cap_ranges, cap_reply, distinct_ranges};
use crate::state::{
    accept_fact, accept_facts, facts_within, now_ms, own_symbols, push_fact, status_report,
    store_error, Inner,
};
use crate::{handover, migration};

mod pairs;
use pairs::{put_pairs, PutPairsByFrame};

type Slot = Arc<OnceLock<Arc<Inner>>>;

/// The node, once it has started.
fn node(slot: &Slot) -> Result<Arc<Inner>, ApiError> {
    slot.get()
        .map(Arc::clone)
        .ok_or_else(|| ApiError::Internal("the node is starting".into()))
}

/// Run `work` on the blocking pool (disk and hashing), with the node.
async fn blocking<T: Send + 'static>(
    slot: &Slot,
    work: impl FnOnce(&Inner) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let inner = node(slot)?;
    // Inside the request's budget: a cancelled call keeps it until the work ends.
    floe_net::spawn_blocking(move || work(&inner))
        .await
        .map_err(|e| ApiError::Internal(format!("handler failed: {e}")))?
}

pub(crate) fn router(slot: Slot) -> Router {
    macro_rules! route {
        // A handler whose whole work runs on the blocking pool.
        ($router:expr, $method:ty, $handler:expr) => {
            route!(@serve $router, $method, |slot: Slot, caller, request| async move {
                blocking(&slot, move |inner| $handler(inner, caller, request)).await
            })
        };
        // A handler that is a future of its own.
        (@serve $router:expr, $method:ty, $serve:expr) => {{
            let slot = Arc::clone(&slot);
            $router.route::<$method, _, _>(move |caller, request| {
                let slot = Arc::clone(&slot);
                async move {
                    if let Some(delay) = slot
                        .get()
                        .and_then(|inner| inner.byzantine.as_ref())
                        .map(|lies| lies.delay_ms)
                        .filter(|ms| *ms > 0)
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    }
                    let outcome = $serve(Arc::clone(&slot), caller, request).await;
                    if let Some(inner) = slot.get() {
                        let label = match &outcome {
                            Ok(_) => "ok",
                            Err(error) => error.label(),
                        };
                        inner
                            .metrics
                            .count_request(<$method as floe_net::Method>::NAME, label);
                    }
                    outcome
                }
            })
        }};
    }
    let router = Router::new();
    let router = route!(router, GetInfo, info);
    let router = route!(router, PutMetadata, put_metadata);
    let router = route!(@serve router, PutPairsByFrame, put_pairs);
    let router = route!(router, GetMetadata, get_metadata);
    let router = route!(router, GetSliver, get_sliver);
    let router = route!(router, GetConfirmation, confirm);
    let router = route!(router, PutFact, put_fact);
    let router = route!(router, GetStatus, status);
    let router = route!(router, GetRecoverySymbols, recovery_symbols);
    let router = route!(router, GetBareSymbols, bare_symbols);
    let router = route!(router, SubmitInconsistency, attest_inconsistency);
    let router = route!(router, Reconcile, reconcile);
    let router = route!(router, GetCommitteeChain, committee_chain);
    let router = route!(router, SignCommitteeProposal, sign_committee);
    let router = route!(router, PutCommitteeLink, put_committee_link);
    let router = route!(router, GetShardPairs, shard_pairs);
    let router = route!(router, PutShardsSynced, shards_synced);
    let router = route!(router, PutGrant, put_grant);
    let router = route!(router, GetRegistration, registration);
    route!(router, GetHandoff, handoff_notices)
}

fn registration(
    inner: &Inner,
    _: Caller,
    request: RegistrationRequest,
) -> Result<Option<floe_consensus::BlobCertificate>, ApiError> {
    if let Some(lie) = crate::byzantine::registration(inner, &request) {
        return Ok(lie);
    }
    let state = inner.store.state(&request.blob_id).map_err(store_error)?;
    Ok(state.registration_of(&request.owner).cloned())
}

fn shard_pairs(
    inner: &Inner,
    caller: Caller,
    request: ShardPairsRequest,
) -> Result<ShardPairsPage, ApiError> {
    migration::shard_page(inner, &caller, request)
}

fn shards_synced(
    inner: &Inner,
    _: Caller,
    notice: Signed<floe_consensus::handoff::ShardsSynced>,
) -> Result<(), ApiError> {
    migration::accept_notice(inner, notice).map(|_| ())
}

fn handoff_notices(
    inner: &Inner,
    _: Caller,
    epoch: floe_consensus::Epoch,
) -> Result<Vec<Signed<floe_consensus::handoff::ShardsSynced>>, ApiError> {
    Ok(migration::notices(inner, epoch))
}

fn committee_chain(
    inner: &Inner,
    _: Caller,
    after: floe_consensus::Epoch,
) -> Result<Vec<floe_consensus::chain::CommitteeCertificate>, ApiError> {
    Ok(handover::links_after(inner, after))
}

fn sign_committee(
    inner: &Inner,
    _: Caller,
    proposal: floe_consensus::chain::CommitteeProposal,
) -> Result<Signed<floe_consensus::chain::CommitteeProposal>, ApiError> {
    handover::sign(inner, proposal)
}

fn put_committee_link(
    inner: &Inner,
    _: Caller,
    link: floe_consensus::chain::CommitteeCertificate,
) -> Result<floe_consensus::Epoch, ApiError> {
    handover::accept_link(inner, link)
}

fn info(inner: &Inner, _: Caller, (): ()) -> Result<NodeInfo, ApiError> {
    let stored_bytes = inner.store.stored_bytes().unwrap_or(0);
    Ok(NodeInfo {
        node_id: inner.node_id.clone(),
        epoch: inner.epoch(),
        n_shards: inner.n_shards,
        shards: inner.my_shards(),
        drift: inner.store.drift_count() as u64,
        facts_known: inner.digest.lock().map(|d| d.len() as u64).unwrap_or(0),
        stored_bytes,
        max_blob_size: inner.limits.max_blob_size,
    })
}

fn put_grant(
    inner: &Inner,
    caller: Caller,
    grant: Signed<floe_consensus::grant::StorageGrant>,
) -> Result<floe_api::GrantUsage, ApiError> {
    inner.admission.present(&inner.store, &caller, grant)
}

fn put_metadata(
    inner: &Inner,
    caller: Caller,
    request: PutMetadataRequest,
) -> Result<(), ApiError> {
    let PutMetadataRequest { blob_id, metadata } = request;
    let rejected = |reason: String| ApiError::Rejected { blob_id, reason };
    metadata
        .verify(&blob_id)
        .map_err(|e| rejected(e.to_string()))?;
    if metadata.config().n_shards() != inner.n_shards {
        return Err(rejected(format!(
            "metadata is for {} shards; this committee has {}",
            metadata.config().n_shards(),
            inner.n_shards
        )));
    }
    if metadata.unencoded_length() > inner.limits.max_blob_size {
        return Err(ApiError::Limit(format!(
            "blob {blob_id} is {} bytes; this node stores blobs up to {} bytes",
            metadata.unencoded_length(),
            inner.limits.max_blob_size
        )));
    }
    inner.admission.check_metadata(
        &inner.store,
        &caller,
        blob_id,
        metadata.unencoded_length(),
        crate::admission::charge_of(metadata.unencoded_length(), inner.n_shards),
    )?;
    inner
        .store
        .put_metadata(&blob_id, &metadata, now_ms())
        .map_err(store_error)
}

fn get_metadata(
    inner: &Inner,
    caller: Caller,
    blob_id: BlobId,
) -> Result<floe_codec::BlobMetadata, ApiError> {
    inner.admission.check_read(&caller)?;
    stored_metadata(inner, &blob_id)
}

/// The stored metadata of `blob_id`, or `NotFound`.
fn stored_metadata(inner: &Inner, blob_id: &BlobId) -> Result<floe_codec::BlobMetadata, ApiError> {
    inner
        .store
        .metadata(blob_id)
        .map_err(store_error)?
        .ok_or(ApiError::NotFound {
            blob_id: *blob_id,
            what: "metadata".into(),
        })
}

/// The most an answer of `symbols` symbols of a blob takes on the wire:
/// each symbol with its proof (a path of 32-byte hashes) and framing.
fn answer_bound(metadata: &floe_codec::BlobMetadata, symbols: usize) -> usize {
    const PROOF_AND_FRAMING: usize = 32 * 16 + 64;
    symbols.saturating_mul(metadata.symbol_size().saturating_add(PROOF_AND_FRAMING))
}

/// Refuse to serve data of blobs that are invalid, deleted or expired.
fn check_servable(inner: &Inner, blob_id: &BlobId) -> Result<(), ApiError> {
    let state = inner.store.state(blob_id).map_err(store_error)?;
    let status = state.status(inner.epoch());
    if matches!(
        status,
        BlobStatus::Invalid { .. } | BlobStatus::Deleted { .. } | BlobStatus::Expired { .. }
    ) {
        return Err(ApiError::Gone {
            blob_id: *blob_id,
            status: status.name().into(),
        });
    }
    Ok(())
}

fn get_sliver(
    inner: &Inner,
    caller: Caller,
    request: GetSliverRequest,
) -> Result<floe_codec::Sliver, ApiError> {
    inner.admission.check_read(&caller)?;
    let GetSliverRequest {
        blob_id,
        shard,
        axis,
    } = request;
    check_servable(inner, &blob_id)?;
    // Paid for before it is read: a sliver has at most one symbol per shard.
    let metadata = stored_metadata(inner, &blob_id)?;
    floe_net::reserve_answer(answer_bound(&metadata, usize::from(inner.n_shards)))
        .map_err(ApiError::Busy)?;
    // A shard given up at a committee change is served while its pairs are
    // kept (until the change is done).
    let sliver = inner
        .store
        .sliver(shard, &blob_id, axis)
        .map_err(store_error)?
        .ok_or_else(|| {
            if inner.store.holds_shard(shard) {
                ApiError::NotFound {
                    blob_id,
                    what: format!("{axis:?} sliver of shard {shard}"),
                }
            } else {
                ApiError::NotMyShard { blob_id, shard }
            }
        })?;
    Ok(crate::byzantine::sliver(inner, sliver))
}

fn confirm(
    inner: &Inner,
    caller: Caller,
    request: ConfirmationRequest,
) -> Result<Signed<StorageConfirmation>, ApiError> {
    let ConfirmationRequest {
        blob_id,
        end_epoch,
        deletable,
        owner,
    } = request;
    let epoch = inner.epoch();
    if end_epoch <= epoch {
        return Err(ApiError::Rejected {
            blob_id,
            reason: format!("end epoch {end_epoch} is not after the current epoch {epoch}"),
        });
    }
    if end_epoch.0 - epoch.0 > inner.limits.max_epochs_ahead {
        return Err(ApiError::Limit(format!(
            "blob {blob_id}: storage is confirmed at most {} epochs ahead",
            inner.limits.max_epochs_ahead
        )));
    }
    if deletable != owner.is_some() {
        return Err(ApiError::Rejected {
            blob_id,
            reason: "a deletable blob names its owner, a permanent one none".into(),
        });
    }
    let message = ProtocolMessage::new(
        epoch,
        StorageConfirmation {
            blob_id,
            end_epoch,
            deletable,
            owner,
        },
    );
    // A confirmation of this epoch speaks for this node's shards of this
    // epoch: refused while the store still holds another set.
    if inner.store.shards() != migration::shards_in(inner, epoch) {
        return Err(ApiError::Busy(format!(
            "this node is taking up its shards of epoch {epoch}; ask again shortly"
        )));
    }
    // Charged to the caller's grant in `grants` mode; signed only once the
    // store says the promise (and its charge) is durable.
    let blob_bytes = inner
        .store
        .metadata(&blob_id)
        .map_err(store_error)?
        .map(|metadata| {
            (
                metadata.unencoded_length(),
                crate::admission::charge_of(metadata.unencoded_length(), inner.n_shards),
            )
        });
    let durable = inner
        .admission
        .promise(&inner.store, &caller, message, blob_bytes)?;
    Ok(Signed::sign(durable.into_message(), &inner.protocol_key))
}

fn put_fact(inner: &Inner, _: Caller, fact: Fact) -> Result<BlobStatusAnswer, ApiError> {
    let blob_id = fact.blob_id();
    if accept_fact(inner, fact.clone())? {
        inner
            .metrics
            .facts_received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        push_fact(inner, fact);
    }
    status_report(inner, &blob_id)
}

fn status(inner: &Inner, _: Caller, blob_id: BlobId) -> Result<BlobStatusAnswer, ApiError> {
    if let Some(lie) = crate::byzantine::status(inner, &blob_id) {
        return Ok(lie);
    }
    status_report(inner, &blob_id)
}

fn recovery_symbols(
    inner: &Inner,
    _: Caller,
    request: RecoveryRequest,
) -> Result<Vec<floe_codec::RecoverySymbol>, ApiError> {
    symbols_for::<GetRecoverySymbols, _>(inner, request)
}

fn bare_symbols(
    inner: &Inner,
    _: Caller,
    request: RecoveryRequest,
) -> Result<Vec<floe_codec::BareSymbol>, ApiError> {
    let blob_id = request.blob_id;
    let symbols = symbols_for::<GetBareSymbols, _>(inner, request)?;
    Ok(crate::byzantine::bare_symbols(inner, &blob_id, symbols))
}

/// The symbols, proven or bare as method `M` answers them, that this
/// node's slivers contribute to the targets asked for.
fn symbols_for<M, S>(inner: &Inner, request: RecoveryRequest) -> Result<Vec<S>, ApiError>
where
    M: floe_net::Method<Response = Vec<S>>,
    S: floe_codec::Symbol,
{
    let RecoveryRequest { blob_id, targets } = request;
    check_servable(inner, &blob_id)?;
    if targets.len() > usize::from(inner.n_shards) * 2 {
        return Err(ApiError::Limit(format!(
            "blob {blob_id}: at most {} targets per request",
            inner.n_shards * 2
        )));
    }
    let metadata = stored_metadata(inner, &blob_id)?;
    // What the caller can use: per target, no more symbols than a recovery
    // needs, and no more bytes than the answer may carry.
    let budget = M::MAX_RESPONSE_BYTES as usize / 2;
    // Paid for before the slivers are read: one symbol per target and shard
    // held (and the last symbols past the byte budget).
    let symbols_at_most = targets.len().saturating_mul(inner.my_shards().len());
    floe_net::reserve_answer(
        answer_bound(&metadata, symbols_at_most)
            .min(budget.saturating_add(answer_bound(&metadata, targets.len()))),
    )
    .map_err(ApiError::Busy)?;
    let symbols = own_symbols(inner, &metadata, &targets, budget)?;
    Ok(crate::byzantine::symbols(inner, symbols))
}

fn attest_inconsistency(
    inner: &Inner,
    caller: Caller,
    request: SubmitInconsistencyRequest,
) -> Result<Signed<InvalidBlobAttestation>, ApiError> {
    let SubmitInconsistencyRequest { proof } = request;
    let blob_id = proof.blob_id;
    let metadata = stored_metadata(inner, &blob_id)?;
    proof.verify(&metadata).map_err(|e| ApiError::Rejected {
        blob_id,
        reason: format!("not a proof of inconsistency: {e}"),
    })?;
    info!(blob = %blob_id, from = %caller, "attesting a proven inconsistency");
    Ok(Signed::sign(
        ProtocolMessage::new(inner.epoch(), InvalidBlobAttestation { blob_id }),
        &inner.protocol_key,
    ))
}

/// One round of anti-entropy with a peer. Decoding bounded the request to
/// a page ([`RECONCILE_MAX_RANGES`] ranges, [`RECONCILE_MAX_ITEMS`] facts
/// and items); here a range or fact sent twice is handled once, only items
/// this node holds are looked up, and the answer is capped like the request
/// (see `tasks::cap_reply`).
fn reconcile(
    inner: &Inner,
    _: Caller,
    request: ReconcileRequest,
) -> Result<ReconcileResponse, ApiError> {
    let ReconcileRequest {
        messages,
        facts,
        want,
    } = request;
    let messages = distinct_ranges(cap_ranges(messages, RECONCILE_MAX_RANGES));
    let learned = accept_facts(inner, facts)?;
    inner
        .metrics
        .facts_received
        .fetch_add(learned as u64, std::sync::atomic::Ordering::Relaxed);
    let reply = inner
        .digest
        .lock()
        .map(|d| d.respond(&messages))
        .unwrap_or_default();
    let mut wanted: Vec<ItemId> = want;
    wanted.extend(reply.missing_there);
    wanted.sort_unstable();
    wanted.dedup();
    // What this node does not hold is not looked up.
    if let Ok(digest) = inner.digest.lock() {
        wanted.retain(|item| digest.contains(item));
    }
    let (facts, mut unsent) =
        facts_within(inner, &wanted, RECONCILE_FACT_BYTES, RECONCILE_MAX_ITEMS)?;
    // Beyond this the caller finds them again in a later exchange.
    unsent.truncate(RECONCILE_MAX_ITEMS);
    let mut want = reply.missing_here;
    want.sort_unstable();
    want.dedup();
    want.truncate(RECONCILE_MAX_ITEMS);
    Ok(crate::byzantine::reconcile(
        inner,
        ReconcileResponse {
            messages: cap_reply(reply.messages),
            facts,
            want,
            unsent,
        },
    ))
}
