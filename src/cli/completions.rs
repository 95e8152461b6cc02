//! `floe completions`: print a shell completion script; `floe man`: the
//! manual page.

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

/// Prints the manual page of `command` (roff, for `man`): what
/// `cargo xtask dist` installs as `floe.1`.
pub fn man(command: clap::Command) -> Result<u8, Failure> {
    clap_mangen::Man::new(command)
        .render(&mut std::io::stdout())
        .map_err(|e| Failure::Other(format!("writing the manual page: {e}")))?;
    Ok(0)
}
