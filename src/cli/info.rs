//! `floe info`: the committee: epoch, members, shards per node, quorum
//! sizes, and the committee changes certified since genesis.

use floe_client::Client;
use serde_json::json;

use super::config::ClientFile;
use super::{print_json, Failure};

/// Prints the current committee (following the chain of committee
/// certificates from the config's genesis committee), the next one if it is
/// certified, and the clock.
pub async fn run(file: &ClientFile, client: &Client, json: bool) -> Result<u8, Failure> {
    let committee = &file.committee;
    let epoch = client.epoch();
    // Without an answer the genesis committee (and the changes known) stand.
    let latest_change = client
        .follow_chain()
        .await
        .unwrap_or_else(|_| client.chain().latest_epoch());
    let next = (latest_change > epoch).then(|| client.committee(latest_change));
    let current = client.committee(epoch);
    let encoding = current.encoding();
    // The change the epoch is in: which shards move and who said it synced.
    let handoff = client.handoff().await;
    let moves = handoff.moves();
    let synced: Vec<String> = handoff
        .synced_members()
        .map(|m| m.node_id.0.clone())
        .collect();
    let migration = json!({
        "epoch": handoff.epoch().0,
        "movedShards": moves.len(),
        "done": handoff.is_done(),
        "syncedShards": handoff.synced_weight(),
        "needed": handoff.next().quorum_threshold(),
        "synced": synced,
    });
    let members: Vec<_> = current
        .members()
        .iter()
        .map(|m| {
            json!({
                "nodeId": m.node_id.0, "address": m.address, "shards": m.shards.len(),
                "networkKey": m.network_key.to_string(),
            })
        })
        .collect();
    let info = json!({
        "epoch": epoch.0,
        "epochDurationMs": committee.clock.epoch_duration_ms,
        "nShards": current.n_shards(),
        "quorumShards": current.quorum_threshold(),
        "validityShards": current.validity_threshold(),
        "maxBlobSize": encoding.max_blob_size(),
        "members": members,
        "latestCommitteeChange": latest_change.0,
        "migration": migration,
        "nextCommittee": next.as_ref().map(|c| c.members().iter().map(|m| json!({
            "nodeId": m.node_id.0, "address": m.address, "shards": m.shards.len(),
        })).collect::<Vec<_>>()),
    });
    if json {
        print_json(&info);
    } else {
        println!(
            "committee of {} nodes, {} shards; epoch {} (epochs last {} s)",
            current.members().len(),
            current.n_shards(),
            epoch.0,
            committee.clock.epoch_duration_ms / 1000
        );
        println!(
            "a certificate needs {} shards (quorum); an invalid-blob certificate {} (validity); largest blob {} bytes",
            current.quorum_threshold(),
            current.validity_threshold(),
            encoding.max_blob_size()
        );
        for m in current.members() {
            println!(
                "  {:<12} {:<22} {:>4} shards",
                m.node_id.0,
                m.address,
                m.shards.len()
            );
        }
        if let Some(next) = &next {
            println!(
                "next committee, certified for epoch {}: {} nodes",
                latest_change.0,
                next.members().len()
            );
            for m in next.members() {
                println!(
                    "  {:<12} {:<22} {:>4} shards",
                    m.node_id.0,
                    m.address,
                    m.shards.len()
                );
            }
        } else if latest_change.0 > 0 {
            println!("committee last changed at epoch {}", latest_change.0);
        }
        if !moves.is_empty() {
            if handoff.is_done() {
                println!(
                    "shards moved at epoch {}: {} (done: members holding {} shards synced)",
                    handoff.epoch().0,
                    moves.len(),
                    handoff.synced_weight()
                );
            } else {
                println!(
                    "shards moving since epoch {}: {}; synced so far: {} shards of the {} needed ({}); reads of moved shards go to their previous holders meanwhile",
                    handoff.epoch().0,
                    moves.len(),
                    handoff.synced_weight(),
                    handoff.next().quorum_threshold(),
                    if synced.is_empty() { "none".to_string() } else { synced.join(", ") }
                );
            }
        }
    }
    Ok(0)
}
