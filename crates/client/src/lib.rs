//! floe-client: store, read, status and delete blobs on a Floe committee.
//!
//! Every answer is a protocol fact with its proof: a stored blob comes back
//! with its certificate, a read verifies every sliver against the blob ID,
//! and a status is a verified certificate, an invalid-blob certificate, a
//! deletion, or the statement that shards forming a quorum know none.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_api::*;
use floe_codec::{
    decode_bytes, encode, Axis, BlobId, BlobMetadata, DecodeCheck, ShardIndex, Sliver, SliverIndex,
    SliverPair,
};
use floe_consensus::chain::CommitteeChain;
use floe_consensus::handoff::Handoff;
use floe_consensus::quorum::{
    AllSucceed, DeliveryTally, Failure, MetadataTally, Observed, Pacing, Shortfall, SignatureTally,
    SliverTally, StatusTally,
};
use floe_consensus::{
    BlobCertificate, BlobDeletion, Committee, CommitteeFile, DeletionProof, Epoch, EpochClock,
    Fact, InvalidBlobCertificate, KeyPair, Member, MemberIndex, ProtocolMessage, PublicKey, Signed,
    StorageConfirmation,
};
use floe_net::{FanOut, NetConfig, Pool, RpcError};
use tokio::sync::Semaphore;
use tracing::debug;

mod delete;
mod error;
mod follow;
mod read;
mod store;
#[cfg(test)]
mod testing;

pub use delete::KeptBy;
pub use error::ClientError;
/// A blob's status (the one status type, from floe-consensus), and the
/// status shards forming a quorum answered for.
pub use floe_consensus::{quorum::QuorumStatus, BlobStatus};

/// How long `status` waits for the remaining nodes once a quorum answered.
const STATUS_GRACE: Duration = Duration::from_millis(300);

/// How long a store's own status check waits beyond a quorum's answers: not
/// at all. It only decides whether an upload can be skipped, and a
/// certificate that a quorum's answers miss costs a redundant (still
/// correct) certification, not a wrong answer; waiting for the slowest node
/// would hold every new blob's store back by it.
const STORE_CHECK_GRACE: Duration = Duration::ZERO;

/// How long a store whose certificate has formed still waits for its
/// status check: a quorum that just confirmed answers in a round trip, and
/// nodes that hold their status answers back must not hold a certified
/// store back for their calls' whole timeout. Past it, the store answers
/// with its own certificate (valid, if perhaps not the first).
const STORE_CHECK_AFTER_CERTIFY: Duration = Duration::from_secs(2);

/// The error a read of a blob with this status ends in, if it cannot be read.
fn unreadable(status: QuorumStatus, blob_id: BlobId, n_shards: u16) -> Option<ClientError> {
    Some(match status.status {
        BlobStatus::Certified { .. } => return None,
        BlobStatus::Invalid { certificate } => ClientError::Invalid {
            blob_id,
            certificate: Box::new(certificate),
        },
        BlobStatus::Expired { certificate } => ClientError::Expired {
            blob_id,
            end_epoch: certificate.message.body.end_epoch,
        },
        BlobStatus::Deleted { proof } => ClientError::Deleted {
            blob_id,
            proof: Box::new(Fact::Deleted(proof)),
        },
        BlobStatus::Unknown | BlobStatus::Pending => ClientError::NotCertified {
            blob_id,
            answered: status.answered,
            n_shards,
        },
    })
}

/// What `store` achieved.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    /// The blob ID.
    pub blob_id: BlobId,
    /// Its certificate.
    pub certificate: BlobCertificate,
    /// The last epoch it is stored in.
    pub end_epoch: Epoch,
    /// False when the blob was already certified and nothing was uploaded.
    pub newly_certified: bool,
}

/// A step of a store or read, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Encoding a blob of `bytes` bytes.
    Encoding {
        /// The blob's size.
        bytes: u64,
    },
    /// Encoded: `total` bytes of sliver pairs are to be uploaded.
    Encoded {
        /// Bytes of all sliver pairs.
        total: u64,
    },
    /// Nodes acknowledged `bytes` of the `total` bytes of sliver pairs.
    Uploaded {
        /// Bytes acknowledged so far.
        bytes: u64,
        /// Bytes of all sliver pairs.
        total: u64,
    },
    /// Shards that confirmed storage so far, and the quorum needed.
    Confirmed {
        /// Shards whose confirmations were gathered.
        shards: u32,
        /// Shards a certificate needs.
        needed: u32,
        /// Shards in the committee.
        total: u16,
    },
    /// Verified primary slivers fetched so far, out of those needed to decode.
    Downloaded {
        /// Slivers fetched and verified.
        slivers: u32,
        /// Slivers needed.
        needed: u32,
        /// Bytes fetched.
        bytes: u64,
    },
    /// Decoding the fetched slivers.
    Decoding,
}

