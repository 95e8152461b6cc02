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

/// What one class of callers shares: bytes of bodies and requests in flight.
struct Allowance {
    bytes: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    capacity: u32,
    slots: u32,
}

impl Allowance {
    fn new(bytes: u32, requests: u32) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(bytes as usize)),
            requests: Arc::new(Semaphore::new(requests as usize)),
            capacity: bytes,
            slots: requests,
        }
    }
}

/// The two classes of callers, each with its own [`Allowance`]: nothing a
/// client does makes a member's request wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Members,
    Clients,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Members => "committee members'",
            Self::Clients => "clients'",
        })
    }
}

/// Why a request found no room: each says what the caller can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Busy {
    #[error("this connection already holds {limit} bytes of requests and answers in flight; wait for them before sending more")]
    Connection { limit: u32 },
    #[error("the node is holding its {limit} bytes for {class} requests; retry shortly or ask another node")]
    Bytes { class: Class, limit: u32 },
    #[error("the node is serving its {limit} {class} requests at once; retry shortly or ask another node")]
    Requests { class: Class, limit: u32 },
}

/// The budget one request holds: bytes from its connection and its class,
/// and a request slot while its handler runs. Dropping it gives all back.
#[derive(Default)]
struct Charge {
    slot: Option<OwnedSemaphorePermit>,
    class: Option<OwnedSemaphorePermit>,
    connection: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes held.
    fn bytes(&self) -> usize {
        self.class
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Give back all but `keep` bytes.
    fn shrink_to(&mut self, keep: usize) {
        for permit in [&mut self.class, &mut self.connection]
            .into_iter()
            .flatten()
        {
            let excess = permit.num_permits().saturating_sub(keep);
            drop(permit.split(excess));
        }
    }
}

/// `permits` from `semaphore` by `deadline`: small charges queue in order,
/// large ones poll so they never stand in front of small ones.
async fn acquire(
    semaphore: &Arc<Semaphore>,
    permits: u32,
    deadline: Instant,
) -> Option<OwnedSemaphorePermit> {
    if (permits as usize) < BIG_CHARGE {
        return tokio::time::timeout_at(
            deadline,
            Arc::clone(semaphore).acquire_many_owned(permits),
        )
        .await
        .ok()?
        .ok();
    }
    loop {
        match Arc::clone(semaphore).try_acquire_many_owned(permits) {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if Instant::now() >= deadline {
                    return None;
                }
                tokio::time::sleep(BIG_CHARGE_POLL).await;
            }
        }
    }
}

fn merge(into: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match into {
        Some(held) => held.merge(permit),
        None => *into = Some(permit),
    }
}

/// The budget of the request being served, shared by its handler and the
/// blocking work it starts, with what it needs to take more.
struct Held {
    charge: Mutex<Charge>,
    class: Class,
    allowance_bytes: Arc<Semaphore>,
    allowance_limit: u32,
    lane: Arc<Lane>,
    wait: Duration,
}

tokio::task_local! {
    /// The budget of the request whose handler is running on this task.
    static HELD: Arc<Held>;
}

thread_local! {
    /// The budget of the request whose blocking work runs on this thread.
    static HELD_HERE: std::cell::RefCell<Option<Arc<Held>>> = const { std::cell::RefCell::new(None) };
}

/// Run blocking work for the request being served, inside its budget: the
/// request's bytes and slot stay taken until the work ends, even when the
/// caller cancels and the handler is dropped, so abandoned work cannot pile
/// up beyond the server's limits; the work may [`reserve_answer`]. Outside
/// a handler it is [`tokio::task::spawn_blocking`].
pub fn spawn_blocking<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let held = HELD.try_with(Arc::clone).ok();
    tokio::task::spawn_blocking(move || {
        HELD_HERE.with(|here| *here.borrow_mut() = held);
        let out = work();
        HELD_HERE.with(|here| here.borrow_mut().take());
        out
    })
}

