//! floe-client: store, read, status and delete blobs on a Floe committee.
//!
//! Every answer is a protocol fact with its proof: a stored blob comes back
//! with its certificate, a read verifies every sliver against the blob ID,
//! and a status is a verified certificate, an invalid-blob certificate, a
//! deletion, or the statement that shards forming a quorum know none.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use floe_api::*;
use floe_codec::{
    decode, encode, Axis, BlobId, BlobMetadata, DecodeCheck, ShardIndex, Sliver, SliverIndex,
    SliverPair,
};
use floe_consensus::{
    BlobCertificate, BlobDeletion, BlobState, BlobStatus, CertificateBuilder, Committee,
    CommitteeFile, DeletionProof, Epoch, EpochClock, Fact, InvalidBlobCertificate, KeyPair, Member,
    MemberIndex, ProtocolMessage, PublicKey, Signed, StorageConfirmation,
};
use floe_net::{NetConfig, Pool, RpcError};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::debug;

/// A failure, saying what happened and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No shard quorum knows a certificate for the blob.
    #[error("blob {blob_id} is not certified: shards with {answered} of {n_shards} shards answered and none holds a certificate")]
    NotCertified {
        /// The blob.
        blob_id: BlobId,
        /// Shards that answered.
        answered: u32,
        /// Shards in the committee.
        n_shards: u16,
    },
    /// The blob is proven inconsistently encoded: it has no content.
    #[error("blob {blob_id} is invalid: its writer encoded it inconsistently, as an invalid-blob certificate proves; it has no content to read")]
    Invalid {
        /// The blob.
        blob_id: BlobId,
        /// The invalid-blob certificate.
        certificate: Box<InvalidBlobCertificate>,
    },
    /// The blob's storage ended.
    #[error("blob {blob_id} expired at the end of epoch {end_epoch}; store it again to keep it")]
    Expired {
        /// The blob.
        blob_id: BlobId,
        /// The epoch its storage ended.
        end_epoch: Epoch,
    },
    /// The owner deleted the blob.
    #[error("blob {blob_id} was deleted by its owner")]
    Deleted {
        /// The blob.
        blob_id: BlobId,
        /// The deletion and the registration it ended.
        proof: Box<Fact>,
    },
    /// Too few shards answered to give a definite answer or the data.
    #[error(
        "blob {blob_id}: {what} needs {needed} shards, only {got} answered; failures: {}",
        describe(failures)
    )]
    NotEnoughShards {
        /// The blob.
        blob_id: BlobId,
        /// What was attempted.
        what: &'static str,
        /// Shards needed.
        needed: u32,
        /// Shards that answered usefully.
        got: u32,
        /// Which nodes failed, and how.
        failures: Vec<(String, String)>,
    },
    /// The blob cannot be stored on this committee.
    #[error("{0}")]
    Rejected(String),
    /// The caller may not do this (for example delete a blob it does not own).
    #[error("{0}")]
    NotAllowed(String),
}

