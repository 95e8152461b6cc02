//! Transport limits and the QUIC settings derived from them.

use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::tls::ALPN;

/// Limits and windows shared by servers and pools.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// ALPN protocol to offer and accept.
    pub alpn: Vec<u8>,
    /// Concurrent request streams a peer may open on one connection.
    pub max_streams_per_connection: u32,
    /// Bytes of request and response bodies held at once, across all
    /// connections of a server or pool. Callers wait (backpressure) beyond it.
    pub max_inflight_bytes: u32,
    /// Flow-control window per stream. Multi-MiB slivers need more than the
    /// internet-tuned default to keep the pipe full.
    pub stream_window: u32,
    /// Flow-control window per connection, across its streams.
    pub connection_window: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Pools ping idle connections this often so they stay open.
    pub keep_alive: Duration,
    /// How long a server waits for a request to arrive once its stream opens.
    pub request_read_timeout: Duration,
    /// How long a dial may take.
    pub connect_timeout: Duration,
    /// First reconnect delay after a failed dial; doubles per failure.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            alpn: ALPN.to_vec(),
            max_streams_per_connection: 256,
            max_inflight_bytes: 512 << 20,
            stream_window: 16 << 20,
            connection_window: 64 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            request_read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

impl NetConfig {
    /// The QUIC transport parameters for these limits.
    pub fn transport(&self) -> Arc<TransportConfig> {
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams_per_connection))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(u64::from(self.connection_window))
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok())
            .keep_alive_interval(Some(self.keep_alive));
        Arc::new(transport)
    }

    /// The delay before the next dial after `failures` consecutive failures.
    pub fn backoff(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}
