//! Signed protocol messages.
//!
//! What is signed is always [`ProtocolMessage::signing_bytes`]:
//!
//! ```text
//! intent: kind u8 ‖ version u8 ‖ app u8
//! epoch:  u64 LE
//! body:   BCS of the body type
//! ```
//!
//! The intent's kind byte differs per body type, so a signature over one
//! kind can never verify as another, even where two bodies have identical
//! bytes (`InvalidBlobAttestation` and `BlobDeletion` both carry only a blob
//! ID). Kinds 16 and above are for epoch-change messages: 16 is the
//! committee handover ([`crate::chain::CommitteeProposal`]).

use std::fmt::Debug;

use floe_codec::BlobId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{error::SignatureError, Epoch, KeyPair, PublicKey, Signature};

/// What a signature is for. BCS: u8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentKind {
    /// A node confirms it stores its slivers of a blob (signed by members).
    StorageConfirmation = 1,
    /// A node attests a blob is inconsistently encoded (signed by members).
    InvalidBlobAttestation = 2,
    /// A blob's owner deletes its deletable registration (signed by the owner).
    BlobDeletion = 3,
    /// Members of an epoch's committee certify the next epoch's committee.
    CommitteeHandover = 16,
    /// A member of a new committee holds every pair of its shards.
    ShardsSynced = 17,
    /// An issuer lets a client key store ([`crate::grant::StorageGrant`]).
    StorageGrant = 18,
}

/// The application domain of a signature: only Floe for now. Keeps Floe
/// signatures from ever being valid for another protocol using the same keys.
pub const APP_FLOE: u8 = 0x46; // 'F'

/// The 3-byte intent prefix of every signed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Intent {
    /// The message kind.
    pub kind: IntentKind,
    /// The kind's layout version.
    pub version: u8,
    /// The application ([`APP_FLOE`]).
    pub app: u8,
}

impl Intent {
    /// The prefix bytes.
    pub fn to_bytes(self) -> [u8; 3] {
        [self.kind as u8, self.version, self.app]
    }
}

/// Which share of the committee must sign a message of a kind for it to be
/// certified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// `n − f` shards: the blob is available.
    Quorum,
    /// `f + 1` shards: at least one honest shard vouches.
    Validity,
}

/// A body that can be signed.
pub trait MessageBody: Serialize + DeserializeOwned + Clone + PartialEq + Debug {
    /// Its intent kind.
    const KIND: IntentKind;
    /// Its layout version.
    const VERSION: u8 = 1;
    /// The committee weight a certificate over it needs.
    const THRESHOLD: Threshold;
    /// The blob it is about.
    fn blob_id(&self) -> BlobId;
}

/// A node's promise to keep its slivers of `blob_id` until `end_epoch`.
///
/// BCS: `blob_id [32] ‖ end_epoch u64 ‖ deletable bool ‖ owner option<[32]>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageConfirmation {
    /// The blob.
    pub blob_id: BlobId,
    /// Stored until this epoch begins (exclusive).
    pub end_epoch: Epoch,
    /// Whether the owner may delete it early.
    pub deletable: bool,
    /// The key that may delete it (required when `deletable`).
    pub owner: Option<PublicKey>,
}

impl MessageBody for StorageConfirmation {
    const KIND: IntentKind = IntentKind::StorageConfirmation;
    const THRESHOLD: Threshold = Threshold::Quorum;
    fn blob_id(&self) -> BlobId {
        self.blob_id
    }
}

/// A node's attestation that `blob_id` is inconsistently encoded (it holds
/// a verified [`floe_codec::InconsistencyProof`]). BCS: `blob_id [32]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidBlobAttestation {
    /// The blob.
    pub blob_id: BlobId,
}

impl MessageBody for InvalidBlobAttestation {
    const KIND: IntentKind = IntentKind::InvalidBlobAttestation;
    const THRESHOLD: Threshold = Threshold::Validity;
    fn blob_id(&self) -> BlobId {
        self.blob_id
    }
}

/// The owner's deletion of its deletable registrations of `blob_id` (those
/// certified in this message's epoch or earlier). BCS: `blob_id [32]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobDeletion {
    /// The blob.
    pub blob_id: BlobId,
}

impl MessageBody for BlobDeletion {
    const KIND: IntentKind = IntentKind::BlobDeletion;
    // Signed by one owner key, never by the committee.
    const THRESHOLD: Threshold = Threshold::Quorum;
    fn blob_id(&self) -> BlobId {
        self.blob_id
    }
}

/// A body in an epoch: the unit that is signed.
///
/// BCS: `epoch u64 ‖ body` (the intent is implied by the body type and is
/// only part of the signing bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "T: MessageBody")]
pub struct ProtocolMessage<T> {
    /// The epoch the signer was in.
    pub epoch: Epoch,
    /// What is asserted.
    pub body: T,
}

impl<T: MessageBody> ProtocolMessage<T> {
    /// A message.
    pub fn new(epoch: Epoch, body: T) -> Self {
        Self { epoch, body }
    }

    /// The intent of this message's kind.
    pub fn intent() -> Intent {
        Intent {
            kind: T::KIND,
            version: T::VERSION,
            app: APP_FLOE,
        }
    }

    /// The exact bytes a signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = Self::intent().to_bytes().to_vec();
        bytes.extend_from_slice(&self.epoch.0.to_le_bytes());
        bytes.extend_from_slice(&crate::canonical_bytes(&self.body));
        bytes
    }
}

/// A message with one signature and the key that made it.
///
/// BCS: `message ‖ signer [32] ‖ signature [64]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "T: MessageBody")]
pub struct Signed<T> {
    /// What was signed.
    pub message: ProtocolMessage<T>,
    /// Who signed.
    pub signer: PublicKey,
    /// The signature over [`ProtocolMessage::signing_bytes`].
    pub signature: Signature,
}

impl<T: MessageBody> Signed<T> {
    /// Signs `message` with `key`.
    pub fn sign(message: ProtocolMessage<T>, key: &KeyPair) -> Self {
        let signature = key.sign_bytes(&message.signing_bytes());
        Signed {
            message,
            signer: key.public(),
            signature,
        }
    }

    /// Checks the signature against `signer`.
    pub fn verify(&self) -> Result<(), SignatureError> {
        if self
            .signer
            .verify(&self.message.signing_bytes(), &self.signature)
        {
            Ok(())
        } else {
            Err(SignatureError {
                signer: self.signer,
                blob_id: self.message.body.blob_id(),
            })
        }
    }
}
