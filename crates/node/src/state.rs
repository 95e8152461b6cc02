//! The node's shared state and its operations: what the request handlers
//! and the background tasks both act through (accepting facts, the facts
//! held for anti-entropy items, status reports, spreading a fact, and the
//! store's errors as protocol errors). The service and the tasks import
//! this module, never each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use floe_api::*;
use floe_codec::{BlobId, ShardIndex};
use floe_consensus::chain::{CommitteeChain, CommitteeProposal};
use floe_consensus::quorum::{Discard, Pacing};
use floe_consensus::{
    BlobState, Committee, DigestIndex, Epoch, EpochClock, Fact, ItemId, KeyPair, Member, PublicKey,
};
use floe_net::{FanOut, Members, Pool};
use floe_store::{Store, StoreError};
use tracing::debug;

use crate::config;
use crate::config::{Limits, Tasks};

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Slivers rebuilt by repair.
    pub slivers_repaired: AtomicU64,
    /// Bytes of recovery symbols fetched by repair (their proofs apart).
    pub repair_bytes_fetched: AtomicU64,
    /// Bytes of the proofs of the recovery symbols repair fetched.
    pub repair_proof_bytes_fetched: AtomicU64,
    /// Bytes of bare recovery symbols repair fetched from peers that do not
    /// hold their source sliver and dropped unread (counted in
    /// `repair_bytes_fetched` too).
    pub repair_bytes_dropped: AtomicU64,
    /// Repair rounds that asked for proven symbols because bare ones did
    /// not rebuild every target (a sender lied, the blob is inconsistent,
    /// or too few answered).
    pub repair_proven_rounds: AtomicU64,
    /// Facts learned from peers by anti-entropy or push.
    pub facts_received: AtomicU64,
    /// Anti-entropy rounds run.
    pub sync_rounds: AtomicU64,
    /// Blobs found inconsistent by this node's repair.
    pub inconsistencies_found: AtomicU64,
    /// Bytes of pairs fetched from previous holders of shards new to this node.
    pub migration_bytes_fetched: AtomicU64,
    /// Pairs fetched from previous holders and stored.
    pub migration_pairs_fetched: AtomicU64,
    /// Anti-entropy exchanges that ran to the end.
    pub full_exchanges: AtomicU64,
    /// Requests served, by kind and outcome.
    pub requests: Mutex<HashMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub(crate) fn count_request(&self, kind: &'static str, outcome: &'static str) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((kind, outcome)).or_default() += 1;
        }
    }

    /// Requests of `kind` served with `outcome` so far.
    pub fn requests(&self, kind: &'static str, outcome: &'static str) -> u64 {
        self.requests.lock().map_or(0, |requests| {
            requests.get(&(kind, outcome)).copied().unwrap_or(0)
        })
    }
}

/// The node: its identity, committee, store, connections and counters.
pub(crate) struct Inner {
    pub(crate) node_id: String,
    /// This node's network key (how committees name it to peers).
    pub(crate) network_key: PublicKey,
    pub(crate) n_shards: u16,
    pub(crate) clock: EpochClock,
    pub(crate) protocol_key: KeyPair,
    pub(crate) store: Store,
    pub(crate) pool: Arc<Pool>,
    pub(crate) limits: Limits,
    pub(crate) tasks: Tasks,
    pub(crate) digest: Mutex<DigestIndex>,
    pub(crate) committees: Mutex<HashMap<Epoch, Arc<Committee>>>,
    pub(crate) metrics: Metrics,
    /// Blobs whose last repair failed: when to try again, and failures so far.
    pub(crate) repair_backoff: Mutex<HashMap<floe_codec::BlobId, (std::time::Instant, u32)>>,
    /// LAB ONLY: how this node lies, if it is a hostile member.
    pub(crate) byzantine: Option<config::Byzantine>,
    /// The committees since genesis, each certified by the one before.
    pub(crate) chain: Mutex<CommitteeChain>,
    /// Next committees this node's operator approved, by digest.
    pub(crate) approved: Mutex<BTreeMap<[u8; 32], CommitteeProposal>>,
    /// The network keys the server treats as members.
    pub(crate) members: Members,
    /// Shards new to this node at the latest committee change, and how far
    /// each is filled.
    pub(crate) intake: Mutex<Option<crate::migration::Intake>>,
    /// Committee changes and the synced notices gathered for each.
    pub(crate) handoffs: Mutex<BTreeMap<Epoch, floe_consensus::handoff::Handoff>>,
    /// Shards this node gave up, with the change that moved each: their
    /// pairs are kept (and served) until the new holder synced.
    pub(crate) given_up: Mutex<BTreeMap<ShardIndex, Epoch>>,
    /// Who may write, and what each client key holds (`[admission]`).
    pub(crate) admission: crate::admission::Admission,
}

