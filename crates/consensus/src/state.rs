//! The blob-state lattice: a node's view of a blob is the join of the
//! verified facts it has seen, so nodes that see the same facts, in any
//! order and any number of times, hold the same state.
//!
//! The state is a product of small semilattices, each joined pointwise:
//!
//! * `pending`: whether this node holds data without a certificate (OR);
//! * `permanent`: the non-deletable storage certificate with the largest
//!   end epoch;
//! * per owner key, for deletable registrations: live certificates by
//!   certifying epoch (largest end epoch per epoch), the latest deletion,
//!   and the best certificate that deletion ended (a deletion in epoch `e`
//!   ends that owner's registrations certified in `e` or earlier, so a later
//!   re-store by the same owner lives on);
//! * `invalid`: an invalid-blob certificate, which dominates everything.
//!
//! Ties are broken by a fixed total order on certificates, so `join` is
//! commutative, associative and idempotent on values, not just on states.
//! [`BlobState::status`] projects the state onto what a user asks —
//! unknown < pending < certified(end epoch) < deleted, invalid above all,
//! expired derived from the current epoch — always with its proof.

use std::{cmp::Ordering, collections::BTreeMap};

use floe_codec::BlobId;
use serde::{Deserialize, Serialize};

use crate::{
    error::{CertificateError, FactError},
    BlobCertificate, BlobDeletion, Committee, Epoch, InvalidBlobCertificate, PublicKey, Signed,
};

/// Something that changes what is known about a blob.
// Certificates carry an owner key (a decompressed point); facts are moved
// rarely (one per network message), so their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fact {
    /// A quorum stores it.
    Certified(BlobCertificate),
    /// `f + 1` shards attest it is inconsistently encoded.
    Invalid(InvalidBlobCertificate),
    /// Its owner deleted its deletable registrations.
    Deleted(Box<DeletionProof>),
}

/// An owner's deletion together with the deletable registration it ends.
/// A deletion alone is not a fact: without a certificate naming its signer
/// as the owner, any key could sign deletions for any blob and every node
/// would have to keep and gossip them.
///
/// BCS: `deletion: Signed<BlobDeletion> ‖ certificate: BlobCertificate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionProof {
    /// The owner's signed deletion.
    pub deletion: Signed<BlobDeletion>,
    /// A deletable storage certificate of the same blob, owned by the
    /// deletion's signer, certified no later than the deletion's epoch.
    pub certificate: BlobCertificate,
}

impl Fact {
    /// The blob the fact is about.
    pub fn blob_id(&self) -> BlobId {
        match self {
            Fact::Certified(c) => c.message.body.blob_id,
            Fact::Invalid(c) => c.message.body.blob_id,
            Fact::Deleted(d) => d.deletion.message.body.blob_id,
        }
    }

    /// The epoch whose committee verifies the fact (for a deletion, that
    /// of the certificate it carries).
    pub fn epoch(&self) -> Epoch {
        match self {
            Fact::Certified(c) => c.message.epoch,
            Fact::Invalid(c) => c.message.epoch,
            Fact::Deleted(d) => d.certificate.message.epoch,
        }
    }

    /// Verifies the fact: certificates against `committee` (the committee
    /// of the fact's epoch), deletions against the owner's signature.
    pub fn verify(self, committee: &Committee) -> Result<VerifiedFact, FactError> {
        match &self {
            Fact::Certified(c) => {
                let body = &c.message.body;
                if body.deletable && body.owner.is_none() {
                    return Err(CertificateError::DeletableWithoutOwner {
                        blob_id: body.blob_id,
                    }
                    .into());
                }
                c.verify(committee)?;
            }
            Fact::Invalid(c) => {
                c.verify(committee)?;
            }
            Fact::Deleted(proof) => {
                let DeletionProof {
                    deletion,
                    certificate,
                } = proof.as_ref();
                let body = &certificate.message.body;
                let blob_id = deletion.message.body.blob_id;
                if !body.deletable
                    || body.owner != Some(deletion.signer)
                    || body.blob_id != blob_id
                    || deletion.message.epoch < certificate.message.epoch
                {
                    return Err(FactError::DeletionMismatch { blob_id });
                }
                certificate.verify(committee)?;
                deletion.verify()?;
            }
        }
        Ok(VerifiedFact(self))
    }

    /// A digest identifying this fact (BLAKE3 of its canonical bytes).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&crate::canonical_bytes(self)).as_bytes()
    }
}

/// A fact whose certificate or signature has been checked. Only
/// [`Fact::verify`] makes one, so a [`BlobState`] only ever moves on proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFact(Fact);

impl VerifiedFact {
    /// The fact.
    pub fn fact(&self) -> &Fact {
        &self.0
    }

    /// The fact, for storing or sending.
    pub fn into_fact(self) -> Fact {
        self.0
    }
}

