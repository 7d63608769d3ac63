//! The client commands (`login`, `status`, `request`, `logout`): placeholder until the
//! client lands.

use std::process::ExitCode;

use clap::Subcommand;

/// Commands that talk to a Tessera server as a user.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Show whether this machine is logged in.
    Status,
}

/// Runs one client command and returns the process exit code.
pub(crate) async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Status => Ok(ExitCode::FAILURE),
    }
}
