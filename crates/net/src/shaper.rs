//! A lab-only link shaper: wide-area links on one machine.
//!
//! This kernel has no netem, so links are shaped in user space, under QUIC:
//! [`ShapedSocket`] wraps the endpoint's UDP socket and holds back every
//! datagram it is asked to send for its link's one-way latency (with
//! jitter), drops a given fraction of them, and lets each link carry at most
//! its bandwidth, queueing up to [`LinkProfile::queue`] of it and dropping
//! the tail beyond (a router's buffer). QUIC above it is unchanged: loss
//! recovery, congestion control and path MTU discovery all see a real lossy,
//! slow path.
//!
//! A link is the pair of endpoint addresses. Each pair gets a fixed latency
//! within the profile's range, the same in both directions and in every
//! process (it is a hash of the two addresses), so a profile such as
//! `planet` gives a committee near and far members that stay where they are.
//! Jitter never reorders a link's datagrams (netem's does, which real paths
//! rarely do).
//!
//! Shaping is off unless a [`NetConfig`](crate::NetConfig) carries a
//! profile; nodes take one only from a `[lab]` config section or the
//! [`LAB_ENV`] variable, and say so loudly at start.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The environment variable a node or client reads a link profile from
/// (lab use only): a profile name or a spec, see [`LinkProfile`].
pub const LAB_ENV: &str = "FLOE_LAB_WAN";

/// Bytes a shaped endpoint holds back at once, over all its links; beyond
/// it datagrams are dropped as a full queue would drop them.
const MAX_HELD_BYTES: usize = 256 << 20;

/// Links a shaped endpoint keeps state for. Beyond it, links with nothing
/// in flight are forgotten (a link's latency is a function of its two
/// addresses, so one seen again gets the same); if all are busy, the
/// datagram to a new destination is dropped as a full queue would drop it.
const MAX_LINKS: usize = 4096;

/// What a shaped link does to the datagrams sent over it.
///
/// Written as a profile name (`continent`, `planet`, `lossy`, `lan`) or a
/// spec: `latency=40ms,jitter=10ms,loss=0.1%,bandwidth=1gbit[,queue=100ms][,mtu=1500]`,
/// where `latency` may be a range (`20-150ms`) that the links of a committee
/// are spread over.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkProfile {
    /// Shortest one-way latency of a link.
    pub latency_min: Duration,
    /// Longest one-way latency of a link (equal to the shortest for one
    /// fixed latency).
    pub latency_max: Duration,
    /// Each datagram's latency varies by up to this much either way.
    pub jitter: Duration,
    /// Fraction of datagrams dropped, from 0 to 1.
    pub loss: f64,
    /// Bits per second one link carries; 0 for no limit.
    pub bandwidth_bps: u64,
    /// How much sending time a link queues before it drops the tail.
    pub queue: Duration,
    /// The largest IP packet a link carries (1500 unless set): a larger
    /// datagram is dropped, as a router drops a packet it may not
    /// fragment, and path MTU discovery finds the limit.
    pub mtu: u16,
}

/// A link MTU as most of the internet has it.
const INTERNET_MTU: u16 = 1500;

impl LinkProfile {
    /// The named profiles.
    pub const NAMES: [&'static str; 4] = ["continent", "planet", "lossy", "lan"];

    /// A named profile: `continent` (40 ± 10 ms one way, 0.1 % loss,
    /// 1 Gbit/s), `planet` (links of 20 to 150 ms, ± 10 ms, 0.1 % loss,
    /// 1 Gbit/s), `lossy` (5 ± 2 ms, 2 % loss, 200 Mbit/s) and `lan`
    /// (0.25 ms, no loss, 10 Gbit/s).
    pub fn named(name: &str) -> Option<Self> {
        let ms = Duration::from_millis;
        let profile = |min: u64, max: u64, jitter: u64, loss: f64, gbit: f64| Self {
            latency_min: ms(min),
            latency_max: ms(max),
            jitter: ms(jitter),
            loss,
            bandwidth_bps: (gbit * 1e9) as u64,
            queue: ms(100),
            mtu: INTERNET_MTU,
        };
        Some(match name {
            "continent" => profile(40, 40, 10, 0.001, 1.0),
            "planet" => profile(20, 150, 10, 0.001, 1.0),
            "lossy" => profile(5, 5, 2, 0.02, 0.2),
            "lan" => Self {
                latency_min: Duration::from_micros(250),
                latency_max: Duration::from_micros(250),
                ..profile(0, 0, 0, 0.0, 10.0)
            },
            _ => return None,
        })
    }

    /// The profile [`LAB_ENV`] names, if it is set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(LAB_ENV) {
            Ok(value) if !value.trim().is_empty() => value
                .parse()
                .map(Some)
                .map_err(|e| format!("{LAB_ENV}={value:?}: {e}")),
            _ => Ok(None),
        }
    }

    /// The fixed one-way latency of the link between `a` and `b`: the same
    /// either way round and in every process.
    pub fn latency_between(&self, a: SocketAddr, b: SocketAddr) -> Duration {
        let spread = self.latency_max.saturating_sub(self.latency_min);
        if spread.is_zero() {
            return self.latency_min;
        }
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        // FNV-1a over both addresses: stable across processes and builds.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for byte in format!("{low}|{high}").bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        // FNV's high bits mix poorly: finish with splitmix64's mixer.
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^= hash >> 31;
        let fraction = (hash >> 11) as f64 / (1u64 << 53) as f64;
        self.latency_min + spread.mul_f64(fraction)
    }

    /// The time `bytes` take on the wire of one link (zero without a limit).
    pub fn transmit_time(&self, bytes: usize) -> Duration {
        if self.bandwidth_bps == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bandwidth_bps as f64)
    }
}