/// What one owner's deletable registrations of a blob have become.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct OwnerRecord {
    /// Certificates not ended by a deletion, by certifying epoch.
    live: BTreeMap<Epoch, BlobCertificate>,
    /// The latest deletion.
    deletion: Option<Signed<BlobDeletion>>,
    /// The best certificate the deletion ended (its proof of what was deleted).
    deleted: Option<BlobCertificate>,
}

/// A fixed total order on certificates: larger end epoch first, then an
/// arbitrary but deterministic order on the rest.
fn cert_order(a: &BlobCertificate, b: &BlobCertificate) -> Ordering {
    a.message
        .body
        .end_epoch
        .cmp(&b.message.body.end_epoch)
        .then_with(|| a.message.epoch.cmp(&b.message.epoch))
        .then_with(|| a.signers.0.cmp(&b.signers.0))
        .then_with(|| signature_bytes(&a.signatures).cmp(&signature_bytes(&b.signatures)))
}

fn signature_bytes(signatures: &[crate::Signature]) -> Vec<[u8; 64]> {
    signatures.iter().map(|s| s.to_bytes()).collect()
}

fn best_cert(a: Option<BlobCertificate>, b: Option<&BlobCertificate>) -> Option<BlobCertificate> {
    match (a, b) {
        (Some(a), Some(b)) if cert_order(b, &a) == Ordering::Greater => Some(b.clone()),
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    }
}

fn best_deletion(
    a: Option<Signed<BlobDeletion>>,
    b: Option<&Signed<BlobDeletion>>,
) -> Option<Signed<BlobDeletion>> {
    let key = |d: &Signed<BlobDeletion>| (d.message.epoch, d.signature.to_bytes());
    match (a, b) {
        (Some(a), Some(b)) if key(b) > key(&a) => Some(b.clone()),
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    }
}

fn best_invalid(
    a: Option<InvalidBlobCertificate>,
    b: Option<&InvalidBlobCertificate>,
) -> Option<InvalidBlobCertificate> {
    // The earliest proof wins; ties by bytes.
    let key = |c: &InvalidBlobCertificate| {
        (
            std::cmp::Reverse(c.message.epoch),
            c.signers.0.clone(),
            signature_bytes(&c.signatures),
        )
    };
    match (a, b) {
        (Some(a), Some(b)) if key(b) > key(&a) => Some(b.clone()),
        (Some(a), _) => Some(a),
        (None, b) => b.cloned(),
    }
}

impl OwnerRecord {
    fn join(&mut self, other: &OwnerRecord) {
        for (epoch, cert) in &other.live {
            let best = best_cert(self.live.remove(epoch), Some(cert));
            if let Some(best) = best {
                self.live.insert(*epoch, best);
            }
        }
        self.deletion = best_deletion(self.deletion.take(), other.deletion.as_ref());
        self.deleted = best_cert(self.deleted.take(), other.deleted.as_ref());
        self.normalize();
    }

    /// Moves the registrations the deletion ended out of `live`.
    fn normalize(&mut self) {
        if let Some(deletion) = &self.deletion {
            let ended_up_to = deletion.message.epoch;
            let still_live = self.live.split_off(&Epoch(ended_up_to.0.saturating_add(1)));
            let ended = std::mem::replace(&mut self.live, still_live);
            for cert in ended.into_values() {
                self.deleted = best_cert(self.deleted.take(), Some(&cert));
            }
        }
    }

    fn best_live(&self) -> Option<&BlobCertificate> {
        self.live.values().max_by(|a, b| cert_order(a, b))
    }
}

/// Everything a node knows about one blob, as proofs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobState {
    pending: bool,
    permanent: Option<BlobCertificate>,
    owners: BTreeMap<PublicKey, OwnerRecord>,
    invalid: Option<InvalidBlobCertificate>,
}

/// A blob's state as a user sees it, with its proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobStatus<'a> {
    /// Nothing is known: no data, no certificate.
    Unknown,
    /// This node holds data but has seen no certificate.
    Pending,
    /// Available until `certificate.message.body.end_epoch`.
    Certified {
        /// The quorum certificate with the latest end epoch.
        certificate: &'a BlobCertificate,
    },
    /// Was available until an end epoch that has passed.
    Expired {
        /// The certificate with the latest end epoch.
        certificate: &'a BlobCertificate,
    },
    /// Every registration was deleted by its owner (or had expired).
    Deleted {
        /// The owner's signed deletion.
        deletion: &'a Signed<BlobDeletion>,
        /// The registration it ended.
        certificate: &'a BlobCertificate,
    },
    /// Proven inconsistently encoded.
    Invalid {
        /// The invalid-blob certificate.
        certificate: &'a InvalidBlobCertificate,
    },
}

impl BlobStatus<'_> {
    /// A short name: `unknown`, `pending`, `certified`, `expired`, `deleted`, `invalid`.
    pub fn name(&self) -> &'static str {
        match self {
            BlobStatus::Unknown => "unknown",
            BlobStatus::Pending => "pending",
            BlobStatus::Certified { .. } => "certified",
            BlobStatus::Expired { .. } => "expired",
            BlobStatus::Deleted { .. } => "deleted",
            BlobStatus::Invalid { .. } => "invalid",
        }
    }
}

