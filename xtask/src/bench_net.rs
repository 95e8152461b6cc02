//! `cargo xtask bench net`: floe-net over QUIC on loopback, and the same
//! exchanges over TCP with rustls (tokio-rustls) as the yardstick, in one run.
//!
//! Both sides use the same certificates, pinned verifiers, ALPN and frame
//! layout; TCP gets one connection per concurrent stream, since it has no
//! streams of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use floe_consensus::KeyPair;
use floe_net::frame;
use floe_net::tls::{self, TlsIdentity, SERVER_NAME};
use floe_net::{Access, Members, Method, NetConfig, Pool, Raw, Router, Server};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::bench::{human, median};

const MIB: f64 = (1 << 20) as f64;

struct Ping;
impl Method for Ping {
    const KIND: u16 = 1;
    const NAME: &'static str = "ping";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 64;
    const MAX_RESPONSE_BYTES: u32 = 64;
    type Request = u64;
    type Response = u64;
    type Error = String;
}

struct Upload;
impl Method for Upload {
    const KIND: u16 = 2;
    const NAME: &'static str = "upload";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 64 << 20;
    const MAX_RESPONSE_BYTES: u32 = 64;
    const TIMEOUT: Duration = Duration::from_secs(60);
    type Request = Raw;
    type Response = u64;
    type Error = String;
}

#[derive(Serialize)]
struct LatencyRecord {
    transport: &'static str,
    requests: usize,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Serialize)]
struct ThroughputRecord {
    transport: &'static str,
    payload_bytes: usize,
    streams: usize,
    transfers_per_run: usize,
    /// Median of the runs.
    mib_s: f64,
    runs_mib_s: Vec<f64>,
    /// QUIC only: packets declared lost, and congestion events, over the runs.
    lost_packets: Option<u64>,
    congestion_events: Option<u64>,
}

#[derive(Serialize)]
struct Report {
    latency: Vec<LatencyRecord>,
    throughput: Vec<ThroughputRecord>,
    /// QUIC throughput over TCP+TLS throughput, per case.
    quic_over_tcp: Vec<(String, f64)>,
    /// The path MTU the client's QUIC connection settled on.
    quic_path_mtu: u16,
    /// Packets the client's QUIC connection declared lost.
    quic_lost_packets: u64,
}

/// One QUIC pool and server, or one TCP+TLS server and its connections.
pub(crate) enum Transport {
    Quic {
        pool: Arc<Pool>,
        peer: floe_consensus::PublicKey,
        _server: Box<Server>,
    },
    Tcp {
        address: SocketAddr,
        connector: tokio_rustls::TlsConnector,
    },
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A floe-net server on 127.0.0.1 with `key`'s identity that answers
/// [`Ping`] and [`Upload`].
pub(crate) fn upload_server(key: &KeyPair, config: NetConfig) -> Result<Server> {
    let identity = TlsIdentity::new(key)?;
    let router = Router::new()
        .route::<Ping, _, _>(|_, n| async move { Ok(n) })
        .route::<Upload, _, _>(|_, body: Raw| async move { Ok(body.0.len() as u64) });
    Ok(Server::bind(
        "127.0.0.1:0".parse()?,
        &identity,
        Members::default(),
        router,
        config,
    )?)
}

/// Uploads every payload to `peer` through `pool`, `streams` at a time,
/// each answered with its length.
pub(crate) async fn upload_to(
    pool: &Arc<Pool>,
    peer: floe_consensus::PublicKey,
    payloads: Vec<Bytes>,
    streams: usize,
) -> Result<()> {
    let queue = Arc::new(std::sync::Mutex::new(payloads));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let (pool, queue) = (Arc::clone(pool), Arc::clone(&queue));
        tasks.spawn(async move {
            loop {
                let next = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop();
                let Some(payload) = next else { return Ok(()) };
                let len = payload.len() as u64;
                anyhow::ensure!(pool.call::<Upload>(&peer, &Raw(payload)).await? == len);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Uploads `payload` to `peer` until the connection's path MTU has stopped
/// climbing for three uploads (at most `rounds` uploads); returns the MTU.
pub(crate) async fn settle_path(
    pool: &Arc<Pool>,
    peer: floe_consensus::PublicKey,
    payload: Bytes,
    rounds: usize,
) -> Result<u16> {
    let (mut mtu, mut unchanged) = (0, 0);
    for _ in 0..rounds {
        upload_to(pool, peer, vec![payload.clone()], 1).await?;
        let now = pool.connection(&peer).await?.stats().path.current_mtu;
        unchanged = if now == mtu { unchanged + 1 } else { 0 };
        mtu = now;
        if unchanged == 3 {
            break;
        }
    }
    Ok(mtu)
}

impl Transport {
    pub(crate) async fn quic(config: NetConfig) -> Result<Self> {
        let key = KeyPair::from_seed(&[1; 32]);
        let server = upload_server(&key, config.clone())?;
        let pool = Pool::new("127.0.0.1:0".parse()?, None, config)?;
        pool.add_peer(key.public(), server.local_addr()?.to_string())?;
        Ok(Self::Quic {
            pool: Arc::new(pool),
            peer: key.public(),
            _server: Box::new(server),
        })
    }

    /// Uploads `payload` until the connection's path MTU has stopped
    /// climbing for three uploads (at most `rounds` uploads): a committee's
    /// connections are long up and have discovered their path, and a
    /// transfer measured while discovery still climbs sends more packets
    /// than a settled path does.
    pub(crate) async fn settle_path(&self, payload: Bytes, rounds: usize) -> Result<u16> {
        let Self::Quic { pool, peer, .. } = self else {
            anyhow::bail!("not QUIC")
        };
        settle_path(pool, *peer, payload, rounds).await
    }

    async fn tcp() -> Result<Self> {
        let key = KeyPair::from_seed(&[2; 32]);
        let identity = TlsIdentity::new(&key)?;
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(tls::server_config(&identity, tls::ALPN)?));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = serve_tcp(stream).await;
                    }
                });
            }
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls::client_config(
            key.public(),
            None,
            tls::ALPN,
        )?));
        Ok(Self::Tcp { address, connector })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Quic { .. } => "quic",
            Self::Tcp { .. } => "tcp+tls",
        }
    }

    async fn path_stats(&self) -> Result<Option<quinn::PathStats>> {
        Ok(match self {
            Self::Quic { pool, peer, .. } => Some(pool.connection(peer).await?.stats().path),
            Self::Tcp { .. } => None,
        })
    }

    /// QUIC only: uploads every payload, `streams` at a time, each answered
    /// with its length.
    pub(crate) async fn upload_all(&self, payloads: Vec<Bytes>, streams: usize) -> Result<()> {
        let Self::Quic { pool, peer, .. } = self else {
            anyhow::bail!("not QUIC")
        };
        upload_to(pool, *peer, payloads, streams).await
    }

    async fn tcp_connection(&self) -> Result<TlsStream> {
        let Self::Tcp { address, connector } = self else {
            anyhow::bail!("not TCP")
        };
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(connector.connect(SERVER_NAME.try_into()?, stream).await?)
    }
}

