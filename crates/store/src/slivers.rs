//! Metadata, sliver pairs and the files that hold large ones.

use super::*;

/// What became of a pair whose bytes failed to read.
enum Lost {
    /// Still failing under the blob's lock: unrecorded (and marked as
    /// drift if certified).
    Dropped(StoreError),
    /// Unrecorded meanwhile (collected).
    Unrecorded,
    /// Read under the blob's lock from its current record (recorded anew
    /// since, perhaps with the same record bytes at a new file's offset).
    Read(Sliver),
}

impl Store {
    /// Stores a blob's metadata (already verified against its ID) and, if the
    /// blob has no certificate yet, records it as a pending upload that
    /// arrived at `now_unix_ms`.
    pub fn put_metadata(
        &self,
        blob_id: &BlobId,
        metadata: &BlobMetadata,
        now_unix_ms: u64,
    ) -> Result<(), StoreError> {
        let _guard = self.lock(blob_id);
        let state = self.stored_state(blob_id)?;
        let status = state.status(self.current_epoch()?);
        if matches!(status, BlobStatus::Invalid { .. }) {
            // Proven inconsistently encoded: no registration can make it
            // readable.
            return Err(StoreError::BlobGone {
                blob_id: *blob_id,
                status: status.name(),
            });
        }
        // An expired or deleted blob may be stored again: that is a new
        // registration, pending until its own certificate.
        // Live in the next epoch too: the recorded epoch may trail the clock.
        let current = self.current_epoch()?;
        let live = matches!(
            state.status(Epoch(current.0.saturating_add(1))),
            BlobStatus::Certified { .. }
        );
        let arrived = self.get(METADATA, &blob_id.0)?.is_none();
        let mut batch = WriteBatch::default();
        let value = encode(metadata);
        batch.put_cf(self.cf(METADATA)?, blob_id.0, &value);
        if !live && (arrived || self.get(PENDING, &blob_id.0)?.is_none()) {
            // Data that arrives counts from now (it may be a new
            // registration of content that expired or was deleted); re-sent
            // metadata does not extend the deadline.
            batch.put_cf(
                self.cf(PENDING)?,
                blob_id.0,
                envelope::seal(&now_unix_ms.to_le_bytes()),
            );
        }
        self.write(METADATA, batch, false)?;
        // The pairs that follow are checked against it: kept decoded, if it
        // is this blob's.
        if metadata.verify(blob_id).is_ok() {
            self.decoded.keep(blob_id, &value, metadata);
        }
        Ok(())
    }

    /// A blob's metadata: checked to be this blob's when decoded (a value
    /// of another blob's, copied in, is corrupt here).
    pub fn metadata(&self, blob_id: &BlobId) -> Result<Option<BlobMetadata>, StoreError> {
        self.get(METADATA, &blob_id.0)?
            .map(|v| {
                self.decoded.get_or_decode(blob_id, &v, || {
                    let metadata: BlobMetadata = decode(METADATA, &blob_id.0, &v)?;
                    metadata.verify(blob_id).map_err(|e| StoreError::Corrupt {
                        table: METADATA,
                        key: envelope::hex(&blob_id.0),
                        reason: e.to_string(),
                    })?;
                    Ok(metadata)
                })
            })
            .transpose()
    }

    /// A blob's metadata if it was decoded recently, without reading the
    /// database: what a check of slivers needs, known to be this blob's (a
    /// blob ID is its metadata's hash), but perhaps of a blob since removed
    /// ([`Store::put_sliver_pair`] refuses the pairs of a blob whose
    /// metadata is gone).
    pub fn decoded_metadata(&self, blob_id: &BlobId) -> Option<BlobMetadata> {
        self.decoded.kept(blob_id)
    }

    /// `MissingMetadata` unless `blob_id`'s metadata is stored.
    fn require_metadata(&self, blob_id: &BlobId) -> Result<(), StoreError> {
        match self.get(METADATA, &blob_id.0)? {
            Some(_) => Ok(()),
            None => Err(StoreError::MissingMetadata { blob_id: *blob_id }),
        }
    }

    // ---- slivers ----

