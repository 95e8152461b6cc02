//! The `floe` binary against a real local committee (7 nodes, 100 shards,
//! QUIC on 127.0.0.1, RocksDB in a temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Output;

use floe_node::{Limits, Tasks};
use floe_testkit::local::Cluster;

/// Writes a client config for the committee under `dir`.
fn client_config(dir: &Path) -> PathBuf {
    let path = dir.join("client.toml");
    std::fs::write(
        &path,
        "committee = \"committee.toml\"\nowner_key = \"owner.key\"\n",
    )
    .unwrap();
    path
}

/// Runs `floe` with `args` (off the async runtime, which serves the nodes).
async fn floe(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(&args)
            .env_remove("FLOE_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn blob(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i * 7 % 251) as u8 ^ (i >> 10) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_read_status_blob_id_delete_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(
        dir.path(),
        7,
        100,
        3_600_000,
        Limits::default(),
        Tasks::brisk(),
    )
    .await
    .unwrap();
    let config = client_config(dir.path());
    let config = config.to_str().unwrap();
    let data = blob(300_000);
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let file = file.to_str().unwrap();

    // Store: a sentence with the evidence.
    let stored = floe(&["--config", config, "store", file, "--epochs", "2"]).await;
    assert!(stored.status.success(), "{}", describe(&stored));
    let text = stdout(&stored);
    assert!(text.contains("certified in epoch 0 by"), "{text}");
    assert!(text.contains("available until epoch 2"), "{text}");
    let blob_id = text
        .split_whitespace()
        .skip_while(|w| *w != "blob")
        .nth(1)
        .unwrap()
        .to_owned();

    // blob-id computes the same ID offline.
    let offline = floe(&["--config", config, "blob-id", file]).await;
    assert!(offline.status.success(), "{}", describe(&offline));
    assert_eq!(stdout(&offline).trim(), blob_id);
    let by_shards = floe(&["blob-id", "--shards", "100", file]).await;
    assert_eq!(stdout(&by_shards).trim(), blob_id);

    // --json on a second store: already certified, same ID.
    let again = floe(&["--config", config, "--json", "store", file]).await;
    assert!(again.status.success(), "{}", describe(&again));
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        json[0]["result"]["alreadyCertified"]["blobId"],
        blob_id.as_str()
    );

    // Read back to a file and to stdout: byte-identical.
    let out = dir.path().join("out.bin");
    let read = floe(&[
        "--config",
        config,
        "read",
        &blob_id,
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(read.status.success(), "{}", describe(&read));
    assert_eq!(std::fs::read(&out).unwrap(), data);
    let piped = floe(&["--config", config, "read", &blob_id]).await;
    assert!(piped.status.success(), "{}", describe(&piped));
    assert_eq!(piped.stdout, data);

    // Status: certified, as a sentence and as JSON.
    let status = floe(&["--config", config, "status", &blob_id]).await;
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(stdout(&status).contains("certified in epoch 0 by"));
    let status = floe(&["--config", config, "--json", "status", &blob_id]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["state"], "certified");
    assert_eq!(json["endEpoch"], 2);

    // info and health.
    let info = floe(&["--config", config, "--json", "info"]).await;
    let json: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(json["nShards"], 100);
    assert_eq!(json["quorumShards"], 67);
    assert_eq!(json["members"].as_array().unwrap().len(), 7);
    let health = floe(&["--config", config, "--json", "health"]).await;
    assert_eq!(health.status.code(), Some(0), "{}", describe(&health));
    let json: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let nodes = json.as_array().unwrap();
    assert_eq!(nodes.len(), 7);
    assert!(nodes
        .iter()
        .all(|n| n["reachable"] == true && n["drift"] == 0));

    // A blob never stored: "not found" (3) for read and status.
    let missing = dir.path().join("missing.bin");
    std::fs::write(&missing, b"never stored").unwrap();
    let missing_id =
        stdout(&floe(&["--config", config, "blob-id", missing.to_str().unwrap()]).await)
            .trim()
            .to_owned();
    let read = floe(&["--config", config, "read", &missing_id]).await;
    assert_eq!(read.status.code(), Some(3), "{}", describe(&read));
    assert!(String::from_utf8_lossy(&read.stderr).contains("is not certified"));
    let status = floe(&["--config", config, "status", &missing_id]).await;
    assert_eq!(status.status.code(), Some(3), "{}", describe(&status));
    assert!(stdout(&status).contains("unknown"));

    // A malformed blob ID is a usage error (2).
    let bad = floe(&["--config", config, "status", "not-a-blob-id"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));

    // Deletable: the owner key is created on first use, then deletes.
    let deletable = dir.path().join("deletable.bin");
    std::fs::write(&deletable, blob(5_000)).unwrap();
    let stored = floe(&[
        "--config",
        config,
        "--json",
        "store",
        "--deletable",
        deletable.to_str().unwrap(),
    ])
    .await;
    assert!(stored.status.success(), "{}", describe(&stored));
    assert!(dir.path().join("owner.key").exists());
    let json: serde_json::Value = serde_json::from_slice(&stored.stdout).unwrap();
    let object = &json[0]["result"]["newlyCreated"]["blobObject"];
    assert_eq!(object["deletable"], true);
    let deletable_id = object["blobId"].as_str().unwrap().to_owned();
    let deleted = floe(&["--config", config, "--json", "delete", &deletable_id]).await;
    assert!(deleted.status.success(), "{}", describe(&deleted));
    let json: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(json["deletionAccepted"], true);
    assert_eq!(json["state"], "deleted", "{}", describe(&deleted));
    let status = floe(&["--config", config, "status", &deletable_id]).await;
    assert_eq!(status.status.code(), Some(3), "{}", describe(&status));
    assert!(stdout(&status).contains("deleted by its owner"));
    // A permanent blob cannot be deleted.
    let refused = floe(&["--config", config, "delete", &blob_id]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    // The permanent blob's content stored again as deletable: deleting
    // that registration leaves the blob certified, and the CLI says so.
    let again = floe(&["--config", config, "store", "--deletable", file]).await;
    assert!(again.status.success(), "{}", describe(&again));
    let deleted = floe(&["--config", config, "delete", &blob_id]).await;
    assert!(deleted.status.success(), "{}", describe(&deleted));
    assert!(
        stdout(&deleted).contains("stays certified until epoch 2 by a permanent registration"),
        "{}",
        describe(&deleted)
    );
    let status = floe(&["--config", config, "status", &blob_id]).await;
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_committee_is_a_network_failure() {
    let dir = tempfile::tempdir().unwrap();
    // The committee exists on paper; no node runs.
    floe_testkit::local::generate(
        dir.path(),
        4,
        10,
        3_600_000,
        Limits::default(),
        Tasks::brisk(),
    )
    .unwrap();
    let config = client_config(dir.path());
    let config = config.to_str().unwrap();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, blob(1000)).unwrap();
    let id = stdout(&floe(&["--config", config, "blob-id", file.to_str().unwrap()]).await)
        .trim()
        .to_owned();

    let read = floe(&["--config", config, "read", &id]).await;
    assert_eq!(read.status.code(), Some(5), "{}", describe(&read));
    assert!(String::from_utf8_lossy(&read.stderr).contains("answered"));
    let health = floe(&["--config", config, "health"]).await;
    assert_eq!(health.status.code(), Some(5), "{}", describe(&health));
    assert!(stdout(&health).contains("0 of 4 nodes reachable"));
}

#[tokio::test]
async fn missing_config_says_what_to_do_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking({
        let home = dir.path().to_owned();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
                .args(["info"])
                .env_remove("FLOE_CONFIG")
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join("config"))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no client config found"), "{stderr}");
    assert!(stderr.contains("FLOE_CONFIG"), "{stderr}");

    let completions = floe(&["completions", "bash"]).await;
    assert!(completions.status.success());
    assert!(stdout(&completions).contains("blob-id"));
    let usage = floe(&["store"]).await;
    assert_eq!(usage.status.code(), Some(2));
}
