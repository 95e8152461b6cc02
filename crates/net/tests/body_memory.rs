//! What a begun request body holds on a server, over real QUIC on
//! 127.0.0.1: memory and address space for the bytes that arrived, never
//! for the length its header announced. A test binary of its own, so no
//! other test's allocations are counted in this process's memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::time::Duration;

use common::*;
use floe_net::frame;
use floe_net::{Method, NetConfig, Raw};

/// This process's address space and resident memory, in bytes (Linux).
fn memory() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let mut pages = statm
        .split_whitespace()
        .map(|field| field.parse::<u64>().unwrap() * 4096);
    (pages.next().unwrap(), pages.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn begun_bodies_hold_memory_for_what_arrived_not_what_was_announced() {
    let server = serve(3, 0, &[], NetConfig::default());
    let peer = server.key.public();
    let attacker = pool(None, &server, NetConfig::default());
    let connection = attacker.connection(&peer).await.unwrap();
    // Warm up: one honest multi-chunk body, so the allocator's own growth
    // (its arenas on both workers) is not counted below.
    let honest = vec![5u8; 16 << 20];
    let answer = attacker
        .call::<Echo>(&peer, &Raw(honest.clone().into()))
        .await
        .unwrap();
    assert!(answer.0 == honest);
    drop((honest, answer));
    let (space_before, resident_before) = memory();
    // 48 streams each announce a 16 MiB body (768 MiB together) and send
    // 96 KiB of it: a body's room follows what arrived (128 KiB each here,
    // 6 MiB together), never what was announced.
    let mut held = Vec::new();
    for _ in 0..48 {
        let (mut send, recv) = connection.open_bi().await.unwrap();
        send.write_all(&frame::request_header(Echo::KIND, 16 << 20))
            .await
            .unwrap();
        send.write_all(&[1u8; 96 << 10]).await.unwrap();
        held.push((send, recv));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (space, resident) = memory();
    let (space, resident) = (
        space.saturating_sub(space_before),
        resident.saturating_sub(resident_before),
    );
    assert!(
        resident < 40 << 20,
        "48 begun bodies of 96 KiB made the process grow by {} MiB",
        resident >> 20
    );
    assert!(
        space < 256 << 20,
        "48 begun bodies of 96 KiB took {} MiB of address space",
        space >> 20
    );
    drop(held);
}
