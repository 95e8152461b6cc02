//! What a request may hold: the members' and clients' allowances, lanes per
//! member key and client address, and the charge one request carries.

use super::*;

/// What one class of callers shares: bytes of bodies and requests in flight.
pub(super) struct Allowance {
    pub(super) bytes: Arc<Semaphore>,
    pub(super) requests: Arc<Semaphore>,
    pub(super) capacity: u32,
    pub(super) slots: u32,
}

impl Allowance {
    pub(super) fn new(bytes: u32, requests: u32) -> Self {
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
pub(super) enum Class {
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
pub(super) enum Busy {
    #[error("this connection already holds {limit} bytes of requests and answers in flight; wait for them before sending more")]
    Connection { limit: u32 },
    #[error("the node is holding its {limit} bytes for {class} requests; retry shortly or ask another node")]
    Bytes { class: Class, limit: u32 },
    #[error("the node is serving its {limit} {class} requests at once; retry shortly or ask another node")]
    Requests { class: Class, limit: u32 },
    #[error("the node could not find {bytes} bytes of memory for this request; retry shortly or ask another node")]
    Memory { bytes: usize },
}

/// The budget one request holds: bytes from its connection and its class,
/// and a request slot while its handler runs. Dropping it gives all back.
#[derive(Default)]
pub(super) struct Charge {
    pub(super) slot: Option<OwnedSemaphorePermit>,
    pub(super) class: Option<OwnedSemaphorePermit>,
    pub(super) connection: Option<OwnedSemaphorePermit>,
}

impl Charge {
    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.class
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Give back all but `keep` bytes.
    pub(super) fn shrink_to(&mut self, keep: usize) {
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
pub(super) async fn acquire(
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

pub(super) fn merge(into: &mut Option<OwnedSemaphorePermit>, permit: Option<OwnedSemaphorePermit>) {
    match (into.as_mut(), permit) {
        (Some(held), Some(permit)) => held.merge(permit),
        (None, permit) => *into = permit,
        (Some(_), None) => {}
    }
}

/// The budget of the request being served, shared by its handler and the
/// blocking work it starts, with what it needs to take more.
pub(super) struct Held {
    pub(super) charge: Mutex<Charge>,
    pub(super) class: Class,
    pub(super) allowance_bytes: Arc<Semaphore>,
    pub(super) allowance_limit: u32,
    pub(super) lane: Arc<Lane>,
    pub(super) wait: Duration,
}

tokio::task_local! {
    /// The budget of the request whose handler is running on this task.
    pub(super) static HELD: Arc<Held>;
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
    // Blocking work runs on the blocking pool, where the runtime may be
    // waited on: the same charge as the server's own, queue and all.
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
    let mut more = Charge::default();
    runtime
        .block_on(take_bytes(
            &mut more,
            &held.lane,
            held.class,
            &held.allowance_bytes,
            held.allowance_limit,
            missing,
            Instant::now() + held.wait,
        ))
        .map_err(|busy| busy.to_string())?;
    let mut charge = lock(&held.charge);
    merge(&mut charge.connection, more.connection);
    merge(&mut charge.class, more.class);
    Ok(())
}

/// Add `bytes` to `charge`: from `lane`'s cap, then from the class's
/// `allowance` (`limit` bytes in all), waiting until `deadline` at most.
pub(super) async fn take_bytes(
    charge: &mut Charge,
    lane: &Lane,
    class: Class,
    allowance: &Arc<Semaphore>,
    limit: u32,
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
    let shared = acquire(allowance, permits, deadline)
        .await
        .ok_or(Busy::Bytes { class, limit })?;
    merge(&mut charge.connection, Some(connection));
    merge(&mut charge.class, Some(shared));
    Ok(())
}

/// Charges above this size poll for room instead of queueing, so that one
/// large request never holds up the small ones behind it (the semaphore
/// serves its queue in order).
pub(super) const BIG_CHARGE: usize = 1 << 20;
/// How often a large charge looks for room.
pub(super) const BIG_CHARGE_POLL: Duration = Duration::from_millis(5);

/// What one member key, or one client address, may hold across all its
/// connections, and how many connections it has.
pub(super) struct Lane {
    pub(super) bytes: Arc<Semaphore>,
    pub(super) limit: u32,
    pub(super) connections: AtomicUsize,
}

/// Whose lane: a member's key, or a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum LaneKey {
    Member(PublicKey),
    Client(std::net::IpAddr),
}

impl Shared {
    pub(super) fn allowance(&self, class: Class) -> &Allowance {
        match class {
            Class::Members => &self.member_allowance,
            Class::Clients => &self.client_allowance,
        }
    }

    /// Take a request slot for `class`, waiting until `deadline` at most.
    pub(super) async fn take_slot(
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
    pub(super) async fn charge(
        &self,
        lane: &Lane,
        class: Class,
        charge: &mut Charge,
        bytes: usize,
        deadline: Instant,
    ) -> Result<(), Busy> {
        let allowance = self.allowance(class);
        take_bytes(
            charge,
            lane,
            class,
            &allowance.bytes,
            allowance.capacity,
            bytes,
            deadline,
        )
        .await
    }

    /// The lane of `key`, made on first use.
    pub(super) fn lane(&self, key: LaneKey) -> Arc<Lane> {
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

    pub(super) fn budget_deadline(&self) -> Instant {
        Instant::now() + self.config.budget_wait
    }
}
