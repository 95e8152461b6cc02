//! Deadlines on what clients send: request heads and request bodies.
//!
//! A connection waiting for a request head (just accepted, or idle after an
//! answer) must deliver the whole head within the header timeout, counted
//! from when the wait began or the answer's last byte was written; a client
//! that trickles a head, or holds an idle connection open, is disconnected.
//! While a request is being handled there is no such deadline: the handler
//! bounds its own work (a body must arrive within the body timeout).
//!
//! [`TimedListener`] wraps each accepted connection in a [`TimedIo`] that
//! enforces the head deadline on reads; the router learns of each request
//! through the [`Connection`] handed to it as connect info, and tells the
//! connection when a request begins and when its answer is ready.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

use crate::GatewayError;

/// Whether a connection waits for a request head, and since when.
#[derive(Debug, Default)]
struct Phase {
    /// `Some(since)`: waiting for a head since then; `None`: a request is
    /// being handled.
    waiting_since: Mutex<Option<Instant>>,
}

impl Phase {
    fn waiting_since(&self) -> Option<Instant> {
        self.waiting_since.lock().ok().and_then(|since| *since)
    }

    fn set(&self, since: Option<Instant>) {
        if let Ok(mut phase) = self.waiting_since.lock() {
            *phase = since;
        }
    }

    /// An answer's bytes went out: the wait for the next head restarts.
    fn touch(&self) {
        if let Ok(mut phase) = self.waiting_since.lock() {
            if phase.is_some() {
                *phase = Some(Instant::now());
            }
        }
    }
}

/// One accepted connection, as the router sees it (connect info).
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    phase: Arc<Phase>,
}

impl Connection {
    fn new() -> Self {
        let phase = Phase::default();
        phase.set(Some(Instant::now()));
        Self {
            phase: Arc::new(phase),
        }
    }

    /// A request's head arrived: no head deadline while it is handled.
    pub(crate) fn request_started(&self) {
        self.phase.set(None);
    }

    /// The request's answer is ready: the next head is awaited from now
    /// (and from each write of the answer's bytes).
    pub(crate) fn request_answered(&self) {
        self.phase.set(Some(Instant::now()));
    }
}

