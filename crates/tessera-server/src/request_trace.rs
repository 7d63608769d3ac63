//! What every request leaves behind: a request id (the client's `X-Request-Id` when it
//! is sane, else a fresh one, echoed in the answer), a span that every log line of the
//! request carries (method, matched route, request id, and the user once known), one
//! closing line with status and latency, and the HTTP metrics. The route is always the
//! matched template (`/api/notes/{id}`), never the raw path, so logs and metrics name
//! no ids. Tokens never reach any of it: only the user id the token stood for.
//!
//! One middleware rather than tower-http's request-id and trace layers: those keep any
//! client id as it is, and their closing event cannot name the user, which is learnt
//! inside the handler.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::telemetry::Telemetry;

/// The header that carries the request id, both ways.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client request id kept; longer ones are replaced.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 128;
/// The route label of requests no route matched (they answer 404 or 405).
const UNMATCHED: &str = "unmatched";
/// Routes that machines poll: their closing lines are debug, so they do not drown
/// the rest at the default level.
const PROBES: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// What the request's handlers may add to its closing line.
struct RequestContext {
    span: tracing::Span,
    user: OnceLock<String>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// Names the user a request acts for, once it is authenticated (a valid access token,
/// or a login or renewal that succeeded): it joins the request's span and closing
/// line. Outside a request it does nothing.
pub(crate) fn record_user(user: &str) {
    // Outside a request there is no context to fill: nothing to do.
    let _outside_a_request = CONTEXT.try_with(|context| {
        context.span.record("user_id", user);
        // A second call (a login that also checks a token) keeps the first user.
        let _already_named = context.user.set(user.to_owned());
    });
}

/// The middleware: id, span, closing line and metrics of one request.
pub(crate) async fn observe(
    State(telemetry): State<Arc<Telemetry>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_sane(value))
        .cloned()
        .unwrap_or_else(new_request_id);
    // Handlers and anything they call see the id that is logged, not the client's.
    request.headers_mut().insert(REQUEST_ID, request_id.clone());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let id = request_id.to_str().unwrap_or_default().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %id,
        user_id = tracing::field::Empty,
    );
    let context = RequestContext {
        span: span.clone(),
        user: OnceLock::new(),
    };
    let (mut response, user) = CONTEXT
        .scope(context, async {
            let response = next.run(request).instrument(span).await;
            let user = CONTEXT
                .try_with(|context| context.user.get().cloned())
                .ok()
                .flatten();
            (response, user)
        })
        .await;
    let latency = started.elapsed();
    let status = response.status();
    telemetry.request(&method, &route, status, latency);
    response.headers_mut().insert(REQUEST_ID, request_id);

    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    let user_id = user.as_deref();
    macro_rules! closing_line {
        ($level:expr) => {
            tracing::event!(
                target: "tessera::request",
                $level,
                method = %method,
                route = %route,
                status = status.as_u16(),
                latency_ms,
                user_id,
                request_id = %id,
                "request"
            )
        };
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A dependency is away or the hashing queue is full: the service copes.
        closing_line!(tracing::Level::WARN);
    } else if status.is_server_error() {
        closing_line!(tracing::Level::ERROR);
    } else if PROBES.contains(&route.as_str()) {
        closing_line!(tracing::Level::DEBUG);
    } else {
        closing_line!(tracing::Level::INFO);
    }
    response
}

/// A request id worth keeping: 1 to 128 visible ASCII characters, so that it can go
/// into logs and headers as it is.
fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_BYTES
        && bytes.iter().all(|byte| (0x21..=0x7e).contains(byte))
}

fn new_request_id() -> HeaderValue {
    let id = uuid::Uuid::new_v4().to_string();
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_short_and_visible_ascii() {
        let kept = [
            "abc-123",
            "0a1b2c3d",
            "trace=00-4bf9.f0;x",
            &"x".repeat(128),
        ];
        let replaced = ["", "with space", "tab\there", "é", &"x".repeat(129)];

        for id in kept {
            assert!(
                is_sane(&HeaderValue::from_bytes(id.as_bytes()).unwrap()),
                "{id}"
            );
        }
        for id in replaced {
            assert!(
                !is_sane(&HeaderValue::from_bytes(id.as_bytes()).unwrap()),
                "{id}"
            );
        }
    }

    #[test]
    fn new_request_ids_are_sane() {
        assert!(is_sane(&new_request_id()));
    }
}
