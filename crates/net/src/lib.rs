//! floe-net: the authenticated QUIC RPC that every Floe request rides on.
//!
//! - **Identity.** Each node's TLS certificate is self-signed from its ed25519
//!   network key ([`TlsIdentity`]). A caller dialing a node accepts only the
//!   key the committee pins for it; there is no CA and no hostname check.
//!   Members present their certificate when they call, so a server knows which
//!   member is calling ([`Caller`]); plain clients need no certificate and
//!   reach only public requests. ALPN `floe/1` carries the wire version.
//! - **Exchanges.** One connection per peer, reused; one bidirectional stream
//!   per request; length-prefixed frames ([`frame`]) checked against the
//!   per-kind limits of each [`Method`] before any buffer is reserved.
//! - **Limits.** Per-call timeouts, cancellation on drop, a bounded number of
//!   streams per connection and a bounded number of body bytes in flight per
//!   server and per pool ([`NetConfig`]).
//! - **Health.** The [`Pool`] reconnects with backoff and keeps
//!   [`PeerHealth`] for metrics and for choosing whom to ask first.
//! - **Fan-out.** [`FanOut`] is the one driver for "ask peers until enough
//!   answered": it makes the calls, paced and hedged, and feeds a pure
//!   tally from `floe_consensus::quorum`.
//!
//! The crate is generic over the protocol: `floe-wire` says what a method
//! is, `floe-api` defines Floe's methods.

pub mod batch;
pub mod config;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod pool;
pub mod server;
pub mod shaper;
pub mod tls;

use std::net::SocketAddr;

pub use config::{Congestion, NetConfig, PathMtu};
pub use error::{PeerRef, Refusal, RpcError};
pub use fanout::{Ended, FanOut};
pub use floe_wire::{Access, Method, Raw, Wire, WireError};
pub use pool::{PathHealth, PeerHealth, Pool};
pub use server::{
    reserve_answer, spawn_blocking, Caller, Members, Router, Server, ServerStats, StatsHandle,
};
pub use shaper::{LinkProfile, ShapeStats, LAB_ENV};
pub use tls::{TlsIdentity, ALPN};

/// Failures setting up a server or pool.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The self-signed certificate could not be made.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The QUIC configuration could not be built.
    #[error("QUIC configuration: {0}")]
    Quic(String),
    /// The socket could not be bound.
    #[error("cannot bind {address}: {source}; is another process using it?")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(std::io::Error),
    /// A key that is not among the pool's peers.
    #[error("{0} is not a known peer; check the committee file")]
    UnknownPeer(floe_consensus::PublicKey),
    /// A dial failed.
    #[error("dial failed: {0}")]
    Dial(String),
}
