//! `floe delete`: delete a deletable blob owned by the config's owner key.

use clap::Args;
use floe_client::Client;
use serde_json::json;

use super::config::ClientFile;
use super::{parse_blob_id, print_json, Failure};

/// The arguments of `floe delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The blob ID.
    pub blob_id: String,
}

/// Deletes the blob with the config's owner key.
pub async fn run(
    args: DeleteArgs,
    file: &ClientFile,
    client: &Client,
    json: bool,
) -> Result<u8, Failure> {
    let blob_id = parse_blob_id(&args.blob_id)?;
    let owner = file.owner()?;
    client.delete(blob_id, &owner).await?;
    if json {
        print_json(&json!({ "blobId": blob_id.to_string(), "state": "deleted" }));
    } else {
        println!("blob {blob_id} deleted: nodes holding a quorum of shards accepted the owner's deletion");
    }
    Ok(0)
}
