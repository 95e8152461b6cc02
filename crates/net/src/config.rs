//! Transport limits and the QUIC settings derived from them.

use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

use tracing::info;

use crate::tls::ALPN;

/// The largest UDP payload path MTU discovery probes for toward a peer
/// across a network, unless configured otherwise. Discovery starts at 1200
/// bytes and climbs as high as the path carries: about 1450 on a 1500-byte
/// path, after a dozen or so lost probes (each larger bound costs more, and
/// a lost probe over a small congestion window holds data back until it is
/// declared lost), and up to this on jumbo-frame links.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 6_500;

/// The largest UDP payload toward a peer on this host (a loopback address),
/// unless configured otherwise: nearly the 64 KiB loopback carries. There
/// the client and the nodes of a local committee share the cores, and each
/// datagram costs per-packet work (headers, encryption set-up,
/// acknowledgements, system calls). quinn batches ten datagrams per
/// segmentation-offload send, over what the kernel takes in one, so batches
/// are split under quinn ([`crate::batch`]). Loopback carries it from the
/// first packet, so such a path starts there instead of discovering it: a
/// search sends a dozen probes padded up to this size, and the receiver
/// parses each padding byte as a frame of its own.
pub const LOOPBACK_MAX_UDP_PAYLOAD: u16 = 65_000;

/// The datagram sizes a connection uses on its path: where MTU discovery
/// starts, and how high it probes. A suspected black hole drops the path
/// to 1200 bytes, and discovery climbs again from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathMtu {
    /// The UDP payload sent from the first packet on.
    pub start: u16,
    /// The largest UDP payload discovery probes for.
    pub upper: u16,
}

/// The UDP payload every QUIC path carries (RFC 9000, 14.1): where
/// discovery starts on a path it knows nothing of.
const QUIC_MIN_UDP_PAYLOAD: u16 = 1200;

/// RFC 9002's initial congestion window (7.2) for datagrams of `mtu`
/// bytes: ten of them, but no more than 14,720 bytes or two datagrams,
/// whichever is larger. quinn's Cubic starts with it for 1200 bytes, a
/// window that cannot hold one of loopback's datagrams: such a connection
/// would never send. (quinn's BBR starts with 240,000 bytes, three of the
/// largest datagrams, and keeps its own.)
fn cubic_initial_window(mtu: u16) -> u64 {
    let mtu = u64::from(mtu);
    (10 * mtu).min(14_720u64.max(2 * mtu))
}

/// How soon MTU discovery runs again after it suspected a black hole.
const BLACK_HOLE_COOLDOWN: Duration = Duration::from_secs(2);

