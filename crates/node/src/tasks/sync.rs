//! Anti-entropy: paged reconciliation of facts with one peer at a time, and
//! the bounds on what one exchange may ask for or answer.

use super::*;

/// One anti-entropy exchange with a random peer, one not ranked last for
/// lying or slowness if there is any; the exchange gets [`SYNC_DEADLINE`].
pub(super) async fn sync_once(inner: Arc<Inner>) {
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
        Ok(Ok(())) => {
            inner.metrics.full_exchanges.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => debug!(%peer, error = %e, "anti-entropy round failed"),
        // A single request that timed out has ranked the peer down already.
        Err(_) => debug!(%peer, "anti-entropy exchange cut off at its deadline; the next resumes"),
    }
}

/// How long one anti-entropy exchange may run; a request of it waits
/// [`SYNC_REQUEST_TIMEOUT`] at most.
pub(super) const SYNC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);
pub(super) const SYNC_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Requests one anti-entropy exchange makes at most; what is left is found
/// again by the next exchange.
pub(super) const MAX_SYNC_REQUESTS: usize = 4096;

/// Items one exchange keeps to push, and to ask for, at most (64 MiB each):
/// beyond, a later exchange finds them.
pub(super) const MAX_EXCHANGE_ITEMS: usize = 1 << 20;

/// Ranges one exchange keeps to send at most (about 5 MiB): an honest
/// exchange of a million facts needs a few tens of thousands at once.
pub(super) const MAX_EXCHANGE_RANGES: usize = 1 << 16;

/// The caller's side of one anti-entropy exchange: what it still has to
/// send, push and ask for. Each request takes a bounded page of each
/// ([`RECONCILE_MAX_RANGES`], [`RECONCILE_FACT_BYTES`],
/// [`RECONCILE_MAX_ITEMS`]) and the next resumes where it stopped, so an
/// exchange of any size goes through in messages of bounded size.
#[derive(Debug, Default)]
pub(super) struct Exchange {
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

/// The first `n` items of a set, removed from it.
pub(super) fn take_first(set: &mut BTreeSet<ItemId>, n: usize) -> Vec<ItemId> {
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
