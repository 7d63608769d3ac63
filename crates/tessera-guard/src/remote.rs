//! What [`crate::RemoteKeys`] and [`crate::RevocationFeed`] share: the HTTP client they
//! build by default, bounded GETs of JSON documents, and the one error type for both.
//! Only GET requests leave this module, and redirects are never followed, so nothing is
//! sent to a host other than the configured one.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap};
use reqwest::{Client, RequestBuilder, Url, redirect};
use serde::de::DeserializeOwned;

/// Why a document could not be fetched from the issuer. Messages carry URLs and status
/// codes, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A configured URL is not an absolute `http` or `https` URL.
    #[error("{0:?} is not an absolute http(s) URL")]
    InvalidUrl(String),
    /// The request failed before an answer arrived (connection, timeout, TLS).
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    /// The issuer answered with a status other than 200.
    #[error("the issuer answered HTTP {0}")]
    Status(u16),
    /// The answer was longer than the bound for its kind of document.
    #[error("the answer is longer than {0} bytes")]
    TooLarge(usize),
    /// The answer is not the JSON document expected.
    #[error("the answer is not the expected JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The discovery document names another issuer than the configured one (OpenID
    /// Connect Discovery 1.0 §4.3 requires them to be identical).
    #[error("the discovery document names issuer {found:?}, not the configured one")]
    IssuerMismatch {
        /// The issuer the document names.
        found: String,
    },
    /// The discovery document points at keys on another origin, which was not allowed.
    #[error("jwks_uri {0} is on another origin than the issuer")]
    CrossOriginJwks(String),
    /// The revocation stream sent nothing, not even a keep-alive, for this long.
    #[error("the revocation stream was silent for {0:?}")]
    StreamIdle(Duration),
    /// The key set holds no key this guard can use; the keys already known are kept.
    #[error("the key set holds no usable key")]
    NoUsableKey,
}

/// How long a connection attempt to the issuer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request to the issuer may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The default client: no redirects (an answer from elsewhere must not be trusted, and
/// a credential must not follow it), bounded time.
pub(crate) fn default_client() -> Result<Client, RemoteError> {
    Client::builder()
        .redirect(redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("tessera-guard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(RemoteError::Http)
}

/// `text` as an absolute `http` or `https` URL.
pub(crate) fn parse_http_url(text: &str) -> Result<Url, RemoteError> {
    let url = Url::parse(text).map_err(|_| RemoteError::InvalidUrl(text.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(RemoteError::InvalidUrl(text.to_owned()));
    }
    Ok(url)
}

/// `{issuer}{path}`, where `path` starts with `/` (the form OpenID Connect Discovery 1.0
/// §4 uses: the issuer's own path is kept).
pub(crate) fn issuer_url(issuer: &str, path: &str) -> Result<Url, RemoteError> {
    parse_http_url(&format!("{}{path}", issuer.trim_end_matches('/')))
}

/// Sends `request` (a GET), requires 200, reads at most `max_bytes` and parses JSON.
/// Returns the answer's headers too, for `Cache-Control`.
pub(crate) async fn get_json<T: DeserializeOwned>(
    request: RequestBuilder,
    max_bytes: usize,
) -> Result<(T, HeaderMap), RemoteError> {
    let mut response = request
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(RemoteError::Http)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(RemoteError::Status(response.status().as_u16()));
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(RemoteError::Http)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(RemoteError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    let document = serde_json::from_slice(&body).map_err(RemoteError::Json)?;
    Ok((document, headers))
}
