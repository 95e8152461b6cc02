//! What can go wrong, each saying what happened and what to do next.

use super::*;

/// A failure, saying what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No shard quorum knows a certificate for the blob.
    #[error("blob {blob_id} is not certified: shards with {answered} of {n_shards} shards answered and none holds a certificate")]
    NotCertified {
        /// The blob.
        blob_id: BlobId,
        /// Shards that answered.
        answered: u32,
        /// Shards in the committee.
        n_shards: u16,
    },
    /// The blob is proven inconsistently encoded: it has no content.
    #[error("blob {blob_id} is invalid: its writer encoded it inconsistently, as an invalid-blob certificate proves; it has no content to read")]
    Invalid {
        /// The blob.
        blob_id: BlobId,
        /// The invalid-blob certificate.
        certificate: Box<InvalidBlobCertificate>,
    },
    /// The blob's storage ended.
    #[error("blob {blob_id} expired at the end of epoch {end_epoch}; store it again to keep it")]
    Expired {
        /// The blob.
        blob_id: BlobId,
        /// The epoch its storage ended.
        end_epoch: Epoch,
    },
    /// The owner deleted the blob.
    #[error("blob {blob_id} was deleted by its owner")]
    Deleted {
        /// The blob.
        blob_id: BlobId,
        /// The deletion and the registration it ended.
        proof: Box<Fact>,
    },
    /// Too few shards answered to give a definite answer or the data.
    #[error(
        "blob {blob_id}: {what} needs {needed} shards, only {got} answered; failures: {}",
        describe(failures)
    )]
    NotEnoughShards {
        /// The blob.
        blob_id: BlobId,
        /// What was attempted.
        what: &'static str,
        /// Shards needed.
        needed: u32,
        /// Shards that answered usefully.
        got: u32,
        /// Which nodes failed, and how.
        failures: Vec<(String, String)>,
    },
    /// The epoch changed while the blob was being stored, and the
    /// confirmations of the epoch it started in were too few: nothing was
    /// certified. Storing again writes to the new epoch's committee.
    #[error("blob {blob_id}: epoch {from} ended while storing it (now epoch {to}) before enough shards confirmed; store it again")]
    EpochChanged {
        /// The blob.
        blob_id: BlobId,
        /// The epoch the store started in.
        from: floe_consensus::Epoch,
        /// The epoch now.
        to: floe_consensus::Epoch,
    },
    /// The blob cannot be stored on this committee.
    #[error("{0}")]
    Rejected(String),
    /// The caller may not do this (for example delete a blob it does not own).
    #[error("{0}")]
    NotAllowed(String),
    /// Nodes refused to store for this client (their `grants` admission
    /// mode): no grant, a grant refused, or a grant's limit reached. Nothing
    /// was certified.
    #[error("blob {blob_id} was not stored: {refusal}")]
    NotAdmitted {
        /// The blob.
        blob_id: BlobId,
        /// What a node said.
        refusal: floe_api::Admission,
    },
}

pub(crate) fn describe(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return "none reported".into();
    }
    failures
        .iter()
        .map(|(node, e)| format!("{node}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}
