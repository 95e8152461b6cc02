//! `floe health`: every node: reachable, epoch, drift, stored bytes.

use std::sync::Arc;
use std::time::Duration;

use floe_client::Client;
use serde_json::json;

use super::{print_json, Failure};

/// Asks every node at once (5 s each) and prints a row per node; exit
/// code 5 when any did not answer.
pub async fn run(client: &Arc<Client>, json: bool) -> Result<u8, Failure> {
    let mut calls = tokio::task::JoinSet::new();
    for (index, member) in client.members().iter().cloned().enumerate() {
        let client = Arc::clone(client);
        calls.spawn(async move {
            let answer = tokio::time::timeout(Duration::from_secs(5), client.info(&member)).await;
            (index, member, answer)
        });
    }
    let mut rows = Vec::new();
    while let Some(Ok(row)) = calls.join_next().await {
        rows.push(row);
    }
    rows.sort_by_key(|(index, _, _)| *index);
    let mut unreachable = 0;
    let mut out = Vec::new();
    for (_, member, answer) in rows {
        let row = match answer {
            Ok(Ok(info)) => json!({
                "nodeId": member.node_id.0, "address": member.address, "reachable": true,
                "epoch": info.epoch.0, "drift": info.drift, "storedBytes": info.stored_bytes,
                "shards": info.shards.len(), "factsKnown": info.facts_known,
            }),
            Ok(Err(e)) => {
                unreachable += 1;
                json!({"nodeId": member.node_id.0, "address": member.address, "reachable": false, "error": e.to_string()})
            }
            Err(_) => {
                unreachable += 1;
                json!({"nodeId": member.node_id.0, "address": member.address, "reachable": false, "error": "no answer within 5 s"})
            }
        };
        if !json {
            if row["reachable"] == true {
                println!(
                    "  {:<12} up    epoch {:<4} drift {:<5} {:>12} bytes stored  {:>4} shards",
                    member.node_id.0, row["epoch"], row["drift"], row["storedBytes"], row["shards"]
                );
            } else {
                println!(
                    "  {:<12} DOWN  {}",
                    member.node_id.0,
                    row["error"].as_str().unwrap_or_default()
                );
            }
        }
        out.push(row);
    }
    if json {
        print_json(&serde_json::Value::Array(out));
    } else {
        println!(
            "{} of {} nodes reachable",
            client.members().len() - unreachable,
            client.members().len()
        );
    }
    Ok(if unreachable == 0 { 0 } else { 5 })
}
