//! `tessera login`: asks for the user name and password (or reads the
//! password from standard input), logs in with the password grant, and
//! keeps the tokens in the credentials file.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use super::{ServerChoice, credentials, on_store, required_server, session};

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
}

pub(crate) async fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let store = credentials()?;
    let server = required_server(&store, &args.server).await?;
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
        ask_password(format!("Password for {username}: ")).await?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }

    let session = session(&store, server.clone())?;
    session
        .login(&username, &password)
        .await
        .with_context(|| format!("cannot log in to {server}"))?;
    let default = server.clone();
    on_store(&store, move |store| store.set_default_server(&default)).await?;

    println!("Logged in to {server} as {username}");
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
