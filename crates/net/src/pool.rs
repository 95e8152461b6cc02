//! The calling side: one reused connection per peer, dialed on demand with
//! backoff, with health that callers can rank peers by.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use floe_consensus::{KeyPair, PublicKey};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, Endpoint, ReadError, RecvStream, SendStream, WriteError};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::config::NetConfig;
use crate::error::{PeerRef, Refusal, RpcError};
use crate::frame::{self, codes, FrameError, Status, RESPONSE_HEADER_LEN};
use crate::tls::{self, TlsIdentity, SERVER_NAME};
use crate::NetError;
use floe_wire::{Method, Wire};

mod health;
pub use health::{PathHealth, PeerHealth};

/// How long a peer that lied is ranked last: doubling with each lie.
const LIE_PENALTY: Duration = Duration::from_secs(300);
/// The longest penalty.
const MAX_PENALTY: Duration = Duration::from_secs(3600);
/// How long a peer that timed out is ranked last.
const TIMEOUT_PENALTY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct HealthState {
    last_success: Option<SystemTime>,
    last_failure: Option<SystemTime>,
    last_error: Option<String>,
    consecutive_failures: u32,
    dial_failures: u32,
    next_dial: Option<Instant>,
    calls: u64,
    failures: u64,
    misbehaviours: u64,
    last_misbehaviour: Option<String>,
    penalized_until: Option<Instant>,
}

impl HealthState {
    fn penalize(&mut self, penalty: Duration) {
        let until = Instant::now() + penalty.min(MAX_PENALTY);
        self.penalized_until = Some(self.penalized_until.map_or(until, |u| u.max(until)));
    }
}

struct Slot {
    peer: PeerRef,
    /// TLS toward this peer (its key pinned); the transport is chosen per
    /// dial, by the address the peer resolves to.
    crypto: Arc<QuicClientConfig>,
    connection: tokio::sync::Mutex<Option<quinn::Connection>>,
    /// A copy of the connection for lock-free health reads.
    current: Mutex<Option<quinn::Connection>>,
    health: Mutex<HealthState>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    fn set_current(&self, connection: Option<quinn::Connection>) {
        *lock(&self.current) = connection;
    }

    fn record(&self, outcome: Result<(), String>) {
        let mut health = lock(&self.health);
        health.calls += 1;
        match outcome {
            Ok(()) => {
                health.last_success = Some(SystemTime::now());
                health.consecutive_failures = 0;
            }
            Err(error) => {
                health.last_failure = Some(SystemTime::now());
                health.last_error = Some(error);
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                health.failures += 1;
            }
        }
    }
}

/// Connections to a set of peers, pinned to their keys.
pub struct Pool {
    endpoint: Endpoint,
    identity: Option<Arc<TlsIdentity>>,
    config: NetConfig,
    peers: RwLock<HashMap<PublicKey, Arc<Slot>>>,
    budget: Semaphore,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("peers", &self.read_peers().len())
            .finish_non_exhaustive()
    }
}

enum Dial {
    Failed(String),
    Refused(Refusal),
}

/// A stream that is reset and stopped if the call is abandoned midway.
struct StreamGuard {
    send: SendStream,
    recv: RecvStream,
    done: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send.reset(codes::CANCELLED);
            let _ = self.recv.stop(codes::CANCELLED);
        }
    }
}

impl Pool {
    /// A pool dialing from a fresh socket on `bind` (use port 0), presenting
    /// `key`'s certificate if given (members do; plain clients need not).
    pub fn new(
        bind: SocketAddr,
        key: Option<&KeyPair>,
        config: NetConfig,
    ) -> Result<Self, NetError> {
        let (endpoint, config) = config.bind(bind, None).map_err(|source| NetError::Bind {
            address: bind,
            source,
        })?;
        Self::with_endpoint(endpoint, key, config)
    }

    /// A pool dialing from an existing endpoint (for example a server's, so
    /// a node uses one socket both ways).
    pub fn with_endpoint(
        endpoint: Endpoint,
        key: Option<&KeyPair>,
        config: NetConfig,
    ) -> Result<Self, NetError> {
        let identity = key.map(TlsIdentity::new).transpose()?.map(Arc::new);
        Ok(Self {
            endpoint,
            identity,
            budget: Semaphore::new(config.max_inflight_bytes as usize),
            config,
            peers: RwLock::new(HashMap::new()),
        })
    }

