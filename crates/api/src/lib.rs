//! floe-api: the protocol between Floe clients and nodes, and between nodes.
//!
//! Each request kind is a [`floe_wire::Method`]: its kind number, request and
//! response types, size limits and who may call. Bodies are canonical BCS
//! (see `docs/protocol.md`). Every method answers failures with [`ApiError`],
//! which names the blob, shard or field concerned.

use std::time::Duration;

use bytes::Bytes;
use floe_codec::{
    Axis, BareSymbol, BlobId, BlobMetadata, InconsistencyProof, RecoverySymbol, ShardIndex, Sliver,
    SliverIndex, SliverPair,
};
use floe_consensus::chain::{CommitteeCertificate, CommitteeProposal};
use floe_consensus::grant::StorageGrant;
use floe_consensus::handoff::ShardsSynced;
use floe_consensus::{
    BlobCertificate, Epoch, Fact, InvalidBlobAttestation, ItemId, PublicKey, ReconcileMessage,
    Signed, StorageConfirmation,
};
use floe_wire::{Access, Method, WireError};
use serde::{Deserialize, Serialize};

mod bounded;
mod pair_frame;

pub use floe_consensus::BlobStatus;
pub use pair_frame::PutPairsFrame;

/// Largest request or response that carries a sliver pair or a sliver
/// (a 64 MiB-class blob on a small committee has multi-MiB slivers).
pub const MAX_SLIVER_FRAME: u32 = 256 << 20;
/// Largest metadata frame: 64 bytes of hashes per shard, for up to 4096 shards.
pub const MAX_METADATA_FRAME: u32 = 1 << 20;
/// Largest frame of facts or digests.
pub const MAX_FACTS_FRAME: u32 = 16 << 20;
/// Small requests and answers.
pub const MAX_SMALL_FRAME: u32 = 64 << 10;

/// Bytes of facts one anti-entropy message carries at most; the rest
/// follow in later rounds of the same exchange.
pub const RECONCILE_FACT_BYTES: usize = 4 << 20;
/// Item IDs one anti-entropy message wants, or lists as unsent, at most.
pub const RECONCILE_MAX_ITEMS: usize = 16_384;
/// Ranges (summaries plus listings) one anti-entropy request carries at
/// most: an answer splits each into at most 16, so it stays far below
/// [`MAX_FACTS_FRAME`] with its facts.
pub const RECONCILE_MAX_RANGES: usize = 2_048;
/// Ranges one anti-entropy answer carries at most: each range asked about
/// is answered with at most 16.
pub const RECONCILE_MAX_REPLY_RANGES: usize = 16 * RECONCILE_MAX_RANGES;
/// Bytes of digest messages (summaries and listings) one anti-entropy
/// answer carries at most: with its facts and item IDs it stays within
/// [`MAX_FACTS_FRAME`].
pub const RECONCILE_MESSAGE_BYTES: usize = 8 << 20;

