//! Quorum certificates: gathering signatures ([`CertificateBuilder`]) and
//! checking them ([`Certificate::verify`]) against a committee.
//!
//! A certificate is compact: the message once, a bitmap of signers (bit `i`
//! = member `i`, little-endian within each byte, exactly
//! `⌈members / 8⌉` bytes) and one 64-byte signature per set bit, in member
//! order. Verification is one Ed25519 batch verification; only when the
//! batch fails are signatures checked one by one, to name the bad signer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    error::{BuildError, CertificateError},
    messages::Threshold,
    Committee, Epoch, InvalidBlobAttestation, MemberIndex, MessageBody, ProtocolMessage, Signature,
    Signed, StorageConfirmation,
};

/// Which members signed. BCS: `bytes` (ULEB128 length, then the bitmap).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignerBitmap(pub Vec<u8>);

impl SignerBitmap {
    /// An empty bitmap for `members` members.
    pub fn for_members(members: usize) -> Self {
        SignerBitmap(vec![0; members.div_ceil(8)])
    }

    /// Sets member `index`'s bit (the bitmap must be long enough).
    fn set(&mut self, index: MemberIndex) {
        let i = index.as_usize();
        if let Some(byte) = self.0.get_mut(i / 8) {
            *byte |= 1 << (i % 8);
        }
    }

    /// The members whose bits are set, in order.
    pub fn iter(&self) -> impl Iterator<Item = MemberIndex> + '_ {
        self.0.iter().enumerate().flat_map(|(byte_index, byte)| {
            (0..8)
                .filter(move |bit| byte & (1 << bit) != 0)
                .map(move |bit| MemberIndex((byte_index * 8 + bit) as u16))
        })
    }

    /// The number of signers.
    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }
}

/// Signatures of enough committee weight over one message.
///
/// BCS: `message ‖ signers: SignerBitmap ‖ signatures: vec<[64]>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "T: MessageBody")]
pub struct Certificate<T> {
    /// The certified message.
    pub message: ProtocolMessage<T>,
    /// Who signed.
    pub signers: SignerBitmap,
    /// Their signatures, in member order.
    pub signatures: Vec<Signature>,
}

/// A quorum (`n − f` shards) confirmed storing the blob: it is available.
pub type BlobCertificate = Certificate<StorageConfirmation>;

/// At least `f + 1` shards attested the blob is inconsistently encoded.
pub type InvalidBlobCertificate = Certificate<InvalidBlobAttestation>;

fn threshold_weight(committee: &Committee, threshold: Threshold) -> u32 {
    match threshold {
        Threshold::Quorum => committee.quorum_threshold(),
        Threshold::Validity => committee.validity_threshold(),
    }
}

impl<T: MessageBody> Certificate<T> {
    /// Builds a certificate from `(member, signature)` pairs, without
    /// verifying the signatures (use [`Certificate::verify`] or a
    /// [`CertificateBuilder`]). Refuses unknown or repeated members.
    pub fn from_signatures(
        committee: &Committee,
        message: ProtocolMessage<T>,
        signatures: impl IntoIterator<Item = (MemberIndex, Signature)>,
    ) -> Result<Self, CertificateError> {
        let mut by_member = BTreeMap::new();
        for (member, signature) in signatures {
            if committee.member(member).is_none() {
                return Err(CertificateError::UnknownSigner { index: member.0 });
            }
            if by_member.insert(member, signature).is_some() {
                return Err(CertificateError::DuplicateSigner { index: member.0 });
            }
        }
        let mut signers = SignerBitmap::for_members(committee.members().len());
        for member in by_member.keys() {
            signers.set(*member);
        }
        Ok(Certificate {
            message,
            signers,
            signatures: by_member.into_values().collect(),
        })
    }

    /// The total shard weight of the signers (unknown signers count 0).
    pub fn weight(&self, committee: &Committee) -> u32 {
        self.signers.iter().map(|m| committee.weight(m)).sum()
    }

    /// Checks the certificate against the committee of its epoch; returns
    /// the signers' weight.
    pub fn verify(&self, committee: &Committee) -> Result<u32, CertificateError> {
        self.verify_with(committee, SignatureCheck::Batch)
    }

