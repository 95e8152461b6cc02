//! Datagram sizes on loopback, under bulk load.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use floe_net::config::LOOPBACK_MAX_UDP_PAYLOAD;
use floe_net::{NetConfig, Raw};

/// Loopback carries 64 KiB datagrams, so a connection to a peer on this
/// host starts with them (no discovery: its probes are padded to their
/// size, and parsed a padding byte at a time), and 16 MiB bodies at full
/// speed must not knock it down: quinn batches ten datagrams of that size
/// per send, which the kernel refuses whole unless [`floe_net::batch`]
/// splits them; lost batches are what quinn takes for a black hole,
/// falling back to 1200 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_transfers_keep_the_mtu_loopback_starts_with() {
    let server = serve(1, 0, &[], NetConfig::default());
    let pool = pool(None, &server, NetConfig::default());
    let peer = server.key.public();
    let connection = pool.connection(&peer).await.unwrap();
    assert_eq!(
        connection.stats().path.current_mtu,
        LOOPBACK_MAX_UDP_PAYLOAD
    );
    pool.call::<Slow>(&peer, &1).await.unwrap();
    let body = Raw(vec![1u8; 16 << 20].into());
    for _ in 0..8 {
        assert_eq!(
            pool.call::<Echo>(&peer, &body).await.unwrap().0.len(),
            16 << 20
        );
    }
    let path = connection.stats().path;
    assert_eq!(path.black_holes_detected, 0, "{path:?}");
    assert_eq!(path.current_mtu, LOOPBACK_MAX_UDP_PAYLOAD);
    assert_eq!(path.lost_packets, 0, "{path:?}");
    assert_eq!(path.sent_plpmtud_probes, 0, "{path:?}");
}
