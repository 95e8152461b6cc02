//! The `floe` command line: one module per subcommand, each with its
//! arguments and what it does, and what they share (the [`Failure`] that
//! sets the exit code, blob IDs, input files, JSON output). `main.rs` only
//! parses the arguments and dispatches to them.

pub mod blob_id;
pub mod completions;
pub mod config;
pub mod delete;
pub mod gateway;
pub mod health;
pub mod info;
pub mod progress;
pub mod read;
pub mod status;
pub mod store;

use std::io::Read as _;
use std::path::Path;

use bytes::Bytes;
use floe_client::ClientError;
use floe_codec::BlobId;

/// A failure and its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad arguments or a malformed blob ID (exit code 2).
    Usage(String),
    /// The committee's answer (exit code 3, 4, 5 or 1, by kind).
    Client(ClientError),
    /// Any other failure (exit code 1).
    Other(String),
}

impl Failure {
    /// The process's exit code for this failure.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Client(e) => match e {
                ClientError::NotCertified { .. }
                | ClientError::Deleted { .. }
                | ClientError::Expired { .. } => 3,
                ClientError::Invalid { .. } => 4,
                ClientError::NotEnoughShards { .. } | ClientError::EpochChanged { .. } => 5,
                ClientError::Rejected(_)
                | ClientError::NotAllowed(_)
                | ClientError::NotAdmitted { .. } => 1,
            },
            Failure::Other(_) => 1,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::Client(e) => write!(f, "{e}"),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::Other(e.to_string())
    }
}

/// Parses a blob ID given on the command line; a malformed one is a usage
/// error.
pub fn parse_blob_id(text: &str) -> Result<BlobId, Failure> {
    text.parse().map_err(|_| {
        Failure::Usage(format!(
            "{text:?} is not a blob ID: expected 43 characters of URL-safe base64, as `floe store` and `floe blob-id` print"
        ))
    })
}

/// The bytes of the file at `path`, or of standard input for `-`.
pub fn read_input(path: &Path) -> Result<Bytes, Failure> {
    if path == Path::new("-") {
        let mut buffer = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buffer)
            .map_err(|e| Failure::Other(format!("cannot read standard input: {e}")))?;
        return Ok(Bytes::from(buffer));
    }
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))
}

/// Prints `value` as pretty JSON on standard output.
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("floe: cannot format JSON: {e}"),
    }
}
