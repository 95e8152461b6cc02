//! Reading: metadata from the first node whose answer matches the blob
//! ID, primary slivers with hedged requests, every byte verified.

use super::*;

impl Client {
    /// Read a certified blob, verifying every sliver against its ID.
    pub async fn read(&self, blob_id: BlobId, options: ReadOptions) -> Result<Bytes, ClientError> {
        Ok(self.read_with_status(blob_id, options).await?.0)
    }

    /// [`Client::read`], with the status that let the blob be read (its
    /// certificate names its end epoch): one status query serves both.
    pub async fn read_with_status(
        &self,
        blob_id: BlobId,
        options: ReadOptions,
    ) -> Result<(Bytes, QuorumStatus), ClientError> {
        let (metadata, status) = self.readable_metadata(blob_id).await?;
        let slivers = self
            .primary_slivers(blob_id, &metadata, &options.progress)
            .await?;
        options.progress.report(Progress::Decoding);
        let check = if options.strict {
            DecodeCheck::Strict
        } else {
            // Slivers were verified as they arrived; rows rebuilt by the
            // code are checked too, so every reader gets the same bytes.
            DecodeCheck::Consistent
        };
        let decoded =
            tokio::task::spawn_blocking(move || decode_bytes(&blob_id, &metadata, &slivers, check))
                .await
                .map_err(|e| ClientError::Rejected(format!("decoding failed: {e}")))?;
        let bytes = decoded.map_err(|e| ClientError::Rejected(format!("blob {blob_id}: {e}")))?;
        Ok((bytes, status))
    }

    /// The size of a certified blob, from its verified metadata, without
    /// reading its slivers.
    pub async fn length(&self, blob_id: BlobId) -> Result<u64, ClientError> {
        Ok(self.length_with_status(blob_id).await?.0)
    }

    /// [`Client::length`], with the status that let the blob be read.
    pub async fn length_with_status(
        &self,
        blob_id: BlobId,
    ) -> Result<(u64, QuorumStatus), ClientError> {
        let (metadata, status) = self.readable_metadata(blob_id).await?;
        Ok((metadata.unencoded_length(), status))
    }

    /// The verified metadata of a blob whose status lets it be read, with
    /// that status; the typed state error (not certified, invalid, deleted,
    /// expired) otherwise.
    pub(crate) async fn readable_metadata(
        &self,
        blob_id: BlobId,
    ) -> Result<(BlobMetadata, QuorumStatus), ClientError> {
        let status = self.status(blob_id).await?;
        if let Some(error) = unreadable(status.clone(), blob_id, self.base.n_shards()) {
            return Err(error);
        }
        Ok((self.metadata(blob_id).await?, status))
    }

    pub(crate) async fn metadata(&self, blob_id: BlobId) -> Result<BlobMetadata, ClientError> {
        // The members of this epoch's committee and of the one before (which
        // keeps serving until a committee change is done).
        let (epoch, committee) = self.serving().await;
        let previous = self.committee(Epoch(epoch.0.saturating_sub(1)));
        let mut keys: Vec<PublicKey> = committee.members().iter().map(|m| m.network_key).collect();
        for member in previous.members() {
            if !keys.contains(&member.network_key) {
                keys.push(member.network_key);
            }
        }
        // One node at a time, healthiest first, until one's answer matches
        // the blob ID.
        let mut tally = MetadataTally::new(blob_id);
        FanOut::new(self.pool.rank(&keys), Pacing::window(1, None))
            .run(&mut tally, |key| {
                let pool = Arc::clone(&self.pool);
                async move {
                    let answer = pool.call::<GetMetadata>(&key, &blob_id).await;
                    answer.map_err(|e| e.to_string())
                }
            })
            .await;
        self.pool.report_lies(tally.failures(), |key| Some(*key));
        tally.finish().map_err(|shortfall| {
            self.not_enough(blob_id, "reading metadata", shortfall, |key| {
                let name = Self::node_name(&committee, key);
                if name.is_empty() {
                    Self::node_name(&previous, key)
                } else {
                    name
                }
            })
        })
    }

    /// Enough verified primary slivers to decode: systematic ones first;
    /// each failure brings in another, and so does a stall, so slow nodes do
    /// not hold the read up. Each sliver is asked of its shard's holder in
    /// this epoch, or, while a committee change is in progress and the new
    /// holder has not said it synced, of the previous holder.
    pub(crate) async fn primary_slivers(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        progress: &ProgressSink,
    ) -> Result<Vec<Sliver>, ClientError> {
        let n = self.base.n_shards();
        let needed = usize::from(metadata.config().primary_source_symbols());
        let handoff = self.handoff().await;
        let holder = |index: &SliverIndex| -> Option<(Member, ShardIndex)> {
            let shard = index
                .to_pair_index(Axis::Primary, n)
                .to_shard_index(n, &blob_id);
            Some((handoff.read_holder(shard)?.clone(), shard))
        };
        let candidates: Vec<SliverIndex> = (0..n)
            .map(SliverIndex)
            .filter(|index| holder(index).is_some())
            .collect();
        let mut reported = 0;
        let mut tally = Observed::new(SliverTally::new(needed), |tally: &SliverTally| {
            let (slivers, needed, bytes) = tally.progress();
            if slivers > reported {
                reported = slivers;
                progress.report(Progress::Downloaded {
                    slivers: slivers as u32,
                    needed: needed as u32,
                    bytes,
                });
            }
        });
        let pacing = Pacing::window(
            self.config.read_concurrency,
            Some(self.config.read_hedge_after),
        );
        FanOut::new(candidates, pacing)
            .run(&mut tally, |index| {
                let (pool, metadata) = (Arc::clone(&self.pool), metadata.clone());
                let target = holder(&index);
                async move {
                    let Some((member, shard)) = target else {
                        return Err(Failure::Unanswered("no holder".into()));
                    };
                    let request = GetSliverRequest {
                        blob_id,
                        shard,
                        axis: Axis::Primary,
                    };
                    match pool.call::<GetSliver>(&member.network_key, &request).await {
                        Ok(sliver) => SliverTally::check(&metadata, index, sliver),
                        Err(e) => Err(Failure::Unanswered(e.to_string())),
                    }
                }
            })
            .await;
        let tally = tally.into_inner();
        for (index, failure) in tally.failures() {
            let node = holder(index).map(|(m, _)| m.node_id.0).unwrap_or_default();
            debug!(blob = %blob_id, %node, sliver = %index, error = %failure, "sliver unavailable");
        }
        self.pool.report_lies(tally.failures(), |index| {
            holder(index).map(|(m, _)| m.network_key)
        });
        tally.finish().map_err(|shortfall| {
            self.not_enough(blob_id, "reading the blob", shortfall, |index| {
                holder(index).map(|(m, _)| m.node_id.0).unwrap_or_default()
            })
        })
    }
}
