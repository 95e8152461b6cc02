//! floe-node: a Floe storage node.
//!
//! Serves `floe-api` over `floe-net`, keeps slivers, metadata and facts in
//! `floe-store`, and runs the background work that makes every honest node
//! converge: pushing new facts to peers, anti-entropy over facts, repair of
//! missing slivers from recovery symbols, invalid-blob certification when
//! repair proves an inconsistency, and garbage collection.
//!
//! This file is the assembly: it opens the store, binds the server and
//! starts the tasks. The parts, none of which imports a sibling but `state`
//! (and `reconcile`, the anti-entropy bounds):
//!
//! * `state`: the shared state and its operations (accepting facts, facts
//!   for anti-entropy items, status reports, spreading a fact, store errors
//!   as protocol errors);
//! * `service`: the route table and the request handlers;
//! * `tasks`: the background work, split by job (`sync`, `repair`, `gc`,
//!   `epochs`), with typed errors;
//! * `admin`: `/metrics` and `/health`; `config` and `committee`: the
//!   node's files; `byzantine`: a lab-only hostile member.

mod admin;
mod admission;
mod byzantine;
pub mod committee;
pub mod config;
mod handover;
mod migration;
mod reconcile;
mod service;
mod state;
mod tasks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_consensus::{CommitteeFile, DigestIndex};
use floe_net::{Members, Pool, Server, TlsIdentity};
use floe_store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use config::{Byzantine, ConfigError, Lab, Limits, NodeConfig, ServerLimits, Tasks};
pub use state::Metrics;

