//! `floe delete`: delete a deletable blob owned by the config's owner key.

use clap::Args;
use floe_client::{BlobStatus, Client, KeptBy};
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
    let signed_in = client.delete(blob_id, &owner).await?.deletion.message.epoch;
    // Only this key's registrations certified by then end: another (another
    // key's, a permanent one, or this key's certified later) keeps the blob
    // certified, which the status says.
    let state = client.status(blob_id).await.map(|s| s.status);
    if json {
        // `null` when the status could not be read back (not "unknown",
        // which is a state: no registration was ever seen).
        print_json(&json!({
            "blobId": blob_id.to_string(),
            "deletionAccepted": true,
            "state": state.as_ref().ok().map(BlobStatus::name),
        }));
        return Ok(0);
    }
    match state {
        Ok(BlobStatus::Certified { certificate }) => {
            let key = owner.public();
            let kept_by = match KeptBy::of(&certificate, &key, signed_in) {
                KeptBy::Permanent => "a permanent registration".to_owned(),
                KeptBy::AnotherKey => "another key's registration".to_owned(),
                KeptBy::LaterRegistration { certified } => format!(
                    "this key's registration certified in epoch {}, after the deletion's epoch \
                     {}: run `floe delete {blob_id}` again to end it",
                    certified.0, signed_in.0
                ),
                KeptBy::NotYetApplied => format!(
                    "this key's registration, as the members that answered have not applied the \
                     deletion yet: `floe status {blob_id}` shows when they have"
                ),
            };
            println!(
                "the deletion of blob {blob_id} by key {key} was accepted, but the blob stays \
                 certified until epoch {} by {kept_by}; `floe status {blob_id}` shows its proof",
                certificate.message.body.end_epoch.0
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
