//! The blob-state lattice: a node's view of a blob is the join of the
//! verified facts it has seen, so nodes that see the same facts, in any
//! order and any number of times, hold the same state.
//!
//! The state is a product of small semilattices, each joined pointwise:
//!
//! * `pending`: whether this node holds data without a certificate (OR);
//! * `permanent`: the non-deletable storage certificate with the largest
//!   end epoch;
//! * per owner key, for deletable registrations: the latest deletion (with
//!   the registration it carries as proof) and the live certificates it did
//!   not end (a deletion in epoch `e` ends that owner's registrations
//!   certified in `e` or earlier, so a later re-store by the same owner lives
//!   on). Of the live certificates only those no other one *supersedes* are
//!   kept: one certified no earlier and lasting no shorter makes an older
//!   one redundant (any deletion that ends the newer ends the older, and the
//!   newer lasts as long). A renewal therefore replaces what it renews;
//! * `invalid`: an invalid-blob certificate, which dominates everything.
//!
//! Ties are broken by a fixed total order on certificates, so `join` is
//! commutative, associative and idempotent on values, not just on states.
//! The state holds exactly the facts [`BlobState::facts`] lists: nothing it
//! keeps is history, so two nodes that agree on a blob list the same facts.
//!
//! A state is built for one blob ID and refuses facts about any other
//! ([`FactError::WrongBlob`]): a certificate of another blob is no proof
//! about this one, whoever sends it.
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

    /// Verifies the fact: its shape (see [`Fact::check_shape`]), then its
    /// certificate against `committee` (the committee of the fact's epoch).
    pub fn verify(self, committee: &Committee) -> Result<VerifiedFact, FactError> {
        self.check_shape()?;
        Ok(self.verify_after_shape(committee)?)
    }

    /// What is checked without any committee: a deletable certificate names
    /// its owner; a deletion is signed by its owner and carries a deletable
    /// certificate of the same blob, owned by the signer, certified no later
    /// than the deletion. A fact that fails these is false whoever signed
    /// its certificate.
    pub fn check_shape(&self) -> Result<(), FactError> {
        match self {
            Fact::Certified(c) => {
                let body = &c.message.body;
                if body.deletable && body.owner.is_none() {
                    return Err(CertificateError::DeletableWithoutOwner {
                        blob_id: body.blob_id,
                    }
                    .into());
                }
            }
            Fact::Invalid(_) => {}
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
                deletion.verify()?;
            }
        }
        Ok(())
    }

    /// The rest of [`Fact::verify`] for a fact whose shape
    /// [`Fact::check_shape`] passed: its certificate (a deletion's: the
    /// registration it ends) checked against `committee`.
    pub(crate) fn verify_after_shape(
        self,
        committee: &Committee,
    ) -> Result<VerifiedFact, CertificateError> {
        match &self {
            Fact::Certified(c) => c.verify(committee),
            Fact::Invalid(c) => c.verify(committee),
            Fact::Deleted(proof) => proof.certificate.verify(committee),
        }?;
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
    /// Certificates not ended by the deletion and superseded by no other,
    /// in increasing certifying epoch (end epochs then strictly decrease).
    live: Vec<BlobCertificate>,
    /// The latest deletion, with the registration it carries as proof.
    deletion: Option<DeletionProof>,
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

/// Whether `a` makes `b` redundant for one owner: certified no earlier,
/// and no smaller in [`cert_order`] (so lasting no shorter). A partial
/// order, so the certificates nothing supersedes are well defined whatever
/// the order they arrive in.
fn supersedes(a: &BlobCertificate, b: &BlobCertificate) -> bool {
    a.message.epoch >= b.message.epoch && cert_order(a, b) != Ordering::Less
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

/// The later deletion wins; ties by signature, then by the registration
/// carried.
fn deletion_order(a: &DeletionProof, b: &DeletionProof) -> Ordering {
    (a.deletion.message.epoch, a.deletion.signature.to_bytes())
        .cmp(&(b.deletion.message.epoch, b.deletion.signature.to_bytes()))
        .then_with(|| cert_order(&a.certificate, &b.certificate))
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
        if let Some(theirs) = &other.deletion {
            let newer = self
                .deletion
                .as_ref()
                .is_none_or(|mine| deletion_order(theirs, mine) == Ordering::Greater);
            if newer {
                self.deletion = Some(theirs.clone());
            }
        }
        for cert in &other.live {
            self.add_live(cert);
        }
        self.end_deleted();
    }

    /// Adds a certificate unless one already kept supersedes it, dropping
    /// those it supersedes.
    fn add_live(&mut self, cert: &BlobCertificate) {
        if self.live.iter().any(|kept| supersedes(kept, cert)) {
            return;
        }
        self.live.retain(|kept| !supersedes(cert, kept));
        let at = self.live.partition_point(|kept| {
            (kept.message.epoch, cert_order(kept, cert)) < (cert.message.epoch, Ordering::Equal)
        });
        self.live.insert(at, cert.clone());
    }

    /// Drops the registrations the deletion ended.
    fn end_deleted(&mut self) {
        if let Some(proof) = &self.deletion {
            let ended_up_to = proof.deletion.message.epoch;
            self.live.retain(|c| c.message.epoch > ended_up_to);
        }
    }

    fn best_live(&self) -> Option<&BlobCertificate> {
        self.live.iter().max_by(|a, b| cert_order(a, b))
    }

    fn certificates(&self) -> impl Iterator<Item = &BlobCertificate> {
        self.live
            .iter()
            .chain(self.deletion.iter().map(|d| &d.certificate))
    }
}

/// The proofs a state keeps, as they are stored (BCS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Proofs {
    pending: bool,
    permanent: Option<BlobCertificate>,
    owners: BTreeMap<PublicKey, OwnerRecord>,
    invalid: Option<InvalidBlobCertificate>,
}

