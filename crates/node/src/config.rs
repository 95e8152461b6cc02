//! `node.toml`: what a node needs to run, validated with errors that name
//! the field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use floe_consensus::KeyPair;
use serde::{Deserialize, Serialize};

/// A node's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's `node_id` in the committee file.
    pub node_id: String,
    /// File holding the protocol (signing) key, hex, as written by `keygen`.
    pub protocol_key: PathBuf,
    /// File holding the network (TLS) key.
    pub network_key: PathBuf,
    /// Address to serve the protocol on (UDP).
    pub listen: SocketAddr,
    /// Address of the admin HTTP port (`/metrics`, `/health`); none if unset.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Database directory.
    pub database: PathBuf,
    /// The committee file.
    pub committee: PathBuf,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Background work.
    #[serde(default)]
    pub tasks: Tasks,
    /// What one caller may hold of the protocol server.
    #[serde(default)]
    pub server: ServerLimits,
    /// Who may write (`[admission]`): anyone, or clients with a grant.
    #[serde(default)]
    pub admission: Admission,
    /// LAB ONLY: make this node a hostile member that lies in the ways
    /// chosen (see [`Byzantine`]). For fault drills and tests; a node with
    /// this section logs a warning at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byzantine: Option<Byzantine>,
    /// LAB ONLY: shape this node's links as wide-area links (`[lab]`, or
    /// the `FLOE_LAB_WAN` environment variable). A node with it logs a
    /// warning at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<Lab>,
}

impl NodeConfig {
    /// The link profile this node's endpoint shapes with (lab only): its
    /// `[lab] wan`, else the `FLOE_LAB_WAN` environment variable.
    pub fn link_shape(&self) -> Result<Option<floe_net::LinkProfile>, ConfigError> {
        if let Some(wan) = self.lab.as_ref().and_then(|lab| lab.wan.clone()) {
            return Ok(Some(wan));
        }
        floe_net::LinkProfile::from_env().map_err(|message| ConfigError::Invalid {
            path: PathBuf::from(floe_net::LAB_ENV),
            message,
        })
    }
}

/// Lab settings (`[lab]`): never for a real node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lab {
    /// Shape every datagram this node sends as a wide-area link would: a
    /// profile name (`continent`, `planet`, `lossy`, `lan`) or a spec such
    /// as `latency=40ms,jitter=10ms,loss=0.1%,bandwidth=1gbit`.
    pub wan: Option<floe_net::LinkProfile>,
}

/// How a hostile member lies (`[byzantine]`, lab only). It keeps its real
/// key and real QUIC, stores and confirms as an honest node does, and
/// bends its answers as chosen here, so honest nodes and clients can be
/// tested against a member that knows the protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Byzantine {
    /// Answer every status request with a valid certificate of some other
    /// blob it knows (a proof about another blob).
    pub foreign_proofs: bool,
    /// Answer every status request with a valid invalid-blob certificate of
    /// some other blob it knows.
    pub foreign_invalid: bool,
    /// Answer every status request with "unknown", hiding what it knows.
    pub withhold_facts: bool,
    /// Answer every request for an owner's registration with a valid
    /// certificate of some other blob it knows.
    pub foreign_registrations: bool,
    /// Flip a byte in every sliver and recovery symbol it serves.
    pub flip_slivers: bool,
    /// Flip a byte in every bare recovery symbol it serves, and serve
    /// proven ones honestly (a liar hoping the proofs never name it).
    pub flip_bare_symbols: bool,
    /// Serve bare recovery symbols labelled as made from slivers of shards
    /// it does not hold (a peer vouching for others' slivers).
    pub foreign_bare_symbols: bool,
    /// Hold every answer back this long (a peer that trickles).
    pub delay_ms: u64,
    /// Answer anti-entropy with listings of this many made-up items.
    pub oversized_listings: usize,
}

impl Byzantine {
    /// Every lie at once (what `cargo xtask chaos --byzantine` uses), but
    /// the delay.
    pub fn all() -> Self {
        Byzantine {
            foreign_proofs: true,
            foreign_invalid: true,
            withhold_facts: false,
            foreign_registrations: true,
            flip_slivers: true,
            flip_bare_symbols: false,
            foreign_bare_symbols: false,
            delay_ms: 0,
            oversized_listings: 50_000,
        }
    }
}

/// Who may write (`[admission]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admission {
    /// `open` (the default, for local testnets): anyone may store.
    /// `grants`: only a client key holding a storage grant signed by one
    /// of `issuers`, within the grant's limits.
    pub mode: AdmissionMode,
    /// Public keys (hex) trusted to sign grants (`floe-node grant issue`).
    pub issuers: Vec<floe_consensus::PublicKey>,
    /// In `grants` mode, refuse blob data (metadata, slivers) to clients
    /// without a live grant too. Reads are open by default.
    pub closed_reads: bool,
}

/// [`Admission::mode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdmissionMode {
    /// Anyone may store.
    #[default]
    Open,
    /// Only clients holding a grant from a trusted issuer.
    Grants,
}

