//! `floe read`: read a blob, verified against its ID, to a file or
//! standard output.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use floe_client::{Client, ReadOptions};
use serde_json::json;

use super::progress::Bars;
use super::{parse_blob_id, print_json, Failure};

/// The arguments of `floe read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The blob ID.
    pub blob_id: String,
    /// Where to write it (standard output when absent).
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also re-encode the blob and check every commitment.
    #[arg(long)]
    pub strict: bool,
}

/// Reads the blob and writes it out; with `--json`, only to a file.
pub async fn run(args: ReadArgs, client: &Client, json: bool, bars: Bars) -> Result<u8, Failure> {
    let ReadArgs {
        blob_id,
        out,
        strict,
    } = args;
    if json && out.is_none() {
        return Err(Failure::Usage(
            "--json needs -o FILE: standard output carries the blob".into(),
        ));
    }
    let blob_id = parse_blob_id(&blob_id)?;
    let progress = bars.transfer(&blob_id.to_string());
    let options = ReadOptions {
        strict,
        progress: progress.sink(),
    };
    let result = client.read(blob_id, options).await;
    progress.finish();
    let blob = result?;
    match &out {
        Some(path) => {
            std::fs::write(path, &blob)
                .map_err(|e| Failure::Other(format!("cannot write {}: {e}", path.display())))?;
            if json {
                print_json(&json!({
                    "blobId": blob_id.to_string(), "size": blob.len(), "path": path,
                }));
            } else {
                println!(
                    "read blob {blob_id}: {} bytes, verified, written to {}",
                    blob.len(),
                    path.display()
                );
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&blob)
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::Other(format!("cannot write the blob: {e}")))?;
        }
    }
    Ok(0)
}