/// Everything a node knows about one blob, as proofs. Built for one blob
/// ID, it refuses facts about any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobState {
    blob_id: BlobId,
    proofs: Proofs,
}

/// A blob's state as a user sees it, with its proof: the one status type,
/// from a node's state over the wire to the client, the gateway and the
/// command line.
// Certificates carry an owner key (a decompressed point); a status is
// built once per answer, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobStatus {
    /// Nothing is known: no data, no certificate.
    Unknown,
    /// This node holds data but has seen no certificate.
    Pending,
    /// Available until `certificate.message.body.end_epoch`.
    Certified {
        /// The quorum certificate with the latest end epoch.
        certificate: BlobCertificate,
    },
    /// Was available until an end epoch that has passed.
    Expired {
        /// The certificate with the latest end epoch.
        certificate: BlobCertificate,
    },
    /// Every registration was deleted by its owner (or had expired).
    Deleted {
        /// The owner's signed deletion with the registration it ended.
        proof: Box<DeletionProof>,
    },
    /// Proven inconsistently encoded.
    Invalid {
        /// The invalid-blob certificate.
        certificate: InvalidBlobCertificate,
    },
}

impl BlobStatus {
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

    /// The fact that proves this status (none for unknown and pending: no
    /// proof of absence exists). An expired blob's proof is its certificate,
    /// whose end epoch has passed.
    pub fn fact(&self) -> Option<Fact> {
        match self {
            BlobStatus::Unknown | BlobStatus::Pending => None,
            BlobStatus::Certified { certificate } | BlobStatus::Expired { certificate } => {
                Some(Fact::Certified(certificate.clone()))
            }
            BlobStatus::Invalid { certificate } => Some(Fact::Invalid(certificate.clone())),
            BlobStatus::Deleted { proof } => Some(Fact::Deleted(proof.clone())),
        }
    }
}

/// Why stored state bytes could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    /// Not the BCS of a state.
    #[error("not a blob state: {0}")]
    Malformed(String),
    /// A proof in it is about another blob.
    #[error(transparent)]
    WrongBlob(#[from] FactError),
}

/// The layout states were stored in before superseded certificates were
/// dropped: live certificates by certifying epoch, the latest deletion and
/// the best registration it ended, kept apart.
#[derive(Deserialize)]
struct LegacyProofs {
    pending: bool,
    permanent: Option<BlobCertificate>,
    owners: BTreeMap<PublicKey, LegacyOwnerRecord>,
    invalid: Option<InvalidBlobCertificate>,
}

#[derive(Deserialize)]
struct LegacyOwnerRecord {
    live: BTreeMap<Epoch, BlobCertificate>,
    deletion: Option<Signed<BlobDeletion>>,
    deleted: Option<BlobCertificate>,
}

