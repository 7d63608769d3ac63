//! `tessera login`: asks for the user name and password (or reads the
//! password from standard input), logs in with the password grant, keeps
//! the tokens in the system keyring (else the credentials file) and
//! records the profile.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tessera_client::{MemoryStore, ServerUrl};

use super::profiles::Profiles;
use super::storage::{self, StoreKind};
use super::{ServerChoice, on_store, required_target, session_with};

/// Arguments of `tessera login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    #[command(flatten)]
    server: ServerChoice,

    /// User name [default: asked for]
    #[arg(long, short = 'u')]
    username: Option<String>,

    /// Read the password from the first line of standard input instead of
    /// asking for it, for scripts
    #[arg(long)]
    password_stdin: bool,

    /// Keep the tokens in the owner-only credentials file, without trying
    /// the system keyring
    #[arg(long)]
    insecure_storage: bool,
}

/// `tessera signup`: creates the account, then logs in as `login` does.
pub(crate) async fn sign_up(args: LoginArgs) -> anyhow::Result<ExitCode> {
    log_in(args, true).await
}

pub(crate) async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    log_in(args, false).await
}

async fn log_in(args: LoginArgs, create_account: bool) -> anyhow::Result<ExitCode> {
    // `--profile NAME --server URL` names a new profile; `--profile NAME`
    // alone logs in again to the server of an existing one.
    let (server, name) = match (&args.server.server, &args.server.profile) {
        (Some(url), name) => (ServerUrl::parse(url)?, name.clone()),
        (None, Some(name)) => match Profiles::load().await?.find(name) {
            Some(target) => (target.server, None),
            None => bail!("no profile `{name}` yet: add --server URL to create it"),
        },
        (None, None) => (required_target(&args.server).await?.server, None),
    };
    if server.is_cleartext_remote() {
        eprintln!(
            "warning: {server} is not HTTPS; the password and tokens cross \
             the network unencrypted"
        );
    }

    let username = match args.username {
        Some(username) => username,
        // One stream cannot carry both answers unambiguously.
        None if args.password_stdin => {
            bail!("--password-stdin needs --username")
        }
        None => ask_username().await?,
    };
    let username = username.trim().to_owned();
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if args.password_stdin {
        password_from_stdin().await?
    } else {
        let password = ask_password(format!("Password for {username}: ")).await?;
        if create_account && ask_password("Repeat the password: ".to_owned()).await? != password {
            bail!("the two passwords differ; nothing was created");
        }
        password
    };
    if password.is_empty() {
        bail!("the password is empty");
    }

    // Logged in against memory first; the tokens then go to the keyring
    // or the file, whichever works.
    let session = session_with(server.clone(), Arc::new(MemoryStore::new()))?;
    if create_account {
        session
            .sign_up(&username, &password)
            .await
            .with_context(|| format!("cannot create the account on {server}"))?;
        say!("Created the account {username} on {server}");
    }
    let tokens = session
        .login(&username, &password)
        .await
        .with_context(|| format!("cannot log in to {server}"))?;

    let mut profiles = Profiles::load().await?;
    let previous = profiles.get(&server).map(|profile| profile.store);
    let file = storage::file_store()?;
    let insecure = args.insecure_storage;
    let saved = on_store(&file, move |file| {
        storage::save_new_tokens(&tokens, insecure, storage::keyring, file)
    })
    .await?;
    if let Some(warning) = &saved.warning {
        eprintln!("{warning}");
    }
    if saved.kind == StoreKind::File && previous == Some(StoreKind::Keyring) {
        // The keyring still holds the previous login's tokens: remove
        // them (best effort) so only one copy exists.
        let key = server.clone();
        if let Ok(keyring) = storage::keyring() {
            let _ = on_store(&keyring, move |keyring| keyring.clear(&key)).await;
        }
    }
    if saved.kind == StoreKind::File {
        let default = server.clone();
        on_store(&file, move |file| file.set_default_server(&default)).await?;
    }
    profiles.record_login(&server, name.as_deref(), saved.kind);
    profiles.save().await?;

    say!("Logged in to {server} as {username}");
    Ok(ExitCode::SUCCESS)
}

async fn ask_username() -> anyhow::Result<String> {
    tokio::task::spawn_blocking(|| {
        let mut stderr = std::io::stderr();
        write!(stderr, "Username: ").and_then(|()| stderr.flush())?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok::<_, std::io::Error>(line)
    })
    .await?
    .context("cannot read the user name")
}

async fn ask_password(prompt: String) -> anyhow::Result<String> {
    // rpassword reads from the terminal with echo off, so the password
    // never shows on screen or in the scrollback.
    tokio::task::spawn_blocking(move || rpassword::prompt_password(prompt))
        .await?
        .context(
            "cannot read the password from the terminal \
             (use --password-stdin without one)",
        )
}

async fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await?
    .context("cannot read the password from standard input")?;

    // Only the line ending goes: spaces may be part of the password.
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}