/// Why a link profile could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}; give one of continent, planet, lossy, lan, or a spec like latency=40ms,jitter=10ms,loss=0.1%,bandwidth=1gbit")]
pub struct ProfileError(String);

fn parse_duration(text: &str) -> Result<Duration, ProfileError> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return Err(ProfileError(format!("{text:?} needs a unit (us, ms, s)")));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| ProfileError(format!("{text:?} is not a duration")))?;
    if !(0.0..=60.0).contains(&(value * scale)) {
        return Err(ProfileError(format!("{text:?} is not within 0 to 60 s")));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_bandwidth(text: &str) -> Result<u64, ProfileError> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("/s").trim_end_matches("ps");
    let (number, scale) = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)]
        .into_iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n, scale)))
        .ok_or_else(|| ProfileError(format!("{text:?} needs a unit (gbit, mbit, kbit)")))?;
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| ProfileError(format!("{text:?} is not a bandwidth")))?;
    if !(value * scale >= 0.0 && value * scale <= 1e12) {
        return Err(ProfileError(format!(
            "{text:?} is not within 0 to 1000 gbit"
        )));
    }
    Ok((value * scale) as u64)
}

impl FromStr for LinkProfile {
    type Err = ProfileError;

    fn from_str(text: &str) -> Result<Self, ProfileError> {
        let text = text.trim();
        if let Some(profile) = Self::named(text) {
            return Ok(profile);
        }
        if !text.contains('=') {
            return Err(ProfileError(format!("no link profile {text:?}")));
        }
        let mut profile = Self {
            bandwidth_bps: 0,
            ..Self::named("lan").expect("a named profile")
        };
        profile.latency_min = Duration::ZERO;
        profile.latency_max = Duration::ZERO;
        profile.queue = Duration::from_millis(100);
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| ProfileError(format!("{part:?} is not key=value")))?;
            match key.trim() {
                "latency" => {
                    let (min, max) = match value.split_once('-') {
                        Some((min, max)) => {
                            let max = parse_duration(max)?;
                            let unit = max_unit(value);
                            (parse_duration(&format!("{}{unit}", min.trim()))?, max)
                        }
                        None => (parse_duration(value)?, parse_duration(value)?),
                    };
                    if min > max {
                        return Err(ProfileError(format!("latency {value:?}: low above high")));
                    }
                    (profile.latency_min, profile.latency_max) = (min, max);
                }
                "jitter" => profile.jitter = parse_duration(value)?,
                "queue" => profile.queue = parse_duration(value)?,
                "bandwidth" => profile.bandwidth_bps = parse_bandwidth(value)?,
                "mtu" => {
                    profile.mtu = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|mtu| *mtu >= 1280)
                        .ok_or_else(|| {
                            ProfileError(format!("mtu {value:?} is not 1280 to 65535 bytes"))
                        })?;
                }
                "loss" => {
                    let value = value.trim();
                    let (number, scale) = match value.strip_suffix('%') {
                        Some(n) => (n, 0.01),
                        None => (value, 1.0),
                    };
                    let loss = number
                        .trim()
                        .parse::<f64>()
                        .map(|n| n * scale)
                        .map_err(|_| ProfileError(format!("loss {value:?} is not a number")))?;
                    if !(0.0..1.0).contains(&loss) {
                        return Err(ProfileError(format!("loss {value:?} is not below 100 %")));
                    }
                    profile.loss = loss;
                }
                other => return Err(ProfileError(format!("unknown link setting {other:?}"))),
            }
        }
        Ok(profile)
    }
}

