//! The server's metrics: one Prometheus registry per server (not the process-wide
//! recorder, so that several servers in one process, as in the tests, count apart),
//! the counters the request path and the audit trail move, and the gauges read when
//! `/metrics` is scraped or, for the open sessions, refreshed from the store every
//! 30 s so that a scrape never costs a database query.
//!
//! The request path looks its series up in the registry once per method, route and
//! status, and keeps the handles: a request then moves two atomics instead of building
//! labels and hashing them into the registry.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder as _};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::store::Store;

/// How often the open-sessions gauge is read from the store.
pub(crate) const OPEN_SESSIONS_PERIOD: Duration = Duration::from_secs(30);

/// Request latency buckets, in seconds: from a cached token check (~0.1 ms) to a
/// request that meets the 30 s timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

const HTTP_REQUESTS: &str = "tessera_http_requests_total";
const HTTP_DURATION: &str = "tessera_http_request_duration_seconds";
const LOGINS: &str = "tessera_logins_total";
const REFRESHES: &str = "tessera_refreshes_total";
const REUSE_DETECTED: &str = "tessera_refresh_reuse_detected_total";
const THROTTLED: &str = "tessera_throttled_requests_total";
const OPEN_SESSIONS: &str = "tessera_open_sessions";
const KEY_AGE: &str = "tessera_signing_key_age_seconds";
const HASHING_QUEUE: &str = "tessera_password_hashing_queue_depth";
const HASHES: &str = "tessera_password_hashes_total";

/// Every metric's help text, as Prometheus shows it.
const DESCRIPTIONS: [(&str, &str); 10] = [
    (
        HTTP_REQUESTS,
        "HTTP requests answered, by method, matched route template and status",
    ),
    (
        HTTP_DURATION,
        "Time from the request's arrival to its answer, by method and matched route",
    ),
    (
        LOGINS,
        "Password logins evaluated, by outcome (succeeded or failed); throttled \
         attempts are counted in tessera_throttled_requests_total",
    ),
    (REFRESHES, "Refresh tokens rotated (successful renewals)"),
    (
        REUSE_DETECTED,
        "Spent refresh tokens presented after the grace window (each ended its session)",
    ),
    (
        THROTTLED,
        "Requests answered 429 Too Many Requests, by matched route",
    ),
    (
        OPEN_SESSIONS,
        "Sessions that can still renew (read from the database every 30 s)",
    ),
    (
        KEY_AGE,
        "Seconds since the key that signs access tokens was made",
    ),
    (
        HASHING_QUEUE,
        "Password hashes waiting for a hashing thread",
    ),
    (
        HASHES,
        "Argon2id computations, by kind (hash: sign-up and password change; verify: \
         logins, unknown users included)",
    ),
];

/// What a scrape reads from the rest of the server at that moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Seconds since the signing key was made.
    pub(crate) signing_key_age_secs: i64,
    /// Callers waiting for a hashing thread.
    pub(crate) hashing_queue_depth: usize,
    /// Hashes computed since start.
    pub(crate) hashes: u64,
    /// Verifications computed since start.
    pub(crate) verifications: u64,
}

/// The registry handles of the requests answered with one method and status on one
/// route.
struct RequestSeries {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
    /// Set for 429 answers only.
    throttled: Option<Counter>,
}

impl RequestSeries {
    fn record(&self, latency: Duration) {
        self.requests.increment(1);
        self.duration.record(latency.as_secs_f64());
        if let Some(throttled) = &self.throttled {
            throttled.increment(1);
        }
    }
}

/// The request series seen so far, by route. The routes, methods and statuses a
/// server answers are few, and the registry keeps every series anyway (no idle
/// timeout), so this holds no more than the registry does.
type RequestSeriesByRoute = HashMap<Box<str>, Vec<RequestSeries>>;

