//! `floe blob-id`: a file's blob ID, computed locally (no network).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::{config, print_json, read_input, Failure};

/// The arguments of `floe blob-id`.
#[derive(Debug, Args)]
pub struct BlobIdArgs {
    /// The file (`-` for standard input).
    pub file: PathBuf,
    /// Shards in the committee (default: from the client config).
    #[arg(long)]
    pub shards: Option<u16>,
}

/// Encodes the file for the committee's shard count and prints its blob
/// ID; the client config (at `config_path`, or the default places) is
/// read only when `--shards` is not given.
pub fn run(args: BlobIdArgs, config_path: Option<&Path>, json: bool) -> Result<u8, Failure> {
    let BlobIdArgs { file, shards } = args;
    let n_shards = match shards {
        Some(n) => n,
        None => config::load(config_path)?.committee.committee.n_shards(),
    };
    let encoding = floe_codec::EncodingConfig::new(n_shards)
        .map_err(|e| Failure::Usage(format!("--shards {n_shards}: {e}")))?;
    let blob = read_input(&file)?;
    let size = blob.len();
    let (metadata, _, _) = floe_codec::encode(&encoding, &blob)
        .map_err(|e| Failure::Other(format!("{}: {e}", file.display())))?;
    let blob_id = metadata.blob_id();
    if json {
        print_json(&json!({
            "path": file, "blobId": blob_id.to_string(), "size": size, "shards": n_shards,
        }));
    } else {
        println!("{blob_id}");
    }
    Ok(0)
}