/// The unit a range like `20-150ms` ends in, for its low end.
fn max_unit(range: &str) -> &'static str {
    let range = range.trim();
    ["us", "ms", "s"]
        .into_iter()
        .find(|unit| range.ends_with(unit))
        .unwrap_or("ms")
}

impl fmt::Display for LinkProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        if self.latency_min == self.latency_max {
            write!(f, "latency={}ms", ms(self.latency_min))?;
        } else {
            write!(
                f,
                "latency={}-{}ms",
                ms(self.latency_min),
                ms(self.latency_max)
            )?;
        }
        write!(
            f,
            ",jitter={}ms,loss={}%,bandwidth={}mbit,queue={}ms,mtu={}",
            ms(self.jitter),
            self.loss * 100.0,
            self.bandwidth_bps as f64 / 1e6,
            ms(self.queue),
            self.mtu
        )
    }
}

impl serde::Serialize for LinkProfile {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LinkProfile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the shaped endpoints of this process did to the datagrams they
/// were given (see [`totals`]).
#[derive(Debug, Default)]
pub struct ShapeStats {
    /// Datagrams delivered to the network.
    pub sent: AtomicU64,
    /// Bytes of them.
    pub sent_bytes: AtomicU64,
    /// Datagrams dropped as random loss.
    pub lost: AtomicU64,
    /// Datagrams dropped because their link's queue was full.
    pub queue_drops: AtomicU64,
    /// Datagrams dropped as larger than their link's MTU.
    pub too_big: AtomicU64,
}

static TOTALS: ShapeStats = ShapeStats {
    sent: AtomicU64::new(0),
    sent_bytes: AtomicU64::new(0),
    lost: AtomicU64::new(0),
    queue_drops: AtomicU64::new(0),
    too_big: AtomicU64::new(0),
};

/// What every shaped endpoint of this process did so far.
pub fn totals() -> &'static ShapeStats {
    &TOTALS
}

/// A datagram held back until it is due.
struct Held {
    due: Instant,
    order: u64,
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
    contents: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// One link's state: when its wire is next free and when its last datagram
/// arrives (so that jitter does not reorder).
struct Link {
    latency: Duration,
    wire_free: Instant,
    last_due: Instant,
}

struct State {
    rng: StdRng,
    links: HashMap<SocketAddr, Link>,
    held: BinaryHeap<Reverse<Held>>,
    held_bytes: usize,
    order: u64,
}

/// A UDP socket whose outgoing datagrams cross a shaped link (see the
/// module documentation). Incoming datagrams pass as they are: each end
/// shapes what it sends.
pub struct ShapedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    local: SocketAddr,
    profile: LinkProfile,
    state: Mutex<State>,
    wake: Arc<Notify>,
}

impl fmt::Debug for ShapedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapedSocket")
            .field("local", &self.local)
            .field("profile", &self.profile.to_string())
            .finish()
    }
}

