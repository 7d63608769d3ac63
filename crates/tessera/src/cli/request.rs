//! `tessera request`: a small curl for the server's API. Sends one request
//! with the stored access token (renewed as needed by the SDK, or the one
//! in `TESSERA_TOKEN`), to a path or a full URL on the profile's server
//! only, prints the body (pretty JSON on a terminal; status and headers
//! too with `-i`), and exits 3 on an error status.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tessera_client::Method;

use super::{
    EXIT_HTTP_STATUS, ServerChoice, UsageError, required_target, session, token_from_environment,
};

/// Arguments of `tessera request`.
#[derive(Debug, Args)]
pub(crate) struct RequestArgs {
    /// The HTTP method (default GET, or POST with --data), then the path on the
    /// server, such as /api/notes, or a full URL on the same server
    #[arg(value_name = "[METHOD] PATH")]
    method_or_path: String,

    /// The path, when a method came first
    #[arg(value_name = "PATH", hide = true)]
    path: Option<String>,

    /// JSON body to send; `@FILE` reads it from a file and `@-` from
    /// standard input
    #[arg(short = 'd', long = "data", value_name = "JSON")]
    data: Option<String>,

    /// Extra request header, as `Name: value` (repeatable); the
    /// Authorization header is this tool's to set
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,

    /// Print the answer's status line and headers before its body
    #[arg(short = 'i', long = "include")]
    include: bool,

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

    let headers = header_map(&args.headers)?;

    let target = required_target(&args.server).await?;
    let (session, _store) = session(&target)?;
    let response = match token_from_environment() {
        Some(token) => {
            session
                .send_with_access_token(&token, method.clone(), &path, headers, body.as_ref())
                .await?
        }
        None => {
            session
                .send_with_headers(method.clone(), &path, headers, body.as_ref())
                .await?
        }
    };

    let status = response.status();
    let head = format!("{:?} {status}", response.version());
    let response_headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer to {method} {path}"))?;
    if args.include {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{head}")?;
        for (name, value) in &response_headers {
            writeln!(
                stdout,
                "{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            )?;
        }
        writeln!(stdout)?;
    }
    if status.is_success() {
        let mut stdout = std::io::stdout().lock();
        let is_json = response_headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.contains("json"));
        let pretty = if stdout.is_terminal() && is_json {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|value| serde_json::to_vec_pretty(&value).ok())
        } else {
            None
        };
        stdout.write_all(pretty.as_deref().unwrap_or(&bytes))?;
        // A shell prompt glued to the JSON is hard to read; pipes get the
        // body untouched.
        if stdout.is_terminal()
            && (pretty.is_some() || !bytes.is_empty() && !bytes.ends_with(b"\n"))
        {
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
    if status.as_u16() == 429 {
        let wait = response_headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("60");
        writeln!(stderr, "too many requests: wait {wait} s, then retry")?;
    }
    Ok(ExitCode::from(EXIT_HTTP_STATUS))
}

/// `-H 'Name: value'` options as headers; `Authorization` is refused,
/// since the token this tool sends goes there.
fn header_map(options: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for option in options {
        let Some((name, value)) = option.split_once(':') else {
            return Err(UsageError(format!("header `{option}` is not `Name: value`")).into());
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("`{}` is not a header name", name.trim()))?;
        if name == AUTHORIZATION {
            return Err(UsageError(
                "-H Authorization is not allowed: the stored token is sent; \
                 set TESSERA_TOKEN to send another one"
                    .to_owned(),
            )
            .into());
        }
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("the value of header `{name}` is not valid"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// `[METHOD] PATH`: one word is the path; the method defaults to POST when
/// a body is given (as curl does) and to GET otherwise.
fn method_and_path(target: &[String], has_body: bool) -> anyhow::Result<(Method, String)> {
    let default = if has_body { Method::POST } else { Method::GET };
    match target {
        [path] if is_target(path) => Ok((default, path.clone())),
        [word] => bail!("`{word}` is not a path or URL: a path starts with `/`"),
        [method, path] => {
            let method = Method::from_bytes(method.to_uppercase().as_bytes())
                .with_context(|| format!("`{method}` is not an HTTP method"))?;
            Ok((method, path.clone()))
        }
        _ => bail!("expected [METHOD] PATH"),
    }
}

fn is_target(word: &str) -> bool {
    word.starts_with('/') || word.starts_with("http://") || word.starts_with("https://")
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
    fn headers_are_parsed_and_authorization_is_refused() {
        let headers = header_map(&words(&["X-Trace: abc", "accept:text/plain"])).unwrap();

        assert_eq!(headers["x-trace"], "abc");
        assert_eq!(headers["accept"], "text/plain");
        assert!(header_map(&words(&["Authorization: Bearer x"])).is_err());
        assert!(header_map(&words(&["no colon"])).is_err());
    }

    #[test]
    fn a_full_url_is_taken_as_the_target() {
        let (method, url) =
            method_and_path(&words(&["http://127.0.0.1:1/api/notes"]), false).unwrap();

        assert_eq!(method, Method::GET);
        assert_eq!(url, "http://127.0.0.1:1/api/notes");
    }

    #[test]
    fn a_lone_word_that_is_not_a_path_is_refused() {
        assert!(method_and_path(&words(&["GET"]), false).is_err());
    }
}
