//! Garbage collection: what may be removed, why, and removing it.

use super::*;

impl Store {
    pub(crate) fn scan_blob_ids(
        &self,
        table: &'static str,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, StoreError> {
        self.scan_by_blob_id(table, after, limit, |blob_id, _| Ok(blob_id))
    }

    /// Up to `limit` entries of a table keyed by blob ID, after `after`.
    pub(crate) fn scan_by_blob_id<T>(
        &self,
        table: &'static str,
        after: Option<&BlobId>,
        limit: usize,
        mut entry: impl FnMut(BlobId, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let cf = self.cf(table)?;
        let mode = match after {
            Some(id) => IteratorMode::From(&id.0, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, mode) {
            let (key, value) = item.map_err(StoreError::db(table))?;
            let blob_id = blob_id_from(&key, table)?;
            if Some(&blob_id) == after {
                continue;
            }
            out.push(entry(blob_id, &value)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    // ---- garbage ----

    /// Why a blob's data may be collected now, if it may. Never while a
    /// confirmation this node signed still binds, nor while an upload that
    /// arrived after `pending_deadline_ms` waits for its certificate (also
    /// for a blob stored again after it expired or was deleted).
    pub(crate) fn garbage_reason(
        &self,
        blob_id: &BlobId,
        current: Epoch,
        pending_deadline_ms: u64,
    ) -> Result<Option<GarbageReason>, StoreError> {
        let state = self.stored_state(blob_id)?;
        let status = state.status(current);
        match status {
            BlobStatus::Invalid { .. } => return Ok(Some(GarbageReason::Invalid)),
            BlobStatus::Certified { .. } => return Ok(None),
            _ => {}
        }
        if self
            .promised(blob_id)?
            .is_some_and(|promise| promise.binds(&state, current))
        {
            return Ok(None);
        }
        let stale_upload = match self.get(PENDING, &blob_id.0)? {
            Some(value) => {
                if self.arrival(blob_id, &value)? >= pending_deadline_ms {
                    return Ok(None);
                }
                true
            }
            None => false,
        };
        Ok(match status {
            BlobStatus::Expired { .. } => Some(GarbageReason::Expired),
            BlobStatus::Deleted { .. } => Some(GarbageReason::Deleted),
            _ => stale_upload.then_some(GarbageReason::StalePending),
        })
    }

    pub(crate) fn arrival(&self, blob_id: &BlobId, value: &[u8]) -> Result<u64, StoreError> {
        records::decode_arrival(blob_id, value)
    }

    /// Up to `limit` blobs whose data may be collected in epoch `current`:
    /// expired, deleted, invalid, or uploads still uncertified that arrived
    /// before `pending_deadline_ms`. Stops reading once `limit` are found.
    pub fn garbage(
        &self,
        current: Epoch,
        pending_deadline_ms: u64,
        limit: usize,
    ) -> Result<Vec<(BlobId, GarbageReason)>, StoreError> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut consider = |store: &Store, blob_id: BlobId| -> Result<bool, StoreError> {
            if seen.insert(blob_id) {
                if let Some(reason) =
                    store.garbage_reason(&blob_id, current, pending_deadline_ms)?
                {
                    out.push((blob_id, reason));
                }
            }
            Ok(out.len() >= limit)
        };
        // Expired: the expiry index in end-epoch order, up to the current epoch.
        for item in self.db.iterator_cf(self.cf(EXPIRY)?, IteratorMode::Start) {
            let (key, _) = item.map_err(StoreError::db(EXPIRY))?;
            let (end, blob_id) = key.split_at_checked(8).ok_or_else(|| StoreError::Corrupt {
                table: EXPIRY,
                key: envelope::hex(&key),
                reason: "key shorter than an epoch".into(),
            })?;
            if u64::from_be_bytes(end.try_into().unwrap_or([0xff; 8])) > current.0 {
                break;
            }
            if consider(self, blob_id_from(blob_id, EXPIRY)?)? {
                return Ok(out);
            }
        }
        // Deleted and invalid, then uncertified uploads (bounded in number by
        // the node's limits).
        for table in [GARBAGE, PENDING] {
            for item in self.db.iterator_cf(self.cf(table)?, IteratorMode::Start) {
                let (key, _) = item.map_err(StoreError::db(table))?;
                if consider(self, blob_id_from(&key, table)?)? {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Removes the slivers and metadata of up to `batch_size` garbage blobs,
    /// keeping their state records (so "deleted", "expired" and "invalid"
    /// are still answered with proof). Each blob is re-checked and removed
    /// in one write under its lock, so a certificate that arrives meanwhile
    /// wins and writes to other blobs are never blocked. Call repeatedly
    /// while [`GcReport::more`].
    pub fn collect_garbage(
        &self,
        current: Epoch,
        pending_deadline_ms: u64,
        batch_size: usize,
    ) -> Result<GcReport, StoreError> {
        let batch_size = batch_size.max(1);
        let found = self.garbage(current, pending_deadline_ms, batch_size + 1)?;
        let mut report = GcReport {
            more: found.len() > batch_size,
            ..GcReport::default()
        };
        for (blob_id, _) in found.into_iter().take(batch_size) {
            let _guard = self.lock(&blob_id);
            if self
                .garbage_reason(&blob_id, current, pending_deadline_ms)?
                .is_none()
            {
                continue;
            }
            let shards = self.stored_shards(&blob_id)?;
            let (in_blob_file, _) = self.blob_file_extents(&blob_id, &shards)?;
            let mut batch = WriteBatch::default();
            for shard in shards {
                self.unrecord_pair(&mut batch, shard, &blob_id)?;
                report.slivers += 2;
            }
            batch.delete_cf(self.cf(METADATA)?, blob_id.0);
            batch.delete_cf(self.cf(GARBAGE)?, blob_id.0);
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
            batch.delete_cf(self.cf(PENDING)?, blob_id.0);
            batch.delete_cf(self.cf(PROMISES)?, blob_id.0);
            if let Some(end) = self.stored_state(&blob_id)?.available_until() {
                batch.delete_cf(self.cf(EXPIRY)?, time_key(end.0, &blob_id));
            }
            // Synced before the files go: a crash (or power loss) then leaves
            // at worst files without records, which the next open removes,
            // never records without their files.
            self.write(SLIVERS, batch, true)?;
            self.drift_set().remove(&blob_id);
            self.decoded.forget(&blob_id);
            // A file that cannot be removed now is unrecorded: the next open
            // removes it.
            let in_blob_file = pair_files::extents_bytes(&in_blob_file);
            let _ = self.files.remove_blob(&blob_id, in_blob_file);
            report.blobs += 1;
        }
        self.gc[0].fetch_add(1, Ordering::Relaxed);
        self.gc[1].fetch_add(report.blobs, Ordering::Relaxed);
        self.gc[2].fetch_add(report.slivers, Ordering::Relaxed);
        Ok(report)
    }

    // ---- node state ----
}
