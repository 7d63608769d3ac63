//! `tessera status`: which server, which user and roles, how long the
//! access token still lasts, and where the tokens are kept. Reads the
//! profile and its store only; nothing is sent to a server. Exit code 1
//! when logged out.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use tessera_client::StoredTokens;

use super::storage;
use super::{
    EXIT_LOGGED_OUT, ServerChoice, chosen_target, on_store, session, token_from_environment,
};

/// Arguments of `tessera status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    server: ServerChoice,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(token) = token_from_environment() {
        say!("using the access token in TESSERA_TOKEN (stored tokens are ignored)");
        let claims = tessera_token_claims(&token);
        print_identity(claims.as_ref());
        return Ok(ExitCode::SUCCESS);
    }

    let Some(target) = chosen_target(&args.server).await? else {
        eprintln!("not logged in: run `tessera login --server URL`");
        return Ok(ExitCode::from(EXIT_LOGGED_OUT));
    };
    let server = target.server.clone();
    let (_session, store) = session(&target)?;
    let key = server.clone();
    let Some(tokens) = on_store(&store, move |store| store.load(&key)).await? else {
        eprintln!("not logged in to {server}: run `tessera login --server {server}`");
        return Ok(ExitCode::from(EXIT_LOGGED_OUT));
    };

    let name = target
        .profile
        .as_ref()
        .and_then(|profile| profile.name.as_deref())
        .map(|name| format!(" (profile {name})"))
        .unwrap_or_default();
    say!("{server}{name}");
    say!("  user:          {}", tokens.username);
    print_identity(tokens.unverified_claims().as_ref());
    say!("  access token:  {}", time_left(&tokens));
    say!(
        "  stored in:     {}",
        storage::describe(target.profile.map(|profile| profile.store))?
    );
    Ok(ExitCode::SUCCESS)
}

fn tessera_token_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    super::token::decode(token).ok().map(|(_, claims)| claims)
}

/// The roles (and the subject, when there is no stored user name) from
/// the access token's claims.
fn print_identity(claims: Option<&serde_json::Map<String, serde_json::Value>>) {
    let Some(claims) = claims else {
        return;
    };
    let roles: Vec<&str> = claims
        .get("roles")
        .and_then(serde_json::Value::as_array)
        .map(|roles| roles.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let roles = if roles.is_empty() {
        "none".to_owned()
    } else {
        roles.join(", ")
    };
    say!("  roles:         {roles}");
}

fn time_left(tokens: &StoredTokens) -> String {
    let now = SystemTime::now();
    match tokens.time_left(now) {
        Some(left) => format!("valid for {}; renewed automatically", human(left)),
        None => {
            let expired_at = SystemTime::UNIX_EPOCH + Duration::from_secs(tokens.expires_at);
            let ago = now.duration_since(expired_at).unwrap_or_default();
            format!("expired {} ago; the next command renews it", human(ago))
        }
    }
}

/// `1h 5m`, `4m 12s`, `9s`: two units at most, enough to plan by.
pub(super) fn human(duration: Duration) -> String {
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
