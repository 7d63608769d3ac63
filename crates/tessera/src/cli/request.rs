//! `tessera request`: a small curl for the server's API. Sends one request
//! with the stored access token (renewed as needed by the SDK), prints the
//! body to stdout, and exits non-zero on an error status.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use tessera_client::Method;

use super::{ServerChoice, credentials, required_server, session, with_login_hint};

/// Arguments of `tessera request`.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The HTTP method (default GET, or POST with --data), then the path on the
    /// server, such as /api/notes
    #[arg(value_name = "[METHOD] PATH")]
    method_or_path: String,

    /// The path, when a method came first
    #[arg(value_name = "PATH", hide = true)]
    path: Option<String>,

    /// JSON body to send; `@FILE` reads it from a file and `@-` from
    /// standard input
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    data: Option<String>,

    #[command(flatten)]
    server: ServerChoice,
}

pub(crate) async fn run(args: RequestArgs) -> anyhow::Result<ExitCode> {
    let body = match &args.data {
        Some(data) => Some(json_body(data).await?),
        None => None,
    };
    let target = [Some(&args.method_or_path), args.path.as_ref()];
    let target: Vec<String> = target.into_iter().flatten().cloned().collect();
    let (method, path) = method_and_path(&target, body.is_some())?;

    let store = credentials()?;
    let server = required_server(&store, &args.server).await?;
    let session = session(&store, server.clone())?;
    let response = session
        .send(method.clone(), &path, body.as_ref())
        .await
        .map_err(|error| with_login_hint(error, &server))?;

    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer to {method} {path}"))?;
    if status.is_success() {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bytes)?;
        // A shell prompt glued to the JSON is hard to read; pipes get the
        // body untouched.
        if stdout.is_terminal() && !bytes.is_empty() && !bytes.ends_with(b"\n") {
            stdout.write_all(b"\n")?;
        }
        stdout.flush()?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut stderr = std::io::stderr().lock();
    if !bytes.is_empty() {
        stderr.write_all(&bytes)?;
        if !bytes.ends_with(b"\n") {
            stderr.write_all(b"\n")?;
        }
    }
    writeln!(stderr, "error: {method} {path}: server answered {status}")?;
    Ok(ExitCode::FAILURE)
}

/// `[METHOD] PATH`: one word is the path; the method defaults to POST when
/// a body is given (as curl does) and to GET otherwise.
fn method_and_path(target: &[String], has_body: bool) -> anyhow::Result<(Method, String)> {
    let default = if has_body { Method::POST } else { Method::GET };
    match target {
        [path] if path.starts_with('/') => Ok((default, path.clone())),
        [word] => bail!("`{word}` is not a path: it must start with `/`"),
        [method, path] => {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())
                .with_context(|| format!("`{method}` is not an HTTP method"))?;
            Ok((method, path.clone()))
        }
        _ => bail!("expected [METHOD] PATH"),
    }
}

/// The `--data` value parsed as JSON, read first from a file or standard
/// input for `@FILE` and `@-`.
async fn json_body(data: &str) -> anyhow::Result<serde_json::Value> {
    let text = match data.strip_prefix('@') {
        Some("-") => tokio::task::spawn_blocking(|| {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        })
        .await?
        .context("cannot read the body from standard input")?,
        Some(file) => tokio::fs::read_to_string(file)
            .await
            .with_context(|| format!("cannot read the body from {file}"))?,
        None => data.to_owned(),
    };
    serde_json::from_str(&text).context("--data is not valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn method_defaults_to_get_or_post_with_a_body() {
        let (get, _) = method_and_path(&words(&["/api/notes"]), false).unwrap();
        let (post, _) = method_and_path(&words(&["/api/notes"]), true).unwrap();

        assert_eq!(get, Method::GET);
        assert_eq!(post, Method::POST);
    }

    #[test]
    fn explicit_method_is_used_whatever_its_case() {
        let (method, path) = method_and_path(&words(&["delete", "/api/notes/1"]), false).unwrap();

        assert_eq!(method, Method::DELETE);
        assert_eq!(path, "/api/notes/1");
    }

    #[test]
    fn a_lone_word_that_is_not_a_path_is_refused() {
        assert!(method_and_path(&words(&["GET"]), false).is_err());
    }
}