    /// Stores the sliver pair of `shard` (already verified against the
    /// metadata). Refuses shards this node does not hold.
    ///
    /// A pair of [`FILE_MIN_PAIR_BYTES`] or more goes to its blob's file,
    /// written and synced before the database records where it is (see
    /// `pair_files`); smaller ones go into the database with the WAL. Either
    /// way, a recorded pair is complete once the WAL is synced.
    ///
    /// A pair already recorded is not written again: a shard's pair of a
    /// blob is fixed by the blob ID (every caller has verified it against
    /// the metadata), so a retry or a second upload has nothing to add. A
    /// record that does not read is written over.
    pub fn put_sliver_pair(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
        pair: &SliverPair,
    ) -> Result<(), StoreError> {
        if !self.holds_shard(shard) {
            return Err(StoreError::NotMyShard {
                blob_id: *blob_id,
                shard,
            });
        }
        if self.pair_recorded(shard, blob_id)? {
            return Ok(());
        }
        // Refused before the slow part too: a blob collected since its
        // pairs were checked (against metadata kept decoded in memory) costs
        // no write and sync of its file. Checked again under the lock.
        self.require_metadata(blob_id)?;
        let slivers = [&pair.primary, &pair.secondary];
        let in_file = pair.byte_len() >= FILE_MIN_PAIR_BYTES;
        // The slow part, before the blob's lock: the pair written at the
        // end of its blob's file and synced.
        let staged = in_file
            .then(|| self.files.stage(blob_id, pair))
            .transpose()?;
        let values: Vec<Vec<u8>> = match &staged {
            Some(staged) => {
                let mut offset = staged.offset();
                slivers
                    .iter()
                    .zip(staged.checksums())
                    .map(|(sliver, crc)| {
                        let place = file_place(sliver, offset, records::FileChecksum::Crc32c(crc));
                        offset += sliver.data.len() as u64;
                        place
                    })
                    .collect()
            }
            None => slivers
                .iter()
                .map(|sliver| envelope::seal_parts(&[&sliver.index.0.to_le_bytes(), &sliver.data]))
                .collect(),
        };
        let _guard = self.lock(blob_id);
        self.require_metadata(blob_id)?;
        if let Some(staged) = &staged {
            staged.check_live()?;
        }
        // Recorded meanwhile by another put: this copy goes (punched out
        // as `staged` drops).
        if self.pair_recorded(shard, blob_id)? {
            return Ok(());
        }
        // Sized up front: a batch grows by doubling, and each doubling
        // copies every sliver byte already in it again.
        let mut batch = WriteBatch::with_capacity_bytes(
            values.iter().map(Vec::len).sum::<usize>() + BATCH_OVERHEAD_BYTES,
        );
        let cf = self.cf(SLIVERS)?;
        for (sliver, value) in slivers.iter().zip(values) {
            batch.put_cf(cf, sliver_key(shard, blob_id, sliver.axis), value);
        }
        batch.put_cf(self.cf(PAIRS)?, pair_key(blob_id, shard), []);
        let resolves_drift =
            self.drift_set().contains(blob_id) && self.missing_pairs(blob_id)? == [shard];
        if resolves_drift {
            batch.delete_cf(self.cf(DRIFT)?, blob_id.0);
        }
        let written = self.write(SLIVERS, batch, false);
        if let Some(staged) = staged {
            if written.is_ok() {
                self.files.commit(staged);
            } else {
                self.files.abandon(staged);
            }
        }
        written?;
        if resolves_drift {
            self.drift_set().remove(blob_id);
        }
        Ok(())
    }

