//! The serving side: a [`Router`] of typed handlers behind a QUIC endpoint.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use floe_consensus::PublicKey;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::NetConfig;
use crate::frame::{self, codes, Status, REQUEST_HEADER_LEN};
use crate::tls::{self, TlsIdentity};
use crate::NetError;
use floe_wire::{Access, Method, Wire};

mod budget;
mod connection;
mod exchange;

use budget::*;
pub use budget::{reserve_answer, spawn_blocking};
use connection::*;
use exchange::*;

/// Who made a request, as proven by the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A committee member, authenticated by its network key.
    Member {
        /// The member's network key.
        key: PublicKey,
        /// Where the connection came from.
        address: SocketAddr,
    },
    /// Anyone else: a client without a certificate, or with a key that is
    /// not a member's.
    Client {
        /// The certificate key, if one was presented.
        key: Option<PublicKey>,
        /// Where the connection came from.
        address: SocketAddr,
    },
}

impl Caller {
    /// The member key, if the caller is a committee member.
    pub fn member(&self) -> Option<&PublicKey> {
        match self {
            Self::Member { key, .. } => Some(key),
            Self::Client { .. } => None,
        }
    }

    /// Where the connection came from.
    pub fn address(&self) -> SocketAddr {
        match self {
            Self::Member { address, .. } | Self::Client { address, .. } => *address,
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Member { key, address } => write!(f, "member {key} at {address}"),
            Self::Client {
                key: Some(key),
                address,
            } => write!(f, "non-member key {key} at {address}"),
            Self::Client { key: None, address } => write!(f, "client at {address}"),
        }
    }
}

/// The network keys of the committee members; replaceable when the
/// committee changes.
#[derive(Debug, Clone, Default)]
pub struct Members(Arc<RwLock<BTreeSet<PublicKey>>>);

