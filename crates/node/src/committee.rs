//! A whole committee written to one directory: every node's keys, the
//! committee file and every node's configuration. `floe-node committee`
//! writes one for named hosts (containers, a lab); a real committee's
//! members make their own keys.

use std::path::Path;

use floe_codec::ShardIndex;
use floe_consensus::{
    Committee, CommitteeError, CommitteeFile, Epoch, EpochClock, KeyPair, Member, NodeId,
};

use crate::config::{write_key, Limits, NodeConfig, ServerLimits, Tasks};
use crate::state::now_ms;

/// What [`write_committee`] wrote.
#[derive(Debug)]
pub struct WrittenCommittee {
    /// The committee and its clock (also written to `committee.toml`).
    pub file: CommitteeFile,
    /// Each node's configuration (its files live in `node-<i>/`).
    pub configs: Vec<NodeConfig>,
    /// Each node's protocol key.
    pub protocol_keys: Vec<KeyPair>,
    /// Each node's network key.
    pub network_keys: Vec<KeyPair>,
}

/// Why a committee could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteCommitteeError {
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A node's configuration could not be written as TOML.
    #[error("node-{node} config: {message}")]
    Config {
        /// The node.
        node: usize,
        /// Why.
        message: String,
    },
    /// The committee is not valid (for example fewer than 4 shards).
    #[error(transparent)]
    Committee(#[from] Box<CommitteeError>),
}

/// Write keys, a committee of one node per address holding `shards` shards
/// round-robin (epochs of `epoch_ms` starting now), and node configs under
/// `dir`: node `i` is advertised in the committee file as `addresses[i].0`
/// (`host:port`, resolved by peers and clients) and listens on
/// `addresses[i].1`. For example `node-0:9100` and `0.0.0.0:9100` for
/// containers named `node-0`.
pub fn write_committee(
    dir: &Path,
    shards: u16,
    epoch_ms: u64,
    limits: Limits,
    tasks: Tasks,
    addresses: &[(String, std::net::SocketAddr)],
) -> Result<WrittenCommittee, WriteCommitteeError> {
    let nodes = addresses.len();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteCommitteeError::Io { path, source }
    };
    let mut rng = rand::rngs::OsRng;
    let protocol_keys: Vec<_> = (0..nodes).map(|_| KeyPair::generate(&mut rng)).collect();
    let network_keys: Vec<_> = (0..nodes).map(|_| KeyPair::generate(&mut rng)).collect();
    let mut members = Vec::with_capacity(nodes);
    for i in 0..nodes {
        members.push(Member {
            node_id: NodeId(format!("node-{i}")),
            protocol_key: protocol_keys[i].public(),
            network_key: network_keys[i].public(),
            address: addresses[i].0.clone(),
            shards: (0..shards)
                .filter(|s| usize::from(*s) % nodes == i)
                .map(ShardIndex)
                .collect(),
        });
    }
    let committee = Committee::new(Epoch(0), shards, members).map_err(Box::new)?;
    let file = CommitteeFile {
        committee,
        clock: EpochClock {
            genesis_unix_ms: now_ms().saturating_sub(1000),
            epoch_duration_ms: epoch_ms.max(1),
        },
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let committee_path = dir.join("committee.toml");
    std::fs::write(&committee_path, file.to_toml()).map_err(io(&committee_path))?;
    let mut configs = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let node_dir = dir.join(format!("node-{i}"));
        std::fs::create_dir_all(&node_dir).map_err(io(&node_dir))?;
        let (protocol, network) = (node_dir.join("protocol.key"), node_dir.join("network.key"));
        write_key(&protocol, &protocol_keys[i]).map_err(io(&protocol))?;
        write_key(&network, &network_keys[i]).map_err(io(&network))?;
        let listen = addresses[i].1;
        configs.push(NodeConfig {
            node_id: format!("node-{i}"),
            protocol_key: protocol,
            network_key: network,
            listen,
            admin_listen: None,
            database: node_dir.join("db"),
            committee: committee_path.clone(),
            limits: limits.clone(),
            tasks: tasks.clone(),
            server: ServerLimits::default(),
            admission: crate::config::Admission::default(),
            byzantine: None,
            lab: None,
        });
    }
    Ok(WrittenCommittee {
        file,
        configs,
        protocol_keys,
        network_keys,
    })
}

impl WrittenCommittee {
    /// Writes each node's `node-<i>/node.toml` (with the admin address
    /// `admin(i)` gives it, if any) and the clients' `client.toml` under
    /// `dir`; returns the paths of the node configurations.
    pub fn write_configs(
        &self,
        dir: &Path,
        mut admin: impl FnMut(usize) -> Result<Option<std::net::SocketAddr>, std::io::Error>,
    ) -> Result<Vec<std::path::PathBuf>, WriteCommitteeError> {
        let mut paths = Vec::with_capacity(self.configs.len());
        for (i, config) in self.configs.iter().enumerate() {
            let path = dir.join(format!("node-{i}")).join("node.toml");
            let config = NodeConfig {
                admin_listen: admin(i).map_err(|source| WriteCommitteeError::Io {
                    path: path.clone(),
                    source,
                })?,
                ..config.clone()
            };
            let text = toml::to_string(&config).map_err(|e| WriteCommitteeError::Config {
                node: i,
                message: e.to_string(),
            })?;
            std::fs::write(&path, text).map_err(|source| WriteCommitteeError::Io {
                path: path.clone(),
                source,
            })?;
            paths.push(path);
        }
        let client = dir.join("client.toml");
        std::fs::write(
            &client,
            "# Client config for this committee: `floe --config client.toml …`\ncommittee = \"committee.toml\"\nowner_key = \"owner.key\"\n",
        )
        .map_err(|source| WriteCommitteeError::Io {
            path: client,
            source,
        })?;
        Ok(paths)
    }
}
