//! `tessera status`: which servers hold tokens, for which user, how long
//! the access token still lasts and where the tokens are kept. Reads the
//! credentials file only; nothing is sent to a server.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use tessera_client::{FileStore, ServerUrl, TokenStore};

use super::{ServerChoice, chosen_server, credentials, on_store};

/// Arguments of `tessera status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    server: ServerChoice,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let store = credentials()?;
    let Some(server) = chosen_server(&store, &args.server).await? else {
        eprintln!("not logged in");
        return Ok(ExitCode::FAILURE);
    };

    let key = server.clone();
    let Some(tokens) = on_store(&store, move |store| store.load(&key)).await? else {
        eprintln!("not logged in to {server}");
        return Ok(ExitCode::FAILURE);
    };

    let is_default = on_store(&store, FileStore::default_server).await? == Some(server.clone());
    print_status(&store, &server, is_default, &tokens);
    Ok(ExitCode::SUCCESS)
}

fn print_status(
    store: &FileStore,
    server: &ServerUrl,
    is_default: bool,
    tokens: &tessera_client::StoredTokens,
) {
    let now = SystemTime::now();
    let access = match tokens.time_left(now) {
        Some(left) => format!("valid for {}", human(left)),
        None => {
            let expired_at = SystemTime::UNIX_EPOCH + Duration::from_secs(tokens.expires_at);
            let ago = now.duration_since(expired_at).unwrap_or_default();
            format!("expired {} ago", human(ago))
        }
    };

    let marker = if is_default { " (default)" } else { "" };
    println!("{server}{marker}");
    println!("  user:          {}", tokens.username);
    println!("  access token:  {access}; renewed automatically");
    println!("  stored in:     {}", store.path().display());
}

/// `1h 5m`, `4m 12s`, `9s`: two units at most, enough to plan by.
fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours) = (secs / 86_400, secs / 3_600 % 24);
    let (minutes, seconds) = (secs / 60 % 60, secs % 60);
    match secs {
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{minutes}m {seconds}s"),
        3_600..86_400 => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_two_units_at_most() {
        let human = |secs| human(Duration::from_secs(secs));

        assert_eq!(human(0), "0s");
        assert_eq!(human(59), "59s");
        assert_eq!(human(61), "1m 1s");
        assert_eq!(human(3_600 + 5 * 60 + 9), "1h 5m");
        assert_eq!(human(2 * 86_400 + 3 * 3_600), "2d 3h");
    }
}
