//! The `tessera` binary: `tessera server` runs the service, the other subcommands are the
//! command-line client. This file only parses arguments and hands over.

/// `println!` for command output: a closed pipe (`tessera status | head -1`) ends the
/// process quietly with the usual status 141, as for other command-line tools, where
/// `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

mod admin_command;
mod cli;
mod keys_command;
mod server_command;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tessera: a self-hosted authentication service and its command-line client.
#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: run the authentication server, or log in to one and call its APIs",
    propagate_version = true
)]
struct Tessera {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Tessera server.
    Server(server_command::ServerArgs),
    /// Administer users, sessions and the audit trail (works on the server's database).
    #[command(subcommand)]
    Admin(admin_command::AdminCommand),
    /// List or rotate the server's signing keys (works on the data dir).
    #[command(subcommand)]
    Keys(keys_command::KeysCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Writes one line to standard output; see [`say!`].
fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to standard output: {error}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Tessera::parse();
    let outcome = match args.command {
        Command::Server(server_args) => server_command::run(server_args).await,
        Command::Keys(command) => keys_command::run(command).await,
        Command::Admin(command) => admin_command::run(command).await,
        Command::Client(command) => cli::run(command).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