impl BlobState {
    /// Nothing known about `blob_id`.
    pub fn unknown(blob_id: BlobId) -> Self {
        BlobState {
            blob_id,
            proofs: Proofs::default(),
        }
    }

    /// The state of a node that holds the blob's data without a certificate.
    pub fn pending(blob_id: BlobId) -> Self {
        let mut state = Self::unknown(blob_id);
        state.mark_pending();
        state
    }

    /// The blob this state is about.
    pub fn blob_id(&self) -> BlobId {
        self.blob_id
    }

    /// Records that this node holds the blob's data.
    pub fn mark_pending(&mut self) {
        self.proofs.pending = true;
    }

    /// The state that exactly one verified fact gives (about its blob).
    pub fn from_fact(fact: VerifiedFact) -> Self {
        let mut state = BlobState::unknown(fact.fact().blob_id());
        let proofs = &mut state.proofs;
        match fact.0 {
            Fact::Certified(cert) => match cert.message.body.owner {
                Some(owner) if cert.message.body.deletable => {
                    proofs.owners.entry(owner).or_default().live.push(cert);
                }
                _ => proofs.permanent = Some(cert),
            },
            Fact::Invalid(cert) => proofs.invalid = Some(cert),
            Fact::Deleted(proof) => {
                let record = proofs.owners.entry(proof.deletion.signer).or_default();
                record.deletion = Some(*proof);
            }
        }
        state
    }

    /// Joins a verified fact into this state; a fact about another blob is
    /// refused and changes nothing.
    pub fn apply(&mut self, fact: VerifiedFact) -> Result<(), FactError> {
        let other = BlobState::from_fact(fact);
        self.join_in(&other)
    }

    /// The join (least upper bound) of two states of the same blob.
    pub fn join(&self, other: &BlobState) -> Result<BlobState, FactError> {
        let mut joined = self.clone();
        joined.join_in(other)?;
        Ok(joined)
    }

    /// Joins `other` into `self`; a state of another blob is refused and
    /// changes nothing.
    pub fn join_in(&mut self, other: &BlobState) -> Result<(), FactError> {
        if other.blob_id != self.blob_id {
            return Err(FactError::WrongBlob {
                state: self.blob_id,
                fact: other.blob_id,
            });
        }
        let (mine, theirs) = (&mut self.proofs, &other.proofs);
        mine.pending |= theirs.pending;
        mine.permanent = best_cert(mine.permanent.take(), theirs.permanent.as_ref());
        for (owner, record) in &theirs.owners {
            mine.owners.entry(*owner).or_default().join(record);
        }
        mine.invalid = best_invalid(mine.invalid.take(), theirs.invalid.as_ref());
        Ok(())
    }

    /// The facts this state holds (what anti-entropy exchanges): joining
    /// them into an unknown state of the blob gives this state back (but for
    /// `pending`).
    pub fn facts(&self) -> Vec<Fact> {
        let proofs = &self.proofs;
        let mut facts = Vec::new();
        facts.extend(proofs.permanent.iter().cloned().map(Fact::Certified));
        for record in proofs.owners.values() {
            facts.extend(record.live.iter().cloned().map(Fact::Certified));
            if let Some(proof) = &record.deletion {
                facts.push(Fact::Deleted(Box::new(proof.clone())));
            }
        }
        facts.extend(proofs.invalid.iter().cloned().map(Fact::Invalid));
        facts
    }

    /// Whether any storage certificate is known (live, expired or ended by
    /// a deletion): the blob is no longer a mere pending upload.
    pub fn has_certificate(&self) -> bool {
        self.proofs.permanent.is_some()
            || self
                .proofs
                .owners
                .values()
                .any(|r| r.certificates().next().is_some())
    }

    /// The epoch of `owner`'s latest deletion of the blob, if it deleted it:
    /// its registrations certified (or confirmed) then or earlier are ended.
    pub fn deletion_by(&self, owner: &PublicKey) -> Option<Epoch> {
        self.proofs
            .owners
            .get(owner)?
            .deletion
            .as_ref()
            .map(|d| d.deletion.message.epoch)
    }

