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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
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
    // Shared with the router (a reference count), not copied.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let id = request_id.to_str().unwrap_or_default();
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
    telemetry.request(&method, route, status, latency);

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
    } else if PROBES.contains(&route) {
        closing_line!(tracing::Level::DEBUG);
    } else {
        closing_line!(tracing::Level::INFO);
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
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

/// A fresh request id, shaped as a version 4 UUID.
fn new_request_id() -> HeaderValue {
    static IDS: LazyLock<RequestIds> = LazyLock::new(RequestIds::new);
    IDS.next()
}

/// The low 62 bits: what the counter half of an id keeps once the UUID variant bits are
/// set.
const LOW_62_BITS: u64 = (1 << 62) - 1;

/// Where fresh request ids come from: 58 random bits drawn once per process, then a
/// count of the ids issued, through a keyed permutation of 62 bits. The system's
/// randomness is read once rather than per request; no two ids of one process are
/// equal (the permutation is a bijection), and the ids do not show their order,
/// though they are no secret either.
struct RequestIds {
    process: u64,
    keys: [u64; 2],
    issued: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let (process, before) = uuid::Uuid::new_v4().as_u64_pair();
        let (after, _) = uuid::Uuid::new_v4().as_u64_pair();
        Self {
            process,
            keys: [before, after],
            issued: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let count = self.issued.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&self.process.to_be_bytes());
        bytes[8..].copy_from_slice(&permute(count, self.keys).to_be_bytes());
        // Sets the version bits in the process half and the variant bits in the two
        // top bits of the counter half, which `permute` leaves at zero.
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
            .unwrap_or(HeaderValue::from_static("unknown"))
    }
}

/// A bijection of the numbers below 2^62, keyed: SplitMix64's finalizer, each step kept
/// to 62 bits (a product with an odd number and a right shift xored in are both
/// invertible modulo 2^62), between a xor and an addition of the keys.
fn permute(count: u64, [before, after]: [u64; 2]) -> u64 {
    let mut mixed = (count ^ before) & LOW_62_BITS;
    mixed ^= mixed >> 30;
    mixed = mixed.wrapping_mul(0xbf58_476d_1ce4_e5b9) & LOW_62_BITS;
    mixed ^= mixed >> 27;
    mixed = mixed.wrapping_mul(0x94d0_49bb_1331_11eb) & LOW_62_BITS;
    mixed ^= mixed >> 31;
    mixed.wrapping_add(after) & LOW_62_BITS
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

    #[test]
    fn new_request_ids_are_distinct_version_4_uuids() {
        let ids = RequestIds::new();

        let issued: Vec<uuid::Uuid> = (0..10_000)
            .map(|_| uuid::Uuid::parse_str(ids.next().to_str().unwrap()).unwrap())
            .collect();

        let mut distinct = issued.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), issued.len());
        assert!(issued.iter().all(|id| id.get_version_num() == 4));
        assert!(
            issued
                .iter()
                .all(|id| id.get_variant() == uuid::Variant::RFC4122)
        );
    }

    #[test]
    fn consecutive_counts_do_not_look_consecutive() {
        let keys = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

        for count in 0..1_000 {
            let (this, next) = (permute(count, keys), permute(count + 1, keys));

            assert!((this ^ next).count_ones() > 8, "{this:x} then {next:x}");
        }
    }

    #[test]
    fn the_permutation_keeps_distinct_counts_distinct_and_below_2_to_the_62() {
        let keys = [0x0123_4567_89ab_cdef, u64::MAX];
        let counts = (0..50_000).chain(LOW_62_BITS - 1_000..=LOW_62_BITS);

        let mut permuted: Vec<u64> = counts.map(|count| permute(count, keys)).collect();

        assert!(permuted.iter().all(|value| *value <= LOW_62_BITS));
        let all = permuted.len();
        permuted.sort_unstable();
        permuted.dedup();
        assert_eq!(permuted.len(), all);
    }
}