/// What went wrong, as a node tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// The node has no such blob, or not the part asked for.
    #[error("blob {blob_id}: {what} not found on this node")]
    NotFound {
        /// The blob.
        blob_id: BlobId,
        /// What was missing (metadata, a sliver of a shard, ...).
        what: String,
    },
    /// Input failed verification against the blob ID or metadata.
    #[error("blob {blob_id}: {reason}")]
    Rejected {
        /// The blob.
        blob_id: BlobId,
        /// What failed.
        reason: String,
    },
    /// A sliver or request for a shard this node does not hold.
    #[error(
        "blob {blob_id}: shard {shard} is not held by this node; send it to the shard's holder"
    )]
    NotMyShard {
        /// The blob.
        blob_id: BlobId,
        /// The shard.
        shard: ShardIndex,
    },
    /// The blob is past holding data: expired, deleted or invalid.
    #[error("blob {blob_id} is {status}; its data is no longer stored or served")]
    Gone {
        /// The blob.
        blob_id: BlobId,
        /// `expired`, `deleted` or `invalid`.
        status: String,
    },
    /// A confirmation was asked for before all of this node's pairs arrived.
    #[error("blob {blob_id}: pairs of shards {missing:?} have not arrived yet; send them first")]
    Incomplete {
        /// The blob.
        blob_id: BlobId,
        /// The shards whose pairs are missing.
        missing: Vec<ShardIndex>,
    },
    /// A certificate or fact that does not verify against the committee.
    #[error("blob {blob_id}: the certificate does not verify: {reason}")]
    BadCertificate {
        /// The blob.
        blob_id: BlobId,
        /// Why.
        reason: String,
    },
    /// The request asks for more than the node's limits allow.
    #[error("{0}")]
    Limit(String),
    /// The node failed internally (its disk, for example); try another node.
    #[error("internal error on the node: {0}; try another node")]
    Internal(String),
    /// The node has no room for this answer now (its budget for answers is
    /// taken); retry shortly or ask another node.
    #[error("the node is busy: {0}")]
    Busy(String),
    /// A committee change was refused: a proposal not approved here, out of
    /// its epoch, or a committee certificate that does not extend the chain.
    #[error("committee change: {0}")]
    Committee(String),
    /// A write refused by the node's admission rules (`grants` mode), before
    /// anything was stored.
    #[error("{0}")]
    NotAdmitted(Admission),
}

/// Why a node in `grants` admission mode refused a write. Each names the
/// client key; the limits name the limit and the usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Admission {
    /// The caller holds no grant here: it presented no key, or no grant
    /// for its key.
    #[error("{}: this node stores only for clients with a storage grant; ask an operator for one (floe-node grant issue) and set `key` and `grant` in the client config", client.map_or_else(|| "anonymous client".to_string(), |k| format!("client {k}")))]
    NoGrant {
        /// The key the caller proved, if any.
        client: Option<PublicKey>,
    },
    /// The grant presented does not admit the caller: untrusted issuer, bad
    /// signature, another key, or expired.
    #[error("grant refused: {reason}")]
    BadGrant {
        /// The key the caller proved, if any.
        client: Option<PublicKey>,
        /// Why.
        reason: String,
    },
    /// The blob would take the client past its grant's bytes.
    #[error("client {client}: blob {blob_id} ({blob_bytes} bytes) would exceed the grant's {limit} bytes, of which {usage} are in use")]
    OverBudget {
        /// The client.
        client: PublicKey,
        /// The blob.
        blob_id: BlobId,
        /// The blob's size.
        blob_bytes: u64,
        /// The grant's bytes.
        limit: u64,
        /// What the client holds stored on this node now.
        usage: u64,
    },
    /// The storage asked for runs past the grant's last epoch.
    #[error("client {client}: blob {blob_id} asks storage until epoch {end_epoch}; the grant allows until epoch {limit}")]
    PastEpochLimit {
        /// The client.
        client: PublicKey,
        /// The blob.
        blob_id: BlobId,
        /// The end epoch asked for.
        end_epoch: Epoch,
        /// The grant's furthest end epoch.
        limit: Epoch,
    },
    /// The blob is larger than the grant allows.
    #[error("client {client}: blob {blob_id} is {blob_bytes} bytes; the grant allows blobs up to {limit} bytes")]
    TooLarge {
        /// The client.
        client: PublicKey,
        /// The blob.
        blob_id: BlobId,
        /// The blob's size.
        blob_bytes: u64,
        /// The grant's maximum blob size.
        limit: u64,
    },
}

impl ApiError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } => "not_found",
            ApiError::Rejected { .. } => "rejected",
            ApiError::NotMyShard { .. } => "not_my_shard",
            ApiError::Gone { .. } => "gone",
            ApiError::Incomplete { .. } => "incomplete",
            ApiError::BadCertificate { .. } => "bad_certificate",
            ApiError::Limit(_) => "limit",
            ApiError::Internal(_) => "internal",
            ApiError::Busy(_) => "busy",
            ApiError::Committee(_) => "committee",
            ApiError::NotAdmitted(_) => "not_admitted",
        }
    }
}