/// The TCP side of the yardstick: the same frames, one exchange after another.
async fn serve_tcp(mut stream: tokio_rustls::server::TlsStream<TcpStream>) -> Result<()> {
    loop {
        let mut header = [0u8; frame::REQUEST_HEADER_LEN];
        if stream.read_exact(&mut header).await.is_err() {
            return Ok(());
        }
        let (_, length) = frame::parse_request_header(&header);
        let mut body = vec![0u8; length as usize];
        stream.read_exact(&mut body).await?;
        let answer = (body.len() as u64).to_le_bytes();
        stream
            .write_all(&frame::response_header(frame::Status::Ok, 8))
            .await?;
        stream.write_all(&answer).await?;
        stream.flush().await?;
    }
}

async fn tcp_exchange(stream: &mut TlsStream, body: &[u8]) -> Result<u64> {
    let header = frame::request_header(2, u32::try_from(body.len())?);
    stream.write_all(&header).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = [0u8; frame::RESPONSE_HEADER_LEN + 8];
    stream.read_exact(&mut response).await?;
    let mut answer = [0u8; 8];
    answer.copy_from_slice(&response[frame::RESPONSE_HEADER_LEN..]);
    Ok(u64::from_le_bytes(answer))
}

async fn latency(transport: &Transport, requests: usize) -> Result<LatencyRecord> {
    let mut samples = Vec::with_capacity(requests);
    let mut tcp = match transport {
        Transport::Tcp { .. } => Some(transport.tcp_connection().await?),
        Transport::Quic { .. } => None,
    };
    for i in 0..requests + requests / 10 {
        let start = Instant::now();
        match (transport, tcp.as_mut()) {
            (Transport::Quic { pool, peer, .. }, _) => {
                anyhow::ensure!(pool.call::<Ping>(peer, &(i as u64)).await? == i as u64);
            }
            (Transport::Tcp { .. }, Some(stream)) => {
                tcp_exchange(stream, &(i as u64).to_le_bytes()).await?;
            }
            (Transport::Tcp { .. }, None) => anyhow::bail!("no TCP connection"),
        }
        // The first tenth warms up the connection and is not counted.
        if i >= requests / 10 {
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok(LatencyRecord {
        transport: transport.name(),
        requests,
        p50_us: at(0.5),
        p99_us: at(0.99),
    })
}

/// MiB/s of `transfers` uploads of `payload`, `streams` at a time.
async fn throughput(
    transport: &Transport,
    payload: &Bytes,
    streams: usize,
    transfers: usize,
) -> Result<f64> {
    let per_stream = transfers / streams;
    let mut tcp = Vec::new();
    if matches!(transport, Transport::Tcp { .. }) {
        for _ in 0..streams {
            tcp.push(transport.tcp_connection().await?);
        }
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    match transport {
        Transport::Quic { .. } => {
            let payloads = vec![payload.clone(); per_stream * streams];
            transport.upload_all(payloads, streams).await?;
        }
        Transport::Tcp { .. } => {
            for mut stream in tcp {
                let payload = payload.clone();
                tasks.spawn(async move {
                    for _ in 0..per_stream {
                        anyhow::ensure!(
                            tcp_exchange(&mut stream, &payload).await? == payload.len() as u64
                        );
                    }
                    Ok(())
                });
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok((per_stream * streams * payload.len()) as f64 / MIB / start.elapsed().as_secs_f64())
}

pub fn run(runs: usize, quick: bool) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(runs, quick))
}

async fn run_async(runs: usize, quick: bool) -> Result<()> {
    let config = NetConfig::default();
    let quic = Transport::quic(config)
        .await
        .context("starting the QUIC server")?;
    let tcp = Transport::tcp()
        .await
        .context("starting the TCP+TLS server")?;
    let requests = if quick { 500 } else { 5000 };
    let mut report = Report {
        latency: Vec::new(),
        throughput: Vec::new(),
        quic_over_tcp: Vec::new(),
        quic_path_mtu: 0,
        quic_lost_packets: 0,
    };

    println!("small request round trip ({requests} sequential requests, one connection)");
    println!("{:<10} {:>10} {:>10}", "transport", "p50 µs", "p99 µs");
    for transport in [&quic, &tcp] {
        let record = latency(transport, requests).await?;
        println!(
            "{:<10} {:>10.0} {:>10.0}",
            record.transport, record.p50_us, record.p99_us
        );
        report.latency.push(record);
    }

    println!("\nbulk upload throughput (median of {runs} runs)");
    println!(
        "{:<10} {:>8} {:>8} {:>10} {:>10}",
        "transport", "payload", "streams", "MiB/s", "QUIC/TCP"
    );
    let payload_bytes: &[usize] = &[1 << 20, 16 << 20];
    for &bytes in payload_bytes {
        let payload = Bytes::from(crate::bench::sample_blob(bytes));
        for streams in [1usize, 8] {
            // About 128 MiB per run (32 MiB when quick), at least one transfer per stream.
            let budget = if quick { 32 << 20 } else { 128 << 20 };
            let transfers = (budget / bytes).max(streams).div_ceil(streams) * streams;
            let transports = [&quic, &tcp];
            let mut runs_mib_s = [Vec::new(), Vec::new()];
            let mut stats_before = Vec::new();
            for transport in transports {
                throughput(transport, &payload, streams, streams).await?; // warm-up
                stats_before.push(transport.path_stats().await?);
            }
            // Alternate the transports run by run, so that drift in the
            // machine's speed affects both alike.
            for _ in 0..runs {
                for (transport, figures) in transports.iter().zip(runs_mib_s.iter_mut()) {
                    figures.push(throughput(transport, &payload, streams, transfers).await?);
                }
            }
            let mut figures = Vec::new();
            for ((transport, before), runs_mib_s) in
                transports.iter().zip(stats_before).zip(runs_mib_s)
            {
                let after = transport.path_stats().await?;
                let (lost, congestion_events) = match (before, after) {
                    (Some(before), Some(after)) => (
                        Some(after.lost_packets - before.lost_packets),
                        Some(after.congestion_events - before.congestion_events),
                    ),
                    _ => (None, None),
                };
                figures.push(median(runs_mib_s.clone()));
                report.throughput.push(ThroughputRecord {
                    transport: transport.name(),
                    payload_bytes: bytes,
                    streams,
                    transfers_per_run: transfers,
                    mib_s: median(runs_mib_s.clone()),
                    runs_mib_s,
                    lost_packets: lost,
                    congestion_events,
                });
            }
            let ratio = figures[0] / figures[1];
            for (record, name) in report
                .throughput
                .iter()
                .rev()
                .take(2)
                .rev()
                .zip(["quic", "tcp+tls"])
            {
                let shown_ratio = if name == "quic" {
                    format!("{:.0}%", ratio * 100.0)
                } else {
                    String::new()
                };
                let losses = match (record.lost_packets, record.congestion_events) {
                    (Some(lost), Some(events)) => {
                        format!("{lost} lost, {events} congestion events")
                    }
                    _ => String::new(),
                };
                println!(
                    "{:<10} {:>8} {:>8} {:>10.0} {:>10}   {}",
                    record.transport,
                    human(bytes),
                    streams,
                    record.mib_s,
                    shown_ratio,
                    losses
                );
            }
            report
                .quic_over_tcp
                .push((format!("{} x {streams}", human(bytes)), ratio));
        }
    }
    if let Transport::Quic { pool, peer, .. } = &quic {
        let path = pool.connection(peer).await?.stats().path;
        println!(
            "QUIC path: MTU {} bytes, {} lost of {} sent packets, cwnd {} bytes",
            path.current_mtu, path.lost_packets, path.sent_packets, path.cwnd
        );
        report.quic_path_mtu = path.current_mtu;
        report.quic_lost_packets = path.lost_packets;
    }
    println!("targets: QUIC bulk throughput >= 70% of TCP+TLS; small-request p50 <= 250 µs");
    crate::bench::write_json("net", &report)
}