/// Limits and windows shared by servers and pools.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// ALPN protocol to offer and accept.
    pub alpn: Vec<u8>,
    /// Concurrent request streams a peer may open on one connection.
    pub max_streams_per_connection: u32,
    /// Bytes of request and response bodies held at once, across all
    /// connections of a pool, or across the committee members' connections
    /// of a server. Callers wait (backpressure) beyond it.
    pub max_inflight_bytes: u32,
    /// Server: bytes of request and response bodies held at once for callers
    /// that are not committee members, apart from the members' budget, so
    /// that no client can make a member's request wait.
    pub client_inflight_bytes: u32,
    /// Server: bytes one connection's requests and responses may hold at
    /// once. At least the largest request a method accepts.
    pub connection_inflight_bytes: u32,
    /// Server: requests served at once for members, and for everyone else.
    pub member_requests: u32,
    /// See [`NetConfig::member_requests`].
    pub client_requests: u32,
    /// Server: concurrent request streams on a connection that is not a
    /// member's (members get [`NetConfig::max_streams_per_connection`]).
    pub client_streams_per_connection: u32,
    /// Server: connections held at once by callers that are not members;
    /// more are closed right after the handshake with a "busy" code.
    pub max_client_connections: u32,
    /// Server: client connections held at once from one IP address.
    pub max_client_connections_per_ip: u32,
    /// Server: connections held at once under one member's key.
    pub max_connections_per_member: u32,
    /// Server: the flow-control window of a connection that is not a
    /// member's (members get [`NetConfig::connection_window`]): what QUIC
    /// buffers for a client before the server reads it.
    pub client_connection_window: u32,
    /// Server: handshakes in progress at once. From an eighth of it on, a
    /// caller whose address is not validated is asked to prove it (QUIC
    /// Retry); beyond it, or beyond [`NetConfig::max_handshakes_per_ip`]
    /// from one address, new connections are refused.
    pub max_handshakes: u32,
    /// Server: handshakes in progress at once from one IP address.
    pub max_handshakes_per_ip: u32,
    /// Server: how long a request waits for budget (bytes or a request slot)
    /// before it is answered "busy, retry".
    pub budget_wait: Duration,
    /// Server: how long writing one answer may take; a caller that does not
    /// read its answer loses it (and the budget it held) after this.
    pub response_write_timeout: Duration,
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
    /// Largest UDP payload to send or accept. Path MTU discovery starts at
    /// 1200 bytes and probes up to this, so it only matters where the path
    /// carries more (loopback, jumbo frames), and costs a few lost probes
    /// where it does not. See [`DEFAULT_MAX_UDP_PAYLOAD`].
    pub max_udp_payload: u16,
    /// The UDP payload toward a peer on a loopback address, when links are
    /// not shaped, from the first packet on (loopback needs no discovery).
    /// See [`LOOPBACK_MAX_UDP_PAYLOAD`].
    pub loopback_udp_payload: u16,
    /// Socket send and receive buffer to ask the kernel for. It caps the
    /// request at `net.core.{r,w}mem_max` (4 MiB on many systems), and the
    /// receive windows are clamped to what it grants; see [`NetConfig::bind`].
    pub socket_buffer: usize,
    /// Lab only: shape every datagram this endpoint sends as a wide-area
    /// link would ([`crate::shaper`]). `None` in production.
    pub link_shape: Option<crate::LinkProfile>,
    /// The congestion controller of every connection.
    pub congestion: Congestion,
}

/// Which congestion controller QUIC runs.
///
/// Measured with `cargo xtask bench e2e` (7 nodes, 16 MiB stores): over
/// 40 ms, 0.1 % lossy links a store took 4.1 s with CUBIC and 0.9 s with
/// BBR; on loopback BBR's pacing cost 2.3x the transport CPU (286 against
/// 123 ms for every sliver of a 16 MiB blob). So CUBIC is the default and
/// BBR the choice for committees spread over long, lossy paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// CUBIC (quinn's default): backs off on every loss.
    #[default]
    Cubic,
    /// BBR (quinn's, still marked experimental there): paces at the
    /// measured bottleneck bandwidth, so random loss on a long path does
    /// not collapse the window.
    Bbr,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            alpn: ALPN.to_vec(),
            max_streams_per_connection: 256,
            max_inflight_bytes: 512 << 20,
            client_inflight_bytes: 512 << 20,
            connection_inflight_bytes: 288 << 20,
            // Below tokio's 512 blocking threads together, so that clients
            // cannot take every thread members' handlers need.
            member_requests: 256,
            client_requests: 128,
            client_streams_per_connection: 64,
            max_client_connections: 256,
            max_client_connections_per_ip: 32,
            max_connections_per_member: 8,
            client_connection_window: 16 << 20,
            max_handshakes: 64,
            max_handshakes_per_ip: 8,
            budget_wait: Duration::from_secs(5),
            response_write_timeout: Duration::from_secs(30),
            stream_window: 16 << 20,
            connection_window: 64 << 20,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Duration::from_secs(5),
            request_read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
            loopback_udp_payload: LOOPBACK_MAX_UDP_PAYLOAD,
            socket_buffer: 32 << 20,
            link_shape: None,
            congestion: Congestion::default(),
        }
    }
}

