//! `floe status`: a blob's state with its proof.

use clap::Args;
use floe_client::{BlobStatus, Client};
use floe_gateway::model::StatusResponse;

use super::{parse_blob_id, print_json, Failure};

/// The arguments of `floe status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The blob ID.
    pub blob_id: String,
}

/// Prints the blob's state and proof; the exit code says the state (0
/// certified, 4 invalid, 3 otherwise).
pub async fn run(args: StatusArgs, client: &Client, json: bool) -> Result<u8, Failure> {
    let blob_id = parse_blob_id(&args.blob_id)?;
    let status = client.status(blob_id).await?;
    let epoch = client.epoch();
    let response = StatusResponse::new(blob_id, &status, &client.committee(epoch), epoch.0);
    if json {
        print_json(&response);
    } else {
        println!("blob {blob_id}: {}", response.summary);
        if let Some(certificate) = &response.certificate {
            // Signers are numbered in the committee of the certificate's epoch.
            let signing = client.committee(floe_consensus::Epoch(certificate.epoch));
            let names: Vec<&str> = certificate
                .signers
                .iter()
                .filter_map(|i| signing.members().get(usize::from(*i)))
                .map(|m| m.node_id.0.as_str())
                .collect();
            println!(
                "  proof: certificate of epoch {} signed by {} ({}/{} shards, {} needed)",
                certificate.epoch,
                names.join(", "),
                certificate.signed_shards,
                certificate.total_shards,
                certificate.needed_shards
            );
        }
    }
    Ok(match status.status {
        BlobStatus::Certified { .. } => 0,
        BlobStatus::Invalid { .. } => 4,
        _ => 3,
    })
}
