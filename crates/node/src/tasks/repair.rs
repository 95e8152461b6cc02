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
pub(super) const REPAIR_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Targets rebuilt per round of requests: bounds the symbols held at once.
pub(super) const PAIRS_PER_ROUND: usize = 8;

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
pub(super) const REPAIR_FANOUT: usize = 2;
/// Without an answer for this long, one more peer is asked (a peer that
/// trickles its answer holds no repair back).
pub(super) const REPAIR_HEDGE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ask peers, healthiest first and a few at a time, until every target has
/// enough valid symbols from distinct sources; stops waiting for the others
/// the moment it has. A peer whose symbols fail their proofs is reported
/// (ranked last for a while); one that times out is ranked down by the pool.
pub(super) async fn gather_symbols(
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
pub(super) async fn certify_invalid(
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
