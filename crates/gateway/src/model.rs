//! The JSON bodies of the gateway, shared with `floe --json`.
//!
//! Field names are camelCase, and the store response is shaped like the
//! responses Walrus publishers give (`newlyCreated.blobObject.blobId`,
//! `alreadyCertified.blobId`, `endEpoch`), so clients written for those
//! parse Floe's unchanged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use floe_client::{BlobStatus, QuorumStatus, StoreOutcome};
use floe_consensus::{Certificate, Committee, Fact, MessageBody};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The evidence behind a certificate: who signed it, in which epoch, and
/// the certificate itself in its canonical bytes so anyone can verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSummary {
    /// The epoch the certificate was formed in.
    pub epoch: u64,
    /// Shards whose nodes signed.
    pub signed_shards: u32,
    /// Shards in the committee.
    pub total_shards: u16,
    /// Shards a certificate of this kind needs.
    pub needed_shards: u32,
    /// Indices (in the committee file) of the members that signed.
    pub signers: Vec<u16>,
    /// The certificate's canonical (BCS) bytes, base64 (standard alphabet).
    pub bytes: String,
}

impl CertificateSummary {
    /// Summarises `certificate` against the committee of its epoch;
    /// `needed` is the weight its kind requires.
    pub fn new<T: MessageBody>(
        certificate: &Certificate<T>,
        committee: &Committee,
        needed: u32,
    ) -> Self {
        Self {
            epoch: certificate.message.epoch.0,
            signed_shards: certificate.weight(committee),
            total_shards: committee.n_shards(),
            needed_shards: needed,
            signers: certificate.signers.iter().map(|m| m.0).collect(),
            bytes: STANDARD.encode(floe_codec::canonical_bytes(certificate)),
        }
    }
}

/// A stored blob's storage, as Walrus publishers describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageInfo {
    /// First epoch it is stored in.
    pub start_epoch: u64,
    /// Epoch its storage ends (exclusive).
    pub end_epoch: u64,
    /// Bytes of sliver pairs across all shards.
    pub storage_size: u64,
}

/// A newly certified blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlobObject {
    /// The blob ID (43 characters of URL-safe base64).
    pub blob_id: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The encoding: `RedStuff` (two-dimensional Reed–Solomon).
    pub encoding_type: String,
    /// The epoch it was registered (uploaded) in.
    pub registered_epoch: u64,
    /// The epoch it was certified in.
    pub certified_epoch: u64,
    /// Its storage period.
    pub storage: StorageInfo,
    /// Whether its owner may delete it.
    pub deletable: bool,
}

/// The publisher's answer to a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum StoreResponse {
    /// This request uploaded the blob and formed its certificate.
    #[serde(rename_all = "camelCase")]
    NewlyCreated {
        /// The blob.
        blob_object: BlobObject,
        /// Its certificate.
        certificate: CertificateSummary,
    },
    /// The blob was already certified for at least as long: nothing was
    /// uploaded.
    #[serde(rename_all = "camelCase")]
    AlreadyCertified {
        /// The blob ID.
        blob_id: String,
        /// Epoch its storage ends (exclusive).
        end_epoch: u64,
        /// Its existing certificate.
        certificate: CertificateSummary,
    },
}

impl StoreResponse {
    /// Describes `outcome` of storing a blob of `size` bytes on `committee`.
    pub fn new(outcome: &StoreOutcome, committee: &Committee, size: u64) -> Self {
        let certificate = &outcome.certificate;
        let summary = CertificateSummary::new(certificate, committee, committee.quorum_threshold());
        let blob_id = outcome.blob_id.to_string();
        if !outcome.newly_certified {
            return StoreResponse::AlreadyCertified {
                blob_id,
                end_epoch: outcome.end_epoch.0,
                certificate: summary,
            };
        }
        let epoch = certificate.message.epoch.0;
        StoreResponse::NewlyCreated {
            blob_object: BlobObject {
                blob_id,
                size,
                encoding_type: "RedStuff".into(),
                registered_epoch: epoch,
                certified_epoch: epoch,
                storage: StorageInfo {
                    start_epoch: epoch,
                    end_epoch: outcome.end_epoch.0,
                    storage_size: committee.encoding().encoded_length(size).unwrap_or(0),
                },
                deletable: certificate.message.body.deletable,
            },
            certificate: summary,
        }
    }

    /// The blob ID, whichever the case.
    pub fn blob_id(&self) -> &str {
        match self {
            StoreResponse::NewlyCreated { blob_object, .. } => &blob_object.blob_id,
            StoreResponse::AlreadyCertified { blob_id, .. } => blob_id,
        }
    }
}

/// A blob's state, one of the five the protocol knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum BlobState {
    /// Certified and available until `endEpoch`.
    Certified,
    /// Proven inconsistently encoded: it has no content.
    Invalid,
    /// Its storage ended.
    Expired,
    /// Deleted by its owner.
    Deleted,
    /// Shards forming a quorum answered and none knows a certificate.
    Unknown,
}

