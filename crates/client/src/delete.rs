//! Deleting: an owner's deletion of its own deletable registration.

use std::time::Instant;

use floe_consensus::quorum::{Step, Tally};

use super::*;

impl Client {
    /// Delete `owner`'s deletable registration of `blob_id`. The blob is
    /// deleted once no registration is left: another owner's, or a
    /// permanent one, keeps it certified.
    pub async fn delete(&self, blob_id: BlobId, owner: &KeyPair) -> Result<Fact, ClientError> {
        let shown = match self.status(blob_id).await?.status {
            BlobStatus::Certified { certificate } => certificate,
            other => {
                return Err(ClientError::NotAllowed(format!(
                    "blob {blob_id} is {}; only certified blobs can be deleted",
                    other.name()
                )))
            }
        };
        let key = owner.public();
        // The epoch the deletion is signed in, with the committee chain
        // followed to it: a registration certified later cannot go with it.
        let (epoch, _) = self.serving().await;
        // The status shows the registration lasting longest; the owner's
        // own may be another, which its deletion must carry.
        let certificate = if is_registration_of(&shown, &key) {
            shown
        } else {
            self.registration(blob_id, key, epoch)
                .await?
                .ok_or_else(|| {
                    ClientError::NotAllowed(format!(
                    "blob {blob_id} holds no live registration deletable by key {key}; the one \
                     lasting longest is {}, which this key cannot delete",
                    if shown.message.body.deletable {
                        "another key's"
                    } else {
                        "permanent"
                    }
                ))
                })?
        };
        let deletion = Signed::sign(ProtocolMessage::new(epoch, BlobDeletion { blob_id }), owner);
        let fact = Fact::Deleted(Box::new(DeletionProof {
            deletion,
            certificate,
        }));
        let accepted = self.deliver(fact.clone()).await;
        if accepted == 0 {
            return Err(ClientError::NotEnoughShards {
                blob_id,
                what: "deleting",
                needed: 1,
                got: 0,
                failures: Vec::new(),
            });
        }
        Ok(fact)
    }

    /// `owner`'s live deletable registration of `blob_id` that a deletion
    /// signed in `epoch` can carry, asked of every member of the committee:
    /// the first answer that verifies and is what was asked. A certificate
    /// of another blob or owner, a permanent one, or one that does not
    /// verify is a lie; one certified after `epoch` (this client is behind)
    /// is no answer.
    async fn registration(
        &self,
        blob_id: BlobId,
        owner: PublicKey,
        epoch: Epoch,
    ) -> Result<Option<BlobCertificate>, ClientError> {
        let chain = self.chain();
        let current = chain.committee_at(epoch);
        let keys: Vec<PublicKey> = current.members().iter().map(|m| m.network_key).collect();
        let mut tally = RegistrationTally {
            chain: &chain,
            asked: RegistrationRequest { blob_id, owner },
            epoch,
            found: None,
            failures: Vec::new(),
        };
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
        Ok(tally.found)
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
    failures: Vec<(MemberIndex, Failure)>,
}

impl RegistrationTally<'_> {
    /// `Ok(Some)`: the registration; `Ok(None)`: none that is live (an
    /// honest node may hold none, or be behind); `Err`: a lie.
    fn check(&self, answer: Option<BlobCertificate>) -> Result<Option<BlobCertificate>, String> {
        let Some(certificate) = answer else {
            return Ok(None);
        };
        let body = &certificate.message.body;
        if certificate.message.epoch > self.epoch {
            // Of a committee this client has not followed to yet.
            return Ok(None);
        }
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
