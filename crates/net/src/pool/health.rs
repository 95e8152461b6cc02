//! What a pool knows of each peer's health and path.

use std::time::{Duration, SystemTime};

use crate::PeerRef;

/// What the pool knows of one peer's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHealth {
    /// The peer.
    pub peer: PeerRef,
    /// Whether a live connection is open.
    pub connected: bool,
    /// When a call last succeeded (the peer answered, even with an error).
    pub last_success: Option<SystemTime>,
    /// When a call last failed.
    pub last_failure: Option<SystemTime>,
    /// What the last failure was.
    pub last_error: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Smoothed round-trip time of the current connection.
    pub rtt: Option<Duration>,
    /// The current connection's path: its MTU and what it lost.
    pub path: Option<PathHealth>,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed at the peer (unreachable, timed out, refused, broken).
    pub failures: u64,
    /// Answers the caller proved false or hostile (see [`Pool::report_misbehaviour`]).
    pub misbehaviours: u64,
    /// What the last of them was.
    pub last_misbehaviour: Option<String>,
    /// Whether the peer is ranked last for now: it lied, or timed out,
    /// recently. A fast answer does not lift this; time does.
    pub penalized: bool,
}

/// What one connection's path carried and lost, from QUIC's own counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathHealth {
    /// The largest datagram the path carries as MTU discovery has found it
    /// so far (1200 while it starts, or after it suspected a black hole).
    pub mtu: u16,
    /// Packets sent (MTU probes among them), and those QUIC declared lost
    /// (lost probes not among them).
    pub sent_packets: u64,
    /// See [`PathHealth::sent_packets`].
    pub lost_packets: u64,
    /// Times the congestion window was cut.
    pub congestion_events: u64,
    /// MTU probes sent, and those lost.
    pub sent_probes: u64,
    /// See [`PathHealth::sent_probes`].
    pub lost_probes: u64,
    /// Times the path was suspected of dropping large datagrams (a black
    /// hole), sending the MTU back to its minimum.
    pub black_holes: u64,
}
