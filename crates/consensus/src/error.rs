//! The typed errors of floe-consensus; each names the blob, member, shard or
//! key involved.

use floe_codec::{BlobId, ConfigError, ShardIndex};
use thiserror::Error;

use crate::{Epoch, NodeId, PublicKey};

/// A key that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Not 64 hex characters.
    #[error("{input:?} is not an Ed25519 public key (expected 64 hex characters)")]
    Malformed {
        /// The text given.
        input: String,
    },
    /// The bytes are not a point on the curve.
    #[error("{key} is not a valid Ed25519 public key")]
    NotAPoint {
        /// The key, in hex.
        key: String,
    },
    /// A small-order key, for which signatures prove nothing.
    #[error("{key} is a weak (small-order) Ed25519 key")]
    Weak {
        /// The key, in hex.
        key: String,
    },
}

/// A committee that breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitteeError {
    /// `n_shards` is out of the codec's range.
    #[error("committee shard count: {0}")]
    ShardCount(#[from] ConfigError),
    /// No members at all.
    #[error("a committee needs at least one member")]
    NoMembers,
    /// More members than a signer bitmap can index.
    #[error("{count} members is more than the 65535 a committee may have")]
    TooManyMembers {
        /// How many were given.
        count: usize,
    },
    /// Two members share a node ID.
    #[error("node ID {node_id} is used by members {first} and {second}")]
    DuplicateNodeId {
        /// The repeated ID.
        node_id: NodeId,
        /// First member position.
        first: usize,
        /// Second member position.
        second: usize,
    },
    /// Two members share a key.
    #[error("key {key} is used by both {first} and {second}")]
    DuplicateKey {
        /// The repeated key.
        key: PublicKey,
        /// One member.
        first: NodeId,
        /// The other.
        second: NodeId,
    },
    /// A member uses one key for both roles.
    #[error("{node_id} uses the same key as protocol and network key; they must differ")]
    SharedProtocolAndNetworkKey {
        /// The member.
        node_id: NodeId,
    },
    /// A member claims a shard that does not exist.
    #[error("{node_id} holds shard {shard}, but the committee has only {n_shards} shards")]
    ShardOutOfRange {
        /// The member.
        node_id: NodeId,
        /// The shard.
        shard: ShardIndex,
        /// The shard count.
        n_shards: u16,
    },
    /// Two members claim one shard.
    #[error("shard {shard} is held by both {first} and {second}")]
    ShardHeldTwice {
        /// The shard.
        shard: ShardIndex,
        /// One member.
        first: NodeId,
        /// The other.
        second: NodeId,
    },
    /// A shard nobody holds.
    #[error("shard {shard} is held by no member")]
    ShardUnassigned {
        /// The shard.
        shard: ShardIndex,
    },
}

/// A committee file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitteeFileError {
    /// Not valid TOML for a committee file; the message names the field.
    #[error("committee file: {0}")]
    Parse(String),
    /// Valid syntax, but the committee breaks an invariant.
    #[error("committee file: {0}")]
    Invalid(Box<CommitteeError>),
    /// The epoch clock is unusable.
    #[error("committee file: [clock] epoch_duration_ms must be greater than 0")]
    ZeroEpochDuration,
}

/// A signature that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("signature by {signer} over a message about blob {blob_id} does not verify")]
pub struct SignatureError {
    /// The claimed signer.
    pub signer: PublicKey,
    /// The blob the message is about.
    pub blob_id: BlobId,
}

