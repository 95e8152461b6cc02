//! Deleting: an owner's deletion of its own deletable registration.

use std::time::Instant;

use floe_consensus::quorum::{Step, Tally};

use super::*;

/// What keeps a blob certified, as its status's certificate shows, for the
/// owner of a deletion signed in a given epoch (see [`KeptBy::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptBy {
    /// A permanent registration, which no key can delete.
    Permanent,
    /// Another key's deletable registration.
    AnotherKey,
    /// The owner's own registration, certified in `certified`, after the
    /// deletion's epoch: a deletion signed later ends it.
    LaterRegistration {
        /// The epoch the registration was certified in.
        certified: Epoch,
    },
    /// The owner's own registration, certified no later than the
    /// deletion: the deletion ends it once the members apply it.
    NotYetApplied,
}

impl KeptBy {
    /// What `certificate` (the one a status shows) is to `owner`'s deletion
    /// signed in `deletion_epoch`.
    pub fn of(certificate: &BlobCertificate, owner: &PublicKey, deletion_epoch: Epoch) -> Self {
        if !certificate.message.body.deletable {
            KeptBy::Permanent
        } else if !is_registration_of(certificate, owner) {
            KeptBy::AnotherKey
        } else if certificate.message.epoch > deletion_epoch {
            KeptBy::LaterRegistration {
                certified: certificate.message.epoch,
            }
        } else {
            KeptBy::NotYetApplied
        }
    }
}

impl Client {
    /// Delete `owner`'s deletable registration of `blob_id` and return the
    /// deletion delivered. The blob is deleted once no registration is
    /// left: another owner's, or a permanent one, keeps it certified (see
    /// [`KeptBy`]).
    pub async fn delete(
        &self,
        blob_id: BlobId,
        owner: &KeyPair,
    ) -> Result<DeletionProof, ClientError> {
        let key = owner.public();
        // The epoch the deletion is signed in, with the committee chain
        // followed to it: a registration certified later cannot go with it.
        let (epoch, _) = self.serving().await;
        let shown = match self.status(blob_id).await?.status {
            BlobStatus::Certified { certificate } => certificate,
            other => {
                return Err(ClientError::NotAllowed(format!(
                    "blob {blob_id} is {}; only certified blobs can be deleted",
                    other.name()
                )))
            }
        };
        // The status shows the registration lasting longest; the owner's
        // own may be another, which its deletion must carry. The one shown
        // is taken by the same rule as an answer to the lookup.
        let chain = self.chain();
        let own = RegistrationTally::new(
            &chain,
            RegistrationRequest {
                blob_id,
                owner: key,
            },
            epoch,
        )
        .check(Some(shown.clone()));
        let certificate = match own {
            Ok(Some(own)) => own,
            _ => {
                let (found, answered, asked) =
                    self.registration(&chain, blob_id, key, epoch).await?;
                found.ok_or_else(|| {
                    let shown = match KeptBy::of(&shown, &key, epoch) {
                        KeptBy::Permanent => "permanent, which no key can delete".into(),
                        KeptBy::AnotherKey => "another key's, which this key cannot delete".into(),
                        KeptBy::LaterRegistration { certified } => format!(
                            "this key's, certified in epoch {certified} after the epoch this \
                             deletion is signed in: retry once this client follows the \
                             committee there"
                        ),
                        KeptBy::NotYetApplied => format!(
                            "this key's, certified in epoch {}, which no member that answered \
                             offered as live",
                            shown.message.epoch
                        ),
                    };
                    ClientError::NotAllowed(format!(
                        "blob {blob_id} holds no registration deletable by key {key} in epoch \
                         {epoch} that the {answered} of {asked} members who answered know of; \
                         the one lasting longest is {shown}"
                    ))
                })?
            }
        };
        let deletion = Signed::sign(ProtocolMessage::new(epoch, BlobDeletion { blob_id }), owner);
        let proof = DeletionProof {
            deletion,
            certificate,
        };
        let accepted = self.deliver(Fact::Deleted(Box::new(proof.clone()))).await;
        if accepted == 0 {
            return Err(ClientError::NotEnoughShards {
                blob_id,
                what: "deleting",
                needed: 1,
                got: 0,
                failures: Vec::new(),
            });
        }
        Ok(proof)
    }

