//! The client commands (`login`, `status`, `request`, `logout`): parse
//! what the user asked, find the server and its tokens in the credentials
//! file, and hand over to the SDK's `Session`. One module per command.
//!
//! Not here yet, though the design describes them: `token decode`, and a
//! `TESSERA_TOKEN` variable that overrides the stored tokens; each is one
//! more module here plus a branch in `run` (and, for the variable, in
//! `session`).

mod login;
mod logout;
mod request;
mod status;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use tessera_client::{Error as ClientError, FileStore, ServerUrl, Session, StoreError};

/// Labels the sessions this tool opens, so the user can tell them apart
/// from the browser's in their list of devices.
const CLIENT_ID: &str = "tessera-cli";

/// Commands that talk to a Tessera server as a user.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Log in to a server and keep the tokens for later commands.
    Login(login::LoginArgs),
    /// Show where you are logged in and how long the access token lasts.
    Status(status::StatusArgs),
    /// Send an authenticated request and print the answer's body.
    #[command(override_usage = "tessera request [OPTIONS] [METHOD] <PATH>")]
    Request(request::RequestArgs),
    /// End the session on the server and forget its tokens.
    Logout(logout::LogoutArgs),
}

/// Runs one client command and returns the process exit code.
pub(crate) async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Login(args) => login::run(args).await,
        ClientCommand::Status(args) => status::run(args).await,
        ClientCommand::Request(args) => request::run(args).await,
        ClientCommand::Logout(args) => logout::run(args).await,
    }
}

/// The `--server` option every command shares.
#[derive(Debug, Args)]
struct ServerChoice {
    /// Server URL, such as https://auth.example.com [default: the server
    /// last logged in to]
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

/// The credentials file, where `login` puts tokens for the others to use.
fn credentials() -> anyhow::Result<FileStore> {
    FileStore::open_default().context("cannot locate the credentials file")
}

/// Runs a credentials-file call off the async workers: it touches disk.
async fn on_store<T: Send + 'static>(
    store: &FileStore,
    call: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = store.clone();
    let outcome = tokio::task::spawn_blocking(move || call(&store))
        .await
        .context("credentials file task failed")?;
    Ok(outcome?)
}

/// The server named with `--server`, else the default one in the
/// credentials file, else the only one there. `None` when nothing says
/// which server is meant.
async fn chosen_server(
    store: &FileStore,
    choice: &ServerChoice,
) -> anyhow::Result<Option<ServerUrl>> {
    if let Some(url) = &choice.server {
        return Ok(Some(ServerUrl::parse(url)?));
    }
    if let Some(default) = on_store(store, FileStore::default_server).await? {
        return Ok(Some(default));
    }
    let known = on_store(store, FileStore::servers).await?;
    match known.as_slice() {
        [only] => Ok(Some(only.clone())),
        [] => Ok(None),
        several => {
            let names: Vec<_> = several.iter().map(ServerUrl::as_str).collect();
            bail!(
                "logged in to several servers and none is the default; \
                 pass --server with one of: {}",
                names.join(", ")
            )
        }
    }
}

/// Like [`chosen_server`], but a missing server is an error.
async fn required_server(store: &FileStore, choice: &ServerChoice) -> anyhow::Result<ServerUrl> {
    chosen_server(store, choice)
        .await?
        .context("not logged in: run `tessera login --server URL` first")
}

/// A session with `server` keeping its tokens in `store`.
fn session(store: &FileStore, server: ServerUrl) -> anyhow::Result<Session> {
    let store = Arc::new(store.clone());
    let session = Session::new(server, store).context("cannot set up HTTP")?;
    Ok(session.with_client_id(CLIENT_ID))
}

/// Adds how to recover to the errors that mean "log in first".
fn with_login_hint(error: ClientError, server: &ServerUrl) -> anyhow::Error {
    match error {
        ClientError::LoggedOut { .. } | ClientError::SessionEnded { .. } => {
            anyhow!("{error}\nrun: tessera login --server {server}")
        }
        other => anyhow::Error::new(other),
    }
}
