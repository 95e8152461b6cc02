//! # floe-consensus
//!
//! Where "a blob's state is a protocol fact" lives: committees and quorum
//! arithmetic, canonical signed messages, quorum certificates, the
//! blob-state lattice and the anti-entropy digest. Pure and synchronous in
//! the spirit of `quinn-proto`: no sockets, no clocks, no disk. State
//! changes are functions of (state, verified message), so they can be tested
//! exhaustively and replayed deterministically; the node drives them.
//!
//! * [`Committee`]: members with protocol and network keys, addresses and
//!   shards; [`Committee::is_quorum`] / [`Committee::is_validity`] are the
//!   one place quorum arithmetic lives (counted in shards, not nodes).
//! * [`ProtocolMessage`] / [`Signed`]: what is signed is
//!   `intent ‖ epoch ‖ body` ([`ProtocolMessage::signing_bytes`]).
//! * [`CertificateBuilder`] gathers [`Signed`] confirmations into a
//!   [`BlobCertificate`] (quorum) or attestations into an
//!   [`InvalidBlobCertificate`] (validity); [`Certificate::verify`] checks one
//!   with a single Ed25519 batch verification.
//! * [`BlobState`]: the join of the [`VerifiedFact`]s seen about a blob;
//!   [`BlobState::status`] answers with a proof.
//! * [`DigestIndex`] / [`reconcile`]: which facts two nodes must exchange.
//! * [`CommitteeFile`]: the TOML committee file (format in [`file`]'s docs).
//!
//! ```
//! use floe_consensus::*;
//! use floe_codec::{BlobId, ShardIndex};
//!
//! let keys: Vec<(KeyPair, KeyPair)> = (0..4u8)
//!     .map(|i| (KeyPair::from_seed(&[i; 32]), KeyPair::from_seed(&[100 + i; 32])))
//!     .collect();
//! let members = keys.iter().enumerate().map(|(i, (protocol, network))| Member {
//!     node_id: NodeId(format!("node-{i}")),
//!     protocol_key: protocol.public(),
//!     network_key: network.public(),
//!     address: format!("127.0.0.1:{}", 7000 + i),
//!     shards: vec![ShardIndex(i as u16)],
//! }).collect();
//! let committee = Committee::new(Epoch(0), 4, members)?;
//!
//! let message = ProtocolMessage::new(Epoch(0), StorageConfirmation {
//!     blob_id: BlobId([7; 32]), end_epoch: Epoch(5), deletable: false, owner: None,
//! });
//! let mut builder = CertificateBuilder::new(&committee, message.clone());
//! for (protocol, _) in &keys[..3] {
//!     builder.add(&Signed::sign(message.clone(), protocol))?;
//! }
//! let certificate = builder.certificate()?;       // 3 of 4 shards: n - f
//! assert_eq!(certificate.verify(&committee)?, 3);
//!
//! let fact = Fact::Certified(certificate).verify(&committee)?;
//! let state = BlobState::from_fact(fact);
//! assert_eq!(state.blob_id(), BlobId([7; 32]));
//! assert_eq!(state.status(Epoch(1)).name(), "certified");
//! assert_eq!(state.status(Epoch(5)).name(), "expired");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod certificate;
pub mod chain;
mod committee;
mod digest;
mod error;
pub mod file;
pub mod grant;
pub mod handoff;
mod keys;
mod messages;
pub mod quorum;
mod state;

pub use certificate::{
    BlobCertificate, Certificate, CertificateBuilder, InvalidBlobCertificate, SignatureCheck,
    SignerBitmap,
};
pub use committee::{Committee, Epoch, Member, MemberIndex, NodeId};
pub use digest::{
    reconcile, DigestIndex, ItemId, Prefix, RangeSummary, ReconcileMessage, Reconciliation, Reply,
    LIST_THRESHOLD, MAX_DEPTH, MAX_LISTING,
};
pub use error::{
    BuildError, CertificateError, CommitteeError, CommitteeFileError, FactError, KeyError,
    SignatureError,
};
pub use file::{CommitteeFile, EpochClock};
pub use keys::{KeyPair, PublicKey, Signature};
pub use messages::{
    BlobDeletion, Intent, IntentKind, InvalidBlobAttestation, MessageBody, ProtocolMessage, Signed,
    StorageConfirmation, Threshold, APP_FLOE,
};
pub use state::{BlobState, BlobStatus, DeletionProof, Fact, StateDecodeError, VerifiedFact};

pub use floe_codec::canonical_bytes;
