//! # Floe
//!
//! A decentralized blob store in which a blob's state is a protocol fact
//! with a proof. This crate is the thin top level: it re-exports the layers
//! and carries the `floe` command line.

pub mod cli;

pub use floe_api as api;
pub use floe_client as client;
pub use floe_codec as codec;
pub use floe_consensus as consensus;
pub use floe_gateway as gateway;
pub use floe_net as net;
pub use floe_node as node;
pub use floe_store as store;