    /// Whether `shard`'s pair of a blob is recorded: its pair entry, and
    /// both sliver records reading.
    fn pair_recorded(&self, shard: ShardIndex, blob_id: &BlobId) -> Result<bool, StoreError> {
        if self.get(PAIRS, &pair_key(blob_id, shard))?.is_none() {
            return Ok(false);
        }
        for axis in [Axis::Primary, Axis::Secondary] {
            let key = sliver_key(shard, blob_id, axis);
            let Some(stored) = self.get(SLIVERS, &key)? else {
                return Ok(false);
            };
            if records::decode_sliver_record(&key, &stored).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Where `shard`'s recorded pair of a blob keeps its bytes outside the
    /// database, if it is recorded and does. An error if its records do not
    /// read, or do not place the pair as this store does (its primary
    /// block-aligned, its secondary right after, both in one file): where
    /// its bytes are is then unknown, and nothing is freed by them.
    pub(crate) fn recorded_place(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
    ) -> Result<Option<PairPlace>, StoreError> {
        let mut places = Vec::with_capacity(2);
        for axis in [Axis::Primary, Axis::Secondary] {
            let key = sliver_key(shard, blob_id, axis);
            let Some(stored) = self.get(SLIVERS, &key)? else {
                return Ok(None);
            };
            match records::decode_sliver_record(&key, &stored)? {
                records::SliverRecord::InFile(place) => places.push(place),
                records::SliverRecord::Inline { .. } => return Ok(None),
            }
        }
        let [primary, secondary] = places[..] else {
            return Ok(None);
        };
        let placed = primary.file == secondary.file
            && primary.offset % pair_files::BLOCK as u64 == 0
            && Some(secondary.offset) == primary.offset.checked_add(primary.length);
        if !placed {
            return Err(StoreError::Corrupt {
                table: SLIVERS,
                key: envelope::hex(&sliver_key(shard, blob_id, Axis::Primary)),
                reason: format!(
                    "the pair is recorded at {}+{} and {}+{}, not where this store puts pairs",
                    primary.offset, primary.length, secondary.offset, secondary.length
                ),
            });
        }
        Ok(Some(match primary.file {
            records::PairFile::Own => PairPlace::Own,
            records::PairFile::Blob => PairPlace::Blob {
                offset: primary.offset,
                end: pair_files::padded(secondary.offset.saturating_add(secondary.length)),
            },
        }))
    }

    /// One sliver of `shard`'s pair for a blob.
    pub fn sliver(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
        axis: Axis,
    ) -> Result<Option<Sliver>, StoreError> {
        let key = sliver_key(shard, blob_id, axis);
        match self.get(SLIVERS, &key)? {
            Some(stored) => self.load_recorded(&key, axis, &stored),
            None => Ok(None),
        }
    }

    /// `shard`'s sliver pair for a blob.
    pub fn sliver_pair(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
    ) -> Result<Option<SliverPair>, StoreError> {
        let (Some(primary), Some(secondary)) = (
            self.sliver(shard, blob_id, Axis::Primary)?,
            self.sliver(shard, blob_id, Axis::Secondary)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(SliverPair {
            index: primary.index.to_pair_index(Axis::Primary, 0),
            primary,
            secondary,
        }))
    }

    /// The shards whose pair of this blob is stored.
    pub fn stored_shards(&self, blob_id: &BlobId) -> Result<Vec<ShardIndex>, StoreError> {
        let cf = self.cf(PAIRS)?;
        let mut shards = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&blob_id.0, Direction::Forward))
        {
            let (key, _) = item.map_err(StoreError::db(PAIRS))?;
            if key.len() != 34 || key[..32] != blob_id.0 {
                break;
            }
            shards.push(ShardIndex(u16::from_be_bytes([key[32], key[33]])));
        }
        Ok(shards)
    }

    /// This node's shards whose pair of this blob is not stored.
    pub fn missing_pairs(&self, blob_id: &BlobId) -> Result<Vec<ShardIndex>, StoreError> {
        let stored = self.stored_shards(blob_id)?;
        Ok(self
            .shards()
            .into_iter()
            .filter(|s| stored.binary_search(s).is_err())
            .collect())
    }

    /// Whether every pair of this node's shards for the blob is stored.
    pub fn holds_all_pairs(&self, blob_id: &BlobId) -> Result<bool, StoreError> {
        Ok(self.missing_pairs(blob_id)?.is_empty())
    }