/// A certificate that does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    /// The certificate is from another epoch than the committee given.
    #[error("certificate for blob {blob_id} is from epoch {certificate}, checked against the committee of epoch {committee}")]
    WrongEpoch {
        /// The blob.
        blob_id: BlobId,
        /// The certificate's epoch.
        certificate: Epoch,
        /// The committee's epoch.
        committee: Epoch,
    },
    /// The bitmap's length does not match the committee.
    #[error("signer bitmap has {bytes} bytes, a committee of {members} members needs exactly ⌈{members}/8⌉")]
    MalformedBitmap {
        /// Bytes given.
        bytes: usize,
        /// Committee members.
        members: usize,
    },
    /// A signer index that is not a member.
    #[error("signer {index} is not a member of the committee")]
    UnknownSigner {
        /// The index.
        index: u16,
    },
    /// The same member twice.
    #[error("member {index} signs twice")]
    DuplicateSigner {
        /// The index.
        index: u16,
    },
    /// Bitmap and signatures disagree in number.
    #[error("{signers} signers in the bitmap but {signatures} signatures")]
    SignatureCount {
        /// Set bits.
        signers: usize,
        /// Signatures given.
        signatures: usize,
    },
    /// The signers hold too few shards.
    #[error("certificate for blob {blob_id} carries {weight} shards of weight, {needed} needed")]
    InsufficientWeight {
        /// The blob.
        blob_id: BlobId,
        /// Weight present.
        weight: u32,
        /// Weight needed.
        needed: u32,
    },
    /// A signature does not verify (the body was tampered with, or the signature).
    #[error("certificate for blob {blob_id}: the signature of {node_id} does not verify")]
    BadSignature {
        /// The blob.
        blob_id: BlobId,
        /// The signer whose signature fails.
        node_id: NodeId,
    },
    /// The batch failed but every signature passes strict single verification
    /// (possible only for degenerate signatures).
    #[error("certificate for blob {blob_id}: batch verification failed")]
    BatchRejected {
        /// The blob.
        blob_id: BlobId,
    },
    /// A deletable storage certificate without an owner.
    #[error("certificate for blob {blob_id} is deletable but names no owner")]
    DeletableWithoutOwner {
        /// The blob.
        blob_id: BlobId,
    },
}

impl CertificateError {
    /// Whether another committee could have signed the certificate: its
    /// signers, their weight or their signatures do not fit the committee
    /// it was checked against. (A bitmap and signatures that disagree in
    /// number, a member counted twice, a batch that fails though each
    /// signature verified alone, or a deletable certificate with no owner
    /// are false whoever signed.)
    pub fn may_be_another_committees(&self) -> bool {
        match self {
            CertificateError::WrongEpoch { .. }
            | CertificateError::MalformedBitmap { .. }
            | CertificateError::UnknownSigner { .. }
            | CertificateError::InsufficientWeight { .. }
            | CertificateError::BadSignature { .. } => true,
            CertificateError::DuplicateSigner { .. }
            | CertificateError::SignatureCount { .. }
            | CertificateError::BatchRejected { .. }
            | CertificateError::DeletableWithoutOwner { .. } => false,
        }
    }
}

/// A signed message a [`crate::CertificateBuilder`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    /// The signer is not a committee member.
    #[error("blob {blob_id}: {signer} is not a member of the committee")]
    NotAMember {
        /// The blob.
        blob_id: BlobId,
        /// The signer.
        signer: PublicKey,
    },
    /// Signed in another epoch.
    #[error("blob {blob_id}: {node_id} signed for epoch {got}, expected {expected}")]
    WrongEpoch {
        /// The blob.
        blob_id: BlobId,
        /// The signer.
        node_id: NodeId,
        /// Its epoch.
        got: Epoch,
        /// The builder's epoch.
        expected: Epoch,
    },
    /// Signed another body.
    #[error("blob {blob_id}: {node_id} signed a different message")]
    WrongBody {
        /// The blob.
        blob_id: BlobId,
        /// The signer.
        node_id: NodeId,
    },
    /// The signature does not verify.
    #[error("blob {blob_id}: the signature of {node_id} does not verify")]
    BadSignature {
        /// The blob.
        blob_id: BlobId,
        /// The signer.
        node_id: NodeId,
    },
    /// The member already signed.
    #[error("blob {blob_id}: {node_id} already signed; a node counts once")]
    Duplicate {
        /// The blob.
        blob_id: BlobId,
        /// The signer.
        node_id: NodeId,
    },
    /// Not enough weight yet.
    #[error("blob {blob_id}: {weight} shards signed, {needed} needed")]
    InsufficientWeight {
        /// The blob.
        blob_id: BlobId,
        /// Weight so far.
        weight: u32,
        /// Weight needed.
        needed: u32,
    },
    /// The gathered signatures do not form a certificate.
    #[error(transparent)]
    Certificate(CertificateError),
}

/// A fact that cannot be applied to a blob's state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FactError {
    /// The certificate does not verify.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The deletion's signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The deletion does not match the registration it claims to end: the
    /// certificate must be deletable, owned by the deletion's signer, for
    /// the same blob, and certified no later than the deletion.
    #[error("deletion of blob {blob_id} does not match the deletable registration it carries")]
    DeletionMismatch {
        /// The blob.
        blob_id: BlobId,
    },
    /// The fact is about another blob.
    #[error("a fact about blob {fact} cannot change the state of blob {state}")]
    WrongBlob {
        /// The blob whose state it was applied to.
        state: BlobId,
        /// The blob the fact is about.
        fact: BlobId,
    },
}