    fn read_peers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PublicKey, Arc<Slot>>> {
        self.peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Add a peer, or change its address. A changed address drops the old
    /// connection and health.
    pub fn add_peer(&self, key: PublicKey, address: impl Into<String>) -> Result<(), NetError> {
        let address = address.into();
        if self
            .read_peers()
            .get(&key)
            .is_some_and(|slot| slot.peer.address == address)
        {
            return Ok(());
        }
        let tls = tls::client_config(key, self.identity.as_deref(), &self.config.alpn)?;
        let quic = QuicClientConfig::try_from(tls).map_err(|e| NetError::Quic(e.to_string()))?;
        let slot = Arc::new(Slot {
            peer: PeerRef { key, address },
            crypto: Arc::new(quic),
            connection: tokio::sync::Mutex::new(None),
            current: Mutex::new(None),
            health: Mutex::new(HealthState::default()),
        });
        self.peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, slot);
        Ok(())
    }

    /// Forget a peer.
    pub fn remove_peer(&self, key: &PublicKey) {
        self.peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Health of every known peer.
    pub fn health(&self) -> Vec<PeerHealth> {
        let peers = self.read_peers();
        let mut all: Vec<_> = peers.values().map(|slot| health_of(slot)).collect();
        all.sort_by_key(|health| health.peer.key);
        all
    }

    /// Reports every peer whose answer in `failures` was a lie (see
    /// [`Pool::report_misbehaviour`]); `key` names the peer behind each.
    pub fn report_lies<K>(
        &self,
        failures: &[(K, floe_consensus::quorum::Failure)],
        key: impl Fn(&K) -> Option<PublicKey>,
    ) {
        for (peer, failure) in failures.iter().filter(|(_, f)| f.is_lie()) {
            if let Some(key) = key(peer) {
                self.report_misbehaviour(&key, failure.to_string());
            }
        }
    }

    /// Records that `peer` answered with something provably false or
    /// hostile (a proof about another blob, a sliver that fails its
    /// metadata, an answer trickled past its deadline): it is ranked last
    /// for a while, longer with each report, whatever it answers meanwhile.
    pub fn report_misbehaviour(&self, peer: &PublicKey, what: impl Into<String>) {
        let Some(slot) = self.read_peers().get(peer).cloned() else {
            return;
        };
        let what = what.into();
        tracing::warn!(%peer, address = %slot.peer.address, misbehaviour = %what, "peer misbehaved; ranked last");
        let mut health = lock(&slot.health);
        health.misbehaviours += 1;
        health.last_misbehaviour = Some(what);
        let doublings = u32::try_from(health.misbehaviours - 1)
            .unwrap_or(u32::MAX)
            .min(8);
        health.penalize(LIE_PENALTY.saturating_mul(1 << doublings));
    }

    /// Records that `peer` kept a call waiting far longer than its peers
    /// answered (a caller gave up on it): it is ranked last for 30 s, as
    /// after a timeout.
    pub fn report_slow(&self, peer: &PublicKey) {
        if let Some(slot) = self.read_peers().get(peer).cloned() {
            lock(&slot.health).penalize(TIMEOUT_PENALTY);
        }
    }

    /// Whether `peer` is ranked last for now (it lied or was slow recently).
    pub fn is_penalized(&self, peer: &PublicKey) -> bool {
        self.read_peers().get(peer).is_some_and(|slot| {
            lock(&slot.health)
                .penalized_until
                .is_some_and(|until| until > Instant::now())
        })
    }

    /// `keys` ordered healthiest first: peers not penalized for lies or
    /// timeouts, then fewest consecutive failures, then connected before
    /// not, then lowest round-trip time. Unknown keys last.
    pub fn rank(&self, keys: &[PublicKey]) -> Vec<PublicKey> {
        let peers = self.read_peers();
        let mut scored: Vec<_> = keys
            .iter()
            .map(|key| {
                let score = peers.get(key).map(|slot| {
                    let health = health_of(slot);
                    (
                        health.penalized,
                        health.consecutive_failures,
                        !health.connected,
                        health.rtt.unwrap_or(Duration::MAX),
                    )
                });
                (score.is_none(), score, *key)
            })
            .collect();
        scored.sort();
        scored.into_iter().map(|(_, _, key)| key).collect()
    }

    /// Call `M` on `peer` with the method's default timeout.
    pub async fn call<M: Method>(
        &self,
        peer: &PublicKey,
        request: &M::Request,
    ) -> Result<M::Response, RpcError<M::Error>> {
        self.call_with_timeout::<M>(peer, request, M::TIMEOUT).await
    }

    /// Call `M` on `peer`, giving up after `timeout` (dial included). Dropping
    /// the returned future cancels the request on the wire.
    pub async fn call_with_timeout<M: Method>(
        &self,
        peer: &PublicKey,
        request: &M::Request,
        timeout: Duration,
    ) -> Result<M::Response, RpcError<M::Error>> {
        let Some(slot) = self.read_peers().get(peer).cloned() else {
            return Err(RpcError::Unreachable {
                peer: PeerRef {
                    key: *peer,
                    address: "(unknown)".into(),
                },
                reason: "this key is not a known peer; check the committee file".into(),
            });
        };
        let result = match tokio::time::timeout(timeout, self.exchange::<M>(&slot, request)).await {
            Ok(result) => result,
            Err(_) => {
                // A connection that cannot answer in time may be dead without
                // knowing it (a peer restarted without closing): dial afresh
                // next time; calls still running on it keep it alive.
                // Never waited for: a dial in progress holds the lock and
                // replaces the connection anyway, and waiting for it would
                // stretch this call far past its timeout.
                if let Ok(mut pooled) = slot.connection.try_lock() {
                    *pooled = None;
                    slot.set_current(None);
                }
                Err(RpcError::TimedOut {
                    peer: slot.peer.clone(),
                    method: M::NAME,
                    after: timeout,
                })
            }
        };
        if matches!(result, Err(RpcError::TimedOut { .. })) {
            lock(&slot.health).penalize(TIMEOUT_PENALTY);
        }
        match &result {
            Err(e) if e.is_peer_failure() => slot.record(Err(e.to_string())),
            Err(RpcError::TooLarge { .. }) => {}
            _ => slot.record(Ok(())),
        }
        result
    }

    /// The live connection to `peer`, dialing if needed. For diagnostics and
    /// tests that need to speak below the RPC layer.
    pub async fn connection(&self, peer: &PublicKey) -> Result<quinn::Connection, NetError> {
        let slot = self
            .read_peers()
            .get(peer)
            .cloned()
            .ok_or(NetError::UnknownPeer(*peer))?;
        match self.dial(&slot).await {
            Ok((connection, _)) => Ok(connection),
            Err(Dial::Failed(reason)) => Err(NetError::Dial(reason)),
            Err(Dial::Refused(refusal)) => Err(NetError::Dial(refusal.to_string())),
        }
    }

    /// Close every connection and wait until the peers have been told.
    pub async fn close(&self) {
        self.endpoint.close(codes::SHUTDOWN, b"pool closed");
        crate::config::wait_idle(&self.endpoint).await;
    }

    /// The pooled connection, or a new one. `bool`: whether it was reused.
    async fn dial(&self, slot: &Slot) -> Result<(quinn::Connection, bool), Dial> {
        let mut pooled = slot.connection.lock().await;
        if let Some(connection) = pooled.as_ref() {
            if connection.close_reason().is_none() {
                return Ok((connection.clone(), true));
            }
        }
        *pooled = None;
        slot.set_current(None);
        let (next_dial, failures) = {
            let health = lock(&slot.health);
            (health.next_dial, health.dial_failures)
        };
        if let Some(next) = next_dial {
            let now = Instant::now();
            if next > now {
                return Err(Dial::Failed(format!(
                    "{failures} dial(s) failed in a row; next attempt in {:?}",
                    next - now
                )));
            }
        }
        let outcome = self.dial_once(slot).await;
        let mut health = lock(&slot.health);
        match outcome {
            Ok(connection) => {
                health.dial_failures = 0;
                health.next_dial = None;
                *pooled = Some(connection.clone());
                slot.set_current(Some(connection.clone()));
                debug!(peer = %slot.peer, "connected");
                Ok((connection, false))
            }
            Err(e) => {
                health.dial_failures = health.dial_failures.saturating_add(1);
                health.next_dial = Some(Instant::now() + self.config.backoff(health.dial_failures));
                Err(e)
            }
        }
    }

    async fn dial_once(&self, slot: &Slot) -> Result<quinn::Connection, Dial> {
        let address = resolve(&slot.peer.address).await.map_err(Dial::Failed)?;
        // Datagrams as large as this peer's path may carry.
        let mut client_config = quinn::ClientConfig::new(slot.crypto.clone());
        client_config.transport_config(self.config.transport(self.config.path_to(address)));
        let connecting = self
            .endpoint
            .connect_with(client_config, address, SERVER_NAME)
            .map_err(|e| Dial::Failed(e.to_string()))?;
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(classify(&e, &self.config.alpn)),
            Err(_) => Err(Dial::Failed(format!(
                "no handshake within {:?}",
                self.config.connect_timeout
            ))),
        }
    }