    /// `owner`'s live deletable registration of `blob_id` that a deletion
    /// signed in `epoch` can carry, asked of every member of the committee:
    /// the first answer that verifies and is what was asked. A certificate
    /// of another blob or owner, a permanent one, or one that does not
    /// verify is a lie; one certified after `epoch` (this client is behind)
    /// is no answer; each judged by `chain`, as the status's was. With it:
    /// how many members answered, of how many asked.
    async fn registration(
        &self,
        chain: &CommitteeChain,
        blob_id: BlobId,
        owner: PublicKey,
        epoch: Epoch,
    ) -> Result<(Option<BlobCertificate>, usize, usize), ClientError> {
        let current = chain.committee_at(epoch);
        let keys: Vec<PublicKey> = current.members().iter().map(|m| m.network_key).collect();
        let mut tally =
            RegistrationTally::new(chain, RegistrationRequest { blob_id, owner }, epoch);
        let members = (0..keys.len()).map(|i| MemberIndex(i as u16));
        FanOut::new(members, Pacing::ALL)
            .run(&mut tally, |member| {
                let (pool, key) = (Arc::clone(&self.pool), keys[member.as_usize()]);
                let asked = RegistrationRequest { blob_id, owner };
                async move {
                    let answer = pool.call::<GetRegistration>(&key, &asked).await;
                    answer.map_err(|e| e.to_string())
                }
            })
            .await;
        self.pool
            .report_lies(&tally.failures, |m| keys.get(m.as_usize()).copied());
        Ok((tally.found, tally.answered, keys.len()))
    }
}

/// A deletable registration of the blob by the owner.
fn is_registration_of(certificate: &BlobCertificate, owner: &PublicKey) -> bool {
    let body = &certificate.message.body;
    body.deletable && body.owner.as_ref() == Some(owner)
}

/// Answers to [`GetRegistration`]: done at the first that verifies, is the
/// asked owner's registration of the asked blob and is live.
struct RegistrationTally<'c> {
    chain: &'c CommitteeChain,
    asked: RegistrationRequest,
    epoch: Epoch,
    found: Option<BlobCertificate>,
    /// Members that answered (a lie is an answer too).
    answered: usize,
    failures: Vec<(MemberIndex, Failure)>,
}

impl<'c> RegistrationTally<'c> {
    /// Looks for the registration `asked` names that a deletion signed in
    /// `epoch` can carry, judged by `chain`'s committees.
    fn new(chain: &'c CommitteeChain, asked: RegistrationRequest, epoch: Epoch) -> Self {
        Self {
            chain,
            asked,
            epoch,
            found: None,
            answered: 0,
            failures: Vec::new(),
        }
    }

    /// `Ok(Some)`: the registration; `Ok(None)`: none that is live (an
    /// honest node may hold none, or be behind); `Err`: a lie.
    fn check(&self, answer: Option<BlobCertificate>) -> Result<Option<BlobCertificate>, String> {
        let Some(certificate) = answer else {
            return Ok(None);
        };
        let body = &certificate.message.body;
        if body.blob_id != self.asked.blob_id {
            return Err(format!(
                "answered with a certificate of blob {}, not {}",
                body.blob_id, self.asked.blob_id
            ));
        }
        if !is_registration_of(&certificate, &self.asked.owner) {
            return Err(format!(
                "answered with a registration not deletable by key {}",
                self.asked.owner
            ));
        }
        if certificate.message.epoch > self.epoch {
            // Of a committee this client has not followed to yet (checked
            // after what needs no committee, so a lie is still one).
            return Ok(None);
        }
        let committee = self.chain.committee_at(certificate.message.epoch);
        Fact::Certified(certificate.clone())
            .verify(&committee)
            .map_err(|e| format!("answered with a certificate that does not verify: {e}"))?;
        Ok((body.end_epoch > self.epoch).then_some(certificate))
    }
}

