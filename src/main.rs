//! `floe`: store, read and inspect blobs on a Floe committee, and run an
//! HTTP gateway in front of one.
//!
//! This file parses the arguments and dispatches; each subcommand lives in
//! its own module under [`floe::cli`].

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory as _, Parser, Subcommand};
use floe::cli::progress::Bars;
use floe::cli::{
    blob_id, completions, config, delete, gateway, health, info, parse_blob_id, read, status,
    store, Failure,
};
use floe_client::Client;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `status`: the blob is certified)
  1  any other failure (bad config, unreadable file, refused request)
  2  usage error (bad arguments, malformed blob ID)
  3  not found: the blob is not certified, or was deleted, or expired
  4  invalid: the blob is proven inconsistently encoded and has no content
  5  network failure: too few shards answered (nodes down or unreachable)";

/// Store, read and inspect blobs on a Floe committee.
///
/// Every answer is a protocol fact with its evidence: a stored blob comes
/// back with its certificate, a read is verified against the blob ID, and
/// a status is certified, invalid, deleted, expired or unknown, with proof.
#[derive(Debug, Parser)]
#[command(name = "floe", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
struct Cli {
    /// The client config (default: $FLOE_CONFIG, then floe/client.toml in
    /// the user's config directory).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of sentences.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store files as blobs and print each one's certificate.
    Store(store::StoreArgs),
    /// Read a blob, verified against its ID, to a file or standard output.
    Read(read::ReadArgs),
    /// A blob's state with its proof.
    Status(status::StatusArgs),
    /// Delete a deletable blob owned by the config's owner key.
    Delete(delete::DeleteArgs),
    /// A file's blob ID, computed locally (no network).
    BlobId(blob_id::BlobIdArgs),
    /// The committee: epoch, members, shards per node, quorum sizes.
    Info,
    /// Every node: reachable, epoch, drift, stored bytes.
    Health,
    /// Serve the HTTP publisher and aggregator (both unless one is named).
    Gateway(gateway::GatewayArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff), as packages install it.
    #[command(hide = true)]
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FLOE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floe: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("floe: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

/// Runs one command; `Ok` carries the exit code of a command that answers
/// with one (`status`, `health`).
async fn run(cli: Cli) -> Result<u8, Failure> {
    let bars = Bars::new(!cli.quiet && std::io::stderr().is_terminal());
    // A malformed blob ID is a usage error, whatever the config.
    if let Command::Read(read::ReadArgs { blob_id, .. })
    | Command::Status(status::StatusArgs { blob_id })
    | Command::Delete(delete::DeleteArgs { blob_id }) = &cli.command
    {
        parse_blob_id(blob_id)?;
    }
    match cli.command {
        Command::Completions(args) => completions::run(args, &mut Cli::command()),
        Command::Man => completions::man(Cli::command()),
        Command::BlobId(args) => blob_id::run(args, cli.config.as_deref(), cli.json),
        Command::Gateway(gateway::GatewayArgs { openapi: true, .. }) => gateway::print_openapi(),
        command => {
            let file = config::load(cli.config.as_deref())?;
            let client = Client::new(&file.committee, file.client_config()?)?;
            let (client, json) = (Arc::new(client), cli.json);
            match command {
                Command::Store(args) => store::run(args, &file, &client, json, bars).await,
                Command::Read(args) => read::run(args, &client, json, bars).await,
                Command::Status(args) => status::run(args, &client, json).await,
                Command::Delete(args) => delete::run(args, &file, &client, json).await,
                Command::Info => info::run(&file, &client, json).await,
                Command::Health => health::run(&client, json).await,
                Command::Gateway(args) => gateway::run(args, &file, client).await,
                Command::Completions(_) | Command::Man | Command::BlobId(_) => Ok(0),
            }
        }
    }
}
