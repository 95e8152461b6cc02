//! Local testnets of real `floe-node` processes: the `cargo xtask testnet`
//! operations, the demo and a short chaos run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use floe_api::BlobStatus;
use floe_client::{Client, ClientConfig};
use floe_testkit::drill::{self, ChaosConfig};
use floe_testkit::testnet::Testnet;

/// `cargo test --workspace` builds `floe-node` beside `floe` (floe-node's
/// own binary tests need it).
fn node_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_floe")).with_file_name("floe-node");
    assert!(
        path.exists(),
        "{} is built by `cargo test --workspace`",
        path.display()
    );
    path
}

fn floe_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_floe"))
}

fn floe(testnet: &Testnet, args: &[&str]) -> std::process::Output {
    std::process::Command::new(floe_bin())
        .arg("--config")
        .arg(testnet.client_config())
        .args(args)
        .output()
        .unwrap()
}

async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testnet_up_store_read_kill_restart_wipe_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut testnet = Testnet::create_or_open(dir.path(), 7, 100, &node_bin())
        .unwrap()
        .down_on_drop();
    testnet.up(Duration::from_secs(60)).await.unwrap();
    let status = testnet.status().await.unwrap();
    assert_eq!(status.len(), 7);
    assert!(status
        .iter()
        .all(|n| n.pid.is_some() && n.reachable && n.drift == Some(0)));

    // Store and read with the floe binary.
    let file = dir.path().join("data.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let stored = floe(&testnet, &["--json", "store", file.to_str().unwrap()]);
    assert!(stored.status.success(), "{stored:?}");
    let json: serde_json::Value = serde_json::from_slice(&stored.stdout).unwrap();
    let blob_id = json[0]["result"]["newlyCreated"]["blobObject"]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = floe(&testnet, &["read", &blob_id]);
    assert!(read.status.success());
    assert_eq!(read.stdout, data);

    // kill: the process is gone, the node unreachable; reads still work.
    testnet.stop(0, true).unwrap();
    let status = testnet.status().await.unwrap();
    assert!(status[0].pid.is_none() && !status[0].reachable);
    assert!(status[1..].iter().all(|n| n.reachable));
    let read = floe(&testnet, &["read", &blob_id]);
    assert_eq!(read.stdout, data, "a read survives a killed node");

    // restart: back and healthy.
    testnet.start(0).unwrap();
    testnet
        .wait_healthy(0, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(testnet.status().await.unwrap()[0].reachable);

    // wipe: the database is gone, then rebuilt by repair.
    // RocksDB names each database it creates in its IDENTITY file.
    let identity = |t: &Testnet| std::fs::read_to_string(t.database(1).join("IDENTITY")).unwrap();
    let before = identity(&testnet);
    testnet.wipe(1).unwrap();
    testnet
        .wait_healthy(1, Duration::from_secs(30))
        .await
        .unwrap();
    let client = Client::new(testnet.file(), ClientConfig::default()).unwrap();
    let member = testnet.file().committee.members()[1].clone();
    let id = blob_id.parse().unwrap();
    eventually(
        Duration::from_secs(60),
        "the wiped node is certified and repaired",
        async || {
            let certified = matches!(
                client.node_status(&member, id).await.map(|a| a.status),
                Ok(BlobStatus::Certified { .. })
            );
            let info = client.info(&member).await;
            certified && info.is_ok_and(|i| i.drift == 0)
        },
    )
    .await;
    assert_ne!(identity(&testnet), before, "wipe made a new database");

    // down: every process gone; up again: the same network with its data.
    testnet.down().unwrap();
    assert!(testnet
        .status()
        .await
        .unwrap()
        .iter()
        .all(|n| n.pid.is_none()));
    let mut again = Testnet::open(dir.path(), &node_bin())
        .unwrap()
        .down_on_drop();
    again.up(Duration::from_secs(60)).await.unwrap();
    let read = floe(&again, &["read", &blob_id]);
    assert_eq!(read.stdout, data, "the data survives down and up");
    again.down().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut testnet = Testnet::create_or_open(dir.path(), 7, 100, &node_bin())
        .unwrap()
        .down_on_drop();
    let config = ChaosConfig {
        duration: Duration::from_secs(12),
        fault_every: Duration::from_millis(1500),
        max_blob: 64 << 10,
        seed: 7,
        settle: Duration::from_secs(90),
        // One member lies throughout (foreign proofs, flipped slivers,
        // oversized listings); the faults use what is left of f.
        byzantine: 1,
        store_epochs: 10,
    };
    let result = drill::chaos(&mut testnet, &config).await;
    testnet.down().unwrap();
    let tally = result.unwrap();
    assert!(tally.passed(), "{tally:?}");
    assert!(tally.blobs_verified > 0, "{tally:?}");
    assert!(tally.kills + tally.restarts + tally.wipes > 0, "{tally:?}");
    assert!(tally.max_shards_down <= 33, "{tally:?}");
    assert_eq!(tally.hostile_members, 1, "{tally:?}");
    assert!(
        tally.lies_named > 0,
        "the hostile member was never caught lying: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_stores_reads_back_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample.bin");
    std::fs::write(
        &sample,
        (0..1_000_000u32)
            .map(|i| (i * 31 % 256) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut testnet = Testnet::create_or_open(&dir.path().join("net"), 7, 100, &node_bin())
        .unwrap()
        .down_on_drop();
    let blob_id = drill::demo(&mut testnet, floe_bin(), &sample)
        .await
        .unwrap();
    assert_eq!(blob_id.len(), 43);
    assert!(testnet
        .status()
        .await
        .unwrap()
        .iter()
        .all(|n| n.pid.is_none()));
}

/// The README's two commands are the ones CI and the demo run.
#[test]
fn readme_commands_are_what_ci_and_the_demo_run() {
    // The manifest dir of this run (cargo sets it when running tests), not
    // the one baked in at compile time: with a shared target dir a test
    // binary may have been built from another checkout.
    let root = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    );
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let readme = read("README.md");
    assert!(readme.contains("bash ./scripts/demo.sh"));
    assert!(readme.contains("bash ./scripts/test.sh"));
    assert!(read(".ci/run").contains("bash ./scripts/test.sh"));
    // The demo script runs `cargo xtask demo`, which runs drill::demo on a
    // fresh testnet, as the demo test above does.
    assert!(read("scripts/demo.sh").contains("cargo xtask demo"));
    assert!(read("xtask/src/testnet.rs").contains("drill::demo(&mut testnet"));
    assert!(read("scripts/test.sh").contains("cargo test --workspace --locked"));
    // One build for both: `cargo xtask` (the launcher) and the testnet it
    // drives build what `cargo test --workspace` builds, in the same
    // profile, with `cargo run`'s variables removed from the environment.
    let alias = read(".cargo/config.toml");
    assert!(
        alias.contains("xtask = \"run --quiet --package xtask-launch --\""),
        "{alias}"
    );
    let launcher = read("xtask/launch/src/main.rs");
    let shared = r#"args.extend(["--workspace", "--bins", "--tests"]);"#;
    assert!(
        launcher.contains(shared),
        "the launcher builds as the tests do"
    );
    assert!(launcher.contains("without_run_env(&mut command);"));
    let testnet = read("xtask/src/testnet.rs");
    for arg in ["\"--workspace\",", "\"--bins\",", "\"--tests\","] {
        assert!(
            testnet.contains(arg),
            "the testnet builds as the tests do: {arg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committee_changes_under_load_lose_nothing() {
    if let Ok(filter) = std::env::var("FLOE_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    // Real processes: a node joins, then a member leaves, under a load of
    // stores and reads; a node gaining shards is killed mid-migration each
    // time and started again.
    let dir = tempfile::tempdir().unwrap();
    let mut testnet = Testnet::create_or_open_with(dir.path(), 4, 12, 15_000, &node_bin())
        .unwrap()
        .down_on_drop();
    let config = ChaosConfig {
        max_blob: 64 << 10,
        seed: 11,
        settle: Duration::from_secs(60),
        store_epochs: 1000,
        ..ChaosConfig::default()
    };
    let result = floe_testkit::epochs::epochs(&mut testnet, &config, 2).await;
    testnet.down().unwrap();
    if result.is_err() {
        // What the nodes said, for the failure's reader.
        for node in 0..testnet.nodes() {
            let log = std::fs::read_to_string(testnet.log(node)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- node-{node} ---");
            for line in &lines[lines.len().saturating_sub(25)..] {
                eprintln!("{line}");
            }
        }
    }
    let tally = result.unwrap();
    assert_eq!(tally.epoch_changes, 2, "{tally:?}");
    assert!(tally.passed(), "{tally:?}");
    assert_eq!(tally.read_errors, 0, "{tally:?}");
    assert!(tally.blobs_verified > 0 && tally.reads > 0, "{tally:?}");
    assert_eq!(tally.kills, 2, "{tally:?}");
}

/// Whether this process may make network namespaces (root, and `ip`).
fn may_make_namespaces() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uids = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            uids.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false);
    let ip = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    root && ip
}

/// A process testnet whose nodes are separate hosts: each in a network
/// namespace of its own, at an address of its own. A client here stores
/// and reads across the bridge; a wiped node repairs from the others
/// (node-to-node traffic between namespaces); `down` deletes every
/// namespace and the bridge, and `up` makes them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_testnet_in_network_namespaces_stores_reads_repairs_and_cleans_up() {
    use floe_testkit::testnet::Hosts;
    if !may_make_namespaces() {
        eprintln!("SKIPPED: making network namespaces needs root and iproute2's `ip`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes = 4;
    let mut testnet = Testnet::create_or_open_on(
        dir.path(),
        nodes,
        40,
        floe_testkit::testnet::DEFAULT_EPOCH_MS,
        Hosts::Namespaces,
        &node_bin(),
    )
    .unwrap()
    .down_on_drop();
    assert_eq!(testnet.hosts(), Hosts::Namespaces);
    // Opening it as a loopback testnet is refused: it keeps its hosts.
    assert!(Testnet::create_or_open(dir.path(), nodes, 40, &node_bin()).is_err());
    testnet.up(Duration::from_secs(60)).await.unwrap();
    let lab = testnet.lab().unwrap().clone();

    // Every node in a namespace of its own, none in ours, each at its own
    // address on the lab's subnet.
    let namespace_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let ours = namespace_of("self");
    let mut seen = std::collections::HashSet::new();
    for node in 0..nodes {
        let pid = testnet.pid(node).unwrap().to_string();
        let namespace = namespace_of(&pid);
        assert_ne!(namespace, ours, "node-{node} runs in our namespace");
        assert!(seen.insert(namespace), "node-{node} shares a namespace");
        let member = &testnet.file().committee.members()[node];
        assert_eq!(
            member.address,
            format!(
                "{}:{}",
                lab.address(node).unwrap(),
                floe_testkit::netns::NODE_PORT
            )
        );
    }

    let client = Client::new(testnet.file(), ClientConfig::default()).unwrap();
    let data = bytes::Bytes::from((0..300_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let stored = client
        .store(data.clone(), 5, Default::default())
        .await
        .unwrap();
    let read = client
        .read(stored.blob_id, Default::default())
        .await
        .unwrap();
    assert_eq!(read, data);

    // A wiped node gets its slivers back from the nodes in the other
    // namespaces.
    testnet.wipe(1).unwrap();
    testnet
        .wait_healthy(1, Duration::from_secs(30))
        .await
        .unwrap();
    let member = testnet.file().committee.members()[1].clone();
    eventually(
        Duration::from_secs(60),
        "the wiped node is certified and repaired",
        async || {
            let certified = matches!(
                client
                    .node_status(&member, stored.blob_id)
                    .await
                    .map(|a| a.status),
                Ok(BlobStatus::Certified { .. })
            );
            let info = client.info(&member).await;
            certified && info.is_ok_and(|i| i.drift == 0)
        },
    )
    .await;

    // down: no namespace and no bridge left; up: all made again.
    testnet.down().unwrap();
    let exists = |name: String| std::path::Path::new("/run/netns").join(name).exists();
    assert!((0..nodes).all(|node| !exists(lab.namespace(node))));
    assert!(!std::path::Path::new("/sys/class/net")
        .join(lab.bridge())
        .exists());
    testnet.up(Duration::from_secs(60)).await.unwrap();
    let read = client
        .read(stored.blob_id, Default::default())
        .await
        .unwrap();
    assert_eq!(read, data, "the data survives down and up");
    testnet.down().unwrap();
    assert!((0..nodes).all(|node| !exists(lab.namespace(node))));
}
