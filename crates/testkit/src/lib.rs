//! floe-testkit: Floe's test harness, for tests, benchmarks and fault
//! drills; not a product API (nothing that ships depends on it).
//!
//! * [`local`]: a local committee on 127.0.0.1 (keys, committee file and
//!   node configs in one directory) and its nodes run in this process
//!   ([`local::Cluster`]), with made-up certified facts to seed them.
//! * [`testnet`]: a local test network of `floe-node` processes, as
//!   `cargo xtask testnet …` runs it, on 127.0.0.1 or each node in a
//!   network namespace of its own ([`netns`]).
//! * [`drill`]: the demo and the chaos drill on a [`testnet::Testnet`].
//! * [`migration`]: a committee change that moves shards, on a cluster.
//! * [`epochs`]: the epochs drill: a load across committee changes on a
//!   [`testnet::Testnet`] (whose nodes join and leave through the
//!   operators' admin ports).
//!
//! Crates use it as a dev-dependency; `xtask` uses it for its testnet,
//! demo, chaos and benchmarks.

pub mod drill;
pub mod epochs;
pub mod local;
mod membership;
pub mod migration;
pub mod netns;
pub mod testnet;