/// A node's description of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name in the committee.
    pub node_id: String,
    /// Its current epoch.
    pub epoch: Epoch,
    /// Shards in the committee.
    pub n_shards: u16,
    /// The shards it holds.
    pub shards: Vec<ShardIndex>,
    /// Certified blobs whose slivers it is missing (repair backlog).
    pub drift: u64,
    /// Blobs with a known fact.
    pub facts_known: u64,
    /// Bytes of sliver data stored.
    pub stored_bytes: u64,
    /// Largest blob it accepts.
    pub max_blob_size: u64,
}

/// The status with the epoch it was judged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStatusAnswer {
    /// The node's current epoch.
    pub epoch: Epoch,
    /// The status and its proof.
    pub status: BlobStatus,
}

macro_rules! method {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $access:expr, $req:ty => $resp:ty, $max_req:expr, $max_resp:expr, $timeout:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;
        impl Method for $name {
            const KIND: u16 = $kind;
            const NAME: &'static str = stringify!($name);
            const ACCESS: Access = $access;
            const MAX_REQUEST_BYTES: u32 = $max_req;
            const MAX_RESPONSE_BYTES: u32 = $max_resp;
            const TIMEOUT: Duration = $timeout;
            type Request = $req;
            type Response = $resp;
            type Error = ApiError;
        }
    };
}

const SHORT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(60);

/// Store a blob's metadata (verified against the blob ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutMetadataRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// Its metadata.
    pub metadata: BlobMetadata,
}

/// Store the pairs of slivers some shards of the node hold: one large pair,
/// or many small ones in one request instead of a request each.
///
/// Its frame is the BCS encoding of `(blob_id, pairs)`, but built and parsed
/// by hand (module `pair_frame`) so the sliver bytes are never copied on
/// either side: they go out as the caller's buffers and come in as views of
/// the received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutPairsRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// Each pair with the shard it belongs to.
    pub pairs: Vec<(ShardIndex, SliverPair)>,
}

impl floe_wire::Wire for PutPairsRequest {
    fn to_frame(&self) -> Result<Bytes, WireError> {
        Ok(self.to_chunks()?.concat().into())
    }

    fn to_chunks(&self) -> Result<Vec<Bytes>, WireError> {
        pair_frame::encode(self)
    }

    fn from_frame(frame: Bytes) -> Result<Self, WireError> {
        pair_frame::decode(frame)
    }
}

/// Ask for one sliver of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetSliverRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// The shard holding it.
    pub shard: ShardIndex,
    /// Which sliver of the pair.
    pub axis: Axis,
}

/// Ask for an owner's deletable registration of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// The key that owns the registration.
    pub owner: PublicKey,
}

/// Ask for a storage confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmationRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// Until when it should be stored.
    pub end_epoch: Epoch,
    /// Whether its owner may delete it.
    pub deletable: bool,
    /// The owner, for deletable blobs.
    pub owner: Option<PublicKey>,
}

/// Ask for recovery symbols: for each target sliver, the symbol every
/// orthogonal sliver this node holds contributes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// The blob.
    pub blob_id: BlobId,
    /// The slivers to rebuild.
    pub targets: Vec<(Axis, SliverIndex)>,
}

/// A proof that a blob is inconsistently encoded, as
/// [`SubmitInconsistency`] carries it: the frame is the proof's BCS, and
/// decoding refuses more than [`floe_codec::MAX_N_SHARDS`] symbols (one per
/// shard at most) before allocating for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitInconsistencyRequest {
    /// The proof.
    #[serde(deserialize_with = "bounded::inconsistency_proof")]
    pub proof: InconsistencyProof,
}

/// One round of the anti-entropy exchange of facts.
///
/// Decoding refuses, before allocating for them, more than
/// [`RECONCILE_MAX_RANGES`] ranges of messages, more than
/// [`RECONCILE_MAX_ITEMS`] facts, wanted items or items of one listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// The caller's digest messages.
    #[serde(deserialize_with = "bounded::request_messages")]
    pub messages: Vec<ReconcileMessage>,
    /// Facts the caller pushes (the callee lacks them).
    #[serde(deserialize_with = "bounded::facts")]
    pub facts: Vec<Fact>,
    /// Facts the caller wants (it lacks them).
    #[serde(deserialize_with = "bounded::items")]
    pub want: Vec<ItemId>,
}

