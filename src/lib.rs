//! # Floe
//!
//! A decentralized blob store in which a blob's state is a protocol fact
//! with a proof. This crate is the thin top level: it re-exports the layers
//! (today [`codec`]; consensus, store, net, node and client follow) and will
//! carry the `floe` command line.

pub use floe_codec as codec;
