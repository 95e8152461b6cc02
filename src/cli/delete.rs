//! `floe delete`: delete a deletable blob owned by the config's owner key.

use clap::Args;
use floe_client::{BlobStatus, Client};
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
    // Only this key's registration ends: another (another key's, or a
    // permanent one) keeps the blob certified, which the status says.
    let state = client.status(blob_id).await.map(|s| s.status);
    if json {
        // `null` when the status could not be read back (not "unknown",
        // which is a state: no registration was ever seen).
        print_json(&json!({
            "blobId": blob_id.to_string(),
            "registrationDeleted": true,
            "state": state.as_ref().ok().map(BlobStatus::name),
        }));
        return Ok(0);
    }
    match state {
        Ok(BlobStatus::Certified { certificate }) => {
            let body = &certificate.message.body;
            println!(
                "the registration of blob {blob_id} owned by key {} is deleted, but the blob stays \
                 certified until epoch {} by {} registration; `floe status {blob_id}` shows its proof",
                owner.public(),
                body.end_epoch.0,
                if body.deletable {
                    "another key's"
                } else {
                    "a permanent"
                }
            );
        }
        Ok(state) => println!(
            "blob {blob_id} deleted: its owner's deletion was accepted; status now {}",
            state.name()
        ),
        Err(e) => println!(
            "blob {blob_id}: its owner's deletion was accepted; its status could not be read \
             back ({e}); `floe status {blob_id}` asks again"
        ),
    }
    Ok(0)
}