/// Where a store or read reports its [`Progress`] (nowhere by default).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl ProgressSink {
    /// Reports to `f`.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    fn report(&self, progress: Progress) {
        if let Some(f) = &self.0 {
            f(progress);
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(set)"
        } else {
            "ProgressSink(none)"
        })
    }
}

/// Options of `store`.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Make the blob deletable by this owner.
    pub owner: Option<PublicKey>,
    /// Where to report progress.
    pub progress: ProgressSink,
}

/// Options of `read`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Re-encode the decoded blob and check it against the blob ID's
    /// commitments (catches inconsistent encodings before a certificate of
    /// invalidity exists).
    pub strict: bool,
    /// Where to report progress.
    pub progress: ProgressSink,
}

/// Knobs of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport limits.
    pub net: NetConfig,
    /// Bytes of sliver pairs being uploaded at once.
    pub max_upload_bytes_in_flight: usize,
    /// After a quorum confirmed, how long to keep uploading to the rest.
    pub tail_window: Duration,
    /// Slivers fetched at once during a read.
    pub read_concurrency: usize,
    /// Without progress for this long, a read asks further nodes.
    pub read_hedge_after: Duration,
    /// The client's key, proven in every QUIC handshake (its TLS
    /// certificate is made from it): the key a storage grant names.
    pub identity: Option<Arc<KeyPair>>,
    /// A storage grant for `identity`, presented to each node before the
    /// first write (needed by nodes in `grants` admission mode).
    pub grant: Option<Signed<floe_consensus::grant::StorageGrant>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            max_upload_bytes_in_flight: 256 << 20,
            tail_window: Duration::from_millis(500),
            read_concurrency: 32,
            read_hedge_after: Duration::from_secs(2),
            identity: None,
            grant: None,
        }
    }
}

/// How long the synced notices of a committee change in progress are
/// trusted before the members are asked again.
pub const HANDOFF_REFRESH: Duration = Duration::from_secs(2);
/// How long the members are waited for when asked for synced notices.
const HANDOFF_WAIT: Duration = Duration::from_secs(3);