impl Members {
    /// Members with these network keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self(Arc::new(RwLock::new(keys.into_iter().collect())))
    }

    /// Replace the member set.
    pub fn replace(&self, keys: impl IntoIterator<Item = PublicKey>) {
        let keys = keys.into_iter().collect();
        match self.0.write() {
            Ok(mut guard) => *guard = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    /// Whether `key` is a member's network key.
    pub fn contains(&self, key: &PublicKey) -> bool {
        match self.0.read() {
            Ok(guard) => guard.contains(key),
            Err(poisoned) => poisoned.into_inner().contains(key),
        }
    }
}

struct Reply {
    status: Status,
    body: Bytes,
}

impl Reply {
    fn text(status: Status, text: impl Into<String>) -> Self {
        let mut text = text.into();
        let limit = frame::MAX_TEXT_BYTES as usize;
        if text.len() > limit {
            let mut end = limit;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Self {
            status,
            body: Bytes::from(text),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Handler = Box<dyn Fn(Caller, Bytes) -> BoxFuture<Reply> + Send + Sync>;

struct Route {
    name: &'static str,
    access: Access,
    max_request: u32,
    max_response: u32,
    /// How long the handler may run: twice the method's caller timeout, by
    /// which time any caller using the default has given up.
    deadline: Duration,
    handler: Handler,
}

impl Route {
    /// The largest body this route may answer with under `status`: the
    /// same limits the caller enforces.
    fn response_limit(&self, status: Status) -> u32 {
        match status {
            Status::Ok => self.max_response,
            Status::Failed => self.max_response.max(frame::MAX_ERROR_BYTES),
            Status::Refused | Status::BadRequest | Status::Unavailable => frame::MAX_TEXT_BYTES,
        }
    }
}

/// Typed handlers by request kind.
#[derive(Default)]
pub struct Router {
    routes: HashMap<u16, Route>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self
            .routes
            .iter()
            .map(|(kind, route)| (*kind, route.name))
            .collect();
        names.sort_unstable();
        f.debug_struct("Router").field("routes", &names).finish()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serve method `M` with `handler`.
    ///
    /// # Panics
    /// If another method with the same kind number is already routed: that is
    /// a bug in the protocol definition, found at start-up.
    #[allow(clippy::panic)]
    pub fn route<M, F, Fut>(mut self, handler: F) -> Self
    where
        M: Method,
        F: Fn(Caller, M::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Response, M::Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let wrapped: Handler = Box::new(move |caller, body| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let request = match M::Request::from_frame(body) {
                    Ok(request) => request,
                    Err(e) => {
                        return Reply::text(
                            Status::BadRequest,
                            format!("malformed `{}` request: {e}", M::NAME),
                        )
                    }
                };
                let (status, encoded) = match handler(caller, request).await {
                    Ok(response) => (Status::Ok, response.to_frame()),
                    Err(error) => (Status::Failed, error.to_frame()),
                };
                match encoded {
                    Ok(body) => Reply { status, body },
                    Err(e) => Reply::text(
                        Status::Unavailable,
                        format!("the server could not encode its `{}` answer: {e}", M::NAME),
                    ),
                }
            })
        });
        let route = Route {
            name: M::NAME,
            access: M::ACCESS,
            max_request: M::MAX_REQUEST_BYTES,
            max_response: M::MAX_RESPONSE_BYTES,
            deadline: M::TIMEOUT.saturating_mul(2),
            handler: wrapped,
        };
        if let Some(previous) = self.routes.insert(M::KIND, route) {
            panic!(
                "request kind {} is routed twice: `{}` and `{}`",
                M::KIND,
                previous.name,
                M::NAME
            );
        }
        self
    }
}

/// Request counters of a server, by outcome.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Requests answered with a response.
    pub ok: AtomicU64,
    /// Requests answered with the method's typed error.
    pub failed: AtomicU64,
    /// Requests refused (peer-only from a non-member).
    pub refused: AtomicU64,
    /// Requests that broke framing or encoding.
    pub bad_request: AtomicU64,
    /// Requests turned away while shutting down.
    pub unavailable: AtomicU64,
    /// Requests the caller abandoned before the answer.
    pub cancelled: AtomicU64,
    /// Request body bytes received.
    pub bytes_in: AtomicU64,
    /// Response body bytes sent.
    pub bytes_out: AtomicU64,
    /// Requests answered "busy": no budget or request slot within
    /// [`NetConfig::budget_wait`].
    pub busy: AtomicU64,
    /// Connections refused or closed at once: too many handshakes, too many
    /// client connections, or too many under one member's key.
    pub connections_refused: AtomicU64,
    /// Connection attempts asked to validate their address (QUIC Retry).
    pub retries: AtomicU64,
    /// Answers abandoned because the caller did not read them in time.
    pub write_timeouts: AtomicU64,
    /// Handlers stopped at their deadline.
    pub handler_timeouts: AtomicU64,
}

impl ServerStats {
    fn count(&self, status: Status) {
        let counter = match status {
            Status::Ok => &self.ok,
            Status::Failed => &self.failed,
            Status::Refused => &self.refused,
            Status::BadRequest => &self.bad_request,
            Status::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Shared access to a server's counters (for a metrics endpoint).
#[derive(Clone)]
pub struct StatsHandle(Arc<Shared>);

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsHandle").finish_non_exhaustive()
    }
}

impl StatsHandle {
    /// The counters.
    pub fn stats(&self) -> &ServerStats {
        &self.0.stats
    }

    /// Requests being served right now.
    pub fn inflight(&self) -> usize {
        self.0.inflight.load(Ordering::Acquire)
    }
}

struct Shared {
    router: Router,
    members: Members,
    config: NetConfig,
    member_allowance: Allowance,
    client_allowance: Allowance,
    stats: ServerStats,
    shutting_down: watch::Receiver<bool>,
    inflight: AtomicUsize,
    idle: Notify,
    handshakes: AtomicUsize,
    handshakes_by_ip: Mutex<HashMap<std::net::IpAddr, usize>>,
    client_connections: AtomicUsize,
    lanes: Mutex<HashMap<LaneKey, std::sync::Weak<Lane>>>,
    /// How callers on this host are accepted (larger datagrams); callers
    /// across a network get the endpoint's own configuration.
    on_this_host: Arc<quinn::ServerConfig>,
}

/// A running server.
pub struct Server {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Bind `listen` and start serving `router`. Callers whose key is in
    /// `members` may make peer-only requests.
    pub fn bind(
        listen: SocketAddr,
        identity: &TlsIdentity,
        members: Members,
        router: Router,
        config: NetConfig,
    ) -> Result<Self, NetError> {
        let tls = tls::server_config(identity, &config.alpn)?;
        let quic = QuicServerConfig::try_from(tls).map_err(|e| NetError::Quic(e.to_string()))?;
        let quic = Arc::new(quic);
        let (endpoint, config) =
            config
                .bind(listen, Some(Arc::clone(&quic)))
                .map_err(|source| NetError::Bind {
                    address: listen,
                    source,
                })?;
        let mut on_this_host = quinn::ServerConfig::with_crypto(quic);
        on_this_host.transport_config(config.server_transport(config.this_host_path()));
        let (shutdown, shutting_down) = watch::channel(false);
        let shared = Arc::new(Shared {
            router,
            members,
            member_allowance: Allowance::new(config.max_inflight_bytes, config.member_requests),
            client_allowance: Allowance::new(config.client_inflight_bytes, config.client_requests),
            config,
            stats: ServerStats::default(),
            shutting_down,
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            handshakes: AtomicUsize::new(0),
            handshakes_by_ip: Mutex::new(HashMap::new()),
            client_connections: AtomicUsize::new(0),
            lanes: Mutex::new(HashMap::new()),
            on_this_host: Arc::new(on_this_host),
        });
        tokio::spawn(accept_loop(endpoint.clone(), Arc::clone(&shared)));
        info!(address = ?endpoint.local_addr().ok(), key = %identity.public(), "floe-net server listening");
        Ok(Self {
            endpoint,
            shared,
            shutdown,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.endpoint.local_addr().map_err(NetError::Io)
    }

    /// The endpoint, for a pool that should dial from the same socket.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The limits the server runs with: the configured ones, with windows
    /// clamped to the socket buffer (see [`NetConfig::bind`]). A pool sharing
    /// the endpoint should use these.
    pub fn config(&self) -> &NetConfig {
        &self.shared.config
    }

    /// Request counters.
    pub fn stats(&self) -> &ServerStats {
        &self.shared.stats
    }

    /// A handle on the request counters that outlives borrows of the server.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::clone(&self.shared))
    }

    /// Requests being served right now.
    pub fn inflight(&self) -> usize {
        self.shared.inflight.load(Ordering::Acquire)
    }

    /// Stop serving: new requests are answered "unavailable", requests in
    /// flight get up to `grace` to finish, then every connection is closed and
    /// the socket released.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let drained = tokio::time::timeout(grace, async {
            loop {
                let notified = self.shared.idle.notified();
                if self.shared.inflight.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(
                inflight = self.inflight(),
                ?grace,
                "closing with requests still in flight"
            );
        }
        self.endpoint
            .close(codes::SHUTDOWN, b"server shutting down");
        crate::config::wait_idle(&self.endpoint).await;
        info!("floe-net server stopped");
    }
}
