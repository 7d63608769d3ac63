//! The client commands (`login`, `status`, `request`, `token`, `profiles`,
//! `logout`): parse what the user asked, find the profile (server and
//! token store) it concerns, and hand over to the SDK's `Session`. One
//! module per command; `profiles` also owns the profiles file and
//! `storage` the choice between keyring and file. Failures end here: each
//! is printed with what to do next and mapped to a documented exit code.

mod login;
mod logout;
mod profiles;
mod request;
mod status;
mod storage;
mod token;

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use tessera_client::{Error as ClientError, ServerUrl, Session, StoreError, TokenStore};

use profiles::{Profile, Profiles};

/// Labels the sessions this tool opens, so the user can tell them apart
/// from the browser's in their list of devices.
const CLIENT_ID: &str = "tessera-cli";

/// An access token that replaces any stored one, for scripts and CI.
const TOKEN_VARIABLE: &str = "TESSERA_TOKEN";

/// The exit codes, shown under every client command's `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  not logged in, or the session has ended: log in again
  2  invalid arguments
  3  the server answered with an error status (`request`)
  4  the server could not be reached
  5  throttled by the server: wait as told, then retry
  6  any other failure (local files, keyring, a token failing --verify)

Environment:
  TESSERA_TOKEN    an access token to use instead of the stored ones (no renewal)
  XDG_CONFIG_HOME  where the tessera/ folder with profiles and credentials lives";

const EXIT_LOGGED_OUT: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_HTTP_STATUS: u8 = 3;
const EXIT_UNREACHABLE: u8 = 4;
const EXIT_THROTTLED: u8 = 5;
const EXIT_OTHER: u8 = 6;

/// Commands that talk to a Tessera server as a user.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Log in to a server and keep the tokens (system keyring, else a
    /// 0600 file) for later commands.
    #[command(after_help = EXIT_CODES)]
    Login(login::LoginArgs),
    /// Create an account on a server (asks for the password twice), then log
    /// in as `login` does.
    #[command(after_help = EXIT_CODES)]
    Signup(login::LoginArgs),
    /// Show the user, roles, how long the access token lasts and where
    /// the tokens are kept; exit 1 when logged out.
    #[command(after_help = EXIT_CODES)]
    Status(status::StatusArgs),
    /// Send an authenticated request (like curl) and print the answer.
    #[command(
        override_usage = "tessera request [OPTIONS] [METHOD] <PATH|URL>",
        after_help = EXIT_CODES
    )]
    Request(request::RequestArgs),
    /// Decode or print the access token.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// List the servers you are logged in to.
    #[command(after_help = EXIT_CODES)]
    Profiles(profiles::ProfilesArgs),
    /// End the session on the server and forget its tokens.
    #[command(after_help = EXIT_CODES)]
    Logout(logout::LogoutArgs),
}

/// Runs one client command and returns the process exit code. Errors are
/// printed here, so the code says what kind of failure it was.
pub(crate) async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        ClientCommand::Login(args) => login::run(args).await,
        ClientCommand::Signup(args) => login::sign_up(args).await,
        ClientCommand::Status(args) => status::run(args).await,
        ClientCommand::Request(args) => request::run(args).await,
        ClientCommand::Token(command) => token::run(command).await,
        ClientCommand::Profiles(args) => profiles::run(args).await,
        ClientCommand::Logout(args) => logout::run(args).await,
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(error) => {
            let (code, advice) = classify(&error);
            eprintln!("error: {error:#}");
            if let Some(advice) = advice {
                eprintln!("{advice}");
            }
            Ok(ExitCode::from(code))
        }
    }
}

/// The `--server` and `--profile` options every command shares.
#[derive(Debug, Args)]
struct ServerChoice {
    /// Server URL, such as https://auth.example.com [default: the profile
    /// last logged in to]
    #[arg(long, value_name = "URL")]
    server: Option<String>,

    /// Profile name given at login (or a server URL)
    #[arg(long, short = 'p', value_name = "NAME")]
    profile: Option<String>,
}

/// Nothing says which server is meant, or no tokens are kept for it: the
/// user must log in (exit code 1).
#[derive(Debug)]
struct NotLoggedIn(String);

impl fmt::Display for NotLoggedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotLoggedIn {}

/// The command line asks for something this tool does not do (exit code 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A server and, if the user logged in to it with this tool, its profile.
#[derive(Debug, Clone)]
struct Target {
    server: ServerUrl,
    profile: Option<Profile>,
}

