//! `floe store`: store files as blobs and print each one's certificate.

use std::path::PathBuf;

use clap::Args;
use floe_client::{BlobStatus, Client, QuorumStatus, StoreOptions};
use floe_gateway::model::{StatusResponse, StoreResponse};
use serde_json::json;

use super::config::ClientFile;
use super::progress::Bars;
use super::{print_json, read_input, Failure};

/// The arguments of `floe store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Files to store (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Epochs to store them for, from the current one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Let the config's owner key delete them before they expire.
    #[arg(long)]
    pub deletable: bool,
}

/// Stores each file in turn and prints its certificate, or all of them as
/// JSON at the end.
pub async fn run(
    args: StoreArgs,
    file: &ClientFile,
    client: &Client,
    json: bool,
    bars: Bars,
) -> Result<u8, Failure> {
    let StoreArgs {
        files,
        epochs,
        deletable,
    } = args;
    let owner = if deletable {
        Some(file.owner()?.public())
    } else {
        None
    };
    let mut results = Vec::new();
    for path in &files {
        let blob = read_input(path)?;
        let size = blob.len() as u64;
        let progress = bars.transfer(&path.display().to_string());
        let options = StoreOptions {
            owner,
            progress: progress.sink(),
        };
        let outcome = client.store(blob, epochs, options).await;
        progress.finish();
        let outcome = outcome?;
        let committee = client.committee(outcome.certificate.message.epoch);
        let response = StoreResponse::new(&outcome, &committee, size);
        if !json {
            let epoch = client.epoch();
            let status = QuorumStatus {
                status: BlobStatus::Certified {
                    certificate: outcome.certificate.clone(),
                },
                epoch,
                answered: 0,
            };
            let summary =
                StatusResponse::new(outcome.blob_id, &status, &committee, epoch.0).summary;
            println!("{}: blob {}", path.display(), outcome.blob_id);
            println!(
                "  {summary}{}",
                if outcome.newly_certified {
                    ""
                } else {
                    " (already certified: nothing uploaded)"
                }
            );
        }
        results.push(json!({ "path": path, "result": response }));
    }
    if json {
        print_json(&serde_json::Value::Array(results));
    }
    Ok(0)
}
