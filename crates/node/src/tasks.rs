//! Background work, split by job: anti-entropy (sync), repair and
//! invalid-blob certification (repair), garbage collection (gc) and the
//! epoch clock (epochs), each on its own interval with typed errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use floe_api::*;
use floe_codec::{recover_sliver, Axis, BlobId, RecoveryError, SliverIndex, SliverPair, Symbol};
use floe_consensus::quorum::{
    Collect, Discard, Failure, MetadataTally, Pacing, SignatureTally, SymbolTally,
};
use floe_consensus::{Fact, InvalidBlobAttestation, ItemId, ProtocolMessage, PublicKey, Signed};
use floe_net::FanOut;
use rand::seq::SliceRandom;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::reconcile::*;
use crate::state::{
    accept_fact, accept_facts, check_pair, facts_within, now_ms, own_symbols, peer_keys, push_fact,
    Inner,
};

mod epochs;
mod gc;
mod holders;
mod migrate;
mod repair;
mod sync;

use epochs::*;
use gc::*;
use migrate::*;
use repair::*;
use sync::*;

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
    /// Too few shards attested an inconsistency for an invalid-blob certificate.
    #[error(
        "blob {blob_id}: {got} of the {needed} shards an invalid-blob certificate needs attested"
    )]
    TooFewAttestations {
        /// The blob.
        blob_id: BlobId,
        /// Shards needed (validity).
        needed: u32,
        /// Shards that attested.
        got: u32,
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
        // Approved next committees are certified once enough members
        // approved; links this node missed are fetched.
        every(inner.tasks.sync_interval(), inner, |inner| {
            Box::pin(async move {
                crate::handover::certify_approved(&inner).await;
                crate::handover::follow_chain(&inner).await;
            })
        }),
        // Shards move at a committee change.
        every(std::time::Duration::from_secs(1), inner, |inner| {
            Box::pin(migrate_pass(inner))
        }),
    ]
}

mod futures_lite {
    pub(crate) type BoxedWork = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

async fn on_blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    work: impl FnOnce(&Inner) -> T + Send + 'static,
) -> Option<T> {
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || work(&inner)).await.ok()
}
