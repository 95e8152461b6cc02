//! One request on one stream: its head, its body charged as it arrives, its
//! handler inside the budget, and its answer under a deadline.

use super::*;

pub(super) async fn serve_stream(
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

/// The smallest charge a multi-chunk body starts with, and the length below
/// which a body that arrives in one piece is copied out of the datagram
/// buffer it came in (see [`read_charged_body`]).
pub(super) const MIN_BODY_BUFFER: usize = 64 << 10;

/// Why a request body was not read.
pub(super) enum BodyError {
    Frame(frame::FrameError),
    Busy(Busy),
}

/// Read a body of exactly `length` bytes, then the end of the stream,
/// charging its buffer to `charge` as it grows: a header that announces a
/// large body costs nothing until the bytes arrive. The buffer doubles with
/// what arrives and its room is exactly what is charged: never more than
/// twice what has arrived, or [`MIN_BODY_BUFFER`]. (Taking the announced
/// length's room sooner saves copies, but lets a few bytes hold address
/// space and budget they did not pay for.)
pub(super) async fn read_charged_body(
    shared: &Shared,
    lane: &Lane,
    class: Class,
    charge: &mut Charge,
    recv: &mut RecvStream,
    length: usize,
) -> Result<Bytes, BodyError> {
    let mut buffer: Vec<u8> = Vec::new();
    let mut charged = 0;
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
            // The whole body in one piece: kept as it is, without a copy,
            // if long. A short one is copied: the piece is a view of the
            // datagram (or the batch of datagrams received at once, up to
            // 64 KiB) that carried it, and a body of a few bytes kept as a
            // view would hold all of that while charged for its length.
            shared
                .charge(lane, class, charge, length, shared.budget_deadline())
                .await
                .map_err(BodyError::Busy)?;
            expect_end(recv).await?;
            if length < MIN_BODY_BUFFER {
                return Ok(Bytes::copy_from_slice(&bytes));
            }
            return Ok(bytes);
        }
        let needed = got + bytes.len();
        if needed > charged {
            let grow_to = needed
                .max(charged.saturating_mul(2))
                .max(MIN_BODY_BUFFER)
                .min(length);
            shared
                .charge(
                    lane,
                    class,
                    charge,
                    grow_to - charged,
                    shared.budget_deadline(),
                )
                .await
                .map_err(BodyError::Busy)?;
            charged = grow_to;
            buffer
                .try_reserve_exact(grow_to - buffer.len())
                .map_err(|_| BodyError::Busy(Busy::Memory { bytes: grow_to }))?;
        }
        buffer.extend_from_slice(&bytes);
        got = needed;
    }
    expect_end(recv).await?;
    Ok(Bytes::from(buffer))
}

/// The stream ends where the body does.
pub(super) async fn expect_end(recv: &mut RecvStream) -> Result<(), BodyError> {
    match recv.read_chunk(1, true).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(BodyError::Frame(frame::FrameError::TrailingBytes)),
        Err(e) => Err(BodyError::Frame(e.into())),
    }
}

/// The largest share of a method's response limit reserved before its
/// handler runs; a larger answer takes the rest before it is written.
pub(super) const RESPONSE_RESERVE: u32 = 4 << 20;

/// Read one request and run its handler. `None`: the caller went away.
/// The answer comes with the budget it holds and the class it was charged to.
pub(super) async fn exchange(
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
