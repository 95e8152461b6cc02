//! Committee changes on a process testnet: a node joins (keys, config and a
//! process of its own, with only the genesis committee file), a proposal of
//! the next committee is built from the current one, and every member's
//! operator approves it on the member's admin port, as the operator guide
//! says.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use floe_consensus::chain::{assign_shards, CommitteeProposal};
use floe_consensus::{Committee, Epoch, KeyPair, Member, NodeId};
use floe_node::NodeConfig;

use crate::testnet::{Testnet, TestnetError};

fn invalid(what: impl std::fmt::Display) -> TestnetError {
    TestnetError::Invalid(what.to_string())
}

impl Testnet {
    /// Node `node`'s configuration.
    pub fn config(&self, node: usize) -> Result<NodeConfig, TestnetError> {
        let path = self.node_dir(node).join("node.toml");
        NodeConfig::load(&path).map_err(|e| invalid(format!("node-{node} config: {e}")))
    }

    /// Node `node` as a committee lists it (its shards left empty).
    pub fn member(&self, node: usize) -> Result<Member, TestnetError> {
        let config = self.config(node)?;
        let read = |path: &std::path::Path, field: &str| {
            floe_node::config::read_key(path, field).map_err(|e| invalid(e))
        };
        Ok(Member {
            node_id: NodeId(config.node_id.clone()),
            protocol_key: read(&config.protocol_key, "protocol_key")?.public(),
            network_key: read(&config.network_key, "network_key")?.public(),
            address: config.listen.to_string(),
            shards: Vec::new(),
        })
    }

    /// Writes a new node (keys, `node.toml` naming the genesis committee
    /// file, fresh ports) and starts it. It holds no shards until a
    /// committee that lists it is certified. Answers its index.
    pub fn add_node(&mut self) -> Result<usize, TestnetError> {
        let node = self.nodes();
        let template = self.config(0)?;
        let dir = self.node_dir(node);
        std::fs::create_dir_all(&dir).map_err(|e| invalid(format!("{}: {e}", dir.display())))?;
        let mut rng = rand::rngs::OsRng;
        let (protocol, network) = (dir.join("protocol.key"), dir.join("network.key"));
        for path in [&protocol, &network] {
            floe_node::config::write_key(path, &KeyPair::generate(&mut rng))
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        }
        let port = |what: &str| {
            crate::local::free_port().map_err(|e| invalid(format!("a {what} port: {e}")))
        };
        let (listen, admin) = match self.lab() {
            Some(lab) => lab.listen(node)?,
            None => (
                SocketAddr::from(([127, 0, 0, 1], port("node")?)),
                SocketAddr::from(([127, 0, 0, 1], port("admin")?)),
            ),
        };
        let config = NodeConfig {
            node_id: format!("node-{node}"),
            protocol_key: protocol,
            network_key: network,
            listen,
            admin_listen: Some(admin),
            database: dir.join("db"),
            byzantine: None,
            ..template
        };
        let text = toml::to_string(&config).map_err(invalid)?;
        let path = dir.join("node.toml");
        std::fs::write(&path, text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        self.grow(node + 1);
        self.start(node)?;
        Ok(node)
    }

    /// The committee of the current epoch, as a client that follows the
    /// chain from genesis learns it.
    pub async fn current_committee(&self) -> Result<(Epoch, Committee), TestnetError> {
        let client = self.client()?;
        client.follow_chain().await.map_err(invalid)?;
        let epoch = client.epoch();
        Ok((epoch, client.committee(epoch)))
    }

    /// The epoch of the latest certified committee change, as a client that
    /// follows the chain from genesis learns it.
    pub async fn latest_change(&self) -> Result<Epoch, TestnetError> {
        self.client()?.follow_chain().await.map_err(invalid)
    }

    /// The next epoch's committee: the current members but `remove`, and
    /// the nodes `add`, sharing the shards by `weights` (one per member, in
    /// that order) or evenly, moving only what that forces.
    pub async fn propose_next(
        &self,
        add: &[usize],
        remove: &[usize],
        weights: Option<&[u16]>,
    ) -> Result<CommitteeProposal, TestnetError> {
        let (epoch, current) = self.current_committee().await?;
        let removed: Vec<String> = remove.iter().map(|n| format!("node-{n}")).collect();
        let mut members: Vec<Member> = current
            .members()
            .iter()
            .filter(|m| !removed.contains(&m.node_id.0))
            .cloned()
            .collect();
        for node in add {
            members.push(self.member(*node)?);
        }
        if members.is_empty() {
            return Err(invalid("the next committee would have no member"));
        }
        let n = current.n_shards();
        let weights: Vec<u16> = match weights {
            Some(w) if w.len() == members.len() => w.to_vec(),
            Some(w) => {
                return Err(invalid(format!(
                    "{} weights for {} members",
                    w.len(),
                    members.len()
                )))
            }
            None => vec![1; members.len()],
        };
        let total: u32 = weights.iter().map(|w| u32::from(*w)).sum();
        let mut shares: Vec<u16> = weights
            .iter()
            .map(|w| (u32::from(n) * u32::from(*w) / total.max(1)) as u16)
            .collect();
        let left = n - shares.iter().sum::<u16>();
        let count = shares.len();
        for i in 0..usize::from(left) {
            shares[i % count] += 1;
        }
        let next: Vec<(Member, u16)> = members
            .into_iter()
            .zip(shares)
            .filter(|(_, s)| *s > 0)
            .collect();
        Ok(CommitteeProposal {
            epoch: Epoch(epoch.0 + 1),
            n_shards: n,
            members: assign_shards(&current, &next).map_err(invalid)?,
        })
    }

    /// Node `node`'s operator approves `proposal` on its admin port.
    pub fn approve(&self, node: usize, proposal: &CommitteeProposal) -> Result<(), TestnetError> {
        let admin = self
            .config(node)?
            .admin_listen
            .ok_or_else(|| invalid(format!("node-{node} has no admin port")))?;
        let body = toml::to_string(proposal).map_err(invalid)?;
        let (status, answer) = post(admin, "/committee/approve", &body)
            .map_err(|e| invalid(format!("node-{node} admin {admin}: {e}")))?;
        if status != 200 {
            return Err(invalid(format!(
                "node-{node} refused the proposal ({status}): {answer}"
            )));
        }
        Ok(())
    }
}

/// One HTTP/1.1 POST; answers the status code and the body.
fn post(address: SocketAddr, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