impl Connected<IncomingStream<'_, TimedListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TimedListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Connections held, in all and per address.
#[derive(Debug, Default)]
struct Held {
    by_ip: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One connection's place among those held; given back when dropped.
#[derive(Debug)]
struct Seat {
    held: Arc<Held>,
    ip: std::net::IpAddr,
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Ok(mut by_ip) = self.held.by_ip.lock() {
            if let Some(count) = by_ip.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl Held {
    /// A seat for a connection from `ip`, unless that would pass `total`
    /// connections in all or `per_ip` from the address.
    fn seat(self: &Arc<Self>, ip: std::net::IpAddr, total: usize, per_ip: usize) -> Option<Seat> {
        let mut by_ip = self.by_ip.lock().ok()?;
        let all: usize = by_ip.values().sum();
        let from_ip = by_ip.get(&ip).copied().unwrap_or(0);
        if all >= total || from_ip >= per_ip {
            return None;
        }
        *by_ip.entry(ip).or_insert(0) += 1;
        Some(Seat {
            held: Arc::clone(self),
            ip,
        })
    }
}

/// A TCP listener whose connections enforce the head deadline, with caps on
/// the connections held in all and from one address.
#[derive(Debug)]
pub(crate) struct TimedListener {
    listener: TcpListener,
    header_timeout: Duration,
    max_connections: usize,
    max_connections_per_ip: usize,
    held: Arc<Held>,
}

impl TimedListener {
    pub(crate) fn new(
        listener: TcpListener,
        header_timeout: Duration,
        max_connections: usize,
        max_connections_per_ip: usize,
    ) -> Self {
        Self {
            listener,
            header_timeout,
            max_connections: max_connections.max(1),
            max_connections_per_ip: max_connections_per_ip.max(1),
            held: Arc::default(),
        }
    }
}

impl Listener for TimedListener {
    type Io = TimedIo;
    type Addr = Connection;

    async fn accept(&mut self) -> (TimedIo, Connection) {
        loop {
            match self.listener.accept().await {
                Ok((stream, remote)) => {
                    let Some(seat) = self.held.seat(
                        remote.ip(),
                        self.max_connections,
                        self.max_connections_per_ip,
                    ) else {
                        // Over a cap: closed at once, before it costs more.
                        tracing::debug!(peer = %remote, "connection over the gateway's caps closed");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connection = Connection::new();
                    let io = TimedIo {
                        stream,
                        phase: Arc::clone(&connection.phase),
                        header_timeout: self.header_timeout,
                        sleep: Box::pin(tokio::time::sleep(self.header_timeout)),
                        write_stalled_since: None,
                        write_sleep: Box::pin(tokio::time::sleep(self.header_timeout)),
                        _seat: seat,
                    };
                    return (io, connection);
                }
                // A connection that failed before it was accepted: the next.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                // Out of file descriptors, say: wait for some to close.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Connection> {
        self.listener.local_addr().map(|_| Connection::new())
    }
}

/// A connection that fails its reads once a request head is overdue, and
/// its writes once the client has taken no byte of its answer for the
/// header timeout (a client that never reads cannot pin an answer's memory).
#[derive(Debug)]
pub(crate) struct TimedIo {
    stream: TcpStream,
    phase: Arc<Phase>,
    header_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    write_stalled_since: Option<Instant>,
    write_sleep: Pin<Box<Sleep>>,
    _seat: Seat,
}

impl TimedIo {
    /// Pass on a write's outcome, failing it once writes have made no
    /// progress for the header timeout.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Pending => {
                let since = *self.write_stalled_since.get_or_insert_with(Instant::now);
                let deadline = tokio::time::Instant::from_std(since + self.header_timeout);
                if self.write_sleep.deadline() != deadline {
                    self.write_sleep.as_mut().reset(deadline);
                }
                match self.write_sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took no byte of its answer within the header timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_stalled_since = None;
                if matches!(ready, Poll::Ready(Ok(n)) if n > 0) {
                    self.phase.touch();
                }
                ready
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(result) = Pin::new(&mut this.stream).poll_read(cx, buf) {
            return Poll::Ready(result);
        }
        let Some(since) = this.phase.waiting_since() else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(since + this.header_timeout);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head within the header timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch_write(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch_write(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads `body` whole within `timeout`, refusing it with `too_large` once it
/// passes `limit` bytes. `announced` (the `Content-Length`, already checked
/// against the limit) sizes the buffer.
pub(crate) async fn read_body(
    mut body: Body,
    limit: u64,
    announced: Option<u64>,
    timeout: Duration,
    too_large: GatewayError,
) -> Result<Bytes, GatewayError> {
    let read = async move {
        // Grown as bytes arrive: an announced length costs nothing until
        // the body comes.
        let capacity = announced.unwrap_or(0).min(limit).min(1 << 20);
        let mut buffer = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| GatewayError::BadBody(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if (buffer.len() as u64).saturating_add(data.len() as u64) > limit {
                    return Err(too_large);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| GatewayError::BodyTimeout { timeout })?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A client that never reads its answer: once no byte has gone out for
    /// the header timeout, the write fails and the answer's memory is freed.
    #[tokio::test]
    async fn an_answer_nobody_reads_is_abandoned() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut timed = TimedListener::new(listener, Duration::from_millis(500), 8, 8);
        let reader = TcpStream::connect(address).await.unwrap();
        let (mut io, connection) = timed.accept().await;
        connection.request_started();
        connection.request_answered();
        let answer = vec![0u8; 256 << 20];
        let started = Instant::now();
        let written = tokio::time::timeout(Duration::from_secs(30), io.write_all(&answer)).await;
        match written {
            Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}"),
            Ok(Ok(())) => panic!("256 MiB went into socket buffers of a client that never reads"),
            Err(_) => panic!("the write hung for 30 s"),
        }
        assert!(started.elapsed() < Duration::from_secs(20));
        drop(reader);
    }

    /// Connections past the cap from one address are closed as accepted;
    /// one closing frees its place.
    #[tokio::test]
    async fn connections_over_the_cap_are_closed() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut timed = TimedListener::new(listener, Duration::from_secs(30), 100, 2);
        let first = TcpStream::connect(address).await.unwrap();
        let second = TcpStream::connect(address).await.unwrap();
        let mut third = TcpStream::connect(address).await.unwrap();
        let mut fourth = TcpStream::connect(address).await.unwrap();
        let (a, _) = timed.accept().await;
        let (b, _) = timed.accept().await;
        drop(first);
        drop(second);
        // The third and fourth wait behind the cap and are closed; after
        // the first two are dropped, the next connection is accepted.
        let accepting = tokio::spawn(async move {
            let accepted = timed.accept().await;
            (timed, accepted)
        });
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), third.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        let closed = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut byte))
            .await
            .unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        drop((a, b));
        let _fifth = TcpStream::connect(address).await.unwrap();
        let (_timed, _accepted) = tokio::time::timeout(Duration::from_secs(5), accepting)
            .await
            .unwrap()
            .unwrap();
    }
}
