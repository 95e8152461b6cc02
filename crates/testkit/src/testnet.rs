//! A local test network of `floe-node` processes, kept in one directory:
//! `committee.toml`, `client.toml`, and per node `node-<i>/` with its keys,
//! `node.toml`, database, `node.log` and `pid`. Its nodes share 127.0.0.1,
//! or each runs in a network namespace of its own ([`Hosts`], see
//! [`crate::netns`]).
//!
//! `cargo xtask testnet …` drives it; tests drive it through this API. The
//! node processes outlive the command that started them (they run in their
//! own process group), so `up` returns and the network keeps running until
//! `down`.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floe_client::{Client, ClientConfig};
use floe_consensus::CommitteeFile;
use floe_node::{Limits, NodeConfig, Tasks};

pub use crate::netns::Hosts;
use crate::netns::Netns;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Why a testnet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// A file could not be read or written, or a process started.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The directory holds no usable testnet.
    #[error("{0}")]
    Invalid(String),
    /// A node did not become healthy in time.
    #[error("node-{node} is not healthy after {waited:?}; see {log}")]
    Unhealthy {
        /// The node.
        node: usize,
        /// How long we waited.
        waited: Duration,
        /// Its log file.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestnetError {
    let what = what.into();
    move |source| TestnetError::Io { what, source }
}

/// What one node looks like from outside.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub node_id: String,
    /// Its process, if running.
    pub pid: Option<u32>,
    /// Whether it answered.
    pub reachable: bool,
    /// Its epoch.
    pub epoch: Option<u64>,
    /// Certified blobs it is still repairing.
    pub drift: Option<u64>,
    /// Bytes it stores.
    pub stored_bytes: Option<u64>,
}

/// Epochs of a new testnet unless asked otherwise: short epochs would
/// expire blobs under a long-running testnet's users; an hour keeps
/// `--epochs N` meaningful.
pub const DEFAULT_EPOCH_MS: u64 = 3_600_000;

/// A testnet directory and the node binary that runs it.
#[derive(Debug)]
pub struct Testnet {
    dir: PathBuf,
    node_bin: PathBuf,
    file: CommitteeFile,
    /// Processes started by this handle (so they can be reaped).
    children: Vec<Option<Child>>,
    /// Stop every node when this handle is dropped (for throwaway testnets:
    /// a failed test or drill leaves no process behind).
    down_on_drop: bool,
    /// The network namespaces the nodes run in, if they do not share
    /// 127.0.0.1.
    lab: Option<Netns>,
}

impl Testnet {
    /// Opens the testnet in `dir`, or writes a new one of `nodes` nodes and
    /// `shards` shards (spread evenly) when `dir` holds none.
    pub fn create_or_open(
        dir: &Path,
        nodes: usize,
        shards: u16,
        node_bin: &Path,
    ) -> Result<Self, TestnetError> {
        Self::create_or_open_with(dir, nodes, shards, DEFAULT_EPOCH_MS, node_bin)
    }

    /// [`Testnet::create_or_open`] with epochs of `epoch_ms` in a new testnet.
    pub fn create_or_open_with(
        dir: &Path,
        nodes: usize,
        shards: u16,
        epoch_ms: u64,
        node_bin: &Path,
    ) -> Result<Self, TestnetError> {
        Self::create_or_open_on(dir, nodes, shards, epoch_ms, Hosts::Loopback, node_bin)
    }

