//! `tessera keys list` and `tessera keys rotate`: key administration on the data dir. A
//! running server notices a rotation within seconds; no restart is needed.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tessera_server::key_admin::{self, KeyState, KeyStatus};

use crate::server_command::ConfigArgs;

/// Subcommands of `tessera keys`. Both read the same configuration as the server
/// (pass its `--config`, flags or environment): the data dir says where the keys are,
/// and `access_ttl`, `leeway` and `key_activation_delay` say how long keys live.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// List the signing keys and their state (pass the server's configuration).
    List(ListArgs),
    /// Add a new signing key: published at once, signing after the activation delay.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Start signing after this long instead of the configured activation delay
    /// (0s signs at once; remote verifiers may then lag behind)
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
}

pub(crate) async fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = now();
    match command {
        KeysCommand::List(args) => {
            let config = args.config.load()?;
            let keys = key_admin::list(&config, now).await?;
            if keys.is_empty() {
                say!(
                    "no keys in {} yet: the server makes one on first start",
                    config.data_dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            say!("{:<45} {:<6} {:<21} STATE", "KID", "ALG", "SIGNS FROM");
            for key in &keys {
                print_key(key, now);
            }
        }
        KeysCommand::Rotate(args) => {
            let config = args.config.load()?;
            let key = key_admin::rotate(&config, args.delay, now)
                .await
                .context("cannot rotate the signing key")?;
            say!("new {} key {}", key.alg, key.kid);
            say!(
                "published now; signs from {} ({})",
                timestamp(key.activates_at),
                relative(key.activates_at - now)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_key(key: &KeyStatus, now: i64) {
    let state = match key.state {
        KeyState::Upcoming => format!("upcoming, signs {}", relative(key.activates_at - now)),
        KeyState::Signing => "signing".to_owned(),
        KeyState::Retiring { until } => format!("retiring, published until {}", timestamp(until)),
        KeyState::Expired => "expired, removed at the next server check".to_owned(),
    };
    say!(
        "{:<45} {:<6} {:<21} {state}",
        key.kid,
        key.alg.jose_name(),
        timestamp(key.activates_at)
    );
}

fn timestamp(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}

fn relative(seconds: i64) -> String {
    let span = humantime::format_duration(Duration::from_secs(seconds.unsigned_abs()));
    if seconds > 0 {
        format!("in {span}")
    } else {
        "now".to_owned()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
