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
use utoipa::{IntoParams, ToSchema};

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
#[utoipa::path(
    get,
    path = "/auth/verify",
    operation_id = "forward_auth",
    tag = "resource servers",
    params(
        ("X-Original-Method" = Option<String>, Header,
            description = "The method of the request being checked, as nginx passes it; \
                unsafe methods with the access cookie need the anti-CSRF token"),
        ("X-Forwarded-Method" = Option<String>, Header,
            description = "The same, as Traefik passes it"),
    ),
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The caller is authenticated",
            headers(
                ("X-Tessera-User" = String, description = "The user's id (`sub`)"),
                ("X-Tessera-Roles" = String, description = "The user's roles, comma-separated"),
            )),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
    )
)]
pub(super) async fn verify(
    State(state): State<AppState>,
    // The whole request rather than a copy of its headers: this route answers every
    // request a proxy forwards.
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let headers = request.headers();
    let original = ORIGINAL_METHODS
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
        .unwrap_or(Method::GET);
    let claims = authenticate(&state, &original, headers)?;
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FeedQuery {
    /// Unix seconds: sessions ended at or after this. Defaults to the horizon ago.
    since: Option<i64>,
}

/// A page of the feed of ended sessions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RevocationFeed)]
pub(super) struct Feed {
    /// The `since` of the next poll.
    cursor: i64,
    ended: Vec<EndedSession>,
    /// How long after its session ended a token may still be unexpired, in seconds:
    /// how long a follower must remember an entry.
    horizon: i64,
}

/// A session that has ended: its tokens must be refused.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EndedSession {
    sid: String,
    ended_at: i64,
}

/// `GET /auth/revocations?since=N`, for resource servers holding the configured
/// credential (the one `/oauth/introspect` takes). Entries are whole seconds, so a
/// follower polls with the returned cursor and may see an entry twice, never miss one.
#[utoipa::path(
    get,
    path = "/auth/revocations",
    operation_id = "revocation_feed",
    tag = "resource servers",
    params(FeedQuery),
    security(("resource_server" = [])),
    responses(
        (status = 200, description = "Sessions ended since `since`", body = Feed),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "`introspection_secret_file` is not set (`not_found`)",
            body = crate::openapi::ErrorBody),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
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
#[utoipa::path(
    get,
    path = "/auth/revocations/stream",
    operation_id = "revocation_stream",
    tag = "resource servers",
    params(
        FeedQuery,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The last event id seen, sent by a reconnecting client; \
                wins over `since`"),
    ),
    security(("resource_server" = [])),
    responses(
        (status = 200, description = "Server-sent events, the backlog first, then each \
            end as it happens", content_type = "text/event-stream", body = EndedEvent),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, description = "`introspection_secret_file` is not set (`not_found`)",
            body = crate::openapi::ErrorBody),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
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

/// One event of the stream. Before OpenAPI 3.2 a stream's schema describes each of
/// its events; `ended_event` builds them.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct EndedEvent {
    /// Always `ended`.
    #[schema(pattern = "^ended$")]
    event: String,
    /// The `ended_at` second: a reconnecting client sends it as `Last-Event-ID`.
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    /// The ended session as JSON: `{"sid", "ended_at"}`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

fn ended_event(session: &str, ended_at: i64) -> Event {
    Event::default()
        .event("ended")
        .id(ended_at.to_string())
        .data(serde_json::json!({"sid": session, "ended_at": ended_at}).to_string())
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(verify, revocations, revocation_stream))]
pub(crate) struct Api;
