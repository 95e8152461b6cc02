//! Following the committee chain: the committee changes certified since
//! the last one this client knows, learned once per epoch before a request
//! goes out, in one lookup however many callers start at once, and bounded
//! in time whatever a member does with its answer (each call at most
//! three seconds). A lookup too few members answered is not run again for
//! ten seconds: meanwhile requests go out with the chain known.

use floe_consensus::chain::CommitteeCertificate;
use floe_consensus::quorum::Collect;

use super::*;

/// The most one member's answer to a round of the lookup is waited for
/// (its call then fails, and the pool counts it against the member).
const CHAIN_WAIT: Duration = Duration::from_secs(3);

/// After a lookup that too few members answered, how long requests go out
/// with the chain known before another lookup is tried.
const CHAIN_RETRY: Duration = Duration::from_secs(10);

impl Client {
    /// Learns every committee change since the last one this client knows:
    /// asks the members of the current committee for the committee
    /// certificates after it, verifies each against the committee before it,
    /// and keeps the longest chain that verifies. A node that serves a link
    /// that does not verify is reported. Answers the epoch of the latest
    /// committee change.
    pub async fn follow_chain(&self) -> Result<Epoch, ClientError> {
        let _one = self.following.lock().await;
        self.follow().await.map(|(epoch, _)| epoch)
    }

    /// [`Client::follow_chain`], and whether members holding a quorum of
    /// shards answered its last round (the one that found nothing newer):
    /// only then is the chain known to be followed.
    async fn follow(&self) -> Result<(Epoch, bool), ClientError> {
        // Pages of links until no member knows more.
        for _ in 0..1024 {
            let chain = self.chain();
            let after = chain.latest_epoch();
            let current = chain.committee_at(self.epoch().max(after));
            // Every member is waited for (each call bounded): a change only
            // some members have received yet is still learned, where
            // stopping at a quorum could miss it for the whole epoch.
            let mut answers = Collect::default();
            FanOut::new(
                current
                    .members()
                    .iter()
                    .map(|m| m.network_key)
                    .collect::<Vec<_>>(),
                Pacing::ALL,
            )
            // Each call bounded: a member that holds its answer back delays
            // no request by more than this, and its call fails.
            .run(&mut answers, |key| {
                let pool = Arc::clone(&self.pool);
                async move {
                    pool.call_with_timeout::<GetCommitteeChain>(&key, &after, CHAIN_WAIT)
                        .await
                        .ok()
                }
            })
            .await;
            let heard = current.is_quorum(answered_weight(&current, &answers.0));
            let mut best = chain.clone();
            for (key, links) in answers.0 {
                let Some(links) = links else { continue };
                if links.len() > MAX_CHAIN_LINKS {
                    self.pool.report_misbehaviour(
                        &key,
                        format!(
                            "answered a committee chain lookup with {} links, more than the {MAX_CHAIN_LINKS} one answer carries",
                            links.len()
                        ),
                    );
                    continue;
                }
                let mut candidate = chain.clone();
                for link in links {
                    if let Err(e) = candidate.extend(link) {
                        self.pool.report_misbehaviour(
                            &key,
                            format!("served a committee certificate that does not verify: {e}"),
                        );
                        break;
                    }
                }
                if candidate.latest_epoch() > best.latest_epoch() {
                    best = candidate;
                }
            }
            if best.latest_epoch() == after {
                return Ok((after, heard));
            }
            // Newest committee first, each member once: a member that moved
            // keeps its latest address (an older one would replace it, and
            // drop its connection and health, on every round).
            let mut added = std::collections::HashSet::new();
            let members: Vec<&Member> = best.members_ever().collect();
            for member in members.into_iter().rev() {
                if added.insert(member.network_key) {
                    self.pool
                        .add_peer(member.network_key, member.address.clone())
                        .map_err(|e| ClientError::Rejected(e.to_string()))?;
                }
            }
            let mut known = self
                .chain
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Never shorter than what is known.
            if best.latest_epoch() > known.latest_epoch() {
                *known = best;
            }
        }
        Ok((self.chain().latest_epoch(), false))
    }

    /// The current epoch (read after the lookup, which may take until the
    /// next) and the committee serving it, having followed the chain
    /// in this epoch (a committee change certified meanwhile is learned
    /// before any request goes out). Callers that start at once share one
    /// lookup; an epoch counts as followed once members holding a quorum of
    /// shards answered. A lookup fewer answered is tried again ten seconds
    /// later; until then, and if none answers, the chain known so
    /// far decides.
    pub async fn serving(&self) -> (Epoch, Committee) {
        let epoch = self.epoch();
        let followed = || self.followed.load(std::sync::atomic::Ordering::Acquire) > epoch.0;
        if !followed() {
            let mut unheard = self.following.lock().await;
            // Another caller may have looked up while this one waited.
            let due = unheard.is_none_or(|at: std::time::Instant| at.elapsed() >= CHAIN_RETRY);
            if !followed() && due {
                match self.follow().await {
                    Ok((_, true)) => {
                        self.followed
                            .fetch_max(epoch.0 + 1, std::sync::atomic::Ordering::AcqRel);
                        *unheard = None;
                    }
                    Ok((latest, false)) => {
                        debug!(%latest, retry = ?CHAIN_RETRY, "fewer than a quorum of shards answered the committee chain lookup");
                        *unheard = Some(std::time::Instant::now());
                    }
                    Err(e) => {
                        debug!(error = %e, "following the committee chain");
                        *unheard = Some(std::time::Instant::now());
                    }
                }
            }
        }
        let now = self.epoch();
        (now, self.committee(now))
    }
}

/// The shards of the members of `committee` whose answer came (a failed
/// call, or an answer from outside the committee, weighs nothing).
fn answered_weight(
    committee: &Committee,
    answers: &[(PublicKey, Option<Vec<CommitteeCertificate>>)],
) -> u32 {
    answers
        .iter()
        .filter(|(_, links)| links.is_some())
        .filter_map(|(key, _)| committee.member_by_network_key(key))
        .fold(0u32, |weight, member| {
            weight.saturating_add(committee.weight(member))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A round is heard once members holding a quorum of shards answered,
    /// however many failed; a failed call weighs nothing, and an answer
    /// from outside the committee weighs nothing.
    #[test]
    fn a_round_is_heard_at_a_quorum_of_shards() {
        // Four members of one shard each: a quorum is three.
        let (committee, _) = crate::testing::committee(Epoch(0));
        let keys: Vec<PublicKey> = committee.members().iter().map(|m| m.network_key).collect();
        let stranger = KeyPair::from_seed(&[9; 32]).public();
        let mut answers = vec![
            (keys[0], None),
            (stranger, Some(Vec::new())),
            (keys[1], Some(Vec::new())),
            (keys[2], Some(Vec::new())),
        ];
        assert!(!committee.is_quorum(answered_weight(&committee, &answers)));
        answers.push((keys[3], Some(Vec::new())));
        assert!(committee.is_quorum(answered_weight(&committee, &answers)));
    }
}
