//! `tessera admin`: users, sessions and the audit trail of a server's database (the
//! SQLite file in its data dir, or PostgreSQL with `--database-url`, read from the same
//! configuration layers as the server), and backups of a server on SQLite. Changes
//! reach a running server within a second: ending a session or disabling a user
//! refuses their access tokens at once.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tessera_server::admin::Admin;
use tessera_server::backup;

use crate::server_command::ConfigArgs;

/// Subcommands of `tessera admin`.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// List or end sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Show the newest audit events.
    Audit(AuditArgs),
    /// Copy the SQLite database, with the signing keys of the data dir, into a new
    /// 0600 file while the server runs (on PostgreSQL: use pg_dump).
    Backup(BackupArgs),
    /// Restore a backup into a new or empty data dir (--data-dir), after checking it.
    Restore(RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// List every user.
    List(Target),
    /// Create a user; the password is read from standard input (one line).
    Create(NamedUser),
    /// Disable a user: ends every session of theirs and refuses new logins.
    Disable(NamedUser),
    /// Enable a disabled user.
    Enable(NamedUser),
    /// Replace a user's roles (none clears them); they reach tokens at the next renewal.
    SetRole(SetRoles),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionsCommand {
    /// List a user's open sessions.
    List(NamedUser),
    /// End a session by id.
    Revoke(SessionArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct NamedUser {
    /// The username (any case).
    username: String,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SetRoles {
    /// The username (any case).
    username: String,
    /// Role names.
    roles: Vec<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// The session id, as `tessera admin sessions list` shows it.
    id: String,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// How many events to show.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The backup file to write; it must not exist.
    file: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file to restore.
    file: PathBuf,
    #[command(flatten)]
    config: ConfigArgs,
}

pub(crate) async fn run(command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Backup(args) => {
            let summary = backup::back_up(&args.config.load()?, &args.file).await?;
            say!(
                "backed up {} users, {} open sessions and {} signing key files to {} (0600; \
                 it holds the signing keys: keep it as safe as the data dir)",
                summary.users,
                summary.open_sessions,
                summary.key_files,
                args.file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Restore(args) => {
            let config = args.config.load()?;
            let summary = backup::restore(&config, &args.file).await?;
            say!(
                "restored {} users, {} open sessions and {} signing key files into {}; \
                 start the server with --data-dir {}",
                summary.users,
                summary.open_sessions,
                summary.key_files,
                config.data_dir.display(),
                config.data_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Users(command) => users(command).await,
        AdminCommand::Sessions(SessionsCommand::List(args)) => {
            let admin = Admin::open(&args.config.load()?).await?;
            let sessions = admin.sessions(&args.username).await?;
            if sessions.is_empty() {
                say!("{} has no open session", args.username);
            }
            for session in sessions {
                say!(
                    "{}  created {}  last used {}  {}  {}",
                    session.id.0,
                    timestamp(session.created_at),
                    timestamp(session.last_used_at),
                    session.ip.as_deref().unwrap_or("-"),
                    session
                        .client_id
                        .or(session.user_agent)
                        .unwrap_or_else(|| "unknown device".to_owned()),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AdminCommand::Sessions(SessionsCommand::Revoke(args)) => {
            let admin = Admin::open(&args.config.load()?).await?;
            if admin.revoke_session(&args.id).await? {
                say!("session {} ended", args.id);
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no open session {}", args.id);
                Ok(ExitCode::FAILURE)
            }
        }
        AdminCommand::Audit(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            for event in admin.audit_events(args.limit).await? {
                say!(
                    "{}  {:<24} user={} session={} ip={} {}",
                    timestamp(event.at),
                    event.kind,
                    event.user_id.as_deref().unwrap_or("-"),
                    event.session_id.as_deref().unwrap_or("-"),
                    event.ip.as_deref().unwrap_or("-"),
                    event.detail.as_deref().unwrap_or(""),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn users(command: UsersCommand) -> anyhow::Result<ExitCode> {
    match command {
        UsersCommand::List(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            for user in admin.users().await? {
                say!(
                    "{}  {:<24} {:<8} roles={}",
                    user.id.0,
                    user.username,
                    if user.disabled { "disabled" } else { "enabled" },
                    user.roles.join(","),
                );
            }
        }
        UsersCommand::Create(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password =
                tessera_token::Secret::new(line.trim_end_matches(['\r', '\n']).to_owned());
            let user = admin.create_user(&args.username, password).await?;
            say!("created {} ({})", user.username, user.id.0);
        }
        UsersCommand::Disable(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            let user = admin.set_disabled(&args.username, true).await?;
            say!("{} disabled; every session of theirs ended", user.username);
        }
        UsersCommand::Enable(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            let user = admin.set_disabled(&args.username, false).await?;
            say!("{} enabled", user.username);
        }
        UsersCommand::SetRole(args) => {
            let admin = Admin::open(&args.config.load()?).await?;
            let user = admin.set_roles(&args.username, &args.roles).await?;
            say!("{} has roles: {}", user.username, user.roles.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn timestamp(seconds: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    humantime::format_rfc3339_seconds(time).to_string()
}