impl Tally<MemberIndex, Result<Option<BlobCertificate>, String>> for RegistrationTally<'_> {
    fn answer(
        &mut self,
        from: MemberIndex,
        answer: Result<Option<BlobCertificate>, String>,
        _: Instant,
    ) -> Step {
        if answer.is_ok() {
            self.answered += 1;
        }
        match answer
            .map_err(Failure::Unanswered)
            .and_then(|a| self.check(a).map_err(Failure::Lie))
        {
            Ok(Some(certificate)) => {
                self.found = Some(certificate);
                return Step::Done;
            }
            Ok(None) => {}
            Err(failure) => self.failures.push((from, failure)),
        }
        Step::Continue { deadline: None }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use floe_consensus::Certificate;

    use super::*;
    use crate::testing::committee;

    /// A registration certified in `epoch` by `signers` of `committee`.
    fn registration(
        committee: &Committee,
        keys: &[KeyPair],
        signers: usize,
        epoch: Epoch,
        body: StorageConfirmation,
    ) -> BlobCertificate {
        let message = ProtocolMessage::new(epoch, body);
        let signatures: Vec<_> = keys
            .iter()
            .take(signers)
            .enumerate()
            .map(|(i, key)| {
                let signed = Signed::sign(message.clone(), key);
                (MemberIndex(i as u16), signed.signature)
            })
            .collect();
        Certificate::from_signatures(committee, message, signatures).unwrap()
    }

    fn body(blob: u8, owner: Option<PublicKey>, end_epoch: u64) -> StorageConfirmation {
        StorageConfirmation {
            blob_id: BlobId([blob; 32]),
            end_epoch: Epoch(end_epoch),
            deletable: owner.is_some(),
            owner,
        }
    }

    /// What keeps a blob certified after a deletion signed in epoch 2, as
    /// the status's certificate shows it.
    #[test]
    fn what_keeps_a_blob_certified_is_named_from_the_status_certificate() {
        let (committee, keys) = committee(Epoch(0));
        let owner = KeyPair::from_seed(&[42; 32]).public();
        let other = KeyPair::from_seed(&[43; 32]).public();
        let shown =
            |owner, epoch| registration(&committee, &keys, 3, Epoch(epoch), body(7, owner, 9));
        let cases = [
            (shown(None, 0), KeptBy::Permanent),
            (shown(Some(other), 0), KeptBy::AnotherKey),
            (
                shown(Some(owner), 3),
                KeptBy::LaterRegistration {
                    certified: Epoch(3),
                },
            ),
            (shown(Some(owner), 2), KeptBy::NotYetApplied),
            (shown(Some(owner), 1), KeptBy::NotYetApplied),
        ];
        for (certificate, kept) in cases {
            assert_eq!(KeptBy::of(&certificate, &owner, Epoch(2)), kept);
        }
    }

    /// Each wrong answer to a registration lookup is refused: a lie is
    /// named as one, and an answer the client cannot use yet (or any
    /// more) is no answer; only the asked owner's live registration of
    /// the asked blob is taken.
    #[test]
    fn a_registration_lookup_takes_only_the_asked_owners_live_registration() {
        let (committee, keys) = committee(Epoch(0));
        let chain = CommitteeChain::new(committee.clone());
        let owner = KeyPair::from_seed(&[42; 32]).public();
        let other = KeyPair::from_seed(&[43; 32]).public();
        let asked = RegistrationRequest {
            blob_id: BlobId([7; 32]),
            owner,
        };
        let tally = RegistrationTally::new(&chain, asked, Epoch(0));
        let certify = |signers, epoch, body| registration(&committee, &keys, signers, epoch, body);

        let live = certify(3, Epoch(0), body(7, Some(owner), 5));
        assert_eq!(tally.check(Some(live.clone())), Ok(Some(live)));
        assert_eq!(tally.check(None), Ok(None), "no registration is no lie");

        let lies = [
            (
                certify(3, Epoch(0), body(8, Some(owner), 5)),
                "another blob's",
            ),
            (
                certify(3, Epoch(0), body(7, Some(other), 5)),
                "another owner's",
            ),
            (certify(3, Epoch(0), body(7, None, 5)), "a permanent one"),
            (
                certify(2, Epoch(0), body(7, Some(owner), 5)),
                "one signed by less than a quorum",
            ),
        ];
        for (answer, what) in lies {
            assert!(tally.check(Some(answer)).is_err(), "{what} was taken");
        }
        // Ended by the deletion's epoch: nothing left to delete.
        let ended = certify(3, Epoch(0), body(7, Some(owner), 0));
        assert_eq!(tally.check(Some(ended)), Ok(None));
        // Certified in an epoch after the deletion's: a deletion signed
        // now cannot carry it, and this client cannot judge it yet.
        let ahead = certify(3, Epoch(1), body(7, Some(owner), 5));
        assert_eq!(tally.check(Some(ahead)), Ok(None));
        // A lie stays one when stamped with a later epoch.
        for (answer, what) in [
            (body(8, Some(owner), 5), "another blob's"),
            (body(7, Some(other), 5), "another owner's"),
        ] {
            let ahead = certify(3, Epoch(1), answer);
            assert!(tally.check(Some(ahead)).is_err(), "{what} was not a lie");
        }
    }
}
