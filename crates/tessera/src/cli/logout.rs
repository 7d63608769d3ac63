//! `tessera logout`: ends the session on the server and forgets its
//! tokens; `--others` ends the user's other sessions and stays logged in,
//! `--everywhere` ends them all; `--local` only forgets the tokens, for a
//! server that is gone.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tessera_client::LogoutScope;

use super::profiles::Profiles;
use super::{ServerChoice, chosen_target, on_store, session};

/// Arguments of `tessera logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    #[command(flatten)]
    server: ServerChoice,

    /// Only forget the tokens on this machine, without telling the server
    /// (the session then stays valid there until its refresh token expires)
    #[arg(long, conflicts_with_all = ["others", "everywhere"])]
    local: bool,

    /// End every other session of this user (other devices) and stay logged
    /// in here
    #[arg(long, conflicts_with = "everywhere")]
    others: bool,

    /// End every session of this user, on every device, this one included
    #[arg(long, visible_alias = "all")]
    everywhere: bool,
}

pub(crate) async fn run(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let Some(target) = chosen_target(&args.server).await? else {
        eprintln!("not logged in");
        return Ok(ExitCode::FAILURE);
    };
    let server = target.server.clone();
    let (session, store) = session(&target)?;
    let key = server.clone();
    let Some(tokens) = on_store(&store, move |store| store.load(&key)).await? else {
        eprintln!("not logged in to {server}");
        forget_profile(&server, args.others).await?;
        return Ok(ExitCode::FAILURE);
    };

    if args.local {
        session.forget().await?;
        forget_profile(&server, false).await?;
        say!("Forgot the tokens of {} on {server}", tokens.username);
        return Ok(ExitCode::SUCCESS);
    }

    let scope = if args.others {
        LogoutScope::OtherSessions
    } else if args.everywhere {
        LogoutScope::Everywhere
    } else {
        LogoutScope::ThisSession
    };
    session.logout_sessions(scope).await.with_context(|| {
        format!(
            "cannot end the session on {server}; the tokens are kept so you \
             can retry (or use --local to only forget them)"
        )
    })?;
    forget_profile(&server, scope == LogoutScope::OtherSessions).await?;
    match scope {
        LogoutScope::OtherSessions => say!(
            "Ended the other sessions of {} on {server}; still logged in here",
            tokens.username
        ),
        LogoutScope::Everywhere => say!(
            "Logged out of {server} ({}) on every device",
            tokens.username
        ),
        LogoutScope::ThisSession => {
            say!("Logged out of {server} ({})", tokens.username);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Drops `server`'s profile once its tokens are gone (not when only the
/// other sessions ended).
async fn forget_profile(
    server: &tessera_client::ServerUrl,
    still_logged_in: bool,
) -> anyhow::Result<()> {
    if still_logged_in {
        return Ok(());
    }
    let mut profiles = Profiles::load().await?;
    profiles.remove(server);
    profiles.save().await
}
