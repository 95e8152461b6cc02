//! Typed failures of a call. Each names the peer and says what to do next.

use std::fmt;
use std::time::Duration;

use floe_consensus::PublicKey;

/// The peer a call went to: its pinned key and the address dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRef {
    /// The network key pinned for the peer.
    pub key: PublicKey,
    /// The address as configured (host:port).
    pub address: String,
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key.to_string();
        write!(f, "node {}… at {}", &key[..key.len().min(12)], self.address)
    }
}

/// Why a connection or request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server proved a key other than the one pinned for it, or none.
    #[error("the server failed identity checks ({0}); check the committee file's network key and address for this node")]
    Identity(String),
    /// The two sides speak different protocol versions (ALPN).
    #[error("protocol version mismatch: this side speaks {ours}; upgrade the older side")]
    Version {
        /// The ALPN this side offered.
        ours: String,
    },
    /// The server would not accept this side's certificate.
    #[error("the server rejected this side's certificate ({0})")]
    Certificate(String),
    /// The server refused the request itself (for example a peer-only request
    /// from a caller that is not a committee member).
    #[error("{0}")]
    Request(String),
}

/// The failure of one call, generic over the method's typed error `E`.
#[derive(Debug, thiserror::Error)]
pub enum RpcError<E: fmt::Display + fmt::Debug> {
    /// No connection could be made or kept.
    #[error("{peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: PeerRef,
        /// What failed.
        reason: String,
    },
    /// The handshake or the request was refused.
    #[error("{peer} refused `{method}`: {refusal}")]
    Refused {
        /// The peer.
        peer: PeerRef,
        /// The request kind.
        method: &'static str,
        /// Why.
        refusal: Refusal,
    },
    /// No complete answer within the deadline.
    #[error("{peer} did not answer `{method}` within {after:?}; it may be overloaded or down, try another node")]
    TimedOut {
        /// The peer.
        peer: PeerRef,
        /// The request kind.
        method: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// One side broke the frame or encoding rules.
    #[error("protocol violation on `{method}` with {peer}: {violation}")]
    Protocol {
        /// The peer.
        peer: PeerRef,
        /// The request kind.
        method: &'static str,
        /// What was wrong, and whose fault.
        violation: String,
    },
    /// The server cannot serve now (it is shutting down).
    #[error("{peer} is unavailable for `{method}`: {reason}")]
    Unavailable {
        /// The peer.
        peer: PeerRef,
        /// The request kind.
        method: &'static str,
        /// What the server said.
        reason: String,
    },
    /// The request was too large to send under the method's limit.
    #[error("`{method}` request of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The request kind.
        method: &'static str,
        /// Encoded size.
        size: usize,
        /// The method's limit.
        limit: u32,
    },
    /// The server answered with the method's typed error.
    #[error("{peer} answered `{method}` with an error: {error}")]
    Remote {
        /// The peer.
        peer: PeerRef,
        /// The request kind.
        method: &'static str,
        /// The server's typed error.
        error: E,
    },
}

impl<E: fmt::Display + fmt::Debug> RpcError<E> {
    /// Whether the peer failed (as opposed to answering, even with an error):
    /// the pool counts these against its health.
    pub fn is_peer_failure(&self) -> bool {
        !matches!(self, Self::Remote { .. } | Self::TooLarge { .. })
    }
}