/// Take budget for an answer of up to `bytes` before building it, from
/// blocking work started with [`spawn_blocking`] by a handler: a handler
/// whose answer may be far larger than the method's typical one (a sliver)
/// says so before it reads it, so that answers are paid for before they
/// take memory. Waits up to the server's budget wait; the error says why
/// there is no room. Outside a handler's blocking work it does nothing.
pub fn reserve_answer(bytes: usize) -> Result<(), String> {
    let Some(held) = HELD_HERE.with(|here| here.borrow().clone()) else {
        return Ok(());
    };
    let missing = bytes.saturating_sub(lock(&held.charge).bytes());
    if missing == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + held.wait;
    let permits = u32::try_from(missing).unwrap_or(u32::MAX);
    let take = |semaphore: &Arc<Semaphore>| loop {
        match Arc::clone(semaphore).try_acquire_many_owned(permits) {
            Ok(permit) => return Some(permit),
            Err(tokio::sync::TryAcquireError::Closed) => return None,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if std::time::Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(BIG_CHARGE_POLL);
            }
        }
    };
    let connection = take(&held.lane.bytes).ok_or_else(|| {
        Busy::Connection {
            limit: held.lane.limit,
        }
        .to_string()
    })?;
    let shared = take(&held.allowance_bytes).ok_or_else(|| {
        Busy::Bytes {
            class: held.class,
            limit: held.allowance_limit,
        }
        .to_string()
    })?;
    let mut charge = lock(&held.charge);
    merge(&mut charge.connection, connection);
    merge(&mut charge.class, shared);
    Ok(())
}

/// Charges above this size poll for room instead of queueing, so that one
/// large request never holds up the small ones behind it (the semaphore
/// serves its queue in order).
const BIG_CHARGE: usize = 1 << 20;
/// How often a large charge looks for room.
const BIG_CHARGE_POLL: Duration = Duration::from_millis(5);

/// What one member key, or one client address, may hold across all its
/// connections, and how many connections it has.
struct Lane {
    bytes: Arc<Semaphore>,
    limit: u32,
    connections: AtomicUsize,
}

/// Whose lane: a member's key, or a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LaneKey {
    Member(PublicKey),
    Client(std::net::IpAddr),
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
}

impl Shared {
    fn allowance(&self, class: Class) -> &Allowance {
        match class {
            Class::Members => &self.member_allowance,
            Class::Clients => &self.client_allowance,
        }
    }

