//! `cargo xtask chaos --epochs N`: a continuous store and read load on a
//! process testnet across N committee changes (a node joins, a member
//! leaves, shards are reassigned by weight, and again), with a node that
//! gains shards killed in the middle of each migration and started again.
//! Every blob the load saw certified must read back from every member of
//! the last committee, and every member must end with drift 0.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use floe_client::{Client, ClientConfig, ReadOptions};
use floe_codec::BlobId;
use floe_consensus::{BlobStatus, Committee};

use crate::drill::{workload, ChaosConfig, DrillError, Tally};
use crate::testnet::Testnet;

fn failed(what: impl std::fmt::Display) -> DrillError {
    DrillError::Failed(what.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The testnet index of a member (`node-<i>`).
fn index(committee: &Committee, node_id: &str) -> Option<usize> {
    committee
        .members()
        .iter()
        .find(|m| m.node_id.0 == node_id)
        .and_then(|m| m.node_id.0.strip_prefix("node-")?.parse().ok())
}

/// Runs the load across `changes` committee changes on `testnet` (whose
/// epochs must be short enough for a change to be certified within one).
pub async fn epochs(
    testnet: &mut Testnet,
    config: &ChaosConfig,
    changes: u32,
) -> Result<Tally, DrillError> {
    testnet.up(Duration::from_secs(60)).await?;
    let clock = testnet.file().clock;
    let epoch_ms = clock.epoch_duration_ms;
    let client_config = ClientConfig {
        read_hedge_after: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    let client = Arc::new(Client::new(testnet.file(), client_config).map_err(failed)?);
    let certified: Arc<Mutex<Vec<(BlobId, Bytes)>>> = Arc::default();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(workload(
        Arc::clone(&client),
        Arc::clone(&certified),
        Arc::clone(&tally),
        Arc::clone(&stop),
        config.clone(),
    ));
    let count = |f: &dyn Fn(&mut Tally)| {
        if let Ok(mut t) = tally.lock() {
            f(&mut t);
        }
    };
    let mut gone: BTreeSet<usize> = BTreeSet::new();
    let outcome: Result<(), DrillError> = async {
        for change in 0..changes {
            // Early in an epoch: the proposal is certified within it.
            while epoch_ms - (now_ms() - clock.genesis_unix_ms) % epoch_ms < epoch_ms * 2 / 3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (epoch, current) = testnet.current_committee().await?;
            let (add, remove, weights, what): (Vec<usize>, Vec<usize>, Option<Vec<u16>>, String) =
                match change % 3 {
                    0 => {
                        let node = tokio::task::block_in_place(|| testnet.add_node())?;
                        testnet.wait_healthy(node, Duration::from_secs(60)).await?;
                        (vec![node], vec![], None, format!("node-{node} joins"))
                    }
                    1 => {
                        let leaving = current
                            .members()
                            .iter()
                            .filter_map(|m| index(&current, &m.node_id.0))
                            .min()
                            .ok_or_else(|| failed("no member to remove"))?;
                        (
                            vec![],
                            vec![leaving],
                            None,
                            format!("node-{leaving} leaves"),
                        )
                    }
                    _ => {
                        let mut weights = vec![1u16; current.members().len()];
                        weights[0] = 2;
                        (
                            vec![],
                            vec![],
                            Some(weights),
                            "shards reassigned by weight".into(),
                        )
                    }
                };
            let proposal = testnet
                .propose_next(&add, &remove, weights.as_deref())
                .await?;
            println!(
                "epoch change {}: {what}, into epoch {}",
                change + 1,
                proposal.epoch
            );
            for member in current.members() {
                if let Some(node) = index(&current, &member.node_id.0) {
                    tokio::task::block_in_place(|| testnet.approve(node, &proposal))?;
                }
            }
            // Certified within the epoch, then served from the next.
            let deadline = Instant::now() + Duration::from_millis(epoch_ms);
            while client.follow_chain().await.map_err(failed)? < proposal.epoch {
                if Instant::now() > deadline {
                    return Err(failed(format!(
                        "the committee of epoch {} was not certified in epoch {epoch}",
                        proposal.epoch
                    )));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            while clock.epoch_at(now_ms()) < proposal.epoch {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // A node that gains shards crashes mid-migration and comes back.
            let next = client.committee(proposal.epoch);
            let handoff = client.handoff().await;
            let gaining = handoff
                .moves()
                .iter()
                .filter_map(|m| index(&next, &m.to.node_id.0))
                .next();
            if let Some(node) = gaining {
                tokio::time::sleep(Duration::from_millis(500)).await;
                tokio::task::block_in_place(|| testnet.stop(node, true))?;
                count(&|t| t.kills += 1);
                tokio::time::sleep(Duration::from_secs(3)).await;
                tokio::task::block_in_place(|| testnet.start(node))?;
                count(&|t| t.restarts += 1);
            }
            // Settled: every moved shard's new holder said it synced (drift
            // under a running load comes and goes; it is checked at the end).
            let deadline = Instant::now() + config.settle;
            loop {
                // Asked by an observer of its own: the load's client is busy
                // with its own requests.
                let observer =
                    Client::new(testnet.file(), ClientConfig::default()).map_err(failed)?;
                observer.follow_chain().await.map_err(failed)?;
                let handoff = observer.handoff().await;
                if handoff.settled() {
                    break;
                }
                if Instant::now() > deadline {
                    let waiting: Vec<String> = handoff
                        .moves()
                        .iter()
                        .filter(|m| !handoff.has_synced(&m.to.network_key))
                        .map(|m| format!("{} (shard {})", m.to.node_id, m.shard))
                        .collect();
                    return Err(failed(format!(
                        "the change into epoch {} did not settle within {} s; not synced: {}",
                        proposal.epoch,
                        config.settle.as_secs(),
                        waiting.join(", ")
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            count(&|t| t.epoch_changes += 1);
            println!("  settled: every moved shard's new holder synced");
            // A member that left may go once its shards moved.
            for node in &remove {
                tokio::task::block_in_place(|| testnet.stop(*node, false))?;
                gone.insert(*node);
            }
        }
        Ok(())
    }
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    outcome?;

    // Every certified blob, from every member of the last committee, as a
    // client that knows only genesis sees it.
    let client = Client::new(testnet.file(), ClientConfig::default()).map_err(failed)?;
    client.follow_chain().await.map_err(failed)?;
    let (_, last) = testnet.current_committee().await?;
    let blobs = certified.lock().map(|b| b.clone()).unwrap_or_default();
    let mut tally = tally
        .lock()
        .map(|t| t.clone())
        .map_err(|_| failed("tally poisoned"))?;
    // The load stopped: repair finishes what its last stores left.
    let deadline = Instant::now() + config.settle;
    loop {
        let mut drifting = false;
        for member in last.members() {
            drifting |= !client.info(member).await.is_ok_and(|i| i.drift == 0);
        }
        if !drifting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for member in last.members() {
        if !client.info(member).await.is_ok_and(|i| i.drift == 0) {
            tally.blobs_lost += 1;
            println!("{} still drifts", member.node_id);
        }
    }
    for (blob_id, data) in &blobs {
        let mut ok = client
            .read(*blob_id, ReadOptions::default())
            .await
            .is_ok_and(|back| back == *data);
        for member in last.members() {
            ok &= matches!(
                client.node_status(member, *blob_id).await.map(|a| a.status),
                Ok(BlobStatus::Certified { .. })
            );
        }
        if ok {
            tally.blobs_verified += 1;
        } else {
            tally.blobs_lost += 1;
        }
    }
    tally.lies_named = client.health().iter().map(|h| h.misbehaviours).sum();
    Ok(tally)
}