/// The callee's side of one round.
///
/// Decoding refuses, before allocating for them, more than
/// [`RECONCILE_MAX_REPLY_RANGES`] ranges of messages, more than
/// [`RECONCILE_MAX_ITEMS`] facts, wanted, unsent or listed items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileResponse {
    /// The callee's digest messages; empty when the callee is done.
    #[serde(deserialize_with = "bounded::reply_messages")]
    pub messages: Vec<ReconcileMessage>,
    /// Facts the callee holds and the caller lacks or asked for.
    #[serde(deserialize_with = "bounded::facts")]
    pub facts: Vec<Fact>,
    /// Facts the callee wants pushed.
    #[serde(deserialize_with = "bounded::items")]
    pub want: Vec<ItemId>,
    /// Facts the callee holds that the caller asked for or lacks, left out
    /// of `facts` to keep the answer within [`RECONCILE_FACT_BYTES`]: the
    /// caller wants them in a later round.
    #[serde(deserialize_with = "bounded::items")]
    pub unsent: Vec<ItemId>,
}

method!(
    /// A node's description of itself.
    GetInfo, 1, Access::Public, () => NodeInfo, MAX_SMALL_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// Store a blob's metadata.
    PutMetadata, 2, Access::Public, PutMetadataRequest => (), MAX_METADATA_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// Store sliver pairs of the node's shards (each verified against the
    /// metadata first; none is stored unless all verify).
    PutPairs, 3, Access::Public, PutPairsRequest => (), MAX_SLIVER_FRAME, MAX_SMALL_FRAME, LONG
);
method!(
    /// A blob's metadata.
    GetMetadata, 4, Access::Public, BlobId => BlobMetadata, MAX_SMALL_FRAME, MAX_METADATA_FRAME, SHORT
);
method!(
    /// One sliver.
    GetSliver, 5, Access::Public, GetSliverRequest => Sliver, MAX_SMALL_FRAME, MAX_SLIVER_FRAME, LONG
);
method!(
    /// A storage confirmation, signed once all of this node's pairs are durable.
    GetConfirmation, 6, Access::Public, ConfirmationRequest => Signed<StorageConfirmation>, MAX_SMALL_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// Deliver a fact (certificate, invalid-blob certificate, deletion); the
    /// node verifies it against the committee and answers the resulting status.
    PutFact, 7, Access::Public, Fact => BlobStatusAnswer, MAX_FACTS_FRAME, MAX_FACTS_FRAME, SHORT
);
method!(
    /// A blob's status with its proof.
    GetStatus, 8, Access::Public, BlobId => BlobStatusAnswer, MAX_SMALL_FRAME, MAX_FACTS_FRAME, SHORT
);
method!(
    /// Recovery symbols, with proofs, from the slivers this node holds.
    GetRecoverySymbols, 9, Access::PeerOnly, RecoveryRequest => Vec<RecoverySymbol>, MAX_SMALL_FRAME, MAX_SLIVER_FRAME, LONG
);
method!(
    /// Submit a proof that a blob is inconsistently encoded; the node checks
    /// it and answers its signed attestation.
    SubmitInconsistency, 10, Access::PeerOnly, SubmitInconsistencyRequest => Signed<InvalidBlobAttestation>, MAX_SLIVER_FRAME, MAX_SMALL_FRAME, LONG
);
method!(
    /// One round of anti-entropy over facts.
    Reconcile, 11, Access::PeerOnly, ReconcileRequest => ReconcileResponse, MAX_FACTS_FRAME, MAX_FACTS_FRAME, LONG
);

/// Committee certificates a node answers with at once: a follower asks
/// again from the last one it got.
pub const MAX_CHAIN_LINKS: usize = 64;