    /// Take a request slot for `class`, waiting until `deadline` at most.
    async fn take_slot(
        &self,
        class: Class,
        charge: &mut Charge,
        deadline: Instant,
    ) -> Result<(), Busy> {
        let allowance = self.allowance(class);
        let slot =
            tokio::time::timeout_at(deadline, Arc::clone(&allowance.requests).acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(Busy::Requests {
                    class,
                    limit: allowance.slots,
                })?;
        charge.slot = Some(slot);
        Ok(())
    }

    /// Add `bytes` to `charge`, from the lane's cap and the class's budget,
    /// waiting until `deadline` at most.
    async fn charge(
        &self,
        lane: &Lane,
        class: Class,
        charge: &mut Charge,
        bytes: usize,
        deadline: Instant,
    ) -> Result<(), Busy> {
        if bytes == 0 {
            return Ok(());
        }
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        let connection = acquire(&lane.bytes, permits, deadline)
            .await
            .ok_or(Busy::Connection { limit: lane.limit })?;
        let allowance = self.allowance(class);
        let shared = acquire(&allowance.bytes, permits, deadline)
            .await
            .ok_or(Busy::Bytes {
                class,
                limit: allowance.capacity,
            })?;
        merge(&mut charge.connection, connection);
        merge(&mut charge.class, shared);
        Ok(())
    }

    /// The lane of `key`, made on first use.
    fn lane(&self, key: LaneKey) -> Arc<Lane> {
        let mut lanes = lock(&self.lanes);
        if let Some(lane) = lanes.get(&key).and_then(std::sync::Weak::upgrade) {
            return lane;
        }
        lanes.retain(|_, lane| lane.strong_count() > 0);
        let limit = self.config.connection_inflight_bytes;
        let lane = Arc::new(Lane {
            bytes: Arc::new(Semaphore::new(limit as usize)),
            limit,
            connections: AtomicUsize::new(0),
        });
        lanes.insert(key, Arc::downgrade(&lane));
        lane
    }

    fn budget_deadline(&self) -> Instant {
        Instant::now() + self.config.budget_wait
    }
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
        let (endpoint, config) = config
            .bind(listen, Some(Arc::new(quic)))
            .map_err(|source| NetError::Bind {
                address: listen,
                source,
            })?;
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

/// Decrements a counter when dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handshake in progress, counted in total and per address.
struct Handshaking {
    shared: Arc<Shared>,
    ip: std::net::IpAddr,
}

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.shared.handshakes.fetch_sub(1, Ordering::AcqRel);
        let mut by_ip = lock(&self.shared.handshakes_by_ip);
        if let Some(count) = by_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The longest a handshake may hold its place.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        let ip = remote.ip();
        let handshaking = shared.handshakes.load(Ordering::Acquire);
        let limit = shared.config.max_handshakes as usize;
        let from_ip = lock(&shared.handshakes_by_ip)
            .get(&ip)
            .copied()
            .unwrap_or(0);
        if handshaking >= limit || from_ip >= shared.config.max_handshakes_per_ip as usize {
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            debug!(peer = %remote, handshaking, from_ip, "too many handshakes; connection refused");
            incoming.refuse();
            continue;
        }
        if handshaking >= (limit / 8).max(1)
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            // Under load, a caller must show it receives at the address it
            // claims before the handshake costs the server anything.
            shared.stats.retries.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        shared.handshakes.fetch_add(1, Ordering::AcqRel);
        *lock(&shared.handshakes_by_ip).entry(ip).or_insert(0) += 1;
        let handshaking = Handshaking {
            shared: Arc::clone(&shared),
            ip,
        };
        tokio::spawn(serve_connection(incoming, handshaking));
    }
}

async fn serve_connection(incoming: quinn::Incoming, handshaking: Handshaking) {
    let remote = incoming.remote_address();
    let shared = Arc::clone(&handshaking.shared);
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT.min(shared.config.connect_timeout),
        incoming,
    )
    .await;
    drop(handshaking);
    let connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            debug!(peer = %remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            debug!(peer = %remote, "handshake not finished in time");
            return;
        }
    };
    let key = tls::peer_key(&connection);
    let member = key.filter(|key| shared.members.contains(key));
    let refuse = |reason: &str| {
        shared
            .stats
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
        debug!(peer = %remote, key = ?key, reason, "connection refused");
        connection.close(codes::BUSY, reason.as_bytes());
    };
    // The lane (one per member key, one per client address) and the seats
    // are held for the connection's life.
    let lane = shared.lane(match member {
        Some(key) => LaneKey::Member(key),
        None => LaneKey::Client(remote.ip()),
    });
    let on_lane = lane.connections.fetch_add(1, Ordering::AcqRel);
    let _lane_seat = Counted(&lane.connections);
    let _client_seat = match member {
        Some(_) => {
            if on_lane >= shared.config.max_connections_per_member as usize {
                refuse("too many connections under this member's key");
                return;
            }
            // Proven a member: the full window and stream count.
            connection.set_receive_window(VarInt::from_u32(shared.config.connection_window));
            connection.set_max_concurrent_bi_streams(VarInt::from_u32(
                shared.config.max_streams_per_connection,
            ));
            None
        }
        None => {
            let held = shared.client_connections.fetch_add(1, Ordering::AcqRel);
            let seat = Counted(&shared.client_connections);
            if on_lane >= shared.config.max_client_connections_per_ip as usize {
                refuse("too many connections from this address; reuse one connection");
                return;
            }
            if held >= shared.config.max_client_connections as usize {
                refuse("the node holds as many client connections as it serves; retry later or use another node");
                return;
            }
            Some(seat)
        }
    };
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    debug!(peer = %remote, key = ?key, "connection accepted");
    loop {
        match connection.accept_bi().await {
            Ok((send, recv)) => {
                let shared = Arc::clone(&shared);
                let lane = Arc::clone(&lane);
                tokio::spawn(async move {
                    shared.inflight.fetch_add(1, Ordering::AcqRel);
                    serve_stream(&shared, &lane, key, remote, send, recv).await;
                    if shared.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
                        shared.idle.notify_waiters();
                    }
                });
            }
            Err(e) => {
                debug!(peer = %remote, reason = %e, "connection closed");
                return;
            }
        }
    }
}

