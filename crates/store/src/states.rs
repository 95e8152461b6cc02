//! Blob states with their proofs, promises made by confirmations, and
//! drift (certified blobs whose pairs are missing here).

use super::*;

impl Store {
    /// Records the promise a storage confirmation makes and syncs it with
    /// the blob's pairs, if every pair of this node's shards is stored and
    /// the blob may be confirmed; returns the token that lets the node sign
    /// exactly that confirmation.
    ///
    /// Refused: a blob proven invalid, and a deletable registration whose
    /// owner already deleted it in this epoch or later (it would be born
    /// deleted). An expired or deleted blob whose data was stored again is
    /// confirmed: that is a new registration.
    pub fn promise(
        &self,
        message: ProtocolMessage<StorageConfirmation>,
    ) -> Result<DurableBlob, StoreError> {
        self.promise_charged(message, None)
            .map(|(durable, _)| durable)
    }

    /// [`Store::promise`], charging the blob's `bytes` to `client` in the
    /// same write (admission in `grants` mode). Answers whether the charge
    /// is new: a client's second confirmation of a blob is not charged again.
    pub fn promise_charged(
        &self,
        message: ProtocolMessage<StorageConfirmation>,
        charge: Option<(&PublicKey, u64)>,
    ) -> Result<(DurableBlob, bool), StoreError> {
        let blob_id = message.body.blob_id;
        // Under the blob's lock, so garbage collection cannot remove the
        // pairs between the check and the promise.
        let _guard = self.lock(&blob_id);
        let state = self.stored_state(&blob_id)?;
        let refuse = |reason: String| StoreError::NotConfirmable { blob_id, reason };
        if let BlobStatus::Invalid { certificate } = state.status(message.epoch) {
            return Err(refuse(format!(
                "it was proven invalid (certificate of epoch {})",
                certificate.message.epoch
            )));
        }
        if let Some(owner) = message.body.owner.filter(|_| message.body.deletable) {
            if let Some(deleted_in) = state.deletion_by(&owner).filter(|d| *d >= message.epoch) {
                return Err(refuse(format!(
                    "its owner {owner} deleted it in epoch {deleted_in}; a registration confirmed in epoch {} would be born deleted",
                    message.epoch
                )));
            }
        }
        let missing = self.missing_pairs(&blob_id)?;
        if !missing.is_empty() {
            return Err(StoreError::MissingPairs { blob_id, missing });
        }
        if matches!(
            state.status(message.epoch),
            BlobStatus::Expired { .. } | BlobStatus::Deleted { .. }
        ) && self.get(PENDING, &blob_id.0)?.is_none()
        {
            // Data of an ended registration, still here only until garbage
            // collection: a new registration needs the data sent again.
            return Err(refuse(format!(
                "it is {}; store its data again to register it anew",
                state.status(message.epoch).name()
            )));
        }
        let mut promise = self.promised(&blob_id)?.unwrap_or_default();
        let before = promise.clone();
        promise.add(message.epoch, &message.body);
        let mut batch = WriteBatch::default();
        if promise != before {
            batch.put_cf(self.cf(PROMISES)?, blob_id.0, encode(&promise));
        }
        let mut new_charge = false;
        if let Some((client, bytes)) = charge {
            let body = &message.body;
            let charged = match self.charge(client, &blob_id)? {
                Some(mut old) => {
                    old.end_epoch = old.end_epoch.max(body.end_epoch);
                    old
                }
                None => {
                    new_charge = true;
                    Charge {
                        bytes,
                        end_epoch: body.end_epoch,
                    }
                }
            };
            batch.put_cf(
                self.cf(USAGE)?,
                usage_key(client, &blob_id),
                encode(&charged),
            );
        }
        if !batch.is_empty() {
            self.write(PROMISES, batch, false)?;
        }
        // Pair files were synced before they were recorded; the records,
        // the small pairs, the promise and its charge are in the WAL, which
        // this syncs.
        self.db.flush_wal(true).map_err(StoreError::db(SLIVERS))?;
        Ok((DurableBlob { message }, new_charge))
    }

    /// What this node's confirmations of a blob promise, if it signed any.
    pub fn promised(&self, blob_id: &BlobId) -> Result<Option<Promise>, StoreError> {
        self.get(PROMISES, &blob_id.0)?
            .map(|v| decode(PROMISES, &blob_id.0, &v))
            .transpose()
    }

    // ---- states ----

    /// The stored proofs of a blob (unknown if none).
    pub(crate) fn stored_state(&self, blob_id: &BlobId) -> Result<BlobState, StoreError> {
        match self.get(STATES, &blob_id.0)? {
            Some(stored) => decode_state(blob_id, &stored),
            None => Ok(BlobState::unknown(*blob_id)),
        }
    }

    /// What this node knows of a blob: its stored proofs, and `pending` if
    /// it holds the metadata.
    pub fn state(&self, blob_id: &BlobId) -> Result<BlobState, StoreError> {
        let mut state = self.stored_state(blob_id)?;
        if self.get(METADATA, &blob_id.0)?.is_some() {
            state.mark_pending();
        }
        Ok(state)
    }

