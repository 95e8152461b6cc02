//! A local committee on 127.0.0.1: keys, committee file and node configs in
//! one directory, written by [`floe_node::committee::write_committee`] for
//! free ports, and its nodes run in this process ([`Cluster`]). Used by
//! tests, benchmarks and local testnets.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use floe_consensus::CommitteeFile;
use floe_node::committee::write_committee;
use floe_node::{Limits, Tasks};

/// What [`generate`] wrote: a committee written by
/// [`write_committee`] whose nodes listen on 127.0.0.1.
pub use floe_node::committee::WrittenCommittee as LocalCommittee;

/// Why a local committee could not be written.
pub use floe_node::committee::WriteCommitteeError as LocalError;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A port on 127.0.0.1 free for both UDP and TCP right now, drawn at random
/// below the kernel's ephemeral range (32768 and up): a port the kernel
/// handed out for `:0` would soon be handed to some other socket of this
/// process (a client's, another test's), before the node binds it.
pub fn free_port() -> Result<u16, std::io::Error> {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port found in 20000..32000 on 127.0.0.1",
    ))
}

/// Write keys, a committee of `nodes` nodes holding `shards` shards
/// round-robin (epochs of `epoch_ms` starting now), and node configs under
/// `dir`. Ports are picked free on 127.0.0.1.
pub fn generate(
    dir: &Path,
    nodes: usize,
    shards: u16,
    epoch_ms: u64,
    limits: Limits,
    tasks: Tasks,
) -> Result<LocalCommittee, LocalError> {
    let mut addresses: Vec<(String, std::net::SocketAddr)> = Vec::with_capacity(nodes);
    while addresses.len() < nodes {
        let port = free_port().map_err(|source| LocalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        if addresses.iter().any(|(_, a)| a.port() == port) {
            continue;
        }
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        addresses.push((address.to_string(), address));
    }
    write_committee(dir, shards, epoch_ms, limits, tasks, &addresses)
}

/// A local committee's nodes running in this process: for tests, benchmarks
/// and demos that want real nodes (real QUIC on 127.0.0.1, real RocksDB)
/// without separate processes.
#[derive(Debug)]
pub struct Cluster {
    /// What [`generate`] wrote.
    pub local: LocalCommittee,
    /// The running nodes (`None` while stopped).
    pub nodes: Vec<Option<floe_node::Node>>,
}

impl Cluster {
    /// Writes a local committee under `dir` (see [`generate`]) and starts
    /// every node.
    pub async fn start(
        dir: &Path,
        nodes: usize,
        shards: u16,
        epoch_ms: u64,
        limits: Limits,
        tasks: Tasks,
    ) -> Result<Cluster, ClusterError> {
        let local = generate(dir, nodes, shards, epoch_ms, limits, tasks)?;
        Self::start_local(local).await
    }

    /// Starts every node of a committee [`generate`] wrote (whose databases
    /// may have been filled meanwhile, see [`seed_facts`]).
    pub async fn start_local(local: LocalCommittee) -> Result<Cluster, ClusterError> {
        let mut cluster = Cluster {
            local,
            nodes: Vec::new(),
        };
        for config in &cluster.local.configs {
            let node = floe_node::Node::start(config.clone()).await?;
            cluster.nodes.push(Some(node));
        }
        Ok(cluster)
    }

    /// The committee and its clock.
    pub fn file(&self) -> &CommitteeFile {
        &self.local.file
    }

    /// Node `i`, if running.
    pub fn node(&self, i: usize) -> Option<&floe_node::Node> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    /// Stops node `i` (requests in flight get `grace`).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.shutdown(std::time::Duration::from_secs(2)).await;
        }
    }

    /// Starts node `i` again on its address and database. Its old socket
    /// lingers in this process until its connections have drained (a new
    /// process would get it back at once), so binding is retried for up to
    /// 30 s.
    pub async fn restart(&mut self, i: usize) -> Result<(), ClusterError> {
        self.stop(i).await;
        let config = self
            .local
            .configs
            .get(i)
            .cloned()
            .ok_or(ClusterError::NoSuchNode(i))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match floe_node::Node::start(config.clone()).await {
                Ok(node) => {
                    self.nodes[i] = Some(node);
                    return Ok(());
                }
                Err(floe_node::StartError::Net(floe_net::NetError::Bind { .. }))
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// Why a local cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Its files could not be written.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// A node did not start.
    #[error(transparent)]
    Start(#[from] floe_node::StartError),
    /// There is no node with this index.
    #[error("the cluster has no node {0}")]
    NoSuchNode(usize),
}

/// `count` permanent storage certificates of made-up blobs (no data exists
/// for them), certified in the committee's current epoch until `epochs`
/// later, signed with the local committee's keys: facts at scale for
/// anti-entropy tests and benchmarks.
pub fn certified_facts(
    local: &LocalCommittee,
    count: usize,
    epochs: u64,
) -> Result<Vec<floe_consensus::VerifiedFact>, floe_consensus::FactError> {
    use floe_consensus::{
        Certificate, Epoch, Fact, MemberIndex, ProtocolMessage, Signed, StorageConfirmation,
    };
    let committee = local
        .file
        .committee
        .at_epoch(local.file.clock.epoch_at(now_ms()));
    // The first members that hold a quorum of shards sign everything.
    let mut signers = Vec::new();
    let mut weight = 0;
    for i in 0..committee.members().len() {
        if committee.is_quorum(weight) {
            break;
        }
        let member = MemberIndex(i as u16);
        weight += committee.weight(member);
        signers.push(member);
    }
    (0..count)
        .map(|i| {
            let blob_id = floe_codec::BlobId(*blake3::hash(&(i as u64).to_le_bytes()).as_bytes());
            let message = ProtocolMessage::new(
                committee.epoch(),
                StorageConfirmation {
                    blob_id,
                    end_epoch: Epoch(committee.epoch().0 + epochs),
                    deletable: false,
                    owner: None,
                },
            );
            let signatures = signers.iter().map(|m| {
                let key = &local.protocol_keys[m.as_usize()];
                (*m, Signed::sign(message.clone(), key).signature)
            });
            let certificate =
                Certificate::from_signatures(&committee, message.clone(), signatures)?;
            Fact::Certified(certificate).verify(&committee)
        })
        .collect()
}

/// Records `facts` in the database of node `i` of a committee that is not
/// running.
pub fn seed_facts(
    local: &LocalCommittee,
    i: usize,
    facts: &[floe_consensus::VerifiedFact],
) -> Result<(), floe_store::StoreError> {
    let config = &local.configs[i];
    let shards = local.file.committee.members()[i].shards.clone();
    let store = floe_store::Store::open(&config.database, shards)?;
    let epoch = local.file.clock.epoch_at(now_ms());
    for page in facts.chunks(4096) {
        store.record_facts(page.iter().cloned(), epoch)?;
    }
    store.flush()
}