    async fn exchange<M: Method>(
        &self,
        slot: &Slot,
        request: &M::Request,
    ) -> Result<M::Response, RpcError<M::Error>> {
        let peer = || slot.peer.clone();
        let protocol = |violation: String| RpcError::Protocol {
            peer: peer(),
            method: M::NAME,
            violation,
        };
        let unreachable = |reason: String| RpcError::Unreachable {
            peer: peer(),
            reason,
        };
        let body = request
            .to_chunks()
            .map_err(|e| protocol(format!("could not encode the request: {e}")))?;
        let size: usize = body.iter().map(Bytes::len).sum();
        let length = match u32::try_from(size) {
            Ok(length) if length <= M::MAX_REQUEST_BYTES => length,
            _ => {
                return Err(RpcError::TooLarge {
                    method: M::NAME,
                    size,
                    limit: M::MAX_REQUEST_BYTES,
                })
            }
        };
        let dial_error = |e: Dial| match e {
            Dial::Failed(reason) => unreachable(reason),
            Dial::Refused(refusal) => RpcError::Refused {
                peer: peer(),
                method: M::NAME,
                refusal,
            },
        };
        let (mut connection, reused) = self.dial(slot).await.map_err(dial_error)?;
        let (send, recv) = match connection.open_bi().await {
            Ok(streams) => streams,
            // A pooled connection may have died since it was last used: one
            // fresh dial before giving up.
            Err(_) if reused => {
                let mut pooled = slot.connection.lock().await;
                if pooled
                    .as_ref()
                    .is_some_and(|c| c.stable_id() == connection.stable_id())
                {
                    *pooled = None;
                }
                drop(pooled);
                connection = self.dial(slot).await.map_err(dial_error)?.0;
                connection
                    .open_bi()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?
            }
            Err(e) => return Err(unreachable(e.to_string())),
        };
        let mut stream = StreamGuard {
            send,
            recv,
            done: false,
        };

        let permit = self
            .budget
            .acquire_many(budget_permits(size, &self.config))
            .await;
        let mut chunks = Vec::with_capacity(body.len() + 1);
        chunks.push(frame::request_header(M::KIND, length));
        chunks.extend(body);
        match stream.send.write_all_chunks(&mut chunks).await {
            // The server stopped reading (it refused the request): its answer
            // says why.
            Ok(()) | Err(WriteError::Stopped(_)) => {}
            Err(WriteError::ConnectionLost(e)) => return Err(unreachable(e.to_string())),
            Err(e) => return Err(protocol(format!("request not sent: {e}"))),
        }
        let _ = stream.send.finish();
        drop(permit);

        let read_error = |e: FrameError, what: &str| match e {
            FrameError::Stream(ReadError::ConnectionLost(e)) => unreachable(e.to_string()),
            FrameError::Stream(ReadError::Reset(code)) if code == codes::SHUTDOWN => {
                RpcError::Unavailable {
                    peer: peer(),
                    method: M::NAME,
                    reason: "the node is shutting down".into(),
                }
            }
            FrameError::Stream(ReadError::Reset(code)) if code == codes::TOO_SLOW => {
                RpcError::Unavailable {
                    peer: peer(),
                    method: M::NAME,
                    reason: "the node gave up writing an answer this side did not read in time; \
                             read answers promptly or ask for less at once"
                        .into(),
                }
            }
            e => protocol(format!("{what}: {e}")),
        };
        let header = frame::read_header::<RESPONSE_HEADER_LEN>(&mut stream.recv)
            .await
            .map_err(|e| read_error(e, "no response header"))?;
        let (status, length) = frame::parse_response_header(&header);
        let status = Status::from_byte(status)
            .ok_or_else(|| protocol(format!("unknown response status {status}")))?;
        let limit = match status {
            Status::Ok => M::MAX_RESPONSE_BYTES,
            Status::Failed => M::MAX_RESPONSE_BYTES.max(frame::MAX_ERROR_BYTES),
            Status::Refused | Status::BadRequest | Status::Unavailable => frame::MAX_TEXT_BYTES,
        };
        if length > limit {
            let _ = stream.recv.stop(codes::REFUSED);
            return Err(protocol(format!(
                "{status:?} response of {length} bytes exceeds the limit of {limit} bytes"
            )));
        }
        let permit = self
            .budget
            .acquire_many(budget_permits(length as usize, &self.config))
            .await;
        let body = frame::read_body(&mut stream.recv, length as usize)
            .await
            .map_err(|e| read_error(e, "bad response body"))?;
        drop(permit);
        stream.done = true;
        let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();
        match status {
            Status::Ok => M::Response::from_frame(body)
                .map_err(|e| protocol(format!("malformed response: {e}"))),
            Status::Failed => match M::Error::from_frame(body) {
                Ok(error) => Err(RpcError::Remote {
                    peer: peer(),
                    method: M::NAME,
                    error,
                }),
                Err(e) => Err(protocol(format!("malformed error response: {e}"))),
            },
            Status::Refused => Err(RpcError::Refused {
                peer: peer(),
                method: M::NAME,
                refusal: Refusal::Request(text(&body)),
            }),
            Status::BadRequest => Err(protocol(format!(
                "the server rejected the request: {}",
                text(&body)
            ))),
            Status::Unavailable => Err(RpcError::Unavailable {
                peer: peer(),
                method: M::NAME,
                reason: text(&body),
            }),
        }
    }
}