method!(
    /// The committee certificates starting after an epoch, oldest first (at
    /// most [`MAX_CHAIN_LINKS`]): how anyone who knows genesis learns every
    /// later committee, verifying each link against the one before.
    GetCommitteeChain, 12, Access::Public, Epoch => Vec<CommitteeCertificate>, MAX_SMALL_FRAME, MAX_FACTS_FRAME, SHORT
);
method!(
    /// Sign a proposal of the next epoch's committee: a member signs only a
    /// proposal its operator approved, and only in the epoch before the one
    /// the proposal starts.
    SignCommitteeProposal, 13, Access::PeerOnly, CommitteeProposal => Signed<CommitteeProposal>, MAX_FACTS_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// Deliver a committee certificate; the node verifies it against its
    /// chain and answers the epoch of its latest committee.
    PutCommitteeLink, 14, Access::Public, CommitteeCertificate => Epoch, MAX_FACTS_FRAME, MAX_SMALL_FRAME, SHORT
);

/// A page of a shard's pairs asked by its new holder at a committee change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPairsRequest {
    /// The epoch the change starts: the previous holder answers only once it
    /// is in that epoch itself (so it takes no more writes to the shard and
    /// its pairs are final).
    pub epoch: Epoch,
    /// The shard.
    pub shard: ShardIndex,
    /// The last blob of the page before (pages run in blob-ID order).
    pub after: Option<BlobId>,
}

/// Pairs of one shard, in blob-ID order after the request's cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPairsPage {
    /// The blobs and their pairs of the shard.
    pub pairs: Vec<(BlobId, SliverPair)>,
    /// No pair of the shard follows this page.
    pub done: bool,
}

/// Bytes of pairs a page of a shard carries at most (a single larger pair
/// still travels alone).
pub const SHARD_PAGE_BYTES: usize = 16 << 20;

method!(
    /// A page of one shard's pairs, for the shard's new holder at a committee
    /// change (each pair is verified against its blob's metadata there).
    GetShardPairs, 15, Access::PeerOnly, ShardPairsRequest => ShardPairsPage, MAX_SMALL_FRAME, MAX_SLIVER_FRAME, LONG
);
method!(
    /// A member's signed word that it holds every pair of its shards in a new
    /// committee's epoch.
    PutShardsSynced, 16, Access::PeerOnly, Signed<ShardsSynced> => (), MAX_SMALL_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// The synced notices a node gathered for the change into an epoch: how a
    /// client decides, from signed progress, where to read a moved shard.
    GetHandoff, 17, Access::Public, Epoch => Vec<Signed<ShardsSynced>>, MAX_SMALL_FRAME, MAX_FACTS_FRAME, SHORT
);
method!(
    /// Present a storage grant for the caller's key (the key of its TLS
    /// certificate); a node in `grants` mode keeps it and admits the key's
    /// writes within its limits. Answers the key's usage on this node.
    PutGrant, 18, Access::Public, Signed<StorageGrant> => GrantUsage, MAX_SMALL_FRAME, MAX_SMALL_FRAME, SHORT
);
method!(
    /// An owner's deletable registration of a blob not ended by a deletion
    /// (the certificate its deletion carries), if this node holds one: a
    /// status shows only the registration lasting longest.
    GetRegistration, 20, Access::Public, RegistrationRequest => Option<BlobCertificate>, MAX_SMALL_FRAME, MAX_FACTS_FRAME, SHORT
);
method!(
    /// Recovery symbols without proofs, from the slivers this node holds:
    /// what a repair asks for first, checking the slivers it rebuilds
    /// against the metadata instead of each symbol against a proof.
    GetBareSymbols, 19, Access::PeerOnly, RecoveryRequest => Vec<BareSymbol>, MAX_SMALL_FRAME, MAX_SLIVER_FRAME, LONG
);

/// A client key's standing on one node, as `PutGrant` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantUsage {
    /// Blob bytes the key holds stored on this node (each blob counted
    /// until it expires or is deleted).
    pub usage: u64,
    /// The grant's bytes.
    pub limit: u64,
}