/// A client of one committee.
pub struct Client {
    /// The committee as read from the committee file (genesis).
    base: Committee,
    /// The committees since genesis, as far as this client has followed.
    chain: std::sync::RwLock<CommitteeChain>,
    clock: EpochClock,
    pool: Arc<Pool>,
    config: ClientConfig,
    /// One more than the epoch in which the chain was last followed (0:
    /// never): the chain is followed again once per epoch.
    followed: std::sync::atomic::AtomicU64,
    /// Held by the one caller following the chain (others wait for it),
    /// with when a lookup too few members answered last ran.
    following: tokio::sync::Mutex<Option<std::time::Instant>>,
    /// The committee changes asked about, with the synced notices gathered
    /// and when they were last asked for.
    handoffs: std::sync::Mutex<HashMap<Epoch, (Handoff, std::time::Instant)>>,
    /// The nodes this client presented its grant to.
    presented: Arc<std::sync::Mutex<std::collections::HashSet<PublicKey>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("members", &self.base.members().len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Client {
    /// A client of the committee in `file`.
    pub fn new(file: &CommitteeFile, config: ClientConfig) -> Result<Self, ClientError> {
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let pool = Pool::new(bind, config.identity.as_deref(), config.net.clone())
            .map_err(|e| ClientError::Rejected(e.to_string()))?;
        for member in file.committee.members() {
            pool.add_peer(member.network_key, member.address.clone())
                .map_err(|e| ClientError::Rejected(e.to_string()))?;
        }
        Ok(Self {
            chain: std::sync::RwLock::new(CommitteeChain::new(file.committee.clone())),
            base: file.committee.clone(),
            clock: file.clock,
            pool: Arc::new(pool),
            config,
            followed: std::sync::atomic::AtomicU64::new(0),
            following: tokio::sync::Mutex::new(None),
            handoffs: std::sync::Mutex::new(HashMap::new()),
            presented: Arc::default(),
        })
    }

    /// The current epoch by the committee's clock.
    pub fn epoch(&self) -> Epoch {
        self.clock.epoch_at(now_ms())
    }

    /// The committee's epoch clock: when each epoch begins.
    pub fn clock(&self) -> EpochClock {
        self.clock
    }

    /// The committee that serves `epoch`, as the chain of committee
    /// certificates this client followed says (see [`Client::follow_chain`]).
    pub fn committee(&self, epoch: Epoch) -> Committee {
        self.chain().committee_at(epoch)
    }

    /// The chain of committees this client has verified, from genesis.
    pub fn chain(&self) -> CommitteeChain {
        self.chain
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The committee change the current epoch is in, with the synced
    /// notices of the new committee's members, each verified against it:
    /// asked of the members again at most every [`HANDOFF_REFRESH`] while
    /// some moved shard's new holder has not synced.
    pub async fn handoff(&self) -> Handoff {
        let epoch = self.epoch();
        let chain = self.chain();
        let change = chain
            .links()
            .map(|l| l.message.body.epoch)
            .filter(|e| *e <= epoch)
            .max()
            .unwrap_or(Epoch(0));
        let cached = self
            .handoffs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&change)
            .cloned();
        let mut handoff = match cached {
            Some((handoff, asked)) if handoff.is_done() || asked.elapsed() < HANDOFF_REFRESH => {
                return handoff
            }
            Some((handoff, _)) => handoff,
            None => Handoff::new(&chain, change),
        };
        if !handoff.settled() {
            // Every member is asked, not only those not heard from: members
            // relay the notices they gathered, so a new holder this client
            // cannot reach right now is still heard of.
            let keys: Vec<PublicKey> = handoff
                .next()
                .members()
                .iter()
                .map(|m| m.network_key)
                .collect();
            let mut answers = floe_consensus::quorum::Collect::default();
            // Bounded as a whole: what arrived in time counts, a member that
            // holds its answer back delays nothing (it is asked again later).
            let mut calls = FanOut::new(keys, Pacing::ALL);
            let run = calls.run(&mut answers, |key| {
                let pool = Arc::clone(&self.pool);
                async move {
                    match pool.call::<GetHandoff>(&key, &change).await {
                        Ok(notices) => Some(notices),
                        Err(e) => {
                            debug!(%key, error = %e, "no synced notices from a member");
                            None
                        }
                    }
                }
            });
            let _ = tokio::time::timeout(HANDOFF_WAIT, run).await;
            for (key, notices) in answers.0 {
                for notice in notices.into_iter().flatten() {
                    if let Err(e) = handoff.add(notice) {
                        debug!(%key, error = %e, "a member relayed a synced notice that does not verify");
                        self.pool.report_misbehaviour(
                            &key,
                            format!("relayed a false synced notice: {e}"),
                        );
                        break;
                    }
                }
            }
        }
        let mut handoffs = self
            .handoffs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A refresh that ran alongside this one may have heard more: keep both.
        if let Some((known, _)) = handoffs.get(&change) {
            for notice in known.notices().cloned().collect::<Vec<_>>() {
                let _ = handoff.add(notice);
            }
        }
        debug!(%change, notices = handoff.notices().count(), settled = handoff.settled(), "synced notices of the committee change");
        // Only the current change is ever asked about; older ones go.
        handoffs.retain(|epoch, _| *epoch >= change);
        handoffs.insert(change, (handoff.clone(), std::time::Instant::now()));
        drop(handoffs);
        handoff
    }

    /// Health of every node, as seen by this client's connections.
    pub fn health(&self) -> Vec<floe_net::PeerHealth> {
        self.pool.health()
    }

    /// Ask one node for its description (also a node no committee this
    /// client knows lists yet, such as one about to join).
    pub async fn info(&self, node: &Member) -> Result<NodeInfo, RpcError<ApiError>> {
        if let Err(e) = self.pool.add_peer(node.network_key, node.address.clone()) {
            debug!(node = %node.node_id, error = %e, "adding a node to ask");
        }
        self.pool.call::<GetInfo>(&node.network_key, &()).await
    }

    /// Ask one node for its own view of a blob's status (unverified: the
    /// caller checks the proof it carries, or compares views across nodes).
    pub async fn node_status(
        &self,
        node: &Member,
        blob_id: BlobId,
    ) -> Result<BlobStatusAnswer, RpcError<ApiError>> {
        self.pool
            .call::<GetStatus>(&node.network_key, &blob_id)
            .await
    }

    /// The members of the current epoch's committee (as far as this client
    /// followed the chain).
    pub fn members(&self) -> Vec<Member> {
        self.committee(self.epoch()).members().to_vec()
    }

    /// The blob's definite status, with its proof verified: certified,
    /// invalid, expired or deleted with the proof, or unknown once shards
    /// forming a quorum answered and none knows a certificate (`Pending` is
    /// never returned).
    pub async fn status(&self, blob_id: BlobId) -> Result<QuorumStatus, ClientError> {
        self.status_within(blob_id, STATUS_GRACE).await
    }

    /// [`Client::status`], giving the members not yet answered `grace` once
    /// shards forming a quorum have.
    async fn status_within(
        &self,
        blob_id: BlobId,
        grace: Duration,
    ) -> Result<QuorumStatus, ClientError> {
        // The chain followed in this epoch first: a committee change this
        // client has not learned would have it ask the members that left
        // and call the new committee's proofs lies.
        let (epoch, _) = self.serving().await;
        // Built for this blob: a proof about any other is a lie.
        // Asked of the members of this epoch's committee; each proof is
        // verified against the committee of its own epoch.
        let chain = self.chain();
        let current = chain.committee_at(epoch);
        let keys: Vec<PublicKey> = current.members().iter().map(|m| m.network_key).collect();
        let key_of = |member: &MemberIndex| keys.get(member.as_usize()).copied();
        let mut tally = StatusTally::new(&chain, blob_id, epoch, grace);
        let members = (0..keys.len()).map(|i| MemberIndex(i as u16));
        FanOut::new(members, Pacing::ALL)
            .run(&mut tally, |member| {
                let (pool, key) = (Arc::clone(&self.pool), keys[member.as_usize()]);
                async move {
                    let answer = pool.call::<GetStatus>(&key, &blob_id).await;
                    answer.map(|a| a.status).map_err(|e| e.to_string())
                }
            })
            .await;
        self.pool.report_lies(tally.failures(), key_of);
        tally.finish().map_err(|shortfall| {
            self.not_enough(blob_id, "a definite status", shortfall, |member| {
                current
                    .member(*member)
                    .map(|m| m.node_id.0.clone())
                    .unwrap_or_default()
            })
        })
    }

    /// Presents this client's grant (see [`ClientConfig::grant`]) to every
    /// member of the current committee and returns each one's answer: the
    /// bytes the client's key holds there and the grant's bytes, or why the
    /// node refused it. Writes present it by themselves; this shows where a
    /// key stands.
    pub async fn present_grant(
        &self,
    ) -> Result<Vec<(String, Result<GrantUsage, String>)>, ClientError> {
        let grant = self.config.grant.clone().ok_or_else(|| {
            ClientError::Rejected(
                "this client has no grant: set `key` and `grant` in its config".into(),
            )
        })?;
        let (_, committee) = self.serving().await;
        let mut answers = floe_consensus::quorum::Collect::default();
        let members: Vec<usize> = (0..committee.members().len()).collect();
        FanOut::new(members, Pacing::ALL)
            .run(&mut answers, |i| {
                let (pool, grant) = (Arc::clone(&self.pool), grant.clone());
                let key = committee.members()[i].network_key;
                async move {
                    pool.call::<PutGrant>(&key, &grant)
                        .await
                        .map_err(|e| e.to_string())
                }
            })
            .await;
        let mut answers = answers.0;
        answers.sort_by_key(|(i, _)| *i);
        Ok(answers
            .into_iter()
            .map(|(i, answer)| (committee.members()[i].node_id.0.clone(), answer))
            .collect())
    }

    fn node_name(committee: &Committee, key: &PublicKey) -> String {
        committee
            .member_by_network_key(key)
            .and_then(|m| committee.member(m))
            .map(|m| m.node_id.0.clone())
            .unwrap_or_default()
    }

    /// The error for `what` when too few shards answered usably.
    fn not_enough<K>(
        &self,
        blob_id: BlobId,
        what: &'static str,
        shortfall: Shortfall<K>,
        name: impl Fn(&K) -> String,
    ) -> ClientError {
        ClientError::NotEnoughShards {
            blob_id,
            what,
            needed: shortfall.needed,
            got: shortfall.got,
            failures: shortfall
                .failures
                .iter()
                .map(|(peer, failure)| (name(peer), failure.to_string()))
                .collect(),
        }
    }
}