fn health_of(slot: &Slot) -> PeerHealth {
    let connection = lock(&slot.current)
        .clone()
        .filter(|c| c.close_reason().is_none());
    let health = lock(&slot.health);
    PeerHealth {
        peer: slot.peer.clone(),
        connected: connection.is_some(),
        last_success: health.last_success,
        last_failure: health.last_failure,
        last_error: health.last_error.clone(),
        consecutive_failures: health.consecutive_failures,
        rtt: connection.as_ref().map(quinn::Connection::rtt),
        path: connection.map(|c| {
            let path = c.stats().path;
            PathHealth {
                mtu: path.current_mtu,
                sent_packets: path.sent_packets,
                lost_packets: path.lost_packets,
                congestion_events: path.congestion_events,
                sent_probes: path.sent_plpmtud_probes,
                lost_probes: path.lost_plpmtud_probes,
                black_holes: path.black_holes_detected,
            }
        }),
        calls: health.calls,
        failures: health.failures,
        misbehaviours: health.misbehaviours,
        last_misbehaviour: health.last_misbehaviour.clone(),
        penalized: health.penalized_until.is_some_and(|u| u > Instant::now()),
    }
}

async fn resolve(address: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = address.parse() {
        return Ok(address);
    }
    tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}

/// TLS alert numbers (RFC 8446) carried in QUIC crypto error codes.
const ALERT_NO_APPLICATION_PROTOCOL: u64 = 120;
const CRYPTO_ERROR_BASE: u64 = 0x100;