    /// [`Certificate::verify`], choosing how signatures are checked.
    ///
    /// The protocol rule is [`SignatureCheck::Batch`] (what `verify` does):
    /// ed25519-dalek's batch equation is deterministic for given inputs, so
    /// every node reaches the same verdict on the same certificate.
    /// [`SignatureCheck::Individual`] is stricter (it also refuses
    /// signatures with small-order components that a batch may accept) and
    /// exists for audits and benchmarks; a node must not mix the two.
    pub fn verify_with(
        &self,
        committee: &Committee,
        check: SignatureCheck,
    ) -> Result<u32, CertificateError> {
        let blob_id = self.message.body.blob_id();
        if self.message.epoch != committee.epoch() {
            return Err(CertificateError::WrongEpoch {
                blob_id,
                certificate: self.message.epoch,
                committee: committee.epoch(),
            });
        }
        let members = committee.members();
        if self.signers.0.len() != members.len().div_ceil(8) {
            return Err(CertificateError::MalformedBitmap {
                bytes: self.signers.0.len(),
                members: members.len(),
            });
        }
        let signers: Vec<MemberIndex> = self.signers.iter().collect();
        if let Some(unknown) = signers.iter().find(|m| m.as_usize() >= members.len()) {
            return Err(CertificateError::UnknownSigner { index: unknown.0 });
        }
        if signers.len() != self.signatures.len() {
            return Err(CertificateError::SignatureCount {
                signers: signers.len(),
                signatures: self.signatures.len(),
            });
        }
        let weight: u32 = signers.iter().map(|m| committee.weight(*m)).sum();
        let needed = threshold_weight(committee, T::THRESHOLD);
        if weight < needed {
            return Err(CertificateError::InsufficientWeight {
                blob_id,
                weight,
                needed,
            });
        }
        let bytes = self.message.signing_bytes();
        let messages: Vec<&[u8]> = vec![&bytes; signers.len()];
        let keys: Vec<_> = signers
            .iter()
            .filter_map(|m| committee.member(*m))
            .map(|member| *member.protocol_key.verifying_key())
            .collect();
        let signatures: Vec<_> = self.signatures.iter().map(|s| *s.inner()).collect();
        if check == SignatureCheck::Batch
            && ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
        {
            return Ok(weight);
        }
        // Name the first bad signer.
        for (member, signature) in signers.iter().zip(&self.signatures) {
            if let Some(m) = committee.member(*member) {
                if !m.protocol_key.verify(&bytes, signature) {
                    return Err(CertificateError::BadSignature {
                        blob_id,
                        node_id: m.node_id.clone(),
                    });
                }
            }
        }
        match check {
            SignatureCheck::Batch => Err(CertificateError::BatchRejected { blob_id }),
            SignatureCheck::Individual => Ok(weight),
        }
    }
}

/// How [`Certificate::verify_with`] checks signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// One Ed25519 batch verification (falling back to single checks only
    /// to name a bad signer).
    Batch,
    /// Each signature on its own, strictly.
    Individual,
}

/// Gathers signed messages from members until they carry enough weight.
#[derive(Debug)]
pub struct CertificateBuilder<'c, T> {
    committee: &'c Committee,
    message: ProtocolMessage<T>,
    signing_bytes: Vec<u8>,
    signatures: BTreeMap<MemberIndex, Signature>,
    weight: u32,
}

impl<'c, T: MessageBody> CertificateBuilder<'c, T> {
    /// A builder for `message` under `committee`.
    pub fn new(committee: &'c Committee, message: ProtocolMessage<T>) -> Self {
        let signing_bytes = message.signing_bytes();
        Self {
            committee,
            message,
            signing_bytes,
            signatures: BTreeMap::new(),
            weight: 0,
        }
    }

    /// Adds one member's signed message; returns the weight gathered so far.
    pub fn add(&mut self, signed: &Signed<T>) -> Result<u32, BuildError> {
        let blob_id = self.message.body.blob_id();
        let member = self
            .committee
            .member_by_protocol_key(&signed.signer)
            .ok_or(BuildError::NotAMember {
                blob_id,
                signer: signed.signer,
            })?;
        let node_id = self
            .committee
            .member(member)
            .map(|m| m.node_id.clone())
            .unwrap_or_default();
        if signed.message.epoch != self.message.epoch {
            return Err(BuildError::WrongEpoch {
                blob_id,
                node_id,
                got: signed.message.epoch,
                expected: self.message.epoch,
            });
        }
        if signed.message.body != self.message.body {
            return Err(BuildError::WrongBody { blob_id, node_id });
        }
        if self.signatures.contains_key(&member) {
            return Err(BuildError::Duplicate { blob_id, node_id });
        }
        if !signed.signer.verify(&self.signing_bytes, &signed.signature) {
            return Err(BuildError::BadSignature { blob_id, node_id });
        }
        self.signatures.insert(member, signed.signature);
        self.weight += self.committee.weight(member);
        Ok(self.weight)
    }

    /// The shard weight gathered so far.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The weight still missing before a certificate can be formed.
    pub fn missing_weight(&self) -> u32 {
        threshold_weight(self.committee, T::THRESHOLD).saturating_sub(self.weight)
    }

    /// Whether enough weight has been gathered.
    pub fn is_complete(&self) -> bool {
        self.missing_weight() == 0
    }

    /// The certificate, once enough weight has been gathered.
    pub fn certificate(&self) -> Result<Certificate<T>, BuildError> {
        if !self.is_complete() {
            return Err(BuildError::InsufficientWeight {
                blob_id: self.message.body.blob_id(),
                weight: self.weight,
                needed: threshold_weight(self.committee, T::THRESHOLD),
            });
        }
        Certificate::from_signatures(
            self.committee,
            self.message.clone(),
            self.signatures.iter().map(|(m, s)| (*m, *s)),
        )
        .map_err(BuildError::Certificate)
    }
}

impl<T> Certificate<T> {
    /// The epoch of the certified message.
    pub fn epoch(&self) -> Epoch {
        self.message.epoch
    }
}
