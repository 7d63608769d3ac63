//! [`Session`]: logs in with the password grant, attaches the access token
//! to each request, renews it before it lapses or after the server rejects
//! it, and ends the session on logout (steps 1, 4 and 7 of the loop).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, DATE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url, redirect};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::store::access_claims;
use crate::{Error, RenewalLock, ServerUrl, StoreError, StoredTokens, TokenStore};

const TOKEN_PATH: &str = "/oauth/token";
const LOGOUT_PATH: &str = "/auth/logout";
const SIGNUP_PATH: &str = "/auth/signup";

/// Which sessions [`Session::logout_sessions`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// This session only.
    ThisSession,
    /// Every other session of the user; this one stays logged in.
    OtherSessions,
    /// Every session of the user, this one included.
    Everywhere,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A user's session with one Tessera server.
///
/// Tokens are read from and written to the [`TokenStore`] given at
/// construction, so a session survives restarts when the store does.
/// Share one `Session` (for example in an `Arc`) between tasks: its
/// renewal lock then makes concurrent requests that find the access token
/// stale wait for a single refresh and reuse its result, which matters
/// because each refresh token can be used only once.
pub struct Session {
    server: ServerUrl,
    http: reqwest::Client,
    store: Arc<dyn TokenStore>,
    client_id: Option<String>,
    // The tokens as last seen. The lock is held across a renewal, which is
    // what makes every other caller wait for it and then reuse it.
    tokens: Mutex<Cached>,
}

enum Cached {
    NotLoaded,
    Loaded(Option<StoredTokens>),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

/// A token endpoint's answer and what its headers said about time.
struct Grant {
    answer: TokenResponse,
    /// When the answer arrived, on the local clock.
    arrived: SystemTime,
    /// The answer's `Date` header: the same moment on the server's clock.
    server_date: Option<SystemTime>,
}

impl Grant {
    /// The tokens this grant gives `username`, keeping `previous_refresh`
    /// when the server sent no new refresh token.
    fn into_tokens(
        self,
        server: &ServerUrl,
        username: &str,
        previous_refresh: Option<&str>,
    ) -> Result<StoredTokens, Error> {
        let (expires_at, offset) = expiry(
            self.arrived,
            self.server_date,
            self.answer.expires_in,
            &self.answer.access_token,
        );
        // RFC 6749 §6 lets a server keep the old refresh token; ours
        // rotates it, and the new one replaces the spent one.
        let refresh_token = self
            .answer
            .refresh_token
            .or_else(|| previous_refresh.map(str::to_owned))
            .ok_or_else(|| Error::InvalidResponse("the answer has no refresh token".into()))?;
        Ok(StoredTokens {
            server: server.clone(),
            username: username.to_owned(),
            access_token: self.answer.access_token,
            refresh_token,
            expires_at,
            lifetime_secs: self.answer.expires_in,
            server_clock_offset_secs: offset,
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
}

impl Session {
    /// A session with `server` keeping its tokens in `store`.
    ///
    /// Redirects are not followed: an answer from elsewhere must never
    /// receive a password or a token.
    pub fn new(server: ServerUrl, store: Arc<dyn TokenStore>) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("tessera-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::Network)?;
        Ok(Self::with_http_client(server, store, http))
    }

    /// Like [`new`](Self::new) with a caller-built HTTP client (custom
    /// roots, proxies, timeouts). It should not follow redirects.
    pub fn with_http_client(
        server: ServerUrl,
        store: Arc<dyn TokenStore>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            server,
            http,
            store,
            client_id: None,
            tokens: Mutex::new(Cached::NotLoaded),
        }
    }

    /// Labels the sessions this client opens (the token endpoint's
    /// optional `client_id`), so the user can tell devices apart.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The server this session talks to.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The tokens the store holds for this server now, if any.
    pub async fn tokens(&self) -> Result<Option<StoredTokens>, Error> {
        let mut cached = self.tokens.lock().await;
        let stored = self.load().await?;
        *cached = Cached::Loaded(stored.clone());
        Ok(stored)
    }

    /// Creates an account (`POST /auth/signup`). It does not log in: call
    /// [`Session::login`] next.
    pub async fn sign_up(&self, username: &str, password: &str) -> Result<(), Error> {
        let url = self.server.join(SIGNUP_PATH)?;
        let body = serde_json::json!({"username": username, "password": password});
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(Error::Network)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(response).await)
        }
    }