impl NetConfig {
    /// Whether `peer` is on this host, reached over loopback, and links are
    /// not shaped (a shaped link stands for a network path).
    pub fn on_this_host(&self, peer: SocketAddr) -> bool {
        let loopback = match peer.ip() {
            std::net::IpAddr::V4(ip) => ip.is_loopback(),
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
        loopback && self.link_shape.is_none()
    }

    /// The datagram sizes toward `peer`: a peer on this host gets
    /// loopback's from the start, one across a network starts at QUIC's
    /// 1200 bytes and probes up to [`NetConfig::max_udp_payload`].
    pub fn path_to(&self, peer: SocketAddr) -> PathMtu {
        if self.on_this_host(peer) {
            self.this_host_path()
        } else {
            self.network_path()
        }
    }

    /// The datagram sizes toward a peer on this host (see
    /// [`NetConfig::on_this_host`]).
    pub fn this_host_path(&self) -> PathMtu {
        PathMtu {
            start: self.loopback_udp_payload,
            upper: self.loopback_udp_payload,
        }
    }

    /// The datagram sizes toward a peer across a network.
    pub fn network_path(&self) -> PathMtu {
        PathMtu {
            start: QUIC_MIN_UDP_PAYLOAD,
            upper: self.max_udp_payload,
        }
    }

    /// The QUIC transport parameters a server offers a caller before it
    /// knows who calls: a client's streams and window. A member's are
    /// raised once its handshake proves its key. Datagrams are sized for
    /// `path` (see [`NetConfig::path_to`]).
    pub fn server_transport(&self, path: PathMtu) -> Arc<TransportConfig> {
        let mut config = self.clone();
        config.max_streams_per_connection = self
            .client_streams_per_connection
            .min(self.max_streams_per_connection);
        config.connection_window = self.client_connection_window.min(self.connection_window);
        config.stream_window = self.stream_window.min(config.connection_window);
        config.transport(path)
    }

    /// The QUIC transport parameters for these limits, with datagrams sized
    /// for `path` (see [`NetConfig::path_to`]).
    pub fn transport(&self, path: PathMtu) -> Arc<TransportConfig> {
        let start = path.start.min(path.upper);
        let mut transport = TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams_per_connection))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .stream_receive_window(VarInt::from_u32(self.stream_window))
            .receive_window(VarInt::from_u32(self.connection_window))
            .send_window(u64::from(self.connection_window))
            .max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok())
            .keep_alive_interval(Some(self.keep_alive))
            .initial_mtu(start);
        let mut mtu = MtuDiscoveryConfig::default();
        // Loss bursts under load look like a black hole and drop the MTU to
        // 1200; probe again soon instead of running small for a minute.
        mtu.upper_bound(path.upper)
            .black_hole_cooldown(BLACK_HOLE_COOLDOWN);
        transport.mtu_discovery_config(Some(mtu));
        let congestion: Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> =
            match self.congestion {
                Congestion::Cubic => Arc::new({
                    let mut cubic = quinn::congestion::CubicConfig::default();
                    cubic.initial_window(cubic_initial_window(start));
                    cubic
                }),
                Congestion::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
            };
        transport.congestion_controller_factory(congestion);
        Arc::new(transport)
    }

    /// A QUIC endpoint on `address`, serving with `server` if given, and
    /// the limits it actually runs with. The endpoint's server
    /// configuration is for callers across a network; a server accepts
    /// callers on this host with [`NetConfig::server_transport`] bounded by
    /// [`NetConfig::loopback_udp_payload`].
    ///
    /// The receive windows are clamped to half the socket receive buffer the
    /// kernel granted (the kernel doubles the request for its own overhead,
    /// and caps it at `net.core.rmem_max`): a window larger than the buffer
    /// lets a burst overflow the socket, and those drops cost far more than
    /// the window gains.
    pub fn bind(
        &self,
        address: SocketAddr,
        server: Option<Arc<QuicServerConfig>>,
    ) -> std::io::Result<(Endpoint, NetConfig)> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Best effort: a smaller buffer only means smaller windows.
        let _ = socket.set_recv_buffer_size(self.socket_buffer);
        let _ = socket.set_send_buffer_size(self.socket_buffer);
        socket.bind(&address.into())?;
        let mut effective = self.clone();
        let granted = socket.recv_buffer_size()? / 2;
        let usable = u32::try_from(granted).unwrap_or(u32::MAX);
        if usable < self.connection_window {
            info!(
                requested = self.connection_window,
                granted = usable,
                "QUIC receive window limited by the socket buffer; raise net.core.rmem_max for larger windows"
            );
            effective.connection_window = usable;
        }
        effective.stream_window = effective.stream_window.min(effective.connection_window);
        let server = server.map(|crypto| {
            let mut config = quinn::ServerConfig::with_crypto(crypto);
            config.transport_config(effective.server_transport(effective.network_path()));
            config
        });
        let mut endpoint = EndpointConfig::default();
        endpoint
            .max_udp_payload_size(
                self.max_udp_payload
                    .max(self.loopback_udp_payload)
                    .max(QUIC_MIN_UDP_PAYLOAD),
            )
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let runtime = Arc::new(quinn::TokioRuntime);
        let socket = quinn::Runtime::wrap_udp_socket(&*runtime, socket.into())?;
        let socket: Arc<dyn quinn::AsyncUdpSocket> = crate::batch::SplitBatches::new(socket);
        let socket: Arc<dyn quinn::AsyncUdpSocket> = match &self.link_shape {
            Some(profile) => crate::shaper::ShapedSocket::new(socket, profile.clone())?,
            None => socket,
        };
        let endpoint = Endpoint::new_with_abstract_socket(endpoint, server, socket, runtime)?;
        Ok((endpoint, effective))
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