    /// [`Testnet::create_or_open_with`] whose nodes, in a new testnet, run
    /// on `hosts`. An existing testnet keeps the hosts it was made with; a
    /// request for other hosts is refused, naming the directory.
    pub fn create_or_open_on(
        dir: &Path,
        nodes: usize,
        shards: u16,
        epoch_ms: u64,
        hosts: Hosts,
        node_bin: &Path,
    ) -> Result<Self, TestnetError> {
        if !dir.join("committee.toml").exists() {
            Self::write(dir, nodes, shards, epoch_ms, hosts)?;
        }
        let testnet = Self::open(dir, node_bin)?;
        if testnet.hosts() != hosts {
            return Err(TestnetError::Invalid(format!(
                "the testnet in {} runs its nodes {}; it cannot be started otherwise \
                 (take it down and delete the directory for a new one)",
                testnet.dir.display(),
                match testnet.hosts() {
                    Hosts::Loopback => "on 127.0.0.1",
                    Hosts::Namespaces => "in network namespaces",
                }
            )));
        }
        Ok(testnet)
    }

    /// Opens an existing testnet.
    pub fn open(dir: &Path, node_bin: &Path) -> Result<Self, TestnetError> {
        let committee = dir.join("committee.toml");
        let text = std::fs::read_to_string(&committee).map_err(io(format!(
            "reading {} (is there a testnet here? `cargo xtask testnet up` makes one)",
            committee.display()
        )))?;
        let file = CommitteeFile::from_toml(&text)
            .map_err(|e| TestnetError::Invalid(format!("{}: {e}", committee.display())))?;
        let dir = std::fs::canonicalize(dir).map_err(io(format!("resolving {}", dir.display())))?;
        // Genesis members and nodes added since (each has a node-<i>/node.toml).
        let mut nodes = file.committee.members().len();
        while dir.join(format!("node-{nodes}")).join("node.toml").exists() {
            nodes += 1;
        }
        let lab = Netns::load(&dir)?;
        Ok(Self {
            dir,
            node_bin: node_bin.to_owned(),
            file,
            children: (0..nodes).map(|_| None).collect(),
            down_on_drop: false,
            lab,
        })
    }

