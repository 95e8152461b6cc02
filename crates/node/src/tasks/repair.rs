//! Repair: rebuilding missing pairs from peers' recovery symbols, and
//! certifying a blob invalid when its encoding proves inconsistent.

use super::*;

/// Repair every drifting blob, a bounded number at a time. A blob whose
/// repair failed (peers not answering, or lacking the slivers themselves)
/// waits before it is tried again, doubling up to [`REPAIR_BACKOFF_MAX`].
pub(super) async fn repair_pass(inner: Arc<Inner>) {
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
    let pacing = Pacing::window(inner.tasks.repair_concurrency, None);
    FanOut::new(blobs, pacing)
        .run(&mut Discard, |blob_id| {
            let inner = Arc::clone(&inner);
            async move {
                let outcome = repair_blob(&inner, blob_id).await;
                let mut backoff = inner
                    .repair_backoff
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
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
            }
        })
        .await;
}

/// Longest wait before retrying a blob whose repair failed.
pub(super) const REPAIR_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Symbol bytes one round of requests may rebuild: bounds the symbols held
/// at once, while letting a node rebuild all its pairs of a blob in one
/// round (so the secondaries it rebuilds serve all its primaries).
pub(super) const ROUND_BYTES: usize = 16 << 20;

/// Most pairs rebuilt per round, whatever their size.
pub(super) const PAIRS_PER_ROUND: usize = 64;