fn describe(failures: &[(String, String)]) -> String {
    if failures.is_empty() {
        return "none reported".into();
    }
    failures
        .iter()
        .map(|(node, e)| format!("{node}: {e}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// How long `status` waits for the remaining nodes once a quorum answered.
const STATUS_GRACE: Duration = Duration::from_millis(300);

/// A blob's definite status, with its proof.
#[derive(Debug, Clone)]
pub enum Status {
    /// Certified and available until `end_epoch`.
    Certified {
        /// The certificate (verified).
        certificate: BlobCertificate,
        /// The last epoch it is stored in.
        end_epoch: Epoch,
        /// The current epoch.
        epoch: Epoch,
    },
    /// Proven invalid.
    Invalid {
        /// The certificate (verified).
        certificate: InvalidBlobCertificate,
    },
    /// Its storage ended.
    Expired {
        /// The certificate that ended (verified).
        certificate: BlobCertificate,
    },
    /// Deleted by its owner.
    Deleted {
        /// The deletion proof (verified).
        proof: Fact,
    },
    /// Shards forming a quorum answered, and none knows a certificate.
    Unknown {
        /// Shards that answered.
        answered: u32,
    },
}

impl Status {
    /// The error a read of a blob with this status ends in, if it cannot be read.
    fn unreadable(self, blob_id: BlobId, n_shards: u16) -> Option<ClientError> {
        Some(match self {
            Status::Certified { .. } => return None,
            Status::Invalid { certificate } => ClientError::Invalid {
                blob_id,
                certificate: Box::new(certificate),
            },
            Status::Expired { certificate } => ClientError::Expired {
                blob_id,
                end_epoch: certificate.message.body.end_epoch,
            },
            Status::Deleted { proof } => ClientError::Deleted {
                blob_id,
                proof: Box::new(proof),
            },
            Status::Unknown { answered } => ClientError::NotCertified {
                blob_id,
                answered,
                n_shards,
            },
        })
    }

    /// A short name: certified, invalid, expired, deleted, unknown.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Certified { .. } => "certified",
            Status::Invalid { .. } => "invalid",
            Status::Expired { .. } => "expired",
            Status::Deleted { .. } => "deleted",
            Status::Unknown { .. } => "unknown",
        }
    }
}

/// What `store` achieved.
#[derive(Debug, Clone)]
pub struct StoreOutcome {
    /// The blob ID.
    pub blob_id: BlobId,
    /// Its certificate.
    pub certificate: BlobCertificate,
    /// The last epoch it is stored in.
    pub end_epoch: Epoch,
    /// False when the blob was already certified and nothing was uploaded.
    pub newly_certified: bool,
}

/// A step of a store or read, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Encoding a blob of `bytes` bytes.
    Encoding {
        /// The blob's size.
        bytes: u64,
    },
    /// Encoded: `total` bytes of sliver pairs are to be uploaded.
    Encoded {
        /// Bytes of all sliver pairs.
        total: u64,
    },
    /// Nodes acknowledged `bytes` of the `total` bytes of sliver pairs.
    Uploaded {
        /// Bytes acknowledged so far.
        bytes: u64,
        /// Bytes of all sliver pairs.
        total: u64,
    },
    /// Shards that confirmed storage so far, and the quorum needed.
    Confirmed {
        /// Shards whose confirmations were gathered.
        shards: u32,
        /// Shards a certificate needs.
        needed: u32,
        /// Shards in the committee.
        total: u16,
    },
    /// Verified primary slivers fetched so far, out of those needed to decode.
    Downloaded {
        /// Slivers fetched and verified.
        slivers: u32,
        /// Slivers needed.
        needed: u32,
        /// Bytes fetched.
        bytes: u64,
    },
    /// Decoding the fetched slivers.
    Decoding,
}

/// Where a store or read reports its [`Progress`] (nowhere by default).
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<dyn Fn(Progress) + Send + Sync>>);

impl ProgressSink {
    /// Reports to `f`.
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(f)))
    }

    fn report(&self, progress: Progress) {
        if let Some(f) = &self.0 {
            f(progress);
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(set)"
        } else {
            "ProgressSink(none)"
        })
    }
}

/// Options of `store`.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Make the blob deletable by this owner.
    pub owner: Option<PublicKey>,
    /// Where to report progress.
    pub progress: ProgressSink,
}

/// Options of `read`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Re-encode the decoded blob and check it against the blob ID's
    /// commitments (catches inconsistent encodings before a certificate of
    /// invalidity exists).
    pub strict: bool,
    /// Where to report progress.
    pub progress: ProgressSink,
}

/// Knobs of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Transport limits.
    pub net: NetConfig,
    /// Bytes of sliver pairs being uploaded at once.
    pub max_upload_bytes_in_flight: usize,
    /// After a quorum confirmed, how long to keep uploading to the rest.
    pub tail_window: Duration,
    /// Slivers fetched at once during a read.
    pub read_concurrency: usize,
    /// Without progress for this long, a read asks further nodes.
    pub read_hedge_after: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            max_upload_bytes_in_flight: 256 << 20,
            tail_window: Duration::from_millis(500),
            read_concurrency: 32,
            read_hedge_after: Duration::from_secs(2),
        }
    }
}