impl ShapedSocket {
    /// Shape what `inner` sends; starts the task that delivers held
    /// datagrams on the current tokio runtime. It ends when the socket is
    /// dropped.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, profile: LinkProfile) -> io::Result<Arc<Self>> {
        let local = inner.local_addr()?;
        let seed = u64::from(local.port()) ^ (std::process::id() as u64) << 16;
        let socket = Arc::new(Self {
            inner: Arc::clone(&inner),
            local,
            profile,
            state: Mutex::new(State {
                rng: StdRng::seed_from_u64(seed),
                links: HashMap::new(),
                held: BinaryHeap::new(),
                held_bytes: 0,
                order: 0,
            }),
            wake: Arc::new(Notify::new()),
        });
        tracing::warn!(
            local = %local,
            profile = %socket.profile,
            "LAB LINK SHAPING IS ON for this endpoint: every datagram it sends is delayed, \
             and some dropped, on purpose ({} or a [lab] config section); never run a real node like this",
            LAB_ENV
        );
        tokio::spawn(deliver(
            Arc::downgrade(&socket),
            Arc::clone(&socket.wake),
            inner,
        ));
        Ok(socket)
    }

    /// Hold back one datagram to `destination`, or drop it.
    fn admit(&self, state: &mut State, now: Instant, transmit: &Transmit, datagram: &[u8]) {
        let ipv4 = match transmit.destination.ip() {
            IpAddr::V4(_) => true,
            IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some(),
        };
        let headers = if ipv4 { 28 } else { 48 };
        if datagram.len() + headers > usize::from(self.profile.mtu) {
            TOTALS.too_big.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.profile.loss > 0.0 && state.rng.gen::<f64>() < self.profile.loss {
            TOTALS.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if state.held_bytes + datagram.len() > MAX_HELD_BYTES {
            TOTALS.queue_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter = self.profile.jitter.as_secs_f64();
        let jitter = if jitter > 0.0 {
            state.rng.gen_range(-jitter..=jitter)
        } else {
            0.0
        };
        let profile = &self.profile;
        // An endpoint bound to 0.0.0.0 is seen by its peers at the address
        // it sends to: hash that, so both ends agree on the link.
        let local = if self.local.ip().is_unspecified() {
            SocketAddr::new(transmit.destination.ip(), self.local.port())
        } else {
            self.local
        };
        if state.links.len() >= MAX_LINKS && !state.links.contains_key(&transmit.destination) {
            state.links.retain(|_, link| link.last_due > now);
            if state.links.len() >= MAX_LINKS {
                TOTALS.queue_drops.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let link = state
            .links
            .entry(transmit.destination)
            .or_insert_with(|| Link {
                latency: profile.latency_between(local, transmit.destination),
                wire_free: now,
                last_due: now,
            });
        let start = link.wire_free.max(now);
        if start - now > profile.queue {
            TOTALS.queue_drops.fetch_add(1, Ordering::Relaxed);
            return;
        }
        link.wire_free = start + profile.transmit_time(datagram.len());
        let latency = Duration::from_secs_f64((link.latency.as_secs_f64() + jitter).max(0.0));
        let due = (link.wire_free + latency).max(link.last_due);
        link.last_due = due;
        state.order += 1;
        state.held_bytes += datagram.len();
        let order = state.order;
        state.held.push(Reverse(Held {
            due,
            order,
            destination: transmit.destination,
            ecn: transmit.ecn,
            src_ip: transmit.src_ip,
            contents: datagram.to_vec(),
        }));
    }

    /// Datagrams due by `now`, and when the next one is due.
    fn take_due(&self, now: Instant) -> (Vec<Held>, Option<Instant>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while let Some(Reverse(next)) = state.held.peek() {
            if next.due > now {
                let at = next.due;
                return (due, Some(at));
            }
            let Some(Reverse(held)) = state.held.pop() else {
                break;
            };
            state.held_bytes -= held.contents.len();
            due.push(held);
        }
        (due, None)
    }
}

impl Drop for ShapedSocket {
    fn drop(&mut self) {
        // The delivery task holds only a weak reference: wake it to end.
        self.wake.notify_one();
    }
}

/// Sends held datagrams when they are due, until the socket is dropped.
async fn deliver(socket: Weak<ShapedSocket>, wake: Arc<Notify>, inner: Arc<dyn AsyncUdpSocket>) {
    let mut poller = Arc::clone(&inner).create_io_poller();
    loop {
        let (due, next) = match socket.upgrade() {
            Some(socket) => socket.take_due(Instant::now()),
            None => return,
        };
        for held in due {
            let transmit = Transmit {
                destination: held.destination,
                ecn: held.ecn,
                contents: &held.contents,
                segment_size: None,
                src_ip: held.src_ip,
            };
            loop {
                match inner.try_send(&transmit) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    // A datagram the network refused is lost, as on a
                    // real path.
                    result => {
                        if result.is_ok() {
                            TOTALS.sent.fetch_add(1, Ordering::Relaxed);
                            let bytes = held.contents.len() as u64;
                            TOTALS.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
                        }
                        break;
                    }
                }
            }
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl AsyncUdpSocket for ShapedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let now = Instant::now();
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = state.held.peek().map(|Reverse(h)| h.due);
        for datagram in transmit.contents.chunks(size) {
            self.admit(&mut state, now, transmit, datagram);
        }
        let new_earliest = state.held.peek().map(|Reverse(h)| h.due);
        drop(state);
        if new_earliest != earliest {
            self.wake.notify_one();
        }
        Ok(())
    }

    crate::batch::pass_to_inner!();
}

/// The shaper takes every datagram at once (it queues or drops), so its
/// socket is always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests;