/// What the node accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest blob (unencoded bytes) the node stores slivers of.
    pub max_blob_size: u64,
    /// How long an uncertified upload is kept, in seconds.
    pub pending_upload_secs: u64,
    /// How many epochs ahead a storage confirmation may promise.
    pub max_epochs_ahead: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_size: 1 << 30,
            pending_upload_secs: 3600,
            max_epochs_ahead: 1000,
        }
    }
}

/// What callers may hold of the protocol server (`[server]`): committee
/// members and everyone else draw from separate budgets, so that no client
/// can make a member's request wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// MiB of request and response bodies held at once for members.
    pub member_budget_mib: u32,
    /// MiB of request and response bodies held at once for everyone else.
    pub client_budget_mib: u32,
    /// MiB one connection may hold at once; at least the largest request
    /// (256 MiB of pairs).
    pub connection_budget_mib: u32,
    /// Requests served at once for members.
    pub member_requests: u32,
    /// Requests served at once for everyone else.
    pub client_requests: u32,
    /// Concurrent requests on one client connection.
    pub client_streams: u32,
    /// Client connections held at once; more are turned away "busy".
    pub max_client_connections: u32,
    /// Client connections held at once from one IP address.
    pub max_client_connections_per_ip: u32,
    /// Connections held at once under one member's key.
    pub max_connections_per_member: u32,
    /// MiB QUIC buffers for one client connection before the node reads it
    /// (members get the full window).
    pub client_window_mib: u32,
    /// Handshakes at once; from an eighth of it on, callers must validate
    /// their address (QUIC Retry); beyond it, connections are refused.
    pub max_handshakes: u32,
    /// Handshakes at once from one IP address.
    pub max_handshakes_per_ip: u32,
    /// How long a request waits for budget before it is answered "busy".
    pub budget_wait_ms: u64,
    /// How long a request may take to arrive once its stream opens.
    pub request_read_secs: u64,
    /// How long writing an answer may take before it is abandoned.
    pub response_write_secs: u64,
    /// QUIC's congestion controller: `cubic` (default) or `bbr`.
    pub congestion: floe_net::Congestion,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self::from_net(&floe_net::NetConfig::default())
    }
}

impl ServerLimits {
    fn from_net(net: &floe_net::NetConfig) -> Self {
        Self {
            member_budget_mib: net.max_inflight_bytes >> 20,
            client_budget_mib: net.client_inflight_bytes >> 20,
            connection_budget_mib: net.connection_inflight_bytes >> 20,
            member_requests: net.member_requests,
            client_requests: net.client_requests,
            client_streams: net.client_streams_per_connection,
            max_client_connections: net.max_client_connections,
            max_client_connections_per_ip: net.max_client_connections_per_ip,
            max_connections_per_member: net.max_connections_per_member,
            client_window_mib: net.client_connection_window >> 20,
            max_handshakes: net.max_handshakes,
            max_handshakes_per_ip: net.max_handshakes_per_ip,
            budget_wait_ms: net.budget_wait.as_millis() as u64,
            request_read_secs: net.request_read_timeout.as_secs(),
            response_write_secs: net.response_write_timeout.as_secs(),
            congestion: net.congestion,
        }
    }

    /// The transport configuration with these limits. Values that cannot
    /// work are raised or lowered to the nearest that can: a connection
    /// holds at least the largest request (256 MiB), every count is at
    /// least 1, and waits are at most 10 minutes.
    pub fn net_config(&self) -> floe_net::NetConfig {
        use std::time::Duration;
        let mib = |n: u32| n.clamp(1, 4095).saturating_mul(1 << 20);
        let count = |n: u32| n.max(1);
        let largest_request = floe_api::MAX_SLIVER_FRAME >> 20;
        floe_net::NetConfig {
            max_inflight_bytes: mib(self.member_budget_mib.max(largest_request)),
            client_inflight_bytes: mib(self.client_budget_mib.max(largest_request)),
            connection_inflight_bytes: mib(self.connection_budget_mib.max(largest_request)),
            member_requests: count(self.member_requests),
            client_requests: count(self.client_requests),
            client_streams_per_connection: count(self.client_streams),
            max_client_connections: count(self.max_client_connections),
            max_client_connections_per_ip: count(self.max_client_connections_per_ip),
            max_connections_per_member: count(self.max_connections_per_member),
            client_connection_window: mib(self.client_window_mib),
            max_handshakes: count(self.max_handshakes),
            max_handshakes_per_ip: count(self.max_handshakes_per_ip),
            budget_wait: Duration::from_millis(self.budget_wait_ms.clamp(1, 600_000)),
            request_read_timeout: Duration::from_secs(self.request_read_secs.clamp(1, 600)),
            response_write_timeout: Duration::from_secs(self.response_write_secs.clamp(1, 600)),
            congestion: self.congestion,
            ..floe_net::NetConfig::default()
        }
    }
}

