//! Network namespaces for a process testnet: each node a host of its own.
//!
//! A testnet made with [`Hosts::Namespaces`] puts node `i` in the network
//! namespace `floe-<tag>-<i>` with one interface, `eth0`, at
//! `10.213.<s>.<i + 2>`, joined by a veth pair to the bridge `flbr-<tag>` in
//! this namespace, which holds `10.213.<s>.1` so that clients here reach
//! every node. Nodes then talk to each other over real interfaces with
//! addresses of their own instead of sharing 127.0.0.1, so a node's traffic
//! is told apart by its source address, as between separate hosts. Traffic
//! stays on the bridge and in the namespaces the testnet made.
//!
//! `<tag>` and `<s>` are drawn from the testnet directory's path, and kept
//! in the file `netns` of that directory so the testnet finds its
//! namespaces again. It needs root (or CAP_NET_ADMIN) and iproute2's `ip`.
//! Every step is idempotent: `up` after a reboot makes what is missing;
//! `down` deletes the namespaces and the bridge (the data stays).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use crate::testnet::TestnetError;

/// The port every node listens on for QUIC, inside its own namespace.
pub const NODE_PORT: u16 = 9000;
/// The port of every node's admin endpoint, inside its own namespace.
pub const ADMIN_PORT: u16 = 9001;
/// Nodes a namespaced testnet can hold: addresses `.2` to `.251` of its /24.
pub const MAX_NODES: usize = 250;

/// Where a testnet's nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hosts {
    /// All on 127.0.0.1, told apart by port.
    #[default]
    Loopback,
    /// Each in a network namespace of its own (see the module docs).
    Namespaces,
}

/// The namespaces, interfaces and subnet of one testnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    /// Six hex digits naming this testnet's interfaces and namespaces.
    tag: String,
    /// The third byte of the subnet `10.213.<subnet>.0/24`.
    subnet: u8,
}

const FILE: &str = "netns";

impl Netns {
    /// The lab of the testnet in `dir` (a path already made canonical),
    /// named after it.
    pub fn for_dir(dir: &Path) -> Self {
        let hash = blake3::hash(dir.as_os_str().as_encoded_bytes());
        let bytes = hash.as_bytes();
        Self {
            tag: format!("{:02x}{:02x}{:02x}", bytes[0], bytes[1], bytes[2]),
            subnet: bytes[3],
        }
    }