    /// Logs in with the password grant (RFC 6749 §4.3) and stores the
    /// tokens, replacing any earlier ones for this server.
    pub async fn login(&self, username: &str, password: &str) -> Result<StoredTokens, Error> {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        if let Some(client_id) = &self.client_id {
            form.push(("client_id", client_id));
        }

        let mut cached = self.tokens.lock().await;
        let tokens = self
            .grant(&form)
            .await?
            .into_tokens(&self.server, username, None)?;

        self.save(&tokens).await?;
        *cached = Cached::Loaded(Some(tokens.clone()));
        Ok(tokens)
    }

    /// An access token that is not about to expire, renewing it first if
    /// needed.
    pub async fn access_token(&self) -> Result<String, Error> {
        let mut cached = self.tokens.lock().await;
        let tokens = self.usable_tokens(&mut cached, None).await?;
        Ok(tokens.access_token)
    }

    /// Renews the access token now with the refresh token (RFC 6749 §6),
    /// whatever its age, and stores the new pair.
    ///
    /// Fails with [`Error::SessionEnded`], after removing the stored
    /// tokens, when the server no longer accepts the refresh token.
    pub async fn refresh(&self) -> Result<StoredTokens, Error> {
        let mut cached = self.tokens.lock().await;
        // Fresh from the store: another process may have renewed already,
        // and only its newer refresh token is still valid.
        let _renewal = self.lock_renewal().await?;
        let stored = self.load().await?;
        *cached = Cached::Loaded(stored.clone());
        let stored = stored.ok_or_else(|| self.logged_out())?;
        self.renew(&mut cached, &stored).await
    }

    /// Sends `method path` with the access token, `body` as JSON if given,
    /// and returns the server's answer whatever its status.
    ///
    /// The token is renewed first when it is expired or nearly so. If the
    /// server still rejects it (`401` with `error="invalid_token"`, RFC 6750
    /// §3.1), it is renewed once and the request retried once.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Error> {
        self.send_with_headers(method, path, HeaderMap::new(), body)
            .await
    }

