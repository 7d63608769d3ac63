//! What other services ask Tessera: forward-auth for proxies (`GET /auth/verify`, for
//! nginx `auth_request` and Traefik or Caddy forward-auth) and the feed of ended
//! sessions (`GET /auth/revocations`) that lets a remote guard refuse the tokens of a
//! logged-out session within a second, without asking per token.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use crate::current_user::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// The header naming the verified user.
const USER_HEADER: HeaderName = HeaderName::from_static("x-tessera-user");
/// The header listing the verified user's roles, comma-separated.
const ROLES_HEADER: HeaderName = HeaderName::from_static("x-tessera-roles");
/// The original method, as nginx (by configuration) and Traefik pass it.
const ORIGINAL_METHODS: [&str; 2] = ["x-original-method", "x-forwarded-method"];

/// `GET /auth/verify`: 200 with `X-Tessera-User` and `X-Tessera-Roles` when the request
/// carries a valid bearer token or access cookie (then CSRF-checked against the
/// original method the proxy names), 401 otherwise.
pub(super) async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let original = ORIGINAL_METHODS
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let claims = authenticate(&state, &original, &headers)?;
    let mut response = StatusCode::OK.into_response();
    let answer = response.headers_mut();
    if let Ok(user) = HeaderValue::from_str(&claims.sub) {
        answer.insert(USER_HEADER, user);
    }
    if let Ok(roles) = HeaderValue::from_str(&claims.roles.join(",")) {
        answer.insert(ROLES_HEADER, roles);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(super) struct FeedQuery {
    /// Unix seconds: sessions ended at or after this.
    since: Option<i64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Feed {
    /// The `since` of the next poll.
    cursor: i64,
    ended: Vec<EndedSession>,
    /// How long after its session ended a token may still be unexpired, in seconds:
    /// how long a follower must remember an entry.
    horizon: i64,
}

#[derive(Debug, Serialize)]
pub(super) struct EndedSession {
    sid: String,
    ended_at: i64,
}

/// `GET /auth/revocations?since=N`, for resource servers holding the configured
/// credential (the one `/oauth/introspect` takes). Entries are whole seconds, so a
/// follower polls with the returned cursor and may see an entry twice, never miss one.
pub(super) async fn revocations(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Json<Feed>, ApiError> {
    super::oauth::check_resource_server(&state, &headers)?;
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("since must be unix seconds".to_owned()))?;
    let horizon = state.revocations.horizon_secs();
    let now = crate::clock::now();
    let since = query.since.unwrap_or(now.saturating_sub(horizon)).max(0);
    let ended = state.store.ended_since(since).await?;
    let cursor = ended.last().map_or(since, |(_, at)| (*at).max(since));
    Ok(Json(Feed {
        cursor,
        ended: ended
            .into_iter()
            .map(|(session, ended_at)| EndedSession {
                sid: session.0,
                ended_at,
            })
            .collect(),
        horizon,
    }))
}

/// `GET /auth/revocations/stream[?since=N]`: the same feed as server-sent events, for
/// followers that want ends within milliseconds instead of a poll interval. It sends
/// the ends since `since` (or the `Last-Event-ID` a reconnecting client sends) first,
/// then each end as this server learns it. Event ids are the `ended_at` seconds, so a
/// reconnect resumes without gaps (possibly repeating an entry).
pub(super) async fn revocation_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    super::oauth::check_resource_server(&state, &headers)?;
    let Query(query) =
        query.map_err(|_| ApiError::InvalidRequest("since must be unix seconds".to_owned()))?;
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i64>().ok());
    let horizon = state.revocations.horizon_secs();
    let since = resume
        .or(query.since)
        .unwrap_or(crate::clock::now().saturating_sub(horizon))
        .max(0);
    // Subscribe before reading the backlog: an end in between is then sent twice,
    // never lost.
    let live = state.revocations.subscribe();
    let backlog = state.store.ended_since(since).await?;

    let backlog = stream::iter(
        backlog
            .into_iter()
            .map(|(session, at)| Ok(ended_event(&session.0, at))),
    );
    let live = stream::unfold(live, |mut live| async move {
        match live.recv().await {
            Ok((session, at)) => Some((Ok(ended_event(&session, at)), live)),
            // Fell behind: end the stream; the client reconnects from its last id.
            Err(RecvError::Lagged(_) | RecvError::Closed) => None,
        }
    });
    Ok(Sse::new(futures_util::StreamExt::chain(backlog, live)).keep_alive(KeepAlive::default()))
}

fn ended_event(session: &str, ended_at: i64) -> Event {
    Event::default()
        .event("ended")
        .id(ended_at.to_string())
        .data(serde_json::json!({"sid": session, "ended_at": ended_at}).to_string())
}