/// The anti-entropy items of the facts a state holds.
pub(crate) fn digest_items(state: &BlobState) -> std::collections::BTreeSet<ItemId> {
    state
        .facts()
        .iter()
        .map(|fact| ItemId {
            blob_id: state.blob_id(),
            fact: fact.digest(),
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Inner {
    pub(crate) fn epoch(&self) -> Epoch {
        self.clock.epoch_at(now_ms())
    }

    /// The committee that serves `epoch`, as this node's chain of committee
    /// certificates says (certificates are bound to the epoch they were
    /// formed in).
    pub(crate) fn committee(&self, epoch: Epoch) -> Arc<Committee> {
        let mut committees = self
            .committees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(committee) = committees.get(&epoch) {
            return Arc::clone(committee);
        }
        let committee = Arc::new(
            self.chain
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .committee_at(epoch),
        );
        if committees.len() > 64 {
            committees.clear();
        }
        committees.insert(epoch, Arc::clone(&committee));
        committee
    }

    /// Forgets the committees worked out so far (the chain grew).
    pub(crate) fn forget_committees(&self) {
        self.committees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// This node's network key, if it is a member of `committee`.
    pub(crate) fn me_in(&self, committee: &Committee) -> Option<PublicKey> {
        committee
            .member_by_network_key(&self.network_key)
            .map(|_| self.network_key)
    }

    pub(crate) fn my_shards(&self) -> Vec<ShardIndex> {
        self.store.shards()
    }

    /// The epoch of the latest committee change at or before `epoch`
    /// (genesis's epoch if there was none).
    pub(crate) fn latest_change(&self, epoch: Epoch) -> Epoch {
        self.chain
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .links()
            .map(|l| l.message.body.epoch)
            .filter(|e| *e <= epoch)
            .max()
            .unwrap_or(Epoch(0))
    }

    /// The other members of this epoch's committee and of the one before
    /// (which keeps serving moved shards until the change is done).
    pub(crate) fn peers(&self) -> Vec<Member> {
        let epoch = self.epoch();
        let mut peers: Vec<Member> = Vec::new();
        for committee in [
            self.committee(epoch),
            self.committee(Epoch(epoch.0.saturating_sub(1))),
        ] {
            for member in committee.members() {
                if member.network_key != self.network_key
                    && !peers.iter().any(|p| p.network_key == member.network_key)
                {
                    peers.push(member.clone());
                }
            }
        }
        peers
    }

    /// Makes the anti-entropy digest's items of `blob_id` those of the
    /// facts the store holds for it now: a fact that a newer one superseded
    /// leaves it. Read under the digest's lock, so of two updates racing
    /// the last always sees the last state written.
    pub(crate) fn refresh_digest(
        &self,
        blob_id: &floe_codec::BlobId,
    ) -> Result<(), floe_store::StoreError> {
        let mut digest = self
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = digest_items(&self.store.state(blob_id)?);
        let listed: std::collections::BTreeSet<ItemId> = digest
            .items_in(&floe_consensus::Prefix::of(
                blob_id,
                floe_consensus::MAX_DEPTH,
            ))
            .into_iter()
            .collect();
        for item in listed.difference(&held) {
            digest.remove(item);
        }
        for item in held.difference(&listed) {
            digest.insert(*item);
        }
        Ok(())
    }
}

/// Checks that `pair` is the pair `shard` holds of `blob_id` and that its
/// slivers match the blob's metadata.
pub(crate) fn check_pair(
    n_shards: u16,
    blob_id: BlobId,
    shard: ShardIndex,
    pair: &floe_codec::SliverPair,
    metadata: &floe_codec::BlobMetadata,
) -> Result<(), ApiError> {
    let expected = shard.to_pair_index(n_shards, &blob_id);
    if pair.index != expected {
        return Err(ApiError::Rejected {
            blob_id,
            reason: format!(
                "shard {shard} holds pair {}, not pair {}",
                expected.0, pair.index.0
            ),
        });
    }
    pair.verify(metadata).map_err(|e| ApiError::Rejected {
        blob_id,
        reason: format!("shard {shard}: {e}"),
    })
}

/// Recovery symbols for `targets` from the slivers of this node's shards:
/// per target no more than a recovery needs, and (past the first symbols)
/// no more than `budget` bytes.
pub(crate) fn own_symbols<S: floe_codec::Symbol>(
    inner: &Inner,
    metadata: &floe_codec::BlobMetadata,
    targets: &[(floe_codec::Axis, floe_codec::SliverIndex)],
    budget: usize,
) -> Result<Vec<S>, ApiError> {
    use floe_codec::Axis;
    let blob_id = metadata.blob_id();
    let mut bytes = 0usize;
    let mut per_target: std::collections::BTreeMap<(Axis, floe_codec::SliverIndex), usize> =
        Default::default();
    let mut symbols = Vec::new();
    for axis in [Axis::Primary, Axis::Secondary] {
        let needed = floe_codec::symbols_needed(metadata, axis);
        let mut wanted: Vec<_> = targets
            .iter()
            .filter(|(a, _)| *a == axis)
            .map(|(_, i)| *i)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for &shard in &inner.my_shards() {
            wanted.retain(|i| per_target.get(&(axis, *i)).copied().unwrap_or(0) < needed);
            if wanted.is_empty() || bytes >= budget {
                break;
            }
            let Some(source) = inner
                .store
                .sliver(shard, &blob_id, axis.orthogonal())
                .map_err(store_error)?
            else {
                continue;
            };
            let made =
                S::of_sliver(&source, metadata, &wanted).map_err(|e| ApiError::Rejected {
                    blob_id,
                    reason: e.to_string(),
                })?;
            for symbol in made {
                bytes += symbol.data().len() + symbol.proof_len() + 16;
                *per_target.entry((axis, symbol.target_index())).or_default() += 1;
                symbols.push(symbol);
            }
        }
    }
    Ok(symbols)
}

pub(crate) fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotMyShard { blob_id, shard } => ApiError::NotMyShard { blob_id, shard },
        StoreError::MissingMetadata { blob_id } => ApiError::NotFound {
            blob_id,
            what: "metadata (send it before the slivers)".into(),
        },
        StoreError::BlobGone { blob_id, status } => ApiError::Gone {
            blob_id,
            status: status.into(),
        },
        StoreError::MissingPairs { blob_id, missing } => ApiError::Incomplete { blob_id, missing },
        StoreError::NotConfirmable { blob_id, reason } => ApiError::Rejected { blob_id, reason },
        StoreError::PairLost { blob_id, shard, .. } => ApiError::NotFound {
            blob_id,
            what: format!("the pair of shard {shard} (its file was lost here; repair rebuilds it)"),
        },
        other => ApiError::Internal(other.to_string()),
    }
}

/// Verify `fact` against the committee of its epoch and record it. Returns
/// whether it was new to this node.
pub(crate) fn accept_fact(inner: &Inner, fact: Fact) -> Result<bool, ApiError> {
    Ok(accept_facts(inner, vec![fact])? > 0)
}

/// Verify each fact against the committee of its epoch and record those
/// that verify, synced once; returns how many changed what this node knows.
/// Facts already held are skipped before any signature is checked. If any
/// fact does not verify, the others are still recorded and the first
/// failure is returned. A fact given twice is verified once.
pub(crate) fn accept_facts(inner: &Inner, facts: Vec<Fact>) -> Result<usize, ApiError> {
    let mut verified = Vec::with_capacity(facts.len());
    let mut refused = None;
    // A fact sent twice is verified once.
    let mut seen = std::collections::HashSet::with_capacity(facts.len());
    for fact in facts {
        let blob_id = fact.blob_id();
        let item = ItemId {
            blob_id,
            fact: fact.digest(),
        };
        if !seen.insert(item) {
            continue;
        }
        if inner
            .digest
            .lock()
            .map(|d| d.contains(&item))
            .unwrap_or(false)
        {
            continue;
        }
        let committee = inner.committee(fact.epoch());
        match fact.verify(&committee) {
            Ok(fact) => verified.push(fact),
            Err(e) => {
                refused.get_or_insert(ApiError::BadCertificate {
                    blob_id,
                    reason: e.to_string(),
                });
            }
        }
    }
    let mut changed = 0;
    if !verified.is_empty() {
        let blobs: std::collections::BTreeSet<BlobId> =
            verified.iter().map(|f| f.fact().blob_id()).collect();
        let recorded = inner.store.record_facts(verified, inner.epoch());
        // Whatever was written, also before an error, is in the digest.
        for blob_id in &blobs {
            inner.refresh_digest(blob_id).map_err(store_error)?;
        }
        for (before, after) in recorded.map_err(store_error)? {
            // Unchanged: superseded by what this node already holds.
            if before != after {
                debug!(blob = %after.blob_id(), "fact recorded");
                changed += 1;
            }
        }
    }
    match refused {
        Some(error) => Err(error),
        None => Ok(changed),
    }
}

/// This node's status of a blob, with its proof.
pub(crate) fn status_report(inner: &Inner, blob_id: &BlobId) -> Result<BlobStatusAnswer, ApiError> {
    let epoch = inner.epoch();
    let state = inner.store.state(blob_id).map_err(store_error)?;
    let status = state.status(epoch);
    Ok(BlobStatusAnswer { epoch, status })
}

pub(crate) fn peer_keys(inner: &Inner) -> Vec<PublicKey> {
    inner.peers().into_iter().map(|m| m.network_key).collect()
}

/// Send a new fact to every peer, in the background.
pub(crate) fn push_fact(inner: &Inner, fact: Fact) {
    let pool = Arc::clone(&inner.pool);
    let peers = peer_keys(inner);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        FanOut::new(peers, Pacing::ALL)
            .run(&mut Discard, |peer| {
                let (pool, fact) = (Arc::clone(&pool), fact.clone());
                async move {
                    if let Err(e) = pool.call::<PutFact>(&peer, &fact).await {
                        debug!(blob = %fact.blob_id(), error = %e, "fact not pushed; anti-entropy will deliver it");
                    }
                }
            })
            .await;
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
