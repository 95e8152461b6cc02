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
    ) -> Result<(Bytes, Status), ClientError> {
        let (metadata, status) = self.readable_metadata(blob_id).await?;
        let slivers = self
            .primary_slivers(blob_id, &metadata, &options.progress)
            .await?;
        options.progress.report(Progress::Decoding);
        let check = if options.strict {
            DecodeCheck::Strict
        } else {
            DecodeCheck::AlreadyVerified
        };
        let decoded =
            tokio::task::spawn_blocking(move || decode(&blob_id, &metadata, &slivers, check))
                .await
                .map_err(|e| ClientError::Rejected(format!("decoding failed: {e}")))?;
        let bytes = decoded
            .map(Bytes::from)
            .map_err(|e| ClientError::Rejected(format!("blob {blob_id}: {e}")))?;
        Ok((bytes, status))
    }

    /// The size of a certified blob, from its verified metadata, without
    /// reading its slivers.
    pub async fn length(&self, blob_id: BlobId) -> Result<u64, ClientError> {
        Ok(self.length_with_status(blob_id).await?.0)
    }

    /// [`Client::length`], with the status that let the blob be read.
    pub async fn length_with_status(&self, blob_id: BlobId) -> Result<(u64, Status), ClientError> {
        let (metadata, status) = self.readable_metadata(blob_id).await?;
        Ok((metadata.unencoded_length(), status))
    }

    /// The verified metadata of a blob whose status lets it be read, with
    /// that status; the typed state error (not certified, invalid, deleted,
    /// expired) otherwise.
    pub(crate) async fn readable_metadata(
        &self,
        blob_id: BlobId,
    ) -> Result<(BlobMetadata, Status), ClientError> {
        let status = self.status(blob_id).await?;
        if let Some(error) = status.clone().unreadable(blob_id, self.base.n_shards()) {
            return Err(error);
        }
        Ok((self.metadata(blob_id).await?, status))
    }

    pub(crate) async fn metadata(&self, blob_id: BlobId) -> Result<BlobMetadata, ClientError> {
        let keys: Vec<PublicKey> = self.base.members().iter().map(|m| m.network_key).collect();
        let mut failures = Vec::new();
        for key in self.pool.rank(&keys) {
            let node = self
                .base
                .member_by_network_key(&key)
                .and_then(|index| self.base.member(index))
                .map(|m| m.node_id.0.clone())
                .unwrap_or_default();
            match self.pool.call::<GetMetadata>(&key, &blob_id).await {
                Ok(metadata) => match metadata.verify(&blob_id) {
                    Ok(()) => return Ok(metadata),
                    Err(e) => {
                        let lie = format!("served metadata that does not match: {e}");
                        self.pool.report_misbehaviour(&key, lie.clone());
                        failures.push((node, lie))
                    }
                },
                Err(e) => failures.push((node, e.to_string())),
            }
        }
        Err(ClientError::NotEnoughShards {
            blob_id,
            what: "reading metadata",
            needed: 1,
            got: 0,
            failures,
        })
    }

    /// Enough verified primary slivers to decode: systematic ones first;
    /// each failure brings in another, and so does a stall, so slow nodes do
    /// not hold the read up.
    pub(crate) async fn primary_slivers(
        &self,
        blob_id: BlobId,
        metadata: &BlobMetadata,
        progress: &ProgressSink,
    ) -> Result<Vec<Sliver>, ClientError> {
        let n = self.base.n_shards();
        let needed = usize::from(metadata.config().primary_source_symbols());
        let mut candidates = (0..n).map(SliverIndex);
        let mut got: Vec<Sliver> = Vec::with_capacity(needed);
        let mut failures = Vec::new();
        let mut running = JoinSet::new();
        let launch = |running: &mut JoinSet<_>, index: SliverIndex| {
            let pair = index.to_pair_index(Axis::Primary, n);
            let shard = pair.to_shard_index(n, &blob_id);
            let Some(holder) = self.holder(shard) else {
                return;
            };
            let (pool, key, metadata) = (
                Arc::clone(&self.pool),
                self.base.members()[holder].network_key,
                metadata.clone(),
            );
            let node = self.base.members()[holder].node_id.0.clone();
            running.spawn(async move {
                let request = GetSliverRequest {
                    blob_id,
                    shard,
                    axis: Axis::Primary,
                };
                let result = match pool.call::<GetSliver>(&key, &request).await {
                    Ok(sliver) if sliver.axis == Axis::Primary && sliver.index == index => {
                        sliver.verify(&metadata).map(|()| sliver).map_err(|e| {
                            let lie = format!("served a sliver that fails verification: {e}");
                            pool.report_misbehaviour(&key, lie.clone());
                            lie
                        })
                    }
                    Ok(_) => {
                        let lie = "served another sliver than the one asked for".to_string();
                        pool.report_misbehaviour(&key, lie.clone());
                        Err(lie)
                    }
                    Err(e) => Err(e.to_string()),
                };
                (node, result)
            });
        };
        let concurrency = self.config.read_concurrency.max(1);
        let mut bytes = 0u64;
        while got.len() < needed {
            while got.len() + running.len() < needed && running.len() < concurrency {
                let Some(index) = candidates.next() else {
                    break;
                };
                launch(&mut running, index);
            }
            if running.is_empty() {
                break;
            }
            match tokio::time::timeout(self.config.read_hedge_after, running.join_next()).await {
                Ok(Some(Ok((_, Ok(sliver))))) => {
                    bytes += sliver.data.len() as u64;
                    got.push(sliver);
                    progress.report(Progress::Downloaded {
                        slivers: got.len() as u32,
                        needed: needed as u32,
                        bytes,
                    });
                }
                Ok(Some(Ok((node, Err(e))))) => {
                    debug!(blob = %blob_id, %node, error = %e, "sliver unavailable");
                    failures.push((node, e));
                }
                Ok(_) => {}
                // A stall: ask one more node without waiting for the slow ones.
                Err(_) => {
                    if let Some(index) = candidates.next() {
                        launch(&mut running, index);
                    }
                }
            }
        }
        running.abort_all();
        if got.len() < needed {
            return Err(ClientError::NotEnoughShards {
                blob_id,
                what: "reading the blob",
                needed: needed as u32,
                got: got.len() as u32,
                failures,
            });
        }
        Ok(got)
    }
}
