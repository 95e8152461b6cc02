//! Accepting connections: handshake caps, QUIC Retry under load, seats per
//! class, address and member key.

use super::*;

/// Decrements a counter when dropped.
pub(super) struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A handshake in progress, counted in total and per address.
pub(super) struct Handshaking {
    pub(super) shared: Arc<Shared>,
    pub(super) ip: std::net::IpAddr,
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

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The longest a handshake may hold its place.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>) {
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

pub(super) async fn serve_connection(incoming: quinn::Incoming, handshaking: Handshaking) {
    let remote = incoming.remote_address();
    let shared = Arc::clone(&handshaking.shared);
    let accepted = if shared.config.on_this_host(remote) {
        incoming.accept_with(Arc::clone(&shared.on_this_host))
    } else {
        incoming.accept()
    };
    let connecting = match accepted {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(peer = %remote, error = %e, "connection not accepted");
            return;
        }
    };
    let handshake = tokio::time::timeout(
        HANDSHAKE_TIMEOUT.min(shared.config.connect_timeout),
        connecting,
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