/// The metrics of one server.
pub(crate) struct Telemetry {
    recorder: PrometheusRecorder,
    request_series: RwLock<RequestSeriesByRoute>,
    logins_succeeded: Counter,
    logins_failed: Counter,
    refreshes: Counter,
    reuse_detected: Counter,
    open_sessions: Gauge,
    signing_key_age: Gauge,
    hashing_queue: Gauge,
    hashes: Counter,
    verifications: Counter,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

/// What the metrics crate asks of every registration; only the name and labels
/// reach Prometheus.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl Telemetry {
    /// A fresh registry with every fixed series at zero, so that dashboards and alerts
    /// see them before the first event.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &LATENCY_BUCKETS)?
            .build_recorder();
        for (name, help) in DESCRIPTIONS {
            let name = KeyName::from_const_str(name);
            if name.as_str() == HTTP_DURATION {
                recorder.describe_histogram(name, None, help.into());
            } else if [OPEN_SESSIONS, KEY_AGE, HASHING_QUEUE].contains(&name.as_str()) {
                recorder.describe_gauge(name, None, help.into());
            } else {
                recorder.describe_counter(name, None, help.into());
            }
        }
        let counter = |name: &'static str, labels: &[(&'static str, &'static str)]| {
            let labels: Vec<Label> = labels
                .iter()
                .map(|(key, value)| Label::from_static_parts(key, value))
                .collect();
            recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        let logins_succeeded = counter(LOGINS, &[("outcome", "succeeded")]);
        let logins_failed = counter(LOGINS, &[("outcome", "failed")]);
        let refreshes = counter(REFRESHES, &[]);
        let reuse_detected = counter(REUSE_DETECTED, &[]);
        let hashes = counter(HASHES, &[("kind", "hash")]);
        let verifications = counter(HASHES, &[("kind", "verify")]);
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        Ok(Self {
            logins_succeeded,
            logins_failed,
            refreshes,
            reuse_detected,
            open_sessions: gauge(OPEN_SESSIONS),
            signing_key_age: gauge(KEY_AGE),
            hashing_queue: gauge(HASHING_QUEUE),
            hashes,
            verifications,
            recorder,
            request_series: RwLock::default(),
        })
    }

    /// Counts one answered request. `route` is the matched route template (or
    /// `unmatched`), never the raw path, so ids in paths add no series.
    pub(crate) fn request(
        &self,
        method: &Method,
        route: &str,
        status: StatusCode,
        latency: Duration,
    ) {
        let method = method_label(method);
        let status = status.as_u16();
        {
            let known = self
                .request_series
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let series = known.get(route).and_then(|list| {
                list.iter()
                    .find(|series| series.method == method && series.status == status)
            });
            if let Some(series) = series {
                series.record(latency);
                return;
            }
        }

        // First of its kind: two requests may both get here, and register the same
        // series twice, which yields handles to the same counters.
        let series = self.register_request_series(method, route, status);
        series.record(latency);
        let mut known = self
            .request_series
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = known.entry(route.into()).or_default();
        if !list
            .iter()
            .any(|known| known.method == method && known.status == status)
        {
            list.push(series);
        }
    }

    /// Looks up the registry's series for requests with this method, route and
    /// status.
    fn register_request_series(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
    ) -> RequestSeries {
        let method_label = Label::from_static_parts("method", method);
        let route_label = Label::new("route", route.to_owned());
        let key = Key::from_parts(
            HTTP_REQUESTS,
            vec![
                method_label.clone(),
                route_label.clone(),
                Label::new("status", status.to_string()),
            ],
        );
        let requests = self.recorder.register_counter(&key, &METADATA);
        let key = Key::from_parts(HTTP_DURATION, vec![method_label, route_label.clone()]);
        let duration = self.recorder.register_histogram(&key, &METADATA);
        let throttled = (status == StatusCode::TOO_MANY_REQUESTS.as_u16()).then(|| {
            let key = Key::from_parts(THROTTLED, vec![route_label]);
            self.recorder.register_counter(&key, &METADATA)
        });
        RequestSeries {
            method,
            status,
            requests,
            duration,
            throttled,
        }
    }

    /// Counts a security event of the audit trail that has a metric of its own.
    pub(crate) fn audit_event(&self, kind: &str) {
        match kind {
            "login_succeeded" => self.logins_succeeded.increment(1),
            "login_failed" => self.logins_failed.increment(1),
            "refresh" => self.refreshes.increment(1),
            "refresh_reuse_detected" => self.reuse_detected.increment(1),
            _ => {}
        }
    }

    /// The Prometheus text exposition of every metric, with the scrape-time gauges set
    /// from `sample` first.
    pub(crate) fn render(&self, sample: Sample) -> String {
        #[expect(
            clippy::cast_precision_loss,
            reason = "gauges are f64; ages and queue lengths are far below 2^52"
        )]
        {
            self.signing_key_age
                .set(sample.signing_key_age_secs.max(0) as f64);
            self.hashing_queue.set(sample.hashing_queue_depth as f64);
        }
        self.hashes.absolute(sample.hashes);
        self.verifications.absolute(sample.verifications);
        self.recorder.handle().render()
    }

    /// Sets the open-sessions gauge.
    #[expect(
        clippy::cast_precision_loss,
        reason = "session counts are far below 2^52"
    )]
    fn set_open_sessions(&self, count: u64) {
        self.open_sessions.set(count as f64);
    }

    /// Drains histogram samples into their buckets and forgets idle series; the
    /// exporter's own listener would do this, and Tessera renders without one.
    fn upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }
}

/// The method as a label: the standard ones by name, any other as `other`, so a
/// client inventing methods adds no series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Reads the number of sessions that can still renew every `period`, and keeps the
/// registry tidy, until the server stops. A failed read keeps the last value.
pub(crate) async fn keep_open_sessions_counted(
    store: Arc<dyn Store>,
    telemetry: Arc<Telemetry>,
    idle_timeout: Duration,
    period: Duration,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let idle = i64::try_from(idle_timeout.as_secs()).unwrap_or(i64::MAX);
    loop {
        ticks.tick().await;
        let now = crate::clock::now();
        match store
            .count_open_sessions(now, now.saturating_sub(idle))
            .await
        {
            Ok(count) => telemetry.set_open_sessions(count),
            Err(error) => tracing::warn!(%error, "cannot count open sessions for metrics"),
        }
        telemetry.upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_series_are_rendered_at_zero_before_any_event() {
        let telemetry = Telemetry::new().unwrap();

        let text = telemetry.render(Sample {
            signing_key_age_secs: 5,
            hashing_queue_depth: 0,
            hashes: 0,
            verifications: 0,
        });

        assert!(
            text.contains("tessera_logins_total{outcome=\"failed\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("tessera_refresh_reuse_detected_total 0"),
            "{text}"
        );
        assert!(text.contains("tessera_signing_key_age_seconds 5"), "{text}");
        assert!(text.contains("# HELP tessera_open_sessions "), "{text}");
    }

    #[test]
    fn invented_methods_share_one_label() {
        let telemetry = Telemetry::new().unwrap();
        let invented = Method::from_bytes(b"BREW").unwrap();

        telemetry.request(
            &invented,
            "unmatched",
            StatusCode::NOT_FOUND,
            Duration::ZERO,
        );
        let text = telemetry.render(Sample {
            signing_key_age_secs: 0,
            hashing_queue_depth: 0,
            hashes: 0,
            verifications: 0,
        });

        assert!(text.contains("method=\"other\""), "{text}");
        assert!(!text.contains("BREW"), "{text}");
    }
}
