//! `floe completions`: print a shell completion script.

use clap::Args;

use super::Failure;

/// The arguments of `floe completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script of `command` (the whole `floe` command
/// line) for the shell.
pub fn run(args: CompletionsArgs, command: &mut clap::Command) -> Result<u8, Failure> {
    clap_complete::generate(args.shell, command, "floe", &mut std::io::stdout());
    Ok(0)
}