    /// Up to `limit` stored blob states after `after`, in blob-ID order (for
    /// rebuilding the anti-entropy index and for audits).
    pub fn states(
        &self,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<(BlobId, BlobState)>, StoreError> {
        self.scan_by_blob_id(STATES, after, limit, |blob_id, value| {
            Ok((blob_id, decode_state(&blob_id, value)?))
        })
    }

    /// Joins a verified fact into the blob's state and syncs it to disk
    /// before returning; maintains the expiry, garbage and drift indexes.
    /// Returns the stored state before and after (equal if the fact added
    /// nothing): a fact can also make others redundant, which leave it.
    pub fn record_fact(
        &self,
        fact: VerifiedFact,
        current: Epoch,
    ) -> Result<(BlobState, BlobState), StoreError> {
        self.record(fact, current, true)
    }

    /// [`Store::record_fact`] for many facts, synced to disk once at the
    /// end (a page of anti-entropy): what it returns is durable, what it
    /// had written before an error may not be.
    pub fn record_facts(
        &self,
        facts: impl IntoIterator<Item = VerifiedFact>,
        current: Epoch,
    ) -> Result<Vec<(BlobState, BlobState)>, StoreError> {
        let recorded = facts
            .into_iter()
            .map(|fact| self.record(fact, current, false))
            .collect::<Result<Vec<_>, _>>()?;
        self.sync()?;
        Ok(recorded)
    }

    pub(crate) fn record(
        &self,
        fact: VerifiedFact,
        current: Epoch,
        sync: bool,
    ) -> Result<(BlobState, BlobState), StoreError> {
        let blob_id = fact.fact().blob_id();
        let _guard = self.lock(&blob_id);
        let before = self.stored_state(&blob_id)?;
        let mut after = before.clone();
        after.apply(fact).map_err(|e| StoreError::Fact {
            blob_id,
            reason: e.to_string(),
        })?;
        if after == before {
            return Ok((before, after));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(STATES)?,
            blob_id.0,
            envelope::seal_parts_as(envelope::FORMAT_STATE, &[&after.to_bytes()]),
        );
        let (old_end, new_end) = (before.available_until(), after.available_until());
        if old_end != new_end {
            if let Some(end) = old_end {
                batch.delete_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id));
            }
            if let Some(end) = new_end {
                batch.put_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id), []);
            }
        }
        let status = after.status(current);
        if matches!(status, BlobStatus::Certified { .. }) {
            // Certified and live: no longer a pending upload (an upload of
            // an expired or deleted blob stays pending until its own
            // certificate).
            batch.delete_cf(self.cf(PENDING)?, blob_id.0);
        }
        if matches!(
            status,
            BlobStatus::Deleted { .. } | BlobStatus::Invalid { .. }
        ) {
            batch.put_cf(self.cf(GARBAGE)?, blob_id.0, []);
        } else {
            // Stored again and certified anew after a deletion.
            batch.delete_cf(self.cf(GARBAGE)?, blob_id.0);
        }
        let drifting = self.mark_drift(&mut batch, &blob_id, &status)?;
        self.write(STATES, batch, sync)?;
        self.remember_drift(&blob_id, drifting);
        Ok((before, after))
    }

    /// Adds to `batch` whether `blob_id`, of `status`, drifts (certified and
    /// a pair of this node's shards missing); answers it. Under the blob's
    /// lock, followed by [`Store::remember_drift`] once written.
    pub(crate) fn mark_drift(
        &self,
        batch: &mut WriteBatch,
        blob_id: &BlobId,
        status: &BlobStatus,
    ) -> Result<bool, StoreError> {
        let drifting =
            matches!(status, BlobStatus::Certified { .. }) && !self.holds_all_pairs(blob_id)?;
        if drifting {
            batch.put_cf(self.cf(DRIFT)?, blob_id.0, []);
        } else {
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
        }
        Ok(drifting)
    }

    /// Mirrors a written drift mark in the in-memory drift set.
    pub(crate) fn remember_drift(&self, blob_id: &BlobId, drifting: bool) {
        let mut drift = self.drift_set();
        if drifting {
            drift.insert(*blob_id);
        } else {
            drift.remove(blob_id);
        }
    }

    // ---- drift ----

    /// How many certified, available blobs lack pairs of this node's shards.
    pub fn drift_count(&self) -> usize {
        self.drift_set().len()
    }

    /// Up to `limit` drifting blobs after `after`, in blob-ID order.
    pub fn drift(&self, after: Option<&BlobId>, limit: usize) -> Vec<BlobId> {
        let drift = self.drift_set();
        let iter: Box<dyn Iterator<Item = &BlobId>> = match after {
            Some(after) => Box::new(drift.range((
                std::ops::Bound::Excluded(*after),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(drift.iter()),
        };
        iter.take(limit).copied().collect()
    }
}