    fn write(
        dir: &Path,
        nodes: usize,
        shards: u16,
        epoch_ms: u64,
        hosts: Hosts,
    ) -> Result<(), TestnetError> {
        let tasks = Tasks {
            sync_interval_ms: 500,
            repair_interval_ms: 500,
            repair_concurrency: 4,
            gc_interval_ms: 5_000,
        };
        let invalid = |e: &dyn std::fmt::Display| TestnetError::Invalid(e.to_string());
        match hosts {
            Hosts::Loopback => {
                let local =
                    crate::local::generate(dir, nodes, shards, epoch_ms, Limits::default(), tasks)
                        .map_err(|e| invalid(&e))?;
                local
                    .write_configs(dir, |_| {
                        crate::local::free_port()
                            .map(|port| Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))))
                    })
                    .map_err(|e| invalid(&e))?;
            }
            Hosts::Namespaces => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                let canonical = std::fs::canonicalize(dir)
                    .map_err(io(format!("resolving {}", dir.display())))?;
                let lab = Netns::for_dir(&canonical);
                let listen = (0..nodes)
                    .map(|node| lab.listen(node))
                    .collect::<Result<Vec<_>, _>>()?;
                let addresses: Vec<_> = listen
                    .iter()
                    .map(|(node, _)| (node.to_string(), *node))
                    .collect();
                let local = floe_node::committee::write_committee(
                    dir,
                    shards,
                    epoch_ms,
                    Limits::default(),
                    tasks,
                    &addresses,
                )
                .map_err(|e| invalid(&e))?;
                local
                    .write_configs(dir, |node| Ok(Some(listen[node].1)))
                    .map_err(|e| invalid(&e))?;
                lab.save(dir)?;
            }
        }
        Ok(())
    }

    /// Where the nodes run.
    pub fn hosts(&self) -> Hosts {
        match self.lab {
            Some(_) => Hosts::Namespaces,
            None => Hosts::Loopback,
        }
    }

    /// The network namespaces the nodes run in, if they do.
    pub fn lab(&self) -> Option<&Netns> {
        self.lab.as_ref()
    }

    /// Stops every node when this handle is dropped, even on a panic.
    pub fn down_on_drop(mut self) -> Self {
        self.down_on_drop = true;
        self
    }

    /// The testnet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The committee file.
    pub fn file(&self) -> &CommitteeFile {
        &self.file
    }

    /// The client config to give `floe --config`.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// Nodes of the testnet: genesis members and nodes added since.
    pub fn nodes(&self) -> usize {
        self.children.len()
    }

    pub(crate) fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.join(format!("node-{node}"))
    }

    /// Makes room for `nodes` nodes.
    pub(crate) fn grow(&mut self, nodes: usize) {
        while self.children.len() < nodes {
            self.children.push(None);
        }
    }

    /// LAB ONLY: makes node `node` a hostile member that lies as `lies`
    /// says (or honest again with `None`) from its next start.
    pub fn set_byzantine(
        &mut self,
        node: usize,
        lies: Option<floe_node::Byzantine>,
    ) -> Result<(), TestnetError> {
        self.check(node)?;
        let path = self.node_dir(node).join("node.toml");
        let mut config = NodeConfig::load(&path)
            .map_err(|e| TestnetError::Invalid(format!("node-{node} config: {e}")))?;
        config.byzantine = lies;
        let text = toml::to_string(&config)
            .map_err(|e| TestnetError::Invalid(format!("node-{node} config: {e}")))?;
        std::fs::write(&path, text)
            .map_err(|e| TestnetError::Invalid(format!("writing {}: {e}", path.display())))
    }

    /// Node `node`'s log file.
    pub fn log(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("node.log")
    }

    /// Node `node`'s database directory.
    pub fn database(&self, node: usize) -> PathBuf {
        self.node_dir(node).join("db")
    }

    fn check(&self, node: usize) -> Result<(), TestnetError> {
        if node < self.nodes() {
            Ok(())
        } else {
            Err(TestnetError::Invalid(format!(
                "there is no node {node}: this testnet has nodes 0 to {}",
                self.nodes() - 1
            )))
        }
    }

    /// The pid of node `node` if its process is alive.
    pub fn pid(&mut self, node: usize) -> Option<u32> {
        // Reap a child of ours that exited, so it does not linger as a zombie.
        if let Some(Some(child)) = self.children.get_mut(node) {
            if !matches!(child.try_wait(), Ok(None)) {
                self.children[node] = None;
            }
        }
        let text = std::fs::read_to_string(self.node_dir(node).join("pid")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // A zombie (state Z) or a recycled pid running something else is not our node.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains("floe-node");
        (state != "Z" && ours).then_some(pid)
    }

    /// Starts node `node` if it is not running.
    pub fn start(&mut self, node: usize) -> Result<(), TestnetError> {
        self.check(node)?;
        if self.pid(node).is_some() {
            return Ok(());
        }
        let log_path = self.log(node);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let mut command = match &self.lab {
            Some(lab) => {
                lab.ensure(node)?;
                lab.command(node, &self.node_bin)
            }
            None => Command::new(&self.node_bin),
        };
        command
            .arg("run")
            .arg("--config")
            .arg(self.node_dir(node).join("node.toml"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            // Its own process group: Ctrl-C in the terminal that ran `up`
            // does not reach the nodes.
            command.process_group(0);
        }
        let child = command.spawn().map_err(io(format!(
            "starting {} for node-{node}",
            self.node_bin.display()
        )))?;
        let pid_path = self.node_dir(node).join("pid");
        std::fs::write(&pid_path, child.id().to_string())
            .map_err(io(format!("writing {}", pid_path.display())))?;
        self.children[node] = Some(child);
        Ok(())
    }

    /// Stops node `node`: SIGTERM (a clean shutdown), then SIGKILL after
    /// 10 s. With `abrupt`, SIGKILL at once (a crash).
    pub fn stop(&mut self, node: usize, abrupt: bool) -> Result<(), TestnetError> {
        self.check(node)?;
        let Some(pid) = self.pid(node) else {
            return Ok(());
        };
        let target = Pid::from_raw(pid as i32);
        let signal = if abrupt {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        let _ = kill(target, signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pid(node).is_some() {
            if Instant::now() > deadline {
                let _ = kill(target, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.node_dir(node).join("pid"));
        Ok(())
    }

    /// Stops node `node`, deletes its database, and starts it again.
    pub fn wipe(&mut self, node: usize) -> Result<(), TestnetError> {
        self.stop(node, false)?;
        let db = self.database(node);
        if db.exists() {
            std::fs::remove_dir_all(&db).map_err(io(format!("deleting {}", db.display())))?;
        }
        self.start(node)
    }

    /// Starts every node that is not running and waits until all answer.
    pub async fn up(&mut self, timeout: Duration) -> Result<(), TestnetError> {
        for node in 0..self.nodes() {
            self.start(node)?;
        }
        for node in 0..self.nodes() {
            self.wait_healthy(node, timeout).await?;
        }
        Ok(())
    }

    /// Stops every node cleanly, and deletes the network namespaces they
    /// ran in, if they did (`up` makes them again).
    pub fn down(&mut self) -> Result<(), TestnetError> {
        // Every node is stopped and the namespaces go even when a step
        // fails; the first failure is answered.
        let mut first = None;
        for node in 0..self.nodes() {
            if let Err(e) = self.stop(node, false) {
                first.get_or_insert(e);
            }
        }
        if let Some(lab) = &self.lab {
            if let Err(e) = lab.teardown(self.nodes()) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub(crate) fn client(&self) -> Result<Client, TestnetError> {
        let config = ClientConfig {
            net: floe_net::NetConfig {
                connect_timeout: Duration::from_secs(1),
                ..floe_net::NetConfig::default()
            },
            ..ClientConfig::default()
        };
        Client::new(&self.file, config).map_err(|e| TestnetError::Invalid(e.to_string()))
    }

    /// Waits until node `node` answers, up to `timeout`.
    pub async fn wait_healthy(
        &mut self,
        node: usize,
        timeout: Duration,
    ) -> Result<(), TestnetError> {
        self.check(node)?;
        let client = self.client()?;
        let member = self.member(node)?;
        let start = Instant::now();
        loop {
            if tokio::time::timeout(Duration::from_secs(2), client.info(&member))
                .await
                .is_ok_and(|answer| answer.is_ok())
            {
                return Ok(());
            }
            if start.elapsed() > timeout || self.pid(node).is_none() {
                return Err(TestnetError::Unhealthy {
                    node,
                    waited: start.elapsed(),
                    log: self.log(node).display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's process and what it reports.
    pub async fn status(&mut self) -> Result<Vec<NodeStatus>, TestnetError> {
        let client = self.client()?;
        let mut rows = Vec::new();
        for node in 0..self.nodes() {
            let member = self.member(node)?;
            let pid = self.pid(node);
            let info = match pid {
                Some(_) => tokio::time::timeout(Duration::from_secs(2), client.info(&member))
                    .await
                    .ok()
                    .and_then(Result::ok),
                None => None,
            };
            rows.push(NodeStatus {
                node_id: member.node_id.0.clone(),
                pid,
                reachable: info.is_some(),
                epoch: info.as_ref().map(|i| i.epoch.0),
                drift: info.as_ref().map(|i| i.drift),
                stored_bytes: info.as_ref().map(|i| i.stored_bytes),
            });
        }
        Ok(rows)
    }
}

impl Drop for Testnet {
    /// Stops the nodes if [`Testnet::down_on_drop`] was asked for; otherwise
    /// running nodes keep running (the testnet outlives the command), and
    /// children that already exited are reaped.
    fn drop(&mut self) {
        if self.down_on_drop {
            let _ = self.down();
        }
        for child in self.children.iter_mut().flatten() {
            let _ = child.try_wait();
        }
    }
}
