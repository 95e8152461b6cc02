//! Shards moving at a committee change: the drift index rebuilt for a new
//! shard set, and the pairs of a shard given up dropped once the change is
//! done.

use super::*;

impl Store {
    /// Rebuilds the drift index for the shards held now: a certified blob
    /// drifts exactly when a pair of those shards is missing.
    pub(crate) fn recompute_drift(&self) -> Result<(), StoreError> {
        let current = self.current_epoch()?;
        let mut after = None;
        loop {
            let page = self.scan_blob_ids(STATES, after.as_ref(), 1024)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(*last);
            for blob_id in &page {
                // Under the blob's lock: a fact or pair written meanwhile is
                // either seen here or sees this mark.
                let _guard = self.lock(blob_id);
                let status = self.stored_state(blob_id)?.status(current);
                let mut batch = WriteBatch::default();
                let drifting = self.mark_drift(&mut batch, blob_id, &status)?;
                self.write(DRIFT, batch, false)?;
                self.remember_drift(blob_id, drifting);
            }
        }
    }

    /// Deletes up to `limit` pairs of `shard`, a shard this node gave up;
    /// answers how many went (0 once none is left). Refused for a shard held.
    pub fn drop_shard_pairs(&self, shard: ShardIndex, limit: usize) -> Result<usize, StoreError> {
        if self.holds_shard(shard) {
            return Err(StoreError::ShardHeld { shard });
        }
        let cf = self.cf(SLIVERS)?;
        let prefix = shard.0.to_be_bytes();
        let mut blobs: Vec<BlobId> = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&prefix, Direction::Forward))
        {
            let (key, _) = item.map_err(StoreError::db(SLIVERS))?;
            if key.len() != 35 || key[..2] != prefix {
                break;
            }
            let blob_id = blob_id_from(&key[2..34], SLIVERS)?;
            if blobs.last() != Some(&blob_id) {
                if blobs.len() >= limit {
                    break;
                }
                blobs.push(blob_id);
            }
        }
        let mut dropped = 0;
        for blob_id in &blobs {
            let _guard = self.lock(blob_id);
            // Taken up again meanwhile (it came back at a later change): kept.
            if self.holds_shard(shard) {
                break;
            }
            dropped += 1;
            // Bytes of a record that does not place them as this store
            // does are left to the next open's sweep.
            let place = self.recorded_place(shard, blob_id).ok().flatten();
            let mut batch = WriteBatch::default();
            self.unrecord_pair(&mut batch, shard, blob_id)?;
            // Synced before the bytes go, as in garbage collection.
            self.write(SLIVERS, batch, true)?;
            if let Some(place) = place {
                self.files.remove(blob_id, shard, place);
            }
        }
        Ok(dropped)
    }

    /// The shards some pair is stored for that this node no longer holds.
    pub fn shards_given_up(&self) -> Result<Vec<ShardIndex>, StoreError> {
        let held = self.shards();
        let cf = self.cf(SLIVERS)?;
        let mut found = Vec::new();
        let mut next: u32 = 0;
        while next <= u32::from(u16::MAX) {
            let start = (next as u16).to_be_bytes();
            let Some(item) = self
                .db
                .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
                .next()
            else {
                break;
            };
            let (key, _) = item.map_err(StoreError::db(SLIVERS))?;
            if key.len() < 2 {
                break;
            }
            let shard = ShardIndex(u16::from_be_bytes([key[0], key[1]]));
            if held.binary_search(&shard).is_err() {
                found.push(shard);
            }
            next = u32::from(shard.0) + 1;
        }
        Ok(found)
    }
}