    /// Like [`send`](Self::send), with extra request `headers` and a
    /// `target` that is either a path or a full URL on this session's
    /// server (see [`ServerUrl::resolve`]); any other URL is refused, so the
    /// token never leaves for another origin. An `Authorization` header in
    /// `headers` is dropped: the session's own token goes there.
    pub async fn send_with_headers(
        &self,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Error> {
        let url = self.server.resolve(target)?;
        let token = self.access_token().await?;

        let response = self
            .send_with(&method, &url, &headers, body, &token)
            .await?;
        if !rejects_token(&response) {
            return Ok(response);
        }

        let renewed = {
            let mut cached = self.tokens.lock().await;
            self.usable_tokens(&mut cached, Some(&token)).await?
        };
        self.send_with(&method, &url, &headers, body, &renewed.access_token)
            .await
    }

    /// Sends a request with `access_token` as it is, bypassing the store:
    /// no renewal and no retry. For a token handed over from elsewhere,
    /// such as a script's environment. `target` is checked as in
    /// [`send_with_headers`](Self::send_with_headers).
    pub async fn send_with_access_token(
        &self,
        access_token: &str,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> Result<Response, Error> {
        let url = self.server.resolve(target)?;
        self.send_with(&method, &url, &headers, body, access_token)
            .await
    }

    /// Fetches a public document (no token) from this server, such as
    /// `/.well-known/jwks.json`, and decodes it as JSON.
    pub async fn fetch_public_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let url = self.server.join(path)?;
        let response = self
            .http
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(Error::Network)?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        response.json().await.map_err(|error| {
            Error::InvalidResponse(format!("the body is not the JSON expected: {error}"))
        })
    }

    /// Like [`send`](Self::send), but turns an error status into
    /// [`Error::Status`] and decodes a successful JSON body into `T`
    /// (an empty body decodes as JSON `null`).
    pub async fn request_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T, Error> {
        let response = self.send(method, path, body).await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let bytes = response.bytes().await.map_err(Error::Network)?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(bytes).map_err(|error| {
            Error::InvalidResponse(format!("the body is not the JSON expected: {error}"))
        })
    }

    /// Ends the session on the server (`POST /auth/logout`) and forgets
    /// the tokens.
    ///
    /// A `401` from the server means it already considers the session
    /// over, so the tokens are forgotten then too. Any other failure keeps
    /// them, so the logout can be retried; [`forget`](Self::forget) drops
    /// them without asking the server.
    pub async fn logout(&self) -> Result<(), Error> {
        self.logout_sessions(LogoutScope::ThisSession).await
    }

    /// Ends the sessions `scope` names. Ending this session (alone or with the
    /// others) forgets its tokens as [`Session::logout`] does; ending only the
    /// others keeps this one logged in.
    pub async fn logout_sessions(&self, scope: LogoutScope) -> Result<(), Error> {
        let mut cached = self.tokens.lock().await;
        let tokens = match self.usable_tokens(&mut cached, None).await {
            Ok(tokens) => tokens,
            // Renewal found the session already ended and cleared it.
            Err(Error::SessionEnded { .. }) => return Ok(()),
            Err(error) => return Err(error),
        };

        let mut url = self.server.join(LOGOUT_PATH)?;
        match scope {
            LogoutScope::ThisSession => {}
            LogoutScope::OtherSessions => url.set_query(Some("scope=others")),
            LogoutScope::Everywhere => url.set_query(Some("scope=global")),
        }
        let response = self
            .http
            .post(url)
            .bearer_auth(&tokens.access_token)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(Error::Network)?;
        let status = response.status();
        if !status.is_success() && status != StatusCode::UNAUTHORIZED {
            return Err(status_error(response).await);
        }

        if scope == LogoutScope::OtherSessions {
            if !status.is_success() {
                return Err(status_error(response).await);
            }
            return Ok(());
        }
        self.clear_if_holding(&tokens.refresh_token).await?;
        *cached = Cached::Loaded(None);
        Ok(())
    }

    /// Forgets this server's tokens without telling the server; the
    /// session stays valid there until its refresh token expires.
    pub async fn forget(&self) -> Result<(), Error> {
        let mut cached = self.tokens.lock().await;
        let server = self.server.clone();
        self.blocking(move |store| store.clear(&server)).await?;
        *cached = Cached::Loaded(None);
        Ok(())
    }

    /// Tokens fit to send now. `rejected` is an access token the server
    /// just refused: unless someone already replaced it, renew.
    ///
    /// Runs with the token lock held, so at most one renewal is under way.
    async fn usable_tokens(
        &self,
        cached: &mut Cached,
        rejected: Option<&str>,
    ) -> Result<StoredTokens, Error> {
        // A fresh jitter per check spreads the renewals of many clients
        // that were given tokens at the same moment.
        let jitter = jitter();
        let fit = |tokens: &StoredTokens| {
            !tokens.needs_renewal_with_jitter(SystemTime::now(), jitter)
                && rejected != Some(tokens.access_token.as_str())
        };

        if let Cached::Loaded(Some(tokens)) = &*cached
            && fit(tokens)
        {
            return Ok(tokens.clone());
        }

        // Before spending the refresh token, look again, alone: another
        // process sharing the store may have renewed (or logged out)
        // meanwhile, and its tokens are then the ones to use.
        let _renewal = self.lock_renewal().await?;
        let stored = self.load().await?;
        *cached = Cached::Loaded(stored.clone());
        let stored = stored.ok_or_else(|| self.logged_out())?;
        if fit(&stored) {
            return Ok(stored);
        }
        self.renew(cached, &stored).await
    }

    /// Exchanges `current`'s refresh token for a new pair and stores it.
    async fn renew(
        &self,
        cached: &mut Cached,
        current: &StoredTokens,
    ) -> Result<StoredTokens, Error> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", current.refresh_token.as_str()),
        ];
        if let Some(client_id) = &self.client_id {
            form.push(("client_id", client_id));
        }

        let grant = match self.grant(&form).await {
            Ok(answer) => answer,
            Err(error) if error.server_code() == Some("invalid_grant") => {
                // Expired, revoked or already spent: this session is over
                // and retrying with the same token cannot help.
                self.clear_if_holding(&current.refresh_token).await?;
                *cached = Cached::Loaded(None);
                return Err(Error::SessionEnded {
                    server: self.server.to_string(),
                });
            }
            Err(error) => return Err(error),
        };

