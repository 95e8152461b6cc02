//! Storing: encoding, the upload pipeline to every node, confirmations
//! gathered to a certificate, and the certificate delivered.

use super::*;

impl Client {
    /// Store `blob` for `epochs` epochs from now and return its certificate.
    pub async fn store(
        &self,
        blob: Bytes,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<StoreOutcome, ClientError> {
        let (epoch, committee) = self.serving().await;
        let end_epoch = Epoch(epoch.0 + epochs.max(1));
        let encoding = committee.encoding();
        if blob.len() as u64 > encoding.max_blob_size() {
            return Err(ClientError::Rejected(format!(
                "a blob of {} bytes exceeds the {} bytes this committee can encode",
                blob.len(),
                encoding.max_blob_size()
            )));
        }
        options.progress.report(Progress::Encoding {
            bytes: blob.len() as u64,
        });
        let (metadata, blob_id, pairs) =
            tokio::task::spawn_blocking(move || encode(&encoding, &blob))
                .await
                .map_err(|e| ClientError::Rejected(format!("encoding failed: {e}")))?
                .map_err(|e| ClientError::Rejected(format!("encoding failed: {e}")))?;

        // The status check runs beside the upload, not before it, so a new
        // blob's store costs no round trip beyond the protocol's own
        // (metadata, pairs, confirmation, certificate). A blob already
        // certified long enough is answered from its certificate as soon
        // as the check says so, and the upload is dropped (its calls
        // cancelled; what nodes received is pending data they collect).
        // The check ends once a quorum answered (one round trip), and the
        // certification waits for it: which of the two finishes first
        // must not decide the answer, or a second store of the same blob
        // would say "already certified" or "newly certified" by chance.
        // Delivery waits for both: a check answered after nodes learned
        // this store's own certificate would call it someone else's.
        let check = self.status_within(blob_id, STORE_CHECK_GRACE);
        // Only a permanent store is answered by a certificate already there,
        // and only by a permanent one: another owner could delete a
        // deletable one and take this store's data along, and the store's
        // own owner may have deleted one already, unknown yet to the
        // quorum that answered. A deletable store certifies a registration
        // of its own, which its owner can delete.
        let permanent = options.owner.is_none();
        let certify = self.certify_at_quorum(metadata, pairs, epochs, options);
        tokio::pin!(check, certify);
        let already = |status: Result<QuorumStatus, ClientError>| match status {
            Ok(QuorumStatus {
                status: BlobStatus::Certified { certificate },
                ..
            }) if permanent
                && certificate.message.body.end_epoch >= end_epoch
                && !certificate.message.body.deletable =>
            {
                Some(StoreOutcome {
                    blob_id,
                    end_epoch: certificate.message.body.end_epoch,
                    certificate,
                    newly_certified: false,
                })
            }
            _ => None,
        };
        let (outcome, tail) = tokio::select! {
            biased;
            status = &mut check => match already(status) {
                Some(existing) => return Ok(existing),
                None => certify.await?,
            },
            // However the certification ended (a refusal of a budget
            // spent, say), a certificate the check found answers the store;
            // the check is waited for a bounded time only.
            certified = &mut certify => {
                let status = tokio::time::timeout(STORE_CHECK_AFTER_CERTIFY, check).await;
                match status.ok().and_then(already) {
                    Some(existing) => return Ok(existing),
                    None => certified?,
                }
            }
        };
        Ok(self.deliver_and_finish(outcome, tail).await)
    }

    /// Upload an already encoded blob, certify it and deliver the
    /// certificate to every node.
    pub async fn store_encoded(
        &self,
        metadata: BlobMetadata,
        pairs: Vec<SliverPair>,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<StoreOutcome, ClientError> {
        let (outcome, tail) = self
            .certify_at_quorum(metadata, pairs, epochs, options)
            .await?;
        Ok(self.deliver_and_finish(outcome, tail).await)
    }

    /// Deliver a store's fresh certificate to every node while the tail of
    /// its uploads finishes.
    async fn deliver_and_finish(&self, outcome: StoreOutcome, mut tail: Tail) -> StoreOutcome {
        // The tail window and the delivery overlap: nodes still receiving
        // their slivers finish while the certificate reaches the others.
        tokio::join!(
            self.deliver(Fact::Certified(outcome.certificate.clone())),
            tail.finish()
        );
        outcome
    }

    /// Upload an already encoded blob and gather its certificate from a
    /// quorum of shards, without delivering the certificate (nodes learn it
    /// from [`Client::deliver`], or from each other).
    pub async fn certify_encoded(
        &self,
        metadata: BlobMetadata,
        pairs: Vec<SliverPair>,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<StoreOutcome, ClientError> {
        let (outcome, mut tail) = self
            .certify_at_quorum(metadata, pairs, epochs, options)
            .await?;
        tail.finish().await;
        Ok(outcome)
    }

    /// Uploads until shards forming a quorum confirmed and returns the
    /// certificate with the uploads still running (the tail).
    pub(crate) async fn certify_at_quorum(
        &self,
        metadata: BlobMetadata,
        pairs: Vec<SliverPair>,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<(StoreOutcome, Tail), ClientError> {
        let blob_id = metadata.blob_id();
        // Written to the committee of the epoch the certificate is formed in:
        // a store that straddles a committee change fails with a typed error
        // that says to retry (the confirmations of a quorum of one epoch's
        // committee are all it ever certifies with).
        let (epoch, committee) = self.serving().await;
        let end_epoch = Epoch(epoch.0 + epochs.max(1));
        let n = committee.n_shards();
        let mut by_key: BTreeMap<PublicKey, Vec<(ShardIndex, SliverPair)>> = BTreeMap::new();
        for pair in pairs {
            let shard = pair.index.to_shard_index(n, &blob_id);
            let holder = committee
                .shard_holder(shard)
                .and_then(|m| committee.member(m))
                .ok_or_else(|| ClientError::Rejected(format!("shard {shard} has no holder")))?;
            by_key
                .entry(holder.network_key)
                .or_default()
                .push((shard, pair));
        }
        let request = ConfirmationRequest {
            blob_id,
            end_epoch,
            deletable: options.owner.is_some(),
            owner: options.owner,
        };
        let message = ProtocolMessage::new(
            epoch,
            StorageConfirmation {
                blob_id,
                end_epoch,
                deletable: request.deletable,
                owner: request.owner,
            },
        );
        let progress = options.progress.clone();
        let total: u64 = by_key
            .values()
            .flatten()
            .map(|(_, pair)| pair.byte_len() as u64)
            .sum();
        progress.report(Progress::Encoded { total });
        let upload = Upload {
            pool: Arc::clone(&self.pool),
            blob_id,
            metadata,
            request,
            budget: Arc::new(Semaphore::new(self.config.max_upload_bytes_in_flight)),
            budget_total: self.config.max_upload_bytes_in_flight,
            uploaded: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            total,
            progress: progress.clone(),
            grant: self.config.grant.clone().map(Arc::new),
            presented: Arc::clone(&self.presented),
            refusal: Arc::default(),
        };
        let (needed, total_shards) = (committee.quorum_threshold(), n);
        // Each confirmation is bound to the member that sent it by its
        // network key: the signing committee (this epoch's) may number its
        // members differently from the committee file.
        let mut tally = Observed::new(
            SignatureTally::new(&committee, message),
            |tally: &SignatureTally<'_, StorageConfirmation, PublicKey>| {
                progress.report(Progress::Confirmed {
                    shards: tally.weight(),
                    needed,
                    total: total_shards,
                })
            },
        );
        let targets: Vec<PublicKey> = by_key.keys().copied().collect();
        let mut uploads = FanOut::new(targets, Pacing::ALL);
        uploads
            .run(&mut tally, |key| {
                let pairs = by_key.remove(&key).unwrap_or_default();
                upload.clone().send_to(key, pairs)
            })
            .await;
        let tally = tally.into_inner();
        // A confirmation of another message, or one that does not verify, is
        // a lie, not a failure.
        self.pool.report_lies(tally.failures(), |key| Some(*key));
        let refusal = upload.refusal.lock().ok().and_then(|r| r.clone());
        let certificate = tally.finish().map_err(|shortfall| {
            if let Some(refusal) = refusal {
                return ClientError::NotAdmitted { blob_id, refusal };
            }
            if self.epoch() != epoch {
                return ClientError::EpochChanged {
                    blob_id,
                    from: epoch,
                    to: self.epoch(),
                };
            }
            self.not_enough(blob_id, "certifying storage", shortfall, |key| {
                Self::node_name(&committee, key)
            })
        })?;
        let outcome = StoreOutcome {
            blob_id,
            certificate,
            end_epoch,
            newly_certified: true,
        };
        let tail = Tail {
            uploads,
            deadline: std::time::Instant::now() + self.config.tail_window,
        };
        Ok((outcome, tail))
    }

    /// Give `fact` to every node. Returns once shards forming a quorum have
    /// accepted it (or every node has answered), with the number of nodes
    /// that accepted so far; the remaining deliveries go on in the background.
    pub async fn deliver(&self, fact: Fact) -> usize {
        // The members of the current committee: they judge the fact by the
        // committee of its own epoch.
        let (_, committee) = self.serving().await;
        let mut tally = DeliveryTally::new(&committee, committee.epoch());
        let members: Vec<MemberIndex> = (0..committee.members().len())
            .map(|i| MemberIndex(i as u16))
            .collect();
        let mut calls = FanOut::new(members, Pacing::ALL);
        calls
            .run(&mut tally, |member| {
                let (pool, key, fact) = (
                    Arc::clone(&self.pool),
                    committee.members()[member.as_usize()].network_key,
                    fact.clone(),
                );
                async move { pool.call::<PutFact>(&key, &fact).await.is_ok() }
            })
            .await;
        // Shards forming a quorum hold the fact: the caller can go on. The
        // other deliveries finish in the background (and anti-entropy covers
        // any that fail).
        calls.detach();
        tally.accepted()
    }
}

/// Uploads still running once a quorum confirmed: given until a deadline
/// so more nodes end up holding their slivers, then abandoned (repair covers
/// the rest).
pub(crate) struct Tail {
    uploads: FanOut<PublicKey, Result<Signed<StorageConfirmation>, String>>,
    deadline: std::time::Instant,
}

impl Tail {
    async fn finish(&mut self) {
        self.uploads.finish_by(self.deadline).await;
    }
}

/// Pairs smaller than this go to a node together, in requests of up to
/// this many bytes: a small blob's pairs cost a node one request instead of
/// one each. A larger pair travels alone.
pub(crate) const PAIRS_REQUEST_BYTES: usize = 1 << 20;

/// `pairs` in order, grouped into requests of at most
/// [`PAIRS_REQUEST_BYTES`] (or one pair, if larger).
pub(crate) fn batches(pairs: Vec<(ShardIndex, SliverPair)>) -> Vec<Vec<(ShardIndex, SliverPair)>> {
    let mut batches: Vec<Vec<(ShardIndex, SliverPair)>> = Vec::new();
    let mut bytes = 0;
    for (shard, pair) in pairs {
        let size = pair.byte_len();
        match batches.last_mut() {
            Some(batch) if bytes + size <= PAIRS_REQUEST_BYTES => {
                bytes += size;
                batch.push((shard, pair));
            }
            _ => {
                bytes = size;
                batches.push(vec![(shard, pair)]);
            }
        }
    }
    batches
}

/// What every node's upload of one blob shares.
#[derive(Clone)]
pub(crate) struct Upload {
    pool: Arc<Pool>,
    blob_id: BlobId,
    metadata: BlobMetadata,
    request: ConfirmationRequest,
    /// Bytes in flight across all nodes, and the budget's size.
    budget: Arc<Semaphore>,
    budget_total: usize,
    /// Bytes acknowledged so far, and where to report them.
    uploaded: Arc<std::sync::atomic::AtomicU64>,
    total: u64,
    progress: ProgressSink,
    /// The grant to present to each node before writing to it.
    grant: Option<Arc<Signed<floe_consensus::grant::StorageGrant>>>,
    /// The nodes the client presented its grant to already.
    presented: Arc<std::sync::Mutex<std::collections::HashSet<PublicKey>>>,
    /// The first admission refusal a node answered, to report it typed.
    refusal: Arc<std::sync::Mutex<Option<floe_api::Admission>>>,
}

impl Upload {
    /// Sends one request of pairs, once the upload budget has room for it
    /// (waiting for the budget only when it is the node's `turn`).
    async fn send_batch(
        self,
        key: PublicKey,
        batch: Vec<(ShardIndex, SliverPair)>,
        turn: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<(), String> {
        let size: usize = batch.iter().map(|(_, pair)| pair.byte_len()).sum();
        let permit = {
            let _turn = turn.lock().await;
            Arc::clone(&self.budget)
                .acquire_many_owned(
                    u32::try_from(size.clamp(1, self.budget_total.max(1))).unwrap_or(u32::MAX),
                )
                .await
                .map_err(|e| e.to_string())?
        };
        let shards: Vec<String> = batch.iter().map(|(shard, _)| shard.to_string()).collect();
        let request = PutPairsRequest {
            blob_id: self.blob_id,
            pairs: batch,
        };
        let outcome = self.pool.call::<PutPairs>(&key, &request).await;
        drop(permit);
        if outcome.is_ok() {
            let bytes = self
                .uploaded
                .fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed)
                + size as u64;
            self.progress.report(Progress::Uploaded {
                bytes,
                total: self.total,
            });
        }
        outcome.map_err(|e| format!("pairs of shards {}: {e}", shards.join(", ")))
    }

    /// Sends one node its metadata and pairs, then asks for its confirmation.
    async fn send_to(
        self,
        key: PublicKey,
        pairs: Vec<(ShardIndex, SliverPair)>,
    ) -> Result<Signed<StorageConfirmation>, String> {
        let blob_id = self.blob_id;
        let metadata = self.metadata.clone();
        self.present_grant(&key).await?;
        let stored = self
            .pool
            .call::<PutMetadata>(&key, &PutMetadataRequest { blob_id, metadata })
            .await;
        self.admitted(&key, stored)?;
        let mut batches: Vec<Option<_>> = batches(pairs).into_iter().map(Some).collect();
        let mut sends = FanOut::new(0..batches.len(), Pacing::ALL);
        let mut tally = AllSucceed::default();
        // This node's batches queue for the shared budget one at a time, in
        // order: one node cannot crowd the others out of the budget's queue.
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        sends
            .run(&mut tally, |i| {
                let batch = batches[i].take().unwrap_or_default();
                self.clone().send_batch(key, batch, Arc::clone(&turn))
            })
            .await;
        tally.finish().map_err(|(_, e)| e)?;
        let confirmed = self.pool.call::<GetConfirmation>(&key, &self.request).await;
        self.admitted(&key, confirmed)
    }

    /// Presents the client's grant to `key`'s node, once per client.
    async fn present_grant(&self, key: &PublicKey) -> Result<(), String> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        if self.presented.lock().is_ok_and(|p| p.contains(key)) {
            return Ok(());
        }
        let answer = self.pool.call::<PutGrant>(key, grant).await;
        self.admitted(key, answer)?;
        if let Ok(mut presented) = self.presented.lock() {
            presented.insert(*key);
        }
        Ok(())
    }

    /// `key`'s answer, with an admission refusal kept to be reported
    /// typed. A node that says it holds no (good) grant is presented the
    /// grant again by the next store.
    fn admitted<T>(
        &self,
        key: &PublicKey,
        answer: Result<T, RpcError<ApiError>>,
    ) -> Result<T, String> {
        answer.map_err(|e| {
            if let RpcError::Remote {
                error: ApiError::NotAdmitted(refusal),
                ..
            } = &e
            {
                if matches!(
                    refusal,
                    Admission::NoGrant { .. } | Admission::BadGrant { .. }
                ) {
                    if let Ok(mut presented) = self.presented.lock() {
                        presented.remove(key);
                    }
                }
                if let Ok(mut first) = self.refusal.lock() {
                    first.get_or_insert_with(|| refusal.clone());
                }
            }
            e.to_string()
        })
    }
}