/// The blob's metadata: stored here, or from the first peer whose answer
/// matches the blob ID (healthiest first; without an answer for
/// [`REPAIR_HEDGE`], one more peer is asked, so a slow peer holds nothing
/// back). A peer serving metadata of another blob is reported.
pub(super) async fn metadata_for(
    inner: &Arc<Inner>,
    blob_id: BlobId,
) -> Result<floe_codec::BlobMetadata, TaskError> {
    if let Some(metadata) = inner.store.metadata(&blob_id)? {
        return Ok(metadata);
    }
    let mut tally = MetadataTally::new(blob_id);
    FanOut::new(
        inner.pool.rank(&peer_keys(inner)),
        Pacing::window(1, Some(REPAIR_HEDGE)),
    )
    .run(&mut tally, |peer| {
        let pool = Arc::clone(&inner.pool);
        async move {
            let answer = pool.call::<GetMetadata>(&peer, &blob_id).await;
            answer.map_err(|e| e.to_string())
        }
    })
    .await;
    report_failures(inner, blob_id, "metadata", tally.failures());
    let metadata = tally.finish().map_err(|_| TaskError::NoMetadata(blob_id))?;
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
    // Shards still fetched from their previous holder wait for it.
    let fetching = inner.shards_fetching();
    let mut missing = inner.store.missing_pairs(&blob_id)?;
    missing.retain(|shard| !fetching.contains(shard));
    if missing.is_empty() {
        return Ok(());
    }
    let metadata = metadata_for(inner, blob_id).await?;
    let n = inner.n_shards;
    let config = metadata.config();
    let pair_bytes = metadata.symbol_size().max(1)
        * usize::from(config.primary_source_symbols() + config.secondary_source_symbols());
    let per_round = (ROUND_BYTES / pair_bytes).clamp(1, PAIRS_PER_ROUND);
    for shards in missing.chunks(per_round) {
        let pairs: Vec<_> = shards
            .iter()
            .map(|shard| shard.to_pair_index(n, &blob_id))
            .collect();
        // Secondaries first: each needs only f + 1 symbols, and once
        // rebuilt each gives every primary of this node one symbol, so
        // peers are asked for that many fewer.
        let secondaries: Vec<_> = pairs
            .iter()
            .map(|pair| (Axis::Secondary, pair.sliver_index(Axis::Secondary, n)))
            .collect();
        let Some(mut rebuilt) = rebuild(inner, &metadata, &secondaries, &[]).await? else {
            return Ok(());
        };
        let primaries: Vec<_> = pairs
            .iter()
            .map(|pair| (Axis::Primary, pair.sliver_index(Axis::Primary, n)))
            .collect();
        let fresh: Vec<floe_codec::Sliver> = rebuilt.values().cloned().collect();
        let Some(primary_slivers) = rebuild(inner, &metadata, &primaries, &fresh).await? else {
            return Ok(());
        };
        rebuilt.extend(primary_slivers);
        for (shard, pair) in shards.iter().zip(pairs) {
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

/// Rebuilds `targets` from peers' symbols, this node's own and those of
/// the slivers it just rebuilt (`fresh`); `None` if the blob proved
/// inconsistently encoded (it is then certified invalid).
///
/// Bare symbols first, each taken only from the holder of its source
/// sliver: each sliver they rebuild is checked against its hash in the
/// metadata, which is what a proof per symbol would have secured, without
/// the proofs' bytes (several times a small symbol's). A target that fails
/// its hash (a sender lied, or the blob is inconsistent) or that bare
/// symbols could not cover is rebuilt again from proven symbols, asked of
/// the bare senders first: they prove the inconsistency, or show which
/// bare symbols were false, and their senders are reported as liars
/// (ranked last for a while). A liar costs a repair one extra round.
async fn rebuild(
    inner: &Arc<Inner>,
    metadata: &floe_codec::BlobMetadata,
    targets: &[(Axis, SliverIndex)],
    fresh: &[floe_codec::Sliver],
) -> Result<Option<BTreeMap<(Axis, SliverIndex), floe_codec::Sliver>>, TaskError> {
    let blob_id = metadata.blob_id();
    let mut rebuilt = BTreeMap::new();
    let mut failed = BTreeMap::new();
    match gather_symbols::<GetBareSymbols, _>(inner, metadata, targets, fresh, &[]).await {
        Ok(symbols) => {
            for (target, sent) in symbols {
                match recover(metadata, target, symbols_of(&sent)).await? {
                    Ok(sliver) => {
                        rebuilt.insert(target, sliver);
                    }
                    Err(e) => {
                        debug!(blob = %blob_id, error = %e, "asking for proven symbols");
                        failed.insert(target, sent);
                    }
                }
            }
        }
        Err(e) => debug!(blob = %blob_id, error = %e, "asking for proven symbols"),
    }
    let left: Vec<_> = targets
        .iter()
        .filter(|target| !rebuilt.contains_key(*target))
        .copied()
        .collect();
    if left.is_empty() {
        return Ok(Some(rebuilt));
    }
    inner
        .metrics
        .repair_proven_rounds
        .fetch_add(1, Ordering::Relaxed);
    let mut suspects: Vec<PublicKey> = failed
        .values()
        .flatten()
        .map(|(peer, _)| *peer)
        .filter(|peer| *peer != inner.network_key)
        .collect();
    suspects.sort_unstable();
    suspects.dedup();
    let symbols =
        gather_symbols::<GetRecoverySymbols, _>(inner, metadata, &left, fresh, &suspects).await?;
    blame_bare_liars(inner, metadata, &failed, &symbols).await;
    for target in left {
        let theirs = symbols
            .get(&target)
            .map_or_else(Vec::new, |s| symbols_of(s));
        match recover(metadata, target, theirs).await? {
            Ok(sliver) => {
                rebuilt.insert(target, sliver);
            }
            Err(RecoveryError::Inconsistent(proof)) => {
                inner
                    .metrics
                    .inconsistencies_found
                    .fetch_add(1, Ordering::Relaxed);
                warn!(blob = %blob_id, "repair proved the blob inconsistently encoded");
                certify_invalid(inner, *proof).await?;
                return Ok(None);
            }
            Err(source) => return Err(TaskError::Recovery { blob_id, source }),
        }
    }
    Ok(Some(rebuilt))
}

/// Symbols of each target, with who sent each.
type Sent<S> = BTreeMap<(Axis, SliverIndex), Vec<(PublicKey, S)>>;

/// One target's symbols, without their senders.
fn symbols_of<S: Clone>(sent: &[(PublicKey, S)]) -> Vec<S> {
    sent.iter().map(|(_, symbol)| symbol.clone()).collect()
}

/// Reports the senders of bare symbols that differ from the proven symbol
/// of the same target and source: the proven one is the committed value,
/// so whatever else was sent for it is a lie, whether or not the blob is
/// consistent. A sender whose sources the proven round did not cover is
/// asked for their proven symbols ([`REPAIR_FANOUT`] senders at a time,
/// each for the targets it sent bare symbols of). Each liar is reported
/// once; a sender that backs a bare symbol with no proven one cannot be
/// proven false, and is ranked down as if it had timed out.
async fn blame_bare_liars(
    inner: &Arc<Inner>,
    metadata: &floe_codec::BlobMetadata,
    bare: &Sent<floe_codec::BareSymbol>,
    proven: &Sent<floe_codec::RecoverySymbol>,
) {
    let blob_id = metadata.blob_id();
    let mut committed: BTreeMap<(Axis, SliverIndex, SliverIndex), bytes::Bytes> = proven
        .iter()
        .flat_map(|(target, sent)| {
            sent.iter()
                .map(move |(_, s)| ((target.0, target.1, s.source_index), s.data.clone()))
        })
        .collect();
    let mut unchecked: BTreeMap<PublicKey, BTreeSet<(Axis, SliverIndex)>> = BTreeMap::new();
    for (target, sent) in bare {
        for (peer, symbol) in sent {
            let key = (target.0, target.1, symbol.source_index);
            if *peer != inner.network_key && !committed.contains_key(&key) {
                unchecked.entry(*peer).or_default().insert(*target);
            }
        }
    }
    let mut lies = Vec::new();
    if !unchecked.is_empty() {
        // Two at a time, each answer cut to what was asked and checked off
        // the runtime as it arrives: only asked-for values are kept.
        let mut answers = Collect(Vec::new());
        let peers: Vec<PublicKey> = unchecked.keys().copied().collect();
        FanOut::new(peers, Pacing::window(REPAIR_FANOUT, None))
            .run(&mut answers, |peer| {
                let pool = Arc::clone(&inner.pool);
                let asked = unchecked.get(&peer).cloned().unwrap_or_default();
                let metadata = metadata.clone();
                async move {
                    let request = RecoveryRequest {
                        blob_id,
                        targets: asked.iter().copied().collect(),
                    };
                    let timeout = 2 * REPAIR_HEDGE;
                    let symbols = pool
                        .call_with_timeout::<GetRecoverySymbols>(&peer, &request, timeout)
                        .await
                        .unwrap_or_default();
                    tokio::task::spawn_blocking(move || {
                        let mut bad = false;
                        let mut kept = Vec::new();
                        for symbol in symbols {
                            let target = (symbol.target_axis(), symbol.target_index());
                            if !asked.contains(&target) {
                                continue;
                            }
                            if symbol.verify(&metadata).is_err() {
                                bad = true;
                                continue;
                            }
                            kept.push(((target.0, target.1, symbol.source_index), symbol.data));
                        }
                        (kept, bad)
                    })
                    .await
                    .unwrap_or_default()
                }
            })
            .await;
        for (peer, (kept, bad)) in answers.0 {
            if bad {
                lies.push((
                    peer,
                    Failure::Lie(format!(
                        "sent a proven recovery symbol of blob {blob_id} failing its proof"
                    )),
                ));
            }
            for (key, data) in kept {
                committed.entry(key).or_insert(data);
            }
        }
    }
    let mut silent = BTreeSet::new();
    for (target, sent) in bare {
        for (peer, symbol) in sent {
            if *peer == inner.network_key || lies.iter().any(|(liar, _)| liar == peer) {
                continue;
            }
            let key = (target.0, target.1, symbol.source_index);
            match committed.get(&key) {
                Some(data) if *data != symbol.data => lies.push((
                    *peer,
                    Failure::Lie(format!(
                        "sent a bare recovery symbol of blob {blob_id} ({} sliver {} for {} sliver {}) that differs from the proven one",
                        symbol.source_axis, symbol.source_index, target.0, target.1
                    )),
                )),
                Some(_) => {}
                // It would not back its bare symbol with a proven one.
                None => {
                    silent.insert(*peer);
                }
            }
        }
    }
    report_failures(inner, blob_id, "bare recovery symbols", &lies);
    for peer in silent {
        if !lies.iter().any(|(liar, _)| *liar == peer) {
            inner.pool.report_slow(&peer);
        }
    }
}

/// Rebuilds one sliver from `symbols`, off the runtime.
async fn recover<S: Symbol>(
    metadata: &floe_codec::BlobMetadata,
    (axis, index): (Axis, SliverIndex),
    symbols: Vec<S>,
) -> Result<Result<floe_codec::Sliver, RecoveryError>, TaskError> {
    let metadata = metadata.clone();
    tokio::task::spawn_blocking(move || recover_sliver(&metadata, axis, index, symbols))
        .await
        .map_err(|_| TaskError::Interrupted("rebuilding a sliver"))
}

/// Peers asked at once for recovery symbols.
pub(super) const REPAIR_FANOUT: usize = 2;
/// Without an answer for this long, one more peer is asked (a peer that
/// trickles its answer holds no repair back).
pub(super) const REPAIR_HEDGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ask peers with method `M` (proven or bare symbols), `first` and then the
/// healthiest, a few at a time, until every target has enough checked
/// symbols from distinct sources; stops waiting for the others the moment
/// it has. A bare symbol counts only from the holder of its source sliver
/// (one cannot vouch for another's); a proven one vouches for itself. A
/// peer whose symbols fail their checks is reported (ranked last for a
/// while); one that times out is ranked down by the pool.
pub(super) async fn gather_symbols<M, S>(
    inner: &Arc<Inner>,
    metadata: &floe_codec::BlobMetadata,
    targets: &[(Axis, SliverIndex)],
    fresh: &[floe_codec::Sliver],
    first: &[PublicKey],
) -> Result<Sent<S>, TaskError>
where
    M: floe_net::Method<Request = RecoveryRequest, Response = Vec<S>>,
    M::Error: std::fmt::Display,
    S: Symbol,
{
    let blob_id = metadata.blob_id();
    let request = RecoveryRequest {
        blob_id,
        targets: targets.to_vec(),
    };
    let mut tally = SymbolTally::new(metadata, targets);
    // This node's own slivers count first: with a third of the shards down,
    // the other live shards alone may be too few. So do the slivers it
    // just rebuilt.
    let own: Vec<S> = {
        let (metadata, targets, fresh) = (metadata.clone(), targets.to_vec(), fresh.to_vec());
        on_blocking(inner, move |inner| {
            let mut own = own_symbols(inner, &metadata, &targets, usize::MAX).unwrap_or_default();
            for sliver in &fresh {
                let wanted: Vec<SliverIndex> = targets
                    .iter()
                    .filter(|(axis, _)| *axis == sliver.axis.orthogonal())
                    .map(|(_, index)| *index)
                    .collect();
                own.extend(S::of_sliver(sliver, &metadata, &wanted)?);
            }
            Ok(own)
        })
        .await
        .ok_or(TaskError::Interrupted("making this node's own symbols"))?
        .map_err(|e| TaskError::Recovery {
            blob_id,
            source: RecoveryError::Target(e),
        })?
    };
    let own_bytes: u64 = own.iter().map(|s| s.data().len() as u64).sum();
    let own_proof_bytes: u64 = own.iter().map(|s| s.proof_len() as u64).sum();
    if !own.is_empty() {
        use floe_consensus::quorum::Tally as _;
        tally.answer(inner.network_key, Ok(own), std::time::Instant::now());
    }
    // Only bare symbols are bound to their holders: proven ones vouch for
    // themselves.
    let holders = (!S::PROVEN).then(|| {
        let epoch = inner.epoch();
        let committees = [
            inner.committee(epoch),
            inner.committee(floe_consensus::Epoch(epoch.0.saturating_sub(1))),
        ];
        super::holders::SourceHolders::new(&committees, metadata.blob_id())
    });
    let mut held = super::holders::HeldOnly::new(tally, holders);
    let mut order: Vec<PublicKey> = first.to_vec();
    order.extend(
        inner
            .pool
            .rank(&peer_keys(inner))
            .into_iter()
            .filter(|peer| !first.contains(peer)),
    );
    let mut calls = FanOut::new(order, Pacing::window(REPAIR_FANOUT, Some(REPAIR_HEDGE)));
    calls
        .run(&mut held, |peer| {
            let (pool, request) = (Arc::clone(&inner.pool), request.clone());
            async move {
                pool.call::<M>(&peer, &request)
                    .await
                    .map_err(|e| e.to_string())
            }
        })
        .await;
    let (tally, dropped) = (held.tally, held.dropped);
    // Bytes of dropped symbols were fetched all the same, and are counted.
    inner.metrics.repair_bytes_fetched.fetch_add(
        tally.bytes().saturating_sub(own_bytes) + dropped,
        Ordering::Relaxed,
    );
    inner
        .metrics
        .repair_bytes_dropped
        .fetch_add(dropped, Ordering::Release);
    inner.metrics.repair_proof_bytes_fetched.fetch_add(
        tally.proof_bytes().saturating_sub(own_proof_bytes),
        Ordering::Relaxed,
    );
    report_failures(inner, blob_id, "recovery symbols", tally.failures());
    // Calls still running are cancelled below: they are no longer needed. A
    // peer that held its answer back for several hedges while others
    // answered is ranked down, as if it had timed out: cancelling it must
    // not leave its record clean.
    for (peer, asked) in calls.waiting() {
        if asked.elapsed() >= 4 * REPAIR_HEDGE {
            inner.pool.report_slow(peer);
        }
    }
    drop(calls);
    tally
        .finish_with_senders()
        .map_err(|_| TaskError::NotEnoughSymbols(blob_id))
}

/// Reports the peers whose answers about `blob_id` were lies (ranked last
/// for a while) and logs the others' failures.
fn report_failures(inner: &Inner, blob_id: BlobId, what: &str, failures: &[(PublicKey, Failure)]) {
    inner.pool.report_lies(failures, |peer| Some(*peer));
    for (peer, failure) in failures.iter().filter(|(_, f)| !f.is_lie()) {
        debug!(blob = %blob_id, %peer, error = %failure, "no {what} from peer");
    }
}

/// Attest an inconsistency, gather attestations from `f + 1` shards, and
/// spread the resulting invalid-blob certificate.
pub(super) async fn certify_invalid(
    inner: &Arc<Inner>,
    proof: floe_codec::InconsistencyProof,
) -> Result<(), TaskError> {
    let blob_id = proof.blob_id;
    let epoch = inner.epoch();
    let committee = inner.committee(epoch);
    let message = ProtocolMessage::new(epoch, InvalidBlobAttestation { blob_id });
    let mut tally = SignatureTally::new(&committee, message.clone());
    tally
        .add_own(&Signed::sign(message, &inner.protocol_key))
        .map_err(|source| TaskError::Certificate { blob_id, source })?;
    FanOut::new(peer_keys(inner), Pacing::ALL)
        .run(&mut tally, |peer| {
            let pool = Arc::clone(&inner.pool);
            let request = SubmitInconsistencyRequest {
                proof: proof.clone(),
            };
            async move {
                let answer = pool.call::<SubmitInconsistency>(&peer, &request).await;
                answer.map_err(|e| e.to_string())
            }
        })
        .await;
    report_failures(inner, blob_id, "attestation", tally.failures());
    let certificate = tally
        .finish()
        .map_err(|shortfall| TaskError::TooFewAttestations {
            blob_id,
            needed: shortfall.needed,
            got: shortfall.got,
        })?;
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
