//! `tessera token decode [TOKEN]` shows a JWT's header and claims and when
//! it expires, in human terms (`--verify` also checks it against the
//! server's published keys); `tessera token print` prints a fresh access
//! token for other tools, such as `curl -H "Authorization: Bearer …"`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Map, Value};
use tessera_token::{JwkSet, KeySet, Validator, ValidatorConfig, VerifyingKey};

use super::status::human;
use super::{
    EXIT_CODES, EXIT_OTHER, ServerChoice, chosen_target, on_store, required_target, session,
    token_from_environment,
};

/// `tessera token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Show a token's header and claims and when it expires [default: the
    /// stored access token, or TESSERA_TOKEN]. The signature is not checked
    /// unless --verify is given.
    #[command(after_help = EXIT_CODES)]
    Decode(DecodeArgs),
    /// Print the access token (renewed first if about to expire), for
    /// `curl -H "Authorization: Bearer $(tessera token print)"`.
    #[command(after_help = EXIT_CODES)]
    Print(PrintArgs),
}

/// Arguments of `tessera token decode`.
#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// The token; `-` reads it from standard input
    token: Option<String>,

    /// Check the signature and claims against the server's JWKS
    #[arg(long)]
    verify: bool,

    #[command(flatten)]
    server: ServerChoice,
}

/// Arguments of `tessera token print`.
#[derive(Debug, Args)]
pub(crate) struct PrintArgs {
    #[command(flatten)]
    server: ServerChoice,
}

pub(crate) async fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Decode(args) => decode_command(args).await,
        TokenCommand::Print(args) => print_command(args).await,
    }
}

async fn print_command(args: PrintArgs) -> anyhow::Result<ExitCode> {
    // Printing the token is what the user asked for here, and only here.
    if let Some(token) = token_from_environment() {
        say!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    let target = required_target(&args.server).await?;
    let (session, _store) = session(&target)?;
    let token = session.access_token().await?;
    say!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn decode_command(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    // The server's clock minus ours, when known from the last token answer.
    let mut clock_offset = 0;
    let token = match args.token.as_deref() {
        Some("-") => read_stdin().await?,
        Some(token) => token.trim().to_owned(),
        None => match token_from_environment() {
            Some(token) => token,
            None => {
                let target = required_target(&args.server).await?;
                let (_session, store) = session(&target)?;
                let key = target.server.clone();
                let tokens = on_store(&store, move |store| store.load(&key))
                    .await?
                    .ok_or_else(|| {
                        super::NotLoggedIn(format!(
                            "not logged in to {}: pass a token or log in",
                            target.server
                        ))
                    })?;
                clock_offset = tokens.server_clock_offset_secs;
                tokens.access_token
            }
        },
    };

    let (header, claims) = decode(&token)?;
    say!("header:\n{}", serde_json::to_string_pretty(&header)?);
    say!("claims:\n{}", serde_json::to_string_pretty(&claims)?);
    let server_now = unix_now().saturating_add(clock_offset);
    if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
        say!("expires: {}", describe_expiry(exp, server_now));
    }

    if !args.verify {
        return Ok(ExitCode::SUCCESS);
    }
    match verify(&args.server, &token, &claims, server_now).await {
        Ok(kid) => {
            say!("verified: signature and claims are valid (key {kid})");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: the token does not verify: {error:#}");
            Ok(ExitCode::from(EXIT_OTHER))
        }
    }
}

/// A JWT's header and claims, decoded without checking the signature.
pub(super) fn decode(token: &str) -> anyhow::Result<(Map<String, Value>, Map<String, Value>)> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bail!("not a JWT: expected three parts separated by dots");
    };
    let part = |encoded: &str, what: &str| -> anyhow::Result<Map<String, Value>> {
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .with_context(|| format!("the {what} is not base64url"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("the {what} is not a JSON object"))
    };
    Ok((part(header, "header")?, part(claims, "claims part")?))
}

/// "in 4m 12s (2026-12-04T10:00:00Z)" or "2h 1m ago (…)".
fn describe_expiry(exp: i64, server_now: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(exp.max(0).unsigned_abs());
    let at = humantime::format_rfc3339_seconds(at);
    let left = Duration::from_secs((exp - server_now).unsigned_abs());
    if exp > server_now {
        format!("in {} ({at}, server time)", human(left))
    } else {
        format!("{} ago ({at}, server time): expired", human(left))
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
}

/// Checks `token` against the keys the server publishes, its issuer and
/// the token's own audience; returns the `kid` that verified it.
async fn verify(
    choice: &ServerChoice,
    token: &str,
    claims: &Map<String, Value>,
    server_now: i64,
) -> anyhow::Result<String> {
    let target = chosen_target(choice)
        .await?
        .context("--verify needs a server: pass --server URL or log in")?;
    let (session, _store) = session(&target)?;
    let discovery: Discovery = session
        .fetch_public_json("/.well-known/openid-configuration")
        .await?;
    let jwks: JwkSet = session.fetch_public_json("/.well-known/jwks.json").await?;
    // Keys this build cannot use are skipped, as a resource server would.
    let keys: Vec<VerifyingKey> = jwks
        .keys
        .iter()
        .filter_map(|jwk| VerifyingKey::from_jwk(jwk).ok())
        .collect();
    let audience = match claims.get("aud") {
        Some(Value::String(aud)) => aud.clone(),
        Some(Value::Array(list)) => list
            .iter()
            .find_map(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    let config = ValidatorConfig::new(&discovery.issuer, &audience);
    let validator = Validator::new(KeySet::new(keys), config)?;
    validator.validate(token, server_now)?;
    let (header, _) = decode(token)?;
    Ok(header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned())
}

async fn read_stdin() -> anyhow::Result<String> {
    let text = tokio::task::spawn_blocking(|| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    })
    .await?
    .context("cannot read the token from standard input")?;
    Ok(text.trim().to_owned())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_decodes_into_header_and_claims() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"at+jwt"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"u1","exp":100,"roles":["admin"]}"#);

        let (header, claims) = decode(&format!("{header}.{claims}.sig")).unwrap();

        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(claims["roles"][0], "admin");
        assert!(decode("not-a-token").is_err());
    }

    #[test]
    fn expiry_reads_in_human_terms_on_the_server_clock() {
        assert!(describe_expiry(1_000, 760).starts_with("in 4m 0s"));
        assert!(describe_expiry(1_000, 1_065).starts_with("1m 5s ago"));
    }
}