async fn serve_stream(
    shared: &Shared,
    lane: &Arc<Lane>,
    key: Option<PublicKey>,
    remote: SocketAddr,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let Some((mut reply, mut charge, class)) =
        exchange(shared, lane, key, remote, &mut send, &mut recv).await
    else {
        shared.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // The answer holds bytes for exactly its length until the caller has
    // acknowledged it (QUIC keeps it buffered until then), or the write
    // deadline passes. A refusal's short text is sent as it is.
    let length = reply.body.len();
    if matches!(reply.status, Status::Ok | Status::Failed) && length > charge.bytes() {
        let more = length - charge.bytes();
        if let Err(busy) = shared
            .charge(lane, class, &mut charge, more, shared.budget_deadline())
            .await
        {
            shared.stats.busy.fetch_add(1, Ordering::Relaxed);
            reply = Reply::text(Status::Unavailable, busy.to_string());
        }
    }
    charge.shrink_to(reply.body.len());
    charge.slot = None;
    shared.stats.count(reply.status);
    let length = reply.body.len();
    let header = frame::response_header(reply.status, u32::try_from(length).unwrap_or(u32::MAX));
    let deadline = Instant::now() + shared.config.response_write_timeout;
    let written =
        tokio::time::timeout_at(deadline, send.write_all_chunks(&mut [header, reply.body])).await;
    match written {
        Ok(Ok(())) => {
            shared
                .stats
                .bytes_out
                .fetch_add(length as u64, Ordering::Relaxed);
            let _ = send.finish();
            // Stay in flight until the caller has the whole answer, so that a
            // shutdown waiting for this request does not cut it off.
            if tokio::time::timeout_at(deadline, send.stopped())
                .await
                .is_err()
            {
                shared.stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                let _ = send.reset(codes::TOO_SLOW);
            }
        }
        Ok(Err(e)) => debug!(peer = %remote, error = %e, "response not delivered"),
        Err(_) => {
            shared.stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
            let _ = send.reset(codes::TOO_SLOW);
            debug!(
                peer = %remote,
                timeout = ?shared.config.response_write_timeout,
                "the caller did not read its answer in time; abandoned"
            );
        }
    }
    drop(charge);
}

/// Permits a body of `length` bytes takes from a budget; never more than the
/// whole budget, so one large body waits for the others instead of forever.
pub(crate) fn budget_permits(length: usize, config: &NetConfig) -> u32 {
    u32::try_from(length)
        .unwrap_or(u32::MAX)
        .min(config.max_inflight_bytes)
}

/// The smallest buffer a multi-chunk body starts with.
const MIN_BODY_BUFFER: usize = 64 << 10;

/// Why a request body was not read.
enum BodyError {
    Frame(frame::FrameError),
    Busy(Busy),
}

/// Read a body of exactly `length` bytes, then the end of the stream,
/// charging its buffer to `charge` as it grows: a header that announces a
/// large body costs nothing until the bytes arrive, and the buffer never
/// exceeds twice what has arrived.
async fn read_charged_body(
    shared: &Shared,
    lane: &Lane,
    class: Class,
    charge: &mut Charge,
    recv: &mut RecvStream,
    length: usize,
) -> Result<Bytes, BodyError> {
    let mut buffer: Vec<u8> = Vec::new();
    let mut got = 0;
    while got < length {
        let chunk = recv
            .read_chunk(length - got, true)
            .await
            .map_err(|e| BodyError::Frame(e.into()))?
            .ok_or(BodyError::Frame(frame::FrameError::Truncated {
                got,
                expected: length,
            }))?;
        let bytes = chunk.bytes;
        if got == 0 && bytes.len() == length {
            // The whole body in one piece: kept as it is, without a copy.
            shared
                .charge(lane, class, charge, length, shared.budget_deadline())
                .await
                .map_err(BodyError::Busy)?;
            expect_end(recv).await?;
            return Ok(bytes);
        }
        let needed = got + bytes.len();
        if needed > buffer.capacity() {
            let grow_to = needed
                .max(buffer.capacity().saturating_mul(2))
                .max(MIN_BODY_BUFFER)
                .min(length);
            shared
                .charge(
                    lane,
                    class,
                    charge,
                    grow_to - buffer.capacity(),
                    shared.budget_deadline(),
                )
                .await
                .map_err(BodyError::Busy)?;
            buffer.reserve_exact(grow_to - buffer.len());
        }
        buffer.extend_from_slice(&bytes);
        got = needed;
    }
    expect_end(recv).await?;
    Ok(Bytes::from(buffer))
}

/// The stream ends where the body does.
async fn expect_end(recv: &mut RecvStream) -> Result<(), BodyError> {
    match recv.read_chunk(1, true).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(BodyError::Frame(frame::FrameError::TrailingBytes)),
        Err(e) => Err(BodyError::Frame(e.into())),
    }
}