impl BlobState {
    /// Nothing known.
    pub fn unknown() -> Self {
        Self::default()
    }

    /// The state of a node that holds the blob's data without a certificate.
    pub fn pending() -> Self {
        BlobState {
            pending: true,
            ..Self::default()
        }
    }

    /// Records that this node holds the blob's data.
    pub fn mark_pending(&mut self) {
        self.pending = true;
    }

    /// The state that exactly one verified fact gives.
    pub fn from_fact(fact: VerifiedFact) -> Self {
        let mut state = BlobState::default();
        match fact.0 {
            Fact::Certified(cert) => match cert.message.body.owner {
                Some(owner) if cert.message.body.deletable => {
                    let record = state.owners.entry(owner).or_default();
                    record.live.insert(cert.message.epoch, cert);
                }
                _ => state.permanent = Some(cert),
            },
            Fact::Invalid(cert) => state.invalid = Some(cert),
            Fact::Deleted(proof) => {
                let DeletionProof {
                    deletion,
                    certificate,
                } = *proof;
                let record = state.owners.entry(deletion.signer).or_default();
                record.live.insert(certificate.message.epoch, certificate);
                record.deletion = Some(deletion);
                record.normalize();
            }
        }
        state
    }

    /// Joins a verified fact into this state.
    pub fn apply(&mut self, fact: VerifiedFact) {
        let other = BlobState::from_fact(fact);
        self.join_in(&other);
    }

    /// The join (least upper bound) of two states.
    pub fn join(&self, other: &BlobState) -> BlobState {
        let mut joined = self.clone();
        joined.join_in(other);
        joined
    }

    /// Joins `other` into `self`.
    pub fn join_in(&mut self, other: &BlobState) {
        self.pending |= other.pending;
        self.permanent = best_cert(self.permanent.take(), other.permanent.as_ref());
        for (owner, record) in &other.owners {
            self.owners.entry(*owner).or_default().join(record);
        }
        self.invalid = best_invalid(self.invalid.take(), other.invalid.as_ref());
    }

    /// The facts this state holds (what anti-entropy exchanges).
    pub fn facts(&self) -> Vec<Fact> {
        let mut facts = Vec::new();
        facts.extend(self.permanent.iter().cloned().map(Fact::Certified));
        for record in self.owners.values() {
            facts.extend(record.live.values().cloned().map(Fact::Certified));
            if let (Some(deletion), Some(certificate)) = (&record.deletion, &record.deleted) {
                facts.push(Fact::Deleted(Box::new(DeletionProof {
                    deletion: deletion.clone(),
                    certificate: certificate.clone(),
                })));
            }
        }
        facts.extend(self.invalid.iter().cloned().map(Fact::Invalid));
        facts
    }

    /// Whether any storage certificate is known (live, expired or ended by
    /// a deletion): the blob is no longer a mere pending upload.
    pub fn has_certificate(&self) -> bool {
        self.permanent.is_some()
            || self
                .owners
                .values()
                .any(|r| !r.live.is_empty() || r.deleted.is_some())
    }

    /// The latest end epoch among registrations not ended by a deletion:
    /// the blob's data is needed until then (and may be collected after).
    pub fn available_until(&self) -> Option<Epoch> {
        self.best_live().map(|c| c.message.body.end_epoch)
    }

    /// The live storage certificate with the latest end epoch, if any.
    fn best_live(&self) -> Option<&BlobCertificate> {
        self.owners
            .values()
            .filter_map(OwnerRecord::best_live)
            .chain(self.permanent.as_ref())
            .max_by(|a, b| cert_order(a, b))
    }

    /// What this state says about the blob in epoch `current`, with proof.
    pub fn status(&self, current: Epoch) -> BlobStatus<'_> {
        if let Some(certificate) = &self.invalid {
            return BlobStatus::Invalid { certificate };
        }
        let live = self.best_live();
        if let Some(certificate) = live.filter(|c| c.message.body.end_epoch > current) {
            return BlobStatus::Certified { certificate };
        }
        let deleted = self
            .owners
            .values()
            .filter_map(|r| Some((r.deletion.as_ref()?, r.deleted.as_ref()?)))
            .max_by(|a, b| cert_order(a.1, b.1));
        if let Some((deletion, certificate)) = deleted {
            return BlobStatus::Deleted {
                deletion,
                certificate,
            };
        }
        if let Some(certificate) = live {
            return BlobStatus::Expired { certificate };
        }
        if self.pending {
            BlobStatus::Pending
        } else {
            BlobStatus::Unknown
        }
    }

    /// Whether this node may serve and must keep the blob's slivers in
    /// epoch `current`.
    pub fn is_available(&self, current: Epoch) -> bool {
        matches!(self.status(current), BlobStatus::Certified { .. })
    }
}