        let renewed = grant.into_tokens(
            &self.server,
            &current.username,
            Some(&current.refresh_token),
        )?;
        self.save(&renewed).await?;
        *cached = Cached::Loaded(Some(renewed.clone()));
        Ok(renewed)
    }

    /// Posts a grant to the token endpoint; returns the answer with when it
    /// arrived by both clocks, from which the expiry is counted.
    async fn grant(&self, form: &[(&str, &str)]) -> Result<Grant, Error> {
        let url = self.server.join(TOKEN_PATH)?;
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(Error::Network)?;
        let arrived = SystemTime::now();
        let server_date = response
            .headers()
            .get(DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| httpdate::parse_http_date(value).ok());
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }

        let bytes = response.bytes().await.map_err(Error::Network)?;
        // The parser's message could quote parts of the body, which holds
        // tokens, so it is not passed on.
        let grant: TokenResponse = serde_json::from_slice(&bytes).map_err(|_| {
            Error::InvalidResponse("the token endpoint's answer is not a token response".into())
        })?;
        if !grant.token_type.eq_ignore_ascii_case("bearer") {
            return Err(Error::InvalidResponse(format!(
                "token type `{}` is not supported, only Bearer",
                printable(&grant.token_type)
            )));
        }
        Ok(Grant {
            answer: grant,
            arrived,
            server_date,
        })
    }

    async fn send_with(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&serde_json::Value>,
        access_token: &str,
    ) -> Result<Response, Error> {
        let mut headers = headers.clone();
        headers.remove(AUTHORIZATION);
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .headers(headers)
            .bearer_auth(access_token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(Error::Network)
    }

    fn logged_out(&self) -> Error {
        Error::LoggedOut {
            server: self.server.to_string(),
        }
    }

    async fn lock_renewal(&self) -> Result<Option<RenewalLock>, Error> {
        self.blocking(|store| store.lock_renewal()).await
    }

    async fn load(&self) -> Result<Option<StoredTokens>, Error> {
        let server = self.server.clone();
        self.blocking(move |store| store.load(&server)).await
    }

    async fn save(&self, tokens: &StoredTokens) -> Result<(), Error> {
        let tokens = tokens.clone();
        self.blocking(move |store| store.save(&tokens)).await
    }

    /// Clears the stored tokens only if they are still the ones holding
    /// `refresh_token`, so a newer login by another process survives.
    async fn clear_if_holding(&self, refresh_token: &str) -> Result<(), Error> {
        let server = self.server.clone();
        let refresh_token = refresh_token.to_owned();
        self.blocking(move |store| match store.load(&server)? {
            Some(stored) if stored.refresh_token == refresh_token => store.clear(&server),
            _ => Ok(()),
        })
        .await
    }

    /// Runs a store call off the async workers: stores may block on disk.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn TokenStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Error> {
        let store = Arc::clone(&self.store);
        let outcome = tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|error| StoreError::Task(error.to_string()))?;
        Ok(outcome?)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.server)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// When a token granted at `arrived` expires on the local clock, in Unix
/// seconds, and the server's clock minus the local one.
///
/// The lifetime is `expires_in`, or, when the answer had a `Date` and the
/// token an `exp` claim, the time from one to the other if shorter: both
/// are on the server's clock, so the local clock's error cancels out. The
/// arrival time is rounded down so the estimate errs early.
fn expiry(
    arrived: SystemTime,
    server_date: Option<SystemTime>,
    expires_in: u64,
    access_token: &str,
) -> (u64, i64) {
    let arrived = unix_secs(arrived);
    let Some(server_date) = server_date.map(unix_secs) else {
        return (arrived.saturating_add(expires_in), 0);
    };
    let offset = i64::try_from(server_date)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(arrived).unwrap_or(i64::MAX));

    let exp = access_claims(access_token)
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_u64));
    let lifetime = match exp {
        Some(exp) => expires_in.min(exp.saturating_sub(server_date)),
        None => expires_in,
    };
    (arrived.saturating_add(lifetime), offset)
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

/// A number in [0, 1) that differs between calls and processes. Jitter
/// needs no strong randomness: the standard library's per-map hash keys
/// are random enough and save a dependency.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};

    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_secs(SystemTime::now()));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the server refused the access token itself (RFC 6750 §3.1), as
/// opposed to some other 401 that a new token would not fix.
fn rejects_token(response: &Response) -> bool {
    response.status() == StatusCode::UNAUTHORIZED
        && response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| {
                let value = value.to_ascii_lowercase();
                value.starts_with("bearer") && value.contains("invalid_token")
            })
}

/// Turns an error answer into [`Error::Status`], keeping the server's
/// RFC 6749 §5.2 error code and description.
async fn status_error(response: Response) -> Error {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok());
    let body = response.bytes().await.unwrap_or_default();
    let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
    let (code, description) = match parsed {
        Some(body) => (body.error, body.error_description),
        None => (None, None),
    };
    Error::Status {
        status,
        code: code.as_deref().map(printable),
        description: description.as_deref().map(printable),
        retry_after,
    }
}

/// Server text with control characters removed, so it cannot move the
/// cursor or rewrite a terminal when shown.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}