fn alert_of(code: quinn::TransportErrorCode) -> Option<u64> {
    let code = u64::from(code);
    (CRYPTO_ERROR_BASE..CRYPTO_ERROR_BASE + 0x100)
        .contains(&code)
        .then(|| code - CRYPTO_ERROR_BASE)
}

fn classify(error: &ConnectionError, alpn: &[u8]) -> Dial {
    let version = || {
        Dial::Refused(Refusal::Version {
            ours: String::from_utf8_lossy(alpn).into_owned(),
        })
    };
    match error {
        // This side's verifier refused the server.
        ConnectionError::TransportError(e) => match alert_of(e.code) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => version(),
            Some(_) => Dial::Refused(Refusal::Identity(e.reason.clone())),
            None => Dial::Failed(e.to_string()),
        },
        // The server refused this side.
        ConnectionError::ConnectionClosed(close) => match alert_of(close.error_code) {
            Some(ALERT_NO_APPLICATION_PROTOCOL) => version(),
            Some(_) => Dial::Refused(Refusal::Certificate(close.to_string())),
            None => Dial::Failed(close.to_string()),
        },
        ConnectionError::VersionMismatch => Dial::Refused(Refusal::Version {
            ours: format!("QUIC v1 with {}", String::from_utf8_lossy(alpn)),
        }),
        e => Dial::Failed(e.to_string()),
    }
}

/// Permits a body of `length` bytes takes from a budget; never more than the
/// whole budget, so one large body waits for the others instead of forever.
fn budget_permits(length: usize, config: &NetConfig) -> u32 {
    u32::try_from(length)
        .unwrap_or(u32::MAX)
        .min(config.max_inflight_bytes)
}
