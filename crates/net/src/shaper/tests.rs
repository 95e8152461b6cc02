//! Tests of the link shaper.

use super::*;

#[test]
fn profiles_parse_and_print_back() {
    let continent: LinkProfile = "continent".parse().unwrap();
    assert_eq!(continent.latency_min, Duration::from_millis(40));
    assert_eq!(continent.bandwidth_bps, 1_000_000_000);
    let spec: LinkProfile = "latency=20-150ms,jitter=5ms,loss=0.5%,bandwidth=100mbit"
        .parse()
        .unwrap();
    assert_eq!(spec.latency_min, Duration::from_millis(20));
    assert_eq!(spec.latency_max, Duration::from_millis(150));
    assert!((spec.loss - 0.005).abs() < 1e-12);
    assert_eq!(spec.bandwidth_bps, 100_000_000);
    assert_eq!(spec.mtu, 1500);
    let again: LinkProfile = spec.to_string().parse().unwrap();
    assert_eq!(again, spec);
    let jumbo: LinkProfile = "latency=1ms,mtu=9000".parse().unwrap();
    assert_eq!(jumbo.mtu, 9000);
    assert_eq!(jumbo.to_string().parse::<LinkProfile>().unwrap(), jumbo);
    for bad in [
        "moon",
        "loss=100%",
        "latency=150-20ms",
        "latency=5",
        "speed=1gbit",
        "mtu=1000",
        "mtu=70000",
    ] {
        assert!(bad.parse::<LinkProfile>().is_err(), "{bad} was accepted");
    }
}

/// The link table stays bounded however many destinations an endpoint
/// sends to: idle links are forgotten, busy ones kept.
#[tokio::test]
async fn idle_links_are_forgotten_beyond_the_cap() {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let inner = quinn::default_runtime()
        .unwrap()
        .wrap_udp_socket(std_socket)
        .unwrap();
    let profile: LinkProfile = "latency=50ms,bandwidth=1gbit".parse().unwrap();
    let socket = ShapedSocket::new(inner, profile).unwrap();
    let transmit = |port: u16| Transmit {
        // A port nothing listens on, on loopback.
        destination: SocketAddr::from(([127, 0, 0, 1], port)),
        ecn: None,
        contents: &[0u8; 8],
        segment_size: None,
        src_ip: None,
    };
    let send = |port: u16, now: Instant| {
        let mut state = socket.state.lock().unwrap();
        socket.admit(&mut state, now, &transmit(port), &[0u8; 8]);
        (
            state.links.len(),
            state.links.contains_key(&transmit(port).destination),
        )
    };
    let start = Instant::now();
    for i in 0..MAX_LINKS as u16 {
        send(20_000 + i, start);
    }
    // All busy (their datagrams are 50 ms away): a new one is dropped.
    let drops = TOTALS.queue_drops.load(Ordering::Relaxed);
    assert_eq!(send(60_000, start), (MAX_LINKS, false));
    assert!(TOTALS.queue_drops.load(Ordering::Relaxed) > drops);
    // Once they are idle, a new destination makes room by forgetting them.
    let later = start + Duration::from_secs(1);
    assert_eq!(send(60_000, later), (1, true));
}

#[test]
fn a_link_has_one_latency_both_ways_within_the_range() {
    let planet = LinkProfile::named("planet").unwrap();
    let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for port in 4001..4050 {
        let b: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let latency = planet.latency_between(a, b);
        assert_eq!(latency, planet.latency_between(b, a));
        assert!(latency >= planet.latency_min && latency <= planet.latency_max);
        seen.insert(latency.as_millis() / 10);
    }
    assert!(seen.len() > 5, "links are spread over the range: {seen:?}");
}

/// A link drops datagrams larger than its MTU (with their IP and UDP
/// headers), as a router that may not fragment them does, and passes the
/// largest that fit.
#[tokio::test]
async fn datagrams_over_the_link_mtu_are_dropped() {
    let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let inner = quinn::default_runtime()
        .unwrap()
        .wrap_udp_socket(std_socket)
        .unwrap();
    let profile: LinkProfile = "latency=50ms".parse().unwrap();
    let socket = ShapedSocket::new(inner, profile).unwrap();
    let destination = SocketAddr::from(([127, 0, 0, 1], 9));
    let held = |len: usize| {
        let datagram = vec![0u8; len];
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &datagram,
            segment_size: None,
            src_ip: None,
        };
        let mut state = socket.state.lock().unwrap();
        let before = state.held.len();
        socket.admit(&mut state, Instant::now(), &transmit, &datagram);
        state.held.len() > before
    };
    let too_big = TOTALS.too_big.load(Ordering::Relaxed);
    assert!(held(1472), "a 1500-byte packet must pass");
    assert!(!held(1473), "a 1501-byte packet must be dropped");
    assert!(TOTALS.too_big.load(Ordering::Relaxed) > too_big);
}