/// How long a closing endpoint waits for its peers to acknowledge the close.
/// The close is sent at once; waiting only lets it be repeated to peers that
/// missed it, and a peer that is gone would hold the wait for many retry
/// timeouts.
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// Wait, at most [`CLOSE_LINGER`], for a closed endpoint's connections to drain.
pub(crate) async fn wait_idle(endpoint: &Endpoint) {
    let _ = tokio::time::timeout(CLOSE_LINGER, endpoint.wait_idle()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Only a peer on this host, over unshaped links, gets loopback's
    /// datagrams: every other path keeps the bound that costs few lost
    /// probes on a 1500-byte network.
    #[test]
    fn only_peers_on_this_host_get_loopback_datagrams() {
        let config = NetConfig::default();
        let to = |address: &str| config.path_to(address.parse().unwrap());
        let near = PathMtu {
            start: LOOPBACK_MAX_UDP_PAYLOAD,
            upper: LOOPBACK_MAX_UDP_PAYLOAD,
        };
        let far = PathMtu {
            start: QUIC_MIN_UDP_PAYLOAD,
            upper: DEFAULT_MAX_UDP_PAYLOAD,
        };
        for (peer, bound) in [
            ("127.0.0.1:9000", near),
            ("127.3.2.1:1", near),
            ("[::1]:9000", near),
            ("[::ffff:127.0.0.1]:9000", near),
            ("10.213.0.2:9000", far),
            ("192.0.2.1:1", far),
            ("[2001:db8::1]:9000", far),
            ("[::ffff:10.0.0.1]:1", far),
        ] {
            assert_eq!(to(peer), bound, "{peer}");
        }
        let shaped = NetConfig {
            link_shape: Some(crate::LinkProfile::named("continent").unwrap()),
            ..NetConfig::default()
        };
        assert_eq!(shaped.path_to("127.0.0.1:9000".parse().unwrap()), far);
    }

    /// Cubic starts with quinn's own window on a network path, and with
    /// two of loopback's datagrams (a window under one never sends).
    #[test]
    fn cubics_initial_window_holds_datagrams_of_the_path() {
        assert_eq!(cubic_initial_window(1200), 12_000);
        assert_eq!(cubic_initial_window(1472), 14_720);
        assert_eq!(cubic_initial_window(LOOPBACK_MAX_UDP_PAYLOAD), 130_000);
    }
}