    /// The lab recorded in `dir`, if that testnet runs in namespaces.
    pub fn load(dir: &Path) -> Result<Option<Self>, TestnetError> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TestnetError::Io {
                    what: format!("reading {}", path.display()),
                    source,
                })
            }
        };
        let invalid = || {
            TestnetError::Invalid(format!(
                "{}: expected `<6 hex digits> <subnet 0-255>`, found {:?}",
                path.display(),
                text.trim()
            ))
        };
        let (tag, subnet) = text.trim().split_once(' ').ok_or_else(invalid)?;
        if tag.len() != 6 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let subnet = subnet.parse().map_err(|_| invalid())?;
        Ok(Some(Self {
            tag: tag.to_owned(),
            subnet,
        }))
    }

    /// Records this lab in `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TestnetError> {
        let path = dir.join(FILE);
        std::fs::write(&path, format!("{} {}\n", self.tag, self.subnet)).map_err(|source| {
            TestnetError::Io {
                what: format!("writing {}", path.display()),
                source,
            }
        })
    }

    /// The bridge in this namespace that joins the nodes.
    pub fn bridge(&self) -> String {
        format!("flbr-{}", self.tag)
    }

    /// Node `node`'s network namespace.
    pub fn namespace(&self, node: usize) -> String {
        format!("floe-{}-{node}", self.tag)
    }

    /// This end of node `node`'s veth pair (at most 15 bytes, as the
    /// kernel requires of interface names).
    fn veth(&self, node: usize) -> String {
        format!("flv{}-{node}", self.tag)
    }

    /// The bridge's address: clients in this namespace come from it.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// Node `node`'s address.
    pub fn address(&self, node: usize) -> Result<IpAddr, TestnetError> {
        if node >= MAX_NODES {
            return Err(TestnetError::Invalid(format!(
                "a testnet in namespaces holds at most {MAX_NODES} nodes; node-{node} has no address"
            )));
        }
        Ok(IpAddr::V4(Ipv4Addr::new(
            10,
            213,
            self.subnet,
            node as u8 + 2,
        )))
    }

    /// Node `node`'s QUIC and admin addresses.
    pub fn listen(&self, node: usize) -> Result<(SocketAddr, SocketAddr), TestnetError> {
        let ip = self.address(node)?;
        Ok((
            SocketAddr::new(ip, NODE_PORT),
            SocketAddr::new(ip, ADMIN_PORT),
        ))
    }

    /// Makes the bridge, unless it is there, and gives it its address and
    /// brings it up either way (a bridge half made by a failed earlier
    /// attempt is finished, not trusted).
    fn ensure_bridge(&self) -> Result<(), TestnetError> {
        let bridge = self.bridge();
        if !link_exists(&bridge) {
            self.check_subnet_free()?;
            ip(&["link", "add", &bridge, "type", "bridge"])?;
        }
        ip(&[
            "addr",
            "replace",
            &format!("{}/24", self.gateway()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(())
    }

    /// Refuses a subnet something else here already routes.
    fn check_subnet_free(&self) -> Result<(), TestnetError> {
        let subnet = format!("10.213.{}.0/24", self.subnet);
        // Another testnet (or anything else here) on the same subnet would
        // make addresses ambiguous: refuse instead of sharing it.
        let routes = ip(&[
            "-4",
            "route",
            "show",
            "to",
            "match",
            &self.gateway().to_string(),
        ])?;
        if routes.lines().any(|line| line.starts_with(&subnet)) {
            return Err(TestnetError::Invalid(format!(
                "the subnet {subnet} of this testnet is already routed here ({}); \
                 move the testnet directory or take down what uses it",
                routes.trim()
            )));
        }
        Ok(())
    }

    /// Makes node `node`'s namespace and its link to the bridge, unless
    /// they are there.
    pub fn ensure(&self, node: usize) -> Result<(), TestnetError> {
        let address = self.address(node)?;
        self.ensure_bridge()?;
        let namespace = self.namespace(node);
        let veth = self.veth(node);
        if !(Path::new("/run/netns").join(&namespace).exists() && link_exists(&veth)) {
            // A half-made namespace (a failed earlier attempt) is made again.
            let _ = ip(&["netns", "del", &namespace]);
            let _ = ip(&["link", "del", &veth]);
            ip(&["netns", "add", &namespace])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
            ])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["-n", namespace.as_str()];
                all.extend_from_slice(args);
                ip(&all)
            };
            inside(&["addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
            inside(&["link", "set", "eth0", "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        // New or kept, the veth goes on the bridge (which may have been made
        // again since) and up.
        ip(&["link", "set", &veth, "master", &self.bridge()])?;
        ip(&["link", "set", &veth, "up"])?;
        Ok(())
    }

    /// A command that runs `program` in node `node`'s namespace. `ip netns
    /// exec` replaces itself with `program`: the child's pid is the node's.
    pub fn command(&self, node: usize, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace(node)])
            .arg(program);
        command
    }

    /// Deletes the namespaces of nodes `0..nodes` (their veth pairs go with
    /// them) and the bridge. What is already gone is skipped; a step that
    /// fails does not stop the others, and the first failure is answered.
    pub fn teardown(&self, nodes: usize) -> Result<(), TestnetError> {
        let mut first = None;
        for node in 0..nodes {
            let namespace = self.namespace(node);
            if Path::new("/run/netns").join(&namespace).exists() {
                if let Err(e) = ip(&["netns", "del", &namespace]) {
                    first.get_or_insert(e);
                }
            }
        }
        let bridge = self.bridge();
        if link_exists(&bridge) {
            if let Err(e) = ip(&["link", "del", &bridge]) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Runs `ip ARGS` and answers its output; a failure names the command and
/// says what it needs.
fn ip(args: &[&str]) -> Result<String, TestnetError> {
    let line = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| TestnetError::Io {
            what: format!(
                "running `{line}` (a testnet in network namespaces needs iproute2's `ip`; \
                 scripts/setup.sh installs it)"
            ),
            source,
        })?;
    if !output.status.success() {
        return Err(TestnetError::Invalid(format!(
            "`{line}` failed: {} (a testnet in network namespaces needs root or CAP_NET_ADMIN)",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_addresses_stay_in_the_subnet() {
        let lab = Netns::for_dir(Path::new("/tmp/some/testnet"));
        assert_eq!(lab, Netns::for_dir(Path::new("/tmp/some/testnet")));
        assert_ne!(lab.tag, Netns::for_dir(Path::new("/tmp/other")).tag);
        // Interface names are at most 15 bytes (IFNAMSIZ - 1).
        assert!(lab.bridge().len() <= 15, "{}", lab.bridge());
        assert!(lab.veth(MAX_NODES - 1).len() <= 15, "{}", lab.veth(249));
        let first = lab.address(0).unwrap();
        let last = lab.address(MAX_NODES - 1).unwrap();
        assert_eq!(first.to_string(), format!("10.213.{}.2", lab.subnet));
        assert_eq!(last.to_string(), format!("10.213.{}.251", lab.subnet));
        assert!(lab.address(MAX_NODES).is_err());
        assert_ne!(IpAddr::V4(lab.gateway()), first);
    }

    #[test]
    fn the_lab_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Netns::load(dir.path()).unwrap(), None);
        let lab = Netns::for_dir(dir.path());
        lab.save(dir.path()).unwrap();
        assert_eq!(Netns::load(dir.path()).unwrap(), Some(lab));
        for garbage in ["", "abc 1", "zzzzzz 1", "abcdef 256", "abcdef"] {
            std::fs::write(dir.path().join(FILE), garbage).unwrap();
            assert!(
                matches!(Netns::load(dir.path()), Err(TestnetError::Invalid(_))),
                "{garbage:?}"
            );
        }
    }
}
