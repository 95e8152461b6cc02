//! # Floe
//!
//! A decentralized blob store in which a blob's state is a protocol fact
//! with a proof. This crate is the thin top level: it re-exports the layers
//! and will carry the `floe` command line.

pub use floe_codec as codec;
pub use floe_consensus as consensus;
pub use floe_net as net;
pub use floe_store as store;