/// The profile `choice` names; else the default one; else the only one.
/// `None` when nothing says which server is meant.
async fn chosen_target(choice: &ServerChoice) -> anyhow::Result<Option<Target>> {
    let profiles = Profiles::load().await?;
    if let Some(name) = &choice.profile {
        return match profiles.find(name) {
            Some(target) => {
                let other = choice.server.as_deref().map(ServerUrl::parse);
                if let Some(other) = other.transpose()?
                    && other != target.server
                {
                    anyhow::bail!("profile `{name}` is {}, not {other}", target.server);
                }
                Ok(Some(target))
            }
            None => Err(NotLoggedIn(format!(
                "no profile `{name}`: `tessera profiles` lists them, \
                 `tessera login --server URL --profile {name}` makes it"
            ))
            .into()),
        };
    }
    if let Some(url) = &choice.server {
        let server = ServerUrl::parse(url)?;
        let profile = profiles.get(&server);
        return Ok(Some(Target { server, profile }));
    }
    if let Some(target) = profiles.default_target()? {
        return Ok(Some(target));
    }
    // Logins made before profiles existed are only in the credentials file.
    let file = storage::file_store()?;
    let default = on_store(&file, |store| store.default_server()).await?;
    if let Some(server) = default {
        return Ok(Some(Target {
            server,
            profile: None,
        }));
    }
    let known = on_store(&file, |store| store.servers()).await?;
    Ok(known.into_iter().next().map(|server| Target {
        server,
        profile: None,
    }))
}

/// Like [`chosen_target`], but a missing server is an error.
async fn required_target(choice: &ServerChoice) -> anyhow::Result<Target> {
    chosen_target(choice).await?.ok_or_else(|| {
        NotLoggedIn("not logged in: run `tessera login --server URL` first".into()).into()
    })
}

/// A session with the target's server keeping its tokens in its store.
fn session(target: &Target) -> anyhow::Result<(Session, Arc<dyn TokenStore>)> {
    let store = storage::open(target)?;
    let session = session_with(target.server.clone(), Arc::clone(&store))?;
    Ok((session, store))
}

fn session_with(server: ServerUrl, store: Arc<dyn TokenStore>) -> anyhow::Result<Session> {
    let session = Session::new(server, store).context("cannot set up HTTP")?;
    Ok(session.with_client_id(CLIENT_ID))
}

/// The access token from `TESSERA_TOKEN`, if set and not empty.
fn token_from_environment() -> Option<String> {
    std::env::var(TOKEN_VARIABLE)
        .ok()
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
}

/// Runs a store call off the async workers: it touches disk or the
/// keyring.
async fn on_store<S: Send + Sync + 'static + ?Sized, T: Send + 'static>(
    store: &Arc<S>,
    call: impl FnOnce(&S) -> Result<T, StoreError> + Send + 'static,
) -> anyhow::Result<T> {
    let store = Arc::clone(store);
    let outcome = tokio::task::spawn_blocking(move || call(&store))
        .await
        .context("token store task failed")?;
    Ok(outcome?)
}

/// The exit code of a failure and, where it helps, what to do about it.
fn classify(error: &anyhow::Error) -> (u8, Option<String>) {
    if error.downcast_ref::<NotLoggedIn>().is_some() {
        return (EXIT_LOGGED_OUT, None);
    }
    if error.downcast_ref::<UsageError>().is_some() {
        return (EXIT_USAGE, None);
    }
    let Some(client) = error.chain().find_map(|e| e.downcast_ref::<ClientError>()) else {
        return (EXIT_OTHER, None);
    };
    match client {
        ClientError::LoggedOut { server } | ClientError::SessionEnded { server } => (
            EXIT_LOGGED_OUT,
            Some(format!("log in again: tessera login --server {server}")),
        ),
        ClientError::Network(_) => (
            EXIT_UNREACHABLE,
            Some(
                "check that the server is running and that the URL is right \
                 (`tessera status` shows it), then retry"
                    .into(),
            ),
        ),
        ClientError::Status {
            status,
            retry_after,
            ..
        } if status.as_u16() == 429 => {
            let wait = match retry_after {
                Some(secs) => format!("wait {secs} s"),
                None => "wait a minute".to_owned(),
            };
            (
                EXIT_THROTTLED,
                Some(format!("too many attempts: {wait}, then retry")),
            )
        }
        ClientError::Status { status, .. } if status.is_server_error() => (
            EXIT_HTTP_STATUS,
            Some("the server failed; retry later or tell its operator".into()),
        ),
        ClientError::Status { .. } => (EXIT_HTTP_STATUS, None),
        ClientError::InvalidPath { .. }
        | ClientError::InvalidServerUrl { .. }
        | ClientError::ForeignUrl { .. } => (EXIT_USAGE, None),
        _ => (EXIT_OTHER, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_the_documented_exit_codes() {
        let code = |error: ClientError| classify(&anyhow::Error::new(error)).0;
        let throttled = ClientError::Status {
            status: reqwest::StatusCode::TOO_MANY_REQUESTS,
            code: None,
            description: None,
            retry_after: Some(7),
        };
        let ended = ClientError::SessionEnded {
            server: "http://127.0.0.1:1".into(),
        };

        let advice = classify(&anyhow::Error::new(throttled)).1.unwrap();
        assert!(advice.contains("wait 7 s"), "{advice}");
        assert_eq!(code(ended), EXIT_LOGGED_OUT);
        assert_eq!(
            classify(&anyhow::Error::new(NotLoggedIn("x".into()))).0,
            EXIT_LOGGED_OUT
        );
        assert_eq!(classify(&anyhow::anyhow!("other")).0, EXIT_OTHER);
    }

    #[test]
    fn exit_codes_are_listed_in_the_help() {
        for code in 0..=6 {
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{code}");
        }
    }
}