/// A blob's definite status with its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The blob ID.
    pub blob_id: String,
    /// Its state.
    pub state: BlobState,
    /// The current epoch.
    pub epoch: u64,
    /// For a certified or expired blob: the epoch its storage ends (exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_epoch: Option<u64>,
    /// For a certified or expired blob: whether its owner may delete it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletable: Option<bool>,
    /// The proof: the blob certificate (certified, expired, deleted) or the
    /// invalid-blob certificate (invalid). Absent for unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSummary>,
    /// For a deleted blob: the owner-signed deletion and the certificate it
    /// ended, canonical (BCS) bytes, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_proof: Option<String>,
    /// For an unknown blob: shards that answered (at least a quorum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_shards: Option<u32>,
    /// The state in one sentence, with its evidence.
    pub summary: String,
}

impl StatusResponse {
    /// Describes `status` of `blob_id`; `committee` is the committee of the
    /// current `epoch` (the certificates' own epochs give their weight).
    pub fn new(
        blob_id: floe_codec::BlobId,
        status: &QuorumStatus,
        committee: &Committee,
        epoch: u64,
    ) -> Self {
        let quorum = committee.quorum_threshold();
        let n = committee.n_shards();
        let mut response = StatusResponse {
            blob_id: blob_id.to_string(),
            state: BlobState::Unknown,
            epoch,
            end_epoch: None,
            deletable: None,
            certificate: None,
            deletion_proof: None,
            answered_shards: None,
            summary: String::new(),
        };
        match &status.status {
            BlobStatus::Certified { certificate } => {
                let end_epoch = certificate.message.body.end_epoch;
                let summary = CertificateSummary::new(certificate, committee, quorum);
                response.summary = format!(
                    "certified in epoch {} by {}/{} shards, available until epoch {}",
                    summary.epoch, summary.signed_shards, n, end_epoch.0
                );
                response.state = BlobState::Certified;
                response.end_epoch = Some(end_epoch.0);
                response.deletable = Some(certificate.message.body.deletable);
                response.certificate = Some(summary);
            }
            BlobStatus::Expired { certificate } => {
                let end = certificate.message.body.end_epoch.0;
                response.summary = format!(
                    "expired: its storage ended at epoch {end} (certified in epoch {})",
                    certificate.message.epoch.0
                );
                response.state = BlobState::Expired;
                response.end_epoch = Some(end);
                response.deletable = Some(certificate.message.body.deletable);
                response.certificate =
                    Some(CertificateSummary::new(certificate, committee, quorum));
            }
            BlobStatus::Invalid { certificate } => {
                let summary =
                    CertificateSummary::new(certificate, committee, committee.validity_threshold());
                response.summary = format!(
                    "invalid: {}/{} shards attested in epoch {} that its writer encoded it inconsistently; it has no content",
                    summary.signed_shards, n, summary.epoch
                );
                response.state = BlobState::Invalid;
                response.certificate = Some(summary);
            }
            BlobStatus::Deleted { proof } => {
                response.state = BlobState::Deleted;
                response.summary = format!(
                    "deleted by its owner in epoch {}",
                    proof.deletion.message.epoch.0
                );
                response.certificate = Some(CertificateSummary::new(
                    &proof.certificate,
                    committee,
                    quorum,
                ));
                // The proof as the fact it is (`Fact::Deleted`), as nodes exchange it.
                response.deletion_proof = Some(
                    STANDARD.encode(floe_codec::canonical_bytes(&Fact::Deleted(proof.clone()))),
                );
            }
            BlobStatus::Unknown | BlobStatus::Pending => {
                let answered = status.answered;
                response.summary = format!(
                    "unknown: nodes holding {answered}/{n} shards answered and none knows a certificate"
                );
                response.answered_shards = Some(answered);
            }
        }
        response
    }
}

/// An error, shaped like the `Status` body Walrus publishers and aggregators
/// answer with (google.rpc `Status`, AIP-193): `error.code` is the HTTP
/// status code, `error.status` its general class, `error.message` what
/// happened and what to do, and `error.details` holds one [`ErrorInfo`] that
/// says the same for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// The HTTP status code.
    pub code: u16,
    /// The general class of the error, UPPER_SNAKE_CASE. Where Walrus names
    /// the class, the name and code are Walrus's: INVALID_ARGUMENT and
    /// FAILED_PRECONDITION (400), PERMISSION_DENIED (403), NOT_FOUND (404),
    /// RANGE_NOT_SATISFIABLE (416), RESOURCE_EXHAUSTED (429), INTERNAL
    /// (500), UNAVAILABLE (503). Floe's own: REQUEST_TIMEOUT (408), GONE
    /// (410), PAYLOAD_TOO_LARGE (413), INVALID_BLOB (422).
    pub status: String,
    /// The message, naming the blob and what to do next.
    pub message: String,
    /// Machine-readable details: always one [`ErrorInfo`].
    pub details: Vec<ErrorInfo>,
    /// The blob's state, when the error is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob_status: Option<Box<StatusResponse>>,
}

/// The machine-readable form of an error (google.rpc `ErrorInfo`): the pair
/// (`domain`, `reason`) names the error, `metadata` carries every value the
/// message mentions, so programs never parse the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// The detail's type: always `ErrorInfo`.
    #[serde(rename = "@type")]
    pub kind: String,
    /// The error, UPPER_SNAKE_CASE, unique within the domain (for example
    /// `EPOCHS_OVER_LIMIT`, `BLOB_NOT_CERTIFIED`, `OVERLOADED`).
    pub reason: String,
    /// Who raised it: `gateway.floe`.
    pub domain: String,
    /// The values the message mentions (blob ID, limit, parameter, ...).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}