/// A client of one committee.
pub struct Client {
    /// The committee as read from the committee file.
    base: Committee,
    clock: EpochClock,
    pool: Arc<Pool>,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("members", &self.base.members().len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Client {
    /// A client of the committee in `file`.
    pub fn new(file: &CommitteeFile, config: ClientConfig) -> Result<Self, ClientError> {
        let bind: SocketAddr = ([0, 0, 0, 0], 0).into();
        let pool = Pool::new(bind, None, config.net.clone())
            .map_err(|e| ClientError::Rejected(e.to_string()))?;
        for member in file.committee.members() {
            pool.add_peer(member.network_key, member.address.clone())
                .map_err(|e| ClientError::Rejected(e.to_string()))?;
        }
        Ok(Self {
            base: file.committee.clone(),
            clock: file.clock,
            pool: Arc::new(pool),
            config,
        })
    }

    /// The current epoch by the committee's clock.
    pub fn epoch(&self) -> Epoch {
        self.clock.epoch_at(now_ms())
    }

    /// The committee's epoch clock: when each epoch begins.
    pub fn clock(&self) -> EpochClock {
        self.clock
    }

    /// The committee as of `epoch`.
    pub fn committee(&self, epoch: Epoch) -> Committee {
        self.base.at_epoch(epoch)
    }

    /// Health of every node, as seen by this client's connections.
    pub fn health(&self) -> Vec<floe_net::PeerHealth> {
        self.pool.health()
    }

    /// Ask one node for its description.
    pub async fn info(&self, node: &Member) -> Result<NodeInfo, RpcError<ApiError>> {
        self.pool.call::<GetInfo>(&node.network_key, &()).await
    }

    /// Ask one node for its own view of a blob's status (unverified: the
    /// caller checks the proof it carries, or compares views across nodes).
    pub async fn node_status(
        &self,
        node: &Member,
        blob_id: BlobId,
    ) -> Result<BlobStatusAnswer, RpcError<ApiError>> {
        self.pool
            .call::<GetStatus>(&node.network_key, &blob_id)
            .await
    }

    /// The members of the committee.
    pub fn members(&self) -> &[Member] {
        self.base.members()
    }

    fn holder(&self, shard: ShardIndex) -> Option<usize> {
        self.base.shard_holder(shard).map(MemberIndex::as_usize)
    }

    fn weight(&self, member: usize) -> u32 {
        self.base.weight(MemberIndex(member as u16))
    }

    /// Store `blob` for `epochs` epochs from now and return its certificate.
    pub async fn store(
        &self,
        blob: Bytes,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<StoreOutcome, ClientError> {
        let epoch = self.epoch();
        let end_epoch = Epoch(epoch.0 + epochs.max(1));
        let committee = self.committee(epoch);
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

        if let Ok(Status::Certified {
            certificate,
            end_epoch: existing_end,
            ..
        }) = self.status(blob_id).await
        {
            if existing_end >= end_epoch {
                return Ok(StoreOutcome {
                    blob_id,
                    certificate,
                    end_epoch: existing_end,
                    newly_certified: false,
                });
            }
        }
        self.store_encoded(metadata, pairs, epochs, options).await
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
        let (outcome, mut tail) = self
            .certify_at_quorum(metadata, pairs, epochs, options)
            .await?;
        // The tail window and the delivery overlap: nodes still receiving
        // their slivers finish while the certificate reaches the others.
        tokio::join!(
            self.deliver(Fact::Certified(outcome.certificate.clone())),
            tail.finish()
        );
        Ok(outcome)
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
    async fn certify_at_quorum(
        &self,
        metadata: BlobMetadata,
        pairs: Vec<SliverPair>,
        epochs: u64,
        options: StoreOptions,
    ) -> Result<(StoreOutcome, Tail), ClientError> {
        let blob_id = metadata.blob_id();
        let epoch = self.epoch();
        let end_epoch = Epoch(epoch.0 + epochs.max(1));
        let committee = self.committee(epoch);
        let n = self.base.n_shards();
        let mut by_member: BTreeMap<usize, Vec<(ShardIndex, SliverPair)>> = BTreeMap::new();
        for pair in pairs {
            let shard = pair.index.to_shard_index(n, &blob_id);
            let holder = self
                .holder(shard)
                .ok_or_else(|| ClientError::Rejected(format!("shard {shard} has no holder")))?;
            by_member.entry(holder).or_default().push((shard, pair));
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
        let mut builder = CertificateBuilder::new(&committee, message);
        let progress = options.progress.clone();
        let total: u64 = by_member
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
        };
        let mut uploads = JoinSet::new();
        for (member, pairs) in by_member {
            let key = self.base.members()[member].network_key;
            let upload = upload.clone();
            uploads.spawn(async move { (member, upload.send_to(key, pairs).await) });
        }
        let mut failures = Vec::new();
        while !builder.is_complete() {
            let Some(joined) = uploads.join_next().await else {
                break;
            };
            let Ok((member, outcome)) = joined else {
                continue;
            };
            match outcome {
                Ok(confirmation) => {
                    if let Err(e) = builder.add(&confirmation) {
                        // A confirmation of another message, or one that
                        // does not verify: a lie, not a failure.
                        let lie = format!("answered with a bad storage confirmation: {e}");
                        self.pool.report_misbehaviour(
                            &self.base.members()[member].network_key,
                            lie.clone(),
                        );
                        failures.push((self.base.members()[member].node_id.0.clone(), lie));
                    }
                    progress.report(Progress::Confirmed {
                        shards: builder.weight(),
                        needed: committee.quorum_threshold(),
                        total: n,
                    });
                }
                Err(e) => failures.push((self.base.members()[member].node_id.0.clone(), e)),
            }
        }
        if !builder.is_complete() {
            return Err(ClientError::NotEnoughShards {
                blob_id,
                what: "certifying storage",
                needed: committee.quorum_threshold(),
                got: builder.weight(),
                failures,
            });
        }
        let certificate = builder
            .certificate()
            .map_err(|e| ClientError::Rejected(e.to_string()))?;
        let outcome = StoreOutcome {
            blob_id,
            certificate,
            end_epoch,
            newly_certified: true,
        };
        let tail = Tail {
            uploads,
            deadline: tokio::time::Instant::now() + self.config.tail_window,
        };
        Ok((outcome, tail))
    }

    /// Give `fact` to every node. Returns once shards forming a quorum have
    /// accepted it (or every node has answered), with the number of nodes
    /// that accepted so far; the remaining deliveries go on in the background.
    pub async fn deliver(&self, fact: Fact) -> usize {
        let mut calls = JoinSet::new();
        for (index, member) in self.base.members().iter().enumerate() {
            let (pool, key, fact) = (Arc::clone(&self.pool), member.network_key, fact.clone());
            calls.spawn(async move { (index, pool.call::<PutFact>(&key, &fact).await.is_ok()) });
        }
        let quorum = self.committee(fact.epoch()).quorum_threshold();
        let (mut accepted, mut weight) = (0, 0);
        while let Some(joined) = calls.join_next().await {
            if let Ok((index, true)) = joined {
                accepted += 1;
                weight += self.weight(index);
            }
            // Shards forming a quorum hold the fact: the caller can go on.
            // The other deliveries finish in the background (and anti-entropy
            // covers any that fail).
            if weight >= quorum {
                calls.detach_all();
                break;
            }
        }
        accepted
    }

    /// The blob's definite status, with its proof verified.
    pub async fn status(&self, blob_id: BlobId) -> Result<Status, ClientError> {
        let mut calls = JoinSet::new();
        for (index, member) in self.base.members().iter().enumerate() {
            let (pool, key) = (Arc::clone(&self.pool), member.network_key);
            calls.spawn(async move { (index, pool.call::<GetStatus>(&key, &blob_id).await) });
        }
        let epoch = self.epoch();
        // Built for this blob: a proof about any other is refused.
        let mut state = BlobState::unknown(blob_id);
        let mut answered = 0u32;
        let mut failures = Vec::new();
        let quorum = self.committee(epoch).quorum_threshold();
        let mut grace_deadline = None;
        loop {
            // Once shards forming a quorum have answered, slow or dead nodes
            // get a short grace period, not the full call timeout.
            if grace_deadline.is_none() && answered >= quorum {
                grace_deadline = Some(tokio::time::Instant::now() + STATUS_GRACE);
            }
            let next = join_next_before(&mut calls, grace_deadline).await;
            let Some(Ok((index, answer))) = next else {
                if next.is_none() {
                    break;
                }
                continue;
            };
            let node = self.base.members()[index].node_id.0.clone();
            let report = match answer {
                Ok(answer) => answer.status,
                Err(e) => {
                    failures.push((node, e.to_string()));
                    continue;
                }
            };
            let fact = match report {
                StatusReport::Unknown | StatusReport::Pending => None,
                StatusReport::Certified { certificate } | StatusReport::Expired { certificate } => {
                    Some(Fact::Certified(certificate))
                }
                StatusReport::Invalid { certificate } => Some(Fact::Invalid(certificate)),
                StatusReport::Deleted { proof } => Some(proof),
            };
            if let Some(fact) = fact {
                let committee = self.committee(fact.epoch());
                let applied = fact
                    .verify(&committee)
                    .map_err(|e| format!("answered with a proof that does not verify: {e}"))
                    .and_then(|verified| {
                        state.apply(verified).map_err(|e| {
                            format!("answered with a proof about another blob, a lie: {e}")
                        })
                    });
                if let Err(lie) = applied {
                    let key = self.base.members()[index].network_key;
                    self.pool.report_misbehaviour(&key, lie.clone());
                    failures.push((node, lie));
                    continue;
                }
            }
            answered += self.weight(index);
        }
        match state.status(epoch) {
            BlobStatus::Certified { certificate } => Ok(Status::Certified {
                certificate: certificate.clone(),
                end_epoch: certificate.message.body.end_epoch,
                epoch,
            }),
            BlobStatus::Invalid { certificate } => Ok(Status::Invalid {
                certificate: certificate.clone(),
            }),
            BlobStatus::Expired { certificate } => Ok(Status::Expired {
                certificate: certificate.clone(),
            }),
            BlobStatus::Deleted {
                deletion,
                certificate,
            } => Ok(Status::Deleted {
                proof: Fact::Deleted(Box::new(DeletionProof {
                    deletion: deletion.clone(),
                    certificate: certificate.clone(),
                })),
            }),
            BlobStatus::Unknown | BlobStatus::Pending => {
                let committee = self.committee(epoch);
                if committee.is_quorum(answered) {
                    Ok(Status::Unknown { answered })
                } else {
                    Err(ClientError::NotEnoughShards {
                        blob_id,
                        what: "a definite status",
                        needed: committee.quorum_threshold(),
                        got: answered,
                        failures,
                    })
                }
            }
        }
    }

    /// Read a certified blob, verifying every sliver against its ID.
    pub async fn read(&self, blob_id: BlobId, options: ReadOptions) -> Result<Bytes, ClientError> {
        let metadata = self.readable_metadata(blob_id).await?;
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
        decoded
            .map(Bytes::from)
            .map_err(|e| ClientError::Rejected(format!("blob {blob_id}: {e}")))
    }

    /// The size of a certified blob, from its verified metadata, without
    /// reading its slivers.
    pub async fn length(&self, blob_id: BlobId) -> Result<u64, ClientError> {
        Ok(self.readable_metadata(blob_id).await?.unencoded_length())
    }

    /// The verified metadata of a blob whose status lets it be read; the
    /// typed state error (not certified, invalid, deleted, expired) otherwise.
    async fn readable_metadata(&self, blob_id: BlobId) -> Result<BlobMetadata, ClientError> {
        if let Some(error) = self
            .status(blob_id)
            .await?
            .unreadable(blob_id, self.base.n_shards())
        {
            return Err(error);
        }
        self.metadata(blob_id).await
    }

    async fn metadata(&self, blob_id: BlobId) -> Result<BlobMetadata, ClientError> {
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
    async fn primary_slivers(
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

    /// Delete a deletable blob owned by `owner`.
    pub async fn delete(&self, blob_id: BlobId, owner: &KeyPair) -> Result<Fact, ClientError> {
        let certificate = match self.status(blob_id).await? {
            Status::Certified { certificate, .. } => certificate,
            other => {
                return Err(ClientError::NotAllowed(format!(
                    "blob {blob_id} is {}; only certified blobs can be deleted",
                    other.name()
                )))
            }
        };
        let body = &certificate.message.body;
        if !body.deletable || body.owner != Some(owner.public()) {
            return Err(ClientError::NotAllowed(format!(
                "blob {blob_id} is not deletable by key {}: its registration is {}",
                owner.public(),
                if body.deletable {
                    "owned by another key"
                } else {
                    "permanent"
                }
            )));
        }
        let deletion = Signed::sign(
            ProtocolMessage::new(self.epoch(), BlobDeletion { blob_id }),
            owner,
        );
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
}

/// The next finished task, or `None` when all are done or `deadline` passed.
async fn join_next_before<T: 'static>(
    set: &mut JoinSet<T>,
    deadline: Option<tokio::time::Instant>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, set.join_next())
            .await
            .ok()
            .flatten(),
        None => set.join_next().await,
    }
}

/// Uploads still running once a quorum confirmed: given until a deadline
/// so more nodes end up holding their slivers, then abandoned (repair covers
/// the rest).
struct Tail {
    uploads: JoinSet<(usize, Result<Signed<StorageConfirmation>, String>)>,
    deadline: tokio::time::Instant,
}

impl Tail {
    async fn finish(&mut self) {
        while join_next_before(&mut self.uploads, Some(self.deadline))
            .await
            .is_some()
        {}
        self.uploads.abort_all();
    }
}

/// Pairs smaller than this go to a node together, in requests of up to
/// this many bytes: a small blob's pairs cost a node one request instead of
/// one each. A larger pair travels alone.
const PAIRS_REQUEST_BYTES: usize = 1 << 20;

/// `pairs` in order, grouped into requests of at most
/// [`PAIRS_REQUEST_BYTES`] (or one pair, if larger).
fn batches(pairs: Vec<(ShardIndex, SliverPair)>) -> Vec<Vec<(ShardIndex, SliverPair)>> {
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
struct Upload {
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
}

impl Upload {
    /// Sends one node its metadata and pairs, then asks for its confirmation.
    async fn send_to(
        self,
        key: PublicKey,
        pairs: Vec<(ShardIndex, SliverPair)>,
    ) -> Result<Signed<StorageConfirmation>, String> {
        let blob_id = self.blob_id;
        let metadata = self.metadata.clone();
        self.pool
            .call::<PutMetadata>(&key, &PutMetadataRequest { blob_id, metadata })
            .await
            .map_err(|e| e.to_string())?;
        let mut sends = JoinSet::new();
        for batch in batches(pairs) {
            let size: usize = batch.iter().map(|(_, pair)| pair.byte_len()).sum();
            let permit = Arc::clone(&self.budget)
                .acquire_many_owned(
                    u32::try_from(size.clamp(1, self.budget_total.max(1))).unwrap_or(u32::MAX),
                )
                .await
                .map_err(|e| e.to_string())?;
            let this = self.clone();
            sends.spawn(async move {
                let shards: Vec<String> =
                    batch.iter().map(|(shard, _)| shard.to_string()).collect();
                let outcome = this
                    .pool
                    .call::<PutPairs>(
                        &key,
                        &PutPairsRequest {
                            blob_id,
                            pairs: batch,
                        },
                    )
                    .await;
                drop(permit);
                if outcome.is_ok() {
                    let bytes = this
                        .uploaded
                        .fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed)
                        + size as u64;
                    this.progress.report(Progress::Uploaded {
                        bytes,
                        total: this.total,
                    });
                }
                outcome.map_err(|e| format!("pairs of shards {}: {e}", shards.join(", ")))
            });
        }
        while let Some(joined) = sends.join_next().await {
            joined.map_err(|e| e.to_string())??;
        }
        self.pool
            .call::<GetConfirmation>(&key, &self.request)
            .await
            .map_err(|e| e.to_string())
    }
}