use state::{digest_items, now_ms, Inner};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A configuration or key file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The committee file is unusable.
    #[error("committee file {path}: {message}")]
    Committee {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The database could not be opened.
    #[error("database {path}: {source}")]
    Store {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: floe_store::StoreError,
    },
    /// The network could not be set up.
    #[error("network: {0}")]
    Net(#[from] floe_net::NetError),
    /// The admin port could not be bound.
    #[error("admin_listen {address}: {source}")]
    Admin {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running node.
pub struct Node {
    inner: Arc<Inner>,
    server: Server,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Start a node from its configuration: open the database, serve the
    /// protocol and start the background work.
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let committee_text =
            std::fs::read_to_string(&config.committee).map_err(|source| ConfigError::Read {
                path: config.committee.clone(),
                source,
            })?;
        let file =
            CommitteeFile::from_toml(&committee_text).map_err(|e| StartError::Committee {
                path: config.committee.clone(),
                message: e.to_string(),
            })?;
        let committee = file.committee;
        let protocol_key = config::read_key(&config.protocol_key, "protocol_key")?;
        let network_key = config::read_key(&config.network_key, "network_key")?;
        let committee_error = |message: String| StartError::Committee {
            path: config.committee.clone(),
            message,
        };
        let store = Store::open_held(&config.database).map_err(|source| StartError::Store {
            path: config.database.clone(),
            source,
        })?;
        let chain = handover::load_chain(&store, &committee);
        // This node as the latest committee that names it lists it: genesis,
        // or a committee it joined later. A node named by none yet starts
        // without shards and learns the chain from the members.
        let listed = chain
            .members_ever()
            .filter(|m| m.node_id.0 == config.node_id)
            .last()
            .cloned();
        match &listed {
            Some(member) => {
                for (field, held, listed) in [
                    ("protocol_key", protocol_key.public(), member.protocol_key),
                    ("network_key", network_key.public(), member.network_key),
                ] {
                    if held != listed {
                        return Err(committee_error(format!(
                            "the {field} file holds {held}, but the committee lists {listed} for {}",
                            config.node_id
                        )));
                    }
                }
            }
            None => tracing::warn!(
                node = %config.node_id,
                "this node is in no committee this node knows of yet; it serves shards once a certified committee names it (it follows the chain from the members)"
            ),
        }
        let epoch = file.clock.epoch_at(now_ms());
        let _ = store.set_current_epoch(epoch);

        let identity = TlsIdentity::new(&network_key).map_err(floe_net::NetError::from)?;
        // Members of genesis and of every later committee may call
        // peer-only methods.
        let every_member: Vec<floe_consensus::Member> = chain.members_ever().cloned().collect();
        let members = Members::new(every_member.iter().map(|m| m.network_key));
        let members_handle = members.clone();
        let slot = Arc::new(std::sync::OnceLock::new());
        let router = service::router(Arc::clone(&slot));
        let server = Server::bind(
            config.listen,
            &identity,
            members,
            router,
            floe_net::NetConfig {
                link_shape: config.link_shape()?,
                ..config.server.net_config()
            },
        )?;
        let pool = Pool::with_endpoint(
            server.endpoint().clone(),
            Some(&network_key),
            server.config().clone(),
        )?;
        for peer in &every_member {
            pool.add_peer(peer.network_key, peer.address.clone())?;
        }
        let mut digest = DigestIndex::new();
        let mut after = None;
        loop {
            let batch = store
                .states(after.as_ref(), 1024)
                .map_err(|source| StartError::Store {
                    path: config.database.clone(),
                    source,
                })?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(*last);
            for (_, state) in &batch {
                for item in digest_items(state) {
                    digest.insert(item);
                }
            }
        }
        let pending_for = std::time::Duration::from_secs(config.limits.pending_upload_secs);
        let admission = admission::Admission::open(config.admission.clone(), pending_for, &store)
            .map_err(|source| StartError::Store {
            path: config.database.clone(),
            source,
        })?;
        if config.admission.mode == config::AdmissionMode::Grants {
            tracing::info!(
                node = %config.node_id,
                issuers = config.admission.issuers.len(),
                closed_reads = config.admission.closed_reads,
                "admission: grants (clients write only under a storage grant from a trusted issuer)"
            );
        }
        let approvals = handover::load_approvals(&store);
        let intake = migration::load_intake(&store);
        let given_up = migration::load_given_up(&store);
        let inner = Arc::new(Inner {
            node_id: config.node_id.clone(),
            network_key: network_key.public(),
            n_shards: committee.n_shards(),
            clock: file.clock,
            protocol_key,
            store,
            pool: Arc::new(pool),
            limits: config.limits.clone(),
            tasks: config.tasks.clone(),
            digest: Mutex::new(digest),
            committees: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            repair_backoff: Mutex::new(HashMap::new()),
            byzantine: config.byzantine.clone(),
            chain: Mutex::new(chain),
            approved: Mutex::new(approvals),
            members: members_handle,
            intake: Mutex::new(intake),
            handoffs: Mutex::new(std::collections::BTreeMap::new()),
            given_up: Mutex::new(given_up),
            admission,
        });
        // The shards of the current epoch's committee (a restart mid-change
        // resumes the intake kept in the store).
        migration::refresh_shards(&inner).map_err(|source| StartError::Store {
            path: config.database.clone(),
            source,
        })?;
        if let Some(lies) = &inner.byzantine {
            tracing::warn!(node = %inner.node_id, ?lies, "LAB ONLY: this node is a HOSTILE member and lies as configured in [byzantine]");
        }
        let _ = slot.set(Arc::clone(&inner));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = tasks::spawn_all(&inner, shutdown_rx.clone());
        if let Some(admin) = config.admin_listen {
            let handle = admin::serve(
                admin,
                Arc::clone(&inner),
                server.stats_handle(),
                shutdown_rx,
            )
            .await
            .map_err(|source| StartError::Admin {
                address: admin,
                source,
            })?;
            tasks.push(handle);
            info!(%admin, "admin port serving /metrics and /health");
        }
        info!(node = %inner.node_id, address = %server.local_addr()?, shards = inner.my_shards().len(), %epoch, direct_io = inner.store.direct_io(), "node started");
        Ok(Node {
            inner,
            server,
            shutdown,
            tasks,
        })
    }

    /// The address the node serves on.
    pub fn address(&self) -> Result<SocketAddr, floe_net::NetError> {
        self.server.local_addr()
    }

    /// Certified blobs whose slivers this node is missing.
    pub fn drift(&self) -> usize {
        self.inner.store.drift_count()
    }

    /// The node's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// What this node knows of each peer's health (lies reported included).
    pub fn peer_health(&self) -> Vec<floe_net::PeerHealth> {
        self.inner.pool.health()
    }

    /// The anti-entropy digest's root: (facts held, their sum). Nodes that
    /// hold the same facts have the same root.
    pub fn digest_root(&self) -> (u64, [u8; 32]) {
        let digest = self
            .inner
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let root = digest.summary(&floe_consensus::Prefix::ROOT);
        (root.count, root.digest)
    }

    /// The node's request counters (requests and bytes served).
    pub fn server_stats(&self) -> &floe_net::ServerStats {
        self.server.stats()
    }

    /// The operator approves `proposal` as the next epoch's committee: the
    /// node signs it for the members that ask, and tries at once to certify
    /// it with their signatures (and again on every anti-entropy interval).
    /// Refused unless it starts the next epoch, keeps the shard count and is
    /// a valid committee. Answers the proposal's digest.
    pub async fn approve_next_committee(
        &self,
        proposal: floe_consensus::chain::CommitteeProposal,
    ) -> Result<[u8; 32], floe_api::ApiError> {
        let digest = handover::approve(&self.inner, proposal)?;
        handover::certify_approved(&self.inner).await;
        Ok(digest)
    }

    /// The epoch of the latest committee change this node has certified or
    /// been given (genesis's epoch if none).
    pub fn latest_committee_change(&self) -> floe_consensus::Epoch {
        self.inner
            .chain
            .lock()
            .map(|c| c.latest_epoch())
            .unwrap_or(floe_consensus::Epoch(0))
    }

    /// Whether the committee change the current epoch is in is done: no
    /// shard moved, or members holding a quorum of shards said they synced.
    pub fn committee_change_done(&self) -> bool {
        let change = self.inner.latest_change(self.inner.epoch());
        migration::handoff(&self.inner, change).is_done()
    }

    /// Shards new to this node still fetched from their previous holder.
    pub fn shards_fetching(&self) -> Vec<floe_codec::ShardIndex> {
        self.inner.shards_fetching()
    }

    /// The digests of the next committees this node's operator approved.
    pub fn approved_committees(&self) -> Vec<[u8; 32]> {
        self.inner
            .approved
            .lock()
            .map(|a| a.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The node's store (for inspection).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Stop: background work ends, requests in flight get `grace` to finish,
    /// the database is flushed and closed.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.server.shutdown(grace).await;
        if let Err(e) = self.inner.store.flush() {
            tracing::warn!(error = %e, "flushing the database at shutdown");
        }
        info!(node = %self.inner.node_id, "node stopped");
    }
}