    /// `owner`'s deletable registration not ended by a deletion with the
    /// latest end epoch (perhaps expired): what a deletion by `owner` must
    /// carry. The status shows only the registration lasting longest.
    pub fn registration_of(&self, owner: &PublicKey) -> Option<&BlobCertificate> {
        self.proofs.owners.get(owner)?.best_live()
    }

    /// The latest end epoch among registrations not ended by a deletion:
    /// the blob's data is needed until then (and may be collected after).
    pub fn available_until(&self) -> Option<Epoch> {
        self.best_live().map(|c| c.message.body.end_epoch)
    }

    /// The live storage certificate with the latest end epoch, if any.
    fn best_live(&self) -> Option<&BlobCertificate> {
        self.proofs
            .owners
            .values()
            .filter_map(OwnerRecord::best_live)
            .chain(self.proofs.permanent.as_ref())
            .max_by(|a, b| cert_order(a, b))
    }

    /// What this state says about the blob in epoch `current`, with proof.
    pub fn status(&self, current: Epoch) -> BlobStatus {
        if let Some(certificate) = &self.proofs.invalid {
            return BlobStatus::Invalid {
                certificate: certificate.clone(),
            };
        }
        let live = self.best_live();
        if let Some(certificate) = live.filter(|c| c.message.body.end_epoch > current) {
            return BlobStatus::Certified {
                certificate: certificate.clone(),
            };
        }
        let deleted = self
            .proofs
            .owners
            .values()
            .filter_map(|r| r.deletion.as_ref())
            .max_by(|a, b| cert_order(&a.certificate, &b.certificate));
        if let Some(proof) = deleted {
            return BlobStatus::Deleted {
                proof: Box::new(proof.clone()),
            };
        }
        if let Some(certificate) = live {
            return BlobStatus::Expired {
                certificate: certificate.clone(),
            };
        }
        if self.proofs.pending {
            BlobStatus::Pending
        } else {
            BlobStatus::Unknown
        }
    }

    /// Whether this node may serve and must keep the blob's slivers in
    /// epoch `current`.
    pub fn is_available(&self, current: Epoch) -> bool {
        self.proofs.invalid.is_none()
            && self
                .best_live()
                .is_some_and(|c| c.message.body.end_epoch > current)
    }

    /// The canonical bytes of the state (for storing it).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::canonical_bytes(&self.proofs)
    }

    /// A state of `blob_id` from [`BlobState::to_bytes`]; refuses bytes
    /// holding a proof about another blob. Proofs are not verified again:
    /// only bytes this node wrote after verifying them belong here.
    pub fn from_bytes(blob_id: BlobId, bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let proofs: Proofs = floe_codec::from_canonical_bytes(bytes)
            .map_err(|e| StateDecodeError::Malformed(e.to_string()))?;
        Self::checked(blob_id, proofs)
    }

    /// A state of `blob_id` from bytes in the layout before superseded
    /// certificates were dropped (databases written by earlier versions).
    pub fn from_legacy_bytes(blob_id: BlobId, bytes: &[u8]) -> Result<Self, StateDecodeError> {
        let legacy: LegacyProofs = floe_codec::from_canonical_bytes(bytes)
            .map_err(|e| StateDecodeError::Malformed(e.to_string()))?;
        let mut proofs = Proofs {
            pending: legacy.pending,
            permanent: legacy.permanent,
            owners: BTreeMap::new(),
            invalid: legacy.invalid,
        };
        for (owner, old) in legacy.owners {
            let mut record = OwnerRecord {
                live: Vec::new(),
                deletion: old
                    .deletion
                    .zip(old.deleted)
                    .map(|(deletion, certificate)| DeletionProof {
                        deletion,
                        certificate,
                    }),
            };
            for cert in old.live.values() {
                record.add_live(cert);
            }
            record.end_deleted();
            proofs.owners.insert(owner, record);
        }
        Self::checked(blob_id, proofs)
    }

    fn checked(blob_id: BlobId, proofs: Proofs) -> Result<Self, StateDecodeError> {
        let state = BlobState { blob_id, proofs };
        if let Some(other) = state
            .facts()
            .iter()
            .map(Fact::blob_id)
            .find(|id| *id != blob_id)
        {
            return Err(FactError::WrongBlob {
                state: blob_id,
                fact: other,
            }
            .into());
        }
        Ok(state)
    }
}