/// How often background work runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tasks {
    /// Anti-entropy with one peer every this many milliseconds.
    pub sync_interval_ms: u64,
    /// Repair pass every this many milliseconds.
    pub repair_interval_ms: u64,
    /// Blobs repaired at once.
    pub repair_concurrency: usize,
    /// Garbage collection every this many milliseconds.
    pub gc_interval_ms: u64,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            sync_interval_ms: 2000,
            repair_interval_ms: 1000,
            repair_concurrency: 4,
            gc_interval_ms: 10_000,
        }
    }
}

impl Tasks {
    /// Intervals for local test committees, where convergence should take
    /// fractions of a second: sync and repair every 200 ms, 4 blobs at once,
    /// garbage collection every second.
    pub fn brisk() -> Self {
        Self {
            sync_interval_ms: 200,
            repair_interval_ms: 200,
            repair_concurrency: 4,
            gc_interval_ms: 1000,
        }
    }

    pub(crate) fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms.max(10))
    }
    pub(crate) fn repair_interval(&self) -> Duration {
        Duration::from_millis(self.repair_interval_ms.max(10))
    }
    pub(crate) fn gc_interval(&self) -> Duration {
        Duration::from_millis(self.gc_interval_ms.max(10))
    }
}

/// A configuration or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid for its purpose; the message names the field.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

impl NodeConfig {
    /// Read and check `path`. Relative paths inside are taken relative to
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        // A bad FLOE_LAB_WAN fails here, before anything starts; it is read
        // again when the node starts and never written into the config.
        config.link_shape()?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in [
            &mut config.protocol_key,
            &mut config.network_key,
            &mut config.database,
            &mut config.committee,
        ] {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        if config.admission.mode == AdmissionMode::Grants && config.admission.issuers.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "admission.mode = \"grants\" needs at least one key in admission.issuers \
                          (the public key of `floe-node grant keygen`)"
                    .into(),
            });
        }
        if config.admission.closed_reads && config.admission.mode == AdmissionMode::Open {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "admission.closed_reads needs admission.mode = \"grants\"".into(),
            });
        }
        if config.limits.max_blob_size == 0 {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "limits.max_blob_size must be > 0".into(),
            });
        }
        if config.tasks.repair_concurrency == 0 {
            return Err(ConfigError::Invalid {
                path: path.into(),
                message: "tasks.repair_concurrency must be > 0".into(),
            });
        }
        Ok(config)
    }
}

/// Read a key file written by [`write_key`].
pub fn read_key(path: &Path, field: &str) -> Result<KeyPair, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let invalid = |message: String| ConfigError::Invalid {
        path: path.into(),
        message,
    };
    let bytes = hex::decode(text.trim()).map_err(|e| invalid(format!("{field}: not hex: {e}")))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| {
        invalid(format!(
            "{field}: a key file holds 32 bytes (64 hex digits)"
        ))
    })?;
    Ok(KeyPair::from_seed(&seed))
}

/// Write `key` to `path`, readable by its owner only.
pub fn write_key(path: &Path, key: &KeyPair) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{}", hex::encode(key.seed()))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The shipped config parses, and its `[server]` section is the
    /// transport's defaults, written out: an operator reading it sees what
    /// the node runs with.
    #[test]
    fn the_shipped_config_states_the_server_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/node.toml");
        let config = NodeConfig::load(&path).unwrap();
        let shipped = config.server.net_config();
        let defaults = floe_net::NetConfig::default();
        assert_eq!(shipped.max_inflight_bytes, defaults.max_inflight_bytes);
        assert_eq!(shipped.congestion, defaults.congestion);
        assert_eq!(
            shipped.client_inflight_bytes,
            defaults.client_inflight_bytes
        );
        assert_eq!(
            shipped.connection_inflight_bytes,
            defaults.connection_inflight_bytes
        );
        assert_eq!(shipped.client_requests, defaults.client_requests);
        assert_eq!(
            shipped.max_client_connections,
            defaults.max_client_connections
        );
        assert_eq!(shipped.budget_wait, defaults.budget_wait);
        assert_eq!(
            shipped.response_write_timeout,
            defaults.response_write_timeout
        );
        let tighter: NodeConfig = toml::from_str(
            &std::fs::read_to_string(&path)
                .unwrap()
                .replace("client_budget_mib = 512", "client_budget_mib = 64"),
        )
        .unwrap();
        assert_eq!(
            tighter.server.net_config().client_inflight_bytes,
            256 << 20,
            "raised to the largest request"
        );
        let absurd = ServerLimits {
            connection_budget_mib: 1,
            max_handshakes: 0,
            budget_wait_ms: u64::MAX,
            request_read_secs: u64::MAX,
            ..ServerLimits::default()
        }
        .net_config();
        assert_eq!(absurd.connection_inflight_bytes, floe_api::MAX_SLIVER_FRAME);
        assert_eq!(absurd.max_handshakes, 1);
        assert_eq!(absurd.budget_wait, std::time::Duration::from_secs(600));
        assert_eq!(
            absurd.request_read_timeout,
            std::time::Duration::from_secs(600)
        );
    }
}