/// The largest share of a method's response limit reserved before its
/// handler runs; a larger answer takes the rest before it is written.
const RESPONSE_RESERVE: u32 = 4 << 20;

/// Read one request and run its handler. `None`: the caller went away.
/// The answer comes with the budget it holds and the class it was charged to.
async fn exchange(
    shared: &Shared,
    lane: &Arc<Lane>,
    key: Option<PublicKey>,
    remote: SocketAddr,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> Option<(Reply, Charge, Class)> {
    let refuse = |recv: &mut RecvStream, status: Status, text: String| {
        let _ = recv.stop(codes::REFUSED);
        debug!(peer = %remote, %text, "request refused");
        Some((Reply::text(status, text), Charge::default(), Class::Clients))
    };
    if *shared.shutting_down.borrow() {
        let _ = recv.stop(codes::SHUTDOWN);
        return Some((
            Reply::text(
                Status::Unavailable,
                "the node is shutting down; retry on another node",
            ),
            Charge::default(),
            Class::Clients,
        ));
    }
    let timeout = shared.config.request_read_timeout;
    let read_deadline = Instant::now() + timeout;
    let header = match tokio::time::timeout_at(
        read_deadline,
        frame::read_header::<REQUEST_HEADER_LEN>(recv),
    )
    .await
    {
        Ok(Ok(header)) => header,
        Ok(Err(e)) => return refuse(recv, Status::BadRequest, format!("bad request header: {e}")),
        Err(_) => {
            return refuse(
                recv,
                Status::BadRequest,
                format!("no request header within {timeout:?}"),
            )
        }
    };
    let (kind, length) = frame::parse_request_header(&header);
    let Some(route) = shared.router.routes.get(&kind) else {
        return refuse(
            recv,
            Status::BadRequest,
            format!("unknown request kind {kind}"),
        );
    };
    if length > route.max_request {
        let text = format!(
            "`{}` request of {length} bytes exceeds the limit of {} bytes",
            route.name, route.max_request
        );
        return refuse(recv, Status::BadRequest, text);
    }
    let caller = match key {
        Some(key) if shared.members.contains(&key) => Caller::Member {
            key,
            address: remote,
        },
        key => Caller::Client {
            key,
            address: remote,
        },
    };
    let class = match caller {
        Caller::Member { .. } => Class::Members,
        Caller::Client { .. } => Class::Clients,
    };
    if route.access == Access::PeerOnly && caller.member().is_none() {
        let text = format!(
            "`{}` is served to committee members only, and the {caller} is not one",
            route.name
        );
        return refuse(recv, Status::Refused, text);
    }
    let busy = |recv: &mut RecvStream, busy: Busy| {
        shared.stats.busy.fetch_add(1, Ordering::Relaxed);
        let _ = recv.stop(codes::BUSY);
        debug!(peer = %remote, method = route.name, %busy, "request turned away");
        Some((
            Reply::text(Status::Unavailable, busy.to_string()),
            Charge::default(),
            class,
        ))
    };
    let mut charge = Charge::default();
    let body = match tokio::time::timeout_at(
        read_deadline,
        read_charged_body(shared, lane, class, &mut charge, recv, length as usize),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::Busy(e))) => return busy(recv, e),
        Ok(Err(BodyError::Frame(e))) => {
            return refuse(
                recv,
                Status::BadRequest,
                format!("bad `{}` request body: {e}", route.name),
            )
        }
        Err(_) => {
            return refuse(
                recv,
                Status::BadRequest,
                format!(
                    "`{}` request body not received within {timeout:?}",
                    route.name
                ),
            )
        }
    };
    shared
        .stats
        .bytes_in
        .fetch_add(u64::from(length), Ordering::Relaxed);
    // A request slot, and room for a typical answer, once the request is
    // whole and before its answer is built: a stream that only announces a
    // body holds neither.
    if let Err(e) = shared
        .take_slot(class, &mut charge, shared.budget_deadline())
        .await
    {
        return busy(recv, e);
    }
    let reserve = route.max_response.min(RESPONSE_RESERVE) as usize;
    if let Err(e) = shared
        .charge(lane, class, &mut charge, reserve, shared.budget_deadline())
        .await
    {
        return busy(recv, e);
    }
    // The handler, and any blocking work it starts through
    // [`spawn_blocking`], runs inside the request's budget.
    let allowance = shared.allowance(class);
    let held = Arc::new(Held {
        charge: Mutex::new(charge),
        class,
        allowance_bytes: Arc::clone(&allowance.bytes),
        allowance_limit: allowance.capacity,
        lane: Arc::clone(lane),
        wait: shared.config.budget_wait,
    });
    let work = HELD.scope(Arc::clone(&held), (route.handler)(caller, body));
    let stopped = send.stopped();
    let mut reply = tokio::select! {
        reply = tokio::time::timeout(route.deadline, work) => match reply {
            Ok(reply) => reply,
            Err(_) => {
                shared.stats.handler_timeouts.fetch_add(1, Ordering::Relaxed);
                warn!(peer = %remote, method = route.name, deadline = ?route.deadline, "handler stopped at its deadline");
                Reply::text(
                    Status::Unavailable,
                    format!(
                        "`{}` did not finish within {:?} on this node; retry or ask another node",
                        route.name, route.deadline
                    ),
                )
            }
        },
        _ = stopped => return None,
    };
    // Work the handler left behind keeps its share; the answer takes anew.
    let charge = Arc::try_unwrap(held)
        .map(|held| {
            held.charge
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .unwrap_or_default();
    let limit = route.response_limit(reply.status);
    if reply.body.len() > limit as usize {
        warn!(
            method = route.name,
            length = reply.body.len(),
            limit,
            "answer over the method's limit withheld"
        );
        reply = Reply::text(
            Status::Unavailable,
            format!(
                "this node's `{}` answer of {} bytes exceeds the method's limit of {limit} bytes; report this bug to the node's operator",
                route.name,
                reply.body.len()
            ),
        );
    }
    Some((reply, charge, class))
}