    /// Up to `limit` pairs of `shard`, in blob-ID order, after `after`.
    pub fn scan_shard(
        &self,
        shard: ShardIndex,
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<(BlobId, SliverPair)>, StoreError> {
        Ok(self.shard_page(shard, after, limit, usize::MAX)?.0)
    }

    /// Up to `limit` pairs of `shard` after `after`, in blob-ID order, of at
    /// most `max_bytes` together (at least one pair, however large), and
    /// whether no pair of the shard follows them.
    pub fn shard_page(
        &self,
        shard: ShardIndex,
        after: Option<&BlobId>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(BlobId, SliverPair)>, bool), StoreError> {
        let mut bytes = 0usize;
        let mut done = true;
        let cf = self.cf(SLIVERS)?;
        let start = match after {
            Some(blob_id) => sliver_key(shard, blob_id, Axis::Secondary).to_vec(),
            None => shard.0.to_be_bytes().to_vec(),
        };
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound((u32::from(shard.0) + 1).to_be_bytes()[2..].to_vec());
        let mut out: Vec<(BlobId, SliverPair)> = Vec::new();
        let mut primary: Option<(BlobId, Sliver)> = None;
        for item in
            self.db
                .iterator_cf_opt(cf, options, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(StoreError::db(SLIVERS))?;
            if key.len() != 35 || key[..2] != shard.0.to_be_bytes() {
                break;
            }
            let blob_id = blob_id_from(&key[2..34], SLIVERS)?;
            if after == Some(&blob_id) {
                continue;
            }
            match key[34] {
                0 => {
                    primary = self
                        .load_recorded(&key, Axis::Primary, &value)?
                        .map(|sliver| (blob_id, sliver))
                }
                _ => {
                    let Some(secondary) = self.load_recorded(&key, Axis::Secondary, &value)? else {
                        continue;
                    };
                    if let Some((id, primary)) = primary.take().filter(|(id, _)| *id == blob_id) {
                        let index = primary.index.to_pair_index(Axis::Primary, 0);
                        let pair = SliverPair {
                            index,
                            primary,
                            secondary,
                        };
                        if out.len() >= limit
                            || (!out.is_empty() && bytes + pair.byte_len() > max_bytes)
                        {
                            done = false;
                            break;
                        }
                        bytes += pair.byte_len();
                        out.push((id, pair));
                    }
                }
            }
        }
        Ok((out, done))
    }

    /// [`Store::load_sliver`], or `None` if the blob was collected between
    /// reading its record and reading its file. A pair whose file is gone
    /// or damaged is dropped (see [`StoreError::PairLost`]).
    pub(crate) fn load_recorded(
        &self,
        key: &[u8],
        axis: Axis,
        stored: &[u8],
    ) -> Result<Option<Sliver>, StoreError> {
        match self.load_sliver(key, axis, stored) {
            Err(StoreError::PairLost { blob_id, shard, .. }) => {
                match self.drop_lost_pair(shard, &blob_id, key, axis)? {
                    Lost::Dropped(lost) => Err(lost),
                    Lost::Unrecorded => Ok(None),
                    Lost::Read(sliver) => Ok(Some(sliver)),
                }
            }
            loaded => loaded.map(Some),
        }
    }

    /// Adds to `batch` the deletion of `shard`'s pair of a blob: both
    /// slivers' records and the pair entry.
    pub(crate) fn unrecord_pair(
        &self,
        batch: &mut WriteBatch,
        shard: ShardIndex,
        blob_id: &BlobId,
    ) -> Result<(), StoreError> {
        for axis in [Axis::Primary, Axis::Secondary] {
            batch.delete_cf(self.cf(SLIVERS)?, sliver_key(shard, blob_id, axis));
        }
        batch.delete_cf(self.cf(PAIRS)?, pair_key(blob_id, shard));
        Ok(())
    }

    /// Unrecords a pair whose bytes are gone or damaged, frees what is left
    /// of them, and marks a certified blob as drifting: repair then
    /// rebuilds the pair as it does for any missing one. Only if, under the
    /// blob's lock, the sliver under `key` still fails to read from its
    /// current record (a reader may have read a record since replaced).
    fn drop_lost_pair(
        &self,
        shard: ShardIndex,
        blob_id: &BlobId,
        key: &[u8],
        axis: Axis,
    ) -> Result<Lost, StoreError> {
        let _guard = self.lock(blob_id);
        let Some(current) = self.get(SLIVERS, key)? else {
            return Ok(Lost::Unrecorded);
        };
        let lost = match self.load_sliver(key, axis, &current) {
            Ok(sliver) => return Ok(Lost::Read(sliver)),
            Err(lost @ StoreError::PairLost { .. }) => lost,
            Err(other) => return Err(other),
        };
        // Bytes of a record that does not place them as this store does
        // are left to the next open's sweep.
        let place = self.recorded_place(shard, blob_id).ok().flatten();
        let mut batch = WriteBatch::default();
        self.unrecord_pair(&mut batch, shard, blob_id)?;
        let state = self.stored_state(blob_id)?;
        let drifting = matches!(
            state.status(self.current_epoch()?),
            BlobStatus::Certified { .. }
        );
        if drifting {
            batch.put_cf(self.cf(DRIFT)?, blob_id.0, []);
        }
        // Synced before the file goes, as in garbage collection.
        self.write(SLIVERS, batch, true)?;
        if drifting {
            self.drift_set().insert(*blob_id);
        }
        if let Some(place) = place {
            self.files.remove(blob_id, shard, place);
        }
        Ok(Lost::Dropped(lost))
    }

    /// A sliver from its record: the bytes themselves, or where they are in
    /// a pair file (read and checked against the recorded checksum).
    pub(crate) fn load_sliver(
        &self,
        key: &[u8],
        axis: Axis,
        stored: &[u8],
    ) -> Result<Sliver, StoreError> {
        let (index, data) = match records::decode_sliver_record(key, stored)? {
            records::SliverRecord::Inline { index, data } => {
                (index, bytes::Bytes::copy_from_slice(data))
            }
            records::SliverRecord::InFile(place) => {
                let corrupt = |reason: String| StoreError::Corrupt {
                    table: SLIVERS,
                    key: envelope::hex(key),
                    reason,
                };
                let (offset, len) = (place.offset, place.length);
                let len = usize::try_from(len).map_err(|e| corrupt(e.to_string()))?;
                let (shard, blob_id) = match key {
                    [s0, s1, blob_id @ ..] if blob_id.len() >= 32 => (
                        ShardIndex(u16::from_be_bytes([*s0, *s1])),
                        blob_id_from(&blob_id[..32], SLIVERS)?,
                    ),
                    _ => return Err(corrupt("key is not a sliver key".into())),
                };
                let lost = |reason: String| StoreError::PairLost {
                    blob_id,
                    shard,
                    reason,
                };
                let data = match self.files.read(&blob_id, shard, place.file, offset, len) {
                    Err(StoreError::File { source, path, .. })
                        if matches!(
                            source.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        return Err(lost(format!("{}: {source}", path.display())))
                    }
                    read => read?,
                };
                if !place.checksum.matches(&data) {
                    return Err(lost(format!(
                        "fails its checksum over {len} bytes at offset {offset} of {}",
                        self.files.path(&blob_id, shard, place.file).display()
                    )));
                }
                (place.index, bytes::Bytes::from(data))
            }
        };
        Ok(Sliver { axis, index, data })
    }

    /// Removes pair files, and bytes of blob files, the database does not
    /// record (a crash between writing a pair and recording it, or between
    /// unrecording pairs and freeing their bytes), and counts the bytes of
    /// the others.
    pub(crate) fn remove_unrecorded_pair_files(&self) -> Result<(), StoreError> {
        let mut bytes: u64 = 0;
        for listed in self.files.list()? {
            match listed {
                pair_files::Listed::Own {
                    blob_id,
                    shard,
                    bytes: own,
                } => match self.recorded_place(shard, &blob_id) {
                    Ok(Some(PairPlace::Blob { .. }) | None) => {
                        self.files.remove_orphan(&blob_id, shard)
                    }
                    // Recorded here, or recorded so that nobody can say
                    // (a read reports the record): kept.
                    Ok(Some(PairPlace::Own)) | Err(_) => bytes = bytes.saturating_add(own),
                },
                pair_files::Listed::Blob { blob_id, len } => {
                    let shards = self.stored_shards(&blob_id)?;
                    let (recorded, unknown) = self.blob_file_extents(&blob_id, &shards)?;
                    bytes = bytes.saturating_add(pair_files::extents_bytes(&recorded));
                    if unknown {
                        // Some record does not say where its pair is: the
                        // whole file is kept.
                    } else if recorded.is_empty() {
                        self.files.remove_orphan_blob_file(&blob_id);
                    } else {
                        self.files.keep_only(&blob_id, &recorded, len)?;
                    }
                }
            }
        }
        self.files.set_bytes(bytes);
        Ok(())
    }

    /// The extents the recorded pairs of `shards` (of a blob) take in its
    /// file, sorted, and whether some record does not say where its pair
    /// is.
    pub(crate) fn blob_file_extents(
        &self,
        blob_id: &BlobId,
        shards: &[ShardIndex],
    ) -> Result<(Vec<(u64, u64)>, bool), StoreError> {
        let (mut recorded, mut unknown) = (Vec::new(), false);
        for &shard in shards {
            match self.recorded_place(shard, blob_id) {
                Ok(Some(PairPlace::Blob { offset, end })) => recorded.push((offset, end)),
                Ok(_) => {}
                Err(_) => unknown = true,
            }
        }
        recorded.sort_unstable();
        Ok((recorded, unknown))
    }

    /// Bytes the pair files hold: their recorded pairs, padded to whole
    /// blocks (and files of single pairs, as they take on disk).
    pub fn pair_file_bytes(&self) -> u64 {
        self.files.bytes()
    }

    /// Bytes on disk: every table's files and the pair files.
    pub fn stored_bytes(&self) -> Result<u64, StoreError> {
        let tables = self.table_stats()?;
        let in_tables: u64 = tables.iter().map(|t| t.sst_bytes + t.blob_file_bytes).sum();
        Ok(in_tables + self.pair_file_bytes())
    }
}
