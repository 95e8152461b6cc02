//! A small test protocol and helpers to run it on 127.0.0.1.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use floe_consensus::KeyPair;
use floe_net::{Access, Members, Method, NetConfig, Pool, Raw, Router, Server, TlsIdentity};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TestError {
    #[error("{0} not found")]
    NotFound(String),
}

pub struct Echo;
impl Method for Echo {
    const KIND: u16 = 1;
    const NAME: &'static str = "echo";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 65 << 20;
    const MAX_RESPONSE_BYTES: u32 = 65 << 20;
    type Request = Raw;
    type Response = Raw;
    type Error = TestError;
}

pub struct PeerHello;
impl Method for PeerHello {
    const KIND: u16 = 2;
    const NAME: &'static str = "peer-hello";
    const ACCESS: Access = Access::PeerOnly;
    const MAX_REQUEST_BYTES: u32 = 1024;
    const MAX_RESPONSE_BYTES: u32 = 1024;
    type Request = String;
    type Response = String;
    type Error = TestError;
}

pub struct Lookup;
impl Method for Lookup {
    const KIND: u16 = 3;
    const NAME: &'static str = "lookup";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 1024;
    const MAX_RESPONSE_BYTES: u32 = 1024;
    type Request = Query;
    type Response = u64;
    type Error = TestError;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub id: u64,
    pub name: String,
}

/// Never answers (until the caller goes away).
pub struct Stall;
impl Method for Stall {
    const KIND: u16 = 4;
    const NAME: &'static str = "stall";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 16;
    const MAX_RESPONSE_BYTES: u32 = 16;
    const TIMEOUT: Duration = Duration::from_millis(300);
    type Request = ();
    type Response = ();
    type Error = TestError;
}

/// Answers with as many bytes as asked for.
pub struct Fill;
impl Method for Fill {
    const KIND: u16 = 5;
    const NAME: &'static str = "fill";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 16;
    const MAX_RESPONSE_BYTES: u32 = 4096;
    type Request = u32;
    type Response = Raw;
    type Error = TestError;
}

/// Sleeps for the given milliseconds, then answers.
pub struct Slow;
impl Method for Slow {
    const KIND: u16 = 6;
    const NAME: &'static str = "slow";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 16;
    const MAX_RESPONSE_BYTES: u32 = 16;
    type Request = u64;
    type Response = u64;
    type Error = TestError;
}

/// Blocks a thread of the blocking pool for the given milliseconds, inside
/// the request's budget.
pub struct Block;
impl Method for Block {
    const KIND: u16 = 7;
    const NAME: &'static str = "block";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 16;
    const MAX_RESPONSE_BYTES: u32 = 16;
    type Request = u64;
    type Response = u64;
    type Error = TestError;
}

/// Reserves room for an answer of the given size before building it,
/// holds it for 300 ms, then answers with that many bytes.
pub struct Reserve;
impl Method for Reserve {
    const KIND: u16 = 8;
    const NAME: &'static str = "reserve";
    const ACCESS: Access = Access::Public;
    const MAX_REQUEST_BYTES: u32 = 16;
    const MAX_RESPONSE_BYTES: u32 = 64 << 20;
    type Request = u32;
    type Response = Raw;
    type Error = TestError;
}

/// Counts handler futures dropped before they finished (cancelled calls).
#[derive(Default)]
pub struct Counters {
    pub stalls_dropped: AtomicU64,
}

struct DropCounter(Arc<Counters>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.stalls_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn router(counters: Arc<Counters>) -> Router {
    Router::new()
        .route::<Echo, _, _>(|_, request| async move { Ok(request) })
        .route::<PeerHello, _, _>(|caller, request| async move {
            Ok(format!(
                "{request}, {}",
                caller.member().map(|k| k.to_string()).unwrap_or_default()
            ))
        })
        .route::<Lookup, _, _>(|_, query: Query| async move {
            if query.name == "known" {
                Ok(query.id * 2)
            } else {
                Err(TestError::NotFound(query.name))
            }
        })
        .route::<Stall, _, _>(move |_, ()| {
            let guard = DropCounter(Arc::clone(&counters));
            async move {
                std::future::pending::<()>().await;
                drop(guard);
                Ok(())
            }
        })
        .route::<Fill, _, _>(|_, n: u32| async move { Ok(Raw(vec![7u8; n as usize].into())) })
        .route::<Slow, _, _>(|_, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(ms)
        })
        .route::<Reserve, _, _>(|_, n: u32| async move {
            floe_net::spawn_blocking(move || {
                floe_net::reserve_answer(n as usize).map_err(TestError::NotFound)?;
                std::thread::sleep(Duration::from_millis(300));
                Ok(Raw(vec![1u8; n as usize].into()))
            })
            .await
            .map_err(|e| TestError::NotFound(e.to_string()))?
        })
        .route::<Block, _, _>(|_, ms: u64| async move {
            floe_net::spawn_blocking(move || std::thread::sleep(Duration::from_millis(ms)))
                .await
                .map_err(|e| TestError::NotFound(e.to_string()))?;
            Ok(ms)
        })
}

pub struct TestServer {
    pub key: KeyPair,
    pub server: Server,
    pub address: SocketAddr,
    pub counters: Arc<Counters>,
}

pub fn key(seed: u8) -> KeyPair {
    KeyPair::from_seed(&[seed; 32])
}

/// A server with key `seed` on 127.0.0.1 (`port` 0 picks one), whose
/// members are `members`.
pub fn serve(seed: u8, port: u16, members: &[&KeyPair], config: NetConfig) -> TestServer {
    let key = key(seed);
    let identity = TlsIdentity::new(&key).unwrap();
    let counters = Arc::new(Counters::default());
    let members = Members::new(members.iter().map(|k| k.public()));
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let server = Server::bind(
        listen,
        &identity,
        members,
        router(Arc::clone(&counters)),
        config,
    )
    .unwrap();
    let address = server.local_addr().unwrap();
    TestServer {
        key,
        server,
        address,
        counters,
    }
}

/// A pool presenting `key` (or nothing) that knows `server` under `pinned`.
pub fn pool(key: Option<&KeyPair>, server: &TestServer, config: NetConfig) -> Pool {
    let pool = Pool::new("127.0.0.1:0".parse().unwrap(), key, config).unwrap();
    pool.add_peer(server.key.public(), server.address.to_string())
        .unwrap();
    pool
}
